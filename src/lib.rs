//! The `noid` library: the generated API (control plane and guest agent), validation of names,
//! the client helpers that the CLI, the tests and Rust programs share, and how the server and
//! the agent gather output into messages.

pub mod client;
pub mod coalesce;
pub mod guest;
pub mod names;
pub mod netpolicy;
pub mod time;
pub mod tls;

#[cfg(test)]
mod fuzz;

/// The control-plane API (`proto/noid/v1`).
// Generated: a oneof that carries a whole message beside a log line (ImageProgress) is as
// prost lays it out.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("noid.v1");
    include!(concat!(env!("OUT_DIR"), "/noid.v1.serde.rs"));
}

/// The host <-> guest agent API (`proto/noid/agent/v1`).
pub mod agent {
    pub mod v1 {
        tonic::include_proto!("noid.agent.v1");
    }
}

/// The encoded descriptors of the control-plane API's proto files (not the agent's), for gRPC
/// server reflection and the gateway's OpenAPI document.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/noid_descriptor.bin"));

/// Version of this build, reported by the server, the CLI and the agent.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// HTTP/2 flow-control windows of the public API, per stream and per connection, used by the
/// server and the client alike.
pub const API_STREAM_WINDOW: u32 = 4 << 20;
pub const API_CONNECTION_WINDOW: u32 = 8 << 20;

/// Version of the agent API; the server refuses agents that speak another.
pub const AGENT_PROTOCOL: u32 = 3;
