//! The cold-cache scenario's report: `cold.csv` (every round), `cold.json`
//! (the setup and every round), `cold.md` (a table of medians over rounds)
//! and `cold-hot-cdf.svg` (the hot client's latency CDF per server).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Serialize;

use super::charts::{FONT, PALETTE, render};
use super::csv::csv_field;
use super::markdown::{machine_section, md_cell};
use super::numbers::{fmt_count, fmt_trim};
use crate::model::{CDF_QUANTILES, ColdResult, ColdSetup, Machine, Spread};
use crate::units::human_size;

/// Everything the cold report is made from.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ColdReport<'a> {
    /// The machine the run came from.
    pub machine: &'a Machine,
    /// The command line that produced the run.
    pub command: &'a str,
    /// How the scenario was set up.
    pub setup: &'a ColdSetup,
    /// Every target, every round.
    pub results: &'a [ColdResult],
}

/// Writes `cold.csv`, `cold.json`, `cold.md` and `cold-hot-cdf.svg` into
/// `dir` and returns their paths.
pub fn write_all(report: &ColdReport<'_>, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in [
        ("cold.csv", csv(report.results)),
        ("cold.json", json(report)),
        ("cold.md", markdown(report)),
        ("cold-hot-cdf.svg", svg_hot_cdf(report.results)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

const CSV_HEADER: [&str; 22] = [
    "target",
    "backend",
    "round",
    "seconds",
    "cached_before",
    "cached_after",
    "cold_requests",
    "cold_mb_per_s",
    "cold_errors",
    "hot_requests",
    "hot_req_per_s",
    "hot_errors",
    "hot_p50_us",
    "hot_p99_us",
    "hot_p999_us",
    "hot_max_us",
    "disk_reads",
    "disk_read_bytes",
    "server_steal",
    "client_steal",
    "attempts",
    "valid",
];

/// One row per target and round, fields in [`ColdResult`]'s order (the CDF
/// left to the JSON).
pub fn csv(results: &[ColdResult]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    let opt_f = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let opt_u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in results {
        let fields = [
            csv_field(&r.target),
            csv_field(r.backend.as_deref().unwrap_or("")),
            r.round.to_string(),
            r.seconds.to_string(),
            r.cached_before.to_string(),
            r.cached_after.to_string(),
            r.cold_requests.to_string(),
            r.cold_mb_per_s.to_string(),
            r.cold_errors.to_string(),
            r.hot_requests.to_string(),
            r.hot_req_per_s.to_string(),
            r.hot_errors.to_string(),
            r.hot_p50_us.to_string(),
            r.hot_p99_us.to_string(),
            r.hot_p999_us.to_string(),
            r.hot_max_us.to_string(),
            opt_u(r.disk_reads),
            opt_u(r.disk_read_bytes),
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

/// The whole report, pretty-printed.
pub fn json(report: &ColdReport<'_>) -> String {
    // Plain structs, strings and numbers: serialising cannot fail.
    let mut s = serde_json::to_string_pretty(report).expect("the report serialises");
    s.push('\n');
    s
}

/// The report's line on `--max-steal`: the bound, how many runs were made
/// again, and how many kept runs are still above it; `None` with the gate
/// off.
fn steal_gate_line(s: &ColdSetup, results: &[ColdResult]) -> Option<String> {
    let max = s.max_steal?;
    let (repeated, extra) = crate::steal::repeats(results.iter().map(|r| r.attempts));
    let above = results
        .iter()
        .filter(|r| r.server_steal.is_some_and(|v| v > max))
        .count();
    Some(format!(
        "- **Steal gate** (`--max-steal {max}`): a run whose server CPUs lost more than {} to \
         steal was made again, up to {} more times, and the try with the least steal was kept. \
         {repeated} of {} runs were made again ({extra} more tries in all); {above} kept \
         {} still above the bound.",
        fmt_steal(Some(max)),
        s.steal_retries,
        results.len(),
        if above == 1 { "run is" } else { "runs are" },
    ))
}

/// The report's line on how the cold connections asked for files.
fn cold_load_line(s: &ColdSetup) -> String {
    match s.cold_rate {
        Some(mb) => format!(
            "- **Cold load: capped at {mb} MB/s** (`--cold-rate {mb}`): the cold connections \
             start at most one request per {} between them, so every server that keeps up \
             serves the same cold bytes and its hot figures compare with the others' at equal \
             work; a server below the cap shows it in cold MB/s.",
            fmt_us(crate::cold::request_interval(s.file_size, mb).as_secs_f64() * 1e6)
        ),
        None => "- **Cold load:** a closed loop: each cold connection asks for its next file as \
             soon as the last one ended, so a server that reads the disk faster also serves more \
             cold bytes, on the same CPU as the hot client's (`--cold-rate` caps them)."
            .into(),
    }
}

/// Median over rounds of one target's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdSummary {
    /// The target.
    pub target: String,
    /// Rounds summarised.
    pub rounds: usize,
    /// The hot client's req/s.
    pub hot_req_per_s: Spread,
    /// Medians over rounds of the hot client's p50 / p99 / p99.9 (µs).
    pub hot_p50_us: f64,
    /// See `hot_p50_us`.
    pub hot_p99_us: f64,
    /// See `hot_p50_us`.
    pub hot_p999_us: f64,
    /// The slowest hot response of any round (µs).
    pub hot_max_us: u64,
    /// The hot client's latency (µs) at each of [`CDF_QUANTILES`], median
    /// over rounds.
    pub hot_cdf_us: Vec<f64>,
    /// Cold MB/s.
    pub cold_mb_per_s: Spread,
    /// Median over rounds of the disk's read requests per second and of
    /// their mean size in bytes (`None` where no round recorded them).
    pub disk_reads_per_s: Option<f64>,
    /// See `disk_reads_per_s`.
    pub disk_read_size: Option<f64>,
    /// Median over rounds of the stolen fraction of the server CPUs' and
    /// the client CPUs' time (`None` where no round recorded it).
    pub server_steal: Option<f64>,
    /// See `server_steal`.
    pub client_steal: Option<f64>,
    /// Largest cached fraction of the working set at a round's start.
    pub cached_before_max: f64,
    /// Largest cached fraction at a round's end.
    pub cached_after_max: f64,
    /// True only if every round was valid.
    pub valid: bool,
}

/// One summary per target, in first-seen order.
pub fn summarise(results: &[ColdResult]) -> Vec<ColdSummary> {
    let mut targets: Vec<&str> = Vec::new();
    for r in results {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    targets
        .into_iter()
        .map(|t| {
            let rs: Vec<&ColdResult> = results.iter().filter(|r| r.target == t).collect();
            let col = |f: fn(&ColdResult) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let opt = |f: fn(&ColdResult) -> Option<f64>| {
                rs.iter().filter_map(|r| f(r)).collect::<Vec<f64>>()
            };
            let med = |v: Vec<f64>| Spread::of(&v).map_or(0.0, |s| s.median);
            let fmax = |v: Vec<f64>| v.into_iter().fold(0.0, f64::max);
            let hot_cdf_us = (0..CDF_QUANTILES.len())
                .map(|i| {
                    med(rs
                        .iter()
                        .filter_map(|r| r.hot_cdf_us.get(i).map(|&v| v as f64))
                        .collect())
                })
                .collect();
            ColdSummary {
                target: t.to_string(),
                rounds: rs.len(),
                hot_req_per_s: Spread::of(&col(|r| r.hot_req_per_s)).expect("non-empty"),
                hot_p50_us: med(col(|r| r.hot_p50_us as f64)),
                hot_p99_us: med(col(|r| r.hot_p99_us as f64)),
                hot_p999_us: med(col(|r| r.hot_p999_us as f64)),
                hot_max_us: rs.iter().map(|r| r.hot_max_us).max().unwrap_or(0),
                hot_cdf_us,
                cold_mb_per_s: Spread::of(&col(|r| r.cold_mb_per_s)).expect("non-empty"),
                disk_reads_per_s: Spread::of(&opt(reads_per_s)).map(|s| s.median),
                disk_read_size: Spread::of(&opt(read_size)).map(|s| s.median),
                server_steal: Spread::of(&opt(|r| r.server_steal)).map(|s| s.median),
                client_steal: Spread::of(&opt(|r| r.client_steal)).map(|s| s.median),
                cached_before_max: fmax(col(|r| r.cached_before)),
                cached_after_max: fmax(col(|r| r.cached_after)),
                valid: rs.iter().all(|r| r.valid),
            }
        })
        .collect()
}

/// A latency in µs for people: `53 µs`, `2.4 ms`, `1.2 s`.
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{} µs", fmt_trim(us))
    } else if us < 1e6 {
        format!("{} ms", fmt_trim(us / 1e3))
    } else {
        format!("{} s", fmt_trim(us / 1e6))
    }
}

/// A run's disk reads per second; `None` where not recorded.
fn reads_per_s(r: &ColdResult) -> Option<f64> {
    Some(r.disk_reads? as f64 / r.seconds.max(1e-9))
}

/// The mean size of a run's disk reads in bytes; `None` where not
/// recorded or nothing was read.
fn read_size(r: &ColdResult) -> Option<f64> {
    match (r.disk_reads?, r.disk_read_bytes?) {
        (0, _) => None,
        (n, b) => Some(b as f64 / n as f64),
    }
}

/// How a run read the disk, for people: `201 reads/s of 1 MiB`, `no
/// reads`, or `not recorded`.
pub fn fmt_disk_reads(r: &ColdResult) -> String {
    match (reads_per_s(r), read_size(r)) {
        (Some(n), Some(size)) => format!(
            "{} reads/s of {}",
            fmt_count(n),
            human_size(size.round() as u64)
        ),
        (Some(_), None) => "no reads".into(),
        (None, _) => "not recorded".into(),
    }
}

/// A fraction as a percentage with one decimal.
fn pct(f: f64) -> String {
    format!("{:.1} %", f * 100.0)
}

/// A stolen fraction (see [`crate::steal`]) as a percentage, or `?` where
/// the run did not record it.
pub fn fmt_steal(f: Option<f64>) -> String {
    f.map_or_else(|| "?".to_string(), pct)
}

/// `cold.md`: the machine, the setup (working set, throttle, the disk's
/// own latency), and one row per target.
pub fn markdown(report: &ColdReport<'_>) -> String {
    let s = report.setup;
    let mut o = String::new();
    let _ = writeln!(o, "# zcbench cold-cache report\n");
    machine_section(
        &mut o,
        report.machine,
        &[report.setup.client_read],
        report.command,
    );
    let _ = writeln!(
        o,
        "{} connections fetch random files of a working set of {} files of {} ({} in all), \
         evicted from the page cache (`posix_fadvise(DONTNEED)`) before each server's run in \
         every round, while one keep-alive connection fetches a cached {} file. The hot \
         client's figures show whether a server makes every connection wait while it reads \
         the disk.\n",
        s.cold_conns,
        fmt_count(s.files as f64),
        human_size(s.file_size),
        human_size(s.file_size * s.files as u64),
        human_size(s.hot_size)
    );
    let _ = writeln!(
        o,
        "- **Client:** {} (`--client-read {}`){}",
        s.client_read.describe(),
        s.client_read,
        if s.client_read.copies() {
            ""
        } else {
            ": the bodies were counted, not copied or checked"
        }
    );
    if !s.hot_priority.is_empty() {
        let _ = writeln!(o, "- **Hot client's thread:** {}", s.hot_priority);
    }
    let _ = writeln!(
        o,
        "- **Disk:** {}{}",
        md_cell(&s.disk),
        if s.throttled {
            ""
        } else {
            " — **not throttled: the servers read the raw disk**"
        }
    );
    match &s.disk_latency {
        Some(d) => {
            let _ = writeln!(
                o,
                "- **The disk's own cold 4 KiB read latency** (measured, {} random reads, readahead off, not throttled): median {}, p99 {}",
                d.samples,
                fmt_us(d.p50_us as f64),
                fmt_us(d.p99_us as f64)
            );
        }
        None => {
            let _ = writeln!(o, "- The disk's own read latency was not measured.");
        }
    }
    let _ = writeln!(
        o,
        "- **Cached fraction** of the working set (from `mincore`): at the start of a run \
         (after eviction; the largest over rounds) and at its end. A run that starts with more \
         than 5 % cached is marked invalid: the eviction did not work. An end near 100 % means \
         the run re-read the whole set, so its later requests were warm: use more files."
    );
    let _ = writeln!(o, "{}", cold_load_line(s));
    let _ = writeln!(
        o,
        "- **Disk reads** during each run, from the disk's own counters \
         (`/sys/dev/block/…/stat`; the whole disk, so any other reader counts too): requests per \
         second and their mean size. The same throttle can let very different byte rates through \
         when the requests differ in size, so compare servers' hot figures within one disk regime."
    );
    if let Some(line) = steal_gate_line(s, report.results) {
        let _ = writeln!(o, "{line}");
    }
    o.push('\n');
    let summaries = summarise(report.results);
    if summaries.is_empty() {
        o.push_str("No runs were recorded.\n");
        return o;
    }
    let rounds = summaries.iter().map(|s| s.rounds).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "Medians over rounds (up to {rounds}); max is the slowest hot response of any round. \
         Steal is the share of the server's and the client's CPU time the hypervisor gave to \
         someone else during the load (`/proc/stat`): a round with a few percent is slower, \
         and its tail longer, for reasons outside both programs.\n"
    );
    o.push_str(
        "| target | hot req/s | hot p50 | hot p99 | hot p99.9 | hot max | cold MB/s | disk reads/s × size | cached at start | cached at end | steal server / client | valid |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for c in &summaries {
        let valid = if c.valid {
            "✓".to_string()
        } else {
            let bad: Vec<String> = report
                .results
                .iter()
                .filter(|r| r.target == c.target && !r.valid)
                .map(|r| {
                    format!(
                        "round {}: {} cold / {} hot errors",
                        r.round, r.cold_errors, r.hot_errors
                    )
                })
                .collect();
            format!("⚠ invalid: {}", bad.join("; "))
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            md_cell(&c.target),
            fmt_count(c.hot_req_per_s.median),
            fmt_us(c.hot_p50_us),
            fmt_us(c.hot_p99_us),
            fmt_us(c.hot_p999_us),
            fmt_us(c.hot_max_us as f64),
            fmt_count(c.cold_mb_per_s.median),
            match (c.disk_reads_per_s, c.disk_read_size) {
                (Some(n), Some(size)) =>
                    format!("{} × {}", fmt_count(n), human_size(size.round() as u64)),
                _ => "?".into(),
            },
            pct(c.cached_before_max),
            pct(c.cached_after_max),
            fmt_steal(c.server_steal),
            fmt_steal(c.client_steal),
            md_cell(&valid),
        );
    }
    o.push_str("\n![The hot client's latency CDF per server](cold-hot-cdf.svg)\n");
    o
}

/// The hot client's latency CDF, one line per target (median over rounds
/// at each quantile), latency on plotters' log axis.
pub fn svg_hot_cdf(results: &[ColdResult]) -> String {
    let summaries = summarise(results);
    let all: Vec<f64> = summaries
        .iter()
        .flat_map(|s| s.hot_cdf_us.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if all.is_empty() {
        (1.0, 1000.0)
    } else {
        (lo / 1.5, (hi * 1.5).max(lo * 10.0))
    };
    render((900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Hot client latency while other connections read cold files",
                (FONT, 20),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((lo..hi).log_scale(), RangedCoordf64::from(0.0..100.0))?;
        let x_fmt = |v: &f64| fmt_us(*v);
        let y_fmt = |v: &f64| format!("{v:.0}");
        chart
            .configure_mesh()
            .x_desc("latency of the cached 4 KiB file (log scale)")
            .y_desc("percent of hot requests at most this slow")
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()?;
        if summaries.is_empty() {
            root.draw(&Text::new(
                "no data",
                (420, 280),
                (FONT, 18).into_font().color(&BLACK),
            ))?;
            return Ok(());
        }
        for (i, s) in summaries.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s
                .hot_cdf_us
                .iter()
                .zip(CDF_QUANTILES)
                .map(|(&us, q)| (us.max(lo), q * 100.0))
                .collect();
            let name = if s.valid {
                s.target.clone()
            } else {
                format!("{} (invalid)", s.target)
            };
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(name)
                .legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 22, ly)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 14))
            .draw()?;
        Ok(())
    })
}
