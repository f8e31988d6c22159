//! Tables of per-object locks: one lock per VM (the flows that change it take turns) and one
//! per checkpoint (restores and forks read it while a delete waits for them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Locks of kind `L` by key, made on first use. Locks that no one holds or waits for are
/// dropped from the table on the way (an object that is gone would otherwise keep its entry
/// for ever): the next caller makes a new one, which excludes exactly as the old one did.
pub(super) struct LockTable<L>(Mutex<HashMap<String, Arc<L>>>);

impl<L> Default for LockTable<L> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<L: Default> LockTable<L> {
    /// The lock of `key`.
    pub fn get(&self, key: &str) -> Arc<L> {
        let mut locks = self.0.lock().expect("lock table");
        locks.retain(|k, lock| k == key || Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(key.to_string()).or_default())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::LockTable;

    #[tokio::test]
    async fn idle_locks_leave_the_table_and_held_ones_stay() {
        let table: LockTable<tokio::sync::Mutex<()>> = LockTable::default();
        let held = table.get("a").lock_owned().await;
        for i in 0..100 {
            drop(table.get(&format!("gone-{i}")).lock_owned().await);
        }
        table.get("b");
        assert_eq!(table.len(), 2, "the held lock and the one just asked for");
        assert!(table.get("a").try_lock_owned().is_err(), "still excludes");
        drop(held);
        assert!(table.get("a").try_lock_owned().is_ok());
    }
}
