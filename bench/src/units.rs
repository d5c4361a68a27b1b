//! Sizes and dates as zcbench reads and writes them: `4KiB` on the command
//! line and in fixture file names, `4 KiB` in reports, RFC 3339 dates.

use std::time::SystemTime;

use humansize::{BINARY, FormatSizeOptions, format_size};

/// A byte count in binary units for people: `512 B`, `4 KiB`, `1.50 MiB`,
/// `256 MiB`.
pub fn human_size(bytes: u64) -> String {
    format_size(
        bytes,
        FormatSizeOptions::from(BINARY)
            .decimal_places(2)
            .decimal_zeroes(0),
    )
}

/// The file name stem of a fixture file of `size` bytes: `4KiB`, `1MiB`,
/// or `1000B` when no binary unit divides it.
pub fn file_stem(size: u64) -> String {
    for (suf, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if size >= m && size % m == 0 {
            return format!("{}{suf}", size / m);
        }
    }
    format!("{size}B")
}

/// Reads a size as `--sizes` takes it: a whole number of bytes, KiB, MiB
/// or GiB (`4KiB`, `256MiB`, `100`, `100B`); `None` for anything else, zero
/// included.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

/// `t` as a UTC RFC 3339 timestamp to the second: `2026-11-28T11:02:28Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1536), "1.50 KiB");
        assert_eq!(human_size(1_500_000), "1.43 MiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(256 << 20), "256 MiB");
        assert_eq!(human_size(3 << 30), "3 GiB");
    }

    #[test]
    fn sizes_parse_and_name_files() {
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size(" 256MiB "), Some(256 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("100B"), Some(100));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999GiB"), None, "overflow");
        assert_eq!(file_stem(4096), "4KiB");
        assert_eq!(file_stem(1 << 20), "1MiB");
        assert_eq!(file_stem(3 << 30), "3GiB");
        assert_eq!(file_stem(1000), "1000B");
        for s in ["4KiB", "1MiB", "1000B", "2GiB"] {
            assert_eq!(file_stem(parse_size(s).unwrap()), s);
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_863_748)),
            "2026-11-28T11:02:28Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_999)),
            "2000-02-29T00:00:00Z",
            "a leap day; fractions are dropped"
        );
    }
}
