//! Start-up reconciliation: make the store agree with the host. Half-created VMs are undone,
//! half-deleted VMs are finished, half-restored VMs get their disk back (stopped: their memory
//! is gone), VMs whose VMM is gone are marked stopped, VMs left paused are resumed, a
//! hibernated VM's VMM that a crash left running is stopped, and VM directories that no
//! record owns are removed.

use std::collections::HashSet;

use super::model::Backend;
use super::rollback::{Rollback, Undo};
use super::{Manager, Result};
use crate::core::model::VmState;

impl Manager {
    pub(super) async fn reconcile(&self) -> Result<()> {
        let vms = self.store.list_vms(None)?;
        let mut known = HashSet::new();
        for mut vm in vms {
            match vm.state {
                VmState::Creating => {
                    tracing::warn!("undoing the interrupted creation of VM {}", vm.name);
                    let mut undo = Rollback::default();
                    undo.push(Undo::RemoveRecord(Box::new(vm.clone())));
                    undo.push(Undo::RemoveCgroup(vm.id.clone()));
                    undo.push(Undo::RemoveDir(self.layout.vm(&vm.id)));
                    let dir = self.layout.vm(&vm.id);
                    if let Some(p) = vm.process.or_else(|| self.vmm.find_process(&dir)) {
                        undo.push(Undo::StopVmm(p));
                    }
                    undo.run(self).await;
                }
                VmState::Deleting => {
                    tracing::warn!("finishing the interrupted deletion of VM {}", vm.name);
                    if let Err(e) = self.finish_delete(vm.clone(), true).await {
                        tracing::error!("cannot finish deleting VM {}: {e}", vm.name);
                        known.insert(vm.id);
                    }
                }
                VmState::Restoring => {
                    tracing::warn!(
                        "VM {} was being restored in place when the server stopped: it is \
                         stopped (or hibernated, if it was) with the disk it had before",
                        vm.name
                    );
                    self.undo_restore_in_place(&mut vm).await?;
                    known.insert(vm.id);
                }
                VmState::Hibernated => {
                    // Stopped after the record said hibernated, unless a crash came between.
                    self.stop_hibernated_vmm(&mut vm).await?;
                    known.insert(vm.id);
                }
                VmState::Running | VmState::Paused | VmState::Stopped => {
                    if vm.state == VmState::Stopped {
                        self.stop_unfinished_start(&mut vm).await?;
                    }
                    let ours = self.vmm.backend();
                    let theirs = vm.backend.parse::<Backend>();
                    if theirs.map(Backend::family) != Ok(ours.family()) {
                        tracing::warn!(
                            "VM {} runs on {}, but this server uses {ours}: it cannot be \
                             reached until the server uses that VMM again (vmm setting); \
                             destroy it to remove it",
                            vm.name,
                            vm.backend,
                        );
                    }
                    self.refresh_state(&mut vm)?;
                    if matches!(vm.state, VmState::Running | VmState::Paused) {
                        tracing::info!("VM {} ({}) still running", vm.name, vm.id);
                        self.watch_console(&vm);
                        self.check_run_state(&mut vm).await?;
                    }
                    // A restore in place that finished but for removing the old disk.
                    super::vm_disk::drop_aside(&self.layout.vm(&vm.id));
                    known.insert(vm.id);
                }
            }
        }
        for id in self.cgroups.vm_ids() {
            if !known.contains(&id) {
                tracing::warn!("removing the cgroup of VM {id} that no record owns");
                self.cgroups.remove(&id);
            }
        }
        self.reconcile_checkpoints()?;
        self.reconcile_hibernation_states().await?;
        self.reconcile_boot_snapshots();
        self.reconcile_network().await?;
        if let Ok(entries) = std::fs::read_dir(self.layout.vms()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    if e.path().join(super::warm_vmms::WARM_MARK).exists() {
                        tracing::info!("removing warm VMM {name} left by the last run");
                    } else {
                        tracing::warn!("removing VM directory {name} that no record owns");
                    }
                    if let Some(p) = self.vmm.find_process(&e.path()) {
                        let _ = self.vmm.stop(&p, std::time::Duration::from_secs(2)).await;
                    }
                    self.vmm.remove_vm_files(&e.path());
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        self.fill_warm_vmms_at_start();
        Ok(())
    }

    /// Removes the saved states of hibernations that no VM's record names (a crash came
    /// between saving one and recording the VM as hibernated, or before a woken VM let go
    /// of it).
    async fn reconcile_hibernation_states(&self) -> Result<()> {
        let vms = self.store.list_vms(None)?;
        for c in self.store.list_checkpoints(None)? {
            let needed = vms
                .iter()
                .any(|v| v.id == c.vm_id && v.hibernation.as_deref() == Some(c.id.as_str()));
            if c.hibernation && !needed {
                tracing::warn!(
                    "removing hibernation state {} of VM {} that no hibernated VM needs",
                    c.id,
                    c.vm_name
                );
                if let Err(e) = self.remove_checkpoint(&c).await {
                    tracing::info!("hibernation state {} kept: {e}", c.id);
                }
            }
        }
        Ok(())
    }

    /// Removes unfinished (`.tmp-`) and half-deleted (`.del-`) checkpoint directories,
    /// rebuilds records of complete checkpoints from their manifests, and drops records whose
    /// files are gone.
    fn reconcile_checkpoints(&self) -> Result<()> {
        let root = self.layout.checkpoints();
        for vm_dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            // An empty folder is no one's (VMs without checkpoints have none).
            if std::fs::remove_dir(vm_dir.path()).is_ok() {
                continue;
            }
            for entry in std::fs::read_dir(vm_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if name.starts_with(".tmp-") || name.starts_with(".del-") {
                    tracing::warn!("removing unfinished checkpoint files {}", path.display());
                    let _ = std::fs::remove_dir_all(&path);
                    continue;
                }
                if self.store.get_checkpoint(&name)?.is_some() {
                    continue;
                }
                match super::manifest::Manifest::read(&path) {
                    Ok(m) if m.checkpoint.id == name => {
                        tracing::warn!(
                            "rebuilding the record of checkpoint {name} from its manifest"
                        );
                        self.store.put_checkpoint(&m.checkpoint)?;
                    }
                    _ => {
                        tracing::warn!(
                            "removing checkpoint files without a manifest: {}",
                            path.display()
                        );
                        let _ = std::fs::remove_dir_all(&path);
                    }
                }
            }
        }
        for c in self.store.list_checkpoints(None)? {
            if !self.layout.checkpoint(&c.vm_id, &c.id).is_dir() {
                tracing::warn!(
                    "dropping the record of checkpoint {}: its files are gone",
                    c.id
                );
                self.store.remove_checkpoint(&c.id)?;
            }
        }
        Ok(())
    }
}
