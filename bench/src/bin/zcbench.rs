//! `zcbench`: measures every zcserve backend, and any peer server, on one
//! fixture with one load generator, and writes the evidence (CSV, JSON, a
//! Markdown report and SVG charts).
//!
//! ```text
//! cargo build --release -p zcserve -p zcserve-bench
//! target/release/zcbench --out results/            # the full matrix
//! target/release/zcbench --quick --out /tmp/zc      # about a minute
//! target/release/zcbench --client-read 8KiB,64KiB,256KiB,trunc   # four kinds of client
//! target/release/zcbench --peer-cmd 'nginx=exec nginx.sh {root} {port} on' \
//!     --peer-cmd 'go=GOMAXPROCS=1 exec ./gofs -root {root} -port {port}'   # started by zcbench
//! target/release/zcbench --peer nginx=http://127.0.0.1:8080/ --peer-pid nginx=1234 \
//!     --fixture-dir /srv/fixture                    # a server already running
//! sudo target/release/zcbench --scenario cold --disk-iops 200 --duration 10 \
//!     --fixture-dir /var/tmp/zc --peer-cmd 'nginx-aio=exec nginx.sh {root} {port} aio'
//! ```
//!
//! zcserve is started once per backend per round, pinned to
//! `--server-cpus` with `--threads` to match; the load generator runs on
//! `--client-cpus`, reading bodies in each `--client-read` mode in turn (a
//! dimension of the matrix like sizes and connections). A `--peer-cmd` server is started the same way (in a
//! process group of its own, pinned to the server CPUs, on a free port) and
//! stopped as a whole group. Rounds are interleaved (round 1 of every
//! target, then round 2...), and the report gives medians with min and max.
//!
//! Before the warm rounds every target is started once (a bad command or
//! URL fails there, with exit code 2) and the memory cost of `--idle-conns`
//! idle keep-alive connections is measured on it.
//!
//! `--scenario cold` (see `zcserve_bench::cold`) makes a working set of
//! `--cold-files` files under the fixture directory, measures the disk's
//! own cold 4 KiB read latency, and then for every target in every round
//! evicts the set (checking with `mincore` that it is gone), starts the
//! server (in a cgroup limited to `--disk-iops` reads per second, if
//! given), and loads it with `--cold-conns` connections fetching random
//! files of the set while one connection fetches a cached 4 KiB file
//! (`--cold-rate` caps the cold connections' MB/s, so that servers are
//! compared at equal cold work); `cold.md` reports the hot client's
//! latency, the cold MB/s and how the disk was read (requests/s × size).
//!
//! `--max-steal F` repeats any run whose server CPUs lost more than F of
//! their time to the hypervisor (see `zcserve_bench::steal::StealGate`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use zcserve_bench::client_read::{self, ClientRead};
use zcserve_bench::cold;
use zcserve_bench::cold_scenario::{self, ColdPlan, HOT_SIZE};
use zcserve_bench::fixture::make_fixture;
use zcserve_bench::launch::{PROBE_SIZE, Running, Setup, raise_nofile_limit, signals};
use zcserve_bench::load::{self, LoadSpec, Priority};
use zcserve_bench::machine::this_machine;
use zcserve_bench::metrics::syscalls;
use zcserve_bench::model::{IdleResult, Machine, RunResult};
use zcserve_bench::procs;
use zcserve_bench::report::{self, Report};
use zcserve_bench::steal::{StealGate, StealMeter};
use zcserve_bench::target::{Kind, Target, TargetArgs, targets};
use zcserve_bench::units::{file_stem, human_size, parse_size};

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
    /// How the load generator reads response bodies, comma separated; each mode is a dimension of
    /// the matrix: a read size (`8KiB`: every recv asks for 8 KiB into an 8 KiB page-aligned
    /// buffer, like wrk), or `trunc` (the kernel discards the bytes with recv(MSG_TRUNC), copying
    /// nothing: the receiver's copy is removed and the server's figures are an upper bound, the
    /// sender's cost; bodies are counted, not checked). The cold scenario takes one mode
    /// [default: 256KiB; 8KiB,trunc with --quick; 256KiB for the cold scenario]
    #[arg(long, value_delimiter = ',', value_name = "MODES")]
    client_read: Vec<String>,
    /// Seconds of load per target, scenario and round [default: 5; 1 with --quick]
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
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
    /// Small matrix for a smoke run of about a minute: 4 KiB and 1 MiB, 1 and 16 connections, 1
    /// round; 1 s and the 8KiB and trunc clients unless --duration or --client-read is given (with
    /// `--scenario cold`: 300 files of 64 KiB)
    #[arg(long)]
    quick: bool,
    /// Scenarios, comma separated: `warm` (the --sizes x --conns matrix from a warm page cache)
    /// and `cold` (a working set evicted from the page cache before every run, fetched at random
    /// by --cold-conns connections, while one connection fetches a cached 4 KiB file)
    #[arg(long, value_enum, default_value = "warm", value_delimiter = ',')]
    scenario: Vec<ScenarioArg>,
    /// Cold scenario: files in the working set; enough that a run does not re-read much of it (a server reading 300 MB/s reads 3 GB in 10 s) [default: 20000 (19.5 GiB of 1 MiB files); 300 with --quick]
    #[arg(long, value_name = "N")]
    cold_files: Option<usize>,
    /// Cold scenario: the size of each file [default: 1MiB; 64KiB with --quick]
    #[arg(long, value_name = "SIZE")]
    cold_size: Option<String>,
    /// Cold scenario: connections fetching random cold files
    #[arg(long, default_value_t = 16, value_name = "C")]
    cold_conns: usize,
    /// Cold scenario: start the servers in a block-I/O cgroup limiting reads from the fixture's
    /// disk to N per second (cgroup v1 blkio or v2 io.max; needs root). Without it the servers
    /// read the raw disk, and the report says so
    #[arg(long, value_name = "N")]
    disk_iops: Option<u32>,
    /// Cold scenario: how the hot client's thread is scheduled. `normal` time-sharing, like the
    /// cold clients, or `realtime` (SCHED_FIFO, lowest priority; needs root or CAP_SYS_NICE),
    /// which keeps the cold clients' work on the client CPU out of the hot latencies but also
    /// changes how the servers' latencies come out (results/FINDINGS.md §9): compare only runs
    /// made the same way
    #[arg(long, value_enum, default_value_t = HotPriorityArg::Normal)]
    hot_priority: HotPriorityArg,
    /// Cold scenario: cap the cold connections at this many MB/s (1e6 bytes) between them: one
    /// cold request starts at most every (file size / rate), so every server that keeps up
    /// serves the same cold bytes and the hot client's figures compare at equal work. Give a
    /// rate below the slowest server's uncapped cold MB/s [default: uncapped, each connection
    /// asks for its next file at once]
    #[arg(long, value_name = "MB_PER_S")]
    cold_rate: Option<f64>,
    /// Make a run again when the hypervisor stole more than this fraction of the server CPUs'
    /// time during it (0.05 = 5 %), up to --steal-retries more times, and keep the try with the
    /// least steal (warm: the load again on the same server; cold: a fresh server on a freshly
    /// evicted set). Every target is held to the same bound; the reports count the runs made
    /// again [default: off, every run kept as it comes]
    #[arg(long, value_name = "FRACTION")]
    max_steal: Option<f64>,
    /// With --max-steal: how many more times a run above it is made
    #[arg(long, default_value_t = 3, value_name = "N")]
    steal_retries: u32,
}

/// What `--hot-priority` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HotPriorityArg {
    /// Normal time-sharing, like the cold clients.
    Normal,
    /// Real-time (SCHED_FIFO), or the run fails.
    Realtime,
}

/// A scenario `--scenario` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScenarioArg {
    /// The size x connections matrix, page cache warm.
    Warm,
    /// The cold-cache scenario.
    Cold,
}

/// How long the idle connections are left idle before memory is read.
const IDLE_SETTLE: Duration = Duration::from_millis(500);
/// How long reading the idle connections' responses may take in all.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Descriptors zcbench keeps for itself beyond the idle connections.
const SPARE_FDS: u64 = 64;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec!["4KiB".into(), "1MiB".into()];
        args.conns = vec![1, 16];
        args.duration.get_or_insert(1.0);
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
    let clients = if args.client_read.is_empty() {
        if args.quick {
            vec![ClientRead::Size(8 * 1024), ClientRead::Trunc]
        } else {
            vec![ClientRead::DEFAULT]
        }
    } else {
        client_read::parse_list(&args.client_read)?
    };
    // Before anything turns it into a Duration, which panics on NaN or a
    // negative number. Written so that NaN is refused too.
    let duration = args.duration.unwrap_or(5.0);
    if duration.is_nan() || duration <= 0.0 || duration > 1e6 || args.rounds == 0 {
        return Err("--duration (at most 1e6 s) and --rounds must be positive".into());
    }
    let gate = steal_gate(args)?;
    let scenarios = dedup(args.scenario.clone());
    let warm = scenarios.contains(&ScenarioArg::Warm);
    let cold = scenarios
        .contains(&ScenarioArg::Cold)
        .then(|| cold_plan(args, &clients, gate))
        .transpose()?;
    if sizes.is_empty() || conns.is_empty() || conns.contains(&0) {
        return Err("give at least one size and connection counts of at least 1".into());
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
    let targets = targets(
        TargetArgs {
            backends: &args.backends,
            peers: &args.peer,
            peer_pids: &args.peer_pid,
            peer_cmds: &args.peer_cmd,
        },
        &zcserve,
    )?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let fixture = match &args.fixture_dir {
        Some(d) => d.clone(),
        None => args.out.join("fixture"),
    };
    // The warm matrix's files only when it runs; the probe file always.
    let mut fixture_sizes = if warm { sizes.clone() } else { Vec::new() };
    fixture_sizes.push(PROBE_SIZE);
    if cold.is_some() {
        std::fs::create_dir_all(&fixture)
            .map_err(|e| format!("cannot create {}: {e}", fixture.display()))?;
        cold::check_evictable(&fixture)?;
        fixture_sizes.push(HOT_SIZE);
    }
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
        cgroup_procs: None,
    };
    signals::install();

    let machine = this_machine(&args.server_cpus, &client_cpus);
    let mut all_valid = true;
    if warm {
        all_valid &= run_warm(
            args,
            &targets,
            &setup,
            &machine,
            &client_cpus,
            &Matrix {
                clients: &clients,
                sizes: &sizes,
                conns: &conns,
            },
            idle_conns,
        )?;
    }
    if let Some(plan) = cold {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        all_valid &= cold_scenario::run(
            &plan,
            &targets,
            &setup,
            &machine,
            &client_cpus,
            &args.out,
            &command,
        )?;
    }
    Ok(all_valid)
}

/// The cold scenario's flags, checked, with --quick's defaults; its client
/// reads with the one `--client-read` mode given, or 256 KiB.
fn cold_plan(
    args: &Args,
    clients: &[ClientRead],
    steal_gate: StealGate,
) -> Result<ColdPlan, String> {
    let client_read = match (args.client_read.is_empty(), clients) {
        (true, _) => ClientRead::DEFAULT,
        (false, &[one]) => one,
        (false, _) => {
            return Err(
                "--client-read: the cold scenario takes one mode (run it once per mode)".into(),
            );
        }
    };
    let files = args
        .cold_files
        .unwrap_or(if args.quick { 300 } else { 20_000 });
    let size_arg = args
        .cold_size
        .clone()
        .unwrap_or_else(|| if args.quick { "64KiB" } else { "1MiB" }.into());
    let size = parse_size(&size_arg)
        .ok_or_else(|| format!("--cold-size: cannot read {size_arg:?} (try 64KiB, 1MiB)"))?;
    if files == 0 || args.cold_conns == 0 {
        return Err("--cold-files and --cold-conns must be at least 1".into());
    }
    if args.disk_iops == Some(0) {
        return Err("--disk-iops must be at least 1".into());
    }
    if let Some(r) = args.cold_rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!(
                "--cold-rate {r}: give the cold MB/s to cap the cold connections at, above 0 (e.g. 100)"
            ));
        }
    }
    let hot_priority = match args.hot_priority {
        HotPriorityArg::Normal => Priority::Normal,
        HotPriorityArg::Realtime => {
            Priority::realtime_permitted().map_err(|e| {
                format!("--hot-priority realtime: {e} (run as root, or pass --hot-priority normal)")
            })?;
            Priority::Realtime
        }
    };
    Ok(ColdPlan {
        files,
        size,
        conns: args.cold_conns,
        disk_iops: args.disk_iops,
        latency_samples: if args.quick { 50 } else { 200 },
        rounds: args.rounds,
        duration: Duration::from_secs_f64(args.duration.unwrap_or(5.0)),
        client_read,
        hot_priority,
        steal_gate,
        cold_rate: args.cold_rate,
    })
}

/// The `--max-steal` gate the arguments ask for.
fn steal_gate(args: &Args) -> Result<StealGate, String> {
    match args.max_steal {
        Some(f) if !(0.0..1.0).contains(&f) => Err(format!(
            "--max-steal {f}: give a fraction of the server CPUs' time from 0 up to (not including) 1, e.g. 0.05 for 5 %"
        )),
        max => Ok(StealGate {
            max,
            retries: if max.is_some() { args.steal_retries } else { 0 },
        }),
    }
}

/// The warm matrix's dimensions.
struct Matrix<'a> {
    clients: &'a [ClientRead],
    sizes: &'a [u64],
    conns: &'a [usize],
}

/// The warm matrix: every target started once (idle memory measured),
/// then every client mode x size x connections, round after round; writes
/// the report.
fn run_warm(
    args: &Args,
    targets: &[Target],
    setup: &Setup<'_>,
    machine: &Machine,
    client_cpus: &[usize],
    matrix: &Matrix<'_>,
    idle_conns: usize,
) -> Result<bool, String> {
    let per_round = targets.len() as u64
        * (matrix.clients.len() * matrix.sizes.len() * matrix.conns.len()) as u64;
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
    for t in targets {
        bar.set_message(format!("starting {}", t.name));
        let mut server = t.start(setup)?;
        let path = format!("{}{}.bin", server.base, file_stem(PROBE_SIZE));
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

    let duration = Duration::from_secs_f64(args.duration.unwrap_or(5.0));
    // Checked by `run` already.
    let gate = steal_gate(args)?;
    let mut results = Vec::new();
    for round in 1..=args.rounds {
        for t in targets {
            let mut server = match t.start(setup) {
                Ok(s) => Some(s),
                Err(e) => {
                    bar.println(format!("round {round}: {e}"));
                    None
                }
            };
            for &client in matrix.clients {
                for &size in matrix.sizes {
                    for &conns in matrix.conns {
                        bar.set_message(format!(
                            "round {round} {} {} x{conns} {client}",
                            t.name,
                            human_size(size)
                        ));
                        let failed = |why: String| {
                            bar.println(format!(
                                "{} {} x{conns} {client}, round {round}: {why}; the run is invalid",
                                t.name,
                                human_size(size)
                            ));
                            failed_run(t, size, conns, client, round)
                        };
                        let r = match server.as_mut() {
                            None => failed_run(t, size, conns, client, round),
                            Some(s) => match s.exited() {
                                Some(status) => failed(format!("the server exited ({status})")),
                                None => {
                                    let addr = s.addr;
                                    let spec = LoadSpec {
                                        addr,
                                        paths: vec![format!("{}{}.bin", s.base, file_stem(size))],
                                        host: addr.to_string(),
                                        conns,
                                        threads: client_cpus.len().min(conns),
                                        cpus: client_cpus.to_vec(),
                                        duration,
                                        expect_status: 200,
                                        expect_len: size,
                                        read: client,
                                        priority: Priority::Normal,
                                        pace: None,
                                    };
                                    let metrics = s.metrics;
                                    let pid = s.pid;
                                    gate.run(
                                        |_| {
                                            measure(
                                                t,
                                                &spec,
                                                round,
                                                pid,
                                                metrics,
                                                setup.server_cpus,
                                            )
                                        },
                                        |r| r.server_steal,
                                        |m| {
                                            bar.println(format!(
                                                "{} {} x{conns} {client}, round {round}: {m}",
                                                t.name,
                                                human_size(size)
                                            ))
                                        },
                                    )
                                    .map(|g| RunResult {
                                        attempts: g.attempts,
                                        ..g.kept
                                    })
                                    .unwrap_or_else(failed)
                                }
                            },
                        };
                        results.push(r);
                        bar.inc(1);
                    }
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
            machine,
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

/// A run that could not happen (its server is gone): recorded as invalid,
/// with one error.
fn failed_run(
    t: &Target,
    size: u64,
    conns: usize,
    client_read: ClientRead,
    round: u32,
) -> RunResult {
    RunResult {
        target: t.name.clone(),
        backend: t.backend(),
        size,
        conns,
        client_read,
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
        client_cpu_s: None,
        client_cpu_s_per_gb: None,
        peak_rss_kib: None,
        syscalls_per_req: None,
        server_steal: None,
        client_steal: None,
        attempts: 1,
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
    server_cpus: &[usize],
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
    let steal = StealMeter::start();
    let out = load::run(spec).map_err(|e| format!("cannot load {}: {e}", spec.addr))?;
    let steal = steal.finish(server_cpus, &spec.cpus);
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
            "{} {} x{} {}: {} errors, e.g. {:?}",
            t.name,
            human_size(spec.expect_len),
            spec.conns,
            spec.read,
            out.errors,
            out.error_samples
        );
    }
    Ok(RunResult {
        target: t.name.clone(),
        backend: t.backend(),
        size: spec.expect_len,
        conns: spec.conns,
        client_read: spec.read,
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
        client_cpu_s: Some(out.cpu_s),
        client_cpu_s_per_gb: (out.bytes > 0).then(|| out.cpu_s / (out.bytes as f64 / 1e9)),
        peak_rss_kib: pid
            .and_then(|p| procs::memory_kib(p, "VmHWM"))
            .map(|(k, _)| k),
        syscalls_per_req: calls,
        server_steal: steal.server,
        client_steal: steal.client,
        attempts: 1,
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
