//! No pump waits for the disk. With a disk pool set up, a session whose
//! next range is not in the page cache answers `Pending` while the pool
//! reads the range in, so on a single-threaded runtime (one event loop,
//! as `zcserve --threads 1`) another session, on a cached file, runs to
//! the end meanwhile; then the held one completes byte-exact.
//!
//! The disk is the test's: an oracle that calls one file cold, and a
//! reader that holds that file's read-in on a latch until the test lets
//! it go. Nothing here depends on the machine's speed: the order of events
//! is forced by the latch, and the only time bound catches a hang.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use zcserve_backends::{Backend, Config};
use zcserve_core::ByteRange;
use zcserve_core::disk::testing::{HeldReader, Scripted};
use zcserve_core::disk::{Cold, DiskPool, PoolConfig};
use zcserve_tests::{STALL, TestFile, backends_under_test};

/// The backends that read the file on the pump's thread, and so are gated;
/// `uring` splices in the kernel's io-wq workers, never on the loop.
fn gated() -> Vec<Backend> {
    backends_under_test()
        .into_iter()
        .filter(|&b| b != Backend::Uring)
        .collect()
}

#[test]
fn a_cached_file_is_served_while_a_cold_read_is_held() {
    for backend in gated() {
        held_cold_read(backend);
    }
}

fn held_cold_read(backend: Backend) {
    // Cold: larger than one pump chunk (several moves, one read-in);
    // hot: larger than a socket buffer, so its transfer only ends if the
    // event loop keeps turning while the cold read is held.
    let cold = TestFile::random(700_000, 11);
    let hot = TestFile::random(3 << 20, 12);
    let cold_fd = cold.file.as_raw_fd();
    let oracle = Arc::new(Scripted::new(move |fd: BorrowedFd<'_>, _, _| {
        fd.as_raw_fd() != cold_fd
    }));
    let (reader, hold) = HeldReader::new();
    let pool = DiskPool::new(
        PoolConfig {
            threads: 1,
            ..PoolConfig::default()
        },
        reader,
    )
    .expect("disk pool")
    .expect("one thread");
    let t = backend
        .build_with(
            &Config::default(),
            Some(Cold::new(oracle.clone(), Arc::new(pool))),
        )
        .expect("build");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (cold_tx, mut cold_rx) = UnixStream::pair().unwrap();
        let cold_t = Arc::clone(&t);
        let cold_source = cold.source();
        let cold_task = tokio::spawn(async move {
            let mut s = cold_t
                .start(
                    &cold_source,
                    ByteRange::full(700_000),
                    b"cold-head".to_vec(),
                )
                .unwrap();
            let r = zcserve_core::tokio::send_all(&cold_tx, s.as_mut(), Some(STALL)).await;
            drop(s);
            drop(cold_tx);
            r
        });

        // The cold session's first read-in reaches the pool and is held.
        let (entered, hold) = tokio::task::spawn_blocking(move || (hold.entered(), hold))
            .await
            .unwrap();
        assert_eq!(
            (entered.offset, entered.len),
            (0, 700_000),
            "{backend}: one read-in of the whole range (shorter than READ_IN_SPAN)"
        );

        // Meanwhile, on the same one-threaded loop, the hot file goes out
        // in full.
        let (hot_tx, mut hot_rx) = UnixStream::pair().unwrap();
        let hot_read = tokio::spawn(async move {
            let mut got = Vec::new();
            hot_rx.read_to_end(&mut got).await.map(|_| got)
        });
        let mut s = t
            .start(
                &hot.source(),
                ByteRange::full(3 << 20),
                b"hot-head".to_vec(),
            )
            .unwrap();
        let sent = zcserve_core::tokio::send_all(&hot_tx, s.as_mut(), Some(STALL))
            .await
            .unwrap_or_else(|e| panic!("{backend}: hot transfer failed: {e}"));
        drop(s);
        drop(hot_tx);
        let got = hot_read.await.unwrap().unwrap();
        assert_eq!(sent, 8 + (3 << 20), "{backend}");
        assert_eq!(&got[..8], b"hot-head", "{backend}");
        assert!(got[8..] == hot.data[..], "{backend}: hot bytes differ");

        // The cold session is still waiting: no body byte has left.
        assert!(
            !cold_task.is_finished(),
            "{backend}: the cold session finished while its read was held"
        );
        let mut early = vec![0u8; 1 << 20];
        let n = match cold_rx.try_read(&mut early) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{backend}: {e}"),
        };
        assert!(
            n <= b"cold-head".len(),
            "{backend}: {n} bytes of the cold response left while its read was held"
        );
        let pool = t.disk_pool().expect("the backend has the pool");
        assert_eq!(
            pool.stats().snapshot().offloaded,
            1,
            "{backend}: only the cold file's first chunk went to the pool"
        );

        // Let every read-in through: dropping the latch releases them.
        drop(hold);
        let mut rest = Vec::new();
        cold_rx.read_to_end(&mut rest).await.unwrap();
        let sent = cold_task.await.unwrap().unwrap();
        let mut got = early[..n].to_vec();
        got.extend_from_slice(&rest);
        assert_eq!(sent, 9 + 700_000, "{backend}");
        assert_eq!(&got[..9], b"cold-head", "{backend}");
        assert!(got[9..] == cold.data[..], "{backend}: cold bytes differ");
        let snap = pool.stats().snapshot();
        assert_eq!(
            (snap.offloaded, snap.completed, snap.bytes_in),
            (1, 1, 700_000),
            "{backend}: the one read-in covered the rest of the range: {snap:?}"
        );
        let s = t.stats().snapshot();
        assert!(s.pending >= 1, "{backend}: {s}");
    });
    assert!(oracle.calls() > 0, "{backend}: the oracle was asked");
}

#[test]
fn uring_needs_no_gate_and_gets_none() {
    if !zcserve_tests::under_test(Backend::Uring) {
        return;
    }
    let config = Config {
        disk_threads: 2,
        ..Config::default()
    };
    let t = Backend::Uring.build(&config).unwrap();
    assert!(
        t.disk_pool().is_none(),
        "uring reads in the kernel's workers; a pool would be a second, idle one"
    );
    let t = Backend::Sendfile.build(&config).unwrap();
    assert_eq!(t.disk_pool().expect("sendfile is gated").threads(), 2);
}
