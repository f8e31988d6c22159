//! Calling a guest agent. One lazily connected HTTP/2 channel per VM carries every call; when
//! the connection breaks (guest restored, server restarted) the next call reconnects.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use noid::agent::v1 as pb;
use noid::agent::v1::agent_client::AgentClient;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint, Uri};

use super::connect::connect;
use crate::core::types::{ExecEvent, ExecInput, ExecSpec, ExitStatus, TtySize};
use crate::network::GuestNet;
use crate::vmm::AgentEndpoint;

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{message}")]
    Rejected { code: tonic::Code, message: String },
}

impl From<tonic::Status> for AgentError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            // Transport failures surface as Unavailable/Unknown/Cancelled without an answer
            // from the agent itself.
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                AgentError::Unreachable(format!("guest agent unreachable: {}", s.message()))
            }
            code => AgentError::Rejected {
                code,
                message: s.message().to_string(),
            },
        }
    }
}

/// What the agent reports about itself.
#[derive(Debug, Clone)]
pub struct AgentHealth {
    pub version: String,
    pub kernel_release: String,
    pub protocol: u32,
}

#[derive(Clone)]
pub struct GuestAgent {
    client: AgentClient<Channel>,
    link: Arc<Link>,
    /// How long a call may wait for the agent's answer (a frozen or overloaded guest).
    timeout: Duration,
}

/// `call`, unless the agent does not answer within `timeout`.
async fn answered<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, AgentError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(AgentError::Unreachable(format!(
            "the guest agent did not answer within {}s (is the VM paused, frozen or short of \
             CPU?)",
            timeout.as_secs_f32()
        ))),
    }
}

/// Control over the agent connection underneath the channel: the checkpoint flow closes the
/// gate (no new connection), hangs up the current one, and opens the gate again afterwards.
#[derive(Default)]
struct Link {
    /// A duplicate of the current connection's socket, to shut it down from outside.
    socket: Mutex<Option<OwnedFd>>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Link {
    fn new() -> Self {
        Self {
            socket: Mutex::new(None),
            open: tokio::sync::watch::Sender::new(true),
        }
    }

    async fn wait_open(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

fn pb_size(s: TtySize) -> pb::TtySize {
    pb::TtySize {
        rows: s.rows,
        cols: s.cols,
    }
}

fn to_request(input: ExecInput) -> pb::ExecRequest {
    use pb::exec_request::Msg;
    let msg = match input {
        ExecInput::Stdin(data) => Msg::Stdin(data),
        ExecInput::CloseStdin => Msg::CloseStdin(true),
        ExecInput::Signal(sig) => Msg::Signal(sig),
        ExecInput::Resize(size) => Msg::Resize(pb_size(size)),
    };
    pb::ExecRequest { msg: Some(msg) }
}

fn to_event(resp: pb::ExecResponse) -> Option<ExecEvent> {
    use pb::exec_response::Msg;
    Some(match resp.msg? {
        Msg::StartedPid(pid) => ExecEvent::Started { pid },
        Msg::Stdout(d) => ExecEvent::Stdout(d),
        Msg::Stderr(d) => ExecEvent::Stderr(d),
        Msg::Exit(e) => ExecEvent::Exit(ExitStatus {
            code: e.code,
            signal: e.signal,
            timed_out: e.timed_out,
        }),
    })
}

impl GuestAgent {
    /// A handle that connects on first use (and again after the connection breaks); each
    /// call waits at most `timeout` for the agent's answer.
    pub fn lazy(endpoint: AgentEndpoint, timeout: Duration) -> Self {
        let link = Arc::new(Link::new());
        let l = Arc::clone(&link);
        let connector = tower::service_fn(move |_: Uri| {
            let endpoint = endpoint.clone();
            let link = Arc::clone(&l);
            async move {
                link.wait_open().await;
                let stream = connect(&endpoint).await?;
                *link.socket.lock().expect("link lock") =
                    Some(stream.socket().try_clone_to_owned()?);
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let channel = Endpoint::from_static("http://agent.noid.internal")
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .connect_with_connector_lazy(connector);
        Self {
            client: AgentClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            link,
            timeout,
        }
    }

    /// Hangs up the connection to the agent and keeps new ones from being made until
    /// `reopen`. Calls in flight fail; calls made meanwhile wait.
    pub fn hang_up(&self) {
        self.link.open.send_replace(false);
        if let Some(sock) = self.link.socket.lock().expect("link lock").take() {
            // SAFETY: shutdown on a descriptor we own (a duplicate of the live socket).
            unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }

    /// Lets the channel connect again after `hang_up`.
    pub fn reopen(&self) {
        self.link.open.send_replace(true);
    }

    pub async fn health(&self, timeout: Duration) -> Result<AgentHealth, AgentError> {
        let mut client = self.client.clone();
        let resp = answered(timeout, client.health(pb::HealthRequest {}))
            .await?
            .into_inner();
        Ok(AgentHealth {
            version: resp.agent_version,
            kernel_release: resp.kernel_release,
            protocol: resp.protocol,
        })
    }

    /// Starts `spec` in the guest; `input` feeds it, the returned stream reports it.
    pub async fn exec<S>(
        &self,
        spec: ExecSpec,
        input: S,
    ) -> Result<impl Stream<Item = Result<ExecEvent, AgentError>> + Send + 'static, AgentError>
    where
        S: Stream<Item = ExecInput> + Send + 'static,
    {
        let start = pb::ExecStart {
            argv: spec.argv,
            env: spec.env,
            cwd: spec.cwd.unwrap_or_default(),
            stdin: spec.stdin,
            tty: spec.tty.is_some(),
            tty_size: spec.tty.map(pb_size),
            timeout_ms: spec
                .timeout
                .map(|d| d.as_millis().min(u32::MAX as u128) as u32)
                .unwrap_or(0),
        };
        let first = pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(start)),
        };
        let outbound = futures::stream::once(async move { first }).chain(input.map(to_request));
        let mut client = self.client.clone();
        let inbound = answered(self.timeout, client.exec(outbound))
            .await?
            .into_inner();
        Ok(inbound.filter_map(|item| async move {
            match item {
                Ok(resp) => to_event(resp).map(Ok),
                Err(status) => Some(Err(AgentError::from(status))),
            }
        }))
    }

    /// Writes `data` to `path` in the guest (into it under `name_in_dir` when it is a
    /// directory) with `mode`; returns where the file went and its size. When `data` fails,
    /// the copy is abandoned and nothing in the guest changes; its error is returned.
    pub async fn write_file<S, E>(
        &self,
        path: String,
        mode: u32,
        name_in_dir: String,
        data: S,
    ) -> Result<Result<(String, u64), E>, AgentError>
    where
        S: Stream<Item = Result<Vec<u8>, E>> + Send + 'static,
        E: Send + 'static,
    {
        use pb::write_file_request::Msg;
        let (failed_tx, mut failed_rx) = tokio::sync::oneshot::channel();
        let header = pb::WriteFileRequest {
            msg: Some(Msg::Header(pb::WriteFileHeader {
                path,
                mode,
                name_in_dir,
            })),
        };
        // The data, then `end` with the count; or, when the data fails, an end without `end`,
        // which the agent takes as "abandoned".
        let body = futures::stream::unfold(
            (Box::pin(data), 0u64, Some(failed_tx)),
            |(mut data, sent, mut failed)| async move {
                match data.next().await {
                    Some(Ok(chunk)) => {
                        let n = chunk.len() as u64;
                        let msg = Msg::Data(chunk);
                        Some((msg, (data, sent + n, failed)))
                    }
                    Some(Err(e)) => {
                        if let Some(tx) = failed.take() {
                            let _ = tx.send(e);
                        }
                        None
                    }
                    None if failed.is_some() => Some((Msg::End(sent), (data, sent, None))),
                    None => None,
                }
            },
        )
        .map(|m| pb::WriteFileRequest { msg: Some(m) });
        let outbound = futures::stream::once(async move { header }).chain(body);
        let mut client = self.client.clone();
        let result = client.write_file(outbound).await;
        // The data's failure, if any, was handed over before its stream ended, and so before
        // the agent could answer.
        if let Ok(e) = failed_rx.try_recv() {
            return Ok(Err(e));
        }
        let resp = result?.into_inner();
        Ok(Ok((resp.path, resp.bytes)))
    }

    /// The bytes of the file at `path` in the guest; the agent stops reading when the
    /// returned stream is dropped.
    pub async fn read_file(
        &self,
        path: String,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, AgentError>> + Send + 'static, AgentError> {
        let mut client = self.client.clone();
        let inbound = answered(self.timeout, client.read_file(pb::ReadFileRequest { path }))
            .await?
            .into_inner();
        Ok(inbound.map(|item| item.map(|c| c.data).map_err(AgentError::from)))
    }

    pub async fn post_restore(
        &self,
        unix_nanos: i64,
        entropy: Vec<u8>,
        hostname: String,
        net: Option<GuestNet>,
    ) -> Result<(), AgentError> {
        let network = net.map(|n| pb::GuestNetwork {
            mac: n.mac,
            address: format!("{}/{}", n.ip, n.prefix),
            gateway: n.gateway.to_string(),
            dns: n.dns,
        });
        let mut client = self.client.clone();
        let request = pb::PostRestoreRequest {
            unix_nanos,
            entropy,
            hostname,
            network,
        };
        // No deadline of its own: the caller gives the whole post-restore step one.
        client.post_restore(request).await?;
        Ok(())
    }

    pub async fn resize_console(&self, size: TtySize) -> Result<(), AgentError> {
        let mut client = self.client.clone();
        answered(self.timeout, client.resize_console(pb_size(size))).await?;
        Ok(())
    }

    /// Asks the guest to power off; waits at most `timeout` for the answer.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), AgentError> {
        let mut client = self.client.clone();
        answered(timeout, client.shutdown(pb::ShutdownRequest {})).await?;
        Ok(())
    }
}
