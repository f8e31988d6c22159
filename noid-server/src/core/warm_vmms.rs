//! Warm VMMs: for each boot snapshot that creates use, VMMs started ahead of need with the
//! snapshot loaded, run until the guest's agent answered, and paused. A create of that shape
//! takes one and resumes it, so what a restore spends before the guest can take the VM's
//! identity (QEMU's start, loading the device state, the guest's first greeting and answer,
//! and under TCG translating the code they run) is off the create's path; a new one is
//! started in the background at once, at a low CPU priority.
//!
//! Until a create takes it, the guest has the snapshot's identity, as every VM started from
//! the snapshot has until the post-restore step: its TAP is off the bridge, and the create
//! then hands it its clock, entropy, hostname and address as for any restore.
//!
//! A warm VMM is a VM-to-be: it has the id, directory, disk overlay, cgroup and TAP that its
//! VM will have, and taking it hands those over. No record names it until then, so a crash
//! leaves only what start-up reconciliation removes anyway (a directory, cgroup and TAP that
//! no record owns, and the process found through the directory). Its directory holds the
//! file `warm-vmm` (`WARM_MARK`: "starting", then "ready") until a create takes it.
//! `[vm] warm_vmms` sets how many wait for each boot snapshot (0: none).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::io_error;
use super::launch::Source;
use super::manifest::{Manifest, MANIFEST};
use super::ports::vmm::BootSpec;
use super::rollback::{Rollback, Undo};
use super::vms::new_id;
use super::{Manager, Result};
use crate::core::model::{GuestNet, ProcessId, VmRecord};
use crate::network::{mac_for, tap_name};

/// How long a warm guest's agent may take to answer its first call.
const GREET_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// The file that marks a warm VMM's directory: "starting" while it is made, "ready" once its
/// guest waits, paused; removed when a create takes it.
pub(super) const WARM_MARK: &str = "warm-vmm";

/// The warm VMMs that wait, the ones being made, and the creates waiting for those.
pub(super) type WarmVmms = super::warm_pool::Pool<Warm>;

/// How many warm VMMs of one boot snapshot are made at once, at most: one for the pool, and
/// one more while creates wait (so that back-to-back creates keep both CPUs busy).
const MAKERS: usize = 2;

/// How long a create waits for the warm VMM being made before it starts a VMM of its own.
const WAIT_FOR_MAKING: std::time::Duration = std::time::Duration::from_secs(1);

/// Which files a boot snapshot is: one made anew under the same key has other memory, which a
/// VMM started for the old one has mapped.
type SnapshotIdentity = (u64, u64, i64, i64);

fn snapshot_identity(snap: &Path) -> Option<SnapshotIdentity> {
    let m = std::fs::metadata(snap.join(MANIFEST)).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// A VMM holding the paused guest of one boot snapshot, with what its VM will have.
pub(super) struct Warm {
    /// The id its VM takes: its directory, cgroup, TAP and MAC are named by it.
    pub id: String,
    key: String,
    snapshot: SnapshotIdentity,
    pub process: ProcessId,
    /// Stops the VMM and removes its TAP, directory and cgroup.
    pub undo: Rollback,
}

impl super::warm_pool::Keyed for Warm {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Manager {
    /// A warm VMM for a new VM of this shape: one that is ready (still running, and made for
    /// the snapshot there now), else the one being made, hurried and waited for (up to
    /// `WAIT_FOR_MAKING`: its remaining work is what the create would do itself). Starts
    /// making the next in the background either way.
    pub(super) async fn take_warm_vmm(
        &self,
        image: &str,
        cpus: u32,
        memory_mib: u32,
    ) -> Option<Warm> {
        if self.limits.warm_vmms == 0 || !self.vmm.can_wait_for_state() {
            return None;
        }
        let key = self.boot_snapshot_key(image, cpus, memory_mib);
        let Some(current) = snapshot_identity(&self.layout.boot_snapshot(&key)) else {
            // No snapshot (any more): what was made for one is of no use.
            self.drop_warm_vmms(&key);
            return None;
        };
        let usable = |w: &Warm| w.snapshot == current && self.vmm.is_running(&w.process);
        let (taken, stale) = self.warm_vmms.take_ready(&key, usable);
        self.discard_warm_vmms(stale);
        if taken.is_some() {
            self.fill_warm_vmms(image, cpus, memory_mib);
            return taken;
        }
        let waiting = self.warm_vmms.wait_for_making(&key);
        // Another maker for this create, beside the one for the pool.
        self.fill_warm_vmms(image, cpus, memory_mib);
        let (made, processes) = waiting?;
        for process in &processes {
            self.vmm.set_normal_priority(process);
        }
        match tokio::time::timeout(WAIT_FOR_MAKING, made).await {
            Ok(Ok(warm)) if usable(&warm) => Some(warm),
            Ok(Ok(warm)) => {
                self.discard_warm_vmms(vec![warm]);
                None
            }
            _ => None,
        }
    }

    /// At start-up, once reconciliation has removed what no record owns: starts warm VMMs
    /// for the boot snapshots there are.
    pub(super) fn fill_warm_vmms_at_start(&self) {
        if self.limits.warm_vmms == 0 || !self.vmm.can_wait_for_state() {
            return;
        }
        for entry in std::fs::read_dir(self.layout.boot_snapshots())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(m) = Manifest::read(&entry.path()) {
                let c = &m.checkpoint;
                self.fill_warm_vmms(&c.image, c.cpus, c.memory_mib);
            }
        }
    }

    /// Puts back a warm VMM that a create took but did not use (its VM was refused).
    pub(super) fn give_back_warm_vmm(&self, warm: Warm) {
        self.warm_vmms.put_back(warm);
    }

    /// Stops the warm VMMs of boot snapshot `key` (it is going), in the background.
    pub(super) fn drop_warm_vmms(&self, key: &str) {
        let doomed = self.warm_vmms.remove_ready(|w| w.key == key);
        self.discard_warm_vmms(doomed);
    }

    /// Stops every warm VMM (the server is stopping: no create will take them). One still
    /// being started is left to the next start-up's reconciliation.
    pub async fn stop_warm_vmms(&self) {
        for warm in self.warm_vmms.remove_ready(|_| true) {
            self.stop_warm_vmm(warm).await;
        }
    }

    /// Stops a warm VMM that no VM took, and removes what it had.
    async fn stop_warm_vmm(&self, warm: Warm) {
        tracing::debug!("stopping warm VMM {} of {}", warm.id, warm.key);
        warm.undo.run(self).await;
        self.forget_agent(&warm.id);
    }

    /// Stops the warm VMM `process` that the VM `id` took but boots instead of using (its
    /// snapshot went meanwhile), and empties the directory for the boot; the cgroup and TAP
    /// stay the VM's.
    pub(super) async fn give_up_warm_vmm(&self, id: &str, process: ProcessId) {
        let _ = self
            .vmm
            .stop(&process, std::time::Duration::from_secs(1))
            .await;
        self.forget_agent(id);
        let _ = std::fs::remove_dir_all(self.layout.vm(id));
    }

    fn discard_warm_vmms(&self, doomed: Vec<Warm>) {
        let Some(me) = self.me.upgrade().filter(|_| !doomed.is_empty()) else {
            return;
        };
        tokio::spawn(async move {
            for warm in doomed {
                me.stop_warm_vmm(warm).await;
            }
        });
    }

    /// Makes warm VMMs for the boot snapshot of this shape in the background until
    /// `warm_vmms` are ready and no create waits, unless that is under way.
    pub(super) fn fill_warm_vmms(&self, image: &str, cpus: u32, memory_mib: u32) {
        if self.limits.warm_vmms == 0 || !self.vmm.can_wait_for_state() {
            return;
        }
        let key = self.boot_snapshot_key(image, cpus, memory_mib);
        let Some(me) = self.me.upgrade() else { return };
        if !self.warm_vmms.begin_making(&key, MAKERS) {
            return;
        }
        let image = image.to_string();
        tokio::spawn(async move {
            let mut made = None;
            while me
                .warm_vmms
                .need_more(&key, me.limits.warm_vmms as usize, made)
            {
                match me.start_warm_vmm(&image, &key, cpus, memory_mib).await {
                    Ok(warm) => {
                        made = Some(warm.process);
                        me.warm_vmms.deliver(warm);
                    }
                    Err(e) => {
                        tracing::warn!("cannot start a warm VMM for boot snapshot {key}: {e}");
                        me.warm_vmms.abandon(&key);
                        return;
                    }
                }
            }
        });
    }

    /// Makes what a VM of this shape needs before its state is loaded and starts its VMM
    /// waiting for the snapshot `key`. On failure nothing is left.
    async fn start_warm_vmm(
        &self,
        image: &str,
        key: &str,
        cpus: u32,
        memory_mib: u32,
    ) -> Result<Warm> {
        let snap = self.layout.boot_snapshot(key);
        let snapshot = snapshot_identity(&snap).ok_or_else(|| {
            super::CoreError::FailedPrecondition(format!("boot snapshot {key} is gone"))
        })?;
        let id = new_id();
        let mut undo = Rollback::default();
        let made = self
            .make_warm_vmm(&id, image, key, cpus, memory_mib, &mut undo)
            .await;
        match made {
            Ok(process) => Ok(Warm {
                id,
                key: key.to_string(),
                snapshot,
                process,
                undo,
            }),
            Err(e) => {
                undo.run(self).await;
                self.forget_agent(&id);
                Err(e)
            }
        }
    }

    async fn make_warm_vmm(
        &self,
        id: &str,
        image: &str,
        key: &str,
        cpus: u32,
        memory_mib: u32,
        undo: &mut Rollback,
    ) -> Result<ProcessId> {
        let snap = &self.layout.boot_snapshot(key);
        let dir = self.layout.vm(id);
        undo.push(Undo::RemoveCgroup(id.to_string()));
        std::fs::create_dir(&dir).map_err(|e| io_error("creating the VM directory", e))?;
        undo.push(Undo::RemoveDir(dir.clone()));
        mark(&dir, "starting")?;
        self.prepare_disk(image, None, Source::BootSnapshot(snap), &dir)
            .await?;
        let net = match &self.network {
            None => None,
            Some(net) => {
                let tap = tap_name(id);
                net.create_tap(&tap, self.vmm.tap_owner())
                    .await
                    .map_err(super::net::net_error)?;
                undo.push(Undo::DeleteTap(tap.clone()));
                let cidr = net.cidr();
                // The guest takes its address after the load, from the VM's lease; the VMM
                // needs only the TAP and MAC.
                Some(GuestNet {
                    tap,
                    mac: mac_for(id),
                    ip: std::net::Ipv4Addr::UNSPECIFIED,
                    prefix: cidr.prefix,
                    gateway: cidr.gateway(),
                    dns: net.dns(),
                })
            }
        };
        let (rootfs, rootfs_format) = super::vm_disk::top(&dir);
        let spec = BootSpec {
            dir,
            kernel: self.base().kernel(),
            kernel_elf: self.base().kernel_elf(),
            initrd: self.base().initrd(),
            rootfs,
            rootfs_format,
            cpus,
            memory_mib,
            hostname: String::new(),
            net,
            cgroup: self.cgroup_slot(id, cpus, memory_mib)?,
        };
        let process = self.vmm.start_waiting(&spec, snap).await?;
        undo.push(Undo::StopVmm(process));
        if self.warm_vmms.started(key, process) {
            // A create waits for it: it is no longer work ahead of need.
            self.vmm.set_normal_priority(&process);
        }
        self.vmm.load_waiting(&spec, snap).await?;
        self.greet_warm_guest(id, &process).await?;
        self.vmm.vm(&spec.dir).pause().await?;
        mark(&spec.dir, "ready")?;
        Ok(process)
    }

    /// Waits until the agent of the warm VMM `id` answers over a connection that the VM will
    /// keep using (a first connection can land in a session that ends under it: then again).
    async fn greet_warm_guest(&self, id: &str, process: &ProcessId) -> Result<()> {
        let mut last = None;
        for _ in 0..3 {
            match self.agent_by_id(id).health(GREET_WITHIN).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            self.forget_agent(id);
            if !self.vmm.is_running(process) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(last.expect("an attempt was made").into())
    }

    /// Resumes the warm VMM `process` that `vm` took, at the normal CPU priority. One that
    /// cannot be resumed is stopped, and a new VMM restores the snapshot in `state_dir`.
    pub(super) async fn resume_warm_vmm(
        &self,
        vm: &VmRecord,
        spec: &BootSpec,
        state_dir: &Path,
        process: ProcessId,
    ) -> Result<ProcessId> {
        self.vmm.set_normal_priority(&process);
        match self.vmm.vm(&spec.dir).resume().await {
            Ok(()) => Ok(process),
            Err(e) => {
                tracing::warn!("a warm VMM could not be resumed ({e}): starting another");
                let _ = self
                    .vmm
                    .stop(&process, std::time::Duration::from_secs(1))
                    .await;
                self.forget_agent(&vm.id);
                Ok(self.vmm.restore(spec, state_dir).await?)
            }
        }
    }
}

/// Writes the warm VMM mark in `dir` (whole or not at all).
fn mark(dir: &Path, state: &str) -> Result<()> {
    let part = dir.join(format!("{WARM_MARK}.part"));
    std::fs::write(&part, format!("{state}\n"))
        .and_then(|()| std::fs::rename(&part, dir.join(WARM_MARK)))
        .map_err(|e| io_error("marking the warm VMM", e))
}
