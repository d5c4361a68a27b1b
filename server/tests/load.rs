//! Load, for every backend: 200 concurrent clients each download a 32 MiB
//! file from a two-thread server and every body's SHA-256 must be the
//! file's (bodies are hashed as they stream in, never held whole; every
//! client holds its response head before any reads its body, so all 200
//! responses are in flight at once); and a
//! 10-deep pipeline of GETs for files of 0 B … 1 MiB written in one write,
//! whose 10 responses must come back in order with exact bytes.
mod common;
use common::*;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Hex form of a digest, for messages.
fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The points every client passes together: connected, head received,
/// and the go to read the bodies. A client that fails still passes the
/// rest (on drop), so the others are never left waiting.
struct Stages<'a> {
    barriers: &'a [Barrier],
    passed: usize,
}

impl Stages<'_> {
    fn pass(&mut self) {
        self.barriers[self.passed].wait();
        self.passed += 1;
    }
}

impl Drop for Stages<'_> {
    fn drop(&mut self) {
        while self.passed < self.barriers.len() {
            self.pass();
        }
    }
}

/// One client: connects, waits for all the others, asks for `path`, waits
/// for all the others to have their heads (and the test to look), and
/// returns the SHA-256 of the body after checking the status, the
/// Content-Length and that exactly that many bytes came before the close.
fn download(
    addr: SocketAddr,
    path: &str,
    expect_len: u64,
    barriers: &[Barrier],
) -> Result<[u8; 32], String> {
    let mut stages = Stages {
        barriers,
        passed: 0,
    };
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    // Generous: with 200 clients on two cores a connection may wait its
    // turn, but a stall this long is a bug.
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    stages.pass();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0usize;
    // The head.
    let (head_len, len) = loop {
        let n = c
            .read_r(&mut buf[have..])
            .map_err(|e| format!("reading the head: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed before the head: {:?}",
                String::from_utf8_lossy(&buf[..have])
            ));
        }
        have += n;
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut slots);
        match r.parse(&buf[..have]) {
            Ok(httparse::Status::Complete(head_len)) => {
                if r.code != Some(200) {
                    return Err(format!("status {:?}", r.code));
                }
                let len = r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<u64>().ok())
                    .ok_or("no Content-Length")?;
                break (head_len, len);
            }
            Ok(httparse::Status::Partial) if have < buf.len() => {}
            other => return Err(format!("bad head: {other:?}")),
        }
    };
    if len != expect_len {
        return Err(format!("Content-Length {len}, want {expect_len}"));
    }
    // Every response under way before any body is read.
    stages.pass();
    stages.pass();
    // The body, hashed as it streams.
    let mut hasher = Sha256::new();
    hasher.update(&buf[head_len..have]);
    let mut got = (have - head_len) as u64;
    loop {
        match c.read_r(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                got += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("after {got} of {len} body bytes: {e}")),
        }
    }
    if got != len {
        return Err(format!(
            "{got} body bytes before the close, Content-Length {len}"
        ));
    }
    Ok(hasher.finalize().into())
}

#[test]
fn two_hundred_concurrent_clients_get_exact_32_mib_bodies() {
    const CLIENTS: usize = 200;
    const SIZE: usize = 32 << 20;
    let root = TempDir::new();
    let want: [u8; 32] = {
        let data = zcserve_tests::content(SIZE, 0x10ad);
        std::fs::write(root.path().join("big.bin"), &data).unwrap();
        Sha256::digest(&data).into()
    };
    for b in backends() {
        let started = Instant::now();
        let s = TestServer::start(b, root.path(), |s| s.threads = 2);
        // Connected (the clients only); heads received and go (the clients
        // and this thread, which looks in between).
        let barriers = Arc::new([
            Barrier::new(CLIENTS),
            Barrier::new(CLIENTS + 1),
            Barrier::new(CLIENTS + 1),
        ]);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (addr, barriers) = (s.addr, barriers.clone());
                std::thread::Builder::new()
                    .name(format!("client-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || download(addr, "/big.bin", SIZE as u64, &barriers[..]))
                    .unwrap()
            })
            .collect();
        barriers[1].wait();
        // Every client holds a response head and has read none of its
        // body: all were accepted, and all responses are under way at once.
        let accepted = s.metrics.accepted.load(Ordering::Relaxed);
        barriers[2].wait();
        let mut failures = Vec::new();
        for (i, c) in clients.into_iter().enumerate() {
            match c.join() {
                Ok(Ok(d)) if d == want => {}
                Ok(Ok(d)) => failures.push(format!(
                    "client {i}: SHA-256 {} != file's {}",
                    hex(&d),
                    hex(&want)
                )),
                Ok(Err(e)) => failures.push(format!("client {i}: {e}")),
                Err(_) => failures.push(format!("client {i}: panicked")),
            }
        }
        let took = started.elapsed();
        assert!(
            failures.is_empty(),
            "{b}: {} of {CLIENTS} downloads of 32 MiB failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(
            accepted, CLIENTS as u64,
            "{b}: connections accepted when every client had its head"
        );
        let total = (CLIENTS * SIZE) as f64;
        eprintln!(
            "{b}: {CLIENTS} × 32 MiB, all SHA-256 exact, in {took:?} ({:.0} MiB/s)",
            total / took.as_secs_f64() / (1 << 20) as f64
        );
    }
}

#[test]
fn ten_deep_pipeline_in_one_write() {
    const SIZES: [usize; 10] = [
        0,
        1,
        100,
        1000,
        4096,
        10_000,
        65_536,
        100_000,
        500_000,
        1 << 20,
    ];
    let root = TempDir::new();
    let files: Vec<Vec<u8>> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let data = zcserve_tests::content(n, 0x9100 + i as u64);
            std::fs::write(root.path().join(format!("f{i}.bin")), &data).unwrap();
            data
        })
        .collect();
    let mut requests = Vec::new();
    for i in 0..SIZES.len() {
        let close = if i + 1 == SIZES.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        requests.extend(format!("GET /f{i}.bin HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes());
    }
    for b in backends() {
        let started = Instant::now();
        let s = TestServer::start(b, root.path(), |_| {});
        let mut c = s.connect();
        c.write_all(&requests).unwrap();
        let out = read_to_close(&mut c);
        let r = parse_responses(&out, &[]);
        assert_eq!(
            r.len(),
            SIZES.len(),
            "{b}: {} responses to a {}-deep pipeline",
            r.len(),
            SIZES.len()
        );
        for (i, (resp, data)) in r.iter().zip(&files).enumerate() {
            assert_eq!(resp.status, 200, "{b}: response {i} (/f{i}.bin)");
            assert_eq!(
                resp.header("content-length"),
                Some(data.len().to_string().as_str()),
                "{b}: response {i} (/f{i}.bin): Content-Length"
            );
            assert!(
                resp.body == *data,
                "{b}: response {i} (/f{i}.bin): body differs from the file ({} bytes)",
                data.len()
            );
            let closes = resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            assert_eq!(
                closes,
                i + 1 == SIZES.len(),
                "{b}: response {i}: Connection: close only on the last"
            );
        }
        eprintln!("{b}: 10-deep pipeline exact in {:?}", started.elapsed());
    }
}
