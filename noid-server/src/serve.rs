//! `noid-server serve`: builds the core from the config, serves the gRPC API (with reflection
//! and the standard health service) and the REST/WebSocket gateway, and stops on SIGTERM or
//! Ctrl-C: open calls get `shutdown_grace_secs` to finish, then the server exits anyway (VMs
//! keep running). Any other end of serving is an error, so the exit status says so.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use noid::v1::noid_server::NoidServer;
use noid_server::admin;
use noid_server::api::access::Authenticate;
use noid_server::api::grpc::{GrpcApi, GrpcRules};
use noid_server::api::incoming;
use noid_server::api::MAX_MESSAGE_BYTES;
use noid_server::config::Config;
use noid_server::core::ports::store::Store;
use noid_server::core::{Manager, Parts};
use noid_server::images::{Base, ImageStore};
use noid_server::storage::Layout;
use noid_server::tls;
use noid_server::vmm::select;
use tokio::sync::watch;

/// Raises this process's open-file limit to its hard limit (the kernel's default soft limit,
/// 1024, is far below what many VMs and clients need) and returns the new soft limit.
fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    limit.rlim_cur
}

/// How many API connections to allow at once: the config's number, or a quarter of the
/// descriptors this process may open (VMs, sockets and files need the rest).
fn connection_limit(config: &Config, file_limit: u64) -> usize {
    if config.max_connections > 0 {
        return config.max_connections;
    }
    (file_limit / 4).clamp(16, 16384) as usize
}

/// Resolves once SIGTERM or Ctrl-C arrives, and tells `stop`.
async fn wait_for_signal(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    noid_server::systemd::notify("STOPPING=1");
    let _ = stop.send(true);
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

pub async fn serve(config: Config) -> Result<()> {
    config.validate()?;
    let file_limit = raise_file_limit();
    let base = Base::open(&config.image_dir())?;
    let images = Arc::new(ImageStore::open(&config.data_dir.join("images"), base)?);
    let layout = Layout::new(&config.data_dir);
    let store: Arc<dyn Store> = Arc::new(crate::open_store(&config.data_dir)?);
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
    let core = Manager::open(Parts {
        limits: config.vm.clone(),
        checkpoints: config.checkpoints.clone(),
        layout,
        images,
        store,
        vmm,
        network,
        agents: Arc::new(noid_server::agent::Connector),
        net_options,
        quota: config.quota,
    })
    .await
    .context("reconciling state")?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(wait_for_signal(stop_tx));

    let (grpc_tls, gateway_tls) = match &config.tls {
        Some(files) => (
            Some(tls::acceptor(files, tls::Alpn::Grpc)?),
            Some(tls::acceptor(files, tls::Alpn::Gateway)?),
        ),
        None => (None, None),
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let max_connections = connection_limit(&config, file_limit);
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let api = Arc::new(GrpcApi::new(Arc::clone(&core)));
    let gateway = noid_server::api::rest::router(
        Arc::clone(&core),
        Arc::clone(&api),
        config.metrics_need_token,
    );
    let gateway_stop = stopped(stop.clone());
    let gateway_incoming = incoming::limited(http, max_connections, gateway_tls);
    let mut http_task = tokio::spawn(noid_server::api::http::serve(
        gateway_incoming,
        gateway,
        gateway_stop,
    ));
    tracing::info!(
        "REST/WebSocket gateway on {scheme}://{}",
        config.http_listen
    );

    let service = NoidServer::from_arc(Arc::clone(&api))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let info = core.server_info();
    tracing::info!(
        "noid-server {} listening on {scheme}://{} ({}, image {} kernel {})",
        noid::VERSION,
        config.listen,
        info.backend,
        info.image_id,
        info.kernel_release
    );
    tracing::debug!("open files: {file_limit}; API connections: at most {max_connections}");
    let incoming = incoming::limited(listener, max_connections, grpc_tls);
    // Reflection in both versions (grpcurl and newer tools speak v1, Postman and older
    // clients v1alpha), each listing both.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(noid::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (mut health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<NoidServer<GrpcApi>>().await;
    let grpc = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .initial_stream_window_size(noid::API_STREAM_WINDOW)
        .initial_connection_window_size(noid::API_CONNECTION_WINDOW)
        .layer(Authenticate::new(Arc::clone(&core), GrpcRules))
        .add_service(service)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, stopped(stop.clone()));
    // Both listeners are bound and take connections from here on (the kernel queues them
    // until the serving futures first run, just below).
    noid_server::systemd::notify("READY=1");

    // Serving ends on the signal, once open calls are done or the grace period is over.
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let graced = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(grace).await;
    };
    let (mut grpc, mut graced) = (std::pin::pin!(grpc), std::pin::pin!(graced));
    let mut gateway_done = false;
    loop {
        tokio::select! {
            served = &mut grpc => {
                served.context("the gRPC API failed")?;
                if !*stop.borrow() {
                    anyhow::bail!("the gRPC API stopped serving");
                }
                break;
            }
            served = &mut http_task, if !gateway_done => {
                gateway_done = true;
                served.context("the gateway failed")?;
                if !*stop.borrow() {
                    anyhow::bail!("the gateway stopped serving");
                }
            }
            () = &mut graced => {
                tracing::warn!(
                    "calls still open after {}s (followed logs, consoles, execs): ending them",
                    grace.as_secs()
                );
                break;
            }
        }
    }
    if !gateway_done
        && tokio::time::timeout(Duration::from_secs(1), &mut http_task)
            .await
            .is_err()
    {
        tracing::debug!("gateway connections still open: ending them");
    }
    admin_task.abort();
    core.stop_warm_vmms().await;
    let _ = std::fs::remove_file(&admin_socket);
    tracing::info!("stopped; VMs keep running and are picked up on the next start");
    Ok(())
}
