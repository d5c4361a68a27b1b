//! zcserve's benchmarks: criterion benches of the backends (`benches/`)
//! and `zcbench`, which loads zcserve once per backend, and any peer server,
//! over loopback and writes tables and charts of what each costs.
//!
//! The pieces: [`model`] (what is recorded), [`load`] (the load
//! generator), [`report`] (CSV, JSON, Markdown and SVG output), [`procs`]
//! (a server's process tree: CPU time, memory, stopping it) and [`peer`]
//! (commands that start peer servers).

pub mod load;
pub mod model;
pub mod peer;
pub mod procs;
pub mod report;
