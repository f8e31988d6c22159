//! Stop and start: a VM's VMM shut down with everything else of the VM kept (name, disk,
//! address, published ports, checkpoints), and booted again from its own disk, whether it
//! was stopped by `noid stop` or its VMM died.
//!
//! Crash safety: a stop records `stopped` only once the VMM is gone, so a crash before that
//! leaves a VM that runs (or, its VMM gone, is found stopped). A start records the new VMM
//! before it waits for the guest: a crash after that leaves a VM that runs, or is found
//! stopped and can be started again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::faults::crash_point;
use super::launch::{Source, Target};
use super::model::{VmRecord, VmState};
use super::rollback::Rollback;
use super::{detached, CoreError, Manager, Result, User};

/// `state_reason` of a VM stopped by its user.
pub(super) const STOPPED_BY_REQUEST: &str = "stopped by request";

impl Manager {
    /// Stops the caller's VM `name`: its guest is asked to sync and power off, then the VMM
    /// ends. A stopped VM is left as it is.
    pub async fn stop_vm(self: &Arc<Self>, user: &User, name: &str) -> Result<VmRecord> {
        let this = Arc::clone(self);
        let (user, name) = (user.clone(), name.to_string());
        detached("stop", async move {
            let (mut vm, _guard) = this.locked_vm(&user, &name).await?;
            match vm.state {
                VmState::Stopped => return Ok(vm),
                VmState::Running | VmState::Paused => {}
                other => {
                    return Err(CoreError::FailedPrecondition(format!(
                        "VM {name:?} is {other}; only a running or paused VM can be stopped"
                    )))
                }
            }
            let started = Instant::now();
            // A paused guest cannot power off: its VMM is stopped without asking.
            let ask_guest = vm.state != VmState::Paused;
            this.end_vmm(&mut vm, ask_guest).await?;
            crash_point("stop.vmm_stopped");
            vm.state = VmState::Stopped;
            vm.state_reason = Some(STOPPED_BY_REQUEST.into());
            this.store.update_vm(&vm)?;
            tracing::info!(
                vm = %name,
                duration_ms = started.elapsed().as_millis() as u64,
                "VM stopped: {name} ({:.2}s)",
                started.elapsed().as_secs_f64()
            );
            Ok(vm)
        })
        .await
    }

    /// Boots the caller's stopped VM `name` again from its own disk, with its name, address
    /// and ports; returns once its agent answers. A running VM is left as it is.
    pub async fn start_vm(self: &Arc<Self>, user: &User, name: &str) -> Result<VmRecord> {
        let this = Arc::clone(self);
        let (user, name) = (user.clone(), name.to_string());
        detached("start", async move {
            let (mut vm, _guard) = this.locked_vm(&user, &name).await?;
            match vm.state {
                VmState::Stopped => {}
                VmState::Running | VmState::Paused => return Ok(vm),
                VmState::Hibernated => {
                    return Err(CoreError::FailedPrecondition(format!(
                        "VM {name:?} is hibernated: wake it (noid wake) to have it as it was"
                    )))
                }
                other => {
                    return Err(CoreError::FailedPrecondition(format!(
                        "VM {name:?} is {other}; only a stopped VM can be started"
                    )))
                }
            }
            this.same_vmm(&vm)?;
            let started = Instant::now();
            // A VMM that a crash left unrecorded must not share the disk with the new one.
            if let Some(p) = this.vmm.find_process(&this.layout.vm(&vm.id)) {
                this.vmm.stop(&p, Duration::from_secs(2)).await?;
            }
            let mut undo = Rollback::default();
            let launched = this
                .launch(
                    &mut vm,
                    Source::OwnDisk,
                    Target::InPlace,
                    &mut undo,
                    "start.launched",
                )
                .await;
            if let Err(e) = launched {
                undo.run(&this).await;
                this.forget_agent(&vm.id);
                vm.process = None;
                vm.state = VmState::Stopped;
                this.store.update_vm(&vm)?;
                return Err(e);
            }
            vm.state = VmState::Running;
            vm.state_reason = None;
            this.store.update_vm(&vm)?;
            tracing::info!(
                vm = %name,
                duration_ms = started.elapsed().as_millis() as u64,
                "VM started: {name} (booted its own disk, {:.2}s)",
                started.elapsed().as_secs_f64()
            );
            Ok(vm)
        })
        .await
    }

    /// Stops the VMM of a VM whose record says stopped: a start that a crash cut short before
    /// it was reported done. The VM stays stopped, to be started again.
    pub(super) async fn stop_unfinished_start(&self, vm: &mut VmRecord) -> Result<()> {
        let running = vm.process.filter(|p| self.vmm.is_running(p));
        let found = self.vmm.find_process(&self.layout.vm(&vm.id));
        if running.is_none() && found.is_none() {
            return Ok(());
        }
        tracing::warn!(
            "VM {} was being started when the server stopped: it stays stopped",
            vm.name
        );
        self.end_vmm(vm, false).await?;
        self.store.update_vm(vm)?;
        Ok(())
    }

    /// Refuses a VM made by another kind of VMM than this server's.
    fn same_vmm(&self, vm: &VmRecord) -> Result<()> {
        let ours = self.vmm.backend();
        match vm.backend.parse::<super::model::Backend>() {
            Ok(theirs) if theirs.family() == ours.family() => Ok(()),
            _ => Err(CoreError::FailedPrecondition(format!(
                "VM {:?} was made by {}, and this server uses {ours}",
                vm.name, vm.backend
            ))),
        }
    }

    /// Ends the VM's VMMs as `stop_vmm` does and lets go of its agent connection and console;
    /// `vm.process` is cleared (the caller records it).
    pub(super) async fn end_vmm(&self, vm: &mut VmRecord, ask_guest: bool) -> Result<()> {
        self.stop_vmm(vm, ask_guest).await?;
        self.forget_agent(&vm.id);
        self.consoles.forget(&vm.id);
        vm.process = None;
        Ok(())
    }

    /// Ends the VM's VMM (asking its guest to sync and power off first when `ask_guest`),
    /// and any VMM of its directory that a crash left unrecorded.
    pub(super) async fn stop_vmm(&self, vm: &VmRecord, ask_guest: bool) -> Result<()> {
        let grace = Duration::from_secs(self.limits.shutdown_timeout_secs);
        if let Some(p) = vm.process.filter(|p| self.vmm.is_running(p)) {
            let agent = self.agent(vm);
            let asked = ask_guest && agent.shutdown(Duration::from_secs(1)).await.is_ok();
            if !(asked && self.vmm.wait_exit(&p, grace).await) {
                self.vmm.stop(&p, grace).await?;
            }
        }
        if let Some(p) = self.vmm.find_process(&self.layout.vm(&vm.id)) {
            self.vmm.stop(&p, grace).await?;
        }
        Ok(())
    }
}
