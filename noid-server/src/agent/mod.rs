//! The host side of the guest agent: reaching it (`connect`) and calling it (`client`), with
//! one translation layer between the agent proto and the core's domain types.

pub mod client;
pub mod connect;

pub use client::GuestAgent;
