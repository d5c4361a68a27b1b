//! The cold-cache scenario's machinery: a working set of files evicted
//! from the page cache before every run and checked to be evicted, the
//! disk's own cold read latency, and a block-I/O cgroup that makes the disk
//! slow for the servers under test.
//!
//! Eviction is `posix_fadvise(POSIX_FADV_DONTNEED)` after `fdatasync`
//! (dirty pages cannot be dropped). It is verified, not assumed: the cached
//! fraction of the set is read with `mincore(2)` on a mapping of each file.
//! On tmpfs or ramfs the page cache is the file itself and nothing can be
//! evicted; [`check_evictable`] says so before a run starts.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use serde::{Deserialize, Serialize};

use crate::fixture::ensure_file;

/// The working set: `count` files of `size` bytes in `dir`, named
/// `00000.bin`, `00001.bin`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingSet {
    /// The directory holding them.
    pub dir: PathBuf,
    /// Every file.
    pub files: Vec<PathBuf>,
    /// Each file's size.
    pub size: u64,
}

impl WorkingSet {
    /// Makes (or keeps, when already of the right size) `count` files of
    /// `size` bytes in `dir`; each file's bytes differ.
    pub fn make(dir: &Path, count: usize, size: u64) -> Result<WorkingSet, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut files = Vec::with_capacity(count);
        for i in 0..count {
            let path = dir.join(Self::name(i));
            ensure_file(&path, size, i as u64 ^ size.rotate_left(32))?;
            files.push(path);
        }
        Ok(WorkingSet {
            dir: dir.to_path_buf(),
            files,
            size,
        })
    }

    /// The file name of file `i`.
    pub fn name(i: usize) -> String {
        format!("{i:05}.bin")
    }

    /// Evicts every file from the page cache.
    pub fn evict(&self) -> Result<(), String> {
        self.files.iter().try_for_each(|f| evict(f))
    }

    /// The fraction of the set's pages in the page cache now.
    pub fn cached(&self) -> Result<f64, String> {
        let (mut resident, mut total) = (0u64, 0u64);
        for f in &self.files {
            let (r, t) = resident_pages(f)?;
            resident += r;
            total += t;
        }
        Ok(if total == 0 {
            0.0
        } else {
            resident as f64 / total as f64
        })
    }
}

/// Drops `path`'s pages from the page cache (writing back any dirty ones
/// first, which could not be dropped).
pub fn evict(path: &Path) -> Result<(), String> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        format!("cannot evict {}: {what}: {e}", path.display())
    };
    let f = File::open(path).map_err(|e| err("open", &e))?;
    nix::unistd::fdatasync(&f).map_err(|e| err("fdatasync", &e))?;
    posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(|e| err("posix_fadvise(DONTNEED)", &e))?;
    Ok(())
}

/// How many of `path`'s pages are in the page cache, of how many, from
/// `mincore(2)` on a read-only shared mapping (which does not read them in).
pub fn resident_pages(path: &Path) -> Result<(u64, u64), String> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "cannot read the residency of {}: {what}: {e}",
            path.display()
        )
    };
    let f = File::open(path).map_err(|e| err("open", &e))?;
    let len = f.metadata().map_err(|e| err("stat", &e))?.len();
    let Some(len) = NonZeroUsize::new(len as usize) else {
        return Ok((0, 0));
    };
    let page = page_size();
    let pages = len.get().div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a fresh read-only shared mapping of a file we hold open; no
    // Rust reference to its memory is made, it is only passed to mincore
    // and unmapped below.
    let addr = unsafe { mmap(None, len, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, &f, 0) }
        .map_err(|e| err("mmap", &e))?;
    // SAFETY: `addr` is the page-aligned start of a mapping of `len` bytes,
    // and `vec` has one byte for each of its pages.
    let rc = unsafe { libc::mincore(addr.as_ptr(), len.get(), vec.as_mut_ptr()) };
    let mincore_err = std::io::Error::last_os_error();
    // SAFETY: the mapping made above, of `len` bytes, unmapped once.
    let _ = unsafe { munmap(addr, len.get()) };
    if rc != 0 {
        return Err(err("mincore", &mincore_err));
    }
    let resident = vec.iter().filter(|&&b| b & 1 == 1).count();
    Ok((resident as u64, pages as u64))
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

/// Fails, saying why and what to do, when files in `dir` cannot be evicted
/// from the page cache: on tmpfs and ramfs the cache is the only copy.
pub fn check_evictable(dir: &Path) -> Result<(), String> {
    use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
    /// ramfs's magic number (linux/magic.h), which nix does not name.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let fs = statfs(dir).map_err(|e| format!("cannot statfs {}: {e}", dir.display()))?;
    let kind = fs.filesystem_type();
    if kind == TMPFS_MAGIC || kind == RAMFS_MAGIC {
        return Err(format!(
            "{} is on tmpfs/ramfs, whose pages cannot be evicted: a cold-cache run needs a directory on a disk (pass --fixture-dir, e.g. under /var/tmp)",
            dir.display()
        ));
    }
    Ok(())
}

/// The disk's own latency for cold 4 KiB reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskLatency {
    /// Reads timed.
    pub samples: usize,
    /// Median, in microseconds.
    pub p50_us: u64,
    /// 99th percentile, in microseconds.
    pub p99_us: u64,
    /// Fraction of the set cached after the reads (should stay near 0).
    pub cached_after: f64,
}

/// Times `samples` reads of 4 KiB at random page offsets of random files
/// of `set`, evicted first and read with readahead off
/// (`POSIX_FADV_RANDOM`), so that each read goes to the disk.
pub fn disk_latency(set: &WorkingSet, samples: usize) -> Result<DiskLatency, String> {
    if set.files.is_empty() || samples == 0 {
        return Err("no files or no samples to measure the disk with".into());
    }
    set.evict()?;
    let page = page_size() as u64;
    let pages = set.size.div_ceil(page).max(1);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut times = Vec::with_capacity(samples);
    let mut buf = vec![0u8; page as usize];
    for _ in 0..samples {
        let path = &set.files[next(set.files.len() as u64) as usize];
        let f = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_RANDOM)
            .map_err(|e| format!("posix_fadvise(RANDOM) on {}: {e}", path.display()))?;
        let at = next(pages) * page;
        let t = Instant::now();
        f.read_at(&mut buf, at)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    Ok(DiskLatency {
        samples,
        p50_us: us(q(0.5)),
        p99_us: us(q(0.99)),
        cached_after: set.cached()?,
    })
}

/// A block-I/O cgroup that limits reads from one device to some IOPS:
/// cgroup v1's `blkio.throttle.read_iops_device` or v2's `io.max`,
/// whichever this machine has. Removed on drop (its processes must have
/// exited by then).
#[derive(Debug)]
pub struct Throttle {
    dir: PathBuf,
    /// What it is, for the report: `cgroup v1 blkio, 254:0, 200 read IOPS`.
    pub description: String,
}

/// Where cgroup v1's blkio controller is mounted on most systems.
pub const CGROUP_V1_BLKIO: &str = "/sys/fs/cgroup/blkio";
/// Where the cgroup v2 hierarchy is mounted on most systems.
pub const CGROUP_V2: &str = "/sys/fs/cgroup";

impl Throttle {
    /// Creates cgroup `name` limiting reads from `device` (major, minor) to
    /// `iops` per second. Needs root.
    pub fn create(name: &str, device: (u64, u64), iops: u32) -> Result<Throttle, String> {
        let (maj, min) = device;
        let v1 = Path::new(CGROUP_V1_BLKIO);
        let v2 = Path::new(CGROUP_V2);
        let (dir, file, line, kind) = if v1.join("blkio.throttle.read_iops_device").is_file() {
            (
                v1.join(name),
                "blkio.throttle.read_iops_device",
                format!("{maj}:{min} {iops}"),
                "cgroup v1 blkio",
            )
        } else if v2.join("cgroup.controllers").is_file() {
            (
                v2.join(name),
                "io.max",
                format!("{maj}:{min} riops={iops}"),
                "cgroup v2 io.max",
            )
        } else {
            return Err(
                "--disk-iops: neither cgroup v1 blkio nor cgroup v2 is mounted under /sys/fs/cgroup"
                    .into(),
            );
        };
        let shown = dir.display().to_string();
        let root_hint = |e: std::io::Error| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (--disk-iops needs root)"
            } else {
                ""
            };
            format!("--disk-iops: cannot set up {shown}: {e}{hint}")
        };
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(root_hint(e));
            }
        }
        let throttle = Throttle {
            description: format!("{kind}, device {maj}:{min}, {iops} read IOPS"),
            dir,
        };
        if kind.starts_with("cgroup v2") {
            // The io controller must be enabled for the children of the
            // parent; harmless if it already is.
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+io");
        }
        std::fs::write(throttle.dir.join(file), &line).map_err(root_hint)?;
        Ok(throttle)
    }

    /// The file a process is moved into the cgroup by.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        // Fails while a process is still in it: say so, as the directory
        // is left behind.
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "zcbench: cannot remove the cgroup {}: {e} (remove it with rmdir once its processes have exited)",
                    self.dir.display()
                );
            }
        }
    }
}

/// The whole block device (major, minor) holding `path`: a partition's
/// parent disk, since the throttles apply to whole disks.
pub fn block_device_of(path: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .dev();
    let (maj, min) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if !sys.exists() {
        return Err(format!(
            "{} is on device {maj}:{min}, which is not a block device (a virtual or network file system?): it cannot be throttled",
            path.display()
        ));
    }
    if sys.join("partition").is_file() {
        let parent = std::fs::read_to_string(sys.join("../dev"))
            .map_err(|e| format!("cannot read the disk of partition {maj}:{min}: {e}"))?;
        return parse_dev(&parent)
            .ok_or_else(|| format!("cannot read the disk of partition {maj}:{min}: {parent:?}"));
    }
    Ok((maj, min))
}

/// A block device's read counters since boot, from
/// `/sys/dev/block/MAJ:MIN/stat` (the kernel's
/// Documentation/block/stat.rst): reads completed and bytes read. Two
/// readings around a run say how the disk was read during it: how many
/// requests, and how large, which tells runs made in different disk
/// regimes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskReads {
    /// Read requests completed (after merging).
    pub reads: u64,
    /// Bytes they read.
    pub bytes: u64,
}

impl DiskReads {
    /// The counters of device `dev` (major, minor) now.
    pub fn read(dev: (u64, u64)) -> Result<DiskReads, String> {
        let path = format!("/sys/dev/block/{}:{}/stat", dev.0, dev.1);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        DiskReads::parse(&text).ok_or_else(|| format!("cannot parse {path}: {text:?}"))
    }

    /// Parses a `stat` line: field 1 is reads completed, field 3 sectors
    /// read, in 512-byte units whatever the device's sector size.
    pub fn parse(text: &str) -> Option<DiskReads> {
        let mut f = text.split_whitespace();
        let reads = f.next()?.parse().ok()?;
        let sectors: u64 = f.nth(1)?.parse().ok()?;
        Some(DiskReads {
            reads,
            bytes: sectors.checked_mul(512)?,
        })
    }

    /// What was read between `earlier` and this reading.
    pub fn since(self, earlier: DiskReads) -> DiskReads {
        DiskReads {
            reads: self.reads.saturating_sub(earlier.reads),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

/// In a cold load capped at `mb_per_s` (1e6 bytes a second), how often
/// one request for a file of `size` bytes may start.
pub fn request_interval(size: u64, mb_per_s: f64) -> Duration {
    Duration::from_secs_f64(size as f64 / (mb_per_s * 1e6))
}

/// `"254:0\n"` -> (254, 0).
pub fn parse_dev(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on a disk for eviction tests: `ZCBENCH_COLD_TEST_DIR`,
    /// or /var/tmp. Fails, saying so, when it is tmpfs, unless
    /// `ZCBENCH_ALLOW_TMPFS` is set (then the test is skipped and says it).
    fn disk_dir(tag: &str) -> Option<PathBuf> {
        let base = std::env::var_os("ZCBENCH_COLD_TEST_DIR")
            .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
        let dir = base.join(format!("zcbench-cold-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Err(e) = check_evictable(&dir) {
            std::fs::remove_dir_all(&dir).unwrap();
            if std::env::var_os("ZCBENCH_ALLOW_TMPFS").is_some() {
                println!("SKIPPED: {e} (allowed by ZCBENCH_ALLOW_TMPFS)");
                return None;
            }
            panic!(
                "{e}; set ZCBENCH_COLD_TEST_DIR to a disk directory, or ZCBENCH_ALLOW_TMPFS=1 to skip"
            );
        }
        Some(dir)
    }

    #[test]
    fn eviction_empties_the_cache_and_reading_fills_it() {
        let Some(dir) = disk_dir("evict") else { return };
        let set = WorkingSet::make(&dir, 3, 256 * 1024).unwrap();
        for f in &set.files {
            crate::fixture::warm(f).unwrap();
        }
        assert_eq!(set.cached().unwrap(), 1.0, "just read");
        set.evict().unwrap();
        let after = set.cached().unwrap();
        assert!(
            after < 0.05,
            "{after} of the set still cached after eviction"
        );
        // Reading one of three files brings back a third of the set.
        crate::fixture::warm(&set.files[1]).unwrap();
        let one = set.cached().unwrap();
        assert!((one - 1.0 / 3.0).abs() < 0.05, "{one}");
        let (r, t) = resident_pages(&set.files[1]).unwrap();
        assert_eq!((r, t), (t, (256 * 1024 / page_size()) as u64));
        // The residency check itself reads nothing in.
        assert_eq!(resident_pages(&set.files[0]).unwrap().0, 0);
        assert_eq!(resident_pages(&set.files[0]).unwrap().0, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_disk_is_read_cold() {
        let Some(dir) = disk_dir("latency") else {
            return;
        };
        let set = WorkingSet::make(&dir, 4, 64 * 1024).unwrap();
        let lat = disk_latency(&set, 16).unwrap();
        assert_eq!(lat.samples, 16);
        assert!(lat.p50_us <= lat.p99_us);
        // 16 reads of one page each cannot have cached more than 16 pages.
        let pages = 4 * 64 * 1024 / page_size();
        assert!(lat.cached_after <= 16.0 / pages as f64, "{lat:?}");
        assert!(disk_latency(&set, 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tmpfs_is_refused_with_what_to_do() {
        // /dev/shm is tmpfs on Linux.
        let err = check_evictable(Path::new("/dev/shm")).unwrap_err();
        assert!(
            err.contains("tmpfs") && err.contains("--fixture-dir"),
            "{err}"
        );
        assert!(check_evictable(Path::new("/nonexistent/x")).is_err());
    }

    #[test]
    fn devices_are_read_as_major_minor() {
        assert_eq!(parse_dev("254:0\n"), Some((254, 0)));
        assert_eq!(parse_dev("8:17"), Some((8, 17)));
        assert_eq!(parse_dev("vda"), None);
        let err = block_device_of(Path::new("/proc/self")).unwrap_err();
        assert!(err.contains("not a block device"), "{err}");
        let (maj, _) = block_device_of(Path::new("/var/tmp")).unwrap();
        assert!(maj > 0);
    }

    #[test]
    fn disk_read_counters_parse_and_subtract() {
        let line = "  120311     9551 20440914    43721   262811   300011 12712146  1331264        0   191660  1375112\n";
        let a = DiskReads::parse(line).unwrap();
        assert_eq!(
            a,
            DiskReads {
                reads: 120_311,
                bytes: 20_440_914 * 512
            }
        );
        let b = DiskReads {
            reads: 120_511,
            bytes: a.bytes + 200 * 1024 * 1024,
        };
        assert_eq!(
            b.since(a),
            DiskReads {
                reads: 200,
                bytes: 200 * 1024 * 1024
            }
        );
        // A counter that went backwards (a device re-added) gives zero,
        // not a wrapped figure.
        assert_eq!(a.since(b), DiskReads { reads: 0, bytes: 0 });
        assert_eq!(DiskReads::parse("12 x"), None);
        assert_eq!(DiskReads::parse(""), None);
        // The machine's own disk reads, where there is one.
        if let Some(dir) = disk_dir("stat") {
            let dev = block_device_of(&dir).unwrap();
            let now = DiskReads::read(dev);
            std::fs::remove_dir_all(&dir).unwrap();
            let now = now.unwrap();
            assert!(now.reads > 0 && now.bytes > 0, "{now:?}");
        }
    }

    #[test]
    fn working_set_files_are_named_in_order() {
        assert_eq!(WorkingSet::name(7), "00007.bin");
        assert_eq!(WorkingSet::name(2999), "02999.bin");
    }
}
