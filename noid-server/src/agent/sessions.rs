//! The exec-session calls to a guest agent: start, list, attach, kill.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use noid::agent::v1 as pb;
use noid::agent::v1::agent_client::AgentClient;
use tonic::transport::Channel;

use super::status::answered;
use super::wire::{exit_status, pb_size, start_message};
use crate::core::ports::agent::{AgentError, SessionEvents};
use crate::core::types::{ExecInput, ExecSpec, SessionEvent, SessionInfo};

fn info(s: pb::SessionInfo) -> SessionInfo {
    SessionInfo {
        id: s.id,
        argv: s.argv,
        tty: s.tty,
        pid: s.pid,
        started_at: s.started_at,
        exit: s.exit.map(exit_status),
        buffered_bytes: s.buffered_bytes,
        dropped_bytes: s.dropped_bytes,
    }
}

pub async fn start(
    mut client: AgentClient<Channel>,
    timeout: Duration,
    spec: ExecSpec,
) -> Result<SessionInfo, AgentError> {
    let started = answered(timeout, client.start_session(start_message(spec))).await?;
    Ok(info(started.into_inner()))
}

pub async fn list(
    mut client: AgentClient<Channel>,
    timeout: Duration,
) -> Result<Vec<SessionInfo>, AgentError> {
    let listed = answered(timeout, client.list_sessions(pb::ListSessionsRequest {})).await?;
    Ok(listed.into_inner().sessions.into_iter().map(info).collect())
}

pub async fn kill(
    mut client: AgentClient<Channel>,
    timeout: Duration,
    id: u32,
    signal: i32,
) -> Result<SessionInfo, AgentError> {
    let request = pb::KillSessionRequest {
        session: id,
        signal,
    };
    let killed = answered(timeout, client.kill_session(request)).await?;
    Ok(info(killed.into_inner()))
}

fn to_request(input: ExecInput) -> pb::AttachRequest {
    use pb::attach_request::Msg;
    let msg = match input {
        ExecInput::Stdin(data) => Msg::Stdin(data),
        ExecInput::CloseStdin => Msg::CloseStdin(true),
        ExecInput::Signal(sig) => Msg::Signal(sig),
        ExecInput::Resize(size) => Msg::Resize(pb_size(size)),
    };
    pb::AttachRequest { msg: Some(msg) }
}

fn to_event(resp: pb::AttachResponse) -> Option<SessionEvent> {
    use pb::attach_response::Msg;
    Some(match resp.msg? {
        Msg::Dropped(n) => SessionEvent::Dropped(n),
        Msg::Stdout(d) => SessionEvent::Stdout(d),
        Msg::Stderr(d) => SessionEvent::Stderr(d),
        Msg::Exit(e) => SessionEvent::Exit(exit_status(e)),
    })
}

fn session_events(inbound: tonic::Streaming<pb::AttachResponse>) -> SessionEvents {
    inbound
        .filter_map(|item| async move {
            match item {
                Ok(resp) => to_event(resp).map(Ok),
                Err(status) => Some(Err(super::status::from_status(status))),
            }
        })
        .boxed()
}

/// The attach call itself, as a function whose future says it is `Send` (see `call_exec`).
#[allow(clippy::manual_async_fn)]
fn call_attach(
    mut client: AgentClient<Channel>,
    timeout: Duration,
    outbound: impl futures::Stream<Item = pb::AttachRequest> + Send + 'static,
) -> impl std::future::Future<Output = Result<SessionEvents, AgentError>> + Send + 'static {
    async move {
        let inbound = answered(timeout, client.attach_session(outbound))
            .await?
            .into_inner();
        Ok(session_events(inbound))
    }
}

pub async fn attach(
    client: AgentClient<Channel>,
    timeout: Duration,
    id: u32,
    input: BoxStream<'static, ExecInput>,
) -> Result<SessionEvents, AgentError> {
    let first = pb::AttachRequest {
        msg: Some(pb::attach_request::Msg::Session(id)),
    };
    let outbound = futures::stream::iter([first]).chain(input.map(to_request));
    call_attach(client, timeout, outbound).await
}
