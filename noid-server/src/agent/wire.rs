//! The agent protocol's messages to and from the port's types: exec starts, input and
//! events, exit statuses and terminal sizes, shared by exec and sessions.

use noid::agent::v1 as pb;

use crate::core::types::{ExecEvent, ExecInput, ExecSpec, ExitStatus, TtySize};

pub fn pb_size(s: TtySize) -> pb::TtySize {
    pb::TtySize {
        rows: s.rows,
        cols: s.cols,
    }
}

pub fn to_request(input: ExecInput) -> pb::ExecRequest {
    use pb::exec_request::Msg;
    let msg = match input {
        ExecInput::Stdin(data) => Msg::Stdin(data),
        ExecInput::CloseStdin => Msg::CloseStdin(true),
        ExecInput::Signal(sig) => Msg::Signal(sig),
        ExecInput::Resize(size) => Msg::Resize(pb_size(size)),
    };
    pb::ExecRequest { msg: Some(msg) }
}

pub fn exit_status(e: pb::ExecExit) -> ExitStatus {
    ExitStatus {
        code: e.code,
        signal: e.signal,
        timed_out: e.timed_out,
    }
}

/// The agent's start message for `spec`.
pub fn start_message(spec: ExecSpec) -> pb::ExecStart {
    pb::ExecStart {
        user: spec.user.unwrap_or_default(),
        argv: spec.argv,
        env: spec.env,
        cwd: spec.cwd.unwrap_or_default(),
        stdin: spec.stdin,
        tty: spec.tty.is_some(),
        tty_size: spec.tty.map(pb_size),
        timeout_ms: spec
            .timeout
            .map(|d| d.as_millis().min(u32::MAX as u128) as u32)
            .unwrap_or(0),
    }
}

pub fn to_event(resp: pb::ExecResponse) -> Option<ExecEvent> {
    use pb::exec_response::Msg;
    Some(match resp.msg? {
        Msg::StartedPid(pid) => ExecEvent::Started { pid },
        Msg::Stdout(d) => ExecEvent::Stdout(d),
        Msg::Stderr(d) => ExecEvent::Stderr(d),
        Msg::Exit(e) => ExecEvent::Exit(exit_status(e)),
    })
}
