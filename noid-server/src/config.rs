//! Server configuration: a TOML file (`--config`) whose values command-line flags override.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use noid::netpolicy::{Egress, NetPolicy, Rule};
use serde::Deserialize;

pub use crate::core::VmLimits;
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

/// `line N (`the line`): ` for the start of `span` in `text`, so that an error names the
/// line and the key it is about.
fn where_in(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(start) = span.map(|s| s.start.min(text.len())) else {
        return String::new();
    };
    let line = text[..start].matches('\n').count() + 1;
    let content = text.lines().nth(line - 1).unwrap_or("").trim();
    if content.is_empty() {
        format!("line {line}: ")
    } else {
        format!("line {line} (`{content}`): ")
    }
}

/// Which VMM runs VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VmmChoice {
    /// Firecracker where its binary is found and KVM runs standard guests, QEMU otherwise.
    #[default]
    Auto,
    Firecracker,
    Qemu,
}

impl std::str::FromStr for VmmChoice {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        <Self as clap::ValueEnum>::from_str(s, false).map_err(|_| {
            ConfigError::Invalid(format!(
                "the VMM must be auto, firecracker or qemu, not {s:?}"
            ))
        })
    }
}

/// QEMU's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM where it really runs standard guests, TCG otherwise.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// What `noid-server serve`'s flags set, over the config file.
#[derive(Debug, Default)]
pub struct ServeFlags {
    pub listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub image_dir: Option<PathBuf>,
    pub accel: Option<AccelChoice>,
    pub vmm: Option<VmmChoice>,
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
    /// API connections open at once; beyond it new ones wait. 0: a quarter of the server's
    /// open-file limit.
    pub max_connections: usize,
    /// Calls open at once on one API connection.
    pub max_streams_per_connection: u32,
    /// On SIGTERM, how long open calls (followed logs, consoles, execs) may go on.
    pub shutdown_grace_secs: u64,
    /// The guest image; default `<data_dir>/images/default`.
    pub image_dir: Option<PathBuf>,
    /// Which VMM runs VMs. `NOID_VMM` overrides it.
    pub vmm: VmmChoice,
    pub vm: VmLimits,
    pub checkpoints: crate::core::CheckpointSettings,
    pub qemu: QemuConfig,
    pub firecracker: FirecrackerSettings,
    pub network: NetworkConfig,
    /// Per-user limits; 0 is no limit.
    pub quota: crate::core::Quota,
    /// The server's certificate and key: with them, the API and the gateway speak TLS only.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `GET /metrics` wants a token (any user's) like the rest of the API.
    pub metrics_need_token: bool,
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
    /// Name servers written to the guests' /etc/resolv.conf (reachable on port 53 even
    /// inside `blocked`; a VM's own egress policy still applies).
    pub dns: Vec<String>,
    /// Filter VMs' traffic: tenants apart, no spoofing, the host closed, egress policies.
    /// false: no filtering at all (a single-user host that trusts its VMs).
    pub isolation: bool,
    /// Networks no VM may reach, whatever its own policy: link-local and cloud metadata
    /// (169.254.0.0/16) and private networks.
    pub blocked: Vec<String>,
    /// Ports on the gateway address that VMs may reach, as "udp:53" or "tcp:8080" (a resolver
    /// or proxy the operator runs there). Ping of the gateway is always answered.
    pub host_services: Vec<String>,
    /// Host ports that `noid port add` may publish, "FIRST-LAST".
    pub publish_ports: String,
    /// Allow publish_ports to reach below 1024.
    pub privileged_ports: bool,
    /// Host addresses on which published ports answer; empty: all of the host's addresses.
    pub publish_addresses: Vec<String>,
    /// The policy of VMs created without one.
    pub policy: PolicyConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bridge: "noid0".into(),
            cidr: "172.16.0.0/24".into(),
            nat: true,
            dns: vec!["1.1.1.1".into(), "8.8.8.8".into()],
            isolation: true,
            blocked: [
                "169.254.0.0/16",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
            ]
            .map(String::from)
            .to_vec(),
            host_services: Vec::new(),
            publish_ports: "20000-29999".into(),
            privileged_ports: false,
            publish_addresses: Vec::new(),
            policy: PolicyConfig::default(),
        }
    }
}

/// `[network.policy]`: a VM's network policy (see `noid::netpolicy`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub egress: Egress,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    pub isolated: bool,
}

impl PolicyConfig {
    pub fn to_policy(&self) -> NetPolicy {
        NetPolicy {
            egress: self.egress,
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            isolated: self.isolated,
        }
    }
}

impl NetworkConfig {
    /// The host ports users may publish, first and last.
    pub fn publish_range(&self) -> Result<(u16, u16), ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "network.publish_ports {:?} must be FIRST-LAST, ports 1-65535",
                self.publish_ports
            ))
        };
        let (lo, hi) = self.publish_ports.split_once('-').ok_or_else(bad)?;
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
        match (port(lo), port(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(bad()),
        }
    }

    /// The settings noid's firewall rules are made with.
    pub fn firewall(&self) -> Result<crate::network::Settings, ConfigError> {
        let cidr = self
            .cidr
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("network.cidr: {e}")))?;
        let blocked = self
            .blocked
            .iter()
            .map(|b| {
                b.parse::<ipnet::Ipv4Net>()
                    .ok()
                    .filter(|n| n.trunc() == *n)
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "network.blocked {b:?} is not an IPv4 network such as 10.0.0.0/8"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let host_services = self
            .host_services
            .iter()
            .map(|h| {
                h.parse()
                    .map_err(|e| ConfigError::Invalid(format!("network.host_services: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let publish_addresses = self
            .publish_addresses
            .iter()
            .map(|a| {
                a.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "network.publish_addresses {a:?} is not an IPv4 address"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let dns = self.dns.iter().filter_map(|d| d.parse().ok()).collect();
        Ok(crate::network::Settings {
            bridge: self.bridge.clone(),
            cidr,
            nat: self.nat,
            isolation: self.isolation,
            blocked,
            host_services,
            publish_addresses,
            dns,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QemuConfig {
    pub binary: PathBuf,
    pub accel: AccelChoice,
    /// Save guest RAM as a memory file that restored VMs map copy-on-write (shared pages
    /// across VMs started from one snapshot) rather than inside the migration stream.
    pub memory_files: bool,
    /// TCG's translated-code buffer per VM, in MiB (0: QEMU's default).
    pub tb_size_mib: u32,
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
            max_connections: 0,
            max_streams_per_connection: 256,
            shutdown_grace_secs: 5,
            image_dir: None,
            vmm: VmmChoice::Auto,
            vm: VmLimits::default(),
            checkpoints: Default::default(),
            qemu: QemuConfig::default(),
            firecracker: FirecrackerSettings::default(),
            network: NetworkConfig::default(),
            quota: Default::default(),
            tls: None,
            metrics_need_token: false,
        }
    }
}

/// See `QemuConfig::tb_size_mib`; chosen by measurement (README, "Density").
pub const DEFAULT_TB_SIZE_MIB: u32 = 0;

impl Default for QemuConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("qemu-system-x86_64"),
            accel: AccelChoice::Auto,
            memory_files: true,
            tb_size_mib: DEFAULT_TB_SIZE_MIB,
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
            message: where_in(&text, e.span()) + e.message(),
        })
    }

    /// The config with `serve`'s flags applied over it.
    pub fn with_flags(mut self, flags: ServeFlags) -> Self {
        let ServeFlags {
            listen,
            http_listen,
            image_dir,
            accel,
            vmm,
        } = flags;
        self.listen = listen.unwrap_or(self.listen);
        self.http_listen = http_listen.unwrap_or(self.http_listen);
        self.image_dir = image_dir.or(self.image_dir);
        self.qemu.accel = accel.unwrap_or(self.qemu.accel);
        self.vmm = vmm.unwrap_or(self.vmm);
        self
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
        self.network.firewall()?;
        let (lo, _) = self.network.publish_range()?;
        if lo < 1024 && !self.network.privileged_ports {
            return Err(ConfigError::Invalid(format!(
                "network.publish_ports {:?} reaches below 1024: set network.privileged_ports = \
                 true to let users publish privileged ports",
                self.network.publish_ports
            )));
        }
        self.network
            .policy
            .to_policy()
            .check()
            .map_err(|e| ConfigError::Invalid(format!("network.policy: {e}")))?;
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
        if ![1, 2].contains(&self.firecracker.cgroup_version) {
            return Err(ConfigError::Invalid(format!(
                "firecracker.cgroup_version must be 1 or 2, not {}",
                self.firecracker.cgroup_version
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, wanted) in [
            (
                "listen = \"127.0.0.1:1\"\n[vm]\nmax_cpus = \"two\"\n",
                "line 3 (`max_cpus = \"two\"`)",
            ),
            (
                "[vm]\nmax_cpu = 2\n",
                "line 2 (`max_cpu = 2`): unknown field `max_cpu`",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(e.contains(wanted), "{e}");
        }
    }

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
        let (e, d) = (&example.network, &d.network);
        assert_eq!(e.blocked, d.blocked);
        assert_eq!(e.publish_ports, d.publish_ports);
        assert_eq!(e.host_services, d.host_services);
        assert_eq!(
            (e.isolation, e.privileged_ports),
            (d.isolation, d.privileged_ports)
        );
        assert_eq!(e.policy.to_policy(), d.policy.to_policy());
        let (e, d) = (&example.checkpoints, &Config::default().checkpoints);
        assert_eq!(
            (e.slow_secs, e.keep_last, e.max_age),
            (d.slow_secs, d.keep_last, d.max_age)
        );
        assert_eq!(example.vm.auto_resume, Config::default().vm.auto_resume);
    }

    #[test]
    fn checkpoint_ages_are_read_as_durations() {
        let c: Config = toml::from_str("[checkpoints]\nmax_age = \"7d\"\nkeep_last = 3\n").unwrap();
        assert_eq!(
            c.checkpoints.max_age,
            Some(std::time::Duration::from_secs(7 * 86400))
        );
        let e = toml::from_str::<Config>("[checkpoints]\nmax_age = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("max_age \"soon\""), "{e}");
    }

    #[test]
    fn network_settings_are_checked() {
        let invalid = |toml: &str, why: &str| {
            let c: Config = toml::from_str(toml).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{toml}: {e}");
        };
        invalid(
            "[network]\nblocked = [\"10.0.0.1/8\"]",
            "network.blocked \"10.0.0.1/8\"",
        );
        invalid(
            "[network]\nhost_services = [\"53\"]",
            "network.host_services",
        );
        invalid("[network]\npublish_ports = \"30000-20000\"", "FIRST-LAST");
        invalid(
            "[network]\npublish_ports = \"80-90\"",
            "privileged_ports = true",
        );
        invalid(
            "[network]\npublish_addresses = [\"x\"]",
            "network.publish_addresses",
        );
        let ok: Config = toml::from_str(
            "[network]\npublish_ports = \"80-90\"\nprivileged_ports = true\n\
             [network.policy]\negress = \"deny\"\nallow = [\"198.51.100.0/24:443\"]\n",
        )
        .unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.network.publish_range().unwrap(), (80, 90));
        assert_eq!(
            ok.network.policy.to_policy().summary(),
            "egress deny, allow 198.51.100.0/24:443, own VMs reachable"
        );
        let bad_rule = toml::from_str::<Config>("[network.policy]\nallow = [\"example.org\"]");
        assert!(bad_rule.unwrap_err().to_string().contains("expected CIDR"));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let e = toml::from_str::<Config>("[qemu]\naccel = \"hvf\"").unwrap_err();
        assert!(
            e.to_string().contains("hvf") && e.to_string().contains("tcg"),
            "{e}"
        );
        let e = toml::from_str::<Config>("vmm = \"xen\"").unwrap_err();
        assert!(e.to_string().contains("firecracker"), "{e}");
        let e = "xen".parse::<VmmChoice>().unwrap_err();
        assert!(e.to_string().contains("not \"xen\""), "{e}");
        assert_eq!("qemu".parse::<VmmChoice>().unwrap(), VmmChoice::Qemu);
    }
}
