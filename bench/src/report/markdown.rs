//! `report.md`: the run for people, one table per scenario (client read
//! mode × size × connections) with ratios, the idle-memory table, the
//! crossovers per client mode and links to the charts.

use std::fmt::Write as _;

use super::Report;
use super::charts::{ChartKind, charts, plural};
use super::crossover::{crossovers, is_baseline};
use super::numbers::{fmt_count, fmt_trim, ratio};
use crate::model::{
    ClientRead, IdleResult, Machine, RunResult, Scenario, Spread, Summary, summarise,
};
use crate::units::human_size;

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
    let mut clients: Vec<ClientRead> = summaries.iter().map(|s| s.scenario.client_read).collect();
    clients.sort_unstable();
    clients.dedup();
    machine_section(&mut o, m, &clients, report.command);
    steal_line(&mut o, report.results);
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
         Latency is each round's percentile, median over rounds. Server CPU s/GB is the \
         server's CPU seconds (user + system, children included) per 10⁹ body bytes; client \
         CPU s/GB is the load generator's own (its load threads' user + system time from \
         `getrusage(RUSAGE_THREAD)` over the run) per 10⁹ body bytes received. Every table, \
         chart and crossover is for one client read mode, named in its title: `N` reads the \
         bodies with `recv`s of N bytes into an N-byte page-aligned buffer, as real clients \
         do (wrk reads 8 KiB); `trunc` has the kernel discard them with `recv(MSG_TRUNC)`, \
         which copies nothing to user space, so the receiver's copy is gone and the server's \
         figures isolate the sender: its CPU s/GB is an upper bound of what sending costs it \
         (loopback may still charge some receive-side TCP work to it), its MB/s an upper \
         bound of what it can send, not what a client that reads the bytes sees. With \
         `trunc` each response's body is counted \
         (what the kernel reports discarded, exactly `Content-Length`) but never read, so its \
         bytes are not checked.\n",
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
            "## {} × {} connection{}, client: {}\n",
            human_size(sc.size),
            sc.conns,
            if sc.conns == 1 { "" } else { "s" },
            sc.client_read.describe()
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
            " | p50 / p99 / p99.9 ms | server CPU s/GB | client CPU s/GB | peak RSS MiB | \
             syscalls/req | valid |\n|---|--:|--:|--:|",
        );
        if report.first_peer.is_some() {
            o.push_str("--:|");
        }
        o.push_str("--:|--:|--:|--:|--:|---|\n");
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
                " {} / {} / {} | {} | {} | {} | {} | {} |",
                fmt_trim(s.p50_us / 1e3),
                fmt_trim(s.p99_us / 1e3),
                fmt_trim(s.p999_us / 1e3),
                s.cpu_s_per_gb
                    .map_or_else(|| "–".to_string(), |c| fmt_trim(c.median)),
                s.client_cpu_s_per_gb
                    .map_or_else(|| "–".to_string(), |c| fmt_trim(c.median)),
                s.peak_rss_kib
                    .map_or_else(|| "–".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
                s.syscalls_per_req.map_or_else(|| "–".to_string(), fmt_trim),
                validity(s, report.results),
            );
        }
        if let Some(c) = chart_list.iter().find(|c| {
            matches!(c.kind, ChartKind::Latency { size, conns, client }
                if size == sc.size && conns == sc.conns && client == sc.client_read)
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
            "From which file size each zero-copy backend beats `{base}` on server CPU s/GB \
             (lower) and on MB/s (higher), and keeps beating it at every larger size measured, \
             with the same client read mode (medians; an invalid run counts as not beating). \
             Sizes measured: {}.\n",
            sizes_list(&scenarios)
        );
        let _ = writeln!(
            o,
            "| client | backend | conns | beats {0} on CPU s/GB from | beats {0} on MB/s from |\n\
             |---|---|--:|---|---|",
            md_cell(base)
        );
        for c in &cross {
            let same = |s: &Summary| {
                s.scenario.conns == c.conns
                    && s.scenario.client_read == c.client_read
                    && s.cpu_s_per_gb.is_some()
            };
            let cpu_measured = summaries.iter().any(|s| s.target == c.target && same(s))
                && summaries.iter().any(|s| is_baseline(s, base) && same(s));
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
                "| {} | {} | {} | {} | {} |",
                c.client_read.describe(),
                md_cell(&c.target),
                c.conns,
                cpu,
                tput
            );
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Charts\n");
    let mut pairs: Vec<(ClientRead, usize)> =
        scenarios.iter().map(|s| (s.client_read, s.conns)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    for (cl, c) in pairs {
        for chart in &chart_list {
            match chart.kind {
                ChartKind::Throughput { conns, client } if conns == c && client == cl => {
                    let _ = writeln!(
                        o,
                        "![Throughput vs file size, {c} connection{}, client: {}]({})\n",
                        plural(c),
                        cl.describe(),
                        chart.file
                    );
                }
                ChartKind::Cpu { conns, client } if conns == c && client == cl => {
                    let _ = writeln!(
                        o,
                        "![Server CPU s/GB vs file size, {c} connection{}, client: {}]({})\n",
                        plural(c),
                        cl.describe(),
                        chart.file
                    );
                }
                _ => {}
            }
        }
    }
    o.push_str("Latency percentiles per scenario:\n\n");
    for chart in &chart_list {
        if let ChartKind::Latency {
            size,
            conns,
            client,
        } = chart.kind
        {
            let _ = writeln!(
                o,
                "- [{} × {}, client: {}]({})",
                human_size(size),
                conns,
                client.describe(),
                chart.file
            );
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
        .filter(|r| r.target == s.target && r.scenario() == s.scenario)
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

/// Escapes what would break a Markdown table cell.
pub(super) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub(super) fn cpu_list(cpus: &[usize]) -> String {
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

/// How much CPU time the hypervisor took during the runs, where they
/// recorded it: the median run and the worst, for the server's CPUs and the
/// client's.
fn steal_line(o: &mut String, results: &[RunResult]) {
    let describe = |f: fn(&RunResult) -> Option<f64>| {
        let v: Vec<f64> = results.iter().filter_map(f).collect();
        let s = Spread::of(&v)?;
        Some(format!(
            "median {:.1} %, largest {:.1} %",
            s.median * 100.0,
            s.max * 100.0
        ))
    };
    let (server, client) = (describe(|r| r.server_steal), describe(|r| r.client_steal));
    if server.is_none() && client.is_none() {
        return;
    }
    let unknown = || "not recorded".to_string();
    let (repeated, extra) = crate::steal::repeats(results.iter().map(|r| r.attempts));
    let gate = if repeated > 0 {
        format!(
            " {repeated} of {} runs were made again (`--max-steal`; {extra} more tries in all), \
             keeping the try with the least steal.",
            results.len()
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "**Steal** (the share of the CPUs' time the hypervisor gave to someone else during a \
         run, from `/proc/stat`; a run with a few percent is slower for reasons outside both \
         programs; per run in `results.csv`): server CPUs {}; client CPUs {}.{gate}\n",
        server.unwrap_or_else(unknown),
        client.unwrap_or_else(unknown)
    );
}

/// The machine table, naming the client read modes of the run's tables,
/// and the command that produced the run.
pub(super) fn machine_section(o: &mut String, m: &Machine, clients: &[ClientRead], command: &str) {
    let _ = writeln!(o, "| machine | |\n|---|---|");
    let _ = writeln!(o, "| CPU | {} |", md_cell(&m.cpu_model));
    let _ = writeln!(o, "| cores | {} |", m.cores);
    let _ = writeln!(o, "| kernel | {} |", md_cell(&m.kernel));
    let _ = writeln!(o, "| date | {} |", md_cell(&m.date));
    let _ = writeln!(o, "| server CPUs | {} |", cpu_list(&m.server_cpus));
    let _ = writeln!(o, "| client CPUs | {} |", cpu_list(&m.client_cpus));
    if !clients.is_empty() {
        let modes = clients
            .iter()
            .map(|c| format!("`{c}`: {}", c.describe()))
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(o, "| client read modes | {modes} |");
    }
    let _ = writeln!(o, "\nProduced by:\n\n```sh\n{}\n```\n", command);
}
