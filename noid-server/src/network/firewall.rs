//! The text of noid's nftables rules, made from the VMs' records and the network settings:
//! a pure function, so every rule is unit-tested here and `nft` only ever loads it whole.
//!
//! Two tables per bridge, both named `noid_<bridge>`:
//! - `bridge`: frames between the bridge's ports. Each VM's TAP may only send with the VM's
//!   own MAC and IPv4 address (IPv4 and ARP; everything else, IPv6 included, is dropped), may
//!   reach only the TAPs of its own group (its owner's other VMs, unless isolated), and may
//!   not reach another VM's address through the host's routing.
//! - `ip`: what VMs may reach beyond the bridge. The host itself only for ping and the
//!   services the config names, on the gateway address; everything routed out passes the
//!   operator's blocked networks, then the VM's own egress policy (most specific rule first),
//!   then NAT. From outside, VMs are reachable only through published ports (DNAT, on the
//!   host addresses the config names) and as replies.
//!
//! Packets are told apart by the TAP they came from (bridge) or by their source address (ip),
//! which the bridge rules have already tied to the TAP.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use noid::netpolicy::{Egress, NetPolicy, Verdict};

use super::pool::Cidr;

/// A port on the gateway address that VMs may reach ("tcp:53").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostService {
    pub udp: bool,
    pub port: u16,
}

impl FromStr for HostService {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not PROTO:PORT with PROTO tcp or udp, e.g. \"udp:53\"");
        let (proto, port) = s.split_once(':').ok_or_else(bad)?;
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(bad()),
        };
        let port = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        Ok(HostService { udp, port })
    }
}

/// A published port: TCP to the host's `host_port` reaches `guest_ip:guest_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRule {
    pub host_port: u16,
    pub guest_ip: Ipv4Addr,
    pub guest_port: u16,
}

/// What the rules know of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFilter {
    pub tap: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// VMs of one group exchange traffic (the owner's name); None: this VM with no other.
    pub group: Option<String>,
    pub policy: NetPolicy,
}

/// The settings the rules are made with (from the config; fixed while the server runs).
#[derive(Debug, Clone)]
pub struct Settings {
    pub bridge: String,
    pub cidr: Cidr,
    pub nat: bool,
    /// false: no filtering at all (only NAT and published ports).
    pub isolation: bool,
    /// Networks no VM may reach, whatever its policy.
    pub blocked: Vec<Ipv4Net>,
    pub host_services: Vec<HostService>,
    /// Host addresses on which published ports answer; empty: all of the host's.
    pub publish_addresses: Vec<Ipv4Addr>,
    /// The name servers VMs are given: port 53 on them is exempt from `blocked`.
    pub dns: Vec<Ipv4Addr>,
}

/// The tables' name.
pub fn table(bridge: &str) -> String {
    format!("noid_{}", bridge.replace('-', "_"))
}

/// Chain names of a VM (TAP names are unique and safe: a prefix and hex digits).
fn chain(kind: &str, tap: &str) -> String {
    format!("{kind}_{tap}")
}

/// The whole ruleset: both tables, replaced in one transaction.
pub fn ruleset(s: &Settings, vms: &[VmFilter], ports: &[PortRule]) -> String {
    let t = table(&s.bridge);
    let mut out = format!(
        "table bridge {t} {{}}\ndelete table bridge {t}\ntable ip {t} {{}}\ndelete table ip {t}\n"
    );
    if s.isolation {
        out.push_str(&bridge_table(s, vms));
    }
    out.push_str(&ip_table(s, vms, ports));
    out
}

/// `vmap { KEY : VERDICT, ... }` over the VMs, or None when there are none (nft refuses an
/// empty anonymous map).
fn vmap(vms: &[VmFilter], entry: impl Fn(&VmFilter) -> String) -> Option<String> {
    (!vms.is_empty()).then(|| {
        let entries: Vec<String> = vms.iter().map(entry).collect();
        format!("vmap {{ {} }}", entries.join(", "))
    })
}

fn bridge_table(s: &Settings, vms: &[VmFilter]) -> String {
    let t = table(&s.bridge);
    let mut out = format!("table bridge {t} {{\n");
    let base = |name: &str, hook: &str, body: &str| {
        format!(
            "    chain {name} {{\n        type filter hook {hook} priority -200; policy accept;\n{body}    }}\n"
        )
    };
    let dispatch = |kind: &str| {
        vmap(vms, |v| {
            format!("\"{}\" : jump {}", v.tap, chain(kind, &v.tap))
        })
        .map(|m| format!("        iifname {m}\n"))
        .unwrap_or_default()
    };
    // Frames entering the bridge from a VM: only its own addresses.
    out.push_str(&base("prerouting", "prerouting", &dispatch("from")));
    // Frames from one VM to another: only within a group.
    out.push_str(&base("forward", "forward", &dispatch("peers")));
    // Frames from a VM to the host: never routed on to another VM's address.
    let input = if vms.is_empty() {
        String::new()
    } else {
        let taps: Vec<String> = vms.iter().map(|v| format!("\"{}\"", v.tap)).collect();
        format!(
            "        iifname {{ {} }} ip daddr {} ip daddr != {} drop\n",
            taps.join(", "),
            s.cidr,
            s.cidr.gateway()
        )
    };
    out.push_str(&base("input", "input", &input));
    for v in vms {
        let _ = write!(
            out,
            "    chain {} {{\n\
             \x20       ether saddr != {mac} drop\n\
             \x20       ether type arp arp saddr ether != {mac} drop\n\
             \x20       ether type arp arp saddr ip != {ip} drop\n\
             \x20       ether type arp accept\n\
             \x20       ether type ip ip saddr != {ip} drop\n\
             \x20       ether type ip accept\n\
             \x20       drop\n\
             \x20   }}\n",
            chain("from", &v.tap),
            mac = v.mac,
            ip = v.ip,
        );
        let peers: Vec<String> = vms
            .iter()
            .filter(|o| o.tap != v.tap && v.group.is_some() && o.group == v.group)
            .map(|o| format!("\"{}\"", o.tap))
            .collect();
        let accept = if peers.is_empty() {
            String::new()
        } else {
            format!("        oifname {{ {} }} accept\n", peers.join(", "))
        };
        let _ = write!(
            out,
            "    chain {} {{\n{accept}        drop\n    }}\n",
            chain("peers", &v.tap)
        );
    }
    out.push_str("}\n");
    out
}

fn ip_table(s: &Settings, vms: &[VmFilter], ports: &[PortRule]) -> String {
    let t = table(&s.bridge);
    let br = &s.bridge;
    let mut out = format!("table ip {t} {{\n");
    if s.isolation {
        out.push_str(&filter_chains(s, vms));
    }
    // Published ports: from outside the bridge (and from the host itself), on the host
    // addresses the config names.
    let daddr = if s.publish_addresses.is_empty() {
        "fib daddr type local".to_string()
    } else {
        let a: Vec<String> = s.publish_addresses.iter().map(|a| a.to_string()).collect();
        format!("ip daddr {{ {} }}", a.join(", "))
    };
    let mut pre = String::new();
    let mut output = String::new();
    for p in ports {
        let dnat = format!(
            "{daddr} tcp dport {} dnat to {}:{}\n",
            p.host_port, p.guest_ip, p.guest_port
        );
        let _ = write!(pre, "        iifname != \"{br}\" {dnat}");
        let _ = write!(output, "        {dnat}");
    }
    let masquerade = if s.nat {
        format!(
            "        ip saddr {} oifname != \"{br}\" masquerade\n",
            s.cidr
        )
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "    chain prerouting {{\n        type nat hook prerouting priority dstnat; policy accept;\n{pre}    }}\n\
         \x20   chain output {{\n        type nat hook output priority -100; policy accept;\n{output}    }}\n\
         \x20   chain postrouting {{\n        type nat hook postrouting priority srcnat; policy accept;\n{masquerade}    }}\n"
    );
    out.push_str("}\n");
    out
}

/// The filter chains of the `ip` table.
fn filter_chains(s: &Settings, vms: &[VmFilter]) -> String {
    let br = &s.bridge;
    let gw = s.cidr.gateway();
    let mut services = String::new();
    for h in &s.host_services {
        let proto = if h.udp { "udp" } else { "tcp" };
        let _ = writeln!(
            services,
            "        ip daddr {gw} {proto} dport {} accept",
            h.port
        );
    }
    let list = |items: Vec<String>| items.join(", ");
    let dns = if s.dns.is_empty() || s.blocked.is_empty() {
        String::new()
    } else {
        format!(
            "        ip daddr {{ {} }} meta l4proto {{ tcp, udp }} th dport 53 goto vm_egress\n",
            list(s.dns.iter().map(|a| a.to_string()).collect())
        )
    };
    let blocked = if s.blocked.is_empty() {
        String::new()
    } else {
        format!(
            "        ip daddr {{ {} }} goto refuse\n",
            list(s.blocked.iter().map(|n| n.to_string()).collect())
        )
    };
    let egress = vmap(vms, |v| {
        format!("{} : goto {}", v.ip, chain("egress", &v.tap))
    })
    .map(|m| format!("        ip saddr {m}\n"))
    .unwrap_or_default();
    let mut out = format!(
        "    chain input {{\n\
         \x20       type filter hook input priority filter; policy accept;\n\
         \x20       iifname != \"{br}\" accept\n\
         \x20       ct state established,related accept\n\
         \x20       ip daddr {gw} icmp type echo-request accept\n\
         {services}\
         \x20       goto refuse\n\
         \x20   }}\n\
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority filter; policy accept;\n\
         \x20       iifname \"{br}\" oifname \"{br}\" accept\n\
         \x20       oifname \"{br}\" ct state established,related accept\n\
         \x20       oifname \"{br}\" ct status dnat accept\n\
         \x20       oifname \"{br}\" drop\n\
         \x20       iifname != \"{br}\" accept\n\
         \x20       ct direction reply accept\n\
         {dns}\
         {blocked}\
         \x20       goto vm_egress\n\
         \x20   }}\n\
         \x20   chain vm_egress {{\n\
         {egress}\
         \x20       drop\n\
         \x20   }}\n\
         \x20   chain refuse {{\n\
         \x20       meta l4proto tcp reject with tcp reset\n\
         \x20       reject with icmp type admin-prohibited\n\
         \x20   }}\n"
    );
    for v in vms {
        let _ = writeln!(out, "    chain {} {{", chain("egress", &v.tap));
        for (rule, verdict) in v.policy.ordered() {
            let ports = match rule.ports {
                Some((lo, hi)) if lo == hi => format!(" meta l4proto {{ tcp, udp }} th dport {lo}"),
                Some((lo, hi)) => format!(" meta l4proto {{ tcp, udp }} th dport {lo}-{hi}"),
                None => String::new(),
            };
            let verdict = match verdict {
                Verdict::Accept => "accept",
                Verdict::Reject => "goto refuse",
            };
            let _ = writeln!(out, "        ip daddr {}{ports} {verdict}", rule.net);
        }
        let default = match v.policy.egress {
            Egress::Allow => "accept",
            Egress::Deny => "goto refuse",
        };
        let _ = writeln!(out, "        {default}\n    }}");
    }
    out
}

/// A ruleset with every kind of rule for one made-up VM: what `doctor` asks nft to check.
pub fn example(s: &Settings) -> String {
    let policy = NetPolicy::parse(
        Egress::Deny,
        &["198.51.100.0/24:8000-8100".into(), "192.0.2.1".into()],
        &["198.51.100.9:53".into()],
        false,
    )
    .expect("valid rules");
    let ip = s.cidr.gateway();
    let vms = [VmFilter {
        tap: "nt000000000000".into(),
        mac: "02:00:00:00:00:02".into(),
        ip,
        group: Some("user".into()),
        policy,
    }];
    let ports = [PortRule {
        host_port: 20080,
        guest_ip: ip,
        guest_port: 80,
    }];
    ruleset(s, &vms, &ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            bridge: "noid0".into(),
            cidr: "172.16.0.0/24".parse().unwrap(),
            nat: true,
            isolation: true,
            blocked: vec!["169.254.0.0/16".parse().unwrap()],
            host_services: vec!["udp:53".parse().unwrap()],
            publish_addresses: vec![],
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
        }
    }

    fn vm(tap: &str, last: u8, group: Option<&str>, policy: NetPolicy) -> VmFilter {
        VmFilter {
            tap: tap.into(),
            mac: format!("02:00:00:00:00:{last:02x}"),
            ip: Ipv4Addr::new(172, 16, 0, last),
            group: group.map(str::to_string),
            policy,
        }
    }

    /// The lines of chain `name` (without its braces).
    fn chain_of(text: &str, name: &str) -> Vec<String> {
        let start = text
            .find(&format!("chain {name} {{"))
            .unwrap_or_else(|| panic!("no chain {name} in\n{text}"));
        text[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.trim() != "}")
            .map(|l| l.trim().to_string())
            .filter(|l| !l.starts_with("type "))
            .collect()
    }

    #[test]
    fn each_tap_sends_only_with_its_own_addresses() {
        let r = ruleset(
            &settings(),
            &[vm("nta", 2, Some("alice"), NetPolicy::default())],
            &[],
        );
        assert!(r.contains("iifname vmap { \"nta\" : jump from_nta }"));
        assert_eq!(
            chain_of(&r, "from_nta"),
            [
                "ether saddr != 02:00:00:00:00:02 drop",
                "ether type arp arp saddr ether != 02:00:00:00:00:02 drop",
                "ether type arp arp saddr ip != 172.16.0.2 drop",
                "ether type arp accept",
                "ether type ip ip saddr != 172.16.0.2 drop",
                "ether type ip accept",
                "drop",
            ]
        );
        assert_eq!(
            chain_of(&r, "input")[0],
            "iifname { \"nta\" } ip daddr 172.16.0.0/24 ip daddr != 172.16.0.1 drop"
        );
    }

    #[test]
    fn vms_reach_only_their_own_group() {
        let isolated = NetPolicy {
            isolated: true,
            ..Default::default()
        };
        let vms = [
            vm("nta", 2, Some("alice"), NetPolicy::default()),
            vm("ntb", 3, Some("alice"), NetPolicy::default()),
            vm("ntc", 4, Some("bob"), NetPolicy::default()),
            vm("ntd", 5, None, isolated),
        ];
        let r = ruleset(&settings(), &vms, &[]);
        assert_eq!(
            chain_of(&r, "peers_nta"),
            ["oifname { \"ntb\" } accept", "drop"]
        );
        assert_eq!(
            chain_of(&r, "peers_ntb"),
            ["oifname { \"nta\" } accept", "drop"]
        );
        assert_eq!(chain_of(&r, "peers_ntc"), ["drop"]);
        assert_eq!(chain_of(&r, "peers_ntd"), ["drop"]);
    }

    #[test]
    fn egress_follows_blocks_then_the_policy() {
        let policy = NetPolicy::parse(
            Egress::Deny,
            &["198.51.100.2:8080".into(), "198.51.100.0/24".into()],
            &["198.51.100.9".into()],
            false,
        )
        .unwrap();
        let r = ruleset(&settings(), &[vm("nta", 2, Some("alice"), policy)], &[]);
        let ip = &r[r.find("table ip noid_noid0 {\n").unwrap()..];
        assert_eq!(
            chain_of(ip, "forward")[5..],
            [
                "ct direction reply accept",
                "ip daddr { 192.0.2.53 } meta l4proto { tcp, udp } th dport 53 goto vm_egress",
                "ip daddr { 169.254.0.0/16 } goto refuse",
                "goto vm_egress",
            ]
        );
        assert_eq!(
            chain_of(ip, "vm_egress"),
            ["ip saddr vmap { 172.16.0.2 : goto egress_nta }", "drop"]
        );
        assert_eq!(
            chain_of(&r, "egress_nta"),
            [
                "ip daddr 198.51.100.2/32 meta l4proto { tcp, udp } th dport 8080 accept",
                "ip daddr 198.51.100.9/32 goto refuse",
                "ip daddr 198.51.100.0/24 accept",
                "goto refuse",
            ]
        );
        let open = ruleset(
            &settings(),
            &[vm("nta", 2, None, NetPolicy::default())],
            &[],
        );
        assert_eq!(chain_of(&open, "egress_nta"), ["accept"]);
    }

    #[test]
    fn the_host_answers_vms_only_for_ping_and_named_services() {
        let r = ruleset(&settings(), &[], &[]);
        assert!(
            chain_of(&r, "input").is_empty(),
            "the bridge table's input chain has no rules without VMs"
        );
        let ip = &r[r.find("table ip noid_noid0 {\n").unwrap()..];
        assert_eq!(
            chain_of(ip, "input"),
            [
                "iifname != \"noid0\" accept",
                "ct state established,related accept",
                "ip daddr 172.16.0.1 icmp type echo-request accept",
                "ip daddr 172.16.0.1 udp dport 53 accept",
                "goto refuse",
            ]
        );
    }

    #[test]
    fn published_ports_answer_outside_the_bridge_on_the_named_addresses() {
        let ports = [PortRule {
            host_port: 20080,
            guest_ip: Ipv4Addr::new(172, 16, 0, 2),
            guest_port: 80,
        }];
        let r = ruleset(&settings(), &[], &ports);
        assert!(r.contains(
            "iifname != \"noid0\" fib daddr type local tcp dport 20080 dnat to 172.16.0.2:80"
        ));
        let mut s = settings();
        s.publish_addresses = vec![Ipv4Addr::new(10, 99, 0, 1)];
        let r = ruleset(&s, &[], &ports);
        assert!(r.contains("iifname != \"noid0\" ip daddr { 10.99.0.1 } tcp dport 20080"));
        assert_eq!(
            r.matches("tcp dport 20080 dnat to 172.16.0.2:80").count(),
            2
        );
        assert!(r.contains("ip saddr 172.16.0.0/24 oifname != \"noid0\" masquerade"));
    }

    #[test]
    fn without_isolation_only_nat_remains() {
        let mut s = settings();
        s.isolation = false;
        s.nat = false;
        let r = ruleset(&s, &[vm("nta", 2, None, NetPolicy::default())], &[]);
        assert!(!r.contains("table bridge noid_noid0 {\n"));
        assert!(!r.contains("hook forward") && !r.contains("masquerade"));
        assert!(r.starts_with("table bridge noid_noid0 {}\ndelete table bridge noid_noid0\n"));
    }

    #[test]
    fn the_kernel_accepts_the_rules() {
        // `nft -c` checks against the kernel without loading anything.
        let mut s = settings();
        super::super::nft::check(&example(&s)).unwrap();
        s.publish_addresses = vec![Ipv4Addr::new(10, 99, 0, 1)];
        s.isolation = false;
        super::super::nft::check(&example(&s)).unwrap();
    }

    #[test]
    fn host_services_parse() {
        assert_eq!(
            "tcp:5353".parse::<HostService>().unwrap(),
            HostService {
                udp: false,
                port: 5353
            }
        );
        for bad in ["53", "icmp:1", "udp:0", "udp:x"] {
            assert!(bad.parse::<HostService>().is_err(), "{bad}");
        }
    }
}
