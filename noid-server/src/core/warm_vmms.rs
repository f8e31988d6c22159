//! Warm VMMs: for each boot snapshot that creates use, VMM processes started ahead of need
//! and waiting for the snapshot's state (QEMU stopped with `-incoming defer`). A create of
//! that shape takes one and starts its VM by loading the state into it, so the VMM's own
//! start (about 40 ms of QEMU loading its libraries and building the machine) is off the
//! create's path; a new one is started in the background at once.
//!
//! A warm VMM is a VM-to-be: it has the id, directory, disk overlay, cgroup and TAP that its
//! VM will have, and taking it hands those over. No record names it until then, so a crash
//! leaves only what start-up reconciliation removes anyway (a directory, cgroup and TAP that
//! no record owns, and the process found through the directory). Its directory holds the
//! file `warm-vmm` (`WARM_MARK`: "starting", then "ready") until a create takes it.
//! `[vm] warm_vmms` sets how many wait for each boot snapshot (0: none).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use super::error::io_error;
use super::launch::Source;
use super::manifest::{Manifest, MANIFEST};
use super::ports::vmm::BootSpec;
use super::rollback::{Rollback, Undo};
use super::vms::new_id;
use super::{Manager, Result};
use crate::core::model::{GuestNet, ProcessId};
use crate::network::{mac_for, tap_name};

/// The file that marks a warm VMM's directory: "starting" while its VMM starts, "ready" once
/// it waits; removed when a create takes it.
pub(super) const WARM_MARK: &str = "warm-vmm";

/// The warm VMMs that wait, and the snapshots one is being started for.
#[derive(Default)]
pub(super) struct WarmVmms {
    ready: Mutex<Vec<Warm>>,
    filling: Mutex<HashSet<String>>,
}

/// Which files a boot snapshot is: one made anew under the same key has other memory, which a
/// VMM started for the old one has mapped.
type SnapshotIdentity = (u64, u64, i64, i64);

fn snapshot_identity(snap: &Path) -> Option<SnapshotIdentity> {
    let m = std::fs::metadata(snap.join(MANIFEST)).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// A VMM waiting for the state of one boot snapshot, with what its VM will have.
pub(super) struct Warm {
    /// The id its VM takes: its directory, cgroup, TAP and MAC are named by it.
    pub id: String,
    key: String,
    snapshot: SnapshotIdentity,
    pub process: ProcessId,
    /// Stops the VMM and removes its TAP, directory and cgroup.
    pub undo: Rollback,
}

impl Manager {
    /// A warm VMM for a new VM of this shape, if one waits (still running, and started for
    /// the snapshot there now); starts another in the background either way.
    pub(super) fn take_warm_vmm(&self, image: &str, cpus: u32, memory_mib: u32) -> Option<Warm> {
        if self.limits.warm_vmms == 0 || !self.vmm.can_wait_for_state() {
            return None;
        }
        let key = self.boot_snapshot_key(image, cpus, memory_mib);
        let current = snapshot_identity(&self.layout.boot_snapshot(&key))?;
        let mut taken = None;
        let mut stale = Vec::new();
        {
            let mut ready = self.warm_vmms.ready.lock().unwrap();
            while let Some(i) = ready.iter().position(|w| w.key == key) {
                let warm = ready.swap_remove(i);
                if warm.snapshot == current && self.vmm.is_running(&warm.process) {
                    taken = Some(warm);
                    break;
                }
                stale.push(warm);
            }
        }
        self.discard_warm_vmms(stale);
        self.fill_warm_vmms(image, cpus, memory_mib);
        taken
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
        self.warm_vmms.ready.lock().unwrap().push(warm);
    }

    /// Stops the warm VMMs of boot snapshot `key` (it is going), in the background.
    pub(super) fn drop_warm_vmms(&self, key: &str) {
        let doomed = {
            let mut ready = self.warm_vmms.ready.lock().unwrap();
            let (doomed, kept) = std::mem::take(&mut *ready)
                .into_iter()
                .partition(|w| w.key == key);
            *ready = kept;
            doomed
        };
        self.discard_warm_vmms(doomed);
    }

    /// Stops every warm VMM (the server is stopping: no create will take them). One still
    /// being started is left to the next start-up's reconciliation.
    pub async fn stop_warm_vmms(&self) {
        let doomed = std::mem::take(&mut *self.warm_vmms.ready.lock().unwrap());
        for warm in doomed {
            warm.undo.run(self).await;
        }
    }

    fn discard_warm_vmms(&self, doomed: Vec<Warm>) {
        let Some(me) = self.me.upgrade().filter(|_| !doomed.is_empty()) else {
            return;
        };
        tokio::spawn(async move {
            for warm in doomed {
                tracing::debug!("stopping warm VMM {} of {}", warm.id, warm.key);
                warm.undo.run(&me).await;
            }
        });
    }

    /// Starts warm VMMs for the boot snapshot of this shape in the background until
    /// `warm_vmms` wait, unless that is under way.
    pub(super) fn fill_warm_vmms(&self, image: &str, cpus: u32, memory_mib: u32) {
        let key = self.boot_snapshot_key(image, cpus, memory_mib);
        let Some(me) = self.me.upgrade() else { return };
        if !self.warm_vmms.filling.lock().unwrap().insert(key.clone()) {
            return;
        }
        let image = image.to_string();
        tokio::spawn(async move {
            loop {
                let waiting = me
                    .warm_vmms
                    .ready
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|w| w.key == key)
                    .count();
                if waiting >= me.limits.warm_vmms as usize {
                    break;
                }
                match me.start_warm_vmm(&image, &key, cpus, memory_mib).await {
                    Ok(warm) => me.warm_vmms.ready.lock().unwrap().push(warm),
                    Err(e) => {
                        tracing::warn!("cannot start a warm VMM for boot snapshot {key}: {e}");
                        break;
                    }
                }
            }
            me.warm_vmms.filling.lock().unwrap().remove(&key);
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
            .make_warm_vmm(&id, image, &snap, cpus, memory_mib, &mut undo)
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
                Err(e)
            }
        }
    }

    async fn make_warm_vmm(
        &self,
        id: &str,
        image: &str,
        snap: &Path,
        cpus: u32,
        memory_mib: u32,
        undo: &mut Rollback,
    ) -> Result<ProcessId> {
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
        mark(&spec.dir, "ready")?;
        Ok(process)
    }

    /// Loads the snapshot in `state_dir` into the warm VMM `process` started for `spec`'s VM.
    /// A warm VMM that fails to load it is stopped and a new VMM restores the snapshot.
    pub(super) async fn load_warm_vmm(
        &self,
        spec: &BootSpec,
        state_dir: &Path,
        process: ProcessId,
    ) -> Result<ProcessId> {
        match self.vmm.load_waiting(spec, state_dir, &process).await {
            Ok(()) => Ok(process),
            Err(e) => {
                tracing::warn!("a warm VMM failed to load its snapshot ({e}): starting another");
                let _ = self
                    .vmm
                    .stop(&process, std::time::Duration::from_secs(1))
                    .await;
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
