//! Calls to VMs, for idle timeouts: when each VM was last called, and which have a call open
//! (an exec stream, an attached console), which keeps a VM busy however long it lasts.
//! Kept in memory: after a server restart every VM counts as just called.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Activity {
    by_vm: Arc<Mutex<HashMap<String, Entry>>>,
    /// When this server started: a VM not called since counts as called then.
    since: Since,
}

struct Since(Instant);

impl Default for Since {
    fn default() -> Self {
        Since(Instant::now())
    }
}

struct Entry {
    last: Instant,
    open: usize,
}

/// An open call to a VM; the VM is busy until it drops.
pub struct Hold {
    by_vm: Arc<Mutex<HashMap<String, Entry>>>,
    vm_id: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut map = self.by_vm.lock().expect("activity lock");
        if let Some(e) = map.get_mut(&self.vm_id) {
            e.open = e.open.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

impl Activity {
    /// The VM was called just now.
    pub fn touch(&self, vm_id: &str) {
        let mut map = self.by_vm.lock().expect("activity lock");
        map.entry(vm_id.to_string())
            .and_modify(|e| e.last = Instant::now())
            .or_insert(Entry {
                last: Instant::now(),
                open: 0,
            });
    }

    /// A call to the VM that stays open until the returned hold drops.
    pub fn hold(&self, vm_id: &str) -> Hold {
        let mut map = self.by_vm.lock().expect("activity lock");
        let e = map.entry(vm_id.to_string()).or_insert(Entry {
            last: Instant::now(),
            open: 0,
        });
        e.open += 1;
        e.last = Instant::now();
        Hold {
            by_vm: Arc::clone(&self.by_vm),
            vm_id: vm_id.to_string(),
        }
    }

    /// How long the VM has gone without a call; zero while one is open.
    pub fn idle_for(&self, vm_id: &str) -> Duration {
        let map = self.by_vm.lock().expect("activity lock");
        match map.get(vm_id) {
            Some(e) if e.open > 0 => Duration::ZERO,
            Some(e) => e.last.elapsed(),
            None => self.since.0.elapsed(),
        }
    }

    /// Forgets a VM that is gone.
    pub fn forget(&self, vm_id: &str) {
        self.by_vm.lock().expect("activity lock").remove(vm_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_call_keeps_a_vm_busy_and_its_end_counts_as_a_call() {
        let a = Activity::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(a.idle_for("v") >= Duration::from_millis(20), "since start");
        a.touch("v");
        assert!(a.idle_for("v") < Duration::from_millis(20));
        let hold = a.hold("v");
        let second = a.hold("v");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(a.idle_for("v"), Duration::ZERO);
        drop(hold);
        assert_eq!(a.idle_for("v"), Duration::ZERO, "one call still open");
        drop(second);
        assert!(a.idle_for("v") < Duration::from_millis(20));
        a.forget("v");
        assert!(a.idle_for("v") >= Duration::from_millis(20));
    }
}
