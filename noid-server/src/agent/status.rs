//! The agent's gRPC statuses as the agent port's errors, and calls bounded in time, for
//! every call.

use std::time::Duration;

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

/// `call`, unless the agent does not answer within `timeout`.
pub async fn answered<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, AgentError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(from_status),
        Err(_) => Err(AgentError::Unreachable(format!(
            "the guest agent did not answer within {}s (is the VM paused, frozen or short of \
             CPU?)",
            timeout.as_secs_f32()
        ))),
    }
}
