//! `noid-server`: the daemon (`serve`) and its admin commands (`add-user`, `rotate-token`,
//! `list-users`), all over the same data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod serve;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use noid_server::admin;
use noid_server::config::{AccelChoice, Config, ServeFlags, VmmChoice};
use noid_server::core::ports::store::VmStore;
use noid_server::storage::Layout;
use noid_server::store::SledStore;

#[derive(Parser)]
#[command(
    name = "noid-server",
    version,
    about = "The noid microVM control plane daemon"
)]
struct Cli {
    /// Server log lines as "TIME [INFO] message" (text) or one JSON object each (json).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "NOID_LOG_FORMAT"
    )]
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
        /// QEMU accelerator [default: qemu.accel from --config, auto]
        #[arg(long, value_enum)]
        accel: Option<AccelChoice>,
        /// VMM [env: NOID_VMM; default: vmm from --config, auto]
        #[arg(long, value_enum)]
        vmm: Option<VmmChoice>,
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
    /// Make a CA and a server certificate for this host in DATA_DIR/tls (a single host's
    /// TLS), and print the config lines and what clients need to trust it.
    TlsInit {
        #[command(flatten)]
        data: DataDir,
        /// Names clients use to reach the server (DNS names or IP addresses)
        /// [default: localhost, 127.0.0.1, ::1 and this host's name]
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
    /// Report what this host offers (QEMU, Firecracker, KVM, filesystem, image, network)
    /// and what noid will use.
    Doctor {
        #[command(flatten)]
        data: DataDir,
        /// Print the findings as a JSON array of {"what", "ok", "detail"}
        #[arg(long)]
        json: bool,
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
    /// Internal: the crash points of the fault tests (debug builds stop at the one that
    /// NOID_CRASH_AT names).
    #[command(hide = true)]
    CrashPoints,
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

pub(crate) fn open_store(data_dir: &Path) -> Result<SledStore> {
    let layout = Layout::new(data_dir);
    layout
        .create_dirs()
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    Ok(SledStore::open(&layout.db())?)
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

fn tls_init(data: &DataDir, mut names: Vec<String>) -> Result<()> {
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(host) = host_name() {
            names.push(host);
        }
    }
    let data_dir = load_config(data)?.data_dir;
    let made = noid_server::tls::init(&data_dir.join("tls"), &names)?;
    println!("[tls]");
    println!("cert = {:?}", made.files.cert.display().to_string());
    println!("key = {:?}", made.files.key.display().to_string());
    eprintln!(
        "made a CA and a certificate for {}: put the lines above in the server's config.\n\
         Clients trust it with the CA file {} (`noid auth setup URL TOKEN --ca-file FILE`)\n\
         or by its fingerprint {}",
        names.join(", "),
        made.ca.display(),
        made.fingerprint
    );
    Ok(())
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
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
            let config = load_config(&data)?.with_flags(ServeFlags {
                listen,
                http_listen,
                image_dir,
                accel,
                vmm,
            });
            serve::serve(config).await
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
        Command::TlsInit { data, names } => tls_init(&data, names),
        Command::Doctor { data, json } => {
            let config = load_config(&data)?;
            let findings = noid_server::doctor::run(&config);
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
                return Ok(());
            }
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
        Command::CrashPoints => {
            // Release builds have none armed: they list none.
            if cfg!(debug_assertions) {
                for p in noid_server::core::faults::CRASH_POINTS {
                    println!("{p}");
                }
            }
            Ok(())
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
            noid_server::network::teardown(bridge).await?;
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
