//! Process-level tests of the real `zcserve` binary: README command one
//! (no arguments: the current directory on 127.0.0.1:8000, backend auto),
//! the start line, graceful shutdown on SIGTERM/SIGINT during a large
//! download (the download finishes, new connections are refused, exit 0),
//! command-line and config-file errors (exit 2, one clear line, no panic),
//! flags overriding the config file, IPv6 listeners, and the access log
//! written to a file in combined and JSON formats.
//!
//! Every child process is owned by a [`Proc`], which kills and reaps it on
//! drop, so a failing assertion never leaves a server running.

mod common;
use common::*;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use zcserve_backends::{Backend, Choice, Config};

/// How long a process refusing its arguments may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// The start line and helpers (the child-process guard, Proc, is in common)
// ---------------------------------------------------------------------------

/// The parts of `zcserve: serving ROOT on http://A/ [http://B/…] with
/// backend NAME|auto (RULE), N thread[s][, metrics at …]`.
#[derive(Debug)]
struct StartLine {
    root: String,
    addrs: Vec<SocketAddr>,
    backend: String,
    threads: String,
    metrics: Option<SocketAddr>,
}

fn parse_start_line(line: &str) -> StartLine {
    let bad = || panic!("unexpected start line: {line:?}");
    let Some(rest) = line.strip_prefix("zcserve: serving ") else {
        bad()
    };
    let Some((left, right)) = rest.rsplit_once(" with backend ") else {
        bad()
    };
    let Some((root, addrs)) = left.rsplit_once(" on ") else {
        bad()
    };
    let addrs = addrs
        .split_whitespace()
        .map(|a| {
            a.strip_prefix("http://")
                .and_then(|a| a.strip_suffix('/'))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| bad())
        })
        .collect();
    let Some((backend, threads)) = right.split_once(", ") else {
        bad()
    };
    let mut parts = threads.split(", ");
    let threads = parts.next().unwrap_or_default();
    let metrics = parts.next().map(|m| {
        m.strip_prefix("metrics at http://")
            .and_then(|a| a.strip_suffix("/metrics"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| bad())
    });
    StartLine {
        root: root.to_string(),
        addrs,
        backend: backend.to_string(),
        threads: threads.to_string(),
        metrics,
    }
}

/// `zcserve --listen 127.0.0.1:0 --root ROOT --access-log off EXTRA…` (the
/// access log stays as EXTRA says if it mentions one), and the address it
/// reports in its start line.
fn serve(root: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let (p, start) = serve_parsed(root, extra);
    (p, start.addrs[0])
}

/// [`serve`], with the whole start line.
fn serve_parsed(root: &Path, extra: &[&str]) -> (Proc, StartLine) {
    let root = root.to_str().expect("utf-8 temp path");
    let mut args = vec!["--listen", "127.0.0.1:0", "--root", root];
    if !extra.contains(&"--access-log") {
        args.extend(["--access-log", "off"]);
    }
    args.extend_from_slice(extra);
    let mut p = Proc::spawn_args(&args, None);
    let line = p.start_line();
    let start = parse_start_line(&line);
    assert_eq!(start.addrs.len(), 1, "{line}");
    assert!(start.addrs[0].port() != 0, "{line}");
    (p, start)
}

/// One request on a fresh connection (closed by the request), its answer.
fn request(addr: SocketAddr, raw: &str) -> RawResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let out = read_to_close(&mut s);
    let mut r = parse_responses(&out, &[]);
    assert_eq!(
        r.len(),
        1,
        "{raw:?} got {:?}",
        String::from_utf8_lossy(&out)
    );
    r.remove(0)
}

fn get(addr: SocketAddr, path: &str) -> RawResponse {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// A root with `hello.txt`.
fn hello_root() -> TempDir {
    let dir = TempDir::new();
    fs::write(dir.path().join("hello.txt"), b"hello from zcserve\n").unwrap();
    dir
}

// ---------------------------------------------------------------------------
// README command one
// ---------------------------------------------------------------------------

#[test]
fn readme_command_one_serves_cwd_on_8000_with_auto() {
    let dir = hello_root();
    let free = match TcpListener::bind("127.0.0.1:8000") {
        Ok(l) => {
            drop(l);
            true
        }
        Err(e) => {
            // The default address is still checked, in the settings the
            // binary resolves with no arguments; only binding it is not.
            assert_eq!(
                zcserve::config::Settings::default().listen,
                ["127.0.0.1:8000".parse::<SocketAddr>().unwrap()],
                "the default listen address"
            );
            eprintln!(
                "127.0.0.1:8000 is busy on this machine ({e}); checking the rest with --listen 127.0.0.1:0"
            );
            false
        }
    };
    let args: &[&str] = if free {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut p = Proc::spawn_args(args, Some(dir.path()));
    let line = p.start_line();
    let start = parse_start_line(&line);

    let canonical = fs::canonicalize(dir.path()).unwrap();
    assert_eq!(start.root, canonical.display().to_string(), "{line}");
    assert_eq!(start.addrs.len(), 1, "{line}");
    let addr = start.addrs[0];
    if free {
        assert_eq!(addr, "127.0.0.1:8000".parse().unwrap(), "{line}");
    } else {
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line}");
        assert_ne!(addr.port(), 0, "{line}");
    }
    let auto = format!("auto ({})", Choice::Auto.rule(&Config::default()));
    assert_eq!(start.backend, auto, "{line}");
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if n == 1 {
        "1 thread".to_string()
    } else {
        format!("{n} threads")
    };
    assert_eq!(start.threads, threads, "{line}");
    assert_eq!(
        line,
        format!(
            "zcserve: serving {} on http://{addr}/ with backend {auto}, {threads}",
            canonical.display()
        )
    );

    let r = get(addr, "/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello from zcserve\n");
    let listing = get(addr, "/");
    assert_eq!(listing.status, 200);
    assert!(String::from_utf8_lossy(&listing.body).contains("hello.txt"));

    // The default access log goes to stdout, after the start line.
    let logged = p
        .next_line(HANG)
        .unwrap_or_else(|| panic!("no access log line on stdout within {HANG:?}"));
    assert!(
        logged.contains("\"GET /hello.txt HTTP/1.1\" 200 19"),
        "{logged}"
    );

    p.stop(Signal::SIGTERM);
    p.assert_exits(0, Duration::from_secs(10), "SIGTERM after serving");
    assert!(!p.stderr_text().contains("panicked"), "{}", p.stderr_text());
}

#[test]
fn sigint_also_stops_gracefully_with_status_0() {
    let dir = hello_root();
    let (mut p, addr) = serve(dir.path(), &[]);
    assert_eq!(get(addr, "/hello.txt").status, 200);
    p.stop(Signal::SIGINT);
    p.assert_exits(0, Duration::from_secs(10), "SIGINT");
}

/// A supervisor may stop the server as soon as it announced itself; the
/// start line must not be printed before SIGTERM is handled.
#[test]
fn sigterm_right_after_the_start_line_exits_0() {
    for round in 0..30 {
        let dir = hello_root();
        let mut p = Proc::spawn_args(
            &[
                "--listen",
                "127.0.0.1:0",
                "--root",
                dir.path().to_str().unwrap(),
                "--access-log",
                "off",
            ],
            None,
        );
        let _ = p.start_line();
        p.signal(Signal::SIGTERM);
        p.assert_exits(
            0,
            Duration::from_secs(10),
            &format!(
                "round {round}: SIGTERM right after the start line (killed by the signal means no handler yet)"
            ),
        );
    }
}

#[test]
fn sigterm_closes_idle_connections_and_exits_promptly() {
    let dir = hello_root();
    // A grace period far longer than the wait for the exit below: only
    // connections with a response in flight may use it, idle ones must
    // not hold the exit back.
    let (mut p, start) = serve_parsed(
        dir.path(),
        &["--shutdown-grace", "600", "--metrics", "127.0.0.1:0"],
    );
    let addr = start.addrs[0];
    let metrics = start.metrics.expect("metrics address in the start line");
    // One idle keep-alive connection after a response, one that never sent
    // a byte.
    let mut keep = TcpStream::connect(addr).unwrap();
    keep.set_read_timeout(Some(HANG)).unwrap();
    keep.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"hello from zcserve\n") {
        let n = keep.read(&mut buf).expect("response on keep-alive");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(HANG)).unwrap();
    // Both are the server's, not just queued in the kernel's backlog.
    wait_for("the server accepting both connections", || {
        open_connections(metrics) == 2
    });

    p.stop(Signal::SIGTERM);
    // Both clients see the connection end (EOF or reset), not a hang.
    for (name, s) in [("idle keep-alive", &mut keep), ("silent", &mut silent)] {
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => panic!(
                "{name} connection got {:?} after SIGTERM",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => panic!("{name} connection not closed after SIGTERM: {e}"),
        }
    }
    p.assert_exits(0, HANG, "SIGTERM with idle connections");
}

/// `zcserve_open_connections` from the metrics endpoint at `addr`.
fn open_connections(addr: SocketAddr) -> u64 {
    metric(addr, "zcserve_open_connections") as u64
}

// ---------------------------------------------------------------------------
// SIGTERM during a large download
// ---------------------------------------------------------------------------

const MIB: usize = 1 << 20;
/// Body MiB the client reads before it stops to let the test signal.
const GATE_MIB: usize = 4;

/// A file size that cannot fit in the socket buffers between server and
/// client (the kernel's largest send plus receive buffer, twice over), so
/// a client that stops reading keeps the response in flight for certain.
fn big_mib() -> usize {
    let max = |path: &str| -> usize {
        let text = fs::read_to_string(path).unwrap_or_default();
        text.split_whitespace()
            .last()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64 * MIB)
    };
    let buffers = max("/proc/sys/net/ipv4/tcp_rmem") + max("/proc/sys/net/ipv4/tcp_wmem");
    (2 * buffers / MIB + GATE_MIB + 1).max(64)
}

/// Reads a response to `GET /big.bin` of `mib` MiB one MiB at a time,
/// checking every byte (block `i` starts with `i` as a little-endian u64,
/// the rest is zero). After [`GATE_MIB`] blocks it says so on `reached`
/// and reads nothing more until `go` says to. Returns body bytes received
/// and whether the server then closed the connection.
fn gated_download(
    mut s: TcpStream,
    mib: usize,
    reached: std::sync::mpsc::Sender<()>,
    go: Receiver<()>,
) -> Result<(u64, bool), String> {
    s.set_read_timeout(Some(HANG)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("sending the request: {e}"))?;
    // The head, byte by byte, so that the body starts block-aligned.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("closed inside the head: {head:?}")),
            Err(e) => return Err(format!("reading the head: {e}")),
        }
    }
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut slots);
    resp.parse(&head)
        .map_err(|e| format!("bad response head: {e}"))?;
    if resp.code != Some(200) {
        return Err(format!(
            "status {:?}: {}",
            resp.code,
            String::from_utf8_lossy(&head)
        ));
    }
    let len: u64 = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .ok_or("no Content-Length")?;
    if len != (mib * MIB) as u64 {
        return Err(format!("Content-Length {len}, file is {}", mib * MIB));
    }
    let mut block = vec![0u8; MIB];
    let mut received = 0u64;
    for i in 0..mib {
        if i == GATE_MIB {
            let _ = reached.send(());
            go.recv_timeout(HANG)
                .map_err(|e| format!("never told to read on: {e}"))?;
        }
        let mut filled = 0;
        while filled < MIB {
            match s.read(&mut block[filled..]) {
                Ok(0) => {
                    return Err(format!(
                        "connection closed after {} of {len} body bytes",
                        received + filled as u64
                    ));
                }
                Ok(n) => filled += n,
                Err(e) => {
                    return Err(format!(
                        "read error after {} of {len} body bytes: {e}",
                        received + filled as u64
                    ));
                }
            }
        }
        received += MIB as u64;
        if block[..8] != (i as u64).to_le_bytes() {
            return Err(format!("block {i} starts with {:?}", &block[..8]));
        }
        if let Some(at) = block[8..].iter().position(|&b| b != 0) {
            return Err(format!("block {i}: non-zero byte at offset {}", at + 8));
        }
    }
    // Nothing after the body; the stopping server closes the connection.
    let closed = match s.read(&mut block) {
        Ok(0) => true,
        Ok(n) => return Err(format!("{n} bytes after the body")),
        Err(_) => false,
    };
    Ok((received, closed))
}

/// After SIGTERM, a new connection must soon be refused (or accepted by
/// the kernel and closed without an answer); never left hanging.
fn assert_new_connections_refused(addr: SocketAddr) {
    let deadline = Instant::now() + HANG;
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, HANG) {
            Err(_) => return, // refused
            Ok(mut s) => {
                s.set_read_timeout(Some(HANG)).unwrap();
                let _ =
                    s.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 1024];
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                    Ok(n) => {
                        // Accepted before the signal was handled; try again.
                        last = format!("answered {:?}", String::from_utf8_lossy(&buf[..n]));
                    }
                    Err(e) => {
                        panic!(
                            "a connection made after SIGTERM was neither refused, closed nor answered: {e}"
                        )
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("new connections still served {HANG:?} after SIGTERM ({last})");
}

/// SIGTERM while a client is part-way through a download it has stopped
/// reading: new connections are refused, the server waits, and once the
/// client reads on it gets every byte and the server exits 0.
fn sigterm_during_download(backend: &str) {
    let mib = big_mib();
    let dir = TempDir::new();
    let big = fs::File::create(dir.path().join("big.bin")).unwrap();
    big.set_len((mib * MIB) as u64).unwrap();
    for i in 0..mib {
        big.write_all_at(&(i as u64).to_le_bytes(), (i * MIB) as u64)
            .unwrap();
    }
    drop(big);
    fs::write(dir.path().join("small.txt"), b"small").unwrap();
    let (mut p, addr) = serve(dir.path(), &["--backend", backend, "--threads", "2"]);

    let (reached_tx, reached) = channel();
    let (go, go_rx) = channel();
    let stream = TcpStream::connect(addr).unwrap();
    let download = std::thread::spawn(move || gated_download(stream, mib, reached_tx, go_rx));
    if reached.recv_timeout(HANG).is_err() {
        let why = if download.is_finished() {
            format!("{:?}", download.join())
        } else {
            "still waiting".to_string()
        };
        panic!(
            "{backend}: the download never reached {GATE_MIB} MiB ({why}); stderr:\n{}",
            p.stderr_text()
        );
    }
    // The client reads nothing now, and the rest of the file cannot fit in
    // the socket buffers: the response is in flight until it reads on.
    p.stop(Signal::SIGTERM);
    assert_new_connections_refused(addr);
    assert!(
        p.wait_exit(Duration::ZERO).is_none(),
        "{backend}: zcserve exited with a download in flight; stderr:\n{}",
        p.stderr_text()
    );

    go.send(()).unwrap();
    match download.join().expect("download thread") {
        Ok((n, closed)) => {
            assert_eq!(n, (mib * MIB) as u64, "{backend}");
            assert!(
                closed,
                "{backend}: connection not closed after the last response"
            );
        }
        Err(e) => panic!(
            "{backend}: download interrupted by SIGTERM: {e}; stderr:\n{}",
            p.stderr_text()
        ),
    }
    p.assert_exits(0, HANG, &format!("{backend}: after the download finished"));
}

#[test]
fn sigterm_during_large_download() {
    for b in backends() {
        sigterm_during_download(b);
    }
}

// ---------------------------------------------------------------------------
// Command-line errors
// ---------------------------------------------------------------------------

/// Runs `zcserve args…` expecting it to exit by itself; its status, stdout
/// and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn_args(args, None);
    let Some(status) = p.wait_exit(EXIT_TIMEOUT) else {
        panic!(
            "zcserve {args:?} still running after {EXIT_TIMEOUT:?} (it should have refused); stderr:\n{}",
            p.stderr_text()
        );
    };
    let stdout = p.remaining_stdout().join("\n");
    (status, stdout, p.stderr_text())
}

/// `zcserve args…` exits with status 2 and exactly one error line on stderr
/// containing every string in `mentions`, without panic or backtrace.
/// Returns that line.
fn cli_error(args: &[&str], mentions: &[&str]) -> String {
    let (status, stdout, stderr) = run_to_exit(args);
    assert_eq!(
        status.code(),
        Some(2),
        "zcserve {args:?}: {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.to_lowercase().contains(&bad.to_lowercase()),
            "zcserve {args:?} printed {bad:?}:\n{stderr}"
        );
    }
    assert!(
        stdout.trim().is_empty(),
        "zcserve {args:?} printed on stdout:\n{stdout}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("zcserve: error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "zcserve {args:?}: want one error line, stderr:\n{stderr}"
    );
    let line = errors[0];
    if line.starts_with("zcserve: error:") {
        // Our own errors: that line and nothing else.
        let nonempty = stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(
            nonempty, 1,
            "zcserve {args:?}: more than the error line:\n{stderr}"
        );
    }
    for m in mentions {
        assert!(
            line.contains(m),
            "zcserve {args:?}: error line does not mention {m:?}: {line}"
        );
    }
    line.to_string()
}

/// `--root DIR --listen 127.0.0.1:0 --access-log off` followed by `extra`,
/// so that only `extra` can be wrong.
fn with_root<'a>(root: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--root",
        root.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--access-log",
        "off",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn cli_unknown_flag() {
    cli_error(&["--bogus"], &["--bogus"]);
}

#[test]
fn cli_unknown_backend_lists_the_valid_names() {
    let dir = TempDir::new();
    cli_error(
        &with_root(dir.path(), &["--backend", "nosuch"]),
        &Backend::ALL
            .iter()
            .map(|b| b.name())
            .chain(["nosuch", "auto"])
            .collect::<Vec<_>>(),
    );
}

#[test]
fn cli_missing_root_names_the_path() {
    let dir = TempDir::new();
    let missing = dir.path().join("no-such-dir");
    let missing = missing.to_str().unwrap();
    cli_error(
        &[
            "--root",
            missing,
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
        ],
        &[missing],
    );
    cli_error(
        &[
            "--root",
            "/nonexistent",
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
        ],
        &["/nonexistent"],
    );
}

#[test]
fn cli_root_is_a_regular_file() {
    let dir = TempDir::new();
    let file = dir.path().join("file.txt");
    fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap();
    let line = cli_error(
        &[
            "--root",
            file,
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
        ],
        &[file],
    );
    assert!(line.contains("not a directory"), "{line}");
}

#[test]
fn cli_port_in_use() {
    let dir = TempDir::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let line = cli_error(
        &[
            "--root",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr,
            "--access-log",
            "off",
        ],
        &[&addr],
    );
    assert!(line.to_lowercase().contains("in use"), "{line}");
    drop(busy);
}

#[test]
fn cli_listen_not_an_address() {
    cli_error(&["--listen", "notanaddr"], &["notanaddr", "--listen"]);
}

#[test]
fn cli_zero_threads() {
    let dir = TempDir::new();
    cli_error(&with_root(dir.path(), &["--threads", "0"]), &["threads"]);
}

#[test]
fn cli_zero_header_timeout() {
    let dir = TempDir::new();
    cli_error(
        &with_root(dir.path(), &["--header-timeout", "0"]),
        &["header-timeout"],
    );
}

#[test]
fn cli_missing_config_file_names_it() {
    let dir = TempDir::new();
    let cfg = dir.path().join("missing.toml");
    let cfg = cfg.to_str().unwrap();
    cli_error(&with_root(dir.path(), &["--config", cfg]), &[cfg]);
}

#[test]
fn cli_config_unknown_key_names_it() {
    let dir = TempDir::new();
    let cfg = dir.path().join("zc.toml");
    fs::write(&cfg, "backend = \"copy\"\nbackned = \"mmap\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    cli_error(
        &with_root(dir.path(), &["--config", cfg]),
        &[cfg, "backned"],
    );
}

/// A value of the wrong type: the line must say where to fix it (the key
/// `threads`, or its line, 3).
#[test]
fn cli_config_type_error_names_the_key() {
    let dir = TempDir::new();
    let cfg = dir.path().join("zc.toml");
    fs::write(
        &cfg,
        "backend = \"copy\"\nshow-hidden = false\nthreads = \"many\"\nlisting = true\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let line = cli_error(&with_root(dir.path(), &["--config", cfg]), &[cfg]);
    assert!(
        line.contains("threads") || line.contains("line 3"),
        "the error does not say which setting is wrong: {line}"
    );
}

#[test]
fn cli_list_backends() {
    let (status, stdout, stderr) = run_to_exit(&["--list-backends"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for b in Backend::ALL {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(b.name()))
            .unwrap_or_else(|| panic!("{} not listed:\n{stdout}", b.name()));
        assert!(line.contains("available"), "{line}");
        assert_eq!(
            line.contains("not available"),
            !b.is_available(),
            "{line}: availability as the registry's probe says"
        );
    }
    let auto: Vec<&&str> = lines.iter().filter(|l| l.contains("auto")).collect();
    assert_eq!(auto.len(), 1, "one line for auto:\n{stdout}");
    let rule = Choice::Auto.rule(&Config::default());
    assert_eq!(
        auto[0].split_whitespace().collect::<Vec<_>>().join(" "),
        format!("auto {rule} (--auto-threshold)"),
        "{stdout}"
    );
    // The rule follows the flag.
    let (status, stdout, stderr) = run_to_exit(&["--list-backends", "--auto-threshold", "1048576"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let rule = Choice::Auto.rule(&Config {
        auto_threshold: 1 << 20,
        ..Config::default()
    });
    assert!(
        rule.contains("1 MiB") || !Backend::Sendfile.is_available(),
        "{rule}"
    );
    assert!(stdout.contains(&rule), "{rule} in\n{stdout}");
}

#[test]
fn cli_bad_auto_threshold_names_the_flag() {
    let dir = TempDir::new();
    for bad in ["64k", "-1", "", "18446744073709551616"] {
        let flag = format!("--auto-threshold={bad}");
        cli_error(
            &with_root(dir.path(), &["--backend", "auto", &flag]),
            &["--auto-threshold"],
        );
    }
}

#[test]
fn cli_help() {
    let (status, stdout, stderr) = run_to_exit(&["--help"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    for flag in [
        "--backend",
        "--root",
        "--listen",
        "--threads",
        "--config",
        "--access-log",
        "--list-backends",
    ] {
        assert!(
            stdout.contains(flag),
            "--help does not mention {flag}:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------
// Config file and flags
// ---------------------------------------------------------------------------

#[test]
fn flags_override_the_config_file() {
    let dir = hello_root();
    let cfg_dir = TempDir::new();
    let cfg = cfg_dir.path().join("zc.toml");
    fs::write(
        &cfg,
        "backend = \"copy\"\nlisten = [\"127.0.0.1:0\"]\nthreads = 3\naccess-log = \"off\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let root = dir.path().to_str().unwrap();

    // Flags win.
    let mut p = Proc::spawn_args(
        &[
            "--config",
            cfg,
            "--backend",
            "mmap",
            "--threads",
            "1",
            "--root",
            root,
        ],
        None,
    );
    let line = p.start_line();
    let start = parse_start_line(&line);
    assert_eq!(start.backend, "mmap", "{line}");
    assert_eq!(start.threads, "1 thread", "{line}");
    assert_eq!(start.addrs.len(), 1, "{line}");
    let addr = start.addrs[0];
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.1",
        "listen from the file: {line}"
    );
    assert_ne!(addr.port(), 0, "{line}");
    let r = get(addr, "/hello.txt");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"hello from zcserve\n"[..])
    );
    p.stop(Signal::SIGTERM);
    p.assert_exits(0, Duration::from_secs(10), "config + flags");

    // The file alone.
    let mut p = Proc::spawn_args(&["--config", cfg, "--root", root], None);
    let line = p.start_line();
    let start = parse_start_line(&line);
    assert_eq!(start.backend, "copy", "{line}");
    assert_eq!(start.threads, "3 threads", "{line}");
    let r = get(start.addrs[0], "/hello.txt");
    assert_eq!(r.status, 200);
    p.stop(Signal::SIGTERM);
    p.assert_exits(0, Duration::from_secs(10), "config only");
}

// ---------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------

#[test]
fn ipv6_listener_alongside_ipv4() {
    // A machine without IPv6 fails this test, unless the suite was built
    // with ZCSERVE_ALLOW_SKIP listing `ipv6` (or `all`), as for backends.
    if let Err(e) = TcpListener::bind("[::1]:0") {
        let allowed = zcserve_tests::allowed_skips()
            .iter()
            .any(|s| s == "ipv6" || s == "all");
        assert!(
            allowed,
            "cannot bind [::1] on this machine ({e}), so the IPv6 listener is not tested; \
             fix the machine, or rebuild the tests with ZCSERVE_ALLOW_SKIP=ipv6 to skip it visibly"
        );
        println!("SKIPPED: IPv6 listener ({e}; allowed by ZCSERVE_ALLOW_SKIP)");
        eprintln!("SKIPPED: IPv6 listener ({e}; allowed by ZCSERVE_ALLOW_SKIP)");
        return;
    }
    let dir = hello_root();
    let mut p = Proc::spawn_args(
        &[
            "--listen",
            "[::1]:0",
            "--listen",
            "127.0.0.1:0",
            "--root",
            dir.path().to_str().unwrap(),
            "--access-log",
            "off",
        ],
        None,
    );
    let line = p.start_line();
    let start = parse_start_line(&line);
    assert_eq!(start.addrs.len(), 2, "{line}");
    assert!(
        line.contains("http://[::1]:"),
        "IPv6 URL in brackets: {line}"
    );
    let v6 = start.addrs[0];
    assert!(v6.is_ipv6() && v6.port() != 0, "{line}");
    assert!(start.addrs[1].is_ipv4(), "{line}");
    for addr in &start.addrs {
        let r = get(*addr, "/hello.txt");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"hello from zcserve\n"[..]),
            "{addr}"
        );
    }
    p.stop(Signal::SIGTERM);
    p.assert_exits(0, Duration::from_secs(10), "IPv6");
}

// ---------------------------------------------------------------------------
// Access log to a file
// ---------------------------------------------------------------------------

/// Polls `path` until it holds `n` lines (or [`HANG`] passes).
fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + HANG;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `[28/Nov/2026:11:09:08 +0000]`-shaped.
fn is_clf_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 26
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b':'
        && t.ends_with(" +0000")
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[3..6].iter().all(u8::is_ascii_alphabetic)
        && b[7..11].iter().all(u8::is_ascii_digit)
}

fn access_log_file(format: Option<&str>) -> (PathBuf, Vec<String>, TempDir, TempDir) {
    let dir = hello_root();
    let logs = TempDir::new();
    let log = logs.path().join("access.log");
    let log_arg = log.to_str().unwrap().to_string();
    let mut extra = vec!["--access-log", log_arg.as_str()];
    if let Some(f) = format {
        extra.extend(["--log-format", f]);
    }
    let (mut p, addr) = serve(dir.path(), &extra);
    let r = request(
        addr,
        "GET /hello.txt?x=1 HTTP/1.1\r\nHost: test\r\nUser-Agent: zc-test/1.0 \"quoted\" back\\slash\r\n\
         Referer: http://ref.example/page\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let lines = log_lines(&log, 1);
    let r = get(addr, "/missing.txt");
    assert_eq!(r.status, 404);
    let mut lines2 = log_lines(&log, 2);
    p.stop(Signal::SIGTERM);
    p.assert_exits(0, Duration::from_secs(10), "access log");
    assert!(
        !lines.is_empty(),
        "no access log line within {HANG:?} of the response"
    );
    if lines2.len() < 2 {
        lines2 = log_lines(&log, 2);
    }
    (log, lines2, dir, logs)
}

#[test]
fn access_log_file_combined_format() {
    let (log, lines, _dir, _logs) = access_log_file(None);
    assert_eq!(lines.len(), 2, "{log:?}: {lines:#?}");
    let line = &lines[0];
    let rest = line
        .strip_prefix("127.0.0.1 - - [")
        .unwrap_or_else(|| panic!("not combined format: {line}"));
    let (time, rest) = rest
        .split_once("] ")
        .unwrap_or_else(|| panic!("not combined format: {line}"));
    assert!(is_clf_time(time), "time {time:?} in {line}");
    assert_eq!(
        rest,
        r#""GET /hello.txt?x=1 HTTP/1.1" 200 19 "http://ref.example/page" "zc-test/1.0 \"quoted\" back\\slash""#,
        "{line}"
    );
    let second = &lines[1];
    assert!(
        second.contains(r#""GET /missing.txt HTTP/1.1" 404 "#),
        "{second}"
    );
}

#[test]
fn access_log_file_json_format() {
    let (log, lines, _dir, _logs) = access_log_file(Some("json"));
    assert_eq!(lines.len(), 2, "{log:?}: {lines:#?}");
    let v = json::parse(&lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]));
    let json::Value::Object(fields) = &v else {
        panic!("not a JSON object: {}", lines[0]);
    };
    let strings: Vec<&str> = fields
        .iter()
        .filter_map(|(_, v)| match v {
            json::Value::String(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let numbers: Vec<f64> = fields
        .iter()
        .filter_map(|(_, v)| match v {
            json::Value::Number(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert!(
        strings.iter().any(|s| s.contains("/hello.txt")),
        "{}",
        lines[0]
    );
    assert!(
        strings.contains(&"zc-test/1.0 \"quoted\" back\\slash"),
        "user agent decoded intact: {}",
        lines[0]
    );
    assert!(strings.contains(&"GET"), "{}", lines[0]);
    assert!(numbers.contains(&200.0), "status: {}", lines[0]);
    assert!(numbers.contains(&19.0), "bytes: {}", lines[0]);
    let v2 = json::parse(&lines[1]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[1]));
    let json::Value::Object(fields) = &v2 else {
        panic!("not a JSON object: {}", lines[1]);
    };
    assert!(
        fields
            .iter()
            .any(|(_, v)| matches!(v, json::Value::Number(n) if *n == 404.0)),
        "{}",
        lines[1]
    );
}

/// A strict little JSON parser (RFC 8259), enough to check log lines.
mod json {
    #[derive(Debug, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    pub fn parse(s: &str) -> Result<Value, String> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Result<(), String> {
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", c as char, self.i))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.b.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        let v = self.value()?;
                        fields.push((k, v));
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(fields));
                            }
                            _ => return Err(format!("bad object at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => return Err(format!("bad array at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Value::String(self.string()?)),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => Err(format!("unexpected byte at {}", self.i)),
            }
        }

        fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
            if self.b[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            if self.b.get(self.i) == Some(&b'-') {
                self.i += 1;
            }
            match self.b.get(self.i) {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                        self.i += 1;
                    }
                }
                _ => return Err(format!("bad number at {start}")),
            }
            if self.b.get(self.i) == Some(&b'.') {
                self.i += 1;
                let digits = self.i;
                while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
                if self.i == digits {
                    return Err(format!("bad fraction at {start}"));
                }
            }
            if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                let digits = self.i;
                while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
                if self.i == digits {
                    return Err(format!("bad exponent at {start}"));
                }
            }
            let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
            text.parse()
                .map(Value::Number)
                .map_err(|e| format!("{e} at {start}"))
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let h = self
                .b
                .get(self.i..self.i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad \\u escape at {}", self.i))?;
            self.i += 4;
            Ok(h)
        }

        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                let Some(&c) = self.b.get(self.i) else {
                    return Err("unterminated string".into());
                };
                self.i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        let Some(&e) = self.b.get(self.i) else {
                            return Err("unterminated escape".into());
                        };
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xd800..0xdc00).contains(&hi) {
                                    self.eat(b'\\')?;
                                    self.eat(b'u')?;
                                    let lo = self.hex4()?;
                                    if !(0xdc00..0xe000).contains(&lo) {
                                        return Err("bad surrogate pair".into());
                                    }
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    hi
                                };
                                char::from_u32(code).ok_or("bad code point")?
                            }
                            _ => return Err(format!("bad escape at {}", self.i - 1)),
                        };
                        let mut tmp = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                    }
                    0..=0x1f => {
                        return Err(format!("raw control byte in string at {}", self.i - 1));
                    }
                    c => out.push(c),
                }
            }
            String::from_utf8(out).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn the_parser_itself() {
        assert_eq!(
            parse(r#"{"a":[1,-2.5e3,true,null],"b":"x\"\\\u00e9"}"#).unwrap(),
            Value::Object(vec![
                (
                    "a".into(),
                    Value::Array(vec![
                        Value::Number(1.0),
                        Value::Number(-2500.0),
                        Value::Bool(true),
                        Value::Null
                    ])
                ),
                ("b".into(), Value::String("x\"\\é".into())),
            ])
        );
        for bad in [
            "{",
            "{\"a\":}",
            "\"a\nb\"",
            "{\"a\":1,}",
            "01",
            "\"\\x\"",
            "{} x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
