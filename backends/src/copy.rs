//! `copy`: `pread` into a user-space buffer, then `send` it. The portable
//! baseline every zero-copy backend is measured against.
//!
//! Buffers come from a pool shared by the backend's sessions: a session
//! holds one only while it pumps or while part of it is still unsent, so
//! idle keep-alive connections cost no buffer. A partial send keeps the
//! unsent tail in the buffer and sends it first next time. The first
//! chunk leaves together with the prefix in one `sendmsg`.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::uio::pread;
use zcserve_core::{
    ByteRange, Progress, Pump, Session, Source, Stats, Step, Syscall, Tracked, Transfer,
    TransferError,
};

use crate::Config;
use crate::pool::Pool;
use crate::sock::{Sent, account, send_with_prefix, vectored_call};

/// The copy backend.
#[derive(Debug)]
pub struct Copy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    stats: Arc<Stats>,
    buffers: Pool<Box<[u8]>>,
    buffer_size: usize,
    max_chunk: usize,
}

impl Copy {
    /// A copy backend with the given settings.
    pub fn new(config: &Config) -> Result<Self, TransferError> {
        config.validate()?;
        crate::sigpipe::ensure_ignored()?;
        Ok(Self {
            shared: Arc::new(Shared {
                stats: Arc::default(),
                buffers: Pool::new(config.max_idle),
                buffer_size: config.buffer_size,
                max_chunk: config.max_chunk,
            }),
        })
    }
}

impl Transfer for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    fn start(
        &self,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Box<dyn Session>, TransferError> {
        let progress = Progress::start(self.shared.stats.clone(), source, range, prefix)?;
        let step = CopyStep {
            file: source.file().clone(),
            shared: self.shared.clone(),
            buf: None,
            pos: 0,
            filled: 0,
        };
        Ok(Box::new(Tracked::new(progress, step)))
    }
}

struct CopyStep {
    file: Arc<File>,
    shared: Arc<Shared>,
    buf: Option<Box<[u8]>>,
    /// `buf[pos..filled]` was read from the file and not yet sent.
    pos: usize,
    filled: usize,
}

impl Step for CopyStep {
    fn step(&mut self, p: &mut Progress, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        let mut budget = self.shared.max_chunk;
        loop {
            let pending = self.filled - self.pos;
            let unread = p.body_left() - pending as u64;
            if pending == 0 && unread > 0 {
                if budget == 0 {
                    return Ok(Pump::Yield);
                }
                let shared = &self.shared;
                let buf = match &mut self.buf {
                    Some(buf) => buf,
                    None => self.buf.insert(
                        shared
                            .buffers
                            .take(|| Ok::<_, TransferError>(vec![0; shared.buffer_size].into()))?,
                    ),
                };
                let want = usize::try_from(unread).unwrap_or(usize::MAX).min(buf.len());
                p.stats().syscall(Syscall::Pread);
                match pread(
                    self.file.as_ref(),
                    &mut buf[..want],
                    p.offset() as libc::off_t,
                ) {
                    Ok(0) => return Err(p.shrank_at(p.offset())),
                    Ok(n) => {
                        p.stats().copied_in(n as u64);
                        self.pos = 0;
                        self.filled = n;
                    }
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(TransferError::sys(Syscall::Pread, e)),
                }
            }
            let pending = self.filled - self.pos;
            if pending == 0 && p.prefix_left().is_empty() {
                return Ok(Pump::Done);
            }
            let body = match &self.buf {
                Some(buf) => buf[self.pos..].as_ptr(),
                None => std::ptr::null(),
            };
            // SAFETY: body..body+pending lies inside self.buf, which this
            // step owns for the whole call (null with length 0 when it has
            // no buffer because the range is empty).
            match unsafe { send_with_prefix(p, sock, body, pending) } {
                Ok(Sent::Bytes(n)) => {
                    let b = account(p, n);
                    p.stats().copied_out(b as u64);
                    self.pos += b;
                    budget = budget.saturating_sub(n);
                }
                Ok(Sent::Full) => return Ok(Pump::WouldBlock),
                Err(e) => return Err(TransferError::sys(vectored_call(p, pending), e)),
            }
        }
    }

    /// Gives the buffer back once nothing in it waits to be sent; unsent
    /// bytes of a failed session are dropped (the next user overwrites them).
    fn release(&mut self, _p: &Progress, failed: bool) {
        if failed {
            self.pos = self.filled;
        }
        if self.pos == self.filled
            && let Some(buf) = self.buf.take()
        {
            self.shared.buffers.give(buf);
        }
    }

    fn close(&mut self, p: &mut Progress) {
        self.release(p, true);
    }
}
