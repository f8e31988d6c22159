//! The API's and the gateway's listeners: TCP connections up to a limit, each holding a slot
//! until it closes (beyond the limit new connections wait in the kernel's backlog instead of
//! costing descriptors), with TLS when the server has a certificate (handshakes run side by
//! side, so a slow client holds up no one), and accept errors, such as running out of file
//! descriptors, logged and ridden out with a short pause instead of ending the server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long the listener pauses after an accept error.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one warning about the same trouble per this long.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes under way at once.
const HANDSHAKES: usize = 64;

/// An accepted connection and its slot.
pub struct Conn {
    stream: Io,
    _slot: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        match &self.stream {
            Io::Plain(s) => s.connect_info(),
            Io::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

/// Calls `$method` on whichever stream the connection has.
macro_rules! on_stream {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match &mut $self.stream {
            Io::Plain(s) => Pin::new(s).$method($($arg),*),
            Io::Tls(s) => Pin::new(s.as_mut()).$method($($arg),*),
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_stream!(self, poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
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

/// Connections from `listener`, at most `max` open at once, through `tls` when given (a
/// connection whose handshake fails is dropped with a debug line). The stream never ends and
/// never yields an error.
pub fn limited(
    listener: TcpListener,
    max: usize,
    tls: Option<TlsAcceptor>,
) -> impl Stream<Item = Result<Conn, io::Error>> + Send + 'static {
    let accepted = accepted(listener, max);
    match tls {
        None => accepted.boxed(),
        Some(acceptor) => accepted
            .map(move |conn| handshake(acceptor.clone(), conn))
            .buffer_unordered(HANDSHAKES)
            .filter_map(|conn| async move { conn.map(Ok) })
            .boxed(),
    }
}

async fn handshake(acceptor: TlsAcceptor, conn: io::Result<Conn>) -> Option<Conn> {
    let Conn { stream, _slot } = conn.ok()?;
    let Io::Plain(tcp) = stream else {
        return Some(Conn { stream, _slot });
    };
    let peer = tcp.peer_addr().ok();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(Conn {
            stream: Io::Tls(Box::new(tls)),
            _slot,
        }),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake with {peer:?} failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake with {peer:?} timed out");
            None
        }
    }
}

fn accepted(
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
                            stream: Io::Plain(stream),
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

    #[tokio::test]
    async fn holds_connections_beyond_the_limit_back_until_a_slot_frees() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(limited(listener, 2, None));
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
