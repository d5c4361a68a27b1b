//! `--backend auto` picks a backend per response by the body bytes it
//! sends: below the threshold `copy`, from it `sendfile`. Checked from the
//! outside: the `/metrics` samples of each backend against the bytes the
//! client received for the responses the rule sends through it.

mod common;
use common::*;

use zcserve_backends::Backend;
use zcserve_tests::content;

const T: u64 = 20_000;

fn get(s: &TestServer, target: &str, range: Option<String>) -> RawResponse {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(range) = range {
        r += &format!("Range: {range}\r\n");
    }
    r += "\r\n";
    let mut all = parse_responses(&s.raw(r.as_bytes()), &[false]);
    assert_eq!(all.len(), 1, "{target}");
    all.remove(0)
}

fn metrics(s: &TestServer) -> Vec<(String, u64)> {
    scrape_metrics(s.metrics_addr.expect("metrics address"))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sample(all: &[(String, u64)], key: &str) -> u64 {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {key} in {all:?}"))
}

#[test]
fn auto_sends_each_response_through_the_backend_its_size_picks() {
    let dir = TempDir::new();
    let big = content(3 * T as usize, 5);
    for (name, len) in [("below", T - 1), ("at", T), ("above", T + 1)] {
        std::fs::write(dir.path().join(name), &big[..len as usize]).unwrap();
    }
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let s = TestServer::start("auto", dir.path(), |s| {
        s.metrics = Some("127.0.0.1:0".parse().unwrap());
        s.backend_config.auto_threshold = T;
    });
    let (small, large) = ("copy", Backend::auto().name());
    let mut received = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    let requests = [
        ("/below", None, T - 1),
        ("/at", None, T),
        ("/above", None, T + 1),
        // A range is judged by its own length, not the file's.
        ("/big", Some(format!("bytes=100-{}", 100 + T - 2)), T - 1),
        ("/big", Some(format!("bytes=100-{}", 100 + T - 1)), T),
    ];
    for (target, range, len) in requests {
        let r = get(&s, target, range.clone());
        assert_eq!(
            r.status,
            if range.is_some() { 206 } else { 200 },
            "{target}"
        );
        let start = if range.is_some() { 100 } else { 0 };
        assert_eq!(
            r.body,
            big[start..start + len as usize],
            "{target} {range:?}"
        );
        let by = if len < T { small } else { large };
        let e = received.entry(by).or_default();
        e.0 += 1;
        e.1 += r.body.len() as u64;
    }
    let all = metrics(&s);
    for b in [small, large] {
        let (responses, bytes) = received.get(b).copied().unwrap_or_default();
        let key = |family: &str| format!("zcserve_backend_{family}_total{{backend=\"{b}\"}}");
        assert_eq!(sample(&all, &key("sessions_started")), responses, "{b}");
        assert_eq!(sample(&all, &key("sessions_completed")), responses, "{b}");
        assert_eq!(sample(&all, &key("body_bytes")), bytes, "{b}");
    }
    if large != small {
        // copy reads what it sends; sendfile copies nothing into user space.
        let copied = |b: &str| {
            sample(
                &all,
                &format!("zcserve_backend_copied_in_bytes_total{{backend=\"{b}\"}}"),
            )
        };
        assert_eq!(copied(small), received[small].1);
        assert_eq!(copied(large), 0);
        assert!(
            !all.iter().any(|(k, _)| k.contains("backend=\"auto\"")),
            "{all:?}"
        );
    }
}

#[test]
fn a_named_backend_sends_every_response_whatever_its_size() {
    let dir = TempDir::new();
    let big = content(3 * T as usize, 6);
    std::fs::write(dir.path().join("small"), &big[..100]).unwrap();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let s = TestServer::start("copy", dir.path(), |s| {
        s.metrics = Some("127.0.0.1:0".parse().unwrap());
        s.backend_config.auto_threshold = T;
    });
    assert_eq!(get(&s, "/small", None).body, big[..100]);
    assert_eq!(get(&s, "/big", None).body, big);
    let all = metrics(&s);
    assert_eq!(
        sample(&all, "zcserve_backend_body_bytes_total{backend=\"copy\"}"),
        100 + 3 * T
    );
    assert!(
        !all.iter().any(|(k, _)| k.contains("backend=\"sendfile\"")),
        "{all:?}"
    );
}
