//! The connection's deadlines: the time to send a request head and the
//! idle time between keep-alive requests. Each connection keeps one timer
//! for its whole life and re-arms it lazily (it may fire early and be
//! pushed back), so these check that neither deadline is enforced early or
//! forgotten, whatever order they come in.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const GET: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";

fn fixture() -> TempDir {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("a.txt"), b"hello\n").unwrap();
    dir
}

/// Sends one request and reads its response (a 6-byte body).
fn round_trip(c: &mut TcpStream, what: &str) {
    c.write_all(GET).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((r, n)) = try_parse(&got, false) {
            assert_eq!(r.status, 200, "{what}");
            assert_eq!(n, got.len(), "{what}: extra bytes");
            return;
        }
        match c.read_r(&mut buf) {
            Ok(0) => panic!("{what}: connection closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// How long until the server closes `c` (reading and keeping what it
/// sends), or `None` if it is still open after `limit`.
fn time_to_close(c: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (None, got);
        }
        c.set_read_timeout(Some(left)).unwrap();
        match c.read_r(&mut buf) {
            Ok(0) => return (Some(start.elapsed()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (Some(start.elapsed()), got);
            }
            Err(_) => return (None, got),
        }
    }
}

#[test]
fn keep_alive_outlives_the_first_head_deadline_and_then_expires() {
    let root = fixture();
    let header = Duration::from_millis(300);
    let idle = Duration::from_millis(1200);
    for b in backends() {
        let s = TestServer::start(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = idle;
        });
        let mut c = s.connect();
        round_trip(&mut c, b);
        // Past the first request's head deadline: the timer armed for it
        // fires here and must only be pushed back, not close the idle
        // connection.
        std::thread::sleep(header * 2);
        round_trip(&mut c, b);
        let (closed, _) = time_to_close(&mut c, idle * 4);
        let closed = closed.unwrap_or_else(|| panic!("{b}: idle connection never closed"));
        assert!(
            closed >= idle.mul_f64(0.8),
            "{b}: idle connection closed after {closed:?}, keep-alive timeout {idle:?}"
        );
    }
}

#[test]
fn a_stalled_keep_alive_head_gets_408_after_the_head_deadline() {
    let root = fixture();
    let header = Duration::from_millis(400);
    let idle = Duration::from_secs(30);
    for b in backends() {
        let s = TestServer::start(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = idle;
        });
        let mut c = s.connect();
        round_trip(&mut c, b);
        // Idle for longer than the head deadline: that is the keep-alive
        // timeout's business, not the head's.
        std::thread::sleep(header * 2);
        round_trip(&mut c, b);
        // Half a head: the head deadline now counts from its first byte,
        // although the armed timer is the much later idle one.
        c.write_all(b"GET /a.txt HTTP/1.1\r\n").unwrap();
        let (closed, got) = time_to_close(&mut c, Duration::from_secs(10));
        let closed = closed.unwrap_or_else(|| panic!("{b}: stalled head never refused"));
        assert!(
            closed >= header.mul_f64(0.8) && closed < Duration::from_secs(5),
            "{b}: stalled head refused after {closed:?}, head deadline {header:?}"
        );
        let r = parse_responses(&got, &[false]);
        assert_eq!(r.len(), 1, "{b}: one answer to the stalled head");
        assert_eq!(r[0].status, 408, "{b}: stalled head");
    }
}

#[test]
fn first_head_deadline_counts_from_accept() {
    let root = fixture();
    let header = Duration::from_millis(400);
    for b in backends() {
        let s = TestServer::start(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = Duration::from_secs(30);
        });
        // A client that connects and says nothing is closed without a word
        // once the head deadline passes (it never started a request).
        let mut c = s.connect();
        let (closed, got) = time_to_close(&mut c, Duration::from_secs(10));
        let closed = closed.unwrap_or_else(|| panic!("{b}: silent client never closed"));
        assert!(
            closed >= header.mul_f64(0.8) && closed < Duration::from_secs(5),
            "{b}: silent client closed after {closed:?}, head deadline {header:?}"
        );
        assert!(got.is_empty(), "{b}: silent client got {got:?}");
    }
}
