//! Choosing the VMM: the `vmm` setting (or `NOID_VMM`), what is installed, and whether KVM
//! really runs standard guests. `doctor` shows the same decision the server makes.

use std::sync::Arc;

use super::accel::{self, Accel};
use super::firecracker::{self, FirecrackerConfig, FirecrackerVmm, JailerConfig};
use super::qemu::QemuVmm;
use super::{Vmm, VmmError};
use crate::config::Config;

/// What the server will run VMs with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Firecracker { why: String },
    Qemu { accel: Accel, why: String },
}

impl Decision {
    /// Whether VMs can run with this decision (false: an explicit choice this host cannot
    /// honour).
    pub fn workable(&self) -> bool {
        !matches!(self, Decision::Firecracker { why } if why.contains("will not"))
    }

    pub fn describe(&self) -> String {
        match self {
            Decision::Firecracker { why } => format!("firecracker ({why})"),
            Decision::Qemu { accel, why } => format!("qemu/{} ({why})", accel.as_str()),
        }
    }
}

/// The setting in force: `NOID_VMM` if set, else the config's `vmm`.
pub fn setting(config: &Config) -> Result<String, VmmError> {
    match std::env::var("NOID_VMM") {
        Ok(v) if !v.is_empty() => {
            if ["auto", "firecracker", "qemu"].contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(VmmError::Start(format!(
                    "NOID_VMM must be auto, firecracker or qemu, not {v:?}"
                )))
            }
        }
        _ => Ok(config.vmm.clone()),
    }
}

/// Decides from the setting, the Firecracker binary's presence and KVM's usability.
pub fn decide(
    setting: &str,
    firecracker_found: bool,
    kvm: Result<(), String>,
    qemu_accel: &str,
) -> Decision {
    let qemu = |why: String| Decision::Qemu {
        accel: accel::choose(qemu_accel),
        why,
    };
    match (setting, firecracker_found, kvm) {
        ("qemu", _, _) => qemu("vmm = \"qemu\"".into()),
        ("firecracker", false, _) => Decision::Firecracker {
            why: "vmm = \"firecracker\", but no firecracker binary was found: the server will not start"
                .into(),
        },
        ("firecracker", _, Ok(())) => Decision::Firecracker {
            why: "vmm = \"firecracker\"".into(),
        },
        ("firecracker", _, Err(why)) => Decision::Firecracker {
            why: format!("vmm = \"firecracker\", but {why}: guests will not boot"),
        },
        (_, true, Ok(())) => Decision::Firecracker {
            why: "auto: firecracker found and KVM runs standard guests".into(),
        },
        (_, false, _) => qemu("auto: no firecracker binary".into()),
        (_, true, Err(why)) => qemu(format!("auto: firecracker found, but {why}")),
    }
}

/// The decision for this host and config.
pub fn decide_here(config: &Config) -> Result<Decision, VmmError> {
    let setting = setting(config)?;
    let found = firecracker::version_of(&config.firecracker.binary).is_some();
    Ok(decide(
        &setting,
        found,
        accel::kvm_usable(),
        &config.qemu.accel,
    ))
}

/// Builds the VMM the decision names.
pub fn build(config: &Config, decision: &Decision) -> Result<Arc<dyn Vmm>, VmmError> {
    Ok(match decision {
        Decision::Qemu { accel, .. } => Arc::new(QemuVmm::new(config.qemu.binary.clone(), *accel)),
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
            decide("auto", true, Ok(()), "auto"),
            Decision::Firecracker { .. }
        ));
        assert!(matches!(
            decide("auto", false, Ok(()), "kvm"),
            Decision::Qemu {
                accel: Accel::Kvm,
                ..
            }
        ));
        let d = decide("auto", true, pvm(), "tcg");
        assert!(matches!(
            d,
            Decision::Qemu {
                accel: Accel::Tcg,
                ..
            }
        ));
        assert!(d.describe().contains("PVM"), "{}", d.describe());
        assert!(matches!(
            decide("qemu", true, Ok(()), "kvm"),
            Decision::Qemu { .. }
        ));
        // An explicit choice is kept, with the reason it will fail spelled out.
        let d = decide("firecracker", true, pvm(), "auto");
        assert!(matches!(d, Decision::Firecracker { .. }) && !d.workable());
        assert!(d.describe().contains("will not boot"));
        let d = decide("firecracker", false, Ok(()), "auto");
        assert!(!d.workable() && d.describe().contains("no firecracker binary"));
        assert!(decide("firecracker", true, Ok(()), "auto").workable());
    }
}
