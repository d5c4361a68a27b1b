//! The tree the filesystem tests run against.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::stat::Mode;

use super::{Opened, Policy, Root};
use crate::http::request_path::{PathError, RequestPath};

pub const OUTSIDE: &str = "OUTSIDE MARKER";

/// A temporary tree: `base/outside.txt`, `base/outdir/`, and the served
/// `base/root/`. Removed on drop.
pub struct Tree {
    pub base: PathBuf,
    pub root: Root,
    /// The canonical path of `base/root`.
    pub canonical: PathBuf,
}

impl Tree {
    pub fn new() -> Tree {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let base = std::env::temp_dir().join(format!(
            "zcserve-path-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&base).unwrap();
        let r = base.join("root");
        let w = |p: &Path, s: &str| std::fs::write(p, s).unwrap();
        let d = |p: &Path| std::fs::create_dir(p).unwrap();

        w(&base.join("outside.txt"), OUTSIDE);
        d(&base.join("outdir"));
        w(&base.join("outdir/secret.txt"), OUTSIDE);

        d(&r);
        w(&r.join("hello.txt"), "hello");
        d(&r.join("sub"));
        w(&r.join("sub/a.txt"), "a");
        w(&r.join("sub/index.html"), "<p>index</p>");
        symlink("../../outside.txt", r.join("sub/up_outside")).unwrap();
        symlink("../hello.txt", r.join("sub/up_inside")).unwrap();
        d(&r.join("emptydir"));
        d(&r.join("dirindex"));
        d(&r.join("dirindex/index.html"));
        d(&r.join("outindex"));
        symlink("../../outside.txt", r.join("outindex/index.html")).unwrap();
        w(&r.join(".secret"), "dot");
        d(&r.join(".git"));
        w(&r.join(".git/config"), "cfg");
        symlink("hello.txt", r.join("link_inside")).unwrap();
        symlink("sub", r.join("linkdir_inside")).unwrap();
        symlink(r.join("hello.txt"), r.join("link_abs_inside")).unwrap();
        symlink("../outside.txt", r.join("link_outside")).unwrap();
        symlink(base.join("outside.txt"), r.join("link_abs_outside")).unwrap();
        symlink("../outdir", r.join("linkdir_outside")).unwrap();
        symlink("nowhere", r.join("dangling")).unwrap();
        symlink(".secret", r.join("link_to_dotfile")).unwrap();
        symlink(".git", r.join("link_to_dotdir")).unwrap();
        nix::unistd::mkfifo(&r.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        w(&r.join("%2e%2e"), "literal");
        w(&r.join("a b#?%.txt"), "odd");

        let root = Root::open(&r).unwrap();
        let canonical = std::fs::canonicalize(&r).unwrap();
        Tree {
            base,
            root,
            canonical,
        }
    }

    pub fn open(&self, raw: &str, policy: Policy) -> Result<Opened, PathError> {
        let p = RequestPath::parse(raw)?;
        self.root.open_path(&p, &policy)
    }

    pub fn read(&self, raw: &str, policy: Policy) -> Result<String, PathError> {
        match self.open(raw, policy)? {
            Opened::File(mut f, _) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                Ok(s)
            }
            Opened::Dir(_) => panic!("{raw} opened as a directory"),
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

pub const DEFAULT: Policy = Policy {
    show_hidden: false,
    follow_symlinks: false,
};
pub const FOLLOW: Policy = Policy {
    show_hidden: false,
    follow_symlinks: true,
};
pub const HIDDEN: Policy = Policy {
    show_hidden: true,
    follow_symlinks: false,
};
