//! HTTP behaviour of zcserve (issue 3; RFC 9110 and RFC 9112), every test
//! run against every backend of the registry: GET and HEAD of files of
//! several sizes and types, keep-alive, HTTP/1.0, `Connection: close`,
//! `Host`, absolute-form targets, pipelining, methods (405/501) and request
//! bodies, every form of `Range` (single, open-ended, suffix, clamped,
//! multipart, 416, invalid, the overlapping-ranges DoS, HEAD, `If-Range`),
//! the preconditions of RFC 9110 §13, directories (redirect, `index.html`,
//! listing, listing off), hidden files, symlinks in and out of the root,
//! and the Prometheus metrics.
//!
//! hyper is the client for what a client library sends; raw TCP for what it
//! will not (pipelines, HTTP/1.0, missing `Host`, bodies on GET, odd
//! methods, absolute-form targets).

mod common;
use common::*;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, StatusCode};

const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const HELLO: &[u8] = b"hello\n";
const INDEX: &[u8] = b"<!doctype html><p>sub index</p>\n";
/// Not a multiple of any page or chunk size.
const BIG_LEN: usize = 3 * 1024 * 1024 + 4321;
/// 2020-09-13T12:26:40Z, every fixture file's mtime: far enough in the past
/// that `Last-Modified` is a strong validator (RFC 9110 §8.8.2.2).
const MTIME_SECS: u64 = 1_600_000_000;
const OUTSIDE_MARKER: &[u8] = b"OUTSIDE-THE-ROOT MARKER\n";

/// Names in `/list/` that need escaping in HTML or encoding in a URL.
const ODD_NAMES: [&str; 4] = ["a<b>&c.txt", "with space.txt", "hash#.txt", "per%cent.txt"];

// ---------------------------------------------------------------- fixture

/// The served tree:
///
/// ```text
/// empty.txt a.txt digits.txt big.bin page.html style.css app.js data.json
/// blob.zzq noext image.png .secret .git/config
/// sub/index.html sub/other.txt
/// list/aaa.txt list/<ODD_NAMES> list/.hidden.txt list/zdir/inner.txt
/// ```
struct Fixture {
    dir: TempDir,
    big: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new();
        let big = zcserve_tests::content(BIG_LEN, 0x5eed);
        let r = dir.path();
        put(r, "empty.txt", b"");
        put(r, "a.txt", HELLO);
        put(r, "digits.txt", DIGITS);
        put(r, "big.bin", &big);
        put(r, "page.html", b"<!doctype html><p>page</p>\n");
        put(r, "style.css", b"body { color: red }\n");
        put(r, "app.js", b"let x = 1;\n");
        put(r, "data.json", b"{\"a\": 1}\n");
        put(r, "blob.zzq", b"\x00\x01\x02unknown");
        put(r, "noext", b"\x00\x01no extension");
        put(r, "image.png", b"\x89PNG\r\n\x1a\n");
        put(r, ".secret", b"top secret\n");
        put(r, ".git/config", b"[core]\n");
        put(r, "sub/index.html", INDEX);
        put(r, "sub/other.txt", b"other\n");
        put(r, "list/aaa.txt", b"aaa\n");
        for name in ODD_NAMES {
            put(r, &format!("list/{name}"), name.as_bytes());
        }
        put(r, "list/.hidden.txt", b"hidden\n");
        put(r, "list/zdir/inner.txt", b"inner\n");
        put(r, "list/sp ace/in.txt", b"in\n");
        put(r, "list/q?dir/in.txt", b"in\n");
        Fixture { dir, big }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime())
        .unwrap();
}

fn mtime() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MTIME_SECS)
}

fn last_modified() -> String {
    httpdate::fmt_http_date(mtime())
}

fn days_from_mtime(days: i64) -> String {
    let delta = Duration::from_secs(days.unsigned_abs() * 86_400);
    let t = if days < 0 {
        mtime() - delta
    } else {
        mtime() + delta
    };
    httpdate::fmt_http_date(t)
}

// ---------------------------------------------------------------- clients

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

type Reply = (StatusCode, HeaderMap, Vec<u8>);
/// Request headers, the status they must get, and what the case is.
type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
/// Inclusive (first, last) byte positions.
type Spans = Vec<(u64, u64)>;

fn hget(
    rt: &tokio::runtime::Runtime,
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    rt.block_on(hyper_get(s.addr, path, headers))
}

fn hreq(
    rt: &tokio::runtime::Runtime,
    s: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    rt.block_on(hyper_request(s.addr, method, path, headers))
}

/// Several GETs through hyper on one connection.
async fn hyper_on_one_connection(addr: SocketAddr, paths: &[&str]) -> Vec<(StatusCode, Vec<u8>)> {
    use http_body_util::BodyExt;
    let mut send = hyper_connect(addr).await;
    let mut out = Vec::new();
    for p in paths {
        send.ready().await.unwrap();
        let req = http::Request::builder()
            .uri(*p)
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        out.push((status, body));
    }
    out
}

/// The value of `name` in `h`, or "" when absent.
fn hv<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .map_or("", |v| v.to_str().unwrap_or("<non-ascii>"))
}

/// One request on its own connection (with `Connection: close`), its one
/// response.
fn one(s: &TestServer, method: &str, target: &str, extra: &[(&str, &str)]) -> RawResponse {
    let mut headers = extra.to_vec();
    headers.push(("Connection", "close"));
    let out = s.raw(request_head(method, target, &headers).as_bytes());
    let mut r = parse_responses(&out, &[method == "HEAD"]);
    assert_eq!(r.len(), 1, "{method} {target}: {} responses", r.len());
    r.remove(0)
}

/// Reads exactly `head_only.len()` responses off a kept-alive connection.
fn read_responses(stream: &mut TcpStream, head_only: &[bool]) -> Vec<RawResponse> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    while out.len() < head_only.len() {
        if let Some((r, n)) = try_parse(&buf, head_only[out.len()]) {
            out.push(r);
            buf.drain(..n);
            continue;
        }
        match stream.read_r(&mut chunk) {
            Ok(0) => panic!(
                "connection closed after {} of {} responses",
                out.len(),
                head_only.len()
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "read after {} of {} responses: {e}",
                out.len(),
                head_only.len()
            ),
        }
    }
    assert!(
        buf.is_empty(),
        "{} unexpected bytes after the responses: {:?}",
        buf.len(),
        String::from_utf8_lossy(&buf[..buf.len().min(200)])
    );
    out
}

/// Whether the response says the connection closes after it.
fn says_close(r: &RawResponse) -> bool {
    r.header("connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

// ---------------------------------------------------------------- ranges

/// `bytes a-b/len` → (a, b, len).
fn content_range(v: &str) -> (u64, u64, u64) {
    let parsed = (|| {
        let (span, len) = v.strip_prefix("bytes ")?.split_once('/')?;
        let (a, b) = span.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?, len.parse().ok()?))
    })();
    parsed.unwrap_or_else(|| panic!("malformed Content-Range {v:?}"))
}

/// The boundary parameter of a `multipart/byteranges` Content-Type.
fn boundary_of(ct: &str) -> String {
    let lower = ct.to_ascii_lowercase();
    assert!(
        lower.starts_with("multipart/byteranges"),
        "not multipart/byteranges: {ct:?}"
    );
    let at = lower
        .find("boundary=")
        .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
    ct[at + 9..]
        .split(';')
        .next()
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_string()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// One part of a multipart body: its header fields (lower-cased names) and
/// its bytes.
struct Part {
    headers: Vec<(String, String)>,
    data: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Splits a multipart body (RFC 2046 §5.1.1) into its parts.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delim = format!("--{boundary}").into_bytes();
    let mut closing = b"\r\n".to_vec();
    closing.extend_from_slice(&delim);
    let mut pos = find(body, &delim, 0).expect("no first delimiter") + delim.len();
    let mut parts = Vec::new();
    loop {
        assert!(parts.len() < 1000, "runaway multipart body");
        if body[pos..].starts_with(b"--") {
            break;
        }
        while matches!(body.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        assert!(
            body[pos..].starts_with(b"\r\n"),
            "delimiter not followed by CRLF at {pos}"
        );
        pos += 2;
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let (n, hs) = match httparse::parse_headers(&body[pos..], &mut slots) {
            Ok(httparse::Status::Complete(x)) => x,
            other => panic!("bad part head at {pos}: {other:?}"),
        };
        let headers = hs
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        pos += n;
        let end = find(body, &closing, pos).expect("part without a closing delimiter");
        parts.push(Part {
            headers,
            data: body[pos..end].to_vec(),
        });
        pos = end + closing.len();
    }
    parts
}

/// Checks a 206 answering `ranges` (inclusive (first, last) pairs, in the
/// order asked) of `file`: one range as a plain body with Content-Range,
/// several as multipart/byteranges whose every part is checked.
fn check_partial(
    what: &str,
    status: u16,
    header: &dyn Fn(&str) -> String,
    body: &[u8],
    file: &[u8],
    ctype: &str,
    ranges: &[(u64, u64)],
) {
    let len = file.len() as u64;
    assert_eq!(status, 206, "{what}");
    assert_eq!(
        header("content-length"),
        body.len().to_string(),
        "{what}: Content-Length"
    );
    if let [(first, last)] = ranges {
        assert_eq!(
            header("content-range"),
            format!("bytes {first}-{last}/{len}"),
            "{what}"
        );
        assert!(
            body == &file[*first as usize..=*last as usize],
            "{what}: body differs from file[{first}..={last}]"
        );
        assert_eq!(header("content-type"), ctype, "{what}: Content-Type");
        return;
    }
    assert_eq!(
        header("content-range"),
        "",
        "{what}: a multipart 206 has no top-level Content-Range"
    );
    let parts = multipart_parts(body, &boundary_of(&header("content-type")));
    assert_eq!(parts.len(), ranges.len(), "{what}: number of parts");
    for (i, (p, (first, last))) in parts.iter().zip(ranges).enumerate() {
        let (a, b, l) = content_range(p.header("content-range"));
        assert_eq!(
            (a, b, l),
            (*first, *last, len),
            "{what}: part {i} Content-Range"
        );
        assert!(
            p.data == file[a as usize..=b as usize],
            "{what}: part {i} bytes differ from file[{a}..={b}]"
        );
        assert_eq!(
            p.header("content-type"),
            ctype,
            "{what}: part {i} Content-Type"
        );
    }
}

fn hyper_header(h: &HeaderMap) -> impl Fn(&str) -> String + '_ {
    move |n| hv(h, n).to_string()
}

fn raw_header(r: &RawResponse) -> impl Fn(&str) -> String + '_ {
    move |n| r.header(n).unwrap_or("").to_string()
}

// ---------------------------------------------------------------- GET, HEAD

/// Content-Type values accepted for each fixture file, compared
/// case-insensitively without spaces.
fn expected_types() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("/empty.txt", &["text/plain;charset=utf-8"]),
        ("/a.txt", &["text/plain;charset=utf-8"]),
        ("/big.bin", &["application/octet-stream"]),
        ("/page.html", &["text/html;charset=utf-8"]),
        ("/style.css", &["text/css;charset=utf-8"]),
        (
            "/app.js",
            &[
                "text/javascript;charset=utf-8",
                "application/javascript;charset=utf-8",
            ],
        ),
        ("/data.json", &["application/json;charset=utf-8"]),
        ("/blob.zzq", &["application/octet-stream"]),
        ("/noext", &["application/octet-stream"]),
        ("/image.png", &["image/png"]),
    ]
}

#[test]
fn get_serves_files_of_every_size_with_the_right_headers() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (path, types) in expected_types() {
            let want = fs::read(fx.path().join(&path[1..])).unwrap();
            let (status, h, body) = hget(&rt, &s, path, &[]);
            assert_eq!(status, 200, "{b} GET {path}");
            assert!(
                body == want,
                "{b} GET {path}: body of {} bytes differs from the file's {}",
                body.len(),
                want.len()
            );
            assert_eq!(
                hv(&h, "content-length"),
                want.len().to_string(),
                "{b} GET {path}: Content-Length"
            );
            let ct = hv(&h, "content-type").to_ascii_lowercase().replace(' ', "");
            assert!(
                types.contains(&ct.as_str()),
                "{b} GET {path}: Content-Type {ct:?}, want one of {types:?}"
            );
            let etag = hv(&h, "etag");
            assert!(
                etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
                "{b} GET {path}: ETag {etag:?} is not a strong entity-tag"
            );
            assert_eq!(
                hv(&h, "last-modified"),
                last_modified(),
                "{b} GET {path}: Last-Modified"
            );
            assert_eq!(
                hv(&h, "accept-ranges"),
                "bytes",
                "{b} GET {path}: Accept-Ranges"
            );
            assert!(!hv(&h, "server").is_empty(), "{b} GET {path}: no Server");
            let date = httpdate::parse_http_date(hv(&h, "date"))
                .unwrap_or_else(|e| panic!("{b} GET {path}: Date {:?}: {e}", hv(&h, "date")));
            let skew = match date.duration_since(SystemTime::now()) {
                Ok(d) => d,
                Err(e) => e.duration(),
            };
            assert!(
                skew < Duration::from_secs(120),
                "{b} GET {path}: Date {date:?} is not now"
            );
        }
        // The ETag changes with the file.
        let (_, h1, _) = hget(&rt, &s, "/a.txt", &[]);
        let (_, h2, _) = hget(&rt, &s, "/digits.txt", &[]);
        assert_ne!(
            hv(&h1, "etag"),
            hv(&h2, "etag"),
            "{b}: two files share an ETag"
        );
        // The same 3 MiB body over raw TCP, framed by Content-Length.
        let r = one(&s, "GET", "/big.bin", &[]);
        assert_eq!(r.status, 200, "{b}");
        assert!(r.body == fx.big, "{b}: raw GET /big.bin body differs");
    }
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let fx = Fixture::new();
    let rt = rt();
    let paths = [
        "/a.txt",
        "/empty.txt",
        "/big.bin",
        "/data.json",
        "/list/",
        "/sub",
        "/sub/",
        "/missing.txt",
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for path in paths {
            let (gs, gh, gbody) = hget(&rt, &s, path, &[]);
            let (hs, hh, hbody) = hreq(&rt, &s, Method::HEAD, path, &[]);
            assert_eq!(hs, gs, "{b} HEAD {path}: status");
            assert!(
                hbody.is_empty(),
                "{b} HEAD {path}: {} body bytes",
                hbody.len()
            );
            // A listing is never built for HEAD (it can be megabytes of
            // readdir and stats): its HEAD carries every field of GET's but
            // the Content-Length, which only building the page would give
            // (RFC 9110 9.3.2 allows leaving it out).
            let listing = path == "/list/";
            let fields = |h: &HeaderMap, drop_length: bool| {
                let mut v: Vec<(String, String)> = h
                    .iter()
                    .filter(|(n, _)| n.as_str() != "date")
                    .filter(|(n, _)| !(drop_length && n.as_str() == "content-length"))
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(
                fields(&hh, false),
                fields(&gh, listing),
                "{b} HEAD {path}: headers differ from GET's"
            );
            assert!(!hv(&hh, "date").is_empty(), "{b} HEAD {path}: no Date");
            if listing {
                assert!(
                    hh.get("content-length").is_none(),
                    "{b} HEAD {path}: a listing's HEAD must not build the page for its length"
                );
            } else {
                assert_eq!(
                    hv(&hh, "content-length"),
                    gbody.len().to_string(),
                    "{b} HEAD {path}: Content-Length"
                );
            }
        }
        // Raw: no body bytes follow a HEAD response, whatever its Content-Length
        // says, so the next pipelined response parses right after the head.
        let mut pipeline = String::new();
        for path in ["/big.bin", "/a.txt", "/list/", "/sub", "/missing.txt"] {
            pipeline.push_str(&request_head("HEAD", path, &[]));
        }
        pipeline.push_str(&request_head(
            "GET",
            "/digits.txt",
            &[("Connection", "close")],
        ));
        let out = s.raw(pipeline.as_bytes());
        let r = parse_responses(&out, &[true, true, true, true, true, false]);
        assert_eq!(r.len(), 6, "{b}: responses to 5 HEADs and a GET");
        assert_eq!(
            r[0].header("content-length"),
            Some(BIG_LEN.to_string().as_str()),
            "{b}"
        );
        assert_eq!(
            (r[1].status, r[2].status, r[3].status, r[4].status),
            (200, 200, 301, 404),
            "{b}"
        );
        assert_eq!(
            (r[5].status, r[5].body.as_slice()),
            (200, DIGITS),
            "{b}: GET after the HEADs"
        );
    }
}

// ---------------------------------------------------------------- connections

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let mut c = s.connect();
        let cases: [(&str, u16, &[u8]); 6] = [
            ("/a.txt", 200, HELLO),
            ("/digits.txt", 200, DIGITS),
            ("/missing.txt", 404, b""),
            ("/big.bin", 200, &fx.big),
            ("/empty.txt", 200, b""),
            ("/a.txt", 200, HELLO),
        ];
        for (i, (path, status, body)) in cases.iter().enumerate() {
            c.write_all(request_head("GET", path, &[]).as_bytes())
                .unwrap();
            let r = read_responses(&mut c, &[false]).remove(0);
            assert_eq!(r.status, *status, "{b}: request {i} GET {path}");
            if *status == 200 {
                assert!(r.body == *body, "{b}: request {i} GET {path}: body differs");
            }
            assert!(
                !says_close(&r),
                "{b}: request {i} GET {path} closed a keep-alive connection"
            );
        }
        assert_open_and_silent(&c, &format!("{b}: idle keep-alive connection"));
        assert_eq!(
            s.metrics.accepted.load(Ordering::Relaxed),
            1,
            "{b}: one connection for six requests"
        );
        // hyper reuses its connection too.
        let got = rt.block_on(hyper_on_one_connection(
            s.addr,
            &["/a.txt", "/digits.txt", "/big.bin", "/a.txt"],
        ));
        let want: [&[u8]; 4] = [HELLO, DIGITS, &fx.big, HELLO];
        for (i, ((status, body), want)) in got.iter().zip(want).enumerate() {
            assert_eq!(*status, 200, "{b}: hyper request {i}");
            assert!(body == want, "{b}: hyper request {i}: body differs");
        }
        assert_eq!(
            s.metrics.accepted.load(Ordering::Relaxed),
            2,
            "{b}: hyper used one connection for four requests"
        );
    }
}

#[test]
fn http10_closes_by_default_and_keeps_alive_when_asked() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        // `raw` fails unless the server closes the connection.
        let out = s.raw(b"GET /a.txt HTTP/1.0\r\n\r\n");
        let r = parse_responses(&out, &[false]);
        assert_eq!(r.len(), 1, "{b}");
        assert_eq!(
            (r[0].status, r[0].body.as_slice()),
            (200, HELLO),
            "{b}: HTTP/1.0 GET"
        );
        assert!(
            !r[0]
                .header("connection")
                .unwrap_or("")
                .eq_ignore_ascii_case("keep-alive"),
            "{b}: HTTP/1.0 response without keep-alive asked says keep-alive"
        );

        let mut c = s.connect();
        c.write_all(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_responses(&mut c, &[false]).remove(0);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, HELLO),
            "{b}: HTTP/1.0 keep-alive GET"
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "{b}: HTTP/1.0 keep-alive response says Connection: {:?}",
            r.header("connection")
        );
        assert_open_and_silent(&c, &format!("{b}: HTTP/1.0 keep-alive connection"));
        c.write_all(b"GET /digits.txt HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_responses(&mut c, &[false]).remove(0);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, DIGITS),
            "{b}: second HTTP/1.0 request on the connection"
        );
        let (rest, closed) = read_until_closed(&mut c);
        assert!(
            closed && rest.is_empty(),
            "{b}: HTTP/1.0 without keep-alive left open (then sent {rest:?})"
        );
    }
}

#[test]
fn connection_close_closes_after_the_response() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        // A request pipelined after the `close` one must not be answered.
        let mut both = request_head("GET", "/a.txt", &[("Connection", "close")]);
        both.push_str(&request_head("GET", "/digits.txt", &[]));
        // `raw` fails unless the server closes the connection.
        let out = s.raw(both.as_bytes());
        let r = parse_responses(&out, &[false]);
        assert_eq!(r.len(), 1, "{b}: responses after Connection: close");
        assert_eq!((r[0].status, r[0].body.as_slice()), (200, HELLO), "{b}");
        assert!(
            says_close(&r[0]),
            "{b}: response to Connection: close does not say close"
        );

        let (status, h, body) = hget(&rt, &s, "/a.txt", &[("connection", "close")]);
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, HELLO),
            "{b}: hyper Connection: close"
        );
        assert!(
            hv(&h, "connection").eq_ignore_ascii_case("close"),
            "{b}: hyper Connection: close"
        );
    }
}

#[test]
fn http11_without_host_is_400() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let out = s.raw(b"GET /a.txt HTTP/1.1\r\n\r\n");
        let r = parse_responses(&out, &[false]);
        assert_eq!(r.len(), 1, "{b}");
        assert_eq!(r[0].status, 400, "{b}: HTTP/1.1 without Host");
        assert!(r[0].body != HELLO, "{b}: the file was served without Host");
        // HTTP/1.0 needs no Host.
        let out = s.raw(b"GET /a.txt HTTP/1.0\r\n\r\n");
        assert_eq!(
            parse_responses(&out, &[false])[0].status,
            200,
            "{b}: HTTP/1.0 without Host"
        );
        // And the server still serves.
        assert_eq!(
            one(&s, "GET", "/a.txt", &[]).status,
            200,
            "{b}: after the 400"
        );
    }
}

#[test]
fn absolute_form_target_is_served() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let r = one(&s, "GET", "http://x/a.txt", &[]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, HELLO),
            "{b}: GET http://x/a.txt"
        );
        let r = one(&s, "GET", "http://x/digits.txt?q=1", &[]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, DIGITS),
            "{b}: GET http://x/digits.txt?q=1"
        );
        let r = one(&s, "HEAD", "http://x/big.bin", &[]);
        assert_eq!(r.status, 200, "{b}: HEAD http://x/big.bin");
        assert_eq!(
            r.header("content-length"),
            Some(BIG_LEN.to_string().as_str()),
            "{b}"
        );
        let r = one(&s, "GET", "http://x/missing.txt", &[]);
        assert_eq!(r.status, 404, "{b}: GET http://x/missing.txt");
    }
}

#[test]
fn pipelining_ten_requests_in_one_write() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let reqs = [
            request_head("GET", "/a.txt", &[]),
            request_head("HEAD", "/digits.txt", &[]),
            request_head("GET", "/missing.txt", &[]),
            request_head("GET", "/digits.txt", &[("Range", "bytes=0-9")]),
            request_head("GET", "/big.bin", &[("Range", "bytes=1048576-1049575")]),
            request_head("HEAD", "/big.bin", &[]),
            request_head("GET", "/sub", &[]),
            request_head("GET", "/digits.txt", &[("Range", "bytes=0-1,5-6")]),
            request_head("GET", "/big.bin", &[]),
            request_head("GET", "/empty.txt", &[("Connection", "close")]),
        ];
        let head = [
            false, true, false, false, false, true, false, false, false, false,
        ];
        let out = s.raw(reqs.concat().as_bytes());
        let r = parse_responses(&out, &head);
        assert_eq!(r.len(), 10, "{b}: 10 pipelined requests");
        let st: Vec<u16> = r.iter().map(|r| r.status).collect();
        assert_eq!(
            st,
            [200, 200, 404, 206, 206, 200, 301, 206, 200, 200],
            "{b}: statuses in order"
        );
        assert_eq!(r[0].body, HELLO, "{b}: 0");
        assert_eq!(r[1].header("content-length"), Some("36"), "{b}: 1");
        assert_eq!(r[3].body, b"0123456789", "{b}: 3");
        assert_eq!(r[3].header("content-range"), Some("bytes 0-9/36"), "{b}: 3");
        assert!(
            r[4].body == fx.big[1_048_576..1_049_576],
            "{b}: 4 range of big.bin differs"
        );
        assert_eq!(
            r[5].header("content-length"),
            Some(BIG_LEN.to_string().as_str()),
            "{b}: 5"
        );
        assert_eq!(r[6].header("location"), Some("/sub/"), "{b}: 6");
        let text = "text/plain; charset=utf-8";
        check_partial(
            &format!("{b}: 7"),
            r[7].status,
            &raw_header(&r[7]),
            &r[7].body,
            DIGITS,
            text,
            &[(0, 1), (5, 6)],
        );
        assert!(r[8].body == fx.big, "{b}: 8 big.bin differs");
        assert!(
            r[9].body.is_empty() && r[9].header("content-length") == Some("0"),
            "{b}: 9"
        );
    }
}

// ---------------------------------------------------------------- methods

#[test]
fn other_known_methods_get_405_with_allow() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
        ] {
            for path in ["/a.txt", "/", "/missing.txt"] {
                let (status, h, body) = hreq(&rt, &s, m.clone(), path, &[]);
                assert_eq!(status, 405, "{b} {m} {path}");
                let mut allow: Vec<String> = hv(&h, "allow")
                    .split(',')
                    .map(|t| t.trim().to_ascii_uppercase())
                    .collect();
                allow.sort();
                assert_eq!(
                    allow,
                    ["GET", "HEAD"],
                    "{b} {m} {path}: Allow {:?}",
                    hv(&h, "allow")
                );
                assert!(body != HELLO, "{b} {m} {path}: served the file");
            }
        }
        // And the connection goes on after a 405.
        let mut pipeline = request_head("DELETE", "/a.txt", &[]);
        pipeline.push_str(&request_head("GET", "/a.txt", &[("Connection", "close")]));
        let r = parse_responses(&s.raw(pipeline.as_bytes()), &[]);
        assert_eq!(r.len(), 2, "{b}: DELETE then GET");
        assert_eq!(
            (r[0].status, r[1].status, r[1].body.as_slice()),
            (405, 200, HELLO),
            "{b}: DELETE then GET"
        );
        assert_eq!(
            r[0].header("allow"),
            Some("GET, HEAD"),
            "{b}: raw DELETE Allow"
        );
    }
}

#[test]
fn unknown_method_is_501() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let r = one(&s, "BREW", "/a.txt", &[]);
        assert_eq!(r.status, 501, "{b}: BREW /a.txt");
        let (status, _, _) = hreq(&rt, &s, Method::from_bytes(b"BREW").unwrap(), "/a.txt", &[]);
        assert_eq!(status, 501, "{b}: hyper BREW /a.txt");
        let mut pipeline = request_head("BREW", "/pot", &[]);
        pipeline.push_str(&request_head(
            "GET",
            "/digits.txt",
            &[("Connection", "close")],
        ));
        let r = parse_responses(&s.raw(pipeline.as_bytes()), &[]);
        let got: Vec<u16> = r.iter().map(|r| r.status).collect();
        assert_eq!(got, [501, 200], "{b}: BREW then GET");
        assert_eq!(r[1].body, DIGITS, "{b}: GET after BREW");
    }
}

#[test]
fn request_bodies_are_discarded_and_framing_kept() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        // The 5-byte bodies look like the start of a request line: a server
        // that did not skip them would misparse what follows.
        for (method, status, body) in [
            ("POST", 405, &b""[..]),
            ("GET", 200, HELLO),
            ("HEAD", 200, b""),
        ] {
            let mut pipeline = request_head(method, "/a.txt", &[("Content-Length", "5")]);
            pipeline.push_str("GET /");
            pipeline.push_str(&request_head(
                "GET",
                "/digits.txt",
                &[("Connection", "close")],
            ));
            let r = parse_responses(&s.raw(pipeline.as_bytes()), &[method == "HEAD", false]);
            let got: Vec<u16> = r.iter().map(|r| r.status).collect();
            assert_eq!(got, [status, 200], "{b}: {method} with a body, then GET");
            if status == 200 {
                assert_eq!(r[0].body, body, "{b}: {method} with a body");
            }
            assert_eq!(r[1].body, DIGITS, "{b}: GET after {method} with a body");
        }
        // The body arrives in a later write than the head.
        let mut c = s.connect();
        c.write_all(request_head("POST", "/a.txt", &[("Content-Length", "10")]).as_bytes())
            .unwrap();
        // The head alone is read first (and the body waited for).
        wait_until_server_read(&c);
        c.write_all(b"0123456789").unwrap();
        c.write_all(request_head("GET", "/a.txt", &[]).as_bytes())
            .unwrap();
        let r = read_responses(&mut c, &[false, false]);
        assert_eq!(
            (r[0].status, r[1].status, r[1].body.as_slice()),
            (405, 200, HELLO),
            "{b}: body in a later write"
        );
        // Content-Length: 0 is no body at all.
        let mut pipeline = request_head("POST", "/a.txt", &[("Content-Length", "0")]);
        pipeline.push_str(&request_head("GET", "/a.txt", &[("Connection", "close")]));
        let got: Vec<u16> = parse_responses(&s.raw(pipeline.as_bytes()), &[])
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            got,
            [405, 200],
            "{b}: POST with Content-Length: 0, then GET"
        );
    }
}

// ---------------------------------------------------------------- ranges

#[test]
fn range_single_open_ended_suffix_and_clamped() {
    let fx = Fixture::new();
    let rt = rt();
    let text = "text/plain; charset=utf-8";
    let bin = "application/octet-stream";
    let big_last = BIG_LEN as u64 - 1;
    let cases: Vec<(&str, &str, u64, u64)> = vec![
        ("/digits.txt", "bytes=0-9", 0, 9),
        ("/digits.txt", "bytes=10-", 10, 35),
        ("/digits.txt", "bytes=-5", 31, 35),
        ("/digits.txt", "bytes=30-1000", 30, 35),
        ("/digits.txt", "bytes=35-35", 35, 35),
        ("/digits.txt", "bytes=-100", 0, 35),
        ("/digits.txt", "BYTES=3-4", 3, 4),
        ("/big.bin", "bytes=1000000-1000999", 1_000_000, 1_000_999),
        ("/big.bin", "bytes=3145000-", 3_145_000, big_last),
        ("/big.bin", "bytes=-70000", big_last - 69_999, big_last),
        ("/big.bin", "bytes=0-", 0, big_last),
        ("/big.bin", "bytes=4096-99999999", 4096, big_last),
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (path, range, first, last) in &cases {
            let (file, ctype) = if *path == "/big.bin" {
                (fx.big.as_slice(), bin)
            } else {
                (DIGITS, text)
            };
            let (status, h, body) = hget(&rt, &s, path, &[("range", range)]);
            let what = format!("{b} GET {path} Range: {range}");
            check_partial(
                &what,
                status.as_u16(),
                &hyper_header(&h),
                &body,
                file,
                ctype,
                &[(*first, *last)],
            );
            assert!(!hv(&h, "etag").is_empty(), "{what}: no ETag on the 206");
        }
    }
}

#[test]
fn range_multiple_is_multipart_byteranges() {
    let fx = Fixture::new();
    let rt = rt();
    let text = "text/plain; charset=utf-8";
    let bin = "application/octet-stream";
    let big_last = BIG_LEN as u64 - 1;
    let cases: Vec<(&str, &str, Spans)> = vec![
        ("/digits.txt", "bytes=0-1,5-6", vec![(0, 1), (5, 6)]),
        (
            "/digits.txt",
            "bytes=0-0,10-12,-3",
            vec![(0, 0), (10, 12), (33, 35)],
        ),
        ("/digits.txt", "bytes=20-24, 2-3", vec![(20, 24), (2, 3)]),
        (
            "/big.bin",
            "bytes=0-99,2000000-2099999,-100",
            vec![(0, 99), (2_000_000, 2_099_999), (big_last - 99, big_last)],
        ),
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (path, range, parts) in &cases {
            let (file, ctype) = if *path == "/big.bin" {
                (fx.big.as_slice(), bin)
            } else {
                (DIGITS, text)
            };
            let (status, h, body) = hget(&rt, &s, path, &[("range", range)]);
            let what = format!("{b} GET {path} Range: {range}");
            assert!(
                hv(&h, "content-type")
                    .to_ascii_lowercase()
                    .starts_with("multipart/byteranges"),
                "{what}: Content-Type {:?}",
                hv(&h, "content-type")
            );
            check_partial(
                &what,
                status.as_u16(),
                &hyper_header(&h),
                &body,
                file,
                ctype,
                parts,
            );
        }
        // Over raw TCP the Content-Length frames the multipart body exactly:
        // the next pipelined response follows it.
        let mut pipeline = request_head("GET", "/digits.txt", &[("Range", "bytes=0-1,5-6")]);
        pipeline.push_str(&request_head("GET", "/a.txt", &[("Connection", "close")]));
        let r = parse_responses(&s.raw(pipeline.as_bytes()), &[]);
        assert_eq!(r.len(), 2, "{b}");
        check_partial(
            &format!("{b} raw"),
            r[0].status,
            &raw_header(&r[0]),
            &r[0].body,
            DIGITS,
            text,
            &[(0, 1), (5, 6)],
        );
        assert_eq!(
            (r[1].status, r[1].body.as_slice()),
            (200, HELLO),
            "{b}: GET after a multipart 206"
        );
    }
}

#[test]
fn range_unsatisfiable_is_416_with_content_range() {
    let fx = Fixture::new();
    let rt = rt();
    let cases = [
        ("/digits.txt", "bytes=999999-", 36),
        ("/digits.txt", "bytes=36-", 36),
        ("/digits.txt", "bytes=40-50,60-", 36),
        ("/digits.txt", "bytes=-0", 36),
        ("/big.bin", "bytes=99999999-", BIG_LEN),
        ("/empty.txt", "bytes=0-", 0),
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (path, range, len) in cases {
            let (status, h, body) = hget(&rt, &s, path, &[("range", range)]);
            let what = format!("{b} GET {path} Range: {range}");
            assert_eq!(status, 416, "{what}");
            assert_eq!(
                hv(&h, "content-range"),
                format!("bytes */{len}"),
                "{what}: Content-Range"
            );
            assert!(
                body.len() < 200 && !body.starts_with(b"0123"),
                "{what}: file bytes in a 416"
            );
        }
        // The connection stays usable after a 416.
        let mut pipeline = request_head("GET", "/digits.txt", &[("Range", "bytes=999999-")]);
        pipeline.push_str(&request_head("GET", "/a.txt", &[("Connection", "close")]));
        let r = parse_responses(&s.raw(pipeline.as_bytes()), &[]);
        let got: Vec<u16> = r.iter().map(|r| r.status).collect();
        assert_eq!(got, [416, 200], "{b}: 416 then GET");
        assert_eq!(r[1].body, HELLO, "{b}");
    }
}

#[test]
fn range_with_invalid_syntax_serves_the_whole_file() {
    let fx = Fixture::new();
    let rt = rt();
    let invalid = [
        "bytes=abc",
        "bytes=5-1",
        "bytes=1-2-3",
        "bytes 0-5",
        "items=0-5",
        "bytes=",
        "bytes=-",
        "bytes=--5",
        "bytes=0x1-2",
        "bytes=1-2,x",
        "=0-5",
        "bytes=+1-2",
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for range in invalid {
            let (status, h, body) = hget(&rt, &s, "/digits.txt", &[("range", range)]);
            let what = format!("{b} GET /digits.txt Range: {range}");
            assert_eq!(status, 200, "{what}");
            assert_eq!(body, DIGITS, "{what}");
            assert_eq!(hv(&h, "content-length"), "36", "{what}");
            assert_eq!(
                hv(&h, "content-range"),
                "",
                "{what}: Content-Range on a 200"
            );
        }
    }
}

#[test]
fn overlapping_and_excessive_ranges_serve_the_whole_file() {
    let fx = Fixture::new();
    let rt = rt();
    let overlapping = vec!["0-"; 25].join(",");
    let tiny = (0..200)
        .map(|i| format!("{0}-{0}", i * 2))
        .collect::<Vec<_>>()
        .join(",");
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (name, set) in [("25 x 0-", &overlapping), ("200 one-byte ranges", &tiny)] {
            let range = format!("bytes={set}");
            let (status, h, body) = hget(&rt, &s, "/big.bin", &[("range", &range)]);
            assert_eq!(status, 200, "{b} GET /big.bin with {name}");
            assert_eq!(hv(&h, "content-length"), BIG_LEN.to_string(), "{b} {name}");
            assert!(body == fx.big, "{b} {name}: body differs");
        }
        let many = vec!["0-"; 25].join(",");
        let (status, _, body) = hget(
            &rt,
            &s,
            "/digits.txt",
            &[("range", &format!("bytes={many}"))],
        );
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, DIGITS),
            "{b} GET /digits.txt with 25 x 0-"
        );
    }
}

#[test]
fn range_on_head_is_ignored_or_consistent() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let mut pipeline = request_head("HEAD", "/digits.txt", &[("Range", "bytes=0-9")]);
        pipeline.push_str(&request_head(
            "HEAD",
            "/digits.txt",
            &[("Range", "bytes=0-1,5-6")],
        ));
        pipeline.push_str(&request_head(
            "HEAD",
            "/digits.txt",
            &[("Range", "bytes=999-")],
        ));
        pipeline.push_str(&request_head("GET", "/a.txt", &[("Connection", "close")]));
        let r = parse_responses(&s.raw(pipeline.as_bytes()), &[true, true, true, false]);
        assert_eq!(r.len(), 4, "{b}: three HEADs with Range and a GET");
        // RFC 9110 §14.2 defines range handling for GET only; a server that
        // nevertheless answers HEAD with 206 must describe the same 206.
        let r0 = &r[0];
        match r0.status {
            200 => {
                assert_eq!(
                    r0.header("content-length"),
                    Some("36"),
                    "{b}: HEAD Range 200"
                );
                assert_eq!(
                    r0.header("content-range"),
                    None,
                    "{b}: HEAD Range 200 with Content-Range"
                );
            }
            206 => {
                assert_eq!(
                    r0.header("content-length"),
                    Some("10"),
                    "{b}: HEAD Range 206"
                );
                assert_eq!(
                    r0.header("content-range"),
                    Some("bytes 0-9/36"),
                    "{b}: HEAD Range 206"
                );
            }
            other => panic!("{b}: HEAD with Range: bytes=0-9 got {other}"),
        }
        assert!(
            matches!(r[1].status, 200 | 206),
            "{b}: HEAD with two ranges got {}",
            r[1].status
        );
        assert!(
            matches!(r[2].status, 200 | 416),
            "{b}: HEAD with unsatisfiable range got {}",
            r[2].status
        );
        assert_eq!(
            (r[3].status, r[3].body.as_slice()),
            (200, HELLO),
            "{b}: GET after HEADs with Range"
        );
    }
}

#[test]
fn if_range_honours_the_range_only_for_the_current_validator() {
    let fx = Fixture::new();
    let rt = rt();
    let lm = last_modified();
    let older = days_from_mtime(-1);
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let (_, h, _) = hget(&rt, &s, "/digits.txt", &[]);
        let etag = hv(&h, "etag").to_string();
        let weak = format!("W/{etag}");
        let cases: [(&str, &str, u16); 6] = [
            ("matching ETag", &etag, 206),
            ("stale ETag", "\"stale\"", 200),
            ("weak ETag", &weak, 200),
            ("matching Last-Modified", &lm, 206),
            ("older date", &older, 200),
            ("garbage", "yesterday", 200),
        ];
        for (name, value, want) in cases {
            let (status, h, body) = hget(
                &rt,
                &s,
                "/digits.txt",
                &[("range", "bytes=0-9"), ("if-range", value)],
            );
            let what = format!("{b} If-Range {name} ({value})");
            assert_eq!(status, want, "{what}");
            if want == 206 {
                assert_eq!(body, b"0123456789", "{what}");
                assert_eq!(hv(&h, "content-range"), "bytes 0-9/36", "{what}");
            } else {
                assert_eq!(body, DIGITS, "{what}");
            }
        }
    }
}

// ---------------------------------------------------------------- preconditions

/// The ETag of `path`, from a GET.
fn etag_of(rt: &tokio::runtime::Runtime, s: &TestServer, path: &str) -> String {
    let (_, h, _) = hget(rt, s, path, &[]);
    hv(&h, "etag").to_string()
}

#[test]
fn if_none_match_gives_304() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let etag = etag_of(&rt, &s, "/digits.txt");
        let list = format!("\"nope\", {etag}");
        let weak = format!("W/{etag}");
        for (value, want) in [
            (etag.as_str(), 304),
            (&list, 304),
            (&weak, 304),
            ("*", 304),
            ("\"nope\"", 200),
        ] {
            let (status, h, body) = hget(&rt, &s, "/digits.txt", &[("if-none-match", value)]);
            let what = format!("{b} If-None-Match: {value}");
            assert_eq!(status, want, "{what}");
            if want == 304 {
                assert!(body.is_empty(), "{what}: body on a 304");
                assert_eq!(hv(&h, "etag"), etag, "{what}: ETag on the 304");
                assert!(!hv(&h, "date").is_empty(), "{what}: no Date on the 304");
            } else {
                assert_eq!(body, DIGITS, "{what}");
            }
        }
        let (status, _, _) = hreq(
            &rt,
            &s,
            Method::HEAD,
            "/digits.txt",
            &[("if-none-match", &etag)],
        );
        assert_eq!(status, 304, "{b} HEAD If-None-Match");
        // Preconditions come before Range (RFC 9110 §13.2.2).
        let (status, _, body) = hget(
            &rt,
            &s,
            "/digits.txt",
            &[("if-none-match", &etag), ("range", "bytes=0-9")],
        );
        assert_eq!(
            (status.as_u16(), body.len()),
            (304, 0),
            "{b} If-None-Match with Range"
        );
        // No body bytes follow a 304 on the wire.
        let mut pipeline = request_head("GET", "/digits.txt", &[("If-None-Match", &etag)]);
        pipeline.push_str(&request_head("GET", "/a.txt", &[("Connection", "close")]));
        let r = parse_responses(&s.raw(pipeline.as_bytes()), &[]);
        let got: Vec<u16> = r.iter().map(|r| r.status).collect();
        assert_eq!(got, [304, 200], "{b}: 304 then GET");
        assert_eq!(r[1].body, HELLO, "{b}: GET after a 304");
    }
}

#[test]
fn if_modified_since() {
    let fx = Fixture::new();
    let rt = rt();
    let lm = last_modified();
    let older = days_from_mtime(-1);
    let later = days_from_mtime(1);
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let etag = etag_of(&rt, &s, "/digits.txt");
        let cases: [Case; 8] = [
            (&[("if-modified-since", &lm)], 304, "IMS = Last-Modified"),
            (
                &[("if-modified-since", &later)],
                304,
                "IMS after Last-Modified",
            ),
            (
                &[("if-modified-since", &older)],
                200,
                "IMS before Last-Modified",
            ),
            (
                &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
                200,
                "IMS in 1994 (RFC 850 form)",
            ),
            (&[("if-modified-since", "yesterday")], 200, "invalid IMS"),
            (
                &[("if-modified-since", "Sun, 32 Foo 2020 99:99:99 GMT")],
                200,
                "invalid IMS date",
            ),
            (
                &[("if-none-match", "\"nope\""), ("if-modified-since", &lm)],
                200,
                "If-None-Match present: IMS ignored",
            ),
            (
                &[("if-none-match", &etag), ("if-modified-since", &older)],
                304,
                "If-None-Match matches, IMS older",
            ),
        ];
        for (headers, want, name) in cases {
            let (status, _, body) = hget(&rt, &s, "/digits.txt", headers);
            assert_eq!(status, want, "{b} {name}: {headers:?}");
            if want == 200 {
                assert_eq!(body, DIGITS, "{b} {name}");
            } else {
                assert!(body.is_empty(), "{b} {name}: body on a 304");
            }
        }
        let (status, _, _) = hreq(
            &rt,
            &s,
            Method::HEAD,
            "/digits.txt",
            &[("if-modified-since", &lm)],
        );
        assert_eq!(status, 304, "{b} HEAD If-Modified-Since = Last-Modified");
    }
}

#[test]
fn if_match_and_if_unmodified_since_give_412() {
    let fx = Fixture::new();
    let rt = rt();
    let lm = last_modified();
    let older = days_from_mtime(-1);
    let later = days_from_mtime(1);
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let etag = etag_of(&rt, &s, "/digits.txt");
        let weak = format!("W/{etag}");
        let list = format!("\"nope\", {etag}");
        let cases: [Case; 11] = [
            (&[("if-match", "\"nope\"")], 412, "If-Match wrong"),
            (&[("if-match", "*")], 200, "If-Match *"),
            (&[("if-match", &etag)], 200, "If-Match right"),
            (
                &[("if-match", &list)],
                200,
                "If-Match list with the right one",
            ),
            (
                &[("if-match", &weak)],
                412,
                "If-Match weak (strong comparison)",
            ),
            (
                &[("if-unmodified-since", &older)],
                412,
                "IUS before Last-Modified",
            ),
            (&[("if-unmodified-since", &lm)], 200, "IUS = Last-Modified"),
            (
                &[("if-unmodified-since", &later)],
                200,
                "IUS after Last-Modified",
            ),
            (&[("if-unmodified-since", "not a date")], 200, "invalid IUS"),
            (
                &[("if-match", &etag), ("if-unmodified-since", &older)],
                200,
                "If-Match present: IUS ignored",
            ),
            (
                &[("if-match", "\"nope\""), ("if-none-match", &etag)],
                412,
                "If-Match evaluated before If-None-Match",
            ),
        ];
        for (headers, want, name) in cases {
            let (status, _, body) = hget(&rt, &s, "/digits.txt", headers);
            assert_eq!(status, want, "{b} {name}: {headers:?}");
            if want == 200 {
                assert_eq!(body, DIGITS, "{b} {name}");
            } else {
                assert!(body != DIGITS, "{b} {name}: the file was sent with a 412");
            }
        }
        let (status, _, _) = hreq(
            &rt,
            &s,
            Method::HEAD,
            "/digits.txt",
            &[("if-match", "\"nope\"")],
        );
        assert_eq!(status, 412, "{b} HEAD If-Match wrong");
    }
}

#[test]
fn preconditions_and_ranges_are_ignored_when_the_answer_is_not_2xx() {
    // RFC 9110 §13.2.1: preconditions are ignored when the response without
    // them would not be 2xx (or 412); Range only ever applies to a 200.
    let fx = Fixture::new();
    let rt = rt();
    let cases: [(&str, (&str, &str), u16); 7] = [
        ("/missing.txt", ("if-match", "*"), 404),
        ("/missing.txt", ("if-none-match", "*"), 404),
        ("/missing.txt", ("range", "bytes=0-1"), 404),
        ("/sub", ("if-none-match", "*"), 301),
        ("/sub", ("if-match", "\"nope\""), 301),
        ("/.secret", ("if-none-match", "*"), 404),
        ("/list/", ("range", "bytes=0-1"), 200),
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (path, header, want) in cases {
            let (status, _, body) = hget(&rt, &s, path, &[header]);
            assert_eq!(status, want, "{b} GET {path} with {header:?}");
            if path == "/list/" {
                assert!(
                    String::from_utf8_lossy(&body).contains("aaa.txt"),
                    "{b} GET /list/ with Range: not the whole listing"
                );
            }
        }
        let (status, _, _) = hreq(&rt, &s, Method::POST, "/sub", &[]);
        assert_eq!(status, 405, "{b} POST /sub");
    }
}

// ---------------------------------------------------------------- directories

/// The path part of a Location value (absolute URLs allowed).
fn location_path(loc: &str) -> &str {
    match loc.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => loc,
    }
}

#[test]
fn directory_without_slash_redirects_with_query_kept() {
    let fx = Fixture::new();
    let rt = rt();
    let cases = [
        ("/sub", "/sub/"),
        ("/sub?x=1", "/sub/?x=1"),
        ("/list?a=1&b=2", "/list/?a=1&b=2"),
        ("/list/zdir", "/list/zdir/"),
        ("/list/sp%20ace", "/list/sp%20ace/"),
        // The encoded `?` is part of the name and must stay encoded.
        ("/list/q%3Fdir?y=2", "/list/q%3Fdir/?y=2"),
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (target, want) in cases {
            let (status, h, _) = hget(&rt, &s, target, &[]);
            assert_eq!(status, 301, "{b} GET {target}");
            assert_eq!(
                location_path(hv(&h, "location")),
                want,
                "{b} GET {target}: Location"
            );
            let (status, h, body) = hreq(&rt, &s, Method::HEAD, target, &[]);
            assert_eq!((status.as_u16(), body.len()), (301, 0), "{b} HEAD {target}");
            assert_eq!(
                location_path(hv(&h, "location")),
                want,
                "{b} HEAD {target}: Location"
            );
            // The Location leads to the directory.
            let (status, _, _) = hget(&rt, &s, location_path(hv(&h, "location")), &[]);
            assert_eq!(status, 200, "{b} GET {want} (the redirect target)");
        }
    }
}

#[test]
fn directory_with_index_html_serves_it() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let (status, h, body) = hget(&rt, &s, "/sub/", &[]);
        assert_eq!(status, 200, "{b} GET /sub/");
        assert_eq!(body, INDEX, "{b} GET /sub/");
        assert_eq!(
            hv(&h, "content-type").replace(' ', "").to_ascii_lowercase(),
            "text/html;charset=utf-8",
            "{b}"
        );
        let (status, _, body) = hget(&rt, &s, "/sub/index.html", &[]);
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, INDEX),
            "{b} GET /sub/index.html"
        );
        let (status, _, body) = hget(&rt, &s, "/sub/?x=1", &[]);
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, INDEX),
            "{b} GET /sub/?x=1"
        );
        // With listings off, an index is still served.
        let s = TestServer::start(b, fx.path(), |s| s.listing = false);
        let (status, _, body) = hget(&rt, &s, "/sub/", &[]);
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, INDEX),
            "{b} GET /sub/ with listing off"
        );
    }
}

/// Every `href="…"` in `html`, HTML entities decoded.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| {
            rest.split('"')
                .next()
                .unwrap()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

#[test]
fn directory_listing_escapes_encodes_and_lists_directories_first() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        let (status, h, body) = hget(&rt, &s, "/list/", &[]);
        assert_eq!(status, 200, "{b} GET /list/");
        assert!(
            hv(&h, "content-type")
                .to_ascii_lowercase()
                .starts_with("text/html"),
            "{b}: listing Content-Type"
        );
        let html = String::from_utf8(body).unwrap();
        assert!(
            !html.contains("a<b>"),
            "{b}: unescaped name in the listing:\n{html}"
        );
        assert!(
            html.contains("a&lt;b&gt;&amp;c.txt"),
            "{b}: escaped name missing:\n{html}"
        );
        let links = hrefs(&html);
        for name in ODD_NAMES.iter().chain(&["aaa.txt"]) {
            let href = links
                .iter()
                .find(|h| percent_decode(h).ends_with(name.as_bytes()))
                .unwrap_or_else(|| panic!("{b}: no link to {name:?} in {links:?}"));
            assert!(
                !href.contains([' ', '#', '<', '>', '"', '&']),
                "{b}: link {href:?} to {name:?} is not percent-encoded"
            );
            let bytes = href.as_bytes();
            for (i, _) in href.match_indices('%') {
                assert!(
                    bytes.len() > i + 2
                        && bytes[i + 1].is_ascii_hexdigit()
                        && bytes[i + 2].is_ascii_hexdigit(),
                    "{b}: stray % in link {href:?}"
                );
            }
            // The link leads to the file.
            let target = if href.starts_with('/') {
                href.clone()
            } else {
                format!("/list/{href}")
            };
            let (status, _, body) = hget(&rt, &s, &target, &[]);
            assert_eq!(status, 200, "{b}: following {target:?}");
            let want = fs::read(fx.path().join("list").join(name)).unwrap();
            assert_eq!(body, want, "{b}: following {target:?}");
        }
        let dir = html
            .find("zdir/")
            .unwrap_or_else(|| panic!("{b}: zdir/ not listed:\n{html}"));
        let file = html.find("aaa.txt").unwrap();
        assert!(dir < file, "{b}: directories are not listed first:\n{html}");
        let (status, _, body) = hget(&rt, &s, "/", &[]);
        assert_eq!(status, 200, "{b} GET / (no index.html)");
        let html = String::from_utf8(body).unwrap();
        for name in ["digits.txt", "big.bin", "sub/", "list/"] {
            assert!(
                html.contains(name),
                "{b}: {name} missing from the root listing"
            );
        }
        // Each file's row shows its size in bytes and its modification year.
        let at = html.rfind("digits.txt").unwrap();
        let row = &html[at..html[at..].find("</tr>").map_or(html.len(), |i| at + i)];
        assert!(
            row.contains("36") && row.contains("2020"),
            "{b}: no size or date in the row {row:?}"
        );
    }
}

#[test]
fn directory_listing_off_is_403() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |s| s.listing = false);
        for path in ["/list/", "/", "/list/zdir/"] {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(status, 403, "{b} GET {path} with listing off");
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains("aaa.txt") && !text.contains("inner.txt"),
                "{b} {path}: listing leaked"
            );
        }
        let (status, _, body) = hget(&rt, &s, "/list/aaa.txt", &[]);
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, &b"aaa\n"[..]),
            "{b}: files still served"
        );
    }
}

#[test]
fn file_with_trailing_slash_is_404() {
    let fx = Fixture::new();
    let rt = rt();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for path in ["/a.txt/", "/sub/index.html/", "/big.bin/"] {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(status, 404, "{b} GET {path}");
            assert!(
                body != HELLO && body.len() < 1000,
                "{b} GET {path}: file bytes served"
            );
        }
    }
}

// ---------------------------------------------------------------- hidden files, symlinks

#[test]
fn hidden_files_are_404_unless_shown() {
    let fx = Fixture::new();
    let rt = rt();
    let hidden: [(&str, &[u8]); 4] = [
        ("/.secret", b"top secret\n"),
        ("/.git/config", b"[core]\n"),
        ("/%2esecret", b"top secret\n"),
        ("/list/.hidden.txt", b"hidden\n"),
    ];
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |_| {});
        for (path, content) in hidden {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(status, 404, "{b} GET {path}");
            assert!(body != content, "{b} GET {path}: hidden file served");
        }
        let (status, _, _) = hget(&rt, &s, "/.git/", &[]);
        assert_eq!(status, 404, "{b} GET /.git/");
        for dir in ["/", "/list/"] {
            let (_, _, body) = hget(&rt, &s, dir, &[]);
            let html = String::from_utf8(body).unwrap();
            for name in [".secret", ".git", ".hidden.txt"] {
                assert!(!html.contains(name), "{b}: {name} in the listing of {dir}");
            }
        }

        let s = TestServer::start(b, fx.path(), |s| s.show_hidden = true);
        for (path, content) in hidden {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(
                (status.as_u16(), body.as_slice()),
                (200, content),
                "{b} GET {path} with show_hidden"
            );
        }
        let (_, _, body) = hget(&rt, &s, "/", &[]);
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains(".secret") && html.contains(".git"),
            "{b}: show_hidden listing lacks dotfiles"
        );
    }
}

#[test]
fn relative_symlinks_inside_are_served_and_others_refused_unless_followed() {
    let fx = Fixture::new();
    let outside = TempDir::new();
    fs::write(outside.path().join("outside.txt"), OUTSIDE_MARKER).unwrap();
    let root = fx.path();
    symlink("a.txt", root.join("link.txt")).unwrap();
    symlink(root.join("digits.txt"), root.join("abslink.txt")).unwrap();
    symlink("sub", root.join("linkdir")).unwrap();
    symlink(outside.path().join("outside.txt"), root.join("out.txt")).unwrap();
    symlink(outside.path(), root.join("outdir")).unwrap();
    let up = Path::new("..")
        .join(outside.path().file_name().unwrap())
        .join("outside.txt");
    symlink(&up, root.join("up.txt")).unwrap();
    let rt = rt();
    let outward = ["/out.txt", "/outdir/outside.txt", "/up.txt"];
    for b in backends() {
        let s = TestServer::start(b, root, |_| {});
        let inside: [(&str, &[u8]); 2] = [("/link.txt", HELLO), ("/linkdir/", INDEX)];
        for (path, want) in inside {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(
                (status.as_u16(), body.as_slice()),
                (200, want),
                "{b} GET {path} (symlink inside the root)"
            );
        }
        for path in outward {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(status, 403, "{b} GET {path} (symlink out of the root)");
            assert!(
                !body
                    .windows(OUTSIDE_MARKER.len())
                    .any(|w| w == OUTSIDE_MARKER),
                "{b} {path}: outside bytes"
            );
        }
        // RESOLVE_BENEATH counts every absolute symlink as leaving the root,
        // even one that points back inside.
        let (status, _, _) = hget(&rt, &s, "/abslink.txt", &[]);
        assert_eq!(status, 403, "{b} GET /abslink.txt (absolute symlink)");
        let s = TestServer::start(b, root, |s| s.follow_symlinks = true);
        for path in outward {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(
                (status.as_u16(), body.as_slice()),
                (200, OUTSIDE_MARKER),
                "{b} GET {path} with follow_symlinks"
            );
        }
        for (path, want) in [("/link.txt", HELLO), ("/abslink.txt", DIGITS)] {
            let (status, _, body) = hget(&rt, &s, path, &[]);
            assert_eq!(
                (status.as_u16(), body.as_slice()),
                (200, want),
                "{b} GET {path} with follow_symlinks"
            );
        }
    }
}

// ---------------------------------------------------------------- metrics

/// `name{labels}` → value, from Prometheus text.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sample(all: &[(String, f64)], key: &str) -> f64 {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {key}"))
}

#[test]
fn metrics_count_responses_bytes_and_syscalls() {
    let fx = Fixture::new();
    for b in backends() {
        let s = TestServer::start(b, fx.path(), |s| {
            s.metrics = Some("127.0.0.1:0".parse().unwrap())
        });
        let maddr = s.metrics_addr.expect("metrics address");
        // `one` reads to EOF, which the server sends only after counting
        // the response.
        for _ in 0..3 {
            assert_eq!(one(&s, "GET", "/a.txt", &[]).body, HELLO, "{b}");
        }
        assert_eq!(one(&s, "GET", "/big.bin", &[]).status, 200, "{b}");
        assert_eq!(
            one(&s, "GET", "/digits.txt", &[("Range", "bytes=0-9")]).status,
            206,
            "{b}"
        );
        assert_eq!(one(&s, "GET", "/missing.txt", &[]).status, 404, "{b}");
        let served = (3 * HELLO.len() + BIG_LEN + 10) as f64;

        let text = scrape_metrics(maddr);
        let all = samples(&text);
        let what = |k: &str| format!("{b}: {k} in\n{text}");
        for (status, want) in [("200", 4.0), ("206", 1.0), ("404", 1.0)] {
            let key = format!("zcserve_responses_total{{status=\"{status}\"}}");
            assert_eq!(sample(&all, &key), want, "{}", what(&key));
        }
        let key = format!("zcserve_backend_body_bytes_total{{backend=\"{b}\"}}");
        assert!(
            sample(&all, &key) >= served,
            "{}: want >= {served}",
            what(&key)
        );
        // Whatever the backend, each of the five responses with a body
        // took at least one system call of its own.
        let prefix = format!("zcserve_backend_syscalls_total{{backend=\"{b}\",syscall=");
        let syscalls: f64 = all
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum();
        assert!(
            syscalls >= 5.0,
            "{b}: {syscalls} system calls counted for 5 bodies in\n{text}"
        );
        assert_eq!(s.metrics.responses(200), 4, "{b}: in-process counter");
    }
}
