//! Per-backend counters, kept by the sessions themselves so that research
//! figures (syscalls per transfer, bytes that crossed into user space) come
//! from the code that did the work rather than from an outside tracer.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;

use crate::TransferError;

/// The system calls a backend makes, each counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Syscall {
    /// `sendfile(2)`.
    Sendfile,
    /// `splice(2)`, either direction.
    Splice,
    /// `pread(2)`.
    Pread,
    /// `send(2)` of one buffer.
    Send,
    /// `sendmsg(2)` of several buffers (the vectored write).
    Sendmsg,
    /// `mmap(2)`.
    Mmap,
    /// `madvise(2)`.
    Madvise,
    /// `munmap(2)`.
    Munmap,
    /// `fstat(2)`, made by mmap when a send faults, to learn where the file
    /// ends now. (`Source::new`'s fstat is the caller's, made before a
    /// backend is involved, and is not counted.)
    Fstat,
    /// `pipe2(2)`.
    Pipe,
    /// `fcntl(2)`: sizing pipes, and uring's duplicate of the socket.
    Fcntl,
    /// `poll(2)`, made by the blocking driver while waiting.
    Poll,
    /// `sigaction(2)`: one or two each time a backend is built, to make
    /// sure SIGPIPE is ignored.
    Sigaction,
    /// `io_uring_setup(2)`, once per ring.
    UringSetup,
    /// `io_uring_enter(2)`: submitting, cancelling, and (in the background
    /// reaper, after a session was dropped) waiting for io_uring work.
    UringEnter,
    /// `io_uring_register(2)`, once when the backend is built, to check the
    /// kernel's opcodes.
    UringRegister,
}

impl Syscall {
    /// Every syscall kind, in counter order.
    pub const ALL: [Syscall; 16] = [
        Syscall::Sendfile,
        Syscall::Splice,
        Syscall::Pread,
        Syscall::Send,
        Syscall::Sendmsg,
        Syscall::Mmap,
        Syscall::Madvise,
        Syscall::Munmap,
        Syscall::Fstat,
        Syscall::Pipe,
        Syscall::Fcntl,
        Syscall::Poll,
        Syscall::Sigaction,
        Syscall::UringSetup,
        Syscall::UringEnter,
        Syscall::UringRegister,
    ];

    /// The syscall's name as `strace` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Syscall::Sendfile => "sendfile",
            Syscall::Splice => "splice",
            Syscall::Pread => "pread64",
            Syscall::Send => "sendto",
            Syscall::Sendmsg => "sendmsg",
            Syscall::Mmap => "mmap",
            Syscall::Madvise => "madvise",
            Syscall::Munmap => "munmap",
            Syscall::Fstat => "fstat",
            Syscall::Pipe => "pipe2",
            Syscall::Fcntl => "fcntl",
            Syscall::Poll => "poll",
            Syscall::Sigaction => "rt_sigaction",
            Syscall::UringSetup => "io_uring_setup",
            Syscall::UringEnter => "io_uring_enter",
            Syscall::UringRegister => "io_uring_register",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const NSYSCALLS: usize = Syscall::ALL.len();

/// Live counters of one backend, shared by all its sessions.
///
/// Relaxed atomics: each counter is independent and only ever summed, so no
/// ordering between them is needed.
#[derive(Debug, Default)]
pub struct Stats {
    sessions_started: AtomicU64,
    sessions_completed: AtomicU64,
    sessions_failed: AtomicU64,
    body_bytes: AtomicU64,
    prefix_bytes: AtomicU64,
    copied_in: AtomicU64,
    copied_out: AtomicU64,
    would_block: AtomicU64,
    pending: AtomicU64,
    syscalls: [AtomicU64; NSYSCALLS],
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one call of `call`.
    pub fn syscall(&self, call: Syscall) {
        bump(&self.syscalls[call.index()], 1);
    }

    /// Makes `call` with `f` and counts it, whatever it answers: how a
    /// backend makes the syscalls that are not moves (pipes, mappings,
    /// rings, signal set-up), so that none goes uncounted. Errors name
    /// `call`.
    pub fn counted<T>(
        &self,
        call: Syscall,
        f: impl FnOnce() -> Result<T, Errno>,
    ) -> Result<T, TransferError> {
        self.syscall(call);
        f().map_err(|e| TransferError::sys(call, e))
    }

    /// [`Stats::counted`] for calls that report through `io::Error`.
    pub fn counted_io<T>(
        &self,
        call: Syscall,
        f: impl FnOnce() -> io::Result<T>,
    ) -> Result<T, TransferError> {
        self.syscall(call);
        f().map_err(|e| TransferError::sys_io(call, &e))
    }

    /// Counts a session that was started.
    pub fn session_started(&self) {
        bump(&self.sessions_started, 1);
    }

    /// Counts a session that sent all its bytes.
    pub fn session_completed(&self) {
        bump(&self.sessions_completed, 1);
    }

    /// Counts a session that ended in an error.
    pub fn session_failed(&self) {
        bump(&self.sessions_failed, 1);
    }

    /// Counts file bytes that reached the socket.
    pub fn body_sent(&self, n: u64) {
        bump(&self.body_bytes, n);
    }

    /// Counts prefix (response head) bytes that reached the socket.
    pub fn prefix_sent(&self, n: u64) {
        bump(&self.prefix_bytes, n);
    }

    /// Counts file bytes copied from the kernel into a user-space buffer.
    pub fn copied_in(&self, n: u64) {
        bump(&self.copied_in, n);
    }

    /// Counts file bytes copied from user-space memory into the socket
    /// (including from a mapping of the file).
    pub fn copied_out(&self, n: u64) {
        bump(&self.copied_out, n);
    }

    /// Counts one time the socket was full and the session had to wait.
    pub fn would_block(&self) {
        bump(&self.would_block, 1);
    }

    /// Counts one time a session waited for kernel work to complete
    /// ([`crate::Pump::Pending`]).
    pub fn pending(&self) {
        bump(&self.pending, 1);
    }

    /// A consistent-enough copy of every counter (each read on its own).
    pub fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            sessions_started: load(&self.sessions_started),
            sessions_completed: load(&self.sessions_completed),
            sessions_failed: load(&self.sessions_failed),
            body_bytes: load(&self.body_bytes),
            prefix_bytes: load(&self.prefix_bytes),
            copied_in: load(&self.copied_in),
            copied_out: load(&self.copied_out),
            would_block: load(&self.would_block),
            pending: load(&self.pending),
            syscalls: std::array::from_fn(|i| load(&self.syscalls[i])),
        }
    }
}

/// A copy of a backend's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sessions started.
    pub sessions_started: u64,
    /// Sessions that sent everything.
    pub sessions_completed: u64,
    /// Sessions that ended in an error.
    pub sessions_failed: u64,
    /// File bytes that reached the socket.
    pub body_bytes: u64,
    /// Prefix bytes that reached the socket.
    pub prefix_bytes: u64,
    /// File bytes copied from the kernel into user space.
    pub copied_in: u64,
    /// File bytes copied from user-space memory into the socket.
    pub copied_out: u64,
    /// Times a session found the socket full.
    pub would_block: u64,
    /// Times a session waited for in-flight kernel work to complete.
    pub pending: u64,
    syscalls: [u64; NSYSCALLS],
}

impl Snapshot {
    /// Calls made of `call`.
    pub fn syscalls(&self, call: Syscall) -> u64 {
        self.syscalls[call.index()]
    }

    /// All syscalls made, of every kind.
    pub fn total_syscalls(&self) -> u64 {
        self.syscalls.iter().sum()
    }

    /// The counts that grew from `earlier` to `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            sessions_started: self.sessions_started - earlier.sessions_started,
            sessions_completed: self.sessions_completed - earlier.sessions_completed,
            sessions_failed: self.sessions_failed - earlier.sessions_failed,
            body_bytes: self.body_bytes - earlier.body_bytes,
            prefix_bytes: self.prefix_bytes - earlier.prefix_bytes,
            copied_in: self.copied_in - earlier.copied_in,
            copied_out: self.copied_out - earlier.copied_out,
            would_block: self.would_block - earlier.would_block,
            pending: self.pending - earlier.pending,
            syscalls: std::array::from_fn(|i| self.syscalls[i] - earlier.syscalls[i]),
        }
    }

    /// Each syscall kind with a non-zero count.
    pub fn syscall_counts(&self) -> impl Iterator<Item = (Syscall, u64)> + '_ {
        Syscall::ALL
            .iter()
            .map(|&c| (c, self.syscalls(c)))
            .filter(|&(_, n)| n > 0)
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions {}/{} ok ({} failed), body {} B, prefix {} B, copied in {} B, out {} B, would-block {}, pending {}, syscalls:",
            self.sessions_completed,
            self.sessions_started,
            self.sessions_failed,
            self.body_bytes,
            self.prefix_bytes,
            self.copied_in,
            self.copied_out,
            self.would_block,
            self.pending
        )?;
        for (call, n) in self.syscall_counts() {
            write!(f, " {call}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_diff() {
        let s = Stats::new();
        let before = s.snapshot();
        s.syscall(Syscall::Sendfile);
        s.syscall(Syscall::Sendfile);
        s.syscall(Syscall::Poll);
        s.body_sent(10);
        s.copied_in(3);
        let d = s.snapshot().since(&before);
        assert_eq!(d.syscalls(Syscall::Sendfile), 2);
        assert_eq!(d.syscalls(Syscall::Splice), 0);
        assert_eq!(d.total_syscalls(), 3);
        assert_eq!(d.body_bytes, 10);
        assert_eq!(d.copied_in, 3);
        let text = d.to_string();
        assert!(text.contains("sendfile=2"), "{text}");
        assert!(!text.contains("splice="), "{text}");
    }

    #[test]
    fn every_syscall_has_its_own_slot() {
        for (i, c) in Syscall::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
