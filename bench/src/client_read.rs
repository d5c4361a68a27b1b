//! How the load generator reads response bodies (`--client-read`): with
//! `recv`s of a fixed size into a buffer of that size, as real clients do
//! (wrk 8 KiB, curl 16 KiB, HTTP libraries 4–64 KiB), or with
//! `recv(MSG_TRUNC)`, which has the kernel discard the bytes without
//! copying them to user space, so that what is left of the client's cost
//! is TCP's receive processing and what shows is the sender's cost: an
//! upper bound of the server's figures on a real network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::units::{file_stem, parse_size};

/// One client read mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ClientRead {
    /// Each `recv` asks for this many bytes into a page-aligned buffer of
    /// this many bytes; the bytes are copied to user space.
    Size(usize),
    /// The head is peeked and parsed; head and body are then discarded by
    /// the kernel with `recv(MSG_TRUNC)`, exactly `Content-Length` body
    /// bytes per response: counted, never copied, never checked.
    Trunc,
}

impl ClientRead {
    /// What zcbench read with before the mode was a choice, and still
    /// does unless told otherwise.
    pub const DEFAULT: ClientRead = ClientRead::Size(DEFAULT_READ);

    /// Largest read size accepted.
    pub const MAX_SIZE: usize = 64 << 20;

    /// Whether the body bytes reach user space (and could be checked).
    pub fn copies(self) -> bool {
        matches!(self, ClientRead::Size(_))
    }

    /// How a report names it: `8 KiB reads`, `MSG_TRUNC (no copy)`.
    pub fn describe(self) -> String {
        match self {
            ClientRead::Size(n) => format!("{} reads", crate::units::human_size(n as u64)),
            ClientRead::Trunc => "MSG_TRUNC (no copy)".to_string(),
        }
    }
}

const DEFAULT_READ: usize = 256 * 1024;

impl fmt::Display for ClientRead {
    /// As `--client-read` takes it: `8KiB`, `1000B`, `trunc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientRead::Size(n) => f.write_str(&file_stem(*n as u64)),
            ClientRead::Trunc => f.write_str("trunc"),
        }
    }
}

impl FromStr for ClientRead {
    type Err = String;

    /// `trunc`, or a size as `--sizes` takes it (`8KiB`, `65536`), from one
    /// byte to [`ClientRead::MAX_SIZE`].
    fn from_str(s: &str) -> Result<ClientRead, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("trunc") {
            return Ok(ClientRead::Trunc);
        }
        let n = parse_size(s)
            .ok_or_else(|| format!("cannot read {s:?} (try 8KiB, 64KiB, 256KiB or trunc)"))?;
        match usize::try_from(n) {
            Ok(n) if n <= ClientRead::MAX_SIZE => Ok(ClientRead::Size(n)),
            _ => Err(format!(
                "{s:?} is larger than the largest read size, {}",
                file_stem(ClientRead::MAX_SIZE as u64)
            )),
        }
    }
}

impl From<ClientRead> for String {
    fn from(c: ClientRead) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for ClientRead {
    type Error = String;

    fn try_from(s: String) -> Result<ClientRead, String> {
        s.parse()
    }
}

impl Default for ClientRead {
    fn default() -> ClientRead {
        ClientRead::DEFAULT
    }
}

/// Reads a `--client-read` list (already split at commas): each mode once,
/// in first-seen order; an empty list is an error.
pub fn parse_list(items: &[String]) -> Result<Vec<ClientRead>, String> {
    let mut out: Vec<ClientRead> = Vec::new();
    for item in items {
        let c = item.parse().map_err(|e| format!("--client-read: {e}"))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err("--client-read: give at least one mode (8KiB, 64KiB, 256KiB, trunc)".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_print_and_round_trip() {
        assert_eq!("8KiB".parse(), Ok(ClientRead::Size(8192)));
        assert_eq!(" 64KiB ".parse(), Ok(ClientRead::Size(65536)));
        assert_eq!("100".parse(), Ok(ClientRead::Size(100)));
        assert_eq!("trunc".parse(), Ok(ClientRead::Trunc));
        assert_eq!("TRUNC".parse(), Ok(ClientRead::Trunc));
        for s in ["8KiB", "64KiB", "256KiB", "1000B", "1MiB", "trunc"] {
            assert_eq!(s.parse::<ClientRead>().unwrap().to_string(), s);
        }
        assert_eq!(ClientRead::default().to_string(), "256KiB");
        for bad in ["0", "", "lots", "trunc8", "-1KiB", "1GiB"] {
            assert!(bad.parse::<ClientRead>().is_err(), "{bad:?}");
        }
        let e = "1GiB".parse::<ClientRead>().unwrap_err();
        assert!(e.contains("64MiB"), "{e}");
        let json = serde_json::to_string(&ClientRead::Size(8192)).unwrap();
        assert_eq!(json, "\"8KiB\"");
        assert_eq!(
            serde_json::from_str::<ClientRead>("\"trunc\"").unwrap(),
            ClientRead::Trunc
        );
        assert!(serde_json::from_str::<ClientRead>("\"nope\"").is_err());
        assert_eq!(ClientRead::Size(8192).describe(), "8 KiB reads");
        assert!(ClientRead::Trunc.describe().contains("MSG_TRUNC"));
        assert!(!ClientRead::Trunc.copies() && ClientRead::Size(1).copies());
    }

    #[test]
    fn lists_dedup_and_name_the_flag() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_list(&v(&["8KiB", "trunc", "8KiB"])),
            Ok(vec![ClientRead::Size(8192), ClientRead::Trunc])
        );
        let e = parse_list(&v(&["8KiB", "fast"])).unwrap_err();
        assert!(
            e.starts_with("--client-read: ") && e.contains("\"fast\""),
            "{e}"
        );
        assert!(parse_list(&[]).is_err());
    }
}
