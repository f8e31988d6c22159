//! The bookkeeping of warm VMMs (`warm_vmms`): which are ready for which boot snapshot, for
//! which one is being made, and the creates that wait for the one being made. No I/O here;
//! making, taking and stopping them is `warm_vmms`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::core::model::ProcessId;

/// What the pool holds: something made for one key (a boot snapshot).
pub(super) trait Keyed {
    fn key(&self) -> &str;
}

pub(super) struct Pool<W> {
    state: Mutex<State<W>>,
}

impl<W> Default for Pool<W> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                ready: Vec::new(),
                making: HashMap::new(),
            }),
        }
    }
}

struct State<W> {
    ready: Vec<W>,
    /// Keys some are being made for.
    making: HashMap<String, Making<W>>,
}

struct Making<W> {
    /// How many makers work for the key.
    makers: usize,
    /// The VMMs of those being made that have started.
    processes: Vec<ProcessId>,
    /// Creates waiting for the next one made, first come first served.
    waiters: VecDeque<oneshot::Sender<W>>,
}

impl<W: Keyed> Pool<W> {
    /// Takes a ready one of `key` that `usable` accepts; returns it with those of `key` that
    /// `usable` refused (to be stopped).
    pub fn take_ready(&self, key: &str, usable: impl Fn(&W) -> bool) -> (Option<W>, Vec<W>) {
        let mut state = self.state.lock().unwrap();
        let mut refused = Vec::new();
        while let Some(i) = state.ready.iter().position(|w| w.key() == key) {
            let w = state.ready.swap_remove(i);
            if usable(&w) {
                return (Some(w), refused);
            }
            refused.push(w);
        }
        (None, refused)
    }

    /// Waits in line for the next one made for `key`, if any is being made: the receiver,
    /// and the VMMs being made that have started (the caller hurries them).
    pub fn wait_for_making(&self, key: &str) -> Option<(oneshot::Receiver<W>, Vec<ProcessId>)> {
        let mut state = self.state.lock().unwrap();
        let making = state.making.get_mut(key)?;
        let (tx, rx) = oneshot::channel();
        making.waiters.push_back(tx);
        Some((rx, making.processes.clone()))
    }

    /// Adds a maker for `key` unless `most` work for it: whether the caller is one.
    pub fn begin_making(&self, key: &str, most: usize) -> bool {
        let mut state = self.state.lock().unwrap();
        let making = state.making.entry(key.to_string()).or_insert(Making {
            makers: 0,
            processes: Vec::new(),
            waiters: VecDeque::new(),
        });
        if making.makers >= most {
            return false;
        }
        making.makers += 1;
        true
    }

    /// A maker for `key` started VMM `process`: whether a create waits.
    pub fn started(&self, key: &str, process: ProcessId) -> bool {
        let mut state = self.state.lock().unwrap();
        match state.making.get_mut(key) {
            Some(making) => {
                making.processes.push(process);
                making.waiters.iter().any(|w| !w.is_closed())
            }
            None => false,
        }
    }

    /// Whether a maker for `key`, done with what it made (`made`, its VMM), should make
    /// another: the ready ones and those the other makers are making are fewer than
    /// `target` and the creates that wait. If not, this maker ends (in the same step, so that
    /// no create begins to wait for a making that is over).
    pub fn need_more(&self, key: &str, target: usize, made: Option<ProcessId>) -> bool {
        let mut state = self.state.lock().unwrap();
        let ready = state.ready.iter().filter(|w| w.key() == key).count();
        let Some(making) = state.making.get_mut(key) else {
            return false;
        };
        making.waiters.retain(|w| !w.is_closed());
        making.processes.retain(|p| Some(*p) != made);
        if ready + making.makers - 1 < target + making.waiters.len() {
            return true;
        }
        making.makers -= 1;
        if making.makers == 0 {
            state.making.remove(key);
        }
        false
    }

    /// Hands a newly made one to the first create still waiting for it, or makes it ready.
    pub fn deliver(&self, mut w: W) {
        let mut state = self.state.lock().unwrap();
        if let Some(making) = state.making.get_mut(w.key()) {
            while let Some(waiter) = making.waiters.pop_front() {
                match waiter.send(w) {
                    Ok(()) => return,
                    Err(back) => w = back,
                }
            }
        }
        state.ready.push(w);
    }

    /// A maker for `key` failed: it ends; when it was the last, the creates waiting learn
    /// so (their receivers fail).
    pub fn abandon(&self, key: &str) {
        let mut state = self.state.lock().unwrap();
        if let Some(making) = state.making.get_mut(key) {
            making.makers -= 1;
            if making.makers == 0 {
                state.making.remove(key);
            }
        }
    }

    /// Makes `w` ready again (a create took it but did not use it).
    pub fn put_back(&self, w: W) {
        self.state.lock().unwrap().ready.push(w);
    }

    /// Removes the ready ones that `doomed` picks.
    pub fn remove_ready(&self, doomed: impl Fn(&W) -> bool) -> Vec<W> {
        let mut state = self.state.lock().unwrap();
        let (out, kept) = std::mem::take(&mut state.ready)
            .into_iter()
            .partition(|w| doomed(w));
        state.ready = kept;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Made(&'static str, u32);

    impl Keyed for Made {
        fn key(&self) -> &str {
            self.0
        }
    }

    const P: ProcessId = ProcessId {
        pid: 7,
        start_time: 1,
    };

    #[test]
    fn takes_a_usable_ready_one_of_its_key_and_returns_the_refused() {
        let pool = Pool::default();
        pool.put_back(Made("a", 1));
        pool.put_back(Made("b", 2));
        pool.put_back(Made("a", 3));
        let (taken, refused) = pool.take_ready("a", |m| m.1 == 3);
        assert_eq!(taken, Some(Made("a", 3)));
        assert_eq!(refused, vec![Made("a", 1)]);
        assert_eq!(pool.take_ready("a", |_| true), (None, vec![]));
        assert_eq!(pool.remove_ready(|m| m.0 == "b"), vec![Made("b", 2)]);
    }

    #[test]
    fn a_waiting_create_gets_the_next_one_made() {
        let pool = Pool::default();
        assert!(pool.wait_for_making("a").is_none(), "nothing is being made");
        assert!(pool.begin_making("a", 1));
        assert!(!pool.begin_making("a", 1), "at most one maker here");
        let (mut rx, processes) = pool.wait_for_making("a").unwrap();
        assert!(processes.is_empty());
        assert!(pool.started("a", P), "a create waits");
        assert_eq!(pool.wait_for_making("a").unwrap().1, vec![P]);
        pool.deliver(Made("a", 1));
        assert_eq!(rx.try_recv().unwrap(), Made("a", 1));
        // The second waiter gave up (its receiver is gone): nobody waits, none is wanted.
        assert!(!pool.need_more("a", 0, Some(P)));
        assert!(pool.begin_making("a", 1));
        drop(pool.wait_for_making("a"));
        assert!(!pool.started("a", P));
        pool.deliver(Made("a", 2));
        assert!(pool.need_more("a", 2, Some(P)));
        assert!(!pool.need_more("a", 1, Some(P)));
        assert_eq!(pool.take_ready("a", |_| true).0, Some(Made("a", 2)));
    }

    #[test]
    fn a_second_maker_works_only_while_creates_wait() {
        let pool: Pool<Made> = Pool::default();
        assert!(pool.begin_making("a", 2));
        assert!(pool.begin_making("a", 2));
        assert!(!pool.begin_making("a", 2));
        // One ready wanted, and the other maker makes it: this one stops at once.
        assert!(!pool.need_more("a", 1, None));
        // A create waits: a maker for it and one for the pool.
        assert!(pool.begin_making("a", 2));
        let (_rx, _) = pool.wait_for_making("a").unwrap();
        assert!(pool.need_more("a", 1, None));
        assert!(pool.need_more("a", 1, None));
    }

    #[test]
    fn a_failed_making_fails_its_waiters_and_ends() {
        let pool: Pool<Made> = Pool::default();
        assert!(pool.begin_making("a", 1));
        let (mut rx, _) = pool.wait_for_making("a").unwrap();
        assert!(pool.need_more("a", 0, None), "a create waits");
        pool.abandon("a");
        assert!(rx.try_recv().is_err());
        assert!(pool.begin_making("a", 1));
    }
}
