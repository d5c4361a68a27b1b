//! `copy`: `pread` into a user-space buffer, then `send` it. The portable
//! baseline every zero-copy backend is measured against.
//!
//! Buffers come from a pool shared by the backend's sessions: a session
//! holds one only while it pumps or while part of it is still unsent, so
//! idle keep-alive connections cost no buffer. A partial send keeps the
//! unsent tail in the buffer and sends it first next time. The first
//! chunk leaves together with the head in one `sendmsg`. Each buffer starts
//! on a page boundary ([`PageBuf`]): the kernel's copy into a buffer that
//! does not can be several times slower, and where a heap block starts is
//! up to the allocator.

use std::fs::File;
use std::sync::Arc;

use nix::sys::uio::pread;
use zcserve_core::sock::send_with_prefix;
use zcserve_core::{
    Attempt, ByteRange, Move, Moved, Mover, PageBuf, Pumping, Source, Stats, Step, Syscall,
    Transfer, TransferError,
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
    pool: Pool<PageBuf>,
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
    buf: Option<PageBuf>,
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
                .get_or_insert_with(|| buffers.pool.get(|| PageBuf::new(buffers.size)));
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use zcserve_core::{blocking, page_size};

    use super::*;

    /// The buffers `pread` fills start on a page: the one a session read
    /// into is the one it gave back to the pool, checked there.
    #[test]
    fn preads_into_page_aligned_buffers() {
        let path = std::env::temp_dir().join(format!("zcserve-copy-align-{}", std::process::id()));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let source = Source::new(Arc::new(File::open(&path).unwrap())).unwrap();
        std::fs::remove_file(&path).unwrap();
        for size in [16 << 10, 100_000, 128 << 10] {
            let buffers = Arc::new(Buffers {
                pool: Pool::new(4),
                size,
            });
            let stats = Arc::new(Stats::new());
            let t = Pumping::new("copy", stats.clone(), 1 << 20).with(Copy(buffers.clone()));
            let (a, mut b) = UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                b.read_to_end(&mut got).unwrap();
                got
            });
            let mut s = t
                .start(&source, ByteRange::full(data.len() as u64), b"h".to_vec())
                .unwrap();
            blocking::send_all(s.as_mut(), a.as_fd(), None).unwrap();
            drop((s, a));
            assert_eq!(reader.join().unwrap()[1..], data[..]);
            assert!(stats.snapshot().syscalls(Syscall::Pread) >= 3, "{size}");
            assert_eq!(buffers.pool.idle(), 1, "the session gave its buffer back");
            let used = buffers
                .pool
                .get(|| panic!("the used buffer was not pooled"));
            assert_eq!(used.len(), size);
            assert_eq!(
                used.as_ptr() as usize % page_size(),
                0,
                "{size}-byte buffer"
            );
        }
    }
}
