//! Writes a zcbench run out: `results.csv`, `results.json`, `report.md` and
//! SVG charts.
//!
//! The charts are drawn in memory with plotters' SVG backend
//! ([`SVGBackend::with_string`]). Without plotters' `ttf` feature text is
//! laid out with a crude built-in estimate and written as SVG `<text>`
//! elements, so no font files are needed to draw, only to view.
//!
//! Logarithmic axes are drawn on a linear plotters axis over `log10` of the
//! value, with tick marks placed here and labelled with the real values
//! (file sizes on the x axis, exactly at the sizes measured).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::{IdleResult, Machine, RunResult, Scenario, Summary, summarise};

/// Everything a report is made from.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The machine the run came from.
    pub machine: &'a Machine,
    /// Every run, every round.
    pub results: &'a [RunResult],
    /// The baseline the ratios and crossovers are computed against: a
    /// backend name (`copy`) or a target name (`zcserve-copy`).
    pub baseline_backend: &'a str,
    /// The target name of the first peer server, if any: a second ratio
    /// column is computed against it.
    pub first_peer: Option<&'a str>,
    /// The command line that produced the run.
    pub command: &'a str,
    /// Memory of idle keep-alive connections, one per target measured
    /// (empty: not measured).
    pub idle: &'a [IdleResult],
}

/// From which file size a zero-copy backend beats the baseline, at one
/// number of connections.
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
    /// Smallest size from which the target's median CPU s/GB stays below the
    /// baseline's; `None` if it does not at the largest size, or CPU was not
    /// measured.
    pub by_cpu: Option<u64>,
    /// Smallest size from which the target's median MB/s stays above the
    /// baseline's; `None` if it does not at the largest size.
    pub by_throughput: Option<u64>,
}

/// Writes `results.csv`, `results.json`, `report.md`, `idle.csv` (when idle
/// connections were measured) and the SVG charts into `dir` (created if
/// missing) and returns the paths written, in that order.
///
/// Charts: `throughput-c{N}.svg` for each number of connections,
/// `cpu-c{N}.svg` for each number of connections where any target's CPU was
/// measured, and `latency-{size}-c{N}.svg` for each scenario, with the size
/// written compactly (`latency-4KiB-c64.svg`).
pub fn write_all(report: &Report<'_>, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let summaries = summarise(report.results);
    let mut written = Vec::new();
    let mut put = |name: &str, contents: &str| -> std::io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
        Ok(())
    };
    put("results.csv", &csv(report.results))?;
    put("results.json", &json(report))?;
    put("report.md", &markdown(report))?;
    if !report.idle.is_empty() {
        put("idle.csv", &idle_csv(report.idle))?;
    }
    for chart in charts(&summaries) {
        let svg = match chart.kind {
            ChartKind::Throughput { conns } => svg_throughput(&summaries, conns),
            ChartKind::Cpu { conns } => svg_cpu(&summaries, conns),
            ChartKind::Latency { size, conns } => svg_latency(&summaries, size, conns),
        };
        put(&chart.file, &svg)?;
    }
    Ok(written)
}

// ---------------------------------------------------------------- CSV

const CSV_HEADER: [&str; 20] = [
    "target",
    "backend",
    "size",
    "conns",
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
    "peak_rss_kib",
    "syscalls_per_req",
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
            r.peak_rss_kib.map(|v| v.to_string()).unwrap_or_default(),
            opt_f(r.syscalls_per_req),
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
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------- JSON

#[derive(Serialize)]
struct JsonReport<'a> {
    machine: &'a Machine,
    command: &'a str,
    baseline: &'a str,
    first_peer: Option<&'a str>,
    results: &'a [RunResult],
    summaries: Vec<Summary>,
    crossovers: Vec<Crossover>,
    idle: &'a [IdleResult],
}

/// The whole run, pretty-printed: `machine`, `command`, `baseline`,
/// `first_peer`, `results` (every [`RunResult`]), `summaries` (see
/// [`summarise`]), `crossovers` (see [`crossovers`]) and `idle` (every
/// [`IdleResult`]).
pub fn json(report: &Report<'_>) -> String {
    let summaries = summarise(report.results);
    let crossovers = crossovers(&summaries, report.baseline_backend);
    let doc = JsonReport {
        machine: report.machine,
        command: report.command,
        baseline: report.baseline_backend,
        first_peer: report.first_peer,
        results: report.results,
        summaries,
        crossovers,
        idle: report.idle,
    };
    // Only plain structs, strings and numbers (non-finite floats become
    // `null`): serialising cannot fail.
    let mut s = serde_json::to_string_pretty(&doc).expect("the report serialises");
    s.push('\n');
    s
}

// ---------------------------------------------------------------- crossovers

/// Whether `s` is the baseline: its backend or its target is named so.
fn is_baseline(s: &Summary, baseline: &str) -> bool {
    s.target == baseline || s.backend.as_deref() == Some(baseline)
}

/// For each zcserve backend other than the baseline (summaries with a
/// backend; peers are left out) and each number of connections where the
/// baseline was also measured, the file sizes from which it beats the
/// baseline on CPU s/GB and on MB/s (medians over rounds). See
/// [`Crossover`] for what "from" means. Ordered by target (first seen),
/// then connections.
pub fn crossovers(summaries: &[Summary], baseline: &str) -> Vec<Crossover> {
    let mut targets: Vec<&str> = Vec::new();
    let mut conns: Vec<usize> = Vec::new();
    for s in summaries {
        if s.backend.is_some() && !is_baseline(s, baseline) && !targets.contains(&s.target.as_str())
        {
            targets.push(&s.target);
        }
        if !conns.contains(&s.scenario.conns) {
            conns.push(s.scenario.conns);
        }
    }
    conns.sort_unstable();
    let mut out = Vec::new();
    for t in &targets {
        for &c in &conns {
            // (size, target, baseline), ascending size.
            let mut pairs: Vec<(u64, &Summary, &Summary)> = summaries
                .iter()
                .filter(|s| s.target == *t && s.scenario.conns == c)
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
                by_cpu,
                by_throughput,
            });
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

// ---------------------------------------------------------------- Markdown

/// The report: the machine, the command, a note on what loopback can and
/// cannot show, one table per scenario (size × connections) with ratios to
/// the baseline and the first peer, the crossover table, and the charts
/// [`write_all`] writes beside it.
pub fn markdown(report: &Report<'_>) -> String {
    let summaries = summarise(report.results);
    let base = report.baseline_backend;
    let m = report.machine;
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(o, "# zcbench report\n");
    let _ = writeln!(o, "| machine | |\n|---|---|");
    let _ = writeln!(o, "| CPU | {} |", md_cell(&m.cpu_model));
    let _ = writeln!(o, "| cores | {} |", m.cores);
    let _ = writeln!(o, "| kernel | {} |", md_cell(&m.kernel));
    let _ = writeln!(o, "| date | {} |", md_cell(&m.date));
    let _ = writeln!(o, "| server CPUs | {} |", cpu_list(&m.server_cpus));
    let _ = writeln!(o, "| client CPUs | {} |", cpu_list(&m.client_cpus));
    let _ = writeln!(o, "\nProduced by:\n\n```sh\n{}\n```\n", report.command);
    o.push_str(
        "> **What loopback can show.** Everything here went over 127.0.0.1, with the \
         server and the load generator on the same machine. The receiver copies every byte \
         out of its socket whatever the server does, and the receive side's TCP processing \
         runs on the sending CPU (in softirq, where it may be charged to the server), so \
         the copy that `sendfile`/`splice`/`mmap` save on the send side is a smaller share \
         of the total than with a real NIC, where the card reads the page cache by DMA. \
         Zero-copy gains on a real NIC cannot show here, and `MSG_ZEROCOPY`-style gains are \
         invisible on 127.0.0.1: the kernel copies looped-back zero-copy data anyway. Read \
         the ratios below as \"on loopback, on this machine\".\n\n",
    );
    let rounds_max = summaries.iter().map(|s| s.rounds).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "Figures are medians over rounds (up to {rounds_max}), with min–max for req/s. \
         Ratios are of median req/s (the same as MB/s within a scenario) to `{base}`{}. \
         Latency is each round's percentile, median over rounds. CPU s/GB is server CPU \
         seconds (user + system, children included) per 10⁹ body bytes.\n",
        report
            .first_peer
            .map(|p| format!(" and to the first peer, `{p}`"))
            .unwrap_or_default()
    );
    if summaries.is_empty() {
        o.push_str("No runs were recorded.\n");
        return o;
    }

    let mut scenarios: Vec<Scenario> = summaries.iter().map(|s| s.scenario).collect();
    scenarios.sort();
    scenarios.dedup();
    let chart_list = charts(&summaries);
    for sc in &scenarios {
        let _ = writeln!(
            o,
            "## {} × {} connection{}\n",
            human_size(sc.size),
            sc.conns,
            if sc.conns == 1 { "" } else { "s" }
        );
        let rows: Vec<&Summary> = summaries.iter().filter(|s| s.scenario == *sc).collect();
        let base_rps = rows
            .iter()
            .find(|s| is_baseline(s, base))
            .map(|s| s.req_per_s.median);
        let peer_rps = report.first_peer.and_then(|p| {
            rows.iter()
                .find(|s| s.target == p)
                .map(|s| s.req_per_s.median)
        });
        o.push_str("| target | req/s median (min–max) | MB/s | vs ");
        o.push_str(&md_cell(base));
        if let Some(p) = report.first_peer {
            o.push_str(" | vs ");
            o.push_str(&md_cell(p));
        }
        o.push_str(
            " | p50 / p99 / p99.9 ms | CPU s/GB | peak RSS MiB | syscalls/req | valid |\n\
             |---|--:|--:|--:|",
        );
        if report.first_peer.is_some() {
            o.push_str("--:|");
        }
        o.push_str("--:|--:|--:|--:|---|\n");
        for s in rows {
            let _ = write!(
                o,
                "| {} | {} ({}–{}) | {} | {} |",
                md_cell(&s.target),
                fmt_count(s.req_per_s.median),
                fmt_count(s.req_per_s.min),
                fmt_count(s.req_per_s.max),
                fmt_count(s.mb_per_s.median),
                ratio(s.req_per_s.median, base_rps),
            );
            if report.first_peer.is_some() {
                let _ = write!(o, " {} |", ratio(s.req_per_s.median, peer_rps));
            }
            let _ = writeln!(
                o,
                " {} / {} / {} | {} | {} | {} | {} |",
                fmt_trim(s.p50_us / 1e3),
                fmt_trim(s.p99_us / 1e3),
                fmt_trim(s.p999_us / 1e3),
                s.cpu_s_per_gb
                    .map_or_else(|| "–".to_string(), |c| fmt_trim(c.median)),
                s.peak_rss_kib
                    .map_or_else(|| "–".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
                s.syscalls_per_req.map_or_else(|| "–".to_string(), fmt_trim),
                validity(s, report.results),
            );
        }
        if let Some(c) = chart_list.iter().find(|c| {
            matches!(c.kind, ChartKind::Latency { size, conns } if size == sc.size && conns == sc.conns)
        }) {
            let _ = writeln!(o, "\nLatency chart: [{0}]({0})", c.file);
        }
        o.push('\n');
    }

    idle_section(&mut o, report.idle);

    let _ = writeln!(o, "## Crossovers\n");
    let cross = crossovers(&summaries, base);
    if cross.is_empty() {
        let _ = writeln!(
            o,
            "No zero-copy backend was measured beside `{base}`: no crossover to name.\n"
        );
    } else {
        let _ = writeln!(
            o,
            "From which file size each zero-copy backend beats `{base}` on CPU s/GB (lower) \
             and on MB/s (higher), and keeps beating it at every larger size measured \
             (medians; an invalid run counts as not beating). Sizes measured: {}.\n",
            sizes_list(&scenarios)
        );
        let _ = writeln!(
            o,
            "| backend | conns | beats {0} on CPU s/GB from | beats {0} on MB/s from |\n|---|--:|---|---|",
            md_cell(base)
        );
        for c in &cross {
            let cpu_measured = summaries.iter().any(|s| {
                s.target == c.target && s.scenario.conns == c.conns && s.cpu_s_per_gb.is_some()
            }) && summaries.iter().any(|s| {
                is_baseline(s, base) && s.scenario.conns == c.conns && s.cpu_s_per_gb.is_some()
            });
            let cpu = match c.by_cpu {
                Some(size) => human_size(size),
                None if cpu_measured => NONE_MEASURED.to_string(),
                None => "CPU not measured".to_string(),
            };
            let tput = c
                .by_throughput
                .map_or_else(|| NONE_MEASURED.to_string(), human_size);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                md_cell(&c.target),
                c.conns,
                cpu,
                tput
            );
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Charts\n");
    let mut conns: Vec<usize> = scenarios.iter().map(|s| s.conns).collect();
    conns.dedup();
    conns.sort_unstable();
    conns.dedup();
    for c in conns {
        for chart in &chart_list {
            match chart.kind {
                ChartKind::Throughput { conns } if conns == c => {
                    let _ = writeln!(
                        o,
                        "![Throughput vs file size, {c} connection{}]({})\n",
                        plural(c),
                        chart.file
                    );
                }
                ChartKind::Cpu { conns } if conns == c => {
                    let _ = writeln!(
                        o,
                        "![Server CPU s/GB vs file size, {c} connection{}]({})\n",
                        plural(c),
                        chart.file
                    );
                }
                _ => {}
            }
        }
    }
    o.push_str("Latency percentiles per scenario:\n\n");
    for chart in &chart_list {
        if let ChartKind::Latency { size, conns } = chart.kind {
            let _ = writeln!(o, "- [{} × {}]({})", human_size(size), conns, chart.file);
        }
    }
    o
}

const NONE_MEASURED: &str = "none within the sizes measured";

/// The target this project set: 1,000 idle keep-alive connections cost at
/// most 30 MiB of RSS, i.e. 30.72 KiB each.
pub const IDLE_TARGET_KIB_PER_CONN: f64 = 30.0 * 1024.0 / 1000.0;

/// The "Memory: N idle keep-alive connections" section, when measured.
fn idle_section(o: &mut String, idle: &[IdleResult]) {
    if idle.is_empty() {
        return;
    }
    let mut ns: Vec<usize> = idle.iter().map(|r| r.conns).collect();
    ns.sort_unstable();
    ns.dedup();
    let n = ns
        .iter()
        .map(|&n| {
            if n >= 1000 {
                fmt_count(n as f64)
            } else {
                n.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" / ");
    let _ = writeln!(o, "## Memory: {n} idle keep-alive connections\n");
    let _ = writeln!(
        o,
        "Each server's resident set (`VmRSS`, summed over its process tree: nginx's \
         master and worker, a launcher script and what it started) just after it \
         started, then with the connections open, each having made one small `GET` \
         and left idle for half a second. Shared pages count once per process. \
         Target: 1,000 idle keep-alive connections cost ≤ 30 MiB, i.e. ≤ {} KiB \
         per connection.\n",
        fmt_trim(IDLE_TARGET_KIB_PER_CONN)
    );
    o.push_str(
        "| target | conns | processes | RSS before MiB | RSS with conns MiB | delta MiB | \
         KiB per conn | ≤ target | valid |\n|---|--:|--:|--:|--:|--:|--:|---|---|\n",
    );
    let mib =
        |k: Option<u64>| k.map_or_else(|| "–".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    for r in idle {
        let per = r.per_conn_kib();
        let verdict = match per {
            Some(p) if r.valid && p <= IDLE_TARGET_KIB_PER_CONN => "✓ yes",
            Some(_) if r.valid => "✗ no",
            _ => "–",
        };
        let valid = if r.valid {
            "✓".to_string()
        } else {
            let mut why = format!(
                "⚠ {} of {} answered, {} still open",
                r.answered, r.conns, r.still_open
            );
            if let Some(e) = &r.error {
                why.push_str(": ");
                why.push_str(e);
            }
            md_cell(&why)
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_cell(&r.target),
            r.conns,
            r.processes,
            mib(r.rss_before_kib),
            mib(r.rss_after_kib),
            r.rss_delta_kib
                .map_or_else(|| "–".to_string(), |d| format!("{:.1}", d as f64 / 1024.0)),
            per.map_or_else(|| "–".to_string(), |p| format!("{p:.1}")),
            verdict,
            valid,
        );
    }
    o.push('\n');
}

/// `✓`, or a warning naming the errors of the target's runs in the
/// scenario.
fn validity(s: &Summary, results: &[RunResult]) -> String {
    if s.valid {
        return "✓".to_string();
    }
    let runs: Vec<&RunResult> = results
        .iter()
        .filter(|r| {
            r.target == s.target && r.size == s.scenario.size && r.conns == s.scenario.conns
        })
        .collect();
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    let bad = runs.iter().filter(|r| !r.valid).count();
    format!(
        "⚠ invalid: {errors} error{} in {bad} of {} round{}",
        if errors == 1 { "" } else { "s" },
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    )
}

/// `x / of` as `1.23×`, or `–` without a (non-zero) reference.
fn ratio(x: f64, of: Option<f64>) -> String {
    match of {
        Some(of) if of > 0.0 && x.is_finite() => format!("{:.2}×", x / of),
        _ => "–".to_string(),
    }
}

/// Escapes what would break a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn cpu_list(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return "not pinned".to_string();
    }
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn sizes_list(scenarios: &[Scenario]) -> String {
    let mut sizes: Vec<u64> = scenarios.iter().map(|s| s.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .map(human_size)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A byte count in binary units: `512 B`, `4 KiB`, `1.5 MiB`, `256 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scale = 1u64;
    while unit + 1 < UNITS.len() && bytes >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    if bytes % scale == 0 {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        let v = format!("{:.2}", bytes as f64 / scale as f64);
        let v = v.trim_end_matches('0').trim_end_matches('.');
        format!("{v} {}", UNITS[unit])
    }
}

/// `x` with `sig` significant digits, never in exponent notation.
fn fmt_sig(x: f64, sig: i32) -> String {
    if !x.is_finite() {
        return "–".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (sig - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

/// Up to three significant digits, trailing zeros dropped
/// (`3`, `2.5`, `0.05`).
fn fmt_trim(x: f64) -> String {
    let s = fmt_sig(x, 3);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A rate: whole and grouped by thousands from 100 up (`115,234`), else
/// with three significant digits (`9.42`).
fn fmt_count(x: f64) -> String {
    if !x.is_finite() || x.abs() < 100.0 {
        return fmt_sig(x, 3);
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

// ---------------------------------------------------------------- charts

#[derive(Debug, Clone, Copy, PartialEq)]
enum ChartKind {
    Throughput { conns: usize },
    Cpu { conns: usize },
    Latency { size: u64, conns: usize },
}

struct Chart {
    file: String,
    kind: ChartKind,
}

/// The charts `write_all` draws for these summaries.
fn charts(summaries: &[Summary]) -> Vec<Chart> {
    let mut scenarios: Vec<Scenario> = summaries.iter().map(|s| s.scenario).collect();
    scenarios.sort();
    scenarios.dedup();
    let mut conns: Vec<usize> = scenarios.iter().map(|s| s.conns).collect();
    conns.sort_unstable();
    conns.dedup();
    let mut out = Vec::new();
    for &c in &conns {
        out.push(Chart {
            file: format!("throughput-c{c}.svg"),
            kind: ChartKind::Throughput { conns: c },
        });
        if summaries
            .iter()
            .any(|s| s.scenario.conns == c && s.cpu_s_per_gb.is_some())
        {
            out.push(Chart {
                file: format!("cpu-c{c}.svg"),
                kind: ChartKind::Cpu { conns: c },
            });
        }
    }
    for sc in &scenarios {
        out.push(Chart {
            file: format!(
                "latency-{}-c{}.svg",
                human_size(sc.size).replace(' ', ""),
                sc.conns
            ),
            kind: ChartKind::Latency {
                size: sc.size,
                conns: sc.conns,
            },
        });
    }
    out
}

/// Tableau 10: distinct, readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const FONT: &str = "sans-serif";

type DrawResult = Result<(), Box<dyn Error>>;

/// Draws with `f` into an in-memory SVG of `size` pixels; if drawing fails,
/// an SVG saying so.
fn render(
    size: (u32, u32),
    f: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> String {
    let mut buf = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        let r = root
            .fill(&WHITE)
            .map_err(Box::<dyn Error>::from)
            .and_then(|()| f(&root));
        r.and_then(|()| root.present().map_err(Box::<dyn Error>::from))
    };
    match result {
        Ok(()) => buf,
        Err(e) => {
            let msg = e
                .to_string()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            format!(
                "<svg width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" \
                 xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"20\">\
                 cannot draw this chart: {msg}</text></svg>\n",
                size.0, size.1
            )
        }
    }
}

/// A linear or logarithmic axis. Plot coordinates are the value itself, or
/// its `log10`.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    log: bool,
    /// Plot-coordinate range.
    lo: f64,
    hi: f64,
    /// Tick positions, in values (not plot coordinates).
    ticks: Vec<f64>,
}

impl Axis {
    /// An axis for `values`: logarithmic when they are all positive and
    /// span more than `log_from` times; linear ones start at zero.
    fn fit(values: &[f64], log_from: f64) -> Axis {
        let vals: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if vals.is_empty() {
            return Axis::linear(1.0);
        }
        if min > 0.0 && max / min > log_from {
            Axis::log(min / 1.3, max * 1.3)
        } else {
            Axis::linear(max.max(0.0))
        }
    }

    fn linear(max: f64) -> Axis {
        let max = if max > 0.0 { max } else { 1.0 };
        let raw = max / 6.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let hi = max * 1.08;
        let ticks = (0..)
            .map(|i| f64::from(i) * step)
            .take_while(|t| *t <= hi)
            .collect();
        Axis {
            log: false,
            lo: 0.0,
            hi,
            ticks,
        }
    }

    fn log(lo: f64, hi: f64) -> Axis {
        let ticks_with = |mantissas: &[f64]| -> Vec<f64> {
            let mut t = Vec::new();
            for e in (lo.log10().floor() as i32)..=(hi.log10().ceil() as i32) {
                for m in mantissas {
                    let v = m * 10f64.powi(e);
                    if v >= lo && v <= hi {
                        t.push(v);
                    }
                }
            }
            t
        };
        let mut ticks = ticks_with(&[1.0, 2.0, 5.0]);
        if ticks.len() > 10 {
            ticks = ticks_with(&[1.0]);
        }
        if ticks.len() < 3 {
            ticks = ticks_with(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        }
        Axis {
            log: true,
            lo: lo.log10(),
            hi: hi.log10(),
            ticks,
        }
    }

    /// Value to plot coordinate.
    fn t(&self, v: f64) -> f64 {
        if self.log { v.max(1e-300).log10() } else { v }
    }

    /// Plot coordinate to value.
    fn inv(&self, p: f64) -> f64 {
        if self.log { 10f64.powf(p) } else { p }
    }

    /// The plotters coordinate: plot coordinates, ticks where chosen.
    fn coord(&self) -> Ticked {
        Ticked {
            lo: self.lo,
            hi: self.hi,
            ticks: self.ticks.iter().map(|v| self.t(*v)).collect(),
        }
    }

    fn describe(&self, what: &str) -> String {
        if !self.log {
            what.to_string()
        } else if let Some(open) = what.strip_suffix(')') {
            format!("{open}, log scale)")
        } else {
            format!("{what} (log scale)")
        }
    }
}

/// A linear plotters coordinate with tick marks (and grid lines) exactly
/// at `ticks`, formatted by the label formatters given to the mesh.
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span == 0.0 || !v.is_finite() {
            return (limit.0 + limit.1) / 2;
        }
        let pixels = f64::from(limit.1 - limit.0);
        limit.0 + (pixels * (v - self.lo) / span).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The x axis of file sizes: logarithmic, ticks at the sizes measured
/// (every other one, or fewer, when there are many).
fn size_axis(sizes: &[u64]) -> Axis {
    let mut sizes: Vec<u64> = sizes.iter().copied().filter(|s| *s > 0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (min, max) = match (sizes.first(), sizes.last()) {
        (Some(a), Some(b)) => (*a as f64, *b as f64),
        _ => (1024.0, 1024.0 * 1024.0),
    };
    let pad = if max / min < 4.0 { 2.0 } else { 1.6 };
    let every = sizes.len().div_ceil(9).max(1);
    let ticks = sizes
        .iter()
        .step_by(every)
        .map(|s| *s as f64)
        .collect::<Vec<_>>();
    Axis {
        log: true,
        lo: (min / pad).log10(),
        hi: (max * pad).log10(),
        ticks,
    }
}

/// One point of a line: size, median, min, max, valid.
struct Point {
    size: u64,
    y: f64,
    lo: f64,
    hi: f64,
    valid: bool,
}

struct Line {
    name: String,
    points: Vec<Point>,
}

/// The targets in first-seen order.
fn targets_of(summaries: &[Summary]) -> Vec<&str> {
    let mut t: Vec<&str> = Vec::new();
    for s in summaries {
        if !t.contains(&s.target.as_str()) {
            t.push(&s.target);
        }
    }
    t
}

/// One line per target over the summaries with `conns` connections, with
/// `pick` choosing the figure (targets where it is always `None` are left
/// out).
fn lines(
    summaries: &[Summary],
    conns: usize,
    pick: impl Fn(&Summary) -> Option<crate::model::Spread>,
) -> Vec<Line> {
    targets_of(summaries)
        .into_iter()
        .filter_map(|t| {
            let mut points: Vec<Point> = summaries
                .iter()
                .filter(|s| s.target == t && s.scenario.conns == conns)
                .filter_map(|s| {
                    pick(s).map(|v| Point {
                        size: s.scenario.size,
                        y: v.median,
                        lo: v.min,
                        hi: v.max,
                        valid: s.valid,
                    })
                })
                .collect();
            points.sort_by_key(|p| p.size);
            (!points.is_empty()).then(|| Line {
                name: t.to_string(),
                points,
            })
        })
        .collect()
}

/// MB/s against file size (log x axis) at `conns` connections: one line
/// with points per target, min–max whiskers, a legend.
pub fn svg_throughput(summaries: &[Summary], conns: usize) -> String {
    let lines = lines(summaries, conns, |s| Some(s.mb_per_s));
    size_chart(
        &format!(
            "Throughput vs file size, {conns} connection{}",
            plural(conns)
        ),
        "MB/s (median, whiskers min–max)",
        &lines,
        SeriesLabelPosition::UpperLeft,
    )
}

/// Server CPU seconds per GB against file size (log x axis) at `conns`
/// connections, one line per target; targets without CPU data are left
/// out.
pub fn svg_cpu(summaries: &[Summary], conns: usize) -> String {
    let lines = lines(summaries, conns, |s| s.cpu_s_per_gb);
    size_chart(
        &format!(
            "Server CPU per GB sent, {conns} connection{} (lower is better)",
            plural(conns)
        ),
        "CPU s/GB (median, whiskers min–max)",
        &lines,
        SeriesLabelPosition::UpperRight,
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn size_chart(title: &str, y_desc: &str, lines: &[Line], legend: SeriesLabelPosition) -> String {
    let sizes: Vec<u64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.size))
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().flat_map(|p| [p.y, p.lo, p.hi]))
        .collect();
    let x = size_axis(&sizes);
    let y = Axis::fit(&ys, 20.0);
    let any_invalid = lines.iter().any(|l| l.points.iter().any(|p| !p.valid));
    render((900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x.coord(), y.coord())?;
        let x_fmt = |v: &f64| human_size(x.inv(*v).round() as u64);
        let y_fmt = |v: &f64| fmt_trim(y.inv(*v));
        chart
            .configure_mesh()
            .x_desc(x.describe("file size"))
            .y_desc(y.describe(y_desc))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(BLACK.mix(0.12))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()?;
        if lines.is_empty() {
            root.draw(&Text::new(
                "no data",
                (420, 280),
                (FONT, 18).into_font().color(&BLACK),
            ))?;
            return Ok(());
        }
        for (i, line) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .map(|p| (x.t(p.size as f64), y.t(p.y)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(line.name.as_str())
                .legend(move |(lx, ly)| {
                    EmptyElement::at((lx, ly))
                        + PathElement::new(vec![(0, 0), (22, 0)], color.stroke_width(2))
                        + Circle::new((11, 0), 4, color.filled())
                });
            chart.draw_series(line.points.iter().filter(|p| p.hi > p.lo).map(|p| {
                let px = x.t(p.size as f64);
                PathElement::new(
                    vec![(px, y.t(p.lo)), (px, y.t(p.hi))],
                    color.stroke_width(1),
                )
            }))?;
            chart.draw_series(
                line.points
                    .iter()
                    .filter(|p| p.valid)
                    .map(|p| Circle::new((x.t(p.size as f64), y.t(p.y)), 4, color.filled())),
            )?;
            chart.draw_series(
                line.points
                    .iter()
                    .filter(|p| !p.valid)
                    .map(|p| Cross::new((x.t(p.size as f64), y.t(p.y)), 6, color.stroke_width(3))),
            )?;
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 14))
            .margin(12)
            .legend_area_size(30)
            .draw()?;
        if any_invalid {
            root.draw(&Text::new(
                "× = invalid run (errors)",
                (700, 540),
                (FONT, 13).into_font().color(&RED),
            ))?;
        }
        Ok(())
    })
}

/// Latency percentiles (p50, p99, p99.9 in ms, median over rounds) of each
/// target for one scenario, as grouped bars on a logarithmic axis when they
/// span more than 10×.
pub fn svg_latency(summaries: &[Summary], size: u64, conns: usize) -> String {
    let rows: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.scenario.size == size && s.scenario.conns == conns)
        .collect();
    let names: Vec<String> = rows
        .iter()
        .map(|s| {
            if s.valid {
                s.target.clone()
            } else {
                format!("{} (invalid)", s.target)
            }
        })
        .collect();
    let ms = |s: &Summary| [s.p50_us / 1e3, s.p99_us / 1e3, s.p999_us / 1e3];
    let ys: Vec<f64> = rows.iter().flat_map(|s| ms(s)).collect();
    let y = Axis::fit(&ys, 10.0);
    let n = rows.len().max(1);
    let width = (140 * n as u32 + 160).max(720);
    let title = format!(
        "Latency, {} × {conns} connection{}",
        human_size(size),
        plural(conns)
    );
    render((width, 520), |root| {
        let ticks: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(
                Ticked {
                    lo: -0.5,
                    hi: n as f64 - 0.5,
                    ticks,
                },
                y.coord(),
            )?;
        let x_fmt = |v: &f64| {
            let i = v.round();
            if i >= 0.0 && (i as usize) < names.len() && (v - i).abs() < 1e-6 {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        let y_fmt = |v: &f64| fmt_trim(y.inv(*v));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("target")
            .y_desc(y.describe("latency, ms (median of rounds)"))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(BLACK.mix(0.12))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()?;
        if rows.is_empty() {
            root.draw(&Text::new(
                "no data",
                (width as i32 / 2 - 30, 260),
                (FONT, 18).into_font().color(&BLACK),
            ))?;
            return Ok(());
        }
        let labels = ["p50", "p99", "p99.9"];
        let colors = [PALETTE[0], PALETTE[1], PALETTE[3]];
        let bar = 0.26;
        for (j, (label, color)) in labels.iter().zip(colors).enumerate() {
            chart
                .draw_series(rows.iter().enumerate().map(|(i, s)| {
                    let x0 = i as f64 - 1.5 * bar + j as f64 * bar;
                    let top = y.t(ms(s)[j]).max(y.lo);
                    Rectangle::new([(x0, y.lo), (x0 + bar * 0.92, top)], color.filled())
                }))?
                .label(*label)
                .legend(move |(lx, ly)| {
                    Rectangle::new([(lx, ly - 6), (lx + 14, ly + 6)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 14))
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(256 << 20), "256 MiB");
        assert_eq!(human_size(3 << 30), "3 GiB");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(fmt_sig(0.012345, 3), "0.0123");
        assert_eq!(fmt_sig(2.5, 3), "2.50");
        assert_eq!(fmt_sig(12345.0, 3), "12345");
        assert_eq!(fmt_sig(f64::NAN, 3), "–");
        assert_eq!(fmt_trim(3.0), "3");
        assert_eq!(fmt_trim(2.5), "2.5");
        assert_eq!(fmt_trim(0.05), "0.05");
        assert_eq!(fmt_trim(5000.0), "5000");
        assert_eq!(fmt_count(115_234.4), "115,234");
        assert_eq!(fmt_count(999.6), "1,000");
        assert_eq!(fmt_count(9.421), "9.42");
        assert_eq!(ratio(3.0, Some(2.0)), "1.50×");
        assert_eq!(ratio(3.0, Some(0.0)), "–");
        assert_eq!(ratio(3.0, None), "–");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn axes_choose_scale_and_ticks() {
        let lin = Axis::fit(&[10.0, 50.0, 90.0], 20.0);
        assert!(!lin.log);
        assert_eq!(lin.lo, 0.0);
        assert!(lin.hi >= 90.0);
        assert!(
            lin.ticks.len() >= 4 && lin.ticks.len() <= 11,
            "{:?}",
            lin.ticks
        );
        let log = Axis::fit(&[0.05, 3.0, 40.0], 20.0);
        assert!(log.log);
        assert!(log.ticks.contains(&1.0), "{:?}", log.ticks);
        assert!((log.inv(log.t(3.0)) - 3.0).abs() < 1e-9);
        let zeros = Axis::fit(&[0.0, 5.0], 20.0);
        assert!(!zeros.log, "zero cannot go on a log axis");
        let sizes = size_axis(&[4096, 65536, 1 << 20]);
        assert_eq!(sizes.ticks, vec![4096.0, 65536.0, 1048576.0]);
        assert_eq!(
            human_size(sizes.inv(sizes.t(4096.0)).round() as u64),
            "4 KiB"
        );
    }

    #[test]
    fn from_which_needs_every_larger_size() {
        let s = |target: &str, mb: f64| Summary {
            target: target.into(),
            backend: Some(target.into()),
            scenario: Scenario { size: 1, conns: 1 },
            rounds: 1,
            req_per_s: crate::model::Spread {
                median: mb,
                min: mb,
                max: mb,
            },
            mb_per_s: crate::model::Spread {
                median: mb,
                min: mb,
                max: mb,
            },
            p50_us: 1.0,
            p99_us: 1.0,
            p999_us: 1.0,
            cpu_s_per_gb: None,
            peak_rss_kib: None,
            syscalls_per_req: None,
            valid: true,
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
