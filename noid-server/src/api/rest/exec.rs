//! `POST /vms/:name/exec`: runs a command to its end and answers with its exit status and
//! its output, each stream captured up to `EXEC_OUTPUT_CAP`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{post, MethodRouter};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{caller, ApiError, Gateway};
use crate::core::{CoreError, ExecEvent, ExecInput, ExecSpec, User};

/// Each of stdout and stderr returned by `POST /vms/:name/exec` is cut at this size.
pub const EXEC_OUTPUT_CAP: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecBody {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: HashMap<String, String>,
    pub cwd: Option<String>,
    pub stdin: Option<String>,
    pub timeout_secs: Option<f64>,
}

/// An exec body's `timeout_secs` as a duration, refused unless it is a number of seconds in
/// range.
pub(super) fn exec_timeout(secs: Option<f64>) -> Result<Option<Duration>, CoreError> {
    match secs {
        Some(s) if !(0.001..4e6).contains(&s) => Err(CoreError::InvalidArgument(format!(
            "timeout_secs must be from 0.001 up to 4000000 seconds, got {s}"
        ))),
        s => Ok(s.map(Duration::from_secs_f64)),
    }
}

pub(super) fn handler() -> MethodRouter<Gateway> {
    post(exec)
}

async fn exec(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let u = caller(user)?;
    let b: ExecBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"command\": [...], ...}}: {}",
            noid::names::shorten(&e.to_string())
        ))
    })?;
    let timeout = exec_timeout(b.timeout_secs)?;
    let spec = ExecSpec {
        argv: b.command,
        env: b.env,
        cwd: b.cwd,
        stdin: b.stdin.is_some(),
        tty: None,
        timeout,
        user: None,
    };
    let input: Vec<ExecInput> = match b.stdin {
        Some(s) => vec![ExecInput::Stdin(s.into_bytes()), ExecInput::CloseStdin],
        None => vec![],
    };
    let mut events = Box::pin(
        gw.core
            .exec(&u, &name, spec, futures::stream::iter(input))
            .await?,
    );
    let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
    while let Some(ev) = events.next().await {
        match ev? {
            ExecEvent::Stdout(d) => truncated |= append_capped(&mut out, &d),
            ExecEvent::Stderr(d) => truncated |= append_capped(&mut err, &d),
            ExecEvent::Started { .. } => {}
            ExecEvent::Exit(x) => {
                return Ok(Json(json!({
                    "stdout": String::from_utf8_lossy(&out),
                    "stderr": String::from_utf8_lossy(&err),
                    "exit_code": x.code,
                    "signal": x.signal,
                    "timed_out": x.timed_out,
                    "truncated": truncated,
                })))
            }
        }
    }
    Err(CoreError::Unavailable("the command's stream ended without an exit status".into()).into())
}

/// Appends up to the cap; true when something was cut.
fn append_capped(buf: &mut Vec<u8>, data: &[u8]) -> bool {
    let room = EXEC_OUTPUT_CAP.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..room.min(data.len())]);
    data.len() > room
}
