//! Sending bytes from memory into a socket: the head the pump sends ahead
//! of a zero-copy body, and the one `sendmsg` that carries head and body
//! together for backends that send from memory.
//!
//! Every send carries `MSG_NOSIGNAL`, so a peer that went away yields
//! `EPIPE` rather than a `SIGPIPE` that would kill the process. (sendfile
//! and splice take no such flag; the backends' registry makes sure SIGPIPE
//! is ignored when it builds one.)

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use crate::Syscall;

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
// macOS has no MSG_NOSIGNAL; there the process relies on SIGPIPE being
// ignored, as the Rust runtime arranges for every binary.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const NOSIGNAL: libc::c_int = 0;

// MSG_MORE holds a head back until the body's first bytes join it in one
// segment; where it does not exist the head simply leaves on its own.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MORE: libc::c_int = libc::MSG_MORE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MORE: libc::c_int = 0;

/// One `send(2)` of `head`, marked `MSG_MORE` when `more` body bytes follow
/// so the head and the first body bytes share a segment.
pub(crate) fn send_head(sock: BorrowedFd<'_>, head: &[u8], more: bool) -> Result<usize, Errno> {
    // nix's MsgFlags has no MSG_MORE, hence libc.
    let flags = if more { NOSIGNAL | MORE } else { NOSIGNAL };
    // SAFETY: head is a live borrowed slice for the duration of the call.
    let n = unsafe { libc::send(sock.as_raw_fd(), head.as_ptr().cast(), head.len(), flags) };
    Errno::result(n).map(|n| n as usize)
}

/// One send of `prefix` followed by `len` bytes at `body`: a `sendmsg(2)`
/// when both are non-empty (so they leave in the same segment), else a
/// `send(2)`. Returns the call it made and what the kernel answered; no
/// retry on `EINTR` (the pump retries, and counts each call).
///
/// Takes a raw pointer rather than a slice because for the mmap backend the
/// bytes are a file mapping that may no longer be backed (the file was
/// truncated): only the kernel may touch it, and it answers `EFAULT`.
///
/// # Safety
///
/// `body..body+len` must lie inside one live mapping or allocation for the
/// duration of the call (`body` may be null when `len` is 0).
pub unsafe fn send_with_prefix(
    sock: BorrowedFd<'_>,
    prefix: &[u8],
    body: *const u8,
    len: usize,
) -> (Syscall, Result<usize, Errno>) {
    if prefix.is_empty() || len == 0 {
        let (base, n) = if prefix.is_empty() {
            (body, len)
        } else {
            (prefix.as_ptr(), prefix.len())
        };
        // SAFETY: base..base+n is the borrowed prefix or memory the caller
        // vouches for.
        let r = unsafe { libc::send(sock.as_raw_fd(), base.cast(), n, NOSIGNAL) };
        return (Syscall::Send, Errno::result(r).map(|n| n as usize));
    }
    let mut iov = [
        libc::iovec {
            iov_base: prefix.as_ptr() as *mut libc::c_void,
            iov_len: prefix.len(),
        },
        libc::iovec {
            iov_base: body as *mut libc::c_void,
            iov_len: len,
        },
    ];
    // SAFETY: a zeroed msghdr is a valid "no name, no control" header; only
    // the iovec fields are then set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: msg points at iovecs over the borrowed prefix and the caller's
    // live body memory; the kernel only reads them.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, NOSIGNAL) };
    (Syscall::Sendmsg, Errno::result(r).map(|n| n as usize))
}

/// Whether `sock` takes more bytes now (`poll(2)` for `POLLOUT` without
/// waiting). An error answers yes: the move that follows meets it itself.
pub(crate) fn has_room(sock: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(sock, PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => fds[0].revents().is_none_or(|r| !r.is_empty()),
        Err(_) => true,
    }
}
