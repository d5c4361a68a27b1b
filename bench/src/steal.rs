//! CPU time the hypervisor gave to someone else while a run was measured.
//!
//! On a virtual machine a vCPU that is runnable but not running on the host
//! counts "steal" ticks in `/proc/stat`. A round in which the server's or
//! the client's CPUs lost a few percent to steal is slower, and its tail
//! latencies longer, for reasons outside both programs; recording the
//! fraction per run lets a reader set such rounds apart instead of reading
//! them as a difference between servers.

use std::collections::BTreeMap;

/// Ticks of one CPU from a `/proc/stat` line: all of them, and the stolen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticks {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest
    /// time is already inside user and nice, so it is not added again).
    pub total: u64,
    /// The steal column.
    pub steal: u64,
}

/// The per-CPU lines (`cpuN ...`) of `/proc/stat`, by CPU number. Lines
/// without a steal column (kernels before 2.6.11) read as no steal.
pub fn parse(text: &str) -> BTreeMap<usize, Ticks> {
    let mut cpus = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(n) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).take(8).collect();
        if v.len() < 4 {
            continue;
        }
        cpus.insert(
            n,
            Ticks {
                total: v.iter().sum(),
                steal: v.get(7).copied().unwrap_or(0),
            },
        );
    }
    cpus
}

/// The stolen fraction of the time `cpus` had between two readings; `None`
/// when a CPU is missing from either or no tick passed.
pub fn stolen(
    before: &BTreeMap<usize, Ticks>,
    after: &BTreeMap<usize, Ticks>,
    cpus: &[usize],
) -> Option<f64> {
    let (mut total, mut steal) = (0u64, 0u64);
    for cpu in cpus {
        let (b, a) = (before.get(cpu)?, after.get(cpu)?);
        total += a.total.saturating_sub(b.total);
        steal += a.steal.saturating_sub(b.steal);
    }
    (total > 0).then(|| steal as f64 / total as f64)
}

fn read() -> Option<BTreeMap<usize, Ticks>> {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .map(|t| parse(&t))
}

/// Steal on two sets of CPUs (the server's and the client's) from its
/// start to [`StealMeter::finish`].
#[derive(Debug)]
pub struct StealMeter {
    start: Option<BTreeMap<usize, Ticks>>,
}

/// What a [`StealMeter`] saw: the stolen fraction of each set's time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Steal {
    /// On the server's CPUs; `None` where `/proc/stat` could not be read.
    pub server: Option<f64>,
    /// On the client's CPUs.
    pub client: Option<f64>,
}

impl StealMeter {
    /// Reads `/proc/stat` now.
    pub fn start() -> StealMeter {
        StealMeter { start: read() }
    }

    /// The fractions stolen since [`StealMeter::start`].
    pub fn finish(&self, server_cpus: &[usize], client_cpus: &[usize]) -> Steal {
        let (Some(before), Some(after)) = (&self.start, read()) else {
            return Steal::default();
        };
        Steal {
            server: stolen(before, &after, server_cpus),
            client: stolen(before, &after, client_cpus),
        }
    }
}

/// Repeats a run whose server CPUs lost more than `max` of their time to
/// steal (`--max-steal`, `--steal-retries`): on a busy host steal comes in
/// bursts of minutes, so a repeat soon after often lands in a quiet spell,
/// and the rounds' ratios then compare servers rather than the host's load
/// at two moments. Every target is held to the same bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StealGate {
    /// The most server steal a kept run may have; `None`: the gate is off
    /// and every run is kept as it comes.
    pub max: Option<f64>,
    /// How many more attempts a run above `max` gets.
    pub retries: u32,
}

/// What a [`StealGate`] kept: the attempt with the least server steal, and
/// how many attempts were made.
#[derive(Debug, Clone, PartialEq)]
pub struct Gated<R> {
    /// The run kept.
    pub kept: R,
    /// How many runs were made, the kept one included.
    pub attempts: u32,
}

/// Of runs kept with these `attempts`: how many were made again, and how
/// many more tries that took in all.
pub fn repeats(attempts: impl Iterator<Item = u32>) -> (usize, u32) {
    attempts.fold((0, 0), |(runs, tries), a| {
        (runs + usize::from(a > 1), tries + a.saturating_sub(1))
    })
}

impl StealGate {
    /// The gate that keeps every run.
    pub const OFF: StealGate = StealGate {
        max: None,
        retries: 0,
    };

    /// Runs `attempt` (given its number, from 1) until one has a server
    /// steal of at most `max` or the retries are spent, and keeps the one
    /// with the least. A run whose steal is unknown (no `/proc/stat`, or a
    /// run that failed) is kept at once: the gate cannot judge it. An error
    /// ends the gate with it. Each repeat is announced through `say`.
    pub fn run<R>(
        &self,
        mut attempt: impl FnMut(u32) -> Result<R, String>,
        steal: impl Fn(&R) -> Option<f64>,
        say: impl Fn(String),
    ) -> Result<Gated<R>, String> {
        let mut best: Option<(R, f64)> = None;
        for n in 1..=self.retries.saturating_add(1) {
            let r = attempt(n)?;
            let (Some(max), Some(s)) = (self.max, steal(&r)) else {
                return Ok(Gated {
                    kept: r,
                    attempts: n,
                });
            };
            if s <= max {
                return Ok(Gated {
                    kept: r,
                    attempts: n,
                });
            }
            if best.as_ref().is_none_or(|(_, b)| s < *b) {
                best = Some((r, s));
            }
            if n <= self.retries {
                say(format!(
                    "the server CPUs lost {:.1} % to steal (more than --max-steal {:.1} %): running it again ({} of {} repeats)",
                    s * 100.0,
                    max * 100.0,
                    n,
                    self.retries
                ));
            }
        }
        let (kept, _) = best.expect("at least one attempt ran");
        Ok(Gated {
            kept,
            attempts: self.retries.saturating_add(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_A: &str = "cpu  130391 0 64059 90552 18970 0 20855 32462 0 0\n\
        cpu0 100 0 50 800 0 0 10 40 0 0\n\
        cpu1 200 5 100 600 20 0 15 60 7 0\n\
        intr 1 2 3\n\
        ctxt 99\n";
    const STAT_B: &str = "cpu  0 0 0 0 0 0 0 0 0 0\n\
        cpu0 150 0 60 880 0 0 10 100 0 0\n\
        cpu1 300 5 120 640 20 0 15 60 9 0\n";

    #[test]
    fn cpu_lines_are_read_and_the_summary_line_is_not() {
        let t = parse(STAT_A);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[&0],
            Ticks {
                total: 1000,
                steal: 40
            }
        );
        // Guest time (the 9th column) is inside user already.
        assert_eq!(
            t[&1],
            Ticks {
                total: 1000,
                steal: 60
            }
        );
    }

    #[test]
    fn steal_is_a_fraction_of_the_named_cpus_time() {
        let (a, b) = (parse(STAT_A), parse(STAT_B));
        // cpu0: 200 ticks passed, 60 stolen; cpu1: 160 passed, none stolen.
        assert_eq!(stolen(&a, &b, &[0]), Some(0.3));
        assert_eq!(stolen(&a, &b, &[1]), Some(0.0));
        assert_eq!(stolen(&a, &b, &[0, 1]), Some(60.0 / 360.0));
        assert_eq!(stolen(&a, &b, &[2]), None, "a CPU not in the file");
        assert_eq!(stolen(&a, &a, &[0]), None, "no time passed");
    }

    #[test]
    fn old_kernels_without_a_steal_column_read_as_none_stolen() {
        let t = parse("cpu0 1 2 3 4\n");
        assert_eq!(
            t[&0],
            Ticks {
                total: 10,
                steal: 0
            }
        );
    }

    /// The live file parses: cpu0 is there, with time counted. (A whole
    /// meter over a real run is checked by the cold scenario's round test.)
    #[cfg(target_os = "linux")]
    #[test]
    fn this_machines_proc_stat_has_cpu0() {
        let t = read().expect("/proc/stat is readable");
        let cpu0 = t.get(&0).expect("a cpu0 line");
        assert!(cpu0.total > 0 && cpu0.steal <= cpu0.total, "{cpu0:?}");
    }

    /// Runs a gate over attempts whose steals are `steals` in turn; what it
    /// kept (the steal) and how many attempts it made.
    fn gate(max: Option<f64>, retries: u32, steals: &[Option<f64>]) -> (Option<f64>, u32, u32) {
        let mut calls = 0;
        let g = StealGate { max, retries }
            .run(
                |n| {
                    calls += 1;
                    assert_eq!(n, calls, "attempts are numbered from 1");
                    Ok(steals[n as usize - 1])
                },
                |s| *s,
                |_| {},
            )
            .unwrap();
        (g.kept, g.attempts, calls)
    }

    #[test]
    fn a_run_within_the_bound_is_kept_at_once() {
        assert_eq!(gate(Some(0.05), 3, &[Some(0.02)]), (Some(0.02), 1, 1));
        assert_eq!(gate(Some(0.05), 3, &[Some(0.05)]), (Some(0.05), 1, 1));
    }

    #[test]
    fn a_run_above_the_bound_is_repeated_until_one_is_within_it() {
        let steals = [Some(0.3), Some(0.1), Some(0.01), Some(0.0)];
        assert_eq!(gate(Some(0.05), 3, &steals), (Some(0.01), 3, 3));
    }

    #[test]
    fn when_every_attempt_is_above_the_bound_the_least_stolen_is_kept() {
        let steals = [Some(0.3), Some(0.1), Some(0.2)];
        assert_eq!(gate(Some(0.05), 2, &steals), (Some(0.1), 3, 3));
        assert_eq!(gate(Some(0.05), 0, &steals), (Some(0.3), 1, 1));
    }

    #[test]
    fn off_or_unknown_steal_keeps_the_first_run() {
        assert_eq!(gate(None, 3, &[Some(0.9)]), (Some(0.9), 1, 1));
        assert_eq!(gate(Some(0.05), 3, &[None]), (None, 1, 1));
        assert_eq!(gate(Some(0.05), 3, &[Some(0.5), None]), (None, 2, 2));
    }

    #[test]
    fn an_error_ends_the_gate() {
        let mut calls = 0;
        let r = StealGate {
            max: Some(0.05),
            retries: 3,
        }
        .run(
            |_| {
                calls += 1;
                if calls == 2 {
                    Err("server died".to_string())
                } else {
                    Ok(0.5)
                }
            },
            |s| Some(*s),
            |_| {},
        );
        assert_eq!(r, Err("server died".to_string()));
        assert_eq!(calls, 2);
    }
}
