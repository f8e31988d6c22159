//! The one way a VM's VMM starts: from the image (a boot) or from a snapshot (a checkpoint
//! or a boot snapshot), into a new VM directory or into the VM's own one (a restore in
//! place). Create, fork, boot-snapshot start and restore in place all come through
//! `Manager::launch`, which records each step's undo in the flow's `Rollback`.

use std::path::Path;
use std::sync::Arc;

use super::error::io_error;
use super::faults::crash_point;
use super::manifest::DISK_FILE;
use super::ports::disk::DiskOverlays;
use super::rollback::{Rollback, Undo};
use super::{Manager, Result};
use crate::core::model::{ProcessId, VmRecord};

/// What the VM starts from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'a> {
    /// The image's root disk, booting its kernel.
    Image,
    /// A checkpoint's directory: its disk and saved memory.
    Checkpoint(&'a Path),
    /// A boot snapshot's directory: like a checkpoint, plus the log of the boot it froze.
    BootSnapshot(&'a Path),
    /// The VM's own root disk, booting the kernel (a start of a stopped VM).
    OwnDisk,
}

impl Source<'_> {
    fn snapshot_dir(&self) -> Option<&Path> {
        match self {
            Source::Image | Source::OwnDisk => None,
            Source::Checkpoint(dir) | Source::BootSnapshot(dir) => Some(dir),
        }
    }
}

/// Where the VM's files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// A new VM: its directory and cgroup are made here, and undone on failure.
    New,
    /// A new VM whose directory, disk, cgroup and VMM a warm VMM made (`warm_vmms`): the
    /// VMM holds the snapshot's guest, paused. Undone on failure like `New`.
    Warm(ProcessId),
    /// The VM's existing directory (restore in place): its disk is already set aside.
    InPlace,
}

/// The console output of the boot that a boot snapshot froze, kept with it.
pub(super) const BOOT_LOG: &str = "boot.log";

/// The log line a VM started from a boot snapshot finds after the boot its memory went through.
const FROM_BOOT_SNAPSHOT: &[u8] = b"\r\n[noid: started from a boot snapshot of this image]\r\n";

impl Manager {
    /// What makes new VMs' overlays, if they get overlays rather than copies.
    pub(super) fn overlays(&self) -> Option<Arc<dyn DiskOverlays>> {
        self.overlays.clone()
    }

    /// Gives a VM of `image` (whose directory is `dir`) its root disk from `source`: an
    /// overlay over the source's disk where it can, else a copy (a boot snapshot's ready
    /// spare where there is one). A disk that is to grow to `disk_bytes` is always a copy.
    /// Says which it made.
    pub(super) async fn prepare_disk(
        &self,
        image: &str,
        disk_bytes: Option<u64>,
        source: Source<'_>,
        dir: &Path,
    ) -> Result<&'static str> {
        let disk = match source.snapshot_dir() {
            Some(snap) => snap.join(DISK_FILE),
            None => self.images.rootfs(image),
        };
        let grow = match source {
            Source::Image => disk_bytes,
            _ => None,
        };
        if let Some(overlays) = self.overlays().filter(|_| grow.is_none()) {
            let dir = dir.to_path_buf();
            super::blocking(move || super::vm_disk::make_overlay(&dir, &disk, overlays.as_ref()))
                .await
                .map_err(|e| io_error("making the disk overlay", e))?;
            return Ok("an overlay");
        }
        let rootfs = dir.join(DISK_FILE);
        let took_spare = match source {
            Source::BootSnapshot(snap) => self.take_spare_disk(snap, &rootfs),
            _ => false,
        };
        if !took_spare {
            let to = rootfs.clone();
            super::blocking(move || crate::storage::clone_file(&disk, &to))
                .await
                .map_err(|e| io_error("copying the root disk", e))?;
        }
        if let Source::BootSnapshot(snap) = source {
            self.refill_spare_disk(snap);
        }
        if let Some(bytes) = grow {
            super::blocking(move || crate::images::ext4::grow(&rootfs, bytes))
                .await
                .map_err(|e| io_error("growing the root disk", e))?;
        }
        Ok(if took_spare { "the spare" } else { "copied" })
    }

    /// Starts `vm` from `source` and returns once its agent answers (and, for a snapshot, has
    /// taken the new clock, entropy, hostname and address) and its TAP is on the bridge.
    /// `started` is the crash point right after the VMM process is recorded.
    pub(super) async fn launch(
        &self,
        vm: &mut VmRecord,
        source: Source<'_>,
        target: Target,
        undo: &mut Rollback,
        started: &'static str,
    ) -> Result<()> {
        let mut spec = self.boot_spec(vm)?;
        match target {
            Target::New => {
                undo.push(Undo::RemoveCgroup(vm.id.clone()));
                std::fs::create_dir(&spec.dir)
                    .map_err(|e| io_error("creating the VM directory", e))?;
                undo.push(Undo::RemoveDir(spec.dir.clone()));
            }
            Target::Warm(process) => {
                undo.push(Undo::RemoveCgroup(vm.id.clone()));
                undo.push(Undo::RemoveDir(spec.dir.clone()));
                undo.push(Undo::StopVmm(process));
                // It is this VM's now.
                let _ = std::fs::remove_file(spec.dir.join(super::warm_vmms::WARM_MARK));
            }
            Target::InPlace => {}
        }
        let started_at = std::time::Instant::now();
        let how = match (source, target) {
            (Source::OwnDisk, _) => "its own",
            (_, Target::Warm(_)) => "the warm VMM's",
            _ => {
                self.prepare_disk(&vm.image, vm.disk_bytes, source, &spec.dir)
                    .await?
            }
        };
        (spec.rootfs, spec.rootfs_format) = super::vm_disk::top(&spec.dir);
        tracing::debug!(
            "{}: disk ready in {:?} ({how})",
            vm.name,
            started_at.elapsed()
        );
        if let Source::BootSnapshot(dir) = source {
            // The console history starts with the boot this VM's memory went through.
            if let Ok(mut log) = std::fs::read(dir.join(BOOT_LOG)) {
                log.extend_from_slice(FROM_BOOT_SNAPSHOT);
                let _ = crate::console::begin_log(&spec.dir, &log);
            }
        }
        let process = match (source.snapshot_dir(), target) {
            (None, _) => {
                // A booting guest configures its network at once: its TAP is ready first.
                self.connect_network(vm).await?;
                self.vmm.start(&spec).await?
            }
            (Some(dir), Target::Warm(process)) => {
                self.resume_warm_vmm(vm, &spec, dir, process).await?
            }
            (Some(dir), _) => self.vmm.restore(&spec, dir).await?,
        };
        undo.push(Undo::StopVmm(process));
        self.watch_console(vm);
        vm.process = Some(process);
        self.store.update_vm(vm)?;
        crash_point(started);
        match source {
            Source::Image | Source::OwnDisk => self.wait_for_agent(vm).await,
            Source::Checkpoint(_) | Source::BootSnapshot(_) => {
                tracing::debug!("{}: VMM restored at {:?}", vm.name, started_at.elapsed());
                self.after_restore(vm).await?;
                // The guest now has its own address: its TAP may join the bridge.
                if target != Target::InPlace {
                    self.connect_network(vm).await?;
                }
                Ok(())
            }
        }
    }
}
