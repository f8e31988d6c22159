//! Admission control: a new VM (create or fork) is refused with RESOURCE_EXHAUSTED, before
//! anything is made, when the host cannot hold it (memory available after the operator's
//! reserve, space on the data directory for its disk) or when its owner's quota (VMs, vCPUs,
//! memory) would be exceeded. The check and the new record are one step under one lock, so
//! concurrent creates cannot both pass a limit that only one of them fits under.

use std::path::Path;

use super::{CoreError, Manager, Result, User};
use crate::core::model::{VmRecord, VmState};

/// What a new VM asks of the host.
#[derive(Debug, Clone, Copy)]
pub(super) struct Demand {
    pub cpus: u32,
    pub memory_mib: u32,
    /// Bytes its disk copy takes on the data directory (the source's allocated blocks).
    pub disk_bytes: u64,
}

/// Per-user limits; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    pub vms: u32,
    pub cpus: u32,
    pub memory_mib: u64,
}

/// Bytes the blocks of a file take (a sparse file only its data).
pub(super) fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// MemAvailable from /proc/meminfo, in MiB.
fn host_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn exhausted(what: String) -> CoreError {
    CoreError::ResourceExhausted(format!("VM creation failed: {what}"))
}

/// Whether `user`'s VMs plus `demand` stay within `quota`.
fn check_quota(quota: &Quota, user: &str, vms: &[VmRecord], demand: &Demand) -> Result<()> {
    let live = vms
        .iter()
        .filter(|v| v.owner == user && !matches!(v.state, VmState::Deleting));
    let (mut count, mut cpus, mut memory) = (0u32, 0u32, 0u64);
    for v in live {
        count += 1;
        cpus += v.cpus;
        memory += u64::from(v.memory_mib);
    }
    if quota.vms > 0 && count + 1 > quota.vms {
        return Err(exhausted(format!(
            "user {user} has {count} VMs, the most this server allows per user"
        )));
    }
    if quota.cpus > 0 && cpus + demand.cpus > quota.cpus {
        return Err(exhausted(format!(
            "user {user}'s VMs would have {} vCPUs, more than the {} allowed per user",
            cpus + demand.cpus,
            quota.cpus
        )));
    }
    if quota.memory_mib > 0 && memory + u64::from(demand.memory_mib) > quota.memory_mib {
        return Err(exhausted(format!(
            "user {user}'s VMs would have {} MiB of memory, more than the {} MiB allowed per \
             user",
            memory + u64::from(demand.memory_mib),
            quota.memory_mib
        )));
    }
    Ok(())
}

impl Manager {
    /// Refuses `demand` when the host or `user`'s quota cannot take it.
    pub(super) fn admit(&self, user: &User, demand: &Demand) -> Result<()> {
        let l = &self.limits;
        if let Some(available) = host_available_mib() {
            let usable = available.saturating_sub(l.host_memory_reserve_mib);
            if u64::from(demand.memory_mib) > usable {
                return Err(exhausted(format!(
                    "insufficient memory ({} MiB asked, {usable} MiB available after the \
                     host's reserve of {} MiB)",
                    demand.memory_mib, l.host_memory_reserve_mib
                )));
            }
        }
        if let Ok(free) = crate::storage::free_bytes(self.layout.vms().as_path()) {
            let needed = demand.disk_bytes + (l.disk_reserve_mib << 20);
            if free < needed {
                return Err(exhausted(format!(
                    "insufficient disk space on the data directory ({} MiB free, {} MiB \
                     needed for the VM's disk and the reserve)",
                    free >> 20,
                    needed >> 20
                )));
            }
        }
        check_quota(&self.quota, &user.0, &self.store.list_vms(None)?, demand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(owner: &str, cpus: u32, memory_mib: u32) -> VmRecord {
        VmRecord {
            cpus,
            memory_mib,
            ..VmRecord::for_test("0", owner, "v")
        }
    }

    #[test]
    fn quotas_count_only_the_users_own_vms() {
        let vms = [vm("alice", 2, 512), vm("alice", 1, 256), vm("bob", 8, 8192)];
        let small = Demand {
            cpus: 1,
            memory_mib: 256,
            disk_bytes: 0,
        };
        let quota = Quota {
            vms: 3,
            cpus: 4,
            memory_mib: 1024,
        };
        check_quota(&quota, "alice", &vms, &small).unwrap();
        let e = check_quota(&Quota { vms: 2, ..quota }, "alice", &vms, &small).unwrap_err();
        assert!(e.to_string().contains("user alice has 2 VMs"), "{e}");
        let big = Demand { cpus: 2, ..small };
        let e = check_quota(&quota, "alice", &vms, &big).unwrap_err();
        assert!(e.to_string().contains("5 vCPUs, more than the 4"), "{e}");
        let e = check_quota(
            &Quota {
                memory_mib: 1000,
                ..quota
            },
            "alice",
            &vms,
            &small,
        )
        .unwrap_err();
        assert!(matches!(e, CoreError::ResourceExhausted(_)));
        check_quota(&Quota::default(), "bob", &vms, &big).unwrap();
    }

    #[test]
    fn reads_the_hosts_memory() {
        assert!(host_available_mib().unwrap() > 0);
    }
}
