//! The core: one API of domain types and errors over the backend ports (VMM, agent, store,
//! storage). The gRPC service (and later the REST shim) only translate to and from it.
//!
//! Long flows (create, delete) are ordered steps with an undo each (`rollback`); they run in
//! their own task so a client that disconnects cannot leave one half done, and their progress
//! is in the store so a restarted server finishes or undoes them (`reconcile`). New VMs start
//! from a boot snapshot of their shape where there is one (`boot_snapshots`).

mod boot_snapshots;
mod checkpoints;
mod console;
pub mod error;
mod exec;
mod files;
mod manifest;
mod net;
mod reconcile;
mod restore;
mod rollback;
pub mod types;
mod vms;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::agent::GuestAgent;
use crate::config::VmLimits;
use crate::image::Image;
use crate::network::Network;
use crate::storage::Layout;
use crate::store::{Store, VmRecord};
use crate::vmm::Vmm;

pub use error::{CoreError, Result};
pub use net::NetOptions;
pub use types::*;

pub struct Manager {
    limits: VmLimits,
    layout: Layout,
    image: Image,
    store: Arc<dyn Store>,
    vmm: Arc<dyn Vmm>,
    consoles: crate::console::Consoles,
    pub metrics: crate::metrics::Metrics,
    /// Guest networking; None when disabled.
    network: Option<Arc<dyn Network>>,
    net_options: NetOptions,
    /// Held while the host's rules are rebuilt, and while a published port is checked and
    /// taken: rules are always made from the latest records.
    firewall_lock: tokio::sync::Mutex<()>,
    /// One agent channel per VM id, made on first use.
    agents: Mutex<HashMap<String, GuestAgent>>,
    /// Serializes the flows that change one VM (checkpoint, restore, delete), by VM id.
    vm_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    boot_snapshots: boot_snapshots::BootSnapshots,
}

impl Manager {
    /// Builds the core and reconciles the store with what really runs on the host.
    pub async fn open(
        limits: VmLimits,
        layout: Layout,
        image: Image,
        store: Arc<dyn Store>,
        vmm: Arc<dyn Vmm>,
        network: Option<Arc<dyn Network>>,
        net_options: NetOptions,
    ) -> Result<Arc<Self>> {
        let consoles = crate::console::Consoles::new(limits.console_log_bytes);
        let manager = Arc::new(Self {
            limits,
            layout,
            image,
            store,
            vmm,
            network,
            net_options,
            firewall_lock: Default::default(),
            consoles,
            metrics: Default::default(),
            agents: Mutex::new(HashMap::new()),
            vm_locks: Mutex::new(HashMap::new()),
            boot_snapshots: Default::default(),
        });
        manager.reconcile().await?;
        Ok(manager)
    }

    /// The user a request's `authorization` header names.
    pub fn authenticate(&self, header: Option<&str>) -> Result<User> {
        Ok(User(crate::auth::authenticate(
            self.store.as_ref(),
            header,
        )?))
    }

    pub fn server_info(&self) -> ServerInfo {
        ServerInfo {
            backend: self.vmm.backend(),
            image_id: self.image.manifest.id.clone(),
            kernel_release: self.image.manifest.kernel_release.clone(),
            default_cpus: self.limits.default_cpus,
            max_cpus: self.limits.max_cpus,
            default_memory_mib: self.limits.default_memory_mib,
            min_memory_mib: self.limits.min_memory_mib,
            max_memory_mib: self.limits.max_memory_mib,
        }
    }

    /// The metrics text, with what only a scrape can know (running VMs, their memory).
    pub fn render_metrics(&self) -> String {
        let vms = self.store.list_vms(None).unwrap_or_default();
        let running: Vec<_> = vms
            .iter()
            .filter(|v| v.state == crate::store::VmState::Running)
            .filter(|v| v.process.is_some_and(|p| self.vmm.is_running(&p)))
            .collect();
        let snap = crate::metrics::Snapshot {
            running_vms: running.len(),
            vm_memory: running
                .iter()
                .map(|v| {
                    let pid = v.process.map(|p| p.pid).unwrap_or(0);
                    (
                        v.name.clone(),
                        v.owner.clone(),
                        crate::metrics::resident_bytes(pid),
                    )
                })
                .collect(),
        };
        self.metrics.render(&snap)
    }

    fn agent(&self, vm: &VmRecord) -> GuestAgent {
        let mut agents = self.agents.lock().expect("agents lock");
        agents
            .entry(vm.id.clone())
            .or_insert_with(|| GuestAgent::lazy(self.vmm.agent_endpoint(&self.layout.vm(&vm.id))))
            .clone()
    }

    fn forget_agent(&self, vm_id: &str) {
        self.agents.lock().expect("agents lock").remove(vm_id);
    }

    /// Holds the VM's operation lock until the guard drops.
    async fn lock_vm(&self, vm_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.vm_locks.lock().expect("vm locks");
            Arc::clone(locks.entry(vm_id.to_string()).or_default())
        };
        lock.lock_owned().await
    }
}
