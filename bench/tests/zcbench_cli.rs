//! zcbench's bad input: each mistake exits 2 with one line that says what
//! to fix, before any server is started or any load is sent.

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
        (&["--conns", "0"], "connection counts"),
        (&["--duration", "0"], "--duration"),
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
