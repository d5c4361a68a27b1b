//! Runs zcbench's load generator once and prints what it measured, to
//! compare it with `wrk`:
//!
//! `loadcheck ADDR PATH CONNS SECS LEN [THREADS] [CPU,CPU...] [READ]`
//! (READ: a `--client-read` mode, `8KiB` or `trunc`; default 256KiB)

use std::time::Duration;

use zcserve_bench::load::{self, LoadSpec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: loadcheck ADDR PATH CONNS SECS LEN [THREADS] [CPU,CPU...] [READ]");
        std::process::exit(2);
    }
    let cpus = args.get(6).map_or_else(Vec::new, |s| {
        s.split(',')
            .map(|c| c.parse().expect("CPU number"))
            .collect()
    });
    let spec = LoadSpec {
        addr: args[0].parse().expect("ADDR like 127.0.0.1:8300"),
        paths: vec![args[1].clone()],
        host: "localhost".into(),
        conns: args[2].parse().expect("CONNS"),
        threads: args.get(5).map_or(1, |t| t.parse().expect("THREADS")),
        cpus,
        duration: Duration::from_secs_f64(args[3].parse().expect("SECS")),
        expect_status: 200,
        expect_len: args[4].parse().expect("LEN"),
        read: args
            .get(7)
            .map_or(Ok(load::ClientRead::DEFAULT), |r| r.parse())
            .unwrap_or_else(|e| {
                eprintln!("loadcheck: READ: {e}");
                std::process::exit(2);
            }),
        priority: load::Priority::Normal,
        pace: None,
    };
    let out = load::run(&spec).unwrap_or_else(|e| {
        eprintln!("loadcheck: {e}");
        std::process::exit(1);
    });
    let h = &out.latency_us;
    println!(
        "requests {} in {:.3}s: {:.0} req/s, {:.1} MB/s, client CPU {:.3}s, errors {}, latency p50 {} p90 {} p99 {} p99.9 {} max {} us",
        out.requests,
        out.elapsed.as_secs_f64(),
        out.req_per_s(),
        out.mb_per_s(),
        out.cpu_s,
        out.errors,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    );
    for s in &out.error_samples {
        println!("error: {s}");
    }
}
