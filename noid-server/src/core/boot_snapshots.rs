//! Boot snapshots: a new VM starts from a snapshot of a freshly booted VM of the same shape
//! (image, VMM and its version, cpus, memory, network on or off) instead of booting a kernel.
//! The first create of each shape boots and, before it returns, freezes its still untouched
//! VM into `boot-snapshots/<key>/`; later creates restore that snapshot like a fork (own disk
//! overlay or copy, MAC, address, hostname, clock and fresh entropy from the agent's
//! post-restore step).
//!
//! A boot snapshot is a cache: it holds nothing of any user's, is rebuilt when missing, and
//! a damaged or unusable one is removed and the create boots instead. `[vm] boot_snapshots =
//! false` turns it off.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::io_error;
use super::faults::crash_point;
use super::launch::{Source, Target, BOOT_LOG};
use super::manifest::Manifest;
use super::rollback::Rollback;
use super::{CoreError, Manager, Result};
use crate::core::model::{CheckpointRecord, ProcessId, VmRecord};
use noid::guest::DISK_FILE;

/// How long a just-booted guest must have been quiet before its boot snapshot is taken,
/// and how long noid waits for that at most.
const SETTLE_QUIET: Duration = Duration::from_millis(100);
const SETTLE_WITHIN: Duration = Duration::from_secs(3);

/// Bump when what a boot snapshot holds changes meaning: older ones are then never used.
/// 2: QEMU VMs have a transfer disk. 3: keyed by image. 4: keyed by the VMM's flavor.
/// 5: taken once the guest has settled after its boot.
const FORMAT: &str = "5";

/// Which boot snapshots exist in usable form and which are being made, in this process.
#[derive(Default)]
pub(super) struct BootSnapshots {
    /// Checked against their manifest since this server started.
    verified: Mutex<HashSet<String>>,
    /// Being written by a create right now; other creates of that shape boot meanwhile.
    building: Mutex<HashSet<String>>,
    /// Snapshot directories whose spare disk is being copied.
    refilling: Arc<Mutex<HashSet<PathBuf>>>,
}

/// A ready copy of a boot snapshot's disk, kept beside it where VMs get copies rather than
/// overlays: the next VM of that shape takes it by a rename instead of copying the disk while its create waits (on a file system without
/// reflinks, a copy of a Debian image's data is half a second). Made again in the
/// background after each take.
const SPARE_DISK: &str = "spare-rootfs.ext4";
const SPARE_STAGING: &str = "spare-rootfs.ext4.part";

impl Manager {
    /// The snapshot key of a VM shape: everything a restore must match.
    pub(super) fn boot_snapshot_key(&self, image: &str, cpus: u32, memory_mib: u32) -> String {
        // The image by name and content: one made again under the same name is another.
        let image_id = self.images.get(image).map(|m| m.id).unwrap_or_default();
        let shape = format!(
            "{FORMAT}\n{}\n{image}\n{image_id}\n{}\n{} {}\n{}\n{}\n{}",
            self.base().manifest.id,
            self.vmm.backend(),
            self.vmm.version(),
            self.vmm.snapshot_flavor(),
            cpus,
            memory_mib,
            self.network.is_some()
        );
        hex::encode(&Sha256::digest(shape.as_bytes())[..8])
    }

    /// Whether a new VM of this shape (defaults for what is left out) would start from a boot
    /// snapshot now.
    pub fn boot_snapshot_ready(
        &self,
        image: Option<&str>,
        cpus: Option<u32>,
        memory_mib: Option<u32>,
    ) -> bool {
        let image = image.unwrap_or(crate::images::store::DEFAULT);
        let cpus = cpus.unwrap_or(self.limits.default_cpus);
        let memory_mib = memory_mib.unwrap_or(self.limits.default_memory_mib);
        let key = self.boot_snapshot_key(image, cpus, memory_mib);
        self.limits.boot_snapshots
            && self
                .layout
                .boot_snapshot(&key)
                .join(super::manifest::MANIFEST)
                .is_file()
    }

    /// Starts the new VM `vm` (record made, network attached) from the boot snapshot of its
    /// shape, if there is one, into the `warm` VMM if it has one (`warm_vmms`). `Ok(false)`:
    /// there is none (or it proved unusable and is gone, and nothing of the attempt is left,
    /// the warm VMM neither): the caller boots the VM instead.
    pub(super) async fn start_from_boot_snapshot(
        &self,
        vm: &mut VmRecord,
        warm: Option<ProcessId>,
        flow: &mut Rollback,
    ) -> Result<bool> {
        let key = self.boot_snapshot_key(&vm.image, vm.cpus, vm.memory_mib);
        let snap = self.layout.boot_snapshot(&key);
        // A VM with a grown disk boots: the guest must see its disk's size from the start.
        if !self.limits.boot_snapshots
            || vm.disk_bytes.is_some()
            || !snap.join(super::manifest::MANIFEST).is_file()
        {
            if let Some(process) = warm {
                // The snapshot went after the warm VMM was taken.
                self.give_up_warm_vmm(&vm.id, process).await;
            }
            return Ok(false);
        }
        let started = Instant::now();
        let mut undo = Rollback::default();
        let target = warm.map_or(Target::New, Target::Warm);
        match self
            .restore_boot_snapshot(vm, &key, &snap, target, &mut undo)
            .await
        {
            Ok(()) => {
                tracing::debug!(
                    "VM {} started from boot snapshot {key} in {:?}",
                    vm.name,
                    started.elapsed()
                );
                flow.extend(undo);
                Ok(true)
            }
            // Short of space or memory: the snapshot is fine, and a boot would not fare better.
            Err(e @ CoreError::ResourceExhausted(_)) => {
                undo.run(self).await;
                self.consoles.forget(&vm.id);
                self.forget_agent(&vm.id);
                vm.process = None;
                Err(e)
            }
            Err(e) => {
                tracing::warn!(
                    "VM {} could not start from boot snapshot {key} ({e}): removing it and \
                     booting instead",
                    vm.name
                );
                undo.run(self).await;
                // The boot starts with fresh channels to the guest, not the failed restore's.
                self.consoles.forget(&vm.id);
                self.forget_agent(&vm.id);
                vm.process = None;
                self.store.update_vm(vm)?;
                self.remove_boot_snapshot(&key);
                Ok(false)
            }
        }
    }

    async fn restore_boot_snapshot(
        &self,
        vm: &mut VmRecord,
        key: &str,
        snap: &Path,
        target: Target,
        undo: &mut Rollback,
    ) -> Result<()> {
        self.verify_boot_snapshot(key, snap).await?;
        let source = Source::BootSnapshot(snap);
        self.launch(vm, source, target, undo, "create.from_snapshot_started")
            .await
    }

    /// Checks the snapshot's files against its manifest, once per server run: the files are
    /// written once and never changed.
    async fn verify_boot_snapshot(&self, key: &str, snap: &Path) -> Result<()> {
        if self.boot_snapshots.verified.lock().unwrap().contains(key) {
            return Ok(());
        }
        Manifest::check_dir(snap)
            .await
            .map_err(|why| CoreError::FailedPrecondition(format!("damaged: {why}")))?;
        self.mark_verified(key);
        Ok(())
    }

    /// Freezes the just-booted VM `vm` (nothing has run in it yet) as the boot snapshot of
    /// its shape, unless there is one or another create is making it. Failures are logged
    /// and leave nothing: the VM runs on either way.
    pub(super) async fn make_boot_snapshot(&self, vm: &VmRecord) {
        if !self.limits.boot_snapshots || vm.disk_bytes.is_some() {
            return;
        }
        let key = self.boot_snapshot_key(&vm.image, vm.cpus, vm.memory_mib);
        let snap = self.layout.boot_snapshot(&key);
        if snap.is_dir()
            || !self
                .boot_snapshots
                .building
                .lock()
                .unwrap()
                .insert(key.clone())
        {
            return;
        }
        let started = Instant::now();
        let staging = self.layout.boot_snapshot_staging(&key);
        let _ = std::fs::remove_dir_all(&staging);
        match self.write_boot_snapshot(vm, &key, &staging, &snap).await {
            Ok(()) => {
                tracing::info!(
                    "boot snapshot {key} made ({} cpus, {} MiB, {:.2}s): VMs of this size now \
                     start from it",
                    vm.cpus,
                    vm.memory_mib,
                    started.elapsed().as_secs_f64()
                );
                self.refill_spare_disk(&snap);
                self.fill_warm_vmms(&vm.image, vm.cpus, vm.memory_mib);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                tracing::warn!("no boot snapshot for VMs like {}: {e}", vm.name);
            }
        }
        self.boot_snapshots.building.lock().unwrap().remove(&key);
    }

    /// Lets the just-booted guest finish its start-up work (a login shell's profile, say)
    /// first: what still runs when the snapshot is taken runs again in every VM started from
    /// it. A guest that does not settle in time is frozen as it is.
    async fn settle_guest(&self, vm: &VmRecord) {
        let started = Instant::now();
        match self.agent(vm).settle(SETTLE_QUIET, SETTLE_WITHIN).await {
            Ok(settled) => tracing::debug!(
                "{}: {} after {:?}",
                vm.name,
                if settled { "settled" } else { "not settled" },
                started.elapsed()
            ),
            Err(e) => tracing::debug!("{}: no settle ({e})", vm.name),
        }
    }

    async fn write_boot_snapshot(
        &self,
        vm: &VmRecord,
        key: &str,
        staging: &Path,
        snap: &Path,
    ) -> Result<()> {
        self.settle_guest(vm).await;
        let saved = self
            .save_vm(vm, staging, super::checkpoints::AfterSave::Run)
            .await?;
        let boot_log = crate::console::history(&self.layout.vm(&vm.id));
        std::fs::write(staging.join(BOOT_LOG), boot_log)
            .map_err(|e| io_error("writing the boot log", e))?;
        // Nobody's: no owner, no VM, no parent.
        let record = CheckpointRecord {
            owner: String::new(),
            vm_id: String::new(),
            vm_name: String::new(),
            parent: None,
            net_policy: None,
            ..self.checkpoint_record(vm, &saved, key, "boot snapshot")
        };
        Manifest::new(record, saved.files)
            .publish_off_thread(staging, snap)
            .await
            .map_err(|e| io_error("writing the boot snapshot", e))?;
        crash_point("create.boot_snapshot_saved");
        self.mark_verified(key);
        Ok(())
    }

    fn mark_verified(&self, key: &str) {
        self.boot_snapshots
            .verified
            .lock()
            .unwrap()
            .insert(key.to_string());
    }

    /// Removes a boot snapshot. VMs restored from it keep running: a VMM that maps its memory
    /// file holds the file itself, not its name.
    fn remove_boot_snapshot(&self, key: &str) {
        self.boot_snapshots.verified.lock().unwrap().remove(key);
        self.drop_warm_vmms(key);
        let snap = self.layout.boot_snapshot(key);
        let doomed = self.layout.boot_snapshot_doomed(key);
        if std::fs::rename(&snap, &doomed).is_ok() {
            let _ = std::fs::remove_dir_all(&doomed);
        }
    }

    /// Moves the spare disk of the boot snapshot in `snap` to `dest`; false if there is none
    /// (another create took it, or it is still being made).
    pub(super) fn take_spare_disk(&self, snap: &Path, dest: &Path) -> bool {
        std::fs::rename(snap.join(SPARE_DISK), dest).is_ok()
    }

    /// Makes the spare disk of the boot snapshot in `snap` in the background, unless it is
    /// there or being made.
    pub(super) fn refill_spare_disk(&self, snap: &Path) {
        // VMs on overlays need no copy.
        if self.overlays().is_some()
            || snap.join(SPARE_DISK).exists()
            || !self
                .boot_snapshots
                .refilling
                .lock()
                .unwrap()
                .insert(snap.to_path_buf())
        {
            return;
        }
        let snap = snap.to_path_buf();
        let refilling = Arc::clone(&self.boot_snapshots.refilling);
        tokio::task::spawn_blocking(move || {
            let (src, part) = (snap.join(DISK_FILE), snap.join(SPARE_STAGING));
            let _ = std::fs::remove_file(&part);
            let made = crate::storage::clone_file(&src, &part)
                .and_then(|_| std::fs::rename(&part, snap.join(SPARE_DISK)));
            if let Err(e) = made {
                tracing::debug!("spare disk for {}: {e}", snap.display());
                let _ = std::fs::remove_file(&part);
            }
            refilling.lock().unwrap().remove(&snap);
        });
    }

    /// Removes the boot snapshots of image `image` (it is being removed).
    pub(super) fn remove_boot_snapshots_of(&self, image: &str) {
        for entry in std::fs::read_dir(self.layout.boot_snapshots())
            .into_iter()
            .flatten()
            .flatten()
        {
            if Manifest::read(&entry.path()).is_ok_and(|m| m.checkpoint.image == image) {
                tracing::info!("removing boot snapshot {}", entry.path().display());
                self.drop_warm_vmms(&entry.file_name().to_string_lossy());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// At start: removes unfinished snapshots and those no create can use any more (another
    /// image, VMM version or network setting, or an older format: the name is no longer the
    /// key of the shape it holds); with boot snapshots off, all of them.
    pub(super) fn reconcile_boot_snapshots(&self) {
        for entry in std::fs::read_dir(self.layout.boot_snapshots())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path: PathBuf = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = self.limits.boot_snapshots
                && Manifest::read(&path).is_ok_and(|m| {
                    name == self.boot_snapshot_key(
                        &m.checkpoint.image,
                        m.checkpoint.cpus,
                        m.checkpoint.memory_mib,
                    )
                });
            if !keep {
                tracing::info!("removing boot snapshot {}", path.display());
                let _ = std::fs::remove_dir_all(&path);
            } else {
                // Spare disks are not synced: one a crash left may be torn. Made again later.
                let _ = std::fs::remove_file(path.join(SPARE_DISK));
                let _ = std::fs::remove_file(path.join(SPARE_STAGING));
            }
        }
    }
}
