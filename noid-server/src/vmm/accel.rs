//! Choosing QEMU's accelerator. `/dev/kvm` alone is not proof: on PVM hosts
//! (`/sys/module/kvm_pvm`, common in nested cloud sandboxes) KVM opens but standard guest
//! kernels hang after decompression, so such hosts get TCG.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Whether KVM here runs standard guests, and if not, why.
pub fn kvm_usable() -> Result<(), String> {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err("KVM is PVM-based (kvm_pvm loaded): standard guest kernels hang on it".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// Resolves the configured setting.
pub fn choose(setting: crate::config::AccelChoice) -> Accel {
    use crate::config::AccelChoice;
    match setting {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => {
            if kvm_usable().is_ok() {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        }
    }
}
