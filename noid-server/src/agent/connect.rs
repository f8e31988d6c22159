//! Opening a byte stream to a guest agent: a Unix socket that is a virtio-serial port (QEMU),
//! or Firecracker's hybrid vsock (Unix socket, `CONNECT <port>\n`, `OK <port>\n`).

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::vmm::AgentEndpoint;

pub async fn connect(endpoint: &AgentEndpoint) -> io::Result<UnixStream> {
    match endpoint {
        AgentEndpoint::Serial(path) => UnixStream::connect(path).await,
        AgentEndpoint::HybridVsock { socket, port } => {
            let mut stream = UnixStream::connect(socket).await?;
            stream
                .write_all(format!("CONNECT {port}\n").as_bytes())
                .await?;
            // Read the reply byte by byte so nothing after the newline is consumed.
            let mut reader = BufReader::with_capacity(1, &mut stream);
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            if !line.starts_with("OK ") {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("vsock port {port} refused: {:?}", line.trim()),
                ));
            }
            Ok(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// A Unix socket that speaks the hybrid vsock handshake, then echoes.
    async fn fake_firecracker(listener: UnixListener, accept_port: u32) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
            line.push(b[0]);
        }
        let line = String::from_utf8(line).unwrap();
        if line == format!("CONNECT {accept_port}") {
            s.write_all(format!("OK {}\n", 1_073_741_824).as_bytes())
                .await
                .unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        }
    }

    #[tokio::test]
    async fn hybrid_vsock_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(fake_firecracker(listener, 1024));
        let ep = AgentEndpoint::HybridVsock {
            socket: path.clone(),
            port: 1024,
        };
        let mut s = connect(&ep).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        server.await.unwrap();

        let listener = UnixListener::bind(dir.path().join("w.sock")).unwrap();
        let server = tokio::spawn(fake_firecracker(listener, 1024));
        let ep = AgentEndpoint::HybridVsock {
            socket: dir.path().join("w.sock"),
            port: 52,
        };
        assert!(connect(&ep).await.is_err(), "a refused port is an error");
        server.await.unwrap();
    }
}
