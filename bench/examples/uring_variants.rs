//! Experiment for issue 4: which io_uring design moves a file into a TCP
//! socket best on this kernel?
//!
//! ```text
//! cargo run --release -p zcserve-bench --example uring_variants -- SIZE_BYTES SECONDS [ROUNDS]
//! taskset -c 0 cargo run ...   # sender, io-wq workers and reader on one CPU
//! UV_ONLY=sendfile,read+send cargo run ...   # only these variants (to profile)
//! UV_PIPE_KIB=256 cargo run ...   # the splice chain's pipe size (default 1 MiB)
//! UV_NBUF=4 UV_BUF_KIB=64 cargo run ...   # read+send(_zc) buffers (default 4 x 256 KiB)
//! ```
//!
//! A pipe larger than `/proc/sys/fs/pipe-max-size` may be refused; the
//! backend then keeps the kernel's 64 KiB pipe (the verify line's `pending`
//! count shows how many chains a file took).
//!
//! A file of `SIZE_BYTES` xorshift bytes is written to `/tmp`, synced (so no
//! writeback runs during the measurement) and kept warm in the page cache.
//! One loopback TCP connection (`TCP_NODELAY`, sending end non-blocking as
//! in the server) carries every transfer; a reader thread drains it with
//! blocking `read`s into a reusable buffer. Each variant sends the *whole*
//! file, again and again, for `SECONDS / ROUNDS` per round; the variants
//! take turns within each round (order rotated each round), `ROUNDS`
//! (default 5) rounds in all. Variants:
//!
//! - `splice-chain`: zcserve's `uring` backend (linked `SPLICE` file -> pipe
//!   -> socket chains), one session per file, run by `blocking::send_all`.
//! - `read+send_zc`: a ring with 4 x 256 KiB registered buffers (env
//!   `UV_NBUF`, `UV_BUF_KIB` change that);
//!   `READ_FIXED` into a free buffer, then `SEND_ZC` from it with
//!   `IORING_RECVSEND_FIXED_BUF`. A buffer is free again only after the
//!   notification CQE of every send from it. Reads run ahead into every
//!   free buffer; sends are issued one at a time, in file order, because
//!   two sends in flight on one stream socket may interleave their bytes
//!   after a short send.
//! - `read+send`: the same with plain `SEND`; a buffer is free at the
//!   send's only CQE.
//! - `sendfile`: zcserve's `sendfile` backend, for reference.
//!
//! A round's time runs from just before its first file until the reader
//! confirms it holds every byte of the last one. Per variant it prints
//! GB/s (10^9 bytes) median and range over the rounds, and CPU seconds per
//! GB: the sending thread alone (`RUSAGE_THREAD`); the whole process minus
//! the reader thread (`RUSAGE_SELF` minus the reader's `RUSAGE_THREAD`:
//! this adds the io-wq workers that run the punted `SPLICE`s); the reader
//! thread; the `ksoftirqd` threads (loopback's receive path runs in
//! softirq, which may land there); and process + ksoftirqd, the closest to
//! "all the CPU this transfer cost". Last, the reader's mean KiB per
//! `read`: 256 means the receive queue was always backed up. Before
//! timing, one pass per variant is verified: the reader hashes what arrived
//! (FNV-1a) and it must equal the file's hash; that pass also prints the
//! variant's counters for one file.
//!
//! Copies of each byte on loopback: `splice-chain` and `sendfile` one (the
//! reader's `recv` out of page-cache pages hung on the skbs); `read+send`
//! three (`READ` into the buffer, `SEND` into the skb, `recv`);
//! `read+send_zc` also three: the receive path copies zero-copy frags
//! before queueing them (`skb_orphan_frags_rx`), which the `copied` count
//! of `IORING_SEND_ZC_REPORT_USAGE` notifications shows. This measures what
//! each design costs here, not what it would save on a real NIC.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, types};
use zcserve_backends::{Backend, Config};
use zcserve_core::{ByteRange, Snapshot, Source, Transfer, blocking};

/// Registered buffers per ring (`UV_NBUF` overrides; at most 16).
const NBUF: usize = 4;
/// Size of each registered buffer (`UV_BUF_KIB` overrides, in KiB).
const BUF: usize = 256 << 10;
/// The reader's receive buffer.
const READ_BUF: usize = 256 << 10;
/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h): the
/// notification's `res` says whether the kernel had to copy.
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's `res` when some
/// of the send's data was copied instead of sent from our pages.
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `user_data` kinds; the low 16 bits hold the buffer index.
const OP_READ: u64 = 1 << 16;
const OP_SEND: u64 = 2 << 16;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: uring_variants SIZE_BYTES SECONDS [ROUNDS]");
        std::process::exit(2);
    }
    let size: u64 = args[0].parse().expect("SIZE_BYTES");
    let seconds: f64 = args[1].parse().expect("SECONDS");
    let rounds: usize = args.get(2).map_or(5, |r| r.parse().expect("ROUNDS"));
    assert!(size > 0 && rounds > 0 && seconds > 0.0);
    let segment = Duration::from_secs_f64(seconds / rounds as f64);

    let (file, file_hash) = make_file(size);
    let source = Source::new(file.clone()).expect("file length");
    let conn = Conn::new();

    // UV_PIPE_KIB sizes the splice chain's pipe (and so its longest chain).
    let uring_config = match std::env::var("UV_PIPE_KIB") {
        Ok(kib) => {
            let pipe_size = kib.parse::<usize>().expect("UV_PIPE_KIB") << 10;
            Config {
                pipe_size,
                max_chunk: pipe_size.max(Config::default().max_chunk),
                ..Config::default()
            }
        }
        Err(_) => Config::default(),
    };
    let mut variants: Vec<Variant> = vec![
        Variant::Backend(
            "splice-chain",
            Backend::Uring.build(&uring_config).expect("uring backend"),
        ),
        Variant::Rw(Box::new(RwSender::new(true))),
        Variant::Rw(Box::new(RwSender::new(false))),
        Variant::Backend(
            "sendfile",
            Backend::Sendfile
                .build(&Config::default())
                .expect("sendfile backend"),
        ),
    ];

    // UV_ONLY=name,name keeps only those variants (for profiling one).
    if let Ok(only) = std::env::var("UV_ONLY") {
        variants.retain(|v| only.split(',').any(|n| n == v.name()));
        assert!(!variants.is_empty(), "UV_ONLY={only} matches no variant");
    }

    println!(
        "size {size} B ({:.2} MiB), {rounds} rounds x {:.2} s per variant, read+send buffers {}, CPUs allowed {}, loadavg {}",
        size as f64 / (1 << 20) as f64,
        segment.as_secs_f64(),
        variants
            .iter()
            .find_map(|v| match v {
                Variant::Rw(rw) => Some(format!("{} x {} KiB", rw.nbuf, rw.buf_len >> 10)),
                Variant::Backend(..) => None,
            })
            .unwrap_or_else(|| "-".into()),
        allowed_cpus(),
        loadavg()
    );

    // One verified pass per variant (also the warm-up).
    for v in &mut variants {
        let before = v.snapshot();
        conn.drain(size, true);
        v.send_file(&source, conn.sock.as_fd());
        let reply = conn.report();
        let ok = reply.hashes == [file_hash];
        println!(
            "verify {:<13} {} ({} per file: {})",
            v.name(),
            if ok { "ok" } else { "MISMATCH" },
            v.name(),
            v.describe_since(&before)
        );
        assert!(ok, "{}: received bytes differ from the file", v.name());
    }

    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            let s = run_segment(&mut variants[i], &conn, &source, segment);
            results[i].push(s);
        }
    }

    println!(
        "{:<13} {:>19} {:>20} {:>20} {:>20} {:>20} {:>20} {:>18} {:>5}",
        "variant",
        "GB/s med (min-max)",
        "CPU s/GB: sender-thr",
        "process-reader",
        "reader-thr",
        "ksoftirqd",
        "process+ksoftirqd",
        "reader KiB/read",
        "files"
    );
    for (v, samples) in variants.iter().zip(&results) {
        let gbps: Vec<f64> = samples.iter().map(|s| s.gb() / s.secs).collect();
        let kib_per_read: Vec<f64> = samples
            .iter()
            .map(|s| s.bytes as f64 / 1024.0 / s.reader_reads.max(1) as f64)
            .collect();
        let per_gb =
            |f: fn(&Sample) -> f64| -> Vec<f64> { samples.iter().map(|s| f(s) / s.gb()).collect() };
        println!(
            "{:<13} {:>19} {:>20} {:>20} {:>20} {:>20} {:>20} {:>18} {:>5}",
            v.name(),
            summary(&gbps, 2),
            summary(&per_gb(|s| s.sender_cpu), 3),
            summary(&per_gb(|s| s.proc_cpu - s.reader_cpu), 3),
            summary(&per_gb(|s| s.reader_cpu), 3),
            summary(&per_gb(|s| s.softirqd_cpu), 3),
            summary(&per_gb(|s| s.proc_cpu + s.softirqd_cpu), 3),
            summary(&kib_per_read, 0),
            samples.iter().map(|s| s.files).sum::<u64>()
        );
    }
    for v in &variants {
        if let Variant::Rw(rw) = v {
            println!("counters {:<13} all passes: {}", v.name(), rw.counters);
        }
    }
    println!("loadavg at end {}", loadavg());
    drop(variants);
    conn.finish();
}

/// One timed round of one variant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    bytes: u64,
    files: u64,
    secs: f64,
    sender_cpu: f64,
    proc_cpu: f64,
    reader_cpu: f64,
    reader_reads: u64,
    softirqd_cpu: f64,
}

impl Sample {
    fn gb(&self) -> f64 {
        self.bytes as f64 / 1e9
    }
}

fn run_segment(v: &mut Variant, conn: &Conn, source: &Source, segment: Duration) -> Sample {
    let len = source.len();
    let r0 = conn.report();
    let s0 = cpu_time(libc::RUSAGE_THREAD);
    let p0 = cpu_time(libc::RUSAGE_SELF);
    let k0 = ksoftirqd_time();
    let t0 = Instant::now();
    let mut files = 0u64;
    while files == 0 || t0.elapsed() < segment {
        conn.drain(len, false);
        v.send_file(source, conn.sock.as_fd());
        files += 1;
    }
    let r1 = conn.report();
    let secs = t0.elapsed().as_secs_f64();
    let s1 = cpu_time(libc::RUSAGE_THREAD);
    let p1 = cpu_time(libc::RUSAGE_SELF);
    let k1 = ksoftirqd_time();
    Sample {
        bytes: files * len,
        files,
        secs,
        sender_cpu: s1 - s0,
        proc_cpu: p1 - p0,
        reader_cpu: r1.cpu - r0.cpu,
        reader_reads: r1.reads - r0.reads,
        softirqd_cpu: k1 - k0,
    }
}

/// CPU seconds of every `ksoftirqd/N` thread so far (tick resolution).
///
/// Loopback runs the receiving half of TCP in softirq context: in the
/// sending thread (charged to it, this kernel has no
/// `CONFIG_IRQ_TIME_ACCOUNTING`), in the reader when it holds the socket
/// lock, or, once softirqs pile up, in `ksoftirqd`, which no `getrusage`
/// of ours sees. Other processes' softirqs land there too.
fn ksoftirqd_time() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        let path = entry.path();
        let is_softirqd =
            std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.starts_with("ksoftirqd/"));
        if !is_softirqd {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / tick
}

/// `median (min-max)`.
fn summary(v: &[f64], digits: usize) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let med = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    format!(
        "{med:.digits$} ({:.digits$}-{:.digits$})",
        s[0],
        s[s.len() - 1]
    )
}

/// User plus system CPU seconds of `who` (`RUSAGE_THREAD` or `RUSAGE_SELF`).
fn cpu_time(who: libc::c_int) -> f64 {
    let mut ru: libc::rusage = {
        // SAFETY: `rusage` is plain integers and timevals; all-zero is a
        // valid value.
        unsafe { std::mem::zeroed() }
    };
    // SAFETY: `ru` is a valid, writable rusage that outlives the call.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", io::Error::last_os_error());
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn allowed_cpus() -> String {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("? ({e})"),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, streaming: feed chunks in order.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes `size` pseudo-random bytes to a file in /tmp, syncs it, opens it
/// for reading and unlinks it. Returns the open file and its hash.
fn make_file(size: u64) -> (Arc<File>, u64) {
    let path = std::env::temp_dir().join(format!("zc-uring-variants-{}.bin", std::process::id()));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create the test file");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut hash = FNV_OFFSET;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        for word in chunk[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        hash = fnv1a(hash, &chunk[..n]);
        out.write_all(&chunk[..n]).expect("write the test file");
        left -= n as u64;
    }
    out.sync_all().expect("sync the test file");
    drop(out);
    let file = File::open(&path).expect("open the test file");
    std::fs::remove_file(&path).expect("unlink the test file");
    // Read it once so every page is cached (it was just written, but a
    // synced page may have been dropped under memory pressure).
    let mut warm = vec![0u8; 1 << 20];
    let mut f = &file;
    while f.read(&mut warm).expect("read the test file") > 0 {}
    (Arc::new(file), hash)
}

/// What the reader is asked to do, in order.
enum Cmd {
    /// Read exactly `len` bytes; hash them if `verify`.
    Drain { len: u64, verify: bool },
    /// Reply with the hashes since the last report and the thread's CPU.
    Report,
}

struct Reply {
    hashes: Vec<u64>,
    cpu: f64,
    /// `read` calls that returned data, since the reader started.
    reads: u64,
}

/// The loopback connection and its reader thread.
struct Conn {
    sock: TcpStream,
    cmds: Sender<Cmd>,
    replies: Receiver<Reply>,
    reader: thread::JoinHandle<()>,
}

impl Conn {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let sock = TcpStream::connect(listener.local_addr().expect("local addr"))
            .expect("connect over loopback");
        let (peer, _) = listener.accept().expect("accept");
        sock.set_nodelay(true).expect("TCP_NODELAY");
        sock.set_nonblocking(true).expect("non-blocking socket");
        let (cmds, cmd_rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("uv-reader".into())
            .spawn(move || reader(peer, &cmd_rx, &reply_tx))
            .expect("spawn the reader");
        Self {
            sock,
            cmds,
            replies,
            reader,
        }
    }

    fn drain(&self, len: u64, verify: bool) {
        self.cmds
            .send(Cmd::Drain { len, verify })
            .expect("reader is gone");
    }

    fn report(&self) -> Reply {
        self.cmds.send(Cmd::Report).expect("reader is gone");
        self.replies.recv().expect("reader is gone")
    }

    fn finish(self) {
        drop(self.cmds);
        drop(self.sock);
        self.reader.join().expect("reader panicked");
    }
}

fn reader(mut peer: TcpStream, cmds: &Receiver<Cmd>, replies: &Sender<Reply>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut hashes = Vec::new();
    let mut reads = 0u64;
    while let Ok(cmd) = cmds.recv() {
        match cmd {
            Cmd::Drain { len, verify } => {
                let mut h = FNV_OFFSET;
                let mut left = len;
                while left > 0 {
                    let want = left.min(READ_BUF as u64) as usize;
                    match peer.read(&mut buf[..want]) {
                        Ok(0) => panic!("connection closed with {left} bytes missing"),
                        Ok(n) => {
                            if verify {
                                h = fnv1a(h, &buf[..n]);
                            }
                            left -= n as u64;
                            reads += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => panic!("read: {e}"),
                    }
                }
                if verify {
                    hashes.push(h);
                }
            }
            Cmd::Report => {
                let reply = Reply {
                    hashes: std::mem::take(&mut hashes),
                    cpu: cpu_time(libc::RUSAGE_THREAD),
                    reads,
                };
                if replies.send(reply).is_err() {
                    return;
                }
            }
        }
    }
}

enum Variant {
    /// A zcserve backend, one session per file.
    Backend(&'static str, Arc<dyn Transfer>),
    /// READ_FIXED + SEND or SEND_ZC on our own ring.
    Rw(Box<RwSender>),
}

impl Variant {
    fn name(&self) -> &'static str {
        match self {
            Variant::Backend(name, _) => name,
            Variant::Rw(rw) if rw.zc => "read+send_zc",
            Variant::Rw(_) => "read+send",
        }
    }

    fn send_file(&mut self, source: &Source, sock: BorrowedFd<'_>) {
        match self {
            Variant::Backend(name, t) => {
                let len = source.len();
                let mut session = t
                    .start(source, ByteRange::full(len), Vec::new())
                    .unwrap_or_else(|e| panic!("{name}: start: {e}"));
                let sent = blocking::send_all(session.as_mut(), sock, None)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(sent, len, "{name} sent the wrong count");
            }
            Variant::Rw(rw) => rw.send_file(source.file(), source.len(), sock.as_raw_fd()),
        }
    }

    fn snapshot(&self) -> Before {
        match self {
            Variant::Backend(_, t) => Before::Stats(t.stats().snapshot()),
            Variant::Rw(rw) => Before::Counters(rw.counters),
        }
    }

    fn describe_since(&self, before: &Before) -> String {
        match (self, before) {
            (Variant::Backend(_, t), Before::Stats(s)) => t.stats().snapshot().since(s).to_string(),
            (Variant::Rw(rw), Before::Counters(c)) => rw.counters.since(c).to_string(),
            _ => unreachable!(),
        }
    }
}

enum Before {
    Stats(Snapshot),
    Counters(Counters),
}

/// What the READ + SEND(_ZC) loop did.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    enters: u64,
    reads: u64,
    short_reads: u64,
    sends: u64,
    short_sends: u64,
    eagain: u64,
    notifs: u64,
    notifs_copied: u64,
}

impl Counters {
    fn since(&self, e: &Counters) -> Counters {
        Counters {
            enters: self.enters - e.enters,
            reads: self.reads - e.reads,
            short_reads: self.short_reads - e.short_reads,
            sends: self.sends - e.sends,
            short_sends: self.short_sends - e.short_sends,
            eagain: self.eagain - e.eagain,
            notifs: self.notifs - e.notifs,
            notifs_copied: self.notifs_copied - e.notifs_copied,
        }
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "io_uring_enter {}, reads {} ({} short), sends {} ({} short, {} EAGAIN), notifications {} ({} say copied)",
            self.enters,
            self.reads,
            self.short_reads,
            self.sends,
            self.short_sends,
            self.eagain,
            self.notifs,
            self.notifs_copied
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// A READ_FIXED is in flight.
    Reading,
    /// Holds file bytes not yet all sent; no send in flight.
    Ready,
    /// A send is in flight.
    Sending,
    /// Everything sent; waiting for SEND_ZC notifications.
    Notif,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: State,
    /// File offset of the buffer's first byte.
    off: u64,
    /// Bytes this buffer is to carry.
    len: usize,
    /// Bytes read so far.
    filled: usize,
    /// Bytes sent so far.
    sent: usize,
    /// SEND_ZC completions with `F_MORE` minus notifications seen.
    notifs: i32,
}

const FREE: Slot = Slot {
    state: State::Free,
    off: 0,
    len: 0,
    filled: 0,
    sent: 0,
    notifs: 0,
};

/// A ring with `nbuf` registered buffers of `buf_len` bytes that sends
/// files with READ_FIXED followed by SEND_ZC (`zc`) or SEND.
struct RwSender {
    ring: IoUring,
    nbuf: usize,
    buf_len: usize,
    /// Start of `nbuf * buf_len` bytes, allocated once and never freed, so the
    /// memory outlives every operation the kernel may still run on it, even
    /// if this sender were dropped with work in flight.
    base: *mut u8,
    zc: bool,
    counters: Counters,
    /// Completions of one `io_uring_enter`, reused.
    cqes: Vec<cqueue::Entry>,
}

impl RwSender {
    fn new(zc: bool) -> Self {
        let knob = |name: &str, default: usize| {
            std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
        };
        let nbuf = knob("UV_NBUF", NBUF);
        let buf_len = knob("UV_BUF_KIB", BUF >> 10) << 10;
        assert!((1..=16).contains(&nbuf) && buf_len > 0 && buf_len <= u32::MAX as usize);
        let ring = IoUring::new(32).expect("io_uring_setup");
        let layout = std::alloc::Layout::from_size_align(nbuf * buf_len, 4096).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!base.is_null(), "out of memory");
        let iovecs: Vec<libc::iovec> = (0..nbuf)
            .map(|i| libc::iovec {
                iov_base: base.wrapping_add(i * buf_len).cast(),
                iov_len: buf_len,
            })
            .collect();
        // SAFETY: each iovec lies inside the allocation above, which is
        // never freed: it stays valid for as long as the ring (or the
        // process) exists, which is what registered buffers require.
        unsafe { ring.submitter().register_buffers(&iovecs) }.expect("register_buffers");
        Self {
            ring,
            nbuf,
            buf_len,
            base,
            zc,
            counters: Counters::default(),
            cqes: Vec::with_capacity(64),
        }
    }

    fn buf(&self, i: usize, at: usize) -> *mut u8 {
        self.base.wrapping_add(i * self.buf_len + at)
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) {
        // SAFETY: every entry built by this sender names (a) a range inside
        // registered buffer `i` of the never-freed allocation, so the memory
        // outlives the kernel's use whatever happens to `self`; (b) the
        // file and the socket, which the caller keeps open until
        // `send_file` returns, and `send_file` returns only once every
        // operation it submitted has completed (notifications included);
        // on any unexpected result it exits the process instead of
        // returning or unwinding with work in flight.
        let pushed = unsafe { self.ring.submission().push(entry) };
        if pushed.is_err() {
            fail("submission queue full (32 entries; at most 17 in flight)");
        }
    }

    fn push_read(&mut self, i: usize, slot: &Slot, file: RawFd) {
        let entry = opcode::ReadFixed::new(
            types::Fd(file),
            self.buf(i, slot.filled),
            (slot.len - slot.filled) as u32,
            i as u16,
        )
        .offset(slot.off + slot.filled as u64)
        .build()
        .user_data(OP_READ | i as u64);
        self.counters.reads += 1;
        self.push(&entry);
    }

    fn push_send(&mut self, i: usize, slot: &Slot, sock: RawFd, more: bool) {
        let ptr = self.buf(i, slot.sent).cast_const();
        let n = (slot.filled - slot.sent) as u32;
        // MSG_MORE while more of the file follows, as the splice chain's
        // SPLICE_F_MORE.
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        let entry = if self.zc {
            opcode::SendZc::new(types::Fd(sock), ptr, n)
                .buf_index(Some(i as u16))
                .flags(flags)
                .zc_flags(SEND_ZC_REPORT_USAGE)
                .build()
        } else {
            opcode::Send::new(types::Fd(sock), ptr, n)
                .flags(flags)
                .build()
        }
        .user_data(OP_SEND | i as u64);
        self.counters.sends += 1;
        self.push(&entry);
    }

    /// Sends `len` bytes of `file` from offset 0 into `sock`; returns once
    /// every operation has completed and every buffer is free.
    fn send_file(&mut self, file: &File, len: u64, sock: RawFd) {
        let fd = file.as_raw_fd();
        let mut slots = vec![FREE; self.nbuf];
        // Buffers holding file bytes not yet all sent, in file order.
        let mut order: VecDeque<usize> = VecDeque::with_capacity(self.nbuf);
        let mut next_off = 0u64;
        let mut send_busy = false;
        loop {
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.state == State::Free && next_off < len {
                    let want = (len - next_off).min(self.buf_len as u64) as usize;
                    *slot = Slot {
                        state: State::Reading,
                        off: next_off,
                        len: want,
                        ..FREE
                    };
                    next_off += want as u64;
                    order.push_back(i);
                    self.push_read(i, slot, fd);
                }
            }
            let head = order.front().copied();
            if let Some(h) = head.filter(|&h| !send_busy && slots[h].state == State::Ready) {
                let more = slots[h].off + (slots[h].len as u64) < len;
                self.push_send(h, &slots[h], sock, more);
                slots[h].state = State::Sending;
                send_busy = true;
            }
            if next_off == len && slots.iter().all(|s| s.state == State::Free) {
                return;
            }
            self.enter();
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.clear();
            cqes.extend(self.ring.completion());
            for cqe in &cqes {
                let i = (cqe.user_data() & 0xffff) as usize;
                let res = cqe.result();
                let slot = &mut slots[i];
                match cqe.user_data() & !0xffff {
                    OP_READ => match res {
                        n if n > 0 => {
                            slot.filled += n as usize;
                            if slot.filled < slot.len {
                                self.counters.short_reads += 1;
                                let s = *slot;
                                self.push_read(i, &s, fd);
                            } else {
                                slot.state = State::Ready;
                            }
                        }
                        0 => fail(&format!("file ended early at {}", slot.off)),
                        e => fail(&format!("READ_FIXED: {}", errno(e))),
                    },
                    OP_SEND if cqueue::notif(cqe.flags()) => {
                        self.counters.notifs += 1;
                        if res as u32 & NOTIF_USAGE_ZC_COPIED != 0 {
                            self.counters.notifs_copied += 1;
                        }
                        slot.notifs -= 1;
                        if slot.state == State::Notif && slot.notifs == 0 {
                            slot.state = State::Free;
                        }
                    }
                    OP_SEND => {
                        send_busy = false;
                        if cqueue::more(cqe.flags()) {
                            slot.notifs += 1;
                        }
                        let asked = slot.filled - slot.sent;
                        match res {
                            n if n >= 0 => {
                                let n = n as usize;
                                if n < asked {
                                    self.counters.short_sends += 1;
                                }
                                slot.sent += n;
                            }
                            e if e == -libc::EAGAIN => self.counters.eagain += 1,
                            e => fail(&format!("send: {}", errno(e))),
                        }
                        if slot.sent < slot.filled {
                            slot.state = State::Ready;
                        } else {
                            debug_assert_eq!(order.front(), Some(&i));
                            order.pop_front();
                            slot.state = if slot.notifs > 0 {
                                State::Notif
                            } else {
                                State::Free
                            };
                        }
                    }
                    _ => fail("unknown completion"),
                }
            }
            self.cqes = cqes;
        }
    }

    /// Submits what is queued and waits for at least one completion.
    fn enter(&mut self) {
        loop {
            self.counters.enters += 1;
            match self.ring.submit_and_wait(1) {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // CQ overflow backlog: reaping makes room.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return,
                Err(e) => fail(&format!("io_uring_enter: {e}")),
            }
        }
    }
}

fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

/// Ends the process without unwinding: operations may still be in flight
/// on the socket, the file and the buffers.
fn fail(why: &str) -> ! {
    eprintln!("uring_variants: {why}");
    std::process::exit(1);
}
