//! Reading a command's output pipes to their end. Before the command exits its output is
//! awaited as long as it takes. After, what is already in the pipes still comes out whole,
//! however slowly the host takes it; only a pipe that a background process keeps open ends
//! early: after `DRAIN_GRACE` without output, or `DRAIN_LIMIT` after the exit.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a pipe may stay quiet after its command exited before its stream ends.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long after its command exited a pipe that keeps producing output is read at most.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Output pieces are at most this large.
pub(crate) const CHUNK: usize = 32 * 1024;

/// Tells every reader of one command's output when the command exited.
pub(crate) struct ExitNotice(watch::Sender<Option<Instant>>);

impl ExitNotice {
    pub(crate) fn new() -> Self {
        Self(watch::channel(None).0)
    }

    pub(crate) fn pipe(&self, r: Box<dyn AsyncRead + Send + Unpin>) -> OutputPipe {
        OutputPipe {
            r,
            exited: self.0.subscribe(),
            exited_at: None,
            buf: vec![0; CHUNK],
        }
    }

    pub(crate) fn exited(&self) {
        self.0.send_replace(Some(Instant::now()));
    }
}

/// One output pipe of a command (stdout, stderr or its terminal).
pub(crate) struct OutputPipe {
    r: Box<dyn AsyncRead + Send + Unpin>,
    exited: watch::Receiver<Option<Instant>>,
    exited_at: Option<Instant>,
    buf: Vec<u8>,
}

impl OutputPipe {
    /// The next piece of output (what arrives within a few milliseconds goes together), or
    /// `None` at the end of the stream.
    pub(crate) async fn next(&mut self) -> Option<&[u8]> {
        let first = loop {
            match self.exited_at {
                None => tokio::select! {
                    // A plain read is cancel-safe: when the exit wins, nothing was read.
                    r = self.r.read(&mut self.buf) => break r,
                    changed = self.exited.changed() => {
                        self.exited_at = match changed {
                            Ok(()) => *self.exited.borrow_and_update(),
                            // The command's runner is gone: read what is left, as after an exit.
                            Err(_) => Some(Instant::now()),
                        };
                    }
                },
                Some(at) => {
                    let left = (at + DRAIN_LIMIT).saturating_duration_since(Instant::now());
                    match tokio::time::timeout(DRAIN_GRACE.min(left), self.r.read(&mut self.buf))
                        .await
                    {
                        Ok(r) => break r,
                        Err(_) => return None,
                    }
                }
            }
        };
        match first {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                let len = noid::coalesce::fill_within(
                    &mut self.r,
                    &mut self.buf,
                    n,
                    noid::coalesce::LINGER,
                )
                .await;
                Some(&self.buf[..len])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn output_left_in_the_pipe_after_the_exit_comes_out_however_late_it_is_read() {
        let notice = ExitNotice::new();
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut pipe = notice.pipe(Box::new(r));
        w.write_all(b"1000\n").await.unwrap();
        drop(w);
        notice.exited();
        // The reader is busy elsewhere (a slow host) for longer than the grace.
        tokio::time::sleep(DRAIN_GRACE * 4).await;
        assert_eq!(pipe.next().await, Some(&b"1000\n"[..]));
        assert_eq!(pipe.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipe_held_open_ends_after_the_grace_once_the_command_exited() {
        let notice = ExitNotice::new();
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut pipe = notice.pipe(Box::new(r));
        w.write_all(b"before").await.unwrap();
        assert_eq!(pipe.next().await, Some(&b"before"[..]));
        // Nothing ends the stream while the command runs, however long it is quiet.
        let waiting = tokio::time::timeout(DRAIN_GRACE * 10, pipe.next()).await;
        assert!(waiting.is_err());
        notice.exited();
        let started = Instant::now();
        assert_eq!(pipe.next().await, None);
        assert_eq!(started.elapsed(), DRAIN_GRACE);
        drop(w);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipe_that_keeps_talking_after_the_exit_ends_at_the_limit() {
        let notice = ExitNotice::new();
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut pipe = notice.pipe(Box::new(r));
        tokio::spawn(async move {
            loop {
                if w.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        notice.exited();
        let started = Instant::now();
        while pipe.next().await.is_some() {}
        let took = started.elapsed();
        assert!(
            took >= DRAIN_LIMIT && took <= DRAIN_LIMIT + DRAIN_GRACE,
            "{took:?}"
        );
    }
}
