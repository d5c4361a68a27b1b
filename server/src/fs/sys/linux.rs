//! Linux: lookups start from an `O_PATH` descriptor of the root and go
//! through `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so
//! the kernel itself refuses any resolution (including through a symlink
//! swapped in mid-request) that would leave the root. Kernels without
//! `openat2` get the canonicalise-and-check fallback.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::fs::Policy;
use crate::fs::canonical::open_canonical_checked;
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
        Ok(Base(Arc::new(fd)))
    }
}

/// Flags every served file is opened with: `O_NONBLOCK` so that a FIFO
/// cannot block the open, `O_NOCTTY` so that a terminal cannot become ours.
/// The flag stays on regular files, as nginx leaves it: it changes nothing
/// for `pread`, `sendfile`, `splice` or `mmap` of a regular file, and
/// clearing it would cost two `fcntl` calls per request.
fn open_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK
}

/// Set once `openat2` turned out not to exist (`ENOSYS`, Linux < 5.6).
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Opens `rel` (relative, no `..`) beneath `base`.
///
/// `lexical` is the same file as an absolute path under `root` (the
/// canonical root), used only when `openat2` is missing.
pub fn open_beneath(
    base: &Base,
    rel: &str,
    lexical: &Path,
    root: &Path,
    policy: &Policy,
) -> Result<File, PathError> {
    if !OPENAT2_MISSING.load(Ordering::Relaxed) {
        let mut resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !policy.follow_symlinks {
            resolve |= ResolveFlag::RESOLVE_BENEATH;
        }
        let how = OpenHow::new().flags(open_flags()).resolve(resolve);
        match openat2(base.0.as_fd(), rel, how) {
            Ok(fd) => return Ok(File::from(fd)),
            // RESOLVE_BENEATH refuses any symlink whose resolution
            // leaves the root even for a moment (absolute ones
            // included), before looking at what lies beyond it: the
            // answer is the same whether that exists or not.
            Err(Errno::EXDEV) if !policy.follow_symlinks => return Err(PathError::Forbidden),
            Err(Errno::ENOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
            // Unknown flags or `open_how` size: an older kernel.
            Err(Errno::EINVAL | Errno::E2BIG) => {}
            Err(e) => return Err(PathError::from_errno(e)),
        }
    }
    open_canonical_checked(lexical, root, policy)
}
