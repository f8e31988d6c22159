//! The exec-session RPCs: start, list, attach, kill, over the core.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use noid::v1 as pb;
use tonic::{Status, Streaming};

use super::convert;
use crate::core::{ExecInput, Manager, SessionEvent, SessionInfo, User};

pub fn session(s: SessionInfo) -> pb::Session {
    pb::Session {
        id: s.id,
        argv: s.argv,
        tty: s.tty,
        pid: s.pid,
        started_at: Some(noid::time::from_secs(s.started_at)),
        exit: s.exit.map(convert::exec_exit),
        buffered_bytes: s.buffered_bytes,
        dropped_bytes: s.dropped_bytes,
    }
}

fn event(e: SessionEvent) -> pb::AttachSessionResponse {
    use pb::attach_session_response::Msg;
    let msg = match e {
        SessionEvent::Dropped(n) => Msg::Dropped(n),
        SessionEvent::Stdout(d) => Msg::Stdout(d),
        SessionEvent::Stderr(d) => Msg::Stderr(d),
        SessionEvent::Exit(x) => Msg::Exit(convert::exec_exit(x)),
    };
    pb::AttachSessionResponse { msg: Some(msg) }
}

/// A client's message after `attach`, for the session; None for one it may not send.
fn input(m: pb::AttachSessionRequest) -> Option<ExecInput> {
    use pb::attach_session_request::Msg;
    Some(match m.msg? {
        Msg::Stdin(d) => ExecInput::Stdin(d),
        Msg::CloseStdin(_) => ExecInput::CloseStdin,
        Msg::Signal(s) => ExecInput::Signal(s),
        Msg::Resize(s) => ExecInput::Resize(convert::size(s)),
        Msg::Attach(_) => return None,
    })
}

/// Serves an AttachSession stream: its first message names the session.
pub async fn attach(
    core: &Arc<Manager>,
    user: &User,
    mut inbound: Streaming<pb::AttachSessionRequest>,
) -> Result<BoxStream<'static, Result<pb::AttachSessionResponse, Status>>, Status> {
    let target = match inbound.message().await? {
        Some(pb::AttachSessionRequest {
            msg: Some(pb::attach_session_request::Msg::Attach(t)),
        }) => t,
        _ => {
            return Err(Status::invalid_argument(
                "the first message of an AttachSession stream must be `attach`",
            ))
        }
    };
    // The client's messages until it goes (or breaks the stream): detaching ends them.
    let forwarded = inbound
        .take_while(|m| futures::future::ready(m.is_ok()))
        .filter_map(|m| futures::future::ready(m.ok().and_then(input)));
    let events = core
        .attach_session(user, &target.vm, target.session, forwarded)
        .await?;
    Ok(events.map(|e| e.map(event).map_err(Status::from)).boxed())
}
