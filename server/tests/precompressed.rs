//! Precompressed sidecars through HTTP: for every backend, each coding's
//! body is the sidecar's bytes exactly (whole and in a range, from disk
//! and from the open-file cache) and is counted in the metrics; the
//! headers (Content-Encoding, Vary, Content-Type, per-coding ETag and
//! Last-Modified) and preconditions follow the representation sent; stale,
//! orphaned, directory and out-of-root sidecars are not served under the
//! original's name; listings hide sidecars unless told not to.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The original's mtime; fresh sidecars are 10 s younger, stale ones 10 s
/// older.
const T0: u64 = 1_700_000_000;

fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn write(root: &Path, name: &str, bytes: &[u8], mtime: u64) {
    let path = root.join(name);
    fs::write(&path, bytes).unwrap();
    set_mtime(&path, mtime);
}

/// The served tree; sizes differ per file so that no body passes for
/// another.
struct Site {
    dir: TempDir,
    _outside: TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = TempDir::new();
        let outside = TempDir::new();
        let r = dir.path();
        write(r, "app.js", &zcserve_tests::content(200_000, 1), T0);
        write(r, "app.js.br", &zcserve_tests::content(70_001, 2), T0 + 10);
        write(r, "app.js.zst", &zcserve_tests::content(90_003, 3), T0 + 10);
        write(r, "app.js.gz", &zcserve_tests::content(110_007, 4), T0);
        // Only a brotli sidecar.
        write(r, "brotli.txt", b"plain text, not compressed\n", T0);
        write(r, "brotli.txt.br", b"pretend brotli", T0 + 10);
        // A sidecar older than its original.
        write(r, "stale.css", b"body { color: red }\n", T0);
        write(r, "stale.css.gz", b"old gzip bytes", T0 - 10);
        // A sidecar without its original.
        write(r, "only.js.gz", b"orphaned gzip bytes", T0);
        // No sidecars at all.
        write(r, "plain.txt", b"nothing precompressed\n", T0);
        // A sidecar that is a directory, and one that leads out of the root.
        write(r, "dir.txt", b"dir sidecar\n", T0);
        fs::create_dir(r.join("dir.txt.gz")).unwrap();
        write(r, "out.txt", b"out sidecar\n", T0);
        write(outside.path(), "secret.gz", b"OUTSIDE THE ROOT", T0 + 10);
        symlink(outside.path().join("secret.gz"), r.join("out.txt.gz")).unwrap();
        // A directory's index.html.
        fs::create_dir(r.join("docs")).unwrap();
        write(r, "docs/index.html", b"<p>index</p>\n", T0);
        write(r, "docs/index.html.gz", b"gzipped index", T0 + 10);
        Site {
            dir,
            _outside: outside,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        fs::read(self.path().join(name)).unwrap()
    }
}

fn send(s: &TestServer, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    let headers = [&[("Connection", "close")], headers].concat();
    let out = s.raw(request_head(method, target, &headers).as_bytes());
    // One response and nothing after it: a HEAD's head is all it sends.
    let mut r = parse_responses(&out, &[method == "HEAD"]);
    assert_eq!(r.len(), 1, "{method} {target}: {} responses", r.len());
    r.remove(0)
}

fn get(s: &TestServer, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    send(s, "GET", target, headers)
}

fn accepting(ae: &str) -> Vec<(&str, &str)> {
    vec![("Accept-Encoding", ae)]
}

#[test]
fn every_coding_is_the_sidecar_byte_for_byte_through_every_backend() {
    let site = Site::new();
    let cases = [
        ("br", "app.js.br", Some("br")),
        ("zstd", "app.js.zst", Some("zstd")),
        ("gzip", "app.js.gz", Some("gzip")),
        ("x-gzip;q=0.5, deflate", "app.js.gz", Some("gzip")),
        // A browser's header: the configured order breaks the tie.
        ("gzip, deflate, br, zstd", "app.js.br", Some("br")),
        (
            "br;q=0.1, zstd;q=0.2, gzip;q=0.3",
            "app.js.gz",
            Some("gzip"),
        ),
        ("identity", "app.js", None),
    ];
    for b in backends() {
        for cache in [true, false] {
            let s = TestServer::start(b, site.path(), |s| {
                s.file_cache = cache;
                s.metrics = Some("127.0.0.1:0".parse().unwrap());
            });
            let mut sent = 0;
            for (ae, file, coding) in cases {
                let want = site.bytes(file);
                // The second one comes from the cache when it is on.
                for round in 0..2 {
                    let what = format!("{b} cache {cache} {ae:?} round {round}");
                    let r = get(&s, "/app.js", &accepting(ae));
                    assert_eq!(r.status, 200, "{what}");
                    assert!(r.body == want, "{what}: body is not {file}");
                    assert_eq!(r.header("content-encoding"), coding, "{what}");
                    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
                    assert_eq!(
                        r.header("content-type"),
                        Some("text/javascript; charset=utf-8"),
                        "{what}"
                    );
                    assert_eq!(
                        r.header("content-length"),
                        Some(want.len().to_string().as_str()),
                        "{what}"
                    );
                    sent += want.len() as u64;
                }
            }
            // A range of the encoded bytes.
            let br = site.bytes("app.js.br");
            let r = get(
                &s,
                "/app.js",
                &[("Accept-Encoding", "br"), ("Range", "bytes=1000-60999")],
            );
            assert_eq!(r.status, 206, "{b}: range");
            assert!(r.body == br[1000..61000], "{b}: range body");
            assert_eq!(r.header("content-encoding"), Some("br"), "{b}: range");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{b}: range");
            let total = format!("bytes 1000-60999/{}", br.len());
            assert_eq!(r.header("content-range"), Some(total.as_str()), "{b}");
            sent += 60_000;
            // Several ranges of encoded bytes: the whole, not multipart.
            let r = get(
                &s,
                "/app.js",
                &[("Accept-Encoding", "br"), ("Range", "bytes=0-9,20-29")],
            );
            assert_eq!(r.status, 200, "{b}: two ranges");
            assert!(r.body == br, "{b}: two ranges body");
            sent += br.len() as u64;

            // Counted like any body: the server's own counter, exactly,
            // and the backend's.
            use std::sync::atomic::Ordering;
            assert_eq!(s.metrics.body_bytes.load(Ordering::Relaxed), sent, "{b}");
            let text = scrape_metrics(s.metrics_addr.unwrap());
            let key = format!("zcserve_backend_body_bytes_total{{backend=\"{b}\"}} ");
            let counted: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&key))
                .unwrap_or_else(|| panic!("{b}: no {key} in\n{text}"))
                .parse()
                .unwrap();
            assert!(counted >= sent, "{b}: backend counted {counted} < {sent}");
        }
    }
}

#[test]
fn a_refused_coding_falls_back_to_identity_with_vary() {
    let site = Site::new();
    let plain = site.bytes("brotli.txt");
    for b in backends() {
        let s = TestServer::start(b, site.path(), |s| s.file_cache = false);
        for ae in [
            "gzip",
            "br;q=0, gzip",
            "br;q=0, *",
            "identity;q=0, gzip",
            "identity;q=0.9, br;q=0.5",
            "*;q=0.9, br;q=0.5",
        ] {
            let r = get(&s, "/brotli.txt", &accepting(ae));
            assert_eq!(r.status, 200, "{b} {ae:?}");
            assert!(r.body == plain, "{b} {ae:?}: not the plain file");
            assert_eq!(r.header("content-encoding"), None, "{b} {ae:?}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{b} {ae:?}");
        }
        let r = get(&s, "/brotli.txt", &accepting("br"));
        assert_eq!(r.body, b"pretend brotli", "{b}");
        // A path without sidecars varies by nothing.
        let r = get(&s, "/plain.txt", &accepting("gzip, br"));
        assert_eq!((r.status, r.header("vary")), (200, None), "{b}");
        assert_eq!(r.header("content-encoding"), None, "{b}");
    }
}

#[test]
fn precompressed_off_serves_files_as_they_are() {
    let site = Site::new();
    let s = TestServer::start("copy", site.path(), |s| s.precompressed = Vec::new());
    let r = get(&s, "/app.js", &accepting("br, gzip, zstd"));
    assert!(r.body == site.bytes("app.js"));
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    // Only the configured codings are looked for.
    let s = TestServer::start("copy", site.path(), |s| {
        s.precompressed = vec!["gzip".parse().unwrap()]
    });
    let r = get(&s, "/app.js", &accepting("br"));
    assert!(r.body == site.bytes("app.js"));
    assert_eq!(r.header("content-encoding"), None);
    let r = get(&s, "/app.js", &accepting("br, gzip"));
    assert!(r.body == site.bytes("app.js.gz"));
}

#[test]
fn each_coding_has_its_own_validators_and_preconditions() {
    let site = Site::new();
    let s = TestServer::start("copy", site.path(), |_| {});
    let tag = |ae: &str| {
        let r = get(&s, "/app.js", &accepting(ae));
        (
            r.header("etag").unwrap().to_owned(),
            r.header("last-modified").unwrap().to_owned(),
        )
    };
    let (br, br_lm) = tag("br");
    let (gz, gz_lm) = tag("gzip");
    let (zst, _) = tag("zstd");
    let (id, id_lm) = tag("identity");
    let tags = [&br, &gz, &zst, &id];
    for (i, a) in tags.iter().enumerate() {
        assert!(a.starts_with('"') && a.ends_with('"'), "{a} is not strong");
        for b in &tags[i + 1..] {
            assert_ne!(a, b, "two codings share a tag");
        }
    }
    // Last-Modified is the sent file's: the sidecars are 10 s younger,
    // except the gzip one, which has the original's mtime.
    let date = |secs| httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(br_lm, date(T0 + 10));
    assert_eq!(gz_lm, date(T0));
    assert_eq!(id_lm, date(T0));

    // The br tag matches the br representation only.
    let r = get(
        &s,
        "/app.js",
        &[("Accept-Encoding", "br"), ("If-None-Match", &br)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(br.as_str()));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert!(r.body.is_empty());
    for (ae, want) in [("gzip", "app.js.gz"), ("identity", "app.js")] {
        let r = get(
            &s,
            "/app.js",
            &[("Accept-Encoding", ae), ("If-None-Match", &br)],
        );
        assert_eq!(r.status, 200, "{ae}");
        assert!(r.body == site.bytes(want), "{ae}");
    }
    let r = get(&s, "/app.js", &[("If-None-Match", &br)]);
    assert_eq!(r.status, 200, "no Accept-Encoding");
    // If-Match, If-Modified-Since and If-Range, likewise.
    let r = get(
        &s,
        "/app.js",
        &[("Accept-Encoding", "gzip"), ("If-Match", &br)],
    );
    assert_eq!(r.status, 412);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = get(
        &s,
        "/app.js",
        &[("Accept-Encoding", "br"), ("If-Match", &br)],
    );
    assert_eq!(r.status, 200);
    let r = get(
        &s,
        "/app.js",
        &[("Accept-Encoding", "br"), ("If-Modified-Since", &br_lm)],
    );
    assert_eq!(r.status, 304);
    let r = get(
        &s,
        "/app.js",
        &[
            ("Accept-Encoding", "zstd"),
            ("If-Modified-Since", &date(T0 + 5)),
        ],
    );
    assert_eq!(r.status, 200, "zstd is younger than the date");
    let range = [("Range", "bytes=0-9"), ("If-Range", br.as_str())];
    let r = get(
        &s,
        "/app.js",
        &[&[("Accept-Encoding", "br")], &range[..]].concat(),
    );
    assert_eq!(r.status, 206);
    assert!(r.body == site.bytes("app.js.br")[..10]);
    let r = get(
        &s,
        "/app.js",
        &[&[("Accept-Encoding", "gzip")], &range[..]].concat(),
    );
    assert_eq!(r.status, 200, "If-Range with another coding's tag");
    assert!(r.body == site.bytes("app.js.gz"));
}

#[test]
fn head_has_gets_headers_and_no_body() {
    let site = Site::new();
    for b in backends() {
        let s = TestServer::start(b, site.path(), |_| {});
        for ae in ["br", "gzip", "identity"] {
            let undated = |r: &RawResponse| {
                r.headers
                    .iter()
                    .filter(|(k, _)| k != "date")
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let g = get(&s, "/app.js", &accepting(ae));
            let h = send(&s, "HEAD", "/app.js", &accepting(ae));
            assert_eq!(h.status, 200, "{b} {ae}");
            assert_eq!(undated(&h), undated(&g), "{b} {ae}");
            assert!(h.body.is_empty(), "{b} {ae}");
        }
    }
}

#[test]
fn stale_orphaned_and_unsafe_sidecars_are_not_served_as_the_original() {
    let site = Site::new();
    for cache in [true, false] {
        let s = TestServer::start("copy", site.path(), |s| s.file_cache = cache);
        let all = accepting("gzip, br, zstd");
        for (path, want) in [
            ("/stale.css", "stale.css"),
            ("/dir.txt", "dir.txt"),
            ("/out.txt", "out.txt"),
        ] {
            let r = get(&s, path, &all);
            assert_eq!(r.status, 200, "{path}");
            assert!(r.body == site.bytes(want), "{path}: {:?}", r.body);
            assert_eq!(r.header("content-encoding"), None, "{path}");
            assert_eq!(r.header("vary"), None, "{path}: no sidecar to vary by");
        }
        // A sidecar without its original.
        assert_eq!(get(&s, "/only.js", &all).status, 404);
        // By its own name, a plain file.
        let r = get(&s, "/only.js.gz", &all);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"orphaned gzip bytes");
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("content-type"), Some("application/gzip"));
        let r = get(&s, "/app.js.br", &all);
        assert!(r.body == site.bytes("app.js.br"));
        assert_eq!(
            (r.header("content-encoding"), r.header("vary")),
            (None, None)
        );
    }
    // A stale sidecar made fresh is served (by a server that has not seen
    // it stale: the cache would keep what it found for its window).
    set_mtime(&site.path().join("stale.css.gz"), T0 + 1);
    let s = TestServer::start("copy", site.path(), |_| {});
    let r = get(&s, "/stale.css", &accepting("gzip"));
    assert_eq!(r.body, b"old gzip bytes");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn a_directory_index_has_sidecars_too() {
    let site = Site::new();
    let s = TestServer::start("copy", site.path(), |_| {});
    let r = get(&s, "/docs/", &accepting("gzip"));
    assert_eq!(r.body, b"gzipped index");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = get(&s, "/docs/", &[]);
    assert_eq!(r.body, b"<p>index</p>\n");
}

#[test]
fn the_cache_remembers_sidecars_once_a_request_looked_for_them() {
    let site = Site::new();
    // Paused time: the cache's window cannot end between requests.
    let s = TestServer::start_paused("copy", site.path(), |_| {});
    // Without Accept-Encoding nothing is looked for: no Vary yet.
    let r = get(&s, "/app.js", &[]);
    assert!(r.body == site.bytes("app.js"));
    assert_eq!(r.header("vary"), None);
    // The cached entry does not know the sidecars, so this request looks.
    let r = get(&s, "/app.js", &accepting("br"));
    assert!(r.body == site.bytes("app.js.br"));
    // Now the cache knows, and says so to every request.
    let r = get(&s, "/app.js", &[]);
    assert!(r.body == site.bytes("app.js"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    // A sidecar rewritten is seen like a rewritten file: at the next check
    // of the entry (10 ms, the default), well before its window (1 s) ends.
    let br = site.path().join("app.js.br");
    past_timestamps_of(&br);
    fs::write(&br, b"new brotli").unwrap();
    s.advance(Duration::from_millis(10));
    let r = get(&s, "/app.js", &accepting("br"));
    assert_eq!(r.body, b"new brotli");
}

#[test]
fn listings_hide_sidecars_of_listed_files_unless_asked() {
    let site = Site::new();
    let listed = |show: bool| {
        let s = TestServer::start("copy", site.path(), |s| s.listing_show_sidecars = show);
        let r = get(&s, "/", &[]);
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    };
    let href = |name: &str| format!("href=\"{name}\"");
    let page = listed(false);
    for shown in ["app.js", "only.js.gz", "plain.txt", "dir.txt.gz/"] {
        assert!(page.contains(&href(shown)), "{shown} missing:\n{page}");
    }
    for hidden in [
        "app.js.br",
        "app.js.zst",
        "app.js.gz",
        "brotli.txt.br",
        "stale.css.gz",
    ] {
        assert!(!page.contains(&href(hidden)), "{hidden} listed:\n{page}");
    }
    let page = listed(true);
    for shown in [
        "app.js",
        "app.js.br",
        "app.js.zst",
        "app.js.gz",
        "only.js.gz",
    ] {
        assert!(page.contains(&href(shown)), "{shown} missing:\n{page}");
    }
}

#[test]
fn names_with_percent_and_spaces_find_their_sidecars() {
    let site = Site::new();
    let r = site.path();
    write(r, "50% off.js", b"plain", T0);
    write(r, "50% off.js.gz", b"gzipped", T0 + 10);
    // Decoded once: `%25` is the `%` of the name, `%2520` no space.
    write(r, "50%20off.js", b"literal", T0);
    // What its sidecar's name would decode to if decoded twice.
    write(r, "50 off.js.gz", b"WRONG", T0 + 10);
    let s = TestServer::start("copy", site.path(), |_| {});
    let got = get(&s, "/50%25%20off.js", &accepting("gzip"));
    assert_eq!(got.body, b"gzipped");
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    let got = get(&s, "/50%2520off.js", &accepting("gzip"));
    assert_eq!(got.body, b"literal");
    assert_eq!(
        (got.header("content-encoding"), got.header("vary")),
        (None, None)
    );
}
