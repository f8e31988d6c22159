//! Checkpoints: freeze a running VM (pause, save memory and device state, copy the disk,
//! resume), write the files under a temporary name with a manifest, rename them into place,
//! and record the checkpoint last. Listing, lookup and deletion.

use std::sync::Arc;
use std::time::Instant;

use super::detached;
use super::error::{io_error, Thing};
use super::faults::crash_point;
use super::manifest::{FileEntry, Manifest, Method, DISK_FILE};
use super::vm_disk::DiskCopy;
use super::vms::new_id;
use super::{CoreError, Manager, Result, User};
use crate::checksum;
use crate::core::model::{CheckpointRecord, VmRecord, VmState};
use crate::storage::sync_file;

/// Whether a VM that `save_vm` saved runs on, or stays paused (to be stopped: hibernation).
/// A save that fails lets the VM run on either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterSave {
    Run,
    StayPaused,
}

/// What `save_vm` wrote: the manifest's file entries and the sizes.
pub(super) struct SavedVm {
    pub files: Vec<FileEntry>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

fn not_found(id: &str) -> CoreError {
    CoreError::NotFound(
        Thing::Checkpoint,
        format!("checkpoint {:?} not found", noid::names::shorten(id)),
    )
}

/// Checkpoint ids are generated hex; anything else cannot name one (and never becomes a path).
fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CoreError::InvalidArgument(format!(
            "{:?} is not a checkpoint id (hexadecimal, as `noid checkpoints` shows)",
            noid::names::shorten(id)
        )));
    }
    Ok(())
}

fn not_running(name: &str, vm: &VmRecord) -> CoreError {
    CoreError::FailedPrecondition(format!("VM {name:?} is not running (state: {})", vm.state))
}

impl Manager {
    /// Checkpoints the caller's running VM `vm_name`.
    pub async fn create_checkpoint(
        self: &Arc<Self>,
        user: &User,
        vm_name: &str,
        label: &str,
    ) -> Result<CheckpointRecord> {
        noid::names::validate_label(label)?;
        // Checked again under the VM's lock: a waiting request must not queue up for nothing.
        let vm = self.get_vm(user, vm_name)?;
        if vm.state != VmState::Running {
            return Err(not_running(vm_name, &vm));
        }
        let this = Arc::clone(self);
        let (user, vm_name) = (user.clone(), vm_name.to_string());
        let label = label.to_string();
        detached("checkpoint", async move {
            let (vm, _guard) = this.locked_vm(&user, &vm_name).await?;
            if vm.state != VmState::Running {
                return Err(not_running(&vm_name, &vm));
            }
            let started = Instant::now();
            let id = new_id();
            let staging = this.layout.checkpoint_staging(&vm.id, &id);
            let result = this.write_checkpoint(&vm, &id, &label, &staging).await;
            match result {
                Ok(ckpt) => {
                    let secs = started.elapsed().as_secs_f64();
                    this.metrics
                        .checkpoint_created(secs, ckpt.memory_bytes + ckpt.disk_bytes);
                    let slow = this.checkpoint_settings.slow_secs;
                    if secs > slow {
                        this.metrics.slow_checkpoint();
                        tracing::warn!(
                            "Slow checkpoint creation: {secs:.1}s (expected <{slow}s) for {}",
                            vm.name
                        );
                    }
                    tracing::info!(
                        vm = %vm.name,
                        duration_ms = (secs * 1000.0) as u64,
                        "Checkpoint created: {} of {} ({} MiB memory, {:.2}s)",
                        ckpt.id,
                        vm.name,
                        ckpt.memory_bytes >> 20,
                        secs
                    );
                    this.apply_retention(&vm.id).await;
                    Ok(ckpt)
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    tracing::warn!("checkpoint of {} failed: {e}", vm.name);
                    Err(e)
                }
            }
        })
        .await
    }

    async fn write_checkpoint(
        &self,
        vm: &VmRecord,
        id: &str,
        label: &str,
        staging: &std::path::Path,
    ) -> Result<CheckpointRecord> {
        let saved = self.save_vm(vm, staging, AfterSave::Run).await?;
        let record = self.checkpoint_record(vm, &saved, id, label);
        let final_dir = self.layout.checkpoint(&vm.id, id);
        Manifest::new(record.clone(), saved.files)
            .publish_off_thread(staging, &final_dir)
            .await
            .map_err(|e| io_error("writing the checkpoint", e))?;
        crash_point("checkpoint.published");
        if let Err(e) = self.store.put_checkpoint(&record) {
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(e.into());
        }
        Ok(record)
    }

    /// The record of a checkpoint of `vm` whose files `save_vm` wrote.
    pub(super) fn checkpoint_record(
        &self,
        vm: &VmRecord,
        saved: &SavedVm,
        id: &str,
        label: &str,
    ) -> CheckpointRecord {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        CheckpointRecord {
            id: id.to_string(),
            owner: vm.owner.clone(),
            vm_id: vm.id.clone(),
            vm_name: vm.name.clone(),
            label: label.to_string(),
            created_at: now.as_secs() as i64,
            created_at_ms: now.as_millis() as i64,
            backend: self.vmm.backend().to_string(),
            backend_version: self.vmm.version(),
            image_id: vm.image_id.clone(),
            kernel_release: vm.kernel_release.clone(),
            cpus: vm.cpus,
            memory_mib: vm.memory_mib,
            memory_bytes: saved.memory_bytes,
            disk_bytes: saved.disk_bytes,
            parent: vm.parent_checkpoint.clone(),
            net_policy: vm.net.as_ref().map(|n| n.policy.clone()),
            image: vm.image.clone(),
            hibernation: false,
        }
    }

    /// Freezes the running VM into `staging`: memory and device state, a copy of its disk,
    /// all fsynced, with each file's size and checksum for a manifest. The VM runs again
    /// afterwards (unless `after` keeps it paused and the save worked). The caller holds the
    /// VM's lock (or is still creating the VM, which no other flow touches then) and removes
    /// `staging` on failure.
    pub(super) async fn save_vm(
        &self,
        vm: &VmRecord,
        staging: &std::path::Path,
        after: AfterSave,
    ) -> Result<SavedVm> {
        let dir = self.layout.vm(&vm.id);
        // The checkpoint holds an agent that waits for a host (not one in a session with us):
        // make sure it answers, hang up, and let no one connect until the VM runs again.
        // Exec streams open at this moment end; their commands keep running in the guest.
        let agent = self.agent(vm);
        agent
            .health(std::time::Duration::from_secs(10))
            .await
            .map_err(|e| CoreError::Unavailable(format!("VM {} does not answer: {e}", vm.name)))?;
        std::fs::create_dir_all(staging).map_err(|e| io_error("creating the checkpoint", e))?;
        let disk = Arc::new(
            DiskCopy::new(&dir, staging, self.vmm.disk_overlays())
                .map_err(|e| io_error("copying the disk", e))?,
        );
        let d = Arc::clone(&disk);
        super::blocking(move || d.before_pause())
            .await
            .map_err(|e| io_error("copying the disk", e))?;
        let a = agent.clone();
        let running = self.vmm.vm(&dir);
        let saved = async {
            running.hang_up_agent(Box::new(move || a.hang_up())).await?;
            running.pause().await?;
            crash_point("checkpoint.paused");
            let paused = Instant::now();
            // Memory and disk are written side by side: the guest is paused for the longer
            // of the two, not their sum.
            let d = Arc::clone(&disk);
            let copy = super::blocking(move || d.while_paused());
            let (state, copied) = tokio::join!(running.save_state(staging), copy);
            let saved = copied
                .map_err(|e| io_error("copying the disk", e))
                .and_then(|_| state.map_err(CoreError::from));
            crash_point("checkpoint.saved");
            // The guest runs again whatever happened above, unless it is to stay paused.
            let resumed = if after == AfterSave::StayPaused && saved.is_ok() {
                Ok(())
            } else {
                running.resume().await
            };
            tracing::debug!("VM {} paused for {:?}", vm.name, paused.elapsed());
            resumed?;
            saved
        }
        .await;
        agent.reopen();
        let state = saved?;
        super::blocking(move || disk.finish())
            .await
            .map_err(|e| io_error("folding the disk overlay into the copy", e))?;

        // Durable before the manifest and the record say the checkpoint exists.
        let names: Vec<String> = state
            .iter()
            .map(|f| f.name.clone())
            .chain([DISK_FILE.into()])
            .collect();
        let dir_to_sync = staging.to_path_buf();
        let sync = super::blocking(move || {
            names
                .iter()
                .try_for_each(|n| sync_file(&dir_to_sync.join(n)))
        });
        let disk_path = staging.join(DISK_FILE);
        let disk_bytes = std::fs::metadata(&disk_path)
            .map_err(|e| io_error("reading the disk copy", e))?
            .len();
        // Sparse files (the disk, a memory file) are checksummed over their data blocks, while
        // the files go to disk.
        let sparse: Vec<String> = state
            .iter()
            .filter(|f| f.sha256.is_none())
            .map(|f| f.name.clone())
            .chain([DISK_FILE.into()])
            .collect();
        let dir = staging.to_path_buf();
        let digests = super::blocking(move || {
            sparse
                .into_iter()
                .map(|n| Ok((checksum::disk_digest(&dir.join(&n))?, n)))
                .collect::<std::io::Result<Vec<_>>>()
        });
        let (synced, digests) = tokio::join!(sync, digests);
        synced.map_err(|e| io_error("syncing the checkpoint files", e))?;
        let digests = digests.map_err(|e| io_error("checksumming the checkpoint", e))?;
        tracing::debug!("{}: digests done", staging.display());
        let mut files: Vec<FileEntry> = state
            .iter()
            .filter_map(|f| {
                f.sha256.clone().map(|checksum| FileEntry {
                    name: f.name.clone(),
                    bytes: f.bytes,
                    method: Method::Sha256,
                    checksum,
                })
            })
            .collect();
        for (checksum, name) in digests {
            let bytes = match state.iter().find(|f| f.name == name) {
                Some(f) => f.bytes,
                None => disk_bytes,
            };
            files.push(FileEntry {
                name,
                bytes,
                method: Method::DiskBlocksSha256,
                checksum,
            });
        }
        // Memory as it takes space: a memory file's holes are free.
        let memory_bytes = state
            .iter()
            .map(|f| match f.sha256 {
                Some(_) => f.bytes,
                None => super::admission::allocated_bytes(&staging.join(&f.name)),
            })
            .sum();
        Ok(SavedVm {
            files,
            memory_bytes,
            disk_bytes,
        })
    }

    /// The caller's checkpoint `id`; another user's is NOT_FOUND.
    pub fn get_checkpoint(&self, user: &User, id: &str) -> Result<CheckpointRecord> {
        validate_id(id)?;
        self.store
            .get_checkpoint(id)?
            .filter(|c| c.owner == user.0 && !c.hibernation)
            .ok_or_else(|| not_found(id))
    }

    /// The caller's checkpoints, newest first; only those of `vm_name` when given.
    pub fn list_checkpoints(
        &self,
        user: &User,
        vm_name: Option<&str>,
    ) -> Result<Vec<CheckpointRecord>> {
        if let Some(name) = vm_name {
            noid::names::validate_name("VM", name)?;
        }
        let all = self.store.list_checkpoints(Some(&user.0))?;
        let list: Vec<_> = all
            .into_iter()
            .filter(|c| !c.hibernation && vm_name.is_none_or(|n| n == c.vm_name))
            .collect();
        // Checkpoints outlive their VM, so an empty list of a name that is neither a VM nor
        // the VM of any checkpoint is most likely a typo: say so.
        if let Some(name) = vm_name {
            if list.is_empty() && self.store.find_vm(&user.0, name)?.is_none() {
                return Err(CoreError::NotFound(
                    Thing::Vm,
                    format!("VM {name:?} not found (nor checkpoints of a VM of that name)"),
                ));
            }
        }
        Ok(list)
    }

    /// Deletes a checkpoint, unless a running VM still reads its files.
    pub async fn delete_checkpoint(&self, user: &User, id: &str) -> Result<()> {
        let ckpt = self.get_checkpoint(user, id)?;
        self.remove_checkpoint(&ckpt).await?;
        tracing::info!("Checkpoint deleted: {id} of {}", ckpt.vm_name);
        Ok(())
    }

    /// Removes checkpoint `ckpt` (anyone's), unless a running VM restored from it still maps
    /// its memory; NOT_FOUND if it went meanwhile.
    pub(super) async fn remove_checkpoint(&self, ckpt: &CheckpointRecord) -> Result<()> {
        let id = ckpt.id.as_str();
        // Not while a restore or fork reads it: wait for them, then look again.
        let _writing = self.checkpoint_locks.get(id).write_owned().await;
        if self.store.get_checkpoint(id)?.is_none() {
            return Err(not_found(id));
        }
        if self.vmm.restore_maps_memory() {
            let users: Vec<String> = self
                .store
                .list_vms(None)?
                .into_iter()
                .filter(|v| v.parent_checkpoint.as_deref() == Some(id))
                .filter(|v| v.process.is_some_and(|p| self.vmm.is_running(&p)))
                .map(|v| v.name)
                .collect();
            if !users.is_empty() {
                return Err(CoreError::FailedPrecondition(format!(
                    "checkpoint {id} is in use by running VMs restored from it: {}",
                    users.join(", ")
                )));
            }
        }
        let dir = self.layout.checkpoint(&ckpt.vm_id, id);
        // Rename first: a crash at any point leaves a `.del-` directory that reconcile
        // removes, never a record that points at half-deleted files, nor files that reconcile
        // would take for a checkpoint whose record is missing.
        let doomed = self.layout.checkpoint_doomed(&ckpt.vm_id, id);
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing the checkpoint files", e)),
        }
        self.store.remove_checkpoint(id)?;
        match std::fs::remove_dir_all(&doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing the checkpoint files", e)),
        }
        // The VM's folder goes with its last checkpoint (it is made again by the next one).
        let _ = std::fs::remove_dir(self.layout.checkpoints().join(&ckpt.vm_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::validate_id;

    #[test]
    fn checkpoint_ids_are_hex() {
        assert!(validate_id("0123456789ab").is_ok());
        for bad in ["", "../x", "abc/def", "zz", &"a".repeat(33)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
