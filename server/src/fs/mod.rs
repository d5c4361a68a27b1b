//! The filesystem side of serving: opening a request path beneath the
//! served root so that it can never lie outside it, finding a directory's
//! `index.html`, and reading a directory for its listing.
//!
//! Everything here makes blocking system calls. The platform code (Linux's
//! `openat2` and the portable canonicalise-and-check) sits in `sys`, one
//! module per platform chosen by `cfg` at the module level.

mod canonical;
mod dir_stream;
mod root;
mod stat;
mod sys;
#[cfg(test)]
mod test_tree;

pub use root::{Dir, Opened, Policy, Root};
