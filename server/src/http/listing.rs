//! The page served for a directory that has no `index.html` (when
//! listings are enabled): HTML, directories first, then files, each linked
//! by a percent-encoded relative `href` so that any file name round-trips;
//! or, for a client that asks for it ([`wants_json`]), a JSON array of the
//! same entries ([`render_json`]). Both in the order of `--listing-sort`
//! ([`Sort`]).
//!
//! Rendering is a pure function of the request path and the entries; how the
//! entries are read from disk (and which are hidden) is
//! [`Dir::entries`](crate::fs::Dir::entries)' business.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// One name in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name (one path segment, no `/`).
    pub name: String,
    /// Whether the entry is (or, through a followed symlink, points to) a
    /// directory; its link then ends with `/`.
    pub is_dir: bool,
    /// Size in bytes (ignored for directories).
    pub len: u64,
    /// Last modification time, if known.
    pub modified: Option<SystemTime>,
    /// The name is a symlink (`is_dir`, `len` and `modified` describe its
    /// target).
    pub symlink: bool,
}

/// The order of a listing's entries, directories always first
/// (`--listing-sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// By the bytes of the name (so `B` before `a`).
    #[default]
    Name,
    /// Newest first (as `ls -t`); unknown times last; ties by name.
    Mtime,
    /// Largest first (as `ls -S`); directories by name; ties by name.
    Size,
}

/// Puts `entries` in `by`'s order, directories first.
pub fn sort(entries: &mut [Entry], by: Sort) {
    entries.sort_by(|a, b| {
        let by_name = || a.name.as_bytes().cmp(b.name.as_bytes());
        let dirs_first = b.is_dir.cmp(&a.is_dir);
        dirs_first.then_with(|| match by {
            Sort::Name => by_name(),
            // `Some` of the later time first, `None` last.
            Sort::Mtime => b.modified.cmp(&a.modified).then_with(by_name),
            Sort::Size if a.is_dir => by_name(),
            Sort::Size => b.len.cmp(&a.len).then_with(by_name),
        })
    });
}

/// Whether a listing request gets JSON rather than HTML: `?format=json`
/// in the query (`?format=html` forces HTML), or else an `Accept` that
/// weighs `application/json` above `text/html` (a tie, `*/*` or no
/// `Accept`, is HTML, as browsers send `*/*` too).
pub fn wants_json<'a>(query: Option<&str>, accept: impl IntoIterator<Item = &'a [u8]>) -> bool {
    for pair in query.unwrap_or("").split('&') {
        match pair {
            "format=json" => return true,
            "format=html" => return false,
            _ => {}
        }
    }
    let accept: Vec<&[u8]> = accept.into_iter().collect();
    super::accept::quality(accept.iter().copied(), "application", "json")
        > super::accept::quality(accept.iter().copied(), "text", "html")
}

/// One entry as JSON.
#[derive(serde::Serialize)]
struct JsonEntry<'a> {
    name: &'a str,
    /// `"file"`, `"dir"` or `"symlink"`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// For a symlink: `"file"` or `"dir"`, what it leads to.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'static str>,
    /// Bytes; `null` for a directory.
    size: Option<u64>,
    /// Seconds since 1970-01-01 UTC (negative before); `null` if unknown.
    mtime: Option<i64>,
}

/// The listing as a JSON array of `{name, type, size, mtime}` (and
/// `target` for a symlink), in `by`'s order. Names are UTF-8 (the names
/// that are not are never listed, as no request could name them), escaped
/// by serde_json.
pub fn render_json(listing: Listing, by: Sort) -> Vec<u8> {
    let mut entries = listing.entries;
    sort(&mut entries, by);
    let kind = |e: &Entry| if e.is_dir { "dir" } else { "file" };
    let json: Vec<JsonEntry<'_>> = entries
        .iter()
        .map(|e| JsonEntry {
            name: &e.name,
            kind: if e.symlink { "symlink" } else { kind(e) },
            target: e.symlink.then(|| kind(e)),
            size: (!e.is_dir).then_some(e.len),
            mtime: e.modified.map(unix_seconds),
        })
        .collect();
    let mut out = serde_json::to_vec(&json).unwrap_or_else(|_| b"[]".to_vec());
    out.push(b'\n');
    out
}

/// What [`Dir::entries`](crate::fs::Dir::entries) read from a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The entries kept, in the order they were read.
    pub entries: Vec<Entry>,
    /// The directory has more (visible) entries than were kept: reading
    /// stopped at the cap (`--listing-max-entries`).
    pub truncated: bool,
}

/// Everything except the unreserved characters of RFC 3986 (`A-Za-z0-9-._~`)
/// is percent-encoded in an `href`.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Renders the listing page of the directory at `url_path` (the decoded
/// request path, e.g. `/docs/`) from `listing`.
///
/// The page is a complete HTML5 document titled `Index of <url_path>`. It
/// links to `../` unless `url_path` is `/`, then lists directories (with a
/// trailing `/`) before files, each group in `by`'s order ([`sort`]).
/// Links are relative to the directory, so the page must be served at a URL
/// ending in `/`. A truncated listing says so above the table (and below
/// it): the entries shown are the first ones read from the directory,
/// sorted, not the first ones in sorted order.
pub fn render(url_path: &str, listing: Listing, by: Sort) -> String {
    let Listing {
        mut entries,
        truncated,
    } = listing;
    sort(&mut entries, by);

    let title = format!("Index of {}", escape_html(url_path));
    let mut out = String::with_capacity(512 + entries.len() * 160);
    out.push_str("<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{title}</title>");
    out.push_str(
        "<style>body{font-family:sans-serif}td,th{padding:0 1em 0 0;text-align:left}\
         td.n{text-align:right}</style>\n",
    );
    out.push_str("</head>\n<body>\n");
    let _ = writeln!(out, "<h1>{title}</h1>");
    let notice = truncated.then(|| {
        format!(
            "<p class=\"truncated\"><strong>Listing truncated:</strong> this directory has \
             more than {n} entries; only {n} of them are shown (the first read from \
             disk, sorted). Request other files by name.</p>\n",
            n = entries.len()
        )
    });
    if let Some(notice) = &notice {
        out.push_str(notice);
    }
    out.push_str("<table>\n<thead><tr><th>Name</th><th>Size</th><th>Bytes</th><th>Modified (UTC)</th></tr></thead>\n<tbody>\n");
    if url_path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td><td></td></tr>\n");
    }
    for entry in &entries {
        let href = utf8_percent_encode(&entry.name, HREF);
        let text = escape_html(&entry.name);
        let slash = if entry.is_dir { "/" } else { "" };
        let (human, bytes) = if entry.is_dir {
            ("-".to_owned(), "-".to_owned())
        } else {
            (human_size(entry.len), entry.len.to_string())
        };
        let modified = entry
            .modified
            .map(format_time)
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{href}{slash}\">{text}{slash}</a></td>\
             <td class=\"n\">{human}</td><td class=\"n\">{bytes}</td><td>{modified}</td></tr>"
        );
    }
    out.push_str("</tbody>\n</table>\n");
    if let Some(notice) = &notice {
        out.push_str(notice);
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Escapes the five characters that are special in HTML text and attribute
/// values: `& < > " '`.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A size in binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 GiB`.
fn human_size(len: u64) -> String {
    use humansize::{BINARY, FormatSizeOptions, format_size};
    if len < 1024 {
        // Whole bytes need no decimal.
        return format!("{len} B");
    }
    format_size(
        len,
        FormatSizeOptions::from(BINARY)
            .decimal_places(1)
            .decimal_zeroes(1),
    )
}

/// Formats `t` as `YYYY-MM-DD HH:MM` in UTC (times before 1970 included).
fn format_time(t: SystemTime) -> String {
    let secs = unix_seconds(t);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        of_day / 3600,
        (of_day % 3600) / 60
    )
}

/// Whole seconds since 1970-01-01 UTC, rounded down (so negative before).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            // Round towards negative infinity so the minute is right.
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let frac = i64::from(d.subsec_nanos() > 0);
            whole.saturating_add(frac).saturating_neg()
        }
    }
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month,
/// day), after Howard Hinnant's `civil_from_days`. Written here because the
/// date crates at hand (httpdate, humantime) panic on times before 1970,
/// which a file's mtime may be.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn page(url_path: &str, entries: Vec<Entry>) -> String {
        render(
            url_path,
            Listing {
                entries,
                truncated: false,
            },
            Sort::Name,
        )
    }

    #[test]
    fn truncation_is_announced() {
        let entries = vec![file("b", 1), file("a", 1)];
        let full = page("/", entries.clone());
        assert!(!full.contains("truncated"));
        let cut = render(
            "/",
            Listing {
                entries,
                truncated: true,
            },
            Sort::Name,
        );
        assert_eq!(cut.matches("class=\"truncated\"").count(), 2, "{cut}");
        assert!(cut.contains("more than 2 entries; only 2 of them are shown"));
        assert!(cut.find("href=\"a\"") < cut.find("href=\"b\""), "sorted");
    }

    fn file(name: &str, len: u64) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir: false,
            len,
            modified: None,
            symlink: false,
        }
    }

    fn dir(name: &str) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir: true,
            len: 4096,
            modified: None,
            symlink: false,
        }
    }

    #[test]
    fn page_is_complete_html5() {
        let page = page("/x/", vec![]);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(page.contains("<title>Index of /x/</title>"));
        assert!(page.contains("<h1>Index of /x/</h1>"));
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn parent_link_except_at_root() {
        assert!(page("/x/", vec![]).contains("<a href=\"../\">../</a>"));
        assert!(!page("/", vec![]).contains("href=\"../\""));
    }

    #[test]
    fn names_and_title_are_html_escaped() {
        let page = page(
            "/<b>&'\"/",
            vec![file("<script>alert(1)</script>", 1), file("a&b", 2)],
        );
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains(">a&amp;b</a>"));
        assert!(page.contains("Index of /&lt;b&gt;&amp;&#39;&quot;/"));
        // The href is percent-encoded, so no raw markup there either.
        assert!(page.contains("href=\"%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""));
        assert!(page.contains("href=\"a%26b\""));
    }

    #[test]
    fn hrefs_are_percent_encoded() {
        let page = page(
            "/",
            vec![
                file("a b.txt", 1),
                file("c#d", 1),
                file("e?f", 1),
                file("100%", 1),
                file("héllo", 1),
                file("q\"'.txt", 1),
                file("ok-._~Z9", 1),
                dir("my dir"),
            ],
        );
        assert!(page.contains("href=\"a%20b.txt\">a b.txt</a>"));
        assert!(page.contains("href=\"c%23d\""));
        assert!(page.contains("href=\"e%3Ff\""));
        assert!(page.contains("href=\"100%25\""));
        assert!(page.contains("href=\"h%C3%A9llo\">héllo</a>"));
        assert!(page.contains("href=\"q%22%27.txt\">q&quot;&#39;.txt</a>"));
        assert!(page.contains("href=\"ok-._~Z9\""));
        assert!(page.contains("href=\"my%20dir/\">my dir/</a>"));
    }

    #[test]
    fn directories_first_then_files_each_sorted() {
        let page = page(
            "/d/",
            vec![
                file("b.txt", 1),
                dir("zeta"),
                file("A.txt", 1),
                dir("alpha"),
                file("a.txt", 1),
            ],
        );
        let pos = |needle: &str| {
            page.find(&format!("href=\"{needle}\""))
                .unwrap_or_else(|| panic!("{needle} missing"))
        };
        let order = ["../", "alpha/", "zeta/", "A.txt", "a.txt", "b.txt"];
        for pair in order.windows(2) {
            assert!(
                pos(pair[0]) < pos(pair[1]),
                "{} before {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn sizes_and_dates() {
        let mut e = file("f", 1536);
        e.modified = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let page = page("/", vec![e, dir("d")]);
        assert!(page.contains("1.5 KiB"));
        assert!(page.contains(">1536<"));
        assert!(page.contains("2023-11-14 22:13"));
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn dates_around_the_epoch_and_leap_days() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00");
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31 23:59"
        );
        assert_eq!(
            format_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00"
        );
        assert_eq!(
            format_time(UNIX_EPOCH + Duration::from_secs(4_107_542_400)),
            "2100-03-01 00:00"
        );
    }

    fn at(mut e: Entry, secs: u64) -> Entry {
        e.modified = Some(UNIX_EPOCH + Duration::from_secs(secs));
        e
    }

    fn names(mut entries: Vec<Entry>, by: Sort) -> Vec<String> {
        sort(&mut entries, by);
        entries.into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn sort_orders_keep_directories_first() {
        let entries = vec![
            at(file("b", 10), 300),
            at(file("a", 30), 100),
            at(file("c", 10), 200),
            file("d", 20),
            at(dir("zdir"), 50),
            at(dir("adir"), 10),
        ];
        assert_eq!(
            names(entries.clone(), Sort::Name),
            ["adir", "zdir", "a", "b", "c", "d"]
        );
        // Newest first, unknown last.
        assert_eq!(
            names(entries.clone(), Sort::Mtime),
            ["zdir", "adir", "b", "c", "a", "d"]
        );
        // Largest first, ties by name; directories by name.
        assert_eq!(
            names(entries, Sort::Size),
            ["adir", "zdir", "a", "d", "b", "c"]
        );
    }

    #[test]
    fn json_is_asked_for_by_query_or_accept() {
        let json = |q: Option<&str>, a: Option<&str>| wants_json(q, a.map(str::as_bytes));
        assert!(json(Some("format=json"), None));
        assert!(json(Some("x=1&format=json"), Some("text/html")));
        assert!(!json(Some("format=html"), Some("application/json")));
        assert!(json(None, Some("application/json")));
        assert!(json(None, Some("text/html;q=0.5, application/json")));
        assert!(!json(None, Some("application/json;q=0.5, text/html")));
        assert!(!json(None, Some("*/*")));
        assert!(!json(None, None));
        assert!(!json(Some("format=jsonp"), None));
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(!json(None, Some(browser)));
    }

    #[test]
    fn json_entries_have_their_fields_and_escaped_names() {
        let mut link = at(dir("to-dir"), 7);
        link.symlink = true;
        let mut flink = at(file("to-file", 3), 8);
        flink.symlink = true;
        let odd = "q\"uote\\back\nline\u{1}\u{e9}\u{1F600}</script>";
        let listing = Listing {
            entries: vec![
                at(file(odd, 5), 1_700_000_000),
                file("nomtime", 0),
                at(dir("sub"), 1),
                at(file("old", 1), 0),
                link,
                flink,
            ],
            truncated: false,
        };
        let out = render_json(listing.clone(), Sort::Name);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 6);
        let by = |name: &str| arr.iter().find(|e| e["name"] == name).unwrap().clone();
        assert_eq!(
            by(odd),
            serde_json::json!({"name": odd, "type": "file", "size": 5, "mtime": 1_700_000_000})
        );
        assert_eq!(by("nomtime")["mtime"], serde_json::Value::Null);
        assert_eq!(
            by("sub"),
            serde_json::json!({"name": "sub", "type": "dir", "size": null, "mtime": 1})
        );
        assert_eq!(by("to-dir")["type"], "symlink");
        assert_eq!(by("to-dir")["target"], "dir");
        assert_eq!(by("to-file")["target"], "file");
        assert_eq!(by("to-file")["size"], 3);
        assert!(by("old").get("target").is_none());
        // Raw control characters never appear in the output.
        assert!(!out[..out.len() - 1].iter().any(|&b| b < 0x20), "{out:?}");
        // Sorted, directories first.
        let order: Vec<&str> = arr.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(order[..2], ["sub", "to-dir"]);
        let by_mtime = render_json(listing, Sort::Mtime);
        let v: serde_json::Value = serde_json::from_slice(&by_mtime).unwrap();
        let order: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["to-dir", "sub", odd, "to-file", "old", "nomtime"]);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(1)), -1);
    }
}
