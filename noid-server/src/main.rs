//! `noid-server`: the daemon (`serve`) and its admin commands (`add-user`, `rotate-token`,
//! `list-users`), all over the same data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use noid::v1::noid_server::NoidServer;
use noid_server::admin;
use noid_server::api::grpc::GrpcApi;
use noid_server::config::Config;
use noid_server::core::Manager;
use noid_server::image::Image;
use noid_server::storage::Layout;
use noid_server::store::{SledStore, Store};
use noid_server::vmm::select;

#[derive(Parser)]
#[command(
    name = "noid-server",
    version,
    about = "The noid microVM control plane daemon"
)]
struct Cli {
    /// Server log lines as "[INFO] message" (text) or one JSON object each (json).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct DataDir {
    /// Root of noid's state [default: /var/lib/noid, or data_dir from --config]
    #[arg(long, env = "NOID_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file (see deploy/config.example.toml)
    #[arg(long, env = "NOID_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve {
        #[command(flatten)]
        data: DataDir,
        /// Address to listen on [default: 127.0.0.1:7777]
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the REST/WebSocket gateway and /metrics [default: 127.0.0.1:7778]
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// Guest image directory [default: DATA_DIR/images/default]
        #[arg(long)]
        image_dir: Option<PathBuf>,
        /// QEMU accelerator: auto, kvm or tcg
        #[arg(long)]
        accel: Option<String>,
        /// VMM: auto, firecracker or qemu [env: NOID_VMM; default: vmm from --config, auto]
        #[arg(long)]
        vmm: Option<String>,
    },
    /// Create a user and print their token (shown once).
    AddUser {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Replace a user's token and print the new one; the old one stops working.
    RotateToken {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List users.
    ListUsers {
        #[command(flatten)]
        data: DataDir,
    },
    /// Report what this host offers (QEMU, Firecracker, KVM, filesystem, image, network)
    /// and what noid will use.
    Doctor {
        #[command(flatten)]
        data: DataDir,
    },
    /// Internal: runs a VMM whose console is its stdio and serves that console on a socket
    /// (started by the server for Firecracker VMs).
    #[command(hide = true)]
    VmmShim {
        #[arg(long)]
        cwd: PathBuf,
        #[arg(long)]
        console: PathBuf,
        #[arg(long)]
        pid_file: PathBuf,
        #[arg(long)]
        log: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Remove noid's host networking (its nftables table and bridge). Refused while the
    /// server runs or while VMs with a network exist.
    NetworkDown {
        #[command(flatten)]
        data: DataDir,
    },
}

fn load_config(data: &DataDir) -> Result<Config> {
    let mut config = Config::load(data.config.as_deref())?;
    if let Some(dir) = &data.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

fn open_store(data_dir: &Path) -> Result<SledStore> {
    let layout = Layout::new(data_dir);
    layout
        .create_dirs()
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    Ok(SledStore::open(&layout.db())?)
}

async fn serve(config: Config) -> Result<()> {
    config.validate()?;
    let image = Image::open(&config.image_dir())?;
    let layout = Layout::new(&config.data_dir);
    let store: Arc<dyn Store> = Arc::new(open_store(&config.data_dir)?);
    let admin_socket = admin::socket_path(&config.data_dir);
    let admin_task = tokio::spawn(admin::serve(admin_socket.clone(), Arc::clone(&store)));
    let decision = select::decide_here(&config)?;
    if decision.workable() {
        tracing::info!("VMM: {}", decision.describe());
    } else {
        tracing::warn!("VMM: {}", decision.describe());
    }
    noid_server::vmm::process::become_subreaper();
    let vmm = select::build(&config, &decision)?;
    let network: Option<Arc<dyn noid_server::network::Network>> = if config.network.enabled {
        let n = &config.network;
        if !n.isolation {
            tracing::warn!(
                "network.isolation is off: VMs of all users reach each other, the host and any \
                 address, and no egress policy applies"
            );
        }
        Some(Arc::new(
            noid_server::network::LinuxNetwork::setup(n.firewall()?, n.dns.clone()).await?,
        ))
    } else {
        None
    };
    let net_options = noid_server::core::NetOptions {
        default_policy: config.network.policy.to_policy(),
        publish_range: config.network.publish_range()?,
        own_ports: vec![config.listen.port(), config.http_listen.port()],
    };
    let core = Manager::open(
        config.vm.clone(),
        layout,
        image.clone(),
        store,
        vmm,
        network,
        net_options,
    )
    .await
    .context("reconciling state")?;
    let info = core.server_info();
    tracing::info!(
        "noid-server {} listening on {} ({}, image {} kernel {})",
        noid::VERSION,
        config.listen,
        info.backend,
        info.image_id,
        info.kernel_release
    );
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let gateway = noid_server::api::rest::router(Arc::clone(&core));
    let (stop_http, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(async move {
        axum::serve(http, gateway)
            .with_graceful_shutdown(async {
                let _ = stop_http_rx.await;
            })
            .await
    });
    tracing::info!("REST/WebSocket gateway on http://{}", config.http_listen);
    let counted = Arc::clone(&core);
    let count_errors = tower::util::MapResponseLayer::new(
        move |resp: tonic::codegen::http::Response<tonic::body::BoxBody>| {
            // Errors of unary calls and refused streams come as trailers-only responses.
            if let Some(code) = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                .filter(|c| *c != 0)
            {
                counted
                    .metrics
                    .error(noid_server::metrics::grpc_code_name(code));
            }
            resp
        },
    );
    let service = NoidServer::new(GrpcApi::new(core))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // Nagle's algorithm would hold small stream messages back by the delayed-ACK time (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(noid::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let (mut health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<NoidServer<GrpcApi>>().await;
    tonic::transport::Server::builder()
        .layer(count_errors)
        .add_service(service)
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await?;
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http_task).await;
    admin_task.abort();
    let _ = std::fs::remove_file(&admin_socket);
    tracing::info!("stopped; VMs keep running and are picked up on the next start");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs an admin request on the store directly, or through the running server's admin socket
/// when a server holds the store.
async fn admin_request(data: &DataDir, request: admin::Request) -> Result<admin::Reply> {
    let data_dir = load_config(data)?.data_dir;
    if admin::socket_path(&data_dir).exists() {
        match admin::call(&data_dir, &request).await {
            Ok(reply) => return Ok(reply),
            // A server answered with a refusal: that is the answer.
            Err(e @ admin::AdminError::Remote(_)) => return Err(e.into()),
            // A stale socket of a server that is gone: use the store directly.
            Err(_) => {}
        }
    }
    let store = open_store(&data_dir)?;
    Ok(admin::handle(&store, &request)?)
}

async fn admin_token(data: &DataDir, request: admin::Request) -> Result<String> {
    match admin_request(data, request).await? {
        admin::Reply::Token(t) => Ok(t),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    noid_server::logging::init(cli.log_format == LogFormat::Json);
    if let Err(e) = run(cli).await {
        eprintln!("noid-server: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            data,
            listen,
            http_listen,
            image_dir,
            accel,
            vmm,
        } => {
            let mut config = load_config(&data)?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(l) = http_listen {
                config.http_listen = l;
            }
            if let Some(i) = image_dir {
                config.image_dir = Some(i);
            }
            if let Some(a) = accel {
                config.qemu.accel = a;
            }
            if let Some(v) = vmm {
                config.vmm = v;
            }
            serve(config).await
        }
        Command::AddUser { name, data } => {
            let token = admin_token(&data, admin::Request::AddUser { name: name.clone() }).await?;
            println!("{token}");
            eprintln!("user {name} created; this token is shown only once");
            Ok(())
        }
        Command::RotateToken { name, data } => {
            let request = admin::Request::RotateToken { name: name.clone() };
            let token = admin_token(&data, request).await?;
            println!("{token}");
            eprintln!("token of {name} replaced; the old one no longer works");
            Ok(())
        }
        Command::Doctor { data } => {
            let config = load_config(&data)?;
            let findings = noid_server::doctor::run(&config);
            for f in &findings {
                println!(
                    "{} {:<12} {}",
                    if f.ok { "ok" } else { "--" },
                    f.what,
                    f.detail
                );
            }
            Ok(())
        }
        Command::VmmShim {
            cwd,
            console,
            pid_file,
            log,
            mut command,
        } => {
            let program = command.remove(0);
            let args = noid_server::vmm::shim::ShimArgs {
                cwd,
                console,
                pid_file,
                log,
                program,
                args: command,
            };
            let code = noid_server::vmm::shim::run(&args)?;
            std::process::exit(code)
        }
        Command::NetworkDown { data } => {
            let config = load_config(&data)?;
            // Opening the store fails while a server holds it: that is the "server runs" check.
            let store = open_store(&config.data_dir)?;
            let with_net: Vec<String> = store
                .list_vms(None)?
                .into_iter()
                .filter(|v| v.net.is_some())
                .map(|v| v.name)
                .collect();
            if !with_net.is_empty() {
                anyhow::bail!(
                    "VMs still have a network: {} (destroy them first)",
                    with_net.join(", ")
                );
            }
            let bridge = &config.network.bridge;
            noid_server::network::nft::remove(bridge).await?;
            let handle = noid_server::network::link::connect()?;
            noid_server::network::link::delete(&handle, bridge).await?;
            println!(
                "removed nftables tables bridge and ip {} and bridge {bridge}",
                noid_server::network::firewall::table(bridge)
            );
            Ok(())
        }
        Command::ListUsers { data } => {
            if let admin::Reply::Users(users) =
                admin_request(&data, admin::Request::ListUsers).await?
            {
                for u in users {
                    println!("{u}");
                }
            }
            Ok(())
        }
    }
}
