//! The contract between the host and the guest: what the server tells the guest and where
//! each side finds the other. Both the server and the agent use these, so neither can drift.

/// Name of the virtio-serial port the agent answers on under QEMU (`/dev/virtio-ports/...`).
pub const SERIAL_PORT_NAME: &str = "noid.agent";

/// vsock port the agent listens on under Firecracker.
pub const VSOCK_PORT: u32 = 1024;

/// HTTP/2 flow-control windows of the agent channel, per stream and per connection. HTTP/2's
/// default (64 KiB) caps a stream at one window per round trip, and a round trip through a
/// TCG guest's virtio-serial port takes milliseconds: file copies and command output ran at
/// about 15 MiB/s for that alone.
pub const HTTP2_STREAM_WINDOW: u32 = 8 << 20;
pub const HTTP2_CONNECTION_WINDOW: u32 = 16 << 20;

/// File name of a VM's root disk, in its directory and in a checkpoint.
pub const DISK_FILE: &str = "rootfs.ext4";

/// The transfer disk (QEMU): a second virtio-blk disk that carries the bytes of file copies,
/// because the agent's virtio-serial port moves only about 15 MiB/s under TCG while the
/// block layer moves hundreds. Its serial number is how the agent tells it from the root
/// disk; the host keeps it as a sparse file in the VM's directory.
pub mod transfer_disk {
    /// The disk's serial number (virtio-blk allows 20 bytes).
    pub const SERIAL: &str = "noid-transfer";
    /// Its file in the VM's directory.
    pub const FILE: &str = "transfer.img";
    /// Its size: what a guest can make the host store at most, and the room for copies in
    /// flight at once.
    pub const BYTES: u64 = 64 << 20;
    /// Slot offsets and sizes, and the I/O on the disk, are multiples of this.
    pub const ALIGN: u64 = 4096;
}

/// Kernel command line keys the server sets and the agent reads.
pub mod cmdline {
    /// The guest's hostname.
    pub const HOSTNAME: &str = "noid.hostname";
    /// The guest's address with its prefix length, e.g. `172.16.0.5/24`.
    pub const IP: &str = "noid.ip";
    /// The guest's default gateway.
    pub const GATEWAY: &str = "noid.gw";
    /// Name servers, comma separated.
    pub const DNS: &str = "noid.dns";

    /// The value of `key=` on the kernel command line `line`.
    pub fn value(line: &str, key: &str) -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn values_are_found_by_whole_key() {
            let c = "console=ttyS0 noid.hostname=my-vm quiet noid.x=1 noid.ipx=no";
            assert_eq!(value(c, HOSTNAME).as_deref(), Some("my-vm"));
            assert_eq!(value(c, "noid.x").as_deref(), Some("1"));
            assert_eq!(value(c, IP), None);
            assert_eq!(value(c, "quiet"), None);
        }
    }
}
