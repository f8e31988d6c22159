//! The REST/WebSocket gateway: a grpc-gateway-style shim over the same core as the gRPC
//! service, with the same bearer tokens (WebSockets may pass `?token=`, since browsers cannot
//! set headers) and the same error mapping (`{"error", "code"}` with the matching HTTP status).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::status::{grpc_code, http_status};
use crate::core::{CoreError, CreateVm, ExecEvent, ExecInput, ExecSpec, Manager, Restore, User};
use crate::store::{CheckpointRecord, VmRecord};

/// Each of stdout and stderr returned by `POST /vms/:name/exec` is cut at this size.
pub const EXEC_OUTPUT_CAP: usize = 1 << 20;

pub(super) type Core = Arc<Manager>;

pub struct ApiError(CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

/// The gRPC code's canonical name, e.g. "NOT_FOUND".
pub fn code_name(e: &CoreError) -> &'static str {
    use tonic::Code::*;
    match grpc_code(e) {
        InvalidArgument => "INVALID_ARGUMENT",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        FailedPrecondition => "FAILED_PRECONDITION",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        Unavailable => "UNAVAILABLE",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        Unauthenticated => "UNAUTHENTICATED",
        Unimplemented => "UNIMPLEMENTED",
        _ => "INTERNAL",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(http_status(&self.0)).expect("valid status");
        let code = code_name(&self.0);
        let body = json!({ "error": self.0.to_string(), "code": code });
        let mut resp = (status, Json(body)).into_response();
        // For the metrics middleware below.
        resp.extensions_mut().insert(ErrorCode(code));
        resp
    }
}

/// The authenticated caller: `Authorization: Bearer <token>`, or `?token=` for WebSockets.
pub struct Caller(pub(super) User);

#[axum::async_trait]
impl FromRequestParts<Core> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let query_token = parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(|t| format!("Bearer {t}"))
        });
        let user = core.authenticate(header.or(query_token).as_deref())?;
        Ok(Caller(user))
    }
}

pub fn vm_json(v: &VmRecord) -> Value {
    json!({
        "name": v.name,
        "id": v.id,
        "state": v.state.as_str(),
        "cpus": v.cpus,
        "memory_mib": v.memory_mib,
        "created_at": v.created_at,
        "backend": v.backend,
        "image_id": v.image_id,
        "kernel_release": v.kernel_release,
        "address": v.net.as_ref().map(|n| n.ip.to_string()),
        "ports": v.net.iter().flat_map(|n| &n.ports)
            .map(|p| json!({"host_port": p.host, "guest_port": p.guest})).collect::<Vec<_>>(),
        "parent_checkpoint": v.parent_checkpoint,
        "network_policy": v.net.as_ref().map(|n| &n.policy),
        "state_reason": v.state_reason,
    })
}

/// A network policy in a request body; `egress` absent means the server's default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    egress: Option<noid::netpolicy::Egress>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    isolated: bool,
}

impl PolicyBody {
    fn parse(self, core: &Manager) -> Result<noid::netpolicy::NetPolicy, CoreError> {
        core.parse_policy(self.egress, &self.allow, &self.deny, self.isolated)
    }
}

pub fn checkpoint_json(c: &CheckpointRecord) -> Value {
    json!({
        "id": c.id,
        "vm": c.vm_name,
        "label": c.label,
        "created_at": c.created_at,
        "memory_bytes": c.memory_bytes,
        "disk_bytes": c.disk_bytes,
        "backend": c.backend,
        "parent_checkpoint": c.parent,
    })
}

#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

async fn count_errors(State(core): State<Core>, resp: Response) -> Response {
    if let Some(ErrorCode(code)) = resp.extensions().get::<ErrorCode>() {
        core.metrics.error(code);
    }
    resp
}

async fn metrics(State(core): State<Core>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        core.render_metrics(),
    )
}

pub fn router(core: Core) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/vms", get(list_vms).post(create_vm))
        .route("/vms/:name", get(get_vm).delete(delete_vm))
        .route("/vms/:name/exec", post(exec))
        .route("/vms/:name/resume", post(resume_vm))
        .route(
            "/vms/:name/files",
            get(super::rest_files::get_file).put(super::rest_files::put_file),
        )
        .route(
            "/vms/:name/checkpoints",
            get(list_checkpoints).post(create_checkpoint),
        )
        .route("/vms/:name/restore", post(restore))
        .route("/vms/:name/network_policy", put(set_network_policy))
        .route("/console/:name", get(console))
        .route("/logs/:name", get(logs))
        .route(
            "/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .layer(axum::middleware::map_response_with_state(
            core.clone(),
            count_errors,
        ))
        .with_state(core)
}

async fn list_vms(State(core): State<Core>, Caller(u): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(core
        .list_vms(&u)?
        .iter()
        .map(vm_json)
        .collect::<Vec<_>>())))
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    cpus: Option<u32>,
    memory_mib: Option<u32>,
    network_policy: Option<PolicyBody>,
    request_id: Option<String>,
}

async fn create_vm(
    State(core): State<Core>,
    Caller(u): Caller,
    Json(b): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = CreateVm {
        name: b.name,
        cpus: b.cpus,
        memory_mib: b.memory_mib,
        net_policy: b.network_policy.map(|p| p.parse(&core)).transpose()?,
        request_id: b.request_id,
    };
    let vm = core.create_vm(&u, req).await?;
    Ok((StatusCode::CREATED, Json(vm_json(&vm))))
}

async fn get_vm(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(vm_json(&core.get_vm(&u, &name)?)))
}

async fn resume_vm(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(vm_json(&core.resume_vm(&u, &name).await?)))
}

async fn delete_vm(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    core.delete_vm(&u, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ExecBody {
    command: Vec<String>,
    #[serde(default)]
    env: HashMap<String, String>,
    cwd: Option<String>,
    stdin: Option<String>,
    timeout_secs: Option<f64>,
}

/// An exec body's `timeout_secs` as a duration, refused unless it is a number of seconds in
/// range.
fn exec_timeout(secs: Option<f64>) -> Result<Option<Duration>, CoreError> {
    match secs {
        Some(s) if !(0.001..4e6).contains(&s) => Err(CoreError::InvalidArgument(format!(
            "timeout_secs must be from 0.001 up to 4000000 seconds, got {s}"
        ))),
        s => Ok(s.map(Duration::from_secs_f64)),
    }
}

async fn exec(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
    Json(b): Json<ExecBody>,
) -> Result<Json<Value>, ApiError> {
    let timeout = exec_timeout(b.timeout_secs)?;
    let spec = ExecSpec {
        argv: b.command,
        env: b.env,
        cwd: b.cwd,
        stdin: b.stdin.is_some(),
        tty: None,
        timeout,
    };
    let input: Vec<ExecInput> = match b.stdin {
        Some(s) => vec![ExecInput::Stdin(s.into_bytes()), ExecInput::CloseStdin],
        None => vec![],
    };
    let mut events = Box::pin(
        core.exec(&u, &name, spec, futures::stream::iter(input))
            .await?,
    );
    let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
    while let Some(ev) = events.next().await {
        match ev? {
            ExecEvent::Stdout(d) | ExecEvent::Stderr(d) if d.is_empty() => {}
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

async fn list_checkpoints(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    core.get_vm(&u, &name)?;
    let list = core.list_checkpoints(&u, Some(&name))?;
    Ok(Json(json!(list
        .iter()
        .map(checkpoint_json)
        .collect::<Vec<_>>())))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CheckpointBody {
    #[serde(default)]
    label: String,
}

/// The label in a checkpoint request's body: no body is no label; a body must be the JSON
/// object.
fn checkpoint_label(body: &[u8]) -> Result<String, CoreError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    serde_json::from_slice::<CheckpointBody>(body)
        .map(|b| b.label)
        .map_err(|e| {
            CoreError::InvalidArgument(format!(
                "the body must be {{\"label\": \"...\"}} or empty: {e}"
            ))
        })
}

async fn create_checkpoint(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let label = checkpoint_label(&body)?;
    let c = core.create_checkpoint(&u, &name, &label).await?;
    Ok((StatusCode::CREATED, Json(checkpoint_json(&c))))
}

#[derive(Deserialize)]
struct RestoreBody {
    checkpoint_id: String,
    new_name: Option<String>,
    network_policy: Option<PolicyBody>,
    request_id: Option<String>,
}

/// Restores a checkpoint of VM `name`: in place, or as `new_name`.
async fn restore(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
    Json(b): Json<RestoreBody>,
) -> Result<Json<Value>, ApiError> {
    let ckpt = core.get_checkpoint(&u, &b.checkpoint_id)?;
    if ckpt.vm_name != name {
        return Err(CoreError::InvalidArgument(format!(
            "checkpoint {} is of VM {:?}, not {name:?}",
            ckpt.id, ckpt.vm_name
        ))
        .into());
    }
    let restore = Restore {
        checkpoint_id: ckpt.id,
        new_name: b.new_name,
        net_policy: b.network_policy.map(|p| p.parse(&core)).transpose()?,
        request_id: b.request_id,
    };
    let vm = core.restore(&u, restore).await?;
    Ok(Json(vm_json(&vm)))
}

/// Replaces the VM's network policy.
async fn set_network_policy(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
    Json(b): Json<PolicyBody>,
) -> Result<Json<Value>, ApiError> {
    let policy = b.parse(&core)?;
    Ok(Json(vm_json(
        &core.set_network_policy(&u, &name, policy).await?,
    )))
}

async fn console(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let (recent, attachment) = core.console(&u, &name)?;
    Ok(ws.on_upgrade(move |socket| async move {
        let (mut tx, mut rx) = socket.split();
        let input = attachment.input;
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                let data = match msg {
                    Message::Binary(b) => b,
                    Message::Text(t) => t.into_bytes(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if input.send(data).await.is_err() {
                    break;
                }
            }
        });
        send_output(&mut tx, recent, Some(attachment.output)).await;
    }))
}

/// Sends `first`, then everything `live` brings, as binary frames, until the client leaves.
async fn send_output<S>(
    sink: &mut S,
    first: Vec<u8>,
    live: Option<tokio::sync::broadcast::Receiver<Vec<u8>>>,
) where
    S: futures::Sink<Message> + Unpin,
{
    use futures::SinkExt;
    if sink.send(Message::Binary(first)).await.is_err() {
        return;
    }
    let Some(live) = live else { return };
    let mut live = tokio_stream::wrappers::BroadcastStream::new(live);
    while let Some(item) = live.next().await {
        if let Ok(data) = item {
            if sink.send(Message::Binary(data)).await.is_err() {
                return;
            }
        }
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

async fn logs(
    State(core): State<Core>,
    Caller(u): Caller,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let (text, live) = core.logs(&u, &name, q.tail, q.follow)?;
    Ok(ws.on_upgrade(move |mut socket: WebSocket| async move {
        send_output(&mut socket, text, live.map(|a| a.output)).await;
        let _ = socket.send(Message::Close(None)).await;
    }))
}

#[cfg(test)]
#[path = "rest_fuzz.rs"]
mod fuzz;
