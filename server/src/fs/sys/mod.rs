//! Opening beneath the root, per platform. Each module exports the same
//! two names: [`Base`], what every lookup starts from, and
//! [`open_beneath`], which opens a relative path under it without leaving
//! the root.

#[cfg(target_os = "linux")]
mod linux;
// Built in tests everywhere, so that Linux runs check it compiles and works.
#[cfg(any(not(target_os = "linux"), test))]
mod portable;

#[cfg(target_os = "linux")]
pub use linux::{Base, open_beneath};
#[cfg(not(target_os = "linux"))]
pub use portable::{Base, open_beneath};
