//! `Cache-Control` by path (`--cache-control GLOB=VALUE`, repeatable): the
//! value of the first rule whose glob matches the served file's path is
//! sent with its 200, 206 and 304 responses (RFC 9110 15.4.5: a 304
//! carries the Cache-Control a 200 would), never with an error.
//!
//! Globs are matched against the path of the file served, relative to the
//! root and decoded (`assets/app.js`; a directory's index as
//! `docs/index.html`, the SPA fallback by its own path), with `.gitignore`
//! conventions, which is what users of nginx `location ~ \.html$` or
//! caddy's `path *.html` expect:
//!
//! - a glob without `/` matches the name in any directory: `*.html`
//!   matches `index.html` and `blog/post.html`;
//! - a glob with a `/` is anchored at the root: `assets/*.js` matches
//!   `assets/app.js` but not `x/assets/app.js` nor `assets/js/app.js`; a
//!   leading `/` only anchors (`/index.html` is the root's alone);
//! - `*` and `?` never match `/`; `**` matches any number of directories
//!   (`assets/**` is everything under `assets/`); `{a,b}` and `[ab]` as in
//!   `globset`.

use std::cell::RefCell;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

/// The configured rules, in order; empty when none are.
#[derive(Debug, Clone, Default)]
pub struct CacheRules {
    set: GlobSet,
    values: Vec<String>,
}

impl CacheRules {
    /// Parses `GLOB=VALUE` rules (split at the first `=`; the value may
    /// hold more). The error names the key and the rule.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<CacheRules, String> {
        let mut set = GlobSetBuilder::new();
        let mut values = Vec::with_capacity(rules.len());
        for rule in rules {
            let rule = rule.as_ref();
            let bad = |why: &str| format!("cache-control: `{}`: {why}", rule.escape_debug());
            let (glob, value) = rule
                .split_once('=')
                .ok_or_else(|| bad("give GLOB=VALUE, e.g. '*.html=no-cache'"))?;
            let (glob, value) = (glob.trim(), value.trim());
            let anchored = glob.strip_prefix('/');
            let pattern = match anchored {
                Some(rest) => rest.to_owned(),
                None if glob.contains('/') => glob.to_owned(),
                None => format!("**/{glob}"),
            };
            if glob.is_empty() || pattern.is_empty() {
                return Err(bad("the glob is empty"));
            }
            let compiled = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| bad(&format!("bad glob: {}", e.kind())))?;
            // Visible ASCII, spaces and tabs: what a field value may hold
            // (RFC 9110 5.5) less obs-text, which no cache directive needs.
            let visible = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
            if value.is_empty() || !value.bytes().all(visible) {
                return Err(bad(
                    "the value must be a non-empty header value of visible ASCII",
                ));
            }
            set.add(compiled);
            values.push(value.to_owned());
        }
        let set = set
            .build()
            .map_err(|e| format!("cache-control: cannot build the globs: {e}"))?;
        Ok(CacheRules { set, values })
    }

    /// Whether no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value for the file at `rel` (relative to the root, decoded), if
    /// a rule matches: the first one configured.
    pub fn lookup(&self, rel: &str) -> Option<&str> {
        self.index(rel).map(|i| self.value(i))
    }

    /// The value of rule `index` (from [`CacheRules::index_for_key`]).
    pub fn value(&self, index: usize) -> &str {
        &self.values[index]
    }

    /// Which rule [`CacheRules::for_key`] finds, by index.
    pub fn index_for_key(&self, key: &str) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        match key.strip_suffix('/') {
            None => self.index(key),
            Some("") => self.index("index.html"),
            Some(dir) => self.index(&format!("{dir}/index.html")),
        }
    }

    fn index(&self, rel: &str) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        thread_local! {
            /// Reused for every match: no allocation per request.
            static HITS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        }
        // Borrowed bytes: no copy of the path either.
        let candidate = Candidate::from_bytes(rel.as_bytes());
        HITS.with(|hits| {
            let mut hits = hits.borrow_mut();
            self.set.matches_candidate_into(&candidate, &mut hits);
            // In ascending order: the first is the earliest rule.
            hits.first().copied()
        })
    }

    /// The value for a request path's key (see
    /// [`RequestPath::key`](super::request_path::RequestPath::key)): a key
    /// with a trailing slash is its directory's `index.html`, the only file
    /// served under it.
    pub fn for_key(&self, key: &str) -> Option<&str> {
        self.index_for_key(key).map(|i| self.value(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(specs: &[&str]) -> CacheRules {
        CacheRules::parse(specs).unwrap()
    }

    #[test]
    fn first_match_wins() {
        let r = rules(&[
            "index.html=no-store",
            "*.html=no-cache",
            "assets/**=public, max-age=31536000, immutable",
            "**=max-age=60",
        ]);
        assert_eq!(r.lookup("index.html"), Some("no-store"));
        assert_eq!(r.lookup("blog/index.html"), Some("no-store"));
        assert_eq!(r.lookup("blog/post.html"), Some("no-cache"));
        // An html file under assets/: the earlier rule wins.
        assert_eq!(r.lookup("assets/x.html"), Some("no-cache"));
        assert_eq!(
            r.lookup("assets/js/app.3f2a.js"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(r.lookup("robots.txt"), Some("max-age=60"));
        // Reordered, the catch-all takes everything.
        let r = rules(&["**=max-age=60", "*.html=no-cache"]);
        assert_eq!(r.lookup("a.html"), Some("max-age=60"));
    }

    #[test]
    fn slash_anchors_and_star_stays_in_its_directory() {
        let r = rules(&["assets/*.js=a", "/top.txt=b", "*.css=c"]);
        assert_eq!(r.lookup("assets/app.js"), Some("a"));
        assert_eq!(r.lookup("assets/js/app.js"), None);
        assert_eq!(r.lookup("x/assets/app.js"), None);
        assert_eq!(r.lookup("top.txt"), Some("b"));
        assert_eq!(r.lookup("sub/top.txt"), None);
        assert_eq!(r.lookup("style.css"), Some("c"));
        assert_eq!(r.lookup("a/b/c/style.css"), Some("c"));
        assert_eq!(r.lookup("style.css.map"), None);
    }

    #[test]
    fn directory_keys_are_their_index() {
        let r = rules(&["/docs/index.html=x", "*.html=no-cache"]);
        assert_eq!(r.for_key("/"), Some("no-cache"));
        assert_eq!(r.for_key("docs/"), Some("x"));
        assert_eq!(r.for_key("blog/"), Some("no-cache"));
        assert_eq!(r.for_key("a.txt"), None);
        assert_eq!(CacheRules::default().for_key("a.html"), None);
        assert!(CacheRules::default().is_empty());
    }

    #[test]
    fn bad_rules_name_the_key() {
        for (spec, why) in [
            ("no-equals", "GLOB=VALUE"),
            ("=no-cache", "empty"),
            ("/=no-cache", "empty"),
            ("a[=x", "bad glob"),
            ("*.html=", "header value"),
            ("*.html=caf\u{e9}", "header value"),
            ("*.html=a\r\nSet-Cookie: x", "header value"),
        ] {
            let e = CacheRules::parse(&[spec]).unwrap_err();
            assert!(
                e.starts_with("cache-control: ") && e.contains(why),
                "{spec}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }
}
