//! The vsock transport (Firecracker): a listener on a fixed port; the host reaches it through
//! Firecracker's hybrid vsock (`CONNECT <port>` on the VM's Unix socket). Every accepted
//! connection is its own HTTP/2 session, so a reset after a snapshot is just a new connection.

use noid::agent::v1::agent_server::AgentServer;
use tokio_vsock::{VsockAddr, VsockListener, VMADDR_CID_ANY};

use crate::service::AgentService;

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = noid::guest::VSOCK_PORT;

/// Whether this guest has a vsock device at all.
pub fn available() -> bool {
    std::path::Path::new("/dev/vsock").exists()
}

pub async fn serve(port: u32, service: AgentServer<AgentService>) -> std::io::Result<()> {
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port))?;
    eprintln!("noid-agent: serving on vsock port {port}");
    loop {
        let (stream, _peer) = listener.accept().await?;
        tokio::spawn(super::serve_connection(stream, service.clone()));
    }
}
