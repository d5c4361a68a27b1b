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
        let (read, write) = stats.counted(Syscall::Pipe, || {
            pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        })?;
        let want = i32::try_from(size).unwrap_or(i32::MAX);
        let capacity = match stats.counted(Syscall::Fcntl, || {
            fcntl(&write, FcntlArg::F_SETPIPE_SZ(want))
        }) {
            Ok(n) => n as usize,
            // Above /proc/sys/fs/pipe-max-size or the user's pipe budget:
            // keep the default size rather than fail the request.
            Err(e) if matches!(e.errno(), Some(Errno::EPERM | Errno::EBUSY)) => {
                stats.counted(Syscall::Fcntl, || fcntl(&write, FcntlArg::F_GETPIPE_SZ))? as usize
            }
            Err(e) => return Err(e),
        };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}
