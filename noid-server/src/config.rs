//! Server configuration: a TOML file (`--config`) whose values command-line flags override.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/noid";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7777";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7778";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the gRPC API.
    pub listen: SocketAddr,
    /// Address of the REST/WebSocket gateway and /metrics.
    pub http_listen: SocketAddr,
    /// Root of all state: `images/`, `vms/`, `checkpoints/`, `db/`.
    pub data_dir: PathBuf,
    /// The guest image; default `<data_dir>/images/default`.
    pub image_dir: Option<PathBuf>,
    /// Which VMM runs VMs: "auto" (Firecracker where its binary is found and KVM runs
    /// standard guests, QEMU otherwise), "firecracker" or "qemu". `NOID_VMM` overrides it.
    pub vmm: String,
    pub vm: VmLimits,
    pub qemu: QemuConfig,
    pub firecracker: FirecrackerSettings,
    pub network: NetworkConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Give VMs a network (bridge, TAP, address, NAT). Off: VMs have no network device.
    pub enabled: bool,
    pub bridge: String,
    /// The guest address pool; its first host address is the gateway on the bridge.
    pub cidr: String,
    /// Masquerade guest traffic leaving through the host's other interfaces.
    pub nat: bool,
    /// Name servers written to the guests' /etc/resolv.conf.
    pub dns: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bridge: "noid0".into(),
            cidr: "172.16.0.0/24".into(),
            nat: true,
            dns: vec!["1.1.1.1".into(), "8.8.8.8".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmLimits {
    pub default_cpus: u32,
    pub max_cpus: u32,
    pub default_memory_mib: u32,
    pub min_memory_mib: u32,
    pub max_memory_mib: u32,
    /// How long a VM may take from start until its agent answers.
    pub boot_timeout_secs: u64,
    /// How long a guest may take to power off on delete before it is terminated.
    pub shutdown_timeout_secs: u64,
    /// Console output kept per VM: the current log and one rotated log of this size each.
    pub console_log_bytes: u64,
    /// Start new VMs from a snapshot of a freshly booted VM of the same size instead of
    /// booting them (the first VM of each size boots and makes it).
    pub boot_snapshots: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QemuConfig {
    pub binary: PathBuf,
    /// "auto" (KVM where it really runs standard guests, TCG otherwise), "kvm" or "tcg".
    pub accel: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirecrackerSettings {
    /// The `firecracker` binary (looked up on PATH when it has no directory).
    pub binary: PathBuf,
    /// Run Firecracker under this `jailer` (chroot, own uid/gid); empty: run it directly.
    pub jailer: Option<PathBuf>,
    /// User and group the jailed Firecracker runs as.
    pub uid: u32,
    pub gid: u32,
    /// Where the jailer makes each VM's chroot; default `<data_dir>/jail` (same filesystem
    /// as the data, so disks and checkpoint files are hard-linked, not copied).
    pub chroot_base: Option<PathBuf>,
    /// Cgroup settings the jailer applies to every VM, e.g. ["cpu.weight=50"].
    pub cgroups: Vec<String>,
    pub cgroup_version: u8,
}

impl Default for FirecrackerSettings {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("firecracker"),
            jailer: None,
            uid: 65534,
            gid: 65534,
            chroot_base: None,
            cgroups: Vec::new(),
            cgroup_version: 2,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            http_listen: DEFAULT_HTTP_LISTEN.parse().expect("valid default address"),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            image_dir: None,
            vmm: "auto".into(),
            vm: VmLimits::default(),
            qemu: QemuConfig::default(),
            firecracker: FirecrackerSettings::default(),
            network: NetworkConfig::default(),
        }
    }
}

impl Default for VmLimits {
    fn default() -> Self {
        Self {
            default_cpus: 1,
            max_cpus: 8,
            default_memory_mib: 256,
            min_memory_mib: 128,
            max_memory_mib: 8192,
            boot_timeout_secs: 60,
            shutdown_timeout_secs: 3,
            console_log_bytes: 1 << 20,
            boot_snapshots: true,
        }
    }
}

impl Default for QemuConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("qemu-system-x86_64"),
            accel: "auto".into(),
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }

    pub fn chroot_base(&self) -> PathBuf {
        self.firecracker
            .chroot_base
            .clone()
            .unwrap_or_else(|| self.data_dir.join("jail"))
    }

    pub fn image_dir(&self) -> PathBuf {
        self.image_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("images/default"))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = &self.vm;
        if v.default_cpus == 0 || v.default_cpus > v.max_cpus {
            return Err(ConfigError::Invalid(format!(
                "vm.default_cpus ({}) must be between 1 and vm.max_cpus ({})",
                v.default_cpus, v.max_cpus
            )));
        }
        if v.min_memory_mib > v.default_memory_mib || v.default_memory_mib > v.max_memory_mib {
            return Err(ConfigError::Invalid(format!(
                "vm.default_memory_mib ({}) must be between vm.min_memory_mib ({}) and vm.max_memory_mib ({})",
                v.default_memory_mib, v.min_memory_mib, v.max_memory_mib
            )));
        }
        if let Err(e) = self.network.cidr.parse::<crate::network::Cidr>() {
            return Err(ConfigError::Invalid(format!("network.cidr: {e}")));
        }
        let bridge = &self.network.bridge;
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::Invalid(format!(
                "network.bridge {bridge:?} must be 1-15 letters, digits, '-' or '_'"
            )));
        }
        for d in &self.network.dns {
            if d.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "network.dns {d:?} is not an IP address"
                )));
            }
        }
        if !["auto", "firecracker", "qemu"].contains(&self.vmm.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "vmm must be \"auto\", \"firecracker\" or \"qemu\", not {:?}",
                self.vmm
            )));
        }
        if ![1, 2].contains(&self.firecracker.cgroup_version) {
            return Err(ConfigError::Invalid(format!(
                "firecracker.cgroup_version must be 1 or 2, not {}",
                self.firecracker.cgroup_version
            )));
        }
        if !["auto", "kvm", "tcg"].contains(&self.qemu.accel.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "qemu.accel must be \"auto\", \"kvm\" or \"tcg\", not {:?}",
                self.qemu.accel
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partial_file_over_defaults() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:9000\"\n[vm]\nmax_cpus = 2\n").unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.vm.max_cpus, 2);
        assert_eq!(c.vm.default_memory_mib, 256);
        c.validate().unwrap();
    }

    #[test]
    fn the_example_config_is_valid_and_matches_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../deploy/config.example.toml"))
            .expect("deploy/config.example.toml parses");
        example.validate().unwrap();
        let d = Config::default();
        assert_eq!(example.listen, d.listen);
        assert_eq!(example.http_listen, d.http_listen);
        assert_eq!(example.vm.console_log_bytes, d.vm.console_log_bytes);
        assert_eq!(example.network.cidr, d.network.cidr);
        assert_eq!(example.vmm, d.vmm);
        assert_eq!(example.firecracker.uid, d.firecracker.uid);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let mut c = Config::default();
        c.qemu.accel = "hvf".into();
        assert!(c.validate().unwrap_err().to_string().contains("qemu.accel"));
        let c = Config {
            vmm: "xen".into(),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("vmm must be"));
    }
}
