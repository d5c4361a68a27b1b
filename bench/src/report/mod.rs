//! Writes a zcbench run out, one module per output: [`csv`] (`results.csv`,
//! `idle.csv`), [`json`] (`results.json`), [`markdown`] (`report.md`), the
//! SVG [`charts`], the [`crossover`] analysis the JSON and Markdown share,
//! and [`cold`], the cold-cache scenario's own report.

mod charts;
pub mod cold;
mod crossover;
mod csv;
mod json;
mod markdown;
mod numbers;

use std::path::{Path, PathBuf};

pub use charts::{svg_cpu, svg_latency, svg_throughput};
pub use crossover::{Crossover, crossovers};
pub use csv::{csv, idle_csv};
pub use json::json;
pub use markdown::{IDLE_TARGET_KIB_PER_CONN, markdown};

use crate::model::{IdleResult, Machine, RunResult, summarise};

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

/// Writes `results.csv`, `results.json`, `report.md`, `idle.csv` (when idle
/// connections were measured) and the SVG charts into `dir` (created if
/// missing) and returns the paths written, in that order.
///
/// Charts, each for one client read mode `{M}` as `--client-read` writes it
/// (`8KiB`, `trunc`): `throughput-c{N}-{M}.svg` for each number of
/// connections, `cpu-c{N}-{M}.svg` for each number of connections where any
/// target's CPU was measured, and `latency-{size}-c{N}-{M}.svg` for each
/// scenario, with the size written compactly (`latency-4KiB-c64-8KiB.svg`).
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
    for chart in charts::charts(&summaries) {
        put(&chart.file, &chart.draw(&summaries))?;
    }
    Ok(written)
}
