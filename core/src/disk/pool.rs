//! The bounded pool of blocking threads that reads cold ranges into the
//! page cache, and the completion descriptor a session waits on meanwhile.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use super::priority::{MAX_NICE, ThreadPriority};
use super::sys::Notifier;

/// What a pool thread runs for each job: bring `[offset, offset + len)` of
/// `file` into the page cache, returning the bytes read (fewer at end of
/// file). Blocking is its purpose. Tests replace it to hold a read.
pub trait ReadIn: Send + Sync {
    /// Reads the range in; `scratch` is the calling thread's own buffer.
    fn read_in(&self, file: &File, offset: u64, len: u64, scratch: &mut [u8]) -> io::Result<u64>;
}

/// Reads the range into the page cache with calls that block until the
/// pages are there, and keeps no byte: on Linux `sendfile` into
/// `/dev/null` (the kernel reads the pages and copies nothing), elsewhere
/// `pread`s into the thread's scratch buffer.
///
/// Chosen over `readahead(2)`: readahead returns once the I/O is queued, not
/// done, so the caller would have to poll for completion; these return when
/// the pages are in the cache, which is exactly the completion a session
/// needs. No copy matters because the pool's threads share the CPUs with
/// the event loops they keep unblocked.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreadIn;

impl ReadIn for PreadIn {
    fn read_in(&self, file: &File, offset: u64, len: u64, scratch: &mut [u8]) -> io::Result<u64> {
        super::sys::read_in(file, offset, len, scratch)
    }
}

/// Reads `[offset, offset + len)` of `file` with `pread` into `scratch`,
/// again and again, for the page cache's sake; the bytes are thrown away.
pub(crate) fn pread_in(file: &File, offset: u64, len: u64, scratch: &mut [u8]) -> io::Result<u64> {
    if scratch.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "disk pool scratch buffer is empty",
        ));
    }
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done).map_or(scratch.len(), |l| l.min(scratch.len()));
        match file.read_at(&mut scratch[..want], offset + done) {
            // End of file: a short read-in is fine, the send reports a
            // file that shrank under it.
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// How big a pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Blocking threads; 0 disables the pool ([`DiskPool::new`] returns
    /// `None`) and keeps reads on the caller's thread, as before.
    pub threads: usize,
    /// Jobs that may wait for a thread; a submit beyond it is refused with
    /// [`SubmitError::Busy`] instead of blocking the caller.
    pub queue: usize,
    /// Each thread's scratch buffer, in bytes: the largest single `pread`.
    pub scratch: usize,
    /// How the threads are scheduled beside the event loops.
    pub priority: ThreadPriority,
}

impl Default for PoolConfig {
    /// Four threads, 64 waiting jobs, 256 KiB reads (one pump chunk), the
    /// creator's priority.
    fn default() -> Self {
        Self {
            threads: 4,
            queue: 64,
            scratch: 256 * 1024,
            priority: ThreadPriority::Normal,
        }
    }
}

/// A send a pool thread runs for a session whose range it read in (see
/// [`DiskPool::submit_send`]): returns the bytes it sent.
pub type SendJob = Box<dyn FnOnce() -> io::Result<u64> + Send>;

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: the caller should go on without the pool (read
    /// on its own thread, as before) or try again on its next pump.
    #[error("the disk pool's queue is full")]
    Busy,
    /// The completion still has a job in flight; one at a time each.
    #[error("this completion already has a read in flight")]
    InFlight,
}

/// Counters of one pool. Relaxed atomics: each is independent and only
/// read as a snapshot.
#[derive(Debug, Default)]
pub struct PoolStats {
    offloaded: AtomicU64,
    busy: AtomicU64,
    parked: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    bytes_in: AtomicU64,
    queued: AtomicU64,
    max_queued: AtomicU64,
    queue_ns: AtomicU64,
    read_ns: AtomicU64,
    sends: AtomicU64,
    bytes_sent: AtomicU64,
    send_ns: AtomicU64,
}

/// The values of [`PoolStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Jobs accepted.
    pub offloaded: u64,
    /// Submits refused because the queue was full.
    pub busy: u64,
    /// Submits parked because the queue was full (see
    /// [`DiskPool::submit_or_park`]).
    pub parked: u64,
    /// Jobs finished, read or failed or cancelled.
    pub completed: u64,
    /// Jobs finished with an error (cancelled ones included).
    pub failed: u64,
    /// Bytes the pool's reads brought in.
    pub bytes_in: u64,
    /// Jobs waiting for a thread now.
    pub queued: u64,
    /// The most jobs that ever waited at once.
    pub max_queued: u64,
    /// Nanoseconds jobs spent waiting for a thread, summed.
    pub queue_ns: u64,
    /// Nanoseconds threads spent reading, summed.
    pub read_ns: u64,
    /// Send jobs run (or cancelled) by the pool's threads.
    pub sends: u64,
    /// Bytes those send jobs put into sockets.
    pub bytes_sent: u64,
    /// Nanoseconds threads spent sending, summed.
    pub send_ns: u64,
}

impl PoolStats {
    /// The counters now.
    pub fn snapshot(&self) -> PoolSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolSnapshot {
            offloaded: get(&self.offloaded),
            busy: get(&self.busy),
            parked: get(&self.parked),
            completed: get(&self.completed),
            failed: get(&self.failed),
            bytes_in: get(&self.bytes_in),
            queued: get(&self.queued),
            max_queued: get(&self.max_queued),
            queue_ns: get(&self.queue_ns),
            read_ns: get(&self.read_ns),
            sends: get(&self.sends),
            bytes_sent: get(&self.bytes_sent),
            send_ns: get(&self.send_ns),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Where one job's outcome meets the session waiting for it.
#[derive(Debug)]
struct Slot {
    notifier: Notifier,
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    Idle,
    /// Waiting for room in the queue; the pool wakes it to `Idle`.
    Parked,
    /// Queued or being read; `abandoned` once its ticket was dropped.
    Running {
        abandoned: bool,
    },
    Done(io::Result<u64>),
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half
        // written (every update is one assignment), so poisoning is moot.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the outcome and signals the descriptor, under the lock so
    /// the descriptor is readable exactly while an untaken outcome exists.
    fn finish(&self, r: io::Result<u64>) {
        let mut state = self.lock();
        match *state {
            State::Running { abandoned: true } => *state = State::Idle,
            _ => {
                *state = State::Done(r);
                // An eventfd write fails only on counter overflow, which a
                // single pending signal cannot reach.
                let _ = self.notifier.notify();
            }
        }
    }
}

/// A session's completion descriptor: one per session, for its lifetime
/// (the `Session::completion_fd` contract), reused by each of its jobs.
#[derive(Debug)]
pub struct Completion {
    slot: Arc<Slot>,
}

impl Completion {
    /// A new, unsignalled descriptor.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            slot: Arc::new(Slot {
                notifier: Notifier::new()?,
                state: Mutex::new(State::Idle),
            }),
        })
    }

    /// Takes the completion for a new job: one at a time each.
    fn claim(&self) -> Result<(), SubmitError> {
        let mut state = self.slot.lock();
        if !matches!(*state, State::Idle) {
            return Err(SubmitError::InFlight);
        }
        *state = State::Running { abandoned: false };
        Ok(())
    }

    /// Readable while a finished job's outcome waits in its [`Ticket`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.slot.notifier.fd()
    }
}

/// One submitted job. Dropping it before the job finishes abandons the
/// outcome (the read still runs; the descriptor is not signalled).
#[derive(Debug)]
#[must_use = "a ticket is how the outcome of the read is taken"]
pub struct Ticket {
    slot: Arc<Slot>,
    spent: bool,
}

impl Ticket {
    /// The job's outcome once it finished (bytes read in, fewer at end of
    /// file), resetting the completion descriptor; `None` while it runs.
    /// After it returned `Some`, the ticket is spent: further calls fail.
    pub fn try_finish(&mut self) -> Option<io::Result<u64>> {
        if self.spent {
            return Some(Err(io::Error::other("disk ticket already finished")));
        }
        let mut state = self.slot.lock();
        match std::mem::replace(&mut *state, State::Idle) {
            State::Done(r) => {
                self.spent = true;
                let reset = self.slot.notifier.reset();
                Some(reset.and(r))
            }
            running @ State::Running { .. } => {
                *state = running;
                None
            }
            State::Idle | State::Parked => {
                self.spent = true;
                Some(Err(io::Error::other("disk ticket has no job")))
            }
        }
    }

    /// The descriptor that turns readable when the job finishes.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.slot.notifier.fd()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.spent {
            return;
        }
        let mut state = self.slot.lock();
        match *state {
            State::Running { .. } => *state = State::Running { abandoned: true },
            State::Done(_) => {
                *state = State::Idle;
                let _ = self.slot.notifier.reset();
            }
            State::Idle | State::Parked => {}
        }
    }
}

/// A submit that found the queue full and waits for room: the completion
/// descriptor turns readable when a pool thread has taken a job off the
/// queue, and the caller then asks again (the range may even be cached by
/// then). Dropping it withdraws from the wait.
#[derive(Debug)]
#[must_use = "a parking is how the caller learns there is room again"]
pub struct Parking {
    slot: Arc<Slot>,
}

impl Parking {
    /// True once there is room to submit again (and the descriptor is
    /// reset); false while still waiting.
    pub fn woken(&self) -> bool {
        let state = self.slot.lock();
        match *state {
            State::Parked => false,
            _ => {
                let _ = self.slot.notifier.reset();
                true
            }
        }
    }

    /// The descriptor that turns readable when there is room.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.slot.notifier.fd()
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        if matches!(*state, State::Parked) {
            // The pool's weak reference then finds it idle and skips it.
            *state = State::Idle;
        } else {
            let _ = self.slot.notifier.reset();
        }
    }
}

/// What [`DiskPool::submit_or_park`] did.
#[derive(Debug)]
#[must_use]
pub enum Submitted {
    /// The job is queued.
    Queued(Ticket),
    /// The queue was full; wait for room on the descriptor.
    Parked(Parking),
}

struct Job {
    work: Work,
    slot: Arc<Slot>,
    queued_at: Instant,
}

enum Work {
    ReadIn {
        file: Arc<File>,
        offset: u64,
        len: u64,
        /// Its entry in [`Queue::reading`], removed when the job ends.
        seq: u64,
    },
    Send(SendJob),
}

/// A file's identity across opens (device and inode), so a range being
/// read in through one descriptor is recognised when another session
/// opened the same file on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of an open file (one `fstat`).
    pub fn of(file: &File) -> io::Result<Self> {
        let m = file.metadata()?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// A range a job of this pool is reading in (or will, once a thread takes
/// it).
struct Reading {
    seq: u64,
    file: FileId,
    start: u64,
    end: u64,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Completions waiting for room, oldest first; weak so that a session
    /// that went away costs nothing but its entry.
    waiters: VecDeque<Weak<Slot>>,
    /// The ranges of the jobs queued or running, for
    /// [`DiskPool::is_reading`]; at most queue + threads entries.
    reading: Vec<Reading>,
    next_seq: u64,
    closed: bool,
}

struct PoolState {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
    stats: PoolStats,
    reader: Arc<dyn ReadIn>,
    /// `Queue::reading.len()`, readable without the lock: the hot path's
    /// question "is anything being read in?" costs one load.
    reading: AtomicUsize,
}

impl PoolState {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside this lock, so no reader panic can poison it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the range of job `seq`, which ended.
    fn done_reading(&self, q: &mut Queue, seq: u64) {
        q.reading.retain(|r| r.seq != seq);
        self.reading.store(q.reading.len(), Ordering::Release);
    }
}

/// A fixed set of threads that read cold ranges into the page cache.
///
/// Only misses go here: a pump asks [`crate::disk::Residency`] first, so
/// cached ranges never wait behind cold ones. Dropping the pool cancels
/// the jobs still queued (their tickets finish with an error) and joins
/// the threads after their current read.
pub struct DiskPool {
    shared: Arc<PoolState>,
    threads: Vec<JoinHandle<()>>,
    /// Why the kernel refused the threads' [`ThreadPriority`], if it did.
    priority_refused: Option<String>,
}

impl std::fmt::Debug for DiskPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskPool")
            .field("threads", &self.threads.len())
            .field("capacity", &self.shared.capacity)
            .field("stats", &self.shared.stats.snapshot())
            .finish()
    }
}

impl DiskPool {
    /// Starts `config.threads` threads running `reader`; `None` when the
    /// pool is disabled (0 threads).
    pub fn new(config: PoolConfig, reader: Arc<dyn ReadIn>) -> io::Result<Option<Self>> {
        if config.threads == 0 {
            return Ok(None);
        }
        if let ThreadPriority::Nice(n) = config.priority {
            if n > MAX_NICE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("disk pool: nice {n} is above {MAX_NICE}, the lowest priority"),
                ));
            }
        }
        if config.queue == 0 || config.scratch == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "disk pool: queue ({}) and scratch ({} bytes) must both be at least 1",
                    config.queue, config.scratch
                ),
            ));
        }
        let shared = Arc::new(PoolState {
            queue: Mutex::new(Queue {
                jobs: VecDeque::with_capacity(config.queue),
                waiters: VecDeque::new(),
                reading: Vec::with_capacity(config.queue + config.threads),
                next_seq: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: config.queue,
            stats: PoolStats::default(),
            reader,
            reading: AtomicUsize::new(0),
        });
        let mut pool = DiskPool {
            shared,
            threads: Vec::with_capacity(config.threads),
            priority_refused: None,
        };
        let (started_tx, started) = std::sync::mpsc::channel();
        for i in 0..config.threads {
            let shared = Arc::clone(&pool.shared);
            let (scratch, priority) = (config.scratch, config.priority);
            let started = started_tx.clone();
            // On a spawn failure `pool` is dropped here, which stops and
            // joins the threads already started.
            let t = std::thread::Builder::new()
                .name(format!("zcserve-disk-{i}"))
                .spawn(move || {
                    let niced = match super::sys::set_thread_priority(priority) {
                        // A platform without per-thread priorities keeps
                        // the threads at their creator's.
                        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
                        r => r,
                    };
                    // `new` waits for one report per thread, then for every
                    // sender to be gone: this one goes before the work. A
                    // refused priority leaves the thread at its creator's,
                    // which is slower for the loops but never wrong.
                    let _ = started.send(niced);
                    drop(started);
                    work(&shared, scratch);
                })?;
            pool.threads.push(t);
        }
        drop(started_tx);
        pool.priority_refused = started.iter().find_map(Result::err).map(|e| e.to_string());
        Ok(Some(pool))
    }

    /// Queues a read-in of `[offset, offset + len)` of `file`, signalled on
    /// `done` when finished. Never blocks: a full queue answers
    /// [`SubmitError::Busy`], for a caller that would rather do the read
    /// itself than wait.
    pub fn submit(
        &self,
        done: &Completion,
        file: Arc<File>,
        offset: u64,
        len: u64,
    ) -> Result<Ticket, SubmitError> {
        match self.enqueue(done, file, offset, len, false)? {
            Submitted::Queued(t) => Ok(t),
            Submitted::Parked(_) => unreachable!("enqueue parks only when asked to"),
        }
    }

    /// Like [`DiskPool::submit`], but a full queue parks `done` instead of
    /// refusing: its descriptor turns readable when a pool thread takes a
    /// job off the queue, and the caller asks again. Never blocks; waiting
    /// callers cost one pointer each, and none of them reads on its own
    /// thread while the disk is saturated.
    pub fn submit_or_park(
        &self,
        done: &Completion,
        file: Arc<File>,
        offset: u64,
        len: u64,
    ) -> Result<Submitted, SubmitError> {
        self.enqueue(done, file, offset, len, true)
    }

    fn enqueue(
        &self,
        done: &Completion,
        file: Arc<File>,
        offset: u64,
        len: u64,
        park: bool,
    ) -> Result<Submitted, SubmitError> {
        done.claim()?;
        // Before the lock: a file whose identity cannot be had is read in
        // all the same, only not recognised by other sessions.
        let id = FileId::of(&file).ok();
        let stats = &self.shared.stats;
        let mut q = self.shared.lock();
        if q.jobs.len() >= self.shared.capacity || q.closed {
            if park && !q.closed {
                // Parked under the queue lock, so a thread that makes room
                // right after cannot miss this waiter. Lock order: queue,
                // then slot (threads never hold a slot while taking the
                // queue).
                *done.slot.lock() = State::Parked;
                q.waiters.push_back(Arc::downgrade(&done.slot));
                drop(q);
                add(&stats.parked, 1);
                return Ok(Submitted::Parked(Parking {
                    slot: Arc::clone(&done.slot),
                }));
            }
            return Err(self.refuse(q, done));
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        if let Some(file) = id {
            q.reading.push(Reading {
                seq,
                file,
                start: offset,
                end: offset.saturating_add(len),
            });
            self.shared
                .reading
                .store(q.reading.len(), Ordering::Release);
        }
        q.jobs.push_back(Job {
            work: Work::ReadIn {
                file,
                offset,
                len,
                seq,
            },
            slot: Arc::clone(&done.slot),
            queued_at: Instant::now(),
        });
        Ok(Submitted::Queued(self.queued(q, done, &stats.offloaded)))
    }

    /// Queues `send`, a session's sends from a range the pool read in,
    /// signalled on `done` when it returns; ahead of the read-ins waiting,
    /// since its pages are cached and it takes microseconds where they take
    /// milliseconds. Never blocks: a full queue or a closed pool answers
    /// [`SubmitError::Busy`] (the job is dropped unrun), and the caller
    /// sends on its own thread, as without this method.
    ///
    /// This is how nginx's `aio threads` sends: the bytes of a file read
    /// from the disk leave from a pool thread, which the kernel preempts
    /// whenever the event loop wakes, rather than from the event loop,
    /// where every request that arrives meanwhile waits for the send.
    pub fn submit_send(&self, done: &Completion, send: SendJob) -> Result<Ticket, SubmitError> {
        done.claim()?;
        let mut q = self.shared.lock();
        if q.jobs.len() >= self.shared.capacity || q.closed {
            return Err(self.refuse(q, done));
        }
        // Behind the sends already waiting, in the order they came.
        let at = q
            .jobs
            .iter()
            .position(|j| matches!(j.work, Work::ReadIn { .. }))
            .unwrap_or(q.jobs.len());
        q.jobs.insert(
            at,
            Job {
                work: Work::Send(send),
                slot: Arc::clone(&done.slot),
                queued_at: Instant::now(),
            },
        );
        Ok(self.queued(q, done, &self.shared.stats.sends))
    }

    /// Refuses a job because the queue is full or the pool closed: its
    /// completion is free again.
    fn refuse(&self, q: MutexGuard<'_, Queue>, done: &Completion) -> SubmitError {
        drop(q);
        *done.slot.lock() = State::Idle;
        add(&self.shared.stats.busy, 1);
        SubmitError::Busy
    }

    /// Counts a job just queued (in `counter` and the queue depth), wakes a
    /// thread for it, and gives the caller its ticket.
    fn queued(&self, q: MutexGuard<'_, Queue>, done: &Completion, counter: &AtomicU64) -> Ticket {
        let stats = &self.shared.stats;
        let depth = q.jobs.len() as u64;
        stats.queued.store(depth, Ordering::Relaxed);
        stats.max_queued.fetch_max(depth, Ordering::Relaxed);
        add(counter, 1);
        drop(q);
        self.shared.ready.notify_one();
        Ticket {
            slot: Arc::clone(&done.slot),
            spent: false,
        }
    }

    /// Whether any job is queued or running: when not, no range can be
    /// [`DiskPool::is_reading`], and asking costs one atomic load.
    pub fn any_reading(&self) -> bool {
        self.shared.reading.load(Ordering::Acquire) > 0
    }

    /// Whether a job queued or running reads any of `[offset, offset +
    /// len)` of `file`.
    ///
    /// The page cache counts a page as cached from the moment its read is
    /// queued, so an oracle may call such a range resident while a move
    /// that touched it would still wait for the disk; a gate asks here
    /// too, and sends such a range to the pool, where the wait is harmless.
    pub fn is_reading(&self, file: FileId, offset: u64, len: u64) -> bool {
        if !self.any_reading() {
            return false;
        }
        let end = offset.saturating_add(len);
        self.shared
            .lock()
            .reading
            .iter()
            .any(|r| r.file == file && r.start < end && offset < r.end)
    }

    /// The pool's counters.
    pub fn stats(&self) -> &PoolStats {
        &self.shared.stats
    }

    /// Why the threads run at their creator's priority rather than the
    /// one [`PoolConfig::priority`] asked for (a seccomp filter or a
    /// sandbox that refuses `sched_setscheduler`, say); `None` when they
    /// got it. The pool works either way.
    pub fn priority_refused(&self) -> Option<&str> {
        self.priority_refused.as_deref()
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        let (cancelled, waiters): (Vec<Job>, Vec<Weak<Slot>>) = {
            let mut q = self.shared.lock();
            q.closed = true;
            self.shared.stats.queued.store(0, Ordering::Relaxed);
            q.reading.clear();
            self.shared.reading.store(0, Ordering::Release);
            (q.jobs.drain(..).collect(), q.waiters.drain(..).collect())
        };
        self.shared.ready.notify_all();
        // Parked callers wake and ask again, to be refused or to read on
        // their own: nobody waits for a pool that is gone.
        for w in waiters {
            if let Some(slot) = w.upgrade() {
                wake(&slot);
            }
        }
        for job in cancelled {
            let stats = &self.shared.stats;
            add(&stats.queue_ns, nanos(job.queued_at));
            add(&stats.failed, 1);
            add(&stats.completed, 1);
            // Not `Interrupted`: callers retry that kind, and this job
            // will never run.
            // A send job is dropped unrun: its session finds its state
            // where it left it and sends on its own thread.
            job.slot.finish(Err(io::Error::other(
                "disk pool shut down before the job ran",
            )));
        }
        for t in self.threads.drain(..) {
            // A thread that panicked outside a read has nothing left to
            // clean up; the panic was already reported on stderr.
            let _ = t.join();
        }
    }
}

/// Wakes a parked completion; false when it no longer waits (its parking
/// was dropped), so the caller wakes the next one instead.
fn wake(slot: &Slot) -> bool {
    let mut state = slot.lock();
    if !matches!(*state, State::Parked) {
        return false;
    }
    *state = State::Idle;
    let _ = slot.notifier.notify();
    true
}

/// One pool thread: take a job, read, signal, until the pool closes.
fn work(shared: &PoolState, scratch_len: usize) {
    let mut scratch = crate::PageBuf::new(scratch_len);
    let stats = &shared.stats;
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    stats.queued.store(q.jobs.len() as u64, Ordering::Relaxed);
                    // This made room for one: wake the oldest live waiter.
                    while let Some(w) = q.waiters.pop_front() {
                        if w.upgrade().is_some_and(|slot| wake(&slot)) {
                            break;
                        }
                    }
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        add(&stats.queue_ns, nanos(job.queued_at));
        let started = Instant::now();
        let r = match job.work {
            Work::ReadIn {
                file,
                offset,
                len,
                seq,
            } => {
                // A panicking reader must not leave its session waiting
                // forever nor take the thread down: it becomes this job's
                // error.
                let r = catch_unwind(AssertUnwindSafe(|| {
                    shared.reader.read_in(&file, offset, len, &mut scratch)
                }))
                .unwrap_or_else(|_| Err(io::Error::other("disk read-in panicked")));
                add(&stats.read_ns, nanos(started));
                match &r {
                    Ok(n) => add(&stats.bytes_in, *n),
                    Err(_) => add(&stats.failed, 1),
                }
                // Forgotten before the session is told, so that once any
                // session sees the read-in done, no other is still sent to
                // the pool for it.
                shared.done_reading(&mut shared.lock(), seq);
                r
            }
            Work::Send(send) => {
                let r = catch_unwind(AssertUnwindSafe(send))
                    .unwrap_or_else(|_| Err(io::Error::other("disk pool send panicked")));
                add(&stats.send_ns, nanos(started));
                match &r {
                    Ok(n) => add(&stats.bytes_sent, *n),
                    Err(_) => add(&stats.failed, 1),
                }
                r
            }
        };
        add(&stats.completed, 1);
        job.slot.finish(r);
    }
}
