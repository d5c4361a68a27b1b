//! `results.csv` and `idle.csv`: every run, and every idle-memory
//! measurement, one row each, for spreadsheets and scripts.

use crate::model::{IdleResult, RunResult};

const CSV_HEADER: [&str; 26] = [
    "target",
    "backend",
    "size",
    "conns",
    "client_read",
    "round",
    "seconds",
    "requests",
    "bytes",
    "errors",
    "req_per_s",
    "mb_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "cpu_s",
    "cpu_s_per_gb",
    "client_cpu_s",
    "client_cpu_s_per_gb",
    "peak_rss_kib",
    "syscalls_per_req",
    "server_steal",
    "client_steal",
    "attempts",
    "valid",
];

/// One row per run after a header row, fields in [`RunResult`]'s order and
/// named as its fields. Missing values are empty fields; numbers are
/// written in full (floats round-trip); a field holding a comma, quote or
/// line break is quoted as RFC 4180 says. Lines end in `\n`.
pub fn csv(results: &[RunResult]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    for r in results {
        let opt_f = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let fields = [
            csv_field(&r.target),
            csv_field(r.backend.as_deref().unwrap_or("")),
            r.size.to_string(),
            r.conns.to_string(),
            r.client_read.to_string(),
            r.round.to_string(),
            r.seconds.to_string(),
            r.requests.to_string(),
            r.bytes.to_string(),
            r.errors.to_string(),
            r.req_per_s.to_string(),
            r.mb_per_s.to_string(),
            r.p50_us.to_string(),
            r.p90_us.to_string(),
            r.p99_us.to_string(),
            r.p999_us.to_string(),
            opt_f(r.cpu_s),
            opt_f(r.cpu_s_per_gb),
            opt_f(r.client_cpu_s),
            opt_f(r.client_cpu_s_per_gb),
            r.peak_rss_kib.map(|v| v.to_string()).unwrap_or_default(),
            opt_f(r.syscalls_per_req),
            opt_f(r.server_steal),
            opt_f(r.client_steal),
            r.attempts.to_string(),
            r.valid.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

const IDLE_CSV_HEADER: [&str; 12] = [
    "target",
    "backend",
    "conns",
    "answered",
    "still_open",
    "processes",
    "rss_before_kib",
    "rss_after_kib",
    "rss_delta_kib",
    "per_conn_kib",
    "valid",
    "error",
];

/// The idle-connection memory, one row per target after a header row,
/// written like [`csv`]: fields in [`IdleResult`]'s order (with
/// `per_conn_kib` derived), missing values empty.
pub fn idle_csv(idle: &[IdleResult]) -> String {
    let mut out = IDLE_CSV_HEADER.join(",");
    out.push('\n');
    for r in idle {
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let fields = [
            csv_field(&r.target),
            csv_field(r.backend.as_deref().unwrap_or("")),
            r.conns.to_string(),
            r.answered.to_string(),
            r.still_open.to_string(),
            r.processes.to_string(),
            opt(r.rss_before_kib),
            opt(r.rss_after_kib),
            r.rss_delta_kib.map(|v| v.to_string()).unwrap_or_default(),
            r.per_conn_kib().map(|v| v.to_string()).unwrap_or_default(),
            r.valid.to_string(),
            csv_field(r.error.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// `s`, quoted (with quotes doubled) if it holds a comma, quote or line
/// break.
pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
