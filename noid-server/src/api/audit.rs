//! The audit trail of both APIs, and how a response ended (for it and the request counts): one line for every authentication failure and for every call
//! that changes state (who, what, from where, the result, how long it took), under the log
//! target `noid::audit` with the fields `owner`, `operation`, `peer`, `result`, `duration_ms`.

use std::time::Duration;

use tonic::codegen::http;
use tonic::transport::server::TcpConnectInfo;

/// Where a request came from, as far as the listener knows.
pub fn peer<B>(req: &http::Request<B>) -> String {
    req.extensions()
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .map(|addr| addr.to_string())
        .unwrap_or_else(|| "-".into())
}

/// A request whose credentials were missing or wrong.
pub fn refused(operation: &str, peer: &str, why: &dyn std::fmt::Display) {
    tracing::warn!(
        target: "noid::audit",
        owner = "-",
        operation,
        peer,
        result = "UNAUTHENTICATED",
        "audit: authentication failed from {peer} for {operation}: {why}"
    );
}

/// A state-changing call and how it ended (for a stream: how it began).
pub fn call<B>(owner: &str, operation: &str, peer: &str, resp: &http::Response<B>, took: Duration) {
    let result = result(resp);
    let duration_ms = took.as_millis() as u64;
    tracing::info!(
        target: "noid::audit",
        owner,
        operation,
        peer,
        result,
        duration_ms,
        "audit: {owner} {operation}: {result} ({duration_ms} ms, from {peer})"
    );
}

/// A response's outcome as a gRPC code name: the code it carries in its headers (errors of
/// unary calls, refused streams, the gateway's errors), else the one its HTTP status stands
/// for (the router's own refusals). A stream that fails after its first message reports in
/// trailers, which this does not see: it counts as begun well.
pub fn result<B>(resp: &http::Response<B>) -> &'static str {
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
    if let Some(code) = code {
        return crate::metrics::grpc_code_name(code);
    }
    let code = super::status::code_of_http(resp.status().as_u16());
    crate::metrics::grpc_code_name(code as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_from_the_grpc_code_or_the_http_status() {
        let ok = http::Response::builder().status(200).body(()).unwrap();
        assert_eq!(result(&ok), "OK");
        let refused = http::Response::builder()
            .status(200)
            .header("grpc-status", "5")
            .body(())
            .unwrap();
        assert_eq!(result(&refused), "NOT_FOUND");
        let upgrade = http::Response::builder().status(101).body(()).unwrap();
        assert_eq!(result(&upgrade), "OK");
        let missing = http::Response::builder().status(404).body(()).unwrap();
        assert_eq!(result(&missing), "NOT_FOUND");
        let unsupported = http::Response::builder().status(415).body(()).unwrap();
        assert_eq!(result(&unsupported), "INVALID_ARGUMENT");
    }
}
