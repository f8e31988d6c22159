//! Shell completion of VM names and checkpoint ids, asked of the server while the user
//! types (clap_complete's dynamic completion; the shell sources `COMPLETE=bash noid`). It
//! uses the CLI's own server and token, waits at most two seconds, and on any failure (no
//! server, no token) offers nothing rather than an error in the middle of a command line.

use std::ffi::OsStr;
use std::time::Duration;

use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

const WAIT: Duration = Duration::from_secs(2);

pub fn vm_names() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let prefix = current.to_string_lossy().into_owned();
        ask(|mut client| async move {
            let vms = client
                .list_vms(noid::v1::ListVmsRequest::default())
                .await
                .ok()?
                .into_inner()
                .vms;
            Some(
                vms.into_iter()
                    .filter(|v| v.name.starts_with(&prefix))
                    .map(|v| CompletionCandidate::new(v.name))
                    .collect(),
            )
        })
    })
}

pub fn checkpoint_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let prefix = current.to_string_lossy().into_owned();
        ask(|mut client| async move {
            let list = client
                .list_checkpoints(noid::v1::ListCheckpointsRequest::default())
                .await
                .ok()?
                .into_inner()
                .checkpoints;
            Some(
                list.into_iter()
                    .filter(|c| c.id.starts_with(&prefix))
                    .map(|c| {
                        let help = match c.label.is_empty() {
                            true => c.vm,
                            false => format!("{} {}", c.vm, c.label),
                        };
                        CompletionCandidate::new(c.id).help(Some(help.into()))
                    })
                    .collect(),
            )
        })
    })
}

/// Runs `query` against the configured server on a runtime of its own (completion runs
/// before the CLI's), within `WAIT`; nothing when anything fails.
fn ask<F, Fut>(query: F) -> Vec<CompletionCandidate>
where
    F: FnOnce(noid::client::Client) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<CompletionCandidate>>>,
{
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime
        .block_on(async {
            let cfg = crate::config::load().ok()?;
            let url = cfg
                .url
                .clone()
                .unwrap_or_else(|| crate::config::DEFAULT_URL.to_string());
            let work = async {
                let client = noid::client::connect_with(&url, cfg.token.as_deref(), &cfg.trust())
                    .await
                    .ok()?;
                query(client).await
            };
            tokio::time::timeout(WAIT, work).await.ok().flatten()
        })
        .unwrap_or_default()
}
