//! The HTML page served for a directory that has no `index.html` (when
//! listings are enabled): directories first, then files, each linked by a
//! percent-encoded relative `href` so that any file name round-trips.
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
/// trailing `/`) before files, each group sorted by the bytes of the name.
/// Links are relative to the directory, so the page must be served at a URL
/// ending in `/`. A truncated listing says so above the table (and below
/// it): the entries shown are the first ones read from the directory,
/// sorted, not the first ones in sorted order.
pub fn render(url_path: &str, listing: Listing) -> String {
    let Listing {
        mut entries,
        truncated,
    } = listing;
    entries.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });

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
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            // Round towards negative infinity so the minute is right.
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let frac = i64::from(d.subsec_nanos() > 0);
            whole.saturating_add(frac).saturating_neg()
        }
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        of_day / 3600,
        (of_day % 3600) / 60
    )
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
        }
    }

    fn dir(name: &str) -> Entry {
        Entry {
            name: name.to_owned(),
            is_dir: true,
            len: 4096,
            modified: None,
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
}
