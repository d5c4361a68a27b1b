//! A `readdir(3)` stream over a directory descriptor (nix's `dir` module
//! is not among the enabled features).

use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// An open `DIR*`, closed on drop.
pub(super) struct DirStream(std::ptr::NonNull<libc::DIR>);

impl DirStream {
    /// Opens a stream over `dir` through a fresh open file description, so
    /// that reading does not move any other descriptor's offset and every
    /// stream lists the directory from the start.
    pub(super) fn open(dir: BorrowedFd<'_>) -> io::Result<DirStream> {
        use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

        let fd = nix::fcntl::openat(
            dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open directory descriptor that we own; on
        // success `fdopendir` takes it over (closed by `closedir` in `Drop`).
        let stream = unsafe { libc::fdopendir(raw) };
        match std::ptr::NonNull::new(stream) {
            Some(stream) => Ok(DirStream(stream)),
            None => {
                let e = io::Error::last_os_error();
                // SAFETY: `fdopendir` failed, so `raw` is still ours alone;
                // wrapping it closes it exactly once.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                Err(e)
            }
        }
    }

    /// The next name in the directory (`.` and `..` included), or `None`
    /// at the end.
    pub(super) fn next_name(&mut self) -> io::Result<Option<Vec<u8>>> {
        Errno::clear();
        // SAFETY: `self.0` is a live `DIR*` owned by this value and `&mut
        // self` rules out concurrent use of the stream.
        let entry = unsafe { libc::readdir(self.0.as_ptr()) };
        if entry.is_null() {
            return match Errno::last_raw() {
                0 => Ok(None),
                n => Err(io::Error::from_raw_os_error(n)),
            };
        }
        // SAFETY: a non-null `readdir` result points to a valid `dirent`
        // whose `d_name` is NUL-terminated, until the next `readdir` or
        // `closedir` on this stream; the name is copied before either.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        Ok(Some(name.to_bytes().to_vec()))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from a successful `fdopendir` and is closed
        // only here, once.
        unsafe {
            libc::closedir(self.0.as_ptr());
        }
    }
}
