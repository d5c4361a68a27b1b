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

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use zcserve_backends::{Backend, Config};
use zcserve_core::disk::testing::{HeldReader, Hold, Scripted};
use zcserve_core::disk::{Cold, DiskPool, PoolConfig};
use zcserve_core::{ByteRange, Pump, Session, Syscall, Transfer};
use zcserve_tests::{
    Link, Reader, STALL, SockKind, Speed, TestFile, backends_under_test, expected,
};

/// The gated backends: every one. (`uring` reads no file on the loop
/// either, but its gate keeps cold ranges out of its ring, see
/// `uring_sends_what_the_pool_read_in_from_the_pool`.)
fn gated() -> Vec<Backend> {
    backends_under_test()
}

#[test]
fn a_cached_file_is_served_while_a_cold_read_is_held() {
    for backend in gated() {
        for pool_sends in [true, false] {
            held_cold_read(backend, pool_sends);
        }
    }
}

fn held_cold_read(backend: Backend, pool_sends: bool) {
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
            Some(Cold::new(oracle.clone(), Arc::new(pool)).with_pool_sends(pool_sends)),
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
            (snap.offloaded, snap.bytes_in, snap.failed),
            (1, 700_000, 0),
            "{backend}: the one read-in covered the rest of the range: {snap:?}"
        );
        assert_eq!(
            snap.completed,
            1 + snap.sends,
            "{backend}: the read-in and each send ended: {snap:?}"
        );
        if pool_sends {
            // What had not left when the read was released (the head, for
            // a backend that sends it with the first body bytes) left from
            // the pool's thread, and so did every body byte.
            assert_eq!(
                snap.bytes_sent,
                9 + 700_000 - n as u64,
                "{backend}: the pool sent the cold range: {snap:?}"
            );
            assert!(snap.sends >= 1, "{backend}: {snap:?}");
        } else {
            assert_eq!(
                (snap.sends, snap.bytes_sent),
                (0, 0),
                "{backend}: with pool sends off the loop sends: {snap:?}"
            );
        }
        let s = t.stats().snapshot();
        assert!(s.pending >= 1, "{backend}: {s}");
        assert_eq!(s.body_bytes, (3 << 20) + 700_000, "{backend}: {s}");
    });
    assert!(oracle.calls() > 0, "{backend}: the oracle was asked");
}

/// A pool of one thread whose reads the test holds, and a backend whose
/// oracle calls every file cold.
fn all_cold(backend: Backend, queue: usize) -> (Arc<dyn Transfer>, Hold) {
    all_cold_with(backend, queue, |cold| cold)
}

/// [`all_cold`] with the [`Cold`] set up further by `setup`.
fn all_cold_with(
    backend: Backend,
    queue: usize,
    setup: impl FnOnce(Cold) -> Cold,
) -> (Arc<dyn Transfer>, Hold) {
    let (reader, hold) = HeldReader::new();
    let pool = DiskPool::new(
        PoolConfig {
            threads: 1,
            queue,
            ..PoolConfig::default()
        },
        reader,
    )
    .expect("disk pool")
    .expect("one thread");
    let oracle = Arc::new(Scripted::new(|_: BorrowedFd<'_>, _, _| false));
    let t = backend
        .build_with(
            &Config::default(),
            Some(setup(Cold::new(oracle, Arc::new(pool)))),
        )
        .expect("build");
    (t, hold)
}

/// A session on a socket pair ([`Link`]: the sending end non-blocking, as
/// the drivers want it) and a [`Reader`] of the other end to its close.
struct Conn {
    session: Box<dyn Session>,
    tx: OwnedFd,
    received: Reader,
}

fn conn(t: &Arc<dyn Transfer>, file: &TestFile, head: &[u8]) -> Conn {
    let (tx, received) = Link::new(SockKind::Unix, None).read_all(Speed::Fast);
    let session = t
        .start(
            &file.source(),
            ByteRange::full(file.data.len() as u64),
            head.to_vec(),
        )
        .unwrap();
    Conn {
        session,
        tx,
        received,
    }
}

impl Conn {
    fn pump(&mut self) -> Pump {
        self.session.pump(self.tx.as_fd()).unwrap()
    }

    /// Sends the rest with the blocking driver, closes, and returns what
    /// the peer got.
    fn finish(mut self) -> Vec<u8> {
        zcserve_core::blocking::send_all(self.session.as_mut(), self.tx.as_fd(), Some(STALL))
            .unwrap();
        drop(self.session);
        drop(self.tx);
        self.received.finish().unwrap()
    }
}

#[test]
fn a_read_in_brings_in_at_most_the_read_in_size() {
    // Larger than one move's chunk (256 KiB: a pump's budget and copy's
    // buffer), so that the size, not the chunk, bounds each read-in.
    const READ_IN: u64 = 300_000;
    for backend in gated() {
        for pool_sends in [true, false] {
            let (t, hold) = all_cold_with(backend, 64, |c| {
                c.with_read_in(READ_IN).with_pool_sends(pool_sends)
            });
            let file = TestFile::random(700_000, 31);
            let c = conn(&t, &file, b"head");
            let sender = std::thread::spawn(move || c.finish());
            // Every read-in is let through as it arrives, until the
            // session has sent everything.
            let mut reads = Vec::new();
            loop {
                if let Some(e) = hold.try_entered() {
                    reads.push((e.offset, e.len));
                    hold.release();
                } else if sender.is_finished() {
                    break;
                } else {
                    std::thread::yield_now();
                }
            }
            let got = sender.join().unwrap();
            let what = format!("{backend}, pool sends {pool_sends}: {reads:?}");
            assert_eq!(&got[..4], b"head", "{what}");
            assert!(got[4..] == file.data[..], "{what}: bytes differ");
            assert_eq!(reads[0], (0, READ_IN), "{what}");
            assert!(reads.iter().all(|&(_, len)| len <= READ_IN), "{what}");
            // Later read-ins start further on, and the last one reaches the
            // end. (They need not touch: `copy` on a pool thread fills its
            // whole buffer with its own `pread`, past the bytes read in,
            // and the loop then sends those without a read-in.)
            assert!(reads.windows(2).all(|w| w[0].0 < w[1].0), "{what}");
            let &(offset, len) = reads.last().unwrap();
            assert_eq!(offset + len, 700_000, "{what}");
            // With the default size this file is one read-in (the test
            // above).
            assert!(reads.len() >= 2, "{what}");
            let snap = t.disk_pool().unwrap().stats().snapshot();
            assert_eq!(snap.offloaded, reads.len() as u64, "{what}: {snap:?}");
        }
    }
}

#[test]
fn a_session_dropped_before_its_pool_send_runs_sends_nothing_more() {
    for backend in gated() {
        let (t, hold) = all_cold(backend, 64);
        let (fa, fb) = (TestFile::random(300_000, 21), TestFile::random(200_000, 22));
        let mut a = conn(&t, &fa, b"a-head");
        let mut b = conn(&t, &fb, b"b-head");
        assert_eq!(a.pump(), Pump::Pending, "{backend}");
        assert_eq!(
            hold.entered().len,
            300_000,
            "{backend}: a's read-in holds the thread"
        );
        assert_eq!(b.pump(), Pump::Pending, "{backend}: b's read-in queues");
        hold.release();
        assert_eq!(
            hold.entered().len,
            200_000,
            "{backend}: now b's read-in holds it"
        );
        // a's range is in: its send goes to the pool, which is busy.
        assert_eq!(a.pump(), Pump::Pending, "{backend}");
        let pool = Arc::clone(t.disk_pool().unwrap());
        assert_eq!(pool.stats().snapshot().sends, 1, "{backend}");
        let Conn {
            session,
            tx,
            received,
            ..
        } = a;
        drop(session);
        drop(tx);
        hold.release();
        let got_b = b.finish();
        assert!(
            got_b == expected(&fb, ByteRange::full(200_000), b"b-head"),
            "{backend}: b's bytes"
        );
        drop(t);
        drop(pool);
        // The pool is gone, its threads joined, so a's job ran (or was
        // cancelled) and let go of its descriptor: the peer sees the end.
        let got_a = received.finish().unwrap();
        assert!(
            got_a.len() <= b"a-head".len(),
            "{backend}: {} bytes left for a session that was gone",
            got_a.len()
        );
    }
}

#[test]
fn a_full_pool_queue_leaves_the_send_to_the_loop() {
    for backend in gated() {
        let (t, hold) = all_cold(backend, 1);
        let files: Vec<TestFile> = (0..3).map(|i| TestFile::random(250_000, 30 + i)).collect();
        let mut conns: Vec<Conn> = files.iter().map(|f| conn(&t, f, b"head")).collect();
        assert_eq!(conns[0].pump(), Pump::Pending, "{backend}");
        hold.entered();
        assert_eq!(conns[1].pump(), Pump::Pending, "{backend}: queued");
        hold.release();
        hold.entered();
        assert_eq!(
            conns[2].pump(),
            Pump::Pending,
            "{backend}: queued, the queue is full"
        );
        // The first read-in is done; its send finds no room and goes from
        // here, while the pool's one thread is still held.
        let first = conns.remove(0);
        let got = first.finish();
        assert!(
            got == expected(&files[0], ByteRange::full(250_000), b"head"),
            "{backend}"
        );
        let snap = t.disk_pool().unwrap().stats().snapshot();
        assert_eq!((snap.sends, snap.bytes_sent), (0, 0), "{backend}: {snap:?}");
        assert!(snap.busy >= 1, "{backend}: the pool refused: {snap:?}");
        drop(hold);
        for (c, f) in conns.into_iter().zip(&files[1..]) {
            let got = c.finish();
            assert!(
                got == expected(f, ByteRange::full(250_000), b"head"),
                "{backend}"
            );
        }
    }
}

#[test]
fn uring_sends_what_the_pool_read_in_from_the_pool() {
    if !zcserve_tests::under_test(Backend::Uring) {
        return;
    }
    let config = Config {
        disk_threads: 2,
        ..Config::default()
    };
    let t = Backend::Uring.build(&config).unwrap();
    assert_eq!(t.disk_pool().expect("uring is gated").threads(), 2);

    // An all-cold file: the pool reads it in and, with pool sends, sends
    // it with plain sendfile on its own thread, never through the ring
    // (whose splices would run in io-wq workers at the loop's priority).
    let f = TestFile::random(700_000, 21);
    for pool_sends in [true, false] {
        let (t, hold) = all_cold_with(Backend::Uring, 4, |c| c.with_pool_sends(pool_sends));
        let mut c = conn(&t, &f, b"head");
        assert_eq!(c.pump(), Pump::Pending, "the gate sent it to the pool");
        assert_eq!(hold.entered().len, 700_000, "one read-in of the whole file");
        hold.release();
        let got = c.finish();
        assert!(
            got == expected(&f, ByteRange::full(700_000), b"head"),
            "pool sends {pool_sends}: the bytes differ"
        );
        let s = t.stats().snapshot();
        let (sendfile, enter) = (
            s.syscalls(Syscall::Sendfile),
            s.syscalls(Syscall::UringEnter),
        );
        let pool = t.disk_pool().expect("gated").stats().snapshot();
        if pool_sends {
            // Every body byte left from the pool's threads, with sendfile.
            assert_eq!(pool.bytes_sent, 700_000);
            assert!(sendfile > 0, "the pool sent with sendfile");
            // The ring was entered only to arm a watch of the gate's
            // descriptor, at most once per read-in and once per pool send
            // (the socket may fill, and the send go out in several jobs).
            assert!(
                enter <= pool.offloaded + pool.sends,
                "a chain ran: {enter} ring enters for {} read-ins and {} sends",
                pool.offloaded,
                pool.sends
            );
        } else {
            assert_eq!(pool.bytes_sent, 0);
            assert_eq!(sendfile, 0, "the loop's ring sent");
            assert!(enter > 0, "no chain ran");
        }
        assert_eq!(s.body_bytes, 700_000);
    }
}

#[test]
fn a_socket_a_pool_send_filled_is_waited_for_not_handed_back() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Read;
    use std::os::unix::net::UnixStream as StdUnixStream;

    /// Waits (bounded only to catch a hang) until `fd` is readable.
    fn wait_readable(fd: BorrowedFd<'_>) {
        let ms = u16::try_from(STALL.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(ms)).unwrap(), 1, "hung");
    }

    for backend in gated() {
        let (t, hold) = all_cold(backend, 4);
        // Larger than the socket pair's buffer, which nobody reads yet.
        let f = TestFile::random(2 << 20, 41);
        let (tx, mut rx) = StdUnixStream::pair().unwrap();
        tx.set_nonblocking(true).unwrap();
        let mut s = t
            .start(&f.source(), ByteRange::full(2 << 20), b"head".to_vec())
            .unwrap();
        assert_eq!(s.pump(tx.as_fd()).unwrap(), Pump::Pending, "{backend}");
        hold.entered();
        hold.release();
        // The read-in is done; the next pump hands the send to the pool,
        // whose thread sends until the socket is full.
        let pool = Arc::clone(t.disk_pool().unwrap());
        let outcome = loop {
            wait_readable(s.completion_fd().expect("a descriptor while pending"));
            match s.pump(tx.as_fd()).unwrap() {
                Pump::Pending => continue,
                other => break other,
            }
        };
        assert_eq!(outcome, Pump::WouldBlock, "{backend}: the pool filled it");
        let sends = pool.stats().snapshot().sends;
        assert!(sends >= 1, "{backend}: the pool sent");
        // Still full: the session says so itself rather than handing the
        // send to a pool thread that would find it full again.
        for _ in 0..3 {
            assert_eq!(s.pump(tx.as_fd()).unwrap(), Pump::WouldBlock, "{backend}");
        }
        assert_eq!(pool.stats().snapshot().sends, sends, "{backend}");
        // Once the peer reads, the rest arrives, byte-exact.
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        zcserve_core::blocking::send_all(s.as_mut(), tx.as_fd(), Some(STALL)).unwrap();
        drop(s);
        drop(tx);
        let got = reader.join().unwrap();
        assert!(
            got == expected(&f, ByteRange::full(2 << 20), b"head"),
            "{backend}: the bytes differ"
        );
    }
}
