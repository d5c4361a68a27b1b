//! What the listing needs from an `fstatat(2)` result: the file's kind and
//! its modification time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::{FileStat, SFlag};

/// The `S_IFMT` bits of a stat.
#[allow(clippy::unnecessary_cast)] // mode_t is u16 on some platforms
pub(super) fn file_kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode as libc::mode_t) & SFlag::S_IFMT
}

/// The modification time of a stat.
#[allow(clippy::unnecessary_cast)] // time_t and the nanosecond field vary
pub(super) fn modified(stat: &FileStat) -> Option<SystemTime> {
    let secs = stat.st_mtime as i64;
    let nanos = u32::try_from(stat.st_mtime_nsec as i64).ok()?;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}
