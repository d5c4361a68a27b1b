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
