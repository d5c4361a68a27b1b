//! Loopback throughput of every zcserve backend.
//!
//! For each backend this platform runs (`Backend::available()`: sendfile,
//! splice, mmap, copy) and each file size (4 KiB, 64 KiB, 1 MiB, 16 MiB,
//! 256 MiB), one iteration sends the whole file, with no prefix, over a TCP
//! connection on 127.0.0.1:
//!
//! 1. `backend.start(&source, ByteRange::full(len), Vec::new())`,
//! 2. `blocking::send_all` on the sending socket (non-blocking, `TCP_NODELAY`),
//! 3. wait until a reader thread has drained exactly `len` bytes from the
//!    other end into a reusable buffer (and discarded them).
//!
//! So the time measured is the backend's work plus the kernel's loopback
//! path and the receiver's copy out of the socket; the connection is made
//! once per (backend, size) and reused, so connect cost is not measured.
//! The files are filled with xorshift output once, in a temporary directory,
//! synced and read back so the page cache is warm.
//!
//! Results are reported as bytes per second (`Throughput::Bytes`) under the
//! group `transfer` with ids `{backend}/{size}`, e.g. `transfer/sendfile/1MiB`.
//! After each id is measured, one extra transfer is made and the backend's
//! counters for that one transfer (syscalls by kind, would-blocks, bytes
//! copied through user space) are printed to stderr as
//! `syscalls {backend}/{size}: ...`.
//!
//! Run it with
//!
//! ```text
//! cargo bench -p zcserve-bench --bench transfer
//! cargo bench -p zcserve-bench --bench transfer -- sendfile/1MiB   # one id
//! cargo bench -p zcserve-bench --bench transfer -- 1MiB            # one size
//! ZCBENCH_MAX_SIZE=1048576 cargo bench -p zcserve-bench --bench transfer
//! ```
//!
//! `ZCBENCH_MAX_SIZE` (bytes) skips the sizes above it, for quick runs.
//! Warm-up is 1 s and measurement 3 s per id (criterion's
//! `--warm-up-time`/`--measurement-time` override them); the sample count is
//! fixed per size (50 up to 1 MiB, 20 for 16 MiB, 10 for 256 MiB, with flat
//! sampling for the big ones) so the whole bench stays within a few minutes
//! on a 2-core machine.
//!
//! Up to 64 KiB an iteration costs little more than two thread wakeups
//! (socket -> reader, channel -> sender), so small sizes measure wakeup
//! latency more than the backend. On a VM whose threads land on different
//! vCPUs that latency is tens of microseconds, and whether a given id sees it
//! depends on where the scheduler puts its reader thread, so small-size
//! results can flip by ~4x between runs. `taskset -c 0 cargo bench ...`
//! pins both threads to one CPU: stable small-size figures, but no overlap
//! of sender and reader for the large sizes.

// criterion_group!/criterion_main! generate public functions without doc
// comments, which the workspace's `missing_docs` lint would flag.
#![allow(missing_docs)]

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, PageBuf, Source, Transfer, blocking};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The file sizes measured, with their labels in bench ids.
const SIZES: [(u64, &str); 5] = [
    (4 * KIB, "4KiB"),
    (64 * KIB, "64KiB"),
    (MIB, "1MiB"),
    (16 * MIB, "16MiB"),
    (256 * MIB, "256MiB"),
];

/// Size of the reader thread's buffer.
const READ_BUF: usize = 256 * 1024;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("zcbench-{}", std::process::id()));
        fs::create_dir_all(&path).expect("create bench temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes `len` bytes of xorshift64 output to `path`, syncs it, and reads it
/// back once so its pages are in the cache.
fn make_file(path: &Path, len: u64) -> Source {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ len;
    let mut out = BufWriter::with_capacity(MIB as usize, File::create(path).expect("create file"));
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        for word in chunk[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        out.write_all(&chunk[..n]).expect("write file");
        left -= n as u64;
    }
    let file = out.into_inner().expect("flush file");
    file.sync_all().expect("sync file");
    drop(file);

    // Warm the page cache.
    let mut file = File::open(path).expect("open file");
    let mut seen = 0u64;
    loop {
        let n = file.read(&mut chunk).expect("read file");
        if n == 0 {
            break;
        }
        seen += n as u64;
    }
    assert_eq!(seen, len, "{} has the wrong length", path.display());

    let source = Source::new(Arc::new(file)).expect("fstat file");
    assert_eq!(source.len(), len);
    source
}

/// One loopback connection: the sending end, and a thread draining the
/// other end `len` bytes at a time.
struct Conn {
    sock: TcpStream,
    done: Receiver<()>,
    reader: JoinHandle<()>,
}

impl Conn {
    fn new(len: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let sock = TcpStream::connect(listener.local_addr().expect("local addr"))
            .expect("connect over loopback");
        let (peer, _) = listener.accept().expect("accept");
        sock.set_nodelay(true).expect("TCP_NODELAY");
        sock.set_nonblocking(true).expect("non-blocking socket");

        let (tx, done) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("zcbench-reader".into())
            .spawn(move || drain(peer, len, &tx))
            .expect("spawn reader thread");
        Self { sock, done, reader }
    }

    /// Sends the whole of `source` with `backend` and waits until the
    /// reader has it all.
    fn transfer(&self, backend: &dyn Transfer, source: &Source) -> u64 {
        let len = source.len();
        let mut session = backend
            .start(source, ByteRange::full(len), Vec::new())
            .expect("start session");
        let sent = blocking::send_all(session.as_mut(), self.sock.as_fd(), None)
            .unwrap_or_else(|e| panic!("{} failed: {e}", backend.name()));
        assert_eq!(sent, len, "{} sent the wrong byte count", backend.name());
        self.done
            .recv()
            .expect("reader thread stopped before the transfer ended");
        sent
    }

    /// Closes the sending end and waits for the reader to see end of file.
    fn finish(self) {
        self.sock.shutdown(Shutdown::Write).expect("shutdown");
        drop(self.sock);
        self.reader.join().expect("reader thread panicked");
    }
}

/// Reads `len` bytes at a time from `peer`, signalling each complete
/// transfer on `done`, until the sender closes the connection.
fn drain(mut peer: TcpStream, len: u64, done: &mpsc::Sender<()>) {
    // Page-aligned, as the server's buffers are: the receiver's copy then
    // costs the same whatever the allocator returns.
    let mut buf = PageBuf::new(READ_BUF);
    loop {
        let mut left = len;
        while left > 0 {
            let want = left.min(READ_BUF as u64) as usize;
            match peer.read(&mut buf[..want]) {
                Ok(0) if left == len => return, // closed between transfers
                Ok(0) => panic!("connection closed with {left} of {len} bytes unread"),
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading from loopback: {e}"),
            }
        }
        black_box(&buf);
        if done.send(()).is_err() {
            return;
        }
    }
}

/// Sizes above `ZCBENCH_MAX_SIZE` (bytes), if set, are skipped.
fn max_size() -> u64 {
    match std::env::var("ZCBENCH_MAX_SIZE") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ZCBENCH_MAX_SIZE={v:?} is not a byte count")),
        Err(_) => u64::MAX,
    }
}

fn transfer(c: &mut Criterion) {
    let max = max_size();
    let dir = TempDir::new();
    let files: Vec<(u64, &str, Source)> = SIZES
        .iter()
        .filter(|&&(len, _)| len <= max)
        .map(|&(len, label)| {
            let source = make_file(&dir.0.join(format!("file-{label}")), len);
            (len, label, source)
        })
        .collect();

    let mut group = c.benchmark_group("transfer");
    for backend in Backend::available() {
        let transfer = backend
            .build(&Config::default())
            .unwrap_or_else(|e| panic!("building {backend}: {e}"));
        for (len, label, source) in &files {
            let len = *len;
            group.throughput(Throughput::Bytes(len));
            if len <= MIB {
                group.sample_size(50).sampling_mode(SamplingMode::Auto);
            } else if len <= 16 * MIB {
                group.sample_size(20).sampling_mode(SamplingMode::Flat);
            } else {
                group.sample_size(10).sampling_mode(SamplingMode::Flat);
            }

            // Connect lazily: criterion calls the closure only when the id
            // passes the command-line filter.
            let mut conn: Option<Conn> = None;
            group.bench_function(BenchmarkId::new(backend.name(), label), |b| {
                let conn = conn.get_or_insert_with(|| Conn::new(len));
                b.iter(|| conn.transfer(transfer.as_ref(), source));
            });

            if let Some(conn) = conn {
                let before = transfer.stats().snapshot();
                conn.transfer(transfer.as_ref(), source);
                let one = transfer.stats().snapshot().since(&before);
                eprintln!("syscalls {backend}/{label}: {one}");
                conn.finish();
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = transfer
}
criterion_main!(benches);
