//! The store ports on sled. Trees: `vms` (id -> record), `vm_names` (owner NUL name -> id), `users`
//! (name -> record), `tokens` (token hash -> user name). Multi-tree changes are transactions.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::core::model::{CheckpointRecord, UserRecord, VmRecord};
use crate::core::ports::store::{CheckpointStore, LeaseStore, StoreError, UserStore, VmStore};

pub struct SledStore {
    db: sled::Db,
    vms: sled::Tree,
    vm_names: sled::Tree,
    users: sled::Tree,
    tokens: sled::Tree,
    checkpoints: sled::Tree,
    leases: sled::Tree,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn name_key(owner: &str, name: &str) -> Vec<u8> {
    [owner.as_bytes(), b"\0", name.as_bytes()].concat()
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records always serialize")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open().map_err(|e| match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Backend(format!(
                    "{} is in use by another noid-server process",
                    dir.display()
                ))
            }
            other => backend(other),
        })?;
        Ok(Self {
            vms: db.open_tree("vms").map_err(backend)?,
            vm_names: db.open_tree("vm_names").map_err(backend)?,
            users: db.open_tree("users").map_err(backend)?,
            tokens: db.open_tree("tokens").map_err(backend)?,
            checkpoints: db.open_tree("checkpoints").map_err(backend)?,
            leases: db.open_tree("leases").map_err(backend)?,
            db,
        })
    }

    /// Makes every write so far durable. It waits for the disk: called from a runtime worker
    /// thread, the worker is handed over to the blocking pool meanwhile (`block_in_place`),
    /// so other tasks keep running.
    fn flush(&self) -> Result<(), StoreError> {
        let flush = || self.db.flush().map(|_| ()).map_err(backend);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(flush)
            }
            _ => flush(),
        }
    }
}

impl VmStore for SledStore {
    fn insert_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let key = name_key(&vm.owner, &vm.name);
        (&self.vms, &self.vm_names)
            .transaction(|(vms, names)| {
                if names.get(&key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        format!("VM {:?}", vm.name),
                    )));
                }
                names.insert(key.as_slice(), vm.id.as_bytes())?;
                vms.insert(vm.id.as_bytes(), encode(vm))?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    fn update_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        self.vms
            .insert(vm.id.as_bytes(), encode(vm))
            .map_err(backend)?;
        self.flush()
    }

    fn remove_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let key = name_key(&vm.owner, &vm.name);
        (&self.vms, &self.vm_names)
            .transaction(|(vms, names)| {
                vms.remove(vm.id.as_bytes())?;
                if names.get(&key)?.as_deref() == Some(vm.id.as_bytes()) {
                    names.remove(key.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    fn find_vm(&self, owner: &str, name: &str) -> Result<Option<VmRecord>, StoreError> {
        let Some(id) = self.vm_names.get(name_key(owner, name)).map_err(backend)? else {
            return Ok(None);
        };
        self.vms
            .get(id)
            .map_err(backend)?
            .map(|b| decode(&b))
            .transpose()
    }

    fn list_vms(&self, owner: Option<&str>) -> Result<Vec<VmRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.vms.iter() {
            let (_, v) = item.map_err(backend)?;
            let vm: VmRecord = decode(&v)?;
            if owner.is_none_or(|o| o == vm.owner) {
                out.push(vm);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

impl CheckpointStore for SledStore {
    fn put_checkpoint(&self, c: &CheckpointRecord) -> Result<(), StoreError> {
        self.checkpoints
            .insert(c.id.as_bytes(), encode(c))
            .map_err(backend)?;
        self.flush()
    }

    fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointRecord>, StoreError> {
        self.checkpoints
            .get(id.as_bytes())
            .map_err(backend)?
            .map(|b| decode(&b))
            .transpose()
    }

    fn remove_checkpoint(&self, id: &str) -> Result<(), StoreError> {
        self.checkpoints.remove(id.as_bytes()).map_err(backend)?;
        self.flush()
    }

    fn list_checkpoints(&self, owner: Option<&str>) -> Result<Vec<CheckpointRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let c: CheckpointRecord = decode(&item.map_err(backend)?.1)?;
            if owner.is_none_or(|o| o == c.owner) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.age_order().cmp(&a.age_order()));
        Ok(out)
    }
}

impl LeaseStore for SledStore {
    fn allocate_lease(
        &self,
        vm_id: &str,
        candidates: &[std::net::Ipv4Addr],
    ) -> Result<Option<std::net::Ipv4Addr>, StoreError> {
        let got = self
            .leases
            .transaction(|t| {
                for ip in candidates {
                    let key = ip.octets();
                    if t.get(key)?.is_none() {
                        t.insert(&key, vm_id.as_bytes())?;
                        return Ok(Some(*ip));
                    }
                }
                Ok(None)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(got)
    }

    fn release_lease(&self, ip: std::net::Ipv4Addr) -> Result<(), StoreError> {
        self.leases.remove(ip.octets()).map_err(backend)?;
        self.flush()
    }

    fn leases(&self) -> Result<Vec<(std::net::Ipv4Addr, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.leases.iter() {
            let (k, v) = item.map_err(backend)?;
            let octets: [u8; 4] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("lease key".into()))?;
            out.push((octets.into(), String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }
}

impl UserStore for SledStore {
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        (&self.users, &self.tokens)
            .transaction(|(users, tokens)| {
                if users.get(user.name.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        format!("user {:?}", user.name),
                    )));
                }
                users.insert(user.name.as_bytes(), encode(user))?;
                tokens.insert(user.token_sha256.as_bytes(), user.name.as_bytes())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        (&self.users, &self.tokens)
            .transaction(|(users, tokens)| {
                if let Some(old) = users.get(user.name.as_bytes())? {
                    let old: UserRecord =
                        decode(&old).map_err(ConflictableTransactionError::Abort)?;
                    tokens.remove(old.token_sha256.as_bytes())?;
                }
                users.insert(user.name.as_bytes(), encode(user))?;
                tokens.insert(user.token_sha256.as_bytes(), user.name.as_bytes())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .get(name.as_bytes())
            .map_err(backend)?
            .map(|b| decode(&b))
            .transpose()
    }

    fn user_by_token_hash(&self, sha256: &str) -> Result<Option<UserRecord>, StoreError> {
        let Some(name) = self.tokens.get(sha256.as_bytes()).map_err(backend)? else {
            return Ok(None);
        };
        self.get_user(&String::from_utf8_lossy(&name))
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users
            .iter()
            .map(|item| decode(&item.map_err(backend)?.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(id: &str, owner: &str, name: &str) -> VmRecord {
        VmRecord::for_test(id, owner, name)
    }

    #[test]
    fn names_are_unique_per_owner_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.insert_vm(&vm("a1", "alice", "web")).unwrap();
            s.insert_vm(&vm("b1", "bob", "web")).unwrap();
            assert!(matches!(
                s.insert_vm(&vm("a2", "alice", "web")),
                Err(StoreError::Conflict(_))
            ));
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.find_vm("alice", "web").unwrap().unwrap().id, "a1");
        assert_eq!(s.list_vms(Some("bob")).unwrap().len(), 1);
        s.remove_vm(&vm("a1", "alice", "web")).unwrap();
        assert!(s.find_vm("alice", "web").unwrap().is_none());
        assert_eq!(s.list_vms(None).unwrap().len(), 1);
    }

    #[test]
    fn leases_are_exclusive_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let ips: Vec<std::net::Ipv4Addr> = (2..4).map(|i| [10, 0, 0, i].into()).collect();
        assert_eq!(s.allocate_lease("a", &ips).unwrap(), Some(ips[0]));
        assert_eq!(s.allocate_lease("b", &ips).unwrap(), Some(ips[1]));
        assert_eq!(s.allocate_lease("c", &ips).unwrap(), None);
        s.release_lease(ips[0]).unwrap();
        assert_eq!(s.allocate_lease("c", &ips).unwrap(), Some(ips[0]));
        assert_eq!(s.leases().unwrap().len(), 2);
    }

    #[test]
    fn rotating_a_token_invalidates_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut u = UserRecord {
            name: "alice".into(),
            token_sha256: "old".into(),
            created_at: 0,
        };
        s.insert_user(&u).unwrap();
        assert!(matches!(s.insert_user(&u), Err(StoreError::Conflict(_))));
        u.token_sha256 = "new".into();
        s.update_user(&u).unwrap();
        assert!(s.user_by_token_hash("old").unwrap().is_none());
        assert_eq!(s.user_by_token_hash("new").unwrap().unwrap().name, "alice");
    }
}
