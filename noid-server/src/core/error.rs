//! The core's error type. Every failure a client can see is one of these kinds; the API
//! adapters map each kind to exactly one gRPC status (and HTTP code) in `api::status`.

use thiserror::Error;

use super::ports::vmm::VmmError;
use crate::auth::AuthError;
use crate::core::ports::store::StoreError;
use crate::images::ImageError;

/// What a NOT_FOUND or ALREADY_EXISTS is about, so that clients can tell a missing VM from a
/// missing checkpoint without reading the message (the reason of the status's ErrorInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thing {
    Vm,
    Checkpoint,
    Image,
    User,
    /// A published host port.
    Port,
    /// A file or exec session inside the guest.
    InGuest,
    Other,
}

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{1}")]
    NotFound(Thing, String),
    #[error("{1}")]
    AlreadyExists(Thing, String),
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

impl CoreError {
    /// The machine-readable reason (`google.rpc.ErrorInfo.reason`): `VM_NOT_FOUND`,
    /// `CHECKPOINT_NOT_FOUND`, `PORT_IN_USE`, ...; the gRPC code's name where nothing more
    /// specific is known.
    pub fn reason(&self) -> &'static str {
        use Thing::*;
        match self {
            CoreError::NotFound(thing, _) => match thing {
                Vm => "VM_NOT_FOUND",
                Checkpoint => "CHECKPOINT_NOT_FOUND",
                Image => "IMAGE_NOT_FOUND",
                User => "USER_NOT_FOUND",
                Port => "PORT_NOT_PUBLISHED",
                InGuest => "NOT_FOUND_IN_GUEST",
                Other => "NOT_FOUND",
            },
            CoreError::AlreadyExists(thing, _) => match thing {
                Vm => "VM_ALREADY_EXISTS",
                Checkpoint => "CHECKPOINT_ALREADY_EXISTS",
                Image => "IMAGE_ALREADY_EXISTS",
                User => "USER_ALREADY_EXISTS",
                Port => "PORT_IN_USE",
                InGuest | Other => "ALREADY_EXISTS",
            },
            CoreError::InvalidArgument(_) => "INVALID_ARGUMENT",
            CoreError::FailedPrecondition(_) => "FAILED_PRECONDITION",
            CoreError::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            CoreError::Unavailable(_) => "UNAVAILABLE",
            CoreError::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            CoreError::Unauthenticated(_) => "UNAUTHENTICATED",
            CoreError::Unimplemented(_) => "UNIMPLEMENTED",
            CoreError::Internal(_) => "INTERNAL",
        }
    }
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
                CoreError::AlreadyExists(Thing::Other, format!("{what} already exists"))
            }
            other => CoreError::Internal(other.to_string()),
        }
    }
}

impl From<ImageError> for CoreError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::NotFound(_) => CoreError::NotFound(Thing::Image, e.to_string()),
            ImageError::AlreadyExists(_) => CoreError::AlreadyExists(Thing::Image, e.to_string()),
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
            AuthError::UserExists(_) => CoreError::AlreadyExists(Thing::User, e.to_string()),
            AuthError::NoSuchUser(_) => CoreError::NotFound(Thing::User, e.to_string()),
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
