//! The `Transfer` trait, its sessions, and the bookkeeping they share.

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
    /// Wraps `file`, asking the kernel for its length.
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

/// How one backend moves bytes: the half of a session that differs from
/// backend to backend. [`Tracked`] turns it into a [`Session`] and keeps
/// the books, so every backend counts sessions, bytes and waits alike.
pub trait Step: Send {
    /// Moves what it can of `p`'s prefix and range into `sock` without
    /// blocking, recording each byte sent in `p`.
    fn step(&mut self, p: &mut Progress, sock: BorrowedFd<'_>) -> Result<Pump, TransferError>;

    /// Called after every pump: gives back resources (a pooled pipe or
    /// buffer) not needed while the session waits. `failed` means the
    /// session just ended in an error, so bytes it holds must be discarded.
    fn release(&mut self, _p: &Progress, _failed: bool) {}

    /// Called once when the session is dropped, finished or not. Bytes
    /// that still reach the socket while in-flight work is wound down are
    /// recorded in `p`.
    fn close(&mut self, _p: &mut Progress) {}

    /// See [`Session::completion_fd`].
    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// A [`Step`] with its [`Progress`]: a complete [`Session`].
#[derive(Debug)]
pub struct Tracked<S: Step> {
    progress: Progress,
    step: S,
}

impl<S: Step> Tracked<S> {
    /// A session that moves `progress`'s bytes with `step`.
    pub fn new(progress: Progress, step: S) -> Self {
        Self { progress, step }
    }
}

impl<S: Step> Session for Tracked<S> {
    fn pump(&mut self, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        if let Some(over) = self.progress.finished() {
            return over;
        }
        let r = self.step.step(&mut self.progress, sock);
        self.step.release(&self.progress, r.is_err());
        self.progress.settle(r)
    }

    fn remaining(&self) -> u64 {
        self.progress.remaining()
    }

    fn stats(&self) -> &Stats {
        self.progress.stats()
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.step.completion_fd()
    }
}

impl<S: Step> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.step.close(&mut self.progress);
    }
}

/// The progress every session keeps: what is left of the prefix and of the
/// range, and whether the outcome has been counted.
#[derive(Debug)]
pub struct Progress {
    stats: Arc<Stats>,
    prefix: Vec<u8>,
    prefix_sent: usize,
    offset: u64,
    end: u64,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Done,
    Failed,
}

impl Progress {
    /// Starts counting a session over `range` of `source`; checks the range
    /// against the file length first.
    pub fn start(
        stats: Arc<Stats>,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Self, TransferError> {
        range.check_within(source.len())?;
        stats.session_started();
        Ok(Self {
            stats,
            prefix,
            prefix_sent: 0,
            offset: range.start(),
            end: range.end(),
            state: State::Running,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The part of the prefix still to send.
    pub fn prefix_left(&self) -> &[u8] {
        &self.prefix[self.prefix_sent..]
    }

    /// Records `n` prefix bytes sent.
    pub fn prefix_sent(&mut self, n: usize) {
        debug_assert!(n <= self.prefix.len() - self.prefix_sent);
        self.prefix_sent += n;
        self.stats.prefix_sent(n as u64);
        if self.prefix_sent == self.prefix.len() {
            // The head is usually a heap allocation per response: give it
            // back as soon as it is on the wire.
            self.prefix = Vec::new();
            self.prefix_sent = 0;
        }
    }

    /// The file offset of the next body byte to send.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The end of the range.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Body bytes not yet sent.
    pub fn body_left(&self) -> u64 {
        self.end - self.offset
    }

    /// Records `n` body bytes sent.
    pub fn body_sent(&mut self, n: u64) {
        debug_assert!(n <= self.body_left());
        self.offset += n;
        self.stats.body_sent(n);
    }

    /// Prefix and body bytes not yet sent.
    pub fn remaining(&self) -> u64 {
        (self.prefix.len() - self.prefix_sent) as u64 + self.body_left()
    }

    /// The error for a file that ended at `offset`, before the range did.
    pub fn shrank_at(&self, offset: u64) -> TransferError {
        TransferError::FileShrank {
            offset,
            end: self.end,
        }
    }

    /// Whether the session may still pump: `None` while running, or the
    /// answer to give once it is over.
    fn finished(&self) -> Option<Result<Pump, TransferError>> {
        match self.state {
            State::Running => None,
            State::Done => Some(Ok(Pump::Done)),
            State::Failed => Some(Err(TransferError::SessionFailed)),
        }
    }

    /// Counts the outcome of one pump and passes it on.
    fn settle(&mut self, r: Result<Pump, TransferError>) -> Result<Pump, TransferError> {
        match &r {
            Ok(Pump::Done) => {
                debug_assert_eq!(self.remaining(), 0);
                if self.state == State::Running {
                    self.stats.session_completed();
                }
                self.state = State::Done;
            }
            Ok(Pump::WouldBlock) => self.stats.would_block(),
            Ok(Pump::Yield) => {}
            Ok(Pump::Pending) => self.stats.pending(),
            Err(_) => {
                if self.state == State::Running {
                    self.stats.session_failed();
                }
                self.state = State::Failed;
            }
        }
        r
    }
}
