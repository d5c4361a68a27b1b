//! The platform half of the disk module: how to ask for page-cache
//! residency, and the descriptor a finished read-in is signalled on.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{Notifier, PageCache};

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub use portable::{Notifier, PageCache};
