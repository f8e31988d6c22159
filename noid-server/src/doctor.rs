//! `noid-server doctor`: what this host offers noid and what noid will use, one finding a
//! line (or a JSON array with `--json`), each with the reason when something is missing.

use std::path::Path;
use std::process::Command;

use crate::config::Config;
use crate::vmm::accel;

/// One line of the report.
#[derive(serde::Serialize)]
pub struct Finding {
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn version_of(binary: &str, arg: &str) -> Result<String, String> {
    let out = Command::new(binary)
        .arg(arg)
        .output()
        .map_err(|e| format!("{binary}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

fn find(what: &'static str, r: Result<String, String>) -> Finding {
    match r {
        Ok(detail) => Finding {
            what,
            ok: true,
            detail,
        },
        Err(detail) => Finding {
            what,
            ok: false,
            detail,
        },
    }
}

/// The filesystem type of `path` (statfs magic) and whether it shares extents (FICLONE).
fn filesystem(path: &Path) -> Result<String, String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: statfs fills a zeroed struct through a valid pointer, for a valid C path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let name = match st.f_type as u32 {
        0xEF53 => "ext4",
        0x9123683E => "btrfs",
        0x58465342 => "xfs",
        0x01021994 => "tmpfs",
        0x794c7630 => "overlayfs",
        other => return Ok(format!("{} (filesystem 0x{other:x})", path.display())),
    };
    let reflink = match crate::storage::shares_extents(path).map_err(|e| e.to_string())? {
        true => "reflink copies (disk copies share extents)",
        false => "no reflink: disk copies are sparse copies",
    };
    Ok(format!("{} on {name}, {reflink}", path.display()))
}

/// Whether QEMU VMs get copy-on-write overlays (`[vm] disk_overlays` and `qemu-img`).
fn disk_overlays(config: &Config) -> Result<String, String> {
    use crate::core::DiskOverlaysSetting::*;
    let reflinks = crate::storage::shares_extents(&config.data_dir).unwrap_or(false);
    match (config.vm.disk_overlays, reflinks) {
        (Never, _) => return Ok("never: each VM gets a copy of its disk".into()),
        (Auto, true) => {
            return Ok("auto: reflinked copies (the data dir shares extents)".into());
        }
        _ => {}
    }
    match crate::vmm::qemu_img::QemuImg::find(&config.qemu.binary) {
        Some(_) => Ok("qcow2 overlays over shared disks for QEMU VMs (qemu-img found)".into()),
        None => Err(
            "qemu-img not found (apt install qemu-utils): each QEMU VM gets a \
                     full copy of its disk"
                .into(),
        ),
    }
}

pub fn run(config: &Config) -> Vec<Finding> {
    let mut out = vec![Finding {
        what: "noid-server",
        ok: true,
        detail: noid::VERSION.to_string(),
    }];
    let qemu = config.qemu.binary.display().to_string();
    out.push(find("qemu", version_of(&qemu, "--version")));
    let fc = &config.firecracker;
    out.push(find(
        "firecracker",
        crate::vmm::firecracker::version_of(&fc.binary)
            .map(|v| format!("{v} ({})", fc.binary.display()))
            .ok_or_else(|| {
                format!(
                    "{} not found (deploy/install-firecracker.sh installs it)",
                    fc.binary.display()
                )
            }),
    ));
    if let Some(jailer) = &fc.jailer {
        out.push(find(
            "jailer",
            version_of(&jailer.display().to_string(), "--version").map(|v| {
                format!(
                    "{v} (uid {} gid {}, chroots in {})",
                    fc.uid,
                    fc.gid,
                    config.chroot_base().display()
                )
            }),
        ));
    }
    out.push(find(
        "kvm",
        accel::kvm_usable().map(|()| "usable for standard guests".to_string()),
    ));
    out.push(match crate::vmm::select::decide_here(config) {
        Ok(d) => Finding {
            what: "vmm",
            ok: d.workable(),
            detail: format!("will use {}", d.describe()),
        },
        Err(e) => Finding {
            what: "vmm",
            ok: false,
            detail: e.to_string(),
        },
    });
    out.push(find("data dir", filesystem(&config.data_dir)));
    out.push(find("free disk", free_disk(&config.data_dir)));
    for (what, addr) in [
        ("api port", config.listen),
        ("gateway port", config.http_listen),
    ] {
        out.push(find(what, port_free(addr)));
    }
    out.push(find("disk overlays", disk_overlays(config)));
    if config.vm.cgroups {
        out.push(find("cgroup moves", cgroup_moves()));
    }
    out.push(find(
        "image",
        crate::images::Base::open(&config.image_dir())
            .map(|i| {
                let vmlinux = if i.dir.join("vmlinux").exists() {
                    ", vmlinux present"
                } else {
                    ", no vmlinux"
                };
                format!(
                    "{} (id {}, kernel {}{vmlinux})",
                    i.dir.display(),
                    i.manifest.id,
                    i.manifest.kernel_release
                )
            })
            .map_err(|e| e.to_string()),
    ));
    let net = &config.network;
    if net.enabled {
        let bridge = std::path::Path::new("/sys/class/net").join(&net.bridge);
        out.push(Finding {
            what: "bridge",
            ok: true,
            detail: if bridge.exists() {
                format!("{} exists ({})", net.bridge, net.cidr)
            } else {
                format!("{} will be created on start ({})", net.bridge, net.cidr)
            },
        });
        out.push(find("tun", tun()));
        out.push(find("ip_forward", ip_forward()));
        out.push(find(
            "nftables",
            version_of("nft", "--version").map_err(|_| "nft not found: install nftables".into()),
        ));
        out.push(firewall(&config.network));
    } else {
        out.push(Finding {
            what: "network",
            ok: true,
            detail: "disabled ([network] enabled = false)".into(),
        });
    }
    out
}

fn cgroup_moves() -> Result<String, String> {
    use crate::vmm::cgroup_moves::Moves;
    match Moves::here().map_err(|e| format!("/proc/mounts: {e}"))? {
        Moves::Quick(at) => Ok(format!("quick (favordynmods on {})", at.display())),
        Moves::Slow(at, _) => Ok(format!(
            "the server remounts {} with favordynmods when it starts (else each VM start \
             waits for an RCU grace period)",
            at.display()
        )),
        Moves::SlowV1Only => Err("each VM start waits for an RCU grace period (10-18 ms): \
                                  no cgroup2 mount to set favordynmods on"
            .into()),
    }
}

/// Below this, creates and checkpoints soon fail for want of room.
const LOW_DISK: u64 = 2 << 30;

/// Room on the data directory's filesystem (or the nearest parent that exists).
fn free_disk(data_dir: &Path) -> Result<String, String> {
    let existing = data_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let free = crate::storage::free_bytes(existing).map_err(|e| e.to_string())?;
    let gib = free as f64 / (1u64 << 30) as f64;
    if free < LOW_DISK {
        Err(format!(
            "{gib:.1} GiB free on {}: VMs and checkpoints need more",
            existing.display()
        ))
    } else {
        Ok(format!("{gib:.1} GiB free on {}", existing.display()))
    }
}

/// Whether `addr` can be listened on now (a running noid-server holds its own ports).
fn port_free(addr: std::net::SocketAddr) -> Result<String, String> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(format!("{addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "{addr} is in use (by a running noid-server, or another program: see `ss -ltnp`)"
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

/// The TAP device VMs' network interfaces need.
fn tun() -> Result<String, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map(|_| "/dev/net/tun opens".to_string())
        .map_err(|e| format!("/dev/net/tun: {e} (VMs with a network need it)"))
}

/// IP forwarding, which NAT for VMs needs; the server turns it on at its start.
fn ip_forward() -> Result<String, String> {
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        Ok(v) if v.trim() == "1" => Ok("on".into()),
        Ok(_) => Ok("off now; the server turns it on when it starts".into()),
        Err(e) => Err(format!("/proc/sys/net/ipv4/ip_forward: {e}")),
    }
}

/// Whether the kernel accepts noid's rules (bridge and ip tables), checked by `nft -c`.
fn firewall(network: &crate::config::NetworkConfig) -> Finding {
    let result = network
        .firewall()
        .map_err(|e| e.to_string())
        .and_then(|settings| {
            crate::network::nft::check(&crate::network::firewall::example(&settings))
                .map_err(|e| format!("the kernel refuses noid's rules: {e}"))
        });
    Finding {
        what: "firewall",
        ok: result.is_ok(),
        detail: match result {
            Ok(()) if network.isolation => {
                "isolation rules accepted (bridge and ip tables)".to_string()
            }
            Ok(()) => {
                "NAT rules accepted; isolation is off (network.isolation = false)".to_string()
            }
            Err(e) => e,
        },
    }
}
