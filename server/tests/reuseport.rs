//! Zero-downtime operation of the real `zcserve` binary: two processes
//! sharing one port with `--reuseport`, one stopped with SIGTERM in the
//! middle of a load of short requests without a single request failing;
//! and systemd socket activation (a listener passed as descriptor 3 is
//! served; a descriptor that is not a listening socket, or `--listen`
//! beside one, exits 2 with a line naming what to fix).
//!
//! Stopping one process of a `SO_REUSEPORT` group loses nothing only where
//! the kernel migrates the connections queued on its listeners
//! (`net.ipv4.tcp_migrate_req=1`, see `server/src/listen.rs`). The host's
//! setting is never changed: the test runs in a private network namespace
//! where it sets it, which needs root; elsewhere it fails unless the suite
//! was built with `ZCSERVE_ALLOW_SKIP=tcp_migrate_req` (a visible skip).

mod common;
use common::*;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------
// A child zcserve (a [`Proc`], from common)
// ---------------------------------------------------------------------------

/// A root whose `who` file says `name`: each response names the process
/// that served it.
fn root_of(name: &str) -> TempDir {
    let dir = TempDir::new();
    fs::write(dir.path().join("who"), name).unwrap();
    dir
}

fn zcserve(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--root").arg(root).args(args);
    cmd
}

// ---------------------------------------------------------------------------
// A private network namespace with tcp_migrate_req=1
// ---------------------------------------------------------------------------

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Moves the calling thread (and so the threads and processes it starts)
/// into a new network namespace with `lo` up and tcp_migrate_req=1.
/// `Err` says why it cannot.
fn private_netns_with_migration() -> Result<(), String> {
    if fs::metadata(MIGRATE_REQ).is_err() {
        return Err(format!("{MIGRATE_REQ} missing (Linux 5.14 or later)"));
    }
    // SAFETY: unshare(CLONE_NEWNET) changes only the calling thread's
    // namespace; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "cannot make a network namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    loopback_up()?;
    fs::write(MIGRATE_REQ, "1").map_err(|e| format!("cannot set {MIGRATE_REQ}: {e}"))?;
    assert_eq!(fs::read_to_string(MIGRATE_REQ).unwrap().trim(), "1");
    Ok(())
}

/// `ip link set lo up`, through the ioctl itself.
fn loopback_up() -> Result<(), String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: both ioctls read and write only the ifreq given.
    let r = unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req)
        }
    };
    if r != 0 {
        return Err(format!(
            "cannot bring lo up: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------

/// One response: who served it and whether the server closes after it.
struct Answer {
    who: String,
    close: bool,
}

/// Why an exchange failed, and whether the server sent any byte first.
struct Failure {
    why: String,
    got_bytes: bool,
}

/// Sends `GET /who` on `s` and reads the whole response.
fn exchange(s: &mut TcpStream, keep_alive: bool) -> Result<Answer, Failure> {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let req = format!("GET /who HTTP/1.1\r\nHost: t\r\nConnection: {conn}\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return Err(Failure {
            why: format!("write: {e}"),
            got_bytes: false,
        });
    }
    read_response(s)
}

/// Reads one whole response (a 200 with a `Content-Length`) from `s`.
fn read_response(s: &mut TcpStream) -> Result<Answer, Failure> {
    let fail = |why: String, got: &[u8]| Failure {
        why: format!("{why} after {:?}", String::from_utf8_lossy(got)),
        got_bytes: !got.is_empty(),
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| fail("no content-length".into(), &got))?;
            if got.len() >= end + 4 + len {
                if !head.starts_with("http/1.1 200") {
                    return Err(fail("not 200".into(), &got));
                }
                let who = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                let close = head.contains("connection: close");
                return Ok(Answer { who, close });
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(fail("closed".into(), &got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(fail(format!("read: {e}"), &got)),
        }
    }
}

/// What the clients share: the test's phase and what they saw.
#[derive(Default)]
struct Load {
    /// 0: both serving; 1: SIGTERM sent to A; 2: A has exited. A request
    /// is filed under the phase in which its connection was made.
    phase: AtomicUsize,
    /// Responses by [phase][A, B].
    served: [[AtomicU64; 2]; 3],
    /// Keep-alive requests sent again on a new connection because the
    /// server closed the idle connection as the request went out (RFC
    /// 9112 §9.3.1 lets a client retry an idempotent request then).
    retried: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// The clients stop when this is set.
    done: std::sync::atomic::AtomicBool,
    /// Notified (under its lock) after every response counted and every
    /// failure, so [`wait_load`] wakes on the event it waits for.
    changed: (Mutex<()>, Condvar),
}

impl Load {
    fn count(&self, phase: usize, who: &str) -> u64 {
        self.served[phase][usize::from(who == "B")].load(Ordering::SeqCst)
    }

    fn fail(&self, why: String) {
        self.failures.lock().unwrap().push(why);
        self.done.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Taking the lock orders this after a waiter's test of the counters,
    /// so no change falls between its test and its wait.
    fn notify(&self) {
        let _held = self.changed.0.lock().unwrap();
        self.changed.1.notify_all();
    }

    fn record(&self, phase: usize, a: &Answer) {
        match a.who.as_str() {
            "A" | "B" => {
                self.served[phase][usize::from(a.who == "B")].fetch_add(1, Ordering::SeqCst);
                self.notify();
            }
            other => self.fail(format!("a response from neither process: {other:?}")),
        }
    }
}

/// Most requests one client makes: a bound on the load whatever happens.
const MAX_REQUESTS: usize = 50_000;

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, HANG)?;
    s.set_read_timeout(Some(HANG))?;
    s.set_write_timeout(Some(HANG))?;
    Ok(s)
}

/// A new connection for every request: none of them may fail.
fn fresh_client(addr: SocketAddr, load: &Load) {
    for _ in 0..MAX_REQUESTS {
        if load.done.load(Ordering::SeqCst) {
            return;
        }
        let phase = load.phase.load(Ordering::SeqCst);
        let answer = connect(addr)
            .map_err(|e| format!("connect: {e}"))
            .and_then(|mut s| exchange(&mut s, false).map_err(|f| f.why));
        match answer {
            Ok(a) => load.record(phase, &a),
            Err(why) => return load.fail(format!("fresh connection (phase {phase}): {why}")),
        }
    }
    load.fail("a fresh client reached its request bound".into());
}

/// Keep-alive: requests reuse the connection until the server closes it.
fn keepalive_client(addr: SocketAddr, load: &Load) {
    let mut conn: Option<(TcpStream, usize)> = None;
    for _ in 0..MAX_REQUESTS {
        if load.done.load(Ordering::SeqCst) {
            return;
        }
        let reused = conn.is_some();
        let (mut s, phase) = match conn.take() {
            Some(c) => c,
            None => {
                let phase = load.phase.load(Ordering::SeqCst);
                match connect(addr) {
                    Ok(s) => (s, phase),
                    Err(e) => return load.fail(format!("keep-alive connect (phase {phase}): {e}")),
                }
            }
        };
        match exchange(&mut s, true) {
            Ok(a) => {
                load.record(phase, &a);
                if !a.close {
                    conn = Some((s, phase));
                }
            }
            // The one failure HTTP lets a client absorb: its request met
            // the server's close of an idle connection. Only on a reused
            // connection, only before any byte of a response.
            Err(f) if reused && !f.got_bytes => {
                load.retried.fetch_add(1, Ordering::SeqCst);
            }
            Err(f) => {
                return load.fail(format!(
                    "keep-alive (phase {phase}, reused {reused}): {}",
                    f.why
                ));
            }
        }
    }
    load.fail("a keep-alive client reached its request bound".into());
}

/// Waits until `cond` holds or the clients failed; false on failure.
fn wait_load(what: &str, load: &Load, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + HANG * 3;
    let (lock, changed) = &load.changed;
    let mut held = lock.lock().unwrap();
    loop {
        if load.done.load(Ordering::SeqCst) {
            return false;
        }
        if cond() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: not within {:?}", HANG * 3);
        held = changed.wait_timeout(held, left).unwrap().0;
    }
}

/// Listening TCP sockets on `port` in this thread's network namespace,
/// as the kernel lists them.
fn listeners_on(port: u16) -> usize {
    let table = fs::read_to_string("/proc/thread-self/net/tcp").expect("/proc/thread-self/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            f.len() > 3
                && f[3] == "0A"
                && f[1].rsplit_once(':').map(|(_, p)| p) == Some(&format!("{port:04X}"))
        })
        .count()
}

/// Lines of an access log that record `GET /who`.
fn logged(path: &Path) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("GET /who"))
        .count() as u64
}

// ---------------------------------------------------------------------------
// Two processes, one port, one stops
// ---------------------------------------------------------------------------

/// Responses each process must have served before A is stopped, and the
/// survivor after A has exited.
const K: u64 = 200;

#[test]
fn one_of_two_reuseport_processes_stops_mid_load_and_no_request_fails() {
    // The namespace is this thread's, and everything it starts inherits
    // it; other tests' threads stay where they are.
    let host_has_it = fs::read_to_string(MIGRATE_REQ).is_ok_and(|v| v.trim() == "1");
    if !host_has_it && let Err(why) = private_netns_with_migration() {
        zcserve_tests::skip_or_fail("tcp_migrate_req", &why);
        return;
    }
    let (root_a, root_b) = (root_of("A"), root_of("B"));
    let logs = TempDir::new();
    let (log_a, log_b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let common = ["--reuseport", "--threads", "2", "--shutdown-grace", "30"];
    let mut a = Proc::spawn({
        let mut c = zcserve(root_a.path(), &common);
        c.args(["--listen", "127.0.0.1:0", "--access-log"])
            .arg(&log_a);
        c
    });
    let addr = a.start_addr();
    let mut b = Proc::spawn({
        let mut c = zcserve(root_b.path(), &common);
        c.args(["--listen", &addr.to_string(), "--access-log"])
            .arg(&log_b);
        c
    });
    assert_eq!(b.start_addr(), addr, "B must share A's port");
    // One listener per worker thread of each process.
    assert_eq!(listeners_on(addr.port()), 4, "2 processes x 2 threads");

    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let load = load.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    fresh_client(addr, &load)
                } else {
                    keepalive_client(addr, &load)
                }
            })
        })
        .collect();

    let ok = wait_load("both processes serving", &load, || {
        load.count(0, "A") >= K && load.count(0, "B") >= K
    }) && {
        load.phase.store(1, Ordering::SeqCst);
        a.stop(Signal::SIGTERM);
        let exited = a.wait_exit(HANG);
        load.phase.store(2, Ordering::SeqCst);
        exited.is_some()
            && wait_load("the survivor serving after the stop", &load, || {
                load.count(2, "B") >= K
            })
    };
    load.done.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }
    let failures = load.failures.lock().unwrap().clone();
    assert!(
        ok && failures.is_empty(),
        "requests failed: {failures:?}\nA's stderr:\n{}\nB's stderr:\n{}",
        a.stderr_text(),
        b.stderr_text()
    );
    a.assert_exits(0, HANG, "A after SIGTERM");
    assert_eq!(listeners_on(addr.port()), 2, "B's two listeners are left");
    b.stop(Signal::SIGTERM);
    b.assert_exits(0, HANG, "B after SIGTERM");
    // Both have exited and their stderr is read to the end: neither warned.
    for p in [&a, &b] {
        assert!(
            !p.stderr_text().contains("tcp_migrate_req"),
            "warned although the sysctl is 1: {}",
            p.stderr_text()
        );
    }

    // Only the survivor answers connections made after A exited.
    assert_eq!(load.count(2, "A"), 0);
    assert!(load.count(2, "B") >= K);
    // The clients' tally agrees with what each process logged.
    let by = |who| (0..3).map(|p| load.count(p, who)).sum::<u64>();
    assert_eq!(by("A"), logged(&log_a), "A's responses vs its access log");
    assert_eq!(by("B"), logged(&log_b), "B's responses vs its access log");
    println!(
        "served: before {} A / {} B, stopping {} A / {} B, after {} A / {} B; keep-alive retries {}",
        load.count(0, "A"),
        load.count(0, "B"),
        load.count(1, "A"),
        load.count(1, "B"),
        load.count(2, "A"),
        load.count(2, "B"),
        load.retried.load(Ordering::SeqCst)
    );
}

#[test]
fn reuseport_warns_naming_the_sysctl_when_migration_is_off() {
    if fs::read_to_string(MIGRATE_REQ).is_ok_and(|v| v.trim() != "0") {
        // Make a namespace where it is off (the default in a new one).
        // SAFETY: changes only this thread's network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            zcserve_tests::skip_or_fail("tcp_migrate_req", "cannot make a network namespace");
            return;
        }
        loopback_up().unwrap();
    }
    if fs::metadata(MIGRATE_REQ).is_err() {
        zcserve_tests::skip_or_fail("tcp_migrate_req", "this kernel has no tcp_migrate_req");
        return;
    }
    let root = root_of("A");
    let mut p = Proc::spawn(zcserve(
        root.path(),
        &[
            "--reuseport",
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
        ],
    ));
    p.start_addr();
    p.stop(Signal::SIGTERM);
    p.assert_exits(0, HANG, "SIGTERM");
    // Read once the process is gone and its stderr read to the end: the
    // warning is written before the start line, but the thread collecting
    // stderr may not have caught up when the start line arrives.
    let err = p.stderr_text();
    assert!(err.contains("net.ipv4.tcp_migrate_req=1"), "{err}");
}

// ---------------------------------------------------------------------------
// systemd socket activation
// ---------------------------------------------------------------------------

/// `zcserve ARGS` started the way systemd starts it: `fd` as descriptor 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` set to its own pid (by a shell that
/// then execs it, keeping the pid).
fn activated(fd: i32, root: &Path, args: &[&str]) -> Proc {
    Proc::spawn(activated_cmd(fd, root, args))
}

/// The command [`activated`] runs.
fn activated_cmd(fd: i32, root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"", BIN])
        .arg("--root")
        .arg(root)
        .args(args);
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only the
    // child's descriptor table.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) == -1 || libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn socket_activation_serves_the_passed_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let root = root_of("activated");
    let mut p = activated(
        listener.as_raw_fd(),
        root.path(),
        &["--access-log", "off", "--threads", "2"],
    );
    assert_eq!(p.start_addr(), addr);
    // The test's copy goes: only the server's copy listens now.
    drop(listener);
    let mut s = connect(addr).unwrap();
    let a = exchange(&mut s, false).unwrap_or_else(|f| panic!("{}", f.why));
    assert_eq!(a.who, "activated");
    p.stop(Signal::SIGTERM);
    p.assert_exits(0, HANG, "SIGTERM");
}

#[test]
fn socket_activation_refuses_listen_and_reuseport() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let root = root_of("x");
    for (flag, names) in [
        (&["--listen", "127.0.0.1:0"][..], "remove --listen"),
        (&["--reuseport"][..], "ReusePort=yes"),
    ] {
        let mut p = activated(listener.as_raw_fd(), root.path(), flag);
        p.assert_exits(2, HANG, &format!("{flag:?} with LISTEN_FDS"));
        let err = p.stderr_text();
        assert!(err.contains("LISTEN_FDS") && err.contains(names), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn socket_activation_with_a_bad_descriptor_exits_2() {
    let root = root_of("x");
    let file = fs::File::open(root.path().join("who")).unwrap();
    let unlistening = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bound_only = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s
    };
    for (fd, says) in [
        (file.as_raw_fd(), "descriptor 3 is not a socket"),
        (unlistening.as_raw_fd(), "descriptor 3 is a Datagram socket"),
        (bound_only.as_raw_fd(), "descriptor 3 is not listening"),
    ] {
        let mut p = activated(fd, root.path(), &["--access-log", "off"]);
        p.assert_exits(2, HANG, says);
        let err = p.stderr_text();
        assert!(
            err.starts_with("zcserve: error: LISTEN_FDS: ") && err.contains(says),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn systemd_is_told_ready_and_stopping() {
    let dir = TempDir::new();
    let path = dir.path().join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(HANG)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let root = root_of("x");
    let mut cmd = activated_cmd(listener.as_raw_fd(), root.path(), &["--access-log", "off"]);
    cmd.env("NOTIFY_SOCKET", &path);
    let mut p = Proc::spawn(cmd);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = manager
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    // Ready means serving.
    let mut s = connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(
        exchange(&mut s, false)
            .unwrap_or_else(|f| panic!("{}", f.why))
            .who,
        "x"
    );
    p.stop(Signal::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    p.assert_exits(0, HANG, "SIGTERM");
}

// ---------------------------------------------------------------------------
// What a stopping --reuseport server does with its accept queue
// ---------------------------------------------------------------------------

/// A connection that sits in the accept queue, its request sent, when the
/// server stops, is accepted and answered (with `Connection: close`), not
/// reset with the listener: the stop drains the queue, and the request
/// already in the socket is read although the stop came first.
/// A server like `zcserve --threads 1` over `root` on a port of its own,
/// bound on a current-thread runtime but not yet serving.
struct OneThread {
    rt: tokio::runtime::Runtime,
    server: zcserve::server::Server,
    addr: SocketAddr,
}

impl OneThread {
    /// Binds with `settings` (whose root, listen address, threads and
    /// access log this sets).
    fn bind(root: &Path, settings: zcserve::config::Settings) -> OneThread {
        let settings = zcserve::config::Settings {
            root: root.to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            threads: 1,
            access_log: zcserve::config::AccessLog::Off,
            ..settings
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = {
            let _in = rt.enter();
            zcserve::server::Server::bind(&settings).unwrap()
        };
        let addr = server.local_addrs()[0];
        OneThread { rt, server, addr }
    }

    /// Serves on a thread of its own until `stop` completes and the
    /// server has stopped.
    fn serve_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let OneThread { rt, server, .. } = self;
        std::thread::spawn(move || rt.block_on(server.run(stop)))
    }
}

#[test]
fn a_connection_queued_at_the_stop_is_answered() {
    let root = root_of("queued");
    let server = OneThread::bind(
        root.path(),
        zcserve::config::Settings {
            reuseport: true,
            ..zcserve::config::Settings::default()
        },
    );
    let addr = server.addr;
    // Queued before the server ever accepts: the kernel completed the
    // handshake and holds the request.
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(addr).unwrap()).collect();
    for c in &mut clients {
        c.write_all(b"GET /who HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    // The stop is there from the start.
    let served = server.serve_until(async {});
    for mut c in clients {
        let a = read_response(&mut c).unwrap_or_else(|f| panic!("{}", f.why));
        assert_eq!(a.who, "queued");
        assert!(a.close, "a stopping server must announce its close");
    }
    served.join().unwrap();
}

/// A connection accepted before the stop whose client has not sent its
/// first request yet is not idle but new: the stop closes the idle
/// keep-alive connection at once, yet keeps the new one open (its header
/// timeout still runs) and answers the request that comes after the stop,
/// with `Connection: close`, instead of resetting it. Under `--reuseport`
/// the deferred accept makes such a connection rare (accepted as its
/// request arrives, whose bytes may not be on the socket yet when the stop
/// looks: the two-process test's rare "fresh connection ... reset"), so
/// this test makes it certain: without `--reuseport` a connection is
/// accepted before it sends anything.
#[test]
fn a_new_connection_gets_its_first_request_answered_after_the_stop() {
    let root = root_of("new");
    let server = OneThread::bind(
        root.path(),
        zcserve::config::Settings {
            // Far beyond anything the test waits for: only the stop could
            // close the new connection.
            header_timeout: std::time::Duration::from_secs(600),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..zcserve::config::Settings::default()
        },
    );
    let addr = server.addr;
    let metrics = server.server.metrics_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = server.serve_until(async {
        let _ = stopped.await;
    });
    // An idle keep-alive connection, and a new one with nothing sent.
    let mut idle = connect(addr).unwrap();
    let a = exchange(&mut idle, true).unwrap_or_else(|f| panic!("{}", f.why));
    assert!(!a.close);
    let mut new = connect(addr).unwrap();
    // The server says when it has accepted it.
    wait_for("the new connection to be accepted", || {
        metric(metrics, "zcserve_open_connections") == 2.0
    });
    stop.send(()).unwrap();
    // The stop has reached the connections when the idle one is closed,
    // and the listener is closed.
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    wait_for("the listener to close", || listeners_on(addr.port()) == 0);
    assert!(
        !served.is_finished(),
        "the server stopped with a new connection open"
    );
    // The new connection stays open: for a while nothing arrives on it,
    // neither bytes nor the end of the stream a close would send.
    let mut fds = [nix::poll::PollFd::new(
        new.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap();
    assert_eq!(ready, 0, "the new connection was closed at the stop");
    let a = exchange(&mut new, true).unwrap_or_else(|f| panic!("{}", f.why));
    assert_eq!(a.who, "new");
    assert!(a.close, "a stopping server must announce its close");
    served.join().unwrap();
}
