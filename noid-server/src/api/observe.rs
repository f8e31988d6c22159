//! One count of failed calls by gRPC code for both APIs: a layer that reads the `grpc-status`
//! header of every response. gRPC sends its errors of unary calls and of refused streams that
//! way (trailers-only responses); the gateway's error responses carry the header too. (A
//! stream that fails after its first message reports in trailers, which this does not see.)

use std::sync::Arc;

use tonic::codegen::http;
use tower::util::MapResponseLayer;

use crate::core::Manager;

/// The layer, counting into `core`'s metrics.
pub fn count_errors<B>(
    core: Arc<Manager>,
) -> MapResponseLayer<impl Fn(http::Response<B>) -> http::Response<B> + Clone> {
    MapResponseLayer::new(move |resp: http::Response<B>| {
        let code = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
            .filter(|c| *c != 0);
        if let Some(code) = code {
            core.metrics.error(crate::metrics::grpc_code_name(code));
        }
        resp
    })
}
