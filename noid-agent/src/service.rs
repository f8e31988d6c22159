//! The agent's gRPC service: thin handlers over `exec`, `sessions`, `files`, `disk_copy`,
//! `system`, `settle` and `init`.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use noid::agent::v1::agent_server::Agent;
use noid::agent::v1::{
    exec_request, AttachRequest, AttachResponse, DiskReadRequest, DiskReadResponse,
    DiskWriteRequest, DiskWriteResponse, ExecRequest, ExecResponse, ExecStart, FileData,
    HealthRequest, HealthResponse, KillSessionRequest, ListSessionsRequest, ListSessionsResponse,
    PostRestoreRequest, PostRestoreResponse, ReadFileRequest, SessionInfo, SettleRequest,
    SettleResponse, ShutdownRequest, ShutdownResponse, WriteFileRequest, WriteFileResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::reaper::Reaper;
use crate::sessions::Sessions;
use crate::{disk_copy, exec, files, system};

pub struct AgentService {
    reaper: Reaper,
    sessions: Sessions,
    /// Whether this agent runs a guest (as PID 1). Outside one (`--listen-unix`, for
    /// development and the VMM contract tests) it leaves the host's clock, hostname and
    /// network alone.
    in_guest: bool,
}

impl AgentService {
    pub fn new(reaper: Reaper, in_guest: bool) -> Self {
        Self {
            reaper,
            in_guest,
            sessions: Sessions::default(),
        }
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {
            agent_version: noid::VERSION.to_string(),
            kernel_release: system::kernel_release(),
            hostname: system::hostname(),
            uptime_ms: system::uptime_ms(),
            protocol: noid::AGENT_PROTOCOL,
        }))
    }

    type ExecStream = ExecStream;

    async fn exec(
        &self,
        req: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<ExecStream>, Status> {
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(ExecRequest {
                msg: Some(exec_request::Msg::Start(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first exec message must be start",
                ))
            }
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(exec::run(self.reaper.clone(), start, input, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn post_restore(
        &self,
        req: Request<PostRestoreRequest>,
    ) -> Result<Response<PostRestoreResponse>, Status> {
        let req = req.into_inner();
        if !self.in_guest {
            eprintln!(
                "noid-agent: post-restore for {} at {} (not applied: not in a guest)",
                req.hostname,
                req.network
                    .as_ref()
                    .map_or("no network", |n| n.address.as_str())
            );
            return Ok(Response::new(PostRestoreResponse {}));
        }
        system::post_restore(&req, &self.reaper)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PostRestoreResponse {}))
    }

    async fn settle(
        &self,
        req: Request<SettleRequest>,
    ) -> Result<Response<SettleResponse>, Status> {
        let req = req.into_inner();
        let (settled, waited) = crate::settle::settle(
            Duration::from_millis(req.quiet_ms.into()),
            Duration::from_millis(req.timeout_ms.into()),
        )
        .await;
        Ok(Response::new(SettleResponse {
            settled,
            waited_ms: u32::try_from(waited.as_millis()).unwrap_or(u32::MAX),
        }))
    }

    async fn resize_console(
        &self,
        req: Request<noid::agent::v1::TtySize>,
    ) -> Result<Response<noid::agent::v1::ResizeConsoleResponse>, Status> {
        let size = req.into_inner();
        crate::console::resize(size.rows, size.cols)
            .map_err(|e| Status::internal(format!("console resize: {e}")))?;
        Ok(Response::new(noid::agent::v1::ResizeConsoleResponse {}))
    }

    async fn write_file(
        &self,
        req: Request<Streaming<WriteFileRequest>>,
    ) -> Result<Response<WriteFileResponse>, Status> {
        let (path, bytes) = files::write(req.into_inner()).await?;
        Ok(Response::new(WriteFileResponse { path, bytes }))
    }

    type ReadFileStream = Pin<Box<dyn Stream<Item = Result<FileData, Status>> + Send>>;

    async fn read_file(
        &self,
        req: Request<ReadFileRequest>,
    ) -> Result<Response<Self::ReadFileStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        files::read(req.into_inner().path, tx)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WriteFileFromDiskStream =
        Pin<Box<dyn Stream<Item = Result<DiskWriteResponse, Status>> + Send>>;

    async fn write_file_from_disk(
        &self,
        req: Request<Streaming<DiskWriteRequest>>,
    ) -> Result<Response<Self::WriteFileFromDiskStream>, Status> {
        let (tx, rx) = mpsc::channel(8);
        disk_copy::write(req.into_inner(), tx).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ReadFileToDiskStream =
        Pin<Box<dyn Stream<Item = Result<DiskReadResponse, Status>> + Send>>;

    async fn read_file_to_disk(
        &self,
        req: Request<Streaming<DiskReadRequest>>,
    ) -> Result<Response<Self::ReadFileToDiskStream>, Status> {
        let (tx, rx) = mpsc::channel(8);
        disk_copy::read(req.into_inner(), tx).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn start_session(
        &self,
        req: Request<ExecStart>,
    ) -> Result<Response<SessionInfo>, Status> {
        Ok(Response::new(
            self.sessions.start(&self.reaper, req.into_inner())?,
        ))
    }

    async fn list_sessions(
        &self,
        _: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        Ok(Response::new(ListSessionsResponse {
            sessions: self.sessions.list(),
        }))
    }

    type AttachSessionStream = Pin<Box<dyn Stream<Item = Result<AttachResponse, Status>> + Send>>;

    async fn attach_session(
        &self,
        req: Request<Streaming<AttachRequest>>,
    ) -> Result<Response<Self::AttachSessionStream>, Status> {
        Ok(Response::new(self.sessions.attach(req.into_inner()).await?))
    }

    async fn kill_session(
        &self,
        req: Request<KillSessionRequest>,
    ) -> Result<Response<SessionInfo>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.sessions.kill(r.session, r.signal)?))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        tokio::spawn(async {
            // Let the answer reach the host first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            system::power_off().await;
        });
        Ok(Response::new(ShutdownResponse {}))
    }
}
