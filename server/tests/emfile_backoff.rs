//! Out of descriptors, the accept loop backs off instead of spinning: with
//! the process at its descriptor limit, a pending connection makes
//! `accept` fail with EMFILE once, and again exactly once per back-off
//! period of (paused) time, never in between; once descriptors are free
//! the connection is accepted and served.
//!
//! This lowers the descriptor limit of the whole test process, so it is a
//! test binary of its own.

mod common;
use common::*;

use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The accept loop's pause after EMFILE (`server.rs`).
const BACKOFF: Duration = Duration::from_millis(100);
const MS: Duration = Duration::from_millis(1);

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: libc::rlimit) {
    // SAFETY: setrlimit only reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Leaves the process with no free descriptor: the soft limit just above
/// the highest descriptor open, every free number below it taken by
/// `/dev/null`. Returns what holds them.
fn use_up_descriptors() -> Vec<File> {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    set_nofile(libc::rlimit {
        rlim_cur: highest + 8,
        ..nofile()
    });
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return fillers,
            Err(e) => panic!("opening /dev/null: {e}"),
        }
    }
}

#[test]
fn accept_backs_off_while_out_of_descriptors() {
    let root = TempDir::new();
    std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
    // The accept loop is the same for every backend.
    let b = backends()[0];
    let s = TestServer::start_paused(b, root.path(), |_| {});
    let errors = || s.metrics.accept_errors.load(Ordering::Relaxed);
    let accepted = || s.metrics.accepted.load(Ordering::Relaxed);
    // The client's socket exists before the descriptors run out.
    let late = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();

    let saved = nofile();
    let fillers = use_up_descriptors();
    late.connect(&s.addr.into()).unwrap();
    wait_for("accept failing with EMFILE", || errors() == 1);
    // Time stands still: a loop that did not back off would have failed
    // again by now, and again.
    s.advance(Duration::ZERO);
    assert_eq!(errors(), 1, "accept retried without pausing");
    s.advance(BACKOFF - MS);
    assert_eq!(errors(), 1, "accept retried before the back-off ended");
    s.advance(MS);
    assert_eq!(errors(), 2, "one retry when the back-off ended");
    assert_eq!(accepted(), 0, "accepted with no descriptor free");

    // Descriptors come back: the next retry accepts the waiting client.
    drop(fillers);
    set_nofile(saved);
    s.advance(BACKOFF);
    assert_eq!(
        (errors(), accepted()),
        (2, 1),
        "accepted after the back-off"
    );
    let mut c = TcpStream::from(late);
    c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = parse_responses(&read_to_close(&mut c), &[]);
    assert_eq!(
        (r[0].status, r[0].body.as_slice()),
        (200, &b"hello"[..]),
        "{b}: the client that waited out EMFILE"
    );
}
