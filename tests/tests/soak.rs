//! 10,000 transfers per backend, some dropped mid-flight, through one
//! long-lived socket: neither memory nor descriptors may grow once the
//! pools are warm. For `uring` this is the check that cancelled chains give
//! back their lanes (ring and pipe) or close them, never pile them up.
//! Alone in its binary so that no other test allocates or opens
//! descriptors while it measures.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zcserve_backends::Config;
use zcserve_core::{ByteRange, Pump, blocking};
use zcserve_tests::{STALL, TestFile, backends, open_fds};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn ten_thousand_transfers_grow_neither_memory_nor_descriptors() {
    let file = TestFile::random(48 << 10, 5);
    for backend in backends(&Config::default()) {
        let (send, recv) = UnixStream::pair().unwrap();
        let drain = std::thread::spawn(move || {
            let mut recv = recv;
            let mut buf = vec![0; 256 << 10];
            let mut total = 0u64;
            loop {
                match recv.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        });
        let (mut rss_warm, mut fds_warm) = (0, 0);
        for i in 0..10_000u32 {
            if i == 1_000 {
                assert!(backend.quiesce(STALL), "{}: never quiesced", backend.name());
                (rss_warm, fds_warm) = (rss_kib(), open_fds());
            }
            let mut s = backend
                .start(
                    &file.source(),
                    ByteRange::full(48 << 10),
                    b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
                )
                .unwrap();
            if i % 10 == 0 {
                // Dropped after one pump, work possibly still in flight.
                // The drain may still be behind the last transfer: wait
                // until the socket has room, so that the pump must move
                // bytes (or start a chain) rather than find it full.
                let mut fds = [PollFd::new(send.as_fd(), PollFlags::POLLOUT)];
                let ms = u16::try_from(STALL.as_millis()).unwrap_or(u16::MAX);
                assert_eq!(
                    poll(&mut fds, PollTimeout::from(ms)).unwrap(),
                    1,
                    "the drain stalled"
                );
                let p = s.pump(send.as_fd()).unwrap();
                assert_ne!(p, Pump::WouldBlock, "{}", backend.name());
            } else {
                blocking::send_all(s.as_mut(), send.as_fd(), Some(STALL)).unwrap();
            }
        }
        // A dropped uring session's lane stays open until the reaper has
        // seen its cancelled chain finish: late, not leaked.
        assert!(
            backend.quiesce(STALL),
            "{}: dropped sessions' work never finished",
            backend.name()
        );
        let (rss, fds) = (rss_kib(), open_fds());
        drop(send);
        let received = drain.join().unwrap();
        eprintln!(
            "{}: RSS {rss_warm} -> {rss} KiB, fds {fds_warm} -> {fds}, {} MiB received",
            backend.name(),
            received >> 20
        );
        assert_eq!(fds, fds_warm, "{}: descriptors grew", backend.name());
        assert!(
            rss <= rss_warm + 4096,
            "{}: RSS grew from {rss_warm} KiB to {rss} KiB over 9,000 transfers",
            backend.name()
        );
    }
}
