//! Reading output in pieces worth a message. A guest that prints line by line (a console
//! flood, a command's output) would otherwise become one tiny gRPC message per read. HTTP/2
//! peers count tiny DATA frames that wait unread against a budget and close the whole
//! connection when it runs out (h2 0.4.20 and later), so a slow reader of such a stream would
//! take every other call on its connection down with it. Output that arrives within a few
//! milliseconds of the first byte goes out together.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a read waits for more output after its first byte: short enough not to be
/// noticed on an interactive console, long enough to gather a burst.
pub const LINGER: Duration = Duration::from_millis(10);

/// Reads at least one byte, then whatever else arrives within `linger` of the first one,
/// until `buf` is full. Returns 0 only at end of input with nothing read; an end of input or
/// an error after some bytes is seen by the next call. Not cancel-safe once a byte is read:
/// drop it only when the input no longer matters.
pub async fn read_coalesced<R>(r: &mut R, buf: &mut [u8], linger: Duration) -> io::Result<usize>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let len = r.read(buf).await?;
    if len == 0 {
        return Ok(0);
    }
    Ok(fill_within(r, buf, len, linger).await)
}

/// Given `len` bytes already read into `buf`, adds whatever else arrives within `linger`,
/// until `buf` is full. Returns the new length; an end of input or an error is left for the
/// next read to see.
pub async fn fill_within<R>(r: &mut R, buf: &mut [u8], mut len: usize, linger: Duration) -> usize
where
    R: AsyncRead + Unpin + ?Sized,
{
    let deadline = tokio::time::Instant::now() + linger;
    while len < buf.len() {
        match tokio::time::timeout_at(deadline, r.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => len += n,
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_burst_of_small_writes_is_one_read() {
        let (mut w, mut r) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            for _ in 0..50 {
                w.write_all(b"ab").await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut buf = [0u8; 256];
        let n = read_coalesced(&mut r, &mut buf, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(n, 100);
        // Then the end of input.
        assert_eq!(read_coalesced(&mut r, &mut buf, LINGER).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn output_after_the_linger_is_the_next_read() {
        let (mut w, mut r) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            w.write_all(b"first").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            w.write_all(b"second").await.unwrap();
        });
        let mut buf = [0u8; 256];
        let n = read_coalesced(&mut r, &mut buf, Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"first");
        let n = read_coalesced(&mut r, &mut buf, Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"second");
    }

    #[tokio::test]
    async fn a_full_buffer_returns_at_once() {
        let (mut w, mut r) = tokio::io::duplex(1024);
        w.write_all(&[7u8; 64]).await.unwrap();
        let mut buf = [0u8; 16];
        let n = read_coalesced(&mut r, &mut buf, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(n, 16);
    }
}
