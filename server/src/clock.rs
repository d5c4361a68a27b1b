//! The kernel's tick-granular clocks (`CLOCK_*_COARSE`): read from the
//! vDSO without touching the TSC, about 5 ns here against about 40 ns for
//! `Instant::now()` on this VM, and a request reads the time more than once.
//! Good where a few milliseconds do not matter: the second of a `Date`
//! header and validity windows of a second or so.
//!
//! The parts of the server that time windows themselves (the file cache,
//! the connection's idle deadline) read it through a [`Clock`], so that a
//! test can give them a clock it moves by hand, or tokio's (pausable) one
//! to agree with the timers, instead of sleeping through real time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Monotonic time since an arbitrary fixed point: the coarse clock unless
/// a test injected another.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> Duration + Send + Sync>>);

impl Clock {
    /// The kernel's coarse monotonic clock ([`monotonic_coarse`]).
    pub fn coarse() -> Clock {
        Clock(None)
    }

    /// Tokio's clock, measured from now: paused and advanced with the
    /// runtime's (`tokio::time::pause`/`advance`), so windows timed on it
    /// agree with tokio's timers in a test with paused time. Read it only
    /// inside the runtime it was created in.
    pub fn tokio() -> Clock {
        let base = tokio::time::Instant::now();
        Clock::from_fn(move || tokio::time::Instant::now().saturating_duration_since(base))
    }

    /// Time as `now` tells it; it must never go backwards.
    pub fn from_fn(now: impl Fn() -> Duration + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(now)))
    }

    /// The time now.
    pub fn now(&self) -> Duration {
        match &self.0 {
            None => monotonic_coarse(),
            Some(now) => now(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_none() {
            "Clock::coarse"
        } else {
            "Clock::from_fn"
        })
    }
}

/// Time since an arbitrary fixed point, at most one kernel tick (1–10 ms)
/// behind `CLOCK_MONOTONIC`.
pub fn monotonic_coarse() -> Duration {
    #[cfg(target_os = "linux")]
    if let Some(t) = read(libc::CLOCK_MONOTONIC_COARSE) {
        return t;
    }
    fallback_monotonic()
}

/// Whole seconds since the Unix epoch, at most one kernel tick behind.
pub fn unix_secs_coarse() -> u64 {
    #[cfg(target_os = "linux")]
    if let Some(t) = read(libc::CLOCK_REALTIME_COARSE) {
        return t.as_secs();
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(target_os = "linux")]
fn read(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

fn fallback_monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The coarse clocks against the precise ones they shadow: read in the
    /// order coarse, precise, coarse, each coarse reading is at most a
    /// kernel tick behind (a tick is at most 10 ms; a bound of a second
    /// only catches a clock that is wrong, not one that is slow to read).
    #[test]
    fn coarse_clocks_track_the_precise_ones() {
        let tick = Duration::from_millis(10);
        let before = monotonic_coarse();
        let precise = monotonic_precise();
        let after = monotonic_coarse();
        assert!(before <= after, "{before:?} -> {after:?}");
        assert!(before <= precise + tick, "{before:?} vs {precise:?}");
        assert!(
            after + Duration::from_secs(1) >= precise,
            "{after:?} vs {precise:?}"
        );
        let coarse = unix_secs_coarse();
        let precise = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            coarse <= precise && precise - coarse <= 1,
            "{coarse} vs {precise}"
        );
    }

    /// `CLOCK_MONOTONIC`, the clock `monotonic_coarse` is the coarse form of.
    #[cfg(target_os = "linux")]
    fn monotonic_precise() -> Duration {
        read(libc::CLOCK_MONOTONIC).unwrap()
    }

    #[cfg(not(target_os = "linux"))]
    fn monotonic_precise() -> Duration {
        fallback_monotonic()
    }

    #[test]
    fn an_injected_clock_is_the_one_read() {
        let hand = Arc::new(AtomicU64::new(5));
        let clock = {
            let hand = hand.clone();
            Clock::from_fn(move || Duration::from_secs(hand.load(Ordering::Relaxed)))
        };
        assert_eq!(clock.now(), Duration::from_secs(5));
        hand.store(7, Ordering::Relaxed);
        assert_eq!(clock.clone().now(), Duration::from_secs(7));
    }

    #[test]
    fn the_tokio_clock_follows_paused_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = Clock::tokio();
            assert_eq!(clock.now(), Duration::ZERO);
            tokio::time::advance(Duration::from_secs(3)).await;
            assert_eq!(clock.now(), Duration::from_secs(3));
        });
    }
}
