//! A Unix socket listener, for running the agent outside a guest (`--listen-unix PATH`): in
//! development, and behind the stand-in VMM of the Firecracker contract tests.

use std::path::Path;

use noid::agent::v1::agent_server::AgentServer;
use tokio::net::UnixListener;

use crate::service::AgentService;

pub async fn serve(path: &Path, service: AgentServer<AgentService>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    eprintln!("noid-agent: serving on {}", path.display());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(super::serve_connection(stream, service.clone()));
    }
}
