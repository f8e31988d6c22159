//! Images as users see them: listing, inspecting and removing (refused while a VM or
//! checkpoint uses one), importing a container image archive and building a Debian userland.
//! The slow work runs on the blocking pool and reports progress lines; an image appears in
//! the store only once it is whole (`images::store::Staging`).

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{CoreError, Manager, Result, User};
use crate::images::store::{ImageConfig, ImageManifest, Staging, DEFAULT};
use crate::images::{debian, ext4, oci};

/// How an image is made.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// A Debian suite with packages.
    Debian(debian::Recipe),
}

/// Progress of an image being made, for the client to show.
pub type Progress = mpsc::UnboundedSender<String>;

/// Runs image work (unpacking, installing, mkfs) on the blocking pool.
async fn off_thread<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CoreError::Internal(format!("the image task failed: {e}")))?
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Manager {
    pub fn list_images(&self, _user: &User) -> Result<Vec<ImageManifest>> {
        Ok(self.images.list()?)
    }

    pub fn get_image(&self, _user: &User, name: &str) -> Result<ImageManifest> {
        Ok(self.images.get(name)?)
    }

    /// Removes image `name`: only its maker may, and not while a VM or checkpoint uses it.
    pub fn delete_image(&self, user: &User, name: &str) -> Result<()> {
        let image = self.images.get(name)?;
        if name == DEFAULT {
            return Err(CoreError::FailedPrecondition(
                "the default image belongs to the base and cannot be removed".into(),
            ));
        }
        if image.owner != user.0 {
            return Err(CoreError::FailedPrecondition(format!(
                "image {name:?} belongs to {}; only they can remove it",
                image.owner
            )));
        }
        let vms: Vec<String> = self
            .store
            .list_vms(None)?
            .into_iter()
            .filter(|v| v.image == name)
            .map(|v| v.name)
            .collect();
        let checkpoints: Vec<String> = self
            .store
            .list_checkpoints(None)?
            .into_iter()
            .filter(|c| c.image == name)
            .map(|c| c.id)
            .collect();
        if !vms.is_empty() || !checkpoints.is_empty() {
            let mut users = Vec::new();
            if !vms.is_empty() {
                users.push(format!("VMs {}", vms.join(", ")));
            }
            if !checkpoints.is_empty() {
                users.push(format!("checkpoints {}", checkpoints.join(", ")));
            }
            return Err(CoreError::FailedPrecondition(format!(
                "image {name:?} is in use by {}: remove those first",
                users.join(" and ")
            )));
        }
        self.remove_boot_snapshots_of(name);
        self.images.remove(name)?;
        tracing::info!("image {name} removed by {}", user.0);
        Ok(())
    }

    /// Makes image `name` from an image archive that `data` streams; `disk_bytes` (0: sized to
    /// fit) is its root disk's size. A failure leaves nothing.
    pub async fn import_image<S>(
        self: &Arc<Self>,
        user: &User,
        name: &str,
        disk_bytes: u64,
        data: S,
        progress: Progress,
    ) -> Result<ImageManifest>
    where
        S: Stream<Item = Result<Vec<u8>>> + Send + 'static,
    {
        let staging = self.images.staging(name)?;
        let archive = staging.dir().join("upload.tar");
        let mut file = tokio::fs::File::create(&archive)
            .await
            .map_err(|e| super::error::io_error("storing the archive", e))?;
        let mut data = std::pin::pin!(data);
        let mut received = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| super::error::io_error("storing the archive", e))?;
        }
        file.flush()
            .await
            .map_err(|e| super::error::io_error("storing the archive", e))?;
        drop(file);
        let _ = progress.send(format!("received {:.1} MiB", received as f64 / 1048576.0));
        let owner = user.0.clone();
        let kernel = self.base().manifest.kernel_release.clone();
        off_thread(move || {
            let root = staging.dir().join("root");
            let say = |s: String| {
                let _ = progress.send(s);
            };
            let imported = oci::import(&archive, staging.dir(), &root, &say)?;
            let _ = std::fs::remove_file(&archive);
            let _ = std::fs::remove_dir_all(staging.dir().join("archive"));
            let manifest = ImageManifest {
                id: imported.id,
                name: staging.name().to_string(),
                source: format!("image archive ({} layers)", imported.layers),
                created_at: now_secs(),
                disk_bytes: 0,
                stored_bytes: 0,
                kernel_release: kernel,
                owner,
                config: imported.config,
            };
            finish(staging, &root, disk_bytes, manifest, &say)
        })
        .await
    }

    /// Makes image `name` from `source`; progress lines go to `progress`. A failure leaves
    /// nothing.
    pub async fn build_image(
        self: &Arc<Self>,
        user: &User,
        name: &str,
        source: ImageSource,
        disk_bytes: u64,
        progress: Progress,
    ) -> Result<ImageManifest> {
        let ImageSource::Debian(recipe) = source;
        recipe.validate()?;
        let staging = self.images.staging(name)?;
        let owner = user.0.clone();
        let kernel = self.base().manifest.kernel_release.clone();
        // Runs to the end even if the client goes away, so nothing is left half-made.
        super::detached(
            "image build",
            off_thread(move || {
                let root = staging.dir().join("root");
                let say = |s: String| {
                    let _ = progress.send(s);
                };
                say(format!("installing {}", recipe.describe()));
                debian::install(&recipe, &root, &say)?;
                let id = {
                    use sha2::{Digest, Sha256};
                    let digest = Sha256::digest(format!("{}\n{}", recipe.describe(), now_secs()));
                    hex::encode(&digest[..8])
                };
                let manifest = ImageManifest {
                    id,
                    name: staging.name().to_string(),
                    source: recipe.describe(),
                    created_at: now_secs(),
                    disk_bytes: 0,
                    stored_bytes: 0,
                    kernel_release: kernel,
                    owner,
                    config: ImageConfig {
                        env: vec![
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                                .into(),
                        ],
                        ..Default::default()
                    },
                };
                finish(staging, &root, disk_bytes, manifest, &say)
            }),
        )
        .await
    }
}

/// Turns the tree at `root` into the image's disk and puts the image in the store.
fn finish(
    staging: Staging,
    root: &std::path::Path,
    disk_bytes: u64,
    manifest: ImageManifest,
    say: &dyn Fn(String),
) -> Result<ImageManifest> {
    let size = ext4::size_for(root, (disk_bytes > 0).then_some(disk_bytes))?;
    say(format!("making a {} MiB root disk", size >> 20));
    ext4::make(root, &staging.rootfs(), size)?;
    let _ = std::fs::remove_dir_all(root);
    let manifest = staging.commit(manifest)?;
    tracing::info!(
        "image {} made ({}, {} MiB)",
        manifest.name,
        manifest.source,
        manifest.disk_bytes >> 20
    );
    Ok(manifest)
}
