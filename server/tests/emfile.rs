//! Running out of descriptors: with `RLIMIT_NOFILE` set low, more clients
//! than descriptors make `accept` fail with EMFILE. The server must log it,
//! back off instead of spinning, keep its open connections working, and
//! serve again once clients leave.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn emfile_on_accept_backs_off_and_recovers() {
    let root = TempDir::new();
    std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zcserve"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--access-log",
        "off",
        "--root",
    ])
    .arg(root.path())
    .env("ZCSERVE_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: between fork and exec only setrlimit runs, which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Server(cmd.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), l));
        }
    });

    assert!(get(addr).unwrap().starts_with(b"HTTP/1.1 200"));
    // Hold more idle connections than the server has descriptors left.
    let held: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let warnings: Vec<(Instant, String)> = rx
        .try_iter()
        .filter(|(_, l)| l.contains("accept failed"))
        .collect();
    assert!(!warnings.is_empty(), "no accept failure logged");
    assert!(
        warnings
            .iter()
            .any(|(_, l)| l.contains("Too many open files")),
        "{warnings:?}"
    );
    // Backing off (100 ms) rather than spinning: a handful of lines a second.
    assert!(
        warnings.len() <= 30,
        "{} accept failures logged in 1.5 s: spinning",
        warnings.len()
    );

    // Clients leave; the server serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(out) = get(addr)
            && out.starts_with(b"HTTP/1.1 200")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not recover from EMFILE"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.0.try_wait().unwrap().is_none(), "server exited");
}
