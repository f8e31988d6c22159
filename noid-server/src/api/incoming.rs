//! The gRPC listener: TCP connections up to a limit, each holding a slot until it closes
//! (beyond the limit new connections wait in the kernel's backlog instead of costing
//! descriptors), and accept errors, such as running out of file descriptors, logged and ridden
//! out with a short pause instead of ending the server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long the listener pauses after an accept error.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one warning about the same trouble per this long.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// An accepted connection and its slot.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Logs a warning unless the same one was logged within `WARN_EVERY`.
struct Warner(Option<Instant>);

impl Warner {
    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self.0.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!("{}", message());
            self.0 = Some(Instant::now());
        }
    }
}

/// Connections from `listener`, at most `max` open at once. The stream never ends and never
/// yields an error.
pub fn limited(
    listener: TcpListener,
    max: usize,
) -> impl Stream<Item = Result<Conn, io::Error>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max));
    let state = (listener, slots, Warner(None), Warner(None));
    futures::stream::unfold(
        state,
        move |(listener, slots, mut full, mut failing)| async move {
            let slot = match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    full.warn(|| {
                        format!("{max} API connections are open (the limit): new ones wait")
                    });
                    Arc::clone(&slots).acquire_owned().await.ok()?
                }
            };
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        // Nagle's algorithm would hold small stream messages back by the
                        // delayed-ACK time (~40 ms).
                        let _ = stream.set_nodelay(true);
                        let conn = Conn {
                            stream,
                            _slot: slot,
                        };
                        return Some((Ok(conn), (listener, slots, full, failing)));
                    }
                    Err(e) => {
                        failing.warn(|| format!("cannot accept API connections: {e}; retrying"));
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn holds_connections_beyond_the_limit_back_until_a_slot_frees() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(limited(listener, 2));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let a = incoming.next().await.unwrap().unwrap();
        let _b = incoming.next().await.unwrap().unwrap();
        let third = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(
            third.is_err(),
            "a third connection was taken beyond the limit"
        );
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(2), incoming.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))));
    }
}
