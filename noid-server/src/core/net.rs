//! VM networking in the core: a lease and a TAP per VM (with their undo steps), the guest's
//! view of its network, published ports, and reconciling leases and TAPs after a restart.

use std::net::Ipv4Addr;

use super::rollback::{Rollback, Undo};
use super::{CoreError, Manager, Result, User};
use crate::network::{mac_for, tap_name, GuestNet, PortRule};
use crate::store::{PortMap, VmNet, VmRecord, VmState};

impl Manager {
    /// Leases an address and makes the TAP of a new VM, recording both in `vm.net`. The TAP
    /// stays off the bridge until `connect_network`.
    pub(super) async fn attach_network(
        &self,
        vm: &mut VmRecord,
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
        net.create_tap(&tap)
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        undo.push(Undo::DeleteTap(tap.clone()));
        vm.net = Some(VmNet {
            ip,
            mac: mac_for(&vm.id),
            tap,
            ports: Vec::new(),
        });
        self.store.update_vm(vm)?;
        Ok(())
    }

    /// Puts the VM's TAP on the bridge. A fork is connected only once its guest has taken its
    /// own MAC and address: until then it still has its source's, and a single frame from it
    /// would teach the bridge to send the source's traffic to the fork.
    pub(super) async fn connect_network(&self, vm: &VmRecord) -> Result<()> {
        let (Some(net), Some(vnet)) = (&self.network, &vm.net) else {
            return Ok(());
        };
        net.connect_tap(&vnet.tap)
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))
    }

    /// Removes a VM's TAP and lease (its ports go with its record).
    pub(super) async fn detach_network(&self, vm: &VmRecord) -> Result<()> {
        let (Some(net), Some(vnet)) = (&self.network, &vm.net) else {
            return Ok(());
        };
        net.delete_tap(&vnet.tap)
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
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

    /// Rewrites the published-port rules from the records.
    pub(super) fn apply_ports(&self) -> Result<()> {
        let Some(net) = &self.network else {
            return Ok(());
        };
        let mut rules = Vec::new();
        for vm in self.store.list_vms(None)? {
            if let Some(n) = &vm.net {
                rules.extend(n.ports.iter().map(|p| PortRule {
                    host_port: p.host,
                    guest_ip: n.ip,
                    guest_port: p.guest,
                }));
            }
        }
        net.apply_ports(&rules)
            .map_err(|e| CoreError::Internal(e.to_string()))
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
        let vm = self.get_vm(user, vm_name)?;
        let _guard = self.lock_vm(&vm.id).await;
        let mut vm = self.get_vm(user, vm_name)?;
        if vm.net.is_none() {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {vm_name:?} has no network (networking is disabled on this server)"
            )));
        }
        for other in self.store.list_vms(None)? {
            if other
                .net
                .iter()
                .flat_map(|n| &n.ports)
                .any(|p| p.host == host)
            {
                return Err(CoreError::AlreadyExists(format!(
                    "host port {host} is already published{}",
                    if other.id == vm.id && other.owner == user.0 {
                        format!(" for VM {vm_name:?}")
                    } else {
                        String::new()
                    }
                )));
            }
        }
        let before = vm.clone();
        vm.net
            .as_mut()
            .expect("checked")
            .ports
            .push(PortMap { host, guest });
        self.store.update_vm(&vm)?;
        if let Err(e) = self.apply_ports() {
            self.store.update_vm(&before)?;
            let _ = self.apply_ports();
            return Err(e);
        }
        tracing::info!("Port published: host {host} -> {}:{guest}", vm.name);
        Ok(vm)
    }

    /// Stops publishing the host's port `host` for the VM.
    pub async fn remove_port(&self, user: &User, vm_name: &str, host: u16) -> Result<VmRecord> {
        let vm = self.get_vm(user, vm_name)?;
        let _guard = self.lock_vm(&vm.id).await;
        let mut vm = self.get_vm(user, vm_name)?;
        let ports = vm.net.as_mut().map(|n| &mut n.ports);
        let Some(ports) = ports.filter(|p| p.iter().any(|m| m.host == host)) else {
            return Err(CoreError::NotFound(format!(
                "VM {vm_name:?} does not publish host port {host}"
            )));
        };
        ports.retain(|m| m.host != host);
        self.store.update_vm(&vm)?;
        self.apply_ports()?;
        Ok(vm)
    }

    /// Releases leases of VMs that no longer exist, deletes their TAPs, rewrites the rules.
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
        let taps = net
            .list_taps()
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        for tap in taps {
            if !vms
                .iter()
                .any(|v| v.net.as_ref().is_some_and(|n| n.tap == tap))
            {
                tracing::warn!("deleting TAP {tap}: no VM owns it");
                let _ = net.delete_tap(&tap).await;
            }
        }
        // A running VM's TAP is on the bridge even if the bridge was made anew meanwhile.
        for vm in vms.iter().filter(|v| v.state == VmState::Running) {
            if let Err(e) = self.connect_network(vm).await {
                tracing::warn!("cannot put VM {}'s TAP on the bridge: {e}", vm.name);
            }
        }
        self.apply_ports()
    }
}
