//! `mmap`: map the requested range of the file and `send` from the
//! mapping, so the kernel copies page-cache pages into the socket straight
//! from the process's address space without a `read`.
//!
//! Only the range is mapped (memmap2 rounds the offset down to a page), with
//! `madvise(MADV_SEQUENTIAL)` so readahead runs ahead of the sends.
//!
//! # Truncated files and SIGBUS
//!
//! Touching a page of a mapping that lies past the end of the file raises
//! SIGBUS. This backend never touches the mapping from user space: the
//! mapping is held as a raw pointer (memmap2's `MmapRaw`), no `&[u8]` is ever
//! made of it, and the only reader is the kernel inside `send`/`sendmsg`.
//! When the kernel's copy from a user address faults on a page past EOF, the
//! fault happens in kernel mode: the syscall returns the bytes copied before
//! the fault, and then `EFAULT`, and no signal is raised. On `EFAULT` the
//! session asks `fstat` where the file ends now, still sends the bytes up to
//! there (TCP copies in chunks and fails a whole chunk that crosses the
//! end), then fails with [`TransferError::FileShrank`], as the other
//! backends do; the process goes on serving. The test
//! `truncated_mapping_gives_efault_not_sigbus` pins this down with SIGBUS
//! left at its default action, which would kill the test process.
//!
//! Limits: anything that reads the mapped bytes in user space (a checksum,
//! user-space TLS) would bring SIGBUS back and would need a signal handler
//! that maps anonymous pages over the faulting range. A file truncated and
//! grown back between two sends is read as zeros past the old end, as the
//! page cache holds them; that is the kernel's contract for in-place
//! rewrites, not something a server can detect.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::sys::stat::fstat;
use zcserve_core::sock::send_with_prefix;
use zcserve_core::{
    Attempt, ByteRange, Move, Moved, Mover, Pumping, Source, Stats, Step, Syscall, Transfer,
    TransferError,
};

use crate::config::Config;

pub(crate) fn build(_: &Config, pumping: Pumping) -> Result<Arc<dyn Transfer>, TransferError> {
    Ok(pumping.with(Mmap))
}

/// The mmap+send backend: nothing kept between sessions.
struct Mmap;

impl Mover for Mmap {
    type Step = MmapStep;

    fn begin(
        &self,
        source: &Source,
        range: ByteRange,
        stats: &Stats,
    ) -> Result<MmapStep, TransferError> {
        let map = if range.is_empty() {
            // mmap of zero bytes is EINVAL; there is nothing to map.
            None
        } else {
            let len = usize::try_from(range.len()).map_err(|_| TransferError::InvalidConfig {
                setting: "range",
                reason: format!("{} bytes do not fit in this address space", range.len()),
            })?;
            let map = stats.counted_io(Syscall::Mmap, || {
                MmapOptions::new()
                    .offset(range.start())
                    .len(len)
                    .map_raw_read_only(source.file().as_ref())
            })?;
            // Readahead is an optimisation: a kernel that refuses the
            // advice still serves the bytes.
            let _ = stats.counted_io(Syscall::Madvise, || map.advise(Advice::Sequential));
            Some(map)
        };
        Ok(MmapStep {
            file: source.file().clone(),
            map,
            base: range.start(),
            limit: range.end(),
            faulted: None,
        })
    }
}

struct MmapStep {
    file: Arc<File>,
    map: Option<MmapRaw>,
    /// The file offset of the mapping's first byte.
    base: u64,
    /// Where the file is known to end within the range: the range end,
    /// until a fault shows the file shrank.
    limit: u64,
    /// The send that faulted, until fstat has said where the file ends.
    faulted: Option<Syscall>,
}

impl Step for MmapStep {
    const CARRIES_PREFIX: bool = true;

    /// A send from the mapping reads the file's pages (faulting them in).
    fn next_read(&self, m: &Move<'_>) -> Option<(u64, usize)> {
        let reads = self.faulted.is_none() && m.offset() < self.limit && m.body_left() > 0;
        reads.then(|| (m.offset(), self.sendable(m)))
    }

    fn try_move(&mut self, m: &Move<'_>) -> Attempt {
        if let Some(send) = self.faulted.take() {
            return self.examine_fault(m, send);
        }
        if m.offset() >= self.limit && m.body_left() > 0 {
            return Attempt::no_call(Moved::Shrank(self.limit));
        }
        let len = self.sendable(m);
        let body = match &self.map {
            // wrapping_add: forming the address is safe; only the kernel
            // dereferences it.
            Some(map) => map.as_ptr().wrapping_add((m.offset() - self.base) as usize),
            None => std::ptr::null(),
        };
        // SAFETY: offset + len <= limit <= the range end the mapping covers,
        // and the mapping lives in self; with no mapping, len is 0.
        let (call, r) = unsafe { send_with_prefix(m.sock(), m.prefix(), body, len) };
        match r {
            Err(Errno::EFAULT) => {
                self.faulted = Some(call);
                Attempt::made(call, Ok(Moved::Again))
            }
            r => Attempt::made(call, r.map(Moved::Sent)),
        }
    }

    fn close(&mut self, stats: &Arc<Stats>) {
        if let Some(map) = self.map.take() {
            let _ = stats.counted(Syscall::Munmap, || {
                drop(map);
                Ok(())
            });
        }
    }
}

impl MmapStep {
    /// Body bytes the next send may take from the mapping: up to where the
    /// file is known to end, within the budget.
    fn sendable(&self, m: &Move<'_>) -> usize {
        let known = usize::try_from(self.limit.saturating_sub(m.offset())).unwrap_or(usize::MAX);
        m.chunk(known)
    }

    /// A send faulted on the mapping: the file shrank under it. fstat says
    /// where it ends now; the bytes up to there are still sent (TCP copies
    /// in chunks and fails a whole chunk that crosses the end), then the
    /// session fails with `FileShrank`. A fault fstat cannot explain is the
    /// send's error.
    fn examine_fault(&mut self, m: &Move<'_>, send: Syscall) -> Attempt {
        match fstat(self.file.as_fd()) {
            Ok(st) if (st.st_size.max(0) as u64) < self.limit => {
                self.limit = (st.st_size.max(0) as u64).max(m.offset());
                Attempt::made(Syscall::Fstat, Ok(Moved::Again))
            }
            _ => Attempt::failed(
                Some(Syscall::Fstat),
                TransferError::sys(send, Errno::EFAULT),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use zcserve_core::Pump;

    use super::*;

    #[test]
    fn truncated_mapping_gives_efault_not_sigbus() {
        // Make SIGBUS fatal (the Rust runtime's stack-overflow handler
        // sits on it), so that surviving proves no signal was raised.
        // SAFETY: SigDfl installs no Rust code as a handler.
        unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGBUS,
                nix::sys::signal::SigHandler::SigDfl,
            )
        }
        .unwrap();

        let path = std::env::temp_dir().join(format!("zcserve-mmap-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let backend = crate::Backend::Mmap.build(&Config::default()).unwrap();
        let source = Source::new(file).unwrap();
        let mut session = backend
            .start(&source, ByteRange::full(1 << 20), b"head".to_vec())
            .unwrap();
        f.set_len(10_000).unwrap();
        std::fs::remove_file(&path).unwrap();

        let (a, b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut &b, &mut got).unwrap();
            got
        });
        let mut result = session.pump(a.as_fd());
        while let Ok(Pump::Yield | Pump::WouldBlock) = result {
            result = session.pump(a.as_fd());
        }
        drop(a);
        match result {
            Err(TransferError::FileShrank { offset, end }) => {
                assert_eq!((offset, end), (10_000, 1 << 20))
            }
            other => panic!("expected FileShrank, got {other:?}"),
        }
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 4 + 10_000);
        assert!(got[4..].iter().all(|&b| b == 7));
    }
}
