//! The guest address pool: a CIDR whose first host address is the gateway (on the bridge)
//! and whose other host addresses are leased to VMs.

use std::net::Ipv4Addr;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid CIDR {0:?}: expected an IPv4 network such as 172.16.0.0/24 (prefix 8-30)")]
pub struct CidrError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if !(8..=30).contains(&prefix) {
            return Err(err());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    /// The gateway: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Addresses that may be leased to guests, in order.
    pub fn guest_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | !self.mask();
        (first..broadcast).map(Ipv4Addr::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_enumerates() {
        let c: Cidr = "172.16.0.9/29".parse().unwrap();
        assert_eq!(c.to_string(), "172.16.0.8/29");
        assert_eq!(c.gateway(), Ipv4Addr::new(172, 16, 0, 9));
        let guests: Vec<_> = c.guest_addresses().collect();
        assert_eq!(guests.len(), 5);
        assert_eq!(guests[0], Ipv4Addr::new(172, 16, 0, 10));
        assert_eq!(guests[4], Ipv4Addr::new(172, 16, 0, 14));
        assert!(c.contains(Ipv4Addr::new(172, 16, 0, 15)));
        assert!(!c.contains(Ipv4Addr::new(172, 16, 0, 16)));
        for bad in ["172.16.0.0", "x/24", "172.16.0.0/31", "172.16.0.0/4"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap() {
        let a: Cidr = "172.16.0.0/24".parse().unwrap();
        assert!(a.overlaps(&"172.16.0.128/25".parse().unwrap()));
        assert!(a.overlaps(&"172.16.0.0/16".parse().unwrap()));
        assert!(!a.overlaps(&"172.16.1.0/24".parse().unwrap()));
    }
}
