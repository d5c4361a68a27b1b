//! Keeping SIGPIPE from killing the process.
//!
//! `sendfile(2)` and `splice(2)` into a socket whose peer has gone raise
//! SIGPIPE, and neither takes `MSG_NOSIGNAL` (nor does `send` on macOS).
//! Rust binaries ignore SIGPIPE from the start, but a host that is not (a C
//! program, a Python extension) may have left the default action, which
//! ends the process. The registry calls [`ensure_ignored`] each time it
//! builds a backend: if SIGPIPE still has its default action it is set to
//! ignore, so the peer's departure surfaces as `EPIPE`; a handler the host
//! installed on purpose is left alone.

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, signal};
use zcserve_core::{Stats, Syscall, TransferError};

/// Sets SIGPIPE to ignored unless the process chose a handler for it; the
/// calls are counted in `stats`.
pub(crate) fn ensure_ignored(stats: &Stats) -> Result<(), TransferError> {
    // SAFETY: an all-zero sigaction is a valid value to be overwritten.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    stats.counted(Syscall::Sigaction, || {
        // SAFETY: a null new action only reads the current one into `old`,
        // which is a valid, writable sigaction (nix cannot query without
        // setting, hence libc).
        Errno::result(unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) })
    })?;
    if old.sa_sigaction == libc::SIG_DFL {
        stats.counted(Syscall::Sigaction, || {
            // SAFETY: SigIgn installs no Rust code as a handler, so there is
            // no async-signal-safety obligation.
            unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }
        })?;
    }
    Ok(())
}
