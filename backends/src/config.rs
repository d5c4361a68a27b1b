//! The knobs of the backends, checked once when a backend is built.

use zcserve_core::disk::{MAX_NICE, ThreadPriority};
use zcserve_core::{READ_IN_SPAN, TransferError};

/// Knobs of the backends; each backend reads the ones it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most body bytes one pump moves before yielding to other connections
    /// (nginx's `sendfile_max_chunk`). All backends; it also bounds a single
    /// sendfile/splice call and uring's chains.
    pub max_chunk: usize,
    /// Requested capacity of each splice pipe (`F_SETPIPE_SZ`).
    pub pipe_size: usize,
    /// Size of each copy buffer.
    pub buffer_size: usize,
    /// Idle pipes or buffers a backend keeps for reuse.
    pub max_idle: usize,
    /// Threads that read cold file ranges into the page cache while the
    /// session waits (`Pump::Pending`), so no pump blocks on the disk; 0
    /// reads on the pump's own thread, as every backend did before. With
    /// `uring` (whose reads already run in the kernel's io-wq workers) it
    /// keeps cold ranges out of the ring: the pool reads them in and,
    /// with `cold_sends_on_pool`, sends them with plain `sendfile`.
    pub disk_threads: usize,
    /// With the disk pool on: whether the bytes of a range the pool read
    /// in are sent by a pool thread (`true`, like nginx's `aio threads`)
    /// or by the pump's own thread once the read-in is done.
    pub cold_sends_on_pool: bool,
    /// With the disk pool on: the most bytes of a cold range one read-in
    /// brings into the page cache (and one residency check covers).
    pub read_in: u64,
    /// How the disk pool's threads are scheduled beside the event loops
    /// (see [`ThreadPriority`]).
    pub disk_priority: ThreadPriority,
    /// `auto` only: bodies of fewer bytes go through `copy`, the rest
    /// through `sendfile`; 0 sends every body through `sendfile`.
    pub auto_threshold: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // lighttpd's size per sendfile call: small enough that one large
            // download does not hold a worker for long, large enough that
            // the per-call cost stays small. Chosen by measurement against
            // larger and smaller budgets (results/FINDINGS.md §2).
            max_chunk: 256 << 10,
            pipe_size: 1 << 20,
            // One buffer holds a whole pump (max_chunk): one `pread` and one
            // `send` per pump. Chosen over 128 KiB by interleaved runs with
            // both client kinds (results/FINDINGS.md §15).
            buffer_size: 256 << 10,
            max_idle: 64,
            // Off in the library: a host opts in (the server does, with
            // `--disk-threads`).
            disk_threads: 0,
            // Chosen by the cold scenario's hot-client tail
            // (results/FINDINGS.md §9).
            cold_sends_on_pool: true,
            // Cold MB/s on a disk limited in requests is this size times
            // the requests (results/FINDINGS.md §9): large, so that a
            // 1 MiB file is one request.
            read_in: READ_IN_SPAN,
            // Off in the library, like the pool: a host opts in.
            disk_priority: ThreadPriority::Normal,
            // The smallest size measured at which `sendfile` used less CPU
            // per GB than `copy` (results/FINDINGS.md §7).
            auto_threshold: 32 << 10,
        }
    }
}

impl Config {
    /// Checks that every knob has a usable value.
    pub fn validate(&self) -> Result<(), TransferError> {
        let positive = |setting: &'static str, v: usize| {
            if v == 0 {
                Err(TransferError::InvalidConfig {
                    setting,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("max_chunk", self.max_chunk)?;
        positive("pipe_size", self.pipe_size)?;
        positive("buffer_size", self.buffer_size)?;
        positive(
            "read_in",
            usize::try_from(self.read_in).unwrap_or(usize::MAX),
        )?;
        if let ThreadPriority::Nice(n) = self.disk_priority {
            if n > MAX_NICE {
                return Err(TransferError::InvalidConfig {
                    setting: "disk_priority",
                    reason: format!("nice {n} is above {MAX_NICE}, the lowest priority"),
                });
            }
        }
        if self.pipe_size > i32::MAX as usize {
            return Err(TransferError::InvalidConfig {
                setting: "pipe_size",
                reason: format!("{} is larger than the kernel accepts", self.pipe_size),
            });
        }
        Ok(())
    }
}
