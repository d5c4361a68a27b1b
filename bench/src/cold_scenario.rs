//! The cold-cache scenario, run: for every target in every round, the
//! working set evicted and checked, the server started (in the throttled
//! cgroup with `--disk-iops`), and two populations loaded together: cold
//! connections fetching random files of the set, and one hot keep-alive
//! client fetching a small cached file. The machinery (eviction,
//! residency, the disk's latency, the cgroup) is in [`crate::cold`]; the
//! report in [`crate::report::cold`].

use std::path::Path;
use std::time::Duration;

use crate::cold::{self, DiskReads, Throttle, WorkingSet};
use crate::fixture::{file_path, warm};
use crate::launch::{Running, Setup};
use crate::load::{self, ClientRead, LoadSpec, Priority};
use crate::model::{CDF_QUANTILES, ColdResult, ColdSetup, Machine};
use crate::report;
use crate::steal::{StealGate, StealMeter};
use crate::target::Target;
use crate::units::{file_stem, human_size};

/// The cold scenario's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdPlan {
    /// Files in the working set.
    pub files: usize,
    /// The size of each.
    pub size: u64,
    /// Connections fetching random cold files.
    pub conns: usize,
    /// Read IOPS the servers' cgroup allows; `None`: the raw disk.
    pub disk_iops: Option<u32>,
    /// Random cold reads timed to measure the disk.
    pub latency_samples: usize,
    /// Rounds, each running every target once.
    pub rounds: u32,
    /// How long each run lasts.
    pub duration: Duration,
    /// How both clients (cold and hot) read bodies.
    pub client_read: ClientRead,
    /// How the hot client's thread is scheduled (the cold clients' always
    /// at normal priority).
    pub hot_priority: Priority,
    /// Which runs are made again for the hypervisor's steal.
    pub steal_gate: StealGate,
    /// The most cold MB/s the cold connections ask for; `None`: each asks
    /// for its next file as soon as the last one ended.
    pub cold_rate: Option<f64>,
}

impl ColdPlan {
    /// The hot client's scheduling, in words, for the report.
    pub fn hot_priority_note(&self) -> String {
        match self.hot_priority {
            Priority::Realtime => "real-time (`SCHED_FIFO`, lowest priority, \
                 `--hot-priority realtime`): it runs as soon as a response wakes it, so the \
                 cold clients' work on the same CPU stays out of its latency; this also changes \
                 how the servers' latencies come out, so compare only with runs made the same way"
                .into(),
            Priority::Normal => "normal time-sharing, like the cold clients (the default; \
                 `--hot-priority realtime` is the alternative)"
                .into(),
        }
    }

    /// In a capped cold load, how often one cold request may start:
    /// one file's bytes at the rate.
    pub fn cold_pace(&self) -> Option<Duration> {
        self.cold_rate
            .map(|mb| cold::request_interval(self.size, mb))
    }
}

/// The hot client's file in the cold scenario.
pub const HOT_SIZE: u64 = 4096;
/// The largest fraction of the working set that may still be cached when
/// a cold run starts: more, and eviction failed and the run is invalid.
pub const MAX_CACHED_AT_START: f64 = 0.05;

/// The cold scenario: the working set made and the disk's latency
/// measured once; then, round after round, for each target: the set
/// evicted (and checked), its server started (in the throttled cgroup with
/// --disk-iops), and the cold and hot populations run together; writes
/// the cold report into `out`. Whether every run was valid.
pub fn run(
    c: &ColdPlan,
    targets: &[Target],
    setup: &Setup<'_>,
    machine: &Machine,
    client_cpus: &[usize],
    out: &Path,
    command: &str,
) -> Result<bool, String> {
    let stem = file_stem(c.size);
    let set_dir = setup.fixture.join(format!("cold-{stem}"));
    eprintln!(
        "zcbench: cold: {} files of {} in {}",
        c.files,
        human_size(c.size),
        set_dir.display()
    );
    let set = WorkingSet::make(&set_dir, c.files, c.size)?;
    let latency = cold::disk_latency(&set, c.latency_samples)?;
    eprintln!(
        "zcbench: cold: the disk's own cold 4 KiB reads: median {} µs, p99 {} µs ({} reads)",
        latency.p50_us, latency.p99_us, latency.samples
    );
    // The disk's read counters are recorded around every run where it can
    // be found; only a throttle needs it.
    let device = cold::block_device_of(&set_dir);
    let throttle = match c.disk_iops {
        Some(iops) => {
            let dev = device.clone()?;
            Some(Throttle::create(
                &format!("zcbench-{}", std::process::id()),
                dev,
                iops,
            )?)
        }
        None => None,
    };
    let disk = match &throttle {
        Some(t) => t.description.clone(),
        None => "no throttle (--disk-iops not given)".to_string(),
    };
    let servers = Setup {
        zcserve: setup.zcserve.clone(),
        fixture: setup.fixture.clone(),
        server_cpus: setup.server_cpus,
        peer_timeout: setup.peer_timeout,
        logs: setup.logs.clone(),
        cgroup_procs: throttle.as_ref().map(Throttle::procs),
    };
    let hot_file = file_path(&setup.fixture, HOT_SIZE);
    let mut results = Vec::new();
    for round in 1..=c.rounds {
        for t in targets {
            let attempt = |n: u32| -> Result<ColdResult, String> {
                set.evict()?;
                warm(&hot_file)?;
                let r = match t.start(&servers) {
                    Ok(mut s) => cold_round(
                        t,
                        &mut s,
                        &set,
                        &stem,
                        c,
                        device.as_ref().ok().copied(),
                        setup.server_cpus,
                        client_cpus,
                        round,
                    )?,
                    Err(e) => {
                        eprintln!("zcbench: cold round {round}: {e}");
                        failed_cold(t, round)
                    }
                };
                print_cold_run(&r, n);
                Ok(r)
            };
            let gated =
                c.steal_gate
                    .run(attempt, |r| r.server_steal, |m| eprintln!("zcbench: {m}"))?;
            results.push(ColdResult {
                attempts: gated.attempts,
                ..gated.kept
            });
        }
    }
    let cold_setup = ColdSetup {
        files: c.files,
        file_size: c.size,
        cold_conns: c.conns,
        hot_size: HOT_SIZE,
        disk,
        throttled: throttle.is_some(),
        disk_latency: Some(latency),
        client_read: c.client_read,
        hot_priority: c.hot_priority_note(),
        max_steal: c.steal_gate.max,
        steal_retries: c.steal_gate.retries,
        cold_rate: c.cold_rate,
    };
    let written = report::cold::write_all(
        &report::cold::ColdReport {
            machine,
            command,
            setup: &cold_setup,
            results: &results,
        },
        out,
    )
    .map_err(|e| format!("cannot write the cold report to {}: {e}", out.display()))?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(results.iter().all(|r| r.valid))
}

/// The progress line of one cold run (its `attempt`-th try).
fn print_cold_run(r: &ColdResult, attempt: u32) {
    let round = r.round;
    eprintln!(
        "zcbench: cold round {round}{} {}: hot {:.0} req/s p50 {} µs p99 {} µs max {} µs; cold {:.1} MB/s; disk {}; cached {:.1} % -> {:.1} %; steal {} server, {} client{}",
        if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        },
        r.target,
        r.hot_req_per_s,
        r.hot_p50_us,
        r.hot_p99_us,
        r.hot_max_us,
        r.cold_mb_per_s,
        report::cold::fmt_disk_reads(r),
        r.cached_before * 100.0,
        r.cached_after * 100.0,
        report::cold::fmt_steal(r.server_steal),
        report::cold::fmt_steal(r.client_steal),
        if r.valid { "" } else { " (invalid)" }
    );
}

/// One target's cold run: the cold connections and the hot client loaded
/// together, the working set's cached fraction read before and after.
#[allow(clippy::too_many_arguments)]
fn cold_round(
    t: &Target,
    server: &mut Running,
    set: &WorkingSet,
    stem: &str,
    c: &ColdPlan,
    device: Option<(u64, u64)>,
    server_cpus: &[usize],
    client_cpus: &[usize],
    round: u32,
) -> Result<ColdResult, String> {
    let duration = c.duration;
    let addr = server.addr;
    let cold_spec = LoadSpec {
        addr,
        paths: (0..set.files.len())
            .map(|i| format!("{}cold-{stem}/{}", server.base, WorkingSet::name(i)))
            .collect(),
        host: addr.to_string(),
        conns: c.conns,
        threads: 1,
        cpus: client_cpus.to_vec(),
        duration,
        expect_status: 200,
        expect_len: c.size,
        read: c.client_read,
        priority: Priority::Normal,
        pace: c.cold_pace(),
    };
    let hot_spec = LoadSpec {
        paths: vec![format!("{}{}.bin", server.base, file_stem(HOT_SIZE))],
        conns: 1,
        expect_len: HOT_SIZE,
        priority: c.hot_priority,
        pace: None,
        ..cold_spec.clone()
    };
    let cached_before = set.cached()?;
    let evicted = cached_before <= MAX_CACHED_AT_START;
    if !evicted {
        eprintln!(
            "zcbench: cold round {round} {}: {:.1} % of the working set is cached after eviction (more than {:.0} %): the run is not cold and is marked invalid",
            t.name,
            cached_before * 100.0,
            MAX_CACHED_AT_START * 100.0
        );
    }
    let disk_reads = |dev| DiskReads::read(dev).ok();
    let disk_before = device.and_then(disk_reads);
    let steal = StealMeter::start();
    let (cold_out, hot_out) = std::thread::scope(|s| {
        let cold = s.spawn(|| load::run(&cold_spec));
        let hot = s.spawn(|| load::run(&hot_spec));
        (cold.join(), hot.join())
    });
    let steal = steal.finish(server_cpus, client_cpus);
    let disk = match (disk_before, device.and_then(disk_reads)) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    let cached_after = set.cached()?;
    let joined = |r: std::thread::Result<std::io::Result<load::LoadOutcome>>| {
        r.map_err(|_| "a load thread panicked".to_string())?
            .map_err(|e| format!("cannot load {addr}: {e}"))
    };
    let (cold_out, hot_out) = match (joined(cold_out), joined(hot_out)) {
        (Ok(c), Ok(h)) => (c, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("zcbench: cold round {round} {}: {e}", t.name);
            return Ok(failed_cold(t, round));
        }
    };
    for (what, out) in [("cold", &cold_out), ("hot", &hot_out)] {
        if out.errors > 0 {
            eprintln!(
                "zcbench: cold round {round} {} ({what}): {} errors, e.g. {:?}",
                t.name, out.errors, out.error_samples
            );
        }
    }
    if let Some(status) = server.exited() {
        eprintln!(
            "zcbench: cold round {round} {}: the server exited ({status})",
            t.name
        );
    }
    let h = &hot_out.latency_us;
    Ok(ColdResult {
        target: t.name.clone(),
        backend: t.backend(),
        round,
        seconds: hot_out.elapsed.as_secs_f64(),
        cached_before,
        cached_after,
        cold_requests: cold_out.requests,
        cold_mb_per_s: cold_out.mb_per_s(),
        cold_errors: cold_out.errors,
        hot_requests: hot_out.requests,
        hot_req_per_s: hot_out.req_per_s(),
        hot_errors: hot_out.errors,
        hot_p50_us: h.value_at_quantile(0.5),
        hot_p99_us: h.value_at_quantile(0.99),
        hot_p999_us: h.value_at_quantile(0.999),
        hot_max_us: h.max(),
        hot_cdf_us: CDF_QUANTILES
            .iter()
            .map(|&q| h.value_at_quantile(q))
            .collect(),
        disk_reads: disk.map(|d| d.reads),
        disk_read_bytes: disk.map(|d| d.bytes),
        server_steal: steal.server,
        client_steal: steal.client,
        attempts: 1,
        valid: evicted
            && cold_out.errors == 0
            && hot_out.errors == 0
            && hot_out.requests > 0
            && cold_out.bytes > 0,
    })
}

/// A cold run that could not happen: invalid, all zero.
fn failed_cold(t: &Target, round: u32) -> ColdResult {
    ColdResult {
        target: t.name.clone(),
        backend: t.backend(),
        round,
        seconds: 0.0,
        cached_before: 0.0,
        cached_after: 0.0,
        cold_requests: 0,
        cold_mb_per_s: 0.0,
        cold_errors: 1,
        hot_requests: 0,
        hot_req_per_s: 0.0,
        hot_errors: 0,
        hot_p50_us: 0,
        hot_p99_us: 0,
        hot_p999_us: 0,
        hot_max_us: 0,
        hot_cdf_us: Vec::new(),
        disk_reads: None,
        disk_read_bytes: None,
        server_steal: None,
        client_steal: None,
        attempts: 1,
        valid: false,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;

    use super::*;
    use crate::target::Kind;

    /// A keep-alive server answering `GET /...4KiB.bin` with 4096 bytes and
    /// any other path with `size` bytes; lives until the test ends.
    fn serve(size: u64) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut have = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => have.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&have[..end]).into_owned();
                        have.drain(..end + 4);
                        let len = if head.contains("4KiB.bin ") {
                            HOT_SIZE
                        } else {
                            size
                        };
                        let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
                            .into_bytes();
                        resp.resize(resp.len() + len as usize, b'x');
                        if s.write_all(&resp).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn disk_dir(tag: &str) -> PathBuf {
        let dir = PathBuf::from(format!(
            "/var/tmp/zcbench-scenario-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        cold::check_evictable(&dir).unwrap();
        dir
    }

    fn plan() -> ColdPlan {
        ColdPlan {
            files: 8,
            size: 8192,
            conns: 2,
            disk_iops: None,
            latency_samples: 4,
            rounds: 1,
            duration: Duration::from_millis(200),
            client_read: ClientRead::DEFAULT,
            hot_priority: Priority::Normal,
            steal_gate: StealGate::OFF,
            cold_rate: None,
        }
    }

    #[test]
    fn the_hot_priority_note_names_the_policy() {
        let rt = ColdPlan {
            hot_priority: Priority::Realtime,
            ..plan()
        };
        let note = rt.hot_priority_note();
        assert!(note.starts_with("real-time (`SCHED_FIFO`"), "{note}");
        assert!(
            note.contains("compare only with runs made the same way"),
            "{note}"
        );
        assert!(!note.contains("  "), "a run of spaces: {note}");
        let note = plan().hot_priority_note();
        assert!(note.starts_with("normal time-sharing"), "{note}");
        assert!(note.contains("`--hot-priority realtime`"), "{note}");
        assert!(!note.contains("  "), "a run of spaces: {note}");
    }

    #[test]
    fn a_round_loads_both_populations_and_reads_the_residency() {
        let dir = disk_dir("round");
        let p = plan();
        let set = WorkingSet::make(&dir.join("cold-8KiB"), p.files, p.size).unwrap();
        let addr = serve(p.size);
        let t = Target {
            name: "fake".into(),
            kind: Kind::Url {
                addr,
                base: "/".into(),
                pid: None,
            },
        };
        let mut server = Running::already(addr, "/".into(), None);
        set.evict().unwrap();
        let dev = cold::block_device_of(&dir).ok();
        let r = cold_round(&t, &mut server, &set, "8KiB", &p, dev, &[0], &[], 1).unwrap();
        assert!(r.valid, "{r:?}");
        assert!(
            r.disk_reads.is_some() && r.disk_read_bytes.is_some(),
            "the disk's counters are read around the run: {r:?}"
        );
        assert_eq!(
            r.cached_before, 0.0,
            "evicted, and the fake server reads no file"
        );
        assert_eq!(r.cached_after, 0.0);
        assert!(r.cold_requests > 0 && r.hot_requests > 0, "{r:?}");
        assert_eq!((r.cold_errors, r.hot_errors), (0, 0));
        assert_eq!(r.hot_cdf_us.len(), CDF_QUANTILES.len());
        assert!(
            r.hot_cdf_us.windows(2).all(|w| w[0] <= w[1]),
            "{:?}",
            r.hot_cdf_us
        );
        assert!(r.hot_p50_us <= r.hot_p99_us && r.hot_p99_us <= r.hot_max_us);
        let steal = r
            .server_steal
            .expect("CPU 0's steal is read from /proc/stat");
        assert!((0.0..=1.0).contains(&steal), "{steal}");
        assert_eq!(r.client_steal, None, "no client CPUs were named");

        // A set still cached when the run starts makes the run invalid.
        for f in &set.files {
            warm(f).unwrap();
        }
        let r = cold_round(&t, &mut server, &set, "8KiB", &p, None, &[0], &[], 2).unwrap();
        assert_eq!(r.cached_before, 1.0);
        assert!(!r.valid, "a warm start must not pass as cold: {r:?}");
        assert_eq!((r.disk_reads, r.disk_read_bytes), (None, None));

        // Capped at one file per 100 ms: a 200 ms run starts at most 3
        // cold requests (a closed loop makes hundreds), the hot client
        // is not paced.
        let capped = ColdPlan {
            cold_rate: Some(p.size as f64 / 0.1 / 1e6),
            ..plan()
        };
        assert_eq!(capped.cold_pace(), Some(Duration::from_millis(100)));
        set.evict().unwrap();
        let r = cold_round(&t, &mut server, &set, "8KiB", &capped, dev, &[0], &[], 3).unwrap();
        assert!(r.valid, "{r:?}");
        assert!(
            (1..=3).contains(&r.cold_requests),
            "{} cold requests",
            r.cold_requests
        );
        assert!(r.hot_requests > 3, "{} hot requests", r.hot_requests);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_writes_the_cold_report_for_every_target_and_round() {
        let dir = disk_dir("run");
        let p = ColdPlan {
            rounds: 2,
            ..plan()
        };
        let set_dir = dir.join("cold-8KiB");
        WorkingSet::make(&set_dir, p.files, p.size).unwrap();
        crate::fixture::make_fixture(&dir, &[HOT_SIZE]).unwrap();
        let addr = serve(p.size);
        let targets = [Target {
            name: "fake".into(),
            kind: Kind::Url {
                addr,
                base: "/".into(),
                pid: None,
            },
        }];
        let setup = Setup {
            zcserve: PathBuf::from("/nonexistent"),
            fixture: dir.clone(),
            server_cpus: &[0],
            peer_timeout: Duration::from_secs(1),
            logs: dir.join("logs"),
            cgroup_procs: None,
        };
        let m = crate::machine::this_machine(&[0], &[]);
        let out = dir.join("out");
        // Runs `p`; checks one valid row per round, each made `attempts`
        // times; returns cold.md.
        let run_and_check = |p: &ColdPlan, attempts: u32| {
            assert!(run(p, &targets, &setup, &m, &[], &out, "test").unwrap());
            let csv = std::fs::read_to_string(out.join("cold.csv")).unwrap();
            assert_eq!(csv.lines().count(), 1 + 2, "{csv}");
            let tail = format!(",{attempts},true");
            assert!(
                csv.lines().skip(1).all(|l| l.ends_with(&tail)),
                "{attempts} attempts each, valid: {csv}"
            );
            std::fs::read_to_string(out.join("cold.md")).unwrap()
        };
        let md = run_and_check(&p, 1);
        assert!(md.contains("servers read the raw disk"), "{md}");
        assert!(md.contains("4 random reads"), "{md}");
        assert!(!md.contains("Steal gate"), "the gate was off: {md}");

        // A bound no run can meet (CPU 0's steal is read, and never
        // below 0): every run is made 1 + retries times.
        let p = ColdPlan {
            steal_gate: StealGate {
                max: Some(-1.0),
                retries: 1,
            },
            ..p
        };
        let md = run_and_check(&p, 2);
        assert!(
            md.contains("2 of 2 runs were made again (2 more tries in all); 2 kept runs are still above the bound."),
            "{md}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
