//! The `Range` request header (RFC 9110 §14) for a GET of a regular file:
//! which bytes to send, and the `Content-Range` values that describe them.
//!
//! The parser errs towards serving the whole file: a header it cannot read,
//! or a set of ranges that looks like an amplification attack, yields
//! [`RangeRequest::Full`] (a plain 200), which RFC 9110 §14.2 permits.

use zcserve_core::ByteRange;

/// How many ranges one request may ask for before the header is ignored.
///
/// Legitimate clients (PDF readers, download resumers, video players) ask
/// for a handful; hundreds of tiny ranges only multiply the multipart
/// overhead for the server.
pub const DEFAULT_MAX_RANGES: usize = 16;

/// What to send in answer to a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// Send the whole file with 200: no usable `Range` header.
    Full,
    /// Send these ranges with 206, in request order: one range as a plain
    /// body with `Content-Range`, several as `multipart/byteranges`.
    ///
    /// Every range is non-empty, lies within the file, and no two overlap.
    Partial(Vec<ByteRange>),
    /// Send 416 with `Content-Range: bytes */len`: the header was valid but
    /// none of its ranges overlaps the file.
    Unsatisfiable,
}

/// Interprets the value of a `Range` header for a file of `len` bytes,
/// allowing at most `max_ranges` range specs.
#[must_use]
pub fn parse_range(value: &[u8], len: u64, max_ranges: usize) -> RangeRequest {
    let Some(set) = strip_unit(trim_ows(value)) else {
        return RangeRequest::Full;
    };

    let mut ranges = Vec::new();
    let mut specs = 0usize;
    for element in set.split(|&b| b == b',') {
        let element = trim_ows(element);
        // RFC 9110 §5.6.1: recipients accept empty list elements.
        if element.is_empty() {
            continue;
        }
        specs += 1;
        // Checked before parsing so that a huge header costs no more than
        // `max_ranges` specs' worth of work.
        if specs > max_ranges {
            return RangeRequest::Full;
        }
        match parse_spec(element, len) {
            Spec::Invalid => return RangeRequest::Full,
            Spec::Unsatisfiable => {}
            Spec::Satisfiable(r) => ranges.push(r),
        }
    }

    if specs == 0 {
        return RangeRequest::Full;
    }
    if ranges.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    if !is_reasonable(&ranges, len) {
        return RangeRequest::Full;
    }
    RangeRequest::Partial(ranges)
}

/// The `Content-Range` value for the non-empty range `r` of a file of
/// `len` bytes, e.g. `bytes 0-499/1234`.
///
/// HTTP writes the last byte position inclusively, hence `end - 1`.
#[must_use]
pub fn content_range(r: ByteRange, len: u64) -> String {
    debug_assert!(!r.is_empty(), "an empty range has no Content-Range");
    format!("bytes {}-{}/{}", r.start(), r.end().saturating_sub(1), len)
}

/// The `Content-Range` value of a 416 response for a file of `len` bytes,
/// e.g. `bytes */1234`.
#[must_use]
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// One range spec, judged against the file length.
enum Spec {
    Invalid,
    Unsatisfiable,
    Satisfiable(ByteRange),
}

fn parse_spec(spec: &[u8], len: u64) -> Spec {
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Spec::Invalid;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);

    if first.is_empty() {
        // suffix-range: the last `n` bytes.
        let Some(n) = parse_digits(last) else {
            return Spec::Invalid;
        };
        if n == 0 || len == 0 {
            return Spec::Unsatisfiable;
        }
        return satisfiable(len - n.min(len), len);
    }

    let Some(first) = parse_digits(first) else {
        return Spec::Invalid;
    };
    let last = if last.is_empty() {
        None
    } else {
        match parse_digits(last) {
            Some(last) if last >= first => Some(last),
            _ => return Spec::Invalid,
        }
    };
    if first >= len {
        return Spec::Unsatisfiable;
    }
    // `first < len`, so `len - 1` cannot underflow and the clamped last
    // position is at least `first`.
    let last = last.map_or(len - 1, |last| last.min(len - 1));
    satisfiable(first, last + 1)
}

fn satisfiable(start: u64, end: u64) -> Spec {
    match ByteRange::new(start, end) {
        Ok(r) => Spec::Satisfiable(r),
        // Unreachable given the callers' arithmetic; refusing the header is
        // the safe answer should it ever happen.
        Err(_) => Spec::Invalid,
    }
}

/// The decimal number in `digits`, or `None` if it is empty, holds anything
/// but ASCII digits, or does not fit in a `u64`.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The range set after a case-insensitive `bytes=`, or `None` for any other
/// unit (which this server does not support, so the header is ignored).
fn strip_unit(value: &[u8]) -> Option<&[u8]> {
    const UNIT: &[u8] = b"bytes=";
    let head = value.get(..UNIT.len())?;
    head.eq_ignore_ascii_case(UNIT)
        .then(|| &value[UNIT.len()..])
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Rejects range sets that would make the response larger than the file:
/// overlapping ranges (`bytes=0-,0-,0-…` sends the file once per spec) or,
/// as a backstop, a total length above the file's.
fn is_reasonable(ranges: &[ByteRange], len: u64) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(ByteRange::start);
    if sorted.windows(2).any(|w| w[1].start() < w[0].end()) {
        return false;
    }
    let total = ranges
        .iter()
        .try_fold(0u64, |acc, r| acc.checked_add(r.len()));
    total.is_some_and(|t| t <= len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn br(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    fn parse(value: &str, len: u64) -> RangeRequest {
        parse_range(value.as_bytes(), len, DEFAULT_MAX_RANGES)
    }

    fn partial(ranges: &[(u64, u64)]) -> RangeRequest {
        RangeRequest::Partial(ranges.iter().map(|&(s, e)| br(s, e)).collect())
    }

    #[test]
    fn first_and_last_position() {
        assert_eq!(parse("bytes=0-499", 1234), partial(&[(0, 500)]));
        assert_eq!(parse("bytes=500-999", 1234), partial(&[(500, 1000)]));
        assert_eq!(parse("bytes=7-7", 1234), partial(&[(7, 8)]));
        assert_eq!(parse("bytes=1233-1233", 1234), partial(&[(1233, 1234)]));
    }

    #[test]
    fn last_position_past_end_is_clamped() {
        assert_eq!(parse("bytes=1000-5000", 1234), partial(&[(1000, 1234)]));
        assert_eq!(parse("bytes=0-1234", 1234), partial(&[(0, 1234)]));
        assert_eq!(
            parse("bytes=5-18446744073709551615", 10),
            partial(&[(5, 10)])
        );
    }

    #[test]
    fn open_ended() {
        assert_eq!(parse("bytes=9500-", 10000), partial(&[(9500, 10000)]));
        assert_eq!(parse("bytes=0-", 10), partial(&[(0, 10)]));
        assert_eq!(parse("bytes=9-", 10), partial(&[(9, 10)]));
    }

    #[test]
    fn suffix() {
        assert_eq!(parse("bytes=-500", 10000), partial(&[(9500, 10000)]));
        assert_eq!(parse("bytes=-1", 10), partial(&[(9, 10)]));
        assert_eq!(parse("bytes=-10", 10), partial(&[(0, 10)]));
    }

    #[test]
    fn suffix_longer_than_file_is_whole_file() {
        assert_eq!(parse("bytes=-11", 10), partial(&[(0, 10)]));
        assert_eq!(
            parse("bytes=-18446744073709551615", 10),
            partial(&[(0, 10)])
        );
    }

    #[test]
    fn several_ranges_in_request_order() {
        assert_eq!(
            parse("bytes=500-600,0-99,-100", 1000),
            partial(&[(500, 601), (0, 100), (900, 1000)])
        );
        // Adjacent is not overlapping.
        assert_eq!(parse("bytes=0-4,5-9", 10), partial(&[(0, 5), (5, 10)]));
    }

    #[test]
    fn unit_is_case_insensitive() {
        assert_eq!(parse("BYTES=0-0", 10), partial(&[(0, 1)]));
        assert_eq!(parse("Bytes=0-0", 10), partial(&[(0, 1)]));
    }

    #[test]
    fn whitespace_and_empty_elements() {
        assert_eq!(
            parse(" \tbytes= 0-1 ,\t2-3 \t", 10),
            partial(&[(0, 2), (2, 4)])
        );
        assert_eq!(parse("bytes=0-1,,2-3", 10), partial(&[(0, 2), (2, 4)]));
        assert_eq!(parse("bytes=,0-1,", 10), partial(&[(0, 2)]));
        assert_eq!(parse("bytes=, ,0-1", 10), partial(&[(0, 2)]));
    }

    #[test]
    fn invalid_syntax_is_ignored() {
        for value in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes= , ",
            "bits=0-1",
            "items=0-1",
            "bytes 0-1",
            "bytes:0-1",
            "byte=0-1",
            "bytes =0-1",
            "bytes=0",
            "bytes=-",
            "bytes=a-b",
            "bytes=0-b",
            "bytes=a-1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=-+2",
            "bytes=0x1-2",
            "bytes=1.5-2",
            "bytes=1 -2",
            "bytes=1- 2",
            "bytes=- 2",
            "bytes=5-4",
            "bytes=0-1-2",
            "bytes=--1",
            "bytes=0-1;2-3",
            "bytes=18446744073709551616-",
            "bytes=0-18446744073709551616",
            "bytes=-18446744073709551616",
            "bytes=99999999999999999999999-",
            // One bad spec spoils the whole header.
            "bytes=0-1,x",
            "bytes=0-1,5-4",
            "bytes=100-,abc",
        ] {
            assert_eq!(parse(value, 10), RangeRequest::Full, "{value:?}");
        }
    }

    #[test]
    fn non_utf8_is_ignored() {
        assert_eq!(parse_range(b"bytes=\xff-1", 10, 16), RangeRequest::Full);
        assert_eq!(parse_range(b"\xffytes=0-1", 10, 16), RangeRequest::Full);
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=10-20", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=100-200", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=10-11,20-,-0", 10), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn unsatisfiable_specs_are_dropped() {
        assert_eq!(parse("bytes=20-30,0-1", 10), partial(&[(0, 2)]));
        assert_eq!(parse("bytes=-0,8-", 10), partial(&[(8, 10)]));
    }

    #[test]
    fn zero_length_file() {
        for value in ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-0", "bytes=5-9"] {
            assert_eq!(parse(value, 0), RangeRequest::Unsatisfiable, "{value:?}");
        }
        // Syntax errors still win over unsatisfiability.
        assert_eq!(parse("bytes=x", 0), RangeRequest::Full);
    }

    #[test]
    fn too_many_ranges() {
        let sixteen: Vec<String> = (0..16).map(|i| format!("{i}-{i}")).collect();
        let value = format!("bytes={}", sixteen.join(","));
        let RangeRequest::Partial(ranges) = parse(&value, 100) else {
            panic!("16 ranges should be served");
        };
        assert_eq!(ranges.len(), 16);

        let seventeen: Vec<String> = (0..17).map(|i| format!("{i}-{i}")).collect();
        let value = format!("bytes={}", seventeen.join(","));
        assert_eq!(parse(&value, 100), RangeRequest::Full);

        // Unsatisfiable specs count too: they cost parsing all the same.
        let value = format!("bytes=0-0{}", ",1000-".repeat(16));
        assert_eq!(parse(&value, 100), RangeRequest::Full);

        // Empty elements do not count.
        let value = format!("bytes=0-0{}", ",".repeat(100));
        assert_eq!(parse(&value, 100), partial(&[(0, 1)]));
    }

    #[test]
    fn max_ranges_is_honoured() {
        assert_eq!(
            parse_range(b"bytes=0-0,2-2", 10, 2),
            partial(&[(0, 1), (2, 3)])
        );
        assert_eq!(parse_range(b"bytes=0-0,2-2,4-4", 10, 2), RangeRequest::Full);
        assert_eq!(parse_range(b"bytes=0-0", 10, 0), RangeRequest::Full);
    }

    #[test]
    fn overlapping_ranges_are_ignored() {
        assert_eq!(parse("bytes=0-,0-", 10), RangeRequest::Full);
        assert_eq!(parse("bytes=0-,0-,0-,0-,0-", 10), RangeRequest::Full);
        assert_eq!(parse("bytes=0-5,5-9", 10), RangeRequest::Full);
        assert_eq!(parse("bytes=5-9,0-5", 10), RangeRequest::Full);
        assert_eq!(parse("bytes=0-9,-1", 10), RangeRequest::Full);
        assert_eq!(parse("bytes=2-3,0-100", 10), RangeRequest::Full);
        // Clamping can create the overlap.
        assert_eq!(parse("bytes=8-20,-5", 10), RangeRequest::Full);
    }

    #[test]
    fn total_longer_than_file_is_ignored() {
        assert_eq!(parse("bytes=0-9,-10", 10), RangeRequest::Full);
        assert!(is_reasonable(&[br(0, 5), br(5, 10)], 10));
        assert!(!is_reasonable(&[br(0, 5), br(5, 11)], 10));
        assert!(!is_reasonable(&[br(0, 5), br(4, 6)], 10));
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(br(0, 500), 1234), "bytes 0-499/1234");
        assert_eq!(content_range(br(1233, 1234), 1234), "bytes 1233-1233/1234");
        assert_eq!(content_range(br(0, 1), 1), "bytes 0-0/1");
        assert_eq!(
            content_range(br(0, u64::MAX), u64::MAX),
            "bytes 0-18446744073709551614/18446744073709551615"
        );
        assert_eq!(unsatisfied_range(1234), "bytes */1234");
        assert_eq!(unsatisfied_range(0), "bytes */0");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..64),
            len in any::<u64>(),
            max in 0usize..20,
        ) {
            check_invariants(&parse_range(&value, len, max), len, max);
        }

        #[test]
        fn range_like_headers_hold_invariants(
            value in "(?i:bytes)=[ ,]{0,2}([0-9]{0,3}-[0-9]{0,3}[ ,]{0,3}){1,6}",
            len in 0u64..1200,
            max in 0usize..8,
        ) {
            check_invariants(&parse_range(value.as_bytes(), len, max), len, max);
        }
    }

    fn check_invariants(result: &RangeRequest, len: u64, max: usize) {
        match result {
            RangeRequest::Partial(ranges) => {
                assert!(!ranges.is_empty());
                assert!(ranges.len() <= max);
                for r in ranges {
                    assert!(!r.is_empty(), "{r}");
                    assert!(r.end() <= len, "{r} outside 0..{len}");
                }
                for (i, a) in ranges.iter().enumerate() {
                    for b in &ranges[i + 1..] {
                        assert!(
                            a.end() <= b.start() || b.end() <= a.start(),
                            "{a} overlaps {b}"
                        );
                    }
                }
                assert!(ranges.iter().map(ByteRange::len).sum::<u64>() <= len);
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }
}
