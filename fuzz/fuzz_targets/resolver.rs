//! libFuzzer target for the path resolver: each input becomes a request
//! path (see `resolver_harness::from_bytes`) checked against one
//! temporary tree, with the same assertions as the seeded run in
//! `cargo test`: no panic, nothing opened outside the root, nothing hidden
//! opened unless hidden files are shown.
#![no_main]

#[path = "../../server/tests/resolver_harness/mod.rs"]
mod resolver_harness;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use resolver_harness::{Fixture, from_bytes};

/// One tree for the whole run (libFuzzer never returns, so it is left in
/// the temporary directory).
static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fixture = FIXTURE.get_or_init(Fixture::new);
    fixture.check(&from_bytes(data));
});
