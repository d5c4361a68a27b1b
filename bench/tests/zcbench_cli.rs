//! zcbench's bad input: each mistake exits 2 with one line that says what
//! to fix, before any server is started or any load is sent; and zcbench
//! end to end on tiny runs, with every backend of the registry and with
//! peer servers it starts itself.
//!
//! The end-to-end tests need the zcserve binary beside zcbench, which
//! `cargo test --workspace` builds (zcserve's own tests need it). Without
//! it they fail, saying how to build it, unless the tests were built with
//! `ZCSERVE_ALLOW_SKIP` listing `zcserve`: a missing binary is never a
//! silent pass.

use std::process::Command;

fn zcbench(args: &[&str]) -> (i32, String) {
    let out = std::env::temp_dir().join(format!("zcbench-cli-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_zcbench"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code().unwrap_or(-1), err)
}

#[test]
fn mistakes_exit_2_with_what_to_fix() {
    let cases: &[(&[&str], &str)] = &[
        (&["--sizes", "4KiB,lots"], "\"lots\""),
        (
            &["--client-read", "8KiB,fast"],
            "--client-read: cannot read \"fast\"",
        ),
        (&["--client-read", "0"], "--client-read: cannot read \"0\""),
        (
            &["--client-read", "1GiB"],
            "larger than the largest read size",
        ),
        (&["--client-read", ""], "--client-read"),
        (
            &["--scenario", "cold", "--client-read", "8KiB,trunc"],
            "the cold scenario takes one mode",
        ),
        (&["--conns", "0"], "connection counts"),
        (&["--duration", "0"], "--duration"),
        (&["--scenario", "cold", "--duration=-1"], "--duration"),
        (&["--quick", "--duration", "NaN"], "--duration"),
        (&["--server-cpus", "4096"], "CPU 4096"),
        (&["--backends", "", "--peer", "nginx"], "NAME=URL"),
        (
            &["--backends", "", "--peer", "nginx=ftp://x/"],
            "cannot read URL",
        ),
        (&["--backends", ""], "nothing to measure"),
        (
            &["--zcserve", "/nonexistent/zcserve"],
            "cargo build --release -p zcserve",
        ),
        (
            &[
                "--backends",
                "",
                "--peer",
                "n=http://127.0.0.1:1/",
                "--peer-pid",
                "n=abc",
            ],
            "not a pid",
        ),
    ];
    for (args, want) in cases {
        let (code, err) = zcbench(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let (code, err) = zcbench(&["--bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus"), "{err}");
}

/// Runs zcbench on a one-file fixture (so nothing big is written) with
/// `args`; returns the exit code, stderr and the output directory (removed
/// by the caller).
fn zcbench_small(tag: &str, args: &[&str]) -> (i32, String, std::path::PathBuf) {
    let out = std::env::temp_dir().join(format!("zcbench-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_zcbench"))
        .args(["--conns", "1", "--rounds", "1"])
        .args(if args.contains(&"--sizes") {
            &[][..]
        } else {
            &["--sizes", "4KiB"][..]
        })
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code().unwrap_or(-1), err, out)
}

/// Whether any process's command line contains `marker`.
fn process_running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}

#[test]
fn peer_cmd_mistakes_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--peer-cmd", "nginx"], "NAME=COMMAND"),
        (
            &["--peer-cmd", "x=srv {prot}"],
            "unknown placeholder {prot}",
        ),
        (
            &["--peer-cmd", "x=srv --root {root}"],
            "must contain {port}",
        ),
        (&["--peer-cmd", "x=  "], "COMMAND is empty"),
        (
            &["--peer-cmd", "x=srv {port}", "--peer-cmd", "x=srv {port}"],
            "two targets are named x",
        ),
        (
            &["--peer", "n=http://127.0.0.1:1/", "--peer-pid", "m=1"],
            "no --peer m=URL",
        ),
        (&["--peer-start-timeout", "0"], "--peer-start-timeout"),
        (&["--idle-conns", "1000000000"], "RLIMIT_NOFILE"),
        // Exits at once, with and without a word on stderr.
        (&["--peer-cmd", "x=false {port}"], "exited (exit status: 1)"),
        (
            &["--peer-cmd", "x=echo it broke >&2; exit 3 # {port}"],
            "\"it broke\"",
        ),
        (
            &["--peer-cmd", "x=/nonexistent/server --port {port}"],
            "not found",
        ),
        // Nothing listens at a URL peer.
        (&["--peer", "n=http://127.0.0.1:1/"], "was not answered"),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let mut all = vec!["--backends", ""];
        all.extend_from_slice(args);
        let (code, err, out) = zcbench_small(&format!("bad{i}"), &all);
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn peer_cmd_that_never_listens_times_out_and_is_stopped() {
    let marker = format!("sleep 31.{}", std::process::id());
    let cmd = format!("x={marker} # {{port}}");
    let t = std::time::Instant::now();
    let (code, err, out) = zcbench_small(
        "silent",
        &[
            "--backends",
            "",
            "--peer-cmd",
            &cmd,
            "--peer-start-timeout",
            "1",
        ],
    );
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nothing answered") && err.contains("within 1 s"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(15), "{err}");
    // Its whole process group was stopped: the shell and its sleep.
    assert!(!process_running(&marker), "{marker} was left running");
}

/// The zcserve binary beside zcbench (see the module documentation).
/// `None` only when its absence is allowed, and then said on stdout and
/// stderr.
fn zcserve_bin() -> Option<String> {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_zcbench")).with_file_name("zcserve");
    if p.is_file() {
        return Some(p.to_string_lossy().into_owned());
    }
    let why = format!(
        "no zcserve at {}: build it with `cargo build -p zcserve` (cargo test --workspace does)",
        p.display()
    );
    if zcserve_tests::allowed_skips()
        .iter()
        .any(|s| s == "zcserve" || s == "all")
    {
        println!("SKIPPED: {why} (allowed by ZCSERVE_ALLOW_SKIP)");
        eprintln!("SKIPPED: {why} (allowed by ZCSERVE_ALLOW_SKIP)");
        return None;
    }
    panic!("{why}; or rebuild the tests with ZCSERVE_ALLOW_SKIP=zcserve to skip visibly");
}

#[test]
fn every_backend_is_loaded_without_errors() {
    let Some(zc) = zcserve_bin() else { return };
    // From the registry: a backend this machine cannot run fails here
    // unless its skip was allowed.
    let backends: Vec<&str> = zcserve_tests::backends_under_test()
        .into_iter()
        .map(|b| b.name())
        .collect();
    assert!(!backends.is_empty());
    let list = backends.join(",");
    let (code, err, out) = zcbench_small(
        "backends",
        &[
            "--zcserve",
            &zc,
            "--backends",
            &list,
            "--duration",
            "0.2",
            "--idle-conns",
            "0",
            // No run loses 99 % of its time to steal: each is kept at once.
            "--max-steal",
            "0.99",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), backends.len(), "{csv}");
    let col = column(&csv);
    for row in &rows {
        assert_eq!(row.split(',').nth(col("attempts")), Some("1"), "{row}");
    }
    for (row, b) in rows.iter().zip(&backends) {
        assert!(
            row.starts_with(&format!("zcserve-{b},{b},4096,1,256KiB,1,")),
            "{row}"
        );
        assert!(row.ends_with(",true"), "{row}");
        // The server's own counters were read: syscalls per request.
        let f: Vec<&str> = row.split(',').collect();
        assert!(
            f[col("syscalls_per_req")]
                .parse::<f64>()
                .is_ok_and(|v| v > 0.0),
            "{row}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The index of each results.csv column, by name, from its header.
fn column(csv: &str) -> impl Fn(&str) -> usize {
    let header: Vec<String> = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    move |name| header.iter().position(|h| h == name).expect(name)
}

#[test]
fn client_read_modes_are_a_dimension_of_the_matrix() {
    let Some(zc) = zcserve_bin() else { return };
    // 64 KiB files, several responses on each keep-alive connection: with
    // `trunc` every one is discarded exactly (a byte too many or too few
    // and the next head would not parse: an error, so an invalid row).
    let (code, err, out) = zcbench_small(
        "clients",
        &[
            "--zcserve",
            &zc,
            "--backends",
            "sendfile,copy",
            "--sizes",
            "64KiB",
            "--conns",
            "1,4",
            "--client-read",
            "8KiB,trunc",
            "--duration",
            "0.3",
            "--idle-conns",
            "0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let col = column(&csv);
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2 * 2 * 2, "{csv}");
    for client in ["8KiB", "trunc"] {
        let mine: Vec<&Vec<&str>> = rows
            .iter()
            .filter(|f| f[col("client_read")] == client)
            .collect();
        assert_eq!(mine.len(), 4, "{csv}");
        for f in mine {
            assert_eq!(f[col("valid")], "true", "{f:?}");
            let (requests, bytes): (u64, u64) = (
                f[col("requests")].parse().unwrap(),
                f[col("bytes")].parse().unwrap(),
            );
            let conns: u64 = f[col("conns")].parse().unwrap();
            // Every counted response brought exactly 64 KiB; at most one
            // per connection was in flight at the end.
            assert!(requests > 0, "{f:?}");
            assert!(
                bytes >= requests * 65536 && bytes <= (requests + conns) * 65536,
                "{f:?}"
            );
            // Client CPU was measured beside the server's.
            for c in ["cpu_s_per_gb", "client_cpu_s_per_gb"] {
                assert!(
                    f[col(c)].parse::<f64>().is_ok_and(|v| v > 0.0),
                    "{c}: {f:?}"
                );
            }
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| client read modes | `8KiB`: 8 KiB reads; `trunc`: MSG_TRUNC (no copy) |"),
        "{md}"
    );
    for heading in [
        "## 64 KiB × 4 connections, client: 8 KiB reads",
        "## 64 KiB × 4 connections, client: MSG_TRUNC (no copy)",
    ] {
        assert!(md.contains(heading), "{heading}: {md}");
    }
    for chart in ["throughput-c4-8KiB.svg", "cpu-c1-trunc.svg"] {
        assert!(out.join(chart).is_file(), "{chart}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn peer_cmd_serving_the_wrong_files_is_named() {
    let Some(zc) = zcserve_bin() else { return };
    let empty = std::env::temp_dir().join(format!("zcbench-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let cmd = format!(
        "x=exec {zc} --root {} --listen 127.0.0.1:{{port}} --access-log off",
        empty.display()
    );
    let (code, err, out) = zcbench_small("wrongroot", &["--backends", "", "--peer-cmd", &cmd]);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&empty);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("status 404") && err.contains("{root}"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn peer_cmd_is_started_loaded_and_measured() {
    let Some(zc) = zcserve_bin() else { return };
    // Started through a shell that stays (no exec): the tree has two
    // processes and both are counted.
    let cmd = format!(
        "zc={zc} --root {{root}} --listen 127.0.0.1:{{port}} --threads {{threads}} --access-log off; exit 0"
    );
    let (code, err, out) = zcbench_small(
        "ok",
        &[
            "--backends",
            "",
            "--peer-cmd",
            &cmd,
            "--duration",
            "0.3",
            "--idle-conns",
            "20",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let row = csv.lines().nth(1).expect("one run");
    assert!(row.starts_with("zc,,4096,1,256KiB,1,"), "{row}");
    assert!(row.ends_with(",true"), "{row}");
    // CPU time and peak memory were read from its tree.
    let fields: Vec<&str> = row.split(',').collect();
    let col = column(&csv);
    assert!(
        !fields[col("cpu_s")].is_empty() && !fields[col("peak_rss_kib")].is_empty(),
        "{row}"
    );
    let idle = std::fs::read_to_string(out.join("idle.csv")).unwrap();
    let row = idle.lines().nth(1).expect("one idle row");
    let f: Vec<&str> = row.split(',').collect();
    assert_eq!(&f[..6], ["zc", "", "20", "20", "20", "2"], "{row}");
    assert!(f[6].parse::<u64>().unwrap() > 0, "{row}");
    assert_eq!(f[10], "true", "{row}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## Memory: 20 idle keep-alive connections"),
        "{md}"
    );
    assert!(out.join("logs/zc.log").is_file());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn peer_cmd_dying_mid_run_marks_its_runs_invalid() {
    let Some(zc) = zcserve_bin() else { return };
    // Serves for 2 s after each start, then its server is killed (a crash)
    // and the shell exits: the start check passes, the rounds' runs do not.
    let cmd = format!(
        "dies={zc} --root {{root}} --listen 127.0.0.1:{{port}} --access-log off & sleep 2; kill -9 $!"
    );
    let (code, err, out) = zcbench_small(
        "dies",
        &[
            "--backends",
            "",
            "--sizes",
            "4KiB,8KiB",
            "--peer-cmd",
            &cmd,
            "--duration",
            "1.5",
            "--idle-conns",
            "0",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("errors") || err.contains("invalid"), "{err}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.lines().last().unwrap().ends_with(",false"), "{csv}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("⚠ invalid"), "{md}");
    assert!(!out.join("idle.csv").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn cold_mistakes_exit_2_with_one_line() {
    let shm = format!("/dev/shm/zcbench-cli-{}", std::process::id());
    let cases: &[(&[&str], &str)] = &[
        (&["--cold-size", "lots"], "--cold-size"),
        (&["--cold-files", "0"], "--cold-files"),
        (&["--disk-iops", "0"], "--disk-iops must be at least 1"),
        (&["--max-steal", "5"], "--max-steal 5: give a fraction"),
        (&["--max-steal=-0.1"], "--max-steal -0.1: give a fraction"),
        (&["--cold-rate", "0"], "--cold-rate 0: give the cold MB/s"),
        (
            &["--cold-rate", "NaN"],
            "--cold-rate NaN: give the cold MB/s",
        ),
        // Pages on tmpfs cannot be evicted: refused before anything runs.
        (&["--fixture-dir", &shm], "tmpfs"),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let mut all = vec![
            "--scenario",
            "cold",
            "--backends",
            "",
            "--peer",
            "n=http://127.0.0.1:1/",
        ];
        all.extend_from_slice(args);
        let (code, err, out) = zcbench_small(&format!("cold{i}"), &all);
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&shm);
}

#[test]
fn cold_scenario_runs_every_backend_from_an_evicted_set() {
    let Some(zc) = zcserve_bin() else { return };
    let backends: Vec<&str> = zcserve_tests::backends_under_test()
        .into_iter()
        .map(|b| b.name())
        .collect();
    let list = backends.join(",");
    // Eviction needs a disk: /var/tmp, as the eviction unit tests use.
    let fixture =
        std::path::PathBuf::from(format!("/var/tmp/zcbench-cli-cold-{}", std::process::id()));
    let fixture_arg = fixture.to_string_lossy().into_owned();
    let (code, err, out) = zcbench_small(
        "cold",
        &[
            "--zcserve",
            &zc,
            "--backends",
            &list,
            "--scenario",
            "cold",
            "--cold-files",
            "40",
            "--cold-size",
            "16KiB",
            "--cold-conns",
            "2",
            "--duration",
            "0.3",
            "--fixture-dir",
            &fixture_arg,
            "--client-read",
            "trunc",
        ],
    );
    let _ = std::fs::remove_dir_all(&fixture);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the disk's own cold 4 KiB reads"), "{err}");
    // Only the cold scenario ran.
    assert!(!out.join("results.csv").exists());
    let csv = std::fs::read_to_string(out.join("cold.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), backends.len(), "{csv}");
    for (row, b) in rows.iter().zip(&backends) {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(&f[..3], [format!("zcserve-{b}").as_str(), b, "1"], "{row}");
        // The set was evicted before the run: at most a few pages cached.
        let before: f64 = f[4].parse().unwrap();
        assert!(before < 0.05, "{row}");
        // Both populations were answered without errors.
        assert!(
            f[6].parse::<u64>().unwrap() > 0 && f[9].parse::<u64>().unwrap() > 0,
            "{row}"
        );
        // No errors, one attempt (no --max-steal), valid.
        assert_eq!(
            (f[8], f[11], f[20], f[21]),
            ("0", "0", "1", "true"),
            "{row}"
        );
        // The disk's counters were read around the run: the servers read
        // the evicted files from it.
        let disk: Vec<u64> = f[16..18]
            .iter()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{row}")))
            .collect();
        assert!(disk[0] > 0 && disk[1] >= disk[0] * 512, "{row}");
        // The steal of the server's and the client's CPUs, as fractions.
        for steal in &f[18..20] {
            let steal: f64 = steal.parse().unwrap_or_else(|_| panic!("{row}"));
            assert!((0.0..=1.0).contains(&steal), "{row}");
        }
    }
    let md = std::fs::read_to_string(out.join("cold.md")).unwrap();
    assert!(
        md.contains("not throttled: the servers read the raw disk"),
        "{md}"
    );
    assert!(
        md.contains("- **Client:** MSG_TRUNC (no copy) (`--client-read trunc`)"),
        "{md}"
    );
    assert!(out.join("cold-hot-cdf.svg").is_file());
    let _ = std::fs::remove_dir_all(&out);
}
