//! The image store: `<data_dir>/images/<name>/` holds an image's `rootfs.ext4` and its
//! `image.json` manifest. An image is made in a staging directory and renamed into place
//! whole, so a failed or interrupted build leaves nothing listed. `default` is the base's own
//! root filesystem and cannot be removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::base::Base;

/// The image every VM gets unless it names another.
pub const DEFAULT: &str = "default";
const MANIFEST: &str = "image.json";
const STAGING_PREFIX: &str = ".staging-";
const DOOMED_PREFIX: &str = ".doomed-";

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("image {0:?} already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    InvalidName(#[from] noid::names::NameError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// What a container image says about how to run it; the defaults of `noid exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// "KEY=value" entries.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl ImageConfig {
    /// The environment as pairs, in order (a later entry of the same key wins).
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|e| e.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// A content id: the image config's digest, or a digest of what went into a build.
    pub id: String,
    pub name: String,
    /// Where it came from, e.g. "oci-archive app.tar" or "debian bookworm +python3".
    pub source: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The root disk's size as the guest sees it.
    pub disk_bytes: u64,
    /// What it takes on the host's disk.
    pub stored_bytes: u64,
    pub kernel_release: String,
    /// The user who made it ("" for `default`).
    pub owner: String,
    pub config: ImageConfig,
}

pub struct ImageStore {
    root: PathBuf,
    base: Base,
}

impl ImageStore {
    /// The store under `root` (`<data_dir>/images`); clears what an interrupted build left.
    pub fn open(root: &Path, base: Base) -> Result<Self, ImageError> {
        std::fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(STAGING_PREFIX) || name.starts_with(DOOMED_PREFIX) {
                    tracing::info!("removing {name}, left by an interrupted image build");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            base,
        })
    }

    pub fn base(&self) -> &Base {
        &self.base
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn default_manifest(&self) -> ImageManifest {
        let rootfs = self.base.rootfs();
        let meta = std::fs::metadata(&rootfs).ok();
        let created_at = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        ImageManifest {
            id: self.base.manifest.id.clone(),
            name: DEFAULT.into(),
            source: "base (deploy/build-image.sh): busybox".into(),
            created_at,
            disk_bytes: meta.as_ref().map_or(0, |m| m.len()),
            stored_bytes: allocated(&rootfs),
            kernel_release: self.base.manifest.kernel_release.clone(),
            owner: String::new(),
            config: ImageConfig::default(),
        }
    }

    /// Every image, `default` first, then by name.
    pub fn list(&self) -> Result<Vec<ImageManifest>, ImageError> {
        let mut images = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .map_err(io(format!("reading {}", self.root.display())))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == DEFAULT || noid::names::validate_name("image", &name).is_err() {
                continue;
            }
            match self.get(&name) {
                Ok(m) => images.push(m),
                Err(ImageError::NotFound(_)) => {}
                Err(e) => tracing::warn!("image {name}: {e}"),
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        images.insert(0, self.default_manifest());
        Ok(images)
    }

    pub fn get(&self, name: &str) -> Result<ImageManifest, ImageError> {
        noid::names::validate_name("image", name)?;
        if name == DEFAULT {
            return Ok(self.default_manifest());
        }
        let path = self.dir(name).join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound(name.into()))
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_str(&text)
            .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))
    }

    /// The root disk of image `name` (which must exist).
    pub fn rootfs(&self, name: &str) -> PathBuf {
        if name == DEFAULT {
            self.base.rootfs()
        } else {
            self.dir(name).join(noid::guest::DISK_FILE)
        }
    }

    /// A place to make image `name` in; refused if the name is taken.
    pub fn staging(&self, name: &str) -> Result<Staging, ImageError> {
        noid::names::validate_name("image", name)?;
        if name == DEFAULT || self.dir(name).exists() {
            return Err(ImageError::AlreadyExists(name.into()));
        }
        let dir = self
            .root
            .join(format!("{STAGING_PREFIX}{name}-{}", suffix()));
        std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(Staging {
            dir,
            target: self.dir(name),
            name: name.into(),
            done: false,
        })
    }

    /// Removes image `name` (the caller checked that nothing uses it).
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        self.get(name)?;
        if name == DEFAULT {
            return Err(ImageError::Refused(
                "the default image belongs to the base and cannot be removed".into(),
            ));
        }
        let doomed = self
            .root
            .join(format!("{DOOMED_PREFIX}{name}-{}", suffix()));
        std::fs::rename(self.dir(name), &doomed).map_err(io(format!("removing image {name}")))?;
        let _ = crate::storage::sync_dir(&self.root);
        std::fs::remove_dir_all(&doomed).map_err(io(format!("removing image {name}")))
    }
}

/// A random suffix for staging and doomed directories.
fn suffix() -> String {
    use rand::RngCore;
    let mut b = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The disk blocks a file takes.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// An image being made; removed on drop unless committed.
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    name: String,
    done: bool,
}

impl Staging {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the image's root disk goes.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(noid::guest::DISK_FILE)
    }

    /// Writes the manifest (filling in the sizes) and puts the image in the store, durably.
    pub fn commit(mut self, mut manifest: ImageManifest) -> Result<ImageManifest, ImageError> {
        let rootfs = self.rootfs();
        manifest.disk_bytes = std::fs::metadata(&rootfs)
            .map_err(io("reading the new image's disk"))?
            .len();
        manifest.stored_bytes = allocated(&rootfs);
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
        let path = self.dir.join(MANIFEST);
        std::fs::write(&path, text).map_err(io("writing the image manifest"))?;
        for f in [&rootfs, &path] {
            crate::storage::sync_file(f).map_err(io("syncing the new image"))?;
        }
        if self.target.exists() {
            return Err(ImageError::AlreadyExists(self.name.clone()));
        }
        std::fs::rename(&self.dir, &self.target).map_err(io("placing the new image"))?;
        self.done = true;
        if let Some(root) = self.target.parent() {
            let _ = crate::storage::sync_dir(root);
        }
        Ok(manifest)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> Base {
        let b = dir.join("base");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("manifest.json"),
            format!(
                r#"{{"format": {}, "id": "base1", "kernel_release": "k1"}}"#,
                super::super::base::IMAGE_FORMAT
            ),
        )
        .unwrap();
        for f in ["vmlinuz", "initrd.img", noid::guest::DISK_FILE] {
            std::fs::write(b.join(f), "x").unwrap();
        }
        Base::open(&b).unwrap()
    }

    fn manifest(name: &str) -> ImageManifest {
        ImageManifest {
            id: "id1".into(),
            name: name.into(),
            source: "test".into(),
            created_at: 1,
            disk_bytes: 0,
            stored_bytes: 0,
            kernel_release: "k1".into(),
            owner: "alice".into(),
            config: ImageConfig {
                env: vec!["A=1".into(), "B=x=y".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn images_appear_whole_and_go_away_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("images"), base(dir.path())).unwrap();
        assert_eq!(store.list().unwrap().len(), 1, "only default");
        assert!(matches!(store.get("app"), Err(ImageError::NotFound(_))));
        assert!(store.get("Bad/Name").is_err());

        // Dropped before commit: nothing listed, nothing left.
        let staging = store.staging("app").unwrap();
        std::fs::write(staging.rootfs(), "disk").unwrap();
        drop(staging);
        assert_eq!(
            std::fs::read_dir(dir.path().join("images"))
                .unwrap()
                .count(),
            0
        );

        let staging = store.staging("app").unwrap();
        std::fs::write(staging.rootfs(), "disk").unwrap();
        let m = staging.commit(manifest("app")).unwrap();
        assert_eq!(m.disk_bytes, 4);
        assert_eq!(store.get("app").unwrap(), m);
        let names: Vec<_> = store.list().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["default", "app"]);
        assert_eq!(
            m.config.env_pairs(),
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(matches!(
            store.staging("app"),
            Err(ImageError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.staging(DEFAULT),
            Err(ImageError::AlreadyExists(_))
        ));

        assert!(matches!(store.remove(DEFAULT), Err(ImageError::Refused(_))));
        store.remove("app").unwrap();
        assert!(matches!(store.get("app"), Err(ImageError::NotFound(_))));

        // A staging directory left by a crash is cleared when the store opens again.
        let staging = store.staging("left").unwrap();
        std::mem::forget(staging);
        let store = ImageStore::open(&dir.path().join("images"), base(dir.path())).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("images"))
                .unwrap()
                .count(),
            0
        );
    }
}
