//! Guest images. Every VM boots the one `base` (kernel and initramfs with the agent) and the
//! root filesystem of an image from the `store`: `default` (the base's own busybox userland)
//! or one made by importing a container image archive (`oci`, applying `layers`) or by
//! installing a Debian suite (`debian`), each turned into an ext4 disk (`ext4`); and the
//! Dockerfile subset that builds on them (`dockerfile`).

pub mod base;
pub mod debian;
pub mod dockerfile;
pub mod ext4;
pub mod layers;
pub mod oci;
pub mod store;

pub use base::Base;
pub use store::{ImageConfig, ImageError, ImageManifest, ImageStore};
