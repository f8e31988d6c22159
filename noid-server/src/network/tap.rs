//! Persistent TAP devices through /dev/net/tun (netlink cannot create them): the VMM opens
//! the TAP by name, and it outlives VMM restarts until noid deletes it.

use std::io;
use std::os::fd::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens the TAP `name` (creating it if missing) and returns the open /dev/net/tun.
fn open(name: &str) -> io::Result<std::fs::File> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TAP name too long",
        ));
    }
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads an ifreq from a pointer to a live, correctly sized struct.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tun)
}

/// Sets an integer-argument TUN ioctl.
fn set(tun: &std::fs::File, request: libc::c_ulong, value: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these TUN ioctls take an integer argument, not a pointer.
    if unsafe { libc::ioctl(tun.as_raw_fd(), request, value) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the persistent TAP `name` (at most 15 bytes).
pub fn create(name: &str) -> io::Result<()> {
    set(&open(name)?, TUNSETPERSIST, 1)
}

/// Lets an unprivileged VMM (Firecracker under the jailer) open the existing TAP `name`.
pub fn set_owner(name: &str, uid: u32, gid: u32) -> io::Result<()> {
    let tun = open(name)?;
    set(&tun, TUNSETOWNER, uid as libc::c_ulong)?;
    set(&tun, TUNSETGROUP, gid as libc::c_ulong)
}
