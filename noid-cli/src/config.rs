//! Where the CLI finds its server, token and whom to trust for TLS (config file, overridden by
//! NOID_URL, NOID_TOKEN, NOID_CA_FILE and NOID_TLS_FINGERPRINT), and which VM is active (a `.noid` file in this directory or a parent, like git).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const DEFAULT_URL: &str = "http://127.0.0.1:7777";
pub const ACTIVE_VM_FILE: &str = ".noid";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    /// For an https:// URL: the CA (PEM) that signed the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// For an https:// URL: the server certificate's SHA-256 fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl AuthConfig {
    /// Whom to believe about the server: the CA file, else the pinned fingerprint, else the
    /// system's CAs.
    pub fn trust(&self) -> noid::tls::Trust {
        use noid::tls::Trust;
        match (&self.ca_file, &self.tls_fingerprint) {
            (Some(file), _) => Trust::CaFile(file.clone()),
            (None, Some(fp)) => Trust::Fingerprint(fp.clone()),
            (None, None) => Trust::System,
        }
    }
}

pub fn config_path() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("NOID_CONFIG_FILE") {
        return Ok(PathBuf::from(p));
    }
    let dir = dirs::config_dir().context("cannot find the user's config directory (set HOME)")?;
    Ok(dir.join("noid").join("config.toml"))
}

pub fn load() -> Result<AuthConfig> {
    let path = config_path()?;
    let mut cfg = match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuthConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Ok(url) = std::env::var("NOID_URL") {
        cfg.url = Some(url);
    }
    if let Ok(token) = std::env::var("NOID_TOKEN") {
        cfg.token = Some(token);
    }
    if let Ok(file) = std::env::var("NOID_CA_FILE") {
        cfg.ca_file = Some(PathBuf::from(file));
        cfg.tls_fingerprint = None;
    }
    if let Ok(fp) = std::env::var("NOID_TLS_FINGERPRINT") {
        cfg.tls_fingerprint = Some(fp);
        cfg.ca_file = None;
    }
    Ok(cfg)
}

/// Writes the config file, readable by the user alone (it holds a token).
pub fn save(cfg: &AuthConfig) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(toml::to_string(cfg)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The nearest `.noid` file from `start` upwards.
pub fn find_active_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(ACTIVE_VM_FILE))
        .find(|p| p.is_file())
}

/// The active VM: its name and the file that named it.
pub fn active_vm() -> Result<Option<(String, PathBuf)>> {
    let cwd = std::env::current_dir()?;
    let Some(file) = find_active_file(&cwd) else {
        return Ok(None);
    };
    let name = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .trim()
        .to_string();
    noid::names::validate_name("VM", &name)
        .with_context(|| format!("{} names no valid VM", file.display()))?;
    Ok(Some((name, file)))
}

/// The VM a command acts on: the one given, else the active one.
pub fn resolve_vm(given: Option<String>) -> Result<String> {
    if let Some(name) = given {
        return Ok(name);
    }
    match active_vm()? {
        Some((name, _)) => Ok(name),
        None => bail!("no VM given and no active VM: pass a name or run `noid use NAME`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_active_file_in_parents() {
        let dir = std::env::temp_dir().join(format!("noid-cli-test-{}", std::process::id()));
        let deep = dir.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_active_file(&deep), None);
        std::fs::write(dir.join("a").join(ACTIVE_VM_FILE), "web\n").unwrap();
        assert_eq!(
            find_active_file(&deep),
            Some(dir.join("a").join(ACTIVE_VM_FILE))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
