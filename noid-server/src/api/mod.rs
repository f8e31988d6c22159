//! API adapters over the core: each translates requests to core calls and core results back,
//! and does no work of its own. `status` maps core errors to wire codes in one place.

pub mod convert;
mod exec_input;
pub mod grpc;
pub mod incoming;
pub mod openapi;
pub mod rest;
mod rest_files;
pub mod status;
