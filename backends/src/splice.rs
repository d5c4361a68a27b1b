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
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use zcserve_core::{
    ByteRange, Progress, Pump, Session, Source, Stats, Step, Syscall, Tracked, Transfer,
    TransferError,
};

use crate::Config;
use crate::pipe::Pipe;
use crate::pool::Pool;
use crate::sock::send_prefix;

/// The splice backend.
#[derive(Debug)]
pub struct Splice {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    stats: Arc<Stats>,
    pipes: Pool<Pipe>,
    pipe_size: usize,
    max_chunk: usize,
}

impl Splice {
    /// A splice backend with the given settings. Fails if this process
    /// cannot create a pipe.
    pub fn new(config: &Config) -> Result<Self, TransferError> {
        config.validate()?;
        crate::sigpipe::ensure_ignored()?;
        let shared = Arc::new(Shared {
            stats: Arc::default(),
            pipes: Pool::new(config.max_idle),
            pipe_size: config.pipe_size,
            max_chunk: config.max_chunk,
        });
        // Make one pipe now: a kernel without splice or a process out of
        // descriptors shows up at start-up, not on the first request.
        let pipe = shared.new_pipe()?;
        shared.pipes.give(pipe);
        Ok(Self { shared })
    }

    /// The capacity the pipes actually got (the kernel may round the
    /// requested size up to a power of two, or refuse to grow it).
    pub fn pipe_capacity(&self) -> Result<usize, TransferError> {
        let pipe = self.shared.pipes.take(|| self.shared.new_pipe())?;
        let cap = pipe.capacity;
        self.shared.pipes.give(pipe);
        Ok(cap)
    }
}

impl Shared {
    fn new_pipe(&self) -> Result<Pipe, TransferError> {
        Pipe::new(self.pipe_size, &self.stats)
    }
}

impl Transfer for Splice {
    fn name(&self) -> &'static str {
        "splice"
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
        let step = SpliceStep {
            file: source.file().clone(),
            shared: self.shared.clone(),
            pipe: None,
            in_pipe: 0,
        };
        Ok(Box::new(Tracked::new(progress, step)))
    }
}

struct SpliceStep {
    file: Arc<File>,
    shared: Arc<Shared>,
    pipe: Option<Pipe>,
    /// Bytes read from the file into the pipe and not yet in the socket.
    in_pipe: usize,
}

impl Step for SpliceStep {
    fn step(&mut self, p: &mut Progress, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        if !send_prefix(p, sock)? {
            return Ok(Pump::WouldBlock);
        }
        let mut budget = self.shared.max_chunk;
        loop {
            if self.in_pipe == 0 {
                let left = p.body_left();
                if left == 0 {
                    return Ok(Pump::Done);
                }
                if budget == 0 {
                    return Ok(Pump::Yield);
                }
                let pipe = match &self.pipe {
                    Some(pipe) => pipe,
                    None => self
                        .pipe
                        .insert(self.shared.pipes.take(|| self.shared.new_pipe())?),
                };
                let want = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(pipe.capacity)
                    .min(budget);
                let mut offset = p.offset() as libc::loff_t;
                p.stats().syscall(Syscall::Splice);
                match splice(
                    self.file.as_fd(),
                    Some(&mut offset),
                    &pipe.write,
                    None,
                    want,
                    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
                ) {
                    Ok(0) => return Err(p.shrank_at(p.offset())),
                    Ok(n) => self.in_pipe = n,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(TransferError::sys(Syscall::Splice, e)),
                }
            }
            let pipe = self.pipe.as_ref().expect("bytes in the pipe imply a pipe");
            let mut flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
            // MORE only while more body follows this pipe's contents: on the
            // last piece it would hold back the response's final segment.
            if p.body_left() > self.in_pipe as u64 {
                flags |= SpliceFFlags::SPLICE_F_MORE;
            }
            p.stats().syscall(Syscall::Splice);
            match splice(&pipe.read, None, sock, None, self.in_pipe, flags) {
                Ok(n) => {
                    self.in_pipe -= n;
                    p.body_sent(n as u64);
                    budget = budget.saturating_sub(n);
                }
                Err(Errno::EAGAIN) => return Ok(Pump::WouldBlock),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(TransferError::sys(Syscall::Splice, e)),
            }
        }
    }

    /// Gives an empty pipe back to the pool; a pipe with bytes stays with
    /// the session (it must drain them first). After an error, whatever is
    /// in the pipe belongs to a response that will never complete: the pipe
    /// is dropped (closed), not pooled, which discards it.
    fn release(&mut self, _p: &Progress, failed: bool) {
        if failed {
            self.pipe = None;
            self.in_pipe = 0;
        }
        if self.in_pipe == 0
            && let Some(pipe) = self.pipe.take()
        {
            self.shared.pipes.give(pipe);
        }
    }

    /// A session dropped mid-transfer (peer gone, server shutting down) may
    /// leave bytes in its pipe: `release` keeps such a pipe out of the pool
    /// and it closes with the step.
    fn close(&mut self, p: &mut Progress) {
        self.release(p, false);
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
        let s = Splice::new(&cfg).unwrap();
        assert_eq!(s.pipe_capacity().unwrap(), 256 * 1024);
        assert_eq!(s.shared.pipes.idle(), 1);
    }
}
