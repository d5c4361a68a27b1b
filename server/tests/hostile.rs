//! Hostile clients, for every backend: a corpus of path-traversal request
//! targets (none may reveal a byte of the marker files placed outside the
//! root or in a hidden directory), a corpus of malformed requests (each gets
//! its own clear status and a closed connection, never a hang or a 5xx other
//! than 501/505), 500 slow-loris connections that must not delay a new
//! client, and a file truncated in the middle of a download. After every
//! hostile request a fresh connection must still get a normal 200.
mod common;
use common::*;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The content of the one ordinary file every test asks for afterwards.
const A_TXT: &[u8] = b"hello from a.txt\n";
/// A request for it that closes the connection after the response.
const GET_A: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// What one request on a fresh connection got back.
struct Reply {
    /// Every byte received.
    bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset) before the socket's
    /// read timeout.
    ended: bool,
    /// From connecting to the end (or the timeout).
    elapsed: Duration,
}

/// Sends `request` on a new connection and reads until the server closes
/// it or the 10 s read timeout passes.
fn exchange(s: &TestServer, request: &[u8]) -> Reply {
    let started = Instant::now();
    let mut c = s.connect();
    // The server may answer and close before taking every byte (431 for a
    // huge head); a failed write is not the test's business.
    let _ = c.write_all(request);
    let (bytes, ended) = read_until_end(&mut c);
    Reply {
        bytes,
        ended,
        elapsed: started.elapsed(),
    }
}

/// Reads until EOF or reset (`ended` true) or the read timeout (false).
fn read_until_end(c: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match c.read_r(&mut buf) {
            Ok(0) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (bytes, false);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (bytes, true),
        }
    }
}

/// The status and header fields of the response at the start of `bytes`.
fn head_of(bytes: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut slots);
    match r.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => Some((
            r.code?,
            r.headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        )),
        _ => None,
    }
}

/// The first bytes of `bytes`, printable, for assertion messages.
fn show(bytes: &[u8]) -> String {
    format!(
        "{:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(240)])
    )
}

/// A short printable form of a long request, for assertion messages.
fn brief(bytes: &[u8]) -> String {
    if bytes.len() <= 160 {
        show(bytes)
    } else {
        format!("{} … ({} bytes)", show(&bytes[..120]), bytes.len())
    }
}

/// A fresh connection gets `/a.txt` with 200 and its exact bytes.
fn assert_still_serves(s: &TestServer, b: &str, after: &str) {
    let reply = exchange(s, GET_A);
    assert!(
        reply.ended,
        "{b}: after {after}: the normal GET did not finish in 10 s"
    );
    let head = head_of(&reply.bytes);
    assert!(
        matches!(head, Some((200, _))),
        "{b}: after {after}: the normal GET got {}",
        show(&reply.bytes)
    );
    let r = parse_responses(&reply.bytes, &[]);
    assert_eq!(r.len(), 1, "{b}: after {after}: one response expected");
    assert_eq!(
        r[0].body, A_TXT,
        "{b}: after {after}: wrong body for /a.txt"
    );
}

/// A marker nobody could guess, so finding it in a response can only mean
/// the file holding it was served.
fn unique_marker(tag: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("ZC-{tag}-{a:016x}{:016x}", h.finish())
}

// ---------------------------------------------------------------------------
// 1. Traversal corpus
// ---------------------------------------------------------------------------

/// The traversal fixture:
///
/// ```text
/// tmp/secret.txt            MARKER (outside the root)
/// tmp/etc/passwd            root:x:0:0:MARKER (a passwd outside the root)
/// tmp/root-evil/secret.txt  MARKER (a sibling whose name extends the root's)
/// tmp/root/                 the served root
///   a.txt, sub/file.txt
///   sub/uplink  -> ../a.txt               (stays inside: served)
///   sub/escape  -> ../../secret.txt       (leaves: 403)
///   inlink.txt  -> a.txt                  (inside: served)
///   absin.txt   -> /abs/tmp/root/a.txt    (absolute: 403, RESOLVE_BENEATH refuses every absolute link)
///   link.txt    -> ../secret.txt          (leaves: 403)
///   out         -> ..                     (directory outside: 403)
///   abs         -> /abs/tmp               (absolute, outside: 403)
///   evil        -> ../root-evil           (prefix trick: 403)
///   .hidden/file                          HIDDEN_MARKER (dot-dir: 404)
///   .env                                  HIDDEN_MARKER (dotfile: 404)
/// ```
struct Fixture {
    tmp: TempDir,
    marker: String,
    hidden_marker: String,
}

impl Fixture {
    fn new() -> Fixture {
        use std::os::unix::fs::symlink;
        let tmp = TempDir::new();
        let marker = unique_marker("OUTSIDE");
        let hidden_marker = unique_marker("HIDDEN");
        let t = tmp.path().canonicalize().unwrap();
        let root = t.join("root");
        let w = |p: &Path, data: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        w(&t.join("secret.txt"), &marker);
        w(
            &t.join("etc/passwd"),
            &format!("root:x:0:0:{marker}:/root:/bin/sh\n"),
        );
        w(&t.join("root-evil/secret.txt"), &marker);
        w(&root.join("a.txt"), std::str::from_utf8(A_TXT).unwrap());
        w(&root.join("sub/file.txt"), "sub file\n");
        w(&root.join(".hidden/file"), &hidden_marker);
        w(&root.join(".env"), &hidden_marker);
        symlink("../a.txt", root.join("sub/uplink")).unwrap();
        symlink("../../secret.txt", root.join("sub/escape")).unwrap();
        symlink("a.txt", root.join("inlink.txt")).unwrap();
        symlink(root.join("a.txt"), root.join("absin.txt")).unwrap();
        symlink("../secret.txt", root.join("link.txt")).unwrap();
        symlink("..", root.join("out")).unwrap();
        symlink(&t, root.join("abs")).unwrap();
        symlink("../root-evil", root.join("evil")).unwrap();
        Fixture {
            tmp,
            marker,
            hidden_marker,
        }
    }

    fn root(&self) -> std::path::PathBuf {
        self.tmp.path().join("root")
    }
}

/// What a traversal target must get.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Exactly this status.
    Status(u16),
    /// One of these statuses (where more than one answer is right).
    OneOf(&'static [u16]),
    /// 200 with the bytes of `/a.txt` (the target legitimately maps to it).
    ATxt,
    /// 200 with a directory listing of the root (the target maps to `/`),
    /// or one of the given refusals where refusing is also right.
    RootListing(&'static [u16]),
}

fn traversal_corpus() -> Vec<(String, Want)> {
    use Want::*;
    let mut c: Vec<(String, Want)> = [
        // Plain and encoded dot-dot.
        ("/../secret.txt", Status(400)),
        ("/..%2fsecret.txt", Status(400)),
        ("/..%2Fsecret.txt", Status(400)),
        ("/%2e%2e/secret.txt", Status(400)),
        ("/%2E%2E/secret.txt", Status(400)),
        ("/.%2e/secret.txt", Status(400)),
        ("/%2e./secret.txt", Status(400)),
        ("/%2e%2e%2fsecret.txt", Status(400)),
        ("/..", Status(400)),
        ("/%2e%2e", Status(400)),
        ("/sub/..", Status(400)),
        // Double encoding: decoded once, `%2e%2e` is a literal (missing) name.
        ("/%252e%252e/secret.txt", Status(404)),
        ("/%252e%252e%252fsecret.txt", Status(404)),
        ("/..%252fsecret.txt", Status(404)),
        ("/..%25%32%66secret.txt", Status(404)),
        // Overlong and otherwise invalid UTF-8.
        ("/%c0%ae%c0%ae/secret.txt", Status(400)),
        ("/%e0%80%ae%e0%80%ae/secret.txt", Status(400)),
        ("/%c0%2e%c0%2e/secret.txt", Status(400)),
        ("/..%c0%af..%c0%afsecret.txt", Status(400)),
        ("/%ff%fe", Status(400)),
        // Unicode look-alikes of dots are just names.
        ("/%ef%bc%8e%ef%bc%8e/secret.txt", Status(404)),
        ("/%e2%80%a5/secret.txt", Status(404)),
        // Backslashes, raw and encoded.
        ("/..\\secret.txt", Status(400)),
        ("/..%5csecret.txt", Status(400)),
        ("/%5c..%5csecret.txt", Status(400)),
        ("/%2e%2e%5csecret.txt", Status(400)),
        ("/sub\\..\\..\\secret.txt", Status(400)),
        // Dot-dot after a real directory, after empty and `.` segments.
        ("/sub/../../secret.txt", Status(400)),
        ("/sub/%2e%2e/%2e%2e/secret.txt", Status(400)),
        ("/SUB/..%2F..%2Fsecret.txt", Status(400)),
        ("/sub/../a.txt", Status(400)),
        ("//../secret.txt", Status(400)),
        ("/./../secret.txt", Status(400)),
        ("/;/../secret.txt", Status(400)),
        // Path parameters and odd dot names are plain (hidden) names.
        ("/..;/secret.txt", Status(404)),
        ("/...", Status(404)),
        ("/....//secret.txt", Status(404)),
        // NUL.
        ("/%00/../secret.txt", Status(400)),
        ("/a.txt%00.html", Status(400)),
        ("/..%00/secret.txt", Status(400)),
        ("/.%00./secret.txt", Status(400)),
        // Absolute-form.
        ("http://x/../secret.txt", Status(400)),
        ("http://x/%2e%2e/secret.txt", Status(400)),
        ("HTTP://x/%2E%2E/etc/passwd", Status(400)),
        ("http://x/out/secret.txt", Status(403)),
        ("http://x//etc/passwd", Status(404)),
        ("http:/../secret.txt", Status(400)),
        ("http://x/a.txt", ATxt),
        // Symlinks.
        ("/out/secret.txt", Status(403)),
        ("/out%2fsecret.txt", Status(403)),
        ("/out", Status(403)),
        ("/out/", Status(403)),
        ("/out/no-such-file", Status(403)),
        ("/out/root/a.txt", Status(403)),
        ("/abs/secret.txt", Status(403)),
        ("/abs/no-such-file", Status(403)),
        ("/abs/etc/passwd", Status(403)),
        ("/link.txt", Status(403)),
        ("/sub/escape", Status(403)),
        ("/evil/secret.txt", Status(403)),
        ("/inlink.txt", ATxt),
        ("/absin.txt", Status(403)),
        ("/sub/uplink", ATxt),
        // System files.
        ("/../../../../../../etc/passwd", Status(400)),
        ("/%2e%2e/%2e%2e/%2e%2e/etc/passwd", Status(400)),
        ("/../../../../proc/self/environ", Status(400)),
        ("/etc/passwd", Status(404)),
        ("//etc/passwd", Status(404)),
        ("/%2fetc%2fpasswd", Status(404)),
        // Hidden files and directories.
        ("/.hidden/file", Status(404)),
        ("/%2ehidden/file", Status(404)),
        ("/.hidden/", Status(404)),
        ("/.env", Status(404)),
        ("/%2eenv", Status(404)),
        ("/sub/../.hidden/file", Status(400)),
        // Malformed escapes.
        ("/%u002e%u002e/secret.txt", Status(400)),
        ("/%", Status(400)),
        ("/%2", Status(400)),
        ("/%zz", Status(400)),
        ("/a.txt%", Status(400)),
        // Query and fragment tricks: what follows `?` or `#` is not path.
        ("/a.txt?/../../secret.txt", ATxt),
        ("/a.txt?x=%2e%2e%2fsecret.txt", ATxt),
        ("/?../secret.txt", RootListing(&[])),
        ("/a.txt#/../../secret.txt", OneOf(&[200, 400])),
        ("/#/../secret.txt", RootListing(&[400])),
        ("/%3f/../secret.txt", Status(400)),
        ("/%23/../secret.txt", Status(400)),
        ("/..?x", Status(400)),
        ("/..#x", Status(400)),
        // Targets that are not paths.
        ("*", Status(400)),
        ("secret.txt", Status(400)),
        ("../secret.txt", Status(400)),
        ("x:80", Status(400)),
        // A space splits the request line: a malformed version.
        ("/ /../secret.txt", Status(400)),
        // `.` segments are dropped: these are the root or a.txt.
        ("/.", RootListing(&[])),
        ("/%2e", RootListing(&[])),
        ("/./a.txt", ATxt),
        ("/sub/./file.txt", Status(200)),
    ]
    .into_iter()
    .map(|(t, w)| (t.to_string(), w))
    .collect();
    // Long chains.
    c.push((format!("/{}secret.txt", "../".repeat(2000)), Status(400)));
    c.push((
        format!("/{}etc/passwd", "%2e%2e/".repeat(1000)),
        Status(400),
    ));
    c.push((
        format!("/sub/{}secret.txt", "..%2f".repeat(1000)),
        Status(400),
    ));
    c.push((format!("/{}a.txt", "./".repeat(3000)), ATxt));
    // 10 KB of `a/`: longer than PATH_MAX, names nothing.
    c.push((format!("/{}", "a/".repeat(5000)), OneOf(&[400, 404, 414])));
    // Longer than the 16 KiB head limit.
    c.push((
        format!("/{}secret.txt", "../".repeat(6000)),
        OneOf(&[414, 431]),
    ));
    c
}

/// What is wrong with `reply` to `GET target` (empty when nothing is).
fn traversal_problems(fx: &Fixture, reply: &Reply, want: Want) -> Vec<String> {
    let mut problems = Vec::new();
    let text = String::from_utf8_lossy(&reply.bytes);
    if text.contains(&fx.marker) {
        problems.push("LEAKED the marker of the file outside the root".to_string());
    }
    if text.contains(&fx.hidden_marker) {
        problems.push("LEAKED the marker of the hidden file".to_string());
    }
    if text.contains("root:") {
        problems.push("LEAKED a passwd file (`root:`)".to_string());
    }
    if !reply.ended {
        problems.push(format!(
            "connection not closed within 10 s ({:?})",
            reply.elapsed
        ));
    }
    let Some((status, _)) = head_of(&reply.bytes) else {
        problems.push("no parsable response".to_string());
        return problems;
    };
    let ok = match want {
        Want::Status(st) => status == st,
        Want::OneOf(sts) => sts.contains(&status),
        Want::ATxt => status == 200,
        Want::RootListing(also) => status == 200 || also.contains(&status),
    };
    if !ok {
        problems.push(format!("got {status}, want {want:?}"));
    }
    if status == 200 && problems.is_empty() {
        let r = parse_responses(&reply.bytes, &[]);
        match want {
            Want::ATxt if r[0].body != A_TXT => {
                problems.push("200 but not the bytes of a.txt".to_string())
            }
            Want::RootListing(_) => {
                let ct = r[0].header("content-type").unwrap_or("");
                let body = String::from_utf8_lossy(&r[0].body);
                if !ct.starts_with("text/html") || !body.contains(">a.txt</a>") {
                    problems.push(format!("want the root listing, got {ct}: {body}"));
                }
                for name in ["link.txt", "out/", "abs/", "evil/", ".hidden/", ".env"] {
                    if body.contains(&format!(">{name}</a>")) {
                        problems.push(format!("the root listing shows {name}"));
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn traversal_corpus_never_leaves_the_root() {
    let fx = Fixture::new();
    let corpus = traversal_corpus();
    assert!(corpus.len() >= 40, "corpus has {} targets", corpus.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for b in backends() {
        let s = TestServer::start(b, &fx.root(), |_| {});
        for (target, want) in &corpus {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .into_bytes();
            let what = brief(target.as_bytes());
            let reply = exchange(&s, &req);
            for p in traversal_problems(&fx, &reply, *want) {
                failures.push(format!(
                    "{b}: GET {what}: {p}; response {}",
                    show(&reply.bytes)
                ));
            }
            // A server that stopped answering makes every later case moot.
            assert_still_serves(&s, b, &format!("GET {what}"));
        }
    }
    eprintln!(
        "traversal corpus: {} targets × {:?} in {:?}",
        corpus.len(),
        backends(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} traversal failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. Malformed corpus
// ---------------------------------------------------------------------------

/// One malformed request and the statuses it may get.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    want: &'static [u16],
    /// For 200: the body must be a.txt's.
    body_is_a: bool,
}

fn case(name: &'static str, request: impl Into<Vec<u8>>, want: &'static [u16]) -> Case {
    Case {
        name,
        request: request.into(),
        want,
        body_is_a: false,
    }
}

/// A GET of /a.txt with `extra` header lines (each ending in CRLF) and
/// `Connection: close`.
fn get_a_with(extra: &str) -> Vec<u8> {
    format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

fn malformed_corpus() -> Vec<Case> {
    let a = |name, request: Vec<u8>| Case {
        name,
        request,
        want: &[200],
        body_is_a: true,
    };
    let mut many_headers = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        many_headers.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    many_headers.extend(b"\r\n");
    let mut thousand_headers = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        thousand_headers.extend(format!("X-{i}: v\r\n").as_bytes());
    }
    thousand_headers.extend(b"\r\n");
    let mut medium_headers = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..40 {
        medium_headers.extend(format!("X-M{i}: {}\r\n", "m".repeat(500)).as_bytes());
    }
    medium_headers.extend(b"\r\n");
    let tls_hello: Vec<u8> = [
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ][..],
        &[0xab; 32],
        b"\r\n\r\n",
    ]
    .concat();
    let garbage: Vec<u8> = (0..600u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .chain(*b"\r\n\r\n")
        .collect();
    let ranges_50 = format!("Range: bytes={}\r\n", vec!["0-"; 50].join(","));
    let ranges_many_small = format!(
        "Range: bytes={}\r\n",
        (0..200)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    vec![
        // Request line.
        case(
            "missing version (HTTP/0.9 style)",
            "GET /a.txt\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case("missing target", "GET HTTP/1.1\r\nHost: x\r\n\r\n", &[400]),
        case(
            "missing target, two spaces",
            "GET  HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case("method only", "GET\r\nHost: x\r\n\r\n", &[400]),
        case(
            "version typo HTTQ",
            "GET /a.txt HTTQ/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "version typo HTTP/1,1",
            "GET /a.txt HTTP/1,1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "version HTTP/2.0",
            "GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n",
            &[400, 505],
        ),
        case(
            "version HTTP/3",
            "GET /a.txt HTTP/3\r\nHost: x\r\n\r\n",
            &[400, 505],
        ),
        case(
            "version HTTP/1 (no minor)",
            "GET /a.txt HTTP/1\r\nHost: x\r\n\r\n",
            &[400, 505],
        ),
        case(
            "version HTTP/1.1x",
            "GET /a.txt HTTP/1.1x\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "version HTTP/1.10",
            "GET /a.txt HTTP/1.10\r\nHost: x\r\n\r\n",
            &[400, 505],
        ),
        case(
            "lowercase http/1.1",
            "GET /a.txt http/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "two spaces after method",
            "GET  /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "two spaces before version",
            "GET /a.txt  HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "space after version",
            "GET /a.txt HTTP/1.1 \r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "leading space",
            " GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "tabs as separators",
            "GET\t/a.txt\tHTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "CR-only line ends",
            "GET /a.txt HTTP/1.1\rHost: x\r\r",
            &[400],
        ),
        case(
            "NUL in method",
            &b"G\0ET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "NUL in target",
            &b"GET /a\0.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "NUL first",
            &b"\0GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "control char in target",
            &b"GET /a\x01.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "DEL in target",
            &b"GET /a\x7f.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "escape char in method",
            &b"G\x1bET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "non-ASCII method",
            "GÉT /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "non-UTF-8 byte in method",
            &b"GE\xffT /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[400],
        ),
        case(
            "unknown method",
            "BREW /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            &[501],
        ),
        case(
            "lowercase method (unknown)",
            "get /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            &[501],
        ),
        case(
            "authority-form target on GET",
            "GET x:80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            &[400],
        ),
        case(
            "asterisk target on GET",
            "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            &[400],
        ),
        case("TLS ClientHello", tls_hello, &[400]),
        case("binary garbage", garbage, &[400]),
        // Line ends: httparse accepts a bare LF as a line end, so does the
        // server, consistently for the request line and the header fields.
        a(
            "LF-only line ends (accepted)",
            b"GET /a.txt HTTP/1.1\nHost: x\nConnection: close\n\n".to_vec(),
        ),
        a(
            "mixed LF and CRLF (accepted)",
            b"GET /a.txt HTTP/1.1\nHost: x\r\nConnection: close\n\r\n".to_vec(),
        ),
        a(
            "leading empty line (ignored, RFC 9112 §2.2)",
            [&b"\r\n"[..], GET_A].concat(),
        ),
        // Header fields.
        case("header without colon", get_a_with("Bad\r\n"), &[400]),
        case("space before colon", get_a_with("X-A : b\r\n"), &[400]),
        case(
            "space before colon in Host",
            "GET /a.txt HTTP/1.1\r\nHost : x\r\n\r\n",
            &[400],
        ),
        case(
            "obs-fold continuation",
            get_a_with("X-A: b\r\n  continued\r\n"),
            &[400],
        ),
        case(
            "obs-fold with tab",
            get_a_with("X-A: b\r\n\tcontinued\r\n"),
            &[400],
        ),
        case(
            "invalid header name char",
            get_a_with("X(y): z\r\n"),
            &[400],
        ),
        case("header name with slash", get_a_with("X/Y: z\r\n"), &[400]),
        case("empty header name", get_a_with(": z\r\n"), &[400]),
        case("non-ASCII header name", get_a_with("Ä: z\r\n"), &[400]),
        case(
            "NUL in header value",
            &b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"[..],
            &[400],
        ),
        case(
            "bare CR in header value",
            &b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n"[..],
            &[400],
        ),
        case(
            "control char in header value",
            &b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n"[..],
            &[400],
        ),
        case(
            "head over 16 KiB (one header)",
            get_a_with(&format!("X-Big: {}\r\n", "b".repeat(17 * 1024))),
            &[431],
        ),
        case("head over 16 KiB (many headers)", medium_headers, &[431]),
        case(
            "head over 16 KiB (target)",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20 * 1024)),
            &[414, 431],
        ),
        case("101 header fields", many_headers, &[431]),
        case("1000 header fields", thousand_headers, &[431]),
        // Host.
        case(
            "missing Host on HTTP/1.1",
            "GET /a.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
            &[400],
        ),
        case(
            "no headers at all on HTTP/1.1",
            "GET /a.txt HTTP/1.1\r\n\r\n",
            &[400],
        ),
        case("two Host headers", get_a_with("Host: y\r\n"), &[400]),
        case(
            "two identical Host headers",
            get_a_with("Host: x\r\n"),
            &[400],
        ),
        case(
            "Host with a space (invalid, RFC 9112 §3.2)",
            "GET /a.txt HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n",
            &[400],
        ),
        // Body framing and smuggling.
        case(
            "duplicate Content-Length, different",
            get_a_with("Content-Length: 0\r\nContent-Length: 5\r\n"),
            &[400],
        ),
        case(
            "duplicate Content-Length, same",
            get_a_with("Content-Length: 0\r\nContent-Length: 0\r\n"),
            &[400],
        ),
        case(
            "Content-Length list",
            get_a_with("Content-Length: 0, 0\r\n"),
            &[400],
        ),
        case(
            "negative Content-Length",
            get_a_with("Content-Length: -1\r\n"),
            &[400],
        ),
        case(
            "Content-Length with plus",
            get_a_with("Content-Length: +0\r\n"),
            &[400],
        ),
        case(
            "hex Content-Length",
            get_a_with("Content-Length: 0x10\r\n"),
            &[400],
        ),
        case(
            "non-numeric Content-Length",
            get_a_with("Content-Length: abc\r\n"),
            &[400],
        ),
        case(
            "empty Content-Length",
            get_a_with("Content-Length:\r\n"),
            &[400],
        ),
        case(
            "Content-Length overflowing u64",
            get_a_with("Content-Length: 99999999999999999999999\r\n"),
            &[400],
        ),
        case(
            "Content-Length and Transfer-Encoding",
            get_a_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            &[400],
        ),
        case(
            "Transfer-Encoding and Content-Length",
            get_a_with("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"),
            &[400],
        ),
        case(
            "smuggled request behind CL+TE",
            "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /out/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "Transfer-Encoding: gzip",
            get_a_with("Transfer-Encoding: gzip\r\n"),
            &[400],
        ),
        case(
            "Transfer-Encoding: chunked, gzip",
            get_a_with("Transfer-Encoding: chunked, gzip\r\n"),
            &[400],
        ),
        case(
            "Transfer-Encoding: identity",
            get_a_with("Transfer-Encoding: identity\r\n"),
            &[400],
        ),
        case(
            "Transfer-Encoding in HTTP/1.0",
            "GET /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            &[400],
        ),
        case(
            "huge Content-Length",
            get_a_with("Content-Length: 1073741824\r\n"),
            &[413],
        ),
        // Ranges: ignored (200) or unsatisfiable (416), never an error.
        a("Range not a number", get_a_with("Range: bytes=abc\r\n")),
        a("Range end before start", get_a_with("Range: bytes=5-1\r\n")),
        a("Range unknown unit", get_a_with("Range: items=0-1\r\n")),
        a("Range empty set", get_a_with("Range: bytes=\r\n")),
        a("Range no dash", get_a_with("Range: bytes=5\r\n")),
        a(
            "Range overflowing u64",
            get_a_with("Range: bytes=99999999999999999999999-\r\n"),
        ),
        a("Range negative start", get_a_with("Range: bytes=-5-10\r\n")),
        a("Range 50 × overlapping 0-", get_a_with(&ranges_50)),
        a("Range 200 small ranges", get_a_with(&ranges_many_small)),
        case(
            "Range beyond the end",
            get_a_with("Range: bytes=1000-2000\r\n"),
            &[416],
        ),
        case(
            "Range suffix of zero",
            get_a_with("Range: bytes=-0\r\n"),
            &[416],
        ),
        // Bad dates are ignored.
        a(
            "If-Modified-Since garbage",
            get_a_with("If-Modified-Since: yesterday-ish\r\n"),
        ),
        a(
            "If-Modified-Since impossible date",
            get_a_with("If-Modified-Since: Mon, 32 Foo 99999 25:61:61 GMT\r\n"),
        ),
        a(
            "If-Modified-Since empty",
            get_a_with("If-Modified-Since:\r\n"),
        ),
        a(
            "If-Unmodified-Since garbage",
            get_a_with("If-Unmodified-Since: not a date\r\n"),
        ),
        a(
            "If-Range garbage with Range",
            get_a_with("If-Range: ???\r\nRange: bytes=0-0\r\n"),
        ),
    ]
}

/// What is wrong with `reply` to the malformed request `c`.
fn malformed_problems(c: &Case, reply: &Reply) -> Vec<String> {
    let mut problems = Vec::new();
    if !reply.ended {
        problems.push(format!(
            "no close within 10 s (hang?) ({:?})",
            reply.elapsed
        ));
    }
    let Some((status, headers)) = head_of(&reply.bytes) else {
        problems.push("no parsable response".to_string());
        return problems;
    };
    if !c.want.contains(&status) {
        problems.push(format!("got {status}, want one of {:?}", c.want));
        return problems;
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    match status {
        200 if c.body_is_a => {
            let r = parse_responses(&reply.bytes, &[]);
            if r.len() != 1 || r[0].body != A_TXT {
                problems.push("want exactly one response with the whole of a.txt".to_string());
            }
        }
        416 => {
            let want = format!("bytes */{}", A_TXT.len());
            if header("content-range") != Some(want.as_str()) {
                problems.push(format!("416 without `Content-Range: {want}`"));
            }
        }
        _ => {}
    }
    problems
}

#[test]
fn malformed_corpus_gets_clear_answers() {
    let root = TempDir::new();
    std::fs::write(root.path().join("a.txt"), A_TXT).unwrap();
    let corpus = malformed_corpus();
    assert!(corpus.len() >= 40, "corpus has {} requests", corpus.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for b in backends() {
        let s = TestServer::start(b, root.path(), |_| {});
        for c in &corpus {
            let reply = exchange(&s, &c.request);
            for p in malformed_problems(c, &reply) {
                failures.push(format!(
                    "{b}: [{}] {}: {p}; response {}",
                    c.name,
                    brief(&c.request),
                    show(&reply.bytes)
                ));
            }
            // A server that stopped answering makes every later case moot.
            assert_still_serves(&s, b, &format!("[{}]", c.name));
        }
    }
    eprintln!(
        "malformed corpus: {} requests × {:?} in {:?}",
        corpus.len(),
        backends(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} malformed-request failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 3. Slow-loris
// ---------------------------------------------------------------------------

/// Raises the soft limit on open descriptors to the hard limit: this test
/// holds 500 client sockets and the server 500 more, in one process.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid `rlimit` whose soft limit does not exceed
        // its hard limit, as just read back from the kernel.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// 500 connections that each sent half a head hold the server while a new
/// client asks for a file. Time is paused, so none of them can have timed
/// out when the new client is answered: it was served alongside them, not
/// after them. Then each gets its 408 at the head deadline exactly.
#[test]
fn slow_loris_does_not_delay_a_new_client() {
    const STALLED: usize = 500;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    const MS: Duration = Duration::from_millis(1);
    raise_nofile_limit();
    // The header timeout lives in the connection loop, not in a backend.
    let all = backends();
    let b = if all.contains(&"sendfile") {
        "sendfile"
    } else {
        all[0]
    };
    let root = TempDir::new();
    std::fs::write(root.path().join("a.txt"), A_TXT).unwrap();
    let s = TestServer::start_paused(b, root.path(), |s| s.header_timeout = HEADER_TIMEOUT);
    let open = || s.metrics.open_connections.load(Ordering::Relaxed);

    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut c = TcpStream::connect(s.addr)
            .unwrap_or_else(|e| panic!("{b}: stalled connection {i}: {e}"));
        c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n").unwrap();
        stalled.push(c);
    }
    // Every half head is in the server's hands.
    wait_until_server_read_all(&stalled);
    assert_eq!(open(), STALLED as u64, "{b}: connections open");

    let reply = exchange(&s, GET_A);
    assert!(
        reply.ended,
        "{b}: the new client's GET did not finish in 10 s behind {STALLED} stalled connections"
    );
    let r = parse_responses(&reply.bytes, &[]);
    assert_eq!(
        (r[0].status, r[0].body.as_slice()),
        (200, A_TXT),
        "{b}: the new client's GET"
    );
    // The stalled connections were all still there while it was served.
    assert_all_open_and_silent(&stalled, &format!("{b}: stalled, after the new GET"));

    // Each stalled connection gets 408 (or is just closed) at its head
    // deadline, not before.
    s.advance(HEADER_TIMEOUT - MS);
    assert_all_open_and_silent(
        &stalled,
        &format!("{b}: stalled, {MS:?} before the deadline"),
    );
    s.advance(MS);
    let mut got_408 = 0usize;
    for (i, c) in stalled.iter_mut().enumerate() {
        c.set_read_timeout(Some(HANG)).unwrap();
        let (bytes, ended) = read_until_end(c);
        assert!(
            ended,
            "{b}: stalled connection {i} still open at the head deadline; got {}",
            show(&bytes)
        );
        if !bytes.is_empty() {
            let status = head_of(&bytes).map(|(st, _)| st);
            assert_eq!(
                status,
                Some(408),
                "{b}: stalled connection {i} got {}",
                show(&bytes)
            );
            got_408 += 1;
        }
    }
    drop(stalled);
    wait_for("the server closing the stalled connections", || open() == 0);
    assert_still_serves(&s, b, "the slow-loris connections");
    eprintln!("{b}: slow-loris: {got_408} of {STALLED} got 408, the rest EOF");
}

// ---------------------------------------------------------------------------
// 4. A file truncated during a download
// ---------------------------------------------------------------------------

#[test]
fn file_truncated_during_download_ends_the_response() {
    const BIG: usize = 64 << 20;
    const CUT: usize = 2 << 20;
    const READ_BEFORE: usize = 1 << 20;
    let data = zcserve_tests::content(BIG, 0x7275_6e63);
    for b in backends() {
        let started = Instant::now();
        let root = TempDir::new();
        let path = root.path().join("big.bin");
        std::fs::write(&path, &data).unwrap();
        std::fs::write(root.path().join("a.txt"), A_TXT).unwrap();
        let s = TestServer::start(b, root.path(), |_| {});

        let mut c = s.connect();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        // The head.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let head_end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = c
                .read_r(&mut buf)
                .unwrap_or_else(|e| panic!("{b}: reading the head: {e}"));
            assert!(n > 0, "{b}: closed before the head: {}", show(&got));
            got.extend_from_slice(&buf[..n]);
        };
        let (status, headers) =
            head_of(&got).unwrap_or_else(|| panic!("{b}: bad head {}", show(&got)));
        assert_eq!(status, 200, "{b}: {}", show(&got));
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert_eq!(len, BIG, "{b}: Content-Length");
        let mut body = got.split_off(head_end);
        // About 1 MiB of the body.
        while body.len() < READ_BEFORE {
            let want = (READ_BEFORE - body.len()).min(buf.len());
            let n = c
                .read_r(&mut buf[..want])
                .unwrap_or_else(|e| panic!("{b}: reading the body: {e}"));
            assert!(
                n > 0,
                "{b}: closed after {} body bytes, before the file was cut",
                body.len()
            );
            body.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            body,
            data[..body.len()],
            "{b}: the body's first MiB differs from the file"
        );
        let mut received = body.len();
        drop(body);

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(CUT as u64)
            .unwrap();
        let cut = Instant::now();
        let deadline = cut + Duration::from_secs(10);
        let mut mismatch = None;
        let ended = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            c.set_read_timeout(Some(left)).unwrap();
            match c.read_r(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    // Whatever arrives must be the file's original bytes at
                    // that offset (they were never rewritten, only cut off).
                    let end = received + n;
                    if mismatch.is_none() && (end > BIG || buf[..n] != data[received..end]) {
                        mismatch = Some(received);
                    }
                    received = end;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break true, // reset: also an end
            }
        };
        let took = cut.elapsed();
        assert!(
            ended,
            "{b}: the response to a file cut to {CUT} bytes was still open 10 s later ({received} of {BIG} body bytes received)"
        );
        assert!(
            received < BIG,
            "{b}: received all {BIG} bytes of a file cut to {CUT} bytes"
        );
        assert_eq!(
            mismatch, None,
            "{b}: body bytes from this offset on differ from the file's"
        );

        // The server goes on serving, the cut file included, with its new length.
        assert_still_serves(&s, b, "a truncated download");
        let reply = exchange(
            &s,
            b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let r = parse_responses(&reply.bytes, &[]);
        assert_eq!(r[0].status, 200, "{b}: GET of the cut file");
        assert_eq!(
            r[0].header("content-length"),
            Some(CUT.to_string().as_str()),
            "{b}: new length"
        );
        assert!(
            r[0].body == data[..CUT],
            "{b}: the cut file's body differs from its first {CUT} bytes"
        );
        eprintln!(
            "{b}: truncation: connection ended {took:?} after the cut with {received} of {BIG} body bytes; \
             test took {:?}",
            started.elapsed()
        );
    }
}
