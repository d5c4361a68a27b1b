//! The open-file cache seen through HTTP, for every backend: a change to a
//! served file shows in the very next response when every use is checked,
//! and at the end of the check interval otherwise; a change to its path (a
//! parent directory swapped, a symlink re-pointed) at the end of the
//! validity window; with checks off, every change at the end of the
//! window; and the cache never lets a request reach what the uncached
//! server refuses (hidden names, traversal, symlinks out of the root).
//!
//! The servers run on paused tokio time, which also times the cache: each
//! interval is checked on both sides of its end, to the nanosecond, and no
//! test waits for real time to pass.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

const OUTSIDE_MARKER: &[u8] = b"OUTSIDE-THE-ROOT MARKER\n";
const NS: Duration = Duration::from_nanos(1);

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

/// What a cache entry decides about a response: its status and the
/// validator and length of the file it describes. (Not the body: a file
/// rewritten in place is still the cached descriptor's file, so a stale
/// entry sends the new bytes under the old ETag.)
fn answer(s: &TestServer, path: &str) -> String {
    let r = get(s, path);
    format!(
        "{} etag {} length {}",
        r.status,
        r.header("etag").unwrap_or("-"),
        r.header("content-length").unwrap_or("-")
    )
}

/// Asserts `GET path` answers exactly `old` until `interval` has passed
/// (counted from when the server last opened or checked it, which the
/// caller makes now) and something else from then on, which must be
/// `new` (status and body).
fn old_until(
    s: &TestServer,
    path: &str,
    interval: Duration,
    old: &str,
    new: (u16, &[u8]),
    what: &str,
) {
    assert_eq!(answer(s, path), old, "{what}: at once");
    s.advance(interval - NS);
    assert_eq!(
        answer(s, path),
        old,
        "{what}: {NS:?} before the end of {interval:?}"
    );
    s.advance(NS);
    let r = get(s, path);
    let got = (r.status, r.body.as_slice());
    assert_eq!(got, new, "{what}: at the end of {interval:?}");
    assert_ne!(answer(s, path), old, "{what}: at the end of {interval:?}");
}

/// Lets the filesystem's clock pass `path`'s timestamps (see
/// [`past_timestamps_of`]).
fn tick(path: &Path) {
    past_timestamps_of(path);
}

#[test]
fn checked_at_every_use_a_change_to_a_file_shows_in_the_next_response() {
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("f.txt"), b"version 1\n").unwrap();
        // A long window: only the check at every use can see the changes.
        let s = TestServer::start_paused(b, r, |s| {
            s.file_cache_valid = Duration::from_secs(600);
            s.file_cache_check = Duration::ZERO;
        });
        let first = get(&s, "/f.txt");
        assert_eq!(first.body, b"version 1\n", "{b}");
        let etag1 = first.header("etag").unwrap().to_string();
        assert_eq!(get(&s, "/f.txt").body, b"version 1\n", "{b}: cached");

        tick(&r.join("f.txt"));
        fs::write(r.join("f.txt"), b"version 2\n").unwrap();
        let second = get(&s, "/f.txt");
        assert_eq!(second.body, b"version 2\n", "{b}: rewritten in place");
        assert_ne!(second.header("etag").unwrap(), etag1, "{b}: same ETag");

        fs::write(r.join("f.txt"), b"v3\n").unwrap();
        assert_eq!(
            fetch(&s, "/f.txt"),
            (200, b"v3\n".to_vec()),
            "{b}: truncated"
        );

        fs::write(r.join("new.txt"), b"version 4, longer\n").unwrap();
        fs::rename(r.join("new.txt"), r.join("f.txt")).unwrap();
        assert_eq!(
            fetch(&s, "/f.txt"),
            (200, b"version 4, longer\n".to_vec()),
            "{b}: replaced by a rename"
        );

        fs::rename(r.join("f.txt"), r.join("moved.txt")).unwrap();
        assert_eq!(fetch(&s, "/f.txt").0, 404, "{b}: renamed away");
        assert_eq!(
            fetch(&s, "/moved.txt"),
            (200, b"version 4, longer\n".to_vec()),
            "{b}: the moved file under its new name"
        );

        fs::remove_file(r.join("moved.txt")).unwrap();
        assert_eq!(fetch(&s, "/moved.txt").0, 404, "{b}: deleted");

        // index.html is cached under its directory's path.
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/index.html"), b"<p>1</p>\n").unwrap();
        assert_eq!(fetch(&s, "/d/"), (200, b"<p>1</p>\n".to_vec()), "{b}");
        tick(&r.join("d/index.html"));
        fs::write(r.join("d/index.html"), b"<p>2</p>\n").unwrap();
        assert_eq!(
            fetch(&s, "/d/"),
            (200, b"<p>2</p>\n".to_vec()),
            "{b}: index"
        );
    }
}

#[test]
fn by_default_a_change_to_a_file_shows_at_the_end_of_the_check_interval() {
    let check = default_check();
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("f.txt"), b"version 1\n").unwrap();
        let s = TestServer::start_paused(b, r, |s| s.file_cache_valid = Duration::from_secs(600));
        assert_eq!(fetch(&s, "/f.txt"), (200, b"version 1\n".to_vec()), "{b}");
        let before = answer(&s, "/f.txt");
        tick(&r.join("f.txt"));
        fs::write(r.join("f.txt"), b"version 2\n").unwrap();
        old_until(
            &s,
            "/f.txt",
            check,
            &before,
            (200, b"version 2\n"),
            &format!("{b}: rewritten in place"),
        );
        // Opened afresh (so checked) just now.
        let before = answer(&s, "/f.txt");
        fs::remove_file(r.join("f.txt")).unwrap();
        old_until(
            &s,
            "/f.txt",
            check,
            &before,
            (404, b"404 Not Found\n"),
            &format!("{b}: deleted"),
        );
    }
}

/// The default check interval.
fn default_check() -> Duration {
    zcserve::config::Settings::default().file_cache_check
}

#[test]
fn changes_to_a_path_show_at_the_end_of_the_window() {
    let valid = Duration::from_secs(1);
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f.txt"), b"old tree\n").unwrap();
        let s = TestServer::start_paused(b, r, |s| s.file_cache_valid = valid);
        assert_eq!(fetch(&s, "/d/f.txt"), (200, b"old tree\n".to_vec()), "{b}");
        // The file itself is untouched: only its parent is swapped, so
        // every check passes and only the window ends the entry.
        let before = answer(&s, "/d/f.txt");
        // Both files are 9 bytes, so only the clock can tell their ETags
        // apart: the new one must carry a later timestamp.
        tick(&r.join("d/f.txt"));
        fs::rename(r.join("d"), r.join("d.old")).unwrap();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f.txt"), b"new tree\n").unwrap();
        old_until(
            &s,
            "/d/f.txt",
            valid,
            &before,
            (200, b"new tree\n"),
            &format!("{b}: parent swapped"),
        );
        // And the old tree is where it was moved to.
        assert_eq!(fetch(&s, "/d.old/f.txt"), (200, b"old tree\n".to_vec()));
    }
}

#[test]
fn with_checks_off_every_change_shows_at_the_end_of_the_window() {
    let valid = Duration::from_secs(1);
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("f.txt"), b"version 1\n").unwrap();
        let s = TestServer::start_paused(b, r, |s| {
            s.file_cache_valid = valid;
            s.file_cache_check = valid;
        });
        assert_eq!(fetch(&s, "/f.txt"), (200, b"version 1\n".to_vec()), "{b}");
        // Same length, so even a stale response is well-formed; and so
        // the new file needs a later timestamp for a different ETag.
        let before = answer(&s, "/f.txt");
        tick(&r.join("f.txt"));
        fs::write(r.join("new.txt"), b"version 2\n").unwrap();
        fs::rename(r.join("new.txt"), r.join("f.txt")).unwrap();
        old_until(
            &s,
            "/f.txt",
            valid,
            &before,
            (200, b"version 2\n"),
            &format!("{b}: replaced by a rename"),
        );
        let before = answer(&s, "/f.txt");
        fs::remove_file(r.join("f.txt")).unwrap();
        old_until(
            &s,
            "/f.txt",
            valid,
            &before,
            (404, b"404 Not Found\n"),
            &format!("{b}: deleted"),
        );
    }
}

#[test]
fn the_cache_never_widens_what_may_be_served() {
    let outside = TempDir::new();
    fs::write(outside.path().join("outside.txt"), OUTSIDE_MARKER).unwrap();
    let valid = Duration::from_secs(1);
    for b in backends() {
        let root = TempDir::new();
        let r = root.path();
        fs::write(r.join("in.txt"), b"inside\n").unwrap();
        fs::write(r.join(".secret"), b"secret\n").unwrap();
        symlink("in.txt", r.join("link.txt")).unwrap();
        symlink(outside.path().join("outside.txt"), r.join("out.txt")).unwrap();
        let s = TestServer::start_paused(b, r, |s| s.file_cache_valid = valid);
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
        // is still the inside file (served until the window ends), and
        // then the symlink is refused. The outside file is never sent.
        let before = answer(&s, "/link.txt");
        fs::remove_file(r.join("link.txt")).unwrap();
        symlink(outside.path().join("outside.txt"), r.join("link.txt")).unwrap();
        old_until(
            &s,
            "/link.txt",
            valid,
            &before,
            (403, b"403 Forbidden\n"),
            &format!("{b}: symlink re-pointed out of the root"),
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
