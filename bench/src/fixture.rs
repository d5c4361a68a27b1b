//! The files zcbench serves: `4KiB.bin`, `1MiB.bin`, ... in one directory,
//! of pseudo-random bytes, made when missing or of the wrong size.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::units::file_stem;

/// The path of the fixture file of `size` bytes in `dir`.
pub fn file_path(dir: &Path, size: u64) -> PathBuf {
    dir.join(format!("{}.bin", file_stem(size)))
}

/// Makes `path` a file of `size` pseudo-random bytes (from `seed`) unless
/// it already has that size. Returns whether it was written.
pub fn ensure_file(path: &Path, size: u64, seed: u64) -> Result<bool, String> {
    let ok = std::fs::metadata(path)
        .map(|m| m.is_file() && m.len() == size)
        .unwrap_or(false);
    if ok {
        return Ok(false);
    }
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    let mut left = size;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).map_err(err)?;
        left -= n as u64;
    }
    f.flush().map_err(err)?;
    Ok(true)
}

/// Files of each of `sizes` in `dir` (created if missing), then read once
/// so that the page cache is warm.
pub fn make_fixture(dir: &Path, sizes: &[u64]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for &size in sizes {
        let path = file_path(dir, size);
        ensure_file(&path, size, size)?;
        warm(&path)?;
    }
    Ok(())
}

/// Reads `path` once, into the page cache.
pub fn warm(path: &Path) -> Result<(), String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    std::io::copy(&mut f, &mut std::io::sink())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_made_once_with_their_size() {
        let dir = std::env::temp_dir().join(format!("zcbench-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        make_fixture(&dir, &[4096, 1000]).unwrap();
        let p = file_path(&dir, 4096);
        assert_eq!(p.file_name().unwrap(), "4KiB.bin");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
        assert_eq!(
            std::fs::metadata(dir.join("1000B.bin")).unwrap().len(),
            1000
        );
        let first = std::fs::read(&p).unwrap();
        assert!(
            first.iter().any(|&b| b != first[0]),
            "not one repeated byte"
        );
        // Right size: left alone; wrong size: written again, the same bytes.
        assert!(!ensure_file(&p, 4096, 4096).unwrap());
        std::fs::write(&p, b"short").unwrap();
        assert!(ensure_file(&p, 4096, 4096).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), first);
        let err = make_fixture(Path::new("/proc/zcbench-cannot"), &[1]).unwrap_err();
        assert!(err.contains("/proc/zcbench-cannot"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
