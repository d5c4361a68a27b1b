//! An open-file cache, like nginx's `open_file_cache` or lighttpd's stat
//! cache: a request for a path served a moment ago reuses that file's open
//! descriptor and what was worked out from it (length, validators, content
//! type) instead of opening, stat-ing and closing it again. For small files
//! those three system calls are a third of the work of a request.
//!
//! What it may serve, and for how long:
//!
//! - Every entry was opened by [`Root::open_path`](super::path::Root::open_path)
//!   with the server's [`Policy`](super::path::Policy), so it is a file that
//!   path was allowed to reach (beneath the root, not hidden) at that
//!   moment. The cache never resolves a path itself.
//! - Before use the descriptor is `fstat`ed and compared with what was
//!   cached: device, inode, size, mtime and ctime (to the nanosecond) and a
//!   link count above zero. Writing, truncating, `chmod`, deleting the file,
//!   renaming it away or renaming another file over it all change one of
//!   them, and the request then opens the path afresh. A check that passed
//!   is trusted for `recheck` (10 ms by default; zero checks at every use),
//!   so a hot file costs one `fstat` per interval rather than one per
//!   request: a change to the file itself shows in every response that
//!   starts `recheck` after it.
//! - What the check cannot see is a change to the *path* that leaves the
//!   cached file untouched: a parent directory renamed or replaced, or a
//!   symlink on the way re-pointed. Those are served from the old file for
//!   at most the validity window (`valid`, 1 s by default), after which the
//!   entry is opened afresh whatever the check says.
//! - With `recheck` at least `valid`, the descriptor is never checked, as
//!   in lighttpd's default stat cache: every change shows within `valid`,
//!   and until then a file rewritten in place is sent with its old length
//!   and validators (one that shrank fails its transfer, which drops its
//!   entry).
//! - Both intervals are timed on the server's [`Clock`] (the kernel's
//!   coarse clock, so to within a tick of 1–10 ms; tests inject their own).
//! - At most `capacity` descriptors are held. A full cache admits a new
//!   file only once an entry has expired, instead of evicting a live one:
//!   under a scan of more files than fit, eviction would close one cold
//!   descriptor per request for hardly any hits (measured over 20,000 files
//!   requested at random: 4–8 % more server CPU per request than with the
//!   cache off; admitting on expiry costs nothing measurable). A sweep
//!   closes expired entries so that a deleted file's space is not kept
//!   allocated by the cache for longer than the window. On `EMFILE` or
//!   `ENFILE` the server empties the cache.
//!
//! Only regular files are cached (directories' `index.html` under the
//! directory's path); misses, errors, redirects and listings go the
//! uncached way every time.
//!
//! An entry also remembers the file's precompressed sidecars
//! ([`crate::precompressed`]) once they were looked for: the ones found,
//! open, and by their absence the ones that were not. Found sidecars are
//! checked with the file, by the same rule; an absent one is looked for
//! again when the entry's window ends, like a change to the path.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, Metadata};
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::clock::Clock;

use super::accept_encoding::Coding;
use super::conditional::Validators;

/// A file as served: the open descriptor and what the response needs.
#[derive(Debug)]
pub struct OpenFile {
    /// The open file, shared with responses in flight.
    pub file: Arc<File>,
    /// Its length when opened.
    pub len: u64,
    /// Its `ETag` and `Last-Modified`.
    pub validators: Validators,
    /// `last_modified` formatted as an HTTP-date.
    pub last_modified: String,
    /// The `Content-Type` value.
    pub content_type: String,
    /// The fields of a whole-file 200 after the status line, `Server` and
    /// `Date`, formatted once: `Content-Type`, `Content-Length`,
    /// `Accept-Ranges`, `ETag`, `Last-Modified` (and `Content-Encoding`,
    /// `Vary` as below), each ending in CRLF.
    pub ok_fields: Vec<u8>,
    /// The content coding of these bytes: `Some` for a sidecar served
    /// under its original's name.
    pub coding: Option<Coding>,
    /// Responses carry `Vary: Accept-Encoding`: the path has sidecars.
    pub vary: bool,
    /// The sidecars found beside the file, in the configured order; `None`
    /// if they were not looked for.
    pub sidecars: Option<Box<[Arc<OpenFile>]>>,
    /// Which `Cache-Control` rule (by index) matches the path this file
    /// is served under, worked out at its first response, so that a
    /// cached file costs no glob match per request.
    pub cache_rule: OnceLock<Option<usize>>,
    identity: Identity,
    /// When `identity` was last confirmed, in coarse-clock nanoseconds.
    checked: AtomicU64,
}

impl OpenFile {
    /// Describes `file` (with `meta` from `fstat`), served as
    /// `content_type`.
    pub fn new(file: File, meta: &Metadata, content_type: String) -> OpenFile {
        OpenFile::build(file, meta, content_type, None, false, None)
    }

    /// [`OpenFile::new`] with the `sidecars` looked for beside it (`None`
    /// if they were not): responses vary by `Accept-Encoding` if any exist.
    pub fn with_sidecars(
        file: File,
        meta: &Metadata,
        content_type: String,
        sidecars: Option<Vec<Arc<OpenFile>>>,
    ) -> OpenFile {
        let vary = sidecars.as_ref().is_some_and(|s| !s.is_empty());
        let sidecars = sidecars.map(Vec::into_boxed_slice);
        OpenFile::build(file, meta, content_type, None, vary, sidecars)
    }

    /// A sidecar holding its original's bytes in `coding`, served as
    /// `content_type` (the original's). Its entity-tag is its own, made
    /// from its own length and mtime, with the coding appended: RFC 9110
    /// §8.8.3 wants a strong tag to differ between the representations
    /// of one resource, and the coding keeps it apart even from the tag
    /// of a plain file of the same length and mtime.
    pub fn sidecar(file: File, meta: &Metadata, content_type: String, coding: Coding) -> OpenFile {
        OpenFile::build(file, meta, content_type, Some(coding), true, None)
    }

    fn build(
        file: File,
        meta: &Metadata,
        content_type: String,
        coding: Option<Coding>,
        vary: bool,
        sidecars: Option<Box<[Arc<OpenFile>]>>,
    ) -> OpenFile {
        let mut validators = Validators::from_metadata(meta);
        if let Some(c) = coding
            && let Some(bare) = validators.etag.strip_suffix('"')
        {
            validators.etag = format!("{bare}-{c}\"");
        }
        let last_modified = validators.last_modified_http();
        let encoding = coding
            .map(|c| format!("Content-Encoding: {c}\r\n"))
            .unwrap_or_default();
        let vary_field = if vary { VARY } else { "" };
        let ok_fields = format!(
            "Content-Type: {content_type}\r\n{encoding}Content-Length: {}\r\n\
             Accept-Ranges: bytes\r\nETag: {}\r\nLast-Modified: {last_modified}\r\n{vary_field}",
            meta.len(),
            validators.etag,
        )
        .into_bytes();
        OpenFile {
            file: Arc::new(file),
            len: meta.len(),
            last_modified,
            validators,
            content_type,
            ok_fields,
            coding,
            vary,
            sidecars,
            cache_rule: OnceLock::new(),
            identity: Identity::from_metadata(meta),
            checked: AtomicU64::new(0),
        }
    }

    /// The sidecars found, none if none were looked for.
    pub fn found_sidecars(&self) -> &[Arc<OpenFile>] {
        self.sidecars.as_deref().unwrap_or_default()
    }

    /// Whether the file and every sidecar found is still what was opened:
    /// one `fstat` each.
    fn unchanged(&self) -> bool {
        Identity::of(&self.file) == Some(self.identity)
            && self
                .found_sidecars()
                .iter()
                .all(|s| Identity::of(&s.file) == Some(s.identity))
    }
}

/// The `Vary` field of every response of a path with sidecars.
pub const VARY: &str = "Vary: Accept-Encoding\r\n";

/// What must be unchanged for a cached descriptor to still be the file at
/// its path, as far as the descriptor can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn from_metadata(m: &Metadata) -> Identity {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: i64::try_from(m.size()).unwrap_or(i64::MAX),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The identity of the open file now, or `None` if it has no links
    /// left (deleted, or replaced by a rename) or cannot be stat-ed.
    #[allow(clippy::unnecessary_cast)] // stat field types vary by platform
    fn of(file: &File) -> Option<Identity> {
        let st = nix::sys::stat::fstat(file.as_fd()).ok()?;
        if st.st_nlink == 0 {
            return None;
        }
        Some(Identity {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        })
    }
}

/// The cache; [`FileCache::off`] is one that never holds anything.
#[derive(Debug)]
pub struct FileCache {
    valid: Duration,
    recheck: Duration,
    capacity: usize,
    clock: Clock,
    state: Mutex<State>,
}

/// FNV-1a, for the map's keys. They are paths of files that exist (only
/// successful opens are inserted) and there are at most `capacity` of them,
/// so a client cannot fill the map with colliding keys, and SipHash's
/// protection would cost more than the rest of a lookup.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default)]
struct State {
    map: HashMap<Box<str>, Entry, BuildHasherDefault<Fnv>>,
    /// Keys in the order their entries were opened, which is also the
    /// order they expire in, with their `seq` and opening time; a key whose
    /// entry was replaced since is skipped by its stale `seq`.
    order: VecDeque<(u64, Duration, Box<str>)>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    file: Arc<OpenFile>,
    /// When the path was opened (taken before the open), on the cache's
    /// clock.
    opened: Duration,
    seq: u64,
}

impl FileCache {
    /// A cache of at most `capacity` files, each used for at most `valid`
    /// after it was opened and checked against its descriptor when its last
    /// check is `recheck` old, timed on the coarse clock.
    pub fn new(capacity: usize, valid: Duration, recheck: Duration) -> FileCache {
        FileCache::with_clock(capacity, valid, recheck, Clock::coarse())
    }

    /// [`FileCache::new`] timed on `clock`.
    pub fn with_clock(
        capacity: usize,
        valid: Duration,
        recheck: Duration,
        clock: Clock,
    ) -> FileCache {
        FileCache {
            valid,
            recheck,
            capacity,
            clock,
            state: Mutex::default(),
        }
    }

    /// A cache that is always empty.
    pub fn off() -> FileCache {
        FileCache::new(0, Duration::ZERO, Duration::ZERO)
    }

    /// Whether anything is ever cached.
    pub fn enabled(&self) -> bool {
        self.capacity > 0 && !self.valid.is_zero()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent map (every
        // mutation is a single insert or remove), so carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file cached for `key` if it is still within its window and its
    /// descriptor still describes the same, linked, unchanged file (as
    /// checked within the last `recheck`).
    pub fn get(&self, key: &str) -> Option<Arc<OpenFile>> {
        if !self.enabled() {
            return None;
        }
        let now = self.clock.now();
        let file = {
            let state = self.lock();
            let entry = state.map.get(key)?;
            if now.saturating_sub(entry.opened) >= self.valid {
                return None;
            }
            entry.file.clone()
        };
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let checked = Duration::from_nanos(file.checked.load(Ordering::Relaxed));
        if now.saturating_sub(checked) < self.recheck {
            return Some(file);
        }
        // Outside the lock: the check is a system call.
        if file.unchanged() {
            file.checked.store(nanos(now), Ordering::Relaxed);
            Some(file)
        } else {
            self.remove(key, &file);
            None
        }
    }

    /// A time to give [`FileCache::insert`], taken before opening the path
    /// so that the window never starts late.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Caches `file` for `key`, opened at `opened` (from [`FileCache::now`]).
    pub fn insert(&self, key: &str, file: Arc<OpenFile>, opened: Duration) {
        if !self.enabled() {
            return;
        }
        let mut state = self.lock();
        let state = &mut *state;
        state.expire(self.clock.now(), self.valid);
        if state.map.len() >= self.capacity && !state.map.contains_key(key) {
            // Full of entries still within their window: this file waits
            // for one of them to expire.
            return;
        }
        // Opening the path was a check.
        let at = u64::try_from(opened.as_nanos()).unwrap_or(u64::MAX);
        file.checked.store(at, Ordering::Relaxed);
        let seq = state.next_seq;
        state.next_seq += 1;
        state.map.insert(key.into(), Entry { file, opened, seq });
        state.order.push_back((seq, opened, key.into()));
        // Replaced entries leave stale keys behind in `order`; keep it
        // within a constant factor of the map.
        if state.order.len() > 2 * self.capacity + 16 {
            let map = &state.map;
            state
                .order
                .retain(|(seq, _, key)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Drops the entry for `key` if it still holds `file`.
    fn remove(&self, key: &str, file: &Arc<OpenFile>) {
        let mut state = self.lock();
        if state
            .map
            .get(key)
            .is_some_and(|e| Arc::ptr_eq(&e.file, file))
        {
            state.map.remove(key);
        }
    }

    /// Drops the entry holding `file`, which turned out shorter than cached.
    /// Rare, so a scan is fine.
    pub fn forget(&self, file: &Arc<File>) {
        if !self.enabled() {
            return;
        }
        let holds = |f: &OpenFile| Arc::ptr_eq(&f.file, file);
        self.lock()
            .map
            .retain(|_, e| !holds(&e.file) && !e.file.found_sidecars().iter().any(|s| holds(s)));
    }

    /// Closes (drops) every entry past its window.
    pub fn sweep(&self) {
        if self.enabled() {
            self.lock().expire(self.clock.now(), self.valid);
        }
    }

    /// Drops every entry (the process is short of descriptors).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.map.clear();
        state.order.clear();
    }

    /// Files held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no file is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The validity window.
    pub fn valid(&self) -> Duration {
        self.valid
    }
}

impl State {
    /// Drops the entries past their window (and stale keys) off the front
    /// of `order`.
    fn expire(&mut self, now: Duration, valid: Duration) {
        while let Some((seq, opened, key)) = self.order.front() {
            if now.saturating_sub(*opened) < valid {
                return;
            }
            if self.map.get(key).is_some_and(|e| e.seq == *seq) {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;

    /// A fresh directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "zcserve-file-cache-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            Dir(p)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Opens `name` the way the server would, as a cache entry.
        fn open(&self, name: &str) -> Arc<OpenFile> {
            let file = File::open(self.path(name)).unwrap();
            let meta = file.metadata().unwrap();
            Arc::new(OpenFile::new(file, &meta, "text/plain".into()))
        }

        /// Returns once the filesystem's clock has moved past `name`'s
        /// mtime and ctime, so that the next change to it gets new ones
        /// even where timestamps are as coarse as a kernel tick: a probe
        /// file is created until its ctime is later. (The loop's bound only
        /// catches a clock that never moves.)
        fn past_timestamps_of(&self, name: &str) {
            let m = fs::metadata(self.path(name)).unwrap();
            let stamp = (m.mtime(), m.mtime_nsec()).max((m.ctime(), m.ctime_nsec()));
            let probe = self.path(".probe");
            for _ in 0..10_000 {
                let _ = fs::remove_file(&probe);
                fs::write(&probe, b"").unwrap();
                let p = fs::metadata(&probe).unwrap();
                if (p.ctime(), p.ctime_nsec()) > stamp {
                    fs::remove_file(&probe).unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("the filesystem's clock did not move in 10 s");
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A clock that moves only when told to.
    #[derive(Clone)]
    struct Hand(Arc<AtomicU64>);

    impl Hand {
        fn new() -> Hand {
            // Far from zero, so that no window is clipped at the origin.
            Hand(Arc::new(AtomicU64::new(1_000_000_000_000)))
        }

        fn clock(&self) -> Clock {
            let t = self.0.clone();
            Clock::from_fn(move || Duration::from_nanos(t.load(Ordering::Relaxed)))
        }

        fn advance(&self, d: Duration) {
            self.0
                .fetch_add(u64::try_from(d.as_nanos()).unwrap(), Ordering::Relaxed);
        }
    }

    const LONG: Duration = Duration::from_secs(600);
    const NS: Duration = Duration::from_nanos(1);

    fn cache(hand: &Hand, capacity: usize, valid: Duration, recheck: Duration) -> FileCache {
        FileCache::with_clock(capacity, valid, recheck, hand.clock())
    }

    #[test]
    fn off_holds_nothing() {
        let d = Dir::new();
        fs::write(d.path("a"), b"aaaa").unwrap();
        let c = FileCache::off();
        assert!(!c.enabled());
        c.insert("a", d.open("a"), c.now());
        assert!(c.get("a").is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn an_entry_is_used_within_its_window_and_never_after() {
        let d = Dir::new();
        fs::write(d.path("a"), b"aaaa").unwrap();
        for recheck in [Duration::ZERO, LONG] {
            let hand = Hand::new();
            let valid = Duration::from_secs(1);
            let c = cache(&hand, 8, valid, recheck);
            let opened = c.now();
            let f = d.open("a");
            c.insert("a", f.clone(), opened);
            let got = c.get("a").expect("fresh entry");
            assert!(Arc::ptr_eq(&got, &f));
            assert_eq!(got.len, 4);
            assert!(c.get("b").is_none());
            hand.advance(valid - NS);
            assert!(
                c.get("a").is_some_and(|g| Arc::ptr_eq(&g, &f)),
                "recheck {recheck:?}: dropped within its window"
            );
            hand.advance(NS);
            assert!(
                c.get("a").is_none(),
                "recheck {recheck:?}: used at the end of its window"
            );
        }
    }

    #[test]
    fn the_check_sees_every_change_to_the_file_at_once() {
        type Change = fn(&Dir);
        let changes: [(&str, Change); 8] = [
            ("rewritten, same size", |d| {
                fs::write(d.path("a"), b"AAAA").unwrap()
            }),
            ("truncated", |d| fs::write(d.path("a"), b"aa").unwrap()),
            ("appended to", |d| {
                use std::io::Write;
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(d.path("a"))
                    .unwrap();
                f.write_all(b"more").unwrap();
            }),
            ("deleted", |d| fs::remove_file(d.path("a")).unwrap()),
            ("replaced by a rename", |d| {
                fs::write(d.path("new"), b"bbbb").unwrap();
                fs::rename(d.path("new"), d.path("a")).unwrap();
            }),
            ("renamed away", |d| {
                fs::rename(d.path("a"), d.path("old")).unwrap();
            }),
            ("chmod-ed", |d| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(d.path("a"), fs::Permissions::from_mode(0o600)).unwrap();
            }),
            ("hard-linked", |d| {
                fs::hard_link(d.path("a"), d.path("link")).unwrap();
            }),
        ];
        for (what, change) in changes {
            let d = Dir::new();
            fs::write(d.path("a"), b"aaaa").unwrap();
            // The clock stands still: only the check can see a change.
            let c = cache(&Hand::new(), 8, LONG, Duration::ZERO);
            c.insert("a", d.open("a"), c.now());
            assert!(c.get("a").is_some(), "{what}: unchanged file missed");
            d.past_timestamps_of("a");
            assert!(c.get("a").is_some(), "{what}: unchanged file missed");
            change(&d);
            assert!(c.get("a").is_none(), "{what}: change not seen");
            assert!(c.is_empty(), "{what}: changed entry kept");
        }
    }

    #[test]
    fn a_passed_check_is_trusted_for_the_recheck_interval_only() {
        let d = Dir::new();
        fs::write(d.path("a"), b"aaaa").unwrap();
        let hand = Hand::new();
        let recheck = Duration::from_millis(300);
        let c = cache(&hand, 8, LONG, recheck);
        c.insert("a", d.open("a"), c.now());
        d.past_timestamps_of("a");
        fs::write(d.path("a"), b"AAAA").unwrap();
        // Checked when opened: not checked again until `recheck` later.
        assert!(c.get("a").is_some());
        hand.advance(recheck - NS);
        assert!(c.get("a").is_some(), "checked again before the interval");
        hand.advance(NS);
        assert!(c.get("a").is_none(), "change not seen after the interval");
        // A fresh entry that passes its check is trusted again, for
        // `recheck` from that check.
        c.insert("a", d.open("a"), c.now());
        hand.advance(recheck);
        assert!(c.get("a").is_some(), "unchanged file failed its check");
        fs::remove_file(d.path("a")).unwrap();
        assert!(c.get("a").is_some(), "checked just now, trusted");
        hand.advance(recheck - NS);
        assert!(c.get("a").is_some(), "checked again before the interval");
        hand.advance(NS);
        assert!(c.get("a").is_none(), "deletion not seen after the interval");
    }

    #[test]
    fn unchecked_entries_are_trusted_for_the_window_only() {
        let d = Dir::new();
        fs::write(d.path("a"), b"aaaa").unwrap();
        let hand = Hand::new();
        let valid = Duration::from_millis(300);
        let c = cache(&hand, 8, valid, valid);
        c.insert("a", d.open("a"), c.now());
        fs::remove_file(d.path("a")).unwrap();
        // Within the window the deleted file may still be served...
        assert!(c.get("a").is_some());
        hand.advance(valid - NS);
        assert!(c.get("a").is_some(), "checked within the window");
        // ...but not once the window has passed.
        hand.advance(NS);
        assert!(c.get("a").is_none());
    }

    #[test]
    fn at_most_capacity_files_are_held_and_newcomers_wait_for_a_place() {
        let d = Dir::new();
        let hand = Hand::new();
        let valid = Duration::from_millis(200);
        let c = cache(&hand, 3, valid, Duration::ZERO);
        for i in 0..5 {
            let name = format!("f{i}");
            fs::write(d.path(&name), b"x").unwrap();
            c.insert(&name, d.open(&name), c.now());
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        for name in ["f0", "f1", "f2"] {
            assert!(c.get(name).is_some(), "{name} not kept");
        }
        assert!(c.get("f3").is_none() && c.get("f4").is_none());
        // Replacing a held key is not a newcomer.
        c.insert("f1", d.open("f1"), c.now());
        assert!(c.get("f1").is_some());
        // Until the first window has passed, newcomers still wait...
        hand.advance(valid - NS);
        c.insert("f3", d.open("f3"), c.now());
        assert!(c.get("f3").is_none());
        // ...and then get the places of the expired.
        hand.advance(NS);
        c.insert("f3", d.open("f3"), c.now());
        assert!(c.get("f3").is_some());
        assert!(c.get("f0").is_none());
    }

    #[test]
    fn replacing_one_key_again_and_again_stays_bounded() {
        let d = Dir::new();
        fs::write(d.path("a"), b"x").unwrap();
        let c = cache(&Hand::new(), 4, LONG, Duration::ZERO);
        for _ in 0..1000 {
            c.insert("a", d.open("a"), c.now());
        }
        assert_eq!(c.len(), 1);
        assert!(c.lock().order.len() <= 2 * 4 + 16);
        assert!(c.get("a").is_some());
    }

    #[test]
    fn sweep_closes_expired_entries() {
        let d = Dir::new();
        fs::write(d.path("a"), b"x").unwrap();
        fs::write(d.path("b"), b"x").unwrap();
        let hand = Hand::new();
        let valid = Duration::from_millis(150);
        let c = cache(&hand, 8, valid, Duration::ZERO);
        let a = d.open("a");
        c.insert("a", a.clone(), c.now());
        hand.advance(valid);
        let b = d.open("b");
        c.insert("b", b.clone(), c.now());
        // Inserting already dropped the expired entry.
        assert_eq!(Arc::strong_count(&a), 1, "expired entry still held");
        hand.advance(valid - NS);
        c.sweep();
        assert_eq!(Arc::strong_count(&b), 2, "sweep closed a live entry");
        hand.advance(NS);
        c.sweep();
        assert!(c.is_empty());
        // Only this test holds the file now: dropping it closes the fd.
        assert_eq!(Arc::strong_count(&b), 1);
    }

    #[test]
    fn found_sidecars_are_checked_with_their_file_and_forgotten_with_it() {
        let d = Dir::new();
        fs::write(d.path("a"), b"aaaa").unwrap();
        fs::write(d.path("a.gz"), b"gz").unwrap();
        let entry = || {
            let open = |name: &str| {
                let f = File::open(d.path(name)).unwrap();
                let m = f.metadata().unwrap();
                (f, m)
            };
            let (gz, gz_meta) = open("a.gz");
            let side = OpenFile::sidecar(gz, &gz_meta, "text/plain".into(), Coding::Gzip);
            let (f, m) = open("a");
            Arc::new(OpenFile::with_sidecars(
                f,
                &m,
                "text/plain".into(),
                Some(vec![Arc::new(side)]),
            ))
        };
        let c = cache(&Hand::new(), 8, LONG, Duration::ZERO);
        let a = entry();
        assert!(a.vary && a.coding.is_none());
        let side = &a.found_sidecars()[0];
        assert!(side.vary && side.coding == Some(Coding::Gzip));
        assert!(
            side.validators.etag.ends_with("-gzip\""),
            "{}",
            side.validators.etag
        );
        c.insert("a", a.clone(), c.now());
        assert!(c.get("a").is_some());
        d.past_timestamps_of("a.gz");
        fs::write(d.path("a.gz"), b"GZ").unwrap();
        assert!(c.get("a").is_none(), "a changed sidecar not seen");
        // A sidecar whose transfer found it shorter drops its entry.
        let a = entry();
        c.insert("a", a.clone(), c.now());
        c.forget(&a.found_sidecars()[0].file);
        assert!(c.is_empty());
    }

    #[test]
    fn forget_and_clear_drop_entries() {
        let d = Dir::new();
        fs::write(d.path("a"), b"x").unwrap();
        fs::write(d.path("b"), b"x").unwrap();
        let c = cache(&Hand::new(), 8, LONG, LONG);
        let a = d.open("a");
        c.insert("a", a.clone(), c.now());
        c.insert("b", d.open("b"), c.now());
        c.forget(&a.file);
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_some());
        c.clear();
        assert!(c.is_empty());
    }
}
