//! zcserve's benchmarks: criterion benches of the backends (`benches/`)
//! and `zcbench`, which loads zcserve once per backend, and any peer server,
//! over loopback and writes tables and charts of what each costs.
//!
//! The pieces: [`model`] (what is recorded), [`load`] (the load
//! generator), [`report`] (CSV, JSON, Markdown and SVG output).

pub mod load;
pub mod model;
pub mod report;
