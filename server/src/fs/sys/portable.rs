//! Other Unixes: no descriptor to start from, only the canonicalise-and-
//! check fallback, which is correct but racy against concurrent symlink
//! swaps.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::Found;
use crate::fs::Policy;
use crate::fs::canonical::find_canonical_checked;
use crate::http::request_path::PathError;

/// Nothing: lookups start from the root's canonical path.
#[derive(Debug, Clone)]
pub struct Base;

impl Base {
    /// Nothing to open; the root's checks happen in `Root::open`.
    pub fn open(_dir: &Path) -> Result<Base, Errno> {
        Ok(Base)
    }
}

/// Finds `lexical`, the absolute path of `_rel` under `root` (the
/// canonical root), if it resolves inside `root`.
pub fn open_beneath(
    _base: &Base,
    _rel: &str,
    lexical: &Path,
    root: &Path,
    policy: &Policy,
) -> Result<Found, PathError> {
    find_canonical_checked(lexical, root, policy)
}

/// The fallback opened the file already, after checking its type.
pub fn open_for_reading(found: Found) -> Result<File, PathError> {
    Ok(found.fd)
}

/// The canonical path the fallback found.
pub fn resolved_path(found: &Found) -> Option<PathBuf> {
    found.canonical.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_tree::{DEFAULT, FOLLOW, Tree};

    #[test]
    fn portable_open_beneath_stays_inside() {
        let t = Tree::new();
        let root = &t.canonical;
        let base = Base::open(root).unwrap();
        let open = |rel: &str, policy| open_beneath(&base, rel, &root.join(rel), root, &policy);
        assert!(open("hello.txt", DEFAULT).is_ok());
        assert!(open("sub/up_inside", DEFAULT).is_ok());
        assert_eq!(
            open("link_outside", DEFAULT).unwrap_err(),
            PathError::Forbidden
        );
        assert_eq!(open("missing", DEFAULT).unwrap_err(), PathError::NotFound);
        assert!(open("link_outside", FOLLOW).is_ok());
        assert_eq!(open("fifo", DEFAULT).unwrap_err(), PathError::Forbidden);
        let found = open("hello.txt", DEFAULT).unwrap();
        assert_eq!(resolved_path(&found), Some(root.join("hello.txt")));
        assert!(open_for_reading(found).is_ok());
    }
}
