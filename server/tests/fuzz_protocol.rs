//! Seeded, bounded fuzzing of the two parsers untrusted bytes meet first:
//! the request-head parser (`request_head::parse`) and the request-body
//! reader (`request_body`, chunked framing). Each run mutates valid inputs
//! (flips, inserts of bytes and of tokens that matter to HTTP, deletions,
//! duplicated and truncated lines) from a fixed seed, so a failure
//! reproduces; `ZCSERVE_FUZZ_SEED=<n>` picks another seed and
//! `ZCSERVE_FUZZ_CASES=<n>` another count. It runs in `cargo test` in a few
//! seconds; for a long, coverage-guided run see `fuzz/README.md`.
//!
//! Checked for every input, besides not panicking:
//! - the head parser never consumes more than it was given or more than
//!   16 KiB; a whole head parses the same alone, every strict prefix of it
//!   is "need more bytes", and the request it yields, written out again,
//!   parses to the same request (method, target, version, the fields kept,
//!   framing, keep-alive, `Expect`); a refusal is 4xx, 501 or 505;
//! - the body reader never consumes more than it was given, and gives the
//!   same answer (end at the same byte, or the same error) however the
//!   bytes are split between calls; a valid chunked body ends exactly at
//!   its last CRLF, whatever follows it.

use http::{StatusCode, Version};
use zcserve::request_body::{BodyError, BodyReader, Chunked, Fed};
use zcserve::request_head::{self, MAX_HEAD, Parsed, Request};

/// splitmix64: small, fast, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn seed() -> u64 {
    std::env::var("ZCSERVE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_1201)
}

fn cases(default: usize) -> usize {
    std::env::var("ZCSERVE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Byte strings that matter to an HTTP/1.1 parser.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"=",
    b"\"",
    b"\\",
    b"\0",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"HTTP/1.",
    b"HTTP/2.0",
    b"HTTP/1.9",
    b"chunked",
    b"gzip",
    b"Transfer-Encoding: ",
    b"Content-Length: ",
    b"Host: ",
    b"Expect: 100-continue",
    b"Connection: close",
    b"0",
    b"ffffffffffffffff",
    b"99999999999999999999",
    b"\r\n\r\n",
    b"0\r\n\r\n",
];

/// 1 to 4 random edits of `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(8) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            2 => input.insert(at, rng.next() as u8),
            3 | 4 => {
                let t = rng.pick(TOKENS);
                input.splice(at..at, t.iter().copied());
            }
            5 if !input.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            6 => {
                // Duplicate a stretch (a header line, say).
                let end = (at + rng.below(40)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(end..end, copy);
            }
            _ => input.truncate(at),
        }
    }
}

// ---------------------------------------------------------------------------
// Request heads
// ---------------------------------------------------------------------------

/// A valid head, built from random parts.
fn valid_head(rng: &mut Rng) -> Vec<u8> {
    let method = *rng.pick(&["GET", "HEAD", "POST", "PUT", "OPTIONS", "BREW"]);
    let target = *rng.pick(&[
        "/",
        "/a.txt",
        "/dir/",
        "/a%20b?x=1",
        "http://h/a?q",
        "*",
        "/%2e%2e/x",
    ]);
    let version = *rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.2"]);
    let mut head = format!("{method} {target} {version}\r\n");
    if version != "HTTP/1.0" || rng.chance(2) {
        head.push_str(rng.pick::<&str>(&[
            "Host: x\r\n",
            "Host: a.example:8080\r\n",
            "host:[::1]\r\n",
        ]));
    }
    for _ in 0..rng.below(6) {
        let field = *rng.pick(&[
            "Accept: */*",
            "Connection: close",
            "Connection: keep-alive",
            "Content-Length: 5",
            "Content-Length: 0",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip, chunked",
            "Expect: 100-continue",
            "Range: bytes=0-1",
            "If-None-Match: \"x\"",
            "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
            "If-Range: \"x\"",
            "User-Agent: fuzz/1",
            "Referer: /r",
            "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ]);
        head.push_str(field);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if rng.chance(3) {
        // Something after the head: a body or the next request.
        bytes.extend_from_slice(rng.pick::<&[u8]>(&[
            &b"hello"[..],
            b"GET / HTTP/1.1\r\n",
            b"0\r\n\r\n",
        ]));
    }
    bytes
}

/// `req` written out again as a head.
fn write_head(req: &Request) -> Vec<u8> {
    let version = if req.version == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let mut out = format!("{} {} {version}\r\n", req.method, req.target).into_bytes();
    for (name, value) in &req.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn check_head(input: &[u8], rng: &mut Rng) -> Result<(), String> {
    match request_head::parse(input) {
        Ok(Parsed::Complete(req, n)) => {
            if n > input.len() || n > MAX_HEAD || n == 0 {
                return Err(format!("consumed {n} of {}", input.len()));
            }
            match request_head::parse(&input[..n]) {
                Ok(Parsed::Complete(_, m)) if m == n => {}
                other => return Err(format!("the head alone: {other:?}")),
            }
            // A few strict prefixes, the last bytes always.
            for k in [n - 1, n.saturating_sub(2), rng.below(n), rng.below(n)] {
                if !matches!(request_head::parse(&input[..k]), Ok(Parsed::Partial)) {
                    return Err(format!("prefix of {k} bytes is not Partial"));
                }
            }
            let again = write_head(&req);
            match request_head::parse(&again) {
                Ok(Parsed::Complete(back, m)) if m == again.len() => {
                    let same = back.method == req.method
                        && back.target == req.target
                        && back.version == req.version
                        && back.headers == req.headers
                        && back.body_len == req.body_len
                        && back.chunked_body == req.chunked_body
                        && back.expect_continue == req.expect_continue
                        && back.keep_alive == req.keep_alive
                        && back.has_preconditions == req.has_preconditions
                        && back.has_range == req.has_range;
                    if !same {
                        return Err(format!("round trip: {req:?} became {back:?}"));
                    }
                }
                other => {
                    return Err(format!(
                        "round trip of {req:?} as {:?}: {other:?}",
                        String::from_utf8_lossy(&again)
                    ));
                }
            }
            if req.version != Version::HTTP_10 && req.version != Version::HTTP_11 {
                return Err(format!("version {:?}", req.version));
            }
        }
        Ok(Parsed::Partial) => {
            if input.len() >= MAX_HEAD {
                return Err("Partial past 16 KiB".into());
            }
        }
        Err(r) => {
            let fine = r.status.is_client_error()
                || r.status == StatusCode::NOT_IMPLEMENTED
                || r.status == StatusCode::HTTP_VERSION_NOT_SUPPORTED;
            if !fine || r.reason.is_empty() {
                return Err(format!("refused with {} ({:?})", r.status, r.reason));
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_request_head_parser() {
    let seed = seed();
    let mut rng = Rng(seed);
    let n = cases(60_000);
    let mut complete = 0;
    for case in 0..n {
        let mut input = valid_head(&mut rng);
        // One in ten stays valid; the rest are mutated.
        if !rng.chance(10) {
            mutate(&mut rng, &mut input);
        }
        if let Err(e) = check_head(&input, &mut rng) {
            panic!(
                "seed {seed}, case {case}: {e}\ninput: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        if let Ok(Parsed::Complete(..)) = request_head::parse(&input) {
            complete += 1;
        }
    }
    // The generator must reach both sides: a fuzz that only produced
    // garbage (or only valid heads) would prove little.
    assert!(
        complete > n / 10 && complete < n * 9 / 10,
        "{complete} of {n} accepted"
    );
}

// ---------------------------------------------------------------------------
// Chunked bodies
// ---------------------------------------------------------------------------

/// A valid chunked body: random chunks, extensions and trailers.
fn valid_chunked(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(5) {
        let len = 1 + rng.below(40);
        let size = if rng.chance(2) {
            format!("{len:x}")
        } else {
            format!("{len:04X}")
        };
        out.extend_from_slice(size.as_bytes());
        for _ in 0..rng.below(3) {
            out.extend_from_slice(rng.pick::<&[u8]>(&[
                &b";a"[..],
                b" ; name=value",
                b";q=\"x \\\" y\"",
                b";e=1",
            ]));
        }
        out.extend_from_slice(b"\r\n");
        for _ in 0..len {
            // Data may hold anything, CRLF and digits included.
            out.push(*rng.pick(b"ab\r\n0;\x00\xff"));
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if rng.chance(2) {
        b"0\r\n"
    } else {
        b"000;x\r\n"
    });
    for _ in 0..rng.below(3) {
        out.extend_from_slice(rng.pick::<&[u8]>(&[
            &b"X-Sum: 1\r\n"[..],
            b"Expires:\r\n",
            b"T: a b\tc\r\n",
        ]));
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// What a reader says about `input` fed whole.
fn whole(limit: u64, input: &[u8]) -> Result<Fed, BodyError> {
    Chunked::new(limit).feed(input)
}

/// The same input fed in random pieces: the same answer in whole-input
/// terms (`Done` at the same absolute byte).
fn split(limit: u64, input: &[u8], rng: &mut Rng) -> Result<Fed, BodyError> {
    let mut c = Chunked::new(limit);
    let mut at = 0;
    while at < input.len() {
        let end = (at + 1 + rng.below(12)).min(input.len());
        match c.feed(&input[at..end])? {
            Fed::Done(n) => {
                if n > end - at {
                    return Ok(Fed::Done(usize::MAX));
                }
                return Ok(Fed::Done(at + n));
            }
            Fed::More => at = end,
        }
    }
    Ok(Fed::More)
}

#[test]
fn fuzz_chunked_body_reader() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0xc4u64);
    let n = cases(60_000);
    let mut done = 0;
    for case in 0..n {
        let body = valid_chunked(&mut rng);
        let mut input = body.clone();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let limit = if rng.chance(8) {
            rng.below(body.len() + 8) as u64
        } else {
            1 << 20
        };
        let mutated = !rng.chance(5);
        if mutated {
            mutate(&mut rng, &mut input);
        }
        let a = whole(limit, &input);
        let b = split(limit, &input, &mut rng);
        let fail = |why: String| -> ! {
            panic!(
                "seed {seed}, case {case}: {why}\ninput: {:?}",
                String::from_utf8_lossy(&input)
            )
        };
        if a != b {
            fail(format!("whole {a:?}, split {b:?}"));
        }
        match a {
            Ok(Fed::Done(k)) => {
                done += 1;
                if k > input.len() {
                    fail(format!("consumed {k} of {}", input.len()));
                }
                if !input[..k].ends_with(b"\r\n") {
                    fail(format!("ended at {k}, not after a CRLF"));
                }
            }
            Ok(Fed::More) | Err(_) => {}
        }
        if !mutated {
            let want = if (body.len() as u64) <= limit {
                Ok(Fed::Done(body.len()))
            } else {
                Err(BodyError::TooLarge)
            };
            if a != want {
                fail(format!("valid body of {} bytes: {a:?}", body.len()));
            }
        }
    }
    assert!(done > n / 10, "only {done} of {n} bodies ended");
    // And a Content-Length reader, split anyhow, ends at its length.
    for _ in 0..1000 {
        let len = rng.below(100) as u64;
        let mut r = BodyReader::Length(len);
        let mut total = 0u64;
        loop {
            let piece = 1 + rng.below(30);
            match r.feed(&vec![b'x'; piece]).unwrap() {
                Fed::Done(k) => {
                    assert!(k <= piece);
                    total += k as u64;
                    break;
                }
                Fed::More => total += piece as u64,
            }
        }
        assert_eq!(total, len);
    }
}
