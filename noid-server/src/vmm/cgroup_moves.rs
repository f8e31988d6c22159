//! Quick cgroup moves. Each VMM enters its VM's cgroup before it execs, and the kernel makes
//! such a move wait for an RCU grace period (10-18 ms on a 2-core host) unless a cgroup root
//! is mounted with `favordynmods`; the lock it waits on is one for the whole host, so one
//! root with the option is enough. With it, moves are quick and forks and exits cost a little
//! more, host-wide: the right trade for a host whose work is starting VMs. The server sets it
//! on the host's cgroup2 mount when it uses cgroups (as it turns `ip_forward` on for
//! networking); a host with cgroup v1 only is left as it is.

use std::io;
use std::path::PathBuf;

const OPTION: &str = "favordynmods";
/// The cgroup2 root's own options: a remount that named only `favordynmods` would turn
/// these off (systemd's `nsdelegate`, say), so the ones a mount has go along.
const ROOT_OPTIONS: &[&str] = &[
    "nsdelegate",
    "memory_localevents",
    "memory_recursiveprot",
    "memory_hugetlb_accounting",
    "pids_localevents",
];

/// What `/proc/mounts` says about cgroup moves.
#[derive(Debug, PartialEq, Eq)]
pub enum Moves {
    /// A cgroup root already has the option (its mount point).
    Quick(PathBuf),
    /// None has it; this cgroup2 mount can be given it (its root options, to keep).
    Slow(PathBuf, Vec<String>),
    /// None has it and there is no cgroup2 mount to give it to.
    SlowV1Only,
}

impl Moves {
    pub fn of(mounts: &str) -> Moves {
        let mut v2 = None;
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, point, fstype, options, ..] = f[..] else {
                continue;
            };
            if fstype != "cgroup" && fstype != "cgroup2" {
                continue;
            }
            if options.split(',').any(|o| o == OPTION) {
                return Moves::Quick(PathBuf::from(point));
            }
            if fstype == "cgroup2" && v2.is_none() {
                let keep = options
                    .split(',')
                    .filter(|o| ROOT_OPTIONS.contains(o))
                    .map(str::to_string)
                    .collect();
                v2 = Some(Moves::Slow(PathBuf::from(point), keep));
            }
        }
        v2.unwrap_or(Moves::SlowV1Only)
    }

    pub fn here() -> io::Result<Moves> {
        Ok(Moves::of(&std::fs::read_to_string("/proc/mounts")?))
    }
}

/// Makes cgroup moves quick if they are not; says which mount it changed, if any.
pub fn make_quick() -> io::Result<Option<PathBuf>> {
    let Moves::Slow(point, mut options) = Moves::here()? else {
        return Ok(None);
    };
    options.push(OPTION.to_string());
    let target = std::ffi::CString::new(point.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("a mount point with a NUL byte"))?;
    let data = std::ffi::CString::new(options.join(","))
        .map_err(|_| io::Error::other("a mount option with a NUL byte"))?;
    // SAFETY: remounts with NUL-terminated strings that outlive the call; no source or type.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(point))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
        cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
        cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,relatime,nsdelegate 0 0\n";

    #[test]
    fn finds_the_mount_to_change_or_the_one_that_has_it() {
        assert_eq!(
            Moves::of(HYBRID),
            Moves::Slow(
                PathBuf::from("/sys/fs/cgroup/unified"),
                vec!["nsdelegate".to_string()]
            )
        );
        let done = HYBRID.replace("nsdelegate", "nsdelegate,favordynmods");
        assert_eq!(
            Moves::of(&done),
            Moves::Quick(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v1 = "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n";
        assert_eq!(Moves::of(v1), Moves::SlowV1Only);
        let v1_quick = "cgroup /sys/fs/cgroup/pids cgroup rw,pids,favordynmods 0 0\n";
        assert_eq!(
            Moves::of(v1_quick),
            Moves::Quick(PathBuf::from("/sys/fs/cgroup/pids"))
        );
    }
}
