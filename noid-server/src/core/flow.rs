//! How the core runs its work: long flows in tasks of their own (a client that goes away
//! cannot leave one half done), blocking file system work off the async threads, and rounds
//! that repeat for as long as the core lives.

use std::future::Future;

use super::{CoreError, Result};

/// Runs `flow` in a task of its own and waits for it; the flow finishes (or undoes itself)
/// even if the caller is dropped meanwhile. `what` names the flow should its task panic.
pub(super) async fn detached<T, F>(what: &'static str, flow: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    tokio::spawn(flow)
        .await
        .map_err(|e| CoreError::Internal(format!("the {what} task failed: {e}")))?
}

/// Runs blocking work (disk copies, large reads and writes) on the blocking pool.
pub(super) async fn blocking<T, F>(work: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| std::io::Error::other(format!("blocking task failed: {e}")))?
}

/// Runs `round` on the core every `period`, in a task of its own that ends with the core.
pub(super) fn every<F, Fut>(
    core: &std::sync::Arc<super::Manager>,
    period: std::time::Duration,
    round: F,
) where
    F: Fn(std::sync::Arc<super::Manager>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let core = std::sync::Arc::downgrade(core);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(core) = core.upgrade() else {
                return;
            };
            round(core).await;
        }
    });
}
