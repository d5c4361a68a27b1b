//! What an operator configures about a site beyond serving its files as
//! they are: `Cache-Control` by path, the single-page-app fallback, error
//! pages and the listing's sort order. [`SiteRules::default`] is none of
//! them, which costs a request nothing.

use crate::http::cache_rules::CacheRules;

/// The site's rules; the default configures none.
#[derive(Debug, Clone, Default)]
pub struct SiteRules {
    /// `Cache-Control` by path, for 200, 206 and 304.
    pub cache_control: CacheRules,
}
