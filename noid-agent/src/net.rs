//! The guest's network: address, gateway and name servers, from the kernel command line at
//! boot (`noid.ip`, `noid.gw`, `noid.dns`) or from the host after a restore (a fork gets a new
//! address and MAC). Applied with the image's `ip`.

use std::time::{Duration, Instant};

use noid::guest::cmdline;

pub const DEVICE: &str = "eth0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub mac: Option<String>,
    /// With prefix, e.g. "172.16.0.5/24".
    pub address: String,
    pub gateway: String,
    pub dns: Vec<String>,
}

impl NetConfig {
    pub fn from_cmdline(line: &str) -> Option<Self> {
        Some(Self {
            mac: None,
            address: cmdline::value(line, cmdline::IP)?,
            gateway: cmdline::value(line, cmdline::GATEWAY).unwrap_or_default(),
            dns: cmdline::value(line, cmdline::DNS)
                .map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The `ip` invocations that put this configuration on the device.
    pub fn commands(&self) -> Vec<Vec<String>> {
        let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut cmds = Vec::new();
        if let Some(mac) = &self.mac {
            cmds.push(v(&["ip", "link", "set", DEVICE, "down"]));
            cmds.push(v(&["ip", "link", "set", DEVICE, "address", mac]));
        }
        cmds.push(v(&["ip", "addr", "flush", "dev", DEVICE]));
        cmds.push(v(&["ip", "link", "set", DEVICE, "up"]));
        cmds.push(v(&["ip", "addr", "add", &self.address, "dev", DEVICE]));
        if !self.gateway.is_empty() {
            cmds.push(v(&[
                "ip",
                "route",
                "replace",
                "default",
                "via",
                &self.gateway,
            ]));
        }
        cmds.push(v(&["ip", "neigh", "flush", "dev", DEVICE]));
        cmds
    }

    pub fn write_resolv_conf(&self) {
        if self.dns.is_empty() {
            return;
        }
        let text: String = self
            .dns
            .iter()
            .map(|d| format!("nameserver {d}\n"))
            .collect();
        if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
            eprintln!("noid-agent: resolv.conf: {e}");
        }
    }
}

/// Waits until the network device exists (its driver loads asynchronously).
pub fn wait_for_device(limit: Duration) -> bool {
    let path = format!("/sys/class/net/{DEVICE}");
    let deadline = Instant::now() + limit;
    while !std::path::Path::new(&path).exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_command_line() {
        let c = NetConfig::from_cmdline(
            "quiet noid.ip=172.16.0.5/24 noid.gw=172.16.0.1 noid.dns=1.1.1.1,8.8.8.8",
        )
        .unwrap();
        assert_eq!(c.address, "172.16.0.5/24");
        assert_eq!(c.gateway, "172.16.0.1");
        assert_eq!(c.dns, ["1.1.1.1", "8.8.8.8"]);
        assert!(NetConfig::from_cmdline("quiet").is_none());
        let cmds = c.commands();
        assert!(cmds
            .iter()
            .any(|c| c.join(" ") == "ip addr add 172.16.0.5/24 dev eth0"));
        assert!(!cmds.iter().any(|c| c.contains(&"address".to_string())));
    }
}
