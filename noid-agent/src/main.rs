//! noid-agent: runs inside every guest. As PID 1 it first does init's duties (see `init`);
//! then it serves the agent API on every transport the guest has.

mod console;
mod disk_copy;
mod exec;
mod fdstream;
mod files;
mod init;
mod net;
mod output;
mod reaper;
mod service;
mod sessions;
mod settle;
mod system;
mod toolbox;
mod transport;
mod users;

#[cfg(test)]
mod fuzz;

use noid::agent::v1::agent_server::AgentServer;

use crate::reaper::Reaper;
use crate::service::AgentService;

fn main() {
    let pid1 = std::process::id() == 1;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen_unix = match args.as_slice() {
        [] => None,
        [flag, path] if flag == "--listen-unix" => Some(std::path::PathBuf::from(path)),
        _ => {
            eprintln!("usage: noid-agent [--listen-unix PATH]  (in a guest: no arguments)");
            std::process::exit(2);
        }
    };
    if pid1 {
        init::run();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let reaper = match Reaper::start() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("noid-agent: cannot watch children: {e}");
                std::process::exit(1);
            }
        };
        if pid1 {
            tokio::spawn(console::shell_loop(reaper.clone()));
        }
        let service = AgentServer::new(AgentService::new(reaper, pid1))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        eprintln!("noid-agent {} starting", noid::VERSION);
        if let Some(path) = listen_unix {
            if let Err(e) = transport::unix::serve(&path, service).await {
                eprintln!("noid-agent: {}: {e}", path.display());
                std::process::exit(1);
            }
            return;
        }
        let serial = tokio::spawn(transport::serial::serve(
            noid::guest::SERIAL_PORT_NAME.to_string(),
            service.clone(),
        ));
        if transport::vsock::available() {
            let port = transport::vsock::AGENT_PORT;
            tokio::spawn(async move {
                if let Err(e) = transport::vsock::serve(port, service).await {
                    eprintln!("noid-agent: vsock: {e}");
                }
            });
        }
        let _ = serial.await;
    });
}
