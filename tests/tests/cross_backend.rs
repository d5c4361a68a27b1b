//! Every backend sends exactly `prefix + file[range]`, for arbitrary file
//! contents and ranges, socket buffer sizes, reader speeds, socket kinds and
//! both drivers. 256 cases per backend by default; set `PROPTEST_CASES` for
//! a longer hunt.

use proptest::prelude::*;
use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, Transfer};
use zcserve_tests::{Driver, Link, SockKind, Speed, TestFile, expected, small_config, transfer};

/// Sizes where a backend's internal chunking changes, each -1, exact and
/// +1: a page, and the copy buffer, the splice pipe and the per-pump budget
/// (`max_chunk`, which also bounds one sendfile/splice call and a uring
/// chain) of both configs the tests build, read from the configs so that
/// the edges move with them.
fn edges() -> Vec<usize> {
    let mut at = vec![4096];
    for c in [small_config(), Config::default()] {
        at.extend([c.buffer_size, c.pipe_size, c.max_chunk]);
    }
    let mut edges: Vec<usize> = [0, 1]
        .into_iter()
        .chain(at.into_iter().flat_map(|n| [n - 1, n, n + 1]))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

#[derive(Debug, Clone)]
struct Case {
    len: usize,
    seed: u64,
    /// Where the range starts and ends, as fractions of the file (0..=1000).
    range: (u16, u16),
    whole: bool,
    prefix_len: usize,
    sndbuf: Option<usize>,
    kind: SockKind,
    speed: Speed,
    driver: Driver,
    small: bool,
}

fn len_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..(300 << 10),
        3 => proptest::sample::select(edges()),
        1 => 0usize..(8 << 20),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        len_strategy(),
        any::<u64>(),
        (0u16..=1000, 0u16..=1000),
        proptest::bool::weighted(0.3),
        prop_oneof![2 => Just(0usize), 3 => 1usize..400],
        prop_oneof![1 => Just(None), 3 => (12u32..=22).prop_map(|s| Some(1usize << s))],
        prop_oneof![Just(SockKind::Tcp), Just(SockKind::Unix)],
        prop_oneof![
            2 => Just(Speed::Fast),
            1 => ((10u32..=16), 0u64..300).prop_map(|(c, p)| Speed::Slow { chunk: 1 << c, pause_us: p }),
        ],
        prop_oneof![Just(Driver::Blocking), Just(Driver::Tokio)],
        any::<bool>(),
    )
        .prop_map(|(len, seed, range, whole, prefix_len, sndbuf, kind, speed, driver, small)| {
            // A slow reader on a multi-megabyte file would take seconds per
            // case; keep its reads large enough to stay bounded.
            let speed = match speed {
                Speed::Slow { chunk, pause_us } if len > (1 << 20) => Speed::Slow {
                    chunk: chunk.max(64 << 10),
                    pause_us: pause_us.min(50),
                },
                s => s,
            };
            // Likewise a 4 KiB send buffer on TCP loopback costs a round of
            // wake-ups per 8 KiB; on big files keep it at 64 KiB or more.
            let sndbuf = if len > (1 << 20) { sndbuf.map(|b| b.max(64 << 10)) } else { sndbuf };
            Case { len, seed, range, whole, prefix_len, sndbuf, kind, speed, driver, small }
        })
}

fn byte_range(c: &Case) -> ByteRange {
    if c.whole {
        return ByteRange::full(c.len as u64);
    }
    let at = |f: u16| (c.len as u64 * f as u64) / 1000;
    let (a, b) = (at(c.range.0.min(c.range.1)), at(c.range.0.max(c.range.1)));
    ByteRange::new(a, b).unwrap()
}

fn check(backend: &dyn Transfer, c: &Case) -> Result<(), TestCaseError> {
    let file = TestFile::random(c.len, c.seed);
    let range = byte_range(c);
    let prefix = zcserve_tests::content(c.prefix_len, !c.seed);
    let before = backend.stats().snapshot();
    let out = transfer(
        backend,
        &file,
        range,
        &prefix,
        Link::new(c.kind, c.sndbuf),
        c.speed,
        c.driver,
    );
    let want = expected(&file, range, &prefix);
    let sent = out
        .result
        .map_err(|e| TestCaseError::fail(format!("{}: {e}", backend.name())))?;
    prop_assert_eq!(sent, want.len() as u64);
    prop_assert_eq!(out.received.len(), want.len());
    prop_assert!(out.received == want, "{}: bytes differ", backend.name());
    let d = backend.stats().snapshot().since(&before);
    prop_assert_eq!(d.body_bytes, range.len());
    prop_assert_eq!(d.prefix_bytes, prefix.len() as u64);
    prop_assert_eq!(
        (d.sessions_started, d.sessions_completed, d.sessions_failed),
        (1, 1, 0)
    );
    Ok(())
}

fn run(backend: Backend) {
    if !zcserve_tests::under_test(backend) {
        return;
    }
    // One backend of each config for the whole run, as a server has: the
    // pools are reused from case to case.
    let small = backend.build(&small_config()).unwrap();
    let default = backend.build(&Config::default()).unwrap();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (ran, bytes, slow, unix, tokio) = Default::default();
    let count = |c: &std::sync::atomic::AtomicU64, n: u64| {
        c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    runner
        .run(&case(), |c| {
            count(&ran, 1);
            count(&bytes, c.len as u64);
            count(&slow, u64::from(matches!(c.speed, Speed::Slow { .. })));
            count(&unix, u64::from(c.kind == SockKind::Unix));
            count(&tokio, u64::from(c.driver == Driver::Tokio));
            let backend = if c.small { &small } else { &default };
            check(backend.as_ref(), &c)
        })
        .unwrap();
    // What the run covered, for the record (shown with --nocapture).
    let get = |c: std::sync::atomic::AtomicU64| c.into_inner();
    println!(
        "{backend}: {} cases, {} MiB of files, {} slow readers, {} on Unix sockets, {} through tokio",
        get(ran),
        get(bytes) >> 20,
        get(slow),
        get(unix),
        get(tokio)
    );
}

#[test]
fn sendfile_sends_exactly_the_range() {
    run(Backend::Sendfile);
}

#[test]
fn splice_sends_exactly_the_range() {
    run(Backend::Splice);
}

#[test]
fn mmap_sends_exactly_the_range() {
    run(Backend::Mmap);
}

#[test]
fn copy_sends_exactly_the_range() {
    run(Backend::Copy);
}

#[test]
fn uring_sends_exactly_the_range() {
    run(Backend::Uring);
}

/// Every edge size, whole and with a range cut at both ends, on both socket
/// kinds and drivers, for every backend: the cases proptest might not draw.
#[test]
fn every_backend_on_every_edge_size() {
    for config in [small_config(), Config::default()] {
        for backend in zcserve_tests::backends(&config) {
            for len in edges() {
                let file = TestFile::random(len, len as u64);
                let inner = ByteRange::new(
                    (len as u64).min(1),
                    (len as u64).saturating_sub(1).max((len as u64).min(1)),
                )
                .unwrap();
                for range in [ByteRange::full(len as u64), inner] {
                    // A 4 KiB send buffer on TCP loopback crawls (a few
                    // MB/s); it is exercised by the proptests on small files.
                    for (kind, sndbuf, driver) in [
                        (SockKind::Tcp, None, Driver::Blocking),
                        (SockKind::Unix, Some(4096), Driver::Tokio),
                    ] {
                        for prefix in [&b""[..], b"HTTP/1.1 200 OK\r\n\r\n"] {
                            let out = transfer(
                                backend.as_ref(),
                                &file,
                                range,
                                prefix,
                                Link::new(kind, sndbuf),
                                Speed::Fast,
                                driver,
                            );
                            let want = expected(&file, range, prefix);
                            let name = backend.name();
                            assert_eq!(
                                out.result
                                    .unwrap_or_else(|e| panic!("{name} len {len} {range}: {e}")),
                                want.len() as u64
                            );
                            assert!(
                                out.received == want,
                                "{name} len {len} {range} {kind:?} {driver:?}: bytes differ"
                            );
                        }
                    }
                }
            }
        }
    }
}
