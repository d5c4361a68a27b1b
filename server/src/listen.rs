//! Listening sockets: bound here with a deep backlog, several per address
//! under `--reuseport` (one per worker thread, in one `SO_REUSEPORT` group
//! that other zcserve processes may join), or taken over from systemd
//! ([`crate::activation`]).
//!
//! Under `--reuseport` the kernel spreads new connections over every
//! listener of the group, each with its own accept queue. When a listener
//! closes, what its queue holds — connections made but not accepted, and
//! handshakes under way with it — is reset, unless `net.ipv4.tcp_migrate_req`
//! is 1 (Linux 5.14 and later), in which case the kernel moves it to
//! another listener of the group. That sysctl is what makes stopping one of
//! several processes lose nothing, so it is checked at start
//! (`warn_without_migration`). Where it is 0, two things narrow the gap: a
//! stopping server first accepts what its queues hold and serves it (so
//! without the sysctl only connections that complete in the instant
//! between that last accept and the close are lost), and `TCP_DEFER_ACCEPT`
//! makes every accepted connection carry its first request already, so a
//! connection the stop reaches before its first response is one whose
//! client is sending (`conn::read_head` keeps such a connection open
//! through a stop and answers it).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};

use crate::sys;

/// Pending connections the kernel queues per listener (nginx uses 511).
const BACKLOG: i32 = 1024;

/// Seconds a connection may stay silent before it is accepted anyway
/// (nginx's `deferred` uses the same).
const DEFER_ACCEPT_SECS: i32 = 1;

/// The listeners of a server: `groups[i]` is accepted on by worker `i`.
pub type Groups = Vec<Vec<StdListener>>;

/// Binds every address of `listen`: one group holding one listener per
/// address, or with `reuseport`, `threads` groups each holding its own
/// `SO_REUSEPORT` listener per address (a port 0 is resolved by the first
/// and shared by the rest).
pub fn bind_all(listen: &[SocketAddr], reuseport: bool, threads: usize) -> Result<Groups, String> {
    let per_addr = if reuseport { threads.max(1) } else { 1 };
    let mut groups: Groups = (0..per_addr).map(|_| Vec::new()).collect();
    for &addr in listen {
        let mut at = addr;
        for group in &mut groups {
            let l = listen_on(at, reuseport).map_err(|e| match e {
                Errno::EADDRINUSE if reuseport => format!(
                    "cannot listen on {addr}: {e} (with --reuseport, every process on a port \
                     must set it and run as the same user)"
                ),
                e => format!("cannot listen on {addr}: {e}"),
            })?;
            at = l
                .local_addr()
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            group.push(l);
        }
    }
    if reuseport {
        warn_without_migration();
    }
    Ok(groups)
}

/// Logs, once, that stopping this process may reset connections queued on
/// its listeners, naming the sysctl that prevents it.
fn warn_without_migration() {
    match sys::migrate_req() {
        Some(true) => {}
        Some(false) => tracing::warn!(
            "--reuseport: {} is 0, so connections queued on this process's listeners when it \
             stops may be reset; set net.ipv4.tcp_migrate_req=1 to have the kernel hand them \
             to the processes that stay",
            sys::MIGRATE_REQ
        ),
        None => tracing::warn!(
            "--reuseport: this kernel cannot hand connections queued on a closing listener to \
             the others ({} needs Linux 5.14), so stopping this process may reset some",
            sys::MIGRATE_REQ
        ),
    }
}

/// A non-blocking listening socket on `addr` with a deep backlog (std's
/// `TcpListener::bind` fixes it at 128, which drops SYNs under bursts).
pub fn listen_on(addr: SocketAddr, reuseport: bool) -> Result<StdListener, Errno> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if reuseport {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
        // Best effort: where the kernel lacks it, a stopping server
        // still answers a request that reached the socket before it looked
        // (`conn::read_head`); only one still on the wire is closed.
        let _ = sys::defer_accept(fd.as_fd(), DEFER_ACCEPT_SECS);
    }
    if addr.is_ipv6() {
        // An IPv6 listener takes only IPv6, so IPv4 and IPv6 listeners on
        // the same port can coexist, as with nginx's `listen [::]:80`.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    let raw = fd.as_raw_fd();
    match addr {
        SocketAddr::V4(a) => bind(raw, &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(raw, &SockaddrIn6::from(a))?,
    }
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(StdListener::from(fd))
}
