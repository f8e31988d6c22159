//! A cgroup per VM, so that one VM cannot starve the host or its neighbours: memory (the
//! guest's plus the VMM's overhead), CPU time (its vCPUs' worth, and half a CPU more for the
//! VMM's own threads: device emulation, I/O) and a cap on processes. The
//! VMM's launcher enters the cgroup before it execs (`enter_before_exec`), so every process
//! and every page of the VMM is in it from the start. cgroup v2 where its controllers are
//! available, v1 (memory, cpu, pids hierarchies) otherwise; the cgroup goes with the VM.
//!
//! Each server keeps its VMs' cgroups under a parent of its own (`noid-<hash of its data
//! directory>`), so servers that share a host never touch each other's.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where cgroups are mounted.
const MOUNT: &str = "/sys/fs/cgroup";
/// CFS period, microseconds.
const PERIOD_US: u64 = 100_000;
/// Processes (threads count) one VM may have.
const PIDS_MAX: u32 = 1024;

/// Limits of one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: u32,
}

/// The host's cgroup layout, as noid uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The unified hierarchy with memory, cpu and pids: `<MOUNT>/<parent>/<vm-id>`.
    V2 { parent: PathBuf },
    /// Separate hierarchies: `<MOUNT>/{memory,cpu,pids}/<parent>/<vm-id>`.
    V1 { parents: Vec<PathBuf> },
    /// None usable (the reason, for the log).
    Off(String),
}

/// A VM's cgroup, ready to be entered: the `cgroup.procs` files a process writes its pid to.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    procs: Vec<CString>,
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}

impl Cgroups {
    /// The layout of this host, for the server whose data directory is `data_dir`.
    pub fn detect(data_dir: &Path) -> Self {
        Self::detect_at(Path::new(MOUNT), data_dir)
    }

    fn detect_at(mount: &Path, data_dir: &Path) -> Self {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(data_dir.as_os_str().as_bytes());
        let name = format!("noid-{}", hex::encode(&hash[..4]));
        let controllers = std::fs::read_to_string(mount.join("cgroup.controllers"));
        if let Ok(c) = controllers {
            let has = |x: &str| c.split_whitespace().any(|w| w == x);
            if has("memory") && has("cpu") && has("pids") {
                return Cgroups::V2 {
                    parent: mount.join(name),
                };
            }
            return Cgroups::Off(format!(
                "cgroup v2 without the memory, cpu and pids controllers ({})",
                c.trim()
            ));
        }
        let v1: Vec<PathBuf> = ["memory", "cpu", "pids"]
            .iter()
            .map(|c| mount.join(c))
            .collect();
        if v1.iter().all(|h| h.join("cgroup.procs").exists()) {
            return Cgroups::V1 {
                parents: v1.into_iter().map(|h| h.join(&name)).collect(),
            };
        }
        Cgroups::Off(format!(
            "no cgroup hierarchies with memory, cpu and pids under {}",
            mount.display()
        ))
    }

    pub fn describe(&self) -> String {
        match self {
            Cgroups::V2 { parent } => format!("cgroup v2 ({})", parent.display()),
            Cgroups::V1 { parents } => format!(
                "cgroup v1 ({})",
                parents
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Cgroups::Off(why) => format!("off: {why}"),
        }
    }

    /// The cgroup directories of VM `vm_id`.
    pub fn dirs(&self, vm_id: &str) -> Vec<PathBuf> {
        match self {
            Cgroups::V2 { parent } => vec![parent.join(vm_id)],
            Cgroups::V1 { parents } => parents.iter().map(|p| p.join(vm_id)).collect(),
            Cgroups::Off(_) => Vec::new(),
        }
    }

    /// Makes VM `vm_id`'s cgroup with `limits` and returns the slot its VMM enters.
    pub fn prepare(&self, vm_id: &str, limits: Limits) -> io::Result<Slot> {
        let cpu_max = u64::from(limits.cpus.max(1)) * PERIOD_US + PERIOD_US / 2;
        match self {
            Cgroups::Off(_) => return Ok(Slot::default()),
            Cgroups::V2 { parent } => {
                if !parent.exists() {
                    std::fs::create_dir_all(parent)?;
                    // The parent hands the controllers down to the VMs' cgroups.
                    let root = parent.parent().unwrap_or(Path::new(MOUNT));
                    let _ = write(root, "cgroup.subtree_control", "+memory +cpu +pids");
                    write(parent, "cgroup.subtree_control", "+memory +cpu +pids")?;
                }
                let dir = parent.join(vm_id);
                std::fs::create_dir_all(&dir)?;
                write(&dir, "memory.max", &limits.memory_bytes.to_string())?;
                write(&dir, "cpu.max", &format!("{cpu_max} {PERIOD_US}"))?;
                write(&dir, "pids.max", &PIDS_MAX.to_string())?;
            }
            Cgroups::V1 { .. } => {
                for dir in self.dirs(vm_id) {
                    std::fs::create_dir_all(&dir)?;
                }
                let dirs = self.dirs(vm_id);
                write(
                    &dirs[0],
                    "memory.limit_in_bytes",
                    &limits.memory_bytes.to_string(),
                )?;
                write(&dirs[1], "cpu.cfs_period_us", &PERIOD_US.to_string())?;
                write(&dirs[1], "cpu.cfs_quota_us", &cpu_max.to_string())?;
                write(&dirs[2], "pids.max", &PIDS_MAX.to_string())?;
            }
        }
        let procs = self
            .dirs(vm_id)
            .iter()
            .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cgroup path with NUL"))?;
        Ok(Slot { procs })
    }

    /// Removes VM `vm_id`'s cgroup (once its processes are gone); a missing one is fine.
    ///
    /// A VMM that is still exiting keeps its cgroup busy for a moment; whatever process is
    /// still in it is killed (a VM that is being removed has none that should live), and
    /// removal is retried for up to two seconds.
    pub fn remove(&self, vm_id: &str) {
        for dir in self.dirs(vm_id) {
            if let Err(e) = remove_cgroup_dir(&dir) {
                tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
            }
        }
    }

    /// VM ids that have a cgroup under this server's parent.
    pub fn vm_ids(&self) -> Vec<String> {
        let parent = match self {
            Cgroups::V2 { parent } => parent.clone(),
            Cgroups::V1 { parents } => parents[0].clone(),
            Cgroups::Off(_) => return Vec::new(),
        };
        std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// Removes one cgroup directory, killing what is left in it while it is busy.
fn remove_cgroup_dir(dir: &Path) -> io::Result<()> {
    const TRIES: u32 = 100;
    for _ in 0..TRIES {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) has no memory effects; the pid is one the kernel lists
                    // in this VM's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::remove_dir(dir)
}

impl Slot {
    /// Moves the calling process into the cgroup: for a child between fork and exec, so only
    /// async-signal-safe calls (open, write, close).
    pub fn enter_before_exec(&self) -> io::Result<()> {
        // SAFETY: getpid has no memory effects.
        let pid = unsafe { libc::getpid() };
        let mut digits = [0u8; 20];
        let mut n = pid as u64;
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for procs in &self.procs {
            // SAFETY: a NUL-terminated path that outlives the call; flags only.
            let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let text = &digits[at..];
            // SAFETY: writes from a live buffer of the given length to the descriptor we opened.
            let written = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
            // SAFETY: closes the descriptor opened above, once.
            unsafe { libc::close(fd) };
            if written < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_v2_and_v1_layouts() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(
            v2.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let c = Cgroups::detect_at(v2.path(), Path::new("/var/lib/noid"));
        let Cgroups::V2 { parent } = &c else {
            panic!("{c:?}")
        };
        assert!(parent
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("noid-"));
        assert_eq!(c.dirs("abc"), [parent.join("abc")]);
        // Another data directory, another parent.
        assert_ne!(c, Cgroups::detect_at(v2.path(), Path::new("/srv/noid")));

        let partial = tempfile::tempdir().unwrap();
        std::fs::write(partial.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        assert!(matches!(
            Cgroups::detect_at(partial.path(), Path::new("/d")),
            Cgroups::Off(_)
        ));

        let v1 = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu", "pids"] {
            std::fs::create_dir(v1.path().join(h)).unwrap();
            std::fs::write(v1.path().join(h).join("cgroup.procs"), "").unwrap();
        }
        let c = Cgroups::detect_at(v1.path(), Path::new("/d"));
        assert!(
            matches!(&c, Cgroups::V1 { parents } if parents.len() == 3),
            "{c:?}"
        );
        assert_eq!(c.dirs("vm").len(), 3);
    }
}
