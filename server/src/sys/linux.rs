//! Linux: `net.ipv4.tcp_migrate_req` and `TCP_DEFER_ACCEPT`.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// Where the kernel (5.14 and later) says whether a listener of a
/// `SO_REUSEPORT` group that closes hands the connections in its accept
/// queue, and the handshakes under way with it, to another listener of the
/// group. Off (the default), they are reset. One value per network
/// namespace; it covers IPv6 too.
pub const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Whether closing a listener migrates its queued connections:
/// `Some(false)` when the sysctl is 0, `None` when this kernel has none.
pub fn migrate_req() -> Option<bool> {
    let text = std::fs::read_to_string(MIGRATE_REQ).ok()?;
    Some(text.trim() != "0")
}

/// Has the kernel complete `accept` only once the client sent data (or
/// after about `secs` of silence), so that a connection accepted by a
/// server about to stop already carries its first request.
pub fn defer_accept(fd: BorrowedFd<'_>, secs: i32) -> Result<(), Errno> {
    // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from the
    // pointer, which points at a live c_int; `fd` is a valid descriptor.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}
