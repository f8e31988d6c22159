//! Where things live under the data directory, and disk copies: a reflink (FICLONE) where the
//! filesystem shares extents (btrfs, XFS), a sparse copy elsewhere.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Paths under the data directory. VM directories are named by the VM's generated id, never by
/// a user-chosen string.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    pub fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    pub fn vm(&self, id: &str) -> PathBuf {
        debug_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        self.vms().join(id)
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Final directory of a checkpoint.
    pub fn checkpoint(&self, vm_id: &str, id: &str) -> PathBuf {
        debug_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        self.checkpoints().join(vm_id).join(id)
    }

    /// Where a checkpoint is written before it is complete (renamed into place at the end).
    pub fn checkpoint_staging(&self, vm_id: &str, id: &str) -> PathBuf {
        self.checkpoints().join(vm_id).join(format!(".tmp-{id}"))
    }

    /// Where a checkpoint goes while it is being deleted.
    pub fn checkpoint_doomed(&self, vm_id: &str, id: &str) -> PathBuf {
        self.checkpoints().join(vm_id).join(format!(".del-{id}"))
    }

    /// Snapshots of freshly booted VMs that new VMs start from, by shape key.
    pub fn boot_snapshots(&self) -> PathBuf {
        self.root.join("boot-snapshots")
    }

    pub fn boot_snapshot(&self, key: &str) -> PathBuf {
        debug_assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        self.boot_snapshots().join(key)
    }

    pub fn boot_snapshot_staging(&self, key: &str) -> PathBuf {
        self.boot_snapshots().join(format!(".tmp-{key}"))
    }

    pub fn boot_snapshot_doomed(&self, key: &str) -> PathBuf {
        self.boot_snapshots().join(format!(".del-{key}"))
    }

    pub fn create_dirs(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.vms())?;
        std::fs::create_dir_all(self.boot_snapshots())?;
        std::fs::create_dir_all(self.checkpoints())?;
        std::fs::create_dir_all(self.db())
    }
}

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    Reflink,
    Sparse,
}

/// Copies `src` to a new file `dst`, sharing extents where the filesystem can. The copy is not
/// fsynced: callers that need it durable call `sync_file`.
pub fn clone_file(src: &Path, dst: &Path) -> io::Result<CopyKind> {
    let input = File::open(src)?;
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both descriptors are open.
    let rc = unsafe { libc::ioctl(output.as_raw_fd(), libc::FICLONE, input.as_raw_fd()) };
    if rc == 0 {
        return Ok(CopyKind::Reflink);
    }
    sparse_copy(&input, &output)?;
    Ok(CopyKind::Sparse)
}

/// Whether copies in the directory `dir` share extents (a probe with a small file).
pub fn shares_extents(dir: &Path) -> io::Result<bool> {
    let probe = tempfile::Builder::new()
        .prefix(".noid-reflink-probe")
        .tempdir_in(dir)?;
    let a = probe.path().join("a");
    std::fs::write(&a, b"reflink probe")?;
    Ok(clone_file(&a, &probe.path().join("b"))? == CopyKind::Reflink)
}

/// Bytes free for unprivileged writers on the filesystem that holds `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a pointer to a live statvfs for the kernel to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// fsyncs a file's data and metadata.
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// fsyncs a directory, so that renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copies only the data regions of `input` (SEEK_DATA/SEEK_HOLE), leaving holes as holes.
fn sparse_copy(input: &File, output: &File) -> io::Result<()> {
    output.set_len(input.metadata()?.len())?;
    for (start, end) in data_regions(input)? {
        copy_range(input, output, start, end - start)?;
    }
    Ok(())
}

/// The regions of `file` that hold data (SEEK_DATA/SEEK_HOLE), as `[start, end)` offsets.
pub fn data_regions(file: &File) -> io::Result<Vec<(u64, u64)>> {
    let len = file.metadata()?.len() as i64;
    let fd = file.as_raw_fd();
    let mut regions = Vec::new();
    let mut pos: i64 = 0;
    while pos < len {
        // SAFETY: lseek on an open descriptor; no memory is touched.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        regions.push((data as u64, hole as u64));
        pos = hole;
    }
    Ok(regions)
}

/// Copies `len` bytes at `offset` from `input` to the same offset of `output`: in the kernel
/// with copy_file_range, or through a buffer where the kernel cannot (across filesystems).
fn copy_range(input: &File, output: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (offset as i64, offset as i64);
    let end = (offset + len) as i64;
    while off_in < end {
        // SAFETY: copy_file_range with pointers to two live offsets; the kernel copies between
        // the two open descriptors.
        let n = unsafe {
            libc::copy_file_range(
                input.as_raw_fd(),
                &mut off_in,
                output.as_raw_fd(),
                &mut off_out,
                (end - off_in) as usize,
                0,
            )
        };
        if n > 0 {
            continue;
        }
        if n == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EXDEV)
            | Some(libc::EINVAL)
            | Some(libc::ENOSYS)
            | Some(libc::EOPNOTSUPP) => break,
            _ => return Err(e),
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = off_in as u64;
    while pos < end as u64 {
        let want = buf.len().min((end as u64 - pos) as usize);
        let n = input.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        output.write_all_at(&buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_content_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let mut f = File::create(&src).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        let dst = dir.path().join("dst");
        clone_file(&src, &dst).unwrap();
        let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert_eq!(a, b);
        // 64 MiB apparent size, only a few blocks allocated.
        assert!(std::fs::metadata(&dst).unwrap().blocks() * 512 < (1 << 20));
        assert!(clone_file(&src, &dst).is_err(), "never overwrites");
    }
}
