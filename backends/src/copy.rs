//! `copy`: `pread` into a user-space buffer, then `send` it. The portable
//! baseline every zero-copy backend is measured against.
//!
//! Buffers come from a pool shared by the backend's sessions: a session
//! holds one only while it pumps or while part of it is still unsent, so
//! idle keep-alive connections cost no buffer. A partial send keeps the
//! unsent tail in the buffer and sends it first next time. The first
//! chunk leaves together with the head in one `sendmsg`.

use std::fs::File;
use std::sync::Arc;

use nix::sys::uio::pread;
use zcserve_core::sock::send_with_prefix;
use zcserve_core::{
    Attempt, ByteRange, Move, Moved, Mover, Pumping, Source, Stats, Step, Syscall, Transfer,
    TransferError,
};

use crate::config::Config;
use crate::pool::Pool;

pub(crate) fn build(config: &Config, pumping: Pumping) -> Result<Arc<dyn Transfer>, TransferError> {
    Ok(pumping.with(Copy(Arc::new(Buffers {
        pool: Pool::new(config.max_idle),
        size: config.buffer_size,
    }))))
}

/// The copy backend: its buffer pool.
struct Copy(Arc<Buffers>);

struct Buffers {
    pool: Pool<Box<[u8]>>,
    size: usize,
}

impl Mover for Copy {
    type Step = CopyStep;

    fn begin(&self, source: &Source, _: ByteRange, _: &Stats) -> Result<CopyStep, TransferError> {
        Ok(CopyStep {
            file: source.file().clone(),
            buffers: self.0.clone(),
            buf: None,
            pos: 0,
            filled: 0,
        })
    }
}

struct CopyStep {
    file: Arc<File>,
    buffers: Arc<Buffers>,
    buf: Option<Box<[u8]>>,
    /// `buf[pos..filled]` was read from the file and not yet sent.
    pos: usize,
    filled: usize,
}

impl Step for CopyStep {
    const CARRIES_PREFIX: bool = true;

    /// Reads only once the buffer is drained and body bytes remain.
    fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)> {
        let unread = usize::try_from(m.body_left()).unwrap_or(usize::MAX);
        (self.pos == self.filled && unread > 0).then(|| (m.offset(), unread.min(self.buffers.size)))
    }

    fn try_move(&mut self, m: &Move<'_>) -> Attempt {
        if let Some((offset, want)) = self.next_read(m) {
            let buffers = &self.buffers;
            let buf = self
                .buf
                .get_or_insert_with(|| buffers.pool.get(|| vec![0; buffers.size].into()));
            let r = pread(self.file.as_ref(), &mut buf[..want], offset as libc::off_t);
            return Attempt::made(
                Syscall::Pread,
                r.map(|n| {
                    self.pos = 0;
                    self.filled = n;
                    match n {
                        0 => Moved::Shrank(offset),
                        n => Moved::Staged(n),
                    }
                }),
            );
        }
        let body = match &self.buf {
            Some(buf) => buf[self.pos..self.filled].as_ptr(),
            None => std::ptr::null(),
        };
        // SAFETY: body..body+(filled-pos) lies inside self.buf, which this
        // step owns for the whole call (null with length 0 when it has no
        // buffer because the range is empty).
        let (call, r) =
            unsafe { send_with_prefix(m.sock(), m.prefix(), body, self.filled - self.pos) };
        Attempt::made(
            call,
            r.map(|n| {
                self.pos += m.body_of(n);
                Moved::Sent(n)
            }),
        )
    }

    /// Gives the buffer back once nothing in it waits to be sent; unsent
    /// bytes of a failed session are dropped (the next user overwrites them).
    fn release(&mut self, failed: bool) {
        if failed {
            self.pos = self.filled;
        }
        if self.pos == self.filled
            && let Some(buf) = self.buf.take()
        {
            self.buffers.pool.give(buf);
        }
    }

    fn close(&mut self, _: &Arc<Stats>) {
        self.release(true);
    }
}
