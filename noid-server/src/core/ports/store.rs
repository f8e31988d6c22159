//! The metadata store's ports: one small trait per kind of record, and `Store` for a backend
//! that keeps them all (`store::SledStore`). Every write is durable before it returns, so what
//! the API reports as done survives a crash.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::core::model::{CheckpointRecord, UserRecord, VmRecord};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("metadata store: {0}")]
    Backend(String),
    #[error("metadata store holds a record it cannot read: {0}")]
    Corrupt(String),
}

/// VM records, unique by owner and name.
pub trait VmStore: Send + Sync {
    /// Inserts a new VM; `Conflict` when its owner already has a VM of that name.
    fn insert_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    /// Replaces an existing VM record.
    fn update_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    fn remove_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    fn find_vm(&self, owner: &str, name: &str) -> Result<Option<VmRecord>, StoreError>;
    /// All VMs, or one owner's, sorted by name.
    fn list_vms(&self, owner: Option<&str>) -> Result<Vec<VmRecord>, StoreError>;
}

/// Checkpoint records, by id.
pub trait CheckpointStore: Send + Sync {
    /// Inserts (or, when rebuilt from a manifest, replaces) a checkpoint record.
    fn put_checkpoint(&self, c: &CheckpointRecord) -> Result<(), StoreError>;
    fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointRecord>, StoreError>;
    fn remove_checkpoint(&self, id: &str) -> Result<(), StoreError>;
    /// All checkpoints, or one owner's, newest first.
    fn list_checkpoints(&self, owner: Option<&str>) -> Result<Vec<CheckpointRecord>, StoreError>;
}

/// Network leases: which VM holds which guest address.
pub trait LeaseStore: Send + Sync {
    /// Leases the first of `candidates` that is free to `vm_id`; None when all are taken.
    fn allocate_lease(
        &self,
        vm_id: &str,
        candidates: &[Ipv4Addr],
    ) -> Result<Option<Ipv4Addr>, StoreError>;
    fn release_lease(&self, ip: Ipv4Addr) -> Result<(), StoreError>;
    /// Every lease: address and VM id.
    fn leases(&self) -> Result<Vec<(Ipv4Addr, String)>, StoreError>;
}

/// Users and the hashes of their tokens.
pub trait UserStore: Send + Sync {
    /// Inserts a user; `Conflict` when the name is taken.
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Replaces a user's token hash.
    fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    fn user_by_token_hash(&self, sha256: &str) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
}

/// A store of every kind of record.
pub trait Store: VmStore + CheckpointStore + LeaseStore + UserStore {}

impl<T: VmStore + CheckpointStore + LeaseStore + UserStore> Store for T {}
