//! VM networking in the core: a lease and a TAP per VM (with their undo steps), the guest's
//! view of its network, the VMs' network policies, published ports, the host's rules made
//! from all of them, and reconciling leases and TAPs after a restart.
//!
//! The rules are always rebuilt whole from the store, under one lock, so two flows that
//! change VMs at once cannot load rules made from an older view. A VM's rules are in place
//! before its TAP joins the bridge.

use std::net::Ipv4Addr;

use noid::netpolicy::{Egress, NetPolicy};

use super::rollback::{Rollback, Undo};
use super::{CoreError, Manager, Result, Thing, User};
use crate::core::model::GuestNet;
use crate::core::model::{PortMap, VmNet, VmRecord, VmState};
use crate::network::{mac_for, tap_name, Network, PortRule, VmFilter};

/// Network settings of the core (from the config).
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// The policy of VMs created without one.
    pub default_policy: NetPolicy,
    /// Host ports users may publish, first and last.
    pub publish_range: (u16, u16),
    /// Ports noid itself listens on (never publishable).
    pub own_ports: Vec<u16>,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            default_policy: NetPolicy::default(),
            publish_range: (20000, 29999),
            own_ports: Vec::new(),
        }
    }
}

pub(super) fn net_error(e: crate::network::NetError) -> CoreError {
    CoreError::Internal(e.to_string())
}

impl Manager {
    /// A policy from what an API call carries: rules as text, the default egress when none
    /// is named.
    pub fn parse_policy(
        &self,
        egress: Option<Egress>,
        allow: &[String],
        deny: &[String],
        isolated: bool,
    ) -> Result<NetPolicy> {
        let egress = egress.unwrap_or(self.net_options.default_policy.egress);
        NetPolicy::parse(egress, allow, deny, isolated)
            .map_err(|e| CoreError::InvalidArgument(e.to_string()))
    }

    /// The network policy a new VM gets: the one asked for, or the server's default. Refused
    /// when the server gives VMs no network.
    pub(super) fn policy_for(&self, asked: Option<NetPolicy>) -> Result<NetPolicy> {
        match asked {
            Some(_) if self.network.is_none() => Err(CoreError::FailedPrecondition(
                "networking is disabled on this server: a VM has no network to set a policy for"
                    .into(),
            )),
            Some(p) => {
                p.check()
                    .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
                Ok(p)
            }
            None => Ok(self.net_options.default_policy.clone()),
        }
    }

    /// Leases an address and makes the TAP of a new VM (unless its warm VMM made it:
    /// `tap_made`), recording both and the VM's network policy in `vm.net`. The TAP stays off
    /// the bridge until `connect_network`.
    pub(super) async fn attach_network(
        &self,
        vm: &mut VmRecord,
        policy: NetPolicy,
        tap_made: bool,
        undo: &mut Rollback,
    ) -> Result<()> {
        let Some(net) = &self.network else {
            return Ok(());
        };
        let candidates: Vec<Ipv4Addr> = net.cidr().guest_addresses().collect();
        let ip = self
            .store
            .allocate_lease(&vm.id, &candidates)?
            .ok_or_else(|| {
                CoreError::ResourceExhausted(format!(
                    "no free address left in {} ({} VMs have one)",
                    net.cidr(),
                    candidates.len()
                ))
            })?;
        undo.push(Undo::ReleaseLease(ip));
        let tap = tap_name(&vm.id);
        if !tap_made {
            net.create_tap(&tap, self.vmm.tap_owner())
                .await
                .map_err(net_error)?;
            undo.push(Undo::DeleteTap(tap.clone()));
        }
        vm.net = Some(VmNet {
            ip,
            mac: mac_for(&vm.id),
            tap,
            ports: Vec::new(),
            policy,
        });
        self.store.update_vm(vm)?;
        Ok(())
    }

    /// Makes the VM's rules and then puts its TAP on the bridge. A fork is connected only
    /// once its guest has taken its own MAC and address: until then it still has its
    /// source's, and a single frame from it would teach the bridge to send the source's
    /// traffic to the fork (the rules would drop such frames too).
    pub(super) async fn connect_network(&self, vm: &VmRecord) -> Result<()> {
        if self.network.is_none() || vm.net.is_none() {
            return Ok(());
        }
        self.apply_firewall().await?;
        self.join_bridge(vm).await
    }

    /// Puts the VM's TAP on the bridge (its rules must exist).
    async fn join_bridge(&self, vm: &VmRecord) -> Result<()> {
        let (Some(net), Some(vnet)) = (&self.network, &vm.net) else {
            return Ok(());
        };
        net.connect_tap(&vnet.tap).await.map_err(net_error)
    }

    /// Removes a VM's TAP and lease; its rules go when its record has gone (`apply_firewall`).
    pub(super) async fn detach_network(&self, vm: &VmRecord) -> Result<()> {
        let (Some(net), Some(vnet)) = (&self.network, &vm.net) else {
            return Ok(());
        };
        net.delete_tap(&vnet.tap).await.map_err(net_error)?;
        self.store.release_lease(vnet.ip)?;
        Ok(())
    }

    /// What the guest of `vm` is told about its network.
    pub(super) fn guest_net(&self, vm: &VmRecord) -> Option<GuestNet> {
        let (net, vnet) = (self.network.as_ref()?, vm.net.as_ref()?);
        let cidr = net.cidr();
        Some(GuestNet {
            tap: vnet.tap.clone(),
            mac: vnet.mac.clone(),
            ip: vnet.ip,
            prefix: cidr.prefix,
            gateway: cidr.gateway(),
            dns: net.dns(),
        })
    }

    /// Rebuilds all of the host's rules from the records.
    pub(super) async fn apply_firewall(&self) -> Result<()> {
        let Some(net) = &self.network else {
            return Ok(());
        };
        let _guard = self.firewall_lock.lock().await;
        self.apply_firewall_locked(net.as_ref()).await
    }

    /// `apply_firewall` for a caller that holds `firewall_lock`.
    async fn apply_firewall_locked(&self, net: &dyn Network) -> Result<()> {
        let mut vms = Vec::new();
        let mut ports = Vec::new();
        for vm in self.store.list_vms(None)? {
            let Some(n) = vm.net else { continue };
            ports.extend(n.ports.iter().map(|p| PortRule {
                host_port: p.host,
                guest_ip: n.ip,
                guest_port: p.guest,
            }));
            vms.push(VmFilter {
                group: (!n.policy.isolated).then_some(vm.owner),
                tap: n.tap,
                mac: n.mac,
                ip: n.ip,
                policy: n.policy,
            });
        }
        net.apply_rules(&vms, &ports).await.map_err(net_error)
    }

    /// The caller's VM `vm_name` with its operation lock held, and its network (refused
    /// when it has none).
    async fn networked_vm(
        &self,
        user: &User,
        vm_name: &str,
    ) -> Result<(VmRecord, tokio::sync::OwnedMutexGuard<()>)> {
        let (vm, guard) = self.locked_vm(user, vm_name).await?;
        if vm.net.is_none() {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {vm_name:?} has no network (networking is disabled on this server)"
            )));
        }
        Ok((vm, guard))
    }

    /// Stores `vm` and rebuilds the rules (the caller holds `firewall_lock`); if the rules
    /// cannot be loaded, the record goes back to `before` and the old rules stay.
    async fn commit_network_change(
        &self,
        net: &dyn Network,
        vm: &VmRecord,
        before: &VmRecord,
    ) -> Result<()> {
        self.store.update_vm(vm)?;
        super::faults::crash_point("port.recorded");
        if let Err(e) = self.apply_firewall_locked(net).await {
            self.store.update_vm(before)?;
            let _ = self.apply_firewall_locked(net).await;
            return Err(e);
        }
        Ok(())
    }

    /// Replaces a VM's network policy; it applies at once, to connections already open too.
    pub async fn set_network_policy(
        &self,
        user: &User,
        vm_name: &str,
        policy: NetPolicy,
    ) -> Result<VmRecord> {
        policy
            .check()
            .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        let (mut vm, _guard) = self.networked_vm(user, vm_name).await?;
        let net = self.network.as_ref().expect("the VM has a network");
        let _fw = self.firewall_lock.lock().await;
        let before = vm.clone();
        vm.net.as_mut().expect("checked").policy = policy;
        self.commit_network_change(net.as_ref(), &vm, &before)
            .await?;
        tracing::info!(
            "Network policy of {}: {}",
            vm.name,
            vm.net.as_ref().expect("checked").policy.summary()
        );
        Ok(vm)
    }

    /// Why host port `host` cannot be published, if it cannot (other VMs' ports aside).
    fn check_publishable(&self, net: &dyn Network, host: u16) -> Result<()> {
        let o = &self.net_options;
        let (lo, hi) = o.publish_range;
        if o.own_ports.contains(&host) {
            return Err(CoreError::InvalidArgument(format!(
                "host port {host} is noid's own API port: choose one in {lo}-{hi}"
            )));
        }
        if !(lo..=hi).contains(&host) {
            let why = if host < 1024 {
                "privileged (below 1024) and outside"
            } else {
                "outside"
            };
            return Err(CoreError::InvalidArgument(format!(
                "host port {host} is {why} the ports this server publishes ({lo}-{hi})"
            )));
        }
        if net.port_listened(host).map_err(net_error)? {
            return Err(CoreError::AlreadyExists(
                Thing::Port,
                format!("host port {host} is in use by a program on the host"),
            ));
        }
        Ok(())
    }

    /// Publishes the guest's TCP port `guest` on the host's port `host`.
    pub async fn add_port(
        &self,
        user: &User,
        vm_name: &str,
        host: u16,
        guest: u16,
    ) -> Result<VmRecord> {
        if host == 0 || guest == 0 {
            return Err(CoreError::InvalidArgument(
                "ports must be between 1 and 65535".into(),
            ));
        }
        let (mut vm, _guard) = self.networked_vm(user, vm_name).await?;
        let net = self.network.as_ref().expect("the VM has a network");
        // One port assignment at a time: the check and the change are one step.
        let _fw = self.firewall_lock.lock().await;
        self.check_publishable(net.as_ref(), host)?;
        for other in self.store.list_vms(None)? {
            if other
                .net
                .iter()
                .flat_map(|n| &n.ports)
                .any(|p| p.host == host)
            {
                return Err(CoreError::AlreadyExists(
                    Thing::Port,
                    format!(
                        "host port {host} is already published{}",
                        if other.id == vm.id {
                            format!(" for VM {vm_name:?}")
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
        let before = vm.clone();
        vm.net
            .as_mut()
            .expect("checked")
            .ports
            .push(PortMap { host, guest });
        self.commit_network_change(net.as_ref(), &vm, &before)
            .await?;
        tracing::info!("Port published: host {host} -> {}:{guest}", vm.name);
        Ok(vm)
    }

    /// Stops publishing the host's port `host` for the VM.
    pub async fn remove_port(&self, user: &User, vm_name: &str, host: u16) -> Result<VmRecord> {
        let (mut vm, _guard) = self.networked_vm(user, vm_name).await?;
        let net = self.network.as_ref().expect("the VM has a network");
        let _fw = self.firewall_lock.lock().await;
        let before = vm.clone();
        let ports = &mut vm.net.as_mut().expect("checked").ports;
        if !ports.iter().any(|m| m.host == host) {
            return Err(CoreError::NotFound(
                Thing::Port,
                format!("VM {vm_name:?} does not publish host port {host}"),
            ));
        }
        ports.retain(|m| m.host != host);
        self.commit_network_change(net.as_ref(), &vm, &before)
            .await?;
        Ok(vm)
    }

    /// Releases leases of VMs that no longer exist, deletes their TAPs, rebuilds the rules
    /// and puts running VMs' TAPs back on the bridge.
    pub(super) async fn reconcile_network(&self) -> Result<()> {
        let Some(net) = &self.network else {
            return Ok(());
        };
        let vms = self.store.list_vms(None)?;
        for (ip, vm_id) in self.store.leases()? {
            if !vms.iter().any(|v| v.id == vm_id) {
                tracing::warn!("reclaiming the lease of {ip}: its VM {vm_id} no longer exists");
                self.store.release_lease(ip)?;
            }
        }
        let taps = net.list_taps().await.map_err(net_error)?;
        for tap in taps {
            if !vms
                .iter()
                .any(|v| v.net.as_ref().is_some_and(|n| n.tap == tap))
            {
                tracing::warn!("deleting TAP {tap}: no VM owns it");
                let _ = net.delete_tap(&tap).await;
            }
        }
        self.apply_firewall().await?;
        // A running VM's TAP is on the bridge even if the bridge was made anew meanwhile.
        for vm in vms.iter().filter(|v| v.state == VmState::Running) {
            if let Err(e) = self.join_bridge(vm).await {
                tracing::warn!("cannot put VM {}'s TAP on the bridge: {e}", vm.name);
            }
        }
        Ok(())
    }
}
