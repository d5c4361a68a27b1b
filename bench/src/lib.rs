//! Benchmarks of zcserve (criterion benches live in benches/).
