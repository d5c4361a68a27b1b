//! The site rules of issue 14 through a real server and socket, per
//! backend where a body is sent: `Cache-Control` by path (first match, on
//! 200/206/304, not on errors), the single-page-app fallback, error pages,
//! and directory listings as JSON and in each sort order.

mod common;
use common::*;

use std::fs;
use std::path::Path;

use zcserve::http::cache_rules::CacheRules;

/// A GET (or HEAD) of `path` with `headers` on a fresh connection.
fn request(server: &TestServer, method: &str, path: &str, headers: &[&str]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let bytes = server.raw(req.as_bytes());
    let mut all = parse_responses(&bytes, &[method == "HEAD"]);
    assert_eq!(all.len(), 1, "{path}: {all:?}");
    all.remove(0)
}

fn get(server: &TestServer, path: &str, headers: &[&str]) -> RawResponse {
    request(server, "GET", path, headers)
}

fn write(root: &Path, rel: &str, body: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

// ---------------------------------------------------------- cache-control

#[test]
fn cache_control_first_match_on_200_206_304_not_on_errors() {
    let dir = TempDir::new();
    let root = dir.path();
    write(root, "index.html", b"<p>home</p>");
    write(root, "blog/post.html", b"<p>post</p>");
    write(root, "assets/app.3f2a.js", b"let app = 1;\n");
    write(root, "assets/page.html", b"<p>asset page</p>");
    write(root, "robots.txt", b"User-agent: *\n");
    let rules = [
        "*.html=no-cache",
        "assets/**=public, max-age=31536000, immutable",
    ];
    for backend in backends() {
        let server = TestServer::start(backend, root, |s| {
            s.cache_control = CacheRules::parse(&rules).unwrap();
        });
        let cc = |path: &str, headers: &[&str]| {
            let r = get(&server, path, headers);
            (r.status, r.header("cache-control").map(str::to_owned), r)
        };
        let immutable = Some("public, max-age=31536000, immutable".to_owned());
        let no_cache = Some("no-cache".to_owned());
        let (status, value, r) = cc("/assets/app.3f2a.js", &[]);
        assert_eq!((status, &value), (200, &immutable), "{backend}");
        assert_eq!(r.body, b"let app = 1;\n", "{backend}");
        // Twice: the second from the open-file cache.
        assert_eq!(cc("/assets/app.3f2a.js", &[]).1, immutable, "{backend}");
        // The first rule wins for an html file under assets/.
        assert_eq!(cc("/assets/page.html", &[]).1, no_cache, "{backend}");
        // `*.html` in any directory, and a directory's index.html.
        assert_eq!(cc("/blog/post.html", &[]).1, no_cache, "{backend}");
        assert_eq!(cc("/", &[]).1, no_cache, "{backend}");
        assert_eq!(cc("/robots.txt", &[]).1, None, "{backend}");
        // 206, and 304 (RFC 9110 15.4.5).
        let (status, value, r) = cc("/assets/app.3f2a.js", &["Range: bytes=0-2"]);
        assert_eq!((status, &value), (206, &immutable), "{backend}");
        assert_eq!(r.body, b"let", "{backend}");
        let etag = r.header("etag").unwrap().to_owned();
        let (status, value, _) = cc("/assets/app.3f2a.js", &[&format!("If-None-Match: {etag}")]);
        assert_eq!((status, &value), (304, &immutable), "{backend}");
        // Errors do not carry it: 404, 416, 412.
        assert_eq!(cc("/assets/gone.js", &[]).1, None, "{backend}");
        let (status, value, _) = cc("/assets/app.3f2a.js", &["Range: bytes=100-"]);
        assert_eq!((status, value), (416, None), "{backend}");
        let (status, value, _) = cc("/assets/app.3f2a.js", &["If-Match: \"nope\""]);
        assert_eq!((status, value), (412, None), "{backend}");
        // HEAD like GET.
        let r = request(&server, "HEAD", "/assets/app.3f2a.js", &[]);
        assert_eq!(r.header("cache-control"), immutable.as_deref(), "{backend}");
    }
}

#[test]
fn no_rules_no_cache_control() {
    let dir = TempDir::new();
    write(dir.path(), "a.html", b"x");
    let server = TestServer::start("copy", dir.path(), |_| {});
    let r = get(&server, "/a.html", &[]);
    assert_eq!((r.status, r.header("cache-control")), (200, None));
}

/// Runs the `zcserve` binary with `args` and expects it to refuse them at
/// start: exit status 2 and one line on stderr, which is returned.
fn refused_at_start(args: &[&str]) -> String {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_zcserve"))
        .args(["--listen", "127.0.0.1:0", "--access-log", "off"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(out) = rx.recv_timeout(HANG) else {
        // Only a bug keeps it running.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        panic!("zcserve {args:?} kept running");
    };
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    stderr
}

// ---------------------------------------------------------------- fallback

const APP: &[u8] = b"<!doctype html><div id=app></div>\n";

#[test]
fn fallback_serves_routes_not_missing_assets() {
    let dir = TempDir::new();
    let root = dir.path();
    write(root, "index.html", APP);
    write(root, "assets/app.3f2a.js", b"run();\n");
    let browser = "Accept: text/html,application/xhtml+xml,*/*;q=0.8";
    for backend in backends() {
        let server = TestServer::start(backend, root, |s| {
            s.fallback = Some("index.html".into());
            s.cache_control = CacheRules::parse(&["index.html=no-cache", "**=max-age=60"]).unwrap();
        });
        let direct = get(&server, "/index.html", &[]);
        for path in ["/route", "/users/42", "/deep/route/", "/x?y=1"] {
            let r = get(&server, path, &[browser]);
            assert_eq!(r.status, 200, "{backend} {path}");
            assert_eq!(r.body, APP, "{backend} {path}");
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
            assert_eq!(r.header("etag"), direct.header("etag"), "{backend} {path}");
            assert_eq!(r.header("last-modified"), direct.header("last-modified"));
            // The fallback's own rule, not the request path's.
            assert_eq!(r.header("cache-control"), Some("no-cache"), "{backend}");
            assert_eq!(r.header("vary"), Some("Accept"), "{backend} {path}");
        }
        // No Accept at all counts as admitting text/html.
        assert_eq!(get(&server, "/route", &[]).status, 200, "{backend}");
        // Existing files are themselves.
        let r = get(&server, "/assets/app.3f2a.js", &[browser]);
        assert_eq!((r.status, r.body.as_slice()), (200, b"run();\n".as_slice()));
        // A missing asset, or a client that does not want HTML: 404.
        for (path, accept) in [
            ("/assets/app.0000.js", browser),
            ("/missing.js", "Accept: */*"),
            ("/favicon.ico", browser),
            ("/route", "Accept: image/png"),
            ("/route", "Accept: application/json"),
            ("/route", "Accept: text/html;q=0, */*"),
        ] {
            let r = get(&server, path, &[accept]);
            assert_eq!(r.status, 404, "{backend} {path} {accept}");
            assert_eq!(r.header("cache-control"), None, "{backend} {path}");
        }
        // Preconditions and ranges as for the file itself; HEAD alike.
        let etag = direct.header("etag").unwrap();
        let r = get(&server, "/route", &[&format!("If-None-Match: {etag}")]);
        assert_eq!(r.status, 304, "{backend}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{backend}");
        let r = get(&server, "/route", &["Range: bytes=2-8"]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (206, &APP[2..=8]),
            "{backend}"
        );
        let r = request(&server, "HEAD", "/route", &[]);
        assert_eq!(r.status, 200, "{backend}");
        assert_eq!(r.header("content-length"), Some(&*APP.len().to_string()));
        assert!(r.body.is_empty());
    }
}

#[test]
fn fallback_gone_at_request_time_is_a_404() {
    let dir = TempDir::new();
    write(dir.path(), "app.html", APP);
    let server = TestServer::start("copy", dir.path(), |s| {
        s.fallback = Some("/app.html".into());
        s.file_cache = false;
    });
    assert_eq!(get(&server, "/route", &[]).status, 200);
    fs::remove_file(dir.path().join("app.html")).unwrap();
    assert_eq!(get(&server, "/route", &[]).status, 404);
}

#[test]
fn bad_fallback_is_refused_at_start() {
    let dir = TempDir::new();
    let root = dir.path();
    write(root, "index.html", APP);
    write(root, ".hidden.html", APP);
    fs::create_dir(root.join("sub")).unwrap();
    let root_arg = root.to_str().unwrap();
    for (file, why) in [
        ("missing.html", "cannot open"),
        ("sub", "directory"),
        (".hidden.html", "cannot open"),
        ("../index.html", ".."),
        ("", "give a file"),
    ] {
        let line = refused_at_start(&["--root", root_arg, "--fallback", file]);
        assert!(
            line.starts_with("zcserve: error: fallback: ") && line.contains(why),
            "{file}: {line}"
        );
    }
    // The same from the config file.
    let config = root.join("zc.toml");
    fs::write(&config, "fallback = \"nope.html\"\n").unwrap();
    let line = refused_at_start(&["--root", root_arg, "--config", config.to_str().unwrap()]);
    assert!(line.contains("fallback: nope.html: cannot open"), "{line}");
}

// ------------------------------------------------------------- error pages

const PAGE_404: &[u8] = b"<!doctype html><h1>Nothing here</h1>\n";
const PAGE_405: &[u8] = b"only GET and HEAD, sorry\n";
const PAGE_416: &[u8] = b"<p>bad range</p>";

#[test]
fn error_pages_keep_the_status_and_the_other_fields() {
    let dir = TempDir::new();
    let root = dir.path();
    write(root, "errors/404.html", PAGE_404);
    write(root, "errors/405.txt", PAGE_405);
    write(root, "errors/416.html", PAGE_416);
    write(root, "a.txt", b"0123456789");
    for backend in backends() {
        let server = TestServer::start(backend, root, |s| {
            s.error_pages = [
                (404, "errors/404.html"),
                (405, "errors/405.txt"),
                (416, "/errors/416.html"),
            ]
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        });
        let r = get(&server, "/missing", &[]);
        assert_eq!((r.status, r.body.as_slice()), (404, PAGE_404), "{backend}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        // HEAD: the page's length, no body.
        let r = request(&server, "HEAD", "/missing", &[]);
        assert_eq!(r.status, 404, "{backend}");
        assert_eq!(
            r.header("content-length"),
            Some(&*PAGE_404.len().to_string())
        );
        assert!(r.body.is_empty());
        // An error answered from memory (the method), Allow kept.
        let r = request(&server, "DELETE", "/a.txt", &[]);
        assert_eq!((r.status, r.body.as_slice()), (405, PAGE_405), "{backend}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{backend}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        // 416 keeps its Content-Range; the first request opens a.txt, the
        // second is answered from the open-file cache.
        for _ in 0..2 {
            let r = get(&server, "/a.txt", &["Range: bytes=50-"]);
            assert_eq!((r.status, r.body.as_slice()), (416, PAGE_416), "{backend}");
            assert_eq!(r.header("content-range"), Some("bytes */10"), "{backend}");
        }
        // Statuses without a page keep the built-in text; successes and
        // redirects are untouched.
        let r = get(&server, "/a.txt", &["If-Match: \"x\""]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (412, b"412 Precondition Failed\n".as_slice())
        );
        let r = get(&server, "/a.txt", &["Range: bytes=0-1"]);
        assert_eq!((r.status, r.body.as_slice()), (206, b"01".as_slice()));
        let r = get(&server, "/errors", &[]);
        assert_eq!(r.status, 301, "{backend}");
        // The page itself is also a file like any other.
        let r = get(&server, "/errors/404.html", &[]);
        assert_eq!((r.status, r.body.as_slice()), (200, PAGE_404));
    }
}

#[test]
fn error_page_for_a_missing_asset_under_a_fallback() {
    let dir = TempDir::new();
    write(dir.path(), "index.html", APP);
    write(dir.path(), "404.html", PAGE_404);
    let server = TestServer::start("copy", dir.path(), |s| {
        s.fallback = Some("index.html".into());
        s.error_pages.insert(404, "404.html".into());
    });
    assert_eq!(get(&server, "/route", &[]).body, APP);
    let r = get(&server, "/assets/gone.js", &[]);
    assert_eq!((r.status, r.body.as_slice()), (404, PAGE_404));
}

#[test]
fn error_page_gone_at_request_time_gives_the_built_in_text() {
    let dir = TempDir::new();
    write(dir.path(), "404.html", PAGE_404);
    for file_cache in [false, true] {
        write(dir.path(), "404.html", PAGE_404);
        let server = TestServer::start("copy", dir.path(), |s| {
            s.error_pages.insert(404, "404.html".into());
            s.file_cache = file_cache;
            // A cached page is checked at every use.
            s.file_cache_check = std::time::Duration::ZERO;
        });
        assert_eq!(get(&server, "/nope", &[]).body, PAGE_404);
        fs::remove_file(dir.path().join("404.html")).unwrap();
        let r = get(&server, "/nope", &[]);
        assert_eq!(r.status, 404, "cache {file_cache}");
        assert_eq!(r.body, b"404 Not Found\n", "cache {file_cache}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some("14"));
    }
}

#[test]
fn bad_error_pages_are_refused_at_start() {
    let dir = TempDir::new();
    write(dir.path(), "404.html", PAGE_404);
    let root = dir.path().to_str().unwrap();
    for (flag, why) in [
        (
            "200=404.html",
            "error-page: `200` is not a 4xx or 5xx status",
        ),
        ("99=404.html", "error-page: `99` is not a 4xx or 5xx status"),
        (
            "abc=404.html",
            "error-page: `abc` is not a 4xx or 5xx status",
        ),
        ("404", "error-page: `404`: give STATUS=FILE"),
        ("500=500.html", "error-page 500: 500.html: cannot open"),
    ] {
        let line = refused_at_start(&["--root", root, "--error-page", flag]);
        assert!(line.contains(why), "{flag}: {line}");
    }
}

// ----------------------------------------------------------------- listing

/// `/d/` with files of set sizes and mtimes, a directory, a symlink and a
/// name that is not UTF-8.
fn listing_tree(root: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let d = root.join("d");
    fs::create_dir_all(d.join("subdir")).unwrap();
    // name, size, mtime (unix seconds)
    for (name, size, mtime) in [
        ("b.txt", 300, 1_600_000_100),
        ("a\"q<&>.txt", 100, 1_600_000_300),
        ("c.txt", 200, 1_600_000_200),
    ] {
        let path = d.join(name);
        fs::write(&path, vec![b'x'; size]).unwrap();
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
            .unwrap();
    }
    std::os::unix::fs::symlink("b.txt", d.join("link")).unwrap();
    fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
}

fn json_names(r: &RawResponse) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The names an HTML listing links to, in order.
fn html_names(r: &RawResponse) -> Vec<String> {
    let page = String::from_utf8(r.body.clone()).unwrap();
    page.split("<tr><td><a href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .filter(|h| h != "../")
        .collect()
}

#[test]
fn listing_as_json() {
    let dir = TempDir::new();
    listing_tree(dir.path());
    let server = TestServer::start("copy", dir.path(), |_| {});
    let by_accept = get(&server, "/d/", &["Accept: application/json"]);
    let by_query = get(&server, "/d/?format=json", &["Accept: text/html"]);
    for r in [&by_accept, &by_query] {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("vary"), Some("Accept"));
        assert_eq!(r.header("x-listing-truncated"), None);
    }
    assert_eq!(by_accept.body, by_query.body);
    let v: serde_json::Value = serde_json::from_slice(&by_accept.body).unwrap();
    let entry = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {v}"))
            .clone()
    };
    assert_eq!(
        entry("a\"q<&>.txt"),
        serde_json::json!({"name": "a\"q<&>.txt", "type": "file", "size": 100, "mtime": 1_600_000_300})
    );
    assert_eq!(entry("subdir")["type"], "dir");
    assert_eq!(entry("subdir")["size"], serde_json::Value::Null);
    assert!(entry("subdir")["mtime"].is_i64());
    assert_eq!(entry("link")["type"], "symlink");
    assert_eq!(entry("link")["target"], "file");
    assert_eq!(entry("link")["size"], 300);
    // The name that is not UTF-8 is not listed (no request could name it).
    assert_eq!(json_names(&by_accept).len(), 5, "{v}");
    // A browser, or no Accept: HTML, also with Vary.
    let browser = "Accept: text/html,application/xhtml+xml,*/*;q=0.8";
    for accept in [&[browser][..], &[]] {
        let r = get(&server, "/d/", accept);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("vary"), Some("Accept"));
    }
    // HEAD: the JSON head without a body.
    let r = request(&server, "HEAD", "/d/", &["Accept: application/json"]);
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("application/json"))
    );
    assert!(r.body.is_empty());
}

#[test]
fn listing_sort_orders_html_and_json_alike() {
    let dir = TempDir::new();
    listing_tree(dir.path());
    for (sort, expected) in [
        ("name", ["subdir", "a\"q<&>.txt", "b.txt", "c.txt", "link"]),
        ("mtime", ["subdir", "a\"q<&>.txt", "c.txt", "b.txt", "link"]),
        ("size", ["subdir", "b.txt", "link", "c.txt", "a\"q<&>.txt"]),
    ] {
        let server = TestServer::start("copy", dir.path(), |s| {
            s.listing_sort = clap::ValueEnum::from_str(sort, false).unwrap();
        });
        let r = get(&server, "/d/?format=json", &[]);
        let mut names = json_names(&r);
        // The symlink shows its target's size and mtime (b.txt's): ties
        // by name.
        assert_eq!(names, expected, "{sort} json");
        let html: Vec<String> = html_names(&get(&server, "/d/", &[]))
            .into_iter()
            .map(|h| percent_decode(&h))
            .collect();
        names[0].push('/');
        assert_eq!(html, names, "{sort} html");
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[test]
fn listing_cap_applies_to_json() {
    let dir = TempDir::new();
    listing_tree(dir.path());
    let server = TestServer::start("copy", dir.path(), |s| s.listing_max_entries = 2);
    let r = get(&server, "/d/", &["Accept: application/json"]);
    assert_eq!(json_names(&r).len(), 2);
    assert_eq!(r.header("x-listing-truncated"), Some("true"));
}
