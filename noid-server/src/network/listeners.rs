//! Which TCP ports of this host have a listener (in the server's network namespace), from
//! `/proc/net/tcp` and `/proc/net/tcp6`: a published port must not shadow one.

use std::io;

/// The kernel's state number for LISTEN.
const LISTEN: &str = "0A";

/// Local ports in LISTEN state in a `/proc/net/tcp`-format table.
fn listening_ports(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        let port = local.rsplit_once(':')?.1;
        u16::from_str_radix(port, 16).ok()
    })
}

/// Whether any process listens on TCP `port` (IPv4 or IPv6, any address).
pub fn tcp_port_listened(port: u16) -> io::Result<bool> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => {
                if listening_ports(&text).any(|p| p == port) {
                    return Ok(true);
                }
            }
            // A host without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listeners_from_the_kernel_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     \x20  0: 0100007F:1E61 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
                     \x20  1: 0100007F:D431 0100007F:1E61 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(listening_ports(table).collect::<Vec<_>>(), [7777]);
    }

    #[test]
    fn sees_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(tcp_port_listened(port).unwrap());
        drop(l);
        assert!(!tcp_port_listened(port).unwrap());
    }
}
