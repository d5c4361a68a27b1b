//! Linux: `net.ipv4.tcp_migrate_req`, `TCP_DEFER_ACCEPT` and systemd's
//! readiness notification.

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

/// Sends `state` (e.g. `READY=1`) to the service manager's socket named by
/// `NOTIFY_SOCKET` (`sd_notify(3)`): a path, or an abstract name written
/// with a leading `@`. `Ok(false)` when no manager asked for it.
pub fn notify(socket: Option<&std::ffi::OsStr>, state: &str) -> std::io::Result<bool> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(name) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let addr = match name.as_bytes() {
        [b'@', abstract_name @ ..] => SocketAddr::from_abstract_name(abstract_name)?,
        path => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    #[test]
    fn notify_reaches_an_abstract_socket_and_skips_when_unset() {
        let name = format!("zcserve-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        let at = std::ffi::OsString::from(format!("@{name}"));
        assert!(notify(Some(&at), "READY=1").unwrap());
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify(None, "READY=1").unwrap());
        assert!(!notify(Some("".as_ref()), "READY=1").unwrap());
    }
}
