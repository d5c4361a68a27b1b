//! The path resolver's fuzz harness, shared by the seeded run in
//! `cargo test` (`tests/fuzz_resolver.rs`) and the coverage-guided one
//! (`fuzz/fuzz_targets/resolver.rs`, cargo-fuzz).
//!
//! A [`Fixture`] is a temporary tree: a served root holding files,
//! directories, dotfiles, a FIFO and symlinks that stay inside, lead out
//! (relative, absolute, through directories) or lead to dotfiles, next to
//! files outside it. Before anything is requested, the tree is walked
//! without following symlinks to record the (device, inode) of every file
//! and directory inside the root, and of those at hidden paths.
//! [`Fixture::check`] sends one request path through the parser and
//! [`Root::open_path`] (then `open_index` and `entries` for directories)
//! under the default policy and with hidden files shown, and panics if
//! anything opened is not one of the root's inodes, or is a hidden one
//! while hidden files are not shown.
#![allow(dead_code)]

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use zcserve::fs::{Opened, Policy, Root};
use zcserve::http::request_path::RequestPath;

/// Names the generator builds paths from: every name in the tree, and the
/// ones outside it.
pub const NAMES: &[&str] = &[
    "a.txt",
    "sub",
    "b.txt",
    "index.html",
    "index.htm",
    "deep",
    "c.txt",
    "empty",
    ".env",
    ".git",
    "config",
    "fifo",
    "in_link",
    "in_dirlink",
    "up_in",
    "out_rel",
    "out_abs",
    "out_dir",
    "out_up",
    "to_dotfile",
    "to_dotdir",
    "dangling",
    "loop",
    "outside.txt",
    "outdir",
    "secret.txt",
    "root",
    "é.txt",
    "%41.txt",
];

/// Paths that exist in the tree (or lead out of it), for walks that
/// reach real files before they are mutated.
pub const WALKS: &[&str] = &[
    "a.txt",
    "sub/b.txt",
    "sub/deep/c.txt",
    "sub/",
    "sub/deep/",
    "in_link",
    "in_dirlink/b.txt",
    "in_dirlink/deep/c.txt",
    "sub/up_in",
    "out_rel",
    "out_abs",
    "out_dir/secret.txt",
    "sub/deep/out_up",
    "sub/index.htm",
    "empty/outdir/secret.txt",
    "to_dotfile",
    "to_dotdir/config",
    ".git/config",
    ".env",
    "%C3%A9.txt",
    "%2541.txt",
];

/// Pieces that parsers and resolvers trip on.
pub const TRICKY: &[&str] = &[
    "..",
    ".",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%00",
    "\0",
    "%252e",
    "%252e%252e",
    "%252f",
    "%c0%ae",
    "%c0%af",
    "%e0%80%ae",
    "%ff",
    "%",
    "%4",
    "%zz",
    "/",
    "//",
    "///",
    "é",
    "%c3%a9",
    "%C3%A9",
    "\u{202e}",
    "\u{feff}",
    "%e2%80%ae",
    "?",
    "#",
    ";",
    "%3f",
    "%23",
    " ",
    "%20",
    "~",
    "*",
    ":",
    "%0d%0a",
];

/// The temporary tree, removed on drop.
pub struct Fixture {
    base: PathBuf,
    /// The served root.
    pub root: Root,
    /// (dev, ino) of every file and directory inside the root.
    inside: HashSet<(u64, u64)>,
    /// The subset of `inside` at a path with a dot component.
    hidden: HashSet<(u64, u64)>,
}

/// What [`Fixture::check`] saw, for the caller's tallies.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    /// Regular files opened (index files included).
    pub files: u64,
    /// Directories opened.
    pub dirs: u64,
    /// Paths the parser refused.
    pub refused: u64,
}

impl Fixture {
    /// Builds the tree under the system's temporary directory.
    pub fn new() -> Fixture {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "zcserve-fuzz-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let r = base.join("root");
        let w = |p: &str, s: &str| std::fs::write(base.join(p), s).unwrap();
        let d = |p: &str| std::fs::create_dir(base.join(p)).unwrap();
        let l = |to: &str, at: &str| symlink(to, base.join(at)).unwrap();
        w("outside.txt", "OUTSIDE");
        d("outdir");
        w("outdir/secret.txt", "OUTSIDE");
        d("root");
        w("root/a.txt", "a");
        w("root/é.txt", "e");
        w("root/%41.txt", "literal");
        d("root/sub");
        w("root/sub/b.txt", "b");
        w("root/sub/index.html", "<p>i</p>");
        d("root/sub/deep");
        w("root/sub/deep/c.txt", "c");
        d("root/empty");
        w("root/.env", "hidden");
        d("root/.git");
        w("root/.git/config", "hidden");
        nix::unistd::mkfifo(
            &r.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        l("a.txt", "root/in_link");
        l("sub", "root/in_dirlink");
        l("../a.txt", "root/sub/up_in");
        l("../outside.txt", "root/out_rel");
        l(base.join("outside.txt").to_str().unwrap(), "root/out_abs");
        l("../outdir", "root/out_dir");
        l("../../../outside.txt", "root/sub/deep/out_up");
        l(".env", "root/to_dotfile");
        l(".git", "root/to_dotdir");
        l("nowhere", "root/dangling");
        l("loop", "root/loop");
        l("../../outside.txt", "root/sub/index.htm");
        l("../outdir", "root/empty/outdir");

        let canonical = std::fs::canonicalize(&r).unwrap();
        let mut inside = HashSet::new();
        let mut hidden = HashSet::new();
        walk(&canonical, false, &mut inside, &mut hidden);
        Fixture {
            root: Root::open(&r).unwrap(),
            base,
            inside,
            hidden,
        }
    }

    /// Whether `meta` is one of the root's own files or directories.
    pub fn is_inside(&self, meta: &std::fs::Metadata) -> bool {
        self.inside.contains(&(meta.dev(), meta.ino()))
    }

    /// Sends `raw` through the parser and the resolver and checks what was
    /// opened. Panics, naming `raw`, on anything opened outside the root
    /// or at a hidden path when hidden files are not shown.
    pub fn check(&self, raw: &str) -> Seen {
        let mut seen = Seen::default();
        let Ok(path) = RequestPath::parse(raw) else {
            seen.refused += 1;
            return seen;
        };
        for policy in [
            Policy::default(),
            Policy {
                show_hidden: true,
                follow_symlinks: false,
            },
        ] {
            let allowed = |meta: &std::fs::Metadata, what: &str| {
                let id = (meta.dev(), meta.ino());
                assert!(
                    self.inside.contains(&id),
                    "{raw:?} ({policy:?}) opened {what} outside the root: {id:?}"
                );
                assert!(
                    policy.show_hidden || !self.hidden.contains(&id),
                    "{raw:?} ({policy:?}) opened hidden {what} {id:?}"
                );
            };
            match self.root.open_path(&path, &policy) {
                Ok(Opened::File(f, _)) => {
                    // fstat of the descriptor itself, not the metadata
                    // returned alongside it.
                    allowed(&f.metadata().unwrap(), "a file");
                    seen.files += 1;
                }
                Ok(Opened::Dir(dir)) => {
                    allowed(dir.metadata(), "a directory");
                    seen.dirs += 1;
                    if let Ok(Some((f, _))) = dir.open_index(&policy) {
                        allowed(&f.metadata().unwrap(), "an index");
                        seen.files += 1;
                    }
                    if let Ok(listing) = dir.entries(&policy, 64) {
                        for e in listing.entries {
                            assert!(
                                policy.show_hidden || !e.name.starts_with('.'),
                                "{raw:?} listed {}",
                                e.name
                            );
                            assert!(
                                ![
                                    "out_rel",
                                    "out_abs",
                                    "out_dir",
                                    "out_up",
                                    "outdir",
                                    "index.htm"
                                ]
                                .contains(&e.name.as_str()),
                                "{raw:?} listed {} (leads out)",
                                e.name
                            );
                            assert!(
                                policy.show_hidden
                                    || !["to_dotfile", "to_dotdir"].contains(&e.name.as_str()),
                                "{raw:?} listed {} (leads to a dotfile)",
                                e.name
                            );
                        }
                    }
                }
                Err(_) => {}
            }
        }
        seen
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Records every file and directory under `dir` (itself included),
/// without following symlinks.
fn walk(
    dir: &Path,
    hidden_here: bool,
    inside: &mut HashSet<(u64, u64)>,
    hidden: &mut HashSet<(u64, u64)>,
) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    inside.insert((meta.dev(), meta.ino()));
    if hidden_here {
        hidden.insert((meta.dev(), meta.ino()));
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let dot = hidden_here || entry.file_name().as_encoded_bytes().starts_with(b".");
        if meta.is_dir() {
            walk(&entry.path(), dot, inside, hidden);
        } else if meta.is_file() {
            inside.insert((meta.dev(), meta.ino()));
            if dot {
                hidden.insert((meta.dev(), meta.ino()));
            }
        }
    }
}

/// SplitMix64: a tiny, seeded, good-enough generator (no dependency).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// One generated request path: mostly walks through the tree's names
/// with tricky pieces mixed in, sometimes percent-encoded bytes or
/// arbitrary characters.
pub fn generate(rng: &mut Rng) -> String {
    let mut s = String::from(if rng.below(8) == 0 { "" } else { "/" });
    match rng.below(12) {
        // A real path, with a tricky piece or a separator put in at one
        // of its slashes now and then.
        0..=3 => {
            let walk = rng.pick(WALKS);
            for (i, part) in walk.split('/').enumerate() {
                if i > 0 {
                    s.push('/');
                    match rng.below(6) {
                        0 => {
                            s.push_str(rng.pick(TRICKY));
                            s.push('/');
                        }
                        1 => s.push('/'),
                        2 => s.push_str("./"),
                        _ => {}
                    }
                }
                push_maybe_encoded(rng, &mut s, part);
            }
        }
        // Names and tricky pieces, glued mostly with '/'.
        4..=7 => {
            for _ in 0..1 + rng.below(6) {
                let piece = if rng.below(4) == 0 {
                    rng.pick(TRICKY)
                } else {
                    rng.pick(NAMES)
                };
                push_maybe_encoded(rng, &mut s, piece);
                if rng.below(5) != 0 {
                    s.push('/');
                }
            }
        }
        // Percent-encoded random bytes, with some plain '/' and '.'.
        8..=9 => {
            for _ in 0..rng.below(24) {
                let b = rng.next() as u8;
                if b.is_ascii_alphanumeric() || b == b'/' || b == b'.' {
                    s.push(b as char);
                } else {
                    s.push_str(&format!("%{b:02x}"));
                }
            }
        }
        // Arbitrary characters, including unicode and controls.
        _ => {
            for _ in 0..rng.below(16) {
                let c = char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('\u{fffd}');
                let c = if rng.below(2) == 0 {
                    (b' ' + (rng.below(96) as u8)) as char
                } else {
                    c
                };
                s.push(c);
            }
        }
    }
    s
}

/// Pushes `piece`, sometimes with one of its characters percent-encoded
/// (either case) or encoded twice.
fn push_maybe_encoded(rng: &mut Rng, s: &mut String, piece: &str) {
    if piece.is_empty() || rng.below(4) != 0 {
        s.push_str(piece);
        return;
    }
    let bytes = piece.as_bytes();
    let at = rng.below(bytes.len());
    let (before, rest) = bytes.split_at(at);
    s.push_str(&String::from_utf8_lossy(before));
    let enc = match rng.below(3) {
        0 => format!("%{:02x}", rest[0]),
        1 => format!("%{:02X}", rest[0]),
        _ => format!("%25{:02x}", rest[0]),
    };
    s.push_str(&enc);
    s.push_str(&String::from_utf8_lossy(&rest[1..]));
}

/// A request path from arbitrary fuzzer bytes: lossily as UTF-8, with a
/// leading '/' most of the time so that the resolver is reached.
pub fn from_bytes(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    match data.first() {
        Some(b'!') => text[1..].to_owned(),
        _ => format!("/{text}"),
    }
}
