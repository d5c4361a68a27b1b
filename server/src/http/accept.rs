//! How much a request's `Accept` field wants one media type (RFC 9110
//! 12.5.1): the q-value of the most specific media range that matches it
//! (`text/html` before `text/*` before `*/*`), 0 if none does, and 1 if
//! the request has no `Accept` (or an empty one), which admits anything.
//! Media-range parameters other than `q` are ignored.

/// The q-value for `ty/sub` in thousandths (0 refuses, 1000 is full), from
/// every `Accept` field value of the request.
pub fn quality<'a>(values: impl IntoIterator<Item = &'a [u8]>, ty: &str, sub: &str) -> u16 {
    let mut any = false;
    // (specificity, q) of the best match so far.
    let mut best: Option<(u8, u16)> = None;
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            any = true;
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let range = parts.next().unwrap_or("").trim();
            if range.is_empty() {
                continue;
            }
            any = true;
            let Some((t, s)) = range.split_once('/') else {
                continue;
            };
            let (t, s) = (t.trim(), s.trim());
            let specificity = match (t, s) {
                ("*", "*") => 0,
                (t, "*") if t.eq_ignore_ascii_case(ty) => 1,
                (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub) => 2,
                _ => continue,
            };
            let mut q = 1000;
            for param in parts {
                if let Some((k, v)) = param.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    // A malformed weight refuses rather than guesses.
                    q = parse_q(v.trim()).unwrap_or(0);
                }
            }
            best = match best {
                Some((sp, bq)) if sp > specificity || (sp == specificity && bq >= q) => {
                    Some((sp, bq))
                }
                _ => Some((specificity, q)),
            };
        }
    }
    if !any {
        return 1000;
    }
    best.map_or(0, |(_, q)| q)
}

/// A `qvalue` (RFC 9110 12.4.2: `0[.ddd]` or `1[.000]`) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(accept: Option<&str>, ty: &str, sub: &str) -> u16 {
        quality(accept.map(str::as_bytes), ty, sub)
    }

    #[test]
    fn no_accept_admits_everything() {
        assert_eq!(q(None, "text", "html"), 1000);
        assert_eq!(q(Some(""), "text", "html"), 1000);
        assert_eq!(q(Some(" , "), "image", "png"), 1000);
    }

    #[test]
    fn most_specific_range_decides() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(q(Some(browser), "text", "html"), 1000);
        assert_eq!(q(Some(browser), "application", "json"), 800);
        assert_eq!(q(Some("image/png"), "text", "html"), 0);
        assert_eq!(q(Some("image/*"), "text", "html"), 0);
        assert_eq!(q(Some("text/*;q=0.3"), "text", "html"), 300);
        assert_eq!(q(Some("*/*"), "text", "html"), 1000);
        assert_eq!(q(Some("*/*;q=0"), "text", "html"), 0);
        // The specific refusal beats the wildcard.
        assert_eq!(q(Some("text/html;q=0, */*"), "text", "html"), 0);
        assert_eq!(q(Some("TEXT/HTML;Q=0.5"), "text", "html"), 500);
        assert_eq!(
            q(
                Some("application/json, text/html;q=0.9"),
                "application",
                "json"
            ),
            1000
        );
        // Several fields count together.
        assert_eq!(
            quality(
                [b"image/png".as_slice(), b"text/html".as_slice()],
                "text",
                "html"
            ),
            1000
        );
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.123"), Some(123));
        assert_eq!(parse_q("0.05"), Some(50));
        for bad in ["1.5", "2", "0.1234", "-1", "x", "0.a", ""] {
            assert_eq!(parse_q(bad), None, "{bad}");
        }
        // A malformed weight refuses.
        assert_eq!(q(Some("text/html;q=high"), "text", "html"), 0);
    }
}
