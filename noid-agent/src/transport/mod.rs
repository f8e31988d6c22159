//! Byte streams the agent serves its API on, side by side: the virtio-serial port (QEMU) and
//! vsock (Firecracker); outside a guest, a Unix socket. Each hands connections to
//! `serve_connection`.

pub mod serial;
pub mod unix;
pub mod vsock;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use noid::agent::v1::agent_server::AgentServer;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::service::AgentService;

/// Serves the agent API over one HTTP/2 connection until the host goes away.
pub async fn serve_connection<IO>(io: IO, service: AgentServer<AgentService>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let result = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(noid::guest::HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(noid::guest::HTTP2_CONNECTION_WINDOW)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .await;
    if let Err(e) = result {
        eprintln!("noid-agent: session ended: {e}");
    }
}
