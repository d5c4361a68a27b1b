//! Property tests, 10,000 cases each, of the two places where untrusted
//! bytes enter the server:
//!
//! - the request-head parser (`zcserve::request_head::parse`) on arbitrary bytes
//!   and on near-valid heads (real request lines with random methods,
//!   targets, versions and headers): it never panics; an accepted head is
//!   at most 16 KiB and no longer than the input, is HTTP/1.0 or 1.1, has
//!   exactly one Host on 1.1, has unambiguous body framing, and every
//!   strict prefix of it is "need more bytes" (clients may send a byte at
//!   a time);
//! - the path resolver (`RequestPath::parse` then `Root::open_path`) on
//!   arbitrary strings, percent-encoded random bytes and paths glued from
//!   dangerous pieces (`..`, `%2e`, `%2f`, `%5c`, `%00`, `%c0%ae`, `\`,
//!   symlink and marker names): it never panics; every accepted path's
//!   segments are clean; and nothing it opens, per `/proc/self/fd`, lies
//!   outside the root, though the root holds symlinks pointing at a marker
//!   file next to it.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use http::{StatusCode, Version, header};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use zcserve::fs::{Opened, Policy, Root};
use zcserve::http::request_path::{PathError, RequestPath};
use zcserve::request_head::{self, MAX_HEAD, Parsed};
use zcserve_tests::TempDir;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The request-head parser
// ---------------------------------------------------------------------------

/// Checks every promise `request_head::parse` makes about `bytes`.
fn check_head(bytes: &[u8]) -> Result<(), TestCaseError> {
    let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    match request_head::parse(bytes) {
        Ok(Parsed::Complete(req, n)) => {
            prop_assert!(
                n <= bytes.len(),
                "used {n} of {} bytes: {:?}",
                bytes.len(),
                shown()
            );
            prop_assert!(n <= MAX_HEAD, "accepted a {n}-byte head: {:?}", shown());
            prop_assert!(n > 0);
            prop_assert!(
                bytes[..n].ends_with(b"\n"),
                "head does not end with a line end: {:?}",
                shown()
            );
            prop_assert!(
                req.version == Version::HTTP_10 || req.version == Version::HTTP_11,
                "version {:?}: {:?}",
                req.version,
                shown()
            );
            let hosts = req.headers.get_all(header::HOST).iter().count();
            if req.version == Version::HTTP_11 {
                prop_assert_eq!(hosts, 1, "HTTP/1.1 with {} Host: {:?}", hosts, shown());
            } else {
                prop_assert!(hosts <= 1, "{hosts} Host: {:?}", shown());
            }
            prop_assert!(!req.target.is_empty(), "empty target: {:?}", shown());
            // Body framing is never ambiguous.
            let cl: Vec<_> = req.headers.get_all(header::CONTENT_LENGTH).iter().collect();
            let te = req
                .headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .count();
            prop_assert!(cl.len() <= 1, "{} Content-Length: {:?}", cl.len(), shown());
            prop_assert!(
                cl.is_empty() || te == 0,
                "Content-Length and Transfer-Encoding: {:?}",
                shown()
            );
            if let Some(v) = cl.first() {
                let want: Option<u64> = v.to_str().ok().and_then(|s| s.parse().ok());
                prop_assert_eq!(Some(req.body_len), want, "{:?}", shown());
                prop_assert!(v.as_bytes().iter().all(u8::is_ascii_digit), "{:?}", shown());
            }
            if req.chunked_body {
                prop_assert!(te > 0 && req.body_len == 0, "{:?}", shown());
                prop_assert!(req.version == Version::HTTP_11, "{:?}", shown());
            }
            if te > 0 {
                prop_assert!(
                    req.chunked_body,
                    "Transfer-Encoding accepted unchunked: {:?}",
                    shown()
                );
            }
            // Fields the server does not read are left to httparse's
            // checks: those must reject whatever `http` would.
            let mut slots = [httparse::EMPTY_HEADER; request_head::MAX_HEADERS];
            let mut raw = httparse::Request::new(&mut slots);
            if let Ok(httparse::Status::Complete(_)) = raw.parse(&bytes[..n]) {
                for h in raw.headers.iter() {
                    prop_assert!(
                        http::HeaderName::from_bytes(h.name.as_bytes()).is_ok()
                            && http::HeaderValue::from_bytes(h.value).is_ok(),
                        "field {:?} passed httparse but not http: {:?}",
                        h.name,
                        shown()
                    );
                }
            }
            // The head alone parses to the same length.
            match request_head::parse(&bytes[..n]) {
                Ok(Parsed::Complete(_, m)) => prop_assert_eq!(m, n, "{:?}", shown()),
                other => {
                    return Err(TestCaseError::fail(format!(
                        "the head alone gives {other:?}: {:?}",
                        shown()
                    )));
                }
            }
            // Every strict prefix just needs more bytes: a client sending a
            // byte at a time must not be refused.
            let cuts: Vec<usize> = if n <= 300 {
                (0..n).collect()
            } else {
                (0..48).map(|i| i * n / 48).chain(n - 4..n).collect()
            };
            for k in cuts {
                let r = request_head::parse(&bytes[..k]);
                prop_assert!(
                    matches!(r, Ok(Parsed::Partial)),
                    "prefix of {k} bytes of an accepted {n}-byte head gives {:?}: {:?}",
                    r,
                    String::from_utf8_lossy(&bytes[..k])
                );
            }
        }
        Ok(Parsed::Partial) => {
            prop_assert!(
                bytes.len() < MAX_HEAD,
                "still Partial after {} bytes: {:?}",
                bytes.len(),
                shown()
            );
        }
        Err(r) => {
            prop_assert!(
                r.status.is_client_error()
                    || r.status == StatusCode::NOT_IMPLEMENTED
                    || r.status == StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "refused with {}: {:?}",
                r.status,
                shown()
            );
            prop_assert!(!r.reason.is_empty());
        }
    }
    Ok(())
}

fn pick(items: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    prop::sample::select(items)
        .prop_map(|s| s.as_bytes().to_vec())
        .boxed()
}

fn random_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).boxed()
}

/// Bytes drawn mostly from the characters a request head is made of.
fn heady_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(&b"GETHOSTPUhost:/ .-01189\r\n\tHTTP/1.1HTTP/1.0"[..]),
            1 => any::<u8>(),
        ],
        0..max,
    )
    .boxed()
}

/// Mostly `valid`, sometimes (1 in `1 + odds`) `weird`.
fn mostly(
    odds: u32,
    valid: BoxedStrategy<Vec<u8>>,
    weird: BoxedStrategy<Vec<u8>>,
) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![odds => valid, 1 => weird].boxed()
}

fn method() -> BoxedStrategy<Vec<u8>> {
    mostly(
        10,
        pick(&[
            "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW",
        ]),
        prop_oneof![
            4 => pick(&[
                "TRACE", "CONNECT", "PATCH", "get", "G\x00T", "GET\x7f", "", "M-SEARCH", "GET/",
                "X", "GE T",
            ]),
            1 => "[A-Za-z!#$%&'*+.^_`|~-]{1,20}".prop_map(String::into_bytes),
            1 => random_bytes(8),
        ]
        .boxed(),
    )
}

fn target() -> BoxedStrategy<Vec<u8>> {
    mostly(
        6,
        pick(&[
            "/",
            "/a",
            "/index.html",
            "http://h/a?b",
            "HTTP://H:80",
            "/%2e%2e/x",
            "//",
            "/a?b#c",
            "/..",
            "/?",
            "/a%20b",
        ]),
        prop_oneof![
            4 => pick(&[
                "*", "https://h", "h:443", "/a b", "", "/\x7f", "/é", "/\x00", "ftp://x/",
                "/a\tb", "?", "#",
            ]),
            2 => "/[ -~]{0,40}".prop_map(String::into_bytes),
            1 => "[!-~]{0,40}".prop_map(String::into_bytes),
            1 => random_bytes(24),
        ]
        .boxed(),
    )
}

fn version() -> BoxedStrategy<Vec<u8>> {
    mostly(
        10,
        pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
        prop_oneof![
            4 => pick(&[
                "HTTP/2.0", "HTTP/0.9", "HTTP/1.", "HTTP/1.10", "HTTP/1.1 ", "http/1.1",
                "HTTP/11", "HTTP/3", "", "HTTP/1.2", "HTTP/1.1\x00", "HTTPS/1.1", "HTTP/1.01",
            ]),
            1 => "HTTP/[0-9.]{0,4}".prop_map(String::into_bytes),
            1 => random_bytes(10),
        ]
        .boxed(),
    )
}

fn space() -> BoxedStrategy<Vec<u8>> {
    mostly(20, pick(&[" "]), pick(&["  ", "\t", "", "\x0b", " \r\n"]))
}

fn line_end() -> BoxedStrategy<Vec<u8>> {
    mostly(
        20,
        pick(&["\r\n", "\r\n", "\r\n", "\n"]),
        pick(&["\r", "", "\n\r", "\r\r\n", " \r\n"]),
    )
}

fn header_name() -> BoxedStrategy<Vec<u8>> {
    mostly(
        20,
        pick(&[
            "Host",
            "host",
            "Content-Length",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "Range",
            "If-None-Match",
            "If-Modified-Since",
            "X-A",
            "User-Agent",
            "Accept",
        ]),
        prop_oneof![
            4 => pick(&[
                "Ho st", "", "Host ", " Host", ":", "X\x00", "Héader", "Content-Length ",
                "Transfer-Encoding\t",
            ]),
            1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}".prop_map(String::into_bytes),
            1 => random_bytes(12),
        ]
        .boxed(),
    )
}

fn header_value() -> BoxedStrategy<Vec<u8>> {
    mostly(
        20,
        pick(&[
            "x",
            "",
            "example.com",
            "example.com:80",
            "0",
            "5",
            "12",
            "-1",
            "+5",
            " 5",
            "5 ",
            "1,1",
            "1, 1",
            "0x10",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "chunked",
            "Chunked",
            "gzip, chunked",
            "chunked, gzip",
            "gzip",
            "identity",
            "close",
            "keep-alive",
            "Keep-Alive, close",
            "bytes=0-1",
            "\"etag\"",
            " \t ",
            "é",
        ]),
        prop_oneof![
            4 => pick(&["\x00", "\x7f", "a\rb", "a\nb", "a\r\n b"]),
            4 => "[ -~]{0,40}".prop_map(String::into_bytes),
            2 => random_bytes(40),
            // Large values around the 16 KiB head limit.
            3 => prop::sample::select(vec![
                100, 8_000, 16_000, 16_300, 16_340, 16_350, 16_384, 16_500, 20_000,
            ])
            .prop_map(|n| vec![b'a'; n]),
        ]
        .boxed(),
    )
}

fn header_sep() -> BoxedStrategy<Vec<u8>> {
    mostly(
        20,
        pick(&[": ", ": ", ":", ":\t", ":  "]),
        pick(&[" : ", "", " :", "\r\n :"]),
    )
}

/// A near-valid head: request line, headers (usually a Host among them),
/// end, then trailing bytes (a body or a pipelined request).
fn near_valid_head() -> BoxedStrategy<Vec<u8>> {
    let header = (header_name(), header_sep(), header_value(), line_end())
        .prop_map(|(n, s, v, e)| [n, s, v, e].concat());
    (
        (method(), space(), target(), space(), version(), line_end()),
        prop::collection::vec(header, 0..6),
        prop_oneof![4 => Just(Some(b"Host: example.com\r\n".to_vec())), 1 => Just(None)],
        any::<prop::sample::Index>(),
        mostly(
            10,
            pick(&["\r\n", "\n"]),
            pick(&["", "\r", "\r\n\r\n", " \r\n"]),
        ),
        prop_oneof![3 => Just(Vec::new()), 1 => heady_bytes(64)],
    )
        .prop_map(|((m, s1, t, s2, v, e), mut headers, host, at, end, tail)| {
            if let Some(h) = host {
                let i = at.index(headers.len() + 1);
                headers.insert(i, h);
            }
            let mut out = [m, s1, t, s2, v, e].concat();
            for h in headers {
                out.extend(h);
            }
            out.extend(end);
            out.extend(tail);
            out
        })
        .boxed()
}

/// A valid request line plus `n` small headers, around the 100-header cap.
fn many_headers() -> BoxedStrategy<Vec<u8>> {
    (
        pick(&["HTTP/1.1", "HTTP/1.0"]),
        prop::bool::ANY,
        90usize..110,
    )
        .prop_map(|(version, host, n)| {
            let mut out = format!("GET / {}\r\n", String::from_utf8_lossy(&version)).into_bytes();
            if host {
                out.extend(b"Host: x\r\n");
            }
            for i in 0..n {
                out.extend(format!("X-{i}: y\r\n").as_bytes());
            }
            out.extend(b"\r\n");
            out
        })
        .boxed()
}

/// A valid request line, then random bytes where the headers go.
fn valid_line_random_headers() -> BoxedStrategy<Vec<u8>> {
    (
        pick(&[
            "GET / HTTP/1.1\r\n",
            "HEAD /a HTTP/1.0\r\n",
            "GET http://h/ HTTP/1.1\r\n",
        ]),
        prop_oneof![random_bytes(200), heady_bytes(200)],
        pick(&["", "\r\n\r\n", "\r\n", "\n\n"]),
    )
        .prop_map(|(line, mid, end)| [line, mid, end].concat())
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn head_parser_on_arbitrary_bytes(bytes in prop_oneof![
        3 => random_bytes(512),
        1 => random_bytes(20_000),
        3 => heady_bytes(512),
    ]) {
        check_head(&bytes)?;
    }

    #[test]
    fn head_parser_on_near_valid_heads(bytes in prop_oneof![
        6 => near_valid_head(),
        2 => valid_line_random_headers(),
        1 => many_headers(),
    ]) {
        check_head(&bytes)?;
    }
}

/// The near-valid generator does produce accepted heads, so the checks on
/// `Complete` above are exercised.
#[test]
fn near_valid_generator_reaches_accepted_heads() {
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = near_valid_head();
    let mut accepted = 0;
    for _ in 0..2_000 {
        let bytes = strategy.new_tree(&mut runner).expect("generate").current();
        if matches!(request_head::parse(&bytes), Ok(Parsed::Complete(..))) {
            accepted += 1;
        }
    }
    eprintln!("{accepted} of 2000 near-valid heads accepted");
    assert!(accepted > 100, "only {accepted} of 2000 heads accepted");
}

// ---------------------------------------------------------------------------
// The path resolver
// ---------------------------------------------------------------------------

const MARKER: &str = "MARKER-OUTSIDE-THE-ROOT";

/// `base/root` (served) beside `base/outside` (holding the marker), with
/// symlinks from the root to the outside and within the root.
struct Tree {
    _base: TempDir,
    root: PathBuf,
    /// Canonical path of the root.
    canonical: PathBuf,
    /// (dev, ino) of every directory inside the root, symlinks not followed.
    inside_dirs: HashSet<(u64, u64)>,
    /// (dev, ino) of every file outside the root.
    outside_files: HashSet<(u64, u64)>,
}

impl Tree {
    fn new() -> Tree {
        use std::os::unix::fs::symlink;
        let base = TempDir::new();
        let b = base.path();
        let out = b.join("outside");
        fs::create_dir_all(out.join("deeper")).unwrap();
        fs::write(out.join("marker.txt"), MARKER).unwrap();
        fs::write(out.join("index.html"), MARKER).unwrap();
        fs::write(out.join("deeper/marker.txt"), MARKER).unwrap();
        fs::write(b.join("marker.txt"), MARKER).unwrap();

        let root = b.join("root");
        fs::create_dir_all(root.join("sub/deep")).unwrap();
        fs::create_dir_all(root.join(".hdir")).unwrap();
        fs::create_dir_all(root.join("outidx")).unwrap();
        fs::write(root.join("hello.txt"), "hello").unwrap();
        fs::write(root.join("sub/a.txt"), "a").unwrap();
        fs::write(root.join("sub/index.html"), "<p>index</p>").unwrap();
        fs::write(root.join("sub/deep/b.txt"), "b").unwrap();
        fs::write(root.join(".hidden"), "dot").unwrap();
        fs::write(root.join(".hdir/x.txt"), "x").unwrap();
        fs::write(root.join("%2e%2e"), "literal").unwrap();
        fs::write(root.join("a b"), "space").unwrap();
        // Out of the root: relative, absolute, to a directory, from a
        // subdirectory, as a directory's index, and through a chain.
        symlink("../outside/marker.txt", root.join("link_out")).unwrap();
        symlink(out.join("marker.txt"), root.join("link_abs")).unwrap();
        symlink("../outside", root.join("linkdir_out")).unwrap();
        symlink("../marker.txt", root.join("marker.txt")).unwrap();
        symlink("../../outside/marker.txt", root.join("sub/up_out")).unwrap();
        symlink("../../../outside", root.join("sub/deep/up3")).unwrap();
        symlink("../../outside/index.html", root.join("outidx/index.html")).unwrap();
        symlink("link_out", root.join("chain")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        symlink("..", root.join("dotdot")).unwrap();
        // Within the root.
        symlink("hello.txt", root.join("link_in")).unwrap();
        symlink("../hello.txt", root.join("sub/up_in")).unwrap();
        symlink("sub", root.join("linkdir_in")).unwrap();
        symlink(".", root.join("self")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();

        let canonical = fs::canonicalize(&root).unwrap();
        let mut inside_dirs = HashSet::new();
        let mut stack = vec![canonical.clone()];
        while let Some(dir) = stack.pop() {
            let m = fs::symlink_metadata(&dir).unwrap();
            inside_dirs.insert((m.dev(), m.ino()));
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        let mut outside_files = HashSet::new();
        for f in [
            "outside/marker.txt",
            "outside/index.html",
            "outside/deeper/marker.txt",
            "marker.txt",
        ] {
            let m = fs::metadata(b.join(f)).unwrap();
            outside_files.insert((m.dev(), m.ino()));
        }
        Tree {
            _base: base,
            root,
            canonical,
            inside_dirs,
            outside_files,
        }
    }
}

/// Where an open descriptor points, per the kernel.
fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

/// The file `f`, opened for `raw`, is inside the root.
fn check_inside_file(
    t: &Tree,
    raw: &str,
    what: &str,
    f: &mut fs::File,
    meta: &fs::Metadata,
) -> Result<(), TestCaseError> {
    let at = fd_path(f);
    prop_assert!(
        at.starts_with(&t.canonical),
        "{raw:?} {what} opened {at:?}, outside {:?}",
        t.canonical
    );
    prop_assert!(
        !t.outside_files.contains(&(meta.dev(), meta.ino())),
        "{raw:?} {what} opened an outside file"
    );
    prop_assert!(meta.is_file(), "{raw:?} {what}: not a regular file");
    let mut s = Vec::new();
    f.read_to_end(&mut s).unwrap();
    prop_assert!(
        !String::from_utf8_lossy(&s).contains(MARKER),
        "{raw:?} {what} read the marker"
    );
    Ok(())
}

/// Every promise of `RequestPath::parse` and `Root::open_path` for `raw`.
fn check_path(t: &Tree, root: &Root, raw: &str, opened: &mut u32) -> Result<(), TestCaseError> {
    let Ok(p) = RequestPath::parse(raw) else {
        return Ok(());
    };
    prop_assert!(
        raw.starts_with('/'),
        "{raw:?} accepted without a leading '/'"
    );
    for s in p.segments() {
        prop_assert!(!s.is_empty(), "{raw:?}: empty segment");
        prop_assert!(s != "." && s != "..", "{raw:?}: segment {s:?}");
        prop_assert!(!s.contains(['/', '\\', '\0']), "{raw:?}: segment {s:?}");
    }
    // Re-encoding the segments gives the same path back.
    let mut again = String::new();
    for s in p.segments() {
        again.push('/');
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                again.push(b as char);
            } else {
                again.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if again.is_empty() || p.has_trailing_slash() {
        again.push('/');
    }
    let re = RequestPath::parse(&again);
    prop_assert!(
        re.as_ref().is_ok_and(|q| q.segments() == p.segments()),
        "{raw:?} -> {again:?} -> {re:?}"
    );

    for policy in [
        Policy {
            show_hidden: false,
            follow_symlinks: false,
        },
        Policy {
            show_hidden: true,
            follow_symlinks: false,
        },
    ] {
        let result = root.open_path(&p, &policy);
        if !policy.show_hidden && p.is_hidden() {
            prop_assert!(
                matches!(result, Err(PathError::NotFound)),
                "{raw:?}: hidden path gave {result:?}"
            );
        }
        match result {
            Ok(Opened::File(mut f, meta)) => {
                check_inside_file(t, raw, "", &mut f, &meta)?;
                *opened += 1;
            }
            Ok(Opened::Dir(d)) => {
                let m = d.metadata();
                prop_assert!(
                    t.inside_dirs.contains(&(m.dev(), m.ino())),
                    "{raw:?} opened a directory that is not inside the root"
                );
                if let Ok(Some((mut f, meta))) = d.open_index(&policy) {
                    check_inside_file(t, raw, "index", &mut f, &meta)?;
                }
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// The pieces most likely to escape a root.
const DANGEROUS: &[&str] = &[
    "..",
    ".",
    "...",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%00",
    "\0",
    "%c0%ae",
    "%c0%af",
    "%c1%9c",
    "%e0%80%ae",
    "%252e",
    "%252e%252e",
    "%252f",
    "%",
    "%2",
    "%zz",
    "%%32%65",
    "/",
    "//",
    "\u{2215}",
    "\u{ff0e}\u{ff0e}",
    "%ff",
    "%c3%a9",
];

/// Names in the tree, the dangerous symlinks and the marker's among them.
const NAMES: &[&str] = &[
    "link_out",
    "link_abs",
    "linkdir_out",
    "marker.txt",
    "outside",
    "deeper",
    "up_out",
    "up3",
    "deep",
    "outidx",
    "index.html",
    "chain",
    "slash",
    "dotdot",
    "etc",
    "passwd",
    "root",
    "hello.txt",
    "sub",
    "a.txt",
    "b.txt",
    "link_in",
    "up_in",
    "linkdir_in",
    "self",
    "dangling",
    ".hidden",
    ".hdir",
    "x.txt",
    "%2e%2e",
    "a b",
    "a%20b",
    "proc",
    "self",
    "fd",
];

/// Paths of things inside the root (files, directories, symlinks).
const REAL: &[&str] = &[
    "/hello.txt",
    "/sub/a.txt",
    "/sub/",
    "/sub",
    "/sub/deep/b.txt",
    "/link_in",
    "/sub/up_in",
    "/linkdir_in/a.txt",
    "/linkdir_in/",
    "/%2e%2e",
    "/%252e%252e",
    "/a%20b",
    "/.hidden",
    "/.hdir/x.txt",
    "/outidx/",
    "/link_out",
    "/linkdir_out/marker.txt",
    "/marker.txt",
    "/sub/up_out",
    "/sub/deep/up3/marker.txt",
    "/chain",
    "/slash/etc/passwd",
    "/dotdot/marker.txt",
    "/s%75b/a.txt",
    "/hello%2etxt",
    "/%68ello.txt",
];

/// Prefixes that name the root itself (or try to leave it).
const DETOURS: &[&str] = &[
    "",
    "",
    "",
    "/.",
    "/",
    "//",
    "/self",
    "/self/self",
    "/%2e",
    "/%73elf",
    "/./",
    "/..",
    "/%2e%2e",
    "/.%2e",
    "/dotdot",
    "/linkdir_in/..",
    "/sub/%2e%2e",
    "/sub%2f..",
    "/\\..",
];

fn path_strategy() -> BoxedStrategy<String> {
    let token = prop_oneof![
        3 => prop::sample::select(NAMES),
        2 => prop::sample::select(DANGEROUS),
    ];
    let sep = prop::sample::select(&["/", "/", "/", "", "%2f", "\\", "%5c"][..]);
    // Tokens glued together, mostly with '/' between them.
    let glued = prop::collection::vec((token, sep), 0..8).prop_map(|parts| {
        let mut s = String::from("/");
        for (t, sep) in parts {
            s.push_str(t);
            s.push_str(sep);
        }
        s
    });
    // Plain walks, which often reach a real file or a symlink.
    let walk = prop::collection::vec(prop::sample::select(NAMES), 1..5)
        .prop_map(|v| format!("/{}", v.join("/")));
    // Random bytes, each percent-encoded or (if harmless) raw.
    let encoded = prop::collection::vec((any::<u8>(), any::<bool>(), any::<bool>()), 0..32)
        .prop_map(|bytes| {
            let mut s = String::from("/");
            for (b, raw, upper) in bytes {
                if raw && (b.is_ascii_alphanumeric() || b == b'/' || b == b'.') {
                    s.push(b as char);
                } else if upper {
                    s.push_str(&format!("%{b:02X}"));
                } else {
                    s.push_str(&format!("%{b:02x}"));
                }
            }
            s
        });
    // Random bytes from a dangerous alphabet, all percent-encoded.
    let encoded_dots =
        prop::collection::vec(prop::sample::select(&b"./\\\0\xc0\xae\xafab"[..]), 0..16).prop_map(
            |bytes| {
                let mut s = String::from("/");
                for b in bytes {
                    s.push_str(&format!("%{b:02x}"));
                }
                s
            },
        );
    // Real paths in the tree behind harmless or dangerous-looking detours.
    let real = (
        prop::sample::select(DETOURS),
        prop::sample::select(REAL),
        prop::sample::select(&["", "", "", "/", "/.", "%2f", "/..", "/%2e%2e", "?q", "#f"][..]),
    )
        .prop_map(|(detour, path, suffix)| format!("{detour}{path}{suffix}"));
    prop_oneof![
        4 => glued,
        2 => walk,
        3 => real,
        2 => encoded,
        1 => encoded_dots,
        1 => any::<String>(),
        1 => any::<String>().prop_map(|s| format!("/{s}")),
        1 => "/[./%a-f0-9\\\\]{0,30}",
    ]
    .boxed()
}

#[test]
fn request_path_parse_never_panics_on_arbitrary_strings() {
    let mut runner = TestRunner::new(config());
    runner
        .run(
            &prop_oneof![any::<String>(), "/\\PC{0,64}", "[/%.a-f0-9\\\\]{0,40}"],
            |raw| {
                if let Ok(p) = RequestPath::parse(&raw) {
                    for s in p.segments() {
                        prop_assert!(
                            !s.is_empty()
                                && s != "."
                                && s != ".."
                                && !s.contains(['/', '\\', '\0']),
                            "{raw:?}: segment {s:?}"
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn accepted_paths_never_open_outside_the_root() {
    let t = Tree::new();
    let root = Root::open(&t.root).unwrap();
    // The tree is what the checks assume: the escape routes exist.
    assert_eq!(fs::read_to_string(t.root.join("link_out")).unwrap(), MARKER);
    assert_eq!(
        fs::read_to_string(t.root.join("linkdir_out/marker.txt")).unwrap(),
        MARKER
    );
    assert_eq!(
        fs::read_to_string(t.root.join("sub/deep/up3/marker.txt")).unwrap(),
        MARKER
    );

    let mut runner = TestRunner::new(config());
    let opened = std::cell::Cell::new(0_u32);
    runner
        .run(&path_strategy(), |raw| {
            let mut n = opened.get();
            let r = check_path(&t, &root, &raw, &mut n);
            opened.set(n);
            r
        })
        .unwrap();
    // The generator reaches real files, so the checks above bite.
    eprintln!("{} files opened inside the root", opened.get());
    assert!(opened.get() > 200, "only {} files opened", opened.get());
}

/// The escapes the generator is built around, checked by name.
#[cfg(target_os = "linux")]
#[test]
fn known_escapes_stay_inside() {
    let t = Tree::new();
    let root = Root::open(&t.root).unwrap();
    let mut n = 0;
    for raw in [
        "/link_out",
        "/link_abs",
        "/linkdir_out/marker.txt",
        "/linkdir_out/",
        "/linkdir_out/deeper/marker.txt",
        "/marker.txt",
        "/sub/up_out",
        "/sub/deep/up3/marker.txt",
        "/outidx/",
        "/chain",
        "/slash/etc/passwd",
        "/dotdot/marker.txt",
        "/dotdot/outside/marker.txt",
        "/self/dotdot/marker.txt",
        "/linkdir_in/../../marker.txt",
        "/%2e%2e/marker.txt",
        "/..%2fmarker.txt",
        "/%c0%ae%c0%ae/marker.txt",
        "/..%5cmarker.txt",
        "/%00/../marker.txt",
    ] {
        check_path(&t, &root, raw, &mut n).unwrap_or_else(|e| panic!("{e}"));
    }
    // Inside the root, things do open.
    let p = RequestPath::parse("/link_in").unwrap();
    assert!(matches!(
        root.open_path(&p, &Policy::default()),
        Ok(Opened::File(..))
    ));
    assert!(is_root(&t, "/self/"));
}

fn is_root(t: &Tree, raw: &str) -> bool {
    let root = Root::open(Path::new(&t.root)).unwrap();
    let p = RequestPath::parse(raw).unwrap();
    match root.open_path(&p, &Policy::default()) {
        Ok(Opened::Dir(d)) => {
            let m = fs::metadata(&t.canonical).unwrap();
            d.metadata().ino() == m.ino()
        }
        _ => false,
    }
}
