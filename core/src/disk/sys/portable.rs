//! Platforms without a residency call: everything counts as resident (the
//! pool is then never used by a pump), completions on a non-blocking pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::{pipe, read, write};

pub use crate::disk::pool::pread_in as read_in;
use crate::disk::{Method, ThreadPriority};

/// The page cache of a platform that cannot be asked: always resident,
/// which keeps the behaviour the server had without this module.
#[derive(Debug, Clone, Default)]
pub struct PageCache;

impl PageCache {
    /// The only method there is here.
    pub fn new() -> Self {
        PageCache
    }

    /// Same as [`PageCache::new`]: no method can ask this platform.
    pub fn with_method(_method: Method) -> Self {
        PageCache
    }

    /// Always [`Method::Assumed`].
    pub fn method(&self) -> Method {
        Method::Assumed
    }

    /// Always resident; see [`crate::disk::Residency::resident`].
    pub fn resident(&self, _file: BorrowedFd<'_>, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(true)
    }
}

/// A pipe whose read end turns readable when signalled.
#[derive(Debug)]
pub struct Notifier {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Notifier {
    pub fn new() -> io::Result<Self> {
        let (rx, tx) = pipe()?;
        for fd in [&rx, &tx] {
            // Non-blocking both ways: resetting must not wait for a byte,
            // and a signal on an already signalled pipe must not block.
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        }
        Ok(Self { rx, tx })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }

    pub fn notify(&self) -> io::Result<()> {
        match write(&self.tx, &[1]) {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn reset(&self) -> io::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match read(&self.rx, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Per-thread nice values and SCHED_IDLE are Linux's; elsewhere
/// `setpriority` would lower the whole process, event loops included, so
/// the pool keeps its creator's priority.
pub fn set_thread_priority(priority: ThreadPriority) -> io::Result<()> {
    match priority {
        ThreadPriority::Normal => Ok(()),
        _ => Err(io::ErrorKind::Unsupported.into()),
    }
}
