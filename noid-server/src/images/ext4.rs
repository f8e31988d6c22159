//! Turning a directory tree into an image's root disk: an ext4 file system made with
//! `mkfs.ext4 -d`, which copies owners, modes, links and device nodes as they are.

use std::path::Path;

use super::store::{io, ImageError};

/// Room beyond the files themselves: the guest needs space to write, and ext4 its metadata.
const HEADROOM: u64 = 256 << 20;

/// Bytes the tree under `dir` takes, counted in 4 KiB blocks plus an inode's worth per entry.
fn tree_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(p) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            *total += m.len().div_ceil(4096) * 4096 + 256;
            if m.is_dir() {
                walk(&e.path(), total);
            }
        }
    }
    let mut total = 0;
    walk(dir, &mut total);
    total
}

/// The disk size for `dir`: `requested`, or what its files need plus room; an explicit size
/// too small for the files is refused.
pub fn size_for(dir: &Path, requested: Option<u64>) -> Result<u64, ImageError> {
    let used = tree_bytes(dir);
    let needed = used + used / 4 + (16 << 20);
    match requested {
        Some(r) if r < needed => Err(ImageError::Invalid(format!(
            "a disk of {} MiB is too small: the files need about {} MiB",
            r >> 20,
            needed.div_ceil(1 << 20)
        ))),
        Some(r) => Ok(r.div_ceil(1 << 20) << 20),
        None => Ok((needed + HEADROOM).div_ceil(1 << 20) << 20),
    }
}

/// Makes `out`, an ext4 disk of `bytes` holding the tree under `dir`.
pub fn make(dir: &Path, out: &Path, bytes: u64) -> Result<(), ImageError> {
    std::fs::File::create(out)
        .and_then(|f| f.set_len(bytes))
        .map_err(io(format!("creating {}", out.display())))?;
    let result = std::process::Command::new("mkfs.ext4")
        // Inode tables and journal written now: left lazy, the guest kernel's ext4lazyinit
        // thread zeroes them after every boot, and a VM started from a boot snapshot is
        // caught in the middle of it (measured: +0.15 s until its agent answers).
        .args([
            "-q",
            "-F",
            "-L",
            "noid-root",
            "-E",
            "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
            "-d",
        ])
        .arg(dir)
        .arg(out)
        .output()
        .map_err(io("running mkfs.ext4 (install e2fsprogs)"))?;
    if !result.status.success() {
        let why = String::from_utf8_lossy(&result.stderr);
        return Err(ImageError::Invalid(format!(
            "mkfs.ext4 failed: {}",
            why.trim().lines().last().unwrap_or("no message")
        )));
    }
    Ok(())
}

/// Grows the (unmounted) ext4 disk `path` and its file system to `bytes`.
pub fn grow(path: &Path, bytes: u64) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(bytes)?;
    // resize2fs wants a freshly checked file system.
    for (tool, args) in [("e2fsck", &["-f", "-p"][..]), ("resize2fs", &[][..])] {
        let out = std::process::Command::new(tool)
            .args(args)
            .arg(path)
            .output()?;
        // e2fsck: 1 means "errors corrected", which is fine here.
        let ok = out.status.success() || (tool == "e2fsck" && out.status.code() == Some(1));
        if !ok {
            return Err(std::io::Error::other(format!(
                "{tool}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_leave_room_and_refuse_too_small() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![0u8; 1 << 20]).unwrap();
        let auto = size_for(dir.path(), None).unwrap();
        assert!(auto >= (1 << 20) + HEADROOM && auto % (1 << 20) == 0);
        assert!(size_for(dir.path(), Some(1 << 20)).is_err());
        assert_eq!(size_for(dir.path(), Some(100 << 20)).unwrap(), 100 << 20);
    }
}
