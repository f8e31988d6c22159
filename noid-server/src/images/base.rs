//! The base every VM boots from, as `deploy/build-image.sh` makes it: the kernel, the
//! initramfs (which carries the agent), the `default` image's root filesystem and the manifest
//! stamped on them. The server refuses a base of another format.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The image layout this server understands (`format` in manifest.json).
pub const IMAGE_FORMAT: u32 = 2;

#[derive(Debug, Error)]
pub enum BaseError {
    #[error("no guest image at {0}: build it with deploy/build-image.sh (see README)")]
    Missing(PathBuf),
    #[error("guest image manifest {path} is unreadable: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("guest image at {path} has format {found}, this server needs format {IMAGE_FORMAT}: rebuild it with deploy/build-image.sh")]
    WrongFormat { path: PathBuf, found: u32 },
    #[error("guest image at {dir} lacks {file}")]
    MissingFile { dir: PathBuf, file: &'static str },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub kernel_release: String,
}

#[derive(Debug, Clone)]
pub struct Base {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Base {
    pub fn open(dir: &Path) -> Result<Self, BaseError> {
        let path = dir.join("manifest.json");
        if !path.exists() {
            return Err(BaseError::Missing(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| BaseError::BadManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| BaseError::BadManifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if manifest.format != IMAGE_FORMAT {
            return Err(BaseError::WrongFormat {
                path: dir.to_path_buf(),
                found: manifest.format,
            });
        }
        for file in ["vmlinuz", "initrd.img", noid::guest::DISK_FILE] {
            if !dir.join(file).exists() {
                return Err(BaseError::MissingFile {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The uncompressed kernel Firecracker boots (checked when a VM starts).
    pub fn kernel_elf(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(noid::guest::DISK_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_and_foreign_images() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Base::open(dir.path()), Err(BaseError::Missing(_))));
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"format": 99, "id": "x", "kernel_release": "k"}"#,
        )
        .unwrap();
        assert!(matches!(
            Base::open(dir.path()),
            Err(BaseError::WrongFormat { found: 99, .. })
        ));
    }
}
