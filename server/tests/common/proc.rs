//! A child `zcserve` process for the tests of the real binary: spawned
//! with piped stdout and stderr, its stdout read line by line onto a
//! channel by a thread (so a chatty access log can never block it), its
//! stderr collected by another for failure messages; its exit waited for
//! on a pidfd; killed and reaped on drop, so a failing assertion never
//! leaves a server running.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::HANG;

/// The `zcserve` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_zcserve");

/// How long a server may take to print its start line.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `zcserve` (or a command that execs it), killed and reaped on
/// drop. Stdout lines arrive on a channel, stderr is collected.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Joined once the process exits, so that all it wrote is read.
    stderr_thread: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `zcserve args…` in `cwd` (or the test's own directory).
    pub fn spawn_args(args: &[&str], cwd: Option<&Path>) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        Proc::spawn(cmd)
    }

    /// Starts `cmd` with stdin closed, stdout and stderr piped, and none of
    /// the environment that would change what zcserve prints (its log
    /// filter, Rust's backtraces).
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env_remove("ZCSERVE_LOG");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // If nobody listens any more, keep draining anyway so the
                // child never blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Proc {
            child,
            lines,
            stderr,
            stderr_thread: Some(stderr_thread),
            status: None,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// What the process wrote to stderr so far (all of it once
    /// [`Proc::wait_exit`] has seen the exit).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next stdout line, if one arrives within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The first stdout line: the start line. Panics (with stderr) if the
    /// process exits or stays silent for [`START_TIMEOUT`] instead.
    pub fn start_line(&mut self) -> String {
        match self.lines.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(HANG);
                panic!(
                    "zcserve exited ({status:?}) without a start line; stderr:\n{}",
                    self.stderr_text()
                )
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "no start line within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// The start line's first address.
    pub fn start_addr(&mut self) -> SocketAddr {
        let line = self.start_line();
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("http://")?.strip_suffix('/')?.parse().ok())
            .unwrap_or_else(|| panic!("no address in the start line {line:?}"))
    }

    /// Whether the process catches `sig` (its bit in `SigCgt` of
    /// `/proc/PID/status`).
    pub fn catches(&self, sig: Signal) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0)
    }

    /// Sends `sig` once the process has a handler for it (the kernel
    /// offers no event for that, so `/proc` is polled, for at most
    /// [`HANG`]).
    pub fn stop(&self, sig: Signal) {
        let deadline = Instant::now() + HANG;
        while !self.catches(sig) {
            assert!(
                Instant::now() < deadline,
                "zcserve never installed a {sig} handler within {HANG:?}; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        self.signal(sig);
    }

    /// Sends `sig` now.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill({sig}): {e}"));
    }

    /// Waits for the exit itself (a pidfd turns readable when the process
    /// ends), then reaps it and reads its stderr to the end; `None` if it
    /// outlives `within` (`Duration::ZERO` just asks whether it has
    /// exited).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let pidfd = pidfd_of(&self.child);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let deadline = Instant::now() + within;
            // EINTR: poll again for what is left of the bound.
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                match poll(&mut fds, left) {
                    Err(Errno::EINTR) => {}
                    r => {
                        r.expect("poll on the pidfd");
                        break;
                    }
                }
            }
            self.status = self.child.try_wait().expect("try_wait");
            self.status?;
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        self.status
    }

    /// Waits up to `within` for the exit and asserts its status is `code`.
    pub fn assert_exits(&mut self, code: i32, within: Duration, what: &str) {
        match self.wait_exit(within) {
            Some(s) if s.code() == Some(code) => {}
            Some(s) => panic!(
                "{what}: zcserve exited with {s:?} (signal {:?}), expected status {code}; stderr:\n{}",
                s.signal(),
                self.stderr_text()
            ),
            None => panic!(
                "{what}: zcserve still running {within:?} later; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Everything the process wrote to stdout after what was read so far,
    /// up to its end (call after exit: the reader thread then sees EOF).
    pub fn remaining_stdout(&self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(HANG) {
                Ok(l) => out.push(l),
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("zcserve's stdout still open {HANG:?} after it exited: {out:?}")
                }
            }
        }
    }
}

/// A descriptor that turns readable when `child` exits (`pidfd_open(2)`,
/// Linux 5.3+; nix has no wrapper).
fn pidfd_of(child: &Child) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
