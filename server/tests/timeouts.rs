//! The connection's deadlines: the time to send a request head and the
//! idle time between keep-alive requests. Each connection keeps one timer
//! for its whole life and re-arms it lazily (it may fire early and be
//! pushed back), so these check that neither deadline is enforced early or
//! forgotten, whatever order they come in.
//!
//! Time is tokio's, paused: it moves only when a test says so, so each
//! deadline is checked to the millisecond on either side, however slow the
//! machine. What the server has seen is established from the kernel's
//! socket queues, never by waiting.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const GET: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
const MS: Duration = Duration::from_millis(1);

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

/// Reads what the server sends until it closes `c`, which it must do now.
fn closed_now(c: &mut TcpStream, what: &str) -> Vec<u8> {
    let (got, closed) = read_until_closed(c);
    assert!(closed, "{what}: still open, got {got:?}");
    got
}

#[test]
fn keep_alive_outlives_the_first_head_deadline_and_then_expires() {
    let root = fixture();
    let header = Duration::from_secs(10);
    let idle = Duration::from_secs(60);
    for b in backends() {
        let s = TestServer::start_paused(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = idle;
        });
        let mut c = s.connect();
        round_trip(&mut c, b);
        // Past the first request's head deadline: the timer armed for it
        // fires here and must only be pushed back, not close the idle
        // connection.
        s.advance(header * 2);
        round_trip(&mut c, &format!("{b}: after the first head deadline"));
        // Idle from here: open until the last moment of the keep-alive
        // time, closed without a word at its end.
        s.advance(idle - MS);
        assert_open_and_silent(&c, &format!("{b}: {MS:?} before the idle deadline"));
        s.advance(MS);
        let got = closed_now(&mut c, &format!("{b}: at the idle deadline"));
        assert!(got.is_empty(), "{b}: idle close sent {got:?}");
    }
}

#[test]
fn a_stalled_keep_alive_head_gets_408_after_the_head_deadline() {
    let root = fixture();
    let header = Duration::from_secs(10);
    let idle = Duration::from_secs(600);
    for b in backends() {
        let s = TestServer::start_paused(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = idle;
        });
        let mut c = s.connect();
        round_trip(&mut c, b);
        // Idle for longer than the head deadline: that is the keep-alive
        // timeout's business, not the head's.
        s.advance(header * 2);
        round_trip(&mut c, &format!("{b}: idle past the head deadline"));
        // Half a head: the head deadline now counts from its first byte,
        // although the armed timer is the much later idle one.
        c.write_all(b"GET /a.txt HTTP/1.1\r\n").unwrap();
        wait_until_server_read(&c);
        s.advance(header - MS);
        assert_open_and_silent(&c, &format!("{b}: {MS:?} before the head deadline"));
        s.advance(MS);
        let got = closed_now(&mut c, &format!("{b}: at the head deadline"));
        let r = parse_responses(&got, &[false]);
        assert_eq!(r.len(), 1, "{b}: one answer to the stalled head");
        assert_eq!(r[0].status, 408, "{b}: stalled head");
    }
}

#[test]
fn first_head_deadline_counts_from_accept() {
    let root = fixture();
    let header = Duration::from_secs(10);
    for b in backends() {
        let s = TestServer::start_paused(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = Duration::from_secs(600);
        });
        // A client that connects and says nothing is closed without a word
        // once the head deadline passes (it never started a request).
        let mut c = s.connect();
        wait_for("the server accepting the connection", || {
            s.metrics
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed)
                == 1
        });
        s.advance(header - MS);
        assert_open_and_silent(&c, &format!("{b}: {MS:?} before the head deadline"));
        s.advance(MS);
        let got = closed_now(&mut c, &format!("{b}: at the head deadline"));
        assert!(got.is_empty(), "{b}: silent client got {got:?}");
    }
}

/// A head that arrives in pieces, each well within the head deadline, is
/// still refused once the deadline from its first byte has passed: the
/// deadline is for the whole head, not for each read.
#[test]
fn a_head_trickled_in_gets_408_at_the_deadline_from_its_first_byte() {
    let root = fixture();
    let header = Duration::from_secs(10);
    for b in backends() {
        let s = TestServer::start_paused(b, root.path(), |s| {
            s.header_timeout = header;
            s.keepalive_timeout = Duration::from_secs(600);
        });
        let mut c = s.connect();
        round_trip(&mut c, b);
        let step = header / 4;
        for (i, piece) in [&b"GET /a.txt"[..], b" HTTP/1.1\r\n", b"Host: x\r\n"]
            .iter()
            .enumerate()
        {
            c.write_all(piece).unwrap();
            wait_until_server_read(&c);
            if i < 2 {
                s.advance(step);
            }
        }
        // 2 steps have passed since the first byte.
        s.advance(header - step * 2 - MS);
        assert_open_and_silent(&c, &format!("{b}: {MS:?} before the head deadline"));
        s.advance(MS);
        let got = closed_now(&mut c, &format!("{b}: at the head deadline"));
        let r = parse_responses(&got, &[false]);
        assert_eq!(
            r.iter().map(|r| r.status).collect::<Vec<_>>(),
            [408],
            "{b}: trickled head"
        );
    }
}
