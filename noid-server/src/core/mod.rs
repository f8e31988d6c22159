//! The core: one API of domain types (`model`, `types`) and errors over the ports it owns
//! (`ports`: store, guest agent, VMM; networking's is `network::Network`). The gRPC service and
//! the REST gateway above only translate to and from it; the backends below implement the
//! ports and depend on nothing here but the model and the ports.
//!
//! Long flows (create, delete, checkpoint, restore) are ordered steps with an undo each
//! (`rollback`); they run in their own task (`flow::detached`) so a client that disconnects
//! cannot leave one half done, and their progress is in the store so a restarted server
//! finishes or undoes them (`reconcile`). Every VM starts through `launch`, from the image or
//! a snapshot; new VMs from a boot snapshot of their shape where there is one
//! (`boot_snapshots`).

mod activity;
mod admission;
mod boot_snapshots;
mod checkpoints;
mod console;
mod dockerfile_build;
pub mod error;
mod exec;
pub mod faults;
mod files;
mod flow;
mod fork_many;
mod hibernate;
mod images;
mod launch;
mod limits;
mod locks;
mod manifest;
pub mod model;
mod net;
pub mod ports;
mod power;
mod reconcile;
mod restore;
mod retention;
mod rollback;
mod run_state;
mod sessions;
#[cfg(test)]
mod tests;
mod time_limits;
pub mod types;
mod vm_disk;
mod vms;
mod warm_pool;
mod warm_vmms;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::model::VmRecord;
use crate::core::ports::store::Store;
use crate::images::{Base, ImageStore};
use crate::network::Network;
use crate::storage::Layout;
use ports::agent::{AgentConnector, GuestAgent};
use ports::vmm::Vmm;

pub use activity::Hold;
pub use admission::Quota;
pub use console::{LogPiece, Logs, LogsQuery};
pub use error::{CoreError, Result, Thing};
pub use files::CopyTarget;
use flow::{blocking, detached};
pub use images::{ImageSource, Progress};
pub use limits::{CheckpointSettings, DiskOverlaysSetting, VmLimits};
pub use net::NetOptions;
pub use time_limits::TimeLimits;
pub use types::*;

pub struct Manager {
    limits: VmLimits,
    checkpoint_settings: CheckpointSettings,
    layout: Layout,
    images: Arc<ImageStore>,
    store: Arc<dyn Store>,
    vmm: Arc<dyn Vmm>,
    consoles: crate::console::Consoles,
    pub metrics: crate::metrics::Metrics,
    /// Guest networking; None when disabled.
    network: Option<Arc<dyn Network>>,
    net_options: NetOptions,
    quota: Quota,
    /// Held while a new VM is checked against the host's resources and quotas and recorded.
    admission_lock: tokio::sync::Mutex<()>,
    /// Held while the host's rules are rebuilt, and while a published port is checked and
    /// taken: rules are always made from the latest records.
    firewall_lock: tokio::sync::Mutex<()>,
    /// One agent channel per VM id, made on first use.
    agents: Mutex<HashMap<String, Arc<dyn GuestAgent>>>,
    /// Makes the agent handle of a VM.
    connector: Arc<dyn AgentConnector>,
    /// Serializes the flows that change one VM (checkpoint, restore, delete), by VM id.
    vm_locks: locks::LockTable<tokio::sync::Mutex<()>>,
    /// Restores read a checkpoint under its read lock; deleting it takes the write lock.
    checkpoint_locks: locks::LockTable<tokio::sync::RwLock<()>>,
    /// Checkpoints whose files were checked against their manifest in this server run, with
    /// what the files were then (`manifest::Fingerprint`).
    verified_checkpoints: Mutex<HashMap<String, manifest::Fingerprint>>,
    boot_snapshots: boot_snapshots::BootSnapshots,
    /// VMMs started ahead of need for the boot snapshots in use.
    warm_vmms: warm_vmms::WarmVmms,
    /// Where VMMs get their cgroup.
    cgroups: crate::vmm::cgroup::Cgroups,
    /// What makes new VMs' disk overlays, if they get overlays rather than copies.
    overlays: Option<Arc<dyn ports::disk::DiskOverlays>>,
    /// The core itself, for calls that start flows of their own from `&self` (waking a VM
    /// on use).
    me: std::sync::Weak<Manager>,
    /// When each VM (by id) was last called, and how many calls to it are open.
    activity: activity::Activity,
}

/// What the core is made of: its settings and the backends behind its ports.
pub struct Parts {
    pub limits: VmLimits,
    pub checkpoints: CheckpointSettings,
    pub layout: Layout,
    /// The base VMs boot and the images their disks come from.
    pub images: Arc<ImageStore>,
    pub store: Arc<dyn Store>,
    pub vmm: Arc<dyn Vmm>,
    /// Guest networking; None gives VMs no network.
    pub network: Option<Arc<dyn Network>>,
    /// Reaches the agents in the guests (`agent::Connector`).
    pub agents: Arc<dyn AgentConnector>,
    pub net_options: NetOptions,
    pub quota: Quota,
}

impl Manager {
    /// Builds the core and reconciles the store with what really runs on the host.
    pub async fn open(parts: Parts) -> Result<Arc<Self>> {
        let Parts {
            limits,
            checkpoints: checkpoint_settings,
            layout,
            images,
            store,
            vmm,
            network,
            agents,
            net_options,
            quota,
        } = parts;
        let consoles = crate::console::Consoles::new(limits.console_log_bytes);
        let cgroups = crate::vmm::cgroup::Cgroups::detect(layout.root());
        if limits.cgroups && !vmm.manages_cgroups() {
            tracing::info!("VM cgroups: {}", cgroups.describe());
            if !matches!(cgroups, crate::vmm::cgroup::Cgroups::Off(_)) {
                match crate::vmm::cgroup_moves::make_quick() {
                    Ok(Some(mount)) => tracing::info!(
                        "cgroup moves made quick: {} remounted with favordynmods (each VM start \
                         waited for an RCU grace period)",
                        mount.display()
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::info!("cgroup moves stay slow (favordynmods: {e})"),
                }
            }
        }
        let overlays = vm_disk::choose_overlays(limits.disk_overlays, vmm.as_ref(), &layout);
        let manager = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            activity: Default::default(),
            overlays,
            limits,
            checkpoint_settings,
            layout,
            images,
            store,
            vmm,
            network,
            net_options,
            quota,
            admission_lock: Default::default(),
            firewall_lock: Default::default(),
            consoles,
            metrics: Default::default(),
            agents: Mutex::new(HashMap::new()),
            connector: agents,
            vm_locks: Default::default(),
            checkpoint_locks: Default::default(),
            verified_checkpoints: Default::default(),
            boot_snapshots: Default::default(),
            warm_vmms: Default::default(),
            cgroups,
        });
        manager.reconcile().await?;
        manager.watch_run_states();
        manager.watch_retention();
        manager.watch_time_limits();
        Ok(manager)
    }

    /// The core as an `Arc` (it is always one).
    fn arc(&self) -> Arc<Manager> {
        self.me
            .upgrade()
            .expect("the core is alive while it is used")
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
            backend: self.vmm.backend().to_string(),
            image_id: self.base().manifest.id.clone(),
            kernel_release: self.base().manifest.kernel_release.clone(),
            default_cpus: self.limits.default_cpus,
            max_cpus: self.limits.max_cpus,
            default_memory_mib: self.limits.default_memory_mib,
            min_memory_mib: self.limits.min_memory_mib,
            max_memory_mib: self.limits.max_memory_mib,
        }
    }

    /// The metrics text, with what only a scrape can know (VMs by state, each VM's memory,
    /// CPU, network and disk).
    pub fn render_metrics(&self) -> String {
        use crate::metrics::sample::VmSample;
        let vms = self.store.list_vms(None).unwrap_or_default();
        let mut snap = crate::metrics::Snapshot {
            version: noid::VERSION.to_string(),
            backend: self.vmm.backend().to_string(),
            ..Default::default()
        };
        for v in &vms {
            *snap.vms_by_state.entry(v.state.to_string()).or_default() += 1;
            let live = v.process.filter(|p| self.vmm.is_running(p));
            if live.is_some() && v.state == crate::core::model::VmState::Running {
                snap.running_vms += 1;
            }
            snap.vms.push(VmSample::take(
                &v.name,
                &v.owner,
                live.map(|p| p.pid).unwrap_or(0),
                v.net.as_ref().map(|n| n.tap.as_str()),
                &self.layout.vm(&v.id),
            ));
        }
        self.metrics.render(&snap)
    }

    /// The kernel and initramfs every VM boots.
    fn base(&self) -> &Base {
        self.images.base()
    }

    fn agent(&self, vm: &VmRecord) -> Arc<dyn GuestAgent> {
        self.agent_by_id(&vm.id)
    }

    /// The agent of the VM (or warm VMM) with id `id`.
    fn agent_by_id(&self, id: &str) -> Arc<dyn GuestAgent> {
        let mut agents = self.agents.lock().expect("agents lock");
        let agent = agents.entry(id.to_string()).or_insert_with(|| {
            self.connector.agent(
                self.vmm.agent_endpoint(&self.layout.vm(id)),
                Duration::from_secs(self.limits.agent_timeout_secs),
            )
        });
        Arc::clone(agent)
    }

    fn forget_agent(&self, vm_id: &str) {
        self.agents.lock().expect("agents lock").remove(vm_id);
    }

    /// The caller's VM `name` with its operation lock held, its record read again under the
    /// lock (another flow may have changed it meanwhile) and marked stopped if its VMM is gone.
    async fn locked_vm(
        &self,
        user: &User,
        name: &str,
    ) -> Result<(VmRecord, tokio::sync::OwnedMutexGuard<()>)> {
        noid::names::validate_name("VM", name)?;
        let not_found = || CoreError::NotFound(Thing::Vm, format!("VM {name:?} not found"));
        let id = self.store.find_vm(&user.0, name)?.ok_or_else(not_found)?.id;
        let guard = self.lock_vm(&id).await;
        let mut vm = self
            .store
            .find_vm(&user.0, name)?
            .filter(|v| v.id == id)
            .ok_or_else(not_found)?;
        self.stop_if_gone(&mut vm)?;
        self.activity.touch(&vm.id);
        Ok((vm, guard))
    }

    /// The VM's operation lock, unless a flow holds it.
    fn try_lock_vm(&self, vm_id: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.vm_locks.get(vm_id).try_lock_owned().ok()
    }

    /// Holds the VM's operation lock until the guard drops.
    async fn lock_vm(&self, vm_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.vm_locks.get(vm_id).lock_owned().await
    }
}
