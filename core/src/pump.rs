//! The one pump every backend runs.
//!
//! A backend supplies a [`Mover`] (what it keeps between sessions: pools,
//! settings) and, per session, a [`Step`] that only *tries one move*: one
//! syscall (or one io_uring submit or reap) that reports what happened as a
//! [`Moved`], inside an [`Attempt`] naming the syscall it made. Everything
//! else is done here, once, for every backend:
//!
//! - the head: sent with `send(MSG_MORE)` ahead of a zero-copy body, or
//!   offered to the step through [`Move::prefix`] when its move can carry
//!   it in the same `sendmsg` as body bytes ([`Step::CARRIES_PREFIX`]);
//! - the per-pump budget (`max_chunk`, like nginx's `sendfile_max_chunk`):
//!   once this pump's own calls have moved that many body bytes, it yields
//!   before the next move that would read the file;
//! - `EINTR` (the move is tried again), `EAGAIN` (the socket is full);
//! - `Done`, `Yield`, `WouldBlock`, `Pending`, and the errors;
//! - counting: every syscall a move names, bytes by where they went, copies
//!   through user space (from the syscall: `pread` copies in, `send` and
//!   `sendmsg` copy body bytes out), waits and session outcomes.
//!
//! The disk: before each move the pump knows from [`Step::next_read`]
//! whether that move will read the file, and which byte range. With a
//! [`Cold`] set up, a session's [`ColdGate`] asks whether the range is in
//! the page cache; when it is not, the range is read in by the disk pool
//! and the pump answers [`Pump::Pending`] on the gate's descriptor instead
//! of making a move that would block its thread on the disk. A session
//! whose file is cached pays one residency check per chunk and never
//! touches the pool. With [`Cold::sends_on_pool`], the moves of a range the
//! pool read in run on a pool thread too (the session's step and progress
//! go there and come back, with a duplicate of the socket's descriptor),
//! so the event loop never spends a burst sending bytes that came off the
//! disk while other connections wait.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;

use crate::disk::{Cold, ColdGate, DiskPool, Gate, SendJob, Ticket};
use crate::sock::{has_room, send_head};
use crate::{ByteRange, Pump, Session, Source, Stats, Syscall, Transfer, TransferError};

/// The most of a range one residency check covers and one read-in brings
/// in, unless [`Cold::with_read_in`] says otherwise (see [`Core::run`]).
pub const READ_IN_SPAN: u64 = 4 << 20;

/// What one move did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// `n` bytes reached the socket: first what [`Move::prefix`] offered,
    /// then body bytes.
    Sent(usize),
    /// `n` file bytes went into the step's pipe or buffer; none reached the
    /// socket yet.
    Staged(usize),
    /// The socket is full: the driver waits until it is writable.
    Full,
    /// The socket was full and the step waits for it inside the kernel (an
    /// io_uring poll linked before the next send): counted as a wait, and
    /// the pump moves on.
    FullInKernel,
    /// The file ends at this offset, before the range does.
    Shrank(u64),
    /// Kernel work is in flight: the driver waits until
    /// [`Step::completion_fd`] is readable.
    Pending,
    /// Nothing moved, but the step's state changed (a completion reaped, a
    /// fault examined): move again.
    Again,
}

/// One move: the syscall it made, if any, and what came of it.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    call: Option<Syscall>,
    result: Result<Moved, TransferError>,
}

impl Attempt {
    /// A move that made `call`; an error is reported as that call's.
    pub fn made(call: Syscall, result: Result<Moved, Errno>) -> Self {
        Self {
            call: Some(call),
            result: result.map_err(|e| TransferError::sys(call, e)),
        }
    }

    /// [`Attempt::made`] for calls that report through `io::Error`.
    pub fn made_io(call: Syscall, result: io::Result<Moved>) -> Self {
        Self {
            call: Some(call),
            result: result.map_err(|e| TransferError::sys_io(call, &e)),
        }
    }

    /// A move that made no syscall (reaping completions, say).
    pub fn no_call(moved: Moved) -> Self {
        Self {
            call: None,
            result: Ok(moved),
        }
    }

    /// A move that ends the session with `error`, having made `call`.
    pub fn failed(call: Option<Syscall>, error: TransferError) -> Self {
        Self {
            call,
            result: Err(error),
        }
    }
}

/// What a step sees of its session for one move.
#[derive(Debug)]
pub struct Move<'a> {
    progress: &'a Progress,
    sock: BorrowedFd<'a>,
    budget: usize,
    carry: bool,
}

impl<'a> Move<'a> {
    /// The socket to move bytes into.
    pub fn sock(&self) -> BorrowedFd<'a> {
        self.sock
    }

    /// The file offset of the next body byte not yet in the socket.
    pub fn offset(&self) -> u64 {
        self.progress.offset
    }

    /// The end of the range.
    pub fn end(&self) -> u64 {
        self.progress.end
    }

    /// Body bytes not yet in the socket.
    pub fn body_left(&self) -> u64 {
        self.progress.end - self.progress.offset
    }

    /// Body bytes this pump may still move with its own calls.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The most a move may ask for: what is left of the body, capped by the
    /// budget and by `cap` (a pipe's capacity, the kernel's limit).
    pub fn chunk(&self, cap: usize) -> usize {
        usize::try_from(self.body_left())
            .unwrap_or(usize::MAX)
            .min(self.budget)
            .min(cap)
    }

    /// The head still to send, for a step that carries it with body bytes
    /// ([`Step::CARRIES_PREFIX`]); empty for the others, whose head the
    /// pump has sent before their first move.
    pub fn prefix(&self) -> &'a [u8] {
        if self.carry {
            self.progress.prefix_left()
        } else {
            &[]
        }
    }

    /// How many of `n` bytes sent in this move were body bytes.
    pub fn body_of(&self, n: usize) -> usize {
        n.saturating_sub(self.prefix().len())
    }

    /// The counters, for the syscalls a step makes to get resources
    /// ([`Stats::counted`]).
    pub fn stats(&self) -> &'a Stats {
        &self.progress.stats
    }
}

/// How one backend moves bytes: the per-session half of a backend.
pub trait Step: Send {
    /// Whether a move sends the head in the same call as body bytes (one
    /// `sendmsg`), taking it from [`Move::prefix`]. Otherwise the pump sends
    /// the head first, with `MSG_MORE` while body bytes follow.
    const CARRIES_PREFIX: bool = false;

    /// The file range `(offset, len)` the next move would read, or `None`
    /// when it reads no file bytes (it drains a pipe or buffer, reaps
    /// completions, examines a fault). The pump yields before such a move
    /// once its budget is spent; a cold-cache gate asks here.
    fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)>;

    /// Tries one move. Called only while bytes remain to be sent.
    fn try_move(&mut self, m: &Move<'_>) -> Attempt;

    /// The move a disk-pool thread makes, in place of [`Step::try_move`],
    /// when it sends a range it read in; `None`: `try_move` as on the loop.
    /// For a step whose own moves would not run on the pool thread (a ring
    /// whose splices run in the kernel's workers at the loop's priority),
    /// a plain blocking-free move that does.
    fn pool_move(&mut self, _m: &Move<'_>) -> Option<Attempt> {
        None
    }

    /// The session is about to answer `Pending` for the disk gate, whose
    /// descriptor `fd` turns readable when it should pump again. A step
    /// with a completion descriptor of its own (the one a driver waits on
    /// for the session's whole life) makes `fd` wake that one; others need
    /// nothing.
    fn watch(&mut self, _fd: BorrowedFd<'_>) -> Result<(), TransferError> {
        Ok(())
    }

    /// Called after every pump: gives back resources (a pooled pipe or
    /// buffer) not needed while the session waits. `failed` means the
    /// session just ended in an error, so bytes it holds must be discarded.
    fn release(&mut self, _failed: bool) {}

    /// Called once when the session is dropped, finished or not; syscalls
    /// it makes are counted in `stats`.
    fn close(&mut self, _stats: &Arc<Stats>) {}

    /// See [`Session::completion_fd`].
    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// What a backend keeps between sessions, and how it begins one.
pub trait Mover: Send + Sync + 'static {
    /// The per-session state.
    type Step: Step + 'static;

    /// Prepares to move `range` of `source` (the range is already checked
    /// against the file). Syscalls go through [`Stats::counted`].
    fn begin(
        &self,
        source: &Source,
        range: ByteRange,
        stats: &Stats,
    ) -> Result<Self::Step, TransferError>;

    /// See [`Transfer::quiesce`]: a mover whose dropped sessions leave no
    /// work behind has nothing to wait for.
    fn quiesce(&self, _limit: std::time::Duration) -> bool {
        true
    }
}

/// What the pump needs of a backend besides its [`Mover`]: its name, its
/// counters and its per-pump budget.
#[derive(Debug)]
pub struct Pumping {
    name: &'static str,
    stats: Arc<Stats>,
    budget: usize,
    cold: Option<Cold>,
}

impl Pumping {
    /// A backend called `name`, counting into `stats`, whose pumps move at
    /// most `budget` body bytes with their own calls (at least one).
    pub fn new(name: &'static str, stats: Arc<Stats>, budget: usize) -> Self {
        Self {
            name,
            stats,
            budget: budget.max(1),
            cold: None,
        }
    }

    /// Sessions ask `cold`'s oracle before each move that reads the file
    /// and wait for its pool on a miss; `None` (the default) reads on the
    /// pump's thread, whatever the page cache holds.
    pub fn cold(mut self, cold: Option<Cold>) -> Self {
        self.cold = cold;
        self
    }

    /// The counters, for syscalls made while the backend is built.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The per-pump budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The backend: `mover`'s steps run by the shared pump.
    pub fn with<M: Mover>(self, mover: M) -> Arc<dyn Transfer> {
        Arc::new(Pumped {
            pumping: self,
            mover,
        })
    }
}

/// A backend made of a [`Mover`]; the one `Transfer` implementation.
struct Pumped<M> {
    pumping: Pumping,
    mover: M,
}

impl<M: Mover> Transfer for Pumped<M> {
    fn name(&self) -> &'static str {
        self.pumping.name
    }

    fn stats(&self) -> &Arc<Stats> {
        &self.pumping.stats
    }

    fn disk_pool(&self) -> Option<&Arc<DiskPool>> {
        self.pumping.cold.as_ref().map(Cold::pool)
    }

    fn quiesce(&self, limit: std::time::Duration) -> bool {
        self.mover.quiesce(limit)
    }

    fn start(
        &self,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Box<dyn Session>, TransferError> {
        let stats = &self.pumping.stats;
        let mut progress = Progress::start(stats.clone(), source, range, prefix)?;
        match self.mover.begin(source, range, stats) {
            Ok(step) => Ok(Box::new(Tracked {
                core: Some(Core { progress, step }),
                away: None,
                stats: Arc::clone(stats),
                budget: self.pumping.budget,
                disk: self.pumping.cold.as_ref().map(|cold| Disk {
                    gate: cold.gate(),
                    file: Arc::clone(source.file()),
                    pool_sends: cold.sends_on_pool(),
                    read_in: cold.read_in(),
                    cold_until: 0,
                }),
            })),
            Err(e) => Err(progress.settle(Err(e)).unwrap_err()),
        }
    }
}

/// A [`Step`] with its [`Progress`]: what a pump works on, on the event
/// loop's thread or, for a range the pool read in, on a pool thread.
struct Core<S: Step> {
    progress: Progress,
    step: S,
}

impl<S: Step> Drop for Core<S> {
    fn drop(&mut self) {
        self.step.close(&self.progress.stats);
    }
}

/// A session's way to the disk pool.
struct Disk {
    gate: ColdGate,
    /// The file the gate asks about and the pool reads in.
    file: Arc<File>,
    /// Whether moves from a range the pool read in run on a pool thread
    /// ([`Cold::sends_on_pool`]).
    pool_sends: bool,
    /// The most one residency check covers and one read-in brings in
    /// ([`Cold::read_in`]).
    read_in: u64,
    /// The end of the last range the gate sent to the pool: moves before
    /// it carry bytes that were on the disk.
    cold_until: u64,
}

/// Where a session's [`Core`] waits while a pool thread sends from it.
struct Handback<S: Step> {
    core: Option<Core<S>>,
    /// The pool's pump outcome, counted there; `None` while it has not run.
    outcome: Option<Result<Pump, TransferError>>,
    /// Set when the pool thread started on it: a job that started but left
    /// no outcome panicked mid-move.
    started: bool,
}

/// A session whose core a pool thread has.
struct Away<S: Step> {
    ticket: Ticket,
    back: Arc<Mutex<Handback<S>>>,
    /// What [`Session::remaining`] answers meanwhile.
    remaining: u64,
}

/// What one run of the pump ended with.
enum Ran {
    Pump(Pump),
    /// The next move sends bytes the pool read in, and should run there
    /// (only when the run was asked to tell).
    ToPool,
}

impl Ran {
    /// The answer for a caller that did not ask for [`Ran::ToPool`]; were
    /// it to come anyway, pumping again is always safe.
    fn pump(self) -> Pump {
        match self {
            Ran::Pump(p) => p,
            Ran::ToPool => Pump::Yield,
        }
    }
}

/// Where a session's core is, at the start of a pump.
enum Back {
    /// Here: pump it.
    Here,
    /// On a pool thread still: wait.
    Out,
    /// Back from the pool, whose pump ended so.
    Outcome(Result<Pump, TransferError>),
}

/// A [`Core`] with its budget and its way to the disk: a complete
/// [`Session`].
struct Tracked<S: Step> {
    /// `None` exactly while `away` holds it.
    core: Option<Core<S>>,
    away: Option<Away<S>>,
    stats: Arc<Stats>,
    budget: usize,
    disk: Option<Disk>,
}

impl<S: Step> Core<S> {
    /// Moves until the session is done, must wait, or has used `budget`.
    /// With `disk`, asks its gate before each move that reads the file,
    /// and (with `to_pool`) answers [`Ran::ToPool`] before a move of a range
    /// the pool read in. Without, moves whatever the page cache holds: on a
    /// pool thread (`on_pool`, where the step's [`Step::pool_move`] goes
    /// first), waiting for the disk is harmless.
    fn run(
        &mut self,
        sock: BorrowedFd<'_>,
        mut budget: usize,
        mut disk: Option<&mut Disk>,
        to_pool: bool,
        on_pool: bool,
    ) -> Result<Ran, TransferError> {
        let p = &mut self.progress;
        loop {
            if p.remaining() == 0 {
                return Ok(Ran::Pump(Pump::Done));
            }
            let attempt = if !S::CARRIES_PREFIX && !p.prefix_left().is_empty() {
                let head = p.prefix_left();
                Attempt::made(
                    Syscall::Send,
                    send_head(sock, head, p.end > p.offset).map(Moved::Sent),
                )
            } else {
                let m = Move {
                    progress: p,
                    sock,
                    budget,
                    carry: S::CARRIES_PREFIX,
                };
                if let Some((offset, len)) = self.step.next_read(&m) {
                    if budget == 0 {
                        return Ok(Ran::Pump(Pump::Yield));
                    }
                    if let Some(d) = disk.as_deref_mut() {
                        // Asked about, and read in, is the rest of the
                        // range up to the read-in size, not just this move's
                        // chunk: the read-in then waits for the kernel's
                        // readahead of those pages too, so no page the
                        // gate let through is still under I/O when a move
                        // reads it (the page cache counts such pages as
                        // cached), and a warm range is asked about once per
                        // span instead of once per chunk: a chunk inside
                        // the span last asked about is not asked again.
                        let span = (p.end - offset).min(d.read_in).max(len as u64);
                        // A gate that cannot make its descriptor (out of
                        // descriptors) lets the move read as it did
                        // before there was a pool.
                        if let Ok(Gate::Wait) =
                            d.gate.before_move_within(&d.file, offset, len as u64, span)
                        {
                            d.cold_until = d.cold_until.max(offset.saturating_add(span));
                            if let Some(fd) = d.gate.completion_fd() {
                                self.step.watch(fd)?;
                            }
                            return Ok(Ran::Pump(Pump::Pending));
                        }
                    }
                }
                // Every move of bytes the pool read in, not only those
                // that read the file: a pipe or buffer staged on a pool
                // thread drains there too.
                if let Some(d) = disk.as_deref() {
                    if to_pool && d.pool_sends && m.offset() < d.cold_until {
                        // A pool send that ended on a full socket leaves
                        // the driver believing the socket writable (it saw
                        // no EAGAIN of its own): ask the socket, so a full
                        // one is waited for here instead of handed to a
                        // pool thread that finds it full again.
                        p.stats.syscall(Syscall::Poll);
                        if !has_room(sock) {
                            return Ok(Ran::Pump(Pump::WouldBlock));
                        }
                        return Ok(Ran::ToPool);
                    }
                }
                match on_pool.then(|| self.step.pool_move(&m)).flatten() {
                    Some(attempt) => attempt,
                    None => self.step.try_move(&m),
                }
            };
            if let Some(call) = attempt.call {
                p.stats.syscall(call);
            }
            match attempt.result {
                Ok(Moved::Sent(n)) => {
                    let body = p.account(n);
                    if matches!(attempt.call, Some(Syscall::Send | Syscall::Sendmsg)) {
                        p.stats.copied_out(body as u64);
                    }
                    if attempt.call.is_some() {
                        budget = budget.saturating_sub(body);
                    }
                }
                Ok(Moved::Staged(n)) => {
                    if attempt.call == Some(Syscall::Pread) {
                        p.stats.copied_in(n as u64);
                    }
                }
                Ok(Moved::Full) => return Ok(Ran::Pump(Pump::WouldBlock)),
                Ok(Moved::FullInKernel) => p.stats.would_block(),
                Ok(Moved::Shrank(at)) => return Err(p.shrank_at(at)),
                Ok(Moved::Pending) => return Ok(Ran::Pump(Pump::Pending)),
                Ok(Moved::Again) => {}
                Err(e) => match e.errno() {
                    Some(Errno::EINTR) => {}
                    Some(Errno::EAGAIN) => return Ok(Ran::Pump(Pump::WouldBlock)),
                    _ => return Err(e),
                },
            }
        }
    }

    /// One pump with the step's release and the outcome counted.
    fn pump(
        &mut self,
        sock: BorrowedFd<'_>,
        budget: usize,
        disk: Option<&mut Disk>,
        to_pool: bool,
        on_pool: bool,
    ) -> Result<Ran, TransferError> {
        let r = self.run(sock, budget, disk, to_pool, on_pool);
        match r {
            // Not released: the pool thread moves next, with what the step
            // holds, and releases after.
            Ok(Ran::ToPool) => Ok(Ran::ToPool),
            Ok(Ran::Pump(p)) => {
                self.step.release(false);
                self.progress.settle(Ok(p)).map(Ran::Pump)
            }
            Err(e) => {
                self.step.release(true);
                self.progress.settle(Err(e)).map(Ran::Pump)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under this lock is whole before anything can panic, and
    // a panic mid-move is reported through `Handback::started`.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: Step + 'static> Tracked<S> {
    /// Takes the core back from the pool once its job ended.
    fn come_back(&mut self) -> Back {
        let Some(away) = &mut self.away else {
            return Back::Here;
        };
        if away.ticket.try_finish().is_none() {
            return Back::Out;
        }
        let away = self.away.take().expect("checked above");
        let mut back = lock(&away.back);
        self.core = back.core.take();
        match back.outcome.take() {
            Some(outcome) => Back::Outcome(outcome),
            None if back.started => {
                // The step panicked on the pool thread, somewhere inside a
                // move: what reached the socket is unknown, so the session
                // cannot go on.
                if let Some(core) = &mut self.core {
                    core.step.release(true);
                    let _ = core.progress.settle(Err(TransferError::SessionFailed));
                }
                Back::Outcome(Err(TransferError::SendPanicked))
            }
            // A cancelled job (the pool shut down) left the core as it
            // was: the session goes on here.
            None => Back::Here,
        }
    }

    /// Hands the core to a pool thread that moves until the end of the
    /// range it read in (or until the socket is full); `None` when the
    /// pool refused it, with the core still here.
    fn send_on_pool(&mut self, sock: BorrowedFd<'_>) -> Option<Pump> {
        let disk = self.disk.as_mut()?;
        // The pool thread's own descriptor: the connection may end (and its
        // number be reused) while the job still runs.
        let sock = sock.try_clone_to_owned().ok()?;
        // The job signals the gate's descriptor when it ends; a step that
        // is waited on by its own must be woken through it.
        if let (Some(fd), Some(core)) = (disk.gate.completion_fd(), self.core.as_mut()) {
            core.step.watch(fd).ok()?;
        }
        let core = self.core.take()?;
        let remaining = core.progress.remaining();
        let budget = usize::try_from(disk.cold_until.saturating_sub(core.progress.offset))
            .unwrap_or(usize::MAX);
        let back = Arc::new(Mutex::new(Handback {
            core: Some(core),
            outcome: None,
            started: false,
        }));
        let job_back = Arc::clone(&back);
        let job: SendJob = Box::new(move || {
            let mut h = lock(&job_back);
            // The session went away before the job ran: nobody to send to.
            if Arc::strong_count(&job_back) == 1 {
                return Ok(0);
            }
            h.started = true;
            let Some(core) = h.core.as_mut() else {
                return Ok(0);
            };
            let before = core.progress.remaining();
            let outcome = core
                .pump(sock.as_fd(), budget, None, false, true)
                .map(Ran::pump);
            let sent = before - core.progress.remaining();
            h.outcome = Some(outcome);
            Ok(sent)
        });
        match disk.gate.submit_send(job) {
            Ok(ticket) => {
                self.away = Some(Away {
                    ticket,
                    back,
                    remaining,
                });
                self.stats.pending();
                Some(Pump::Pending)
            }
            Err(_) => {
                self.core = lock(&back).core.take();
                None
            }
        }
    }
}

impl<S: Step + 'static> Session for Tracked<S> {
    fn pump(&mut self, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        match self.come_back() {
            Back::Out => return Ok(Pump::Pending),
            Back::Outcome(outcome) => return outcome,
            Back::Here => {}
        }
        // Here whenever no job has it: a job's end always hands it back.
        let core = self.core.as_mut().ok_or(TransferError::SessionFailed)?;
        if let Some(over) = core.progress.finished() {
            return over;
        }
        match core.pump(sock, self.budget, self.disk.as_mut(), true, false)? {
            Ran::Pump(p) => Ok(p),
            Ran::ToPool => match self.send_on_pool(sock) {
                Some(p) => Ok(p),
                // Refused (queue full, pool closing, no descriptor): this
                // once, the bytes go from here, as without the pool.
                None => {
                    let core = self.core.as_mut().ok_or(TransferError::SessionFailed)?;
                    core.pump(sock, self.budget, self.disk.as_mut(), false, false)
                        .map(Ran::pump)
                }
            },
        }
    }

    fn remaining(&self) -> u64 {
        match (&self.core, &self.away) {
            (Some(core), _) => core.progress.remaining(),
            (None, Some(away)) => away.remaining,
            (None, None) => 0,
        }
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A step's own descriptor (a ring's) or the disk gate's: a step that
    /// has one (`uring`'s ring) is woken by the gate's through
    /// [`Step::watch`], so a session answers `Pending` on one descriptor
    /// for its whole life. The gate's is also the one a send on a pool
    /// thread signals.
    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.core
            .as_ref()
            .and_then(|c| c.step.completion_fd())
            .or_else(|| self.disk.as_ref()?.gate.completion_fd())
    }
}

/// What every session keeps: what is left of the prefix and of the range,
/// and whether the outcome has been counted.
#[derive(Debug)]
struct Progress {
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
    fn start(
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

    fn prefix_left(&self) -> &[u8] {
        &self.prefix[self.prefix_sent..]
    }

    /// Records `n` bytes that reached the socket, prefix first, and
    /// returns how many of them were body bytes.
    fn account(&mut self, n: usize) -> usize {
        let from_prefix = n.min(self.prefix.len() - self.prefix_sent);
        if from_prefix > 0 {
            self.prefix_sent += from_prefix;
            self.stats.prefix_sent(from_prefix as u64);
            if self.prefix_sent == self.prefix.len() {
                // The head is usually a heap allocation per response: give
                // it back as soon as it is on the wire.
                self.prefix = Vec::new();
                self.prefix_sent = 0;
            }
        }
        let body = n - from_prefix;
        debug_assert!(body as u64 <= self.end - self.offset);
        self.offset += body as u64;
        self.stats.body_sent(body as u64);
        body
    }

    fn remaining(&self) -> u64 {
        (self.prefix.len() - self.prefix_sent) as u64 + (self.end - self.offset)
    }

    /// The error for a file that ended at `offset`, before the range did.
    fn shrank_at(&self, offset: u64) -> TransferError {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Mutex;

    use super::*;

    /// A backend whose moves are a script: each names sendfile and answers
    /// the next scripted result, so the pump's books can be checked
    /// against a count made here.
    struct Script(Mutex<Option<VecDeque<Result<Moved, Errno>>>>);

    struct Scripted(VecDeque<Result<Moved, Errno>>);

    impl Mover for Script {
        type Step = Scripted;

        fn begin(&self, _: &Source, _: ByteRange, _: &Stats) -> Result<Scripted, TransferError> {
            Ok(Scripted(self.0.lock().unwrap().take().unwrap()))
        }
    }

    impl Step for Scripted {
        fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)> {
            Some((m.offset(), m.chunk(usize::MAX)))
        }

        fn try_move(&mut self, _: &Move<'_>) -> Attempt {
            Attempt::made(
                Syscall::Sendfile,
                self.0.pop_front().expect("script ran out"),
            )
        }
    }

    fn session(
        budget: usize,
        script: Vec<Result<Moved, Errno>>,
        head: &[u8],
    ) -> (Arc<dyn Transfer>, Box<dyn Session>) {
        let t = Pumping::new("script", Arc::default(), budget)
            .with(Script(Mutex::new(Some(script.into()))));
        let source = Source::with_len(Arc::new(File::open("/dev/null").unwrap()), 100);
        let s = t
            .start(&source, ByteRange::full(100), head.to_vec())
            .unwrap();
        (t, s)
    }

    #[test]
    fn head_first_eintr_retried_every_call_counted() {
        let script = vec![
            Err(Errno::EINTR),
            Ok(Moved::Sent(60)),
            Err(Errno::EAGAIN),
            Ok(Moved::Sent(40)),
        ];
        let (t, mut s) = session(1000, script, b"head");
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(s.pump(a.as_fd()).unwrap(), Pump::WouldBlock);
        assert_eq!(s.remaining(), 40);
        assert_eq!(s.pump(a.as_fd()).unwrap(), Pump::Done);
        assert_eq!(s.pump(a.as_fd()).unwrap(), Pump::Done, "done stays done");
        drop((s, a));
        let mut got = Vec::new();
        (&b).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"head", "the pump sent the head itself");
        let d = t.stats().snapshot();
        // Four scripted calls, the interrupted one included, and one send.
        assert_eq!(d.syscalls(Syscall::Sendfile), 4, "{d}");
        assert_eq!(d.syscalls(Syscall::Send), 1, "{d}");
        assert_eq!((d.body_bytes, d.prefix_bytes), (100, 4));
        assert_eq!(
            (d.copied_in, d.copied_out),
            (0, 0),
            "sendfile copies nothing"
        );
        assert_eq!(d.would_block, 1);
        assert_eq!((d.sessions_started, d.sessions_completed), (1, 1));
    }

    #[test]
    fn a_spent_budget_yields_before_the_next_read() {
        let script = vec![
            Ok(Moved::Sent(30)),
            Ok(Moved::Sent(30)),
            Ok(Moved::Sent(40)),
        ];
        let (t, mut s) = session(50, script, b"");
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(s.pump(a.as_fd()).unwrap(), Pump::Yield);
        assert_eq!(t.stats().snapshot().syscalls(Syscall::Sendfile), 2);
        assert_eq!(s.pump(a.as_fd()).unwrap(), Pump::Done);
    }

    #[test]
    fn a_shrunk_file_fails_the_session_once() {
        let script = vec![Ok(Moved::Sent(70)), Ok(Moved::Shrank(70))];
        let (t, mut s) = session(1000, script, b"");
        let (a, _b) = UnixStream::pair().unwrap();
        match s.pump(a.as_fd()) {
            Err(TransferError::FileShrank { offset, end }) => assert_eq!((offset, end), (70, 100)),
            other => panic!("expected FileShrank, got {other:?}"),
        }
        assert!(matches!(
            s.pump(a.as_fd()),
            Err(TransferError::SessionFailed)
        ));
        let d = t.stats().snapshot();
        assert_eq!(
            (d.sessions_started, d.sessions_failed, d.sessions_completed),
            (1, 1, 0)
        );
    }
}
