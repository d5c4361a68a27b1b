//! The one error type of every backend and driver.

use std::io;
use std::time::Duration;

use nix::errno::Errno;

use crate::{ByteRange, Syscall};

/// Why a transfer could not start or did not finish.
///
/// Failures of the kernel keep the syscall that failed and its errno, so a
/// caller can tell a peer that went away (`EPIPE`, `ECONNRESET`) from a real
/// fault without parsing messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A system call failed.
    #[error("{call} failed: {errno} ({})", errno.desc())]
    Sys {
        /// The call that failed.
        call: Syscall,
        /// What the kernel said.
        errno: Errno,
    },
    /// The file ended before the range did: it was truncated while being
    /// sent. The bytes before `offset` were sent.
    #[error(
        "file shrank while being sent: it ended at offset {offset}, before the range end {end}"
    )]
    FileShrank {
        /// Where the file ended (as far as the backend could tell).
        offset: u64,
        /// Where the range should have ended.
        end: u64,
    },
    /// The range asks for bytes past the end of the file; nothing was sent.
    #[error("range {range} lies past the end of the file ({file_len} bytes)")]
    RangePastEof {
        /// The requested range.
        range: ByteRange,
        /// The file's length when the transfer started.
        file_len: u64,
    },
    /// A range whose start lies after its end.
    #[error("invalid range: start {start} is after end {end}")]
    InvalidRange {
        /// Requested start.
        start: u64,
        /// Requested end.
        end: u64,
    },
    /// A backend setting that cannot work (say, a zero-byte buffer).
    #[error("invalid setting {setting}: {reason}")]
    InvalidConfig {
        /// Which knob.
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A backend name nobody knows.
    #[error("unknown backend {name:?}; choose one of: {known}")]
    UnknownBackend {
        /// What was asked for.
        name: String,
        /// The names that exist, comma separated.
        known: String,
    },
    /// The backend exists but cannot run on this platform or kernel.
    #[error("backend {backend} is not available here: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// Why not.
        reason: String,
    },
    /// The session already failed; it sends nothing more.
    #[error("the session already failed and was pumped again")]
    SessionFailed,
    /// A backend's move panicked on a disk pool thread: what reached the
    /// socket is unknown, so the session ended.
    #[error("a move panicked on a disk pool thread; the session ended")]
    SendPanicked,
    /// The blocking driver waited longer than it was allowed to.
    #[error("the socket stayed full for {0:?}; gave up")]
    TimedOut(Duration),
}

impl TransferError {
    /// The error for a failed `call`, from the errno nix returned.
    pub fn sys(call: Syscall, errno: Errno) -> Self {
        TransferError::Sys { call, errno }
    }

    /// `call` failed with `e`, as std or a wrapper crate reported it.
    pub fn sys_io(call: Syscall, e: &io::Error) -> Self {
        TransferError::sys(call, errno_of(e))
    }

    /// The errno, when the kernel said no.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            TransferError::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True when the peer closed or reset the connection: nothing more can
    /// be sent, and it is not the server's fault.
    pub fn is_peer_gone(&self) -> bool {
        matches!(
            self.errno(),
            Some(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN | Errno::ESHUTDOWN)
        )
    }

    /// True when the file changed size under the transfer.
    pub fn is_file_shrank(&self) -> bool {
        matches!(self, TransferError::FileShrank { .. })
    }
}

impl From<TransferError> for io::Error {
    fn from(e: TransferError) -> io::Error {
        let kind = match &e {
            TransferError::Sys { errno, .. } => {
                // Keep the errno itself: io::Error built from it answers
                // raw_os_error() and maps to the matching ErrorKind.
                let raw = io::Error::from_raw_os_error(*errno as i32);
                return io::Error::new(raw.kind(), e);
            }
            TransferError::FileShrank { .. } => io::ErrorKind::UnexpectedEof,
            TransferError::RangePastEof { .. }
            | TransferError::InvalidRange { .. }
            | TransferError::InvalidConfig { .. }
            | TransferError::UnknownBackend { .. } => io::ErrorKind::InvalidInput,
            TransferError::Unavailable { .. } => io::ErrorKind::Unsupported,
            TransferError::SessionFailed | TransferError::SendPanicked => io::ErrorKind::Other,
            TransferError::TimedOut(_) => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, e)
    }
}

/// The errno inside `e`; an error that carries none (one made in user
/// space) counts as `EIO`.
pub fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_errors_keep_errno_and_message() {
        let e = TransferError::sys(Syscall::Sendfile, Errno::EPIPE);
        assert_eq!(e.errno(), Some(Errno::EPIPE));
        assert!(e.is_peer_gone());
        assert!(e.to_string().contains("sendfile failed: EPIPE"), "{e}");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn shrank_maps_to_unexpected_eof() {
        let e = TransferError::FileShrank { offset: 5, end: 9 };
        assert!(e.is_file_shrank());
        assert!(!e.is_peer_gone());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::UnexpectedEof);
    }
}
