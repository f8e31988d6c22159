//! Facts about and changes to the guest system: kernel, hostname, clock, entropy, power.

use std::io;

use noid::agent::v1::PostRestoreRequest;

use crate::reaper::Reaper;

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|secs| (secs * 1000.0) as u64)
        .unwrap_or(0)
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: passes a pointer and length of a live byte slice.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_clock(unix_nanos: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: unix_nanos.div_euclid(1_000_000_000),
        tv_nsec: unix_nanos.rem_euclid(1_000_000_000),
    };
    // SAFETY: passes a pointer to a live timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mixes `entropy` into the kernel pool, credits it, and reseeds the CRNG so that two copies
/// of one snapshot produce different random numbers from now on.
fn add_entropy(entropy: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if entropy.is_empty() {
        return Ok(());
    }
    #[repr(C)]
    struct PoolInfo {
        entropy_count: i32,
        buf_size: i32,
        buf: [u8; 256],
    }
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    for chunk in entropy.chunks(256) {
        let mut info = PoolInfo {
            entropy_count: (chunk.len() * 8) as i32,
            buf_size: chunk.len() as i32,
            buf: [0; 256],
        };
        info.buf[..chunk.len()].copy_from_slice(chunk);
        // SAFETY: RNDADDENTROPY reads a rand_pool_info whose buf_size bytes follow the header,
        // all inside `info`.
        if unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, &info) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG) };
    Ok(())
}

pub async fn post_restore(req: &PostRestoreRequest, reaper: &Reaper) -> io::Result<()> {
    if req.unix_nanos != 0 {
        set_clock(req.unix_nanos)?;
    }
    add_entropy(&req.entropy)?;
    if !req.hostname.is_empty() {
        set_hostname(&req.hostname)?;
    }
    if let Some(n) = &req.network {
        let cfg = crate::net::NetConfig {
            mac: (!n.mac.is_empty()).then(|| n.mac.clone()),
            address: n.address.clone(),
            gateway: n.gateway.clone(),
            dns: n.dns.clone(),
        };
        for args in cfg.commands() {
            let (_child, exit) =
                reaper.spawn(crate::toolbox::command(&args).stdin(std::process::Stdio::null()))?;
            let status = exit
                .await
                .map_err(|_| io::Error::other("lost the exit status"))?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "`{}` failed ({status})",
                    args.join(" ")
                )));
            }
        }
        cfg.write_resolv_conf();
    }
    Ok(())
}

/// Stops everything and powers the machine off (as PID 1), or just exits (otherwise).
pub async fn power_off() {
    // SAFETY: plain syscalls without pointers.
    unsafe { libc::sync() };
    if std::process::id() != 1 {
        std::process::exit(0);
    }
    // SAFETY: signals every process but ourselves; no memory effects.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // SAFETY: as above.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
    }
    let root = c"/";
    // SAFETY: remounts / read-only; the path is a valid C string, the other pointers null.
    unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        )
    };
    // SAFETY: ends the machine; nothing runs after it.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
}
