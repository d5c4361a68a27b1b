//! Crossovers: from which file size each zero-copy backend beats the
//! baseline backend, on CPU per GB and on throughput, per number of
//! connections and client read mode.

use serde::{Deserialize, Serialize};

use crate::model::{ClientRead, Summary};

/// From which file size a zero-copy backend beats the baseline, at one
/// number of connections with one client read mode.
///
/// "From size S" means: at S and at every larger size measured, up to the
/// largest. A run that is invalid (its own or the baseline's) counts as not
/// beating it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossover {
    /// The target, e.g. `zcserve-sendfile`.
    pub target: String,
    /// Connections.
    pub conns: usize,
    /// How the client read the bodies (the baseline's runs with the same).
    #[serde(default)]
    pub client_read: ClientRead,
    /// Smallest size from which the target's median CPU s/GB stays below the
    /// baseline's; `None` if it does not at the largest size, or CPU was not
    /// measured.
    pub by_cpu: Option<u64>,
    /// Smallest size from which the target's median MB/s stays above the
    /// baseline's; `None` if it does not at the largest size.
    pub by_throughput: Option<u64>,
}

/// Whether `s` is the baseline: its backend or its target is named so.
pub(super) fn is_baseline(s: &Summary, baseline: &str) -> bool {
    s.target == baseline || s.backend.as_deref() == Some(baseline)
}

/// For each client read mode, each zcserve backend other than the
/// baseline (summaries with a backend; peers are left out) and each number
/// of connections where the baseline was also measured with that client,
/// the file sizes from which it beats the baseline on CPU s/GB and on MB/s
/// (medians over rounds). See [`Crossover`] for what "from" means. Ordered
/// by client mode, then target (first seen), then connections.
pub fn crossovers(summaries: &[Summary], baseline: &str) -> Vec<Crossover> {
    let mut targets: Vec<&str> = Vec::new();
    let mut conns: Vec<usize> = Vec::new();
    let mut clients: Vec<ClientRead> = Vec::new();
    for s in summaries {
        if s.backend.is_some() && !is_baseline(s, baseline) && !targets.contains(&s.target.as_str())
        {
            targets.push(&s.target);
        }
        if !conns.contains(&s.scenario.conns) {
            conns.push(s.scenario.conns);
        }
        if !clients.contains(&s.scenario.client_read) {
            clients.push(s.scenario.client_read);
        }
    }
    conns.sort_unstable();
    clients.sort_unstable();
    let mut out = Vec::new();
    for &client in &clients {
        for t in &targets {
            for &c in &conns {
                // (size, target, baseline), ascending size.
                let mut pairs: Vec<(u64, &Summary, &Summary)> = summaries
                    .iter()
                    .filter(|s| {
                        s.target == *t && s.scenario.conns == c && s.scenario.client_read == client
                    })
                    .filter_map(|s| {
                        summaries
                            .iter()
                            .find(|b| is_baseline(b, baseline) && b.scenario == s.scenario)
                            .map(|b| (s.scenario.size, s, b))
                    })
                    .collect();
                if pairs.is_empty() {
                    continue;
                }
                pairs.sort_by_key(|p| p.0);
                let by_throughput = from_which(&pairs, |t, b| {
                    Some(t.valid && b.valid && t.mb_per_s.median > b.mb_per_s.median)
                });
                let by_cpu = from_which(&pairs, |t, b| {
                    let (tc, bc) = (t.cpu_s_per_gb?, b.cpu_s_per_gb?);
                    Some(t.valid && b.valid && tc.median < bc.median)
                });
                out.push(Crossover {
                    target: t.to_string(),
                    conns: c,
                    client_read: client,
                    by_cpu,
                    by_throughput,
                });
            }
        }
    }
    out
}

/// The smallest size from which `beats` holds at every larger size;
/// `beats` returning `None` (not measured) skips that size.
fn from_which(
    pairs: &[(u64, &Summary, &Summary)],
    beats: impl Fn(&Summary, &Summary) -> Option<bool>,
) -> Option<u64> {
    let mut from = None;
    for &(size, t, b) in pairs.iter().rev() {
        match beats(t, b) {
            Some(true) => from = Some(size),
            Some(false) => break,
            None => {}
        }
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Scenario, Spread};

    #[test]
    fn from_which_needs_every_larger_size() {
        let s = |target: &str, mb: f64| {
            let spread = Spread {
                median: mb,
                min: mb,
                max: mb,
            };
            Summary {
                target: target.into(),
                backend: Some(target.into()),
                scenario: Scenario {
                    client_read: ClientRead::DEFAULT,
                    size: 1,
                    conns: 1,
                },
                rounds: 1,
                req_per_s: spread,
                mb_per_s: spread,
                p50_us: 1.0,
                p99_us: 1.0,
                p999_us: 1.0,
                cpu_s_per_gb: None,
                client_cpu_s_per_gb: None,
                peak_rss_kib: None,
                syscalls_per_req: None,
                valid: true,
            }
        };
        let (a, b, base) = (s("a", 2.0), s("b", 0.5), s("copy", 1.0));
        let beats = |t: &Summary, b: &Summary| Some(t.mb_per_s.median > b.mb_per_s.median);
        let pairs = [
            (1, &a, &base),
            (2, &b, &base),
            (3, &a, &base),
            (4, &a, &base),
        ];
        assert_eq!(from_which(&pairs, beats), Some(3));
        let pairs = [(1, &a, &base), (2, &b, &base)];
        assert_eq!(from_which(&pairs, beats), None);
        assert_eq!(from_which(&[], beats), None);
    }
}
