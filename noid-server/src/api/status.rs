//! The one mapping from core errors to gRPC status codes (and, for the REST shim, HTTP codes).
//! Messages are the errors' Display text, never Debug output.

use crate::core::CoreError;

pub fn grpc_code(e: &CoreError) -> tonic::Code {
    use tonic::Code;
    match e {
        CoreError::InvalidArgument(_) => Code::InvalidArgument,
        CoreError::NotFound(_) => Code::NotFound,
        CoreError::AlreadyExists(_) => Code::AlreadyExists,
        CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
        CoreError::ResourceExhausted(_) => Code::ResourceExhausted,
        CoreError::Unavailable(_) => Code::Unavailable,
        CoreError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        CoreError::Unauthenticated(_) => Code::Unauthenticated,
        CoreError::Unimplemented(_) => Code::Unimplemented,
        CoreError::Internal(_) => Code::Internal,
    }
}

pub fn http_status(e: &CoreError) -> u16 {
    match e {
        CoreError::InvalidArgument(_) => 400,
        CoreError::Unauthenticated(_) => 401,
        CoreError::NotFound(_) => 404,
        CoreError::AlreadyExists(_) => 409,
        CoreError::FailedPrecondition(_) => 412,
        CoreError::ResourceExhausted(_) => 429,
        CoreError::Unimplemented(_) => 501,
        CoreError::Unavailable(_) => 503,
        CoreError::DeadlineExceeded(_) => 504,
        CoreError::Internal(_) => 500,
    }
}

impl From<CoreError> for tonic::Status {
    fn from(e: CoreError) -> Self {
        tonic::Status::new(grpc_code(&e), e.to_string())
    }
}
