//! The portable way to open beneath the root: canonicalise, check, open.
//! It is all non-Linux targets have, and what Linux falls back to on
//! kernels without `openat2` (before 5.6).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Policy;
use crate::http::request_path::PathError;

/// The portable fallback: canonicalise, check the result is inside `root`
/// (unless symlinks may be followed anywhere), open.
///
/// A symlink swapped in between the check and the open can still lead out
/// of the root; `O_NOFOLLOW` only guards the last component. This is why
/// Linux uses `openat2` when it can.
pub(super) fn open_canonical_checked(
    lexical: &Path,
    root: &Path,
    policy: &Policy,
) -> Result<File, PathError> {
    let canonical = std::fs::canonicalize(lexical).map_err(|e| PathError::from_io(&e))?;
    if !policy.follow_symlinks && !canonical.starts_with(root) {
        return Err(PathError::Forbidden);
    }
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !policy.follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&canonical)
        .map_err(|e| PathError::from_io(&e))
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
        let f = |rel: &str, policy| open_canonical_checked(&root.join(rel), root, &policy);
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
        let (tx, rx) = std::sync::mpsc::channel();
        let fifo = root.join("fifo");
        let root2 = root.clone();
        std::thread::spawn(move || {
            let _ = tx.send(open_canonical_checked(&fifo, &root2, &DEFAULT).is_ok());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("FIFO open hung")
        );
    }
}
