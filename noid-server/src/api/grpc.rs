//! The gRPC service: for every RPC, authenticate, translate, call the core, map the error.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use noid::v1 as pb;
use noid::v1::noid_server::Noid;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, images, paging};
use crate::core::{CopyTarget, CoreError, CreateVm, Manager, Restore, TimeLimits, User};

pub struct GrpcApi {
    core: Arc<Manager>,
}

impl GrpcApi {
    pub fn new(core: Arc<Manager>) -> Self {
        Self { core }
    }

    fn user<T>(&self, req: &Request<T>) -> Result<User, Status> {
        Ok(super::access::caller(req.extensions().get::<User>())?)
    }
}

/// Who may call what over gRPC: everything needs a token but the health checks and
/// reflection (which tell nothing about anyone's VMs).
pub struct GrpcRules;

/// gRPC methods callable without a token.
const PUBLIC_METHODS: &[&str] = &[
    "/noid.v1.Noid/Health",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The control plane's methods, from its descriptors.
fn noid_methods() -> &'static std::collections::HashSet<String> {
    static METHODS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(noid::FILE_DESCRIPTOR_SET)
            .expect("built-in descriptors");
        set.file
            .iter()
            .flat_map(|f| &f.service)
            .filter(|s| s.name() == "Noid")
            .flat_map(|s| &s.method)
            .map(|m| m.name().to_string())
            .collect()
    })
}

/// Control-plane methods that only read (every other one is in the audit trail).
const READ_ONLY_METHODS: &[&str] = &[
    "GetServerInfo",
    "WhoAmI",
    "GetVm",
    "ListVms",
    "ListSessions",
    "StreamLogs",
    "ListCheckpoints",
    "GetCheckpoint",
    "CopyOut",
    "ListImages",
    "GetImage",
];

impl super::access::Rules for GrpcRules {
    type Body = tonic::body::BoxBody;

    fn api(&self) -> &'static str {
        "grpc"
    }

    /// The RPC's name for the control plane (`CreateVm`), the whole path for the health and
    /// reflection services, `unknown` for a path that names no method of this server.
    fn counted_as(&self, _: &tonic::codegen::http::Method, path: &str) -> String {
        if let Some(method) = path.strip_prefix("/noid.v1.Noid/") {
            if noid_methods().contains(method) {
                return method.to_string();
            }
        } else if PUBLIC_METHODS.contains(&path) {
            return path.trim_start_matches('/').to_string();
        }
        "unknown".into()
    }

    fn audited(&self, _: &tonic::codegen::http::Method, path: &str) -> Option<String> {
        let method = path.strip_prefix("/noid.v1.Noid/")?;
        (!READ_ONLY_METHODS.contains(&method) && method != "Health").then(|| method.to_string())
    }

    fn is_public(&self, path: &str) -> bool {
        PUBLIC_METHODS.contains(&path)
    }

    fn takes_websocket_token(&self, _: &str) -> bool {
        false
    }

    fn refuse(&self, error: CoreError) -> tonic::codegen::http::Response<Self::Body> {
        Status::from(error).into_http()
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn port(n: u32) -> Result<u16, Status> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Status::invalid_argument(format!("port {n} is not between 1 and 65535")))
}

fn optional(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

#[tonic::async_trait]
impl Noid for GrpcApi {
    async fn health(
        &self,
        _: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            serving: true,
            version: noid::VERSION.into(),
        }))
    }

    async fn get_server_info(
        &self,
        req: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::ServerInfo>, Status> {
        self.user(&req)?;
        let i = self.core.server_info();
        let r = req.get_ref();
        let ready = self.core.boot_snapshot_ready(
            Some(r.image.as_str()).filter(|s| !s.is_empty()),
            Some(r.cpus).filter(|c| *c > 0),
            Some(r.memory_mib).filter(|m| *m > 0),
        );
        Ok(Response::new(pb::ServerInfo {
            boot_snapshot_ready: ready,
            version: noid::VERSION.into(),
            backend: i.backend,
            image_id: i.image_id,
            kernel_release: i.kernel_release,
            default_cpus: i.default_cpus,
            default_memory_mib: i.default_memory_mib,
            max_cpus: i.max_cpus,
            max_memory_mib: i.max_memory_mib,
            min_memory_mib: i.min_memory_mib,
        }))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let user = self.user(&req)?;
        Ok(Response::new(pb::WhoAmIResponse { user: user.0 }))
    }

    async fn create_vm(
        &self,
        req: Request<pb::CreateVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let vm = self
            .core
            .create_vm(
                &user,
                CreateVm {
                    name: r.name,
                    cpus: optional(r.cpus),
                    memory_mib: optional(r.memory_mib),
                    net_policy: r
                        .network_policy
                        .map(|p| convert::parse_net_policy(&self.core, p))
                        .transpose()?,
                    request_id: (!r.request_id.is_empty()).then_some(r.request_id),
                    image: (!r.image.is_empty()).then_some(r.image),
                    disk_bytes: (r.disk_bytes > 0).then_some(r.disk_bytes),
                    retention: convert::parse_retention(r.checkpoint_retention),
                    ttl_secs: (r.ttl_secs > 0).then_some(r.ttl_secs),
                    on_expiry: convert::parse_expiry(r.on_expiry)?,
                    idle_timeout_secs: (r.idle_timeout_secs > 0).then_some(r.idle_timeout_secs),
                },
            )
            .await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn get_vm(&self, req: Request<pb::GetVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.get_vm(&user, &req.get_ref().name)?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn list_vms(
        &self,
        req: Request<pb::ListVmsRequest>,
    ) -> Result<Response<pb::ListVmsResponse>, Status> {
        let user = self.user(&req)?;
        let r = req.get_ref();
        let vms = self.core.list_vms(&user)?;
        let (vms, next_page_token) =
            paging::page(vms, |v| v.name.clone(), r.page_size, &r.page_token)?;
        Ok(Response::new(pb::ListVmsResponse {
            vms: vms.iter().map(convert::vm).collect(),
            next_page_token,
        }))
    }

    async fn delete_vm(
        &self,
        req: Request<pb::DeleteVmRequest>,
    ) -> Result<Response<pb::DeleteVmResponse>, Status> {
        let user = self.user(&req)?;
        self.core.delete_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(pb::DeleteVmResponse {}))
    }

    async fn stop_vm(&self, req: Request<pb::StopVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.stop_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn start_vm(&self, req: Request<pb::StartVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.start_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn pause_vm(&self, req: Request<pb::PauseVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.pause_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn set_checkpoint_retention(
        &self,
        req: Request<pb::SetCheckpointRetentionRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let update = convert::parse_retention(r.retention);
        let vm = self
            .core
            .set_checkpoint_retention(&user, &r.name, update)
            .await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn hibernate_vm(
        &self,
        req: Request<pb::HibernateVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.hibernate_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn wake_vm(&self, req: Request<pb::WakeVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.wake_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn set_time_limits(
        &self,
        req: Request<pb::SetTimeLimitsRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let change = TimeLimits {
            ttl_secs: r.ttl_secs,
            on_expiry: r.on_expiry.map(convert::parse_expiry).transpose()?,
            idle_timeout_secs: r.idle_timeout_secs,
        };
        let vm = self.core.set_time_limits(&user, &r.name, change).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn resume_vm(
        &self,
        req: Request<pb::ResumeVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let vm = self.core.resume_vm(&user, &req.get_ref().name).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn add_port(&self, req: Request<pb::AddPortRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let vm = self
            .core
            .add_port(&user, &r.vm, port(r.host_port)?, port(r.guest_port)?)
            .await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn remove_port(
        &self,
        req: Request<pb::RemovePortRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let vm = self
            .core
            .remove_port(&user, &r.vm, port(r.host_port)?)
            .await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn set_network_policy(
        &self,
        req: Request<pb::SetNetworkPolicyRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let policy = r
            .policy
            .ok_or_else(|| Status::invalid_argument("policy is missing"))?;
        let policy = convert::parse_net_policy(&self.core, policy)?;
        let vm = self.core.set_network_policy(&user, &r.vm, policy).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    type ExecStream = BoxStream<pb::ExecResponse>;

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let user = self.user(&req)?;
        let mut inbound = req.into_inner();
        let start = match inbound.message().await? {
            Some(pb::ExecRequest {
                msg: Some(pb::exec_request::Msg::Start(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of an Exec stream must be `start`",
                ))
            }
        };
        let (vm, spec) = convert::exec_start(start);
        let (input, fault) = super::exec_input::checked(inbound, spec.stdin);
        let events = self.core.exec(&user, &vm, spec, input).await?;
        let events = events.map(|e| e.map(convert::exec_event).map_err(Status::from));
        let fault =
            futures::stream::once(fault).filter_map(|f| futures::future::ready(f.ok().map(Err)));
        // The command's events until its exit, or the client's fault: whichever comes first
        // ends the call.
        let out = futures::stream::select(events, fault).scan(false, |done, item| {
            if *done {
                return futures::future::ready(None);
            }
            *done = matches!(
                item,
                Err(_)
                    | Ok(pb::ExecResponse {
                        msg: Some(pb::exec_response::Msg::Exit(_))
                    })
            );
            futures::future::ready(Some(item))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn start_session(
        &self,
        req: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let user = self.user(&req)?;
        let start = req
            .into_inner()
            .start
            .ok_or_else(|| Status::invalid_argument("StartSession needs `start`"))?;
        let (vm, spec) = convert::exec_start(start);
        let info = self.core.start_session(&user, &vm, spec).await?;
        Ok(Response::new(super::sessions::session(info)))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let user = self.user(&req)?;
        let list = self.core.list_sessions(&user, &req.get_ref().vm).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: list.into_iter().map(super::sessions::session).collect(),
        }))
    }

    type AttachSessionStream = BoxStream<pb::AttachSessionResponse>;

    async fn attach_session(
        &self,
        req: Request<Streaming<pb::AttachSessionRequest>>,
    ) -> Result<Response<Self::AttachSessionStream>, Status> {
        let user = self.user(&req)?;
        let events = super::sessions::attach(&self.core, &user, req.into_inner()).await?;
        Ok(Response::new(events))
    }

    async fn kill_session(
        &self,
        req: Request<pb::KillSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let info = self
            .core
            .kill_session(&user, &r.vm, r.session, r.signal)
            .await?;
        Ok(Response::new(super::sessions::session(info)))
    }

    type ConsoleStream = BoxStream<pb::ConsoleResponse>;

    async fn console(
        &self,
        req: Request<Streaming<pb::ConsoleRequest>>,
    ) -> Result<Response<Self::ConsoleStream>, Status> {
        let user = self.user(&req)?;
        let mut inbound = req.into_inner();
        let vm = match inbound.message().await? {
            Some(pb::ConsoleRequest {
                msg: Some(pb::console_request::Msg::Vm(vm)),
            }) => vm,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a Console stream must name the VM",
                ))
            }
        };
        let (recent, attachment, busy) = self.core.console(&user, &vm).await?;
        let input = attachment.input;
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            // The VM is busy while the client is attached.
            let _busy = busy;
            while let Ok(Some(msg)) = inbound.message().await {
                match msg.msg {
                    Some(pb::console_request::Msg::Input(data))
                        if input.send(data.clone()).await.is_err() =>
                    {
                        break;
                    }
                    Some(pb::console_request::Msg::Resize(s)) => {
                        let size = crate::core::TtySize {
                            rows: s.rows,
                            cols: s.cols,
                        };
                        if let Err(e) = core.resize_console(&user, &vm, size).await {
                            tracing::debug!("console resize of {vm}: {e}");
                        }
                    }
                    _ => {}
                }
            }
        });
        let live = tokio_stream::wrappers::BroadcastStream::new(attachment.output)
            .filter_map(|r| futures::future::ready(r.ok().map(|c| c.data)));
        let out = futures::stream::once(futures::future::ready(recent))
            .chain(live)
            .map(|output| Ok(pb::ConsoleResponse { output }));
        Ok(Response::new(Box::pin(out)))
    }

    type StreamLogsStream = BoxStream<pb::LogChunk>;

    async fn stream_logs(
        &self,
        req: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let query = crate::core::LogsQuery {
            tail: r.tail.map(|t| t as usize),
            since: r.since.as_ref().map(noid::time::to_system),
            follow: r.follow,
        };
        let logs = self.core.logs(&user, &r.vm, &query).await?;
        let out = logs.pieces(r.timestamps).map(|(at, data)| {
            Ok(pb::LogChunk {
                data,
                time: at.map(noid::time::from_system),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn create_checkpoint(
        &self,
        req: Request<pb::CreateCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let c = self.core.create_checkpoint(&user, &r.vm, &r.label).await?;
        Ok(Response::new(convert::checkpoint(&c)))
    }

    async fn list_checkpoints(
        &self,
        req: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let user = self.user(&req)?;
        let vm = &req.get_ref().vm;
        let list = self
            .core
            .list_checkpoints(&user, (!vm.is_empty()).then_some(vm.as_str()))?;
        let r = req.get_ref();
        let (list, next_page_token) = paging::page(
            list,
            |c| paging::descending(c.age_order().0.max(0) as u64, &c.id),
            r.page_size,
            &r.page_token,
        )?;
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: list.iter().map(convert::checkpoint).collect(),
            next_page_token,
        }))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let user = self.user(&req)?;
        let c = self.core.get_checkpoint(&user, &req.get_ref().id)?;
        Ok(Response::new(convert::checkpoint(&c)))
    }

    async fn delete_checkpoint(
        &self,
        req: Request<pb::DeleteCheckpointRequest>,
    ) -> Result<Response<pb::DeleteCheckpointResponse>, Status> {
        let user = self.user(&req)?;
        self.core
            .delete_checkpoint(&user, &req.get_ref().id)
            .await?;
        Ok(Response::new(pb::DeleteCheckpointResponse {}))
    }

    async fn restore(&self, req: Request<pb::RestoreRequest>) -> Result<Response<pb::Vm>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let restore = Restore {
            new_name: (!r.new_name.is_empty()).then_some(r.new_name),
            net_policy: r
                .network_policy
                .map(|p| convert::parse_net_policy(&self.core, p))
                .transpose()?,
            request_id: (!r.request_id.is_empty()).then_some(r.request_id),
            checkpoint_id: r.checkpoint_id,
        };
        let vm = self.core.restore(&user, restore).await?;
        Ok(Response::new(convert::vm(&vm)))
    }

    async fn fork_many(
        &self,
        req: Request<pb::ForkManyRequest>,
    ) -> Result<Response<pb::ForkManyResponse>, Status> {
        let user = self.user(&req)?;
        let r = req.into_inner();
        let policy = r
            .network_policy
            .map(|p| convert::parse_net_policy(&self.core, p))
            .transpose()?;
        let results = self
            .core
            .fork_many(&user, &r.checkpoint_id, &r.prefix, r.count, policy)
            .await?;
        let results = results
            .into_iter()
            .map(|(name, result)| match result {
                Ok(vm) => pb::ForkResult {
                    name,
                    vm: Some(convert::vm(&vm)),
                    ..Default::default()
                },
                Err(e) => {
                    let status = Status::from(e);
                    pb::ForkResult {
                        name,
                        vm: None,
                        error_code: crate::metrics::grpc_code_name(status.code() as i32).into(),
                        error: status.message().to_string(),
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::ForkManyResponse { results }))
    }

    async fn copy_in(
        &self,
        req: Request<Streaming<pb::CopyInRequest>>,
    ) -> Result<Response<pb::CopyInResponse>, Status> {
        let user = self.user(&req)?;
        let mut inbound = req.into_inner();
        let header = match inbound.message().await? {
            Some(pb::CopyInRequest {
                msg: Some(pb::copy_in_request::Msg::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a CopyIn stream must be `header`",
                ))
            }
        };
        // Only a stream that ends with `end` is a complete upload; anything else abandons it.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let item = match inbound.message().await {
                    Ok(Some(pb::CopyInRequest {
                        msg: Some(pb::copy_in_request::Msg::Data(d)),
                    })) => Ok(d),
                    Ok(Some(pb::CopyInRequest {
                        msg: Some(pb::copy_in_request::Msg::End(true)),
                    })) => return,
                    Ok(Some(_)) => Err(CoreError::InvalidArgument(
                        "a CopyIn stream is one header, data, then end".into(),
                    )),
                    Ok(None) => Err(CoreError::Unavailable(
                        "the upload stopped before its end message; nothing was written".into(),
                    )),
                    Err(e) => Err(CoreError::Unavailable(format!(
                        "the upload broke off ({}); nothing was written",
                        e.message()
                    ))),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        let data = tokio_stream::wrappers::ReceiverStream::new(rx);
        let target = CopyTarget {
            path: header.path,
            mode: header.mode,
            source_name: header.source_name,
        };
        let (path, bytes) = self.core.copy_in(&user, &header.vm, target, data).await?;
        Ok(Response::new(pb::CopyInResponse {
            bytes_written: bytes,
            path,
        }))
    }

    type CopyOutStream = BoxStream<pb::FileChunk>;

    async fn copy_out(
        &self,
        req: Request<pb::CopyOutRequest>,
    ) -> Result<Response<Self::CopyOutStream>, Status> {
        let user = self.user(&req)?;
        let r = req.get_ref();
        let chunks = self.core.copy_out(&user, &r.vm, &r.path).await?;
        let out = chunks.map(|c| c.map(|data| pb::FileChunk { data }).map_err(Status::from));
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_images(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let user = self.user(&req)?;
        let r = req.get_ref();
        let images = self.core.list_images(&user)?;
        let (images, next_page_token) =
            paging::page(images, |i| i.name.clone(), r.page_size, &r.page_token)?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.iter().map(images::image).collect(),
            next_page_token,
        }))
    }

    async fn get_image(
        &self,
        req: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::Image>, Status> {
        let user = self.user(&req)?;
        let image = self.core.get_image(&user, &req.get_ref().name)?;
        Ok(Response::new(images::image(&image)))
    }

    async fn delete_image(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        let user = self.user(&req)?;
        self.core.delete_image(&user, &req.get_ref().name)?;
        Ok(Response::new(pb::DeleteImageResponse {}))
    }

    type ImportImageStream = images::ProgressStream;

    async fn import_image(
        &self,
        req: Request<Streaming<pb::ImportImageRequest>>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        let user = self.user(&req)?;
        let stream = images::import(Arc::clone(&self.core), user, req.into_inner()).await?;
        Ok(Response::new(stream))
    }

    type BuildDockerfileStream = images::ProgressStream;

    async fn build_dockerfile(
        &self,
        req: Request<Streaming<pb::BuildDockerfileRequest>>,
    ) -> Result<Response<Self::BuildDockerfileStream>, Status> {
        let user = self.user(&req)?;
        let stream =
            images::build_dockerfile(Arc::clone(&self.core), user, req.into_inner()).await?;
        Ok(Response::new(stream))
    }

    type BuildImageStream = images::ProgressStream;

    async fn build_image(
        &self,
        req: Request<pb::BuildImageRequest>,
    ) -> Result<Response<Self::BuildImageStream>, Status> {
        let user = self.user(&req)?;
        let stream = images::build(Arc::clone(&self.core), user, req.into_inner());
        Ok(Response::new(stream))
    }
}
