//! QEMU's side of checkpoints: the migration stream. Saving asks the paused QEMU to migrate
//! to a Unix socket that we serve, and writes the stream to `memory.state` while hashing it,
//! so the checksum costs no second read; with memory files on, the guest RAM's pages are
//! split off into `memory.ram` on the way (`qemu_stream`), which a restored VM maps
//! copy-on-write as its RAM. Loading starts a QEMU with `-incoming defer -S`, feeds it the
//! state file and continues the guest.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::UnixListener;

use super::qmp::Qmp;
use super::{SavedFile, VmmError};

/// The file that holds device state, and memory unless it is in `MEMORY_FILE`.
pub const STATE_FILE: &str = "memory.state";
/// The guest RAM, page by page at its offset, when saved apart from the state.
pub const MEMORY_FILE: &str = "memory.ram";
/// The RAM block of QEMU's main memory (microvm's `default-ram-id`): the memory backend a
/// restored VM maps `MEMORY_FILE` with has this id, so that the stream's blocks match.
pub const RAM_BLOCK: &str = "microvm.ram";
const MIGRATE_SOCKET: &str = "migrate.sock";
/// Saved beside the state when the VM has a transfer disk: its size, which the restored VM's
/// disk must have (QEMU does not migrate a disk's size, and the guest remembers it).
const TRANSFER_DISK_MARK: &str = "transfer-disk";

/// The transfer disk that a VM saved in `state_dir` had: its size, or None.
pub fn saved_transfer_disk(state_dir: &Path) -> Result<Option<u64>, VmmError> {
    match std::fs::read_to_string(state_dir.join(TRANSFER_DISK_MARK)) {
        Ok(text) => {
            text.trim().parse().map(Some).map_err(|_| {
                VmmError::Control(format!("{TRANSFER_DISK_MARK}: not a size: {text:?}"))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Records the transfer disk of the VM in `vm_dir` (if it has one) in `out_dir`.
fn save_transfer_disk(vm_dir: &Path, out_dir: &Path) -> Result<Option<SavedFile>, VmmError> {
    let disk = match std::fs::metadata(vm_dir.join(noid::guest::transfer_disk::FILE)) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = format!("{disk}\n");
    std::fs::write(out_dir.join(TRANSFER_DISK_MARK), &text)?;
    Ok(Some(SavedFile {
        name: TRANSFER_DISK_MARK.into(),
        bytes: text.len() as u64,
        sha256: Some(hex::encode(Sha256::digest(text.as_bytes()))),
    }))
}

/// Polls `query-migrate` until the migration ends; errors unless it completed.
async fn wait_migration(qmp: &mut Qmp) -> Result<(), VmmError> {
    loop {
        let info: Value = qmp.execute("query-migrate", json!({})).await?;
        match info.get("status").and_then(Value::as_str) {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                let why = info
                    .get("error-desc")
                    .and_then(Value::as_str)
                    .unwrap_or("migration failed");
                return Err(VmmError::Control(format!("QEMU migration: {why}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Waits for QEMU to connect to the migration socket.
async fn accept(listener: &UnixListener) -> Result<tokio::net::UnixStream, VmmError> {
    let (stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .map_err(|_| VmmError::Control("QEMU did not connect to the migration socket".into()))??;
    Ok(stream)
}

/// A writer that hashes and counts what it writes.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Receives the migration stream from `listener` into `out_dir`, hashing the state file as it
/// is written (no second read for its checksum); with `split`, the RAM's pages go apart into
/// the memory file. Not fsynced: the caller does that once the guest runs again.
async fn receive(
    listener: UnixListener,
    out_dir: &Path,
    split: bool,
) -> Result<Vec<SavedFile>, VmmError> {
    let stream = accept(&listener).await?.into_std()?;
    stream.set_nonblocking(false)?;
    let out_dir = out_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut state = Hashing {
            inner: std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(out_dir.join(STATE_FILE))?,
            ),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut input = std::io::BufReader::with_capacity(1 << 20, stream);
        let mut files = Vec::new();
        if split {
            let memory = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(out_dir.join(MEMORY_FILE))?;
            let split =
                super::qemu_stream::split(input, &mut state, &memory, RAM_BLOCK).map_err(|e| {
                    match e {
                        super::qemu_stream::StreamError::Io(e) => VmmError::Io(e),
                        unsupported => VmmError::Control(format!(
                            "{unsupported} (with [qemu] memory_files = false memory stays in the \
                         stream)"
                        )),
                    }
                })?;
            files.push(SavedFile {
                name: MEMORY_FILE.into(),
                bytes: split.block_bytes,
                sha256: None,
            });
        } else {
            std::io::copy(&mut input, &mut state)?;
        }
        std::io::Write::flush(&mut state)?;
        files.insert(
            0,
            SavedFile {
                name: STATE_FILE.into(),
                bytes: state.bytes,
                sha256: Some(hex::encode(state.hasher.finalize())),
            },
        );
        Ok(files)
    })
    .await
    .map_err(|e| VmmError::Control(format!("receiving the migration stream: {e}")))?
}

/// Saves the paused VM into `out_dir`; `memory_file`: with the RAM apart in `MEMORY_FILE`.
pub async fn save(
    qmp_socket: &Path,
    vm_dir: &Path,
    out_dir: &Path,
    memory_file: bool,
) -> Result<Vec<SavedFile>, VmmError> {
    let mut saved: Vec<SavedFile> = save_transfer_disk(vm_dir, out_dir)?.into_iter().collect();
    let sock = out_dir.join(MIGRATE_SOCKET);
    let listener = UnixListener::bind(&sock)?;
    let mut qmp = Qmp::connect(qmp_socket).await?;
    // The default bandwidth cap (32 MiB/s) is for live migration over a network; a paused VM
    // writing to local disk should go as fast as it can.
    qmp.execute(
        "migrate-set-parameters",
        json!({ "max-bandwidth": 1u64 << 40 }),
    )
    .await?;
    qmp.execute(
        "migrate",
        json!({ "uri": format!("unix:{}", sock.display()) }),
    )
    .await?;
    let received = receive(listener, out_dir, memory_file).await;
    let _ = std::fs::remove_file(&sock);
    let files = match received {
        Ok(f) => f,
        Err(e) => {
            let _ = qmp.execute("migrate_cancel", json!({})).await;
            let _ = wait_migration(&mut qmp).await;
            return Err(e);
        }
    };
    wait_migration(&mut qmp).await?;
    saved.splice(0..0, files);
    Ok(saved)
}

/// Quotes `s` for a POSIX shell (QEMU runs `exec:` URIs through /bin/sh).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub async fn load(qmp_socket: &Path, state_dir: &Path) -> Result<(), VmmError> {
    let mut qmp = Qmp::connect(qmp_socket).await?;
    let file = state_dir.join(STATE_FILE);
    let uri = format!("exec:cat {}", shell_quote(&file.display().to_string()));
    qmp.execute("migrate-incoming", json!({ "uri": uri }))
        .await?;
    wait_migration(&mut qmp).await?;
    qmp.execute("cont", json!({})).await?;
    let status = qmp.status().await?;
    if status != "running" {
        return Err(VmmError::Control(format!(
            "restored VM is not running: {status}"
        )));
    }
    Ok(())
}

/// Waits until QEMU has seen the host hang up the agent socket (its chardev reads
/// "disconnected"), which is also when it tells the guest that the host is gone. A checkpoint
/// taken after that holds a guest whose agent waits for a new host, rather than one inside a
/// session with a host that a restored copy will never see; the latter can wedge the port of
/// the copy (seen with QEMU 7.2: a host that connects to the restored VM soon after it
/// resumes never gets a session).
pub async fn wait_agent_disconnected(qmp: &mut Qmp) -> Result<(), VmmError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let devs: Value = qmp.execute("query-chardev", json!({})).await?;
        let disconnected = devs.as_array().into_iter().flatten().any(|d| {
            d["label"].as_str() == Some("agent")
                && d["filename"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("disconnected"))
        });
        if disconnected {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(VmmError::Control(
                "QEMU did not see the agent connection close".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transfer_disk_goes_with_the_saved_state() {
        let (vm, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A VM without one (started before the disk existed) saves no mark.
        assert!(save_transfer_disk(vm.path(), out.path()).unwrap().is_none());
        assert_eq!(saved_transfer_disk(out.path()).unwrap(), None);
        let disk = vm.path().join(noid::guest::transfer_disk::FILE);
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let saved = save_transfer_disk(vm.path(), out.path()).unwrap().unwrap();
        assert_eq!(saved.name, TRANSFER_DISK_MARK);
        assert_eq!(saved_transfer_disk(out.path()).unwrap(), Some(1 << 20));
        std::fs::write(out.path().join(TRANSFER_DISK_MARK), "junk").unwrap();
        assert!(saved_transfer_disk(out.path()).is_err());
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
