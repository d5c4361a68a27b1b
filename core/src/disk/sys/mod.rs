//! The platform half of the disk module: how to ask for page-cache
//! residency, how a range is read in, and the descriptor a finished
//! read-in is signalled on.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{Notifier, PageCache, read_in, set_thread_priority};

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub use portable::{Notifier, PageCache, read_in, set_thread_priority};
