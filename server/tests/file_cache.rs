//! The open-file cache seen through HTTP, for every backend: a change to a
//! served file shows in the very next response when every use is checked,
//! and within the check interval otherwise; a change to its path (a parent
//! directory swapped, a symlink re-pointed) within the validity window;
//! with checks off, every change within the window; and the cache never
//! lets a request reach what the uncached server refuses (hidden names,
//! traversal, symlinks out of the root).

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

const OUTSIDE_MARKER: &[u8] = b"OUTSIDE-THE-ROOT MARKER\n";

fn get(s: &TestServer, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let out = s.raw(req.as_bytes());
    let mut r = parse_responses(&out, &[false]);
    assert_eq!(r.len(), 1, "GET {path}: {} responses", r.len());
    r.remove(0)
}

/// Status and body of `GET path`.
fn fetch(s: &TestServer, path: &str) -> (u16, Vec<u8>) {
    let r = get(s, path);
    (r.status, r.body)
}

/// Lets the clock move past the filesystem's timestamp granularity, so a
/// change is a change even on kernels with coarse timestamps.
fn tick() {
    std::thread::sleep(Duration::from_millis(20));
}

/// Requests `path` until it answers `want` (or `limit` passes) and returns
/// how long that took; every answer on the way must be `allowed`.
fn until(
    s: &TestServer,
    path: &str,
    want: (u16, &[u8]),
    allowed: &[(u16, &[u8])],
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        let (status, body) = fetch(s, path);
        if (status, body.as_slice()) == want {
            return Some(start.elapsed());
        }
        assert!(
            allowed.contains(&(status, body.as_slice())),
            "GET {path}: unexpected {status} {:?}",
            String::from_utf8_lossy(&body)
        );
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn checked_at_every_use_a_change_to_a_file_shows_in_the_next_response() {
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("f.txt"), b"version 1\n").unwrap();
        // A long window: only the check at every use can see the changes.
        let s = TestServer::start(b, r, |s| {
            s.file_cache_valid = Duration::from_secs(600);
            s.file_cache_check = Duration::ZERO;
        });
        let first = get(&s, "/f.txt");
        assert_eq!(first.body, b"version 1\n", "{b}");
        let etag1 = first.header("etag").unwrap().to_string();
        assert_eq!(get(&s, "/f.txt").body, b"version 1\n", "{b}: cached");

        tick();
        fs::write(r.join("f.txt"), b"version 2\n").unwrap();
        let second = get(&s, "/f.txt");
        assert_eq!(second.body, b"version 2\n", "{b}: rewritten in place");
        assert_ne!(second.header("etag").unwrap(), etag1, "{b}: same ETag");

        tick();
        fs::write(r.join("f.txt"), b"v3\n").unwrap();
        assert_eq!(
            fetch(&s, "/f.txt"),
            (200, b"v3\n".to_vec()),
            "{b}: truncated"
        );

        tick();
        fs::write(r.join("new.txt"), b"version 4, longer\n").unwrap();
        fs::rename(r.join("new.txt"), r.join("f.txt")).unwrap();
        assert_eq!(
            fetch(&s, "/f.txt"),
            (200, b"version 4, longer\n".to_vec()),
            "{b}: replaced by a rename"
        );

        tick();
        fs::rename(r.join("f.txt"), r.join("moved.txt")).unwrap();
        assert_eq!(fetch(&s, "/f.txt").0, 404, "{b}: renamed away");
        assert_eq!(
            fetch(&s, "/moved.txt"),
            (200, b"version 4, longer\n".to_vec()),
            "{b}: the moved file under its new name"
        );

        tick();
        fs::remove_file(r.join("moved.txt")).unwrap();
        assert_eq!(fetch(&s, "/moved.txt").0, 404, "{b}: deleted");

        // index.html is cached under its directory's path.
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/index.html"), b"<p>1</p>\n").unwrap();
        assert_eq!(fetch(&s, "/d/"), (200, b"<p>1</p>\n".to_vec()), "{b}");
        tick();
        fs::write(r.join("d/index.html"), b"<p>2</p>\n").unwrap();
        assert_eq!(
            fetch(&s, "/d/"),
            (200, b"<p>2</p>\n".to_vec()),
            "{b}: index"
        );
    }
}

#[test]
fn by_default_a_change_to_a_file_shows_within_the_check_interval() {
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("f.txt"), b"version 1\n").unwrap();
        let s = TestServer::start(b, r, |s| s.file_cache_valid = Duration::from_secs(600));
        let check = default_check();
        assert_eq!(fetch(&s, "/f.txt"), (200, b"version 1\n".to_vec()), "{b}");
        tick();
        fs::write(r.join("f.txt"), b"version 2\n").unwrap();
        let took = until(
            &s,
            "/f.txt",
            (200, b"version 2\n"),
            &[(200, b"version 1\n")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{b}: the rewritten file was never served"));
        assert!(
            took <= check + Duration::from_millis(250),
            "{b}: the old version was served {took:?} after the change (check {check:?})"
        );
        tick();
        fs::remove_file(r.join("f.txt")).unwrap();
        let took = until(
            &s,
            "/f.txt",
            (404, b"404 Not Found\n"),
            &[(200, b"version 2\n")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{b}: the deleted file was still served"));
        assert!(
            took <= check + Duration::from_millis(250),
            "{b}: the deleted file was served {took:?} after the delete (check {check:?})"
        );
    }
}

/// The default check interval.
fn default_check() -> Duration {
    zcserve::config::Settings::default().file_cache_check
}

#[test]
fn changes_to_a_path_show_within_the_window() {
    let valid = Duration::from_millis(300);
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f.txt"), b"old tree\n").unwrap();
        let s = TestServer::start(b, r, |s| s.file_cache_valid = valid);
        assert_eq!(fetch(&s, "/d/f.txt"), (200, b"old tree\n".to_vec()), "{b}");
        // The file itself is untouched: only its parent is swapped.
        fs::rename(r.join("d"), r.join("d.old")).unwrap();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f.txt"), b"new tree\n").unwrap();
        let took = until(
            &s,
            "/d/f.txt",
            (200, b"new tree\n"),
            &[(200, b"old tree\n")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{b}: the new tree was never served"));
        assert!(
            took <= valid + Duration::from_millis(250),
            "{b}: the old tree was served {took:?} after the swap (window {valid:?})"
        );
        // And the old tree is where it was moved to.
        assert_eq!(fetch(&s, "/d.old/f.txt"), (200, b"old tree\n".to_vec()));
    }
}

#[test]
fn with_checks_off_every_change_shows_within_the_window() {
    let valid = Duration::from_millis(300);
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("f.txt"), b"version 1\n").unwrap();
        let s = TestServer::start(b, r, |s| {
            s.file_cache_valid = valid;
            s.file_cache_check = valid;
        });
        assert_eq!(fetch(&s, "/f.txt"), (200, b"version 1\n".to_vec()), "{b}");
        tick();
        // Same length, so even a stale response is well-formed.
        fs::write(r.join("new.txt"), b"version 2\n").unwrap();
        fs::rename(r.join("new.txt"), r.join("f.txt")).unwrap();
        let took = until(
            &s,
            "/f.txt",
            (200, b"version 2\n"),
            &[(200, b"version 1\n")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{b}: the new version was never served"));
        assert!(
            took <= valid + Duration::from_millis(250),
            "{b}: the old version was served {took:?} after the change (window {valid:?})"
        );
        tick();
        fs::remove_file(r.join("f.txt")).unwrap();
        let took = until(
            &s,
            "/f.txt",
            (404, b"404 Not Found\n"),
            &[(200, b"version 2\n")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{b}: the deleted file was still served"));
        assert!(
            took <= valid + Duration::from_millis(250),
            "{b}: the deleted file was served {took:?} after the delete (window {valid:?})"
        );
    }
}

#[test]
fn the_cache_never_widens_what_may_be_served() {
    let outside = TempDir::new();
    fs::write(outside.path().join("outside.txt"), OUTSIDE_MARKER).unwrap();
    let valid = Duration::from_millis(300);
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("in.txt"), b"inside\n").unwrap();
        fs::write(r.join(".secret"), b"secret\n").unwrap();
        symlink("in.txt", r.join("link.txt")).unwrap();
        symlink(outside.path().join("outside.txt"), r.join("out.txt")).unwrap();
        let s = TestServer::start(b, r, |s| s.file_cache_valid = valid);
        // Asked twice: the second answer may come from the cache and must
        // be the same.
        for round in 0..2 {
            for (path, status) in [
                ("/.secret", 404),
                ("/%2esecret", 404),
                ("/out.txt", 403),
                ("/../in.txt", 400),
                ("/%2e%2e/in.txt", 400),
                ("/in.txt/", 404),
            ] {
                let (got, body) = fetch(&s, path);
                assert_eq!(got, status, "{b} round {round}: GET {path}");
                assert!(
                    !body
                        .windows(OUTSIDE_MARKER.len())
                        .any(|w| w == OUTSIDE_MARKER),
                    "{b}: {path} sent outside bytes"
                );
            }
            for path in ["/in.txt", "/link.txt", "/./in.txt", "/%69n.txt"] {
                assert_eq!(
                    fetch(&s, path),
                    (200, b"inside\n".to_vec()),
                    "{b} round {round}: GET {path}"
                );
            }
        }
        // Re-point a cached symlink out of the root: the cached descriptor
        // is still the inside file (served at most for the window), and
        // then the symlink is refused. The outside file is never sent.
        fs::remove_file(r.join("link.txt")).unwrap();
        symlink(outside.path().join("outside.txt"), r.join("link.txt")).unwrap();
        let took = until(
            &s,
            "/link.txt",
            (403, b"403 Forbidden\n"),
            &[(200, b"inside\n")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{b}: the re-pointed symlink was never refused"));
        assert!(
            took <= valid + Duration::from_millis(250),
            "{b}: the re-pointed symlink served the old file for {took:?} (window {valid:?})"
        );
    }
}

#[test]
fn with_the_cache_off_path_changes_show_at_once() {
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f.txt"), b"old tree\n").unwrap();
        let s = TestServer::start(b, r, |s| {
            s.file_cache = false;
            s.file_cache_valid = Duration::from_secs(600);
        });
        assert_eq!(fetch(&s, "/d/f.txt"), (200, b"old tree\n".to_vec()), "{b}");
        fs::rename(r.join("d"), r.join("d.old")).unwrap();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f.txt"), b"new tree\n").unwrap();
        assert_eq!(
            fetch(&s, "/d/f.txt"),
            (200, b"new tree\n".to_vec()),
            "{b}: uncached"
        );
    }
}

#[test]
fn many_files_through_a_small_cache() {
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        for i in 0..40 {
            fs::write(r.join(format!("{i}.txt")), format!("file {i}\n")).unwrap();
        }
        let s = TestServer::start(b, r, |s| s.file_cache_entries = 4);
        for round in 0..3 {
            for i in 0..40 {
                assert_eq!(
                    fetch(&s, &format!("/{i}.txt")),
                    (200, format!("file {i}\n").into_bytes()),
                    "{b} round {round}"
                );
            }
        }
    }
}
