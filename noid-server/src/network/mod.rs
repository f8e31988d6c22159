//! Guest networking on the host: an address pool, a bridge with the gateway address, one
//! persistent TAP per VM on it, and noid's nftables tables (isolation, egress policies, NAT,
//! published ports). `Network` is the port the core uses; `LinuxNetwork` implements it with
//! rtnetlink, /dev/net/tun and nft.

pub mod firewall;
pub mod link;
pub mod listeners;
pub mod nft;
pub mod pool;
pub mod tap;

use async_trait::async_trait;
use thiserror::Error;

pub use firewall::{PortRule, Settings, VmFilter};
pub use pool::Cidr;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("network: {0}")]
    Netlink(String),
    #[error("network: TAP {name}: {source}")]
    Tap {
        name: String,
        source: std::io::Error,
    },
    #[error("firewall (nftables): {0}")]
    Firewall(String),
    #[error("{0}")]
    Config(String),
}

#[async_trait]
pub trait Network: Send + Sync {
    fn cidr(&self) -> Cidr;
    fn dns(&self) -> Vec<String>;
    /// Creates the VM's TAP, down and not yet on the bridge; `owner` (uid, gid) may open it
    /// besides root (a VMM that runs unprivileged).
    async fn create_tap(&self, name: &str, owner: Option<(u32, u32)>) -> Result<(), NetError>;
    /// Puts a TAP on the bridge and brings it up: from now on the guest's frames reach the
    /// network (and the bridge learns its MAC).
    async fn connect_tap(&self, name: &str) -> Result<(), NetError>;
    /// Deletes a TAP; a missing one is fine.
    async fn delete_tap(&self, name: &str) -> Result<(), NetError>;
    /// Names of the TAPs noid made that exist now.
    async fn list_taps(&self) -> Result<Vec<String>, NetError>;
    /// Replaces all of noid's rules with those for these VMs and published ports.
    async fn apply_rules(&self, vms: &[VmFilter], ports: &[PortRule]) -> Result<(), NetError>;
    /// Whether a process on the host listens on TCP `port`.
    fn port_listened(&self, port: u16) -> Result<bool, NetError>;
}

/// TAP names: a prefix and the VM's id (12 hex digits), 14 bytes: unique, and within IFNAMSIZ.
pub const TAP_PREFIX: &str = "nt";

pub fn tap_name(vm_id: &str) -> String {
    format!("{TAP_PREFIX}{vm_id}")
}

/// A locally administered MAC derived from the VM's id.
pub fn mac_for(vm_id: &str) -> String {
    let bytes = hex::decode(vm_id).unwrap_or_default();
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b(0),
        b(1),
        b(2),
        b(3),
        b(4)
    )
}

/// Removes noid's host networking: its nftables tables and its bridge (for `network-down`;
/// the caller makes sure no VM has a network any more).
pub async fn teardown(bridge: &str) -> Result<(), NetError> {
    nft::remove(bridge).await?;
    let handle = link::connect()?;
    link::delete(&handle, bridge).await
}

pub struct LinuxNetwork {
    handle: rtnetlink::Handle,
    settings: Settings,
    bridge_index: u32,
    dns: Vec<String>,
}

impl LinuxNetwork {
    /// Sets up the host side: checks the pool against the host's routes, creates the bridge,
    /// turns on IP forwarding and installs noid's nftables tables (with no VM in them yet;
    /// the core applies its VMs' rules when it reconciles).
    pub async fn setup(settings: Settings, dns: Vec<String>) -> Result<Self, NetError> {
        let (bridge, cidr) = (settings.bridge.clone(), settings.cidr);
        let bridge = bridge.as_str();
        let handle = link::connect()?;
        let existing = link::index(&handle, bridge).await?;
        let clashes = link::overlapping_routes(&handle, &cidr, existing).await?;
        if !clashes.is_empty() {
            return Err(NetError::Config(format!(
                "network.cidr {cidr} overlaps the host's route(s) {}: choose another range",
                clashes.join(", ")
            )));
        }
        let bridge_index = link::ensure_bridge(&handle, bridge, &cidr).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| NetError::Config(format!("cannot enable IP forwarding: {e}")))?;
        let net = Self {
            handle,
            settings,
            bridge_index,
            dns,
        };
        net.apply_rules(&[], &[]).await?;
        Ok(net)
    }
}

#[async_trait]
impl Network for LinuxNetwork {
    fn cidr(&self) -> Cidr {
        self.settings.cidr
    }

    fn dns(&self) -> Vec<String> {
        self.dns.clone()
    }

    async fn create_tap(&self, name: &str, owner: Option<(u32, u32)>) -> Result<(), NetError> {
        let made = tap::create(name).and_then(|()| match owner {
            Some((uid, gid)) => tap::set_owner(name, uid, gid),
            None => Ok(()),
        });
        made.map_err(|source| NetError::Tap {
            name: name.to_string(),
            source,
        })
    }

    async fn connect_tap(&self, name: &str) -> Result<(), NetError> {
        link::attach(&self.handle, name, self.bridge_index).await
    }

    async fn delete_tap(&self, name: &str) -> Result<(), NetError> {
        link::delete(&self.handle, name).await
    }

    async fn list_taps(&self) -> Result<Vec<String>, NetError> {
        Ok(link::names(&self.handle)
            .await?
            .into_iter()
            .filter(|n| n.starts_with(TAP_PREFIX) && n.len() == TAP_PREFIX.len() + 12)
            .collect())
    }

    async fn apply_rules(&self, vms: &[VmFilter], ports: &[PortRule]) -> Result<(), NetError> {
        nft::load(&firewall::ruleset(&self.settings, vms, ports)).await
    }

    fn port_listened(&self, port: u16) -> Result<bool, NetError> {
        listeners::tcp_port_listened(port)
            .map_err(|e| NetError::Config(format!("cannot read the host's TCP listeners: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs_are_deterministic() {
        assert_eq!(tap_name("0123456789ab"), "nt0123456789ab");
        assert!(tap_name("0123456789ab").len() < 16);
        assert_eq!(mac_for("0123456789ab"), "02:01:23:45:67:89");
    }
}
