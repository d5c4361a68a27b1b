//! Issue 12's path and listing rows, each from the outside (a real server
//! on a temporary root, raw requests) or through the public `fs` API:
//! the listing cap and HEAD of a listing (#1), redirects that cannot lead
//! off-site (#3), dotfiles hidden by what is opened rather than by the
//! request text (#5), multipart boundaries nobody can predict (#9), FIFOs
//! never opened (#14) and listing sizes from the resolution that was
//! checked (#17).
mod common;
use common::*;

use std::path::Path;

/// `GET target` on a fresh connection that closes after the answer.
fn get(s: &TestServer, target: &str, extra: &str) -> RawResponse {
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    let bytes = s.raw(req.as_bytes());
    try_parse(&bytes, false)
        .unwrap_or_else(|| panic!("GET {target}: no whole response"))
        .0
}

fn server(root: &Path) -> TestServer {
    TestServer::start("auto", root, |_| {})
}

// ------------------------------------------------------------------ #3

/// The Location of a slash redirect is built from the normalised path:
/// always exactly one leading `/`, never a protocol-relative `//host`.
#[test]
fn redirect_location_never_starts_with_two_slashes() {
    let d = TempDir::new();
    std::fs::create_dir(d.path().join("evil.com")).unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::create_dir(d.path().join("a b")).unwrap();
    let s = server(d.path());
    for (target, want) in [
        ("//evil.com", "/evil.com/"),
        ("///evil.com", "/evil.com/"),
        ("/./evil.com", "/evil.com/"),
        ("/%2Fevil.com", "/evil.com/"),
        ("/%2f%2fevil.com", "/evil.com/"),
        ("//sub?x=1", "/sub/?x=1"),
        ("/sub?a=%2F%2F&b", "/sub/?a=%2F%2F&b"),
        ("/a%20b", "/a%20b/"),
        ("//a%20b//", ""),
    ] {
        let r = get(&s, target, "");
        if want.is_empty() {
            assert_eq!(r.status, 200, "GET {target}");
            continue;
        }
        assert_eq!(r.status, 301, "GET {target}");
        assert_eq!(r.header("location"), Some(want), "GET {target}");
    }
}

// ------------------------------------------------------------------ #9

/// The boundary is fresh for every response and has nothing to do with
/// the ETag, so a file cannot carry a delimiter that forges parts.
#[test]
fn multipart_boundary_is_unpredictable() {
    let d = TempDir::new();
    let s0 = server(d.path());
    std::fs::write(d.path().join("f.txt"), b"0123456789").unwrap();
    let boundary = |r: &RawResponse| {
        let ct = r.header("content-type").unwrap();
        ct.split_once("boundary=").unwrap().1.to_owned()
    };
    let range = "Range: bytes=0-1,5-6\r\n";
    let a = get(&s0, "/f.txt", range);
    let b = get(&s0, "/f.txt", range);
    assert_eq!((a.status, b.status), (206, 206));
    let etag = a.header("etag").unwrap();
    let etag_digits: String = etag.chars().filter(char::is_ascii_alphanumeric).collect();
    let (ba, bb) = (boundary(&a), boundary(&b));
    assert_ne!(ba, bb, "two responses share a boundary");
    assert!(!ba.contains(&etag_digits), "boundary {ba} from ETag {etag}");
    // At least 128 bits of hex.
    let hex = ba.chars().filter(char::is_ascii_hexdigit).count();
    assert!(hex >= 32, "boundary {ba} too short");

    // A file that carries what the old boundary would have been: its bytes
    // come back as one part's content, not as a part of their own.
    let forged = format!("xx\r\n--zcserve-{etag_digits}\r\nContent-Range: bytes 0-1/2\r\n\r\nFAKE");
    std::fs::write(d.path().join("g.txt"), &forged).unwrap();
    let end = forged.len() - 1;
    let r = get(&s0, "/g.txt", &format!("Range: bytes=0-0,1-{end}\r\n"));
    assert_eq!(r.status, 206);
    let body = String::from_utf8(r.body.clone()).unwrap();
    let delim = format!("--{}", boundary(&r));
    assert_eq!(body.matches(&delim).count(), 3, "{body}");
}

// ------------------------------------------------------------------ #14

/// Rows of a listing page (one per entry, `../` excluded).
fn listed_names(html: &str) -> Vec<String> {
    html.lines()
        .filter_map(|l| l.strip_prefix("<tr><td><a href=\""))
        .map(|l| l[..l.find('"').unwrap()].to_owned())
        .filter(|n| n != "../")
        .collect()
}

/// inotify on one path: the number of `IN_OPEN` events (an `O_PATH` open
/// is not one, an open for reading is).
struct OpenWatch(std::os::fd::OwnedFd);

impl OpenWatch {
    fn new(path: &Path) -> OpenWatch {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just returned to us and is owned from here on.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: `c` is a valid NUL-terminated string for the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN) };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        OpenWatch(fd)
    }

    /// Events queued so far (the queue is read and emptied).
    fn opens(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let mut events = 0;
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return events;
            }
            let mut at = 0;
            while at < n as usize {
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                events += 1;
                at += 16 + len;
            }
        }
    }
}

/// The system call `tid` (a thread of this process) is blocked in, from
/// `/proc/self/task/<tid>/syscall`; `None` once it has left it (running,
/// or the thread is gone).
fn blocked_in(tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A FIFO (requested directly, as a directory's `index.html`, or met
/// in a listing, directly or through a symlink) is refused without ever
/// being opened: opening it for reading would release a writer blocked
/// on it (and, without `O_NONBLOCK`, block a worker).
///
/// Two witnesses. A writer thread blocked opening the FIFO must still be
/// blocked afterwards (any open for reading releases it). And, where this
/// kernel's inotify does not report `O_PATH` opens (Linux 6.5 on), no
/// `IN_OPEN` may be reported at all, which catches even an open the
/// writer could not be seen to leave.
#[test]
fn fifo_is_never_opened() {
    use std::os::unix::fs::symlink;
    let d = TempDir::new();
    let r = d.path();
    let mk =
        |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    mk(&r.join("fifo"));
    std::fs::create_dir(r.join("fd")).unwrap();
    mk(&r.join("fd/index.html"));
    symlink("fifo", r.join("to_fifo")).unwrap();
    std::fs::write(r.join("plain.txt"), b"ok").unwrap();
    let watch = OpenWatch::new(&r.join("fifo"));
    let watch_index = OpenWatch::new(&r.join("fd/index.html"));
    // The watch sees opens (an independent check that it can fail).
    let reader = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblock()
            .open(r.join("fifo"))
            .unwrap()
    };
    drop(reader());
    assert_eq!(watch.opens(), 1, "inotify missed a real open");
    let o_path = nix::fcntl::open(
        &r.join("fifo"),
        nix::fcntl::OFlag::O_PATH,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    drop(o_path);
    let inotify_witness = watch.opens() == 0;
    if !inotify_witness {
        println!("this kernel reports O_PATH opens to inotify: only the writer witnesses");
    }

    // A writer blocked in open(2) until someone opens the FIFO to read.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let fifo = r.join("fifo");
    let writer = std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .map(drop)
    });
    let tid = tid_rx.recv().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blocked_in(tid) != Some(libc::SYS_openat) {
        assert!(
            std::time::Instant::now() < until,
            "the writer never blocked"
        );
        std::thread::yield_now();
    }

    let s = TestServer::start("auto", r, |s| s.file_cache = false);
    assert_eq!(get(&s, "/fifo", "").status, 403);
    assert_eq!(get(&s, "/to_fifo", "").status, 403);
    assert_eq!(get(&s, "/fd/", "").status, 403);
    let listing = String::from_utf8(get(&s, "/", "").body).unwrap();
    assert_eq!(listed_names(&listing), ["fd/", "plain.txt"]);
    // Through a listing with symlinks followed anywhere, too.
    let follow = TestServer::start("auto", r, |s| s.follow_symlinks = true);
    assert_eq!(get(&follow, "/to_fifo", "").status, 403);
    let _ = get(&follow, "/", "");

    assert_eq!(
        blocked_in(tid),
        Some(libc::SYS_openat),
        "the writer was released: the server opened the FIFO"
    );
    if inotify_witness {
        assert_eq!(watch.opens(), 0, "the server opened the FIFO");
        assert_eq!(watch_index.opens(), 0, "the server opened fd/index.html");
    }
    // Release the writer ourselves; its open then succeeds.
    let release = reader();
    writer.join().unwrap().unwrap();
    drop(release);
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

// ------------------------------------------------------------------ #5

/// A symlink with an innocent name leading to a dot-directory does not
/// expose it: `repo -> .git` hides `/repo/config` like `/.git/config`, and
/// the listing does not show `repo`.
#[test]
fn symlink_to_a_dotfile_is_hidden() {
    use std::os::unix::fs::symlink;
    let d = TempDir::new();
    let r = d.path();
    std::fs::create_dir(r.join(".git")).unwrap();
    std::fs::write(r.join(".git/config"), b"[core] secret").unwrap();
    std::fs::write(r.join(".env"), b"KEY=secret").unwrap();
    symlink(".git", r.join("repo")).unwrap();
    symlink(".env", r.join("env")).unwrap();
    std::fs::create_dir(r.join("site")).unwrap();
    symlink("../.env", r.join("site/index.html")).unwrap();
    std::fs::write(r.join("plain.txt"), b"ok").unwrap();
    let s = server(r);
    for target in ["/.git/config", "/repo/config", "/repo/", "/repo", "/env"] {
        let got = get(&s, target, "");
        assert_eq!(got.status, 404, "GET {target}");
        assert!(!String::from_utf8_lossy(&got.body).contains("secret"));
    }
    let listing = String::from_utf8(get(&s, "/", "").body).unwrap();
    assert_eq!(listed_names(&listing), ["site/", "plain.txt"]);
    // A hidden index.html is no index: the directory is listed, without it.
    let site = get(&s, "/site/", "");
    assert_eq!(site.status, 200);
    let site = String::from_utf8(site.body).unwrap();
    assert!(!site.contains("secret"), "{site}");
    assert!(listed_names(&site).is_empty(), "{site}");
    assert_eq!(get(&s, "/plain.txt", "").status, 200);

    let shown = TestServer::start("auto", r, |s| s.show_hidden = true);
    assert_eq!(get(&shown, "/repo/config", "").body, b"[core] secret");
    assert_eq!(get(&shown, "/env", "").body, b"KEY=secret");
    assert_eq!(get(&shown, "/site/", "").body, b"KEY=secret");
}

// ------------------------------------------------------------------ #17

/// A symlink swapped back and forth between a file inside the root and
/// one outside, while the directory is listed again and again: the size
/// listed is never the outside file's. Before the fix the link was
/// checked by one lookup and stat'ed by another, so a swap in between
/// showed the outside file's size. (Passing never depends on timing; how
/// often the old code failed did.)
#[test]
fn listing_never_shows_a_swapped_symlinks_outside_target() {
    use std::os::unix::fs::symlink;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use zcserve::fs::{Opened, Policy, Root};
    use zcserve::http::request_path::RequestPath;

    let d = TempDir::new();
    let base = d.path();
    let root = base.join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("inside.txt"), b"i").unwrap();
    // 1 byte inside, 100,000 outside: a listed 100000 is the leak.
    std::fs::write(base.join("outside.bin"), vec![b'o'; 100_000]).unwrap();
    symlink("../inside.txt", root.join("d/link")).unwrap();
    let served = Root::open(&root).unwrap();
    let Ok(Opened::Dir(dir)) =
        served.open_path(&RequestPath::parse("/d/").unwrap(), &Policy::default())
    else {
        panic!("/d/ is not a directory");
    };

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let dir = root.join("d");
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for target in ["../../outside.bin", "../inside.txt"] {
                    let _ = std::fs::remove_file(dir.join("tmp"));
                    symlink(target, dir.join("tmp")).unwrap();
                    std::fs::rename(dir.join("tmp"), dir.join("link")).unwrap();
                }
                swaps += 1;
            }
            swaps
        })
    };
    let mut seen_inside = 0;
    let mut leaked = 0;
    for _ in 0..20_000 {
        for e in listing_entries(&dir) {
            if e.name == "link" {
                match e.len {
                    1 => seen_inside += 1,
                    100_000 => leaked += 1,
                    n => panic!("link listed with {n} bytes"),
                }
            }
        }
        if leaked > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the swapper never ran");
    assert!(seen_inside > 0, "the link was never listed");
    assert_eq!(leaked, 0, "the outside file's size was listed");
}

fn listing_entries(dir: &zcserve::fs::Dir) -> Vec<zcserve::http::listing::Entry> {
    dir.entries(&zcserve::fs::Policy::default(), usize::MAX)
        .unwrap()
        .entries
}

// ------------------------------------------------------------------ #1

/// `HEAD target`, the head and every byte after it.
fn head(s: &TestServer, target: &str) -> (RawResponse, usize) {
    let req = format!("HEAD {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let bytes = s.raw(req.as_bytes());
    let (r, n) = try_parse(&bytes, true).unwrap_or_else(|| panic!("HEAD {target}: no response"));
    (r, bytes.len() - n)
}

/// A directory with more entries than the default cap lists exactly the
/// cap, sorted, and says that it stopped.
#[test]
fn listing_default_cap_truncates_with_a_notice() {
    let d = TempDir::new();
    let big = d.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..10_005 {
        std::fs::write(big.join(format!("f{i:05}")), b"").unwrap();
    }
    let s = server(d.path());
    let r = get(&s, "/big/", "");
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    let names = listed_names(&html);
    assert_eq!(names.len(), 10_000, "entries listed");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "the kept entries are sorted");
    assert!(
        html.contains("class=\"truncated\""),
        "no truncation notice in the page"
    );
}

/// `--listing-max-entries` caps what is read; the page says so; a
/// directory of exactly the cap is whole.
#[test]
fn listing_max_entries_flag_caps_the_page() {
    let d = TempDir::new();
    for dir in ["ten", "eleven"] {
        std::fs::create_dir(d.path().join(dir)).unwrap();
    }
    for i in 0..10 {
        std::fs::write(d.path().join(format!("ten/{i}")), b"").unwrap();
        std::fs::write(d.path().join(format!("eleven/{i}")), b"").unwrap();
    }
    std::fs::write(d.path().join("eleven/10"), b"").unwrap();
    let s = TestServer::start("auto", d.path(), |s| s.listing_max_entries = 10);
    let ten = String::from_utf8(get(&s, "/ten/", "").body).unwrap();
    assert_eq!(listed_names(&ten).len(), 10);
    assert!(!ten.contains("truncated"), "{ten}");
    let eleven = String::from_utf8(get(&s, "/eleven/", "").body).unwrap();
    assert_eq!(listed_names(&eleven).len(), 10);
    assert!(eleven.contains("only 10 of them are shown"), "{eleven}");
}

/// HEAD of a listing answers the headers without building the page: no
/// Content-Length (RFC 9110 9.3.2 lets a HEAD omit fields only known by
/// generating the content) and no body.
#[test]
fn head_of_a_listing_does_not_build_it() {
    let d = TempDir::new();
    std::fs::create_dir(d.path().join("list")).unwrap();
    std::fs::write(d.path().join("list/a.txt"), b"a").unwrap();
    let s = server(d.path());
    let g = get(&s, "/list/", "");
    assert_eq!(g.status, 200);
    assert!(g.header("content-length").is_some());
    let (h, after) = head(&s, "/list/");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), g.header("content-type"));
    assert_eq!(
        h.header("content-length"),
        None,
        "HEAD computed the listing's length"
    );
    assert_eq!(after, 0, "HEAD sent a body");
}
