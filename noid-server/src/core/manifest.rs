//! The manifest stored with every checkpoint: the record itself plus each file's size and
//! checksum. It lets a restore check the files before a VMM sees them, and lets a restarted
//! server rebuild a checkpoint record that a crash kept from reaching the store.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checksum;
use crate::store::CheckpointRecord;

pub const MANIFEST: &str = "manifest.json";
pub const DISK_FILE: &str = "rootfs.ext4";
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
        Ok(m)
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
