//! `sendfile`: the kernel moves page-cache pages straight into the socket.
//!
//! Each call names its own file offset, so sessions on one shared `File`
//! never race on the file position. One call moves at most `0x7ffff000`
//! bytes (the kernel's cap) and one pump at most `max_chunk` bytes, like
//! nginx's `sendfile_max_chunk`, so one large download cannot starve the
//! other connections of a worker. sendfile returning 0 before the range
//! ends means the file shrank: that is an error, never a retry loop.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::sendfile::sendfile64;
use zcserve_core::{
    ByteRange, Progress, Pump, Session, Source, Stats, Step, Syscall, Tracked, Transfer,
    TransferError,
};

use crate::Config;
use crate::sock::send_prefix;

/// The most one `sendfile(2)` call transfers on Linux.
pub const MAX_SENDFILE: usize = 0x7fff_f000;

/// The sendfile backend.
#[derive(Debug)]
pub struct Sendfile {
    stats: Arc<Stats>,
    max_chunk: usize,
}

impl Sendfile {
    /// A sendfile backend with the given settings.
    pub fn new(config: &Config) -> Result<Self, TransferError> {
        config.validate()?;
        crate::sigpipe::ensure_ignored()?;
        Ok(Self {
            stats: Arc::default(),
            max_chunk: config.max_chunk,
        })
    }
}

impl Transfer for Sendfile {
    fn name(&self) -> &'static str {
        "sendfile"
    }

    fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn start(
        &self,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Box<dyn Session>, TransferError> {
        let progress = Progress::start(self.stats.clone(), source, range, prefix)?;
        let step = SendfileStep {
            file: source.file().clone(),
            max_chunk: self.max_chunk,
        };
        Ok(Box::new(Tracked::new(progress, step)))
    }
}

struct SendfileStep {
    file: Arc<File>,
    max_chunk: usize,
}

impl Step for SendfileStep {
    fn step(&mut self, p: &mut Progress, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        if !send_prefix(p, sock)? {
            return Ok(Pump::WouldBlock);
        }
        let mut budget = self.max_chunk;
        loop {
            let left = p.body_left();
            if left == 0 {
                return Ok(Pump::Done);
            }
            if budget == 0 {
                return Ok(Pump::Yield);
            }
            let count = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(budget)
                .min(MAX_SENDFILE);
            let mut offset = p.offset() as libc::off64_t;
            p.stats().syscall(Syscall::Sendfile);
            match sendfile64(sock, self.file.as_fd(), Some(&mut offset), count) {
                Ok(0) => return Err(p.shrank_at(p.offset())),
                Ok(n) => {
                    p.body_sent(n as u64);
                    budget -= n;
                }
                Err(Errno::EAGAIN) => return Ok(Pump::WouldBlock),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(TransferError::sys(Syscall::Sendfile, e)),
            }
        }
    }
}
