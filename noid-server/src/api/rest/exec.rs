//! `POST /vms/:name/exec`: runs a command to its end and answers with its exit status and
//! its output, each stream captured up to `EXEC_OUTPUT_CAP`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{post, MethodRouter};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

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
    /// How stdin is given and stdout/stderr are answered: "utf8" (the default) or "base64".
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Encoding {
    #[default]
    Utf8,
    Base64,
}

/// `bytes` under `key` in `answer` as `encoding` says; UTF-8 text that is not valid UTF-8 also
/// goes, exactly, under `KEY_base64`, so that nothing is lost.
fn put_output(
    answer: &mut serde_json::Map<String, Value>,
    key: &str,
    bytes: &[u8],
    encoding: Encoding,
) {
    use base64::Engine;
    let b64 = || Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    match encoding {
        Encoding::Base64 => {
            answer.insert(key.to_string(), b64());
        }
        Encoding::Utf8 => {
            answer.insert(key.to_string(), String::from_utf8_lossy(bytes).into());
            if std::str::from_utf8(bytes).is_err() {
                answer.insert(format!("{key}_base64"), b64());
            }
        }
    }
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
        Some(s) => {
            let bytes = match b.encoding {
                Encoding::Utf8 => s.into_bytes(),
                Encoding::Base64 => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_bytes())
                        .map_err(|e| ApiError::invalid(format!("stdin is not base64: {e}")))?
                }
            };
            vec![ExecInput::Stdin(bytes), ExecInput::CloseStdin]
        }
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
                let mut answer = serde_json::Map::new();
                put_output(&mut answer, "stdout", &out, b.encoding);
                put_output(&mut answer, "stderr", &err, b.encoding);
                answer.insert("exit_code".into(), x.code.into());
                answer.insert("signal".into(), x.signal.into());
                answer.insert("timed_out".into(), x.timed_out.into());
                answer.insert("truncated".into(), truncated.into());
                return Ok(Json(Value::Object(answer)));
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
