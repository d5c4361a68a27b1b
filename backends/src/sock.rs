//! Sending bytes from memory into the socket, shared by the backends.
//!
//! Every send carries `MSG_NOSIGNAL`, so a peer that went away yields
//! `EPIPE` rather than a `SIGPIPE` that would kill the process. (sendfile
//! and splice take no such flag; see the crate docs.)

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use zcserve_core::{Progress, Syscall, TransferError};

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
// macOS has no MSG_NOSIGNAL; there the process relies on SIGPIPE being
// ignored, as the Rust runtime arranges for every binary.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const NOSIGNAL: libc::c_int = 0;

/// What a send call made of the socket.
pub(crate) enum Sent {
    /// The kernel took this many bytes (at least one).
    Bytes(usize),
    /// The socket is full.
    Full,
}

/// Sends what is left of the prefix with `send(2)`, marked `MSG_MORE` when
/// body bytes follow so the head and the first body bytes share a segment.
/// Returns false when the socket filled before the prefix was out.
#[cfg(target_os = "linux")]
pub(crate) fn send_prefix(p: &mut Progress, sock: BorrowedFd<'_>) -> Result<bool, TransferError> {
    while !p.prefix_left().is_empty() {
        // nix's MsgFlags has no MSG_MORE, hence libc.
        let flags = if p.body_left() > 0 {
            NOSIGNAL | libc::MSG_MORE
        } else {
            NOSIGNAL
        };
        let head = p.prefix_left();
        p.stats().syscall(Syscall::Send);
        // SAFETY: head is a live borrowed slice of the prefix for the call.
        let n = unsafe { libc::send(sock.as_raw_fd(), head.as_ptr().cast(), head.len(), flags) };
        match Errno::result(n) {
            Ok(n) => p.prefix_sent(n as usize),
            Err(Errno::EAGAIN) => return Ok(false),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(TransferError::sys(Syscall::Send, e)),
        }
    }
    Ok(true)
}

/// Sends the prefix (if any is left) and `len` bytes at `body` in one
/// `sendmsg(2)`, so both leave in the same segment.
///
/// Takes a raw pointer rather than a slice because for the mmap backend the
/// bytes are a file mapping that may no longer be backed (the file was
/// truncated): only the kernel may touch it, and it answers `EFAULT`.
///
/// # Safety
///
/// `body..body+len` must lie inside one live mapping or allocation for the
/// duration of the call.
pub(crate) unsafe fn send_with_prefix(
    p: &Progress,
    sock: BorrowedFd<'_>,
    body: *const u8,
    len: usize,
) -> Result<Sent, Errno> {
    let prefix = p.prefix_left();
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
    let iov: &mut [libc::iovec] = if prefix.is_empty() {
        &mut iov[1..]
    } else if len == 0 {
        &mut iov[..1]
    } else {
        &mut iov[..]
    };
    p.stats().syscall(if iov.len() == 1 {
        Syscall::Send
    } else {
        Syscall::Sendmsg
    });
    loop {
        let n = if iov.len() == 1 {
            // SAFETY: the iovec describes either the prefix Vec, borrowed
            // for this call, or memory the caller vouches for.
            unsafe { libc::send(sock.as_raw_fd(), iov[0].iov_base, iov[0].iov_len, NOSIGNAL) }
        } else {
            // SAFETY: a zeroed msghdr is a valid "no name, no control"
            // header; only the iovec fields are then set.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            // SAFETY: msg points at iovecs over the borrowed prefix and the
            // caller's live body memory; the kernel only reads them.
            unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, NOSIGNAL) }
        };
        match Errno::result(n) {
            Ok(n) => return Ok(Sent::Bytes(n as usize)),
            Err(Errno::EAGAIN) => return Ok(Sent::Full),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Splits `n` sent bytes between what was left of the prefix and the body,
/// records both, and returns the body part.
pub(crate) fn account(p: &mut Progress, n: usize) -> usize {
    let from_prefix = n.min(p.prefix_left().len());
    if from_prefix > 0 {
        p.prefix_sent(from_prefix);
    }
    let body = n - from_prefix;
    p.body_sent(body as u64);
    body
}

/// The syscall `send_with_prefix` used, for error reports.
pub(crate) fn vectored_call(p: &Progress, len: usize) -> Syscall {
    if p.prefix_left().is_empty() || len == 0 {
        Syscall::Send
    } else {
        Syscall::Sendmsg
    }
}
