//! Fuzz targets for the gateway's request bodies: whatever bytes a client sends to whatever
//! route, making the request message ends in a message or a clear INVALID_ARGUMENT, never a
//! panic. Bolero targets: `cargo test` runs each for about a second; see the README for longer
//! runs.

use std::collections::HashMap;
use std::time::Duration;

use noid::v1 as pb;
use serde_json::json;

use super::exec::{exec_timeout, ExecBody};
use super::table::{routes, Route, RouteKind};
use super::unary::request_message;

/// The message of `route` made from `body`, typed by the route's RPC.
fn bind(route: &Route, params: &HashMap<String, String>, body: &[u8]) -> Option<tonic::Code> {
    fn code<T>(r: Result<T, super::ApiError>) -> Option<tonic::Code> {
        r.err().map(|e| e.0.code())
    }
    Some(match route.rpc {
        "CreateVm" => code(request_message::<pb::CreateVmRequest>(
            route,
            params,
            &[],
            body,
        ))?,
        "SetNetworkPolicy" => code(request_message::<pb::SetNetworkPolicyRequest>(
            route,
            params,
            &[],
            body,
        ))?,
        "AddPort" => code(request_message::<pb::AddPortRequest>(
            route,
            params,
            &[],
            body,
        ))?,
        "RemovePort" => code(request_message::<pb::RemovePortRequest>(
            route,
            params,
            &[],
            body,
        ))?,
        "CreateCheckpoint" => code(request_message::<pb::CreateCheckpointRequest>(
            route,
            params,
            &[],
            body,
        ))?,
        "Restore" => code(request_message::<pb::RestoreRequest>(
            route,
            params,
            &[],
            body,
        ))?,
        _ => code(request_message::<pb::GetVmRequest>(
            route,
            params,
            &[],
            body,
        ))?,
    })
}

/// Everything the gateway does with a body before the gRPC service sees it.
fn check_body(bytes: &[u8]) {
    let params = HashMap::from([
        ("name".to_string(), "web".to_string()),
        ("id".to_string(), "0123456789ab".to_string()),
        ("host_port".to_string(), "20001".to_string()),
    ]);
    for route in routes().iter().filter(|r| r.kind == RouteKind::Unary) {
        if let Some(code) = bind(route, &params, bytes) {
            assert_eq!(code, tonic::Code::InvalidArgument, "{}", route.path);
        }
    }
    if let Ok(b) = serde_json::from_slice::<ExecBody>(bytes) {
        if let Ok(Some(t)) = exec_timeout(b.timeout_secs) {
            assert!(t >= Duration::from_millis(1) && t < Duration::from_secs(4_000_000));
        }
    }
}

#[test]
fn fuzz_rest_body_bytes() {
    bolero::check!().for_each(check_body);
}

/// Bodies that are JSON objects with the right keys and values of any type, so that most
/// inputs get past the JSON parser to the checks behind it.
#[test]
fn fuzz_rest_body_fields() {
    bolero::check!()
        .with_type::<(String, Option<u32>, Vec<String>, f64, Option<bool>, u8)>()
        .for_each(|(text, number, list, secs, flag, egress)| {
            let egress = ["EGRESS_ALLOW", "EGRESS_DENY", "", "allow"][usize::from(*egress % 4)];
            let bodies = [
                json!({"name": text, "cpus": number, "memory_mib": number, "request_id": text}),
                json!({"name": text, "network_policy": {"egress": egress, "allow": list, "deny": list, "isolated": flag}}),
                json!({"command": list, "cwd": text, "stdin": text, "timeout_secs": secs}),
                json!({"command": list, "env": {text.clone(): text}, "timeout_secs": number}),
                json!({"label": text}),
                json!({"label": number}),
                json!({"vm": text, "host_port": number, "guest_port": text}),
                json!({"checkpoint_id": text, "new_name": text, "network_policy": {"allow": list}}),
                json!({"egress": egress, "allow": list, "deny": list, "isolated": flag, "extra": 1}),
            ];
            for b in bodies {
                check_body(&serde_json::to_vec(&b).unwrap());
            }
        });
}

#[test]
fn fuzz_exec_timeout() {
    bolero::check!().with_type::<f64>().for_each(|s| {
        if let Ok(Some(t)) = exec_timeout(Some(*s)) {
            assert!(t >= Duration::from_millis(1));
        }
    });
}
