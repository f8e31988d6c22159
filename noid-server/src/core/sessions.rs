//! Exec sessions through the core: the caller's VM (woken or resumed for the call as any
//! exec would), the image's defaults for the command, and the VM counted as busy while a
//! client is attached. The sessions themselves live in the guest's agent.

use futures::{Stream, StreamExt};

use super::exec::validate;
use super::types::{ExecInput, ExecSpec, SessionEvent, SessionInfo};
use super::{CoreError, Manager, Result, User};

impl Manager {
    /// Starts `spec` as a session in the caller's VM `vm_name`.
    pub async fn start_session(
        &self,
        user: &User,
        vm_name: &str,
        spec: ExecSpec,
    ) -> Result<SessionInfo> {
        validate(&spec)?;
        if spec.timeout.is_some() {
            return Err(CoreError::InvalidArgument(
                "a session has no timeout: kill it when it should stop".into(),
            ));
        }
        let vm = self.running_vm(user, vm_name).await?;
        let spec = self.with_image_defaults(&vm, spec);
        let info = self.agent(&vm).start_session(spec).await?;
        tracing::info!(
            "session {} started in {vm_name}: {}",
            info.id,
            info.argv.join(" ")
        );
        Ok(info)
    }

    pub async fn list_sessions(&self, user: &User, vm_name: &str) -> Result<Vec<SessionInfo>> {
        let vm = self.running_vm(user, vm_name).await?;
        Ok(self.agent(&vm).list_sessions().await?)
    }

    /// Attaches to session `id` of the caller's VM `vm_name`; `input` feeds it.
    pub async fn attach_session<S>(
        &self,
        user: &User,
        vm_name: &str,
        id: u32,
        input: S,
    ) -> Result<impl Stream<Item = Result<SessionEvent>> + Send + 'static>
    where
        S: Stream<Item = ExecInput> + Send + 'static,
    {
        let vm = self.running_vm(user, vm_name).await?;
        let events = self.agent(&vm).attach_session(id, input.boxed()).await?;
        // The VM is busy while the client is attached.
        let busy = self.activity.hold(&vm.id);
        Ok(events.map(move |e| {
            let _ = &busy;
            e.map_err(CoreError::from)
        }))
    }

    /// Signals session `id` of the caller's VM `vm_name` (0: SIGTERM).
    pub async fn kill_session(
        &self,
        user: &User,
        vm_name: &str,
        id: u32,
        signal: i32,
    ) -> Result<SessionInfo> {
        if !(0..=64).contains(&signal) {
            return Err(CoreError::InvalidArgument(format!(
                "{signal} is not a signal number"
            )));
        }
        let vm = self.running_vm(user, vm_name).await?;
        Ok(self.agent(&vm).kill_session(id, signal).await?)
    }
}
