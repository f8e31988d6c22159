//! The host side of the guest agent: reaching it (`connect`) and calling it (`client`), which
//! implements the core's agent port (`core::ports::agent`) over the agent's gRPC protocol;
//! file copies go through the VM's transfer disk where it has one (`disk_copy`); `wire`
//! converts messages and `status` errors, for exec and sessions alike.

pub mod client;
pub mod connect;
mod disk_copy;
mod sessions;
mod status;
mod wire;

pub use client::{Connector, RemoteAgent};
