//! The manifest stored with every checkpoint: the record itself plus each file's size and
//! checksum. It lets a restore check the files before a VMM sees them, and lets a restarted
//! server rebuild a checkpoint record that a crash kept from reaching the store.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checksum;
use crate::core::model::CheckpointRecord;

pub const MANIFEST: &str = "manifest.json";
pub use noid::guest::DISK_FILE;
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// SHA-256 of the whole file.
    Sha256,
    /// `checksum::disk_digest`: SHA-256 over the non-zero blocks of a sparse disk.
    DiskBlocksSha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub method: Method,
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    #[serde(flatten)]
    pub checkpoint: CheckpointRecord,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn new(checkpoint: CheckpointRecord, files: Vec<FileEntry>) -> Self {
        Self {
            format: FORMAT,
            checkpoint,
            files,
        }
    }

    /// Writes `dir/manifest.json` durably (temporary name, fsync, rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("manifests serialize"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(MANIFEST))
    }

    /// Writes the manifest into `staging`, which holds the files it names (already
    /// fsynced), and renames `staging` to `final_dir`, durably: a crash leaves either the
    /// complete directory or the staging one.
    /// `publish` on the blocking pool (it writes and syncs files and directories).
    pub async fn publish_off_thread(self, staging: &Path, final_dir: &Path) -> std::io::Result<()> {
        let (staging, final_dir) = (staging.to_path_buf(), final_dir.to_path_buf());
        super::blocking(move || self.publish(&staging, &final_dir)).await
    }

    pub fn publish(&self, staging: &Path, final_dir: &Path) -> std::io::Result<()> {
        self.write(staging)?;
        crate::storage::sync_dir(staging)?;
        std::fs::rename(staging, final_dir)?;
        match final_dir.parent() {
            Some(parent) => crate::storage::sync_dir(parent),
            None => Ok(()),
        }
    }

    pub fn read(dir: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(dir.join(MANIFEST)).map_err(|e| format!("{MANIFEST}: {e}"))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| format!("{MANIFEST}: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "{MANIFEST} has format {}, expected {FORMAT}",
                m.format
            ));
        }
        m.check_names()?;
        Ok(m)
    }

    /// A manifest names files in its own directory and a checkpoint whose names pass the
    /// API's rules: one read from disk becomes a record and paths only if it does.
    fn check_names(&self) -> Result<(), String> {
        for f in &self.files {
            if !is_plain_file_name(&f.name) {
                return Err(format!(
                    "{MANIFEST} names the file {:?}, which is not in its directory",
                    noid::names::shorten(&f.name)
                ));
            }
        }
        let c = &self.checkpoint;
        // A boot snapshot is nobody's: no owner, VM or VM id.
        let boot_snapshot = c.owner.is_empty() && c.vm_name.is_empty() && c.vm_id.is_empty();
        if !boot_snapshot {
            let bad = |e: noid::names::NameError| format!("{MANIFEST}: {e}");
            noid::names::validate_name("user", &c.owner).map_err(bad)?;
            noid::names::validate_name("VM", &c.vm_name).map_err(bad)?;
        }
        let ids = [("id", &c.id)]
            .into_iter()
            .chain((!boot_snapshot).then_some(("vm_id", &c.vm_id)));
        for (what, id) in ids {
            if !is_plain_file_name(id) {
                return Err(format!(
                    "{MANIFEST}: checkpoint {what} {:?} is not a plain name",
                    noid::names::shorten(id)
                ));
            }
        }
        Ok(())
    }

    /// Reads the manifest in `dir` and checks the files against it, off the async threads
    /// (it reads every byte). The error says what is wrong.
    pub async fn check_dir(dir: &Path) -> Result<(), String> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || Self::read(&dir)?.verify(&dir))
            .await
            .map_err(|e| format!("checking the files: {e}"))?
    }

    /// Checks every file's size and checksum; the error names the first file that differs.
    pub fn verify(&self, dir: &Path) -> Result<(), String> {
        for f in &self.files {
            let path = dir.join(&f.name);
            let len = std::fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", f.name))?
                .len();
            if len != f.bytes {
                return Err(format!(
                    "{} is {len} bytes, the manifest says {}",
                    f.name, f.bytes
                ));
            }
            let sum = match f.method {
                Method::Sha256 => checksum::file_sha256(&path),
                Method::DiskBlocksSha256 => checksum::disk_digest(&path),
            }
            .map_err(|e| format!("{}: {e}", f.name))?;
            if sum != f.checksum {
                return Err(format!("{} does not match its checksum", f.name));
            }
        }
        Ok(())
    }
}

/// What the files of a directory are, by name, inode, size and modification time: any write,
/// truncation, replacement or `touch` of a file changes it. Not the inode change time: a fork
/// hard-links the checkpoint's disk as its overlay's base, and a link count change moves it,
/// which made every fork read the whole checkpoint again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(std::ffi::OsString, u64, u64, i64, i64)>);

impl Fingerprint {
    /// The fingerprint of `dir` now (empty if it cannot be read).
    pub fn of(dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((e.file_name(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
            })
            .collect();
        files.sort();
        Self(files)
    }
}

/// One path component that stays in its directory: not empty, not `.` or `..`, no `/` or NUL.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod fuzz {
    //! Fuzz targets: whatever a manifest file holds, reading and verifying it ends in a
    //! manifest or an error, and never looks at a file outside the checkpoint's directory.

    use super::*;

    fn record(id: &str, vm: &str) -> CheckpointRecord {
        CheckpointRecord::for_test(id, vm)
    }

    fn read_and_verify(dir: &Path, bytes: &[u8]) {
        std::fs::write(dir.join(MANIFEST), bytes).unwrap();
        if let Ok(m) = Manifest::read(dir) {
            for f in &m.files {
                let path = dir.join(&f.name);
                assert_eq!(
                    path.parent(),
                    Some(dir),
                    "{:?} leaves the directory",
                    f.name
                );
            }
            let _ = m.verify(dir);
        }
    }

    #[test]
    fn fuzz_manifest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        bolero::check!().for_each(|bytes: &[u8]| read_and_verify(dir.path(), bytes));
    }

    /// Well-formed manifests with hostile names and sizes.
    #[test]
    fn fuzz_manifest_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory"), b"state").unwrap();
        bolero::check!()
            .with_type::<(String, String, u8, u64, bool)>()
            .for_each(|(name, id, pick, bytes, disk)| {
                let names = ["memory", "../memory", "/etc/hostname", "", ".", "a/b", name];
                let file = FileEntry {
                    name: names[usize::from(*pick) % names.len()].to_string(),
                    bytes: *bytes % 16,
                    method: if *disk {
                        Method::DiskBlocksSha256
                    } else {
                        Method::Sha256
                    },
                    checksum: id.clone(),
                };
                let m = Manifest::new(record(id, name), vec![file]);
                read_and_verify(dir.path(), &serde_json::to_vec(&m).unwrap());
            });
    }

    #[test]
    fn names_outside_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../x", "/etc/hostname", "..", "", "a/b"] {
            let m = Manifest::new(
                record("c1", "web"),
                vec![FileEntry {
                    name: name.into(),
                    bytes: 0,
                    method: Method::Sha256,
                    checksum: String::new(),
                }],
            );
            m.write(dir.path()).unwrap();
            let err = Manifest::read(dir.path()).unwrap_err();
            assert!(err.contains("not in its directory"), "{name}: {err}");
        }
        let m = Manifest::new(record("../c1", "web"), vec![]);
        m.write(dir.path()).unwrap();
        assert!(Manifest::read(dir.path())
            .unwrap_err()
            .contains("not a plain name"));
    }

    #[test]
    fn boot_snapshots_are_nobodys_and_checkpoints_someones() {
        let dir = tempfile::tempdir().unwrap();
        let nobodys = CheckpointRecord {
            owner: String::new(),
            vm_id: String::new(),
            vm_name: String::new(),
            ..record("99734e5fc77cf23e", "web")
        };
        Manifest::new(nobodys.clone(), vec![])
            .write(dir.path())
            .unwrap();
        Manifest::read(dir.path()).expect("a boot snapshot's manifest reads");
        let half = CheckpointRecord {
            owner: "alice".into(),
            ..nobodys
        };
        Manifest::new(half, vec![]).write(dir.path()).unwrap();
        assert!(Manifest::read(dir.path()).unwrap_err().contains("VM name"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_changes_with_any_write_to_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.state");
        std::fs::write(&file, b"state").unwrap();
        let first = Fingerprint::of(dir.path());
        assert_eq!(Fingerprint::of(dir.path()), first, "nothing changed");
        // The same bytes written again, a moment later.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"state").unwrap();
        assert_ne!(Fingerprint::of(dir.path()), first);
        let second = Fingerprint::of(dir.path());
        std::fs::write(dir.path().join("extra"), b"").unwrap();
        assert_ne!(Fingerprint::of(dir.path()), second, "a new file");
    }

    #[test]
    fn a_fork_linking_the_disk_leaves_the_fingerprint_alone() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join(DISK_FILE);
        std::fs::write(&disk, b"disk").unwrap();
        let first = Fingerprint::of(dir.path());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let other = tempfile::tempdir().unwrap();
        let base = other.path().join("base");
        std::fs::hard_link(&disk, &base).unwrap();
        std::fs::remove_file(&base).unwrap();
        assert_eq!(Fingerprint::of(dir.path()), first);
    }
}
