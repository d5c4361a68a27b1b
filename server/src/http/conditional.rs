//! Validators of a file (`ETag`, `Last-Modified`) and the evaluation of
//! conditional requests against them: the preconditions of RFC 9110 §13.2.2
//! and `If-Range` (§13.1.5).
//!
//! Every header is parsed leniently in the direction that sends the current
//! representation: a precondition the server cannot read never produces a
//! 304, and an unreadable `If-Range` means the whole file rather than a part
//! of a possibly different one.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
};
use http::{HeaderMap, Method};

/// Seconds from the epoch to 9999-12-31T23:59:59Z, the last instant an
/// HTTP-date (four-digit year) can express; `httpdate` panics beyond it.
const MAX_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// The validators of one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Strong entity-tag, with its quotes, e.g. `"3c-5f5e1000"`.
    pub etag: String,
    /// Modification time truncated to whole seconds (the resolution of an
    /// HTTP-date), clamped to the years 1970–9999 an HTTP-date can hold and
    /// to the moment the validators were made (never later than a `Date`).
    pub last_modified: SystemTime,
    /// The file's mtime lay in the future when the validators were made,
    /// so `last_modified` is the time of making them, not the mtime: it
    /// says nothing about the content and is never a strong validator.
    pub future_mtime: bool,
}

impl Validators {
    /// Validators of a file of `len` bytes modified at `mtime`, made at
    /// `now` (whole seconds since the epoch, the clock `Date` is read
    /// from).
    ///
    /// The entity-tag is `"<len>-<mtime ns>"` in hex, as nginx's is `mtime`
    /// and size: no inode, so that replicas of one tree (copied with their
    /// mtimes, e.g. `rsync -t`, `cp -p`) give the same tags and
    /// revalidation through a load balancer hits whichever replica answers,
    /// and so that inode numbers do not leak. Any write changes the mtime
    /// (full nanoseconds: rewrites within one second that `Last-Modified`
    /// cannot see still change the tag) and a size change changes the
    /// length. The tag stays strong: it names one sequence of bytes as
    /// long as nobody sets an mtime back by hand onto different content of
    /// the same size. Filesystems of coarser timestamp resolution (FAT's
    /// 2 s, ext3's 1 s) give replicas on them different tags from those on
    /// nanosecond filesystems. An mtime before the epoch is written as a
    /// negative number of nanoseconds.
    ///
    /// RFC 9110 §8.8.2.1: an mtime later than `now` is replaced by `now`.
    #[must_use]
    pub fn new(len: u64, mtime: SystemTime, now: u64) -> Self {
        let nanos = match mtime.duration_since(UNIX_EPOCH) {
            Ok(after) => format!("{:x}", after.as_nanos()),
            Err(before) => format!("-{:x}", before.duration().as_nanos()),
        };
        let secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let future_mtime = secs > now;
        let secs = secs.min(now).min(MAX_HTTP_DATE_SECS);
        Self {
            etag: format!("\"{len:x}-{nanos}\""),
            last_modified: UNIX_EPOCH + Duration::from_secs(secs),
            future_mtime,
        }
    }

    /// Validators of the file described by `meta`, made now.
    #[must_use]
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        // `mtime`/`mtime_nsec` rather than `modified()`, which returns a
        // `Result` although it cannot fail on Unix.
        let secs = meta.mtime();
        let nsec = u32::try_from(meta.mtime_nsec())
            .unwrap_or(0)
            .min(999_999_999);
        let whole = Duration::from_secs(secs.unsigned_abs());
        // A negative `st_mtime` still carries a non-negative nanosecond part
        // that moves the instant towards the epoch. Checked arithmetic
        // because a hostile filesystem can store any 64-bit mtime.
        let mtime = if secs >= 0 {
            UNIX_EPOCH.checked_add(whole)
        } else {
            UNIX_EPOCH.checked_sub(whole)
        }
        .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nsec))))
        .unwrap_or(UNIX_EPOCH);
        // The coarse clock is the one `Date` is read from, so the clamped
        // value is never later than the `Date` of a response built after
        // this (the file cache only reuses validators made earlier).
        Self::new(meta.len(), mtime, crate::clock::unix_secs_coarse())
    }

    /// Whether `last_modified` is a strong validator in a response whose
    /// `Date` is `now` (RFC 9110 §8.8.2.2): the mtime is real (not clamped)
    /// and its second is over, at least one second before `Date`. Then no
    /// later write can still land in that second, so the file now holding
    /// this `Last-Modified` is the last version that will ever hold it
    /// (as long as mtimes only move forward).
    ///
    /// The other half of the rule is the client's: a copy it got with a
    /// `Date` less than a second after its `Last-Modified` may be an
    /// earlier version from the same second, and RFC 9110 §13.1.5 forbids
    /// it to put that date in `If-Range`. A server cannot check that from
    /// a date; a client that wants safety either way sends the `ETag`.
    #[must_use]
    pub fn last_modified_is_strong(&self, now: u64) -> bool {
        let lm = self
            .last_modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        !self.future_mtime && now >= lm.saturating_add(1)
    }

    /// `last_modified` as an IMF-fixdate, the value of `Last-Modified`.
    #[must_use]
    pub fn last_modified_http(&self) -> String {
        thread_local! {
            // Formatting a date costs more than the rest of a small
            // response head; a hot file asks for the same one again and
            // again.
            static LAST: std::cell::RefCell<Option<(SystemTime, String)>> =
                const { std::cell::RefCell::new(None) };
        }
        LAST.with(|cell| {
            let mut cell = cell.borrow_mut();
            match &*cell {
                Some((t, s)) if *t == self.last_modified => s.clone(),
                _ => {
                    let s = httpdate::fmt_http_date(self.last_modified);
                    *cell = Some((self.last_modified, s.clone()));
                    s
                }
            }
        })
    }
}

/// The outcome of evaluating a request's preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No precondition stops the request: handle it normally.
    Proceed,
    /// Answer 304 Not Modified (GET and HEAD only).
    NotModified,
    /// Answer 412 Precondition Failed.
    Failed,
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
/// `If-Modified-Since` in the order of RFC 9110 §13.2.2, steps 1–4, for an
/// existing file with validators `v`.
///
/// `If-Range` is not a precondition of this kind; see [`if_range_allows`].
#[must_use]
pub fn evaluate(method: &Method, headers: &HeaderMap, v: &Validators) -> Precondition {
    let get_or_head = method == Method::GET || method == Method::HEAD;

    // Step 1, else step 2.
    if headers.contains_key(IF_MATCH) {
        let matched = match etag_list(headers, &IF_MATCH) {
            EtagList::Any => true,
            EtagList::Tags(tags) => tags.iter().any(|t| strong_match(t, &v.etag)),
            EtagList::Malformed => false,
        };
        if !matched {
            return Precondition::Failed;
        }
    } else if let Some(date) = single_date(headers, &IF_UNMODIFIED_SINCE) {
        if v.last_modified > date {
            return Precondition::Failed;
        }
    }

    // Step 3, else step 4.
    if headers.contains_key(IF_NONE_MATCH) {
        let matched = match etag_list(headers, &IF_NONE_MATCH) {
            EtagList::Any => true,
            EtagList::Tags(tags) => tags.iter().any(|t| weak_match(t, &v.etag)),
            EtagList::Malformed => false,
        };
        if matched {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head {
        if let Some(date) = single_date(headers, &IF_MODIFIED_SINCE) {
            if v.last_modified <= date {
                return Precondition::NotModified;
            }
        }
    }

    Precondition::Proceed
}

/// Whether a `Range` header may be honoured given `If-Range` (RFC 9110
/// §13.1.5): true when `If-Range` is absent or its validator still matches
/// the file; false means serve the whole file with 200. Reads the clock
/// `Date` is read from; see [`if_range_allows_at`].
#[must_use]
pub fn if_range_allows(headers: &HeaderMap, v: &Validators) -> bool {
    if_range_allows_at(headers, v, crate::clock::unix_secs_coarse())
}

/// [`if_range_allows`] for a response dated `now` (seconds since the
/// epoch).
///
/// An entity-tag must match strongly (a weak tag never does). A date
/// matches only when it equals `last_modified` exactly *and*
/// `last_modified` is strong at `now`
/// ([`Validators::last_modified_is_strong`]): a file written within the
/// second the response is dated, or with a future mtime, gets the whole
/// file, never a part of a possibly different version. Anything
/// unreadable is false.
#[must_use]
pub fn if_range_allows_at(headers: &HeaderMap, v: &Validators, now: u64) -> bool {
    let mut values = headers.get_all(IF_RANGE).iter();
    let Some(value) = values.next() else {
        return true;
    };
    // If-Range holds one validator; several lines are not a list of them.
    if values.next().is_some() {
        return false;
    }
    let bytes = trim_ows(value.as_bytes());
    if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
        return match parse_entity_tag(bytes) {
            Some((tag, [])) => strong_match(&tag, &v.etag),
            _ => false,
        };
    }
    parse_date(bytes).is_some_and(|date| date == v.last_modified) && v.last_modified_is_strong(now)
}

/// One entity-tag as received: `opaque` keeps its double quotes.
#[derive(Debug, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// The value of `If-Match` or `If-None-Match`.
#[derive(Debug, PartialEq, Eq)]
enum EtagList<'a> {
    Any,
    Tags(Vec<EntityTag<'a>>),
    Malformed,
}

/// Parses every line of the list header `name` as one comma-joined list
/// (RFC 9110 §5.3): `"*"` or `#entity-tag`.
fn etag_list<'a>(headers: &'a HeaderMap, name: &HeaderName) -> EtagList<'a> {
    let mut tags = Vec::new();
    let mut star = false;
    for value in headers.get_all(name) {
        let mut rest = value.as_bytes();
        loop {
            rest = skip_separators(rest);
            if rest.is_empty() {
                break;
            }
            let after = if let Some(after) = rest.strip_prefix(b"*") {
                star = true;
                after
            } else {
                let Some((tag, after)) = parse_entity_tag(rest) else {
                    return EtagList::Malformed;
                };
                tags.push(tag);
                after
            };
            // An element must be followed by the end or a comma.
            rest = trim_ows_start(after);
            match rest {
                [] => break,
                [b',', ..] => {}
                _ => return EtagList::Malformed,
            }
        }
    }
    match (star, tags.is_empty()) {
        (false, _) => EtagList::Tags(tags),
        (true, true) => EtagList::Any,
        // `*` is the whole field value or nothing.
        (true, false) => EtagList::Malformed,
    }
}

/// Parses `[W/]"etagc*"` at the start of `s`, returning the tag and what
/// follows it.
///
/// `etagc` is every visible character but DQUOTE, plus obs-text (RFC 9110
/// §8.8.3); commas are among them, so `"a,b"` is a single tag.
fn parse_entity_tag(s: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = s.strip_prefix(b"\"")?;
    let close = body.iter().position(|&b| b == b'"')?;
    if !body[..close].iter().all(|&b| is_etagc(b)) {
        return None;
    }
    let (opaque, rest) = s.split_at(close + 2);
    Some((EntityTag { weak, opaque }, rest))
}

fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// Strong comparison (RFC 9110 §8.8.3.2): both tags strong, opaque-tags
/// equal. `ours` is parsed rather than compared raw so that a weak or
/// malformed `Validators::etag` can never match strongly.
fn strong_match(theirs: &EntityTag<'_>, ours: &str) -> bool {
    match parse_entity_tag(ours.as_bytes()) {
        Some((ours, [])) => !theirs.weak && !ours.weak && theirs.opaque == ours.opaque,
        _ => false,
    }
}

/// Weak comparison: opaque-tags equal, whatever the `W/` prefixes.
fn weak_match(theirs: &EntityTag<'_>, ours: &str) -> bool {
    match parse_entity_tag(ours.as_bytes()) {
        Some((ours, [])) => theirs.opaque == ours.opaque,
        _ => false,
    }
}

/// The HTTP-date in header `name`, or `None` if it is absent or not exactly
/// one valid date: RFC 9110 §13.1.3–4 require ignoring invalid dates and
/// lists of dates.
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_date(trim_ows(value.as_bytes()))
}

/// Any of the three HTTP-date formats recipients must accept (IMF-fixdate,
/// RFC 850, asctime).
fn parse_date(bytes: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(bytes).ok()?;
    httpdate::parse_http_date(text).ok()
}

fn skip_separators(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_ows_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let mut s = trim_ows_start(s);
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// 1994-11-06T08:49:37Z, the RFC's example date.
    const T: u64 = 784_111_777;
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const DATE_BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const DATE_AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";
    /// When the validators are made: a day after T.
    const NOW: u64 = T + 86_400;

    fn validators() -> Validators {
        // Half a second past T: Last-Modified must truncate it to T.
        Validators::new(
            0x3c,
            UNIX_EPOCH + Duration::from_secs(T) + Duration::from_millis(500),
            NOW,
        )
    }

    fn etag() -> String {
        validators().etag
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn get(pairs: &[(HeaderName, &str)]) -> Precondition {
        evaluate(&Method::GET, &headers(pairs), &validators())
    }

    fn eval(method: Method, pairs: &[(HeaderName, &str)]) -> Precondition {
        evaluate(&method, &headers(pairs), &validators())
    }

    use Precondition::{Failed, NotModified, Proceed};

    // --- Validators ---

    #[test]
    fn etag_is_hex_of_size_and_nanoseconds() {
        let v = Validators::new(0x3c, UNIX_EPOCH + Duration::from_nanos(0x5f5e1000), NOW);
        assert_eq!(v.etag, "\"3c-5f5e1000\"");
        assert_eq!(v.last_modified, UNIX_EPOCH + Duration::from_secs(1));
    }

    #[test]
    fn etag_changes_with_each_part() {
        let t = UNIX_EPOCH + Duration::from_secs(T);
        let base = Validators::new(2, t, NOW).etag;
        assert_ne!(base, Validators::new(9, t, NOW).etag);
        assert_ne!(
            base,
            Validators::new(2, t + Duration::from_nanos(1), NOW).etag
        );
        // Nothing else goes in: made at another time, the same file has
        // the same tag.
        assert_eq!(base, Validators::new(2, t, NOW + 5).etag);
    }

    #[test]
    fn files_of_equal_size_and_mtime_share_their_tag() {
        // Two replicas of one tree: different inodes (and devices), same
        // size and mtime to the nanosecond.
        let dir = std::env::temp_dir().join(format!(
            "zcserve-replicas-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mtime = UNIX_EPOCH + Duration::new(T, 123_456_789);
        let mut metas = Vec::new();
        for name in ["a", "b"] {
            let path = dir.join(name);
            std::fs::write(&path, b"same bytes").unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(mtime).unwrap();
            metas.push(f.metadata().unwrap());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_ne!(metas[0].ino(), metas[1].ino());
        let (a, b) = (
            Validators::from_metadata(&metas[0]),
            Validators::from_metadata(&metas[1]),
        );
        assert_eq!(a.etag, b.etag);
        assert_eq!(
            a.etag,
            format!("\"a-{:x}\"", T * 1_000_000_000 + 123_456_789)
        );
        assert!(!a.etag.contains(&format!("{:x}", metas[0].ino())));
    }

    #[test]
    fn last_modified_is_truncated_to_seconds() {
        let v = validators();
        assert_eq!(v.last_modified, UNIX_EPOCH + Duration::from_secs(T));
        assert_eq!(v.last_modified_http(), DATE);
    }

    #[test]
    fn out_of_range_mtimes_are_clamped() {
        let early = Validators::new(2, UNIX_EPOCH - Duration::from_nanos(0x10), NOW);
        assert_eq!(early.etag, "\"2--10\"");
        assert_eq!(early.last_modified, UNIX_EPOCH);
        assert_eq!(early.last_modified_http(), "Thu, 01 Jan 1970 00:00:00 GMT");

        let late = Validators::new(2, UNIX_EPOCH + Duration::from_secs(1 << 40), u64::MAX);
        assert_eq!(late.last_modified_http(), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn future_mtime_is_replaced_by_now() {
        // RFC 9110 §8.8.2.1: never later than the Date it is sent with.
        let v = Validators::new(2, UNIX_EPOCH + Duration::from_secs(NOW + 3600), NOW);
        assert_eq!(v.last_modified, UNIX_EPOCH + Duration::from_secs(NOW));
        assert!(v.future_mtime);
        // The tag still follows the real mtime.
        let real = Validators::new(2, UNIX_EPOCH + Duration::from_secs(NOW + 3600), u64::MAX);
        assert_eq!(v.etag, real.etag);
        assert!(!real.future_mtime);
        // An mtime of this very second is not in the future.
        let v = Validators::new(2, UNIX_EPOCH + Duration::new(NOW, 999_999_999), NOW);
        assert_eq!(v.last_modified, UNIX_EPOCH + Duration::from_secs(NOW));
        assert!(!v.future_mtime);
    }

    #[test]
    fn from_metadata_matches_new() {
        let path = std::env::temp_dir().join(format!(
            "zcserve-conditional-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, b"hello").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let v = Validators::from_metadata(&meta);
        let now = crate::clock::unix_secs_coarse();
        // Made with the clock read inside: allow for a second boundary.
        assert!(
            v == Validators::new(5, meta.modified().unwrap(), now)
                || v == Validators::new(5, meta.modified().unwrap(), now - 1)
        );
        assert!(v.etag.starts_with("\"5-"));
    }

    // --- Step 1: If-Match ---

    #[test]
    fn if_match_star_passes() {
        assert_eq!(get(&[(IF_MATCH, "*")]), Proceed);
        assert_eq!(get(&[(IF_MATCH, " * ")]), Proceed);
        assert_eq!(eval(Method::PUT, &[(IF_MATCH, "*")]), Proceed);
    }

    #[test]
    fn if_match_strong_match_passes() {
        assert_eq!(get(&[(IF_MATCH, &etag())]), Proceed);
        let list = format!("\"x\", {}, \"y\"", etag());
        assert_eq!(get(&[(IF_MATCH, &list)]), Proceed);
    }

    #[test]
    fn if_match_without_match_fails() {
        assert_eq!(get(&[(IF_MATCH, "\"other\"")]), Failed);
        assert_eq!(get(&[(IF_MATCH, "\"a\", \"b\"")]), Failed);
        assert_eq!(get(&[(IF_MATCH, "")]), Failed);
        assert_eq!(eval(Method::DELETE, &[(IF_MATCH, "\"other\"")]), Failed);
    }

    #[test]
    fn if_match_weak_tag_never_matches() {
        let weak = format!("W/{}", etag());
        assert_eq!(get(&[(IF_MATCH, &weak)]), Failed);
    }

    #[test]
    fn if_match_malformed_fails() {
        for value in [
            "garbage",
            "\"unterminated",
            etag().trim_matches('"'),
            &format!("{} junk", etag()),
            &format!("*, {}", etag()),
            &format!("w/{}", etag()),
            "\"a\"\"b\"",
        ] {
            assert_eq!(get(&[(IF_MATCH, value)]), Failed, "{value:?}");
        }
    }

    #[test]
    fn if_match_list_over_several_lines() {
        let pairs = [(IF_MATCH, "\"a\""), (IF_MATCH, &etag() as &str)];
        assert_eq!(get(&pairs), Proceed);
        let pairs = [(IF_MATCH, "\"a\""), (IF_MATCH, "\"b\", \"c\"")];
        assert_eq!(get(&pairs), Failed);
        // One bad line spoils the list.
        let pairs = [(IF_MATCH, &etag() as &str), (IF_MATCH, "junk")];
        assert_eq!(get(&pairs), Failed);
    }

    #[test]
    fn if_match_tag_may_contain_commas() {
        let v = Validators {
            etag: "\"a,b\"".into(),
            last_modified: UNIX_EPOCH,
            future_mtime: false,
        };
        let h = headers(&[(IF_MATCH, "\"a,b\"")]);
        assert_eq!(evaluate(&Method::GET, &h, &v), Proceed);
        let h = headers(&[(IF_MATCH, "\"a\", \"b\"")]);
        assert_eq!(evaluate(&Method::GET, &h, &v), Failed);
    }

    // --- Step 2: If-Unmodified-Since ---

    #[test]
    fn if_unmodified_since() {
        assert_eq!(get(&[(IF_UNMODIFIED_SINCE, DATE)]), Proceed);
        assert_eq!(get(&[(IF_UNMODIFIED_SINCE, DATE_AFTER)]), Proceed);
        assert_eq!(get(&[(IF_UNMODIFIED_SINCE, DATE_BEFORE)]), Failed);
        assert_eq!(
            eval(Method::PUT, &[(IF_UNMODIFIED_SINCE, DATE_BEFORE)]),
            Failed
        );
    }

    #[test]
    fn if_unmodified_since_accepts_obsolete_formats() {
        assert_eq!(
            get(&[(IF_UNMODIFIED_SINCE, "Sunday, 06-Nov-94 08:49:36 GMT")]),
            Failed
        );
        assert_eq!(
            get(&[(IF_UNMODIFIED_SINCE, "Sun Nov  6 08:49:36 1994")]),
            Failed
        );
        assert_eq!(
            get(&[(IF_UNMODIFIED_SINCE, "Sun Nov  6 08:49:37 1994")]),
            Proceed
        );
    }

    #[test]
    fn if_unmodified_since_invalid_is_ignored() {
        for value in ["yesterday", "", "0", "Sun, 06 Nov 1994 08:49:36"] {
            assert_eq!(get(&[(IF_UNMODIFIED_SINCE, value)]), Proceed, "{value:?}");
        }
        // A list of dates is not a date.
        let pairs = [
            (IF_UNMODIFIED_SINCE, DATE_BEFORE),
            (IF_UNMODIFIED_SINCE, DATE_BEFORE),
        ];
        assert_eq!(get(&pairs), Proceed);
    }

    #[test]
    fn if_match_overrides_if_unmodified_since() {
        let pairs = [
            (IF_MATCH, &etag() as &str),
            (IF_UNMODIFIED_SINCE, DATE_BEFORE),
        ];
        assert_eq!(get(&pairs), Proceed);
        let pairs = [(IF_MATCH, "\"other\""), (IF_UNMODIFIED_SINCE, DATE_AFTER)];
        assert_eq!(get(&pairs), Failed);
    }

    // --- Step 3: If-None-Match ---

    #[test]
    fn if_none_match_match_is_not_modified_for_get_and_head() {
        assert_eq!(get(&[(IF_NONE_MATCH, &etag())]), NotModified);
        assert_eq!(eval(Method::HEAD, &[(IF_NONE_MATCH, &etag())]), NotModified);
        assert_eq!(get(&[(IF_NONE_MATCH, "*")]), NotModified);
        let list = format!("\"x\",{},\"y\"", etag());
        assert_eq!(get(&[(IF_NONE_MATCH, &list)]), NotModified);
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let weak = format!("W/{}", etag());
        assert_eq!(get(&[(IF_NONE_MATCH, &weak)]), NotModified);
    }

    #[test]
    fn if_none_match_match_fails_other_methods() {
        assert_eq!(eval(Method::POST, &[(IF_NONE_MATCH, &etag())]), Failed);
        assert_eq!(eval(Method::PUT, &[(IF_NONE_MATCH, "*")]), Failed);
        assert_eq!(eval(Method::DELETE, &[(IF_NONE_MATCH, "\"x\"")]), Proceed);
    }

    #[test]
    fn if_none_match_without_match_proceeds() {
        assert_eq!(get(&[(IF_NONE_MATCH, "\"other\"")]), Proceed);
        assert_eq!(get(&[(IF_NONE_MATCH, "W/\"other\"")]), Proceed);
        assert_eq!(get(&[(IF_NONE_MATCH, "")]), Proceed);
        assert_eq!(get(&[(IF_NONE_MATCH, "garbage")]), Proceed);
        assert_eq!(get(&[(IF_NONE_MATCH, &format!("*, {}", etag()))]), Proceed);
    }

    #[test]
    fn if_none_match_list_over_several_lines() {
        let pairs = [
            (IF_NONE_MATCH, "\"a\", \"b\""),
            (IF_NONE_MATCH, &etag() as &str),
        ];
        assert_eq!(get(&pairs), NotModified);
        let pairs = [(IF_NONE_MATCH, "\"a\""), (IF_NONE_MATCH, "\"b\"")];
        assert_eq!(get(&pairs), Proceed);
    }

    #[test]
    fn if_match_failure_beats_if_none_match() {
        let pairs = [(IF_MATCH, "\"other\""), (IF_NONE_MATCH, &etag() as &str)];
        assert_eq!(get(&pairs), Failed);
        let pairs = [(IF_UNMODIFIED_SINCE, DATE_BEFORE), (IF_NONE_MATCH, "*")];
        assert_eq!(get(&pairs), Failed);
    }

    #[test]
    fn if_match_pass_then_if_none_match() {
        let pairs = [(IF_MATCH, "*"), (IF_NONE_MATCH, &etag() as &str)];
        assert_eq!(get(&pairs), NotModified);
    }

    // --- Step 4: If-Modified-Since ---

    #[test]
    fn if_modified_since() {
        assert_eq!(get(&[(IF_MODIFIED_SINCE, DATE)]), NotModified);
        assert_eq!(get(&[(IF_MODIFIED_SINCE, DATE_AFTER)]), NotModified);
        assert_eq!(get(&[(IF_MODIFIED_SINCE, DATE_BEFORE)]), Proceed);
        assert_eq!(
            eval(Method::HEAD, &[(IF_MODIFIED_SINCE, DATE)]),
            NotModified
        );
    }

    #[test]
    fn if_modified_since_only_for_get_and_head() {
        assert_eq!(eval(Method::POST, &[(IF_MODIFIED_SINCE, DATE)]), Proceed);
        assert_eq!(
            eval(Method::PUT, &[(IF_MODIFIED_SINCE, DATE_AFTER)]),
            Proceed
        );
    }

    #[test]
    fn if_modified_since_invalid_is_ignored() {
        for value in ["tomorrow", "", "Sun, 32 Nov 1994 08:49:37 GMT", "-1"] {
            assert_eq!(get(&[(IF_MODIFIED_SINCE, value)]), Proceed, "{value:?}");
        }
        let pairs = [(IF_MODIFIED_SINCE, DATE), (IF_MODIFIED_SINCE, DATE)];
        assert_eq!(get(&pairs), Proceed);
    }

    #[test]
    fn if_none_match_makes_if_modified_since_ignored() {
        let pairs = [
            (IF_NONE_MATCH, "\"other\""),
            (IF_MODIFIED_SINCE, DATE_AFTER),
        ];
        assert_eq!(get(&pairs), Proceed);
        // Even an unreadable If-None-Match is present.
        let pairs = [(IF_NONE_MATCH, "junk"), (IF_MODIFIED_SINCE, DATE_AFTER)];
        assert_eq!(get(&pairs), Proceed);
    }

    #[test]
    fn no_preconditions_proceed() {
        assert_eq!(get(&[]), Proceed);
        assert_eq!(eval(Method::POST, &[]), Proceed);
    }

    // --- If-Range ---

    #[test]
    fn if_range_absent_allows() {
        assert!(if_range_allows(&HeaderMap::new(), &validators()));
    }

    #[test]
    fn if_range_entity_tag() {
        let v = validators();
        assert!(if_range_allows(&headers(&[(IF_RANGE, &etag())]), &v));
        assert!(if_range_allows(
            &headers(&[(IF_RANGE, &format!(" {} ", etag()))]),
            &v
        ));
        assert!(!if_range_allows(&headers(&[(IF_RANGE, "\"other\"")]), &v));
        let weak = format!("W/{}", etag());
        assert!(!if_range_allows(&headers(&[(IF_RANGE, &weak)]), &v));
    }

    #[test]
    fn if_range_date_must_be_exact() {
        let v = validators();
        assert!(if_range_allows(&headers(&[(IF_RANGE, DATE)]), &v));
        assert!(!if_range_allows(&headers(&[(IF_RANGE, DATE_BEFORE)]), &v));
        assert!(!if_range_allows(&headers(&[(IF_RANGE, DATE_AFTER)]), &v));
    }

    #[test]
    fn if_range_date_needs_a_strong_last_modified() {
        // RFC 9110 §13.1.5, §8.8.2.2: a Last-Modified is strong only once
        // its second is over, one second before the Date it goes out with.
        let v = validators();
        let h = headers(&[(IF_RANGE, DATE)]);
        assert!(!v.last_modified_is_strong(T));
        assert!(
            !if_range_allows_at(&h, &v, T),
            "dated in the mtime's second"
        );
        assert!(v.last_modified_is_strong(T + 1));
        assert!(if_range_allows_at(&h, &v, T + 1));
        assert!(if_range_allows_at(&h, &v, NOW));
        // An entity-tag needs no such wait.
        assert!(if_range_allows_at(&headers(&[(IF_RANGE, &etag())]), &v, T));
        // A clamped (future) mtime is never strong, however late the Date.
        let future = Validators::new(2, UNIX_EPOCH + Duration::from_secs(NOW + 9), NOW);
        let h = headers(&[(IF_RANGE, &future.last_modified_http())]);
        assert!(!future.last_modified_is_strong(NOW + 100));
        assert!(!if_range_allows_at(&h, &future, NOW + 100));
    }

    #[test]
    fn if_range_garbage_disallows() {
        let v = validators();
        for value in [
            "",
            "garbage",
            "*",
            "\"unterminated",
            &format!("{}, \"x\"", etag()),
            &format!("{} {}", etag(), etag()),
        ] {
            assert!(
                !if_range_allows(&headers(&[(IF_RANGE, value)]), &v),
                "{value:?}"
            );
        }
        let pairs = [(IF_RANGE, &etag() as &str), (IF_RANGE, &etag() as &str)];
        assert!(!if_range_allows(&headers(&pairs), &v));
    }

    // --- Entity-tag parsing ---

    #[test]
    fn entity_tag_parsing() {
        assert_eq!(
            parse_entity_tag(b"\"abc\" rest"),
            Some((
                EntityTag {
                    weak: false,
                    opaque: b"\"abc\""
                },
                &b" rest"[..]
            ))
        );
        assert_eq!(
            parse_entity_tag(b"W/\"\""),
            Some((
                EntityTag {
                    weak: true,
                    opaque: b"\"\""
                },
                &b""[..]
            ))
        );
        assert_eq!(parse_entity_tag(b"W/abc"), None);
        assert_eq!(parse_entity_tag(b"\"a b\""), None);
        assert_eq!(parse_entity_tag(b"\"a\x7fb\""), None);
        assert!(parse_entity_tag(b"\"caf\xc3\xa9\"").is_some());
    }

    #[test]
    fn obs_text_in_header_values() {
        let mut map = HeaderMap::new();
        map.append(IF_NONE_MATCH, HeaderValue::from_bytes(b"\"\xe9\"").unwrap());
        let v = Validators {
            etag: "\"\u{e9}\"".into(),
            last_modified: UNIX_EPOCH,
            future_mtime: false,
        };
        // The header is raw Latin-1-ish bytes, our tag is UTF-8: different.
        assert_eq!(evaluate(&Method::GET, &map, &v), Proceed);
    }
}
