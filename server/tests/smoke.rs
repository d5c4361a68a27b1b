//! The harness works: every backend serves a file.
mod common;
use common::*;

#[test]
fn every_backend_serves_a_file() {
    let root = TempDir::new();
    std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
    for b in backends() {
        let s = TestServer::start(b, root.path(), |_| {});
        let out = s.raw(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = parse_responses(&out, &[]);
        assert_eq!(r[0].status, 200, "{b}");
        assert_eq!(r[0].body, b"hello");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (status, _, body) = rt.block_on(hyper_get(s.addr, "/a.txt", &[]));
        assert_eq!((status.as_u16(), body.as_slice()), (200, &b"hello"[..]));
    }
}
