//! The non-blocking pipes that `splice` and `uring` move page references
//! through, sized once with `F_SETPIPE_SZ`.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::pipe2;
use zcserve_core::{Stats, Syscall, TransferError};

/// Both ends of one pipe and the capacity the kernel granted it.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    pub(crate) capacity: usize,
}

impl Pipe {
    /// A new pipe of `size` bytes, or of the default size when the kernel
    /// will not grow it that far; the calls are counted in `stats`.
    pub(crate) fn new(size: usize, stats: &Stats) -> Result<Self, TransferError> {
        stats.syscall(Syscall::Pipe);
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| TransferError::sys(Syscall::Pipe, e))?;
        let want = i32::try_from(size).unwrap_or(i32::MAX);
        stats.syscall(Syscall::Fcntl);
        let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(want)) {
            Ok(n) => n as usize,
            // Above /proc/sys/fs/pipe-max-size or the user's pipe budget:
            // keep the default size rather than fail the request.
            Err(Errno::EPERM | Errno::EBUSY) => {
                stats.syscall(Syscall::Fcntl);
                fcntl(&write, FcntlArg::F_GETPIPE_SZ)
                    .map_err(|e| TransferError::sys(Syscall::Fcntl, e))? as usize
            }
            Err(e) => return Err(TransferError::sys(Syscall::Fcntl, e)),
        };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}
