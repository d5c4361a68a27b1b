//! Starting and stopping the servers zcbench measures: zcserve with one
//! backend, or a `--peer-cmd` command in a process group of its own; each
//! pinned to the server CPUs (and, for the cold scenario, placed in a
//! throttled block-I/O cgroup) before it runs, tied to zcbench so that it
//! gets SIGTERM if zcbench dies, and stopped when its [`Running`] is
//! dropped or zcbench is interrupted ([`signals`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::load::{self, ProbeError};
use crate::peer::PeerCommand;
use crate::procs;
use crate::units::file_stem;

/// The file every server is probed with, and the idle connections fetch:
/// always in the fixture, whatever `--sizes` says.
pub const PROBE_SIZE: u64 = 1024;

/// What starting a server needs.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The zcserve binary.
    pub zcserve: PathBuf,
    /// The directory served.
    pub fixture: PathBuf,
    /// CPUs the server is pinned to; zcserve gets as many threads.
    pub server_cpus: &'a [usize],
    /// How long a `--peer-cmd` server has to answer its first GET.
    pub peer_timeout: Duration,
    /// Where a `--peer-cmd` server's output goes, one log per peer.
    pub logs: PathBuf,
    /// The `cgroup.procs` file of the cgroup servers are started in, if
    /// any (see [`crate::cold::Throttle`]).
    pub cgroup_procs: Option<PathBuf>,
}

/// A server being measured: one zcbench started (stopped on drop) or one
/// running already.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    /// The child leads a process group of its own (a --peer-cmd): the
    /// whole group is stopped.
    group: bool,
    /// Where it is registered for the signal handler's cleanup.
    slot: Option<usize>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The URL path of the fixture directory, ending in '/'.
    pub base: String,
    /// The root of its process tree, when known.
    pub pid: Option<u32>,
    /// zcserve's metrics listener.
    pub metrics: Option<SocketAddr>,
}

impl Running {
    /// A server zcbench did not start and will not stop.
    pub fn already(addr: SocketAddr, base: String, pid: Option<u32>) -> Running {
        Running {
            child: None,
            group: false,
            slot: None,
            addr,
            base,
            pid,
            metrics: None,
        }
    }

    /// How the server's own process ended, if it did.
    pub fn exited(&mut self) -> Option<String> {
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
            signals::forget(slot);
        }
    }
}

/// What the servers zcbench started are stopped with when zcbench itself
/// is interrupted or terminated: a --peer-cmd server is in a process group
/// of its own, which a terminal's Ctrl-C does not reach.
pub mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

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

/// Raises the soft limit on open descriptors to the hard limit (the
/// servers zcbench starts inherit it); returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Makes the child of `cmd` run on `cpus` (inherited by everything it
/// starts), receive SIGTERM if zcbench dies, and, with `cgroup_procs`,
/// join that cgroup before it runs.
pub fn pin_and_tie(
    cmd: &mut Command,
    cpus: &[usize],
    cgroup_procs: Option<&Path>,
) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    // Opened before the fork: the child only writes to it. Rust opens it
    // close-on-exec, so the server does not inherit it.
    let cgroup = cgroup_procs
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| format!("cannot open {}: {e} (run as root)", p.display()))
        })
        .transpose()?;
    // SAFETY: between fork and exec only plain syscalls run:
    // sched_setaffinity on a CpuSet built before the fork, prctl with
    // integer arguments, and write of a static byte to a descriptor opened
    // before the fork: no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(std::io::Error::from)?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(f) = &cgroup {
                // "0" moves the writing process itself, i.e. the child.
                if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Starts zcserve with `backend` on `setup`'s fixture and CPUs, and reads
/// its addresses (server and metrics) from the line it prints when ready.
pub fn start_zcserve(setup: &Setup<'_>, backend: &str) -> Result<Running, String> {
    let bin = &setup.zcserve;
    let cpus = setup.server_cpus;
    let mut cmd = Command::new(bin);
    cmd.arg("--root")
        .arg(&setup.fixture)
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
    pin_and_tie(&mut cmd, cpus, setup.cgroup_procs.as_deref())?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let pid = child.id();
    let mut server = Running {
        slot: signals::remember(pid as i32),
        child: Some(child),
        group: false,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
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
    let (addr, metrics) = start_line_addrs(&line)?;
    server.addr = addr;
    server.metrics = Some(metrics);
    Ok(server)
}

/// The server and metrics addresses in zcserve's start line (the first two
/// `http://ADDR/...` words).
pub fn start_line_addrs(line: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let mut urls = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .filter_map(|w| w.split('/').next())
        .filter_map(|a| a.parse::<SocketAddr>().ok());
    let addr = urls
        .next()
        .ok_or_else(|| format!("no address in zcserve's start line {line:?}"))?;
    let metrics = urls
        .next()
        .ok_or_else(|| format!("no metrics address in zcserve's start line {line:?}"))?;
    Ok((addr, metrics))
}

/// A port on 127.0.0.1 free a moment ago.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Starts a --peer-cmd server on a free port and waits until it answers a
/// GET of the probe file, the command exits, or the time is up.
pub fn start_peer(setup: &Setup<'_>, pc: &PeerCommand) -> Result<Running, String> {
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
    pin_and_tie(&mut cmd, setup.server_cpus, setup.cgroup_procs.as_deref())?;
    let child = cmd
        .spawn()
        .map_err(|e| format!("--peer-cmd {name}: cannot run sh: {e}"))?;
    let pid = child.id();
    let mut server = Running {
        slot: signals::remember(-(pid as i32)),
        child: Some(child),
        group: true,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        base: "/".into(),
        pid: Some(pid),
        metrics: None,
    };
    let path = format!("/{}.bin", file_stem(PROBE_SIZE));
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
        // Polling for a server's readiness: there is no event to wait on.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last line a peer wrote to its log after `from`, as the end of a
/// one-line message.
pub fn log_tail(path: &Path, from: u64) -> String {
    let text = File::open(path)
        .and_then(|mut f| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_lines_give_both_addresses() {
        let line = "zcserve: serving /srv on http://127.0.0.1:4000 with backend sendfile, 1 thread, metrics at http://127.0.0.1:4001/metrics\n";
        let (a, m) = start_line_addrs(line).unwrap();
        assert_eq!((a.port(), m.port()), (4000, 4001));
        assert!(
            start_line_addrs("serving at http://127.0.0.1:1/")
                .unwrap_err()
                .contains("metrics")
        );
        assert!(
            start_line_addrs("nothing")
                .unwrap_err()
                .contains("no address")
        );
    }

    #[test]
    fn children_are_pinned() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        pin_and_tie(&mut cmd, &[0], None).unwrap();
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().nth(1), Some("0"), "{text}");
        assert!(pin_and_tie(&mut Command::new("true"), &[1 << 20], None).is_err());
        let err = pin_and_tie(
            &mut Command::new("true"),
            &[0],
            Some(Path::new("/nonexistent/cgroup.procs")),
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/cgroup.procs"), "{err}");
    }

    #[test]
    fn the_nofile_limit_is_raised_to_the_hard_limit() {
        let now = raise_nofile_limit();
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(now, soft);
        assert_eq!(soft, hard);
    }

    #[test]
    fn log_tails_name_the_last_line_after_the_offset() {
        let dir = std::env::temp_dir().join(format!("zcbench-logtail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.log");
        std::fs::write(&p, "old line\nnew line\n\n").unwrap();
        assert!(log_tail(&p, 0).contains("\"new line\""));
        assert!(log_tail(&p, 18).contains("wrote nothing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_ports_can_be_bound() {
        let p = free_port().unwrap();
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    }
}
