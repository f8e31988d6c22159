//! The gateway's WebSockets: `/console/:name` (the serial console, binary frames both ways,
//! and a text frame `{"resize": {"rows": R, "cols": C}}` for its size) and `/logs/:name`
//! (console output since boot, then live with `?follow=true`).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use axum::Extension;
use futures::StreamExt;
use serde::Deserialize;

use super::table::Route;
use super::{caller, ApiError, Gateway};
use crate::core::{TtySize, User};

/// The subprotocol a browser offers next to its `bearer.TOKEN` one, and gets back: a browser
/// drops a WebSocket whose server picks none of the subprotocols it offered.
pub(super) const SUBPROTOCOL: &str = "noid";

/// Accepts the upgrade, choosing `noid` when the client offered subprotocols.
pub(super) fn accept(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.protocols([SUBPROTOCOL])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleControl {
    resize: TtySizeJson,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TtySizeJson {
    rows: u32,
    cols: u32,
}

/// A console text frame that is a resize, else `None` (the text is input).
fn resize_of(text: &str) -> Option<TtySize> {
    let c: ConsoleControl = serde_json::from_str(text).ok()?;
    Some(TtySize {
        rows: c.resize.rows,
        cols: c.resize.cols,
    })
}

pub(super) fn handler(route: &Route) -> MethodRouter<Gateway> {
    if route.path.starts_with("/console/") {
        get(console)
    } else {
        get(logs)
    }
}

async fn console(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let u = caller(user)?;
    let (recent, attachment, busy) = gw.core.console(&u, &name).await?;
    Ok(accept(ws).on_upgrade(move |socket| async move {
        // The VM is busy while the client is attached.
        let _busy = busy;
        let (mut tx, mut rx) = socket.split();
        let input = attachment.input;
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                let data = match msg {
                    Message::Binary(b) => b,
                    Message::Text(t) => match resize_of(&t) {
                        Some(size) => {
                            if let Err(e) = gw.core.resize_console(&u, &name, size).await {
                                tracing::debug!("console resize of VM {name}: {e}");
                            }
                            continue;
                        }
                        None => t.into_bytes(),
                    },
                    Message::Close(_) => break,
                    _ => continue,
                };
                if input.send(data).await.is_err() {
                    break;
                }
            }
        });
        let live = tokio_stream::wrappers::BroadcastStream::new(attachment.output)
            .filter_map(|r| futures::future::ready(r.ok().map(|c| c.data)));
        let output = futures::stream::once(futures::future::ready(recent)).chain(live);
        send_output(&mut tx, output).await;
    }))
}

/// Sends everything `output` brings as binary frames, until it ends or the client leaves.
async fn send_output<S>(sink: &mut S, output: impl futures::Stream<Item = Vec<u8>>)
where
    S: futures::Sink<Message> + Unpin,
{
    use futures::SinkExt;
    let mut output = std::pin::pin!(output);
    while let Some(data) = output.next().await {
        if sink.send(Message::Binary(data)).await.is_err() {
            return;
        }
    }
}

#[derive(Deserialize)]
struct LogsParams {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
    /// Only lines since this time (RFC 3339).
    since: Option<String>,
    /// Each line starts with its time (RFC 3339, the host's clock) and a space.
    #[serde(default)]
    timestamps: bool,
    /// Read by the access layer; named here so that it is not an unknown parameter.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn logs(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    Query(q): Query<LogsParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let u = caller(user)?;
    let since = match &q.since {
        Some(s) => Some(humantime::parse_rfc3339_weak(s).map_err(|e| {
            ApiError::invalid(format!("since: {e} (give a time as 2026-11-30T12:00:00Z)"))
        })?),
        None => None,
    };
    let query = crate::core::LogsQuery {
        tail: q.tail,
        since,
        follow: q.follow,
    };
    let logs = gw.core.logs(&u, &name, &query).await?;
    let output = logs.pieces(q.timestamps).map(|(at, mut data)| {
        if let Some(at) = at {
            let mut line = format!("{} ", humantime::format_rfc3339_millis(at)).into_bytes();
            line.append(&mut data);
            data = line;
        }
        data
    });
    Ok(
        accept(ws).on_upgrade(move |mut socket: WebSocket| async move {
            send_output(&mut socket, output).await;
            let _ = socket.send(Message::Close(None)).await;
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::resize_of;

    #[test]
    fn only_a_resize_object_is_a_resize() {
        let size = resize_of(r#"{"resize": {"rows": 40, "cols": 120}}"#).unwrap();
        assert_eq!((size.rows, size.cols), (40, 120));
        assert!(resize_of("ls -l\r").is_none());
        assert!(resize_of(r#"{"resize": {"rows": 40}}"#).is_none());
        assert!(resize_of(r#"{"resize": {"rows": 1, "cols": 2}, "x": 1}"#).is_none());
    }
}
