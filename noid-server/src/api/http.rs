//! Serves the gateway's router on the server's own listener (`incoming`, TLS or not): HTTP/1.1
//! with upgrades (WebSockets) and HTTP/2, and on shutdown lets open requests finish.

use std::future::Future;

use axum::Router;
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use tonic::transport::server::Connected;
use tower::ServiceExt;

use super::incoming::Conn;

/// Serves `router` on every connection from `incoming` until `stop` resolves, then waits for
/// the connections' open requests (the caller bounds how long).
pub async fn serve(
    incoming: impl Stream<Item = std::io::Result<Conn>> + Send + 'static,
    router: Router,
    stop: impl Future<Output = ()> + Send,
) {
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut incoming = std::pin::pin!(incoming);
    let mut stop = std::pin::pin!(stop);
    loop {
        let conn = tokio::select! {
            conn = incoming.next() => conn,
            () = &mut stop => break,
        };
        let Some(Ok(conn)) = conn else { break };
        // Who is on the other end, for the audit trail (as tonic tells the gRPC API).
        let info = conn.connect_info();
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(info.clone());
                req
            },
        ));
        let serving = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), service)
            .into_owned();
        let serving = graceful.watch(serving);
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::debug!("gateway connection ended: {e}");
            }
        });
    }
    graceful.shutdown().await;
}
