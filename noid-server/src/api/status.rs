//! The one mapping from core errors to gRPC status codes, and from those to HTTP codes for
//! the REST gateway.
//! Messages are the errors' Display text, never Debug output.

use crate::core::CoreError;

pub fn grpc_code(e: &CoreError) -> tonic::Code {
    use tonic::Code;
    match e {
        CoreError::InvalidArgument(_) => Code::InvalidArgument,
        CoreError::NotFound(..) => Code::NotFound,
        CoreError::AlreadyExists(..) => Code::AlreadyExists,
        CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
        CoreError::ResourceExhausted(_) => Code::ResourceExhausted,
        CoreError::Unavailable(_) => Code::Unavailable,
        CoreError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        CoreError::Unauthenticated(_) => Code::Unauthenticated,
        CoreError::Unimplemented(_) => Code::Unimplemented,
        CoreError::Internal(_) => Code::Internal,
    }
}

/// The HTTP status of a gRPC code, as grpc-gateway maps them.
pub fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        InvalidArgument | OutOfRange => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        FailedPrecondition => 412,
        ResourceExhausted => 429,
        Cancelled => 499,
        Unimplemented => 501,
        Unavailable => 503,
        DeadlineExceeded => 504,
        Unknown | Internal | DataLoss => 500,
    }
}

/// The gRPC code an HTTP error status stands for, for responses that carry no code of their
/// own (the router's and the framework's refusals).
pub fn code_of_http(status: u16) -> tonic::Code {
    use tonic::Code::*;
    match status {
        100..=399 => Ok,
        401 => Unauthenticated,
        403 => PermissionDenied,
        404 => NotFound,
        405 | 501 => Unimplemented,
        409 => AlreadyExists,
        412 => FailedPrecondition,
        413 | 429 => ResourceExhausted,
        499 => Cancelled,
        400..=499 => InvalidArgument,
        503 => Unavailable,
        504 => DeadlineExceeded,
        _ => Internal,
    }
}

/// The `google.rpc.ErrorInfo` domain of noid's errors.
pub const ERROR_DOMAIN: &str = "noid.dev";

/// The status of `e`, with an `ErrorInfo` detail carrying its reason (`VM_NOT_FOUND`, ...),
/// so that clients can tell kinds of error apart without reading messages.
impl From<CoreError> for tonic::Status {
    fn from(e: CoreError) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let details = ErrorDetails::with_error_info(
            e.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        tonic::Status::with_error_details(grpc_code(&e), e.to_string(), details)
    }
}

/// The reason a status carries in its `ErrorInfo`, if any.
pub fn reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}
