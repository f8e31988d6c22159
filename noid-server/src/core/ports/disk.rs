//! The disk-overlay port: copy-on-write overlays over read-only raw disks, for a VMM that can
//! run a VM on one (QEMU's qcow2; `vmm::qemu_img` implements it). A VM on an overlay starts
//! without a copy of its image's data and writes only its own changes.

use std::path::Path;

/// Makes and folds overlays. Both calls block (they run the VMM's disk tool).
pub trait DiskOverlays: Send + Sync {
    /// Makes `overlay`, a new empty overlay over the raw disk `base_name`, which is named
    /// relative to the overlay's directory (so that the pair can be copied or moved together)
    /// and must not change while the overlay exists.
    fn create(&self, overlay: &Path, base_name: &str) -> std::io::Result<()>;

    /// Writes the data that `overlay` holds into its base (which it names), making the base
    /// the whole disk; the overlay is not to be used afterwards.
    fn commit(&self, overlay: &Path) -> std::io::Result<()>;
}
