//! What an operator configures about a site beyond serving its files as
//! they are: `Cache-Control` by path, the single-page-app fallback, error
//! pages and the listing's sort order. [`SiteRules::default`] is none of
//! them, which costs a request nothing.
//!
//! The fallback and error pages are files beneath the root, named by a
//! path relative to it and opened like any request's path (through
//! [`Root::open_path`] with the server's [`Policy`]: no way out of the
//! root, dotfiles hidden unless shown). Each is opened once at start-up so
//! that a typo stops the start (exit 2, naming the key) instead of showing
//! up as 404s.

use http::{HeaderValue, StatusCode};

use crate::config::Settings;
use crate::fs::{Opened, Policy, Root};
use crate::http::accept;
use crate::http::cache_rules::CacheRules;
use crate::http::listing::Sort;
use crate::http::request_path::RequestPath;

/// The site's rules; the default configures none.
#[derive(Debug, Clone, Default)]
pub struct SiteRules {
    /// `Cache-Control` by path, for 200, 206 and 304.
    pub cache_control: CacheRules,
    /// The page served for a missing route (`--fallback`).
    pub fallback: Option<Page>,
    /// Pages sent as the body of error responses (`--error-page`).
    pub error_pages: ErrorPages,
    /// The order of listings (`--listing-sort`).
    pub listing_sort: Sort,
}

impl SiteRules {
    /// The rules `settings` configure, their files checked beneath `root`
    /// under `policy`. The error is one line naming the key.
    pub fn new(settings: &Settings, root: &Root, policy: &Policy) -> Result<SiteRules, String> {
        let fallback = settings
            .fallback
            .as_deref()
            .map(|rel| Page::open_at_start("fallback", rel, root, policy))
            .transpose()?;
        let mut error_pages = ErrorPages::default();
        for (&code, rel) in &settings.error_pages {
            let status = StatusCode::from_u16(code)
                .map_err(|_| format!("error-page: `{code}` is not a status"))?;
            let key = format!("error-page {code}");
            let page = Page::open_at_start(&key, rel, root, policy)?;
            error_pages.pages.push((status, page));
        }
        Ok(SiteRules {
            cache_control: settings.cache_control.clone(),
            fallback,
            error_pages,
            listing_sort: settings.listing_sort,
        })
    }
}

/// A configured file beneath the root: the fallback or an error page.
#[derive(Debug, Clone)]
pub struct Page {
    /// Its path, as a request for it would have.
    pub path: RequestPath,
}

impl Page {
    /// The page at `rel` (relative to the root; a leading `/` is allowed,
    /// `%` is a literal character), which must open to a regular file now.
    /// Errors name `key`.
    pub fn open_at_start(
        key: &str,
        rel: &str,
        root: &Root,
        policy: &Policy,
    ) -> Result<Page, String> {
        let bad = |why: String| format!("{key}: {}: {why}", rel.escape_debug());
        let trimmed = rel.trim().trim_start_matches('/');
        if trimmed.is_empty() {
            return Err(format!("{key}: give a file path relative to the root"));
        }
        // Named as on disk: a `%` is itself, not an escape.
        let path = RequestPath::parse(&format!("/{}", trimmed.replace('%', "%25")))
            .map_err(|e| bad(e.to_string()))?;
        if path.has_trailing_slash() {
            return Err(bad("names a directory; give a file".into()));
        }
        match root.open_path(&path, policy) {
            Ok(Opened::File(..)) => Ok(Page { path }),
            Ok(Opened::Dir(_)) => Err(bad("is a directory; give a file".into())),
            Err(e) => Err(bad(format!(
                "cannot open it beneath the root {} ({e})",
                root.path().display()
            ))),
        }
    }
}

/// The error pages by status; few, so a list.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    pages: Vec<(StatusCode, Page)>,
}

impl ErrorPages {
    /// The page for `status`, if one is configured.
    pub fn get(&self, status: StatusCode) -> Option<&Page> {
        self.pages
            .iter()
            .find_map(|(s, page)| (*s == status).then_some(page))
    }
}

/// Whether a request that found nothing at its path gets the fallback:
/// its last segment has no extension (`/users/42`, not
/// `/assets/app.3f2a.js`: a missing asset must stay a 404, or a browser
/// would run the app's HTML as a script) and its `Accept` admits
/// `text/html` (a browser navigating, not an `<img>` or `fetch` asking
/// for something else).
pub fn wants_fallback<'a>(
    last_segment: &str,
    accept: impl IntoIterator<Item = &'a HeaderValue>,
) -> bool {
    !has_extension(last_segment)
        && accept::quality(
            accept.into_iter().map(HeaderValue::as_bytes),
            "text",
            "html",
        ) > 0
}

/// A `.` after the first character: `app.js`, `v1.2`; not `.well-known`
/// nor `users`.
fn has_extension(segment: &str) -> bool {
    segment.get(1..).is_some_and(|rest| rest.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wants(seg: &str, accept: Option<&str>) -> bool {
        let values: Vec<HeaderValue> = accept.into_iter().map(|a| a.parse().unwrap()).collect();
        wants_fallback(seg, &values)
    }

    #[test]
    fn fallback_for_routes_that_accept_html() {
        let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
        assert!(wants("users", Some(browser)));
        assert!(wants("users", None));
        assert!(wants("", Some("*/*")));
        assert!(wants("42", Some("text/*")));
        assert!(!wants("app.3f2a.js", Some(browser)));
        assert!(!wants("favicon.ico", None));
        assert!(!wants("v1.2", None));
        assert!(!wants("users", Some("image/png")));
        assert!(!wants("users", Some("application/json")));
        assert!(!wants("users", Some("text/html;q=0")));
    }
}
