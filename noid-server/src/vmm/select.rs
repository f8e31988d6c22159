//! Choosing the VMM: the `vmm` setting (or `NOID_VMM`), what is installed, and whether KVM
//! really runs standard guests. `doctor` shows the same decision the server makes.

use std::sync::Arc;

use super::accel::{self, Accel};
use super::firecracker::{self, FirecrackerConfig, FirecrackerVmm, JailerConfig};
use super::qemu::QemuVmm;
use super::{Vmm, VmmError};
use crate::config::{AccelChoice, Config, VmmChoice};

/// What the server will run VMs with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `workable` is false for an explicit choice this host cannot honour (the server then
    /// refuses to start, and `doctor` says why).
    Firecracker {
        workable: bool,
        why: String,
    },
    Qemu {
        accel: Accel,
        why: String,
    },
}

impl Decision {
    /// Whether VMs can run with this decision.
    pub fn workable(&self) -> bool {
        match self {
            Decision::Firecracker { workable, .. } => *workable,
            Decision::Qemu { .. } => true,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Decision::Firecracker { why, .. } => format!("firecracker ({why})"),
            Decision::Qemu { accel, why } => format!("qemu/{} ({why})", accel.as_str()),
        }
    }
}

/// The setting in force: `NOID_VMM` if set, else the config's `vmm`.
pub fn setting(config: &Config) -> Result<VmmChoice, VmmError> {
    match std::env::var("NOID_VMM") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|e: crate::config::ConfigError| VmmError::Start(format!("NOID_VMM: {e}"))),
        _ => Ok(config.vmm),
    }
}

/// Decides from the setting, the Firecracker binary's presence and KVM's usability.
pub fn decide(
    setting: VmmChoice,
    firecracker_found: bool,
    kvm: Result<(), String>,
    qemu_accel: AccelChoice,
) -> Decision {
    let qemu = |why: String| Decision::Qemu {
        accel: accel::choose(qemu_accel),
        why,
    };
    let firecracker = |workable, why: String| Decision::Firecracker { workable, why };
    match (setting, firecracker_found, kvm) {
        (VmmChoice::Qemu, _, _) => qemu("vmm = \"qemu\"".into()),
        (VmmChoice::Firecracker, false, _) => firecracker(
            false,
            "vmm = \"firecracker\", but no firecracker binary was found: the server will not start"
                .into(),
        ),
        (VmmChoice::Firecracker, _, Ok(())) => firecracker(true, "vmm = \"firecracker\"".into()),
        (VmmChoice::Firecracker, _, Err(why)) => firecracker(
            false,
            format!("vmm = \"firecracker\", but {why}: guests will not boot"),
        ),
        (VmmChoice::Auto, true, Ok(())) => firecracker(
            true,
            "auto: firecracker found and KVM runs standard guests".into(),
        ),
        (VmmChoice::Auto, false, _) => qemu("auto: no firecracker binary".into()),
        (VmmChoice::Auto, true, Err(why)) => qemu(format!("auto: firecracker found, but {why}")),
    }
}

/// The decision for this host and config.
pub fn decide_here(config: &Config) -> Result<Decision, VmmError> {
    let setting = setting(config)?;
    let found = firecracker::version_of(&config.firecracker.binary).is_some();
    Ok(decide(
        setting,
        found,
        accel::kvm_usable(),
        config.qemu.accel,
    ))
}

/// Builds the VMM the decision names.
pub fn build(config: &Config, decision: &Decision) -> Result<Arc<dyn Vmm>, VmmError> {
    Ok(match decision {
        Decision::Qemu { accel, .. } => Arc::new(QemuVmm::new(&config.qemu, *accel)),
        Decision::Firecracker { .. } => {
            let f = &config.firecracker;
            Arc::new(FirecrackerVmm::new(FirecrackerConfig {
                binary: f.binary.clone(),
                jailer: f.jailer.as_ref().map(|j| JailerConfig {
                    binary: j.clone(),
                    uid: f.uid,
                    gid: f.gid,
                    chroot_base: config.chroot_base(),
                    cgroups: f.cgroups.clone(),
                    cgroup_version: f.cgroup_version,
                }),
            })?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_firecracker_only_where_it_can_run() {
        let pvm = || Err("KVM is PVM-based".to_string());
        assert!(matches!(
            decide(VmmChoice::Auto, true, Ok(()), AccelChoice::Auto),
            Decision::Firecracker { .. }
        ));
        assert!(matches!(
            decide(VmmChoice::Auto, false, Ok(()), AccelChoice::Kvm),
            Decision::Qemu {
                accel: Accel::Kvm,
                ..
            }
        ));
        let d = decide(VmmChoice::Auto, true, pvm(), AccelChoice::Tcg);
        assert!(matches!(
            d,
            Decision::Qemu {
                accel: Accel::Tcg,
                ..
            }
        ));
        assert!(d.describe().contains("PVM"), "{}", d.describe());
        assert!(matches!(
            decide(VmmChoice::Qemu, true, Ok(()), AccelChoice::Kvm),
            Decision::Qemu { .. }
        ));
        // An explicit choice is kept, with the reason it will fail spelled out.
        let d = decide(VmmChoice::Firecracker, true, pvm(), AccelChoice::Auto);
        assert!(matches!(d, Decision::Firecracker { .. }) && !d.workable());
        assert!(d.describe().contains("will not boot"));
        let d = decide(VmmChoice::Firecracker, false, Ok(()), AccelChoice::Auto);
        assert!(!d.workable() && d.describe().contains("no firecracker binary"));
        assert!(decide(VmmChoice::Firecracker, true, Ok(()), AccelChoice::Auto).workable());
    }
}
