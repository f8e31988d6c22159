//! The host's end of file copies through a VM's transfer disk (`noid::guest::transfer_disk`):
//! the disk file is cut into windows of slots, one window per copy in flight; a copy in puts
//! the client's bytes in a free slot and tells the agent, a copy out reads the slots the
//! agent fills. Each slot is handed back by its reader, so a copy of any size uses one
//! window. A copy that finds no free window, or an agent that does not serve these calls
//! (one restored from an older checkpoint), takes the agent channel instead.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use noid::agent::v1 as pb;
use noid::agent::v1::agent_client::AgentClient;
use noid::guest::transfer_disk::ALIGN;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::status::from_status;
use crate::core::ports::agent::{AgentError, FileChunks, FileTarget, Upload};
use crate::core::CoreError;

/// Bytes per slot: large enough that a message per slot costs nothing, small enough that
/// the windows of a 64 MiB disk let four copies run at once.
const SLOT_BYTES: u64 = 4 << 20;
const SLOTS_PER_WINDOW: u64 = 4;
const WINDOW_BYTES: u64 = SLOT_BYTES * SLOTS_PER_WINDOW;
/// Bytes per message of a copy out to the client (gRPC's default limit is 4 MiB).
const CHUNK: usize = 1 << 20;
/// How long a copy in waits for more of the client's bytes before it sends a part slot.
const LINGER: Duration = Duration::from_millis(20);

/// A VM's transfer disk as the host sees it.
pub struct TransferDisk {
    path: PathBuf,
    /// Start offsets of the windows no copy uses.
    free: Mutex<Vec<u64>>,
}

impl TransferDisk {
    pub fn new(path: PathBuf) -> Arc<Self> {
        let windows = noid::guest::transfer_disk::BYTES / WINDOW_BYTES;
        Arc::new(Self {
            path,
            free: Mutex::new((0..windows).rev().map(|w| w * WINDOW_BYTES).collect()),
        })
    }

    /// A window for one copy, if one is free and the disk can be opened.
    fn window(self: &Arc<Self>) -> Option<Window> {
        let start = self.free.lock().expect("windows").pop()?;
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path);
        match opened {
            Ok(f) => Some(Window {
                disk: Arc::clone(self),
                start,
                file: Arc::new(f),
            }),
            Err(e) => {
                tracing::warn!("transfer disk {}: {e}", self.path.display());
                self.free.lock().expect("windows").push(start);
                None
            }
        }
    }
}

/// One copy's window of the disk; back to the pool on drop, its bytes dropped from the host's
/// disk (the file stays sparse).
struct Window {
    disk: Arc<TransferDisk>,
    start: u64,
    file: Arc<File>,
}

impl Window {
    fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    fn slots(&self) -> Vec<u64> {
        (0..SLOTS_PER_WINDOW)
            .map(|i| self.start + i * SLOT_BYTES)
            .collect()
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: fallocate on a descriptor this window owns, over its own range.
        let punched = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.start as libc::off_t,
                WINDOW_BYTES as libc::off_t,
            )
        };
        if punched != 0 {
            tracing::debug!(
                "transfer disk: freeing a window: {}",
                std::io::Error::last_os_error()
            );
        }
        self.disk.free.lock().expect("windows").push(self.start);
    }
}

/// What became of an attempt to copy through the disk.
pub enum Attempt<T, D> {
    Done(T),
    /// The disk could not be used; the data is untouched, for the agent channel.
    NotServed(D),
}

fn unserved(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unimplemented
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Unreachable(format!("transfer disk: {e}")))?
        .map_err(|e| AgentError::Unreachable(format!("transfer disk: {e}")))
}

/// Copies `data` into the guest through the disk: fills free slots in order, names each to
/// the agent, and waits for a slot to come back when none is free.
pub async fn write(
    mut client: AgentClient<Channel>,
    disk: &Arc<TransferDisk>,
    timeout: Duration,
    target: FileTarget,
    data: Upload,
) -> Attempt<Result<Result<(String, u64), CoreError>, AgentError>, Upload> {
    use pb::disk_write_request::Msg;
    let Some(window) = disk.window() else {
        return Attempt::NotServed(data);
    };
    let (tx, rx) = mpsc::channel(SLOTS_PER_WINDOW as usize + 2);
    let header = Msg::Header(pb::WriteFileHeader {
        path: target.path,
        mode: target.mode,
        name_in_dir: target.name_in_dir,
    });
    let _ = tx.try_send(pb::DiskWriteRequest { msg: Some(header) });
    let call = client.write_file_from_disk(ReceiverStream::new(rx));
    let inbound = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(s)) if unserved(&s) => return Attempt::NotServed(data),
        Ok(Err(s)) => return Attempt::Done(Err(from_status(s))),
        Err(_) => return Attempt::NotServed(data),
    };
    Attempt::Done(pump_in(window, tx, inbound, data).await)
}

/// The agent's answers to a copy in: slots it is done with go to `freed`; the last answer
/// (the file placed, or why not) is returned.
async fn answers(
    mut inbound: tonic::Streaming<pb::DiskWriteResponse>,
    freed: mpsc::UnboundedSender<u64>,
) -> Result<(String, u64), AgentError> {
    use pb::disk_write_response::Msg;
    loop {
        match inbound.message().await {
            Ok(Some(pb::DiskWriteResponse {
                msg: Some(Msg::Consumed(e)),
            })) => {
                let _ = freed.send(e.offset);
            }
            Ok(Some(pb::DiskWriteResponse {
                msg: Some(Msg::Written(w)),
            })) => return Ok((w.path, w.bytes)),
            Ok(_) => {
                return Err(AgentError::Unreachable(
                    "the guest agent ended a copy without an answer".into(),
                ))
            }
            Err(s) => return Err(from_status(s)),
        }
    }
}

async fn pump_in(
    window: Window,
    tx: mpsc::Sender<pb::DiskWriteRequest>,
    inbound: tonic::Streaming<pb::DiskWriteResponse>,
    mut data: Upload,
) -> Result<Result<(String, u64), CoreError>, AgentError> {
    use pb::disk_write_request::Msg;
    let (freed_tx, mut freed) = mpsc::unbounded_channel();
    let answer = tokio::spawn(answers(inbound, freed_tx));
    let file = window.file();
    let mut free = window.slots();
    free.reverse();
    let mut slot: Vec<u8> = Vec::with_capacity(SLOT_BYTES as usize);
    let mut sent = 0u64;
    let outcome: Result<(), Option<CoreError>> = async {
        loop {
            // Bytes wait for a full slot, unless the client pauses: then they go now, so a
            // slow writer's bytes reach the guest as they come.
            let next = if slot.is_empty() {
                data.next().await
            } else {
                match tokio::time::timeout(LINGER, data.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        sent += slot.len() as u64;
                        send_slot(&file, &mut free, &mut freed, &tx, std::mem::take(&mut slot))
                            .await?;
                        continue;
                    }
                }
            };
            match next {
                Some(Ok(chunk)) => {
                    let mut rest = &chunk[..];
                    while !rest.is_empty() {
                        // A slot ends on an aligned offset of the file (after a short one,
                        // the next is that much shorter), so the agent can write it directly.
                        let room = (SLOT_BYTES - (sent % ALIGN)) as usize;
                        let n = rest.len().min(room - slot.len());
                        slot.extend_from_slice(&rest[..n]);
                        rest = &rest[n..];
                        if slot.len() == room {
                            sent += slot.len() as u64;
                            let fresh = Vec::with_capacity(SLOT_BYTES as usize);
                            let full = std::mem::replace(&mut slot, fresh);
                            send_slot(&file, &mut free, &mut freed, &tx, full).await?;
                        }
                    }
                }
                // The client gave up: no `end`, and the agent drops what it staged.
                Some(Err(e)) => return Err(Some(e)),
                None => break,
            }
        }
        if !slot.is_empty() {
            sent += slot.len() as u64;
            send_slot(&file, &mut free, &mut freed, &tx, std::mem::take(&mut slot)).await?;
        }
        let end = pb::DiskWriteRequest {
            msg: Some(Msg::End(sent)),
        };
        tx.send(end).await.map_err(|_| None)
    }
    .await;
    if let Err(Some(client_error)) = outcome {
        answer.abort();
        return Ok(Err(client_error));
    }
    drop(tx);
    let placed = answer
        .await
        .map_err(|e| AgentError::Unreachable(format!("copy: {e}")))?;
    drop(window);
    placed.map(Ok)
}

/// Puts `bytes` in a free slot (waiting for one) and names it to the agent. `Err(None)`: the
/// agent stopped listening (its answer says why).
async fn send_slot(
    file: &Arc<File>,
    free: &mut Vec<u64>,
    freed: &mut mpsc::UnboundedReceiver<u64>,
    tx: &mpsc::Sender<pb::DiskWriteRequest>,
    bytes: Vec<u8>,
) -> Result<(), Option<CoreError>> {
    let offset = match free.pop() {
        Some(o) => o,
        None => freed.recv().await.ok_or(None)?,
    };
    let length = bytes.len() as u64;
    let f = Arc::clone(file);
    blocking(move || f.write_all_at(&bytes, offset))
        .await
        .map_err(|e| Some(CoreError::from(e)))?;
    let extent = pb::DiskExtent { offset, length };
    let msg = pb::disk_write_request::Msg::Extent(extent);
    tx.send(pb::DiskWriteRequest { msg: Some(msg) })
        .await
        .map_err(|_| None)
}

/// Streams the guest file at `path` through the disk: the agent fills the window's slots, each
/// is read here and handed back.
pub async fn read(
    mut client: AgentClient<Channel>,
    disk: &Arc<TransferDisk>,
    timeout: Duration,
    path: String,
) -> Attempt<Result<FileChunks, AgentError>, String> {
    use pb::disk_read_request::Msg;
    let Some(window) = disk.window() else {
        return Attempt::NotServed(path);
    };
    let (tx, rx) = mpsc::channel(SLOTS_PER_WINDOW as usize + 2);
    let slots = window
        .slots()
        .into_iter()
        .map(|offset| pb::DiskExtent {
            offset,
            length: SLOT_BYTES,
        })
        .collect();
    let start = Msg::Start(pb::DiskReadStart {
        path: path.clone(),
        slots,
    });
    let _ = tx.try_send(pb::DiskReadRequest { msg: Some(start) });
    let call = client.read_file_to_disk(ReceiverStream::new(rx));
    let inbound = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(s)) if unserved(&s) => return Attempt::NotServed(path),
        Ok(Err(s)) => return Attempt::Done(Err(from_status(s))),
        Err(_) => return Attempt::NotServed(path),
    };
    Attempt::Done(Ok(chunks_out(window, tx, inbound).boxed()))
}

/// The bytes of the slots the agent names, in pieces of `CHUNK`; each slot is handed back once
/// read. Dropping the stream hangs up, which stops the agent.
fn chunks_out(
    window: Window,
    tx: mpsc::Sender<pb::DiskReadRequest>,
    inbound: tonic::Streaming<pb::DiskReadResponse>,
) -> impl Stream<Item = Result<Vec<u8>, AgentError>> + Send + 'static {
    let file = window.file();
    futures::stream::try_unfold(
        (window, tx, inbound, file),
        |(window, tx, mut inbound, file)| async move {
            let extent = match inbound.message().await {
                Ok(Some(pb::DiskReadResponse {
                    extent: Some(extent),
                })) => extent,
                Ok(Some(_)) => {
                    return Err(AgentError::Unreachable(
                        "the guest agent named no slot".into(),
                    ))
                }
                Ok(None) => return Ok(None),
                Err(s) => return Err(from_status(s)),
            };
            let f = Arc::clone(&file);
            let bytes = blocking(move || {
                let mut buf = vec![0u8; extent.length.min(SLOT_BYTES) as usize];
                f.read_exact_at(&mut buf, extent.offset).map(|()| buf)
            })
            .await?;
            let msg = pb::disk_read_request::Msg::Consumed(extent);
            // An agent that stopped listening has said why on `inbound`.
            let _ = tx.send(pb::DiskReadRequest { msg: Some(msg) }).await;
            let pieces: Vec<Result<Vec<u8>, AgentError>> =
                bytes.chunks(CHUNK).map(|c| Ok(c.to_vec())).collect();
            Ok(Some((
                futures::stream::iter(pieces),
                (window, tx, inbound, file),
            )))
        },
    )
    .try_flatten()
}
