//! The ports of the core: what it needs from the backends below it, in its own types. Each
//! backend implements one (`store::SledStore`, `agent::RemoteAgent`, `vmm::qemu::QemuVmm`,
//! `vmm::firecracker::FirecrackerVmm`, `disk` by `vmm::qemu_img::QemuImg`); the core holds only the traits. (Guest networking's
//! port is `network::Network`, whose rules are in the firewall's own types.)

pub mod agent;
pub mod disk;
pub mod store;
pub mod vmm;
