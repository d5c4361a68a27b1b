//! Opening beneath the root, per platform. Each module exports the same
//! names: [`Base`], what every lookup starts from; [`open_beneath`], which
//! finds a relative path under it without leaving the root and without
//! opening it for reading; and [`open_for_reading`], which opens what was
//! found once its type has been checked.

use std::fs::{File, Metadata};
use std::path::PathBuf;

#[cfg(target_os = "linux")]
mod linux;
// Built in tests everywhere, so that Linux runs check it compiles and works.
#[cfg(any(not(target_os = "linux"), test))]
mod portable;

#[cfg(target_os = "linux")]
pub use linux::{Base, open_beneath, open_for_reading, resolved_path};
#[cfg(not(target_os = "linux"))]
pub use portable::{Base, open_beneath, open_for_reading, resolved_path};

/// A file found beneath the root: a descriptor naming it and its
/// metadata (`fstat` of that descriptor), so that its type can be checked
/// before anything opens it for reading. Opening a FIFO for reading
/// releases a writer blocked on it, and opening a device runs its driver.
#[derive(Debug)]
pub struct Found {
    /// On Linux an `O_PATH` descriptor, which opens nothing; found by the
    /// canonicalise-and-check fallback, a descriptor already open for
    /// reading, as that fallback checks the type before opening.
    pub fd: File,
    /// The metadata of `fd`.
    pub meta: Metadata,
    /// The canonical path, when the fallback found it.
    pub canonical: Option<PathBuf>,
}
