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
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::sys::stat::fstat;
use zcserve_core::{
    ByteRange, Progress, Pump, Session, Source, Stats, Step, Syscall, Tracked, Transfer,
    TransferError,
};

use crate::Config;
use crate::sock::{Sent, account, send_with_prefix, vectored_call};

/// The mmap+send backend.
#[derive(Debug)]
pub struct Mmap {
    stats: Arc<Stats>,
    max_chunk: usize,
}

impl Mmap {
    /// An mmap backend with the given settings.
    pub fn new(config: &Config) -> Result<Self, TransferError> {
        config.validate()?;
        crate::sigpipe::ensure_ignored()?;
        Ok(Self {
            stats: Arc::default(),
            max_chunk: config.max_chunk,
        })
    }
}

impl Transfer for Mmap {
    fn name(&self) -> &'static str {
        "mmap"
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
        let map = if range.is_empty() {
            // mmap of zero bytes is EINVAL; there is nothing to map.
            None
        } else {
            let len = usize::try_from(range.len()).map_err(|_| TransferError::InvalidConfig {
                setting: "range",
                reason: format!("{} bytes do not fit in this address space", range.len()),
            })?;
            self.stats.syscall(Syscall::Mmap);
            let map = MmapOptions::new()
                .offset(range.start())
                .len(len)
                .map_raw_read_only(source.file().as_ref())
                .map_err(|e| TransferError::sys_io(Syscall::Mmap, &e))?;
            self.stats.syscall(Syscall::Madvise);
            // Readahead is an optimisation: a kernel that refuses the
            // advice still serves the bytes.
            let _ = map.advise(Advice::Sequential);
            Some(map)
        };
        let step = MmapStep {
            file: source.file().clone(),
            map,
            base: range.start(),
            limit: range.end(),
            max_chunk: self.max_chunk,
        };
        Ok(Box::new(Tracked::new(progress, step)))
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
    max_chunk: usize,
}

impl Step for MmapStep {
    fn step(&mut self, p: &mut Progress, sock: BorrowedFd<'_>) -> Result<Pump, TransferError> {
        let mut budget = self.max_chunk;
        loop {
            if p.remaining() == 0 {
                return Ok(Pump::Done);
            }
            if p.offset() >= self.limit && p.body_left() > 0 {
                return Err(p.shrank_at(self.limit));
            }
            if budget == 0 {
                return Ok(Pump::Yield);
            }
            let at = (p.offset() - self.base) as usize;
            let len = usize::try_from(self.limit - p.offset())
                .unwrap_or(usize::MAX)
                .min(budget);
            let body = match &self.map {
                // wrapping_add: forming the address is safe; only the kernel
                // dereferences it.
                Some(map) => map.as_ptr().wrapping_add(at),
                None => std::ptr::null(),
            };
            // SAFETY: at + len <= the mapping's length (limit never exceeds
            // the range end the mapping covers) and the mapping lives in
            // self; with no mapping, len is 0.
            match unsafe { send_with_prefix(p, sock, body, len) } {
                Ok(Sent::Bytes(n)) => {
                    let b = account(p, n);
                    p.stats().copied_out(b as u64);
                    budget = budget.saturating_sub(n);
                }
                Ok(Sent::Full) => return Ok(Pump::WouldBlock),
                Err(Errno::EFAULT) => self.fault(p, len)?,
                Err(e) => return Err(TransferError::sys(vectored_call(p, len), e)),
            }
        }
    }

    fn close(&mut self, p: &mut Progress) {
        if self.map.is_some() {
            p.stats().syscall(Syscall::Munmap);
        }
    }
}

impl MmapStep {
    /// A send faulted on the mapping: the file shrank under it. fstat says
    /// where it ends now; the bytes up to there are still sent (TCP copies
    /// in chunks and fails a whole chunk that crosses the end), then the
    /// session fails with `FileShrank`.
    fn fault(&mut self, p: &Progress, len: usize) -> Result<(), TransferError> {
        p.stats().syscall(Syscall::Fstat);
        let call = vectored_call(p, len);
        match fstat(self.file.as_fd()) {
            Ok(st) if (st.st_size.max(0) as u64) < self.limit => {
                self.limit = (st.st_size.max(0) as u64).max(p.offset());
                Ok(())
            }
            _ => Err(TransferError::sys(call, Errno::EFAULT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

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
        let backend = Mmap::new(&Config::default()).unwrap();
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
