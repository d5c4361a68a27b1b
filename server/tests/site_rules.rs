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
