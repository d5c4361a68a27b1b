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
//! and on loopback a zero-copy send is copied at the receiver anyway
//! (DESIGN.md). The response head goes out with `send(MSG_MORE)` before the
//! first chain, as for `sendfile` and `splice`, for the same reason.
//!
//! Each session holds a *lane* (a small ring and a pipe) from its first
//! pump until it is dropped, so the ring descriptor the driver registered
//! stays the same. Lanes come from a pool; a lane goes back to it only when
//! every completion has been reaped and its pipe is empty. io_uring
//! resolves descriptors when an operation is issued, not when it is
//! submitted, so dropping a session with work in flight cancels that work
//! and waits for its completions before the file or the lane can close, and
//! the caller must drop the session before it closes the socket.
//!
//! Threads that create or submit to a ring become its users: when a ring
//! closes, the kernel notifies each of them with task work, which makes a
//! blocking call with a timeout in such a thread fail with `EINTR`. Event
//! loops retry it; a host's own blocking code must too.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use io_uring::{IoUring, Probe, opcode, squeue, types};
use nix::errno::Errno;
use zcserve_core::{
    ByteRange, Progress, Pump, Session, Source, Stats, Step, Syscall, Tracked, Transfer,
    TransferError, errno_of,
};

use crate::Config;
use crate::pipe::Pipe;
use crate::pool::Pool;
use crate::sock::send_prefix;

/// Submission entries per ring: the longest chain is three, and closing a
/// session may add one cancellation per operation.
const RING_ENTRIES: u32 = 8;

/// `user_data` tags: each lane runs one session's chain at a time, so the
/// operation's kind is all a completion needs to say.
const READ: u64 = 1;
const POLL: u64 = 2;
const SEND: u64 = 3;
const CANCEL: u64 = 4;

/// The io_uring splice backend.
#[derive(Debug)]
pub struct Uring {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    stats: Arc<Stats>,
    lanes: Pool<Lane>,
    pipe_size: usize,
    max_chunk: usize,
}

/// A ring and a pipe, used by one session at a time.
struct Lane {
    ring: IoUring,
    pipe: Pipe,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("ring", &self.ring.as_raw_fd())
            .field("pipe", &self.pipe)
            .finish()
    }
}

impl Uring {
    /// An io_uring backend with the given settings.
    ///
    /// Fails with [`TransferError::Unavailable`] when this kernel or process
    /// cannot use io_uring (`kernel.io_uring_disabled`, no io_uring at all,
    /// a seccomp filter, or a kernel without `IORING_OP_SPLICE`), so a
    /// server asked for `uring` refuses to start instead of failing
    /// requests.
    pub fn new(config: &Config) -> Result<Self, TransferError> {
        config.validate()?;
        crate::sigpipe::ensure_ignored()?;
        let shared = Arc::new(Shared {
            stats: Arc::default(),
            lanes: Pool::new(config.max_idle),
            pipe_size: config.pipe_size,
            max_chunk: config.max_chunk,
        });
        let lane = shared.new_lane().map_err(|e| match e.errno() {
            Some(errno) => unavailable(errno),
            None => e,
        })?;
        let mut probe = Probe::new();
        shared.stats.syscall(Syscall::UringRegister);
        lane.ring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| unavailable(errno_of(&e)))?;
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
        shared.lanes.give(lane);
        Ok(Self { shared })
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

impl Shared {
    fn new_lane(&self) -> Result<Lane, TransferError> {
        self.stats.syscall(Syscall::UringSetup);
        let ring = IoUring::new(RING_ENTRIES)
            .map_err(|e| TransferError::sys_io(Syscall::UringSetup, &e))?;
        let pipe = Pipe::new(self.pipe_size, &self.stats)?;
        Ok(Lane { ring, pipe })
    }
}

impl Transfer for Uring {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    fn start(
        &self,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Box<dyn Session>, TransferError> {
        let progress = Progress::start(self.shared.stats.clone(), source, range, prefix)?;
        let step = UringStep {
            file: source.file().clone(),
            shared: self.shared.clone(),
            lane: None,
            in_pipe: 0,
            flight: Flight::default(),
            socket_full: false,
            spoiled: false,
        };
        Ok(Box::new(Tracked::new(progress, step)))
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
}

impl Flight {
    fn count(&self) -> u32 {
        u32::from(self.read.is_some())
            + u32::from(self.poll)
            + u32::from(self.send.is_some())
            + self.cancels
    }
}

struct UringStep {
    file: Arc<File>,
    shared: Arc<Shared>,
    lane: Option<Lane>,
    /// Bytes read from the file into the pipe and not yet in the socket.
    in_pipe: usize,
    flight: Flight,
    /// The last send found the socket full: the next one waits for POLLOUT.
    socket_full: bool,
    /// The session failed: whatever is in the pipe belongs to no one, so
    /// the lane is closed rather than pooled.
    spoiled: bool,
}

impl UringStep {
    /// Takes every posted completion and applies it to `p`. Returns the
    /// first error among them, after all are accounted for.
    fn reap(&mut self, p: &mut Progress) -> Result<(), TransferError> {
        let Some(lane) = self.lane.as_mut() else {
            return Ok(());
        };
        let mut first_err = None;
        for cqe in lane.ring.completion() {
            let res = cqe.result();
            let err = (res < 0).then(|| Errno::from_raw(-res));
            match cqe.user_data() {
                READ => {
                    self.flight.read = None;
                    match err {
                        None if res == 0 => {
                            let at = p.offset() + self.in_pipe as u64;
                            first_err.get_or_insert(p.shrank_at(at));
                        }
                        None => self.in_pipe += res as usize,
                        // Cancelled, interrupted: the next chain reads again.
                        Some(Errno::ECANCELED | Errno::EINTR | Errno::EAGAIN) => {}
                        Some(e) => {
                            first_err.get_or_insert(TransferError::sys(Syscall::Splice, e));
                        }
                    }
                }
                POLL => {
                    self.flight.poll = false;
                    match err {
                        None => self.socket_full = false,
                        Some(Errno::ECANCELED | Errno::EINTR) => {}
                        Some(e) => {
                            first_err.get_or_insert(TransferError::sys(Syscall::Poll, e));
                        }
                    }
                }
                SEND => {
                    let asked = self.flight.send.take().unwrap_or(0);
                    match err {
                        None => {
                            let n = res as usize;
                            debug_assert!(n <= self.in_pipe);
                            self.in_pipe -= n.min(self.in_pipe);
                            p.body_sent(n as u64);
                            // A short send means the socket buffer filled.
                            if (n as u64) < u64::from(asked) {
                                self.socket_full = true;
                            }
                        }
                        Some(Errno::EAGAIN) => {
                            self.socket_full = true;
                            p.stats().would_block();
                        }
                        Some(Errno::ECANCELED | Errno::EINTR) => {}
                        Some(e) => {
                            first_err.get_or_insert(TransferError::sys(Syscall::Splice, e));
                        }
                    }
                }
                _ => self.flight.cancels = self.flight.cancels.saturating_sub(1),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Submits the next chain: a read into the pipe if it is empty, then a
    /// send of what the pipe will hold.
    fn submit(&mut self, p: &Progress, sock: BorrowedFd<'_>) -> Result<(), TransferError> {
        let lane = match &mut self.lane {
            Some(lane) => lane,
            None => self
                .lane
                .insert(self.shared.lanes.take(|| self.shared.new_lane())?),
        };
        let mut chain: [Option<squeue::Entry>; 3] = [None, None, None];
        let mut n = self.in_pipe;
        if n == 0 {
            let want = usize::try_from(p.body_left())
                .unwrap_or(usize::MAX)
                .min(lane.pipe.capacity)
                .min(self.shared.max_chunk)
                .min(u32::MAX as usize);
            let offset = i64::try_from(p.offset()).map_err(|_| TransferError::InvalidRange {
                start: p.offset(),
                end: p.end(),
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
            self.flight.read = Some(want as u32);
            n = want;
        }
        if self.socket_full {
            chain[1] = Some(
                opcode::PollAdd::new(types::Fd(sock.as_raw_fd()), libc::POLLOUT as u32)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(POLL),
            );
            self.flight.poll = true;
        }
        let mut flags = libc::SPLICE_F_MOVE;
        // MORE only while more body follows this piece: on the last one it
        // would hold back the response's final segment.
        if p.body_left() > n as u64 {
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
        self.flight.send = Some(n as u32);
        {
            let mut sq = lane.ring.submission();
            for entry in chain.iter().flatten() {
                // SAFETY: the entry names descriptors only, no memory. The
                // file is held by this step and the pipe by its lane until
                // every completion is reaped (`close` cancels and waits),
                // and the caller keeps the socket open until the session is
                // dropped (module docs).
                unsafe { sq.push(entry) }
                    .map_err(|_| TransferError::sys(Syscall::UringEnter, Errno::EBUSY))?;
            }
        }
        self.enter(0)
    }

    /// Submits what is queued and waits for `want` completions.
    fn enter(&mut self, want: usize) -> Result<(), TransferError> {
        let Some(lane) = self.lane.as_mut() else {
            return Ok(());
        };
        loop {
            self.shared.stats.syscall(Syscall::UringEnter);
            match lane.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if errno_of(&e) == Errno::EINTR => {}
                // EBUSY (completion queue overflowing) cannot happen with
                // one chain of at most six completions in a queue of 16;
                // if it does, the session fails rather than waits forever.
                Err(e) => return Err(TransferError::sys_io(Syscall::UringEnter, &e)),
            }
        }
    }

    /// Cancels whatever is in flight and waits until every completion has
    /// arrived, so no operation can run after the descriptors it names have
    /// closed.
    fn settle_in_flight(&mut self, p: &mut Progress) {
        let Some(lane) = self.lane.as_mut() else {
            return;
        };
        if self.flight.count() == 0 {
            return;
        }
        let targets = [
            (self.flight.read.is_some(), READ),
            (self.flight.poll, POLL),
            (self.flight.send.is_some(), SEND),
        ];
        {
            let mut sq = lane.ring.submission();
            for (live, tag) in targets {
                if live {
                    let cancel = opcode::AsyncCancel::new(tag).build().user_data(CANCEL);
                    // SAFETY: a cancellation names no memory and no
                    // descriptor, only the user_data of our own operation.
                    if unsafe { sq.push(&cancel) }.is_ok() {
                        self.flight.cancels += 1;
                    }
                }
            }
        }
        while self.flight.count() > 0 {
            let want = self.flight.count() as usize;
            if self.enter(want).is_err() {
                // The ring itself failed: nothing can be known about what
                // is in flight. Closing the ring (dropping the lane) makes
                // the kernel cancel and reap it.
                self.spoiled = true;
                return;
            }
            // Errors of cancelled work are not the session's to report now.
            let _ = self.reap(p);
        }
    }
}

impl Step for UringStep {
    fn step(&mut self, p: &mut Progress, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        if !send_prefix(p, sock)? {
            return Ok(Pump::WouldBlock);
        }
        self.reap(p)?;
        if self.flight.count() > 0 {
            return Ok(Pump::Pending);
        }
        if self.in_pipe == 0 && p.body_left() == 0 {
            return Ok(Pump::Done);
        }
        self.submit(p, sock)?;
        Ok(Pump::Pending)
    }

    /// The lane stays with the session until it is dropped (its ring is the
    /// descriptor the driver waits on); a failure only marks it spoiled.
    fn release(&mut self, _p: &Progress, failed: bool) {
        if failed {
            self.spoiled = true;
        }
    }

    fn close(&mut self, p: &mut Progress) {
        self.settle_in_flight(p);
        let Some(lane) = self.lane.take() else {
            return;
        };
        if !self.spoiled && self.in_pipe == 0 && self.flight.count() == 0 {
            self.shared.lanes.give(lane);
        }
        // Otherwise the lane drops here: closing the ring and the pipe
        // discards what they hold.
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.lane.as_ref().map(|lane| lane.ring.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        if let Err(e) = crate::Backend::Uring.check() {
            eprintln!("skipping: {e}");
            return;
        }
        let u = Uring::new(&Config::default()).unwrap();
        assert_eq!(u.shared.lanes.idle(), 1, "the probe's lane is pooled");
        let dir = std::env::temp_dir().join(format!("zc-uring-{}", std::process::id()));
        std::fs::write(&dir, vec![7u8; 100_000]).unwrap();
        let file = Arc::new(File::open(&dir).unwrap());
        std::fs::remove_file(&dir).unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut &b, &mut v).map(|_| v.len())
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
            u.shared.lanes.idle(),
            0,
            "the session holds the lane until dropped"
        );
        drop(s);
        assert_eq!(u.shared.lanes.idle(), 1);
        drop(a);
        assert_eq!(reader.join().unwrap().unwrap(), 100_000);
    }
}
