//! noid-server as a library: the core (`core`, with its model and ports), the backends that
//! implement the ports (`vmm`, `agent`, `store`, `network`) and the API adapters over it
//! (`api`). `main.rs` only parses the command line; `serve.rs` runs the server.

pub mod admin;
pub mod agent;
pub mod api;
pub mod auth;
pub mod checksum;
pub mod config;
pub mod console;
pub mod console_times;
pub mod core;
pub mod doctor;
pub mod images;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod storage;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod vmm;
