//! noid-server as a library: the core (`core`) with its backend ports (`vmm`, `agent`, `store`,
//! `storage`) and the API adapters over it (`api`). `main.rs` only parses the command line.

pub mod admin;
pub mod agent;
pub mod api;
pub mod auth;
pub mod checksum;
pub mod config;
pub mod console;
pub mod core;
pub mod doctor;
pub mod image;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod storage;
pub mod store;
pub mod vmm;
