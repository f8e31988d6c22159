//! Undo steps of a flow, run in reverse order when a later step fails.

use std::path::PathBuf;
use std::time::Duration;

use crate::core::model::{ProcessId, VmRecord};

use super::Manager;

pub enum Undo {
    RemoveRecord(Box<VmRecord>),
    ReleaseLease(std::net::Ipv4Addr),
    DeleteTap(String),
    RemoveDir(PathBuf),
    /// The cgroup of the VM with this id.
    RemoveCgroup(String),
    StopVmm(ProcessId),
}

#[derive(Default)]
pub struct Rollback(Vec<Undo>);

impl Rollback {
    pub fn push(&mut self, undo: Undo) {
        self.0.push(undo);
    }

    /// Takes over the steps of a sub-flow that succeeded, to be undone with this flow's own.
    pub fn extend(&mut self, other: Rollback) {
        self.0.extend(other.0);
    }

    /// Runs every undo, newest first. Failures are logged; the rest still run.
    pub async fn run(self, manager: &Manager) {
        let mut network_changed = false;
        for undo in self.0.into_iter().rev() {
            network_changed |= matches!(undo, Undo::ReleaseLease(_) | Undo::DeleteTap(_));
            match undo {
                Undo::StopVmm(p) => {
                    if let Err(e) = manager.vmm.stop(&p, Duration::from_secs(2)).await {
                        tracing::warn!("rollback: stopping VMM {}: {e}", p.pid);
                    }
                }
                Undo::RemoveCgroup(vm_id) => manager.cgroups.remove(&vm_id),
                Undo::RemoveDir(dir) => {
                    manager.vmm.remove_vm_files(&dir);
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!("rollback: removing {}: {e}", dir.display());
                        }
                    }
                }
                Undo::ReleaseLease(ip) => {
                    if let Err(e) = manager.store.release_lease(ip) {
                        tracing::warn!("rollback: releasing {ip}: {e}");
                    }
                }
                Undo::DeleteTap(name) => {
                    if let Some(net) = &manager.network {
                        if let Err(e) = net.delete_tap(&name).await {
                            tracing::warn!("rollback: deleting TAP {name}: {e}");
                        }
                    }
                }
                Undo::RemoveRecord(vm) => {
                    let vm = *vm;
                    manager.forget_agent(&vm.id);
                    manager.consoles.forget(&vm.id);
                    if let Err(e) = manager.store.remove_vm(&vm) {
                        tracing::warn!("rollback: removing record of {}: {e}", vm.name);
                    }
                }
            }
        }
        // The undone VM's rules go with it.
        if network_changed {
            if let Err(e) = manager.apply_firewall().await {
                tracing::warn!("rollback: rebuilding the network rules: {e}");
            }
        }
    }
}
