//! The access log: lines are formatted on the connection's task and handed
//! to a writer thread through a queue bounded in bytes, so a slow disk or
//! terminal never stalls a response. When the queue is full the line is
//! dropped and counted, rather than making the server wait. The bound is in
//! bytes, not lines: a line can carry a 16 KiB request target and a 16 KiB
//! User-Agent, so a cap on lines alone would let a stalled writer hold
//! gigabytes.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use crate::config::{AccessLog, LogFormat};

/// Bytes of lines waiting for the writer (each line counted with
/// [`LINE_OVERHEAD`]) before new ones are dropped.
pub const QUEUE_BYTES: usize = 4 << 20;
/// What a queued line costs beyond its text: the string's header and the
/// channel's slot, so that a flood of tiny lines is bounded too.
const LINE_OVERHEAD: usize = 64;

/// One served request, as the log records it.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The client.
    pub peer: SocketAddr,
    /// Method, or "-" when the request line could not be parsed.
    pub method: &'a str,
    /// Request target as sent.
    pub target: &'a str,
    /// "HTTP/1.1" or "HTTP/1.0".
    pub version: &'a str,
    /// Status sent.
    pub status: u16,
    /// Body bytes actually sent.
    pub bytes: u64,
    /// Referer header.
    pub referer: Option<&'a str>,
    /// User-Agent header.
    pub user_agent: Option<&'a str>,
    /// Time from the request head to the end of the response.
    pub duration: Duration,
}

/// A handle to the writer thread (or to nothing, when the log is off).
#[derive(Debug, Clone)]
pub struct Logger {
    tx: Option<Sender<String>>,
    format: LogFormat,
    dropped: Arc<AtomicU64>,
    /// Bytes queued and not yet written, against [`QUEUE_BYTES`].
    queued: Arc<AtomicUsize>,
    /// Says when the writer has written and flushed its last line.
    written: Arc<Mutex<Option<Receiver<()>>>>,
}

/// Waits for the writer to flush its last line, which it does once every
/// [`Logger`] is gone: a graceful stop must not lose the last lines.
#[derive(Debug)]
pub struct Written(Receiver<()>);

impl Written {
    /// Whether the writer finished within `bound` (a stuck disk must not
    /// hold the exit forever).
    pub fn wait(self, bound: Duration) -> bool {
        self.0.recv_timeout(bound).is_ok()
    }
}

impl Logger {
    /// Starts the writer for `target`; fails if a log file cannot be opened.
    pub fn start(target: &AccessLog, format: LogFormat) -> Result<Logger, String> {
        let out: Box<dyn Write + Send> = match target {
            AccessLog::Off => {
                return Ok(Logger {
                    tx: None,
                    format,
                    dropped: Arc::default(),
                    queued: Arc::default(),
                    written: Arc::default(),
                });
            }
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open access log {}: {e}", path.display()))?,
            ),
        };
        // Unbounded as a channel, bounded by `queued`: a send never blocks.
        let (tx, rx) = channel::<String>();
        let queued = Arc::new(AtomicUsize::new(0));
        let done = queued.clone();
        let (written_tx, written) = channel();
        std::thread::Builder::new()
            .name("zcserve-access-log".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(64 * 1024, out);
                let write = |out: &mut BufWriter<_>, line: String| {
                    let _ = out.write_all(line.as_bytes());
                    // Its budget comes back once it is in the writer's
                    // buffer (at most 64 KiB more).
                    done.fetch_sub(line.len() + LINE_OVERHEAD, Ordering::Relaxed);
                };
                while let Ok(line) = rx.recv() {
                    write(&mut out, line);
                    // Drain what queued meanwhile, then flush once.
                    while let Ok(line) = rx.try_recv() {
                        write(&mut out, line);
                    }
                    let _ = out.flush();
                }
                let _ = out.flush();
                let _ = written_tx.send(());
            })
            .map_err(|e| format!("cannot start the access log thread: {e}"))?;
        Ok(Logger {
            tx: Some(tx),
            format,
            dropped: Arc::default(),
            queued,
            written: Arc::new(Mutex::new(Some(written))),
        })
    }

    /// The wait for the writer's last flush (once: later calls get
    /// `None`, as does a log that is off).
    pub fn written(&self) -> Option<Written> {
        self.written.lock().ok()?.take().map(Written)
    }

    /// True when lines are written somewhere.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes queued for the writer now (lines with their overhead).
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues one line for `e`.
    pub fn log(&self, e: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let line = match self.format {
            LogFormat::Combined => combined(e),
            LogFormat::Json => json(e),
        };
        let cost = line.len() + LINE_OVERHEAD;
        // Take the line's share of the budget first, so that racing
        // connections cannot overshoot it together.
        let before = self.queued.fetch_add(cost, Ordering::Relaxed);
        if before + cost > QUEUE_BYTES {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if tx.send(line).is_err() {
            // The writer is gone; nothing will give the budget back.
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `127.0.0.1 - - [28/Nov/2026:11:09:08 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"`
fn combined(e: &Entry<'_>) -> String {
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        e.peer.ip(),
        clf_time(&crate::response_head::http_date_now()),
        e.method,
        escape_clf(e.target),
        e.version,
        e.status,
        e.bytes,
        escape_clf(e.referer.unwrap_or("-")),
        escape_clf(e.user_agent.unwrap_or("-")),
    )
}

/// Rearranges an IMF-fixdate ("Sat, 28 Nov 2026 11:09:08 GMT") into the
/// common log format's "28/Nov/2026:11:09:08 +0000".
fn clf_time(http_date: &str) -> String {
    let parts: Vec<&str> = http_date.split_whitespace().collect();
    match parts.as_slice() {
        [_, day, month, year, time, _] => format!("{day}/{month}/{year}:{time} +0000"),
        _ => http_date.to_string(),
    }
}

/// Client-sent text in a log line: quotes, backslashes and control bytes
/// escaped so a request cannot forge log lines.
fn escape_clf(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn json(e: &Entry<'_>) -> String {
    format!(
        "{{\"time\":{},\"remote\":{},\"method\":{},\"target\":{},\"version\":{},\"status\":{},\"bytes\":{},\"referer\":{},\"user_agent\":{},\"duration_us\":{}}}\n",
        json_str(&crate::response_head::http_date_now()),
        json_str(&e.peer.ip().to_string()),
        json_str(e.method),
        json_str(e.target),
        json_str(e.version),
        e.status,
        e.bytes,
        e.referer.map_or("null".into(), json_str),
        e.user_agent.map_or("null".into(), json_str),
        e.duration.as_micros(),
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(target: &'a str, ua: Option<&'a str>) -> Entry<'a> {
        Entry {
            peer: "127.0.0.1:5000".parse().unwrap(),
            method: "GET",
            target,
            version: "HTTP/1.1",
            status: 200,
            bytes: 5,
            referer: None,
            user_agent: ua,
            duration: Duration::from_micros(42),
        }
    }

    #[test]
    fn combined_line() {
        let line = combined(&entry("/a", Some("curl/8")));
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.ends_with("] \"GET /a HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n"),
            "{line}"
        );
        assert_eq!(
            clf_time("Sat, 28 Nov 2026 11:09:08 GMT"),
            "28/Nov/2026:11:09:08 +0000"
        );
    }

    #[test]
    fn client_text_cannot_forge_lines() {
        let line = combined(&entry("/a\"b", Some("x\ny")));
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(
            line.contains("/a\\\"b") && line.contains("x\\x0ay"),
            "{line}"
        );
        let j = json(&entry("/q\"\u{1}", None));
        assert!(j.contains(r#""target":"/q\"\u0001""#), "{j}");
        assert!(j.contains(r#""user_agent":null"#), "{j}");
    }
}
