//! Tests of the oracle against the real page cache (a file on disk,
//! evicted with `posix_fadvise(DONTNEED)`) and of the pool, synchronised on
//! the held reader's latch and on the completion descriptor, never on time.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::num::NonZeroUsize;

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::unistd::{SysconfVar, sysconf};

use super::testing::{HeldReader, Scripted};
use super::*;

const KIB: u64 = 1024;

/// A file that is removed when the test ends.
struct TempFile {
    path: PathBuf,
    file: Arc<File>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A `len`-byte file on a disk-backed file system (`/var/tmp`, which unlike
/// `/tmp` is never tmpfs by convention), written, synced and then evicted
/// from the page cache.
fn cold_file(len: u64) -> TempFile {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from("/var/tmp");
    let dir = if dir.is_dir() {
        dir
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!(
        "zcserve-disk-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create test file");
    let chunk: Vec<u8> = (0..64 * KIB).map(|i| (i % 251) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write test file");
        left -= n as u64;
    }
    // Dirty pages cannot be dropped: write them back first.
    f.sync_all().expect("fsync test file");
    let file = Arc::new(f);
    evict(file.as_fd(), 0, len);
    TempFile { path, file }
}

fn evict(fd: BorrowedFd<'_>, offset: u64, len: u64) {
    posix_fadvise(
        fd,
        offset as i64,
        len as i64,
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .expect("posix_fadvise(DONTNEED)");
}

/// Which pages of `[offset, offset + len)` are cached, by `mincore(2)` on a
/// transient mapping: the ground truth the oracles are checked against,
/// independent of both. (mincore reports page-cache state to the file's
/// owner, which the test is.)
fn cached(file: &File, offset: u64, len: u64) -> Vec<bool> {
    let page = sysconf(SysconfVar::PAGE_SIZE).unwrap().unwrap() as u64;
    let start = offset / page * page;
    let map_len = usize::try_from(offset + len - start).unwrap();
    let pages = map_len.div_ceil(page as usize);
    // SAFETY: a private read-only view of a file this test owns; nothing
    // reads through it (mincore only inspects it) and it is unmapped below.
    let addr = unsafe {
        mmap(
            None,
            NonZeroUsize::new(map_len).unwrap(),
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            file,
            start as i64,
        )
    }
    .expect("mmap for mincore");
    let mut vec = vec![0u8; pages];
    // SAFETY: `addr` is the start of the `map_len`-byte mapping made above,
    // and `vec` holds one byte for each of its pages, as mincore writes.
    let r = unsafe { libc::mincore(addr.as_ptr(), map_len, vec.as_mut_ptr()) };
    // SAFETY: the mapping made above, no longer used.
    unsafe { munmap(addr, map_len) }.expect("munmap");
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().map(|b| b & 1 == 1).collect()
}

/// True when every page of the range is cached (by [`cached`]).
fn truth(t: &TempFile, offset: u64, len: u64) -> bool {
    cached(&t.file, offset, len).into_iter().all(|c| c)
}

/// Evicts `[offset, offset + len)` and confirms with mincore that no page
/// of it is left. `DONTNEED` skips pages it cannot drop at that instant, so
/// it is repeated (a bounded number of times, no waiting in between). A file
/// system that keeps its pages anyway (tmpfs) cannot show a miss: the test
/// then fails, naming the cause, unless `ZCSERVE_ALLOW_SKIP` lists
/// `eviction` (or `all`); it then says SKIPPED on both outputs and the
/// caller returns early.
fn make_cold(t: &TempFile, offset: u64, len: u64) -> bool {
    for _ in 0..100 {
        evict(t.file.as_fd(), offset, len);
        if cached(&t.file, offset, len).iter().all(|&c| !c) {
            return true;
        }
    }
    let why = format!(
        "{} [{offset}, +{len}) stayed in the page cache after 100 posix_fadvise(DONTNEED) (tmpfs?)",
        t.path.display()
    );
    let allowed = std::env::var("ZCSERVE_ALLOW_SKIP").unwrap_or_default();
    if allowed
        .split(',')
        .any(|s| matches!(s.trim(), "eviction" | "all"))
    {
        println!("SKIPPED: {why} (allowed by ZCSERVE_ALLOW_SKIP)");
        eprintln!("SKIPPED: {why} (allowed by ZCSERVE_ALLOW_SKIP)");
        return false;
    }
    panic!("{why}; run on a disk-backed /var/tmp, or set ZCSERVE_ALLOW_SKIP=eviction");
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).expect("poll") == 1
}

/// Waits for `fd` to turn readable; the bound only catches a hang.
fn wait_readable(fd: BorrowedFd<'_>) {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(60_000u16)).expect("poll");
    assert_eq!(n, 1, "completion fd did not turn readable within 60 s");
}

fn pool(threads: usize, queue: usize, reader: Arc<dyn ReadIn>) -> DiskPool {
    DiskPool::new(
        PoolConfig {
            threads,
            queue,
            scratch: 64 * KIB as usize,
            priority: ThreadPriority::Normal,
        },
        reader,
    )
    .expect("start pool")
    .expect("pool enabled")
}

/// Submits a read-in and waits for it; returns the bytes read.
fn read_in(p: &DiskPool, file: &Arc<File>, offset: u64, len: u64) -> u64 {
    let done = Completion::new().unwrap();
    let mut ticket = p.submit(&done, Arc::clone(file), offset, len).unwrap();
    wait_readable(done.fd());
    ticket.try_finish().expect("finished").expect("read in")
}

/// The oracle's answer on a range just verified cold.
///
/// cachestat must say "not resident". The probe is a read: a miss starts
/// readahead, and a disk fast enough (this VM's, backed by the host's
/// cache) can finish it before the probe looks again, so the probe may
/// rightly say "resident" — but then the pages it probed must really be
/// cached now, which a probe that ignored the disk would not achieve.
fn assert_cold_answer(t: &TempFile, oracle: &PageCache, offset: u64, len: u64) {
    let method = oracle.method();
    let resident = oracle.resident(t.file.as_fd(), offset, len).unwrap();
    match method {
        Method::NowaitProbe if resident => {
            println!("note: the probe's readahead finished within the call at {offset}");
            assert!(truth(t, offset, 1) && truth(t, offset + len - 1, 1));
        }
        _ => assert!(!resident, "{method}: [{offset}, +{len}) is cold"),
    }
}

/// The oracle against mincore's truth on a cold file, a read-in, and a
/// far chunk. Every "cold" question comes right after a verified eviction
/// and is asked once: a `RWF_NOWAIT` probe that misses starts readahead, so
/// a second probe of the same range may legitimately find it cached.
fn miss_then_read_in(method: Method) {
    const LEN: u64 = 4096 * KIB;
    const CHUNK: u64 = 256 * KIB;
    let t = cold_file(LEN);
    if !make_cold(&t, 0, LEN) {
        return;
    }
    let oracle = PageCache::with_method(method);
    assert_eq!(oracle.method(), method);
    let fd = t.file.as_fd();
    assert_cold_answer(&t, &oracle, 0, CHUNK);

    let p = pool(1, 4, Arc::new(PreadIn));
    assert_eq!(read_in(&p, &t.file, 0, CHUNK), CHUNK);
    assert!(truth(&t, 0, CHUNK), "pread left the chunk cached");
    assert!(
        oracle.resident(fd, 0, CHUNK).unwrap(),
        "{method}: after read-in"
    );
    assert!(
        oracle.resident(fd, 100, 4 * KIB).unwrap(),
        "{method}: unaligned"
    );

    // The last chunk, evicted again in case readahead reached it: the
    // oracle looks at the range asked, not at the file as a whole.
    let far = LEN - CHUNK;
    assert!(make_cold(&t, far, CHUNK));
    assert_cold_answer(&t, &oracle, far, CHUNK);
    // A read-in that meets end of file is short, and still warms the rest.
    assert_eq!(read_in(&p, &t.file, far, 2 * CHUNK), CHUNK);
    assert!(truth(&t, far, CHUNK));
    assert!(oracle.resident(fd, far, CHUNK).unwrap(), "{method}: tail");
    assert_eq!(p.stats().snapshot().bytes_in, 2 * CHUNK);
}

#[test]
fn kernel_has_cachestat() {
    // This crate's CI kernel is >= 6.5; an older one must say so loudly
    // rather than quietly test only the fallback.
    let method = PageCache::new().method();
    if method != Method::Cachestat {
        let allowed = std::env::var("ZCSERVE_ALLOW_SKIP").unwrap_or_default();
        assert!(
            allowed.contains("cachestat") || allowed.contains("all"),
            "this kernel has no cachestat(2) (method {method}); \
             set ZCSERVE_ALLOW_SKIP=cachestat to accept the fallback"
        );
        println!("SKIPPED: no cachestat(2), using {method}");
    }
}

#[test]
fn cachestat_sees_a_miss_and_the_read_in() {
    if PageCache::new().method() == Method::Cachestat {
        miss_then_read_in(Method::Cachestat);
    }
}

#[test]
fn nowait_probe_sees_a_miss_and_the_read_in() {
    miss_then_read_in(Method::NowaitProbe);
}

#[test]
fn cachestat_sees_a_hole_inside_the_range() {
    const LEN: u64 = 512 * KIB;
    let t = cold_file(LEN);
    if PageCache::new().method() != Method::Cachestat {
        return;
    }
    let fd = t.file.as_fd();
    let p = pool(1, 4, Arc::new(PreadIn));
    assert_eq!(read_in(&p, &t.file, 0, LEN), LEN);
    if !make_cold(&t, 128 * KIB, 64 * KIB) {
        return;
    }
    // cachestat has no side effects, so it must agree with mincore on
    // every range, asked in any order.
    let oracle = PageCache::with_method(Method::Cachestat);
    for (off, len) in [
        (0, 256 * KIB),
        (0, 128 * KIB),
        (192 * KIB, 64 * KIB),
        (100, 200 * KIB),
    ] {
        assert_eq!(
            oracle.resident(fd, off, len).unwrap(),
            truth(&t, off, len),
            "[{off}, +{len})"
        );
    }
    assert!(!oracle.resident(fd, 0, 256 * KIB).unwrap());
    assert!(oracle.resident(fd, 0, 128 * KIB).unwrap());
}

#[test]
fn an_empty_range_is_resident() {
    let t = cold_file(64 * KIB);
    for m in [Method::Cachestat, Method::NowaitProbe, Method::Assumed] {
        let oracle = PageCache::with_method(m);
        assert!(oracle.resident(t.file.as_fd(), 0, 0).unwrap(), "{m}");
    }
}

#[test]
fn completion_turns_readable_exactly_when_the_held_read_is_released() {
    let t = cold_file(64 * KIB);
    let (reader, hold) = HeldReader::new();
    let p = pool(1, 4, reader);
    let done = Completion::new().unwrap();
    assert!(!readable(done.fd()));
    let mut ticket = p.submit(&done, Arc::clone(&t.file), 0, 64 * KIB).unwrap();
    let entered = hold.entered();
    assert_eq!((entered.offset, entered.len), (0, 64 * KIB));
    // Held: nothing is signalled and nothing can be taken.
    assert!(!readable(done.fd()));
    assert!(ticket.try_finish().is_none());
    assert!(!readable(done.fd()));
    hold.release();
    wait_readable(done.fd());
    assert_eq!(ticket.try_finish().unwrap().unwrap(), 64 * KIB);
    // Taking the outcome resets the descriptor for the session's next job.
    assert!(!readable(done.fd()));
    assert!(ticket.try_finish().unwrap().is_err(), "a spent ticket");

    // The same descriptor serves the next job.
    let mut again = p.submit(&done, Arc::clone(&t.file), 0, KIB).unwrap();
    hold.entered();
    assert!(!readable(done.fd()));
    hold.release();
    wait_readable(done.fd());
    assert_eq!(again.try_finish().unwrap().unwrap(), KIB);
}

#[test]
fn a_full_queue_answers_busy_and_the_counters_match_the_jobs() {
    const LEN: u64 = 32 * KIB;
    let t = cold_file(LEN);
    let (reader, hold) = HeldReader::new();
    let p = pool(1, 2, reader);
    let comps: Vec<Completion> = (0..4).map(|_| Completion::new().unwrap()).collect();

    let mut tickets = vec![p.submit(&comps[0], Arc::clone(&t.file), 0, LEN).unwrap()];
    hold.entered(); // job 0 is out of the queue, held in the thread
    for c in &comps[1..3] {
        tickets.push(p.submit(c, Arc::clone(&t.file), 0, LEN).unwrap());
    }
    assert_eq!(p.stats().snapshot().queued, 2);
    // The caller is answered at once, not blocked.
    assert!(matches!(
        p.submit(&comps[3], Arc::clone(&t.file), 0, LEN),
        Err(SubmitError::Busy)
    ));
    // A refused submit leaves its completion usable and unsignalled.
    assert!(!readable(comps[3].fd()));

    for (c, ticket) in comps.iter().zip(&mut tickets) {
        hold.release();
        wait_readable(c.fd());
        assert_eq!(ticket.try_finish().unwrap().unwrap(), LEN);
    }
    let s = p.stats().snapshot();
    assert_eq!(s.offloaded, 3);
    assert_eq!(s.busy, 1);
    assert_eq!(s.completed, 3);
    assert_eq!(s.failed, 0);
    assert_eq!(s.bytes_in, 3 * LEN);
    assert_eq!(s.queued, 0);
    assert_eq!(s.max_queued, 2);
    assert!(s.read_ns > 0 && s.queue_ns > 0, "{s:?}");

    // With room again, the refused completion is accepted.
    let mut last = p.submit(&comps[3], Arc::clone(&t.file), 0, LEN).unwrap();
    hold.release();
    wait_readable(comps[3].fd());
    assert_eq!(last.try_finish().unwrap().unwrap(), LEN);
    assert_eq!(p.stats().snapshot().offloaded, 4);
}

#[test]
fn one_job_at_a_time_per_completion() {
    let t = cold_file(4 * KIB);
    let (reader, hold) = HeldReader::new();
    let p = pool(1, 4, reader);
    let done = Completion::new().unwrap();
    let _ticket = p.submit(&done, Arc::clone(&t.file), 0, 4 * KIB).unwrap();
    assert!(matches!(
        p.submit(&done, Arc::clone(&t.file), 0, 4 * KIB),
        Err(SubmitError::InFlight)
    ));
    hold.release();
}

#[test]
fn an_abandoned_ticket_signals_nothing_and_frees_its_completion() {
    let t = cold_file(4 * KIB);
    let (reader, hold) = HeldReader::new();
    let p = pool(1, 4, reader);
    let first = Completion::new().unwrap();
    let second = Completion::new().unwrap();
    drop(p.submit(&first, Arc::clone(&t.file), 0, 4 * KIB).unwrap());
    let mut next = p.submit(&second, Arc::clone(&t.file), 0, 4 * KIB).unwrap();
    hold.release();
    hold.release();
    // One thread, first in first out: once the second job is done, so is
    // the abandoned one.
    wait_readable(second.fd());
    assert_eq!(next.try_finish().unwrap().unwrap(), 4 * KIB);
    assert!(!readable(first.fd()));
    let mut reused = p.submit(&first, Arc::clone(&t.file), 0, KIB).unwrap();
    hold.release();
    wait_readable(first.fd());
    assert_eq!(reused.try_finish().unwrap().unwrap(), KIB);
}

#[test]
fn drop_cancels_queued_jobs_and_joins_the_threads() {
    let t = cold_file(4 * KIB);
    let (reader, hold) = HeldReader::new();
    let p = pool(1, 4, Arc::clone(&reader) as Arc<dyn ReadIn>);
    let running = Completion::new().unwrap();
    let queued = Completion::new().unwrap();
    let mut a = p.submit(&running, Arc::clone(&t.file), 0, 4 * KIB).unwrap();
    hold.entered();
    let mut b = p.submit(&queued, Arc::clone(&t.file), 0, 4 * KIB).unwrap();

    let dropper = std::thread::spawn(move || drop(p));
    // The queued job is cancelled first, so its session wakes to an error
    // instead of waiting forever...
    wait_readable(queued.fd());
    assert!(b.try_finish().unwrap().is_err());
    // ...while the running one is still held and unsignalled.
    assert!(!readable(running.fd()));
    hold.release();
    dropper.join().expect("drop panicked");
    // Joined: the thread has returned and let go of its reader.
    assert_eq!(Arc::strong_count(&reader), 1);
    assert_eq!(a.try_finish().unwrap().unwrap(), 4 * KIB);
    assert!(hold.try_entered().is_none(), "the cancelled job never ran");
}

#[test]
fn a_panicking_reader_fails_its_job_and_the_pool_goes_on() {
    struct Flaky(AtomicU64);
    impl ReadIn for Flaky {
        fn read_in(&self, f: &File, o: u64, l: u64, s: &mut [u8]) -> std::io::Result<u64> {
            if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("injected reader panic");
            }
            PreadIn.read_in(f, o, l, s)
        }
    }
    let t = cold_file(4 * KIB);
    let p = pool(1, 4, Arc::new(Flaky(AtomicU64::new(0))));
    let done = Completion::new().unwrap();
    let mut first = p.submit(&done, Arc::clone(&t.file), 0, 4 * KIB).unwrap();
    wait_readable(done.fd());
    assert!(first.try_finish().unwrap().is_err());
    assert_eq!(read_in(&p, &t.file, 0, 4 * KIB), 4 * KIB);
    let s = p.stats().snapshot();
    assert_eq!((s.completed, s.failed, s.bytes_in), (2, 1, 4 * KIB));
}

#[test]
fn zero_threads_disable_the_pool_and_a_zero_queue_is_refused() {
    let off = PoolConfig {
        threads: 0,
        ..PoolConfig::default()
    };
    assert!(DiskPool::new(off, Arc::new(PreadIn)).unwrap().is_none());
    let bad = PoolConfig {
        queue: 0,
        ..PoolConfig::default()
    };
    let e = DiskPool::new(bad, Arc::new(PreadIn)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("queue (0)"), "{e}");
}

#[test]
fn the_pool_threads_run_at_the_priority_asked_for() {
    /// Records the nice value and policy of the thread that runs the
    /// read-in.
    struct Seen(Mutex<Option<(i32, i32)>>);
    impl ReadIn for Seen {
        fn read_in(&self, f: &File, o: u64, l: u64, s: &mut [u8]) -> std::io::Result<u64> {
            *self.0.lock().unwrap() = Some(own_priority());
            PreadIn.read_in(f, o, l, s)
        }
    }
    /// This thread's nice value and scheduling policy.
    fn own_priority() -> (i32, i32) {
        let tid = nix::unistd::gettid().as_raw();
        // SAFETY: getpriority(2) and sched_getscheduler(2) take plain
        // integers and touch no memory of ours.
        unsafe {
            (
                libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                libc::sched_getscheduler(tid),
            )
        }
    }
    let t = cold_file(4 * KIB);
    // A pool thread starts as its creator and is only ever lowered.
    let (nice, policy) = own_priority();
    for (priority, want) in [
        (ThreadPriority::Normal, (nice, policy)),
        (ThreadPriority::Nice(7), (nice.max(7), policy)),
        (ThreadPriority::Idle, (nice, libc::SCHED_IDLE)),
    ] {
        let seen = Arc::new(Seen(Mutex::new(None)));
        let config = PoolConfig {
            threads: 1,
            priority,
            ..PoolConfig::default()
        };
        let p = DiskPool::new(config, seen.clone()).unwrap().unwrap();
        assert_eq!(read_in(&p, &t.file, 0, 4 * KIB), 4 * KIB);
        assert_eq!(*seen.0.lock().unwrap(), Some(want), "{priority}");
        assert_eq!(p.priority_refused(), None, "{priority}");
    }
    assert_ne!(policy, libc::SCHED_IDLE, "this test needs a normal thread");
    let e = DiskPool::new(
        PoolConfig {
            priority: ThreadPriority::Nice(MAX_NICE + 1),
            ..PoolConfig::default()
        },
        Arc::new(PreadIn),
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("nice 20"), "{e}");
}

#[test]
fn scripted_residency_answers_and_counts() {
    let t = cold_file(4 * KIB);
    let oracle = Scripted::new(|_, offset, _| offset < 100);
    assert!(oracle.resident(t.file.as_fd(), 0, 1).unwrap());
    assert!(!oracle.resident(t.file.as_fd(), 100, 1).unwrap());
    assert_eq!(oracle.calls(), 2);
}

type Oracle = Scripted<fn(BorrowedFd<'_>, u64, u64) -> bool>;

/// A gate whose oracle says every range is cold (or every range cached),
/// and that oracle, to count the questions.
fn gate(pool: &Arc<DiskPool>, cold: bool) -> (ColdGate, Arc<Oracle>) {
    let answer: fn(BorrowedFd<'_>, u64, u64) -> bool = if cold {
        |_, _, _| false
    } else {
        |_, _, _| true
    };
    let oracle = Arc::new(Scripted::new(answer));
    let g = ColdGate::new(Arc::clone(&oracle) as Arc<dyn Residency>, Arc::clone(pool));
    (g, oracle)
}

#[test]
fn gate_lets_a_resident_range_go_and_asks_once_per_range() {
    let t = cold_file(512 * KIB);
    let (reader, _hold) = HeldReader::new();
    let p = Arc::new(pool(1, 4, reader));
    let (mut g, oracle) = gate(&p, false);
    assert_eq!(g.before_move(&t.file, 0, 256 * KIB).unwrap(), Gate::Go);
    assert_eq!(oracle.calls(), 1);
    // The rest of the same chunk, after a socket-full pump: no new question.
    assert_eq!(
        g.before_move(&t.file, 64 * KIB, 192 * KIB).unwrap(),
        Gate::Go
    );
    assert_eq!(oracle.calls(), 1);
    assert_eq!(
        g.before_move(&t.file, 256 * KIB, 256 * KIB).unwrap(),
        Gate::Go
    );
    assert_eq!(oracle.calls(), 2);
    assert!(g.completion_fd().is_none(), "no descriptor before a miss");
    assert_eq!(p.stats().snapshot().offloaded, 0);
}

#[test]
fn gate_waits_for_a_cold_range_then_moves_it_without_asking_again() {
    const CHUNK: u64 = 64 * KIB;
    let t = cold_file(2 * CHUNK);
    let (reader, hold) = HeldReader::new();
    let p = Arc::new(pool(1, 4, reader));
    // Cold forever: only the gate's memory of the read-in lets it go.
    let (mut g, oracle) = gate(&p, true);
    assert_eq!(g.before_move(&t.file, 0, CHUNK).unwrap(), Gate::Wait);
    let fd = g.completion_fd().expect("a descriptor after a miss");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    assert_eq!(hold.entered().offset, 0);
    // A spurious wake while held: still waiting, nothing asked or queued.
    assert_eq!(g.before_move(&t.file, 0, CHUNK).unwrap(), Gate::Wait);
    assert_eq!(oracle.calls(), 1);
    assert!(!readable(g.completion_fd().unwrap()));
    hold.release();
    wait_readable(g.completion_fd().unwrap());
    assert_eq!(g.before_move(&t.file, 0, CHUNK).unwrap(), Gate::Go);
    assert_eq!(
        oracle.calls(),
        1,
        "the read-in range is not asked about again"
    );
    assert!(!readable(g.completion_fd().unwrap()));

    assert_eq!(g.before_move(&t.file, CHUNK, CHUNK).unwrap(), Gate::Wait);
    assert_eq!(oracle.calls(), 2);
    let again = std::os::fd::AsRawFd::as_raw_fd(&g.completion_fd().unwrap());
    assert_eq!(raw, again, "one descriptor for the session's lifetime");
    hold.release();
    wait_readable(g.completion_fd().unwrap());
    assert_eq!(g.before_move(&t.file, CHUNK, CHUNK).unwrap(), Gate::Go);
    let s = p.stats().snapshot();
    assert_eq!((s.offloaded, s.completed, s.bytes_in), (2, 2, 2 * CHUNK));
}

#[test]
fn a_full_pool_parks_sessions_until_a_thread_makes_room() {
    const LEN: u64 = 16 * KIB;
    let t = cold_file(LEN);
    let (reader, hold) = HeldReader::new();
    let p = Arc::new(pool(1, 1, reader));
    let (mut running, _) = gate(&p, true);
    let (mut queued, _) = gate(&p, true);
    let (mut parked, asked) = gate(&p, true);

    assert_eq!(running.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    hold.entered();
    assert_eq!(queued.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    assert_eq!(parked.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    let s = p.stats().snapshot();
    assert_eq!((s.offloaded, s.parked, s.busy), (2, 1, 0));
    assert!(!readable(parked.completion_fd().unwrap()));
    assert_eq!(parked.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    assert_eq!(
        asked.calls(),
        1,
        "a parked session does not ask while parked"
    );

    // The thread finishes the first read and takes the queued one: room.
    hold.release();
    wait_readable(parked.completion_fd().unwrap());
    assert_eq!(hold.entered().offset, 0);
    assert_eq!(parked.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    assert_eq!(asked.calls(), 2, "woken, it asks again and is queued");
    assert_eq!(p.stats().snapshot().offloaded, 3);

    assert_eq!(running.before_move(&t.file, 0, LEN).unwrap(), Gate::Go);
    for g in [&mut queued, &mut parked] {
        assert_eq!(g.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
        hold.release();
        wait_readable(g.completion_fd().unwrap());
        assert_eq!(g.before_move(&t.file, 0, LEN).unwrap(), Gate::Go);
    }
    let s = p.stats().snapshot();
    assert_eq!((s.offloaded, s.completed, s.bytes_in), (3, 3, 3 * LEN));
}

#[test]
fn a_range_the_pool_is_reading_for_another_session_waits_even_if_the_oracle_says_cached() {
    const LEN: u64 = 64 * KIB;
    let t = cold_file(LEN);
    let other = cold_file(LEN);
    let (reader, hold) = HeldReader::new();
    let p = Arc::new(pool(2, 4, reader));
    assert!(!p.any_reading());
    let (mut first, _) = gate(&p, true);
    assert_eq!(first.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    assert_eq!(hold.entered().offset, 0);
    assert!(p.any_reading());

    // The same file opened anew (another request, no shared descriptor),
    // and an oracle that calls it cached, as cachestat does once the read
    // is queued: the overlapping range still goes to the pool.
    let same = Arc::new(File::open(&t.path).unwrap());
    let (mut second, asked) = gate(&p, false);
    assert_eq!(second.before_move(&same, LEN / 2, LEN).unwrap(), Gate::Wait);
    assert_eq!(asked.calls(), 1);
    assert_eq!(hold.entered().offset, LEN / 2);
    // Not overlapping, or another file: the oracle's word stands.
    let (mut beyond, _) = gate(&p, false);
    let past = LEN / 2 + LEN;
    assert_eq!(beyond.before_move(&same, past, LEN).unwrap(), Gate::Go);
    let (mut elsewhere, _) = gate(&p, false);
    assert_eq!(
        elsewhere.before_move(&other.file, 0, LEN).unwrap(),
        Gate::Go
    );
    assert_eq!(p.stats().snapshot().offloaded, 2);

    hold.release();
    hold.release();
    for g in [&mut first, &mut second] {
        wait_readable(g.completion_fd().unwrap());
    }
    assert_eq!(first.before_move(&t.file, 0, LEN).unwrap(), Gate::Go);
    assert_eq!(second.before_move(&same, LEN / 2, LEN).unwrap(), Gate::Go);
    assert!(!p.any_reading(), "finished jobs are forgotten");
    let (mut later, _) = gate(&p, false);
    assert_eq!(later.before_move(&same, 0, LEN).unwrap(), Gate::Go);
    assert_eq!(p.stats().snapshot().offloaded, 2);
}

#[test]
fn with_a_memo_sessions_on_one_thread_ask_once_per_window_and_never_past_a_read_in() {
    const LEN: u64 = 4 * KIB;
    let hour = Some(std::time::Duration::from_secs(3600));
    let t = cold_file(LEN);
    let (reader, hold) = HeldReader::new();
    let p = Arc::new(pool(2, 4, reader));
    let oracle = Arc::new(Oracle::new(|_, _, _| true));
    let session = |window| {
        ColdGate::new(Arc::clone(&oracle) as Arc<dyn Residency>, Arc::clone(&p)).with_memo(window)
    };
    // Without a memo every session asks.
    for _ in 0..3 {
        assert_eq!(
            session(None).before_move(&t.file, 0, LEN).unwrap(),
            Gate::Go
        );
    }
    assert_eq!(oracle.calls(), 3);
    // With one, the first session asks and the next ones on this thread
    // recall its answer for the same open file and a range inside it.
    for _ in 0..3 {
        assert_eq!(
            session(hour).before_move(&t.file, 0, LEN).unwrap(),
            Gate::Go
        );
    }
    assert_eq!(
        session(hour).before_move(&t.file, 0, LEN / 2).unwrap(),
        Gate::Go
    );
    assert_eq!(oracle.calls(), 4);
    // A window that is over, another open file of the same path, a range
    // beyond: asked again.
    let zero = Some(std::time::Duration::ZERO);
    assert_eq!(
        session(zero).before_move(&t.file, 0, LEN).unwrap(),
        Gate::Go
    );
    let reopened = Arc::new(File::open(&t.path).unwrap());
    assert_eq!(
        session(hour).before_move(&reopened, 0, LEN).unwrap(),
        Gate::Go
    );
    assert_eq!(
        session(hour).before_move(&t.file, 0, LEN + 1).unwrap(),
        Gate::Go
    );
    assert_eq!(oracle.calls(), 7);

    // A cold answer is not remembered: the next session asks again.
    let cold = cold_file(LEN);
    let said_cold = Arc::new(Oracle::new(|_, _, _| false));
    let cold_session = || {
        ColdGate::new(Arc::clone(&said_cold) as Arc<dyn Residency>, Arc::clone(&p)).with_memo(hour)
    };
    let mut first = cold_session();
    assert_eq!(first.before_move(&cold.file, 0, LEN).unwrap(), Gate::Wait);
    assert_eq!(hold.entered().offset, 0);
    let mut again = cold_session();
    assert_eq!(again.before_move(&cold.file, 0, LEN).unwrap(), Gate::Wait);
    assert_eq!(said_cold.calls(), 2);
    assert_eq!(hold.entered().offset, 0);
    // The memo recalls t's range as resident, but while the pool reads t
    // in for another session (as after an eviction) a session still
    // waits: the pages are locked under that read.
    let mut reading = ColdGate::new(Arc::clone(&said_cold) as Arc<dyn Residency>, Arc::clone(&p));
    assert_eq!(reading.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    let mut recalled = session(hour);
    assert_eq!(recalled.before_move(&t.file, 0, LEN).unwrap(), Gate::Wait);
    for _ in 0..4 {
        hold.release();
    }
    for (g, file) in [
        (&mut first, &cold.file),
        (&mut again, &cold.file),
        (&mut reading, &t.file),
        (&mut recalled, &t.file),
    ] {
        wait_readable(g.completion_fd().unwrap());
        assert_eq!(g.before_move(file, 0, LEN).unwrap(), Gate::Go);
    }
    assert_eq!(p.stats().snapshot().offloaded, 4);
}

#[test]
fn chunks_inside_the_span_last_asked_about_are_not_asked_again() {
    const CHUNK: u64 = 256 * KIB;
    const SPAN: u64 = 4 * 1024 * KIB;
    let t = cold_file(2 * SPAN);
    let (reader, _hold) = HeldReader::new();
    let p = Arc::new(pool(1, 4, reader));
    let (mut g, oracle) = gate(&p, false);
    // As the pump asks: each chunk with the rest of the range up to SPAN.
    let mut offset = 0;
    while offset < 2 * SPAN {
        let span = (2 * SPAN - offset).min(SPAN);
        assert_eq!(
            g.before_move_within(&t.file, offset, CHUNK, span).unwrap(),
            Gate::Go
        );
        offset += CHUNK;
    }
    assert_eq!(oracle.calls(), 2, "once per span, not once per chunk");
}
