//! Protocol hardening (issue 12): what a strict client or an attacker sees
//! on the wire. Request bodies (one deadline for head and body, 408, chunked
//! bodies decoded and dropped with the connection kept, `Expect:
//! 100-continue`), versions (`HTTP/1.2` as 1.1, `HTTP/2.0` 505),
//! `Transfer-Encoding` (400 when chunked is not final), validators
//! (`Last-Modified` never after `Date`, `If-Range` dates only when strong,
//! `ETag`s equal across replicas), send stall timeouts for in-memory
//! bodies, 503 when the backend cannot start, and the metrics listener's
//! connection cap.
//!
//! These are about HTTP, not about moving file bytes, so they run against
//! one backend (the first under test); the per-backend suites cover the
//! rest.

mod common;
use common::*;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const A_TXT: &[u8] = b"hello from a.txt\n";
const GET_A: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";

fn fixture() -> TempDir {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("a.txt"), A_TXT).unwrap();
    dir
}

fn backend() -> &'static str {
    backends()[0]
}

fn start(root: &Path) -> TestServer {
    TestServer::start(backend(), root, |_| {})
}

/// Reads one whole response off `c` (a HEAD's when `head_only`), keeping
/// any bytes after it in `pending`. Panics on EOF or timeout.
fn read_response(c: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> RawResponse {
    let mut buf = [0u8; 65536];
    loop {
        if let Some((r, n)) = try_parse(pending, head_only) {
            pending.drain(..n);
            return r;
        }
        match c.read_r(&mut buf) {
            Ok(0) => panic!(
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(pending)
            ),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(pending)),
        }
    }
}

/// True when the server closes `c` (EOF or reset) within the socket's read
/// timeout without sending anything more.
fn closes_quietly(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    match c.read_r(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

// ---------------------------------------------------------------------------
// Versions and transfer codings
// ---------------------------------------------------------------------------

#[test]
fn http_1_2_is_served_as_1_1_and_http_2_gets_505() {
    let root = fixture();
    let s = start(root.path());
    // RFC 9110 §2.5: a higher minor version is processed as 1.1,
    // keep-alive included.
    let mut c = s.connect();
    c.write_all(b"GET /a.txt HTTP/1.2\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.9\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    for _ in 0..2 {
        let r = read_response(&mut c, &mut pending, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, A_TXT);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // Another major version in an HTTP/1 request line: 505.
    for req in [
        &b"GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /a.txt HTTP/3.0\r\nHost: x\r\n\r\n",
    ] {
        let got = parse_responses(&s.raw(req), &[false]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, 505, "{:?}", String::from_utf8_lossy(req));
    }
}

#[test]
fn transfer_encoding_must_end_in_chunked() {
    let root = fixture();
    let s = start(root.path());
    let with = |te: &str| {
        format!("POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n")
    };
    // RFC 9112 §6.3: chunked not final → 400 and close.
    for te in ["gzip", "identity", "chunked, gzip", "chunked, chunked"] {
        let got = parse_responses(&s.raw(with(te).as_bytes()), &[false]);
        assert_eq!(got.len(), 1, "{te}");
        assert_eq!(got[0].status, 400, "{te}");
        assert_eq!(got[0].header("connection"), Some("close"), "{te}");
    }
    // Chunked final after a coding not implemented here: 501 (§6.1).
    let got = parse_responses(&s.raw(with("gzip, chunked").as_bytes()), &[false]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 501);
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

#[test]
fn chunked_body_is_read_and_the_connection_kept() {
    let root = fixture();
    let s = start(root.path());
    let mut c = s.connect();
    // A chunked body with extensions and trailers, then a pipelined GET, in
    // one write; then a GET with a chunked body of its own.
    c.write_all(
        b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=\"v\"\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    let first = read_response(&mut c, &mut pending, false);
    assert_eq!(first.status, 405);
    assert_eq!(first.header("connection"), Some("keep-alive"));
    for i in 0..2 {
        let r = read_response(&mut c, &mut pending, false);
        assert_eq!(r.status, 200, "request {}", i + 2);
        assert_eq!(r.body, A_TXT);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // Still usable, a chunked body dribbled in pieces across reads.
    c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab")
        .unwrap();
    c.flush().unwrap();
    // The second piece only once the server has read the first.
    wait_until_server_read(&c);
    c.write_all(b"cd\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut c, &mut pending, false);
    assert_eq!(r.status, 200);
    assert!(pending.is_empty());
}

#[test]
fn chunked_body_over_the_limit_is_413_and_malformed_is_400() {
    let root = fixture();
    let s = start(root.path());
    let head = "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    // The same limit as for a Content-Length body (1 MiB), on the wire.
    let big = format!("{head}{:x}\r\n", zcserve::conn::MAX_DISCARD + 1);
    let got = parse_responses(&s.raw(big.as_bytes()), &[false]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 413);
    // Many small chunks add up the same way.
    let mut many = head.as_bytes().to_vec();
    for _ in 0..(zcserve::conn::MAX_DISCARD / 6 + 1) {
        many.extend_from_slice(b"1\r\nx\r\n");
    }
    let mut c = s.connect();
    let _ = c.write_all(&many);
    let got = parse_responses(&read_to_close(&mut c), &[false]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 413);
    // Malformed framing (a bare LF; a smuggling-style size): 400, closed,
    // and what follows is never answered.
    for body in [
        "5\nhello\r\n0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\n",
    ] {
        let raw = format!("{head}{body}GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let got = parse_responses(&s.raw(raw.as_bytes()), &[false]);
        assert_eq!(got.len(), 1, "{body:?}");
        assert_eq!(got[0].status, 400, "{body:?}");
        assert_eq!(got[0].header("connection"), Some("close"), "{body:?}");
    }
}

/// Sends `head`, then one body byte every 50 ms, until the server answers
/// or closes; returns what it said and when.
fn drip_body(s: &TestServer, head: &[u8], byte: u8) -> (Vec<u8>, Duration) {
    let mut c = s.connect();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    c.write_all(head).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(10) {
        let _ = c.write_all(&[byte]);
        match c.read_r(&mut buf) {
            Ok(0) => return (got, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (got, started.elapsed()),
        }
    }
    panic!("a dripped body held the connection for 10 s: {got:?}");
}

#[test]
fn a_dripped_body_gets_408_at_the_head_deadline() {
    let root = fixture();
    let header = Duration::from_millis(500);
    let s = TestServer::start(backend(), root.path(), |s| {
        s.header_timeout = header;
        s.keepalive_timeout = Duration::from_secs(30);
    });
    for (what, head, byte) in [
        (
            "Content-Length",
            &b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"[..],
            b'x',
        ),
        (
            "chunked",
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n",
            b'x',
        ),
        (
            "chunk extension",
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a",
            b'a',
        ),
    ] {
        let (got, after) = drip_body(&s, head, byte);
        assert!(
            after >= header.mul_f64(0.8) && after < Duration::from_secs(5),
            "{what}: closed after {after:?}, deadline {header:?}"
        );
        let r = parse_responses(&got, &[false]);
        assert_eq!(r.len(), 1, "{what}");
        assert_eq!(r[0].status, 408, "{what}");
        assert_eq!(r[0].header("connection"), Some("close"), "{what}");
    }
}

#[test]
fn expect_100_continue_gets_100_before_the_body() {
    let root = fixture();
    let s = TestServer::start(backend(), root.path(), |s| {
        s.header_timeout = Duration::from_secs(3);
    });
    let mut c = s.connect();
    c.write_all(
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    // The interim response comes before any body byte is sent.
    let mut pending = Vec::new();
    let interim = read_response(&mut c, &mut pending, true);
    assert_eq!(interim.status, 100);
    assert!(pending.is_empty(), "{pending:?}");
    c.write_all(b"hello").unwrap();
    let r = read_response(&mut c, &mut pending, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, A_TXT);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    // A chunked body too; and the connection goes on after it.
    c.write_all(
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c, &mut pending, true).status, 100);
    c.write_all(b"2\r\nhi\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, &mut pending, false).status, 200);
    c.write_all(GET_A).unwrap();
    assert_eq!(read_response(&mut c, &mut pending, false).status, 200);
    // A client that did not wait and sent its body already gets no 100.
    c.write_all(
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    )
    .unwrap();
    assert_eq!(read_response(&mut c, &mut pending, false).status, 200);
}

#[test]
fn expect_100_continue_gets_the_final_status_at_once_when_known() {
    let root = fixture();
    let s = TestServer::start(backend(), root.path(), |s| {
        s.header_timeout = Duration::from_secs(3);
    });
    for (head, want) in [
        (
            "PUT /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            405,
        ),
        (
            "BREW /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (
            "GET /nothing HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            404,
        ),
        (
            "PUT /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
            413,
        ),
    ] {
        // The body is never sent: the answer must come without it, and the
        // connection close (the server cannot know whether it will come).
        let mut c = s.connect();
        c.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut pending = Vec::new();
        let r = read_response(&mut c, &mut pending, false);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{head:?}: answered after {:?}, header timeout 3 s",
            started.elapsed()
        );
        assert_eq!(r.status, want, "{head:?}");
        assert_eq!(r.header("connection"), Some("close"), "{head:?}");
        assert!(pending.is_empty() && closes_quietly(&mut c), "{head:?}");
    }
}

// ---------------------------------------------------------------------------
// Validators
// ---------------------------------------------------------------------------

fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

fn get(s: &TestServer, path: &str, extra: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    let got = parse_responses(&s.raw(req.as_bytes()), &[false]);
    assert_eq!(got.len(), 1);
    got.into_iter().next().unwrap()
}

fn http_date(r: &RawResponse, name: &str) -> SystemTime {
    httpdate::parse_http_date(r.header(name).unwrap_or_else(|| panic!("no {name}"))).unwrap()
}

#[test]
fn last_modified_is_never_later_than_date() {
    let root = fixture();
    let future = SystemTime::now() + Duration::from_secs(86_400 * 365);
    set_mtime(&root.path().join("a.txt"), future);
    let s = start(root.path());
    for _ in 0..2 {
        // Opened afresh, then from the file cache.
        let r = get(&s, "/a.txt", "");
        assert_eq!(r.status, 200);
        assert!(
            http_date(&r, "last-modified") <= http_date(&r, "date"),
            "Last-Modified {:?} after Date {:?}",
            r.header("last-modified"),
            r.header("date")
        );
    }
}

#[test]
fn if_range_with_a_date_needs_a_strong_last_modified() {
    let root = fixture();
    let a = root.path().join("a.txt");
    let s = TestServer::start(backend(), root.path(), |s| s.file_cache = false);
    // A Last-Modified a long second ago is strong: the range is honoured.
    set_mtime(&a, SystemTime::now() - Duration::from_secs(3600));
    let lm = get(&s, "/a.txt", "")
        .header("last-modified")
        .unwrap()
        .to_string();
    let r = get(
        &s,
        "/a.txt",
        &format!("Range: bytes=0-4\r\nIf-Range: {lm}\r\n"),
    );
    assert_eq!((r.status, &r.body[..]), (206, &A_TXT[..5]));
    // A future mtime gets a Last-Modified clamped to Date, which says
    // nothing about the content: never strong, the whole file it is.
    set_mtime(&a, SystemTime::now() + Duration::from_secs(86_400));
    let lm = get(&s, "/a.txt", "")
        .header("last-modified")
        .unwrap()
        .to_string();
    let r = get(
        &s,
        "/a.txt",
        &format!("Range: bytes=0-4\r\nIf-Range: {lm}\r\n"),
    );
    assert_eq!((r.status, &r.body[..]), (200, A_TXT));
}

#[test]
fn etags_are_equal_across_replicas_of_a_tree() {
    // Two copies of one tree, mtimes kept to the nanosecond (rsync -t,
    // cp -p): different inodes, the same validators.
    let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let replicas: Vec<TempDir> = (0..2)
        .map(|_| {
            let root = fixture();
            set_mtime(&root.path().join("a.txt"), mtime);
            root
        })
        .collect();
    let tags: Vec<(String, String)> = replicas
        .iter()
        .map(|root| {
            let s = start(root.path());
            let r = get(&s, "/a.txt", "");
            assert_eq!(r.status, 200);
            (
                r.header("etag").unwrap().to_string(),
                r.header("last-modified").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tags[0], tags[1]);
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(replicas[0].path().join("a.txt"))
        .unwrap()
        .ino();
    assert!(
        !tags[0].0.contains(&format!("{ino:x}")),
        "{tags:?} shows inode {ino:x}"
    );
    // A different size is a different tag, same mtime or not.
    std::fs::write(replicas[1].path().join("a.txt"), b"other\n").unwrap();
    set_mtime(&replicas[1].path().join("a.txt"), mtime);
    let s = start(replicas[1].path());
    assert_ne!(get(&s, "/a.txt", "").header("etag").unwrap(), tags[0].0);
}

// ---------------------------------------------------------------------------
// A server assembled by hand, for what the settings cannot reach: a backend
// that fails on demand, a short send timeout.
// ---------------------------------------------------------------------------

mod by_hand {
    use std::net::SocketAddr;
    use std::os::fd::BorrowedFd;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use nix::errno::Errno;
    use zcserve::access_log::Logger;
    use zcserve::config::{AccessLog, LogFormat};
    use zcserve::conn::ServerState;
    use zcserve::fs::{Policy, Root};
    use zcserve::http::file_cache::FileCache;
    use zcserve::http::range::DEFAULT_MAX_RANGES;
    use zcserve::site::Site;
    use zcserve_core::{ByteRange, Pump, Session, Source, Stats, Syscall, Transfer, TransferError};

    /// A real backend that can be told to fail the way one out of
    /// descriptors does: in `start`, or in the first pump before any byte.
    pub struct Flaky {
        pub inner: Arc<dyn Transfer>,
        pub fail_start: AtomicBool,
        pub fail_pump: AtomicBool,
    }

    struct FailingSession {
        stats: Arc<Stats>,
        total: u64,
    }

    impl Session for FailingSession {
        fn pump(&mut self, _sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
            Err(TransferError::sys(Syscall::Pipe, Errno::EMFILE))
        }
        fn remaining(&self) -> u64 {
            self.total
        }
        fn stats(&self) -> &Stats {
            &self.stats
        }
    }

    impl Transfer for Flaky {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn stats(&self) -> &Arc<Stats> {
            self.inner.stats()
        }
        fn start(
            &self,
            source: &Source,
            range: ByteRange,
            prefix: Vec<u8>,
        ) -> Result<Box<dyn Session>, TransferError> {
            if self.fail_start.load(Ordering::SeqCst) {
                return Err(TransferError::sys(Syscall::Pipe, Errno::EMFILE));
            }
            if self.fail_pump.load(Ordering::SeqCst) {
                return Ok(Box::new(FailingSession {
                    stats: self.inner.stats().clone(),
                    total: prefix.len() as u64 + range.len(),
                }));
            }
            self.inner.start(source, range, prefix)
        }
    }

    pub fn flaky() -> Arc<Flaky> {
        let backend: zcserve_backends::Backend = super::backend().parse().unwrap();
        Arc::new(Flaky {
            inner: backend.build(&zcserve_backends::Config::default()).unwrap(),
            fail_start: AtomicBool::new(false),
            fail_pump: AtomicBool::new(false),
        })
    }

    /// `conn::serve` on every connection to `addr`, on a thread of its own.
    pub struct Server {
        pub addr: SocketAddr,
        pub state: Arc<ServerState>,
        stop: Option<tokio::sync::watch::Sender<bool>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Server {
        pub fn start(root: &Path, backend: Arc<dyn Transfer>, send_timeout: Duration) -> Server {
            let state = Arc::new(ServerState {
                site: Site {
                    root: Root::open(root).unwrap(),
                    policy: Policy::default(),
                    listing: true,
                    max_ranges: DEFAULT_MAX_RANGES,
                    listing_max_entries: 10_000,
                    cache: FileCache::off(),
                    precompressed: Vec::new(),
                    listing_show_sidecars: false,
                    rules: zcserve::site_rules::SiteRules::default(),
                },
                backend,
                header_timeout: Duration::from_secs(10),
                keepalive_timeout: Duration::from_secs(10),
                send_timeout,
                notsent_lowat: Some(16 * 1024),
                log: Logger::start(&AccessLog::Off, LogFormat::Combined).unwrap(),
                metrics: Arc::default(),
                clock: zcserve::clock::Clock::coarse(),
                disk: zcserve::disk_work::DiskWork::off(),
            });
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::watch::channel(false);
            let st = state.clone();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let mut stopping = rx.clone();
                    loop {
                        tokio::select! {
                            a = listener.accept() => {
                                let (stream, peer) = a.unwrap();
                                tokio::spawn(zcserve::conn::serve(stream, peer, st.clone(), rx.clone()));
                            }
                            _ = stopping.wait_for(|s| *s) => return,
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            });
            Server {
                addr,
                state,
                stop: Some(tx),
                thread: Some(thread),
            }
        }

        pub fn connect(&self) -> std::net::TcpStream {
            let s = std::net::TcpStream::connect(self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            if let Some(tx) = self.stop.take() {
                let _ = tx.send(true);
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[test]
fn backend_failing_to_start_gets_503_and_is_counted() {
    use std::sync::atomic::Ordering;
    let root = fixture();
    let flaky = by_hand::flaky();
    let s = by_hand::Server::start(root.path(), flaky.clone(), Duration::from_secs(10));
    let ask = |req: &[u8]| {
        let mut c = s.connect();
        c.write_all(req).unwrap();
        parse_responses(&read_to_close(&mut c), &[false])
    };
    let get_a = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let multipart = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,4-5\r\n\r\n";
    let mut failures = 0;
    // In `start` (a pipe or ring that cannot be made), for a whole file
    // and for the first part of a multipart body; and in a pump that fails
    // before any byte left.
    for (flag, req) in [
        (&flaky.fail_start, &get_a[..]),
        (&flaky.fail_start, &multipart[..]),
        (&flaky.fail_pump, &get_a[..]),
        (&flaky.fail_pump, &multipart[..]),
    ] {
        flag.store(true, Ordering::SeqCst);
        let got = ask(req);
        flag.store(false, Ordering::SeqCst);
        failures += 1;
        assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(got[0].status, 503);
        assert_eq!(got[0].header("connection"), Some("close"));
    }
    let m = &s.state.metrics;
    assert_eq!(m.responses(503), failures);
    assert_eq!(m.backend_unavailable.load(Ordering::Relaxed), failures);
    assert_eq!(m.aborted.load(Ordering::Relaxed), 0);
    let text = m.render(&[("x", Default::default())], 0);
    assert!(
        text.contains(&format!("zcserve_backend_unavailable_total {failures}\n")),
        "{text}"
    );
    // And then it serves again.
    let got = ask(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((got[0].status, &got[0].body[..]), (200, A_TXT));
}

#[test]
fn in_memory_bodies_have_a_stall_timeout_not_a_total_one() {
    // A listing big enough to stay mostly in user space behind a small
    // receive window, read slowly but steadily for several times the send
    // timeout: it must arrive whole.
    let root = TempDir::new();
    let dir = root.path().join("big");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..1000 {
        std::fs::write(dir.join(format!("{i:05}-{}", "n".repeat(200))), b"").unwrap();
    }
    let send_timeout = Duration::from_millis(500);
    let s = by_hand::Server::start(root.path(), by_hand::flaky(), send_timeout);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /big/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read_r(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        // At most 400 KB/s: far from a stall, far below the link's speed.
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let r = parse_responses(&got, &[false]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert!(
        r[0].body.len() > 400_000,
        "listing of {} bytes",
        r[0].body.len()
    );
    assert!(
        took > send_timeout * 2,
        "read in {took:?}: the body fitted the socket buffers, so this proves nothing"
    );
}

// ---------------------------------------------------------------------------
// The access log's queue
// ---------------------------------------------------------------------------

#[test]
fn access_log_queue_is_bounded_in_bytes_and_never_blocks() {
    use std::io::Read;
    use zcserve::access_log::{Entry, Logger};
    use zcserve::config::{AccessLog, LogFormat};
    // The log goes into a FIFO nobody reads yet: the writer thread stalls
    // once the pipe and its own buffer are full, as on a stuck disk.
    let dir = TempDir::new();
    let fifo = dir.path().join("log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (gate, wait) = std::sync::mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).unwrap();
            wait.recv().unwrap();
            let mut all = Vec::new();
            f.read_to_end(&mut all).unwrap();
            all
        })
    };
    let log = Logger::start(&AccessLog::File(fifo), LogFormat::Combined).unwrap();
    // Lines of 16 KiB (a long target): 2,000 of them are 32 MiB, a few
    // hundred lines of queue by bytes though far fewer than any line cap.
    let target = format!("/{}", "t".repeat(16 * 1024));
    let entry = Entry {
        peer: "127.0.0.1:1".parse().unwrap(),
        method: "GET",
        target: &target,
        version: "HTTP/1.1",
        status: 200,
        bytes: 1,
        referer: None,
        user_agent: None,
        duration: Duration::ZERO,
    };
    let lines = 2000u64;
    let mut most_queued = 0;
    for _ in 0..lines {
        log.log(&entry);
        most_queued = most_queued.max(log.queued_bytes());
    }
    let dropped = log.dropped();
    assert!(dropped > 0, "nothing dropped behind a stalled writer");
    assert!(
        most_queued <= zcserve::access_log::QUEUE_BYTES,
        "{most_queued} bytes queued"
    );
    // Everything not dropped is written once the reader reads.
    drop(log);
    gate.send(()).unwrap();
    let written = reader.join().unwrap();
    let written_lines = written
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    assert_eq!(written_lines, lines - dropped);
    assert!(written_lines > 100, "only {written_lines} lines kept");
}

// ---------------------------------------------------------------------------
// The metrics listener
// ---------------------------------------------------------------------------

#[test]
fn metrics_listener_serves_a_bounded_number_of_connections() {
    use std::sync::atomic::Ordering;
    // metrics_http::MAX_CONNECTIONS (the module is private).
    const CAP: usize = 16;
    let root = fixture();
    let s = TestServer::start(backend(), root.path(), |s| {
        s.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = s.metrics_addr.unwrap();
    let connect = || {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c
    };
    // CAP clients that connect and say nothing hold every slot (accepted in
    // the order they connected).
    let mut idle: Vec<TcpStream> = (0..CAP).map(|_| connect()).collect();
    // One more is closed at once, without an answer.
    for _ in 0..3 {
        let mut c = connect();
        assert!(closes_quietly(&mut c), "connection past the cap left open");
    }
    // A slot given back is a connection served again.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let got = read_to_close(&mut c);
        if !got.is_empty() {
            let r = parse_responses(&got, &[false]);
            assert_eq!(r[0].status, 200);
            let text = String::from_utf8_lossy(&r[0].body).into_owned();
            let refused = s.metrics.metrics_refused.load(Ordering::Relaxed);
            assert!(refused >= 3, "{refused}");
            assert!(
                text.contains("zcserve_metrics_connections_refused_total "),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no slot came back");
        std::thread::sleep(Duration::from_millis(20));
    }
}
