//! Runs a session to the end on the calling thread, waiting with `poll(2)`
//! whenever the socket is full (or, for a completion-based backend, until
//! its completions arrive). For benches, tests and tools; a server uses the
//! async driver.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::transfer::pending_fd;
use crate::{Pump, Session, Syscall, TransferError};

/// Sends everything `session` holds into `sock` and returns the number of
/// bytes sent.
///
/// Works on blocking sockets (the kernel then waits inside the send call)
/// and non-blocking ones (this function waits in `poll`). With `timeout`,
/// a socket that stays full (or kernel work that stays pending) for that
/// long ends the transfer with [`TransferError::TimedOut`] instead of
/// waiting forever on a stalled peer.
pub fn send_all(
    session: &mut dyn Session,
    sock: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<u64, TransferError> {
    let total = session.remaining();
    loop {
        match session.pump(sock)? {
            Pump::Done => return Ok(total - session.remaining()),
            Pump::Yield => {}
            Pump::WouldBlock => wait(session, sock, PollFlags::POLLOUT, timeout)?,
            Pump::Pending => wait(session, pending_fd(session)?, PollFlags::POLLIN, timeout)?,
        }
    }
}

/// Waits until `fd` reports one of `events` (or an error, which the next
/// pump reports with its errno).
fn wait(
    session: &dyn Session,
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> Result<(), TransferError> {
    let deadline = timeout.map(|t| (Instant::now() + t, t));
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some((at, t)) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TransferError::TimedOut(t));
                }
                // Round up so a sub-millisecond remainder still waits.
                let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, events)];
        session.stats().syscall(Syscall::Poll);
        match poll(&mut fds, wait) {
            // POLLERR and POLLHUP count as ready: the next send reports the
            // error with its errno.
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(TransferError::sys(Syscall::Poll, e)),
        }
    }
}
