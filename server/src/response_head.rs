//! Response heads, written by hand into one buffer so that the head can
//! travel as the backend session's prefix (same segment as the first body
//! bytes), and the shapes of response bodies.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use http::StatusCode;
use zcserve_core::{ByteRange, Source};

/// What follows the head.
#[derive(Debug)]
pub enum Body {
    /// Nothing (HEAD, 304, or a zero-length body).
    Empty,
    /// Bytes made in memory (error pages, listings, redirects).
    Bytes(Vec<u8>),
    /// One range of a file, sent by the backend.
    File {
        /// The open file.
        source: Source,
        /// The bytes to send.
        range: ByteRange,
    },
    /// Several ranges as `multipart/byteranges`: each part's head and range
    /// go through the backend, the closing delimiter after the last.
    Multipart {
        /// The open file.
        source: Source,
        /// Each part's head (delimiter and part headers) and its range.
        parts: Vec<(Vec<u8>, ByteRange)>,
        /// The closing delimiter.
        tail: Vec<u8>,
    },
}

/// A response ready to send.
#[derive(Debug)]
pub struct Response {
    /// Its status.
    pub status: StatusCode,
    /// The whole head, CRLF CRLF included.
    pub head: Vec<u8>,
    /// What follows the head.
    pub body: Body,
    /// Content-Length announced (for the access log).
    pub body_len: u64,
    /// The connection closes after this response.
    pub close: bool,
}

/// Builds a response head.
#[derive(Debug)]
pub struct Head {
    buf: Vec<u8>,
}

impl Head {
    /// A head with the status line, `Server` and `Date`.
    pub fn new(status: StatusCode) -> Head {
        let mut buf = Vec::with_capacity(320);
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(status.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
        buf.extend_from_slice(b"\r\nServer: zcserve\r\nDate: ");
        with_date(|d| buf.extend_from_slice(d.as_bytes()));
        buf.extend_from_slice(b"\r\n");
        Head { buf }
    }

    /// Adds a header field. Values come from this server, never from the
    /// client unescaped, so they hold no CR or LF.
    pub fn header(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        let start = self.buf.len();
        // Straight into the head: no String per header.
        let _ = write!(Appender(&mut self.buf), "{value}");
        debug_assert!(
            !self.buf[start..].contains(&b'\r') && !self.buf[start..].contains(&b'\n'),
            "header {name} with a line break"
        );
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Adds header lines formatted beforehand, each ending in CRLF.
    pub fn fields(&mut self, lines: &[u8]) -> &mut Self {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
        self.buf.extend_from_slice(lines);
        self
    }

    /// Ends the head, announcing whether the connection stays open.
    pub fn finish(mut self, keep_alive: bool) -> Vec<u8> {
        self.buf.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"Connection: close\r\n\r\n".as_slice()
        });
        self.buf
    }
}

/// `fmt::Write` into a byte buffer.
struct Appender<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Appender<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

thread_local! {
    /// The formatted Date and the second it was made for: formatting an
    /// IMF-fixdate per response costs more than the rest of the head.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn with_date(f: impl FnOnce(&str)) {
    // The coarse clock: the Date may show the previous second for up to
    // a kernel tick, well within what a Date header promises.
    let secs = crate::clock::unix_secs_coarse();
    DATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            let now = UNIX_EPOCH + Duration::from_secs(secs);
            *cell = (secs, httpdate::fmt_http_date(now));
        }
        f(&cell.1);
    });
}

/// The current time as an HTTP date.
pub fn http_date_now() -> String {
    let mut out = String::new();
    with_date(|d| out.push_str(d));
    out
}

/// A small plain-text response for `status`, e.g. "404 Not Found".
pub fn plain(status: StatusCode, detail: &str, head_only: bool, keep_alive: bool) -> Response {
    let mut body = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    if !detail.is_empty() {
        body.push_str(detail);
        body.push('\n');
    }
    let mut head = Head::new(status);
    head.header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Length", body.len());
    if status == StatusCode::METHOD_NOT_ALLOWED {
        head.header("Allow", "GET, HEAD");
    }
    with_body(status, head, body.into_bytes(), head_only, keep_alive)
}

/// `head` with its `Content-Type` and `Content-Length` replaced by these
/// (for an error page sent instead of the built-in text); every other
/// field is kept, in order.
pub fn replace_content(head: Vec<u8>, content_type: &str, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + content_type.len() + 16);
    for line in head.split_inclusive(|&b| b == b'\n') {
        let named =
            |name: &[u8]| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        if named(b"content-type:") || named(b"content-length:") {
            continue;
        }
        if line == b"\r\n" {
            // The blank line that ends the head: the new fields go first.
            let _ = write!(
                Appender(&mut out),
                "Content-Type: {content_type}\r\nContent-Length: {len}\r\n"
            );
        }
        out.extend_from_slice(line);
    }
    out
}

/// A response whose body is `body`, in memory.
pub fn with_body(
    status: StatusCode,
    head: Head,
    body: Vec<u8>,
    head_only: bool,
    keep_alive: bool,
) -> Response {
    let body_len = body.len() as u64;
    Response {
        status,
        head: head.finish(keep_alive),
        body: if head_only || body.is_empty() {
            Body::Empty
        } else {
            Body::Bytes(body)
        },
        body_len,
        close: !keep_alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_layout() {
        let mut h = Head::new(StatusCode::PARTIAL_CONTENT);
        h.header("Content-Length", 5);
        let text = String::from_utf8(h.finish(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\nServer: zcserve\r\nDate: "));
        assert!(
            text.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn replace_content_keeps_the_other_fields() {
        let r = plain(StatusCode::METHOD_NOT_ALLOWED, "", false, true);
        let text = String::from_utf8(replace_content(r.head, "text/html", 1234)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\nServer: zcserve\r\n"));
        assert!(text.contains("Allow: GET, HEAD\r\n"), "{text}");
        assert_eq!(text.matches("Content-Type").count(), 1, "{text}");
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        assert!(
            text.ends_with(
                "Connection: keep-alive\r\nContent-Type: text/html\r\nContent-Length: 1234\r\n\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn plain_405_has_allow() {
        let r = plain(StatusCode::METHOD_NOT_ALLOWED, "", false, true);
        let text = String::from_utf8(r.head).unwrap();
        assert!(text.contains("Allow: GET, HEAD\r\n"));
        assert!(matches!(r.body, Body::Bytes(_)));
        assert!(!r.close);
    }
}
