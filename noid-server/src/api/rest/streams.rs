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
    /// Read by the access layer; named here so that it is not an unknown parameter.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn logs(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let u = caller(user)?;
    let (text, live) = gw.core.logs(&u, &name, q.tail, q.follow).await?;
    Ok(
        accept(ws).on_upgrade(move |mut socket: WebSocket| async move {
            send_output(&mut socket, text, live.map(|a| a.output)).await;
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
