//! `auto`: not a backend of its own but a policy over two, picking one for
//! each response from the length of its body (the bytes actually sent, so a
//! range request is judged by the range): `copy` below the threshold, where
//! head and body leave in one `sendmsg` and the copy costs less than the
//! extra call, and `sendfile` from the threshold up, where copying nothing
//! through user space wins (results/FINDINGS.md §7). Where `sendfile` is
//! not built (not Linux) every body goes through `copy`.
//!
//! Both backends are built with the same disk pool, so a cold range waits
//! for the same read-in threads whichever backend sends it. Each session
//! counts into the backend that ran it ([`Transfer::delegates`]); the
//! policy's own counters stay at zero.

use std::sync::Arc;

use zcserve_core::disk::{Cold, DiskPool};
use zcserve_core::{ByteRange, Session, Source, Stats, Transfer, TransferError};

use crate::{Backend, Config};

/// The backend for bodies below the threshold.
const SMALL: Backend = Backend::Copy;

/// The per-response policy: the built backends and where it switches.
pub(crate) struct Auto {
    /// The small bodies' backend first, the large ones' last (the same one
    /// where only `copy` is built).
    backends: Vec<Arc<dyn Transfer>>,
    threshold: u64,
    stats: Arc<Stats>,
}

/// Builds both backends, sharing `cold`.
pub(crate) fn build(
    config: &Config,
    cold: Option<Cold>,
) -> Result<Arc<dyn Transfer>, TransferError> {
    let mut backends = vec![SMALL.build_with(config, cold.clone())?];
    if large() != SMALL {
        backends.push(large().build_with(config, cold)?);
    }
    Ok(Arc::new(Auto {
        backends,
        threshold: config.auto_threshold,
        stats: Arc::default(),
    }))
}

/// The backend for bodies from the threshold up: [`Backend::auto`].
fn large() -> Backend {
    Backend::auto()
}

/// The rule in words, as `--list-backends` and the start line print it.
pub(crate) fn rule(threshold: u64) -> String {
    if large() == SMALL {
        format!(
            "{SMALL} for every body ({} is not built here)",
            Backend::Sendfile
        )
    } else if threshold == 0 {
        format!("{} for every body", large())
    } else {
        let t = exact_size(threshold);
        // No comma: the start line separates its fields with ", ".
        format!("{SMALL} below {t}; {} from {t}", large())
    }
}

/// `n` in the largest binary unit that divides it, else in bytes: a
/// threshold printed rounded (as humansize does) would name the wrong byte.
fn exact_size(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n % (1 << shift) == 0 {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

impl Auto {
    fn pick(&self, len: u64) -> &Arc<dyn Transfer> {
        if len < self.threshold {
            &self.backends[0]
        } else {
            self.backends.last().expect("at least one backend")
        }
    }
}

impl Transfer for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn disk_pool(&self) -> Option<&Arc<DiskPool>> {
        self.backends[0].disk_pool()
    }

    fn delegates(&self) -> &[Arc<dyn Transfer>] {
        &self.backends
    }

    fn name_for(&self, len: u64) -> &'static str {
        self.pick(len).name()
    }

    fn quiesce(&self, limit: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        self.backends
            .iter()
            .all(|b| b.quiesce(until.saturating_duration_since(std::time::Instant::now())))
    }

    fn start(
        &self,
        source: &Source,
        range: ByteRange,
        prefix: Vec<u8>,
    ) -> Result<Box<dyn Session>, TransferError> {
        self.pick(range.len()).start(source, range, prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use zcserve_core::{Snapshot, blocking};

    use super::*;
    use crate::Choice;

    /// Sends `range` of a file through `t` and returns what each of its
    /// backends counted for it, by name.
    fn send(
        t: &dyn Transfer,
        source: &Source,
        data: &[u8],
        range: ByteRange,
    ) -> Vec<(&'static str, Snapshot)> {
        let before: Vec<Snapshot> = t.delegates().iter().map(|d| d.stats().snapshot()).collect();
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        let mut s = t.start(source, range, b"head".to_vec()).unwrap();
        blocking::send_all(s.as_mut(), a.as_fd(), None).unwrap();
        drop((s, a));
        let got = reader.join().unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(got[4..], data[range.start() as usize..range.end() as usize]);
        t.delegates()
            .iter()
            .zip(before)
            .map(|(d, was)| (d.name(), d.stats().snapshot().since(&was)))
            .collect()
    }

    #[test]
    fn picks_by_the_bytes_sent_at_the_threshold() {
        const T: u64 = 10_000;
        let path = std::env::temp_dir().join(format!("zcserve-auto-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * T as usize).map(|i| (i % 253) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let source = Source::new(Arc::new(std::fs::File::open(&path).unwrap())).unwrap();
        std::fs::remove_file(&path).unwrap();
        let t = Choice::Auto
            .build(&Config {
                auto_threshold: T,
                ..Config::default()
            })
            .unwrap();
        assert_eq!(t.name(), "auto");
        for (len, want) in [(T - 1, SMALL), (T, large()), (T + 1, large())] {
            // A range from the middle: judged by its length, not the file's.
            let range = ByteRange::new(T / 2, T / 2 + len).unwrap();
            assert_eq!(t.name_for(len), want.name());
            for (name, d) in send(t.as_ref(), &source, &data, range) {
                let ran = name == want.name();
                assert_eq!(d.sessions_started, u64::from(ran), "{len} bytes, {name}");
                assert_eq!(
                    d.body_bytes,
                    if ran { len } else { 0 },
                    "{len} bytes, {name}"
                );
            }
        }
        if large() != SMALL {
            // 0: every body, even an empty one, goes to the large backend.
            let t = Choice::Auto
                .build(&Config {
                    auto_threshold: 0,
                    ..Config::default()
                })
                .unwrap();
            for len in [0, 1] {
                let counted = send(t.as_ref(), &source, &data, ByteRange::new(0, len).unwrap());
                assert_eq!(counted[0].1.sessions_started, 0, "{len}: {counted:?}");
                assert_eq!(counted[1].1.sessions_started, 1, "{len}: {counted:?}");
            }
        }
        assert_eq!(t.stats().snapshot(), Snapshot::default());
    }

    #[test]
    fn both_backends_share_one_disk_pool() {
        let t = Choice::Auto
            .build(&Config {
                disk_threads: 2,
                ..Config::default()
            })
            .unwrap();
        let pools: Vec<_> = t
            .delegates()
            .iter()
            .map(|d| d.disk_pool().unwrap())
            .collect();
        assert!(pools.iter().all(|p| Arc::ptr_eq(p, pools[0])));
        assert!(Arc::ptr_eq(t.disk_pool().unwrap(), pools[0]));
    }

    #[test]
    fn rule_names_the_threshold_exactly() {
        assert_eq!(exact_size(64 << 10), "64 KiB");
        assert_eq!(exact_size(3 << 20), "3 MiB");
        assert_eq!(exact_size(65_537), "65537 bytes");
        if large() == Backend::Sendfile {
            assert_eq!(rule(64 << 10), "copy below 64 KiB; sendfile from 64 KiB");
            assert_eq!(rule(0), "sendfile for every body");
        } else {
            assert!(rule(64 << 10).starts_with("copy for every body"));
        }
    }
}
