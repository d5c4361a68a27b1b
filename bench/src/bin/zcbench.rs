//! `zcbench`: measures every zcserve backend, and any peer server, on one
//! fixture with one load generator, and writes the evidence (CSV, JSON, a
//! Markdown report and SVG charts).
//!
//! ```text
//! cargo build --release -p zcserve -p zcserve-bench
//! target/release/zcbench --out results/            # the full matrix
//! target/release/zcbench --quick --out /tmp/zc      # under a minute
//! target/release/zcbench --peer nginx=http://127.0.0.1:8080/ --peer-pid nginx=1234 \
//!     --fixture-dir /srv/fixture                    # compare in one run
//! ```
//!
//! zcserve is started once per backend per round, pinned to
//! `--server-cpus` with `--threads` to match; the load generator runs on
//! `--client-cpus`. Rounds are interleaved (round 1 of every target, then
//! round 2...), and the report gives medians with min and max.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use zcserve_bench::load::{self, LoadSpec};
use zcserve_bench::model::{Machine, RunResult};
use zcserve_bench::report::{self, Report};

#[derive(Debug, Parser)]
#[command(
    name = "zcbench",
    version,
    about = "Load zcserve (each backend) and peer servers over loopback; write CSV, JSON, Markdown and SVG results."
)]
struct Args {
    /// zcserve backends to measure, comma separated (empty: none)
    #[arg(
        long,
        default_value = "sendfile,splice,mmap,copy",
        value_delimiter = ','
    )]
    backends: Vec<String>,
    /// Another server to load, as NAME=URL of the directory serving the fixture (repeatable)
    #[arg(long, value_name = "NAME=URL")]
    peer: Vec<String>,
    /// A peer's process id, as NAME=PID, so its CPU time and memory are measured (repeatable)
    #[arg(long, value_name = "NAME=PID")]
    peer_pid: Vec<String>,
    /// File sizes, comma separated (suffixes KiB, MiB, GiB)
    #[arg(
        long,
        default_value = "4KiB,64KiB,1MiB,16MiB,256MiB",
        value_delimiter = ','
    )]
    sizes: Vec<String>,
    /// Connection counts, comma separated
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    conns: Vec<usize>,
    /// Seconds of load per target, scenario and round
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Rounds, interleaved across targets
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// CPUs for the server, comma separated
    #[arg(long, default_value = "0", value_delimiter = ',')]
    server_cpus: Vec<usize>,
    /// CPUs for the load generator, comma separated [default: the CPU after the server's, or 0]
    #[arg(long, value_delimiter = ',')]
    client_cpus: Vec<usize>,
    /// Directory holding (or to receive) the fixture files, named like 4KiB.bin
    #[arg(long, value_name = "DIR")]
    fixture_dir: Option<PathBuf>,
    /// Where to write the results
    #[arg(long, default_value = "zcbench-out", value_name = "DIR")]
    out: PathBuf,
    /// The zcserve binary [default: the one next to zcbench]
    #[arg(long, value_name = "PATH")]
    zcserve: Option<PathBuf>,
    /// Small matrix for a smoke run under a minute: 4 KiB and 1 MiB, 1 and 16 connections, 1 s, 1 round
    #[arg(long)]
    quick: bool,
}

/// Something to load: a zcserve we start, or a peer already running.
struct Target {
    name: String,
    backend: Option<String>,
    peer: Option<(SocketAddr, String, Option<u32>)>,
}

/// A running zcserve, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec!["4KiB".into(), "1MiB".into()];
        args.conns = vec![1, 16];
        args.duration = 1.0;
        args.rounds = 1;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("zcbench: some runs had errors; their rows are marked invalid in the report");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("zcbench: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let sizes: Vec<u64> = args
        .sizes
        .iter()
        .map(|s| {
            parse_size(s)
                .ok_or_else(|| format!("--sizes: cannot read {s:?} (try 4KiB, 1MiB, 256MiB)"))
        })
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() || args.conns.is_empty() || args.conns.contains(&0) {
        return Err("give at least one size and connection counts of at least 1".into());
    }
    // Written so that NaN is refused too.
    if args.duration.is_nan() || args.duration <= 0.0 || args.rounds == 0 {
        return Err("--duration and --rounds must be positive".into());
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(bad) = args
        .server_cpus
        .iter()
        .chain(&args.client_cpus)
        .find(|&&c| c >= ncpu)
    {
        return Err(format!(
            "CPU {bad} does not exist here (this machine has {ncpu})"
        ));
    }
    let client_cpus = if args.client_cpus.is_empty() {
        let next = args.server_cpus.iter().max().map_or(0, |m| m + 1);
        vec![if next < ncpu { next } else { 0 }]
    } else {
        args.client_cpus.clone()
    };
    let zcserve = match &args.zcserve {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find myself: {e}"))?
            .with_file_name("zcserve"),
    };
    let mut targets = Vec::new();
    for b in &args.backends {
        if b.is_empty() {
            continue;
        }
        if !zcserve.is_file() {
            return Err(format!(
                "zcserve binary not found at {} (build it with `cargo build --release -p zcserve`, or pass --zcserve)",
                zcserve.display()
            ));
        }
        targets.push(Target {
            name: format!("zcserve-{b}"),
            backend: Some(b.clone()),
            peer: None,
        });
    }
    for p in &args.peer {
        let (name, url) = p
            .split_once('=')
            .ok_or_else(|| format!("--peer {p:?}: write NAME=URL"))?;
        let (addr, base) = parse_url(url).ok_or_else(|| {
            format!("--peer {name}: cannot read URL {url:?} (http://HOST:PORT/PATH/)")
        })?;
        let pid = args
            .peer_pid
            .iter()
            .filter_map(|s| s.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, pid)| {
                pid.parse::<u32>()
                    .map_err(|_| format!("--peer-pid {name}: {pid:?} is not a pid"))
            })
            .transpose()?;
        targets.push(Target {
            name: name.to_string(),
            backend: None,
            peer: Some((addr, base, pid)),
        });
    }
    if targets.is_empty() {
        return Err("nothing to measure: give --backends or --peer".into());
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let fixture = match &args.fixture_dir {
        Some(d) => d.clone(),
        None => args.out.join("fixture"),
    };
    make_fixture(&fixture, &sizes)?;

    let machine = machine(&args.server_cpus, &client_cpus);
    let total =
        u64::from(args.rounds) * targets.len() as u64 * (sizes.len() * args.conns.len()) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let duration = Duration::from_secs_f64(args.duration);
    let mut results = Vec::new();
    for round in 1..=args.rounds {
        for t in &targets {
            let server = match &t.backend {
                Some(b) => Some(start_zcserve(&zcserve, b, &fixture, &args.server_cpus)?),
                None => None,
            };
            let (addr, base, pid) = match (&server, &t.peer) {
                (Some(s), _) => (s.addr, "/".to_string(), Some(s.child.id())),
                (None, Some((a, b, p))) => (*a, b.clone(), *p),
                (None, None) => unreachable!("a target is a backend or a peer"),
            };
            for &size in &sizes {
                for &conns in &args.conns {
                    bar.set_message(format!(
                        "round {round} {} {} x{conns}",
                        t.name,
                        report::human_size(size)
                    ));
                    let path = format!("{base}{}.bin", human_file(size));
                    let spec = LoadSpec {
                        addr,
                        path,
                        host: addr.to_string(),
                        conns,
                        threads: client_cpus.len().min(conns),
                        cpus: client_cpus.clone(),
                        duration,
                        expect_status: 200,
                        expect_len: size,
                    };
                    let r = measure(t, &spec, round, pid, server.as_ref().map(|s| s.metrics))?;
                    results.push(r);
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_with_message("done");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let peer = targets
        .iter()
        .find(|t| t.peer.is_some())
        .map(|t| t.name.as_str());
    let written = report::write_all(
        &Report {
            machine: &machine,
            results: &results,
            baseline_backend: "zcserve-copy",
            first_peer: peer,
            command: &command,
        },
        &args.out,
    )
    .map_err(|e| format!("cannot write the report to {}: {e}", args.out.display()))?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(results.iter().all(|r| r.valid))
}

/// One measured run: a short warm-up, then the load, with the server's CPU
/// time, peak memory and syscall counters read around it.
fn measure(
    t: &Target,
    spec: &LoadSpec,
    round: u32,
    pid: Option<u32>,
    metrics: Option<SocketAddr>,
) -> Result<RunResult, String> {
    let warm = LoadSpec {
        duration: (spec.duration / 10).min(Duration::from_secs(1)),
        ..spec.clone()
    };
    load::run(&warm).map_err(|e| format!("{}: cannot load {}: {e}", t.name, spec.addr))?;
    if let Some(pid) = pid {
        // Writing 5 to clear_refs resets VmHWM, so each run's peak is its own.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let cpu0 = pid.and_then(cpu_seconds);
    let calls0 = metrics.and_then(syscalls);
    let out = load::run(spec).map_err(|e| format!("{}: cannot load {}: {e}", t.name, spec.addr))?;
    let cpu = match (cpu0, pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let calls = match (calls0, metrics.and_then(syscalls)) {
        (Some(a), Some(b)) if out.requests > 0 => Some((b - a) as f64 / out.requests as f64),
        _ => None,
    };
    let secs = out.elapsed.as_secs_f64().max(1e-9);
    let q = |p: f64| out.latency_us.value_at_quantile(p);
    if out.errors > 0 {
        eprintln!(
            "{} {} x{}: {} errors, e.g. {:?}",
            t.name,
            report::human_size(spec.expect_len),
            spec.conns,
            out.errors,
            out.error_samples
        );
    }
    Ok(RunResult {
        target: t.name.clone(),
        backend: t.backend.clone(),
        size: spec.expect_len,
        conns: spec.conns,
        round,
        seconds: secs,
        requests: out.requests,
        bytes: out.bytes,
        errors: out.errors,
        req_per_s: out.requests as f64 / secs,
        mb_per_s: out.bytes as f64 / secs / 1e6,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        cpu_s: cpu,
        cpu_s_per_gb: cpu
            .filter(|_| out.bytes > 0)
            .map(|c| c / (out.bytes as f64 / 1e9)),
        peak_rss_kib: pid.and_then(peak_rss_kib),
        syscalls_per_req: calls,
        // A big file on many connections may finish no response within the
        // run; its bytes still count, so only errors or silence invalidate.
        valid: out.errors == 0 && out.bytes > 0,
    })
}

fn start_zcserve(bin: &Path, backend: &str, root: &Path, cpus: &[usize]) -> Result<Server, String> {
    let mut cmd = Command::new(bin);
    cmd.arg("--root")
        .arg(root)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--access-log",
            "off",
            "--backend",
            backend,
        ])
        .args(["--threads", &cpus.len().max(1).to_string()])
        // Its start and shutdown lines would break the progress bar.
        .env("ZCSERVE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    // SAFETY: between fork and exec only sched_setaffinity runs: a plain
    // syscall on a CpuSet built before the fork, no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    let mut server = Server {
        child,
        addr: "0.0.0.0:0".parse().expect("literal"),
        metrics: "0.0.0.0:0".parse().expect("literal"),
    };
    if read.is_err() || line.is_empty() {
        return Err(format!(
            "zcserve --backend {backend} did not start (see its message above)"
        ));
    }
    let mut urls = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .filter_map(|w| w.split('/').next())
        .filter_map(|a| a.parse::<SocketAddr>().ok());
    server.addr = urls
        .next()
        .ok_or_else(|| format!("no address in zcserve's start line {line:?}"))?;
    server.metrics = urls
        .next()
        .ok_or_else(|| format!("no metrics address in zcserve's start line {line:?}"))?;
    Ok(server)
}

/// Total backend syscalls from zcserve's /metrics.
fn syscalls(metrics: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: zcbench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("zcserve_backend_syscalls_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// utime + stime + cutime + cstime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime is field 14, i.e. the 12th after the state.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Files `4KiB.bin`, `1MiB.bin`, ... of pseudo-random bytes, made when
/// missing or of the wrong size, then read once so the page cache is warm.
fn make_fixture(dir: &Path, sizes: &[u64]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for &size in sizes {
        let path = dir.join(format!("{}.bin", human_file(size)));
        let ok = std::fs::metadata(&path)
            .map(|m| m.len() == size)
            .unwrap_or(false);
        if !ok {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
            );
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size;
            let mut left = size;
            let mut block = vec![0u8; 1 << 16];
            while left > 0 {
                for chunk in block.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
                }
                let n = left.min(block.len() as u64) as usize;
                f.write_all(&block[..n])
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                left -= n as u64;
            }
            f.flush()
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let mut f = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        std::io::copy(&mut f, &mut std::io::sink())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(())
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

/// 4096 -> "4KiB", as fixture file names.
fn human_file(size: u64) -> String {
    for (suf, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if size >= m && size % m == 0 {
            return format!("{}{suf}", size / m);
        }
    }
    format!("{size}B")
}

/// `http://127.0.0.1:8080/some/dir/` -> (addr, "/some/dir/").
fn parse_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()?
        .next()?;
    let mut path = path.to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    Some((addr, path))
}

fn machine(server_cpus: &[usize], client_cpus: &[usize]) -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
        date: rfc3339(SystemTime::now()),
        server_cpus: server_cpus.to_vec(),
        client_cpus: client_cpus.to_vec(),
    }
}

/// UTC RFC 3339 timestamp, from the civil-from-days algorithm.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(human_file(4096), "4KiB");
        assert_eq!(human_file(1 << 20), "1MiB");
        assert_eq!(human_file(1000), "1000B");
    }

    #[test]
    fn urls() {
        let (a, p) = parse_url("http://127.0.0.1:8080/files").unwrap();
        assert_eq!((a.port(), p.as_str()), (8080, "/files/"));
        assert_eq!(parse_url("http://127.0.0.1:9").unwrap().1, "/");
        assert!(parse_url("https://x/").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_863_748)),
            "2026-11-28T11:02:28Z"
        );
    }
}
