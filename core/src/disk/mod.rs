//! Keeping the disk off the pump: a residency oracle that says whether a
//! range of a file is in the page cache, and a bounded pool of blocking
//! threads that reads a range in when it is not.
//!
//! Every backend ends in a kernel call that reads the file synchronously
//! when its pages are not cached (`sendfile`, `splice`, `pread`, an mmap
//! page fault), and a pump that makes one stalls every connection on its
//! event loop. nginx's `aio threads` runs every send in a pool thread; h2o
//! tries `preadv2(RWF_NOWAIT)` first and only offloads a miss. This module
//! is the h2o way for every backend: before a pump moves a chunk it asks
//! [`Residency::resident`]; on a miss it hands the chunk to [`DiskPool`],
//! answers `Pump::Pending` on the session's [`Completion`] descriptor, and
//! when that turns readable the bytes go out from the now warm cache: from
//! a pool thread by default ([`Cold::with_pool_sends`], nginx's way), or
//! from the pump's own thread. Hot chunks never enter the pool, so they
//! never queue behind cold ones (the lesson of static-web-server, whose one
//! blocking pool served both).
//!
//! Both halves are traits so that tests can hold a read or declare a file
//! cold at will; [`testing`] has the helpers other crates' tests use.

mod gate;
mod memo;
mod pool;
mod priority;
mod sys;
pub mod testing;
// The tests check the Linux methods against the Linux page cache.
#[cfg(all(test, target_os = "linux"))]
mod tests;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::READ_IN_SPAN;

pub use gate::{ColdGate, Gate};
pub use memo::DEFAULT_WINDOW as MEMO_WINDOW;
pub use pool::{
    Completion, DiskPool, FileId, Parking, PoolConfig, PoolSnapshot, PoolStats, PreadIn, ReadIn,
    SendJob, SubmitError, Submitted, Ticket,
};
pub use priority::{MAX_NICE, ThreadPriority};
pub use sys::PageCache;

/// Answers whether a byte range of an open file can be read without
/// waiting for the disk.
///
/// Called once per pump chunk on the hot path, so an implementation must
/// cost about one cheap syscall and never block on I/O itself.
pub trait Residency: Send + Sync {
    /// True when every page of `[offset, offset + len)` of `file` is in the
    /// page cache (an empty range is trivially resident).
    ///
    /// A method that cannot tell answers `true`: the caller then does what
    /// it did before this module existed (reads on its own thread), which
    /// is slower on a miss but never wrong. An `Err` is a real failure of
    /// the call (a bad descriptor); callers may treat it like `true` and
    /// let the send itself report what is wrong with the file.
    fn resident(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool>;
}

/// How a [`PageCache`] finds out what is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `cachestat(2)` (Linux 6.5+): one syscall that counts the cached
    /// pages of the range; costs no copy and no mapping. It counts a page
    /// whose read is still in flight as cached, so the gate also asks the
    /// pool whether it is reading the range ([`DiskPool::is_reading`]).
    Cachestat,
    /// `preadv2(RWF_NOWAIT)` of one byte at the first and at the last page
    /// of the range: works on older kernels, but a hole in the middle of
    /// the range goes unseen (readahead fills ranges contiguously, so
    /// holes are rare, and a missed one costs what every read cost before).
    NowaitProbe,
    /// No way to ask on this platform: every range is reported resident,
    /// which keeps the behaviour the server had without this module.
    Assumed,
}

impl Method {
    /// A short name for logs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Method::Cachestat => "cachestat",
            Method::NowaitProbe => "preadv2-nowait",
            Method::Assumed => "assumed-resident",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every range resident: for callers that want the pool's plumbing without
/// asking the kernel (and the value a disabled oracle reduces to).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysResident;

impl Residency for AlwaysResident {
    fn resident(&self, _file: BorrowedFd<'_>, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(true)
    }
}

impl Residency for PageCache {
    fn resident(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
        PageCache::resident(self, file, offset, len)
    }
}

/// What a backend's pump needs to keep its sessions off the disk: the
/// oracle it asks before each move that reads the file, and the pool that
/// reads a cold range in meanwhile. Each session gets its own
/// [`ColdGate`] over these.
#[derive(Clone)]
pub struct Cold {
    residency: Arc<dyn Residency>,
    pool: Arc<DiskPool>,
    pool_sends: bool,
    read_in: u64,
}

impl Cold {
    /// Asks `residency`, offloads misses to `pool`, and trusts a range
    /// found resident for [`MEMO_WINDOW`] on the thread that asked.
    /// Sends from the pool's threads what they read in (see
    /// [`Cold::sends_on_pool`]).
    pub fn new(residency: Arc<dyn Residency>, pool: Arc<DiskPool>) -> Self {
        Self {
            residency,
            pool,
            pool_sends: true,
            read_in: READ_IN_SPAN,
        }
    }

    /// The same, with the bytes of a range the pool read in sent by a pool
    /// thread (`true`, the default) or by the session's own thread once the
    /// read-in is done (`false`).
    ///
    /// On the pool, as with nginx's `aio threads`, a cold download's sends
    /// run on threads the kernel preempts whenever the event loop has work,
    /// instead of in bursts on the loop that every other connection waits
    /// out (results/FINDINGS.md §9); each such send costs a trip through
    /// the pool. Warm ranges are sent by the loop either way.
    pub fn with_pool_sends(mut self, on: bool) -> Self {
        self.pool_sends = on;
        self
    }

    /// Whether a pool thread sends what the pool read in.
    pub fn sends_on_pool(&self) -> bool {
        self.pool_sends
    }

    /// The same, with one residency check covering, and one read-in
    /// bringing in, at most `bytes` of a range (default [`READ_IN_SPAN`];
    /// less than a move's chunk counts as the chunk).
    ///
    /// On a disk limited in requests per second, a cold download's
    /// throughput is this size times the requests the disk allows; a
    /// smaller size reads less ahead of what a client may never fetch, and
    /// moves fewer cold bytes per second through the server's CPUs while
    /// other connections wait for them (results/FINDINGS.md §9).
    pub fn with_read_in(mut self, bytes: u64) -> Self {
        self.read_in = bytes.max(1);
        self
    }

    /// See [`Cold::with_read_in`].
    pub fn read_in(&self) -> u64 {
        self.read_in
    }

    /// The page cache asked with the best method this kernel has, and a
    /// pool of `threads` threads reading with `pread` (default queue and
    /// chunk sizes); `None` for 0 threads, which keeps every read on the
    /// pump's own thread.
    pub fn with_threads(threads: usize) -> io::Result<Option<Self>> {
        Self::with_pool(PoolConfig {
            threads,
            ..PoolConfig::default()
        })
    }

    /// The page cache asked with the best method this kernel has, and a
    /// pool made with `config` reading with `pread`; `None` for 0 threads.
    pub fn with_pool(config: PoolConfig) -> io::Result<Option<Self>> {
        Ok(DiskPool::new(config, Arc::new(PreadIn))?
            .map(|pool| Self::new(Arc::new(PageCache::new()), Arc::new(pool))))
    }

    /// The pool, for its counters.
    pub fn pool(&self) -> &Arc<DiskPool> {
        &self.pool
    }

    /// A gate for one session.
    pub fn gate(&self) -> ColdGate {
        ColdGate::new(Arc::clone(&self.residency), Arc::clone(&self.pool))
            .with_memo(Some(MEMO_WINDOW))
    }
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold")
            .field("threads", &self.pool.threads())
            .field("pool_sends", &self.pool_sends)
            .finish_non_exhaustive()
    }
}
