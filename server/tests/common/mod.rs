//! A zcserve running in this process on a fresh port, over a temporary
//! root, for each backend, on real time or on paused tokio time that the
//! test moves by hand; raw-socket and hyper clients; and the kernel's view
//! of a connection's queues, to wait for "the server has read that" or
//! "everything the server sent has arrived" instead of sleeping; and the
//! real `zcserve` binary as a child process ([`Proc`]).
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use zcserve::clock::Clock;
use zcserve::config::{AccessLog, Settings};
use zcserve::metrics::Metrics;
use zcserve::server::Server;
use zcserve_backends::Backend;
pub use zcserve_tests::TempDir;

mod proc;
// Not every test binary runs the real binary.
#[allow(unused_imports)]
pub use proc::{BIN, Proc};

/// The backend names every per-backend test runs (see
/// [`zcserve_tests::backends_under_test`]: an unrunnable backend fails the
/// test unless skipping it was allowed when the suite was built).
pub fn backends() -> Vec<&'static str> {
    zcserve_tests::backends_under_test()
        .into_iter()
        .map(Backend::name)
        .collect()
}

/// How long any wait for an event may take before the test calls it a
/// hang: far beyond what any of them needs, so that only a bug reaches it.
pub const HANG: Duration = Duration::from_secs(10);

/// A request to the paused runtime: move time on by this much, then say so.
type Advance = (Duration, std_mpsc::Sender<()>);

/// A server on 127.0.0.1:<free port>, stopped and joined on drop.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub metrics: Arc<Metrics>,
    /// Where metrics are served, if asked for.
    pub metrics_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// For a server on paused time: where [`TestServer::advance`] asks.
    clock: Option<tokio::sync::mpsc::UnboundedSender<Advance>>,
}

fn settings(backend: &str, root: &Path, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings {
        root: root.to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        backend: backend.to_string(),
        threads: 2,
        access_log: AccessLog::Off,
        ..Settings::default()
    };
    tweak(&mut s);
    s
}

impl TestServer {
    /// Serves `root` with `backend`; `tweak` may change any setting.
    pub fn start(backend: &str, root: &Path, tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let s = settings(backend, root, tweak);
        let server = Server::bind(&s).unwrap_or_else(|e| panic!("bind: {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(s.threads)
            .enable_all()
            .build()
            .unwrap();
        TestServer::run(server, rt, None, None)
    }

    /// Like [`TestServer::start`], but on a single-threaded runtime whose
    /// time stands still until the test calls [`TestServer::advance`]: the
    /// connection deadlines, the file cache's windows (timed on tokio's
    /// clock here) and every other timer of the server then depend on
    /// nothing but the test's own steps, never on the machine's speed.
    ///
    /// Tokio would move paused time on by itself whenever the runtime has
    /// nothing to do (waiting for a client's bytes, say); a blocking task
    /// held for the server's life keeps it from doing that.
    pub fn start_paused(
        backend: &str,
        root: &Path,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let s = settings(backend, root, tweak);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        // Tokio's clock must be read from inside its runtime.
        let server = {
            let _in = rt.enter();
            Server::bind_with_clock(&s, Clock::tokio()).unwrap_or_else(|e| panic!("bind: {e}"))
        };
        let (clock, requests) = tokio::sync::mpsc::unbounded_channel();
        let (hold, held) = std_mpsc::channel::<()>();
        rt.spawn_blocking(move || {
            let _ = held.recv();
        });
        rt.spawn(advance_on_request(requests));
        TestServer::run(server, rt, Some(clock), Some(hold))
    }

    fn run(
        server: Server,
        rt: tokio::runtime::Runtime,
        clock: Option<tokio::sync::mpsc::UnboundedSender<Advance>>,
        hold: Option<std_mpsc::Sender<()>>,
    ) -> TestServer {
        let addr = server.local_addrs()[0];
        let metrics = server.metrics();
        let metrics_addr = server.metrics_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(server.run(async {
                let _ = rx.await;
                // Let paused time run on by itself again, so that the
                // graceful stop's waits end.
                drop(hold);
            }));
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        TestServer {
            addr,
            metrics,
            metrics_addr,
            stop: Some(tx),
            thread: Some(thread),
            clock,
        }
    }

    /// Moves the paused clock of a [`TestServer::start_paused`] server on
    /// by `d`, and returns once the server has done what was due: every
    /// task that was ready ran before time moved, and every task a timer
    /// woke ran before this returns. (Tokio wakes what a timer fires before
    /// what yielded, on a single-threaded runtime.) `advance(ZERO)` just
    /// lets the server finish what it is doing.
    pub fn advance(&self, d: Duration) {
        let clock = self
            .clock
            .as_ref()
            .expect("advance needs a server started with start_paused");
        let (done, wait) = std_mpsc::channel();
        clock.send((d, done)).expect("the server's runtime is gone");
        wait.recv_timeout(HANG)
            .expect("the paused runtime did not advance its clock");
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A connected socket with 10 s read/write timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `request` bytes on a new connection and returns everything
    /// received until the server closes it (which it must, within
    /// [`HANG`]).
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_to_close(&mut s)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The task of a paused runtime that moves its clock when asked: first
/// it yields, so that whatever was ready runs at the old time; then it
/// advances (which yields again, after the timers due have woken their
/// tasks, so those run first); then it yields once more and answers.
async fn advance_on_request(mut requests: tokio::sync::mpsc::UnboundedReceiver<Advance>) {
    while let Some((d, done)) = requests.recv().await {
        tokio::task::yield_now().await;
        tokio::time::advance(d).await;
        tokio::task::yield_now().await;
        let _ = done.send(());
    }
}

/// The text the metrics endpoint at `addr` serves: one `GET /metrics`,
/// answered 200 on a connection the endpoint then closes.
pub fn scrape_metrics(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = parse_responses(&read_to_close(&mut c), &[]);
    assert_eq!(r.len(), 1, "one metrics response");
    assert_eq!(r[0].status, 200, "GET /metrics");
    String::from_utf8(r[0].body.clone()).unwrap()
}

/// The value of the sample `name` (with its labels, if it has any) that
/// the metrics endpoint at `addr` serves now.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = scrape_metrics(addr);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Reads until the server closes the connection (EOF or reset); panics if
/// it is still open after [`HANG`].
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let (out, closed) = read_until_closed(s);
    assert!(
        closed,
        "the server did not close the connection within {HANG:?}; got {:?}",
        String::from_utf8_lossy(&out[..out.len().min(300)])
    );
    out
}

/// Reads until EOF or reset (`true`) or until nothing has arrived for
/// [`HANG`] (`false`), keeping what arrived.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read_r(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, false);
            }
            Err(_) => return (out, true),
        }
    }
}

// ------------------------------------------------ the kernel's view of a socket

/// One TCP socket as `/proc/net/tcp` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    /// The kernel's `TCP_*` state number (1 established, 4 FIN-WAIT-1, …).
    pub state: u8,
    /// Bytes sent (a FIN counts as one) and not yet acknowledged.
    pub tx_queue: u64,
    /// Bytes received and not yet read by the process.
    pub rx_queue: u64,
}

fn proc_addr(a: SocketAddr) -> String {
    let IpAddr::V4(ip) = a.ip() else {
        panic!("only IPv4 sockets are looked up: {a}")
    };
    // The kernel prints the address as the integer it holds, in network
    // order, read in host order.
    format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port())
}

/// Every IPv4 TCP socket the kernel has, by (local, remote) address, as
/// `/proc/net/tcp` shows them. (One read walks the kernel's whole table,
/// so callers read it once for many connections.)
pub fn tcp_table() -> std::collections::HashMap<(String, String), TcpRow> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (tx, rx) = f.get(4)?.split_once(':')?;
            let row = TcpRow {
                state: u8::from_str_radix(f[3], 16).ok()?,
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
            };
            Some(((f[1].to_string(), f[2].to_string()), row))
        })
        .collect()
}

/// The client's and the server's end of `c`'s connection, as keys of
/// [`tcp_table`].
fn ends(c: &TcpStream) -> [(String, String); 2] {
    let (me, server) = (
        proc_addr(c.local_addr().unwrap()),
        proc_addr(c.peer_addr().unwrap()),
    );
    [(me.clone(), server.clone()), (server, me)]
}

/// Polls `done` until it holds; panics naming `what` after [`HANG`].
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {HANG:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Returns once the server has read every byte sent on `c` so far: its
/// kernel acknowledged them (`c`'s send queue is empty) and the server
/// took them off its socket (its receive queue is empty).
pub fn wait_until_server_read(c: &TcpStream) {
    wait_until_server_read_all(std::slice::from_ref(c));
}

/// [`wait_until_server_read`] for every connection of `cs`.
pub fn wait_until_server_read_all(cs: &[TcpStream]) {
    let ends: Vec<_> = cs.iter().map(ends).collect();
    wait_for("the server reading what the clients sent", || {
        let t = tcp_table();
        ends.iter().all(|[client, server]| {
            t.get(client).is_some_and(|r| r.tx_queue == 0)
                && t.get(server).is_some_and(|r| r.rx_queue == 0)
        })
    });
}

/// Returns once everything the server has sent on the connections of
/// `cs`, FINs included, has reached the clients' kernel.
pub fn wait_until_delivered_all(cs: &[TcpStream]) {
    let ends: Vec<_> = cs.iter().map(ends).collect();
    wait_for("what the server sent reaching the clients", || {
        let t = tcp_table();
        ends.iter()
            .all(|[_, server]| t.get(server).is_none_or(|r| r.tx_queue == 0))
    });
}

/// Asserts that the server has neither sent anything more on `c` nor
/// closed it, as far as everything it has done so far shows.
pub fn assert_open_and_silent(c: &TcpStream, what: &str) {
    assert_all_open_and_silent(std::slice::from_ref(c), what);
}

/// [`assert_open_and_silent`] for every connection of `cs`.
pub fn assert_all_open_and_silent(cs: &[TcpStream], what: &str) {
    wait_until_delivered_all(cs);
    for (i, c) in cs.iter().enumerate() {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 256];
        let got = c.peek(&mut b);
        c.set_nonblocking(false).unwrap();
        match got {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(0) => panic!("{what}: the server closed connection {i}"),
            Ok(n) => panic!(
                "{what}: the server sent {:?} on connection {i}",
                String::from_utf8_lossy(&b[..n])
            ),
            Err(e) => panic!("{what}: connection {i}: {e}"),
        }
    }
}

/// A raw request head: `METHOD target HTTP/1.1`, `Host: x`, then `extra`.
pub fn request_head(method: &str, target: &str, extra: &[(&str, &str)]) -> String {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// One parsed response off a byte stream.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length bytes; none for HEAD/304/204).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The first response in `bytes`, if it is all there, and its length.
pub fn try_parse(bytes: &[u8], head_only: bool) -> Option<(RawResponse, usize)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut slots);
    let n = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!(
            "unparsable response ({e}): {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    };
    let status = r.code.unwrap();
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let len = if head_only || status == 304 || status == 204 {
        0
    } else {
        len
    };
    if bytes.len() < n + len {
        return None;
    }
    Some((
        RawResponse {
            status,
            headers,
            body: bytes[n..n + len].to_vec(),
        },
        n + len,
    ))
}

/// Splits `bytes` into consecutive responses. `head_only[i]` says the i-th
/// response answers a HEAD (no body despite Content-Length).
pub fn parse_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let head = head_only.get(out.len()).copied().unwrap_or(false);
        let Some((r, n)) = try_parse(bytes, head) else {
            panic!(
                "truncated response: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        };
        out.push(r);
        bytes = &bytes[n..];
    }
    out
}

/// A GET through hyper's HTTP/1 client: status, headers, body.
pub async fn hyper_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    hyper_request(addr, http::Method::GET, path, headers).await
}

/// A hyper HTTP/1 client connection to `addr`, its driver spawned.
pub async fn hyper_connect(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Any method through hyper's HTTP/1 client.
pub async fn hyper_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    let mut send = hyper_connect(addr).await;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

/// `read` that retries `EINTR`, as every client must. The in-process server
/// makes it happen here: a thread that built a `uring` backend is a user of
/// its rings, and the kernel interrupts that thread's blocking calls with a
/// task-work notification when such a ring closes; a read with a timeout
/// then fails with `EINTR` instead of restarting.
pub trait ReadRetry {
    /// Reads like [`Read::read`], again after `Interrupted`.
    fn read_r(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl<T: Read> ReadRetry for T {
    fn read_r(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

/// Returns once the filesystem's clock has moved past `path`'s mtime and
/// ctime, so that the next change to it gets new ones even where
/// timestamps are as coarse as a kernel tick: a probe file beside it is
/// created until its ctime is later.
pub fn past_timestamps_of(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    let stamp = (m.mtime(), m.mtime_nsec()).max((m.ctime(), m.ctime_nsec()));
    let probe = path.with_file_name(".timestamp-probe");
    wait_for("the filesystem's clock moving on", || {
        let _ = std::fs::remove_file(&probe);
        std::fs::write(&probe, b"").unwrap();
        let p = std::fs::metadata(&probe).unwrap();
        (p.ctime(), p.ctime_nsec()) > stamp
    });
    std::fs::remove_file(&probe).unwrap();
}
