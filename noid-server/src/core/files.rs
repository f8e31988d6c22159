//! Copying files into and out of a VM, over the agent's exec. The guest path is always an
//! argument of a fixed script, never part of one. A copy in writes a temporary file next to
//! the destination, checks that every byte arrived, and only then renames it into place: an
//! interrupted copy never leaves a partial file under the destination's name.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{CoreError, ExecEvent, ExecInput, ExecSpec, ExitStatus, Manager, Result, User};

/// The longest guest path accepted (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// Mode of a copied-in file when the client gives none.
pub const DEFAULT_MODE: u32 = 0o644;

fn validate_path(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.len() > MAX_PATH || path.contains('\0') {
        return Err(CoreError::InvalidArgument(format!(
            "guest path {path:?} must be absolute (start with /), without NUL bytes, at most \
             {MAX_PATH} bytes"
        )));
    }
    if path.ends_with('/') {
        return Err(CoreError::InvalidArgument(format!(
            "guest path {path:?} names a directory: give the file's full path"
        )));
    }
    Ok(())
}

/// A failed guest command's complaint, as the error it means.
fn guest_error(vm: &str, path: &str, stderr: &[u8]) -> CoreError {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim();
    // Drop the shell's "noid-copy-in: line 1: " and the tool's "cat: " prefixes.
    let detail = line.rsplit(": ").next().unwrap_or(line);
    let lower = detail.to_ascii_lowercase();
    let msg = |what: &str| format!("{vm}:{path}: {what}");
    if lower.contains("no such file") || lower.contains("nonexistent directory") {
        CoreError::NotFound(msg("No such file or directory"))
    } else if lower.contains("is a directory") {
        CoreError::InvalidArgument(msg("Is a directory"))
    } else if lower.contains("not a directory") {
        CoreError::InvalidArgument(msg("Not a directory"))
    } else {
        CoreError::FailedPrecondition(msg(detail))
    }
}

/// What a finished command printed.
struct Finished {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
}

impl Manager {
    /// Runs `argv` to completion with `input`, collecting its output.
    async fn run_collect<S>(
        &self,
        user: &User,
        vm: &str,
        argv: &[&str],
        input: S,
    ) -> Result<Finished>
    where
        S: Stream<Item = ExecInput> + Send + 'static,
    {
        let spec = ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: true,
            ..Default::default()
        };
        let mut events = Box::pin(self.exec(user, vm, spec, input).await?);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(e) = events.next().await {
            match e? {
                ExecEvent::Stdout(d) => stdout.extend(d),
                ExecEvent::Stderr(d) => stderr.extend(d),
                ExecEvent::Exit(status) => {
                    return Ok(Finished {
                        stdout,
                        stderr,
                        status,
                    })
                }
                ExecEvent::Started { .. } => {}
            }
        }
        Err(CoreError::Unavailable(format!(
            "the agent of VM {vm:?} went away during the copy"
        )))
    }

    /// Writes `data` to `path` in the caller's VM `vm` with `mode`; returns the bytes written.
    /// An error from `data` (the client gave up) aborts the copy. The copy runs as a task of
    /// its own, so a caller that goes away does not cut its clean-up short.
    pub async fn copy_in<S>(
        self: &Arc<Self>,
        user: &User,
        vm: &str,
        path: &str,
        mode: u32,
        data: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Vec<u8>>> + Send + 'static,
    {
        let (me, user, vm, path) = (
            Arc::clone(self),
            user.clone(),
            vm.to_string(),
            path.to_string(),
        );
        tokio::spawn(async move { me.copy_in_task(&user, &vm, &path, mode, data).await })
            .await
            .map_err(|e| CoreError::Internal(format!("copy task: {e}")))?
    }

    async fn copy_in_task<S>(
        &self,
        user: &User,
        vm: &str,
        path: &str,
        mode: u32,
        data: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Vec<u8>>> + Send + 'static,
    {
        validate_path(path)?;
        if mode > 0o7777 {
            return Err(CoreError::InvalidArgument(format!(
                "file mode {mode:o} is not a permission mode (at most 7777 octal)"
            )));
        }
        let mode = if mode == 0 { DEFAULT_MODE } else { mode };
        self.get_vm(user, vm)?;
        let tmp = format!("{path}.noid-tmp-{}", super::vms::new_id());
        let (tx, rx) = mpsc::channel(16);
        let feeder = tokio::spawn(async move {
            let mut data = Box::pin(data);
            let mut sent = 0u64;
            while let Some(chunk) = data.next().await {
                match chunk {
                    Ok(c) => {
                        sent += c.len() as u64;
                        if tx.send(ExecInput::Stdin(c)).await.is_err() {
                            return Ok(sent);
                        }
                    }
                    Err(e) => {
                        // The shell's trap removes what was written.
                        let _ = tx.send(ExecInput::Signal(libc::SIGTERM)).await;
                        return Err(e);
                    }
                }
            }
            let _ = tx.send(ExecInput::CloseStdin).await;
            Ok(sent)
        });
        let write = "trap 'rm -f \"$1\"' TERM; umask 077; cat > \"$1\" && wc -c < \"$1\"";
        let written = self
            .run_collect(
                user,
                vm,
                &["sh", "-c", write, "noid-copy-in", &tmp],
                ReceiverStream::new(rx),
            )
            .await;
        let sent = feeder
            .await
            .map_err(|e| CoreError::Internal(format!("copy task: {e}")))?;
        let result = async {
            let sent = sent?;
            let written = written?;
            if written.status.code != 0 {
                return Err(guest_error(vm, path, &written.stderr));
            }
            let count: u64 = String::from_utf8_lossy(&written.stdout)
                .trim()
                .parse()
                .unwrap_or(u64::MAX);
            if count != sent {
                return Err(CoreError::Unavailable(format!(
                    "{vm}:{path}: {count} of {sent} bytes arrived; nothing was replaced"
                )));
            }
            let place = "chmod \"$2\" \"$1\" && mv -f \"$1\" \"$3\"";
            let mode = format!("{mode:o}");
            let done = self
                .run_collect(
                    user,
                    vm,
                    &["sh", "-c", place, "noid-copy-in", &tmp, &mode, path],
                    futures::stream::iter([ExecInput::CloseStdin]),
                )
                .await?;
            if done.status.code != 0 {
                return Err(guest_error(vm, path, &done.stderr));
            }
            Ok(sent)
        }
        .await;
        if result.is_err() {
            let _ = self
                .run_collect(
                    user,
                    vm,
                    &["rm", "-f", &tmp],
                    futures::stream::iter([ExecInput::CloseStdin]),
                )
                .await;
        }
        result
    }

    /// Streams the file at `path` in the caller's VM `vm`. A missing or unreadable file is an
    /// error before any data; a failure later ends the stream with an error.
    pub async fn copy_out(
        &self,
        user: &User,
        vm: &str,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Vec<u8>>> + Send + 'static> {
        validate_path(path)?;
        let spec = ExecSpec {
            argv: ["sh", "-c", "exec cat < \"$1\"", "noid-copy-out", path]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        };
        let mut events = Box::pin(self.exec(user, vm, spec, futures::stream::empty()).await?);
        let mut stderr = Vec::new();
        // Wait for the first data (or the end) so that "no such file" is an error up front.
        let first = loop {
            match events.next().await {
                Some(Ok(ExecEvent::Stdout(d))) => break Some(d),
                Some(Ok(ExecEvent::Stderr(d))) => stderr.extend(d),
                Some(Ok(ExecEvent::Exit(s))) if s.code == 0 => break None,
                Some(Ok(ExecEvent::Exit(_))) => return Err(guest_error(vm, path, &stderr)),
                Some(Ok(ExecEvent::Started { .. })) => {}
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(CoreError::Unavailable(format!(
                        "the agent of VM {vm:?} went away during the copy"
                    )))
                }
            }
        };
        let (tx, rx) = mpsc::channel(16);
        let (vm, path) = (vm.to_string(), path.to_string());
        tokio::spawn(async move {
            let Some(first) = first else { return };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            while let Some(e) = events.next().await {
                let item = match e {
                    Ok(ExecEvent::Stdout(d)) => Ok(d),
                    Ok(ExecEvent::Stderr(d)) => {
                        stderr.extend(d);
                        continue;
                    }
                    Ok(ExecEvent::Exit(s)) if s.code == 0 => return,
                    Ok(ExecEvent::Exit(_)) => Err(guest_error(&vm, &path, &stderr)),
                    Ok(ExecEvent::Started { .. }) => continue,
                    Err(e) => Err(e),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
            let _ = tx
                .send(Err(CoreError::Unavailable(format!(
                    "the agent of VM {vm:?} went away during the copy"
                ))))
                .await;
        });
        Ok(ReceiverStream::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_absolute_file_paths() {
        assert!(validate_path("/root/a.txt").is_ok());
        for bad in ["root/a", "", "/tmp/", "/a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
    }

    #[test]
    fn guest_complaints_become_the_right_errors() {
        let e = guest_error(
            "vm",
            "/x",
            b"noid-copy-out: line 0: can't open /x: no such file\n",
        );
        assert!(matches!(e, CoreError::NotFound(m) if m == "vm:/x: No such file or directory"));
        assert!(matches!(
            guest_error("vm", "/x", b"cat: read error: Is a directory"),
            CoreError::InvalidArgument(_)
        ));
        assert!(matches!(
            guest_error("vm", "/x", b"cat: can't create /x: Read-only file system"),
            CoreError::FailedPrecondition(m) if m == "vm:/x: Read-only file system"
        ));
    }
}
