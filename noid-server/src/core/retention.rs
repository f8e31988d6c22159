//! Checkpoint retention: each VM keeps its newest `keep_last` checkpoints and none older than
//! `max_age`, by its own settings or the server's `[checkpoints]` defaults (checkpoints of a
//! deleted VM go by the defaults). The rest are removed oldest first, after each checkpoint
//! and by a sweep once a minute; one that a running VM restored from it still maps is kept
//! until no VM does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::model::{CheckpointRecord, Retention, VmRecord};
use super::vms::now_secs;
use super::{CoreError, Manager, Result, User};

/// How often every VM's checkpoints are looked at for age.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The checkpoints (newest first) that `keep_last` and `max_age_secs` (0: no limit) do not
/// keep at `now`, with why.
fn beyond(
    newest_first: &[CheckpointRecord],
    keep_last: u32,
    max_age_secs: u64,
    now: i64,
) -> Vec<(&CheckpointRecord, String)> {
    newest_first
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let age = now.saturating_sub(c.created_at).max(0) as u64;
            if keep_last > 0 && i >= keep_last as usize {
                Some((c, format!("beyond the newest {keep_last}")))
            } else if max_age_secs > 0 && age > max_age_secs {
                Some((
                    c,
                    format!(
                        "older than {}",
                        humantime::format_duration(Duration::from_secs(max_age_secs))
                    ),
                ))
            } else {
                None
            }
        })
        .rev()
        .collect()
}

impl Manager {
    /// `own` with the server's defaults filled in.
    pub fn effective_retention(&self, own: Retention) -> Retention {
        Retention {
            keep_last: own.keep_last.or(Some(self.checkpoint_settings.keep_last)),
            max_age_secs: own.max_age_secs.or(Some(
                self.checkpoint_settings.max_age.map_or(0, |d| d.as_secs()),
            )),
        }
    }

    /// Changes the retention of the caller's VM `name` (what `update` leaves unset stays) and
    /// applies it at once.
    pub async fn set_checkpoint_retention(
        &self,
        user: &User,
        name: &str,
        update: Retention,
    ) -> Result<VmRecord> {
        let vm = {
            let (mut vm, _guard) = self.locked_vm(user, name).await?;
            vm.retention = vm.retention.updated(update);
            self.store.update_vm(&vm)?;
            vm
        };
        tracing::info!(
            "VM {name}: checkpoint retention {:?}",
            self.effective_retention(vm.retention)
        );
        self.apply_retention(&vm.id).await;
        Ok(vm)
    }

    /// Removes the checkpoints of the VM with id `vm_id` that its retention does not keep.
    /// Failures are logged: the next checkpoint or sweep tries again.
    pub(super) async fn apply_retention(&self, vm_id: &str) {
        let own = match self.store.list_vms(None) {
            Ok(vms) => vms
                .into_iter()
                .find(|v| v.id == vm_id)
                .map(|v| v.retention)
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!("checkpoint retention: {e}");
                return;
            }
        };
        let mut checkpoints = match self.store.list_checkpoints(None) {
            Ok(all) => all
                .into_iter()
                .filter(|c| c.vm_id == vm_id && !c.hibernation)
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!("checkpoint retention: {e}");
                return;
            }
        };
        checkpoints.sort_by(|a, b| b.age_order().cmp(&a.age_order()));
        let limits = self.effective_retention(own);
        let doomed = beyond(
            &checkpoints,
            limits.keep_last.unwrap_or(0),
            limits.max_age_secs.unwrap_or(0),
            now_secs(),
        );
        for (ckpt, why) in doomed {
            match self.remove_checkpoint(ckpt).await {
                Ok(()) => tracing::info!(
                    "checkpoint retention: removed {} of {} ({why})",
                    ckpt.id,
                    ckpt.vm_name
                ),
                Err(CoreError::FailedPrecondition(busy)) => {
                    tracing::debug!("checkpoint retention: kept {}: {busy}", ckpt.id)
                }
                Err(e) => tracing::warn!("checkpoint retention: {}: {e}", ckpt.id),
            }
        }
    }

    /// Starts the sweep; it ends with the core.
    pub(super) fn watch_retention(self: &Arc<Self>) {
        super::flow::every(self, SWEEP_EVERY, |core| async move {
            core.sweep_retention().await
        });
    }

    /// Applies every VM's retention (and the defaults to checkpoints of VMs that are gone).
    async fn sweep_retention(&self) {
        let Ok(all) = self.store.list_checkpoints(None) else {
            return;
        };
        let vm_ids: BTreeSet<String> = all.into_iter().map(|c| c.vm_id).collect();
        for vm_id in &vm_ids {
            self.apply_retention(vm_id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(id: &str, created_at: i64) -> CheckpointRecord {
        CheckpointRecord {
            created_at,
            ..CheckpointRecord::for_test(id, "vm")
        }
    }

    fn ids(v: Vec<(&CheckpointRecord, String)>) -> Vec<String> {
        v.into_iter().map(|(c, _)| c.id.clone()).collect()
    }

    #[test]
    fn keeps_the_newest_and_the_young_and_removes_oldest_first() {
        let newest_first = [
            ckpt("d", 400),
            ckpt("c", 300),
            ckpt("b", 200),
            ckpt("a", 100),
        ];
        assert!(beyond(&newest_first, 0, 0, 1000).is_empty(), "no limits");
        assert_eq!(ids(beyond(&newest_first, 2, 0, 1000)), ["a", "b"]);
        assert_eq!(ids(beyond(&newest_first, 0, 750, 1000)), ["a", "b"]);
        assert_eq!(ids(beyond(&newest_first, 3, 750, 1000)), ["a", "b"]);
        assert_eq!(ids(beyond(&newest_first, 1, 10_000, 1000)), ["a", "b", "c"]);
        let (_, why) = &beyond(&newest_first, 0, 750, 1000)[0];
        assert_eq!(why, "older than 12m 30s");
        // A clock that went back makes nothing old.
        assert!(beyond(&newest_first, 0, 1, 0).is_empty());
    }
}
