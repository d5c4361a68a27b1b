//! A zeroed byte buffer that starts on a page boundary.
//!
//! Where a heap block starts is up to the allocator (glibc serves large
//! blocks from `mmap` at page + 16), and the kernel's copy into a user
//! buffer that does not start on a page can run several times slower than
//! into one that does (results/FINDINGS.md §8). Every buffer that file
//! bytes are read into is one of these, so that speed no longer depends on
//! the allocator.
//!
//! The block is over-allocated by up to one page and the buffer starts at
//! the first page boundary inside it: no `unsafe`, and no syscall beyond
//! the allocator's own.

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use nix::unistd::{SysconfVar, sysconf};

/// The size of a memory page here, asked once per process (4096 where the
/// system will not say).
pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| n.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// `len` zeroed bytes starting on a page boundary.
#[derive(Debug)]
pub struct PageBuf {
    block: Box<[u8]>,
    start: usize,
    len: usize,
}

impl PageBuf {
    /// A buffer of `len` zeroed bytes whose first byte is page-aligned.
    pub fn new(len: usize) -> Self {
        let page = page_size();
        let block = vec![0u8; len + page - 1].into_boxed_slice();
        let start = block.as_ptr().align_offset(page);
        debug_assert!(start < page && start + len <= block.len());
        Self { block, start, len }
    }
}

impl Deref for PageBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.block[self.start..self.start + self.len]
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.block[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_page_whatever_its_size() {
        let page = page_size();
        assert!(page >= 4096 && page.is_power_of_two(), "{page}");
        for len in [0, 1, 16, 4096, 32 << 10, 128 << 10, (1 << 20) + 3] {
            let mut b = PageBuf::new(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % page, 0, "{len} bytes");
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                b[len - 1] = 7;
                assert_eq!(b[len - 1], 7);
            }
        }
    }
}
