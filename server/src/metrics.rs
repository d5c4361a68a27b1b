//! Counters of the server (responses by status, connections, bytes) and
//! their Prometheus text rendering, together with the backend's own
//! counters from zcserve-core: bytes, syscalls by kind, would-block waits.
//! Under `auto` each backend it picked has its own samples (`backend=`
//! label), counted by the sessions that backend ran.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use zcserve_core::{Snapshot, Syscall, Transfer};

/// Statuses counted separately; anything else lands in "other".
const STATUSES: [u16; 17] = [
    200, 206, 301, 304, 400, 403, 404, 405, 408, 412, 413, 416, 431, 500, 501, 503, 505,
];

/// The counter index of `status`; the last one is "other".
fn slot(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len())
}

/// Live server counters.
#[derive(Debug, Default)]
pub struct Metrics {
    responses: [AtomicU64; STATUSES.len() + 1],
    /// Connections open now.
    pub open_connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Body bytes sent, all responses.
    pub body_bytes: AtomicU64,
    /// Transfers that failed mid-body (peer gone, file shrank, timeout).
    pub aborted: AtomicU64,
    /// Accept errors (EMFILE and friends).
    pub accept_errors: AtomicU64,
    /// Responses replaced by 503 because the backend could not start the
    /// body (out of descriptors or memory for a pipe or ring).
    pub backend_unavailable: AtomicU64,
    /// Connections to the metrics listener closed unserved because its
    /// connection cap (16) was reached.
    pub metrics_refused: AtomicU64,
}

impl Metrics {
    /// Counts one response with `status`.
    pub fn response(&self, status: u16) {
        self.responses[slot(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Responses sent with `status` so far.
    pub fn responses(&self, status: u16) -> u64 {
        self.responses[slot(status)].load(Ordering::Relaxed)
    }

    /// The Prometheus exposition text of these counters and the backends'
    /// (see [`backend_counters`]), each under its name.
    pub fn render(&self, backends: &[(&str, Snapshot)], log_dropped: u64) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut o = String::with_capacity(4096);
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "zcserve_responses_total",
            "counter",
            "Responses sent, by status code.",
        );
        for (i, s) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                o,
                "zcserve_responses_total{{status=\"{s}\"}} {}",
                load(&self.responses[i])
            );
        }
        let _ = writeln!(
            o,
            "zcserve_responses_total{{status=\"other\"}} {}",
            load(&self.responses[STATUSES.len()])
        );
        let mut simple = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        simple(
            "zcserve_open_connections",
            "gauge",
            "Connections open now.",
            load(&self.open_connections),
        );
        simple(
            "zcserve_connections_total",
            "counter",
            "Connections accepted.",
            load(&self.accepted),
        );
        simple(
            "zcserve_body_bytes_total",
            "counter",
            "Response body bytes sent.",
            load(&self.body_bytes),
        );
        simple(
            "zcserve_aborted_responses_total",
            "counter",
            "Responses cut short (peer gone, file shrank, send timeout).",
            load(&self.aborted),
        );
        simple(
            "zcserve_accept_errors_total",
            "counter",
            "Failed accept calls.",
            load(&self.accept_errors),
        );
        simple(
            "zcserve_backend_unavailable_total",
            "counter",
            "Responses replaced by 503 because the backend could not start the body.",
            load(&self.backend_unavailable),
        );
        simple(
            "zcserve_metrics_connections_refused_total",
            "counter",
            "Connections to the metrics listener closed unserved: too many open.",
            load(&self.metrics_refused),
        );
        simple(
            "zcserve_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the writer fell behind.",
            log_dropped,
        );
        let mut labelled = |name: &str, kind: &str, help: &str, v: fn(&Snapshot) -> u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (b, snap) in backends {
                let _ = writeln!(o, "{name}{{backend=\"{b}\"}} {}", v(snap));
            }
        };
        labelled(
            "zcserve_backend_sessions_started_total",
            "counter",
            "Transfers (response bodies, or parts of multipart ones) started by the backend.",
            |s| s.sessions_started,
        );
        labelled(
            "zcserve_backend_sessions_completed_total",
            "counter",
            "Transfers that sent every byte.",
            |s| s.sessions_completed,
        );
        labelled(
            "zcserve_backend_sessions_failed_total",
            "counter",
            "Transfers that ended in an error.",
            |s| s.sessions_failed,
        );
        labelled(
            "zcserve_backend_body_bytes_total",
            "counter",
            "File bytes the backend put in sockets.",
            |s| s.body_bytes,
        );
        labelled(
            "zcserve_backend_prefix_bytes_total",
            "counter",
            "Response head bytes sent ahead of file bytes.",
            |s| s.prefix_bytes,
        );
        labelled(
            "zcserve_backend_copied_in_bytes_total",
            "counter",
            "File bytes copied from the kernel into user space.",
            |s| s.copied_in,
        );
        labelled(
            "zcserve_backend_copied_out_bytes_total",
            "counter",
            "File bytes copied from user memory into sockets.",
            |s| s.copied_out,
        );
        labelled(
            "zcserve_backend_would_block_total",
            "counter",
            "Times a transfer found its socket full.",
            |s| s.would_block,
        );
        labelled(
            "zcserve_backend_pending_total",
            "counter",
            "Times a transfer waited for in-flight kernel work (io_uring completions).",
            |s| s.pending,
        );
        let _ = writeln!(
            o,
            "# HELP zcserve_backend_syscalls_total System calls made by the backend, by kind.\n# TYPE zcserve_backend_syscalls_total counter"
        );
        for (b, snap) in backends {
            for call in Syscall::ALL {
                let _ = writeln!(
                    o,
                    "zcserve_backend_syscalls_total{{backend=\"{b}\",syscall=\"{call}\"}} {}",
                    snap.syscalls(call)
                );
            }
        }
        o
    }
}

/// The counters of each backend `transfer` runs sessions on, by name: its
/// own, or under `auto` those of each backend it picks from.
pub fn backend_counters(transfer: &dyn Transfer) -> Vec<(&'static str, Snapshot)> {
    match transfer.delegates() {
        [] => vec![(transfer.name(), transfer.stats().snapshot())],
        some => some
            .iter()
            .map(|d| (d.name(), d.stats().snapshot()))
            .collect(),
    }
}

/// The Prometheus text of the backend's read-in pool: cold body ranges
/// read into the page cache while their sessions waited.
pub fn render_read_in(pool: &zcserve_core::disk::PoolSnapshot, o: &mut String) {
    use std::fmt::Write as _;
    let rows: [(&str, &str, &str, f64); 10] = [
        (
            "zcserve_read_in_offloaded_total",
            "counter",
            "Cold body ranges handed to the read-in pool (their sessions waited instead of the worker).",
            pool.offloaded as f64,
        ),
        (
            "zcserve_read_in_parked_total",
            "counter",
            "Sessions that waited for room in the read-in pool's queue.",
            pool.parked as f64,
        ),
        (
            "zcserve_read_in_bytes_total",
            "counter",
            "Bytes the read-in pool brought into the page cache.",
            pool.bytes_in as f64,
        ),
        (
            "zcserve_read_in_queue_depth",
            "gauge",
            "Read-ins waiting for a thread now.",
            pool.queued as f64,
        ),
        (
            "zcserve_read_in_queue_depth_max",
            "gauge",
            "The most read-ins that ever waited at once.",
            pool.max_queued as f64,
        ),
        (
            "zcserve_read_in_queue_wait_seconds_total",
            "counter",
            "Time read-ins waited for a thread, summed.",
            pool.queue_ns as f64 / 1e9,
        ),
        (
            "zcserve_read_in_run_seconds_total",
            "counter",
            "Time the read-in threads spent reading, summed.",
            pool.read_ns as f64 / 1e9,
        ),
        (
            "zcserve_read_in_sends_total",
            "counter",
            "Sends of read-in ranges run on the pool's threads (--cold-sends pool).",
            pool.sends as f64,
        ),
        (
            "zcserve_read_in_sent_bytes_total",
            "counter",
            "Bytes the pool's threads sent from ranges they read in.",
            pool.bytes_sent as f64,
        ),
        (
            "zcserve_read_in_send_seconds_total",
            "counter",
            "Time the pool's threads spent sending, summed.",
            pool.send_ns as f64 / 1e9,
        ),
    ];
    for (name, kind, help, v) in rows {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.response(200);
        m.response(200);
        m.response(418);
        let text = m.render(&[("sendfile", Snapshot::default())], 0);
        assert!(
            text.contains("zcserve_responses_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("zcserve_responses_total{status=\"other\"} 1\n"));
        assert!(text.contains(
            "zcserve_backend_syscalls_total{backend=\"sendfile\",syscall=\"sendfile\"} 0\n"
        ));
        assert_eq!(m.responses(200), 2);
    }

    #[test]
    fn read_in_pool_counters_are_rendered_with_their_units() {
        let pool = zcserve_core::disk::PoolSnapshot {
            offloaded: 3,
            sends: 5,
            bytes_sent: 1 << 20,
            send_ns: 1_500_000_000,
            read_ns: 250_000_000,
            ..Default::default()
        };
        let mut text = String::new();
        render_read_in(&pool, &mut text);
        for line in [
            "zcserve_read_in_offloaded_total 3\n",
            "zcserve_read_in_sends_total 5\n",
            "zcserve_read_in_sent_bytes_total 1048576\n",
            "zcserve_read_in_send_seconds_total 1.5\n",
            "zcserve_read_in_run_seconds_total 0.25\n",
            "# TYPE zcserve_read_in_queue_depth gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn each_backend_gets_its_samples() {
        let mut copy = Snapshot::default();
        copy.body_bytes = 7;
        let text =
            Metrics::default().render(&[("copy", copy), ("sendfile", Snapshot::default())], 0);
        for line in [
            "zcserve_backend_body_bytes_total{backend=\"copy\"} 7\n",
            "zcserve_backend_body_bytes_total{backend=\"sendfile\"} 0\n",
            "zcserve_backend_syscalls_total{backend=\"copy\",syscall=\"pread64\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(
            text.matches("# TYPE zcserve_backend_body_bytes_total")
                .count(),
            1
        );
    }
}
