//! The unary routes: each calls its RPC of the gRPC service with the request message made
//! from the path and the body as its route in `table` says, and answers with the RPC's
//! answer in the proto's JSON mapping; plus `POST /vms/:name/restore`, which checks the
//! checkpoint against the VM the path names first.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use noid::v1 as pb;
use noid::v1::noid_server::Noid;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::table::{routes, Body, Route};
use super::{caller, ApiError, Gateway};
use crate::api::grpc::GrpcApi;
use crate::core::User;

type Call<Req, Resp> = fn(
    &GrpcApi,
    tonic::Request<Req>,
) -> BoxFuture<'_, Result<tonic::Response<Resp>, tonic::Status>>;

/// The handler of a unary route: its RPC's typed call.
pub(super) fn unary_handler(route: &'static Route) -> MethodRouter<Gateway> {
    match route.rpc {
        "Health" => bind::<pb::HealthRequest, _>(route, |a, r| a.health(r)),
        "GetServerInfo" => bind::<pb::GetServerInfoRequest, _>(route, |a, r| a.get_server_info(r)),
        "WhoAmI" => bind::<pb::WhoAmIRequest, _>(route, |a, r| a.who_am_i(r)),
        "ListVms" => bind::<pb::ListVmsRequest, _>(route, |a, r| a.list_vms(r)),
        "CreateVm" => bind::<pb::CreateVmRequest, _>(route, |a, r| a.create_vm(r)),
        "GetVm" => bind::<pb::GetVmRequest, _>(route, |a, r| a.get_vm(r)),
        "DeleteVm" => bind::<pb::DeleteVmRequest, _>(route, |a, r| a.delete_vm(r)),
        "ForkMany" => bind::<pb::ForkManyRequest, _>(route, |a, r| a.fork_many(r)),
        "SetCheckpointRetention" => bind::<pb::SetCheckpointRetentionRequest, _>(route, |a, r| {
            a.set_checkpoint_retention(r)
        }),
        "HibernateVm" => bind::<pb::HibernateVmRequest, _>(route, |a, r| a.hibernate_vm(r)),
        "WakeVm" => bind::<pb::WakeVmRequest, _>(route, |a, r| a.wake_vm(r)),
        "StopVm" => bind::<pb::StopVmRequest, _>(route, |a, r| a.stop_vm(r)),
        "StartVm" => bind::<pb::StartVmRequest, _>(route, |a, r| a.start_vm(r)),
        "SetTimeLimits" => bind::<pb::SetTimeLimitsRequest, _>(route, |a, r| a.set_time_limits(r)),
        "StartSession" => bind::<pb::StartSessionRequest, _>(route, |a, r| a.start_session(r)),
        "ListSessions" => bind::<pb::ListSessionsRequest, _>(route, |a, r| a.list_sessions(r)),
        "KillSession" => bind::<pb::KillSessionRequest, _>(route, |a, r| a.kill_session(r)),
        "PauseVm" => bind::<pb::PauseVmRequest, _>(route, |a, r| a.pause_vm(r)),
        "ResumeVm" => bind::<pb::ResumeVmRequest, _>(route, |a, r| a.resume_vm(r)),
        "SetNetworkPolicy" => {
            bind::<pb::SetNetworkPolicyRequest, _>(route, |a, r| a.set_network_policy(r))
        }
        "AddPort" => bind::<pb::AddPortRequest, _>(route, |a, r| a.add_port(r)),
        "RemovePort" => bind::<pb::RemovePortRequest, _>(route, |a, r| a.remove_port(r)),
        "ListCheckpoints" => {
            bind::<pb::ListCheckpointsRequest, _>(route, |a, r| a.list_checkpoints(r))
        }
        "CreateCheckpoint" => {
            bind::<pb::CreateCheckpointRequest, _>(route, |a, r| a.create_checkpoint(r))
        }
        "GetCheckpoint" => bind::<pb::GetCheckpointRequest, _>(route, |a, r| a.get_checkpoint(r)),
        "DeleteCheckpoint" => {
            bind::<pb::DeleteCheckpointRequest, _>(route, |a, r| a.delete_checkpoint(r))
        }
        "Restore" => bind::<pb::RestoreRequest, _>(route, |a, r| a.restore(r)),
        "ListImages" => bind::<pb::ListImagesRequest, _>(route, |a, r| a.list_images(r)),
        "GetImage" => bind::<pb::GetImageRequest, _>(route, |a, r| a.get_image(r)),
        "DeleteImage" => bind::<pb::DeleteImageRequest, _>(route, |a, r| a.delete_image(r)),
        other => unreachable!("route {} names no unary RPC {other:?}", route.path),
    }
}

fn bind<Req, Resp>(route: &'static Route, call: Call<Req, Resp>) -> MethodRouter<Gateway>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    on(
        route.verb.filter(),
        move |State(gw): State<Gateway>,
              user: Option<Extension<User>>,
              params: Option<Path<HashMap<String, String>>>,
              query: Option<Query<Vec<(String, String)>>>,
              body: Bytes| async move {
            let params = params.map(|p| p.0).unwrap_or_default();
            let query = query.map(|q| q.0).unwrap_or_default();
            let message: Req = request_message(route, &params, &query, &body)?;
            answer(route, call_rpc(&gw, user, message, call).await?)
        },
    )
}

/// Calls the RPC as the caller, as the gRPC service would be called.
async fn call_rpc<Req, Resp>(
    gw: &Gateway,
    user: Option<Extension<User>>,
    message: Req,
    call: Call<Req, Resp>,
) -> Result<Resp, ApiError> {
    let mut request = tonic::Request::new(message);
    if let Ok(user) = caller(user) {
        request.extensions_mut().insert(user);
    }
    Ok(call(&gw.api, request).await?.into_inner())
}

/// The route's success status with the answer in the proto's JSON mapping.
fn answer<Resp: Serialize>(route: &Route, resp: Resp) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(route.ok).expect("valid status");
    if status == StatusCode::NO_CONTENT {
        return Ok(status.into_response());
    }
    let json = serde_json::to_value(&resp)
        .map_err(|e| ApiError(tonic::Status::internal(format!("encoding the answer: {e}"))))?;
    Ok((status, Json(json)).into_response())
}

/// The request message of a unary route: the body as the route says, the path parameters in
/// their fields (a body that sets one of those to something else is refused).
pub(super) fn request_message<Req: DeserializeOwned>(
    route: &Route,
    params: &HashMap<String, String>,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Req, ApiError> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let mut fields = match route.body {
        Body::None if empty => Map::new(),
        Body::None => return Err(ApiError::invalid(format!("{} takes no body", route.path))),
        Body::Message if empty => Map::new(),
        Body::Message => match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ApiError::invalid("the body must be a JSON object")),
            Err(e) => return Err(ApiError::invalid(format!("the body is not JSON: {e}"))),
        },
        Body::Field(field) => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
            Map::from_iter([(field.to_string(), value)])
        }
    };
    for (param, field) in route.params {
        let value = params.get(*param).cloned().unwrap_or_default();
        match fields.get(*field) {
            Some(given) if given != &Value::String(value.clone()) => {
                return Err(ApiError::invalid(format!(
                    "{field} is given by the path; the body must not set it otherwise"
                )))
            }
            _ => {
                fields.insert(field.to_string(), Value::String(value));
            }
        }
    }
    // Query parameters set fields too (`GET /vms?page_size=10`), as in grpc-gateway; they
    // may not repeat or contradict what the path or the body says.
    for (field, value) in query {
        if fields.contains_key(field) {
            return Err(ApiError::invalid(format!(
                "{field} is given twice (in the query and in the path or body)"
            )));
        }
        fields.insert(field.clone(), Value::String(value.clone()));
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| {
        ApiError::invalid(format!(
            "the request does not fit {}: {}",
            route.rpc,
            noid::names::shorten(&e.to_string())
        ))
    })
}

/// `POST /vms/:name/restore`: a RestoreRequest whose checkpoint must be one of VM `name`.
pub(super) fn restore_handler() -> MethodRouter<Gateway> {
    on(
        MethodFilter::POST,
        |State(gw): State<Gateway>,
         user: Option<Extension<User>>,
         Path(name): Path<String>,
         body: Bytes| async move {
            let route = routes()
                .iter()
                .find(|r| r.rpc == "Restore")
                .expect("the Restore route");
            let message: pb::RestoreRequest = request_message(
                &Route {
                    params: &[],
                    ..*route
                },
                &HashMap::new(),
                &[],
                &body,
            )?;
            let user_now = caller(user.clone())?;
            let ckpt = gw.core.get_checkpoint(&user_now, &message.checkpoint_id)?;
            if ckpt.vm_name != name {
                return Err(ApiError::invalid(format!(
                    "checkpoint {} is of VM {:?}, not {name:?}",
                    ckpt.id, ckpt.vm_name
                )));
            }
            let vm = call_rpc(&gw, user, message, |a, r| a.restore(r)).await?;
            answer(route, vm)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_fill_their_fields_and_the_body_the_rest() {
        let route = routes()
            .iter()
            .find(|r| r.rpc == "CreateCheckpoint")
            .unwrap();
        let params = HashMap::from([("name".to_string(), "web".to_string())]);
        let m: pb::CreateCheckpointRequest =
            request_message(route, &params, &[], br#"{"label": "x"}"#)
                .ok()
                .unwrap();
        assert_eq!((m.vm.as_str(), m.label.as_str()), ("web", "x"));
        let m: pb::CreateCheckpointRequest =
            request_message(route, &params, &[], b"").ok().unwrap();
        assert_eq!((m.vm.as_str(), m.label.as_str()), ("web", ""));
        for bad in [
            &br#"{"vm": "other"}"#[..],
            b"{nope",
            b"[1]",
            br#"{"lable": "x"}"#,
        ] {
            assert!(
                request_message::<pb::CreateCheckpointRequest>(route, &params, &[], bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_unary_rpc_of_the_service_has_a_route() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(noid::FILE_DESCRIPTOR_SET).unwrap();
        let service = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "Noid")
            .unwrap();
        for m in &service.method {
            let streaming = m.client_streaming() || m.server_streaming();
            let routed = routes().iter().any(|r| r.rpc == m.name());
            assert!(streaming || routed, "RPC {} has no REST route", m.name());
        }
    }
}
