//! How a pool's threads are scheduled beside the event loops they serve.

use std::fmt;
use std::str::FromStr;

/// The scheduling of a disk pool's threads.
///
/// The threads block on the disk most of the time, but between reads they
/// run CPU work: a send of what they read in, with loopback's receive
/// processing charged to the sender, or a copy. At the event loops'
/// priority the kernel lets such a thread finish its slice before a woken
/// loop runs, and every request that arrived meanwhile waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadPriority {
    /// The priority of the thread that starts the pool.
    #[default]
    Normal,
    /// At least this nice value, 1 (a little lower) to [`MAX_NICE`] (the
    /// lowest); per thread on Linux, ignored elsewhere.
    Nice(u8),
    /// `SCHED_IDLE` (Linux; ignored elsewhere): the threads run only when
    /// no normal thread on their CPU wants it, and a woken event loop
    /// preempts them at once. Under a CPU that stays saturated, their sends
    /// crawl (the hot path is served first, by design).
    Idle,
}

/// The highest (lowest-priority) nice value.
pub const MAX_NICE: u8 = 19;

impl fmt::Display for ThreadPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadPriority::Normal => f.write_str("normal"),
            ThreadPriority::Nice(n) => write!(f, "{n}"),
            ThreadPriority::Idle => f.write_str("idle"),
        }
    }
}

impl FromStr for ThreadPriority {
    type Err = String;

    /// `normal` (or `0`), a nice value `1` to `19`, or `idle`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: give normal, idle, or a nice value from 0 to {MAX_NICE}");
        match s {
            "normal" => Ok(ThreadPriority::Normal),
            "idle" => Ok(ThreadPriority::Idle),
            n => match n.parse::<u8>().map_err(|_| bad())? {
                0 => Ok(ThreadPriority::Normal),
                n if n <= MAX_NICE => Ok(ThreadPriority::Nice(n)),
                _ => Err(bad()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints_and_refuses_the_rest() {
        for p in [
            ThreadPriority::Normal,
            ThreadPriority::Nice(1),
            ThreadPriority::Nice(MAX_NICE),
            ThreadPriority::Idle,
        ] {
            assert_eq!(p.to_string().parse::<ThreadPriority>(), Ok(p));
        }
        assert_eq!("0".parse::<ThreadPriority>(), Ok(ThreadPriority::Normal));
        for bad in ["20", "-1", "low", "", "1.5"] {
            let e = bad.parse::<ThreadPriority>().unwrap_err();
            assert!(e.contains("normal, idle"), "{bad:?}: {e}");
        }
    }
}
