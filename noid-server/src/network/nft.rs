//! noid's own nftables table (`ip noid_<bridge>`, one per bridge so that servers on several
//! bridges do not meet): masquerade for egress from the pool, and DNAT for published ports.
//! The whole table is replaced in one `nft -f` transaction each time, so it is idempotent and
//! never half-applied; no other table is touched.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::pool::Cidr;
use super::NetError;

/// The table of the bridge `bridge`.
pub fn table(bridge: &str) -> String {
    format!("noid_{}", bridge.replace('-', "_"))
}

/// A published port: TCP to the host's `host_port` reaches `guest_ip:guest_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRule {
    pub host_port: u16,
    pub guest_ip: Ipv4Addr,
    pub guest_port: u16,
}

/// The table's full text.
pub fn ruleset(cidr: &Cidr, bridge: &str, nat: bool, ports: &[PortRule]) -> String {
    let t = table(bridge);
    let mut dnat = String::new();
    for p in ports {
        dnat.push_str(&format!(
            "        fib daddr type local tcp dport {} dnat to {}:{}\n",
            p.host_port, p.guest_ip, p.guest_port
        ));
    }
    let masquerade = if nat {
        format!("        ip saddr {cidr} oifname != \"{bridge}\" masquerade\n")
    } else {
        String::new()
    };
    format!(
        "table ip {t} {{}}\n\
         delete table ip {t}\n\
         table ip {t} {{\n\
         \x20   chain prerouting {{\n\
         \x20       type nat hook prerouting priority dstnat; policy accept;\n\
         {dnat}\
         \x20   }}\n\
         \x20   chain output {{\n\
         \x20       type nat hook output priority -100; policy accept;\n\
         {dnat}\
         \x20   }}\n\
         \x20   chain postrouting {{\n\
         \x20       type nat hook postrouting priority srcnat; policy accept;\n\
         {masquerade}\
         \x20   }}\n\
         }}\n"
    )
}

fn nft(script: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Firewall(format!("cannot run nft (install nftables): {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    if !out.status.success() {
        return Err(NetError::Firewall(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

pub fn apply(cidr: &Cidr, bridge: &str, nat: bool, ports: &[PortRule]) -> Result<(), NetError> {
    nft(&ruleset(cidr, bridge, nat, ports))
}

/// Removes the bridge's table (nothing else).
pub fn remove(bridge: &str) -> Result<(), NetError> {
    let t = table(bridge);
    nft(&format!("table ip {t} {{}}\ndelete table ip {t}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_has_masquerade_and_dnat() {
        let cidr: Cidr = "172.16.0.0/24".parse().unwrap();
        let ports = [PortRule {
            host_port: 8080,
            guest_ip: Ipv4Addr::new(172, 16, 0, 2),
            guest_port: 80,
        }];
        let r = ruleset(&cidr, "noid0", true, &ports);
        assert!(r.contains("ip saddr 172.16.0.0/24 oifname != \"noid0\" masquerade"));
        assert_eq!(r.matches("tcp dport 8080 dnat to 172.16.0.2:80").count(), 2);
        assert!(r.starts_with("table ip noid_noid0 {}\ndelete table ip noid_noid0\n"));
        assert!(!ruleset(&cidr, "noid0", false, &[]).contains("masquerade"));
    }
}
