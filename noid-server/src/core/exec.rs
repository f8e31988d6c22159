//! Running commands in a VM through its agent.

use futures::{Stream, StreamExt};

use super::{CoreError, ExecEvent, ExecInput, ExecSpec, Manager, Result, User};
use crate::store::VmState;

fn validate(spec: &ExecSpec) -> Result<()> {
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
                "invalid environment variable {k:?}: names must be non-empty without '=' or NUL"
            )));
        }
    }
    if let Some(cwd) = &spec.cwd {
        if !cwd.starts_with('/') || cwd.contains('\0') {
            return Err(CoreError::InvalidArgument(format!(
                "working directory {cwd:?} must be an absolute path"
            )));
        }
    }
    Ok(())
}

impl Manager {
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
        let vm = self.get_vm(user, vm_name)?;
        if vm.state != VmState::Running {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {vm_name:?} is not running (state: {:?})",
                vm.state
            )));
        }
        self.metrics.exec_started();
        let events = match self.agent(&vm).exec(spec, input).await {
            Ok(e) => e,
            Err(e) => {
                self.metrics.exec_failed();
                return Err(e.into());
            }
        };
        Ok(events.map(|e| e.map_err(CoreError::from)))
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
        let mut bad_cwd = ok;
        bad_cwd.cwd = Some("relative".into());
        assert!(validate(&bad_cwd).is_err());
    }
}
