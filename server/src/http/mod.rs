//! HTTP semantics that do not touch a socket: ranges, preconditions, paths
//! and listings, each a pure function with its own tests.

pub mod conditional;
pub mod file_cache;
pub mod listing;
pub mod path;
pub mod range;
