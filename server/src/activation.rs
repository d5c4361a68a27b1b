//! systemd socket activation: listeners made by systemd (or any manager
//! speaking the same protocol, `sd_listen_fds(3)`), handed over as
//! descriptors 3, 4, … with `LISTEN_FDS=n` and `LISTEN_PID` set to the pid
//! they are meant for.
//!
//! The manager keeps its own copy of each socket, so while zcserve
//! restarts the kernel goes on queueing connections on it and the next
//! zcserve accepts them: a restart drops none. The variables are removed
//! from the environment once read, so that no child inherits sockets that
//! are not meant for it.

use std::net::TcpListener as StdListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, SockaddrStorage};
use nix::sys::socket::{getsockname, getsockopt, sockopt};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// Most sockets taken: far more than any unit lists, few enough that a
/// garbled `LISTEN_FDS` cannot make zcserve walk millions of descriptors.
const MAX_FDS: usize = 4096;

/// How many descriptors `LISTEN_PID`/`LISTEN_FDS` hand to the process
/// `pid`: `None` when the variables are absent or meant for another
/// process (a parent's, inherited).
pub fn count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    pid: u32,
) -> Result<Option<usize>, String> {
    let Some(for_pid) = listen_pid else {
        return Ok(None);
    };
    if for_pid.trim().parse::<u32>().ok() != Some(pid) {
        return Ok(None);
    }
    let fds = listen_fds.unwrap_or("");
    match fds.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_FDS).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "LISTEN_FDS: `{fds}` is not a number of sockets from 1 to {MAX_FDS} \
             (set by systemd socket activation together with LISTEN_PID={for_pid})"
        )),
    }
}

/// Takes the listeners systemd passed to this process, if it passed any,
/// and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment. Each descriptor must be a listening TCP socket; the error
/// names the first that is not.
///
/// # Safety
///
/// Edits the environment: no other thread may be running.
pub unsafe fn take() -> Result<Option<Vec<StdListener>>, String> {
    let var = |k| std::env::var(k).ok();
    let n = count(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        std::process::id(),
    );
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the caller guarantees no other thread reads or writes
        // the environment meanwhile.
        unsafe { std::env::remove_var(k) };
    }
    let Some(n) = n? else {
        return Ok(None);
    };
    let mut listeners = Vec::with_capacity(n);
    for i in 0..n {
        let fd = FIRST + RawFd::try_from(i).map_err(|_| "LISTEN_FDS: too many".to_string())?;
        listeners.push(listener(fd)?);
    }
    Ok(Some(listeners))
}

/// Descriptor `fd`, checked to be a listening TCP socket, made
/// close-on-exec and non-blocking.
fn listener(fd: RawFd) -> Result<StdListener, String> {
    let bad = |why: String| format!("LISTEN_FDS: descriptor {fd} {why}; check the .socket unit");
    // SAFETY: F_GETFD on a number only reads the descriptor table; a
    // number that is not open fails with EBADF and nothing is touched.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(bad("is not open".into()));
    }
    // SAFETY: the activation protocol hands descriptors FIRST..FIRST+n to
    // this process, which takes each exactly once (the variables are gone
    // after this call); it is open (checked above).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(t) => return Err(bad(format!("is a {t:?} socket, not a stream (TCP) one"))),
        Err(e) => return Err(bad(format!("is not a socket ({e})"))),
    }
    let family = getsockname::<SockaddrStorage>(fd)
        .ok()
        .and_then(|a| a.family());
    if !matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6)) {
        return Err(bad(format!(
            "is not an IPv4 or IPv6 socket ({family:?}); zcserve serves TCP only"
        )));
    }
    if !getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false) {
        return Err(bad(
            "is not listening (ListenStream= makes one that is)".into()
        ));
    }
    let flags = fcntl(&owned, FcntlArg::F_GETFL).map_err(|e| bad(e.to_string()))?;
    fcntl(
        &owned,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| bad(e.to_string()))?;
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| bad(e.to_string()))?;
    Ok(StdListener::from(owned))
}

/// Tells the service manager (`Type=notify` units: `NOTIFY_SOCKET`)
/// `state`, e.g. `READY=1` once the listeners accept, `STOPPING=1` when a
/// graceful stop begins; nothing when none asked. Failing to reach it is
/// logged, not fatal: the server serves either way.
pub fn notify(state: &str) {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    if let Err(e) = crate::sys::notify(socket.as_deref(), state) {
        tracing::warn!("cannot tell systemd {state} through NOTIFY_SOCKET: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_reads_the_protocol() {
        assert_eq!(count(None, None, 7), Ok(None));
        assert_eq!(count(None, Some("2"), 7), Ok(None));
        // Meant for another process (inherited from a parent).
        assert_eq!(count(Some("8"), Some("2"), 7), Ok(None));
        assert_eq!(count(Some("7"), Some("2"), 7), Ok(Some(2)));
        for bad in [None, Some("0"), Some("x"), Some("-1"), Some("4097")] {
            let e = count(Some("7"), bad, 7).unwrap_err();
            assert!(e.starts_with("LISTEN_FDS:"), "{e}");
        }
    }
}
