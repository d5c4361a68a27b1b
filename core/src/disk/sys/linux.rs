//! Linux: residency from `cachestat(2)` (6.5+) or a `preadv2(RWF_NOWAIT)`
//! probe, completions on an eventfd.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::sendfile::sendfile64;
use nix::unistd::{SysconfVar, sysconf};

use crate::disk::pool::pread_in;
use crate::disk::{Method, ThreadPriority};

/// `__NR_cachestat`. libc does not export it for every target yet; 451 is
/// its number in the unified syscall table that x86, arm, arm64, riscv,
/// loongarch, powerpc, s390 and sparc share (mips adds its ABI base, so
/// there the oracle falls back to the probe rather than guess).
#[cfg(not(any(target_arch = "mips", target_arch = "mips64", target_arch = "mips32r6")))]
const SYS_CACHESTAT: Option<libc::c_long> = Some(451);
#[cfg(any(target_arch = "mips", target_arch = "mips64", target_arch = "mips32r6"))]
const SYS_CACHESTAT: Option<libc::c_long> = None;

/// `struct cachestat_range` of `include/uapi/linux/mman.h`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of `include/uapi/linux/mman.h`; counts are in pages.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// The kernel's page cache, asked with the best method this kernel has.
#[derive(Debug, Clone)]
pub struct PageCache {
    method: Method,
    page: u64,
}

impl PageCache {
    /// Picks `cachestat` when the kernel has it, the `RWF_NOWAIT` probe
    /// otherwise.
    pub fn new() -> Self {
        let method = if has_cachestat() {
            Method::Cachestat
        } else {
            Method::NowaitProbe
        };
        Self::with_method(method)
    }

    /// Uses `method` whatever the kernel has (benches and tests compare
    /// them). A method this kernel lacks answers "resident" for everything,
    /// as the trait asks of a method that cannot tell.
    pub fn with_method(method: Method) -> Self {
        let page = match sysconf(SysconfVar::PAGE_SIZE) {
            Ok(Some(p)) if p > 0 => p as u64,
            // Every Linux has a page size; 4 KiB is the common one should
            // sysconf ever not say.
            _ => 4096,
        };
        Self { method, page }
    }

    /// The method in use.
    pub fn method(&self) -> Method {
        self.method
    }

    /// See [`crate::disk::Residency::resident`].
    pub fn resident(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
        if len == 0 {
            // cachestat reads len 0 as "to the end of the file".
            return Ok(true);
        }
        let last = offset.saturating_add(len - 1);
        let fd = file.as_raw_fd();
        let r = match self.method {
            Method::Cachestat => self.by_cachestat(fd, offset, last),
            Method::NowaitProbe => probe(fd, offset).and_then(|first| {
                // Only a second call when the first page is there: a miss
                // at the start already decides.
                if first && last / self.page != offset / self.page {
                    probe(fd, last)
                } else {
                    Ok(first)
                }
            }),
            Method::Assumed => Ok(true),
        };
        match r {
            Ok(resident) => Ok(resident),
            // The call or the file system cannot answer (no syscall, a
            // seccomp filter, hugetlbfs, a file system without NOWAIT
            // reads): "cannot tell" means resident, see the trait.
            Err(Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL | Errno::EPERM) => Ok(true),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    fn by_cachestat(&self, fd: RawFd, offset: u64, last: u64) -> Result<bool, Errno> {
        let pages = last / self.page - offset / self.page + 1;
        let len = last - offset + 1;
        if cachestat(fd, offset, len)?.nr_cache >= pages {
            return Ok(true);
        }
        // Seen on Linux 6.18: about one call in 10^5 on a fully cached file
        // made of large folios counts only up to a folio boundary and then
        // stops short. Asking once more costs one cheap call on a miss (a
        // real one then waits milliseconds for the disk anyway) and spares
        // a spurious trip through the pool.
        Ok(cachestat(fd, offset, len)?.nr_cache >= pages)
    }
}

impl Default for PageCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this kernel has `cachestat`: called on an invalid descriptor it
/// answers `EBADF` when it exists and `ENOSYS` when it does not.
fn has_cachestat() -> bool {
    matches!(cachestat(-1, 0, 1), Err(Errno::EBADF))
}

fn cachestat(fd: RawFd, off: u64, len: u64) -> Result<Cachestat, Errno> {
    let Some(nr) = SYS_CACHESTAT else {
        return Err(Errno::ENOSYS);
    };
    let range = CachestatRange { off, len };
    let mut cs = Cachestat::default();
    // SAFETY: cachestat(2) takes (unsigned int fd, struct cachestat_range *,
    // struct cachestat *, unsigned int flags); both structs are repr(C)
    // copies of the uapi ones, live for the whole call, and the kernel
    // only reads `range` and only writes `cs`. A bad fd is reported as
    // EBADF, not undefined behaviour.
    let r = unsafe {
        libc::syscall(
            nr,
            fd as libc::c_uint,
            &range as *const CachestatRange,
            &mut cs as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    Errno::result(r).map(|_| cs)
}

/// Reads one byte at `at` without waiting for I/O: `false` when the page is
/// not cached. End of file counts as resident (nothing to wait for).
fn probe(fd: RawFd, at: u64) -> Result<bool, Errno> {
    let mut byte = [0u8; 1];
    let iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    let at = libc::off_t::try_from(at).map_err(|_| Errno::EINVAL)?;
    // SAFETY: one iovec pointing at a live one-byte buffer that nothing else
    // borrows during the call; preadv2 writes at most iov_len bytes there.
    let r = unsafe { libc::preadv2(fd, &iov, 1, at, libc::RWF_NOWAIT) };
    match Errno::result(r) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A readable-when-signalled descriptor: an eventfd, non-blocking so that
/// resetting it never waits.
#[derive(Debug)]
pub struct Notifier(EventFd);

impl Notifier {
    pub fn new() -> io::Result<Self> {
        EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map(Notifier)
            .map_err(io::Error::from)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Makes the descriptor readable.
    pub fn notify(&self) -> io::Result<()> {
        self.0.write(1).map(drop).map_err(io::Error::from)
    }

    /// Makes it unreadable again (a no-op when it was not signalled).
    pub fn reset(&self) -> io::Result<()> {
        match self.0.read() {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// Reads `[offset, offset + len)` of `file` into the page cache without
/// copying it anywhere: `sendfile` into `/dev/null` makes the kernel read
/// the pages (and wait for them) and then drop its references, so a pool
/// thread spends no CPU on a copy it would throw away. Falls back to
/// `pread` into `scratch` where `/dev/null` cannot be opened or refuses
/// `sendfile`. Returns the bytes read in (short at end of file).
pub fn read_in(file: &File, offset: u64, len: u64, scratch: &mut [u8]) -> io::Result<u64> {
    static NULL: OnceLock<Option<File>> = OnceLock::new();
    let null = NULL.get_or_init(|| {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")
            .ok()
    });
    let Some(null) = null else {
        return pread_in(file, offset, len, scratch);
    };
    // Ask for the whole range first: the kernel then reads it in large
    // requests (up to the device's limit) rather than in the pipe-sized
    // steps `sendfile` takes, which on a disk limited in requests per
    // second is the difference in throughput. Advice only: if refused, the
    // sendfile below still reads every page.
    let _ = posix_fadvise(
        file.as_fd(),
        offset as libc::off_t,
        len as libc::off_t,
        PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    );
    let mut done = 0u64;
    while done < len {
        let mut at = (offset + done) as libc::off64_t;
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(MAX_SENDFILE);
        match sendfile64(null.as_fd(), file.as_fd(), Some(&mut at), want) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(Errno::EINTR) => {}
            Err(Errno::EINVAL | Errno::ENOSYS) if done == 0 => {
                return pread_in(file, offset, len, scratch);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Schedules the calling thread as `priority` asks; on Linux a nice value
/// and a policy belong to one thread, not the whole process.
pub fn set_thread_priority(priority: ThreadPriority) -> io::Result<()> {
    match priority {
        ThreadPriority::Normal => Ok(()),
        ThreadPriority::Nice(n) => set_thread_nice(n),
        ThreadPriority::Idle => {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sched_setscheduler(2) with pid 0 changes the calling
            // thread only; it reads `param`, which lives for the call.
            // Moving to SCHED_IDLE needs no privilege.
            let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            Errno::result(r).map(drop).map_err(io::Error::from)
        }
    }
}

/// Lowers the calling thread's priority to at least `nice`; a thread
/// already at `nice` or lower is left as it is, so this never needs a
/// privilege.
fn set_thread_nice(nice: u8) -> io::Result<()> {
    let tid = nix::unistd::gettid().as_raw() as libc::id_t;
    Errno::clear();
    // SAFETY: getpriority(2) takes plain integers and touches no memory of
    // ours; PRIO_PROCESS with a thread id asks about that one thread.
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    // -1 is also a valid nice value: only errno tells a failure.
    if now == -1 && Errno::last_raw() != 0 {
        return Err(io::Error::last_os_error());
    }
    if now >= i32::from(nice) {
        return Ok(());
    }
    // SAFETY: as above; setpriority(2) sets that one thread's nice value.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, i32::from(nice)) };
    Errno::result(r).map(drop).map_err(io::Error::from)
}

/// The most one `sendfile(2)` call moves on Linux.
const MAX_SENDFILE: usize = 0x7fff_f000;
