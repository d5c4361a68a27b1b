//! `uring`: file -> pipe -> socket with io_uring's `IORING_OP_SPLICE`,
//! completion-driven.
//!
//! Each pump submits one linked chain to a ring and answers
//! [`Pump::Pending`]; the driver waits until the ring's descriptor turns
//! readable (completions posted) and pumps again, which reaps them and
//! submits the next chain. A chain is
//!
//! ```text
//! SPLICE file -> pipe (n bytes)  -link->  [POLL_ADD socket POLLOUT  -link->]  SPLICE pipe -> socket (n bytes)
//! ```
//!
//! The poll is only linked in after the socket was found full: splice to a
//! non-blocking socket completes with `-EAGAIN` instead of waiting (the
//! kernel's io_uring does not arm a poll for splice), so the session waits
//! for `POLLOUT` inside the ring instead of spinning. A short splice severs
//! the link: the bytes already in the pipe go out with the next chain.
//!
//! Why splice rather than `READ` + `SEND_ZC`: splice moves page references
//! and never points the kernel at user memory, so a session dropped with
//! work in flight can never leave the kernel writing into freed buffers;
//! and on loopback the receiver copies every byte anyway, so a zero-copy
//! send cannot show its gain there. The shared pump sends the response head
//! with `send(MSG_MORE)` before the first chain, as for `sendfile` and
//! `splice`.
//!
//! Each session holds a *lane* (a small ring and a pipe) from its first
//! pump until it is dropped, so the ring descriptor the driver registered
//! stays the same. Lanes come from a pool; a lane goes back to it only when
//! every completion has been reaped and its pipe is empty.
//!
//! # Dropping a session with work in flight
//!
//! io_uring resolves a descriptor when an operation is issued, not when it
//! is submitted (a linked send is issued only after the read before it
//! completes), so every descriptor a chain names must stay open until its
//! last completion is reaped. A read already running in an io-wq worker
//! cannot be cancelled, and on a slow disk it may take long: waiting for it
//! in `drop` would stall the event-loop thread that dropped the session.
//! So `drop` submits cancellations for what is in flight and hands the
//! lane, with the file and the socket, to one background reaper thread,
//! which waits for the completions and then closes the lane; drop returns
//! at once. The socket a chain names is the session's own
//! duplicate (made when work goes into the kernel, closed when none is
//! left), so the caller may close its socket as soon as it has dropped the
//! session: the connection stays open until the reaper is done with it,
//! and a later connection that reuses the descriptor number can never
//! receive this session's bytes.
//!
//! Threads that create or submit to a ring become its users: when a ring
//! closes, the kernel notifies each of them with task work, which makes a
//! blocking call with a timeout in such a thread fail with `EINTR`. Event
//! loops retry it; a host's own blocking code must too.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use zcserve_core::{
    Attempt, ByteRange, Move, Moved, Mover, Pumping, Source, Stats, Step, Syscall, Transfer,
    TransferError,
};

use crate::config::Config;
use crate::pipe::Pipe;
use crate::pool::Pool;

/// Submission entries per ring: the longest chain is three, and closing a
/// session may add one cancellation per operation.
const RING_ENTRIES: u32 = 8;

/// `user_data` tags: each lane runs one session's chain at a time, so the
/// operation's kind is all a completion needs to say.
const READ: u64 = 1;
const POLL: u64 = 2;
const SEND: u64 = 3;
const CANCEL: u64 = 4;
/// A poll of the disk gate's descriptor (see `Step::watch`).
const WATCH: u64 = 5;

/// Whether io_uring can run here, asked once per process with counters of
/// its own (the probe belongs to no backend).
pub(crate) fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            Lanes::new(&Config::default(), Arc::default())
                .map(drop)
                .map_err(|e| match e {
                    TransferError::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                })
        })
        .clone()
}

pub(crate) fn build(config: &Config, pumping: Pumping) -> Result<Arc<dyn Transfer>, TransferError> {
    let lanes = Lanes::new(config, pumping.stats().clone())?;
    // The disk gate as for every backend. Without it a cold read would
    // not stall the loop either (io_uring runs every splice in its io-wq
    // workers), but those workers are forked from the loop's thread and
    // run at its priority, the hot client's splices among the cold ones':
    // with the gate, a cold range is read in and sent by the disk pool
    // (see `pool_move`), and the ring keeps the resident ones.
    Ok(pumping.with(Uring(lanes)))
}

/// The io_uring splice backend: its lane pool.
struct Uring(Arc<Lanes>);

/// The lanes of one backend: idle ones pooled, dropped ones being reaped.
struct Lanes {
    pool: Pool<Lane>,
    pipe_size: usize,
    stats: Arc<Stats>,
    reaping: Reaping,
    /// Whether dropping a session cancels its work in flight; off only in
    /// tests, to stand in for work the kernel cannot cancel (a disk read
    /// running in io-wq).
    cancel_on_drop: bool,
}

/// A ring and a pipe, used by one session at a time.
struct Lane {
    ring: IoUring,
    pipe: Pipe,
    /// Where the ring's unmapping is counted when the lane closes.
    stats: Arc<Stats>,
}

impl Lane {
    /// The mappings `IoUring::new` made of the ring's descriptor: the
    /// rings and the submission entries, and a separate completion ring on
    /// kernels without `IORING_FEAT_SINGLE_MMAP`.
    fn mappings(ring: &IoUring) -> usize {
        if ring.params().is_feature_single_mmap() {
            2
        } else {
            3
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        for _ in 0..Lane::mappings(&self.ring) {
            self.stats.syscall(Syscall::Munmap);
        }
    }
}

impl Lanes {
    /// The lanes of a new backend, with one lane made at once: a kernel or
    /// process that refuses io_uring (`kernel.io_uring_disabled`, no
    /// io_uring at all, a seccomp filter, no `IORING_OP_SPLICE`) shows up
    /// as [`TransferError::Unavailable`] at start-up, not on a request.
    fn new(config: &Config, stats: Arc<Stats>) -> Result<Arc<Self>, TransferError> {
        let lanes = Arc::new(Lanes {
            pool: Pool::new(config.max_idle),
            pipe_size: config.pipe_size,
            stats,
            reaping: Reaping::default(),
            cancel_on_drop: true,
        });
        let lane = lanes.new_lane().map_err(|e| match e.errno() {
            Some(errno) => unavailable(errno),
            None => e,
        })?;
        let mut probe = Probe::new();
        lanes
            .stats
            .counted_io(Syscall::UringRegister, || {
                lane.ring.submitter().register_probe(&mut probe)
            })
            .map_err(|e| unavailable(e.errno().unwrap_or(Errno::EIO)))?;
        for (code, name) in [
            (opcode::Splice::CODE, "IORING_OP_SPLICE"),
            (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
            (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(TransferError::Unavailable {
                    backend: "uring",
                    reason: format!("this kernel's io_uring lacks {name}"),
                });
            }
        }
        lanes.pool.give(lane);
        Ok(lanes)
    }

    fn new_lane(&self) -> Result<Lane, TransferError> {
        let ring = self
            .stats
            .counted_io(Syscall::UringSetup, || IoUring::new(RING_ENTRIES))?;
        for _ in 0..Lane::mappings(&ring) {
            self.stats.syscall(Syscall::Mmap);
        }
        let pipe = Pipe::new(self.pipe_size, &self.stats)?;
        Ok(Lane {
            ring,
            pipe,
            stats: Arc::clone(&self.stats),
        })
    }
}

/// Why io_uring refused, in words that say what to change.
fn unavailable(errno: Errno) -> TransferError {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_string());
    let reason = match (errno, sysctl.as_deref()) {
        (Errno::EPERM, Some(v)) if v != "0" => format!(
            "io_uring is disabled by the sysctl kernel.io_uring_disabled={v} (set it to 0, or pick another backend)"
        ),
        (Errno::EPERM, _) => {
            "io_uring_setup was refused (EPERM): a seccomp filter or container policy blocks io_uring".into()
        }
        (Errno::ENOSYS, _) => {
            "this kernel has no io_uring (ENOSYS), or a seccomp filter hides it".into()
        }
        (e, _) => format!("io_uring_setup failed: {e}"),
    };
    TransferError::Unavailable {
        backend: "uring",
        reason,
    }
}

impl Mover for Uring {
    type Step = UringStep;

    fn begin(&self, source: &Source, _: ByteRange, _: &Stats) -> Result<UringStep, TransferError> {
        Ok(UringStep {
            file: source.file().clone(),
            lanes: self.0.clone(),
            lane: None,
            sock: None,
            chain: Chain::default(),
            queued: false,
            spoiled: false,
        })
    }

    fn quiesce(&self, limit: std::time::Duration) -> bool {
        self.0.reaping.wait_idle(limit)
    }
}

/// The operations of the current chain whose completions have not been
/// reaped, with the length each asked for.
#[derive(Debug, Default, Clone, Copy)]
struct Flight {
    read: Option<u32>,
    poll: bool,
    send: Option<u32>,
    cancels: u32,
    /// A poll of the disk gate's descriptor, which wakes the ring while the
    /// session waits for the disk pool.
    watch: bool,
}

impl Flight {
    /// Everything the ring still holds: what must be reaped (or cancelled)
    /// before the lane is free.
    fn count(&self) -> u32 {
        self.chain() + self.cancels + u32::from(self.watch)
    }

    /// The operations of the chain itself.
    fn chain(&self) -> u32 {
        u32::from(self.read.is_some()) + u32::from(self.poll) + u32::from(self.send.is_some())
    }
}

/// A lane's chain as its completions tell it: what is in flight, what the
/// pipe holds, whether the socket was last found full. Kept by the session
/// while it lives and by the reaper after it was dropped.
#[derive(Debug, Default)]
struct Chain {
    flight: Flight,
    /// Bytes read from the file into the pipe and not yet in the socket.
    in_pipe: usize,
    /// The last send found the socket full: the next one waits for POLLOUT.
    socket_full: bool,
}

/// What one completion meant.
enum Reaped {
    Sent(usize),
    Staged(usize),
    /// The read found the end of the file.
    Eof,
    /// The send found the socket full.
    SocketFull,
    /// Bookkeeping only (a poll fired, work was cancelled).
    Nothing,
    Failed(TransferError),
}

impl Chain {
    fn apply(&mut self, cqe: &cqueue::Entry) -> Reaped {
        let res = cqe.result();
        let err = (res < 0).then(|| Errno::from_raw(-res));
        match (cqe.user_data(), err) {
            (READ, None) => {
                self.flight.read = None;
                self.in_pipe += res as usize;
                if res == 0 {
                    Reaped::Eof
                } else {
                    Reaped::Staged(res as usize)
                }
            }
            (POLL, None) => {
                self.flight.poll = false;
                self.socket_full = false;
                Reaped::Nothing
            }
            (SEND, None) => {
                let asked = self.flight.send.take().unwrap_or(0);
                let n = res as usize;
                debug_assert!(n <= self.in_pipe);
                self.in_pipe -= n.min(self.in_pipe);
                // A short send means the socket buffer filled.
                if (n as u64) < u64::from(asked) {
                    self.socket_full = true;
                }
                Reaped::Sent(n)
            }
            // Fired or cancelled: either way the gate is asked next.
            (WATCH, _) => {
                self.flight.watch = false;
                Reaped::Nothing
            }
            (SEND, Some(Errno::EAGAIN)) => {
                self.flight.send = None;
                self.socket_full = true;
                Reaped::SocketFull
            }
            (tag @ (READ | POLL | SEND), Some(e)) => {
                match tag {
                    READ => self.flight.read = None,
                    POLL => self.flight.poll = false,
                    _ => self.flight.send = None,
                }
                match e {
                    // Cancelled, interrupted: the next chain tries again.
                    Errno::ECANCELED | Errno::EINTR | Errno::EAGAIN => Reaped::Nothing,
                    e if tag == POLL => Reaped::Failed(TransferError::sys(Syscall::Poll, e)),
                    e => Reaped::Failed(TransferError::sys(Syscall::Splice, e)),
                }
            }
            _ => {
                self.flight.cancels = self.flight.cancels.saturating_sub(1);
                Reaped::Nothing
            }
        }
    }
}

/// Takes one posted completion off `lane`'s ring, if there is one (no
/// syscall: the completion queue is shared memory).
fn next_completion(lane: &mut Lane) -> Option<cqueue::Entry> {
    lane.ring.completion().next()
}

struct UringStep {
    file: Arc<File>,
    lanes: Arc<Lanes>,
    lane: Option<Lane>,
    /// The session's own duplicate of its socket, named by every chain;
    /// held while work is in flight.
    sock: Option<OwnedFd>,
    chain: Chain,
    /// A chain was pushed to the ring but not yet submitted.
    queued: bool,
    /// The session failed: whatever is in the pipe belongs to no one, so
    /// the lane is closed rather than pooled.
    spoiled: bool,
}

impl UringStep {
    /// What the next chain's read asks for.
    fn want(&self, m: &Move<'_>) -> usize {
        let cap = self
            .lane
            .as_ref()
            .map_or(self.lanes.pipe_size, |l| l.pipe.capacity);
        m.chunk(cap).min(u32::MAX as usize)
    }

    /// Pushes the next chain: a read into the pipe if it is empty, then a
    /// send of what the pipe will hold. No syscall but the first chain's
    /// lane, and its duplicate of the socket.
    fn push_chain(&mut self, m: &Move<'_>) -> Result<(), TransferError> {
        let want = self.want(m);
        if self.lane.is_none() {
            self.lane = Some(self.lanes.pool.take(|| self.lanes.new_lane())?);
        }
        if self.sock.is_none() {
            let dup = m
                .stats()
                .counted_io(Syscall::Fcntl, || m.sock().try_clone_to_owned())?;
            self.sock = Some(dup);
        }
        let (Some(lane), Some(sock)) = (self.lane.as_mut(), self.sock.as_ref()) else {
            unreachable!("both made above");
        };
        let mut chain: [Option<squeue::Entry>; 3] = [None, None, None];
        let mut n = self.chain.in_pipe;
        if n == 0 {
            let offset = i64::try_from(m.offset()).map_err(|_| TransferError::InvalidRange {
                start: m.offset(),
                end: m.end(),
            })?;
            chain[0] = Some(
                opcode::Splice::new(
                    types::Fd(self.file.as_raw_fd()),
                    offset,
                    types::Fd(lane.pipe.write.as_raw_fd()),
                    -1,
                    want as u32,
                )
                .flags(libc::SPLICE_F_MOVE)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(READ),
            );
            self.chain.flight.read = Some(want as u32);
            n = want;
        }
        if self.chain.socket_full {
            chain[1] = Some(
                opcode::PollAdd::new(types::Fd(sock.as_raw_fd()), libc::POLLOUT as u32)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(POLL),
            );
            self.chain.flight.poll = true;
        }
        let mut flags = libc::SPLICE_F_MOVE;
        // MORE only while more body follows this piece: on the last one it
        // would hold back the response's final segment.
        if m.body_left() > n as u64 {
            flags |= libc::SPLICE_F_MORE;
        }
        chain[2] = Some(
            opcode::Splice::new(
                types::Fd(lane.pipe.read.as_raw_fd()),
                -1,
                types::Fd(sock.as_raw_fd()),
                -1,
                n as u32,
            )
            .flags(flags)
            .build()
            .user_data(SEND),
        );
        self.chain.flight.send = Some(n as u32);
        let mut sq = lane.ring.submission();
        for entry in chain.iter().flatten() {
            // SAFETY: the entry names descriptors only, no memory. The file,
            // the pipe and the socket's duplicate are held by this step, and
            // after a drop by the reaper, until every completion is reaped.
            unsafe { sq.push(entry) }
                .map_err(|_| TransferError::sys(Syscall::UringEnter, Errno::EBUSY))?;
        }
        Ok(())
    }

    /// Reaps what is posted while no chain is in flight, when only watches
    /// and cancellations can be: their completions carry no bytes.
    fn reap_between_chains(&mut self) {
        debug_assert_eq!(self.chain.flight.chain(), 0);
        if let Some(lane) = self.lane.as_mut() {
            while let Some(cqe) = next_completion(lane) {
                self.chain.apply(&cqe);
            }
        }
    }

    /// Submits cancellations of whatever is in flight (without waiting).
    fn cancel_in_flight(&mut self, stats: &Stats) {
        let Some(lane) = self.lane.as_mut() else {
            return;
        };
        let targets = [
            (self.chain.flight.read.is_some(), READ),
            (self.chain.flight.poll, POLL),
            (self.chain.flight.send.is_some(), SEND),
            (self.chain.flight.watch, WATCH),
        ];
        {
            let mut sq = lane.ring.submission();
            for (live, tag) in targets {
                let cancel = opcode::AsyncCancel::new(tag).build().user_data(CANCEL);
                // SAFETY: a cancellation names no memory and no descriptor,
                // only the user_data of our own operation.
                if live && unsafe { sq.push(&cancel) }.is_ok() {
                    self.chain.flight.cancels += 1;
                }
            }
        }
        if stats
            .counted_io(Syscall::UringEnter, || lane.ring.submit())
            .is_err()
        {
            // The ring itself failed: nothing can be known about what is in
            // flight; the reaper closes the lane once it gives up.
            self.spoiled = true;
        }
    }
}

impl Step for UringStep {
    /// A chain reads only when no chain is in flight and the pipe is empty
    /// (a watch of the disk gate may be).
    fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)> {
        let idle = self.chain.flight.chain() == 0 && !self.queued;
        (idle && self.chain.in_pipe == 0 && m.body_left() > 0).then(|| (m.offset(), self.want(m)))
    }

    /// On a disk-pool thread, sending a range it read in: a plain
    /// `sendfile` from the file into the socket, between chains only (the
    /// pipe empty, nothing in flight, which is where the gate sent the
    /// session to the pool). A chain would run its splices in the ring's
    /// io-wq workers at the loop's priority, not on this `SCHED_IDLE`
    /// thread.
    fn pool_move(&mut self, m: &Move<'_>) -> Option<Attempt> {
        self.next_read(m)?;
        Some(crate::sendfile::send_from(&self.file, m))
    }

    /// Reaps one completion if one is posted; else answers `Pending` while
    /// work is in flight; else submits the next chain.
    fn try_move(&mut self, m: &Move<'_>) -> Attempt {
        if let Some(cqe) = self.lane.as_mut().and_then(next_completion) {
            let at = m.offset() + self.chain.in_pipe as u64;
            return Attempt::no_call(match self.chain.apply(&cqe) {
                Reaped::Sent(n) => Moved::Sent(n),
                Reaped::Staged(n) => Moved::Staged(n),
                Reaped::Eof => Moved::Shrank(at),
                Reaped::SocketFull => Moved::FullInKernel,
                Reaped::Nothing => Moved::Again,
                Reaped::Failed(e) => return Attempt::failed(None, e),
            });
        }
        if self.chain.flight.chain() > 0 && !self.queued {
            return Attempt::no_call(Moved::Pending);
        }
        if !self.queued {
            if let Err(e) = self.push_chain(m) {
                return Attempt::failed(None, e);
            }
            self.queued = true;
        }
        let lane = self.lane.as_mut().expect("a queued chain has a lane");
        let r = lane.ring.submit();
        if r.is_ok() {
            self.queued = false;
        }
        // EBUSY (completion queue overflowing) cannot happen with one chain
        // of at most six completions in a queue of 16; if it does, the
        // session fails rather than waits forever.
        Attempt::made_io(Syscall::UringEnter, r.map(|_| Moved::Pending))
    }

    /// The lane stays with the session until it is dropped (its ring is the
    /// descriptor the driver waits on); a failure only marks it spoiled.
    /// The duplicate of the socket is closed as soon as nothing is in
    /// flight, so that a caller who closes its socket before dropping a
    /// finished session still closes the connection.
    fn release(&mut self, failed: bool) {
        if failed {
            self.spoiled = true;
        }
        if self.chain.flight.chain() == 0 && !self.queued {
            self.sock = None;
        }
    }

    /// A poll of the gate's descriptor on this session's ring, so the ring
    /// (the descriptor the driver waits on) turns readable when the disk
    /// pool is done; the lane is taken now if the session has none yet.
    /// The poll is reaped like any completion and needs no answer.
    fn watch(&mut self, fd: BorrowedFd<'_>) -> Result<(), TransferError> {
        if self.queued || self.chain.flight.chain() > 0 {
            // The chain's own completions wake the ring.
            return Ok(());
        }
        // An earlier watch may have fired without being reaped (the pump
        // that it woke went straight to the gate): reap it, or a new wait
        // would find no poll armed.
        self.reap_between_chains();
        if self.chain.flight.watch {
            return Ok(());
        }
        if self.lane.is_none() {
            self.lane = Some(self.lanes.pool.take(|| self.lanes.new_lane())?);
        }
        let lane = self.lane.as_mut().expect("taken above");
        let poll = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(WATCH);
        // SAFETY: the entry names a descriptor only, no memory; it is
        // submitted at once, and the kernel holds its own reference to the
        // file from then on.
        unsafe { lane.ring.submission().push(&poll) }
            .map_err(|_| TransferError::sys(Syscall::UringEnter, Errno::EBUSY))?;
        match self
            .lanes
            .stats
            .counted_io(Syscall::UringEnter, || lane.ring.submit())
        {
            Ok(_) => {
                self.chain.flight.watch = true;
                Ok(())
            }
            Err(e) => {
                // The entry may still sit in the queue: this lane is not
                // to be reused.
                self.spoiled = true;
                Err(e)
            }
        }
    }

    fn close(&mut self, stats: &Arc<Stats>) {
        if self.queued {
            // Pushed but never submitted: the kernel holds none of it, and
            // closing the ring discards the entries.
            self.lane = None;
            return;
        }
        if self.chain.flight.chain() == 0 && self.chain.flight.watch {
            // Only the watch may be left: it has fired (the pool is done)
            // but is not reaped yet. Reaping it here keeps the lane
            // poolable rather than closed by the reaper.
            self.reap_between_chains();
        }
        if self.chain.flight.count() > 0 && self.lanes.cancel_on_drop {
            self.cancel_in_flight(stats);
        }
        let Some(lane) = self.lane.take() else {
            return;
        };
        let job = Job {
            lane,
            chain: std::mem::take(&mut self.chain),
            spoiled: self.spoiled,
            lanes: self.lanes.clone(),
            _file: self.file.clone(),
            _sock: self.sock.take(),
        };
        if job.chain.flight.count() == 0 {
            job.finish();
        } else {
            // Reaped lanes are closed, not pooled: they come back after new
            // sessions have made lanes of their own, and pooling them would
            // grow the pool with the reaper's lag.
            let mut job = job;
            job.spoiled = true;
            hand_to_reaper(job);
        }
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.lane.as_ref().map(|lane| lane.ring.as_fd())
    }
}

/// A dropped session's lane and everything its chain names, held until
/// every completion is reaped.
struct Job {
    lane: Lane,
    chain: Chain,
    spoiled: bool,
    lanes: Arc<Lanes>,
    _file: Arc<File>,
    _sock: Option<OwnedFd>,
}

impl Job {
    /// Waits for every completion still due, then pools the lane if it is
    /// clean (a finished session's) or closes it (a dropped one's). Bytes that still reach the socket are counted.
    fn finish(mut self) {
        let stats = self.lanes.stats.clone();
        while self.chain.flight.count() > 0 {
            let want = self.chain.flight.count() as usize;
            match stats.counted_io(Syscall::UringEnter, || self.lane.ring.submit_and_wait(want)) {
                Ok(_) => {}
                Err(e) if e.errno() == Some(Errno::EINTR) => {}
                Err(_) => {
                    // The ring failed: closing it makes the kernel cancel
                    // and reap what it still holds.
                    self.spoiled = true;
                    break;
                }
            }
            while let Some(cqe) = next_completion(&mut self.lane) {
                if let Reaped::Sent(n) = self.chain.apply(&cqe) {
                    stats.body_sent(n as u64);
                }
            }
        }
        if !self.spoiled && self.chain.in_pipe == 0 && self.chain.flight.count() == 0 {
            self.lanes.pool.give(self.lane);
        }
        // Otherwise the lane drops here: closing the ring and the pipe
        // discards what they hold. The file and the socket close after it.
    }
}

/// Sends `job` to the process's one reaper thread, started on first use;
/// where no thread can be started, reaps on this thread instead.
fn hand_to_reaper(job: Job) {
    static REAPER: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("zcserve-uring-reaper".into())
            .spawn(move || {
                for job in rx {
                    let lanes = job.lanes.clone();
                    job.finish();
                    lanes.reaping.done();
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let lanes = job.lanes.clone();
    lanes.reaping.started();
    let unsent = match reaper {
        Some(tx) => tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .err()
            .map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = unsent {
        job.finish();
        lanes.reaping.done();
    }
}

/// How many of a backend's lanes the reaper holds.
#[derive(Debug, Default)]
struct Reaping {
    held: Mutex<usize>,
    changed: Condvar,
}

impl Reaping {
    fn started(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn done(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.changed.notify_all();
    }

    /// How many lanes the reaper holds now.
    #[cfg(test)]
    fn held(&self) -> usize {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the reaper holds no lane of this backend, or `limit`
    /// passed (only to catch a hang); true when it holds none.
    fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (held, _) = self
            .changed
            .wait_timeout_while(held, limit, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *held == 0
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use zcserve_core::Pump;

    use super::*;

    /// A bound that only catches a hang.
    const HANG: Duration = Duration::from_secs(60);

    /// Whether io_uring runs here; a machine where it does not fails these
    /// tests unless the build allowed the skip.
    fn uring_here() -> bool {
        match crate::Backend::Uring.check() {
            Ok(()) => true,
            Err(e)
                if option_env!("ZCSERVE_ALLOW_SKIP")
                    .is_some_and(|s| s.contains("uring") || s.contains("all")) =>
            {
                println!("SKIPPED uring: {e} (allowed by ZCSERVE_ALLOW_SKIP)");
                false
            }
            Err(e) => panic!(
                "io_uring cannot run here ({e}); build with ZCSERVE_ALLOW_SKIP=uring to skip visibly"
            ),
        }
    }

    /// A uring backend whose lanes the test can see.
    fn backend(budget: usize, cancel_on_drop: bool) -> (Arc<Lanes>, Arc<dyn Transfer>) {
        let stats = Arc::new(Stats::new());
        let mut lanes = Lanes::new(&Config::default(), stats.clone()).unwrap();
        Arc::get_mut(&mut lanes).unwrap().cancel_on_drop = cancel_on_drop;
        let t = Pumping::new("uring", stats, budget).with(Uring(lanes.clone()));
        (lanes, t)
    }

    #[test]
    fn refusals_say_what_to_change() {
        let text = |e: TransferError| e.to_string();
        let enosys = text(unavailable(Errno::ENOSYS));
        assert!(
            enosys.contains("no io_uring") && enosys.contains("seccomp"),
            "{enosys}"
        );
        let eperm = text(unavailable(Errno::EPERM));
        // Which of the two EPERM texts depends on this machine's sysctl.
        assert!(
            eperm.contains("kernel.io_uring_disabled=") || eperm.contains("seccomp"),
            "{eperm}"
        );
        assert!(text(unavailable(Errno::ENOMEM)).contains("io_uring_setup failed"));
    }

    #[test]
    fn a_finished_session_gives_its_lane_back() {
        if !uring_here() {
            return;
        }
        let (lanes, u) = backend(Config::default().max_chunk, true);
        assert_eq!(lanes.pool.idle(), 1, "the build's lane is pooled");
        let path = std::env::temp_dir().join(format!("zc-uring-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 100_000]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            (&b).read_to_end(&mut v).map(|_| v.len())
        });
        let mut s = u
            .start(
                &Source::new(file).unwrap(),
                ByteRange::full(100_000),
                Vec::new(),
            )
            .unwrap();
        zcserve_core::blocking::send_all(s.as_mut(), a.as_fd(), None).unwrap();
        assert_eq!(
            lanes.pool.idle(),
            0,
            "the session holds the lane until dropped"
        );
        drop(s);
        assert_eq!(lanes.pool.idle(), 1);
        drop(a);
        assert_eq!(reader.join().unwrap().unwrap(), 100_000);
    }

    /// A session dropped while its chain waits in the kernel (here a poll
    /// for room in a full socket, with cancellation off to stand in for a disk read
    /// io-wq cannot cancel) returns from drop at once; the reaper holds the
    /// lane, the file and the session's duplicate of the socket until the
    /// peer reads, then the linked send still reaches the right peer
    /// although the caller closed its socket, and only then does the
    /// connection close.
    #[test]
    fn drop_hands_work_in_flight_to_the_reaper() {
        if !uring_here() {
            return;
        }
        const PIECE: usize = 4096;
        let (lanes, u) = backend(PIECE, false);
        let path = std::env::temp_dir().join(format!("zc-uring-reap-{}", std::process::id()));
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // Fill the socket first, down to the last byte it takes, so the
        // session's first send finds it full.
        let mut junk = 0;
        for piece in [1 << 16, 1 << 12, 1] {
            loop {
                match (&a).write(&vec![0u8; piece]) {
                    Ok(n) => junk += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let mut s = u
            .start(
                &Source::new(file).unwrap(),
                ByteRange::full(1 << 20),
                Vec::new(),
            )
            .unwrap();
        // Pump until the send came back EAGAIN (counted as a wait): the
        // pump then submitted the next chain, which polls for room first
        // and so stays in the kernel until the peer reads.
        loop {
            assert_eq!(s.pump(a.as_fd()).unwrap(), Pump::Pending);
            if lanes.stats.snapshot().would_block > 0 {
                break;
            }
            let ring = s.completion_fd().unwrap();
            let mut fds = [nix::poll::PollFd::new(ring, nix::poll::PollFlags::POLLIN)];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap();
        }
        assert_eq!(lanes.stats.snapshot().body_bytes, 0);

        // A drop that waited for the poll would never return: nobody reads.
        let (tx, rx) = std::sync::mpsc::channel();
        let dropper = std::thread::spawn(move || {
            drop(s);
            tx.send(()).unwrap();
        });
        rx.recv_timeout(HANG)
            .expect("drop waited for the work in flight");
        dropper.join().unwrap();
        assert_eq!(lanes.reaping.held(), 1, "the reaper holds the lane");
        // Nobody reads yet, so the chain cannot finish: quiescing must
        // report work left, however long it waits.
        assert!(
            !u.quiesce(Duration::from_millis(20)),
            "quiesced while the reaper held a lane"
        );
        // The caller may close its socket at once: the session's duplicate
        // keeps the connection open for the send still linked.
        drop(a);

        let mut got = Vec::new();
        (&b).read_to_end(&mut got).unwrap();
        assert!(u.quiesce(HANG), "the reaper never finished");
        let body = &got[junk..];
        assert!(!body.is_empty(), "the linked send never reached the peer");
        assert!(data.starts_with(body), "the peer got bytes out of order");
        assert_eq!(lanes.stats.snapshot().body_bytes, body.len() as u64);
    }
}
