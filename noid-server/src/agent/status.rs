//! The agent's gRPC statuses as the agent port's errors, for every call.

use crate::core::ports::agent::{AgentError, Rejection};

/// The agent's gRPC status as the port's error: transport failures (Unavailable, Unknown,
/// Cancelled without an answer from the agent itself) are `Unreachable`.
pub fn from_status(s: tonic::Status) -> AgentError {
    use tonic::Code;
    let kind = match s.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled => {
            return AgentError::Unreachable(format!("guest agent unreachable: {}", s.message()))
        }
        Code::InvalidArgument => Rejection::InvalidArgument,
        Code::NotFound => Rejection::NotFound,
        Code::PermissionDenied | Code::FailedPrecondition => Rejection::FailedPrecondition,
        Code::ResourceExhausted => Rejection::ResourceExhausted,
        Code::DataLoss => Rejection::Unavailable,
        _ => Rejection::Other,
    };
    AgentError::Rejected {
        kind,
        message: s.message().to_string(),
    }
}
