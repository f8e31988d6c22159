//! The gateway's file routes: `PUT /vms/:name/files?path=/x[&mode=644]` writes the request
//! body to a file in the VM, `GET /vms/:name/files?path=/x` streams one back. HTTP's own
//! framing says when an upload is complete; a body cut short changes nothing in the guest.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put, MethodRouter};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::table::{Route, Verb};
use super::{caller, ApiError, Gateway};
use crate::core::{CopyTarget, CoreError, User};

pub(super) fn handler(route: &Route) -> MethodRouter<Gateway> {
    match route.verb {
        Verb::Put => put(put_file),
        _ => get(get_file),
    }
}

#[derive(Deserialize)]
struct FileQuery {
    path: String,
    /// Octal permission bits, e.g. "755" (default 644).
    mode: Option<String>,
    /// When `path` is a directory in the guest, the file goes into it under this name.
    name: Option<String>,
}

async fn put_file(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let u = caller(user)?;
    let mode = match q.mode.as_deref() {
        None => 0,
        Some(m) => u32::from_str_radix(m, 8).map_err(|_| {
            CoreError::InvalidArgument(format!(
                "mode {:?} is not an octal permission mode",
                noid::names::shorten(m)
            ))
        })?,
    };
    let data = body.into_data_stream().map(|chunk| {
        chunk.map(|b| b.to_vec()).map_err(|e| {
            CoreError::Unavailable(format!("the upload broke off ({e}); nothing was written"))
        })
    });
    let target = CopyTarget {
        path: q.path,
        mode,
        source_name: q.name.unwrap_or_default(),
    };
    let (path, bytes) = gw.core.copy_in(&u, &name, target, data).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"vm": name, "path": path, "bytes": bytes})),
    )
        .into_response())
}

async fn get_file(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let u = caller(user)?;
    let chunks = gw.core.copy_out(&u, &name, &q.path).await?;
    // An error after the first bytes can only end the body early (the status is sent).
    let body =
        Body::from_stream(chunks.map(|c| c.map_err(|e| std::io::Error::other(e.to_string()))));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}
