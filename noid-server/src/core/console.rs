//! Console and logs of the caller's VMs, over `crate::console`.

use super::{CoreError, Manager, Result, User};
use std::time::SystemTime;

use crate::console::{history, timed_history, Attachment};
use crate::console_times::{Line, LineStarts};
use crate::core::model::{VmRecord, VmState};

/// What a caller wants of a VM's console log.
#[derive(Debug, Clone, Default)]
pub struct LogsQuery {
    /// Only the last N lines (of those since `since`); None: all kept.
    pub tail: Option<usize>,
    /// Only lines that began at or after this time.
    pub since: Option<SystemTime>,
    /// Live output after the history.
    pub follow: bool,
}

/// A VM's console log as a caller asked for it: the kept lines, then live output.
pub struct Logs {
    pub lines: Vec<Line>,
    pub live: Option<Attachment>,
    since: Option<SystemTime>,
}

/// A piece of log output: with times, each starts a line (and has its time) or continues one.
pub type LogPiece = (Option<SystemTime>, Vec<u8>);

impl Logs {
    /// The log as pieces: without `timestamps` the history in one piece and live output as
    /// it comes (no times); with them a piece per line start, each with its line's time.
    pub fn pieces(self, timestamps: bool) -> futures::stream::BoxStream<'static, LogPiece> {
        use futures::StreamExt;
        let mut starts = LineStarts::after(self.lines.last().map_or(&[][..], |l| &l.text));
        let history: Vec<LogPiece> = if timestamps {
            self.lines
                .into_iter()
                .map(|l| (Some(l.at), l.text))
                .collect()
        } else {
            vec![(None, self.lines.into_iter().flat_map(|l| l.text).collect())]
        };
        let head = futures::stream::iter(history);
        let Some(live) = self.live else {
            return head.boxed();
        };
        let since = self.since;
        let live = tokio_stream::wrappers::BroadcastStream::new(live.output)
            .filter_map(|r| futures::future::ready(r.ok()))
            .filter(move |c| futures::future::ready(since.is_none_or(|s| c.at >= s)))
            .flat_map(move |c| {
                let pieces = if timestamps {
                    starts.cut(c.at, &c.data)
                } else {
                    vec![(None, c.data)]
                };
                futures::stream::iter(pieces)
            });
        head.chain(live).boxed()
    }
}

/// Selects from `lines` those since `since`, then the last `tail` of them.
fn select(mut lines: Vec<Line>, since: Option<SystemTime>, tail: Option<usize>) -> Vec<Line> {
    if let Some(since) = since {
        lines.retain(|l| l.at >= since);
    }
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    lines
}

impl Manager {
    /// Starts following a running VM's console.
    pub(super) fn watch_console(&self, vm: &VmRecord) {
        let dir = self.layout.vm(&vm.id);
        self.consoles
            .watch(&vm.id, &dir, self.vmm.console_socket(&dir));
    }

    /// The VM's kept console output as `query` selects it, and live output to follow when
    /// it asks (which wakes a hibernated VM).
    pub async fn logs(&self, user: &User, name: &str, query: &LogsQuery) -> Result<Logs> {
        let mut vm = self.get_vm(user, name)?;
        if query.follow && vm.state == VmState::Hibernated {
            // Following a hibernated VM's output wakes it, as any call that needs it does.
            vm = self.running_vm(user, name).await?;
        }
        // Subscribe first: a line written meanwhile may come twice, never not at all.
        let live = if query.follow {
            self.consoles.attach(&vm.id)
        } else {
            None
        };
        let lines = timed_history(&self.layout.vm(&vm.id));
        Ok(Logs {
            lines: select(lines, query.since, query.tail),
            live,
            since: query.since,
        })
    }

    /// Attaches to a running VM's console: its recent output, then live output and input. The
    /// VM counts as busy until the returned hold drops.
    pub async fn console(
        &self,
        user: &User,
        name: &str,
    ) -> Result<(Vec<u8>, Attachment, super::Hold)> {
        let vm = self.running_vm(user, name).await?;
        self.watch_console(&vm);
        let attachment = self.consoles.attach(&vm.id).ok_or_else(|| {
            CoreError::Unavailable(format!("console of {name:?} is not available"))
        })?;
        let text = history(&self.layout.vm(&vm.id));
        let recent = text[text.len().saturating_sub(4096)..].to_vec();
        Ok((recent, attachment, self.activity.hold(&vm.id)))
    }
}

impl Manager {
    /// Passes a client's window size to the guest's serial console.
    pub async fn resize_console(
        &self,
        user: &User,
        name: &str,
        size: super::TtySize,
    ) -> Result<()> {
        let vm = self.get_vm(user, name)?;
        self.agent(&vm).resize_console(size).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn lines(texts: &[(u64, &str)]) -> Vec<Line> {
        texts
            .iter()
            .map(|(secs, text)| Line {
                at: UNIX_EPOCH + Duration::from_secs(*secs),
                text: text.as_bytes().to_vec(),
            })
            .collect()
    }

    fn texts(lines: &[Line]) -> String {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text))
            .collect()
    }

    #[test]
    fn since_then_tail() {
        let all = lines(&[(1, "a\n"), (2, "b\n"), (3, "c\n"), (4, "d")]);
        assert_eq!(texts(&select(all.clone(), None, Some(2))), "c\nd");
        assert_eq!(texts(&select(all.clone(), None, Some(0))), "");
        assert_eq!(texts(&select(all.clone(), None, Some(9))), "a\nb\nc\nd");
        let since = Some(UNIX_EPOCH + Duration::from_secs(2));
        assert_eq!(texts(&select(all.clone(), since, None)), "b\nc\nd");
        assert_eq!(texts(&select(all, since, Some(1))), "d");
    }

    #[tokio::test]
    async fn history_pieces_with_and_without_times() {
        use futures::StreamExt;
        let history = lines(&[(1, "a\n"), (2, "b\n")]);
        let logs = |lines| Logs {
            lines,
            live: None,
            since: None,
        };
        let plain: Vec<_> = logs(history.clone()).pieces(false).collect().await;
        assert_eq!(plain, [(None, b"a\nb\n".to_vec())]);
        let timed: Vec<_> = logs(history.clone()).pieces(true).collect().await;
        assert_eq!(
            timed,
            [
                (Some(history[0].at), b"a\n".to_vec()),
                (Some(history[1].at), b"b\n".to_vec())
            ]
        );
    }
}
