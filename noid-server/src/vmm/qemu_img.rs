//! QEMU's disk overlays: qcow2 files over a raw base, made and folded with `qemu-img`
//! (Debian's `qemu-utils`). The base is always given as raw (`-F raw`), never probed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::core::ports::disk::DiskOverlays;

pub struct QemuImg {
    binary: PathBuf,
}

impl QemuImg {
    /// `qemu-img` beside the QEMU binary, else on PATH; None if there is none that runs.
    pub fn find(qemu: &Path) -> Option<Self> {
        let beside = qemu.parent().map(|d| d.join("qemu-img"));
        let candidates = beside.into_iter().chain([PathBuf::from("qemu-img")]);
        candidates
            .into_iter()
            .find(|c| {
                Command::new(c)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(|binary| Self { binary })
    }

    fn run(&self, args: &[&str], dir: &Path) -> io::Result<()> {
        let out = Command::new(&self.binary)
            .args(args)
            .current_dir(dir)
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(io::Error::other(format!(
            "qemu-img {}: {}",
            args[0],
            stderr.lines().last().unwrap_or("failed").trim()
        )))
    }
}

/// The directory and file name of `path`, which the callers make from a directory and a name.
fn split(path: &Path) -> io::Result<(&Path, &str)> {
    let name = path.file_name().and_then(|n| n.to_str());
    match (path.parent(), name) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::other(format!(
            "not a file path: {}",
            path.display()
        ))),
    }
}

impl DiskOverlays for QemuImg {
    fn create(&self, overlay: &Path, base_name: &str) -> io::Result<()> {
        let (dir, name) = split(overlay)?;
        // qemu-img overwrites a file of that name: claim the name first.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(overlay)?;
        // Run in the overlay's directory: the base name stays relative, as written.
        self.run(
            &[
                "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base_name, name,
            ],
            dir,
        )
    }

    fn commit(&self, overlay: &Path) -> io::Result<()> {
        let (dir, name) = split(overlay)?;
        // -d: leave the overlay as it is (it is removed next) instead of emptying it.
        self.run(&["commit", "-q", "-d", "-f", "qcow2", name], dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    /// Writes through QEMU's own I/O tool into the overlay, at `offset`.
    fn write_through(overlay: &Path, offset: u64, byte: u8) {
        let out = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write -P {byte} {offset} 4096"))
            .arg(overlay)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn an_overlay_keeps_its_writes_until_committed_into_its_base() {
        let Some(img) = QemuImg::find(Path::new("/usr/bin/qemu-system-x86_64")) else {
            eprintln!("skipped: no qemu-img");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.ext4");
        std::fs::File::create(&base)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let overlay = dir.path().join("rootfs.qcow2");
        img.create(&overlay, "base.ext4").unwrap();
        assert!(
            img.create(&overlay, "base.ext4").is_err(),
            "an existing overlay is not made again"
        );
        write_through(&overlay, 8192, 0x5a);
        let read_at = |offset| {
            let mut f = std::fs::File::open(&base).unwrap();
            f.seek(SeekFrom::Start(offset)).unwrap();
            let mut b = [0u8; 4096];
            f.read_exact(&mut b).unwrap();
            b
        };
        assert_eq!(read_at(8192), [0; 4096], "the base is untouched");
        img.commit(&overlay).unwrap();
        assert_eq!(read_at(8192), [0x5a; 4096], "the write is in the base");
        assert_eq!(read_at(0), [0; 4096]);
        let err = img
            .commit(&dir.path().join("missing.qcow2"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("qemu-img commit:"), "{err}");
    }
}
