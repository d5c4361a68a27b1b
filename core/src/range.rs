//! Half-open byte ranges of a file.

use std::fmt;

use crate::TransferError;

/// The bytes `start..end` of a file (half-open, like `std::ops::Range`).
///
/// A separate type rather than `Range<u64>` so that a range is always
/// ordered once built and is `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    start: u64,
    end: u64,
}

impl ByteRange {
    /// The range `start..end`; `InvalidRange` if `start > end`.
    pub fn new(start: u64, end: u64) -> Result<Self, TransferError> {
        if start > end {
            return Err(TransferError::InvalidRange { start, end });
        }
        Ok(Self { start, end })
    }

    /// The whole of a file of `len` bytes.
    pub const fn full(len: u64) -> Self {
        Self { start: 0, end: len }
    }

    /// `len` bytes from `start`; `InvalidRange` if the end would overflow.
    pub fn from_len(start: u64, len: u64) -> Result<Self, TransferError> {
        let end = start.checked_add(len).ok_or(TransferError::InvalidRange {
            start,
            end: u64::MAX,
        })?;
        Ok(Self { start, end })
    }

    /// First byte of the range.
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte of the range.
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// Number of bytes in the range.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Checks that the range lies inside a file of `file_len` bytes.
    pub fn check_within(&self, file_len: u64) -> Result<(), TransferError> {
        if self.end > file_len {
            return Err(TransferError::RangePastEof {
                range: *self,
                file_len,
            });
        }
        Ok(())
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_range_is_an_error() {
        assert!(matches!(
            ByteRange::new(5, 4),
            Err(TransferError::InvalidRange { start: 5, end: 4 })
        ));
    }

    #[test]
    fn overflowing_length_is_an_error() {
        assert!(ByteRange::from_len(u64::MAX, 1).is_err());
        assert_eq!(
            ByteRange::from_len(3, 4).unwrap(),
            ByteRange::new(3, 7).unwrap()
        );
    }

    #[test]
    fn range_past_eof_is_reported_with_the_file_length() {
        let r = ByteRange::new(10, 20).unwrap();
        assert!(r.check_within(20).is_ok());
        match r.check_within(19) {
            Err(TransferError::RangePastEof { range, file_len }) => {
                assert_eq!(range, r);
                assert_eq!(file_len, 19);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_and_len() {
        let r = ByteRange::new(7, 7).unwrap();
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        assert_eq!(ByteRange::full(9).len(), 9);
        assert_eq!(r.to_string(), "7..7");
    }
}
