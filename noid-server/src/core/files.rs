//! Copying files into and out of a VM, served by the guest agent itself: a copy in goes to a
//! temporary file next to the destination and is renamed into place only once every byte has
//! arrived (an interrupted copy never leaves a partial file under the destination's name); a
//! copy out streams the file and stops reading in the guest when its reader goes away.

use std::sync::Arc;

use futures::{Stream, StreamExt};

use super::detached;
use super::faults::crash_point;
use super::ports::agent::{AgentError, FileTarget};
use super::{CoreError, Manager, Result, User};

/// The longest guest path accepted (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// Mode of a copied-in file when the client gives none.
pub const DEFAULT_MODE: u32 = 0o644;

fn validate_path(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.len() > MAX_PATH || path.contains('\0') {
        return Err(CoreError::InvalidArgument(format!(
            "guest path {:?} must be absolute (start with /), without NUL bytes, at most \
             {MAX_PATH} bytes",
            noid::names::shorten(path)
        )));
    }
    if path.ends_with('/') {
        return Err(CoreError::InvalidArgument(format!(
            "guest path {:?} names a directory: give the file's full path",
            noid::names::shorten(path)
        )));
    }
    Ok(())
}

/// The agent's complaint about a path, as the error it means, naming the VM ("box:/x: ...").
fn in_vm(vm: &str, e: AgentError) -> CoreError {
    match e {
        AgentError::Rejected { kind, message } if message.starts_with('/') => {
            AgentError::Rejected {
                kind,
                message: format!("{vm}:{message}"),
            }
            .into()
        }
        other => other.into(),
    }
}

impl Manager {
    /// Writes `data` to `path` in the caller's VM `vm` with `mode` (into `path` under
    /// `source_name` when `path` is a directory there); returns where the file went and its
    /// size. An error from `data` (the client gave up) abandons the copy and changes nothing.
    /// The copy runs as a task of its own, so a caller that goes away does not cut it short.
    pub async fn copy_in<S>(
        self: &Arc<Self>,
        user: &User,
        vm: &str,
        target: CopyTarget,
        data: S,
    ) -> Result<(String, u64)>
    where
        S: Stream<Item = Result<Vec<u8>>> + Send + 'static,
    {
        validate_path(&target.path)?;
        if target.mode > 0o7777 {
            return Err(CoreError::InvalidArgument(format!(
                "file mode {:o} is not a permission mode (at most 7777 octal)",
                target.mode
            )));
        }
        if target.source_name.contains('/') || target.source_name.contains('\0') {
            return Err(CoreError::InvalidArgument(format!(
                "source name {:?} must be a file name, without '/'",
                noid::names::shorten(&target.source_name)
            )));
        }
        let mode = if target.mode == 0 {
            DEFAULT_MODE
        } else {
            target.mode
        };
        let vm = self.running_vm(user, vm).await?;
        let agent = self.agent(&vm);
        let name = vm.name.clone();
        let (path, bytes) = detached("copy", async move {
            let written = agent
                .write_file(
                    FileTarget {
                        path: target.path,
                        mode,
                        name_in_dir: target.source_name,
                    },
                    data.boxed(),
                )
                .await
                .map_err(|e| in_vm(&name, e))?;
            written
        })
        .await?;
        crash_point("copy_in.sent");
        Ok((path, bytes))
    }

    /// Streams the file at `path` in the caller's VM `vm`. A missing or unreadable file is an
    /// error before any data; a failure later ends the stream with an error. Dropping the
    /// stream stops the reading in the guest.
    pub async fn copy_out(
        &self,
        user: &User,
        vm: &str,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Vec<u8>>> + Send + 'static> {
        validate_path(path)?;
        let vm = self.running_vm(user, vm).await?;
        let chunks = self
            .agent(&vm)
            .read_file(path.to_string())
            .await
            .map_err(|e| in_vm(&vm.name, e))?;
        let name = vm.name.clone();
        Ok(chunks.map(move |c| c.map_err(|e| in_vm(&name, e))))
    }
}

/// Where a copy into a VM goes.
#[derive(Debug, Clone, Default)]
pub struct CopyTarget {
    /// Absolute path in the guest.
    pub path: String,
    /// Permission bits; 0 means 0644.
    pub mode: u32,
    /// When `path` is a directory in the guest, the file goes into it under this name.
    pub source_name: String,
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
        let long = validate_path(&format!("/{}", "a".repeat(MAX_PATH)))
            .unwrap_err()
            .to_string();
        assert!(
            long.len() < 300,
            "the path is echoed whole: {} bytes",
            long.len()
        );
    }
}
