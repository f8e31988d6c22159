//! Forking one checkpoint into many VMs in one call: `<prefix>-1` .. `<prefix>-<count>`, made
//! side by side, each a fork of its own (address, MAC, hostname, entropy). One that fails
//! is undone by its own restore flow and leaves the others be.

use std::sync::Arc;

use futures::StreamExt;

use super::model::VmRecord;
use super::{CoreError, Manager, Restore, Result, User};

/// The most forks one call makes.
pub const MAX_FORKS: u32 = 64;
/// Forks started at once: more would only queue for the host's CPUs.
const AT_ONCE: usize = 8;

impl Manager {
    /// Forks the caller's checkpoint into `count` new VMs; each name with its VM or its error,
    /// in order. Errors about the request as a whole (a bad prefix or count, an unknown
    /// checkpoint) come back before anything is made.
    pub async fn fork_many(
        self: &Arc<Self>,
        user: &User,
        checkpoint_id: &str,
        prefix: &str,
        count: u32,
        net_policy: Option<noid::netpolicy::NetPolicy>,
    ) -> Result<Vec<(String, Result<VmRecord>)>> {
        if count == 0 || count > MAX_FORKS {
            return Err(CoreError::InvalidArgument(format!(
                "count must be 1 to {MAX_FORKS}, not {count}"
            )));
        }
        noid::names::validate_name("VM name prefix", prefix)?;
        let names: Vec<String> = (1..=count).map(|i| format!("{prefix}-{i}")).collect();
        // The longest name must be a valid name too.
        noid::names::validate_name("VM", names.last().expect("count > 0"))?;
        self.get_checkpoint(user, checkpoint_id)?;
        let results = futures::stream::iter(names.into_iter().map(|name| {
            let restore = Restore {
                checkpoint_id: checkpoint_id.to_string(),
                new_name: Some(name.clone()),
                net_policy: net_policy.clone(),
                request_id: None,
            };
            async move { (name, self.restore(user, restore).await) }
        }))
        .buffered(AT_ONCE)
        .collect::<Vec<_>>()
        .await;
        let made = results.iter().filter(|(_, r)| r.is_ok()).count();
        tracing::info!(
            "Forked checkpoint {checkpoint_id} into {made} of {count} VMs ({prefix}-1..{prefix}-{count})"
        );
        Ok(results)
    }
}
