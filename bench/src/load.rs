//! The load generator: closed-loop, keep-alive HTTP/1.1 `GET`s of one path,
//! or of paths picked at random, over many connections for a fixed duration.
//!
//! Each client thread runs one edge-triggered [`mio`] event loop over its
//! share of the connections. A connection is a small state machine: write the
//! request (a fixed byte string per path, built once) → read the response head into
//! the connection's 8 KiB head buffer and parse it with [`httparse`] → read
//! exactly `Content-Length` body bytes and discard them → record the latency
//! → write the next request. Nothing is allocated per request.
//!
//! How the body is read is the [`ClientRead`] mode: with a read size N,
//! every `recv` asks for at most N bytes (the head's too) and the body is
//! read into the thread's N-byte scratch buffer; with `trunc`, the head is
//! peeked (`MSG_PEEK`, from 512 bytes up) and parsed, and then exactly the
//! head's bytes and `Content-Length` body bytes are discarded by the kernel
//! with `recv(MSG_TRUNC)`, which copies nothing to user space: what the
//! kernel reports discarded is counted against `Content-Length`, and
//! nothing past the response is ever consumed. Every buffer received into
//! is page-aligned (`zcserve_core::PageBuf`). Each thread's own CPU time over the
//! run (`getrusage(RUSAGE_THREAD)`) is the client's CPU time.
//!
//! Every response must have the expected status and `Content-Length`; one
//! that does not, a parse error, or a connection closed or reset by the
//! server counts as one error, and the connection is closed and opened again
//! (at most [`MAX_FAILURES`] times per connection, then it is given up).
//!
//! All connections are established before the clock starts; when the
//! duration is over, no more requests are issued and responses still in
//! flight are counted neither as requests nor as errors.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{MsgFlags, recv};

pub use crate::client_read::ClientRead;
use zcserve_core::PageBuf;

/// Size of each connection's response-head buffer: a head must fit in it.
pub const HEAD_BUF: usize = 8 * 1024;
/// How many bytes a `trunc` client first peeks to find the end of a head;
/// doubled, up to [`HEAD_BUF`], while a head does not fit.
pub const TRUNC_PEEK: usize = 512;
/// Most bytes one `recv(MSG_TRUNC)` is asked to discard.
const TRUNC_MAX: u64 = 1 << 30;
/// Failures (errors) after which a connection is given up for the run.
pub const MAX_FAILURES: u32 = 10;
/// How many error descriptions [`LoadOutcome::error_samples`] keeps.
pub const MAX_ERROR_SAMPLES: usize = 8;
/// Largest latency the histogram tracks (60 s), in microseconds; larger
/// values are recorded as this.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// How long establishing one connection before the run may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Headers a response may have.
const MAX_HEADERS: usize = 64;

/// What to load and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// The request targets, e.g. `/4KiB.bin`: each request takes one at
    /// random (uniformly, from a fixed seed per connection); with one, it
    /// is always that one.
    pub paths: Vec<String>,
    /// The `Host` header value.
    pub host: String,
    /// Total connections, spread round-robin over the threads.
    pub conns: usize,
    /// Event-loop threads; clamped to `1..=conns`.
    pub threads: usize,
    /// Thread `i` is pinned to `cpus[i % cpus.len()]`; empty: no pinning.
    pub cpus: Vec<usize>,
    /// How long the load runs once every connection is established.
    pub duration: Duration,
    /// The status every response must have, normally 200.
    pub expect_status: u16,
    /// The `Content-Length` every response must have.
    pub expect_len: u64,
    /// How response bodies are read.
    pub read: ClientRead,
    /// How the load's threads are scheduled on their CPUs.
    pub priority: Priority,
    /// At most one request starts per this interval over the whole load
    /// (each of `threads` threads starts one per `threads` intervals); a
    /// connection whose response is complete waits for the next start.
    /// `None`: closed loop, the next request right after each response.
    /// Latency is counted from a request's start, not from its wait.
    pub pace: Option<Duration>,
}

impl LoadSpec {
    /// The event-loop threads the load runs on: `threads`, clamped to
    /// `1..=conns`.
    fn threads_used(&self) -> usize {
        self.threads.clamp(1, self.conns)
    }
}

/// How the load's threads are scheduled.
///
/// A latency probe that shares its CPU with a busy load measures that
/// load too: woken by its response while another load thread runs, it
/// waits for the scheduler to switch, and that wait is the client's, not
/// the server's. `Realtime` takes it out; whether that changes a result
/// is for the measurement to show (results/FINDINGS.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// The default time-sharing policy (`SCHED_OTHER`).
    #[default]
    Normal,
    /// `SCHED_FIFO` at the lowest real-time priority: the thread runs as
    /// soon as it is woken, ahead of every time-sharing thread on its CPU.
    /// Needs root or `CAP_SYS_NICE`; the load fails to start otherwise.
    Realtime,
}

impl Priority {
    /// Puts the calling thread under this policy.
    pub fn apply(self) -> io::Result<()> {
        match self {
            Priority::Normal => Ok(()),
            Priority::Realtime => sys_realtime(),
        }
    }

    /// Whether this process may run a thread at [`Priority::Realtime`]:
    /// tried on a short-lived thread of its own, so the caller's policy is
    /// left alone. `Err` says why not.
    pub fn realtime_permitted() -> io::Result<()> {
        std::thread::scope(|s| s.spawn(sys_realtime).join())
            .unwrap_or_else(|_| Err(io::Error::other("the probe thread panicked")))
    }
}

/// The lowest `SCHED_FIFO` priority for the calling thread.
fn sys_realtime() -> io::Result<()> {
    // SAFETY: `sched_param` is a plain struct for which all-zero bytes are
    // valid; it lives for the whole call, which only reads it; pid 0 is the
    // calling thread.
    let rc = unsafe {
        let mut param: libc::sched_param = std::mem::zeroed();
        param.sched_priority = libc::sched_get_priority_min(libc::SCHED_FIFO);
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param)
    };
    os_result(rc, "cannot run at SCHED_FIFO")
}

/// `Ok` for a libc call that returned 0; otherwise its errno, with `what`
/// it was doing in front.
fn os_result(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    /// Complete, valid responses received within the duration.
    pub requests: u64,
    /// Body bytes received within the duration, counted as they arrive,
    /// so responses still in flight at the end count their part: with large
    /// files and many connections a run may end before any response does,
    /// and MB/s must still be right.
    pub bytes: u64,
    /// Responses with a wrong status or length, unparsable responses, and
    /// connections closed, reset or refused by the server.
    pub errors: u64,
    /// The first few errors, described (at most [`MAX_ERROR_SAMPLES`]).
    pub error_samples: Vec<String>,
    /// Latency of each valid response in microseconds (1 µs to 60 s, 3
    /// significant figures), merged over the threads.
    pub latency_us: Histogram<u64>,
    /// How long the load ran, from the clock: a moment more than the
    /// duration, or less if every connection was given up earlier.
    pub elapsed: Duration,
    /// CPU seconds (user + system) the load threads used while the clock
    /// ran, summed over the threads (`getrusage(RUSAGE_THREAD)` of each,
    /// read when it starts and when it stops).
    pub cpu_s: f64,
}

impl LoadOutcome {
    /// Valid responses per second.
    pub fn req_per_s(&self) -> f64 {
        per_second(self.requests as f64, self.elapsed)
    }

    /// Body megabytes (1e6 bytes) received per second.
    pub fn mb_per_s(&self) -> f64 {
        per_second(self.bytes as f64 / 1e6, self.elapsed)
    }
}

fn per_second(amount: f64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { amount / s } else { 0.0 }
}

/// A new, empty latency histogram with the bounds [`LoadOutcome`] uses.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Runs the load described by `spec` and returns what it measured.
///
/// Fails when a connection cannot be established before the run (the
/// server is not listening, say), when a thread cannot be pinned, or when
/// the event loop fails; errors of the server during the run are counted in
/// the outcome instead.
pub fn run(spec: &LoadSpec) -> io::Result<LoadOutcome> {
    if spec.conns == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "load needs at least one connection",
        ));
    }
    if let Some(&cpu) = spec.cpus.iter().find(|&&c| c >= max_cpus()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot pin to CPU {cpu}"),
        ));
    }
    if spec.paths.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "load needs at least one path",
        ));
    }
    if spec.read == ClientRead::Size(0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the client's read size must be at least one byte",
        ));
    }
    if spec.pace == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a paced load needs an interval above zero",
        ));
    }
    let threads = spec.threads_used();
    let requests: Vec<Vec<u8>> = spec
        .paths
        .iter()
        .map(|p| format!("GET {p} HTTP/1.1\r\nHost: {}\r\n\r\n", spec.host).into_bytes())
        .collect();

    let mut groups: Vec<Vec<std::net::TcpStream>> = (0..threads)
        .map(|_| Vec::with_capacity(spec.conns.div_ceil(threads)))
        .collect();
    for i in 0..spec.conns {
        let stream = std::net::TcpStream::connect_timeout(&spec.addr, CONNECT_TIMEOUT)
            .map_err(|e| io::Error::new(e.kind(), format!("connecting to {}: {e}", spec.addr)))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        groups[i % threads].push(stream);
    }

    let gate = StartGate {
        barrier: Barrier::new(threads),
        start: OnceLock::new(),
        failed: AtomicBool::new(false),
    };
    let requests = &requests[..];
    let gate = &gate;
    let results: Vec<io::Result<Option<ThreadOutcome>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(t, streams)| {
                let cpu = (!spec.cpus.is_empty()).then(|| spec.cpus[t % spec.cpus.len()]);
                scope.spawn(move || thread_main(spec, requests, t, cpu, streams, gate))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("load thread panicked")))
            })
            .collect()
    });

    let start = gate.start.get().copied();
    let mut out = LoadOutcome {
        requests: 0,
        bytes: 0,
        errors: 0,
        error_samples: Vec::new(),
        latency_us: latency_histogram(),
        elapsed: Duration::ZERO,
        cpu_s: 0.0,
    };
    // A thread that failed to start reports why; the others stop at once
    // and report nothing.
    for t in results
        .into_iter()
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        out.requests += t.requests;
        out.bytes += t.bytes;
        out.errors += t.errors;
        out.cpu_s += t.cpu_s;
        for s in t.samples {
            if out.error_samples.len() < MAX_ERROR_SAMPLES {
                out.error_samples.push(s);
            }
        }
        out.latency_us
            .add(&t.latency)
            .map_err(|e| io::Error::other(format!("merging latencies: {e:?}")))?;
        if let Some(start) = start {
            out.elapsed = out.elapsed.max(t.end.saturating_duration_since(start));
        }
    }
    Ok(out)
}

/// Where the threads wait for each other, so that they start the clock
/// together, and learn whether one of them failed to get ready.
struct StartGate {
    barrier: Barrier,
    start: OnceLock<Instant>,
    failed: AtomicBool,
}

/// What one thread measured.
struct ThreadOutcome {
    requests: u64,
    bytes: u64,
    errors: u64,
    samples: Vec<String>,
    latency: Histogram<u64>,
    /// When it stopped: just past the deadline, or earlier if every
    /// connection was given up.
    end: Instant,
    /// Its CPU seconds over the run.
    cpu_s: f64,
}

fn thread_main(
    spec: &LoadSpec,
    requests: &[Vec<u8>],
    thread: usize,
    cpu: Option<usize>,
    streams: Vec<std::net::TcpStream>,
    gate: &StartGate,
) -> io::Result<Option<ThreadOutcome>> {
    let worker = Worker::new(spec, requests, thread, cpu, streams);
    if worker.is_err() {
        gate.failed.store(true, Ordering::SeqCst);
    }
    gate.barrier.wait();
    let start = *gate.start.get_or_init(Instant::now);
    let mut worker = worker?;
    if gate.failed.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let cpu0 = thread_cpu_seconds()?;
    let end = worker.run(start, start + spec.duration)?;
    let cpu_s = (thread_cpu_seconds()? - cpu0).max(0.0);
    Ok(Some(ThreadOutcome {
        requests: worker.requests,
        bytes: worker.bytes,
        errors: worker.errors,
        samples: worker.samples,
        latency: worker.latency,
        end,
        cpu_s,
    }))
}

/// The calling thread's CPU time so far (user + system), in seconds.
fn thread_cpu_seconds() -> io::Result<f64> {
    let u = getrusage(UsageWho::RUSAGE_THREAD).map_err(io::Error::from)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(u.user_time()) + secs(u.system_time()))
}

/// Peeks at what `fd`'s receive queue holds, up to `buf.len()` bytes,
/// leaving it queued.
fn peek(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv(fd.as_raw_fd(), buf, MsgFlags::MSG_PEEK).map_err(io::Error::from)
}

/// Has the kernel discard up to `len` bytes of `fd`'s TCP receive queue
/// without copying them anywhere (tcp(7), `MSG_TRUNC`); returns how many
/// it discarded, 0 at end of stream.
fn discard(fd: &impl AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: on a TCP socket `MSG_TRUNC` makes the kernel drop the bytes
    // instead of writing them to the buffer, so the null buffer is never
    // written to (nix's `recv` takes a slice, which this needs none of);
    // `fd` is an open socket borrowed for the call.
    let n = unsafe { libc::recv(fd.as_raw_fd(), std::ptr::null_mut(), len, libc::MSG_TRUNC) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The next of `n` choices from xorshift64 state `x`.
fn pick(x: &mut u64, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    (*x % n as u64) as usize
}

/// The CPUs a `cpu_set_t` can name.
fn max_cpus() -> usize {
    libc::CPU_SETSIZE as usize
}

/// Pins the calling thread to `cpu`.
fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= max_cpus() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot pin to CPU {cpu}"),
        ));
    }
    // SAFETY: `cpu_set_t` is a plain bit array for which all-zero bytes are
    // a valid (empty) set; `CPU_SET` sets one bit inside it, and `cpu` is
    // below `CPU_SETSIZE` (checked above) so the bit is in bounds;
    // `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes from a valid
    // reference, and pid 0 means the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    os_result(rc, &format!("pinning to CPU {cpu}"))
}

/// Where a connection is in its request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A reconnect is in progress.
    Connecting,
    /// Waiting in a paced load for its next start.
    Waiting,
    /// `written` bytes of the request are written.
    Writing,
    /// Reading the response head into `head`.
    Head,
    /// `body_left` body bytes still to read.
    Body,
    /// Given up after too many failures.
    Dead,
}

struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    /// Which of the requests it is writing, or last wrote.
    request: usize,
    /// xorshift64 state picking the next request.
    rng: u64,
    written: usize,
    head: PageBuf,
    /// Bytes of `head` filled (with `trunc`: peeked, still queued).
    head_len: usize,
    /// With `trunc`: how many bytes the next peek asks for.
    peek_len: usize,
    /// With `trunc`: bytes of the parsed head still queued, discarded with
    /// the body.
    head_left: usize,
    body_left: u64,
    /// When the current request was started.
    started: Instant,
    failures: u32,
}

/// Why a connection failed.
#[derive(Debug)]
enum Fault {
    Closed,
    Io(&'static str, io::Error),
    Parse(httparse::Error),
    HeadTooLarge,
    Status(u16),
    Length(Option<u64>),
    BadLength,
    Chunked,
    ExtraBytes(u64),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Closed => write!(f, "connection closed by the server"),
            Fault::Io(what, e) => write!(f, "{what}: {e}"),
            Fault::Parse(e) => write!(f, "unparsable response head: {e}"),
            Fault::HeadTooLarge => write!(f, "response head larger than {HEAD_BUF} bytes"),
            Fault::Status(s) => write!(f, "status {s}"),
            Fault::Length(Some(n)) => write!(f, "Content-Length {n}"),
            Fault::Length(None) => write!(f, "no Content-Length"),
            Fault::BadLength => write!(f, "invalid Content-Length"),
            Fault::Chunked => write!(f, "Transfer-Encoding instead of Content-Length"),
            Fault::ExtraBytes(n) => write!(f, "{n} bytes after the response body"),
        }
    }
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedHead {
    /// Bytes of the head, including the blank line.
    len: usize,
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` if it is
/// not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<ParsedHead>, Fault> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Fault::Parse(e)),
    };
    let mut content_length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value).ok_or(Fault::BadLength)?;
            if content_length.is_some_and(|m| m != n) {
                return Err(Fault::BadLength);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    Ok(Some(ParsedHead {
        len,
        status: resp.code.unwrap_or(0),
        content_length,
        chunked,
    }))
}

/// Parses a `Content-Length` value: decimal digits, optional surrounding
/// spaces or tabs.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

struct Worker<'a> {
    poll: Poll,
    conns: Vec<Conn>,
    live: usize,
    /// What bodies are read into: [`ClientRead::Size`] bytes, page-aligned.
    scratch: PageBuf,
    read: ClientRead,
    /// Each path's request, as written.
    wire: &'a [Vec<u8>],
    addr: SocketAddr,
    expect_status: u16,
    expect_len: u64,
    deadline: Instant,
    /// The deadline passed while handling events.
    stopped: bool,
    requests: u64,
    bytes: u64,
    errors: u64,
    samples: Vec<String>,
    latency: Histogram<u64>,
    /// In a paced load: when the next request may start, and who waits.
    pacer: Option<Pacer>,
}

/// The start times of a paced load's requests on one thread.
#[derive(Debug)]
struct Pacer {
    every: Duration,
    next: Instant,
    /// Connections waiting to start a request, first come first served.
    waiting: std::collections::VecDeque<usize>,
}

impl Pacer {
    /// The connection whose request starts at `now`, if a start is due.
    ///
    /// Start k waits until `next` has moved k - 1 intervals past the
    /// first, so a run of D never starts more than D / every + 1 requests.
    /// A start a little late (the poll's millisecond timeout) keeps the
    /// schedule, so lateness does not add up; one late by more than an
    /// interval (every connection was busy) moves the schedule to `now`,
    /// so a slow stretch is followed by at most one extra start, not by a
    /// burst that makes up for it.
    fn due(&mut self, now: Instant) -> Option<usize> {
        if now < self.next {
            return None;
        }
        let i = self.waiting.pop_front()?;
        self.next = (self.next + self.every).max(now);
        Some(i)
    }

    /// When the loop must wake for the next start, if anyone waits.
    fn wake_at(&self) -> Option<Instant> {
        (!self.waiting.is_empty()).then_some(self.next)
    }
}

impl<'a> Worker<'a> {
    fn new(
        spec: &LoadSpec,
        requests: &'a [Vec<u8>],
        thread: usize,
        cpu: Option<usize>,
        streams: Vec<std::net::TcpStream>,
    ) -> io::Result<Worker<'a>> {
        if let Some(cpu) = cpu {
            pin_current_thread(cpu)?;
        }
        spec.priority.apply()?;
        let poll = Poll::new()?;
        let now = Instant::now();
        let mut conns = Vec::with_capacity(streams.len());
        for (i, s) in streams.into_iter().enumerate() {
            let mut stream = TcpStream::from_std(s);
            poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            // Distinct, non-zero seeds: the same sequence on every run.
            let mut rng = 0x9e37_79b9_7f4a_7c15 ^ ((thread as u64) << 32 | i as u64);
            let request = pick(&mut rng, requests.len());
            conns.push(Conn {
                stream: Some(stream),
                phase: Phase::Writing,
                request,
                rng,
                written: 0,
                head: PageBuf::new(HEAD_BUF),
                head_len: 0,
                peek_len: TRUNC_PEEK,
                head_left: 0,
                body_left: 0,
                started: now,
                failures: 0,
            });
        }
        Ok(Worker {
            poll,
            live: conns.len(),
            conns,
            scratch: PageBuf::new(match spec.read {
                ClientRead::Size(n) => n,
                ClientRead::Trunc => 0,
            }),
            read: spec.read,
            wire: requests,
            addr: spec.addr,
            expect_status: spec.expect_status,
            expect_len: spec.expect_len,
            deadline: now,
            stopped: false,
            requests: 0,
            bytes: 0,
            errors: 0,
            samples: Vec::new(),
            latency: latency_histogram(),
            pacer: spec.pace.map(|p| Pacer {
                every: p.saturating_mul(u32::try_from(spec.threads_used()).unwrap_or(u32::MAX)),
                next: now,
                waiting: std::collections::VecDeque::new(),
            }),
        })
    }

    /// Runs the loop from `start` until `deadline` or until every
    /// connection is given up; returns when it stopped, as read from the
    /// clock (a moment past `deadline` when it ran to the end).
    fn run(&mut self, start: Instant, deadline: Instant) -> io::Result<Instant> {
        self.deadline = deadline;
        let mut events = Events::with_capacity(self.conns.len().clamp(16, 1024));
        if let Some(p) = self.pacer.as_mut() {
            p.next = start;
        }
        for i in 0..self.conns.len() {
            match self.pacer {
                Some(_) => self.next_request(i),
                None => {
                    self.start_request(i, start);
                }
            }
        }
        loop {
            let mut now = Instant::now();
            while let Some(i) = self.pacer.as_mut().and_then(|p| p.due(now)) {
                self.start_request(i, now);
                now = Instant::now();
            }
            if self.stopped || self.live == 0 || now >= deadline {
                return Ok(now);
            }
            let wake = match self.pacer.as_ref().and_then(Pacer::wake_at) {
                Some(at) => at.min(deadline),
                None => deadline,
            };
            match self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                self.on_event(ev.token().0);
                if self.stopped {
                    break;
                }
            }
        }
    }

    fn on_event(&mut self, i: usize) {
        match self.conns[i].phase {
            // A waiting connection's events (the server closing it, say)
            // show when its next request is written.
            Phase::Dead | Phase::Waiting => {}
            Phase::Connecting => self.finish_connect(i),
            Phase::Writing => {
                // Rare: the request did not fit in the socket buffer. Once
                // it is written, read too, in case the server already
                // answered (an edge is not reported twice).
                if self.write_request(i) {
                    self.read_response(i);
                }
            }
            Phase::Head | Phase::Body => self.read_response(i),
        }
    }

    /// Checks a reconnect in progress; once connected, starts a request.
    fn finish_connect(&mut self, i: usize) {
        let Some(stream) = self.conns[i].stream.as_ref() else {
            return;
        };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.fail(i, Fault::Io("reconnecting", e)),
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.fail(i, Fault::Io("reconnecting", e)),
        }
        if let Err(e) = stream.set_nodelay(true) {
            return self.fail(i, Fault::Io("setting TCP_NODELAY", e));
        }
        if self.pacer.is_some() {
            self.next_request(i);
        } else if self.start_request(i, Instant::now()) {
            self.read_response(i);
        }
    }

    /// Starts connection `i`'s next request now, or in a paced load queues
    /// it for its start.
    fn next_request(&mut self, i: usize) {
        match self.pacer.as_mut() {
            Some(p) => {
                self.conns[i].phase = Phase::Waiting;
                p.waiting.push_back(i);
            }
            None => {
                self.start_request(i, Instant::now());
            }
        }
    }

    /// Writes connection `i`'s request, its latency counted from `now`;
    /// true once it is all written.
    fn start_request(&mut self, i: usize, now: Instant) -> bool {
        let c = &mut self.conns[i];
        c.phase = Phase::Writing;
        c.written = 0;
        c.started = now;
        self.write_request(i)
    }

    /// Writes (the rest of) the request; true once it is all written.
    fn write_request(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut() else {
            return false;
        };
        let request = &self.wire[c.request];
        loop {
            match stream.write(&request[c.written..]) {
                Ok(0) => {
                    self.fail(i, Fault::Closed);
                    return false;
                }
                Ok(n) => {
                    c.written += n;
                    if c.written == request.len() {
                        c.phase = Phase::Head;
                        c.head_len = 0;
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, Fault::Io("writing", e));
                    return false;
                }
            }
        }
    }

    /// Reads what has arrived of the response. A read that returns less
    /// than asked for has emptied the socket's receive queue (TCP on Linux
    /// copies, or with `MSG_TRUNC` discards, all queued data up to the
    /// length asked for), and data arriving after it raises a new edge, so
    /// it ends the reading without the extra `read` that would only say
    /// `WouldBlock`. A peek empties nothing: after one, the loop goes on
    /// until a discard has.
    fn read_response(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            let (res, want) = match (c.phase, self.read) {
                (Phase::Head, ClientRead::Size(n)) => {
                    let want = (HEAD_BUF - c.head_len).min(n);
                    let to = c.head_len + want;
                    (stream.read(&mut c.head[c.head_len..to]), want)
                }
                (Phase::Head, ClientRead::Trunc) => {
                    let want = c.peek_len;
                    (peek(&*stream, &mut c.head[..want]), want)
                }
                (Phase::Body, ClientRead::Size(n)) => {
                    let want = c.body_left.min(n as u64) as usize;
                    (stream.read(&mut self.scratch[..want]), want)
                }
                (Phase::Body, ClientRead::Trunc) => {
                    let want = (c.head_left as u64 + c.body_left).min(TRUNC_MAX) as usize;
                    (discard(&*stream, want), want)
                }
                _ => return,
            };
            let n = match res {
                Ok(0) => return self.fail(i, Fault::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, Fault::Io("reading", e)),
            };
            if c.phase == Phase::Head {
                let peeked = self.read == ClientRead::Trunc;
                // A peek sees the queue from its start again.
                c.head_len = if peeked { n } else { c.head_len + n };
                let head = match parse_head(&c.head[..c.head_len]) {
                    Ok(Some(h)) => h,
                    Ok(None) if c.head_len == HEAD_BUF => {
                        return self.fail(i, Fault::HeadTooLarge);
                    }
                    Ok(None) if n < want => return,
                    Ok(None) => {
                        if peeked {
                            c.peek_len = (c.peek_len * 2).min(HEAD_BUF);
                        }
                        continue;
                    }
                    Err(f) => return self.fail(i, f),
                };
                if head.status != self.expect_status {
                    return self.fail(i, Fault::Status(head.status));
                }
                if head.chunked {
                    return self.fail(i, Fault::Chunked);
                }
                if head.content_length != Some(self.expect_len) {
                    return self.fail(i, Fault::Length(head.content_length));
                }
                c.phase = Phase::Body;
                if peeked {
                    // Nothing is consumed yet: the head goes with the body,
                    // and whatever is queued must be discarded now (no
                    // new edge may come if the whole response is here).
                    c.head_left = head.len;
                    c.body_left = self.expect_len;
                    if c.body_left == 0 && c.head_left == 0 {
                        return self.complete(i);
                    }
                    continue;
                }
                let in_head = (c.head_len - head.len) as u64;
                if in_head > self.expect_len {
                    return self.fail(i, Fault::ExtraBytes(in_head - self.expect_len));
                }
                c.body_left = self.expect_len - in_head;
                self.bytes += in_head;
            } else {
                // With `trunc`, the head's bytes are the first discarded.
                let of_head = n.min(c.head_left);
                c.head_left -= of_head;
                let body = (n - of_head) as u64;
                c.body_left -= body;
                self.bytes += body;
            }
            if c.body_left == 0 && c.head_left == 0 {
                return self.complete(i);
            }
            if n < want {
                return;
            }
        }
    }

    /// A valid response is complete: record it and send the next request.
    fn complete(&mut self, i: usize) {
        let now = Instant::now();
        if now >= self.deadline {
            self.stopped = true;
            return;
        }
        let c = &mut self.conns[i];
        let us = u64::try_from(now.duration_since(c.started).as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, LATENCY_MAX_US));
        self.requests += 1;
        c.request = pick(&mut c.rng, self.wire.len());
        c.head_len = 0;
        c.head_left = 0;
        self.next_request(i);
    }

    /// Counts an error, closes the connection and opens it again, unless it
    /// has failed [`MAX_FAILURES`] times.
    fn fail(&mut self, i: usize, mut fault: Fault) {
        loop {
            self.errors += 1;
            if self.samples.len() < MAX_ERROR_SAMPLES {
                self.samples.push(format!("connection {i}: {fault}"));
            }
            let c = &mut self.conns[i];
            // Closing the socket also removes it from the poll.
            c.stream = None;
            c.failures += 1;
            if c.failures >= MAX_FAILURES {
                c.phase = Phase::Dead;
                self.live -= 1;
                return;
            }
            let res = TcpStream::connect(self.addr).and_then(|mut s| {
                self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(s)
            });
            match res {
                Ok(s) => {
                    c.stream = Some(s);
                    c.phase = Phase::Connecting;
                    return;
                }
                Err(e) => fault = Fault::Io("reconnecting", e),
            }
        }
    }
}

/// Reads one response from a blocking `stream` into `buf` (its head must
/// fit) and checks its status and `Content-Length`; the body is read and
/// discarded. `buf` is scratch space of at least [`HEAD_BUF`] bytes.
/// A failed response: none at all, or a wrong one.
enum Answer {
    None(String),
    Wrong(String),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::None(e) | Answer::Wrong(e) => f.write_str(e),
        }
    }
}

fn read_one_response(
    stream: &mut std::net::TcpStream,
    buf: &mut [u8],
    expect_status: u16,
    expect_len: u64,
) -> Result<(), Answer> {
    let mut have = 0;
    let head = loop {
        let n = match stream.read(&mut buf[have..]) {
            Ok(0) => return Err(Answer::None(Fault::Closed.to_string())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Answer::None(format!("reading: {e}"))),
        };
        have += n;
        match parse_head(&buf[..have]) {
            Ok(Some(h)) => break h,
            Ok(None) if have == buf.len() => {
                return Err(Answer::Wrong(Fault::HeadTooLarge.to_string()));
            }
            Ok(None) => {}
            Err(f) => return Err(Answer::Wrong(f.to_string())),
        }
    };
    if head.status != expect_status {
        return Err(Answer::Wrong(Fault::Status(head.status).to_string()));
    }
    if head.chunked {
        return Err(Answer::Wrong(Fault::Chunked.to_string()));
    }
    if head.content_length != Some(expect_len) {
        return Err(Answer::Wrong(
            Fault::Length(head.content_length).to_string(),
        ));
    }
    let in_buf = (have - head.len) as u64;
    if in_buf > expect_len {
        return Err(Answer::Wrong(
            Fault::ExtraBytes(in_buf - expect_len).to_string(),
        ));
    }
    let mut left = expect_len - in_buf;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Answer::Wrong(
                    "connection closed before the body ended".into(),
                ));
            }
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Answer::Wrong(format!("reading the body: {e}"))),
        }
    }
    Ok(())
}

/// Why a [`probe`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// No response: nothing listening, a timeout, the connection closed
    /// early. A server still starting fails so.
    NoAnswer(String),
    /// A response, but not the one expected (status, length): the server
    /// is up and serves something else.
    Wrong(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoAnswer(e) | ProbeError::Wrong(e) => f.write_str(e),
        }
    }
}

/// One `GET path` on a new connection to `addr`, which must be answered
/// with `expect_status` and a body of `expect_len` bytes within `timeout`:
/// checks that a server is up and serves the fixture.
pub fn probe(
    addr: SocketAddr,
    path: &str,
    expect_status: u16,
    expect_len: u64,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let no = |e: io::Error| ProbeError::NoAnswer(e.to_string());
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(no)?;
    s.set_read_timeout(Some(timeout)).map_err(no)?;
    s.set_write_timeout(Some(timeout)).map_err(no)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(no)?;
    let mut buf = PageBuf::new(HEAD_BUF);
    read_one_response(&mut s, &mut buf, expect_status, expect_len).map_err(|e| match e {
        Answer::None(e) => ProbeError::NoAnswer(e),
        Answer::Wrong(e) => ProbeError::Wrong(e),
    })
}

/// Keep-alive connections held open and idle, for measuring what they cost
/// a server. Closed on drop.
#[derive(Debug)]
pub struct IdleConns {
    /// Connections established, each with its one response read.
    pub streams: Vec<std::net::TcpStream>,
    /// Connections whose `GET` was answered as expected.
    pub answered: usize,
    /// The first few failures, described (at most [`MAX_ERROR_SAMPLES`]).
    pub errors: Vec<String>,
}

impl IdleConns {
    /// How many of the connections the server still holds open: a read
    /// that would block means open; end of file or an error means closed.
    pub fn still_open(&self) -> usize {
        let mut one = [0u8; 1];
        self.streams
            .iter()
            .filter(|s| {
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                let open = match (&**s).read(&mut one) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                };
                let _ = s.set_nonblocking(false);
                open
            })
            .count()
    }
}

/// Opens `n` keep-alive connections to `addr`, sends one `GET path` on
/// each (all requests first, then the responses are read), checks every
/// response like [`run`] does, and returns the connections open and idle.
///
/// Never fails: a connection that cannot be made stops the opening (a
/// descriptor limit, say) and is recorded as an error; reading all the
/// responses gives up after `timeout` overall.
pub fn open_idle(
    addr: SocketAddr,
    path: &str,
    expect_status: u16,
    expect_len: u64,
    n: usize,
    timeout: Duration,
) -> IdleConns {
    let deadline = Instant::now() + timeout;
    let mut out = IdleConns {
        streams: Vec::with_capacity(n),
        answered: 0,
        errors: Vec::new(),
    };
    let note = |errors: &mut Vec<String>, e: String| {
        if errors.len() < MAX_ERROR_SAMPLES {
            errors.push(e);
        }
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for i in 0..n {
        match std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                out.streams.push(s);
            }
            Err(e) => {
                note(&mut out.errors, format!("connection {i}: connecting: {e}"));
                break;
            }
        }
    }
    let mut sent = vec![false; out.streams.len()];
    for (i, s) in out.streams.iter_mut().enumerate() {
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        match s.write_all(request.as_bytes()) {
            Ok(()) => sent[i] = true,
            Err(e) => note(&mut out.errors, format!("connection {i}: writing: {e}")),
        }
    }
    let mut buf = PageBuf::new(HEAD_BUF);
    for (i, s) in out.streams.iter_mut().enumerate() {
        if !sent[i] {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            note(
                &mut out.errors,
                format!("connection {i}: no answer in time"),
            );
            break;
        }
        let _ = s.set_read_timeout(Some(left));
        match read_one_response(s, &mut buf, expect_status, expect_len) {
            Ok(()) => out.answered += 1,
            Err(e) => note(&mut out.errors, format!("connection {i}: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy.
    fn policy() -> libc::c_int {
        // SAFETY: no arguments but pid 0, the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn realtime_puts_the_thread_under_sched_fifo_and_the_probe_leaves_the_caller_alone() {
        let before = policy();
        let permitted = Priority::realtime_permitted();
        assert_eq!(policy(), before, "the probe changed the caller's policy");
        let got = std::thread::spawn(|| (Priority::Realtime.apply(), policy()))
            .join()
            .unwrap();
        match (permitted, got) {
            (Ok(()), (Ok(()), p)) => assert_eq!(p, libc::SCHED_FIFO),
            (Err(_), (Err(e), p)) => {
                assert!(e.to_string().contains("SCHED_FIFO"), "{e}");
                assert_eq!(p, libc::SCHED_OTHER);
            }
            (permitted, got) => panic!("the probe said {permitted:?}, the thread got {got:?}"),
        }
        let normal = std::thread::spawn(|| (Priority::Normal.apply().is_ok(), policy()))
            .join()
            .unwrap();
        assert_eq!(normal, (true, libc::SCHED_OTHER));
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"4096"), Some(4096));
        assert_eq!(parse_content_length(b" 0\t"), Some(0));
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"12a"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"99999999999999999999999"), None);
    }

    #[test]
    fn heads_parse_partially_and_completely() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
        for cut in 0..full.len() - 5 {
            assert!(matches!(parse_head(&full[..cut]), Ok(None)), "cut at {cut}");
        }
        let h = parse_head(full).ok().flatten().expect("complete");
        assert_eq!(
            h,
            ParsedHead {
                len: full.len() - 5,
                status: 200,
                content_length: Some(5),
                chunked: false
            }
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .ok()
            .flatten()
            .expect("complete");
        assert!(h.chunked && h.content_length.is_none());
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Fault::BadLength)
        ));
        assert!(matches!(
            parse_head(b"garbage\r\n\r\n"),
            Err(Fault::Parse(_))
        ));
    }

    #[test]
    fn picks_cover_every_choice_and_one_means_it() {
        let mut x = 0x9e37_79b9_7f4a_7c15;
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[pick(&mut x, 5)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(pick(&mut x, 1), 0);
    }

    #[test]
    fn every_buffer_received_into_is_page_aligned() {
        let page = zcserve_core::page_size();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for read in [
            ClientRead::Size(8 * 1024),
            ClientRead::Size(64 * 1024),
            ClientRead::DEFAULT,
            ClientRead::Trunc,
        ] {
            let streams = (0..3)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            let spec = LoadSpec {
                addr,
                paths: vec!["/".into()],
                host: "x".into(),
                conns: 3,
                threads: 1,
                cpus: vec![],
                duration: Duration::from_millis(10),
                expect_status: 200,
                expect_len: 0,
                read,
                priority: Priority::Normal,
                pace: None,
            };
            let requests = [b"GET / HTTP/1.1\r\n\r\n".to_vec()];
            let w = Worker::new(&spec, &requests, 0, None, streams).unwrap();
            if let ClientRead::Size(n) = read {
                assert_eq!(w.scratch.len(), n);
            }
            assert_eq!(w.scratch.as_ptr() as usize % page, 0, "{read} scratch");
            for c in &w.conns {
                assert_eq!(c.head.len(), HEAD_BUF);
                assert_eq!(c.head.as_ptr() as usize % page, 0, "{read} head");
            }
        }
    }

    #[test]
    fn a_pacer_starts_on_schedule_keeps_it_when_a_little_late_and_never_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer {
            every: ms(10),
            next: t0,
            waiting: (0..6).collect(),
        };
        assert_eq!(p.due(t0), Some(0));
        assert_eq!(p.due(t0), None, "one start per interval");
        assert_eq!(p.wake_at(), Some(t0 + ms(10)));
        assert_eq!(p.due(t0 + ms(9)), None);
        // A millisecond late: the schedule stays on t0 + 10k.
        assert_eq!(p.due(t0 + ms(11)), Some(1));
        assert_eq!(p.wake_at(), Some(t0 + ms(20)));
        // Far behind: one start now and one more, then the interval again.
        assert_eq!(p.due(t0 + ms(100)), Some(2));
        assert_eq!(p.due(t0 + ms(100)), Some(3));
        assert_eq!(p.due(t0 + ms(100)), None);
        assert_eq!(p.wake_at(), Some(t0 + ms(110)));
        assert_eq!(p.due(t0 + ms(110)), Some(4));
        assert_eq!(p.due(t0 + ms(120)), Some(5));
        // Nobody waits: no start, and no reason to wake.
        assert_eq!(p.due(t0 + ms(500)), None);
        assert_eq!(p.wake_at(), None);
    }

    #[test]
    fn zero_connections_is_an_error() {
        let spec = LoadSpec {
            addr: "127.0.0.1:9".parse().unwrap(),
            paths: vec!["/".into()],
            host: "x".into(),
            conns: 0,
            threads: 1,
            cpus: vec![],
            duration: Duration::from_millis(10),
            expect_status: 200,
            expect_len: 0,
            read: ClientRead::DEFAULT,
            priority: Priority::Normal,
            pace: None,
        };
        assert_eq!(run(&spec).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let spec = LoadSpec {
            conns: 1,
            paths: vec![],
            ..spec
        };
        assert_eq!(run(&spec).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let spec = LoadSpec {
            paths: vec!["/".into()],
            read: ClientRead::Size(0),
            ..spec
        };
        assert_eq!(run(&spec).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let spec = LoadSpec {
            read: ClientRead::DEFAULT,
            pace: Some(Duration::ZERO),
            ..spec
        };
        assert_eq!(run(&spec).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
