//! The host side of the guest agent: reaching it (`connect`) and calling it (`client`), which
//! implements the core's agent port (`core::ports::agent`) over the agent's gRPC protocol.

pub mod client;
pub mod connect;

pub use client::{Connector, RemoteAgent};
