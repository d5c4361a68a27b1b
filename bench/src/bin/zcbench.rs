//! `zcbench`: measures every zcserve backend, and any peer server, on one
//! fixture with one load generator, and writes the evidence (CSV, JSON, a
//! Markdown report and SVG charts).
//!
//! ```text
//! cargo build --release -p zcserve -p zcserve-bench
//! target/release/zcbench --out results/            # the full matrix
//! target/release/zcbench --quick --out /tmp/zc      # under a minute
//! target/release/zcbench --peer-cmd 'nginx=exec nginx.sh {root} {port} on' \
//!     --peer-cmd 'go=GOMAXPROCS=1 exec ./gofs -root {root} -port {port}'   # started by zcbench
//! target/release/zcbench --peer nginx=http://127.0.0.1:8080/ --peer-pid nginx=1234 \
//!     --fixture-dir /srv/fixture                    # a server already running
//! ```
//!
//! zcserve is started once per backend per round, pinned to
//! `--server-cpus` with `--threads` to match; the load generator runs on
//! `--client-cpus`. A `--peer-cmd` server is started the same way (in a
//! process group of its own, pinned to the server CPUs, on a free port) and
//! stopped as a whole group. Rounds are interleaved (round 1 of every
//! target, then round 2...), and the report gives medians with min and max.
//!
//! Before the rounds every target is started once (a bad command or URL
//! fails there, with exit code 2) and the memory cost of `--idle-conns`
//! idle keep-alive connections is measured on it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use zcserve_bench::load::{self, LoadSpec, ProbeError};
use zcserve_bench::model::{IdleResult, Machine, RunResult};
use zcserve_bench::peer::PeerCommand;
use zcserve_bench::procs;
use zcserve_bench::report::{self, Report};

#[derive(Debug, Parser)]
#[command(
    name = "zcbench",
    version,
    about = "Load zcserve (each backend) and peer servers over loopback; write CSV, JSON, Markdown and SVG results."
)]
struct Args {
    /// zcserve backends to measure, comma separated; `available` means every
    /// backend this kernel can run (those it refuses, such as uring where
    /// io_uring is disabled, are listed and skipped); empty: none
    #[arg(long, default_value = "available", value_delimiter = ',')]
    backends: Vec<String>,
    /// Another server to load, as NAME=URL of the directory serving the fixture (repeatable)
    #[arg(long, value_name = "NAME=URL")]
    peer: Vec<String>,
    /// A peer's process id, as NAME=PID, so its CPU time and memory (with its children's) are measured (repeatable)
    #[arg(long, value_name = "NAME=PID")]
    peer_pid: Vec<String>,
    /// A peer server zcbench starts and stops itself, as NAME=COMMAND (repeatable). COMMAND is run
    /// with `sh -c`, pinned to the server CPUs, in its own process group; {port} (required) is a
    /// free port it must listen on at 127.0.0.1, {root} the fixture directory, {threads} the number
    /// of server CPUs. Start it with `exec` so that no shell stays around to be measured.
    #[arg(long, value_name = "NAME=COMMAND")]
    peer_cmd: Vec<String>,
    /// Seconds a --peer-cmd server has to answer a GET of a fixture file after it is started
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    peer_start_timeout: f64,
    /// Idle keep-alive connections whose memory cost is measured on each server after it starts
    /// (0: not measured) [default: 1000; 100 with --quick]
    #[arg(long, value_name = "N")]
    idle_conns: Option<usize>,
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
    /// Where to write the results (and the --peer-cmd servers' output, under logs/)
    #[arg(long, default_value = "zcbench-out", value_name = "DIR")]
    out: PathBuf,
    /// The zcserve binary [default: the one next to zcbench]
    #[arg(long, value_name = "PATH")]
    zcserve: Option<PathBuf>,
    /// Small matrix for a smoke run under a minute: 4 KiB and 1 MiB, 1 and 16 connections, 1 s, 1 round
    #[arg(long)]
    quick: bool,
}

/// The file every server is probed with, and the idle connections fetch:
/// always in the fixture, whatever `--sizes` says.
const PROBE_SIZE: u64 = 1024;
/// How long the idle connections are left idle before memory is read.
const IDLE_SETTLE: Duration = Duration::from_millis(500);
/// How long reading the idle connections' responses may take in all.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Descriptors zcbench keeps for itself beyond the idle connections.
const SPARE_FDS: u64 = 64;

/// Something to load.
struct Target {
    name: String,
    kind: Kind,
}

enum Kind {
    /// zcserve with this backend, started by zcbench.
    Zcserve(String),
    /// A server already running at a URL; its pid if given.
    Url {
        addr: SocketAddr,
        base: String,
        pid: Option<u32>,
    },
    /// A server zcbench starts with a command.
    Cmd(PeerCommand),
}

impl Target {
    fn backend(&self) -> Option<String> {
        match &self.kind {
            Kind::Zcserve(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// What starting a server needs.
struct Setup<'a> {
    zcserve: PathBuf,
    fixture: PathBuf,
    server_cpus: &'a [usize],
    peer_timeout: Duration,
    logs: PathBuf,
}

/// A server being measured: one zcbench started (stopped on drop) or one
/// running already.
struct Running {
    child: Option<Child>,
    /// The child leads a process group of its own (a --peer-cmd): the
    /// whole group is stopped.
    group: bool,
    /// Where it is registered for the signal handler's cleanup.
    slot: Option<usize>,
    addr: SocketAddr,
    /// The URL path of the fixture directory, ending in '/'.
    base: String,
    /// The root of its process tree, when known.
    pid: Option<u32>,
    /// zcserve's metrics listener.
    metrics: Option<SocketAddr>,
}

impl Running {
    /// How the server's own process ended, if it did.
    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot tell: {e}")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.group {
            procs::stop_group(child.id(), Duration::from_secs(5), || {
                let _ = child.try_wait();
            });
            let _ = child.kill();
            let _ = child.wait();
        } else {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut done = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    done = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !done {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(slot) = self.slot {
            cleanup::forget(slot);
        }
    }
}

/// What the servers zcbench started are stopped with when zcbench itself
/// is interrupted or terminated: a --peer-cmd server is in a process group
/// of its own, which a terminal's Ctrl-C does not reach.
mod cleanup {
    use super::{AtomicI32, Ordering};

    /// Processes (positive) and process groups (negative) to signal.
    static LIVE: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];

    /// Installs the handler for SIGINT, SIGTERM and SIGHUP.
    pub fn install() {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only
            // makes async-signal-safe calls (atomic loads, kill, signal,
            // raise).
            unsafe {
                libc::signal(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
            }
        }
    }

    /// Remembers `id` (a pid, or minus a process group id); the slot to
    /// forget it by, or `None` when all slots are taken.
    pub fn remember(id: i32) -> Option<usize> {
        LIVE.iter().position(|s| {
            s.compare_exchange(0, id, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
    }

    /// Forgets what `slot` holds.
    pub fn forget(slot: usize) {
        LIVE[slot].store(0, Ordering::SeqCst);
    }

    extern "C" fn on_signal(sig: libc::c_int) {
        for s in &LIVE {
            let id = s.load(Ordering::SeqCst);
            if id != 0 && id != -1 {
                // SAFETY: kill is async-signal-safe and has no memory
                // preconditions; `id` is a child's pid or minus its group.
                unsafe {
                    libc::kill(id, libc::SIGTERM);
                }
            }
        }
        // SAFETY: signal and raise are async-signal-safe: the default
        // action is restored and the signal raised again, so zcbench ends
        // as the signal asked.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
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
    let sizes = dedup(sizes);
    let conns = dedup(args.conns.clone());
    if sizes.is_empty() || conns.is_empty() || conns.contains(&0) {
        return Err("give at least one size and connection counts of at least 1".into());
    }
    // Written so that NaN is refused too.
    if args.duration.is_nan() || args.duration <= 0.0 || args.rounds == 0 {
        return Err("--duration and --rounds must be positive".into());
    }
    if !(args.peer_start_timeout > 0.0 && args.peer_start_timeout <= 3600.0) {
        return Err("--peer-start-timeout must be between 0 and 3600 seconds".into());
    }
    let idle_conns = args
        .idle_conns
        .unwrap_or(if args.quick { 100 } else { 1000 });
    let nofile = raise_nofile_limit();
    if idle_conns as u64 + SPARE_FDS > nofile {
        return Err(format!(
            "--idle-conns {idle_conns} needs about {} descriptors, but RLIMIT_NOFILE allows {nofile} (raise it with `ulimit -n`)",
            idle_conns as u64 + SPARE_FDS
        ));
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
    let targets = targets(args, &zcserve)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let fixture = match &args.fixture_dir {
        Some(d) => d.clone(),
        None => args.out.join("fixture"),
    };
    let mut fixture_sizes = sizes.clone();
    fixture_sizes.push(PROBE_SIZE);
    make_fixture(&fixture, &fixture_sizes)?;
    // Peers may change directory: give them the whole path.
    let fixture = std::fs::canonicalize(&fixture)
        .map_err(|e| format!("cannot read {}: {e}", fixture.display()))?;
    let setup = Setup {
        zcserve,
        fixture,
        server_cpus: &args.server_cpus,
        peer_timeout: Duration::from_secs_f64(args.peer_start_timeout),
        logs: args.out.join("logs"),
    };
    cleanup::install();

    let machine = machine(&args.server_cpus, &client_cpus);
    let per_round = targets.len() as u64 * (sizes.len() * conns.len()) as u64;
    let bar = ProgressBar::new(targets.len() as u64 + u64::from(args.rounds) * per_round);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );

    // Every target once: a server that does not start, or a URL that does
    // not serve the fixture, ends the run here. The idle connections'
    // memory is measured on the fresh server.
    let mut idle = Vec::new();
    for t in &targets {
        bar.set_message(format!("starting {}", t.name));
        let mut server = start(&setup, t)?;
        let path = format!("{}{}.bin", server.base, human_file(PROBE_SIZE));
        if let Err(e) = load::probe(server.addr, &path, 200, PROBE_SIZE, Duration::from_secs(5)) {
            return Err(format!(
                "{}: GET {path} at {} was not answered 200 with {PROBE_SIZE} bytes: {e}",
                t.name, server.addr
            ));
        }
        if idle_conns > 0 {
            bar.set_message(format!("{}: {idle_conns} idle connections", t.name));
            idle.push(measure_idle(t, &mut server, idle_conns, &path));
        }
        drop(server);
        bar.inc(1);
    }

    let duration = Duration::from_secs_f64(args.duration);
    let mut results = Vec::new();
    for round in 1..=args.rounds {
        for t in &targets {
            let mut server = match start(&setup, t) {
                Ok(s) => Some(s),
                Err(e) => {
                    bar.println(format!("round {round}: {e}"));
                    None
                }
            };
            for &size in &sizes {
                for &conns in &conns {
                    bar.set_message(format!(
                        "round {round} {} {} x{conns}",
                        t.name,
                        report::human_size(size)
                    ));
                    let failed = |why: String| {
                        bar.println(format!(
                            "{} {} x{conns}, round {round}: {why}; the run is invalid",
                            t.name,
                            report::human_size(size)
                        ));
                        failed_run(t, size, conns, round)
                    };
                    let r = match server.as_mut() {
                        None => failed_run(t, size, conns, round),
                        Some(s) => match s.exited() {
                            Some(status) => failed(format!("the server exited ({status})")),
                            None => {
                                let addr = s.addr;
                                let spec = LoadSpec {
                                    addr,
                                    path: format!("{}{}.bin", s.base, human_file(size)),
                                    host: addr.to_string(),
                                    conns,
                                    threads: client_cpus.len().min(conns),
                                    cpus: client_cpus.clone(),
                                    duration,
                                    expect_status: 200,
                                    expect_len: size,
                                };
                                measure(t, &spec, round, s.pid, s.metrics).unwrap_or_else(failed)
                            }
                        },
                    };
                    results.push(r);
                    bar.inc(1);
                }
            }
            if let Some(s) = server.as_mut() {
                if let Some(status) = s.exited() {
                    bar.println(format!(
                        "{}: the server exited ({status}) during round {round}",
                        t.name
                    ));
                }
            }
        }
    }
    bar.finish_with_message("done");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let peer = targets
        .iter()
        .find(|t| !matches!(t.kind, Kind::Zcserve(_)))
        .map(|t| t.name.as_str());
    let written = report::write_all(
        &Report {
            machine: &machine,
            results: &results,
            baseline_backend: "zcserve-copy",
            first_peer: peer,
            command: &command,
            idle: &idle,
        },
        &args.out,
    )
    .map_err(|e| format!("cannot write the report to {}: {e}", args.out.display()))?;
    for p in written {
        println!("{}", p.display());
    }
    for i in &idle {
        let per = i.per_conn_kib().map_or_else(
            || "memory not measured".into(),
            |p| format!("{p:.1} KiB each"),
        );
        let delta = i.rss_delta_kib.map_or_else(String::new, |d| {
            format!(", {:.1} MiB in all", d as f64 / 1024.0)
        });
        println!(
            "{}: {} idle connections: {per}{delta}{}",
            i.target,
            i.conns,
            if i.valid { "" } else { " (invalid)" }
        );
    }
    Ok(results.iter().all(|r| r.valid) && idle.iter().all(|i| i.valid))
}

/// `v` without repeats, in first-seen order.
fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// The targets the arguments name, in order: zcserve backends, URL peers,
/// command peers. Names must be unique.
fn targets(args: &Args, zcserve: &Path) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    let mut backends = Vec::new();
    for b in &args.backends {
        if b == "available" {
            for b in zcserve_backends::Backend::ALL {
                match b.check() {
                    Ok(()) => backends.push(b.name().to_string()),
                    Err(e) => eprintln!("zcbench: skipping backend {b}: {e}"),
                }
            }
        } else {
            backends.push(b.clone());
        }
    }
    for b in &backends {
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
            kind: Kind::Zcserve(b.clone()),
        });
    }
    let mut pids = Vec::new();
    for p in &args.peer_pid {
        let (name, pid) = p
            .split_once('=')
            .ok_or_else(|| format!("--peer-pid {p:?}: write NAME=PID"))?;
        let pid = pid
            .parse::<u32>()
            .map_err(|_| format!("--peer-pid {name}: {pid:?} is not a pid"))?;
        if !args
            .peer
            .iter()
            .any(|p| p.split_once('=').is_some_and(|(n, _)| n == name))
        {
            return Err(format!("--peer-pid {name}: there is no --peer {name}=URL"));
        }
        pids.push((name.to_string(), pid));
    }
    for p in &args.peer {
        let (name, url) = p
            .split_once('=')
            .ok_or_else(|| format!("--peer {p:?}: write NAME=URL"))?;
        let (addr, base) = parse_url(url).ok_or_else(|| {
            format!("--peer {name}: cannot read URL {url:?} (http://HOST:PORT/PATH/)")
        })?;
        let pid = pids.iter().find(|(n, _)| n == name).map(|(_, p)| *p);
        targets.push(Target {
            name: name.to_string(),
            kind: Kind::Url { addr, base, pid },
        });
    }
    for c in &args.peer_cmd {
        let pc = PeerCommand::parse(c)?;
        targets.push(Target {
            name: pc.name.clone(),
            kind: Kind::Cmd(pc),
        });
    }
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|u| u.name == t.name) {
            return Err(format!(
                "two targets are named {}: give each its own NAME",
                t.name
            ));
        }
    }
    if targets.is_empty() {
        return Err("nothing to measure: give --backends, --peer or --peer-cmd".into());
    }
    Ok(targets)
}

/// Starts (or, for a URL peer, looks up) the server of `t`.
fn start(setup: &Setup<'_>, t: &Target) -> Result<Running, String> {
    match &t.kind {
        Kind::Zcserve(b) => start_zcserve(&setup.zcserve, b, &setup.fixture, setup.server_cpus),
        Kind::Url { addr, base, pid } => Ok(Running {
            child: None,
            group: false,
            slot: None,
            addr: *addr,
            base: base.clone(),
            pid: *pid,
            metrics: None,
        }),
        Kind::Cmd(pc) => start_peer(setup, pc),
    }
}

/// A run that could not happen (its server is gone): recorded as invalid,
/// with one error.
fn failed_run(t: &Target, size: u64, conns: usize, round: u32) -> RunResult {
    RunResult {
        target: t.name.clone(),
        backend: t.backend(),
        size,
        conns,
        round,
        seconds: 0.0,
        requests: 0,
        bytes: 0,
        errors: 1,
        req_per_s: 0.0,
        mb_per_s: 0.0,
        p50_us: 0,
        p90_us: 0,
        p99_us: 0,
        p999_us: 0,
        cpu_s: None,
        cpu_s_per_gb: None,
        peak_rss_kib: None,
        syscalls_per_req: None,
        valid: false,
    }
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
    load::run(&warm).map_err(|e| format!("cannot load {}: {e}", spec.addr))?;
    if let Some(pid) = pid {
        // So that each run's peak is its own.
        procs::reset_peaks(pid);
    }
    let cpu0 = pid.and_then(procs::cpu_seconds);
    let calls0 = metrics.and_then(syscalls);
    let out = load::run(spec).map_err(|e| format!("cannot load {}: {e}", spec.addr))?;
    let cpu = match (cpu0, pid.and_then(procs::cpu_seconds)) {
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
        backend: t.backend(),
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
        peak_rss_kib: pid
            .and_then(|p| procs::memory_kib(p, "VmHWM"))
            .map(|(k, _)| k),
        syscalls_per_req: calls,
        // A big file on many connections may finish no response within the
        // run; its bytes still count, so only errors or silence invalidate.
        valid: out.errors == 0 && out.bytes > 0,
    })
}

/// The memory `n` idle keep-alive connections cost `server`: its tree's
/// resident set before, and with the connections open, each having made
/// one `GET path`, idle for [`IDLE_SETTLE`].
fn measure_idle(t: &Target, server: &mut Running, n: usize, path: &str) -> IdleResult {
    let rss = |pid: Option<u32>| pid.and_then(|p| procs::memory_kib(p, "VmRSS"));
    let before = rss(server.pid);
    let conns = load::open_idle(server.addr, path, 200, PROBE_SIZE, n, IDLE_TIMEOUT);
    std::thread::sleep(IDLE_SETTLE);
    let after = rss(server.pid);
    let still_open = conns.still_open();
    let mut error = conns.errors.first().cloned();
    if let Some(status) = server.exited() {
        error = Some(format!("the server exited ({status})"));
    }
    if error.is_none() && server.pid.is_some() && (before.is_none() || after.is_none()) {
        error = Some("its memory could not be read from /proc".into());
    }
    let result = IdleResult {
        target: t.name.clone(),
        backend: t.backend(),
        conns: n,
        answered: conns.answered,
        still_open,
        processes: after.map_or(0, |(_, p)| p),
        rss_before_kib: before.map(|(k, _)| k),
        rss_after_kib: after.map(|(k, _)| k),
        rss_delta_kib: None,
        error,
        valid: false,
    }
    .derive();
    drop(conns);
    result
}

/// Raises the soft limit on open descriptors to the hard limit (the
/// servers zcbench starts inherit it); returns the soft limit now in force.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit whose soft limit does not
        // exceed its hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur
}

/// Makes the child of `cmd` run on `cpus` (inherited by everything it
/// starts) and receive SIGTERM if zcbench dies.
fn pin_and_tie(cmd: &mut Command, cpus: &[usize]) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    // SAFETY: between fork and exec only two plain syscalls run,
    // sched_setaffinity on a CpuSet built before the fork and prctl with
    // integer arguments: no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(std::io::Error::from)?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

fn start_zcserve(
    bin: &Path,
    backend: &str,
    root: &Path,
    cpus: &[usize],
) -> Result<Running, String> {
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
    pin_and_tie(&mut cmd, cpus)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let pid = child.id();
    let mut server = Running {
        slot: cleanup::remember(pid as i32),
        child: Some(child),
        group: false,
        addr: "0.0.0.0:0".parse().expect("literal"),
        base: "/".into(),
        pid: Some(pid),
        metrics: None,
    };
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
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
    server.metrics = Some(
        urls.next()
            .ok_or_else(|| format!("no metrics address in zcserve's start line {line:?}"))?,
    );
    Ok(server)
}

/// A port on 127.0.0.1 free a moment ago.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Starts a --peer-cmd server on a free port and waits until it answers a
/// GET of the probe file, the command exits, or the time is up.
fn start_peer(setup: &Setup<'_>, pc: &PeerCommand) -> Result<Running, String> {
    let name = &pc.name;
    let port = free_port()?;
    let line = pc.expand(&setup.fixture, port, setup.server_cpus.len().max(1));
    std::fs::create_dir_all(&setup.logs)
        .map_err(|e| format!("cannot create {}: {e}", setup.logs.display()))?;
    let log_path = setup.logs.join(format!("{name}.log"));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let _ = writeln!(log, "# zcbench: sh -c {line}");
    let log_from = log.metadata().map_or(0, |m| m.len());
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&line)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    pin_and_tie(&mut cmd, setup.server_cpus)?;
    let child = cmd
        .spawn()
        .map_err(|e| format!("--peer-cmd {name}: cannot run sh: {e}"))?;
    let pid = child.id();
    let mut server = Running {
        slot: cleanup::remember(-(pid as i32)),
        child: Some(child),
        group: true,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        base: "/".into(),
        pid: Some(pid),
        metrics: None,
    };
    let path = format!("/{}.bin", human_file(PROBE_SIZE));
    let deadline = Instant::now() + setup.peer_timeout;
    loop {
        if let Some(status) = server.exited() {
            return Err(format!(
                "--peer-cmd {name}: `{line}` exited ({status}) before serving on port {port} (it must stay in the foreground){}",
                log_tail(&log_path, log_from)
            ));
        }
        let err = match load::probe(server.addr, &path, 200, PROBE_SIZE, Duration::from_secs(2)) {
            Ok(()) => return Ok(server),
            Err(ProbeError::Wrong(e)) => {
                return Err(format!(
                    "--peer-cmd {name}: GET {path} on port {port} was answered with {e}, not 200 and {PROBE_SIZE} bytes: does it serve {{root}} ({})?",
                    setup.fixture.display()
                ));
            }
            Err(ProbeError::NoAnswer(e)) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "--peer-cmd {name}: nothing answered GET {path} on 127.0.0.1:{port} within {} s (last try: {err}){}",
                setup.peer_timeout.as_secs_f64(),
                log_tail(&log_path, log_from)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last line a peer wrote to its log after `from`, as the end of a
/// one-line message.
fn log_tail(path: &Path, from: u64) -> String {
    let text = File::open(path)
        .and_then(|mut f| {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(from))?;
            let mut s = String::new();
            f.take(64 * 1024).read_to_string(&mut s)?;
            Ok(s)
        })
        .unwrap_or_default();
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => {
            let l: String = l.trim().chars().take(200).collect();
            format!("; its last output: {l:?} (all in {})", path.display())
        }
        None => format!("; it wrote nothing (log: {})", path.display()),
    }
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
