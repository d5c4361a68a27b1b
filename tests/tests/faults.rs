//! Faults, each for every backend: the file shrinking or growing under a
//! transfer, the peer leaving early, offsets past 4 GiB, empty ranges and
//! ranges past the end. Each ends in the right bytes or a typed error,
//! never a hang or a dead process.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use zcserve_backends::Config;
use zcserve_core::{ByteRange, Source, Transfer, TransferError};
use zcserve_tests::{
    Driver, Link, Reader, SockKind, Speed, TempDir, TestFile, backends, drive, expected,
    pump_until_full, small_config, transfer,
};

const MIB: u64 = 1 << 20;

fn all() -> Vec<Arc<dyn Transfer>> {
    let mut v = backends(&Config::default());
    v.extend(backends(&small_config()));
    v
}

/// Starts a 4 MiB transfer into a small socket nobody reads yet, pumps until
/// the socket is full, then lets `change` alter the file, then reads and
/// drives the rest. Returns the driver's result and the bytes received.
/// Returns the file, what the driver's pumps returned, the bytes the peer
/// got, and what the session had left to send when the file was changed.
fn with_change_mid_transfer(
    backend: &dyn Transfer,
    kind: SockKind,
    change: impl FnOnce(&TestFile),
) -> (TestFile, Result<u64, TransferError>, Vec<u8>, u64) {
    let file = TestFile::random(4 * MIB as usize, 7);
    let link = Link::new(kind, Some(4096));
    let mut session = backend
        .start(&file.source(), ByteRange::full(4 * MIB), Vec::new())
        .unwrap();
    pump_until_full(session.as_mut(), link.fd())
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
    assert!(
        session.remaining() > 2 * MIB,
        "{}: too much sent before the change",
        backend.name()
    );
    let left = session.remaining();
    change(&file);
    let (send, reader) = link.read_all(Speed::Fast);
    let result = drive(session.as_mut(), &send, kind, Driver::Blocking);
    drop(session);
    drop(send);
    (file, result, reader.finish().unwrap(), left)
}

#[test]
fn file_truncated_mid_transfer_is_a_clear_error() {
    for backend in all() {
        for kind in [SockKind::Tcp, SockKind::Unix] {
            let (file, result, got, _) = with_change_mid_transfer(backend.as_ref(), kind, |f| {
                OpenOptions::new()
                    .write(true)
                    .open(&f.path)
                    .unwrap()
                    .set_len(2 * MIB)
                    .unwrap();
            });
            let name = backend.name();
            match result {
                Err(TransferError::FileShrank { offset, end }) => {
                    assert_eq!((offset, end), (2 * MIB, 4 * MIB), "{name} {kind:?}");
                }
                other => panic!("{name} {kind:?}: expected FileShrank, got {other:?}"),
            }
            // Everything before the new end arrived, nothing after it.
            assert_eq!(got.len() as u64, 2 * MIB, "{name} {kind:?}");
            assert!(
                got[..] == file.data[..got.len()],
                "{name} {kind:?}: bytes differ"
            );
        }
    }
}

#[test]
fn file_grown_mid_transfer_sends_exactly_the_range() {
    for backend in all() {
        let (file, result, got, left) =
            with_change_mid_transfer(backend.as_ref(), SockKind::Unix, |f| {
                let w = OpenOptions::new().append(true).open(&f.path).unwrap();
                w.write_at(&[0xAA; 65536], 4 * MIB).unwrap();
            });
        // The session ends with nothing left of the range (one that
        // ended early would have the driver count less than was left at
        // the change), and the bytes check shows none of the growth went
        // out. The backends that count a send when it returns had sent
        // some of the range before the change; `uring` may still have had
        // its first chain in flight then, with nothing counted yet.
        let sent = result.unwrap();
        assert_eq!(sent, left, "{}", backend.name());
        if backend.name() != "uring" {
            assert!(left < 4 * MIB, "{}: nothing sent before", backend.name());
        }
        assert!(got == file.data, "{}: bytes differ", backend.name());
    }
}

#[test]
fn peer_closing_early_is_epipe_or_reset_and_the_process_lives() {
    for backend in all() {
        for kind in [SockKind::Tcp, SockKind::Unix] {
            for driver in [Driver::Blocking, Driver::Tokio] {
                let file = TestFile::random(8 * MIB as usize, 3);
                let link = Link::new(kind, Some(16 << 10));
                let kind_ = link.kind;
                let (send, recv) = (link.send, link.recv);
                // A reader that takes 100 KiB and hangs up.
                let reader = std::thread::spawn(move || {
                    let mut f = std::fs::File::from(recv);
                    let mut buf = vec![0; 100 << 10];
                    std::io::Read::read_exact(&mut f, &mut buf).unwrap();
                });
                let mut session = backend
                    .start(
                        &file.source(),
                        ByteRange::full(8 * MIB),
                        b"HEAD\r\n\r\n".to_vec(),
                    )
                    .unwrap();
                let r = drive(session.as_mut(), &send, kind_, driver);
                reader.join().unwrap();
                let e = r.expect_err("the peer left before 8 MiB");
                assert!(
                    e.is_peer_gone(),
                    "{} {kind:?} {driver:?}: {e}",
                    backend.name()
                );
                // The session is over: pumping again sends nothing.
                assert!(matches!(
                    session.pump(send.as_fd()),
                    Err(TransferError::SessionFailed)
                ));
            }
        }
    }
}

#[test]
fn offsets_past_4_gib_in_a_sparse_file() {
    let dir = TempDir::new();
    let path = dir.path().join("sparse.bin");
    let at = 5 * 1024 * MIB + 12345;
    let marker = zcserve_tests::content(300 << 10, 99);
    {
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(&marker, at).unwrap();
        f.set_len(at + marker.len() as u64 + 4096).unwrap();
    }
    let file = Arc::new(std::fs::File::open(&path).unwrap());
    let source = Source::new(file).unwrap();
    // From a little before the marker (zeros) into the zeros after it.
    let range = ByteRange::new(at - 5000, at + marker.len() as u64 + 100).unwrap();
    let mut want = vec![0u8; 5000];
    want.extend_from_slice(&marker);
    want.extend_from_slice(&[0; 100]);
    for backend in all() {
        for driver in [Driver::Blocking, Driver::Tokio] {
            let link = Link::new(SockKind::Tcp, None);
            let kind = link.kind;
            let (send, reader) = link.read_all(Speed::Fast);
            let mut session = backend.start(&source, range, Vec::new()).unwrap();
            let sent = drive(session.as_mut(), &send, kind, driver).unwrap();
            drop(send);
            let got = reader.finish().unwrap();
            assert_eq!(sent, want.len() as u64, "{}", backend.name());
            assert!(
                got == want,
                "{} {driver:?}: bytes differ past 4 GiB",
                backend.name()
            );
        }
    }
}

#[test]
fn empty_ranges_send_only_the_prefix() {
    let file = TestFile::random(10_000, 5);
    for backend in all() {
        for range in [
            ByteRange::new(0, 0).unwrap(),
            ByteRange::new(5000, 5000).unwrap(),
            ByteRange::new(10_000, 10_000).unwrap(),
        ] {
            for prefix in [&b""[..], b"HTTP/1.1 204 No Content\r\n\r\n"] {
                let out = transfer(
                    backend.as_ref(),
                    &file,
                    range,
                    prefix,
                    Link::new(SockKind::Tcp, None),
                    Speed::Fast,
                    Driver::Tokio,
                );
                assert_eq!(out.result.unwrap(), prefix.len() as u64);
                assert_eq!(out.received, expected(&file, range, prefix));
            }
        }
    }
}

#[test]
fn range_past_eof_is_refused_before_any_byte() {
    let file = TestFile::random(10_000, 5);
    for backend in all() {
        let before = backend.stats().snapshot();
        for range in [
            ByteRange::new(0, 10_001).unwrap(),
            ByteRange::new(10_001, 10_001).unwrap(),
            ByteRange::new(u64::MAX - 1, u64::MAX).unwrap(),
        ] {
            let out = transfer(
                backend.as_ref(),
                &file,
                range,
                b"HTTP/1.1 200 OK\r\n\r\n",
                Link::new(SockKind::Unix, None),
                Speed::Fast,
                Driver::Blocking,
            );
            match out.result {
                Err(TransferError::RangePastEof { range: r, file_len }) => {
                    assert_eq!((r, file_len), (range, 10_000));
                }
                other => panic!("{}: {range}: {other:?}", backend.name()),
            }
            assert!(out.received.is_empty(), "{}: sent bytes", backend.name());
        }
        let d = backend.stats().snapshot().since(&before);
        assert_eq!(
            d.sessions_started, 0,
            "refused sessions are not counted as started"
        );
        assert_eq!(d.total_syscalls(), 0, "{}: {d}", backend.name());
    }
}

#[test]
fn a_stalled_peer_times_out_instead_of_hanging() {
    let file = TestFile::random(4 * MIB as usize, 1);
    for backend in backends(&Config::default()) {
        let link = Link::new(SockKind::Unix, Some(4096));
        let mut session = backend
            .start(&file.source(), ByteRange::full(4 * MIB), Vec::new())
            .unwrap();
        let wait = std::time::Duration::from_millis(200);
        let r = zcserve_core::blocking::send_all(session.as_mut(), link.fd(), Some(wait));
        assert!(
            matches!(r, Err(TransferError::TimedOut(d)) if d == wait),
            "{}: {r:?}",
            backend.name()
        );
        drop(session);
        let reader = Reader::spawn(link.recv, Speed::Fast);
        drop(link.send);
        reader.finish().unwrap();
    }
}
