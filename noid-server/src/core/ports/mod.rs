//! The ports of the core: what it needs from the backends below it, in its own types. Each
//! backend implements one (`store::SledStore`, `agent::RemoteAgent`); the core holds only the
//! traits.

pub mod agent;
pub mod store;
