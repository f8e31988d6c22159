//! The REST/WebSocket gateway, grpc-gateway style: each unary route is bound to one RPC of
//! the gRPC service (`routes`), its request message made from the path and the JSON body and
//! its answer printed, both in the proto's own JSON mapping (pbjson), so the two APIs cannot
//! drift apart. What has no unary RPC is served here over the same core: exec with captured
//! output (`exec`), a streaming exec over a WebSocket (`exec_ws`), files (`files`), console
//! and logs over WebSockets (`streams`).
//!
//! Every error is one JSON body, `{"code": "NOT_FOUND", "message": ..., "reason":
//! "VM_NOT_FOUND"}`, with the HTTP status of its gRPC code and a `grpc-status` header
//! carrying the code itself.

mod exec;
mod exec_ws;
mod files;
mod streams;
pub mod table;
mod unary;
mod web;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde_json::json;

use super::grpc::GrpcApi;
use super::status::http_status;
use crate::core::{CoreError, Manager, User};
use table::{routes, RouteKind};

pub use exec::EXEC_OUTPUT_CAP;

/// What every handler has: the core, and the gRPC service the unary routes call.
#[derive(Clone)]
pub struct Gateway {
    core: Arc<Manager>,
    api: Arc<GrpcApi>,
}

/// An error as the gateway answers it.
pub struct ApiError(tonic::Status);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e.into())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError(s)
    }
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        ApiError(tonic::Status::invalid_argument(message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = StatusCode::from_u16(http_status(code)).expect("valid status");
        let name = crate::metrics::grpc_code_name(code as i32);
        // The reason the core gave (VM_NOT_FOUND, ...), else the code's name.
        let reason = super::status::reason(&self.0).unwrap_or_else(|| name.to_string());
        let body = json!({ "code": name, "message": self.0.message(), "reason": reason });
        let mut resp = (status, Json(body)).into_response();
        // What the error-counting layer reads, as for gRPC responses.
        resp.headers_mut()
            .insert("grpc-status", HeaderValue::from(code as i32));
        resp
    }
}

/// Who may call what over REST: the health check, the API description and the web console's
/// files are public, and the metrics unless the server wants a token for them; WebSocket
/// routes also take the token as a subprotocol or `?token=`, since browsers cannot set their
/// headers.
pub struct RestRules {
    metrics_need_token: bool,
}

/// Paths callable without a token.
const PUBLIC_PATHS: &[&str] = &["/health", "/openapi.json"];

impl super::access::Rules for RestRules {
    type Body = axum::body::Body;

    fn is_public(&self, path: &str) -> bool {
        PUBLIC_PATHS.contains(&path)
            || (path == "/metrics" && !self.metrics_need_token)
            || routes()
                .iter()
                .any(|r| r.kind == RouteKind::WebConsole && table::matches(r.path, path))
    }

    fn takes_websocket_token(&self, path: &str) -> bool {
        routes()
            .iter()
            .filter(|r| r.kind == RouteKind::WebSocket)
            .any(|r| table::matches(r.path, path))
    }

    fn refuse(&self, error: CoreError) -> Response {
        ApiError::from(error).into_response()
    }

    fn api(&self) -> &'static str {
        "rest"
    }

    /// `POST /vms/:name/checkpoints`: the route's template, not the path (which holds
    /// names); `unmatched` for a path no route takes.
    fn counted_as(&self, method: &axum::http::Method, path: &str) -> String {
        routes()
            .iter()
            .find(|r| {
                r.verb.name().eq_ignore_ascii_case(method.as_str()) && table::matches(r.path, path)
            })
            .map(|r| format!("{method} {}", r.path))
            .unwrap_or_else(|| "unmatched".into())
    }

    /// Every call but a plain GET: those change state, and a WebSocket (exec, console) runs
    /// commands.
    fn audited(&self, method: &axum::http::Method, path: &str) -> Option<String> {
        let websocket = self.takes_websocket_token(path);
        (method != axum::http::Method::GET || websocket).then(|| format!("{method} {path}"))
    }
}

/// The caller the access layer found; none on a public path without a token.
fn caller(user: Option<axum::Extension<User>>) -> Result<User, ApiError> {
    Ok(super::access::caller(user.as_ref().map(|u| &u.0))?)
}

/// Makes the framework's own refusals (405 for a method a route does not take, 413, 415,
/// and the like, which come without a body or with plain text) the gateway's JSON errors, so
/// that every error a client sees has one shape.
async fn uniform_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "the body must be JSON (content-type: \
                                               application/json)"
            .to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the body is too large".to_string(),
        other => other
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_lowercase(),
    };
    let code = super::status::code_of_http(status.as_u16());
    let mut answer = ApiError(tonic::Status::new(code, message)).into_response();
    // Keep the status the framework chose (405 with its Allow header, 413, ...).
    *answer.status_mut() = status;
    if let Some(allow) = resp.headers().get(axum::http::header::ALLOW) {
        answer
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    answer
}

async fn not_found() -> ApiError {
    ApiError(tonic::Status::not_found("no such route"))
}

async fn metrics(axum::extract::State(gw): axum::extract::State<Gateway>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        gw.core.render_metrics(),
    )
}

/// The gateway's router: every route of `routes()`, behind the access layer; `/metrics`
/// wants a token when `metrics_need_token`.
pub fn router(core: Arc<Manager>, api: Arc<GrpcApi>, metrics_need_token: bool) -> Router {
    let gateway = Gateway {
        core: Arc::clone(&core),
        api,
    };
    let mut router: Router<Gateway> = Router::new();
    for route in routes() {
        let handler: MethodRouter<Gateway> = match route.kind {
            RouteKind::Unary => unary::unary_handler(route),
            RouteKind::Exec => exec::handler(),
            RouteKind::Files => files::handler(route),
            RouteKind::WebSocket if route.path.starts_with("/exec/") => exec_ws::handler(),
            RouteKind::WebSocket => streams::handler(route),
            RouteKind::Restore => unary::restore_handler(),
            RouteKind::Metrics => get(metrics),
            RouteKind::OpenApi => get(|| async { Json(super::openapi::document()) }),
            RouteKind::WebConsole => web::handler(route.path),
        };
        router = router.route(route.path, handler);
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn(uniform_errors))
        .layer(super::access::Authenticate::new(
            Arc::clone(&core),
            RestRules { metrics_need_token },
        ))
        .with_state(gateway)
}

#[cfg(test)]
mod fuzz;
