//! Duties of PID 1 in a minimal guest: mount the kernel filesystems, load the modules the
//! image lists, set the hostname, bring up loopback. Child reaping lives in `reaper`.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

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

fn load_module(path: &str) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    let params = c"";
    // SAFETY: finit_module takes a module file descriptor we hold open and a C string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
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
    for (src, target, fs, flags) in mounts {
        if let Err(e) = mount(src, target, fs, flags) {
            eprintln!("noid-agent: mount {target}: {e}");
        }
    }
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    let _ = std::os::unix::fs::symlink("/dev/pts/ptmx", "/dev/ptmx");

    let release = system::kernel_release();
    if let Ok(list) = std::fs::read_to_string("/etc/noid/modules") {
        for m in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Err(e) = load_module(&format!("/lib/modules/{release}/{m}")) {
                eprintln!("noid-agent: module {m}: {e}");
            }
        }
    }

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
    let _ = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    if let Some(net) = crate::net::NetConfig::from_cmdline(&cmdline) {
        if crate::net::wait_for_device(std::time::Duration::from_secs(3)) {
            for args in net.commands() {
                let _ = std::process::Command::new(&args[0])
                    .args(&args[1..])
                    .status();
            }
            net.write_resolv_conf();
        } else {
            eprintln!("noid-agent: no network device {}", crate::net::DEVICE);
        }
    }
}
