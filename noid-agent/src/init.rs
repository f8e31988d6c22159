//! Duties of PID 1 in a guest: mount the kernel filesystems (the initramfs loaded the
//! modules), set the hostname, bring up loopback and the network. Child reaping lives in
//! `reaper`; the tools it runs come from `toolbox`.

use std::ffi::CString;
use std::io;

use noid::guest::cmdline;

use crate::system;

fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).expect("no NUL in mount arguments");
    let (source, target, fstype) = (c(source), c(target), c(fstype));
    // SAFETY: all pointers are valid C strings that outlive the call; data is null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
    }
    Ok(())
}

pub fn run() {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let mounts = [
        ("proc", "/proc", "proc", nosuid_nodev | libc::MS_NOEXEC),
        ("sysfs", "/sys", "sysfs", nosuid_nodev | libc::MS_NOEXEC),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
        ),
        ("tmpfs", "/dev/shm", "tmpfs", nosuid_nodev),
        ("tmpfs", "/run", "tmpfs", nosuid_nodev),
    ];
    // The initramfs already made /run a tmpfs, holding the agent itself.
    let run_mounted = std::path::Path::new(crate::toolbox::DIR).exists();
    for (src, target, fs, flags) in mounts {
        if target == "/run" && run_mounted {
            continue;
        }
        if let Err(e) = mount(src, target, fs, flags) {
            eprintln!("noid-agent: mount {target}: {e}");
        }
    }
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    let _ = std::os::unix::fs::symlink("/dev/pts/ptmx", "/dev/ptmx");

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let hostname = cmdline::value(&cmdline, cmdline::HOSTNAME).or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
    });
    if let Some(h) = hostname.filter(|h| !h.is_empty()) {
        if let Err(e) = system::set_hostname(&h) {
            eprintln!("noid-agent: hostname: {e}");
        }
    }
    std::env::set_var(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    // Runs before the reaper starts, so std's own wait collects it.
    let lo_up = ["ip", "link", "set", "lo", "up"].map(String::from);
    let _ = crate::toolbox::command(&lo_up).status();
    if let Some(net) = crate::net::NetConfig::from_cmdline(&cmdline) {
        if crate::net::wait_for_device(std::time::Duration::from_secs(3)) {
            for args in net.commands() {
                let _ = crate::toolbox::command(&args).status();
            }
            net.write_resolv_conf();
        } else {
            eprintln!("noid-agent: no network device {}", crate::net::DEVICE);
        }
    }
}
