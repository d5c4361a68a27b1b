//! The portable way to open beneath the root: canonicalise, check, open.
//! It is all non-Linux targets have, and what Linux falls back to on
//! kernels without `openat2` (before 5.6) or systems without `/proc`.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::Policy;
use super::sys::Found;
use crate::http::request_path::PathError;

/// The portable fallback: canonicalise, check the result is inside `root`
/// (unless symlinks may be followed anywhere), check its type, open.
///
/// Only regular files and directories are opened, and only after `stat`
/// said that is what they are; the descriptor must then be the inode that
/// was checked. A symlink swapped in between the check and the open can
/// still lead out of the root (`O_NOFOLLOW` only guards the last
/// component), and a FIFO swapped in can still be opened (without
/// blocking: `O_NONBLOCK`). This is why Linux uses `openat2` and `O_PATH`
/// when it can.
pub(super) fn find_canonical_checked(
    lexical: &Path,
    root: &Path,
    policy: &Policy,
) -> Result<Found, PathError> {
    let canonical = std::fs::canonicalize(lexical).map_err(|e| PathError::from_io(&e))?;
    if !policy.follow_symlinks && !canonical.starts_with(root) {
        return Err(PathError::Forbidden);
    }
    let checked = std::fs::symlink_metadata(&canonical).map_err(|e| PathError::from_io(&e))?;
    let kind = checked.file_type();
    if !kind.is_file() && !kind.is_dir() {
        return Err(PathError::Forbidden);
    }
    let fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(&canonical)
        .map_err(|e| PathError::from_io(&e))?;
    let meta = fd.metadata().map_err(|e| PathError::from_io(&e))?;
    if (meta.dev(), meta.ino()) != (checked.dev(), checked.ino()) {
        // Replaced between the check and the open.
        return Err(PathError::Forbidden);
    }
    Ok(Found {
        fd,
        meta,
        canonical: Some(canonical),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_tree::{DEFAULT, FOLLOW, Tree};
    use std::time::Duration;

    /// The portable fallback, exercised directly (it is what non-Linux
    /// targets and pre-5.6 kernels use).
    #[test]
    fn canonical_fallback_checks_the_root() {
        let t = Tree::new();
        let root = &t.canonical;
        let f = |rel: &str, policy| find_canonical_checked(&root.join(rel), root, &policy);
        assert!(f("hello.txt", DEFAULT).is_ok());
        assert!(f("link_inside", DEFAULT).is_ok());
        assert_eq!(
            f("link_outside", DEFAULT).unwrap_err(),
            PathError::Forbidden
        );
        assert_eq!(
            f("linkdir_outside/secret.txt", DEFAULT).unwrap_err(),
            PathError::Forbidden
        );
        assert_eq!(f("missing", DEFAULT).unwrap_err(), PathError::NotFound);
        assert!(f("link_outside", FOLLOW).is_ok());
        // A FIFO is refused on its type, before any open.
        let (tx, rx) = std::sync::mpsc::channel();
        let fifo = root.join("fifo");
        let root2 = root.clone();
        std::thread::spawn(move || {
            let _ = tx.send(find_canonical_checked(&fifo, &root2, &DEFAULT).map(|_| ()));
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("FIFO open hung"),
            Err(PathError::Forbidden)
        );
    }
}
