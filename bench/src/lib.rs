//! zcserve's benchmarks: criterion benches of the backends (`benches/`)
//! and `zcbench`, which loads zcserve once per backend, and any peer server,
//! over loopback and writes tables and charts of what each costs.
//!
//! The pieces: [`model`] (what is recorded), [`load`] (the load
//! generator), [`client_read`] (how it reads bodies), [`report`] (CSV, JSON, Markdown and SVG output), [`target`]
//! (what the command line asks to load), [`launch`] (starting, pinning and
//! stopping servers), [`procs`] (a server's process tree: CPU time, memory,
//! stopping it), [`peer`] (commands that start peer servers), [`fixture`]
//! (the files served), [`metrics`] (zcserve's counters), [`machine`] (what
//! the run ran on), [`units`] (sizes and dates), [`cold`] (the cold-cache
//! scenario's machinery: evicting, checking residency, throttling the disk)
//! [`cold_scenario`] (running it) and [`steal`] (CPU time the hypervisor
//! took during a run).

pub mod client_read;
pub mod cold;
pub mod cold_scenario;
pub mod fixture;
pub mod launch;
pub mod load;
pub mod machine;
pub mod metrics;
pub mod model;
pub mod peer;
pub mod procs;
pub mod report;
pub mod steal;
pub mod target;
pub mod units;
