//! Test doubles for the disk module, public so that other crates' tests
//! (backends, server) can hold a disk read or declare a file cold, and so
//! prove that nothing else waits for it, without timing anything.
//!
//! ```
//! use std::sync::Arc;
//! use zcserve_core::disk::{Completion, DiskPool, PoolConfig};
//! use zcserve_core::disk::testing::HeldReader;
//!
//! let (reader, hold) = HeldReader::new();
//! let pool = DiskPool::new(PoolConfig { threads: 1, ..PoolConfig::default() }, reader)
//!     .unwrap()
//!     .unwrap();
//! let file = Arc::new(std::fs::File::open("Cargo.toml").unwrap());
//! let done = Completion::new().unwrap();
//! let mut ticket = pool.submit(&done, file, 0, 10).unwrap();
//! let started = hold.entered();          // the pool thread is now inside the read
//! assert_eq!((started.offset, started.len), (0, 10));
//! assert!(ticket.try_finish().is_none()); // and stays there...
//! hold.release();                         // ...until the test lets it go
//! ```

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{PreadIn, ReadIn, Residency};

/// How long [`Hold::entered`] waits before calling the test hung. Only a
/// bound on a hang: a read starts within microseconds of its submit.
const HANG: Duration = Duration::from_secs(60);

/// A [`ReadIn`] that stops every read at its start until the test releases
/// it (or, so that a failed test cannot hang, a minute passes), then reads
/// for real with [`PreadIn`].
#[derive(Debug)]
pub struct HeldReader {
    entered: Mutex<Sender<Entered>>,
    gate: Mutex<Receiver<()>>,
}

/// A read that reached the [`HeldReader`]'s gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entered {
    /// Where the read starts.
    pub offset: u64,
    /// How much it reads.
    pub len: u64,
}

/// The test's side of a [`HeldReader`]. Dropping it releases every read,
/// held or future, so a test that fails midway cannot hang the pool's drop.
#[derive(Debug)]
pub struct Hold {
    entered: Receiver<Entered>,
    gate: Sender<()>,
}

impl HeldReader {
    /// A reader, to hand to [`super::DiskPool::new`], and its hold.
    pub fn new() -> (Arc<Self>, Hold) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel();
        let reader = Arc::new(Self {
            entered: Mutex::new(entered_tx),
            gate: Mutex::new(gate_rx),
        });
        (
            reader,
            Hold {
                entered: entered_rx,
                gate: gate_tx,
            },
        )
    }
}

impl ReadIn for HeldReader {
    fn read_in(&self, file: &File, offset: u64, len: u64, scratch: &mut [u8]) -> io::Result<u64> {
        // A send fails only once the hold is gone: nobody is waiting then.
        let _ = lock(&self.entered).send(Entered { offset, len });
        // Released, or the hold was dropped (which releases all), or the
        // hang bound passed: a test that panics while a read is held drops
        // its pool (joining this thread) before its hold, and must fail
        // rather than hang.
        let _ = lock(&self.gate).recv_timeout(HANG);
        PreadIn.read_in(file, offset, len, scratch)
    }
}

impl Hold {
    /// Waits until a read has started and is held; panics if none starts
    /// within a bound that only a hang exceeds.
    pub fn entered(&self) -> Entered {
        match self.entered.recv_timeout(HANG) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => panic!("no disk read started within {HANG:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the held reader is gone"),
        }
    }

    /// A read that has started, if one has (does not wait).
    pub fn try_entered(&self) -> Option<Entered> {
        self.entered.try_recv().ok()
    }

    /// Lets one held read (or the next one to arrive) go on.
    pub fn release(&self) {
        // Fails only when the reader is gone, and then nothing is held.
        let _ = self.gate.send(());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A [`Residency`] that answers with a closure of the test's, and counts
/// the questions (so a test can check the hot path asked once per chunk).
pub struct Scripted<F> {
    answer: F,
    calls: AtomicU64,
}

impl<F> Scripted<F>
where
    F: Fn(BorrowedFd<'_>, u64, u64) -> bool + Send + Sync,
{
    /// Answers `answer(file, offset, len)`.
    pub fn new(answer: F) -> Self {
        Self {
            answer,
            calls: AtomicU64::new(0),
        }
    }

    /// How many times it was asked.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl<F> std::fmt::Debug for Scripted<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted")
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<F> Residency for Scripted<F>
where
    F: Fn(BorrowedFd<'_>, u64, u64) -> bool + Send + Sync,
{
    fn resident(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok((self.answer)(file, offset, len))
    }
}
