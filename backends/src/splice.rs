//! `splice`: file -> pipe -> socket, the page references moving through a
//! pipe without a copy into user space.
//!
//! `EAGAIN` from the pipe-to-socket splice does not say whether the socket
//! is full, so the session counts the bytes it has put in the pipe itself,
//! and drains them before reading more from the file. Pipes come from a pool
//! shared by the backend's sessions (as Go's runtime does): a session holds
//! one only while it pumps or while bytes wait in it, so idle connections
//! hold none. A pipe left with bytes in it by a failed or dropped session is
//! closed, never reused, so those bytes cannot leak into another response.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::fcntl::{SpliceFFlags, splice};
use zcserve_core::{
    Attempt, ByteRange, Move, Moved, Mover, Pumping, Source, Stats, Step, Syscall, Transfer,
    TransferError,
};

use crate::config::Config;
use crate::pipe::Pipe;
use crate::pool::Pool;

/// Makes one pipe at once: a kernel without splice or a process out of
/// descriptors shows up at start-up, not on the first request.
pub(crate) fn build(config: &Config, pumping: Pumping) -> Result<Arc<dyn Transfer>, TransferError> {
    let pipes = Arc::new(Pipes {
        pool: Pool::new(config.max_idle),
        size: config.pipe_size,
    });
    pipes.pool.give(Pipe::new(pipes.size, pumping.stats())?);
    Ok(pumping.with(Splice(pipes)))
}

/// The splice backend: its pipe pool.
struct Splice(Arc<Pipes>);

struct Pipes {
    pool: Pool<Pipe>,
    size: usize,
}

impl Mover for Splice {
    type Step = SpliceStep;

    fn begin(&self, source: &Source, _: ByteRange, _: &Stats) -> Result<SpliceStep, TransferError> {
        Ok(SpliceStep {
            file: source.file().clone(),
            pipes: self.0.clone(),
            pipe: None,
            in_pipe: 0,
        })
    }
}

struct SpliceStep {
    file: Arc<File>,
    pipes: Arc<Pipes>,
    pipe: Option<Pipe>,
    /// Bytes read from the file into the pipe and not yet in the socket.
    in_pipe: usize,
}

impl Step for SpliceStep {
    /// Reads only once the pipe is drained: `EAGAIN` from the pipe-to-socket
    /// splice cannot say which side was full, so the pipe is emptied first.
    fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)> {
        let cap = self.pipe.as_ref().map_or(self.pipes.size, |p| p.capacity);
        (self.in_pipe == 0).then(|| (m.offset(), m.chunk(cap)))
    }

    fn try_move(&mut self, m: &Move<'_>) -> Attempt {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        if self.in_pipe == 0 {
            let pipe = match &self.pipe {
                Some(pipe) => pipe,
                None => match self
                    .pipes
                    .pool
                    .take(|| Pipe::new(self.pipes.size, m.stats()))
                {
                    Ok(pipe) => self.pipe.insert(pipe),
                    Err(e) => return Attempt::failed(None, e),
                },
            };
            let mut offset = m.offset() as libc::loff_t;
            let want = m.chunk(pipe.capacity);
            let r = splice(
                self.file.as_fd(),
                Some(&mut offset),
                &pipe.write,
                None,
                want,
                flags,
            );
            return Attempt::made(
                Syscall::Splice,
                r.map(|n| {
                    self.in_pipe = n;
                    match n {
                        0 => Moved::Shrank(m.offset()),
                        n => Moved::Staged(n),
                    }
                }),
            );
        }
        let pipe = self.pipe.as_ref().expect("bytes in the pipe imply a pipe");
        // MORE only while more body follows this pipe's contents: on the
        // last piece it would hold back the response's final segment.
        let more = if m.body_left() > self.in_pipe as u64 {
            SpliceFFlags::SPLICE_F_MORE
        } else {
            SpliceFFlags::empty()
        };
        let r = splice(&pipe.read, None, m.sock(), None, self.in_pipe, flags | more);
        Attempt::made(
            Syscall::Splice,
            r.map(|n| {
                self.in_pipe -= n;
                Moved::Sent(n)
            }),
        )
    }

    /// Gives an empty pipe back to the pool; a pipe with bytes stays with
    /// the session (it must drain them first). After an error, whatever is
    /// in the pipe belongs to a response that will never complete: the pipe
    /// is dropped (closed), not pooled, which discards it.
    fn release(&mut self, failed: bool) {
        if failed {
            self.pipe = None;
            self.in_pipe = 0;
        }
        if self.in_pipe == 0
            && let Some(pipe) = self.pipe.take()
        {
            self.pipes.pool.give(pipe);
        }
    }

    /// A session dropped mid-transfer (peer gone, server shutting down) may
    /// leave bytes in its pipe: `release` keeps such a pipe out of the pool
    /// and it closes with the step.
    fn close(&mut self, _: &Arc<Stats>) {
        self.release(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_size_is_set_and_read_back() {
        let cfg = Config {
            pipe_size: 256 * 1024,
            ..Config::default()
        };
        let stats = Stats::new();
        let pipe = Pipe::new(cfg.pipe_size, &stats).unwrap();
        assert_eq!(pipe.capacity, 256 * 1024);
        let s = stats.snapshot();
        assert_eq!(
            (s.syscalls(Syscall::Pipe), s.syscalls(Syscall::Fcntl)),
            (1, 1)
        );
    }
}
