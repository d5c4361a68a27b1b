//! `sendfile`: the kernel moves page-cache pages straight into the socket.
//!
//! Each call names its own file offset, so sessions on one shared `File`
//! never race on the file position. One call moves at most `0x7ffff000`
//! bytes (the kernel's cap) and at most what is left of the pump's budget.
//! sendfile returning 0 before the range ends means the file shrank: that
//! is an error, never a retry loop (it has hung other servers).

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::sys::sendfile::sendfile64;
use zcserve_core::{
    Attempt, ByteRange, Move, Moved, Mover, Pumping, Source, Stats, Step, Syscall, Transfer,
    TransferError,
};

use crate::config::Config;

/// The most one `sendfile(2)` call transfers on Linux.
const MAX_SENDFILE: usize = 0x7fff_f000;

pub(crate) fn build(_: &Config, pumping: Pumping) -> Result<Arc<dyn Transfer>, TransferError> {
    Ok(pumping.with(Sendfile))
}

/// The sendfile backend: nothing kept between sessions.
struct Sendfile;

impl Mover for Sendfile {
    type Step = SendfileStep;

    fn begin(
        &self,
        source: &Source,
        _: ByteRange,
        _: &Stats,
    ) -> Result<SendfileStep, TransferError> {
        Ok(SendfileStep {
            file: source.file().clone(),
        })
    }
}

struct SendfileStep {
    file: Arc<File>,
}

impl Step for SendfileStep {
    fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)> {
        Some((m.offset(), m.chunk(MAX_SENDFILE)))
    }

    fn try_move(&mut self, m: &Move<'_>) -> Attempt {
        send_from(&self.file, m)
    }
}

/// One `sendfile(2)` of the move's next chunk of `file` into its socket;
/// also `uring`'s move on a disk-pool thread.
pub(crate) fn send_from(file: &File, m: &Move<'_>) -> Attempt {
    let mut offset = m.offset() as libc::off64_t;
    let r = sendfile64(
        m.sock(),
        file.as_fd(),
        Some(&mut offset),
        m.chunk(MAX_SENDFILE),
    );
    Attempt::made(
        Syscall::Sendfile,
        r.map(|n| match n {
            0 => Moved::Shrank(m.offset()),
            n => Moved::Sent(n),
        }),
    )
}
