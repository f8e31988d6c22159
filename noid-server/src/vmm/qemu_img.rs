//! QEMU's disk overlays: qcow2 files over a raw base, made and folded with `qemu-img`
//! (Debian's `qemu-utils`). The base is always given as raw (`-F raw`), never probed.

use std::collections::HashMap;
use std::io;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::core::ports::disk::DiskOverlays;

pub struct QemuImg {
    binary: PathBuf,
    /// New overlays' bytes by base name and size: an empty overlay depends on nothing else,
    /// so each later one is a write of these bytes rather than a run of qemu-img.
    templates: Mutex<HashMap<TemplateKey, Arc<Vec<u8>>>>,
}

/// A base's name and size.
type TemplateKey = (String, u64);

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
            .map(|binary| Self {
                binary,
                templates: Default::default(),
            })
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

impl QemuImg {
    /// The bytes of a new, empty overlay over a raw base called `base_name` of `size` bytes,
    /// made once by qemu-img in a scratch directory.
    fn template(&self, base_name: &str, size: u64) -> io::Result<Arc<Vec<u8>>> {
        let key = (base_name.to_string(), size);
        if let Some(t) = self.templates.lock().expect("templates").get(&key) {
            return Ok(Arc::clone(t));
        }
        let scratch = tempfile::tempdir()?;
        std::fs::File::create(scratch.path().join(base_name))?.set_len(size)?;
        // The base is named relative to the overlay, as it will be beside every copy.
        self.run(
            &[
                "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base_name, "t.qcow2",
            ],
            scratch.path(),
        )?;
        let bytes = Arc::new(std::fs::read(scratch.path().join("t.qcow2"))?);
        self.templates
            .lock()
            .expect("templates")
            .insert(key, Arc::clone(&bytes));
        Ok(bytes)
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
        let (dir, _) = split(overlay)?;
        let size = std::fs::metadata(dir.join(base_name))?.len();
        let template = self.template(base_name, size)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(overlay)?;
        file.write_all(&template)
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
        // The second of a kind comes from the first's template, and is as good.
        let second = dir.path().join("second.qcow2");
        img.create(&second, "base.ext4").unwrap();
        write_through(&second, 0, 0x11);
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
        assert_eq!(read_at(0), [0; 4096], "the other overlay's write is not");
        let err = img
            .commit(&dir.path().join("missing.qcow2"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("qemu-img commit:"), "{err}");
    }
}
