//! Linux: lookups start from an `O_PATH` descriptor of the root and go
//! through `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so
//! the kernel itself refuses any resolution (including through a symlink
//! swapped in mid-request) that would leave the root. What is found is an
//! `O_PATH` descriptor, which opens nothing: a file is opened for reading
//! only after `fstat` on it showed a regular file, through
//! `/proc/self/fd`, so that it is the very inode that was checked. Kernels
//! without `openat2`, and systems without `/proc`, get the
//! canonicalise-and-check fallback.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use super::Found;
use crate::fs::Policy;
use crate::fs::canonical::find_canonical_checked;
use crate::http::request_path::PathError;

/// The root's `O_PATH | O_DIRECTORY` descriptor, shared with the
/// directories opened under it.
#[derive(Debug, Clone)]
pub struct Base(Arc<OwnedFd>);

impl Base {
    /// Opens the directory `dir` as a starting point for lookups.
    pub fn open(dir: &Path) -> Result<Base, Errno> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // Reopening an `O_PATH` descriptor needs `/proc/self/fd`; without
        // it every lookup takes the fallback.
        if nix::fcntl::readlink(proc_fd(&fd).as_path()).is_err() {
            PROC_MISSING.store(true, Ordering::Relaxed);
        }
        Ok(Base(Arc::new(fd)))
    }
}

/// Flags a regular file is opened for reading with. `O_NOCTTY` and
/// `O_NONBLOCK` are kept though the type was checked first: they cost
/// nothing for `pread`, `sendfile`, `splice` or `mmap` of a regular file.
fn read_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK
}

/// Set once `openat2` turned out not to exist (`ENOSYS`, Linux < 5.6).
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);
/// Set when `/proc/self/fd` cannot be read (no procfs mounted).
static PROC_MISSING: AtomicBool = AtomicBool::new(false);

fn proc_fd(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Finds `rel` (relative, no `..`) beneath `base` without opening it.
///
/// `lexical` is the same file as an absolute path under `root` (the
/// canonical root), used only by the fallback.
pub fn open_beneath(
    base: &Base,
    rel: &str,
    lexical: &Path,
    root: &Path,
    policy: &Policy,
) -> Result<Found, PathError> {
    if !OPENAT2_MISSING.load(Ordering::Relaxed) && !PROC_MISSING.load(Ordering::Relaxed) {
        let mut resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !policy.follow_symlinks {
            resolve |= ResolveFlag::RESOLVE_BENEATH;
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(resolve);
        match openat2_retrying(base, rel, how) {
            Ok(fd) => {
                let fd = File::from(fd);
                let meta = fd.metadata().map_err(|e| PathError::from_io(&e))?;
                return Ok(Found {
                    fd,
                    meta,
                    canonical: None,
                });
            }
            // RESOLVE_BENEATH refuses any symlink whose resolution
            // leaves the root even for a moment (absolute ones
            // included), before looking at what lies beyond it: the
            // answer is the same whether that exists or not.
            Err(Errno::EXDEV) if !policy.follow_symlinks => return Err(PathError::Forbidden),
            Err(Errno::ENOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
            // Unknown flags or `open_how` size: an older kernel. And a
            // lookup that kept racing with renames (see below): the
            // fallback checks the path its own way.
            Err(Errno::EINVAL | Errno::E2BIG | Errno::EAGAIN) => {}
            Err(e) => return Err(PathError::from_errno(e)),
        }
    }
    find_canonical_checked(lexical, root, policy)
}

/// Times `openat2` is retried on `EAGAIN` before the fallback takes over.
const EAGAIN_TRIES: usize = 8;

/// `openat2`, retried while it answers `EAGAIN`: with `RESOLVE_BENEATH`
/// the kernel refuses a walk through `..` when any rename or mount on the
/// system raced with it (it cannot then prove the walk stayed beneath), and
/// asks the caller to retry. A busy filesystem elsewhere must not turn a
/// lookup into an error.
fn openat2_retrying(base: &Base, rel: &str, how: OpenHow) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match openat2(base.0.as_fd(), rel, how) {
            Err(Errno::EAGAIN) if tries + 1 < EAGAIN_TRIES => tries += 1,
            other => return other,
        }
    }
}

/// Opens for reading the regular file `found` names.
pub fn open_for_reading(found: Found) -> Result<File, PathError> {
    if found.canonical.is_some() {
        // The fallback opened it already, after checking its type.
        return Ok(found.fd);
    }
    // The magic link leads to the inode `found.fd` holds, whatever has
    // happened to its name since.
    nix::fcntl::open(proc_fd(&found.fd).as_path(), read_flags(), Mode::empty())
        .map(File::from)
        .map_err(PathError::from_errno)
}

/// Where `found` is, as the kernel resolved it.
pub fn resolved_path(found: &Found) -> Option<PathBuf> {
    if let Some(path) = &found.canonical {
        return Some(path.clone());
    }
    nix::fcntl::readlink(proc_fd(&found.fd).as_path())
        .ok()
        .map(PathBuf::from)
}
