//! Page-aligned byte buffers for the load generator's data path.
//!
//! Whether a heap block starts on a page boundary is up to the allocator
//! (glibc serves large `Vec`s from `mmap` at a page + 16 bytes), and the
//! kernel's copy into user space can run several times slower into a buffer
//! that starts just past a page boundary than into one that starts on it.
//! A receive buffer whose alignment is left to luck makes the client's
//! cost, and so every figure measured on loopback, depend on luck: every
//! buffer zcbench receives into is one of these.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The page size, from `sysconf(_SC_PAGESIZE)` (4096 if it cannot be read).
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| n.is_power_of_two())
        .unwrap_or(4096)
}

/// `len` zeroed bytes starting on a page boundary, freed on drop; used
/// like a `Box<[u8]>`.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer is memory it owns alone, like a `Box<[u8]>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// A page-aligned, zeroed buffer of `len` bytes (a zero length still
    /// allocates a byte, so that the allocation is valid).
    ///
    /// # Panics
    /// If `len` overflows `isize` once rounded up to a page (a caller bug);
    /// aborts if memory runs out, as `Vec` does.
    pub fn new(len: usize) -> AlignedBuf {
        let layout =
            Layout::from_size_align(len.max(1), page_size()).expect("buffer size fits isize");
        // SAFETY: the layout's size is non-zero.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, layout }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size() >= len` zero-initialised
        // bytes owned by `self` for its lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by `alloc_zeroed` with `layout` and is
        // freed only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_page_and_hold_their_length() {
        let page = page_size();
        assert!(page >= 4096 && page.is_power_of_two(), "{page}");
        // Sizes glibc would serve from mmap at page + 16, and small ones
        // it would serve from the heap at 16-byte alignment.
        let mut keep = Vec::new();
        for len in [
            0,
            1,
            100,
            4096,
            8192,
            64 * 1024,
            128 * 1024,
            256 * 1024,
            1 << 20,
        ] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(
                b.as_ptr() as usize % page,
                0,
                "{len} bytes at {:p}",
                b.as_ptr()
            );
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0), "zeroed");
            if len > 0 {
                b[len - 1] = 7;
                assert_eq!(b[len - 1], 7);
            }
            keep.push(b);
        }
    }
}
