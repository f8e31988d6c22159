//! Hibernation: a VM saved to disk with its VMM stopped, so that it holds no memory or CPU,
//! and woken later as it was (same name, address, ports, files and processes). The saved
//! state is a checkpoint of the VM's own (`CheckpointRecord::hibernation`), taken with the
//! guest left paused so that nothing it does after the save is lost; waking restores it in
//! place and removes it.
//!
//! Crash safety: the checkpoint is recorded before the VM's record says `hibernated`, and the
//! VMM is stopped only after that. A crash before the record leaves a paused VM that the run
//! state watcher resumes; after it, a VMM that still runs is stopped by reconcile.

use std::sync::Arc;
use std::time::Instant;

use super::checkpoints::AfterSave;
use super::error::io_error;
use super::faults::crash_point;
use super::manifest::Manifest;
use super::model::{VmRecord, VmState};
use super::run_state::PAUSED_BY_REQUEST;
use super::vms::new_id;
use super::{detached, CoreError, Manager, Result, User};

impl Manager {
    /// Hibernates the caller's VM `name`; a hibernated VM is left as it is.
    pub async fn hibernate_vm(self: &Arc<Self>, user: &User, name: &str) -> Result<VmRecord> {
        let this = Arc::clone(self);
        let (user, name) = (user.clone(), name.to_string());
        detached("hibernate", async move {
            let (mut vm, _guard) = this.locked_vm(&user, &name).await?;
            this.hibernate_locked(&mut vm).await?;
            Ok(vm)
        })
        .await
    }

    /// Hibernates `vm`, whose lock the caller holds.
    pub(super) async fn hibernate_locked(&self, vm: &mut VmRecord) -> Result<()> {
        let paused_by_user = vm.state_reason.as_deref() == Some(PAUSED_BY_REQUEST);
        match vm.state {
            VmState::Hibernated => return Ok(()),
            VmState::Running => {}
            // Its agent must answer to be saved: it runs again, for a moment.
            VmState::Paused if paused_by_user => {
                self.vmm.vm(&self.layout.vm(&vm.id)).resume().await?;
                vm.state = VmState::Running;
                vm.state_reason = None;
                self.store.update_vm(vm)?;
            }
            other => {
                return Err(CoreError::FailedPrecondition(format!(
                    "VM {:?} is {other}, not running",
                    vm.name
                )))
            }
        }
        let started = Instant::now();
        let id = new_id();
        let staging = self.layout.checkpoint_staging(&vm.id, &id);
        let saved = match self.save_vm(vm, &staging, AfterSave::StayPaused).await {
            Ok(saved) => saved,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let record = super::model::CheckpointRecord {
            hibernation: true,
            ..self.checkpoint_record(vm, &saved, &id, "hibernation")
        };
        let final_dir = self.layout.checkpoint(&vm.id, &id);
        let published = async {
            Manifest::new(record.clone(), saved.files)
                .publish_off_thread(&staging, &final_dir)
                .await
                .map_err(|e| io_error("writing the hibernation state", e))?;
            self.store.put_checkpoint(&record)?;
            Ok::<_, CoreError>(())
        }
        .await;
        if let Err(e) = published {
            let _ = std::fs::remove_dir_all(&staging);
            let _ = std::fs::remove_dir_all(&final_dir);
            let _ = self.vmm.vm(&self.layout.vm(&vm.id)).resume().await;
            return Err(e);
        }
        crash_point("hibernate.saved");
        vm.state = VmState::Hibernated;
        vm.state_reason = None;
        vm.hibernation = Some(id);
        self.store.update_vm(vm)?;
        crash_point("hibernate.recorded");
        self.stop_hibernated_vmm(vm).await?;
        tracing::info!(
            vm = %vm.name,
            duration_ms = started.elapsed().as_millis() as u64,
            "VM hibernated: {} ({} MiB of memory saved, {:.2}s)",
            vm.name,
            record.memory_bytes >> 20,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Stops the VMM of a VM whose record says it is hibernated.
    pub(super) async fn stop_hibernated_vmm(&self, vm: &mut VmRecord) -> Result<()> {
        let recorded = vm.process.is_some();
        // The guest is paused: it is not asked.
        self.end_vmm(vm, false).await?;
        if recorded {
            self.store.update_vm(vm)?;
        }
        Ok(())
    }

    /// Removes the saved state of a VM that no longer needs it (woken, restored to another
    /// checkpoint, destroyed). A VMM that still maps its files keeps it (logged); the VM's
    /// destruction removes it then.
    pub(super) async fn drop_hibernation_state(&self, id: &str) {
        match self.store.get_checkpoint(id) {
            Ok(Some(ckpt)) if ckpt.hibernation => {
                if let Err(e) = self.remove_checkpoint(&ckpt).await {
                    tracing::info!("hibernation state {id} of {} kept: {e}", ckpt.vm_name);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("hibernation state {id}: {e}"),
        }
    }

    /// Wakes the caller's hibernated VM `name`; a running VM is left as it is.
    pub async fn wake_vm(self: &Arc<Self>, user: &User, name: &str) -> Result<VmRecord> {
        let vm = self.get_vm(user, name)?;
        match vm.state {
            VmState::Hibernated => {}
            VmState::Running => return Ok(vm),
            other => {
                return Err(CoreError::FailedPrecondition(format!(
                    "VM {name:?} is {other}, not hibernated"
                )))
            }
        }
        let this = Arc::clone(self);
        let (user, name) = (user.clone(), name.to_string());
        detached("wake", async move {
            let started = Instant::now();
            let id = vm.hibernation.clone().ok_or_else(|| {
                CoreError::Internal(format!("VM {name:?} is hibernated without its state"))
            })?;
            let _reading = this.checkpoint_locks.get(&id).read_owned().await;
            let ckpt = this.store.get_checkpoint(&id)?.ok_or_else(|| {
                CoreError::FailedPrecondition(format!(
                    "the hibernation state of VM {name:?} is gone; destroy the VM"
                ))
            })?;
            let vm = this.restore_in_place(&user, &ckpt, None).await?;
            drop(_reading);
            this.drop_hibernation_state(&id).await;
            tracing::info!(
                vm = %name,
                duration_ms = started.elapsed().as_millis() as u64,
                "VM woken: {name} ({:.2}s)",
                started.elapsed().as_secs_f64()
            );
            Ok(vm)
        })
        .await
    }
}
