//! What one residency question costs on the hot path: the pump asks once
//! per chunk, so this prints ns per call of each method on a cached file,
//! next to an empty syscall and one `pread` of a whole chunk for scale.
//!
//! `cargo run --release -p zcserve-core --example residency_cost [calls]`
//!
//! Each figure is the median of seven rounds of `calls` calls (default
//! 200,000); the file lives in /var/tmp and is read once to warm it.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use zcserve_core::disk::{Method, PageCache, Residency};

const KIB: u64 = 1024;
const FILE_LEN: u64 = 4096 * KIB;
const ROUNDS: usize = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u64 = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .map_err(|e| format!("calls must be a positive number, got {s:?}: {e}"))?,
        None => 200_000,
    };
    if calls == 0 {
        return Err("calls must be at least 1".into());
    }
    let path =
        std::path::Path::new("/var/tmp").join(format!("zcserve-residency-{}", std::process::id()));
    let result = run(&path, calls);
    let _ = std::fs::remove_file(&path);
    result
}

fn run(path: &std::path::Path, calls: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(&vec![7u8; FILE_LEN as usize])?;
    f.sync_all()?;
    let mut buf = vec![0u8; 256 * KIB as usize];
    for off in (0..FILE_LEN).step_by(buf.len()) {
        f.read_at(&mut buf, off)?;
    }

    println!("kernel default method: {}", PageCache::new().method());
    println!(
        "{:<16} {:>9} {:>10} {:>10}",
        "method", "range", "ns/call", "misses"
    );
    for method in [Method::Cachestat, Method::NowaitProbe] {
        // Through the trait object, as the pump will call it.
        let cache = PageCache::with_method(method);
        let oracle: &dyn Residency = &cache;
        for len in [4 * KIB, 256 * KIB] {
            let mut misses = 0u64;
            let ns = median_ns(calls, |i| {
                // Walk the file so every call asks about another range.
                let off = (i * len) % (FILE_LEN - len + 1);
                misses += u64::from(!oracle.resident(f.as_fd(), off, len).unwrap_or(false));
            });
            let asked = calls * ROUNDS as u64;
            println!(
                "{:<16} {:>5} KiB {:>10.0} {:>10}",
                method.name(),
                len / KIB,
                ns,
                format!("{misses}/{asked}")
            );
        }
    }
    // The price of entering the kernel at all on this machine, for scale.
    let ns = median_ns(calls, |_| {
        std::hint::black_box(nix::unistd::getppid());
    });
    println!(
        "{:<16} {:>9} {:>10.0} {:>10}",
        "getppid (floor)", "-", ns, "-"
    );
    let chunk_calls = (calls / 20).max(1);
    let ns = median_ns(chunk_calls, |i| {
        let off = (i * 256 * KIB) % FILE_LEN;
        let _ = f.read_at(&mut buf, off);
    });
    println!(
        "{:<16} {:>5} KiB {:>10.0} {:>10}",
        "pread (scale)", 256, ns, "-"
    );
    Ok(())
}

/// The median over rounds of the mean time of one `f` call.
fn median_ns(calls: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..calls {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}
