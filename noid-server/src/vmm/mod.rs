//! The VMMs: one implementation of the core's VMM port (`core::ports::vmm`) per hypervisor,
//! `firecracker` (KVM hosts) and `qemu` (KVM or TCG); `select` picks one. Beside them what
//! they share: host processes, cgroups, the console shim, the kernel command line.

pub mod accel;
pub mod cgroup;
pub mod cgroup_moves;
pub mod firecracker;
pub mod process;
pub mod qemu;
pub mod qemu_img;
mod qemu_snapshot;
mod qemu_stream;
pub mod qmp;
pub mod select;
pub mod shim;

pub use crate::core::ports::vmm::{
    BootSpec, DiskFormat, RunState, SavedFile, VmHandle, Vmm, VmmError,
};

/// The guest kernel's command line for `spec`, with the VMM's own `extra` options.
pub fn kernel_cmdline(spec: &BootSpec, extra: &str) -> String {
    use noid::guest::cmdline::{DNS, GATEWAY, HOSTNAME, IP};
    let mut cmdline = format!(
        "console=ttyS0 root=/dev/vda rw quiet panic=-1 {extra} {HOSTNAME}={}",
        spec.hostname
    );
    if let Some(n) = &spec.net {
        cmdline.push_str(&format!(
            " {IP}={}/{} {GATEWAY}={} {DNS}={}",
            n.ip,
            n.prefix,
            n.gateway,
            n.dns.join(",")
        ));
    }
    cmdline
}
