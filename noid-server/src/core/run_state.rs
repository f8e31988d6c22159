//! Whether a VM's guest runs, as its VMM sees it, kept in line with the record: a watcher
//! (for VMMs that pause guests themselves) notices what the VMM did on its own (QEMU pauses a
//! guest whose disk write failed because the host's disk is full: the VM shows as paused,
//! with the reason, and runs again once there is space) and what a crash left behind (a VM
//! still paused by an interrupted checkpoint is resumed). Users pause and resume VMs on
//! request (`pause_vm`, `resume_vm`); with `[vm] auto_resume` a call that needs the guest
//! resumes a VM its user paused.

use std::sync::Arc;
use std::time::Duration;

use super::ports::vmm::RunState;
use super::{CoreError, Manager, Result, User};
use crate::core::model::{VmRecord, VmState};

/// How often the watcher looks at every VM.
const WATCH_EVERY: Duration = Duration::from_secs(3);
/// Free space on the data directory before a VM paused by a failed disk write is resumed.
const RESUME_FREE_BYTES: u64 = 64 << 20;
/// The reason of a VM its user paused.
pub(super) const PAUSED_BY_REQUEST: &str = "paused by request; resume it to use it";
/// The reason of a VM paused by a failed disk write.
pub(super) const IO_ERROR_REASON: &str =
    "a write to its disk failed on the host (no space left?); it resumes once there is space";

impl Manager {
    /// Stops the vCPUs of the caller's running VM; a paused VM is left as it is. Its agent
    /// connection stays open: calls in flight wait and go on after the resume.
    pub async fn pause_vm(&self, user: &User, name: &str) -> Result<VmRecord> {
        let (mut vm, _guard) = self.locked_vm(user, name).await?;
        match vm.state {
            VmState::Paused => return Ok(vm),
            VmState::Running => {}
            other => {
                return Err(CoreError::FailedPrecondition(format!(
                    "VM {name:?} is {other}, not running"
                )))
            }
        }
        if let Some(why) = self.vmm.pause_unsupported() {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {name:?} cannot be paused: {why}"
            )));
        }
        self.vmm.vm(&self.layout.vm(&vm.id)).pause().await?;
        vm.state = VmState::Paused;
        vm.state_reason = Some(PAUSED_BY_REQUEST.into());
        if let Err(e) = self.store.update_vm(&vm) {
            // Not recorded: the VM runs on as its record says.
            let _ = self.vmm.vm(&self.layout.vm(&vm.id)).resume().await;
            return Err(e.into());
        }
        tracing::info!(vm = %name, "VM paused: {name}");
        Ok(vm)
    }

    /// Lets the caller's paused VM run again; a running VM is left as it is.
    pub async fn resume_vm(&self, user: &User, name: &str) -> Result<VmRecord> {
        let (mut vm, _guard) = self.locked_vm(user, name).await?;
        match vm.state {
            VmState::Running => return Ok(vm),
            VmState::Paused => {}
            other => {
                return Err(CoreError::FailedPrecondition(format!(
                    "VM {name:?} is {other}, not paused"
                )))
            }
        }
        let dir = self.layout.vm(&vm.id);
        self.vmm.vm(&dir).resume().await?;
        if self.vmm.vm(&dir).run_state().await? == RunState::IoError {
            return Err(CoreError::ResourceExhausted(format!(
                "VM {name:?} paused again: {IO_ERROR_REASON}"
            )));
        }
        vm.state = VmState::Running;
        vm.state_reason = None;
        self.store.update_vm(&vm)?;
        self.set_guest_clock(&vm).await;
        tracing::info!(vm = %name, "VM resumed: {name}");
        Ok(vm)
    }

    /// Sets the resumed guest's clock to the host's: its clock stood still while it was
    /// paused. A guest that does not answer in time keeps its clock (logged).
    async fn set_guest_clock(&self, vm: &VmRecord) {
        use rand::RngCore;
        let agent = self.agent(vm);
        let timeout = Duration::from_secs(self.limits.agent_timeout_secs);
        let mut entropy = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut entropy);
        let set = super::restore::hand_over_facts(agent.as_ref(), timeout, &vm.name, entropy, None);
        match tokio::time::timeout(timeout, set).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("VM {}: clock not set after resume: {e}", vm.name),
            Err(_) => tracing::warn!("VM {}: clock not set after resume: no answer", vm.name),
        }
    }

    /// Brings the record of `vm` (whose lock the caller holds, or which no flow can touch)
    /// and its VMM in line with each other.
    pub(super) async fn check_run_state(&self, vm: &mut VmRecord) -> Result<()> {
        if !matches!(vm.state, VmState::Running | VmState::Paused)
            || !vm.process.is_some_and(|p| self.vmm.is_running(&p))
        {
            return Ok(());
        }
        let dir = self.layout.vm(&vm.id);
        let state = match self.vmm.vm(&dir).run_state().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("cannot ask the VMM of {} how it runs: {e}", vm.name);
                return Ok(());
            }
        };
        let io_paused = vm.state_reason.as_deref() == Some(IO_ERROR_REASON);
        match (vm.state, state) {
            (VmState::Running, RunState::Paused) => {
                tracing::warn!(
                    "VM {} was left paused (by an interrupted checkpoint?): resuming it",
                    vm.name
                );
                self.vmm.vm(&dir).resume().await?;
            }
            (VmState::Running, RunState::IoError) => {
                tracing::warn!("VM {} paused: {IO_ERROR_REASON}", vm.name);
                vm.state = VmState::Paused;
                vm.state_reason = Some(IO_ERROR_REASON.into());
                self.store.update_vm(vm)?;
            }
            (VmState::Paused, RunState::IoError) if io_paused => {
                let free = crate::storage::free_bytes(self.layout.vms().as_path()).unwrap_or(0);
                if free >= RESUME_FREE_BYTES {
                    tracing::info!(
                        "VM {}: {} MiB free again on the data directory, resuming it",
                        vm.name,
                        free >> 20
                    );
                    self.vmm.vm(&dir).resume().await?;
                }
            }
            (VmState::Paused, RunState::Running) if io_paused => {
                tracing::info!("VM resumed: {} (its disk writes go through again)", vm.name);
                vm.state = VmState::Running;
                vm.state_reason = None;
                self.store.update_vm(vm)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts the watcher; it ends with the core.
    pub(super) fn watch_run_states(self: &Arc<Self>) {
        super::flow::every(
            self,
            WATCH_EVERY,
            |core| async move { core.watch_round().await },
        );
    }

    async fn watch_round(&self) {
        if !self.vmm.pauses_on_its_own() {
            return;
        }
        let Ok(vms) = self.store.list_vms(None) else {
            return;
        };
        for vm in vms {
            if !matches!(vm.state, VmState::Running | VmState::Paused) {
                continue;
            }
            // A flow at work on the VM (a checkpoint pauses it) is left alone.
            let Some(_guard) = self.try_lock_vm(&vm.id) else {
                continue;
            };
            let Ok(Some(mut vm)) = self
                .store
                .find_vm(&vm.owner, &vm.name)
                .map(|v| v.filter(|v| v.id == vm.id))
            else {
                continue;
            };
            if let Err(e) = self.check_run_state(&mut vm).await {
                tracing::warn!("VM {}: {e}", vm.name);
            }
        }
    }
}
