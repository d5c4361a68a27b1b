//! `results.json`: the whole run, with the summaries and crossovers
//! derived from it, for tools.

use serde::Serialize;

use super::Report;
use super::crossover::{Crossover, crossovers};
use crate::model::{IdleResult, Machine, RunResult, Summary, summarise};

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
