//! Reading a container image archive as `docker save`, `podman save` or `skopeo copy ...
//! oci-archive:` write it: the OCI image layout (`index.json`, `blobs/sha256/...`) or the
//! legacy `manifest.json` of `docker save`. Every blob used is checked against its digest
//! (OCI) or the config's `diff_ids` (both), then the layers are applied in order.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layers::{self, clean_path, resolve};
use super::store::{io, ImageConfig, ImageError};

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::Invalid(msg.into())
}

/// What an archive held: the image's run settings, its id, and the layers applied.
pub struct Imported {
    pub config: ImageConfig,
    /// The first 16 hex digits of the image config's digest.
    pub id: String,
    pub layers: usize,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunConfig {
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Unpacks the outer archive into `dir`: files, directories and links (read back only through
/// `resolve`, so a link cannot lead outside).
fn unpack_outer(archive: &Path, dir: &Path) -> Result<(), ImageError> {
    let file = File::open(archive).map_err(io(format!("opening {}", archive.display())))?;
    let mut tar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, file));
    let not_tar = |e: io::Error| invalid(format!("not an image archive (a tar file): {e}"));
    for entry in tar.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let path = clean_path(&entry.path().map_err(not_tar)?)?;
        if path.as_os_str().is_empty() {
            continue;
        }
        let dest = resolve(dir, path.parent().unwrap_or(Path::new("")), true)?
            .join(path.file_name().expect("named"));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("unpacking the archive"))?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&dest).map_err(io("unpacking the archive"))?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = File::create(&dest).map_err(io("unpacking the archive"))?;
                io::copy(&mut entry, &mut f).map_err(not_tar)?;
            }
            tar::EntryType::Symlink => {
                if let Some(target) = entry.link_name().map_err(not_tar)? {
                    let _ = std::fs::remove_file(&dest);
                    std::os::unix::fs::symlink(target, &dest)
                        .map_err(io("unpacking the archive"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The file at `rel` in the unpacked archive, which must exist.
fn member(dir: &Path, rel: &str, what: &str) -> Result<PathBuf, ImageError> {
    let path = resolve(dir, &clean_path(Path::new(rel))?, true)?;
    if !path.is_file() {
        return Err(invalid(format!("{what} {rel} is missing from the archive")));
    }
    Ok(path)
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io("reading the archive"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A blob of the OCI layout, checked against its digest.
fn blob(dir: &Path, digest: &str, what: &str) -> Result<PathBuf, ImageError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid(format!("{what} digest {digest:?} is malformed")))?;
    if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "{what} digest {digest:?} is not a sha256 digest"
        )));
    }
    let path = member(dir, &format!("blobs/sha256/{hex}"), what)?;
    let actual = sha256_file(&path)?;
    if actual != digest {
        return Err(invalid(format!(
            "{what} {digest} is corrupt: its content has digest {actual}"
        )));
    }
    Ok(path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, ImageError> {
    let text = std::fs::read(path).map_err(io(format!("reading {what}")))?;
    serde_json::from_slice(&text).map_err(|e| invalid(format!("{what} is not valid: {e}")))
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("image.index") || media_type.contains("manifest.list")
}

/// The descriptor for this host's platform (linux/amd64), else the only or first one.
fn pick(manifests: Vec<Descriptor>) -> Result<Descriptor, ImageError> {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let mut fallback = None;
    for d in manifests {
        match &d.platform {
            Some(p) if p.os == "linux" && p.architecture == arch => return Ok(d),
            Some(p) if !p.architecture.is_empty() && p.architecture != arch => {}
            _ => {
                if fallback.is_none() {
                    fallback = Some(d);
                }
            }
        }
    }
    fallback.ok_or_else(|| invalid(format!("the archive has no image for linux/{arch}")))
}

/// The config and layer files of the image in the unpacked archive `dir`.
fn locate(dir: &Path) -> Result<(PathBuf, String, Vec<PathBuf>), ImageError> {
    if dir.join("index.json").is_file() {
        let index: Index = read_json(&dir.join("index.json"), "index.json")?;
        let mut desc = pick(index.manifests)?;
        // An index may point at further indexes (multi-platform images).
        for _ in 0..4 {
            if !is_index(&desc.media_type) {
                break;
            }
            let inner: Index = read_json(&blob(dir, &desc.digest, "index")?, "an index")?;
            desc = pick(inner.manifests)?;
        }
        let manifest: Manifest = read_json(&blob(dir, &desc.digest, "manifest")?, "the manifest")?;
        let config = blob(dir, &manifest.config.digest, "config")?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| blob(dir, &l.digest, "layer"))
            .collect::<Result<_, _>>()?;
        return Ok((config, manifest.config.digest, layers));
    }
    if dir.join("manifest.json").is_file() {
        let entries: Vec<LegacyEntry> = read_json(&dir.join("manifest.json"), "manifest.json")?;
        let entry = entries
            .into_iter()
            .next()
            .ok_or_else(|| invalid("manifest.json lists no image"))?;
        let config = member(dir, &entry.config, "config")?;
        let digest = sha256_file(&config)?;
        let layers = entry
            .layers
            .iter()
            .map(|l| member(dir, l, "layer"))
            .collect::<Result<_, _>>()?;
        return Ok((config, digest, layers));
    }
    Err(invalid(
        "not an image archive: it has neither index.json (OCI) nor manifest.json (docker save)",
    ))
}

/// Imports the archive at `archive` into the directory `root`, using `work` for scratch;
/// `progress` hears about each layer.
pub fn import(
    archive: &Path,
    work: &Path,
    root: &Path,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Imported, ImageError> {
    let unpacked = work.join("archive");
    std::fs::create_dir_all(&unpacked).map_err(io("unpacking the archive"))?;
    progress("reading the archive".into());
    unpack_outer(archive, &unpacked)?;
    let (config_path, digest, layer_files) = locate(&unpacked)?;
    let config: ConfigFile = read_json(&config_path, "the image config")?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if !diff_ids.is_empty() && diff_ids.len() != layer_files.len() {
        return Err(invalid(format!(
            "the image config lists {} layers, the manifest {}",
            diff_ids.len(),
            layer_files.len()
        )));
    }
    std::fs::create_dir_all(root).map_err(io("making the image's root"))?;
    for (i, layer) in layer_files.iter().enumerate() {
        let size = std::fs::metadata(layer).map_or(0, |m| m.len());
        progress(format!(
            "layer {}/{} ({:.1} MiB)",
            i + 1,
            layer_files.len(),
            size as f64 / 1048576.0
        ));
        let diff_id = layers::apply(root, layer)?;
        if let Some(expected) = diff_ids.get(i) {
            if &diff_id != expected {
                return Err(invalid(format!(
                    "layer {} is corrupt: its content has digest {diff_id}, the config says \
                     {expected}",
                    i + 1
                )));
            }
        }
    }
    let run = config.config.unwrap_or_default();
    let config = ImageConfig {
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.unwrap_or_default(),
        user: run.user.unwrap_or_default(),
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
    };
    let id = digest
        .trim_start_matches("sha256:")
        .chars()
        .take(16)
        .collect();
    Ok(Imported {
        config,
        id,
        layers: layer_files.len(),
    })
}
