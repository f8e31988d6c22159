//! API adapters over the core: each translates requests to core calls and core results back,
//! and does no work of its own. `status` maps core errors to wire codes in one place.

pub mod access;
pub mod audit;
pub mod convert;
mod exec_input;
pub mod grpc;
pub mod http;
pub mod images;
pub mod incoming;
pub mod openapi;
pub mod paging;
pub mod rest;
mod sessions;
pub mod status;

/// The largest message the server takes or sends.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
