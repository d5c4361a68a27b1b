//! Running out of descriptors: with `RLIMIT_NOFILE` set low, more clients
//! than descriptors make `accept` fail with EMFILE. The server must log it,
//! stay up, and serve again once clients leave. (Backing off rather than
//! spinning is tested in `emfile_backoff.rs`, where time can be paused.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

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
    s.set_read_timeout(Some(HANG))?;
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn emfile_on_accept_is_logged_and_recovered_from() {
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
            let _ = tx.send(l);
        }
    });

    assert!(get(addr).unwrap().starts_with(b"HTTP/1.1 200"));
    // Hold more idle connections than the server has descriptors left,
    // until it logs that accepting failed for want of descriptors. (That
    // it then backs off instead of spinning is `emfile_backoff.rs`'s
    // business, on paused time.)
    let held: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut seen = Vec::new();
    let warning = loop {
        match rx.recv_timeout(HANG) {
            Ok(l) if l.contains("accept failed") => break l,
            Ok(l) => seen.push(l),
            Err(e) => panic!("no accept failure logged within {HANG:?} ({e}); stderr: {seen:?}"),
        }
    };
    assert!(warning.contains("Too many open files"), "{warning}");

    // Clients leave; the server serves again.
    drop(held);
    wait_for("the server serving again after EMFILE", || {
        get(addr).is_ok_and(|out| out.starts_with(b"HTTP/1.1 200"))
    });
    assert!(child.0.try_wait().unwrap().is_none(), "server exited");
}
