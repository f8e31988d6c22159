//! A VM's network policy: what it may reach outside the host (a default and rules of the form
//! `CIDR[:PORT[-PORT]]`) and whether it exchanges traffic with its owner's other VMs. The CLI
//! parses what users type with it and the server checks what any client sends with it, so
//! both accept and print exactly the same forms.
//!
//! Rules match the destination of a VM's outgoing packets, most specific first: a longer
//! prefix beats a shorter one, then a narrower port range beats a wider one (no port is the
//! widest), and on a tie `deny` beats `allow`. Whatever no rule matches gets the default.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::names::shorten;
use crate::v1;

/// Most rules one VM may have (allow and deny together).
pub const MAX_RULES: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "invalid rule {0:?}: expected CIDR[:PORT[-PORT]], e.g. 198.51.100.0/24:443 or 10.1.2.3"
    )]
    Syntax(String),
    #[error("invalid rule {rule:?}: {net} has host bits set (did you mean {trunc}?)")]
    HostBits {
        rule: String,
        net: String,
        trunc: String,
    },
    #[error("invalid rule {0:?}: ports are 1-65535, the first of a range not above the last")]
    Ports(String),
    #[error("too many rules ({0}): at most {MAX_RULES} per VM")]
    TooMany(usize),
    #[error("invalid egress default {0:?}: expected \"allow\" or \"deny\"")]
    Egress(String),
    #[error("network_policy.egress {0} is not EGRESS_ALLOW or EGRESS_DENY")]
    EgressValue(i32),
}

/// What happens to traffic that no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    #[default]
    Allow,
    Deny,
}

impl FromStr for Egress {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Egress::Allow),
            "deny" => Ok(Egress::Deny),
            _ => Err(PolicyError::Egress(shorten(s))),
        }
    }
}

impl Egress {
    /// The API's value; None for EGRESS_UNSPECIFIED (the server's default).
    pub fn from_proto(value: i32) -> Result<Option<Egress>, PolicyError> {
        match v1::Egress::try_from(value) {
            Ok(v1::Egress::Unspecified) => Ok(None),
            Ok(v1::Egress::Allow) => Ok(Some(Egress::Allow)),
            Ok(v1::Egress::Deny) => Ok(Some(Egress::Deny)),
            Err(_) => Err(PolicyError::EgressValue(value)),
        }
    }

    pub fn to_proto(self) -> v1::Egress {
        match self {
            Egress::Allow => v1::Egress::Allow,
            Egress::Deny => v1::Egress::Deny,
        }
    }
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Egress::Allow => "allow",
            Egress::Deny => "deny",
        })
    }
}

/// Destinations: an IPv4 network and, optionally, a port range (TCP and UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    pub net: Ipv4Net,
    /// First and last port, inclusive; None: every port and protocol.
    pub ports: Option<(u16, u16)>,
}

impl Rule {
    /// How many ports the rule covers (every protocol counts as one more than all ports).
    fn port_span(&self) -> u32 {
        match self.ports {
            Some((lo, hi)) => u32::from(hi - lo) + 1,
            None => 65536,
        }
    }
}

impl FromStr for Rule {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PolicyError::Syntax(shorten(s));
        let (net, ports) = match s.split_once(':') {
            Some((net, ports)) => (net, Some(ports)),
            None => (s, None),
        };
        let net: Ipv4Net = if net.contains('/') {
            net.parse().map_err(|_| syntax())?
        } else {
            Ipv4Net::from(net.parse::<Ipv4Addr>().map_err(|_| syntax())?)
        };
        if net.trunc() != net {
            return Err(PolicyError::HostBits {
                rule: shorten(s),
                net: net.to_string(),
                trunc: net.trunc().to_string(),
            });
        }
        let ports = match ports {
            None => None,
            Some(p) => {
                let bad = || PolicyError::Ports(shorten(s));
                let port = |x: &str| x.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
                let (lo, hi) = match p.split_once('-') {
                    Some((lo, hi)) => (port(lo)?, port(hi)?),
                    None => (port(p)?, port(p)?),
                };
                if lo > hi {
                    return Err(bad());
                }
                Some((lo, hi))
            }
        };
        Ok(Rule { net, ports })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.net.prefix_len() == 32 {
            write!(f, "{}", self.net.addr())?;
        } else {
            write!(f, "{}", self.net)?;
        }
        match self.ports {
            Some((lo, hi)) if lo == hi => write!(f, ":{lo}"),
            Some((lo, hi)) => write!(f, ":{lo}-{hi}"),
            None => Ok(()),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether matching traffic passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
}

/// A VM's network policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetPolicy {
    /// What traffic that no rule matches gets.
    pub egress: Egress,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// No traffic with the owner's other VMs (traffic with other users' VMs never passes).
    pub isolated: bool,
}

impl NetPolicy {
    /// Builds a policy from rules as the API and the command line carry them (text);
    /// duplicates are dropped.
    pub fn parse(
        egress: Egress,
        allow: &[String],
        deny: &[String],
        isolated: bool,
    ) -> Result<Self, PolicyError> {
        let rules = |list: &[String]| -> Result<Vec<Rule>, PolicyError> {
            let mut out: Vec<Rule> = Vec::new();
            for s in list {
                let r: Rule = s.trim().parse()?;
                if !out.contains(&r) {
                    out.push(r);
                }
            }
            Ok(out)
        };
        let policy = NetPolicy {
            egress,
            allow: rules(allow)?,
            deny: rules(deny)?,
            isolated,
        };
        policy.check()?;
        Ok(policy)
    }

    /// The policy in the API's form.
    pub fn to_proto(&self) -> v1::NetworkPolicy {
        let text = |rules: &[Rule]| rules.iter().map(ToString::to_string).collect();
        v1::NetworkPolicy {
            egress: self.egress.to_proto() as i32,
            allow: text(&self.allow),
            deny: text(&self.deny),
            isolated: self.isolated,
        }
    }

    /// A policy in the API's form, checked; `default_egress` stands for EGRESS_UNSPECIFIED.
    pub fn from_proto(p: &v1::NetworkPolicy, default_egress: Egress) -> Result<Self, PolicyError> {
        let egress = Egress::from_proto(p.egress)?.unwrap_or(default_egress);
        Self::parse(egress, &p.allow, &p.deny, p.isolated)
    }

    /// Checks the limits.
    pub fn check(&self) -> Result<(), PolicyError> {
        let n = self.allow.len() + self.deny.len();
        if n > MAX_RULES {
            return Err(PolicyError::TooMany(n));
        }
        Ok(())
    }

    /// Every rule with its verdict, in the order they are matched: most specific first,
    /// deny before allow when equally specific.
    pub fn ordered(&self) -> Vec<(Rule, Verdict)> {
        let mut rules: Vec<(Rule, Verdict)> = self
            .deny
            .iter()
            .map(|r| (*r, Verdict::Reject))
            .chain(self.allow.iter().map(|r| (*r, Verdict::Accept)))
            .collect();
        // A stable sort keeps deny ahead of allow among equals.
        rules.sort_by_key(|(r, _)| (std::cmp::Reverse(r.net.prefix_len()), r.port_span()));
        rules
    }

    /// The verdict for a packet to `addr` (and `port`, for TCP and UDP), as the host's rules
    /// decide it.
    pub fn verdict(&self, addr: Ipv4Addr, port: Option<u16>) -> Verdict {
        for (rule, verdict) in self.ordered() {
            let port_ok = match (rule.ports, port) {
                (None, _) => true,
                (Some((lo, hi)), Some(p)) => (lo..=hi).contains(&p),
                (Some(_), None) => false,
            };
            if rule.net.contains(&addr) && port_ok {
                return verdict;
            }
        }
        match self.egress {
            Egress::Allow => Verdict::Accept,
            Egress::Deny => Verdict::Reject,
        }
    }

    /// One line for people: "egress deny, allow 198.51.100.2:8080, peers allowed".
    pub fn summary(&self) -> String {
        let list = |rules: &[Rule]| {
            rules
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = vec![format!("egress {}", self.egress)];
        if !self.allow.is_empty() {
            parts.push(format!("allow {}", list(&self.allow)));
        }
        if !self.deny.is_empty() {
            parts.push(format!("deny {}", list(&self.deny)));
        }
        parts.push(
            if self.isolated {
                "no other VMs"
            } else {
                "own VMs reachable"
            }
            .to_string(),
        );
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_the_forms_users_write() {
        for s in [
            "10.1.2.3",
            "198.51.100.0/24",
            "198.51.100.2:8080",
            "0.0.0.0/0:53",
            "10.0.0.0/8:8000-8100",
        ] {
            assert_eq!(rule(s).to_string(), s);
        }
        assert_eq!(rule("10.1.2.3/32").to_string(), "10.1.2.3");
        assert_eq!(rule("10.1.2.3:80-80").to_string(), "10.1.2.3:80");
    }

    #[test]
    fn refuses_what_is_wrong_with_a_reason() {
        for (s, why) in [
            ("", "expected CIDR"),
            ("example.org", "expected CIDR"),
            ("10.0.0.0/33", "expected CIDR"),
            ("::1", "expected CIDR"),
            ("10.0.0.5/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.5:0", "ports are 1-65535"),
            ("10.0.0.5:70000", "ports are 1-65535"),
            ("10.0.0.5:90-80", "not above the last"),
            ("10.0.0.5:http", "ports are"),
        ] {
            let e = s.parse::<Rule>().unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        let many: Vec<String> = (0..=MAX_RULES)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert!(matches!(
            NetPolicy::parse(Egress::Deny, &many, &[], false),
            Err(PolicyError::TooMany(257))
        ));
    }

    #[test]
    fn the_most_specific_rule_wins_and_deny_wins_ties() {
        let p = NetPolicy::parse(
            Egress::Deny,
            &[
                "10.0.0.0/8".into(),
                "10.1.2.3:80".into(),
                "192.0.2.1".into(),
            ],
            &["10.1.0.0/16".into(), "192.0.2.1".into()],
            false,
        )
        .unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(p.verdict(ip("10.9.9.9"), Some(443)), Verdict::Accept);
        assert_eq!(p.verdict(ip("10.1.9.9"), Some(443)), Verdict::Reject);
        assert_eq!(p.verdict(ip("10.1.2.3"), Some(80)), Verdict::Accept);
        assert_eq!(p.verdict(ip("10.1.2.3"), Some(81)), Verdict::Reject);
        assert_eq!(p.verdict(ip("10.1.2.3"), None), Verdict::Reject);
        assert_eq!(p.verdict(ip("192.0.2.1"), Some(1)), Verdict::Reject);
        assert_eq!(p.verdict(ip("203.0.113.1"), Some(1)), Verdict::Reject);
        let open = NetPolicy::default();
        assert_eq!(open.verdict(ip("203.0.113.1"), None), Verdict::Accept);
    }

    #[test]
    fn serializes_rules_as_text() {
        let p = NetPolicy::parse(Egress::Deny, &["10.0.0.0/8:53".into()], &[], true).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"egress":"deny","allow":["10.0.0.0/8:53"],"deny":[],"isolated":true}"#
        );
        assert_eq!(serde_json::from_str::<NetPolicy>(&json).unwrap(), p);
        assert_eq!(
            p.summary(),
            "egress deny, allow 10.0.0.0/8:53, no other VMs"
        );
    }
}
