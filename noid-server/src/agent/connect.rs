//! Opening a byte stream to a guest agent: a Unix socket that is a virtio-serial port (QEMU),
//! or Firecracker's hybrid vsock (Unix socket, `CONNECT <port>\n`, `OK <port>\n`).
//!
//! A connection counts only once the agent has greeted it. An HTTP/2 server speaks first (its
//! SETTINGS frame), so the first bytes prove that a fresh agent session is listening. Without
//! that check a restored guest could swallow our preface: it resumes inside the session it had
//! when the checkpoint was taken, and learns that its old host is gone only when we hang up.
//! So: connect, wait for the greeting, and if none comes, hang up and try again with a longer
//! wait. The bytes read are handed on to the HTTP/2 client untouched.
//!
//! A guest that is still booting has no stale session, so there the host connects once and
//! waits long: every hang-up races the guest's first greeting, and a greeting written just
//! as the host hangs up can leave QEMU holding the port's output until the next hang-up.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::UnixStream;

use crate::core::model::AgentEndpoint;

/// How long to wait for the greeting on successive attempts. A guest starved of CPU (many
/// TCG guests on few cores) can take seconds to answer, so the waits keep growing.
const GREETING_WAITS: [Duration; 6] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// How long to wait on one connection to a guest that is booting: longer than a boot takes on
/// a loaded host, so normally the first connection is the one that is greeted.
const BOOT_GREETING_WAIT: Duration = Duration::from_secs(30);

/// What may be at the other end of a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// A guest that may be running a session from before (restored, or its host restarted).
    MaybeStale,
    /// A guest booting from scratch: nothing can answer but a fresh agent.
    Booting,
}

impl Guest {
    fn wait(self, attempt: usize) -> Duration {
        match self {
            Guest::MaybeStale => GREETING_WAITS[attempt.min(GREETING_WAITS.len() - 1)],
            Guest::Booting => BOOT_GREETING_WAIT,
        }
    }
}

/// An HTTP/2 frame header: length (3 bytes), type, flags, stream id (4 bytes).
const FRAME_HEADER: usize = 9;

/// Whether `header` opens a fresh HTTP/2 server session: a SETTINGS frame (type 4) on stream
/// 0 that is not an acknowledgement.
fn is_server_settings(header: &[u8]) -> bool {
    header.len() == FRAME_HEADER
        && header[3] == 0x4
        && header[4] & 0x1 == 0
        && header[5..9] == [0, 0, 0, 0]
}

/// A stream whose first bytes (the agent's greeting) were already read.
pub struct Greeted {
    prefix: Vec<u8>,
    pos: usize,
    inner: UnixStream,
}

impl Greeted {
    /// The underlying socket.
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inner.as_fd()
    }
}

impl AsyncRead for Greeted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Greeted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn open(endpoint: &AgentEndpoint) -> io::Result<UnixStream> {
    match endpoint {
        AgentEndpoint::Serial { socket, .. } => UnixStream::connect(socket).await,
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

/// Connects and waits for the agent's greeting, retrying until one comes. The caller bounds
/// the total time (every call that uses the connection has its own deadline).
pub async fn connect(endpoint: &AgentEndpoint, guest: Guest) -> io::Result<Greeted> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        let wait = guest.wait(attempt);
        attempt += 1;
        let mut stream = open(endpoint).await?;
        let mut prefix = vec![0u8; FRAME_HEADER];
        match tokio::time::timeout(wait, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) if is_server_settings(&prefix) => {
                tracing::debug!("agent greeting after {:?}", started.elapsed());
                return Ok(Greeted {
                    prefix,
                    pos: 0,
                    inner: stream,
                });
            }
            // Bytes of a stale session (its GOAWAY, say), or the peer hung up: start over.
            Ok(Ok(_)) | Ok(Err(_)) => {
                tracing::debug!("agent connection: a stale session answered; trying again");
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            // No greeting: the guest is still booting, or a stale session holds the port.
            // Hanging up ends that session, if the guest sees the hang-up: stay away a
            // while, or a quick reconnect hides it and the stale session lives on.
            Err(_) => {
                tracing::debug!("agent connection: no greeting within {wait:?}; trying again");
                drop(stream);
                tokio::time::sleep(wait / 2).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// An empty SETTINGS frame, as an HTTP/2 server sends first.
    const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

    /// A Unix socket that speaks the hybrid vsock handshake, greets, then echoes.
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
            s.write_all(&SETTINGS).await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        }
    }

    #[tokio::test]
    async fn hybrid_vsock_handshake_and_greeting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(fake_firecracker(listener, 1024));
        let ep = AgentEndpoint::HybridVsock {
            socket: path.clone(),
            port: 1024,
        };
        let mut s = connect(&ep, Guest::MaybeStale).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 14];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf[..9], &SETTINGS, "the greeting is passed on");
        assert_eq!(&buf[9..], b"hello", "then the stream");
        server.await.unwrap();

        let listener = UnixListener::bind(dir.path().join("w.sock")).unwrap();
        let server = tokio::spawn(fake_firecracker(listener, 1024));
        let ep = AgentEndpoint::HybridVsock {
            socket: dir.path().join("w.sock"),
            port: 52,
        };
        assert!(
            connect(&ep, Guest::MaybeStale).await.is_err(),
            "a refused port is an error"
        );
        server.await.unwrap();
    }

    /// A peer that stays silent on its first connection (a stale session), or that speaks
    /// but not a fresh SETTINGS frame (a stale session's GOAWAY), is hung up on; the next
    /// connection that greets is used.
    #[tokio::test]
    async fn reconnects_until_greeted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut silent, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1];
            // The client gives up on us: we see end of file.
            assert_eq!(silent.read(&mut b).await.unwrap(), 0);
            let (mut stale, _) = listener.accept().await.unwrap();
            let goaway = [0, 0, 8, 0x7, 0, 0, 0, 0, 0];
            stale.write_all(&goaway).await.unwrap();
            assert_eq!(stale.read(&mut b).await.unwrap(), 0);
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(&SETTINGS).await.unwrap();
        });
        let mut s = connect(
            &AgentEndpoint::Serial {
                socket: path,
                transfer_disk: None,
            },
            Guest::MaybeStale,
        )
        .await
        .unwrap();
        let mut buf = [0u8; 9];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, SETTINGS);
        server.await.unwrap();
    }

    /// A booting guest is waited for on one connection: the host does not hang up on it
    /// while it boots, however long the greeting takes.
    #[tokio::test]
    async fn waits_for_a_booting_guest_on_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // Longer than the first several waits for a guest that may hold a stale session.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            s.write_all(&SETTINGS).await.unwrap();
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).await.unwrap(), 0);
            // No second connection was made.
            tokio::time::timeout(Duration::from_millis(100), listener.accept())
                .await
                .expect_err("one connection only");
        });
        let ep = AgentEndpoint::Serial {
            socket: path,
            transfer_disk: None,
        };
        let s = connect(&ep, Guest::Booting).await.unwrap();
        drop(s);
        server.await.unwrap();
    }
}
