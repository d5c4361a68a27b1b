//! The `Transfer` trait, its sessions, and the file they read.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::sys::stat::fstat;

use crate::{ByteRange, Stats, Syscall, TransferError};

/// An open file and the length it had when it was opened.
///
/// The length is taken once so a server that has already called `fstat` for
/// its headers need not pay for a second call in [`Transfer::start`].
#[derive(Debug, Clone)]
pub struct Source {
    file: Arc<File>,
    len: u64,
}

impl Source {
    /// Wraps `file`, asking the kernel for its length. This `fstat` is the
    /// caller's, made before any backend is involved, so it is in no
    /// backend's counters.
    pub fn new(file: Arc<File>) -> Result<Self, TransferError> {
        let st = fstat(file.as_fd()).map_err(|e| TransferError::sys(Syscall::Fstat, e))?;
        let len = u64::try_from(st.st_size).unwrap_or(0);
        Ok(Self { file, len })
    }

    /// Wraps `file` whose length the caller already knows.
    pub fn with_len(file: Arc<File>, len: u64) -> Self {
        Self { file, len }
    }

    /// The open file.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The file's length when the source was made.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What one [`Session::pump`] call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// Every byte of the prefix and the range reached the socket.
    Done,
    /// The socket is full: wait until it is writable, then pump again.
    WouldBlock,
    /// The session used up its per-call budget while the socket could still
    /// take more; call again after letting other work run.
    Yield,
    /// Work is in flight in the kernel (a completion-based backend such as
    /// io_uring): wait until [`Session::completion_fd`] is readable, then
    /// pump again. The socket's own readiness says nothing here.
    Pending,
}

/// A way of moving file bytes into a socket (sendfile, splice, ...).
///
/// One value serves many transfers at once; per-transfer state lives in the
/// [`Session`] that [`Transfer::start`] returns.
pub trait Transfer: Send + Sync + 'static {
    /// The backend's name, as chosen on the command line.
    fn name(&self) -> &'static str;

    /// Counters of every session this backend has run.
    fn stats(&self) -> &Arc<Stats>;

    /// The pool that reads cold ranges in for this backend's sessions, if
    /// it has one (for its counters).
    fn disk_pool(&self) -> Option<&Arc<crate::disk::DiskPool>> {
        None
    }

    /// The backends whose sessions this transfer runs, for a policy that
    /// picks one per response (`auto`); empty for a backend, which runs its
    /// own. A policy's own [`Transfer::stats`] count nothing: each session
    /// counts into the backend that ran it.
    fn delegates(&self) -> &[Arc<dyn Transfer>] {
        &[]
    }

    /// The name of the backend that runs a body of `len` bytes: this one's,
    /// or for a policy the one it picks for that length.
    fn name_for(&self, _len: u64) -> &'static str {
        self.name()
    }

    /// Waits until no work of a dropped session is left running (a
    /// `uring` chain the kernel is still cancelling holds a ring, a pipe
    /// and a duplicate of the socket until it is reaped), or `limit`
    /// passed; true when none is left. For a count of descriptors or memory
    /// that must not see work that is merely late.
    fn quiesce(&self, _limit: std::time::Duration) -> bool {
        true
    }

    /// Prepares to send `prefix` followed by `range` of `source`.
    ///
    /// Fails, before any byte is sent, when the range does not lie inside
    /// the file. The prefix (an HTTP response head, say) leaves in the same
    /// segment as the first body bytes where the backend can arrange it.
    fn start(
        &self,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Box<dyn Session>, TransferError>;
}

/// One transfer in progress: a pump that moves bytes without blocking.
pub trait Session: Send {
    /// Pushes as many bytes into `sock` as the kernel takes without
    /// blocking (or up to the backend's per-call budget).
    ///
    /// After `Done` or an error the session is over; further calls return
    /// `Done` or [`TransferError::SessionFailed`] and send nothing.
    fn pump(&mut self, sock: BorrowedFd<'_>) -> Result<Pump, TransferError>;

    /// Bytes of prefix and range not yet sent.
    fn remaining(&self) -> u64;

    /// The counters this session reports into.
    fn stats(&self) -> &Stats;

    /// The descriptor that turns readable when work behind
    /// [`Pump::Pending`] has completed; `None` for sessions that never
    /// answer `Pending`.
    ///
    /// Once a session has answered `Pending`, this is the same open
    /// descriptor until the session is dropped, so a driver may register it
    /// with its event loop once and keep it registered until the transfer
    /// ends.
    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// The descriptor a driver waits on after `session` answered
/// [`Pump::Pending`]; a session that has none is a backend bug, reported
/// as an error rather than a hang.
pub(crate) fn pending_fd(session: &dyn Session) -> Result<BorrowedFd<'_>, TransferError> {
    session.completion_fd().ok_or(TransferError::Unavailable {
        backend: "driver",
        reason: "a session answered Pending without a completion fd".into(),
    })
}
