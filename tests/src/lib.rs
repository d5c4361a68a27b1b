//! Helpers shared by zcserve's cross-backend tests: files with known
//! contents, connected socket pairs of every kind we serve on, readers of
//! different speeds, and a descriptor count for leak checks.
//!
//! A test makes a [`TestFile`], a [`Link`] (TCP loopback or a Unix
//! socketpair), starts a [`Reader`] on the receiving end, and drives a
//! session from any backend into the sending end; the received bytes must
//! be exactly the prefix followed by `file[range]`.

use std::fs::{self, File};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{setsockopt, sockopt};
use zcserve_backends::{Backend, Config};
use zcserve_core::{Pump, Session, Source, Transfer};

/// Deterministic pseudo-random bytes (xorshift64*), fast enough to fill
/// megabytes per test case and reproducible from the seed proptest shrinks.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory under the system's temp dir.
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "zcserve-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A file on disk with known contents, open for reading.
#[derive(Debug)]
pub struct TestFile {
    /// The bytes written.
    pub data: Vec<u8>,
    /// Where it lives.
    pub path: PathBuf,
    /// The open file, shared as a server would share it.
    pub file: Arc<File>,
    _dir: TempDir,
}

impl TestFile {
    /// A file holding `data`.
    pub fn with(data: Vec<u8>) -> Self {
        let dir = TempDir::new();
        let path = dir.path().join("f.bin");
        fs::write(&path, &data).expect("write test file");
        let file = Arc::new(File::open(&path).expect("open test file"));
        TestFile {
            data,
            path,
            file,
            _dir: dir,
        }
    }

    /// A file of `len` pseudo-random bytes from `seed`.
    pub fn random(len: usize, seed: u64) -> Self {
        Self::with(content(len, seed))
    }

    /// The source a backend reads from.
    pub fn source(&self) -> Source {
        Source::new(self.file.clone()).expect("fstat test file")
    }
}

/// The kinds of connected stream socket a session may write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockKind {
    /// TCP over 127.0.0.1.
    Tcp,
    /// An AF_UNIX socketpair.
    Unix,
}

/// A connected pair: `send` for the session, `recv` for the reader.
#[derive(Debug)]
pub struct Link {
    /// The sending end, non-blocking.
    pub send: OwnedFd,
    /// The receiving end, blocking.
    pub recv: OwnedFd,
    /// What kind of socket both ends are.
    pub kind: SockKind,
}

impl Link {
    /// A connected pair of `kind`, the sending end non-blocking, with its
    /// send buffer set to `sndbuf` bytes when given (the kernel doubles and
    /// clamps it).
    pub fn new(kind: SockKind, sndbuf: Option<usize>) -> Self {
        let (send, recv): (OwnedFd, OwnedFd) = match kind {
            SockKind::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
                let c = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
                let (s, _) = l.accept().expect("accept");
                c.set_nodelay(true).unwrap();
                c.set_nonblocking(true).unwrap();
                (c.into(), s.into())
            }
            SockKind::Unix => {
                let (a, b) = UnixStream::pair().expect("socketpair");
                a.set_nonblocking(true).unwrap();
                (a.into(), b.into())
            }
        };
        if let Some(n) = sndbuf {
            setsockopt(&send, sockopt::SndBuf, &n).expect("SO_SNDBUF");
        }
        Link { send, recv, kind }
    }

    /// The sending end.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.send.as_fd()
    }

    /// Starts reading everything from the receiving end until EOF.
    pub fn read_all(self, speed: Speed) -> (OwnedFd, Reader) {
        let recv = self.recv;
        (self.send, Reader::spawn(recv, speed))
    }
}

/// How fast a reader drains its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// Large reads, no pauses.
    Fast,
    /// Reads of `chunk` bytes with a pause of `pause_us` microseconds after
    /// each, so the sender's socket fills and it must wait. The pause only
    /// shapes the load; no test's verdict depends on how long anything takes.
    Slow {
        /// Bytes per read.
        chunk: usize,
        /// Pause after each read.
        pause_us: u64,
    },
}

/// A thread reading one socket to EOF.
#[derive(Debug)]
pub struct Reader(JoinHandle<std::io::Result<Vec<u8>>>);

impl Reader {
    /// Reads `fd` until EOF in a new thread.
    pub fn spawn(fd: OwnedFd, speed: Speed) -> Self {
        Reader(std::thread::spawn(move || {
            let mut sock = File::from(fd);
            let mut out = Vec::new();
            let (chunk, pause) = match speed {
                Speed::Fast => (256 << 10, None),
                Speed::Slow { chunk, pause_us } => {
                    (chunk.max(1), Some(Duration::from_micros(pause_us)))
                }
            };
            let mut buf = vec![0u8; chunk];
            loop {
                let n = sock.read(&mut buf)?;
                if n == 0 {
                    return Ok(out);
                }
                out.extend_from_slice(&buf[..n]);
                if let Some(p) = pause {
                    std::thread::sleep(p);
                }
            }
        }))
    }

    /// Waits for EOF and returns what was read.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        self.0.join().expect("reader thread panicked")
    }
}

/// The backends every per-backend test runs: all of the registry's.
///
/// A backend this machine cannot run (io_uring disabled, say) makes the
/// calling test fail, naming the backend and the reason, unless the suite
/// was built with `ZCSERVE_ALLOW_SKIP` listing it (comma separated, or
/// `all`). A skip is therefore never silent: either the run fails, or the
/// environment that built it says what may be skipped, and the summary test
/// `no_backend_skipped` then shows as ignored in the runner's output.
pub fn backends_under_test() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|&b| under_test(b))
        .collect()
}

/// Whether a test about `backend` alone runs it: true when this machine can
/// run it; false, saying so, when it cannot and the suite was built allowing
/// the skip; otherwise the calling test fails (see [`backends_under_test`]).
#[track_caller]
pub fn under_test(backend: Backend) -> bool {
    match backend.check() {
        Ok(()) => true,
        Err(e) => {
            skip_or_fail(backend.name(), &e.to_string());
            false
        }
    }
}

/// The skip policy for anything a test needs that the machine may lack (a
/// backend, a tool such as `strace`): prints the skip when the suite was
/// built with `ZCSERVE_ALLOW_SKIP` naming `what` (or `all`), and fails the
/// calling test otherwise.
#[track_caller]
pub fn skip_or_fail(what: &str, why: &str) {
    if skip_allowed_named(what) {
        println!("SKIPPED {what}: {why} (allowed by ZCSERVE_ALLOW_SKIP)");
        eprintln!("SKIPPED {what}: {why} (allowed by ZCSERVE_ALLOW_SKIP)");
    } else {
        panic!(
            "{what} cannot run here ({why}), so this test would not test it; \
             fix the machine, or rebuild the tests with ZCSERVE_ALLOW_SKIP={what} to skip it visibly"
        );
    }
}

/// Whether the suite was built allowing `backend` to be skipped.
pub fn skip_allowed(backend: Backend) -> bool {
    skip_allowed_named(backend.name())
}

/// Whether the suite was built allowing `what` (a backend's or a tool's
/// name) to be skipped.
pub fn skip_allowed_named(what: &str) -> bool {
    allowed_skips()
        .iter()
        .any(|s| s == "all" || s.eq_ignore_ascii_case(what))
}

/// The names in `ZCSERVE_ALLOW_SKIP` when the suite was built.
pub fn allowed_skips() -> Vec<String> {
    env!("ZCSERVE_ALLOW_SKIP_BUILT")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every backend of [`backends_under_test`], built with `config`.
pub fn backends(config: &Config) -> Vec<Arc<dyn Transfer>> {
    backends_under_test()
        .into_iter()
        .map(|b| b.build(config).expect("build backend"))
        .collect()
}

/// Pumps `session` into `sock` until the socket is full, as a peer that
/// stopped reading would leave it. Fails if the whole transfer fit.
///
/// A readiness-based session says so itself (`WouldBlock`). A
/// completion-based one never does: its chain waits inside the kernel for
/// the socket instead. For it, "full" is the socket's own state, the one a
/// readiness-driven server waits on: `poll` no longer reports it writable
/// while no completion is ready to be reaped. Until then every completion
/// is reaped with another pump. The wait for a completion re-checks the
/// socket now and then, because an operation in flight may fill it without
/// completing; [`STALL`] only bounds a hang.
pub fn pump_until_full(session: &mut dyn Session, sock: BorrowedFd<'_>) -> Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        if started.elapsed() > STALL {
            return Err(format!("the socket did not fill within {STALL:?}"));
        }
        match session.pump(sock).map_err(|e| e.to_string())? {
            Pump::WouldBlock => return Ok(()),
            Pump::Yield => {}
            Pump::Done => return Err("the whole transfer fit in the socket".into()),
            Pump::Pending => loop {
                let done = session
                    .completion_fd()
                    .ok_or("Pending without a completion fd")?;
                if ready(done, PollFlags::POLLIN, 0)? {
                    break;
                }
                if !ready(sock, PollFlags::POLLOUT, 0)? {
                    return Ok(());
                }
                if started.elapsed() > STALL {
                    return Err(format!(
                        "no completion and a writable socket for {STALL:?}: the chain hangs"
                    ));
                }
                // Not a verdict, only how often the socket is looked at
                // again while the chain runs.
                ready(done, PollFlags::POLLIN, 10)?;
            },
        }
    }
}

/// Whether `fd` reports any of `events` (or an error) within `ms`.
fn ready(fd: BorrowedFd<'_>, events: PollFlags, ms: u16) -> Result<bool, String> {
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
    }
}

/// Settings small enough that the pipe, buffer and chunk edges are hit by
/// files of a few hundred KiB, with the disk pool on.
pub fn small_config() -> Config {
    Config {
        max_chunk: 96 << 10,
        pipe_size: 64 << 10,
        buffer_size: 16 << 10,
        max_idle: 4,
        // The disk gate on (the default config has it off), so every suite
        // that runs both configs runs each backend with and without it.
        disk_threads: 2,
        ..Config::default()
    }
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

mod run;
pub mod strace;
pub use run::{Driver, Outcome, STALL, drive, expected, transfer};

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails, listing each backend and why, when any backend of the
    /// registry cannot run on this machine; ignored (and so shown as such
    /// by the test runner) when the suite was built with
    /// `ZCSERVE_ALLOW_SKIP`.
    #[test]
    #[cfg_attr(
        zcserve_skips_allowed,
        ignore = "ZCSERVE_ALLOW_SKIP is set: backends this machine cannot run are skipped"
    )]
    fn no_backend_skipped() {
        let missing: Vec<String> = Backend::ALL
            .into_iter()
            .filter_map(|b| b.check().err().map(|e| format!("{b}: {e}")))
            .collect();
        assert!(
            missing.is_empty(),
            "backends this machine cannot run, whose tests would be skipped: {missing:?}"
        );
    }

    #[test]
    fn every_runnable_backend_is_under_test() {
        let under: Vec<Backend> = backends_under_test();
        for b in Backend::ALL {
            assert_eq!(under.contains(&b), b.is_available(), "{b}");
        }
    }
}
