//! Passes `ZCSERVE_ALLOW_SKIP` into the build, so that the set of backends
//! a suite may skip is fixed when the tests are compiled and the summary
//! test `no_backend_skipped` can be marked ignored (with the reason shown by
//! the test runner) exactly when skips were allowed.

fn main() {
    println!("cargo::rerun-if-env-changed=ZCSERVE_ALLOW_SKIP");
    println!("cargo::rustc-check-cfg=cfg(zcserve_skips_allowed)");
    let allow = std::env::var("ZCSERVE_ALLOW_SKIP").unwrap_or_default();
    if !allow.trim().is_empty() {
        println!("cargo::rustc-cfg=zcserve_skips_allowed");
    }
    println!("cargo::rustc-env=ZCSERVE_ALLOW_SKIP_BUILT={allow}");
}
