//! Restores: a checkpoint back into its own VM (in place), or into a new VM (a fork) with its
//! own disk copy, name and hostname. The files are checked against the manifest before the
//! VMM sees them; after the VMM resumes the guest, the agent's post-restore step sets the
//! clock, reseeds the RNG and sets the hostname.

use std::sync::Arc;
use std::time::{Duration, Instant};

use noid::netpolicy::NetPolicy;
use rand::RngCore;

use super::detached;
use super::error::{io_error, Thing};
use super::faults::crash_point;
use super::launch::{Source, Target};
use super::manifest::{Fingerprint, Manifest, DISK_FILE};
use super::ports::agent::{AgentError, GuestAgent, PostRestore};
use super::rollback::{Rollback, Undo};
use super::vms::{new_id, now_secs};
use super::{vm_disk, CoreError, CreateVm, Manager, Restore, Result, User};
use crate::core::model::{CheckpointRecord, GuestNet, VmRecord, VmState};

/// Connects to the guest's agent (within `connect_within`), then gives it the host's clock,
/// `entropy`, its hostname and, with `net`, its network. The clock is read only once the
/// agent has answered: reaching a guest short of CPU can take seconds, which would otherwise
/// put its clock that far behind.
pub(super) async fn hand_over_facts(
    agent: &dyn GuestAgent,
    connect_within: Duration,
    hostname: &str,
    entropy: Vec<u8>,
    net: Option<GuestNet>,
) -> std::result::Result<(), AgentError> {
    agent.health(connect_within).await?;
    let unix_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    agent
        .post_restore(PostRestore {
            unix_nanos,
            entropy,
            hostname: hostname.to_string(),
            net,
        })
        .await
}

/// How long the first attempt to reach a restored guest may take (later ones double it).
const FIRST_ATTEMPT: Duration = Duration::from_secs(3);

impl Manager {
    /// Restores checkpoint `id` in place, or as a new VM called `new_name`. The VM's network
    /// policy becomes `policy` when given; otherwise a VM restored in place keeps its own and
    /// a fork gets the one its source had at the checkpoint.
    pub async fn restore(self: &Arc<Self>, user: &User, req: Restore) -> Result<VmRecord> {
        self.get_checkpoint(user, &req.checkpoint_id)?;
        let policy = match req.net_policy {
            Some(p) => Some(self.policy_for(Some(p))?),
            None => None,
        };
        let this = Arc::clone(self);
        let (new_name, request_id) = (req.new_name.clone(), req.request_id.clone());
        let user = user.clone();
        detached("restore", async move {
            // Read under the checkpoint's read lock: a delete waits until this is done.
            let _reading = this
                .checkpoint_locks
                .get(&req.checkpoint_id)
                .read_owned()
                .await;
            let ckpt = this.get_checkpoint(&user, &req.checkpoint_id)?;
            this.check_compatible(&ckpt)?;
            let started = Instant::now();
            let result = match &new_name {
                Some(name) => {
                    let policy = policy
                        .or_else(|| ckpt.net_policy.clone())
                        .unwrap_or_else(|| this.net_options.default_policy.clone());
                    this.fork(&user, &ckpt, name, policy, request_id).await
                }
                None => this.restore_in_place(&user, &ckpt, policy).await,
            };
            if let Ok(vm) = &result {
                this.metrics.restored(started.elapsed().as_secs_f64());
                tracing::info!(
                    vm = %vm.name,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "VM {} restored from checkpoint {} ({:.2}s)",
                    vm.name,
                    ckpt.id,
                    started.elapsed().as_secs_f64()
                );
            }
            result
        })
        .await
    }

    fn check_compatible(&self, ckpt: &CheckpointRecord) -> Result<()> {
        let (backend, version) = (self.vmm.backend(), self.vmm.version());
        if ckpt.backend != backend.as_str() || ckpt.backend_version != version {
            return Err(CoreError::FailedPrecondition(format!(
                "checkpoint {} was made by {} {}, this server runs {backend} {version}",
                ckpt.id, ckpt.backend, ckpt.backend_version
            )));
        }
        let image = &self.base().manifest.id;
        if &ckpt.image_id != image {
            return Err(CoreError::FailedPrecondition(format!(
                "checkpoint {} was made with guest image {}, this server has image {image}",
                ckpt.id, ckpt.image_id
            )));
        }
        Ok(())
    }

    /// Checks the checkpoint's files against its manifest: in full at its first restore in
    /// this server run, and again whenever one of its files has changed since (a checkpoint's
    /// files are written once; forks of one checkpoint need not read it all each time).
    async fn verify_checkpoint(&self, ckpt: &CheckpointRecord) -> Result<std::path::PathBuf> {
        let dir = self.layout.checkpoint(&ckpt.vm_id, &ckpt.id);
        let before = Fingerprint::of(&dir);
        let known = self.verified_checkpoints.lock().unwrap().get(&ckpt.id) == Some(&before);
        if known {
            return Ok(dir);
        }
        Manifest::check_dir(&dir).await.map_err(|why| {
            CoreError::FailedPrecondition(format!("checkpoint {} is damaged: {why}", ckpt.id))
        })?;
        tracing::debug!("checkpoint {} verified", ckpt.id);
        self.verified_checkpoints
            .lock()
            .unwrap()
            .insert(ckpt.id.clone(), before);
        Ok(dir)
    }

    async fn fork(
        &self,
        user: &User,
        ckpt: &CheckpointRecord,
        name: &str,
        policy: NetPolicy,
        request_id: Option<String>,
    ) -> Result<VmRecord> {
        noid::names::validate_name("VM", name)?;
        let (cpus, memory_mib) = self.check_resources(&CreateVm {
            name: name.to_string(),
            cpus: Some(ckpt.cpus),
            memory_mib: Some(ckpt.memory_mib),
            ..Default::default()
        })?;
        let ckpt_dir = self.verify_checkpoint(ckpt).await?;
        let mut vm = VmRecord {
            id: new_id(),
            name: name.to_string(),
            owner: user.0.clone(),
            state: VmState::Creating,
            cpus,
            memory_mib,
            created_at: now_secs(),
            backend: self.vmm.backend().to_string(),
            image_id: ckpt.image_id.clone(),
            kernel_release: ckpt.kernel_release.clone(),
            process: None,
            parent_checkpoint: Some(ckpt.id.clone()),
            net: None,
            state_reason: None,
            image: ckpt.image.clone(),
            disk_bytes: None,
            retention: Default::default(),
            hibernation: None,
            expires_at: None,
            on_expiry: Default::default(),
            idle_timeout_secs: None,
            request_id,
        };
        let demand = super::admission::Demand {
            cpus,
            memory_mib,
            disk_bytes: super::admission::allocated_bytes(&ckpt_dir.join(DISK_FILE)),
        };
        if let Some(done) = self.insert_new_vm(&vm, &demand).await? {
            return Ok(done);
        }
        crash_point("fork.recorded");
        let mut undo = Rollback::default();
        undo.push(Undo::RemoveRecord(Box::new(vm.clone())));
        let result = async {
            self.attach_network(&mut vm, policy, false, &mut undo)
                .await?;
            let source = Source::Checkpoint(&ckpt_dir);
            self.launch(&mut vm, source, Target::New, &mut undo, "fork.vmm_started")
                .await?;
            vm.state = VmState::Running;
            self.store.update_vm(&vm)?;
            crash_point("fork.done");
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(vm),
            Err(e) => {
                tracing::warn!("fork {name} of checkpoint {} failed: {e}", ckpt.id);
                undo.run(self).await;
                Err(e)
            }
        }
    }

    pub(super) async fn restore_in_place(
        &self,
        user: &User,
        ckpt: &CheckpointRecord,
        policy: Option<NetPolicy>,
    ) -> Result<VmRecord> {
        let gone = || {
            CoreError::NotFound(
                Thing::Vm,
                format!(
                    "VM {:?} of checkpoint {} no longer exists: restore it as a new VM (--as NAME)",
                    ckpt.vm_name, ckpt.id
                ),
            )
        };
        let (mut vm, _guard) = self
            .locked_vm(user, &ckpt.vm_name)
            .await
            .ok()
            .filter(|(v, _)| v.id == ckpt.vm_id)
            .ok_or_else(gone)?;
        if matches!(
            vm.state,
            VmState::Creating | VmState::Restoring | VmState::Deleting
        ) {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {:?} is busy ({})",
                vm.name, vm.state
            )));
        }
        let ckpt_dir = self.verify_checkpoint(ckpt).await?;
        // From here the record says a restore is under way, so that a crash at any step
        // leaves a VM that reconcile can put right (`undo_restore_in_place`).
        vm.state = VmState::Restoring;
        vm.state_reason = None;
        self.store.update_vm(&vm)?;
        crash_point("restore.marked");
        match self.restore_steps(&mut vm, ckpt, &ckpt_dir).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!("restore of {} in place failed: {e}", vm.name);
                self.undo_restore_in_place(&mut vm).await?;
                return Err(e);
            }
        }
        vm.state = VmState::Running;
        // A wake puts the VM back as it was, parent included.
        if !ckpt.hibernation {
            vm.parent_checkpoint = Some(ckpt.id.clone());
        }
        let hibernation = vm.hibernation.take();
        if let (Some(policy), Some(net)) = (policy, vm.net.as_mut()) {
            net.policy = policy;
        }
        self.store.update_vm(&vm)?;
        crash_point("restore.done");
        vm_disk::drop_aside(&self.layout.vm(&vm.id));
        if ckpt.hibernation {
            // The bridge may have been made anew while the VM slept (a host restart).
            self.connect_network(&vm).await?;
        } else {
            self.apply_firewall().await?;
        }
        // A hibernated VM restored to another checkpoint no longer needs its saved state (a
        // wake removes its own once it lets go of it).
        if let Some(id) = hibernation.filter(|id| *id != ckpt.id) {
            self.drop_hibernation_state(&id).await;
        }
        Ok(vm)
    }

    /// The steps of a restore in place: the old VMM goes, its disk is set aside, the
    /// checkpoint's disk and memory come in, the guest's post-restore step runs.
    async fn restore_steps(
        &self,
        vm: &mut VmRecord,
        ckpt: &CheckpointRecord,
        ckpt_dir: &std::path::Path,
    ) -> Result<()> {
        let dir = self.layout.vm(&vm.id);
        let grace = Duration::from_secs(self.limits.shutdown_timeout_secs);
        if let Some(p) = vm.process.filter(|p| self.vmm.is_running(p)) {
            self.vmm.stop(&p, grace).await?;
        }
        self.forget_agent(&vm.id);
        vm_disk::set_aside(&dir).map_err(|e| io_error("setting the current disk aside", e))?;
        crash_point("restore.disk_aside");
        tracing::debug!("restore of {} from {}: disk set aside", vm.name, ckpt.id);
        // The undo of a failed restore in place is `undo_restore_in_place`, which finds what
        // it needs on the host; these steps are not undone one by one.
        let mut steps = Rollback::default();
        let source = Source::Checkpoint(ckpt_dir);
        self.launch(
            vm,
            source,
            Target::InPlace,
            &mut steps,
            "restore.vmm_started",
        )
        .await
    }

    /// Puts a VM whose restore in place did not finish back on its own disk, stopped (its old
    /// memory is gone); if the restore had not yet touched it, the VM simply runs on.
    pub(super) async fn undo_restore_in_place(&self, vm: &mut VmRecord) -> Result<()> {
        let dir = self.layout.vm(&vm.id);
        let old_runs = vm.process.is_some_and(|p| self.vmm.is_running(&p));
        if !vm_disk::is_set_aside(&dir) && old_runs {
            vm.state = VmState::Running;
            self.store.update_vm(vm)?;
            return Ok(());
        }
        let grace = Duration::from_secs(self.limits.shutdown_timeout_secs);
        for p in [vm.process, self.vmm.find_process(&dir)]
            .into_iter()
            .flatten()
        {
            if self.vmm.is_running(&p) {
                if let Err(e) = self.vmm.stop(&p, grace).await {
                    tracing::warn!("cannot stop the VMM of {}: {e}", vm.name);
                }
            }
        }
        self.forget_agent(&vm.id);
        vm_disk::put_back(&dir).map_err(|e| io_error("putting the VM's disk back", e))?;
        // A hibernated VM still has its saved state: it stays hibernated, to wake again.
        vm.state = if vm.hibernation.is_some() {
            VmState::Hibernated
        } else {
            VmState::Stopped
        };
        vm.process = None;
        self.store.update_vm(vm)?;
        Ok(())
    }

    /// Reconnects to the restored guest's agent and runs its post-restore step.
    pub(super) async fn after_restore(&self, vm: &VmRecord) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(self.limits.boot_timeout_secs);
        let mut entropy = vec![0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut entropy);
        // Each attempt gets longer than the one before: a guest short of CPU needs time, but
        // a connection can be greeted by a session that ends right after (the guest saw an
        // earlier hang-up late) and then answers nothing; such an attempt must end long
        // before HTTP/2 keep-alive would notice (40 s), so that a fresh one can begin.
        let mut budget = FIRST_ATTEMPT;
        loop {
            let agent = self.agent(vm);
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1))
                .min(budget);
            budget = budget.saturating_mul(2);
            let call = hand_over_facts(
                agent.as_ref(),
                left,
                &vm.name,
                entropy.clone(),
                self.guest_net(vm),
            );
            let vmm_exited = async {
                while vm.process.is_some_and(|p| self.vmm.is_running(&p)) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            let attempt = tokio::select! {
                a = tokio::time::timeout(left, call) => a,
                () = vmm_exited => return Err(self.restored_vm_stopped(vm)),
            };
            tracing::debug!("post-restore attempt on {}: {attempt:?}", vm.name);
            match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if !matches!(e, super::ports::agent::AgentError::Unreachable(_)) => {
                    return Err(e.into())
                }
                _ => {}
            }
            // The connection landed in a stale session (the guest's pre-restore one, or one
            // that ended under it): start a fresh one.
            self.forget_agent(&vm.id);
            if Instant::now() >= deadline {
                return Err(CoreError::DeadlineExceeded(format!(
                    "the restored VM {}'s agent did not answer",
                    vm.name
                )));
            }
            if !vm.process.is_some_and(|p| self.vmm.is_running(&p)) {
                return Err(self.restored_vm_stopped(vm));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn restored_vm_stopped(&self, vm: &VmRecord) -> CoreError {
        CoreError::Internal(format!(
            "the restored VM {} stopped; console: {}",
            vm.name,
            super::vms::console_tail(&self.layout.vm(&vm.id))
        ))
    }
}
