//! The counters tell the truth: zero-copy backends report no byte through
//! user space, copy reports every byte twice (in and out), syscall counts
//! follow from the sizes, and every backend's syscall counts equal what
//! `strace` sees it make (`counters_match_strace`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, Snapshot, Syscall, blocking};
use zcserve_tests::{Driver, Link, STALL, SockKind, Speed, TempDir, TestFile, strace, transfer};

const LEN: u64 = 1 << 20;
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";

/// The counters of one 1 MiB transfer with a head, the session dropped.
fn one(backend: Backend, config: &Config) -> Snapshot {
    let file = TestFile::random(LEN as usize, 11);
    let t = backend.build(config).unwrap();
    let before = t.stats().snapshot();
    let out = transfer(
        t.as_ref(),
        &file,
        ByteRange::full(LEN),
        HEAD,
        Link::new(SockKind::Tcp, None),
        Speed::Fast,
        Driver::Blocking,
    );
    assert_eq!(out.result.unwrap(), LEN + HEAD.len() as u64);
    let d = t.stats().snapshot().since(&before);
    assert_eq!(
        (d.body_bytes, d.prefix_bytes),
        (LEN, HEAD.len() as u64),
        "{backend}"
    );
    assert_eq!(
        (d.sessions_started, d.sessions_completed, d.sessions_failed),
        (1, 1, 0)
    );
    d
}

#[test]
fn sendfile_copies_nothing_through_user_space() {
    let d = one(Backend::Sendfile, &Config::default());
    assert_eq!((d.copied_in, d.copied_out), (0, 0));
    // The head goes out with send(MSG_MORE), the body in sendfile calls of
    // at most max_chunk, one more after each would-block.
    assert_eq!(d.syscalls(Syscall::Send), 1);
    let calls = d.syscalls(Syscall::Sendfile);
    let budgets = LEN.div_ceil(Config::default().max_chunk as u64);
    assert!(calls >= budgets && calls <= budgets + d.would_block, "{d}");
    assert_eq!(
        d.syscalls(Syscall::Pread) + d.syscalls(Syscall::Splice) + d.syscalls(Syscall::Mmap),
        0
    );
}

#[test]
fn splice_copies_nothing_through_user_space() {
    let cfg = Config {
        pipe_size: 64 << 10,
        ..Config::default()
    };
    let d = one(Backend::Splice, &cfg);
    assert_eq!((d.copied_in, d.copied_out), (0, 0));
    // Sixteen pipe-fulls in, at least sixteen splices out; the pool's pipe
    // was made when the backend was built, not per transfer.
    let calls = d.syscalls(Syscall::Splice);
    assert!(calls >= 32 && calls <= 32 + d.would_block, "{d}");
    assert_eq!(d.syscalls(Syscall::Pipe), 0, "{d}");
    assert_eq!(d.syscalls(Syscall::Send), 1);
}

#[test]
fn mmap_copies_out_of_the_mapping_only() {
    let d = one(Backend::Mmap, &Config::default());
    assert_eq!((d.copied_in, d.copied_out), (0, LEN));
    assert_eq!(
        (
            d.syscalls(Syscall::Mmap),
            d.syscalls(Syscall::Madvise),
            d.syscalls(Syscall::Munmap)
        ),
        (1, 1, 1),
        "{d}"
    );
    // Head and first body bytes share one sendmsg.
    assert!(d.syscalls(Syscall::Sendmsg) >= 1, "{d}");
    assert_eq!(d.syscalls(Syscall::Pread), 0);
}

#[test]
fn uring_copies_nothing_through_user_space() {
    if !zcserve_tests::under_test(Backend::Uring) {
        return;
    }
    let d = one(Backend::Uring, &Config::default());
    assert_eq!((d.copied_in, d.copied_out), (0, 0));
    // The kernel splices inside the ring: no splice, pread or sendfile from
    // user space, and at least one submission per chain of max_chunk.
    assert_eq!(
        d.syscalls(Syscall::Splice) + d.syscalls(Syscall::Pread) + d.syscalls(Syscall::Sendfile),
        0,
        "{d}"
    );
    let chains = LEN.div_ceil(Config::default().max_chunk as u64);
    assert!(d.syscalls(Syscall::UringEnter) >= chains, "{d}");
    // The ring and pipe made when the backend was built serve the session.
    assert_eq!(
        (d.syscalls(Syscall::UringSetup), d.syscalls(Syscall::Pipe)),
        (0, 0),
        "{d}"
    );
    assert_eq!(d.syscalls(Syscall::Send), 1, "{d}");
}

#[test]
fn copy_copies_every_byte_in_and_out() {
    let cfg = Config {
        buffer_size: 64 << 10,
        ..Config::default()
    };
    let d = one(Backend::Copy, &cfg);
    assert_eq!((d.copied_in, d.copied_out), (LEN, LEN));
    assert_eq!(d.syscalls(Syscall::Pread), 16, "{d}");
    // The first chunk leaves with the head in one sendmsg; the rest in
    // sends, at least one per chunk.
    assert_eq!(d.syscalls(Syscall::Sendmsg), 1, "{d}");
    assert!(d.syscalls(Syscall::Send) >= 15, "{d}");
}

/// Set in the child that [`counters_match_strace`] runs under strace: the
/// backend to run.
const CHILD: &str = "ZCSERVE_STRACE_CHILD";
/// Where that child writes its counters.
const CHILD_OUT: &str = "ZCSERVE_STRACE_OUT";
/// How many sessions the child runs in its window.
const SESSIONS: u64 = 4;

/// Every backend's syscall counters equal what `strace -f` saw the same
/// sessions make, kind by kind: the count a backend keeps of itself is held
/// against one it cannot influence. A call the backend makes without
/// counting it shows as a difference (or, for a kind no counter has, by
/// name), so this fails on an uncounted call.
///
/// The test runs itself again as a child under strace, which makes files
/// and sockets first and then, inside a window it marks on its own thread,
/// builds the backend, runs [`SESSIONS`] sessions (one whole, one on a file
/// truncated under it, one through a tiny socket to a slow reader, one to a
/// peer that has gone) and drops the backend. Start-up, set-up and the
/// reader threads stay out of the comparison.
#[test]
fn counters_match_strace() {
    if let Ok(name) = std::env::var(CHILD) {
        let out = std::env::var_os(CHILD_OUT).expect("ZCSERVE_STRACE_OUT");
        return child(name.parse().expect("backend name"), out.as_ref());
    }
    if !strace_runs() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let (mut table, mut wrong) = (Vec::new(), Vec::new());
    for backend in zcserve_tests::backends_under_test() {
        let dir = TempDir::new();
        let (trace, counts) = (dir.path().join("trace"), dir.path().join("counts"));
        let run = Command::new("strace")
            .args(["-f", "-qq", "-e", "signal=none", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&exe)
            .args([
                "counters_match_strace",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, backend.name())
            .env(CHILD_OUT, &counts)
            .output()
            .expect("run strace");
        assert!(
            run.status.success(),
            "{backend}: the child under strace failed: {}\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        let stats = read_counts(&counts);
        assert_eq!(
            stats.get("sessions"),
            Some(&SESSIONS),
            "{backend}: sessions the child ran"
        );
        let log = std::fs::read_to_string(&trace).unwrap();
        let calls = strace::parse(&log);
        let window = strace::Window::find(&calls).unwrap_or_else(|e| panic!("{backend}: {e}"));
        let seen = strace::tally(&calls, &window);
        let mut made = 0;
        for kind in Syscall::ALL {
            let (counted, traced) = (stats.get(kind.name()).copied().unwrap_or(0), seen.of(kind));
            made += traced;
            if counted != 0 || traced != 0 {
                table.push(format!(
                    "{:>8} {:<17} stats {counted:>4}  strace {traced:>4}",
                    backend.name(),
                    kind.name()
                ));
            }
            if counted != traced {
                wrong.push(format!(
                    "{backend}: {kind}: counted {counted}, strace saw {traced}"
                ));
            }
        }
        for (name, n) in &seen.unknown {
            table.push(format!(
                "{:>8} {name:<17} no counter  strace {n:>4}",
                backend.name()
            ));
            wrong.push(format!(
                "{backend}: {n} {name} call(s) that no counter can show"
            ));
        }
        table.push(format!("{backend:>8} (left out: {:?})", seen.left_out));
        assert!(
            made > 0,
            "{backend}: strace saw no transfer call in the window"
        );
    }
    let table = table.join("\n");
    println!("{table}");
    assert!(wrong.is_empty(), "{}\n\n{table}", wrong.join("\n"));
}

/// Whether strace can trace here; if not, the skip policy decides.
fn strace_runs() -> bool {
    let why = match Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "--", "true"])
        .output()
    {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!(
            "strace cannot trace ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("strace is not installed ({e}); apt-get install strace"),
    };
    zcserve_tests::skip_or_fail("strace", &why);
    false
}

fn read_counts(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// The traced half. The window spans the backend's whole life, built,
/// used and dropped, because its counters cover all of it (the SIGPIPE
/// check and io_uring's probe when built, pools filled by sessions and
/// emptied on drop); files, sockets and reader threads are made before the
/// window opens and go after it closes.
fn child(backend: Backend, out: &Path) {
    let whole = TestFile::random(LEN as usize, 21);
    let small = TestFile::random(300_000, 22);
    let shrinking = TestFile::random(64 << 10, 23);
    let (whole_src, small_src, shrinking_src) =
        (whole.source(), small.source(), shrinking.source());
    OpenOptions::new()
        .write(true)
        .open(&shrinking.path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let fast = Link::new(SockKind::Tcp, None).read_all(Speed::Fast);
    let short = Link::new(SockKind::Tcp, None).read_all(Speed::Fast);
    let slow = Link::new(SockKind::Unix, Some(4096)).read_all(Speed::Slow {
        chunk: 4096,
        pause_us: 50,
    });
    let gone = Link::new(SockKind::Unix, Some(4096));
    drop(gone.recv);
    let inner = ByteRange::new(1000, 299_000).unwrap();

    // The availability probe (io_uring's makes a ring of its own) runs once
    // per process and is nobody's backend: out of the window.
    let _ = backend.check();
    strace::mark(strace::BEGIN);
    // Nothing that makes a call (a panic's message, say) may run between
    // the marks but the backend's work, hence no unwrap before the end.
    let built = backend.build(&Config::default());
    let stats = built.as_ref().ok().map(|t| t.stats().clone());
    // The failed session comes second, so that the third finds no pipe,
    // buffer or ring to reuse (a failed session's may hold bytes of its
    // own) and makes a new one.
    let results = built.map(|t| {
        [
            (&whole_src, ByteRange::full(LEN), &fast.0),
            (&shrinking_src, ByteRange::full(64 << 10), &short.0),
            (&small_src, inner, &slow.0),
            (&whole_src, ByteRange::full(LEN), &gone.send),
        ]
        .map(|(source, range, sock)| {
            let mut s = t.start(source, range, HEAD.to_vec())?;
            blocking::send_all(s.as_mut(), sock.as_fd(), Some(STALL))
        })
    });
    strace::mark(strace::END);

    let d = stats.expect("built").snapshot();
    let [whole_r, shrunk_r, small_r, gone_r] = results.unwrap();
    assert_eq!(whole_r.unwrap(), LEN + HEAD.len() as u64);
    assert!(shrunk_r.unwrap_err().is_file_shrank());
    assert_eq!(small_r.unwrap(), inner.len() + HEAD.len() as u64);
    assert!(gone_r.unwrap_err().is_peer_gone());
    for (sock, reader) in [fast, short, slow] {
        drop(sock);
        reader.finish().unwrap();
    }
    let mut lines = format!("sessions {}\n", d.sessions_started);
    for kind in Syscall::ALL {
        lines += &format!("{} {}\n", kind.name(), d.syscalls(kind));
    }
    std::fs::write(out, lines).unwrap();
}
