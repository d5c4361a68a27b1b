//! What a zcbench run measures and records: one [`RunResult`] per target,
//! scenario and round, summarised into medians by [`summarise`].

use serde::{Deserialize, Serialize};

pub use crate::client_read::ClientRead;

/// One file size loaded with one number of connections by one kind of
/// client. Ordered by client, then size, then connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scenario {
    /// How the client read the bodies (absent in runs recorded before it
    /// was a choice: those read 256 KiB at a time).
    #[serde(default)]
    pub client_read: ClientRead,
    /// File size in bytes.
    pub size: u64,
    /// Keep-alive connections, closed loop.
    pub conns: usize,
}

/// The result of loading one target with one scenario for one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `zcserve-sendfile`, `nginx`, ...
    pub target: String,
    /// The zcserve backend, or `None` for a peer server.
    pub backend: Option<String>,
    /// File size in bytes.
    pub size: u64,
    /// Connections.
    pub conns: usize,
    /// How the client read the bodies (see [`Scenario::client_read`]).
    #[serde(default)]
    pub client_read: ClientRead,
    /// Round number, from 1.
    pub round: u32,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Complete, valid responses.
    pub requests: u64,
    /// Body bytes received in valid responses.
    pub bytes: u64,
    /// Responses with a wrong status or length, and connection errors.
    pub errors: u64,
    /// requests / seconds.
    pub req_per_s: f64,
    /// bytes / seconds / 1e6.
    pub mb_per_s: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Server CPU seconds (user + system, children included) during the
    /// load, when the server's pid is known.
    pub cpu_s: Option<f64>,
    /// Server CPU seconds per GB (1e9 bytes) of body sent.
    pub cpu_s_per_gb: Option<f64>,
    /// The load generator's CPU seconds (user + system of its load
    /// threads, from `getrusage(RUSAGE_THREAD)`) during the load.
    #[serde(default)]
    pub client_cpu_s: Option<f64>,
    /// Client CPU seconds per GB (1e9 bytes) of body received.
    #[serde(default)]
    pub client_cpu_s_per_gb: Option<f64>,
    /// Server peak resident set (VmHWM) in KiB at the end of the run.
    pub peak_rss_kib: Option<u64>,
    /// Backend syscalls per request, from zcserve's `/metrics`.
    pub syscalls_per_req: Option<f64>,
    /// Fraction of the server CPUs' time the hypervisor stole during the
    /// load (`/proc/stat`; see [`crate::steal`]).
    #[serde(default)]
    pub server_steal: Option<f64>,
    /// The same for the client CPUs.
    #[serde(default)]
    pub client_steal: Option<f64>,
    /// How many times the run was made before it was kept (more than one
    /// under `--max-steal`; see [`crate::steal::StealGate`]).
    #[serde(default = "one")]
    pub attempts: u32,
    /// False when any error occurred: the numbers are not to be trusted.
    pub valid: bool,
}

impl RunResult {
    /// The scenario it ran.
    pub fn scenario(&self) -> Scenario {
        Scenario {
            client_read: self.client_read,
            size: self.size,
            conns: self.conns,
        }
    }
}

/// Median with min and max of one figure over rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest round.
    pub min: f64,
    /// The largest round.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// All rounds of one target and scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The target.
    pub target: String,
    /// Its backend, for zcserve.
    pub backend: Option<String>,
    /// The scenario.
    pub scenario: Scenario,
    /// Rounds summarised.
    pub rounds: usize,
    /// Requests per second.
    pub req_per_s: Spread,
    /// MB per second.
    pub mb_per_s: Spread,
    /// Median over rounds of each round's p50 / p99 / p99.9 latency (µs).
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// Server CPU seconds per GB, when measured.
    pub cpu_s_per_gb: Option<Spread>,
    /// Client CPU seconds per GB, when measured.
    #[serde(default)]
    pub client_cpu_s_per_gb: Option<Spread>,
    /// Largest peak RSS over rounds (KiB).
    pub peak_rss_kib: Option<u64>,
    /// Syscalls per request, median.
    pub syscalls_per_req: Option<f64>,
    /// True only if every round was valid.
    pub valid: bool,
}

/// Groups `results` by target and scenario, in first-seen target order and
/// ascending scenario order.
pub fn summarise(results: &[RunResult]) -> Vec<Summary> {
    let mut targets: Vec<&str> = Vec::new();
    for r in results {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    let mut scenarios: Vec<Scenario> = results.iter().map(|r| r.scenario()).collect();
    scenarios.sort();
    scenarios.dedup();
    let mut out = Vec::new();
    for t in &targets {
        for s in &scenarios {
            let rs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.target == *t && r.scenario() == *s)
                .collect();
            if rs.is_empty() {
                continue;
            }
            let col = |f: fn(&RunResult) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let opt = |f: fn(&RunResult) -> Option<f64>| {
                rs.iter().filter_map(|r| f(r)).collect::<Vec<f64>>()
            };
            let med = |v: Vec<f64>| Spread::of(&v).map_or(0.0, |s| s.median);
            out.push(Summary {
                target: t.to_string(),
                backend: rs[0].backend.clone(),
                scenario: *s,
                rounds: rs.len(),
                req_per_s: Spread::of(&col(|r| r.req_per_s)).expect("non-empty"),
                mb_per_s: Spread::of(&col(|r| r.mb_per_s)).expect("non-empty"),
                p50_us: med(col(|r| r.p50_us as f64)),
                p99_us: med(col(|r| r.p99_us as f64)),
                p999_us: med(col(|r| r.p999_us as f64)),
                cpu_s_per_gb: Spread::of(&opt(|r| r.cpu_s_per_gb)),
                client_cpu_s_per_gb: Spread::of(&opt(|r| r.client_cpu_s_per_gb)),
                peak_rss_kib: rs.iter().filter_map(|r| r.peak_rss_kib).max(),
                syscalls_per_req: Spread::of(&opt(|r| r.syscalls_per_req)).map(|s| s.median),
                valid: rs.iter().all(|r| r.valid),
            });
        }
    }
    out
}

/// What `N` idle keep-alive connections cost one server in memory: its
/// resident set (summed over its process tree) just after it started, and
/// again with `N` connections open, each having made one small `GET`, left
/// idle for a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    /// The target, as in [`RunResult::target`].
    pub target: String,
    /// Its backend, for zcserve.
    pub backend: Option<String>,
    /// Connections asked for.
    pub conns: usize,
    /// Connections whose `GET` was answered with the expected status and
    /// length.
    pub answered: usize,
    /// Connections the server still held open when the memory was read.
    pub still_open: usize,
    /// Processes in the server's tree when the memory was read (nginx:
    /// master and worker); 0 when its pid is unknown.
    pub processes: usize,
    /// Sum of `VmRSS` over the tree before the connections (KiB).
    pub rss_before_kib: Option<u64>,
    /// Sum of `VmRSS` over the tree with the connections open and idle (KiB).
    pub rss_after_kib: Option<u64>,
    /// `rss_after_kib - rss_before_kib` (may be negative: pages reclaimed).
    pub rss_delta_kib: Option<i64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// True when every connection was answered and still open, and no error
    /// occurred.
    pub valid: bool,
}

impl IdleResult {
    /// Sets the derived fields, `rss_delta_kib` and `valid`, from the
    /// others.
    pub fn derive(mut self) -> IdleResult {
        self.rss_delta_kib = match (self.rss_before_kib, self.rss_after_kib) {
            (Some(a), Some(b)) => Some(b as i64 - a as i64),
            _ => None,
        };
        self.valid =
            self.error.is_none() && self.answered == self.conns && self.still_open == self.conns;
        self
    }

    /// Memory per connection in KiB (the delta over the connections asked
    /// for).
    pub fn per_conn_kib(&self) -> Option<f64> {
        let d = self.rss_delta_kib?;
        (self.conns > 0).then(|| d as f64 / self.conns as f64)
    }
}

/// The machine a run came from, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// CPUs the servers were pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs the load generator was pinned to.
    pub client_cpus: Vec<usize>,
}

/// The quantiles of the hot client's latency recorded for its CDF chart.
pub const CDF_QUANTILES: [f64; 19] = [
    0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999,
    0.9995, 0.9999, 1.0,
];

/// One round of the cold-cache scenario on one target: `cold_conns`
/// connections fetching random files of an evicted working set while one
/// keep-alive connection fetches a small cached file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdResult {
    /// The target, as in [`RunResult::target`].
    pub target: String,
    /// Its backend, for zcserve.
    pub backend: Option<String>,
    /// Round number, from 1.
    pub round: u32,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Fraction of the working set in the page cache when the load started
    /// (after eviction: near 0).
    pub cached_before: f64,
    /// Fraction of the working set in the page cache when it ended.
    pub cached_after: f64,
    /// Complete responses on the cold connections.
    pub cold_requests: u64,
    /// Body MB (1e6 bytes) per second on the cold connections.
    pub cold_mb_per_s: f64,
    /// Errors on the cold connections.
    pub cold_errors: u64,
    /// Complete responses of the hot client.
    pub hot_requests: u64,
    /// The hot client's responses per second.
    pub hot_req_per_s: f64,
    /// Errors of the hot client.
    pub hot_errors: u64,
    /// The hot client's latency percentiles (µs).
    pub hot_p50_us: u64,
    /// See `hot_p50_us`.
    pub hot_p99_us: u64,
    /// See `hot_p50_us`.
    pub hot_p999_us: u64,
    /// The hot client's slowest response (µs).
    pub hot_max_us: u64,
    /// The hot client's latency (µs) at each of [`CDF_QUANTILES`].
    pub hot_cdf_us: Vec<u64>,
    /// Read requests the working set's disk completed during the load
    /// (`/sys/dev/block/…/stat` of the whole disk, so anyone else's reads
    /// count too); `None` where not recorded.
    #[serde(default)]
    pub disk_reads: Option<u64>,
    /// The bytes they read.
    #[serde(default)]
    pub disk_read_bytes: Option<u64>,
    /// Fraction of the server CPUs' time the hypervisor stole during the
    /// load (`/proc/stat`; see [`crate::steal`]).
    #[serde(default)]
    pub server_steal: Option<f64>,
    /// The same for the client CPUs.
    #[serde(default)]
    pub client_steal: Option<f64>,
    /// How many times the run was made before it was kept (more than one
    /// under `--max-steal`; see [`crate::steal::StealGate`]).
    #[serde(default = "one")]
    pub attempts: u32,
    /// False when any error occurred or either population got no answer.
    pub valid: bool,
}

/// How the cold-cache scenario was set up, for its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdSetup {
    /// Files in the working set.
    pub files: usize,
    /// Size of each.
    pub file_size: u64,
    /// Connections fetching cold files.
    pub cold_conns: usize,
    /// Size of the hot client's cached file.
    pub hot_size: u64,
    /// The throttle the servers ran under, or why there was none.
    pub disk: String,
    /// Whether the servers' reads were throttled.
    pub throttled: bool,
    /// The disk's own cold 4 KiB read latency, measured by zcbench outside
    /// any throttle.
    pub disk_latency: Option<crate::cold::DiskLatency>,
    /// How the clients read bodies.
    #[serde(default)]
    pub client_read: ClientRead,
    /// How the hot client's thread was scheduled, in words (empty in
    /// reports from before it was recorded).
    #[serde(default)]
    pub hot_priority: String,
    /// `--max-steal`: the most server steal a kept run may have; `None`:
    /// every run was kept as it came.
    #[serde(default)]
    pub max_steal: Option<f64>,
    /// `--steal-retries`: how many more times a run above it was made.
    #[serde(default)]
    pub steal_retries: u32,
    /// `--cold-rate`: the most cold MB/s the cold connections asked for;
    /// `None`: a closed loop, each asking for its next file at once.
    #[serde(default)]
    pub cold_rate: Option<f64>,
}

/// Runs recorded before attempts were counted were made once.
fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(target: &str, size: u64, round: u32, rps: f64) -> RunResult {
        RunResult {
            target: target.into(),
            backend: None,
            size,
            conns: 1,
            client_read: ClientRead::DEFAULT,
            round,
            seconds: 1.0,
            requests: rps as u64,
            bytes: rps as u64 * size,
            errors: 0,
            req_per_s: rps,
            mb_per_s: rps * size as f64 / 1e6,
            p50_us: 10,
            p90_us: 20,
            p99_us: 30,
            p999_us: 40,
            cpu_s: None,
            cpu_s_per_gb: None,
            client_cpu_s: None,
            client_cpu_s_per_gb: None,
            peak_rss_kib: Some(round as u64),
            syscalls_per_req: None,
            server_steal: None,
            client_steal: None,
            attempts: 1,
            valid: round != 2,
        }
    }

    #[test]
    fn spread_median_even_and_odd() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn summaries_group_by_target_and_scenario() {
        let rs = vec![
            r("b", 4096, 1, 10.0),
            r("a", 4096, 1, 30.0),
            r("b", 4096, 2, 20.0),
            r("b", 1024, 1, 5.0),
            r("b", 4096, 3, 40.0),
        ];
        let s = summarise(&rs);
        let names: Vec<(&str, u64)> = s
            .iter()
            .map(|s| (s.target.as_str(), s.scenario.size))
            .collect();
        assert_eq!(names, vec![("b", 1024), ("b", 4096), ("a", 4096)]);
        let b4k = &s[1];
        assert_eq!(b4k.rounds, 3);
        assert_eq!(b4k.req_per_s.median, 20.0);
        assert_eq!(b4k.peak_rss_kib, Some(3));
        assert!(!b4k.valid, "round 2 was invalid");
        assert!(s[0].valid);
    }
}
