//! What only a completion-based backend can get wrong: work still in the
//! kernel when a session is dropped. Where the kernel refuses io_uring these
//! fail, unless the suite was built with `ZCSERVE_ALLOW_SKIP=uring` (see
//! [`zcserve_tests::under_test`]).

use std::os::fd::AsFd;

use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, Pump, Syscall};
use zcserve_tests::{
    Driver, Link, SockKind, Speed, TestFile, expected, pump_until_full, small_config, transfer,
};

const MIB: u64 = 1 << 20;

/// The uring backend, or None when this machine cannot run it and the
/// suite was built allowing the skip (otherwise the test fails here).
fn uring(config: &Config) -> Option<std::sync::Arc<dyn zcserve_core::Transfer>> {
    zcserve_tests::under_test(Backend::Uring).then(|| Backend::Uring.build(config).unwrap())
}

/// A session dropped while its chain waits in the kernel for a full socket:
/// the drop returns (the chain is cancelled, its completions reaped), the
/// peer then sees only a prefix of the right bytes, never bytes of a later
/// response through a reused pipe, and the next session is exact.
#[test]
fn a_session_dropped_mid_flight_cancels_its_chain_and_spoils_nothing() {
    for config in [small_config(), Config::default()] {
        let Some(backend) = uring(&config) else {
            return;
        };
        for kind in [SockKind::Tcp, SockKind::Unix] {
            let file = TestFile::random(4 * MIB as usize, 11);
            let head = b"HTTP/1.1 200 OK\r\n\r\n";
            let link = Link::new(kind, Some(4096));
            let mut s = backend
                .start(&file.source(), ByteRange::full(4 * MIB), head.to_vec())
                .unwrap();
            pump_until_full(s.as_mut(), link.fd()).unwrap();
            let sent_before = 4 * MIB + head.len() as u64 - s.remaining();
            let enters = backend.stats().snapshot().syscalls(Syscall::UringEnter);
            drop(s);
            let cancel_enters = backend.stats().snapshot().syscalls(Syscall::UringEnter) - enters;
            assert!(cancel_enters >= 1, "no cancellation was submitted");
            let (send, reader) = link.read_all(Speed::Fast);
            drop(send);
            let got = reader.finish().unwrap();
            let want = expected(&file, ByteRange::full(4 * MIB), head);
            assert!(got.len() as u64 >= sent_before, "{kind:?}");
            assert!(
                want.starts_with(&got),
                "{kind:?}: the peer got bytes that are not a prefix of the response"
            );
            // The lane (ring and pipe) of the dropped session is either
            // back, empty, in the pool or closed: the next transfers on
            // this backend are exact.
            for (i, len) in [1usize, 70_000, 300_000].into_iter().enumerate() {
                let other = TestFile::random(len, 100 + i as u64);
                let out = transfer(
                    backend.as_ref(),
                    &other,
                    ByteRange::full(len as u64),
                    b"next",
                    Link::new(kind, None),
                    Speed::Fast,
                    Driver::Tokio,
                );
                assert_eq!(out.result.unwrap(), len as u64 + 4);
                assert!(out.received == expected(&other, ByteRange::full(len as u64), b"next"));
            }
        }
    }
}

/// The driver contract: a uring session answers `Pending` (never
/// `WouldBlock`) once its head is out, names a completion descriptor, and
/// keeps the same one until it is dropped.
#[test]
fn pending_comes_with_one_stable_completion_fd() {
    let Some(backend) = uring(&Config::default()) else {
        return;
    };
    let file = TestFile::random(3 * MIB as usize, 12);
    let link = Link::new(SockKind::Unix, Some(64 << 10));
    let mut s = backend
        .start(&file.source(), ByteRange::full(3 * MIB), Vec::new())
        .unwrap();
    assert!(s.completion_fd().is_none(), "no ring before the first pump");
    assert_eq!(s.pump(link.fd()).unwrap(), Pump::Pending);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s.completion_fd().unwrap());
    let (send, reader) = link.read_all(Speed::Fast);
    loop {
        match s.pump(send.as_fd()).unwrap() {
            Pump::Done => break,
            Pump::Pending => {
                let now = s.completion_fd().unwrap();
                assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&now), fd);
                let mut fds = [nix::poll::PollFd::new(now, nix::poll::PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
            }
            other => panic!("uring answered {other:?}"),
        }
    }
    drop(s);
    drop(send);
    assert_eq!(reader.finish().unwrap().len() as u64, 3 * MIB);
}
