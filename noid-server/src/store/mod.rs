//! Metadata that must survive a restart (VM, checkpoint, lease and user records), kept in
//! sled by `SledStore`, which implements the core's store ports (`core::ports::store`).

mod sled_store;

pub use sled_store::SledStore;
