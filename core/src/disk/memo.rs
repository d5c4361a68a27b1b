//! A short memory of ranges the oracle just found resident, so that a file
//! served again and again does not cost one residency syscall per response.
//!
//! A small file is one chunk, so every response for it asked the kernel once
//! (`cachestat`): about half a microsecond in a response of nine at
//! 4 KiB × 64, a cost the pool adds to every warm small-file server. A range
//! seen resident a few milliseconds ago was just read from (the send that
//! followed marked its pages accessed), and reclaim takes such pages last,
//! so it is taken as still resident for a short window. The trade is
//! explicit: a page evicted inside the window makes one move read the disk
//! on the pump's thread, as every move did before the pool existed.
//!
//! Entries are per thread (an event loop asks from one thread; nothing is
//! shared or locked) and keyed by the open file's `Arc` allocation, which a
//! held `Weak` keeps from being reused by another file while the entry
//! lives, so a key names one open file for as long as it is remembered.

use std::cell::RefCell;
use std::fs::File;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a resident range is remembered when nothing else is said.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(50);

/// Entries per thread: direct-mapped, so a lookup is one index and a
/// compare; two hot files that map to one slot just ask the kernel more.
const SLOTS: usize = 256;

struct Entry {
    file: Weak<File>,
    start: u64,
    end: u64,
    at: Instant,
}

thread_local! {
    static SEEN: RefCell<Vec<Option<Entry>>> = RefCell::new((0..SLOTS).map(|_| None).collect());
}

fn slot(file: &Arc<File>) -> usize {
    // Allocations are at least 8-byte aligned; the bits above spread them.
    (Arc::as_ptr(file) as usize >> 4) % SLOTS
}

/// Whether `[start, end)` of `file` was found resident on this thread less
/// than `window` ago.
pub fn recalls(file: &Arc<File>, start: u64, end: u64, window: Duration) -> bool {
    SEEN.with(|seen| {
        let seen = seen.borrow();
        match &seen[slot(file)] {
            Some(e) => {
                std::ptr::eq(e.file.as_ptr(), Arc::as_ptr(file))
                    && e.start <= start
                    && end <= e.end
                    && e.at.elapsed() < window
            }
            None => false,
        }
    })
}

/// Remembers that `[start, end)` of `file` was found resident just now.
pub fn remember(file: &Arc<File>, start: u64, end: u64) {
    SEEN.with(|seen| {
        seen.borrow_mut()[slot(file)] = Some(Entry {
            file: Arc::downgrade(file),
            start,
            end,
            at: Instant::now(),
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<File> {
        Arc::new(File::open("/dev/null").unwrap())
    }

    #[test]
    fn recalls_only_what_it_was_told_for_that_file_within_the_window() {
        let a = file();
        let b = file();
        let hour = Duration::from_secs(3600);
        assert!(!recalls(&a, 0, 10, hour));
        remember(&a, 0, 4096);
        assert!(recalls(&a, 0, 4096, hour));
        assert!(recalls(&a, 100, 200, hour));
        assert!(!recalls(&a, 0, 4097, hour), "beyond the range");
        assert!(!recalls(&a, 0, 4096, Duration::ZERO), "window over");
        assert!(!recalls(&b, 0, 10, hour), "another file");
    }

    #[test]
    fn a_dropped_file_is_never_recalled_for_another() {
        let hour = Duration::from_secs(3600);
        let a = file();
        remember(&a, 0, 4096);
        drop(a);
        // The entry's Weak keeps the old allocation, so no new file can
        // take its address while it is remembered.
        for _ in 0..64 {
            let b = file();
            assert!(!recalls(&b, 0, 10, hour));
        }
    }

    #[test]
    fn entries_are_per_thread() {
        let hour = Duration::from_secs(3600);
        let a = file();
        remember(&a, 0, 4096);
        let a2 = Arc::clone(&a);
        let seen = std::thread::spawn(move || recalls(&a2, 0, 10, hour))
            .join()
            .unwrap();
        assert!(!seen);
        assert!(recalls(&a, 0, 10, hour));
    }
}
