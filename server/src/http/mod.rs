//! HTTP semantics that do not touch a socket.
//!
//! Pure functions, each with its own tests: [`request_path`] (decoding and
//! normalising the request path), [`range`], [`accept_encoding`] (content
//! codings and their negotiation), [`conditional`]
//! (preconditions and validators) and [`listing`] (rendering a directory
//! page from entries already read).
//!
//! Also pure: [`accept`] (how much `Accept` wants a media type) and
//! [`cache_rules`] (a served path against the `Cache-Control` rules).
//!
//! [`file_cache`] is the exception: it holds open descriptors behind a
//! lock, `fstat`s them before reuse and reads the clock. Opening files and
//! reading directories is [`crate::fs`]'s business.

pub mod accept;
pub mod accept_encoding;
pub mod cache_rules;
pub mod conditional;
pub mod file_cache;
pub mod listing;
pub mod range;
pub mod request_path;
