//! Content checksums for checkpoint files, recorded in the manifest and verified before a
//! restore hands the files to a VMM.
//!
//! Disks are large and mostly holes, so `disk_digest` hashes only what is really there: every
//! 64 KiB block of the data regions (SEEK_DATA) that is not all zeros, with its offset. A hole
//! and a block of zeros read alike, so the digest does not depend on how a copy laid out its
//! extents.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

const BLOCK: usize = 64 * 1024;

/// SHA-256 of a whole file, hex.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Digest of a sparse disk image: its length and every non-zero 64 KiB block with its offset.
pub fn disk_digest(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut buf = vec![0u8; BLOCK];
    let mut done = 0u64;
    for (start, end) in crate::storage::data_regions(&f)? {
        // Blocks are aligned to BLOCK so that extent boundaries do not change the digest.
        let mut off = ((start / BLOCK as u64) * BLOCK as u64).max(done);
        f.seek(SeekFrom::Start(off))?;
        while off < end {
            let want = BLOCK.min((len - off) as usize);
            f.read_exact(&mut buf[..want])?;
            if buf[..want].iter().any(|&b| b != 0) {
                h.update(off.to_le_bytes());
                h.update(&buf[..want]);
            }
            off += want as u64;
        }
        done = off;
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn disk_digest_ignores_layout_but_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        // a: data written sparsely; b: the same content with explicit zero blocks.
        let mut f = File::create(&a).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(b"hello").unwrap();
        f.set_len(8 << 20).unwrap();
        let mut g = File::create(&b).unwrap();
        g.write_all(&vec![0u8; 3 << 20]).unwrap();
        g.write_all(b"hello").unwrap();
        g.set_len(8 << 20).unwrap();
        drop((f, g));
        assert_eq!(disk_digest(&a).unwrap(), disk_digest(&b).unwrap());
        let mut g = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
        g.seek(SeekFrom::Start(5 << 20)).unwrap();
        g.write_all(b"x").unwrap();
        drop(g);
        assert_ne!(disk_digest(&a).unwrap(), disk_digest(&b).unwrap());
        assert_ne!(file_sha256(&a).unwrap(), file_sha256(&b).unwrap());
    }
}
