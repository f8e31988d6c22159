//! VM lifecycle: create (validate, reserve the name, copy the disk, start the VMM, wait for the
//! agent), look up, list, delete (guest power-off, SIGTERM, SIGKILL, files, record).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;

use super::detached;
use super::error::{io_error, Thing};
use super::faults::crash_point;
use super::launch::{Source, Target};
use super::ports::vmm::BootSpec;
use super::rollback::{Rollback, Undo};
use super::{CoreError, CreateVm, Manager, Result, User};
use crate::core::model::{VmRecord, VmState};

pub(super) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn new_id() -> String {
    let mut b = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The last lines of a VM's console log, for errors about a guest that did not come up.
pub(super) fn console_tail(dir: &std::path::Path) -> String {
    let text = crate::console::history(dir);
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(2048)..]).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// How a new VM came up.
#[derive(Debug, Clone, Copy)]
enum Start {
    Booted,
    FromBootSnapshot,
    /// From the boot snapshot, into a VMM that waited for it (`warm_vmms`).
    IntoWarmVmm,
}

impl Start {
    fn source(self) -> crate::metrics::CreateSource {
        match self {
            Start::Booted => crate::metrics::CreateSource::Boot,
            Start::FromBootSnapshot | Start::IntoWarmVmm => crate::metrics::CreateSource::Snapshot,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Start::Booted => "booted",
            Start::FromBootSnapshot => "from the boot snapshot",
            Start::IntoWarmVmm => "from the boot snapshot, into a warm VMM",
        }
    }
}

impl Manager {
    pub(super) fn check_resources(&self, req: &CreateVm) -> Result<(u32, u32)> {
        let l = &self.limits;
        let cpus = req.cpus.unwrap_or(l.default_cpus);
        if cpus == 0 || cpus > l.max_cpus {
            return Err(CoreError::InvalidArgument(format!(
                "cpus must be between 1 and {}, got {cpus}",
                l.max_cpus
            )));
        }
        let mem = req.memory_mib.unwrap_or(l.default_memory_mib);
        if mem < l.min_memory_mib || mem > l.max_memory_mib {
            return Err(CoreError::InvalidArgument(format!(
                "memory must be between {} and {} MiB, got {mem}",
                l.min_memory_mib, l.max_memory_mib
            )));
        }
        Ok((cpus, mem))
    }

    /// Records a new VM once admission lets it in; its name must be free among its owner's
    /// VMs. `Some` is a VM that the same request (same name and request id) made or is
    /// making: a retry gets it, once it is ready.
    pub(super) async fn insert_new_vm(
        &self,
        vm: &VmRecord,
        demand: &super::admission::Demand,
    ) -> Result<Option<VmRecord>> {
        if let Some(id) = &vm.request_id {
            if id.len() > 64 || id.chars().any(char::is_control) {
                return Err(CoreError::InvalidArgument(
                    "request_id must be at most 64 characters, without control characters".into(),
                ));
            }
        }
        let exists =
            || CoreError::AlreadyExists(Thing::Vm, format!("VM {:?} already exists", vm.name));
        loop {
            if let Some(first) = self.store.find_vm(&vm.owner, &vm.name)? {
                if vm.request_id.is_none() || first.request_id != vm.request_id {
                    return Err(exists());
                }
                match self.await_created(first).await? {
                    Some(done) => return Ok(Some(done)),
                    // The first attempt failed and was undone: this one starts over.
                    None => continue,
                }
            }
            let _admission = self.admission_lock.lock().await;
            self.admit(&User(vm.owner.clone()), demand)?;
            match self.store.insert_vm(vm) {
                Ok(()) => return Ok(None),
                Err(crate::core::ports::store::StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Waits for the create that made `first` to finish: the VM when it did, None when it
    /// failed (and its record is gone).
    async fn await_created(&self, mut first: VmRecord) -> Result<Option<VmRecord>> {
        let deadline = Instant::now() + Duration::from_secs(self.limits.boot_timeout_secs * 2);
        while first.state == VmState::Creating {
            if Instant::now() >= deadline {
                return Err(CoreError::DeadlineExceeded(format!(
                    "VM {:?} is still being created",
                    first.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self.store.find_vm(&first.owner, &first.name)? {
                Some(v) if v.id == first.id => first = v,
                _ => return Ok(None),
            }
        }
        self.refresh_state(&mut first)?;
        Ok(Some(first))
    }

    /// Boots a new VM and returns once its agent answers. On failure nothing is left behind.
    pub async fn create_vm(self: &Arc<Self>, user: &User, req: CreateVm) -> Result<VmRecord> {
        noid::names::validate_name("VM", &req.name)?;
        let (cpus, memory_mib) = self.check_resources(&req)?;
        let policy = self.policy_for(req.net_policy)?;
        let image = req
            .image
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| crate::images::store::DEFAULT.into());
        let image_disk = self.images.get(&image)?.disk_bytes;
        let disk_bytes = match req.disk_bytes {
            Some(d) if d < image_disk => {
                return Err(CoreError::InvalidArgument(format!(
                    "a disk of {} MiB is smaller than image {image:?}'s {} MiB",
                    d >> 20,
                    image_disk.div_ceil(1 << 20)
                )))
            }
            Some(d) if d > image_disk => Some(d.div_ceil(1 << 20) << 20),
            _ => None,
        };
        // A VM that will start from a boot snapshot takes a warm VMM's id with the VMM.
        let mut warm = match disk_bytes {
            None if self.limits.boot_snapshots => {
                self.take_warm_vmm(&image, cpus, memory_mib).await
            }
            _ => None,
        };
        let record = VmRecord {
            id: warm.as_ref().map_or_else(new_id, |w| w.id.clone()),
            name: req.name,
            owner: user.0.clone(),
            state: VmState::Creating,
            cpus,
            memory_mib,
            created_at: now_secs(),
            backend: self.vmm.backend().to_string(),
            image_id: self.base().manifest.id.clone(),
            kernel_release: self.base().manifest.kernel_release.clone(),
            process: None,
            parent_checkpoint: None,
            net: None,
            state_reason: None,
            request_id: req.request_id,
            image,
            disk_bytes,
            retention: req.retention,
            hibernation: None,
            expires_at: req.ttl_secs.map(|t| now_secs().saturating_add(t as i64)),
            on_expiry: req.on_expiry,
            idle_timeout_secs: req.idle_timeout_secs,
        };
        let demand = super::admission::Demand {
            cpus,
            memory_mib,
            disk_bytes: super::admission::allocated_bytes(&self.images.rootfs(&record.image))
                .max(record.disk_bytes.unwrap_or(0)),
        };
        let inserted = self.insert_new_vm(&record, &demand).await;
        if !matches!(inserted, Ok(None)) {
            if let Some(w) = warm.take() {
                self.give_back_warm_vmm(w);
            }
        }
        if let Some(done) = inserted? {
            return Ok(done);
        }
        crash_point("create.recorded");
        // Runs to the end even if the caller goes away.
        let this = Arc::clone(self);
        detached("create", async move {
            let mut undo = Rollback::default();
            undo.push(Undo::RemoveRecord(Box::new(record.clone())));
            let mut record = record;
            let started = Instant::now();
            match this
                .create_steps(&mut record, policy, warm, &mut undo)
                .await
            {
                Ok(how) => {
                    let secs = started.elapsed().as_secs_f64();
                    this.metrics.vm_created(how.source(), secs);
                    let addr = record
                        .net
                        .as_ref()
                        .map(|n| n.ip.to_string())
                        .unwrap_or_else(|| "no network".into());
                    tracing::info!(
                        vm = %record.name,
                        duration_ms = (secs * 1000.0) as u64,
                        "VM created: {} ({addr}, {}, {secs:.2}s)",
                        record.name,
                        how.as_str()
                    );
                    Ok(record)
                }
                Err(e) => {
                    tracing::warn!("VM {} failed to create: {e}", record.name);
                    undo.run(&this).await;
                    Err(e)
                }
            }
        })
        .await
    }

    /// Starts the VM, from the boot snapshot of its shape (into `warm`, if a warm VMM was
    /// taken for it) or by booting it; returns which.
    async fn create_steps(
        &self,
        record: &mut VmRecord,
        policy: noid::netpolicy::NetPolicy,
        warm: Option<super::warm_vmms::Warm>,
        undo: &mut Rollback,
    ) -> Result<Start> {
        let warm = warm.map(|w| {
            undo.extend(w.undo);
            w.process
        });
        self.attach_network(record, policy, warm.is_some(), undo)
            .await?;
        crash_point("create.network_attached");
        let how = if self.start_from_boot_snapshot(record, warm, undo).await? {
            match warm {
                Some(_) => Start::IntoWarmVmm,
                None => Start::FromBootSnapshot,
            }
        } else {
            self.launch(
                record,
                Source::Image,
                Target::New,
                undo,
                "create.vmm_started",
            )
            .await?;
            crash_point("create.agent_answered");
            self.make_boot_snapshot(record).await;
            Start::Booted
        };
        record.state = VmState::Running;
        self.store.update_vm(record)?;
        crash_point("create.done");
        Ok(how)
    }

    /// What the VMM needs to boot the VM, or to restore a snapshot into it; makes the VM's
    /// cgroup on the way.
    pub(super) fn boot_spec(&self, vm: &VmRecord) -> Result<BootSpec> {
        let dir = self.layout.vm(&vm.id);
        let (rootfs, rootfs_format) = super::vm_disk::top(&dir);
        Ok(BootSpec {
            rootfs,
            rootfs_format,
            dir,
            kernel: self.base().kernel(),
            kernel_elf: self.base().kernel_elf(),
            initrd: self.base().initrd(),
            cpus: vm.cpus,
            memory_mib: vm.memory_mib,
            hostname: vm.name.clone(),
            net: self.guest_net(vm),
            cgroup: self.cgroup_slot(&vm.id, vm.cpus, vm.memory_mib)?,
        })
    }

    /// The cgroup of the VM with id `id`, made (or updated) with the limits of its size.
    pub(super) fn cgroup_slot(
        &self,
        id: &str,
        cpus: u32,
        memory_mib: u32,
    ) -> Result<crate::vmm::cgroup::Slot> {
        if !self.limits.cgroups || self.vmm.manages_cgroups() {
            return Ok(Default::default());
        }
        let limits = crate::vmm::cgroup::Limits {
            memory_bytes: (u64::from(memory_mib) + self.limits.vmm_overhead_mib) << 20,
            cpus,
        };
        self.cgroups
            .prepare(id, limits)
            .map_err(|e| CoreError::Internal(format!("cannot make the VM's cgroup: {e}")))
    }

    /// Waits until the guest agent answers, the VMM dies, or the boot timeout passes.
    pub(super) async fn wait_for_agent(&self, record: &VmRecord) -> Result<()> {
        let agent = self.agent(record);
        agent.expect_boot();
        let process = record.process.expect("started");
        let timeout = Duration::from_secs(self.limits.boot_timeout_secs);
        let deadline = Instant::now() + timeout;
        let dir = self.layout.vm(&record.id);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CoreError::DeadlineExceeded(format!(
                    "VM {} did not come up within {}s; console: {}",
                    record.name,
                    timeout.as_secs(),
                    console_tail(&dir)
                )));
            }
            let died = async {
                while self.vmm.is_running(&process) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                health = agent.health(remaining) => match health {
                    Ok(h) if h.protocol == noid::AGENT_PROTOCOL => return Ok(()),
                    Ok(h) => return Err(CoreError::FailedPrecondition(format!(
                        "the image's agent speaks protocol {} but this server needs {}: rebuild the image",
                        h.protocol, noid::AGENT_PROTOCOL))),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                _ = died => {
                    return Err(CoreError::Internal(format!(
                        "VM {} stopped while booting; console: {}",
                        record.name,
                        console_tail(&dir)
                    )));
                }
            }
        }
    }

    /// The caller's VM called `name`; another user's VM is NOT_FOUND.
    pub fn get_vm(&self, user: &User, name: &str) -> Result<VmRecord> {
        noid::names::validate_name("VM", name)?;
        let mut vm = self
            .store
            .find_vm(&user.0, name)?
            .ok_or_else(|| CoreError::NotFound(Thing::Vm, format!("VM {name:?} not found")))?;
        self.refresh_state(&mut vm)?;
        self.activity.touch(&vm.id);
        Ok(vm)
    }

    pub fn list_vms(&self, user: &User) -> Result<Vec<VmRecord>> {
        let mut vms = self.store.list_vms(Some(&user.0))?;
        for vm in &mut vms {
            self.refresh_state(vm)?;
        }
        Ok(vms)
    }

    /// Marks a running (or paused) VM whose VMM has gone as stopped, unless a flow holds the
    /// VM's lock: that flow may be replacing the VMM right now, and writes the record itself.
    pub(super) fn refresh_state(&self, vm: &mut VmRecord) -> Result<()> {
        if !self.vmm_gone(vm) {
            return Ok(());
        }
        let Some(_guard) = self.try_lock_vm(&vm.id) else {
            return Ok(());
        };
        if let Some(fresh) = self.store.find_vm(&vm.owner, &vm.name)? {
            if fresh.id == vm.id {
                *vm = fresh;
                self.stop_if_gone(vm)?;
            }
        }
        Ok(())
    }

    /// Whether the VM's record says it runs while its VMM is gone.
    fn vmm_gone(&self, vm: &VmRecord) -> bool {
        matches!(vm.state, VmState::Running | VmState::Paused)
            && !vm.process.is_some_and(|p| self.vmm.is_running(&p))
    }

    /// `refresh_state` for a caller that holds the VM's lock.
    pub(super) fn stop_if_gone(&self, vm: &mut VmRecord) -> Result<()> {
        if self.vmm_gone(vm) {
            vm.state = VmState::Stopped;
            vm.state_reason = None;
            self.store.update_vm(vm)?;
            tracing::warn!("VM {} ({}) found stopped: its VMM exited", vm.name, vm.id);
        }
        Ok(())
    }

    /// Powers the VM off and removes its process, files and record.
    pub async fn delete_vm(self: &Arc<Self>, user: &User, name: &str) -> Result<()> {
        let vm = self.get_vm(user, name)?;
        if vm.state == VmState::Creating {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {name:?} is still being created"
            )));
        }
        let this = Arc::clone(self);
        let (user, name) = (user.clone(), name.to_string());
        detached("delete", async move {
            let (mut vm, _guard) = this.locked_vm(&user, &name).await?;
            // A paused guest cannot power off: its VMM is stopped without asking.
            let ask_guest = vm.state != VmState::Paused;
            vm.state = VmState::Deleting;
            this.store.update_vm(&vm)?;
            crash_point("delete.marked");
            this.finish_delete(vm, ask_guest).await
        })
        .await
    }

    /// Stops the VM's VMM (asking its guest to power off first when `ask_guest`) and removes
    /// everything the VM had.
    pub(super) async fn finish_delete(&self, vm: VmRecord, ask_guest: bool) -> Result<()> {
        let dir = self.layout.vm(&vm.id);
        self.stop_vmm(&vm, ask_guest).await?;
        crash_point("delete.vmm_stopped");
        let saved = self.store.list_checkpoints(Some(&vm.owner))?;
        for c in saved.iter().filter(|c| c.hibernation && c.vm_id == vm.id) {
            self.drop_hibernation_state(&c.id).await;
        }
        self.cgroups.remove(&vm.id);
        self.activity.forget(&vm.id);
        self.forget_agent(&vm.id);
        self.consoles.forget(&vm.id);
        self.detach_network(&vm).await?;
        self.vmm.remove_vm_files(&dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing the VM directory", e)),
        }
        // The folder for its checkpoints, unless it holds some (they outlive the VM).
        let _ = std::fs::remove_dir(self.layout.checkpoints().join(&vm.id));
        crash_point("delete.files_removed");
        self.store.remove_vm(&vm)?;
        if vm.net.is_some() {
            self.apply_firewall().await?;
        }
        tracing::info!(vm = %vm.name, "VM deleted: {} ({})", vm.name, vm.id);
        Ok(())
    }
}
