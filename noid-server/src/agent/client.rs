//! Calling a guest agent. One lazily connected HTTP/2 channel per VM carries every call; when
//! the connection breaks (guest restored, server restarted) the next call reconnects.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use noid::agent::v1 as pb;
use noid::agent::v1::agent_client::AgentClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::connect::{connect, Guest};
use super::disk_copy::{self, Attempt, TransferDisk};
use super::status::{answered, from_status};
use super::wire::{pb_size, start_message, to_event, to_request};
use crate::core::model::AgentEndpoint;
use crate::core::ports::agent::{
    AgentConnector, AgentError, AgentHealth, ExecEvents, FileChunks, FileTarget, GuestAgent,
    PostRestore, SessionEvents, Upload,
};
use crate::core::types::{ExecInput, ExecSpec, SessionInfo, TtySize};
use crate::core::CoreError;

/// Makes `RemoteAgent`s.
pub struct Connector;

impl AgentConnector for Connector {
    fn agent(&self, endpoint: AgentEndpoint, timeout: Duration) -> Arc<dyn GuestAgent> {
        Arc::new(RemoteAgent::lazy(endpoint, timeout))
    }
}

/// The agent of one VM, over its gRPC protocol.
#[derive(Clone)]
pub struct RemoteAgent {
    client: AgentClient<Channel>,
    link: Arc<Link>,
    /// How long a call may wait for the agent's answer (a frozen or overloaded guest).
    timeout: Duration,
    /// The VM's transfer disk, which file copies take when they can.
    disk: Option<Arc<TransferDisk>>,
}

/// Control over the agent connection underneath the channel: the checkpoint flow closes the
/// gate (no new connection), hangs up the current one, and opens the gate again afterwards.
#[derive(Default)]
struct Link {
    /// A duplicate of the current connection's socket, to shut it down from outside.
    socket: Mutex<Option<OwnedFd>>,
    open: tokio::sync::watch::Sender<bool>,
    /// The guest is booting and has not greeted yet.
    booting: AtomicBool,
}

impl Link {
    fn new() -> Self {
        Self {
            socket: Mutex::new(None),
            open: tokio::sync::watch::Sender::new(true),
            booting: AtomicBool::new(false),
        }
    }

    async fn wait_open(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// The exec call itself, as a function whose future type says it is `Send`: written as an
/// `async fn`, proving that through the port's boxed future trips the compiler's
/// higher-ranked lifetime check on tonic's streaming types.
#[allow(clippy::manual_async_fn)]
fn call_exec(
    mut client: AgentClient<Channel>,
    timeout: Duration,
    outbound: impl futures::Stream<Item = pb::ExecRequest> + Send + 'static,
) -> impl std::future::Future<Output = Result<ExecEvents, AgentError>> + Send + 'static {
    async move {
        let inbound = answered(timeout, client.exec(outbound)).await?.into_inner();
        Ok(events(inbound))
    }
}

/// The write-file call itself; see `call_exec`.
#[allow(clippy::manual_async_fn)]
fn call_write_file(
    mut client: AgentClient<Channel>,
    outbound: impl futures::Stream<Item = pb::WriteFileRequest> + Send + 'static,
) -> impl std::future::Future<Output = Result<tonic::Response<pb::WriteFileResponse>, tonic::Status>>
       + Send
       + 'static {
    async move { client.write_file(outbound).await }
}

/// The agent's exec responses as the port's events.
fn events(inbound: tonic::Streaming<pb::ExecResponse>) -> ExecEvents {
    inbound
        .filter_map(|item| async move {
            match item {
                Ok(resp) => to_event(resp).map(Ok),
                Err(status) => Some(Err(from_status(status))),
            }
        })
        .boxed()
}

/// The messages after a write's header: the data, then `end` with the count; or, when the
/// data fails, an end without `end` (which the agent takes as "abandoned"), the failure
/// handed to `failed`.
fn upload_body(
    data: Upload,
    failed: tokio::sync::oneshot::Sender<CoreError>,
) -> BoxStream<'static, pb::WriteFileRequest> {
    use pb::write_file_request::Msg;
    futures::stream::unfold(
        (data, 0u64, Some(failed)),
        |(mut data, sent, mut failed)| async move {
            match data.next().await {
                Some(Ok(chunk)) => {
                    let n = chunk.len() as u64;
                    Some((Msg::Data(chunk), (data, sent + n, failed)))
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
    .map(|m| pb::WriteFileRequest { msg: Some(m) })
    .boxed()
}

impl RemoteAgent {
    /// A handle that connects on first use (and again after the connection breaks); each
    /// call waits at most `timeout` for the agent's answer.
    pub fn lazy(endpoint: AgentEndpoint, timeout: Duration) -> Self {
        let disk = match &endpoint {
            AgentEndpoint::Serial {
                transfer_disk: Some(path),
                ..
            } => Some(TransferDisk::new(path.clone())),
            _ => None,
        };
        let link = Arc::new(Link::new());
        let l = Arc::clone(&link);
        let connector = tower::service_fn(move |_: Uri| {
            let endpoint = endpoint.clone();
            let link = Arc::clone(&l);
            async move {
                link.wait_open().await;
                let guest = if link.booting.load(Ordering::Relaxed) {
                    Guest::Booting
                } else {
                    Guest::MaybeStale
                };
                let stream = connect(&endpoint, guest).await?;
                link.booting.store(false, Ordering::Relaxed);
                *link.socket.lock().expect("link lock") =
                    Some(stream.socket().try_clone_to_owned()?);
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let channel = Endpoint::from_static("http://agent.noid.internal")
            .initial_stream_window_size(noid::guest::HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(noid::guest::HTTP2_CONNECTION_WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .connect_with_connector_lazy(connector);
        Self {
            client: AgentClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            link,
            timeout,
            disk,
        }
    }
}

#[async_trait]
impl GuestAgent for RemoteAgent {
    fn hang_up(&self) {
        self.link.open.send_replace(false);
        if let Some(sock) = self.link.socket.lock().expect("link lock").take() {
            // SAFETY: shutdown on a descriptor we own (a duplicate of the live socket).
            unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }

    fn reopen(&self) {
        self.link.open.send_replace(true);
    }

    fn expect_boot(&self) {
        self.link.booting.store(true, Ordering::Relaxed);
    }

    async fn health(&self, timeout: Duration) -> Result<AgentHealth, AgentError> {
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

    async fn exec(
        &self,
        spec: ExecSpec,
        input: BoxStream<'static, ExecInput>,
    ) -> Result<ExecEvents, AgentError> {
        let first = pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(start_message(spec))),
        };
        let outbound = futures::stream::iter([first]).chain(input.map(to_request));
        call_exec(self.client.clone(), self.timeout, outbound).await
    }

    async fn write_file(
        &self,
        target: FileTarget,
        data: Upload,
    ) -> Result<Result<(String, u64), CoreError>, AgentError> {
        use pb::write_file_request::Msg;
        let data = match &self.disk {
            Some(disk) => {
                let client = self.client.clone();
                match disk_copy::write(client, disk, self.timeout, target.clone(), data).await {
                    Attempt::Done(result) => return result,
                    Attempt::NotServed(data) => data,
                }
            }
            None => data,
        };
        let (failed_tx, mut failed_rx) = tokio::sync::oneshot::channel();
        let header = pb::WriteFileRequest {
            msg: Some(Msg::Header(pb::WriteFileHeader {
                path: target.path,
                mode: target.mode,
                name_in_dir: target.name_in_dir,
            })),
        };
        let body = upload_body(data, failed_tx);
        let outbound = futures::stream::iter([header]).chain(body);
        let result = call_write_file(self.client.clone(), outbound).await;
        // The data's failure, if any, was handed over before its stream ended, and so before
        // the agent could answer.
        if let Ok(e) = failed_rx.try_recv() {
            return Ok(Err(e));
        }
        let resp = result.map_err(from_status)?.into_inner();
        Ok(Ok((resp.path, resp.bytes)))
    }

    async fn read_file(&self, path: String) -> Result<FileChunks, AgentError> {
        let path = match &self.disk {
            Some(disk) => {
                let client = self.client.clone();
                match disk_copy::read(client, disk, self.timeout, path).await {
                    Attempt::Done(result) => return result,
                    Attempt::NotServed(path) => path,
                }
            }
            None => path,
        };
        let mut client = self.client.clone();
        let inbound = answered(self.timeout, client.read_file(pb::ReadFileRequest { path }))
            .await?
            .into_inner();
        Ok(inbound
            .map(|item| item.map(|c| c.data).map_err(from_status))
            .boxed())
    }

    async fn post_restore(&self, facts: PostRestore) -> Result<(), AgentError> {
        let network = facts.net.map(|n| pb::GuestNetwork {
            mac: n.mac,
            address: format!("{}/{}", n.ip, n.prefix),
            gateway: n.gateway.to_string(),
            dns: n.dns,
        });
        let mut client = self.client.clone();
        let request = pb::PostRestoreRequest {
            unix_nanos: facts.unix_nanos,
            entropy: facts.entropy,
            hostname: facts.hostname,
            network,
        };
        client.post_restore(request).await.map_err(from_status)?;
        Ok(())
    }

    async fn settle(&self, quiet: Duration, within: Duration) -> Result<bool, AgentError> {
        let mut client = self.client.clone();
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let request = pb::SettleRequest {
            quiet_ms: ms(quiet),
            timeout_ms: ms(within),
        };
        let call = client.settle(request);
        match tokio::time::timeout(within + self.timeout, call).await {
            Ok(Ok(answer)) => Ok(answer.into_inner().settled),
            // An agent from before the call: there is nothing to wait for.
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Ok(false),
            Ok(Err(s)) => Err(from_status(s)),
            Err(_) => Err(AgentError::Unreachable(
                "the guest agent did not answer the settle call".to_string(),
            )),
        }
    }

    async fn resize_console(&self, size: TtySize) -> Result<(), AgentError> {
        let mut client = self.client.clone();
        answered(self.timeout, client.resize_console(pb_size(size))).await?;
        Ok(())
    }

    async fn shutdown(&self, timeout: Duration) -> Result<(), AgentError> {
        let mut client = self.client.clone();
        answered(timeout, client.shutdown(pb::ShutdownRequest {})).await?;
        Ok(())
    }

    async fn start_session(&self, spec: ExecSpec) -> Result<SessionInfo, AgentError> {
        super::sessions::start(self.client.clone(), self.timeout, spec).await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, AgentError> {
        super::sessions::list(self.client.clone(), self.timeout).await
    }

    async fn attach_session(
        &self,
        id: u32,
        input: BoxStream<'static, ExecInput>,
    ) -> Result<SessionEvents, AgentError> {
        super::sessions::attach(self.client.clone(), self.timeout, id, input).await
    }

    async fn kill_session(&self, id: u32, signal: i32) -> Result<SessionInfo, AgentError> {
        super::sessions::kill(self.client.clone(), self.timeout, id, signal).await
    }
}
