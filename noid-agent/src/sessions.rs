//! Exec sessions: commands that run detached from any host connection. Each keeps its output
//! in a bounded buffer (the oldest output goes first when it is full, and is counted), so a
//! client can attach at any time, see what the command printed since it started and follow
//! it live, detach, and attach again. Everything lives in the agent's memory: a checkpoint of
//! the guest carries the sessions with their buffers, and a fork gets its own copies.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use noid::agent::v1::{
    attach_request, attach_response, AttachRequest, AttachResponse, ExecExit, ExecStart,
    SessionInfo,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tonic::{Status, Streaming};

use crate::exec::{self, Spawned};
use crate::output::{self, ExitNotice, OutputPipe};
use crate::reaper::Reaper;

/// Output kept per session.
const BUFFER_BYTES: usize = 1 << 20;
/// Live output chunks a slow attached client may fall behind by before it misses some.
const LIVE_CHUNKS: usize = 1024;
/// Finished sessions kept for `ps` and late attaches; older ones are forgotten.
const KEEP_FINISHED: usize = 32;

#[derive(Clone, Debug)]
enum Event {
    Output { stderr: bool, data: Vec<u8> },
    Exit(ExecExit),
}

/// What a session has produced so far.
struct Kept {
    chunks: VecDeque<(bool, Vec<u8>)>,
    bytes: usize,
    dropped: u64,
    exit: Option<ExecExit>,
}

struct Session {
    id: u32,
    argv: Vec<String>,
    tty: bool,
    pid: i32,
    started_at: i64,
    kept: Mutex<Kept>,
    live: broadcast::Sender<Event>,
    stdin: tokio::sync::Mutex<Option<Box<dyn AsyncWrite + Send + Unpin>>>,
    pty: Option<i32>,
}

impl Session {
    /// Keeps and publishes `event` (under the lock, so an attach sees each event once).
    fn record(&self, event: Event) {
        let mut kept = self.kept.lock().expect("session lock");
        match &event {
            Event::Output { stderr, data } => {
                kept.bytes += data.len();
                kept.chunks.push_back((*stderr, data.clone()));
                while kept.bytes > BUFFER_BYTES {
                    let (_, old) = kept.chunks.pop_front().expect("bytes > 0");
                    kept.bytes -= old.len();
                    kept.dropped += old.len() as u64;
                }
            }
            Event::Exit(exit) => kept.exit = Some(*exit),
        }
        let _ = self.live.send(event);
    }

    fn info(&self) -> SessionInfo {
        let kept = self.kept.lock().expect("session lock");
        SessionInfo {
            id: self.id,
            argv: self.argv.clone(),
            tty: self.tty,
            pid: self.pid as u32,
            started_at: self.started_at,
            exit: kept.exit,
            buffered_bytes: kept.bytes as u64,
            dropped_bytes: kept.dropped,
        }
    }
}

/// The agent's sessions.
#[derive(Clone, Default)]
pub struct Sessions {
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    next_id: u32,
    by_id: BTreeMap<u32, Arc<Session>>,
}

fn not_found(id: u32) -> Status {
    Status::not_found(format!("no exec session {id} in this VM"))
}

impl Sessions {
    /// Starts `start` as a session; it runs until it exits or is killed, whoever listens.
    pub fn start(&self, reaper: &Reaper, start: ExecStart) -> Result<SessionInfo, Status> {
        let spawned = exec::spawn(reaper, &start)?;
        let Spawned {
            pid,
            exit,
            stdin,
            outputs,
            pty,
        } = spawned;
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let session = {
            let mut table = self.table.lock().expect("sessions lock");
            table.next_id += 1;
            let session = Arc::new(Session {
                id: table.next_id,
                argv: start.argv.clone(),
                tty: start.tty,
                pid,
                started_at,
                kept: Mutex::new(Kept {
                    chunks: VecDeque::new(),
                    bytes: 0,
                    dropped: 0,
                    exit: None,
                }),
                live: broadcast::channel(LIVE_CHUNKS).0,
                stdin: tokio::sync::Mutex::new(stdin),
                pty,
            });
            table.by_id.insert(session.id, Arc::clone(&session));
            forget_old(&mut table);
            session
        };
        let notice = ExitNotice::new();
        let pumps: Vec<_> = outputs
            .into_iter()
            .map(|(r, stderr)| {
                tokio::spawn(keep_output(notice.pipe(r), stderr, Arc::clone(&session)))
            })
            .collect();
        let s = Arc::clone(&session);
        tokio::spawn(async move {
            let status = exit.await.ok();
            notice.exited();
            for p in pumps {
                let _ = p.await;
            }
            let status = status.unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                std::process::ExitStatus::from_raw(libc::SIGKILL)
            });
            s.stdin.lock().await.take();
            s.record(Event::Exit(exec::exit_message(status, false)));
        });
        Ok(session.info())
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        let table = self.table.lock().expect("sessions lock");
        table.by_id.values().map(|s| s.info()).collect()
    }

    fn get(&self, id: u32) -> Result<Arc<Session>, Status> {
        let table = self.table.lock().expect("sessions lock");
        table.by_id.get(&id).cloned().ok_or_else(|| not_found(id))
    }

    /// Sends `signal` (0: SIGTERM) to the session's process group.
    pub fn kill(&self, id: u32, signal: i32) -> Result<SessionInfo, Status> {
        let s = self.get(id)?;
        if s.kept.lock().expect("session lock").exit.is_none() {
            exec::signal_group(s.pid, if signal == 0 { libc::SIGTERM } else { signal });
        }
        Ok(s.info())
    }

    /// Attaches the stream whose first message names the session: what it kept, then live
    /// output until it exits; the client's stdin, signals and resizes go to it. The session
    /// runs on when the client goes.
    pub async fn attach(
        &self,
        mut input: Streaming<AttachRequest>,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<AttachResponse, Status>> + Send>>, Status> {
        let id = match input.message().await? {
            Some(AttachRequest {
                msg: Some(attach_request::Msg::Session(id)),
            }) => id,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of AttachSession must name the session",
                ))
            }
        };
        let s = self.get(id)?;
        // Subscribed under the lock that `record` takes: nothing is missed or seen twice.
        let (first, live, done) = {
            let kept = s.kept.lock().expect("session lock");
            let mut first = Vec::new();
            if kept.dropped > 0 {
                first.push(attach_response::Msg::Dropped(kept.dropped));
            }
            for (stderr, data) in &kept.chunks {
                first.push(output_msg(*stderr, data.clone()));
            }
            if let Some(exit) = kept.exit {
                first.push(attach_response::Msg::Exit(exit));
            }
            (first, s.live.subscribe(), kept.exit.is_some())
        };
        if !done {
            tokio::spawn(forward_input(input, Arc::clone(&s)));
        }
        let head = futures::stream::iter(first);
        let tail = futures::stream::unfold((live, done), |(mut live, done)| async move {
            if done {
                return None;
            }
            let msg = match live.recv().await {
                Ok(Event::Output { stderr, data }) => output_msg(stderr, data),
                Ok(Event::Exit(exit)) => {
                    return Some((attach_response::Msg::Exit(exit), (live, true)))
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    attach_response::Msg::Dropped(n * output::CHUNK as u64)
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((msg, (live, false)))
        });
        use futures::StreamExt;
        Ok(Box::pin(
            head.chain(tail)
                .map(|m| Ok(AttachResponse { msg: Some(m) })),
        ))
    }
}

fn output_msg(stderr: bool, data: Vec<u8>) -> attach_response::Msg {
    if stderr {
        attach_response::Msg::Stderr(data)
    } else {
        attach_response::Msg::Stdout(data)
    }
}

/// Drops the oldest finished sessions beyond `KEEP_FINISHED`.
fn forget_old(table: &mut Table) {
    let finished: Vec<u32> = table
        .by_id
        .values()
        .filter(|s| s.kept.lock().expect("session lock").exit.is_some())
        .map(|s| s.id)
        .collect();
    for id in finished
        .iter()
        .take(finished.len().saturating_sub(KEEP_FINISHED))
    {
        table.by_id.remove(id);
    }
}

async fn keep_output(mut pipe: OutputPipe, stderr: bool, s: Arc<Session>) {
    while let Some(data) = pipe.next().await {
        s.record(Event::Output {
            stderr,
            data: data.to_vec(),
        });
    }
}

/// Applies an attached client's messages to the session until the client goes.
async fn forward_input(mut input: Streaming<AttachRequest>, s: Arc<Session>) {
    while let Ok(Some(req)) = input.message().await {
        match req.msg {
            Some(attach_request::Msg::Stdin(data)) => {
                let mut stdin = s.stdin.lock().await;
                if let Some(w) = stdin.as_mut() {
                    if w.write_all(&data).await.is_err() {
                        *stdin = None;
                    }
                }
            }
            Some(attach_request::Msg::CloseStdin(_)) => {
                s.stdin.lock().await.take();
            }
            Some(attach_request::Msg::Signal(sig)) => exec::signal_group(s.pid, sig),
            Some(attach_request::Msg::Resize(size)) => {
                if let Some(fd) = s.pty {
                    exec::resize(fd, size.rows, size.cols);
                }
            }
            Some(attach_request::Msg::Session(_)) | None => {}
        }
    }
    // The client went: the session and its stdin stay for the next attach.
}
