//! The per-session decision a pump makes before each move: go ahead, or
//! wait for the pool to read the range in.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use super::memo;
use super::{
    Completion, DiskPool, FileId, Parking, Residency, SendJob, SubmitError, Submitted, Ticket,
};

/// What the pump does with the range it asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Move it now: it is cached, was just read in, or nobody can tell.
    Go,
    /// Answer `Pump::Pending`: the range is being read in (or waits for
    /// room in the pool) and [`ColdGate::completion_fd`] turns readable
    /// when the pump should ask again.
    Wait,
}

/// One session's use of the oracle and the pool.
///
/// The pump calls [`ColdGate::before_move`] with the range its next move
/// reads. A range known good (asked about or read in since) passes without
/// a syscall, so a chunk that takes several pumps to leave (socket full)
/// is asked about once. A cold one goes to the pool; when the read-in
/// finishes the same range passes without asking again, so a read-in that
/// could not warm it (the file shrank, memory pressure evicted it at once)
/// never loops: the move then reads on the pump's thread, as it did before.
/// A full pool parks the session until a pool thread makes room, rather
/// than reading on the pump's thread exactly when the disk is slowest.
pub struct ColdGate {
    residency: Arc<dyn Residency>,
    pool: Arc<DiskPool>,
    /// Created on the first miss and kept for the session's lifetime: the
    /// `Session::completion_fd` contract.
    completion: Option<Completion>,
    waiting: Waiting,
    /// `[start, end)` known resident (or as resident as the pool could
    /// make it): moves inside it go without asking.
    known: (u64, u64),
    /// The identity of the file last asked about (keyed by the `Arc`'s
    /// address), taken only when the pool is reading something.
    file_id: Option<(usize, FileId)>,
    /// How long a range found resident on this thread is taken as still
    /// resident by later sessions (see [`memo`]); `None`: ask every time.
    memo: Option<Duration>,
}

enum Waiting {
    Nothing,
    Read {
        ticket: Ticket,
        start: u64,
        end: u64,
    },
    Room(Parking),
}

impl std::fmt::Debug for ColdGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting = match self.waiting {
            Waiting::Nothing => "nothing",
            Waiting::Read { .. } => "read-in",
            Waiting::Room(_) => "room in the pool",
        };
        f.debug_struct("ColdGate")
            .field("waiting", &waiting)
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}

impl ColdGate {
    /// A gate that asks `residency` and offloads misses to `pool`.
    pub fn new(residency: Arc<dyn Residency>, pool: Arc<DiskPool>) -> Self {
        Self {
            residency,
            pool,
            completion: None,
            waiting: Waiting::Nothing,
            known: (0, 0),
            file_id: None,
            memo: None,
        }
    }

    /// The same gate, trusting for `window` a range any session on this
    /// thread found resident (`None`: ask the oracle for every session).
    pub fn with_memo(mut self, window: Option<Duration>) -> Self {
        self.memo = window;
        self
    }

    /// Whether the pump may move `[offset, offset + len)` of `file` now.
    ///
    /// Fails only when no completion descriptor can be made (out of file
    /// descriptors); the caller may then move the range as before.
    pub fn before_move(&mut self, file: &Arc<File>, offset: u64, len: u64) -> io::Result<Gate> {
        self.before_move_within(file, offset, len, len)
    }

    /// Whether the pump may move `[offset, offset + len)` of `file` now,
    /// asking about (and reading in) `[offset, offset + span)` when that
    /// chunk is not already known resident. A stream of chunks inside one
    /// span is asked about once: asking about each chunk's own span would
    /// re-count, every chunk, pages asked about a moment before (one
    /// `cachestat` of 4 MiB per 256 KiB sent).
    pub fn before_move_within(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        len: u64,
        span: u64,
    ) -> io::Result<Gate> {
        let span = span.max(len);
        match &mut self.waiting {
            Waiting::Nothing => {}
            Waiting::Read { ticket, start, end } => {
                // A failed read-in is not this gate's to report: the move
                // itself meets the same error, with its own syscall named.
                if ticket.try_finish().is_none() {
                    return Ok(Gate::Wait);
                }
                self.known = (*start, *end);
                self.waiting = Waiting::Nothing;
            }
            Waiting::Room(parking) => {
                if !parking.woken() {
                    return Ok(Gate::Wait);
                }
                self.waiting = Waiting::Nothing;
            }
        }
        if self.known.0 <= offset && offset.saturating_add(len) <= self.known.1 {
            return Ok(Gate::Go);
        }
        let (len, end) = (span, offset.saturating_add(span));
        // A range the pool is reading for another session counts as cold
        // whatever the oracle or the memo says: its pages are in the cache
        // already but locked until their read ends, and a move would wait
        // there.
        let recalled = self
            .memo
            .is_some_and(|window| memo::recalls(file, offset, end, window));
        // An oracle that fails answers like one that cannot tell: go.
        let resident = if recalled {
            Ok(true)
        } else {
            self.residency.resident(file.as_fd(), offset, len)
        };
        if resident.as_ref().map_or(true, |r| *r) && !self.pool_is_reading(file, offset, len) {
            // Only a real answer is remembered, not a failed call's guess.
            if self.memo.is_some() && !recalled && resident.is_ok() {
                memo::remember(file, offset, end);
            }
            self.known = (offset, end);
            return Ok(Gate::Go);
        }
        let completion = match &mut self.completion {
            Some(c) => c,
            None => self.completion.insert(Completion::new()?),
        };
        match self
            .pool
            .submit_or_park(completion, Arc::clone(file), offset, len)
        {
            Ok(Submitted::Queued(ticket)) => {
                self.waiting = Waiting::Read {
                    ticket,
                    start: offset,
                    end,
                };
                Ok(Gate::Wait)
            }
            Ok(Submitted::Parked(parking)) => {
                self.waiting = Waiting::Room(parking);
                Ok(Gate::Wait)
            }
            // Busy: the pool is shutting down. InFlight cannot happen (this
            // gate waits for its job before submitting another); either
            // way, moving the range as before is correct.
            Err(_) => Ok(Gate::Go),
        }
    }

    /// Whether the pool has a job on any of this range of `file`, with the
    /// file's identity looked up once per session and only while the pool
    /// reads anything (never on a warm server).
    fn pool_is_reading(&mut self, file: &Arc<File>, offset: u64, len: u64) -> bool {
        if !self.pool.any_reading() {
            return false;
        }
        let key = Arc::as_ptr(file) as usize;
        let id = match self.file_id {
            Some((k, id)) if k == key => id,
            _ => match FileId::of(file) {
                Ok(id) => {
                    self.file_id = Some((key, id));
                    id
                }
                // Unidentifiable: trust the oracle, as before.
                Err(_) => return false,
            },
        };
        self.pool.is_reading(id, offset, len)
    }

    /// Hands `send` to the pool's threads (see [`DiskPool::submit_send`]),
    /// to be signalled on this gate's descriptor; only between moves, never
    /// while the gate waits for a read-in or for room.
    pub fn submit_send(&mut self, send: SendJob) -> Result<Ticket, SubmitError> {
        if !matches!(self.waiting, Waiting::Nothing) {
            return Err(SubmitError::InFlight);
        }
        let completion = match &mut self.completion {
            Some(c) => c,
            None => self
                .completion
                .insert(Completion::new().map_err(|_| SubmitError::Busy)?),
        };
        self.pool.submit_send(completion, send)
    }

    /// The descriptor to wait on after [`Gate::Wait`]; the same one for
    /// the gate's lifetime once made (`None` before the first miss).
    pub fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.completion.as_ref().map(Completion::fd)
    }
}
