//! The server's pool for blocking disk work: opening a request path that
//! the open-file cache did not have (`openat2` and `statx`, probing for
//! `index.html`, a listing's `readdir` and stats). Those calls can wait
//! milliseconds for a slow disk; on a tokio worker that wait would be paid
//! by every connection on it, so they run on at most `--disk-threads`
//! threads of tokio's blocking pool while the connection waits
//! asynchronously.
//!
//! Hot work never queues here: a request answered from memory (a hit in
//! the open-file cache) is answered on its worker without touching the
//! pool, so the queue holds only cold work, as with nginx's `aio threads`
//! where a cache-aware server can skip the hop. The bound keeps a burst of
//! cold requests from spawning hundreds of threads that would all queue in
//! the disk anyway; requests past it wait in FIFO order.
//!
//! With zero threads the pool is off and the caller does the work inline,
//! as before the pool existed (kept for measuring what the pool buys).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// A function run at the start of every job with the request target it
/// serves; see [`DiskWork::set_gate`].
pub type Gate = Arc<dyn Fn(&str) + Send + Sync>;

/// What a job does, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Opening a path that names a file (or turns out to be a directory
    /// without a trailing slash, redirected).
    Open,
    /// Opening a path with a trailing slash: a directory, whose
    /// `index.html` is probed and which may be listed.
    Directory,
}

impl Work {
    const ALL: [Work; 2] = [Work::Open, Work::Directory];

    fn name(self) -> &'static str {
        match self {
            Work::Open => "open",
            Work::Directory => "directory",
        }
    }
}

/// The pool; [`DiskWork::off`] is none.
pub struct DiskWork {
    /// One permit per thread; `None` when the pool is off.
    permits: Option<Arc<Semaphore>>,
    threads: usize,
    stats: Arc<DiskStats>,
    gate: Option<Gate>,
}

impl fmt::Debug for DiskWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskWork")
            .field("threads", &self.threads)
            .field("stats", &self.stats)
            .field("gate", &self.gate.is_some())
            .finish()
    }
}

/// What the pool did; all times in nanoseconds.
#[derive(Debug, Default)]
pub struct DiskStats {
    offloaded: [AtomicU64; Work::ALL.len()],
    queued: AtomicU64,
    queued_max: AtomicU64,
    wait_ns: AtomicU64,
    run_ns: AtomicU64,
}

/// A job counted as queued until it starts running or is dropped unrun.
struct Queued {
    stats: Arc<DiskStats>,
    since: Instant,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl DiskWork {
    /// A pool running at most `threads` jobs at once; 0 is [`DiskWork::off`].
    pub fn new(threads: usize) -> DiskWork {
        DiskWork {
            permits: (threads > 0)
                .then(|| Arc::new(Semaphore::new(threads.min(Semaphore::MAX_PERMITS)))),
            threads,
            stats: Arc::default(),
            gate: None,
        }
    }

    /// No pool: callers do their disk work inline.
    pub fn off() -> DiskWork {
        DiskWork::new(0)
    }

    /// Whether jobs run on the pool (false: callers work inline).
    pub fn is_on(&self) -> bool {
        self.permits.is_some()
    }

    /// Most jobs running at once (0: off).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The counters.
    pub fn stats(&self) -> &DiskStats {
        &self.stats
    }

    /// Makes every job call `gate` with its request target before it
    /// touches the disk, on the pool thread. A seam for tests, which hold
    /// one path's open on a latch they control; it costs nothing on the
    /// hot path, which never reaches the pool.
    pub fn set_gate(&mut self, gate: Gate) {
        self.gate = Some(gate);
    }

    /// Called by a job first, with the request target it serves.
    pub fn enter(&self, target: &str) {
        if let Some(gate) = &self.gate {
            gate(target);
        }
    }

    /// Runs `job` on the pool and waits for it without blocking the
    /// worker; when the pool is off, runs it right here. `None` if the
    /// runtime dropped the job (it is shutting down). A panic in the job
    /// resumes in the caller, as if the job had run inline.
    pub async fn run<T, F>(&self, work: Work, job: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let Some(permits) = &self.permits else {
            return Some(job());
        };
        let stats = &self.stats;
        stats.offloaded[work as usize].fetch_add(1, Ordering::Relaxed);
        let depth = stats.queued.fetch_add(1, Ordering::Relaxed) + 1;
        stats.queued_max.fetch_max(depth, Ordering::Relaxed);
        let queued = Queued {
            stats: Arc::clone(stats),
            since: Instant::now(),
        };
        // Never closed, so acquiring fails only if that changes.
        let permit = permits.clone().acquire_owned().await.ok()?;
        let handle = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let stats = Arc::clone(&queued.stats);
            stats
                .wait_ns
                .fetch_add(nanos(started - queued.since), Ordering::Relaxed);
            drop(queued);
            let out = job();
            stats
                .run_ns
                .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
            // Held until the job is done, even if the caller went away:
            // the bound is on threads busy, not on callers waiting.
            drop(permit);
            out
        });
        match handle.await {
            Ok(out) => Some(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

impl DiskStats {
    /// Jobs of kind `work` handed to the pool so far.
    pub fn offloaded(&self, work: Work) -> u64 {
        self.offloaded[work as usize].load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Most jobs ever waiting for a thread at once.
    pub fn queued_max(&self) -> u64 {
        self.queued_max.load(Ordering::Relaxed)
    }

    /// Time jobs spent waiting for a thread, summed.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.wait_ns.load(Ordering::Relaxed))
    }

    /// Time jobs spent running, summed.
    pub fn ran(&self) -> Duration {
        Duration::from_nanos(self.run_ns.load(Ordering::Relaxed))
    }

    /// Appends the Prometheus text of these counters, for a pool of
    /// `threads`.
    pub fn render(&self, threads: usize, o: &mut String) {
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            o,
            "zcserve_disk_threads",
            "gauge",
            "Most disk jobs (opens, listings) running at once; 0: done inline on the workers.",
        );
        let _ = writeln!(o, "zcserve_disk_threads {threads}");
        family(
            o,
            "zcserve_disk_offloaded_total",
            "counter",
            "Requests whose path was opened on the disk pool (a miss in the open-file cache), \
             by kind: open (a file path), directory (index.html probe or listing).",
        );
        for w in Work::ALL {
            let _ = writeln!(
                o,
                "zcserve_disk_offloaded_total{{work=\"{}\"}} {}",
                w.name(),
                self.offloaded(w)
            );
        }
        let gauges = [
            (
                "zcserve_disk_queue_depth",
                "Disk jobs waiting for a thread now.",
                self.queued(),
            ),
            (
                "zcserve_disk_queue_depth_max",
                "Most disk jobs ever waiting for a thread at once.",
                self.queued_max(),
            ),
        ];
        for (name, help, v) in gauges {
            family(o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
        let sums = [
            (
                "zcserve_disk_queue_wait_seconds_total",
                "Time disk jobs waited for a thread, summed.",
                self.waited(),
            ),
            (
                "zcserve_disk_run_seconds_total",
                "Time disk jobs ran, summed.",
                self.ran(),
            ),
        ];
        for (name, help, v) in sums {
            family(o, name, "counter", help);
            let _ = writeln!(o, "{name} {:.9}", v.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::mpsc;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn off_runs_inline_and_counts_nothing() {
        let pool = DiskWork::off();
        assert!(!pool.is_on());
        let here = std::thread::current().id();
        let ran_on = runtime().block_on(pool.run(Work::Open, move || std::thread::current().id()));
        assert_eq!(ran_on, Some(here));
        assert_eq!(pool.stats().offloaded(Work::Open), 0);
    }

    #[test]
    fn jobs_past_the_bound_wait_for_a_thread_and_are_counted() {
        let pool = DiskWork::new(1);
        let rt = runtime();
        rt.block_on(async {
            let (entered_tx, entered) = mpsc::channel();
            let (release, held) = mpsc::channel::<()>();
            let here = std::thread::current().id();
            let mut first = pin!(pool.run(Work::Open, move || {
                entered_tx.send(()).unwrap();
                held.recv().unwrap();
                std::thread::current().id()
            }));
            // The first job takes the only thread.
            assert!(poll_once(first.as_mut()).is_pending());
            entered.recv().unwrap();
            let mut second = pin!(pool.run(Work::Directory, || 2));
            assert!(poll_once(second.as_mut()).is_pending());
            let stats = pool.stats();
            assert_eq!(stats.queued(), 1, "second job waits for the thread");
            assert_eq!(stats.queued_max(), 1);
            release.send(()).unwrap();
            let ran_on = first.await.unwrap();
            assert_ne!(ran_on, here, "ran on the worker");
            assert_eq!(second.await, Some(2));
            assert_eq!(stats.queued(), 0);
            assert_eq!(stats.queued_max(), 1);
            assert_eq!(stats.offloaded(Work::Open), 1);
            assert_eq!(stats.offloaded(Work::Directory), 1);
            // The second job waited at least until the release, which came
            // after it was queued.
            assert!(stats.waited() > Duration::ZERO);
            assert!(stats.ran() > Duration::ZERO);
            let mut text = String::new();
            stats.render(1, &mut text);
            assert!(text.contains("zcserve_disk_threads 1\n"), "{text}");
            assert!(text.contains("zcserve_disk_offloaded_total{work=\"open\"} 1\n"));
            assert!(text.contains("zcserve_disk_offloaded_total{work=\"directory\"} 1\n"));
            assert!(text.contains("zcserve_disk_queue_depth 0\n"));
            assert!(text.contains("zcserve_disk_queue_depth_max 1\n"));
        });
    }

    #[test]
    fn a_job_dropped_while_queued_leaves_the_queue() {
        let pool = DiskWork::new(1);
        let rt = runtime();
        rt.block_on(async {
            let (release, held) = mpsc::channel::<()>();
            let (entered_tx, entered) = mpsc::channel();
            let mut first = pin!(pool.run(Work::Open, move || {
                entered_tx.send(()).unwrap();
                held.recv().unwrap();
            }));
            assert!(poll_once(first.as_mut()).is_pending());
            entered.recv().unwrap();
            {
                let mut second = pin!(pool.run(Work::Open, || ()));
                assert!(poll_once(second.as_mut()).is_pending());
                assert_eq!(pool.stats().queued(), 1);
            }
            assert_eq!(pool.stats().queued(), 0, "a dropped job still counted");
            release.send(()).unwrap();
            assert_eq!(first.await, Some(()));
        });
    }

    #[test]
    fn a_panic_in_a_job_reaches_the_caller() {
        let pool = DiskWork::new(2);
        let rt = runtime();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(pool.run(Work::Open, || -> u8 { panic!("job failed") }))
        }));
        let msg = caught.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"job failed"));
        // The thread was given back.
        assert_eq!(rt.block_on(pool.run(Work::Open, || 1)), Some(1));
    }
}
