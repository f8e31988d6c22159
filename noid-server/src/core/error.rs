//! The core's error type. Every failure a client can see is one of these kinds; the API
//! adapters map each kind to exactly one gRPC status (and HTTP code) in `api::status`.

use thiserror::Error;

use super::ports::vmm::VmmError;
use crate::auth::AuthError;
use crate::core::ports::store::StoreError;
use crate::images::ImageError;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl From<noid::names::NameError> for CoreError {
    fn from(e: noid::names::NameError) -> Self {
        CoreError::InvalidArgument(e.to_string())
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                CoreError::AlreadyExists(format!("{what} already exists"))
            }
            other => CoreError::Internal(other.to_string()),
        }
    }
}

impl From<ImageError> for CoreError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::NotFound(_) => CoreError::NotFound(e.to_string()),
            ImageError::AlreadyExists(_) => CoreError::AlreadyExists(e.to_string()),
            ImageError::InvalidName(n) => n.into(),
            ImageError::Invalid(m) => CoreError::InvalidArgument(m),
            ImageError::Refused(m) => CoreError::FailedPrecondition(m),
            ImageError::Io { .. } => CoreError::Internal(e.to_string()),
        }
    }
}

impl From<AuthError> for CoreError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MissingToken | AuthError::InvalidToken => {
                CoreError::Unauthenticated(e.to_string())
            }
            AuthError::Name(n) => n.into(),
            AuthError::UserExists(_) => CoreError::AlreadyExists(e.to_string()),
            AuthError::NoSuchUser(_) => CoreError::NotFound(e.to_string()),
            AuthError::Store(s) => s.into(),
        }
    }
}

impl From<VmmError> for CoreError {
    fn from(e: VmmError) -> Self {
        match &e {
            VmmError::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                CoreError::ResourceExhausted(format!("no space left on the data directory: {e}"))
            }
            _ => CoreError::Internal(e.to_string()),
        }
    }
}

/// I/O on the host's data directory: a full disk is RESOURCE_EXHAUSTED, the rest internal.
pub fn io_error(context: &str, e: std::io::Error) -> CoreError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        CoreError::ResourceExhausted(format!("{context}: no space left on the data directory"))
    } else {
        CoreError::Internal(format!("{context}: {e}"))
    }
}
