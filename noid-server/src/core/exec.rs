//! Running commands in a VM through its agent.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{CoreError, ExecEvent, ExecInput, ExecSpec, Manager, Result, User};
use crate::core::model::{VmRecord, VmState};

pub(super) fn validate(spec: &ExecSpec) -> Result<()> {
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(CoreError::InvalidArgument(
            "a command is required (argv must not be empty)".into(),
        ));
    }
    if spec.argv.iter().any(|a| a.contains('\0')) {
        return Err(CoreError::InvalidArgument(
            "command arguments must not contain NUL bytes".into(),
        ));
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(CoreError::InvalidArgument(format!(
                "invalid environment variable {:?}: names must be non-empty without '=' or NUL",
                noid::names::shorten(k)
            )));
        }
    }
    if let Some(cwd) = &spec.cwd {
        if !cwd.starts_with('/') || cwd.contains('\0') {
            return Err(CoreError::InvalidArgument(format!(
                "working directory {:?} must be an absolute path",
                noid::names::shorten(cwd)
            )));
        }
    }
    Ok(())
}

/// Messages of a command's output held for a client that reads slowly.
const EXEC_BUFFER: usize = 64;

/// Passes a command's events on to its client. A client that goes away ends it (the command
/// runs on in the guest). A client that stops reading for `stall` does not stop the command:
/// its output is dropped from then on, and instead of the exit status the client gets an error
/// that says how much was dropped (and the exit status).
async fn forward<S>(events: S, tx: mpsc::Sender<Result<ExecEvent>>, stall: Duration, vm: String)
where
    S: Stream<Item = Result<ExecEvent, super::ports::agent::AgentError>>,
{
    let mut events = std::pin::pin!(events);
    let mut dropped = 0usize;
    while let Some(event) = events.next().await {
        let event = event.map_err(CoreError::from);
        let size = match &event {
            Ok(ExecEvent::Stdout(d) | ExecEvent::Stderr(d)) => d.len(),
            _ => 0,
        };
        if dropped > 0 && size > 0 {
            dropped += size;
            continue;
        }
        let event = match event {
            Ok(ExecEvent::Exit(status)) if dropped > 0 => {
                Err(CoreError::ResourceExhausted(format!(
                    "{dropped} bytes of output were dropped: the client did not read for {}s \
                     (the command exited with code {}, signal {})",
                    stall.as_secs(),
                    status.code,
                    status.signal
                )))
            }
            other => other,
        };
        match tokio::time::timeout(stall, tx.send(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(
                    "an exec client of VM {vm} has not read its output for {}s: dropping it",
                    stall.as_secs()
                );
                dropped += size.max(1);
            }
        }
    }
}

impl Manager {
    /// The caller's VM `name`, if its guest runs (what talking to its agent needs). With
    /// `[vm] auto_resume`, a VM its user paused is resumed first.
    pub(super) async fn running_vm(&self, user: &User, name: &str) -> Result<VmRecord> {
        let vm = self.get_vm(user, name)?;
        let paused_by_user =
            vm.state_reason.as_deref() == Some(super::run_state::PAUSED_BY_REQUEST);
        match vm.state {
            VmState::Running => Ok(vm),
            VmState::Paused if paused_by_user && self.limits.auto_resume => {
                tracing::info!("VM {name} is paused: resuming it for a call (auto_resume)");
                self.resume_vm(user, name).await
            }
            VmState::Paused => Err(CoreError::FailedPrecondition(format!(
                "VM {name:?} is paused: {}",
                vm.state_reason.as_deref().unwrap_or("resume it first")
            ))),
            VmState::Hibernated => {
                tracing::info!("VM {name} is hibernated: waking it for a call");
                self.arc().wake_vm(user, name).await
            }
            VmState::Stopped => Err(CoreError::FailedPrecondition(format!(
                "VM {name:?} is stopped: start it first (noid start {name})"
            ))),
            other => Err(CoreError::FailedPrecondition(format!(
                "VM {name:?} is not running (state: {other})"
            ))),
        }
    }

    /// `spec` over the settings of the VM's image (Env, WorkingDir, User): what the request
    /// gives wins.
    pub(super) fn with_image_defaults(&self, vm: &VmRecord, mut spec: ExecSpec) -> ExecSpec {
        if vm.image == crate::images::store::DEFAULT {
            return spec;
        }
        let Ok(image) = self.images.get(&vm.image) else {
            return spec;
        };
        let config = image.config;
        let mut env: std::collections::HashMap<String, String> =
            config.env_pairs().into_iter().collect();
        env.extend(spec.env);
        spec.env = env;
        if spec.cwd.is_none() && !config.working_dir.is_empty() {
            spec.cwd = Some(config.working_dir);
        }
        if spec.user.is_none() && !config.user.is_empty() {
            spec.user = Some(config.user);
        }
        spec
    }

    /// Starts `spec` in the caller's VM `vm_name`. `input` feeds the command (its end closes
    /// stdin); the returned stream reports output and ends with `ExecEvent::Exit`.
    pub async fn exec<S>(
        &self,
        user: &User,
        vm_name: &str,
        spec: ExecSpec,
        input: S,
    ) -> Result<impl Stream<Item = Result<ExecEvent>> + Send + 'static>
    where
        S: Stream<Item = ExecInput> + Send + 'static,
    {
        validate(&spec)?;
        let vm = self.running_vm(user, vm_name).await?;
        let spec = self.with_image_defaults(&vm, spec);
        let asked = std::time::Instant::now();
        let events = match self.agent(&vm).exec(spec, input.boxed()).await {
            Ok(e) => {
                self.metrics.exec_started(asked.elapsed().as_secs_f64());
                e
            }
            Err(e) => {
                self.metrics.exec_failed();
                return Err(e.into());
            }
        };
        let stall = Duration::from_secs(self.limits.exec_stall_secs);
        let (tx, rx) = mpsc::channel(EXEC_BUFFER);
        // The VM is busy (not idle) until the command is done.
        let busy = self.activity.hold(&vm.id);
        let forwarding = forward(events, tx, stall, vm_name.to_string());
        tokio::spawn(async move {
            forwarding.await;
            drop(busy);
        });
        Ok(ReceiverStream::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_exec_specs() {
        let ok = ExecSpec {
            argv: vec!["true".into()],
            ..Default::default()
        };
        assert!(validate(&ok).is_ok());
        assert!(validate(&ExecSpec::default()).is_err());
        let mut bad_env = ok.clone();
        bad_env.env.insert("A=B".into(), "x".into());
        assert!(validate(&bad_env).is_err());
        let mut bad_cwd = ok.clone();
        bad_cwd.cwd = Some("relative".into());
        assert!(validate(&bad_cwd).is_err());
        // Hostile sizes are refused with a short message, not echoed whole.
        let mut huge_env = ok.clone();
        huge_env
            .env
            .insert(format!("{}=", "K".repeat(100_000)), "x".into());
        let mut huge_cwd = ok;
        huge_cwd.cwd = Some("d".repeat(100_000));
        for spec in [huge_env, huge_cwd] {
            let msg = validate(&spec).unwrap_err().to_string();
            assert!(msg.len() < 300, "{} bytes", msg.len());
        }
    }
}
