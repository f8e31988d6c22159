//! A stand-in for the `firecracker` binary (v1.16.1) for the contract tests on hosts where
//! Firecracker cannot run. It serves the API on `--api-sock`, checks every request against
//! the bundled OpenAPI spec and against the documented order of calls (pre-boot resources
//! before InstanceStart, snapshots only of a paused VM, snapshot/load only on a fresh
//! process), and answers as the spec documents. Its "guest" is a real `noid-agent
//! --listen-unix` on the host behind a hybrid-vsock socket (`CONNECT <port>` -> `OK <n>`),
//! its serial console is stdio, and snapshot/create writes real files that snapshot/load
//! reads back (opening the drive path relative to its working directory, as Firecracker
//! does).
//!
//! Run with the jailer's arguments (`--id ... --exec-file ... --uid ... --gid ...
//! --chroot-base-dir ... -- <firecracker args>`) it also stands in for the jailer: it checks
//! them, makes and enters `<base>/<exec name>/<id>/root`, drops to the uid and gid, and from
//! then on resolves absolute paths inside that root (it does not chroot: it is not a static
//! binary).
//!
//! Environment: FAKE_FC_LOG (JSON lines, one per request), FAKE_FC_AGENT (the agent binary).

#[path = "spec.rs"]
mod spec;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const VERSION: &str = "1.16.1";
const AGENT_PORT: u64 = 1024;

#[derive(Default)]
struct Vm {
    id: String,
    /// "Not started", "Running" or "Paused".
    state: &'static str,
    /// Every pre-boot resource, by path ("/boot-source", "/drives/root", ...).
    config: BTreeMap<String, Value>,
    loaded: bool,
    agent: Option<tokio::process::Child>,
}

type Shared = Arc<Mutex<Vm>>;

/// The request log, opened before the jailer part drops privileges.
static LOG: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
/// Under the jailer: the root that absolute paths are inside of.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Appends one line with a single `write`: other stand-ins (tests run in parallel) append to
/// the same file, and a line written in pieces would interleave with theirs.
fn log(entry: Value) {
    if let Some(f) = LOG.get() {
        let line = format!("{entry}\n");
        let _ = f.lock().unwrap().write_all(line.as_bytes());
    }
}

/// The jailer's part: checks its arguments, enters the VM's root, drops privileges, and
/// returns Firecracker's arguments.
fn jail(args: &[String]) -> Result<Vec<String>, String> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("jailer: Firecracker's arguments must follow --")?;
    let (jailer, firecracker) = (&args[..split], &args[split + 1..]);
    let known = [
        "--id",
        "--exec-file",
        "--uid",
        "--gid",
        "--chroot-base-dir",
        "--cgroup-version",
        "--cgroup",
    ];
    let mut i = 0;
    while i < jailer.len() {
        if !known.contains(&jailer[i].as_str()) || i + 1 >= jailer.len() {
            return Err(format!("jailer: unexpected argument {:?}", jailer[i]));
        }
        i += 2;
    }
    let get = |name: &str| {
        jailer
            .iter()
            .position(|a| a == name)
            .map(|i| jailer[i + 1].clone())
            .ok_or(format!("jailer: {name} is required"))
    };
    let id = get("--id")?;
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!("jailer: invalid --id {id:?}"));
    }
    let exec = PathBuf::from(get("--exec-file")?);
    let exec_name = exec
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if !exec.is_file() || !exec_name.contains("firecracker") {
        return Err(format!(
            "jailer: --exec-file {exec:?} is not a firecracker binary"
        ));
    }
    let uid: u32 = get("--uid")?.parse().map_err(|_| "jailer: bad --uid")?;
    let gid: u32 = get("--gid")?.parse().map_err(|_| "jailer: bad --gid")?;
    if let Ok(v) = get("--cgroup-version") {
        if v != "1" && v != "2" {
            return Err(format!("jailer: --cgroup-version {v}"));
        }
    }
    let root = PathBuf::from(get("--chroot-base-dir")?)
        .join(exec_name)
        .join(&id)
        .join("root");
    std::fs::create_dir_all(&root).map_err(|e| format!("jailer: {root:?}: {e}"))?;
    std::env::set_current_dir(&root).map_err(|e| format!("jailer: {root:?}: {e}"))?;
    // Firecracker works as the jail's user from here. The real ids stay root's so that the
    // "guest" agent, which in a real VM is no process of the host's, can run as root.
    // SAFETY: setresgid/setresuid with plain integers; gid first, while still privileged.
    if unsafe { libc::setresgid(0, gid, 0) } != 0 || unsafe { libc::setresuid(0, uid, 0) } != 0 {
        return Err(format!("jailer: cannot become {uid}:{gid}"));
    }
    ROOT.set(root).unwrap();
    Ok(firecracker.to_vec())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(path) = std::env::var("FAKE_FC_LOG") {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = LOG.set(Mutex::new(f));
        }
    }
    if args.iter().any(|a| a == "--exec-file") {
        args = jail(&args).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
    }
    if args.iter().any(|a| a == "--version") {
        println!("Firecracker v{}", spec::Spec::v1_16_1().version());
        return;
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(api_sock) = arg("--api-sock") else {
        eprintln!("fake-firecracker: --api-sock is required");
        std::process::exit(1);
    };
    let vm: Shared = Arc::new(Mutex::new(Vm {
        id: arg("--id").unwrap_or_else(|| "anonymous-instance".into()),
        state: "Not started",
        ..Vm::default()
    }));
    let api_sock = host_path(&api_sock);
    let _ = std::fs::remove_file(&api_sock);
    let listener = UnixListener::bind(&api_sock).expect("bind the API socket");
    let spec = Arc::new(spec::Spec::v1_16_1());
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::spawn(serial_echo());
    loop {
        tokio::select! {
            _ = term.recv() => break,
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                let (vm, spec) = (vm.clone(), spec.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, vm.clone(), spec.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    let agent = vm.lock().unwrap().agent.take();
    if let Some(mut a) = agent {
        let _ = a.kill().await;
    }
    // Exit now: the runtime would otherwise wait for the blocking stdin read forever.
    std::process::exit(0);
}

/// The guest's serial console: whatever is typed comes back, like a shell's echo.
async fn serial_echo() {
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut buf = [0u8; 1024];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = stdout.write_all(&buf[..n]).await;
        let _ = stdout.flush().await;
    }
}

async fn handle(
    req: Request<Incoming>,
    vm: Shared,
    spec: Arc<spec::Spec>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = match spec.check(&method, &path, &body) {
        Err(e) => Err((StatusCode::BAD_REQUEST, format!("spec: {e}"))),
        Ok(_) => apply(&method, &path, &parsed, &vm).await,
    };
    log(json!({
        "pid": std::process::id(),
        "cwd": std::env::current_dir().unwrap_or_default(),
        "method": method,
        "path": path,
        "body": parsed,
        "error": result.as_ref().err().map(|(_, e)| e.clone()),
    }));
    Ok(match result {
        Ok(None) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Ok(Some(v)) => Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap(),
        Err((status, message)) => Response::builder()
            .status(status)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(
                json!({ "fault_message": message }).to_string(),
            )))
            .unwrap(),
    })
}

type Answer = Result<Option<Value>, (StatusCode, String)>;

fn bad(msg: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, msg.into())
}

/// Firecracker resolves relative paths against its working directory (the jail's root).
/// Under the jailer, absolute paths are inside its root.
fn host_path(p: &str) -> PathBuf {
    match (ROOT.get(), p.strip_prefix('/')) {
        (Some(root), Some(inside)) => root.join(inside),
        _ => Path::new(p).to_path_buf(),
    }
}

async fn apply(method: &str, path: &str, body: &Value, vm: &Shared) -> Answer {
    let state = vm.lock().unwrap().state;
    match (method, path) {
        ("GET", "/") => {
            let v = vm.lock().unwrap();
            Ok(Some(json!({
                "app_name": "Firecracker",
                "id": v.id,
                "state": v.state,
                "vmm_version": VERSION,
            })))
        }
        ("GET", "/version") => Ok(Some(json!({ "firecracker_version": VERSION }))),
        ("PUT", "/actions") => match body["action_type"].as_str() {
            Some("InstanceStart") if state == "Not started" => boot(vm).await,
            Some("InstanceStart") => Err(bad("The microVM is already running.")),
            _ => Ok(None),
        },
        ("PATCH", "/vm") if state == "Not started" => Err(bad("Operation not allowed pre-boot.")),
        ("PATCH", "/vm") => {
            let new = if body["state"] == "Paused" {
                "Paused"
            } else {
                "Running"
            };
            vm.lock().unwrap().state = new;
            Ok(None)
        }
        ("PUT", "/snapshot/create") => {
            if state != "Paused" {
                return Err(bad(
                    "Cannot create a snapshot of a microVM that is not paused.",
                ));
            }
            create_snapshot(body, vm)
        }
        ("PUT", "/snapshot/load") => load_snapshot(body, vm).await,
        ("PUT", p) if state != "Not started" => Err(bad(format!(
            "The requested operation is not supported after starting the microVM ({p})."
        ))),
        ("PUT", p) => {
            let mut v = vm.lock().unwrap();
            if v.loaded {
                return Err(bad(
                    "Loading a snapshot is allowed only before configuring.",
                ));
            }
            v.config.insert(p.to_string(), body.clone());
            Ok(None)
        }
        _ => Err(bad(format!(
            "{method} {path} is not supported by this stand-in"
        ))),
    }
}

/// InstanceStart: checks the files a real boot would open, then "boots" the guest.
async fn boot(vm: &Shared) -> Answer {
    let config = vm.lock().unwrap().config.clone();
    let boot = config
        .get("/boot-source")
        .ok_or_else(|| bad("Cannot start microvm without kernel configuration."))?;
    // A way for tests to see a boot fail half-way: a guest named fail-boot never starts.
    if boot["boot_args"]
        .as_str()
        .is_some_and(|a| a.contains("noid.hostname=fail-boot"))
    {
        return Err(bad("stand-in: this guest is set to fail at InstanceStart"));
    }
    for key in ["kernel_image_path", "initrd_path"] {
        if let Some(p) = boot[key].as_str() {
            if !host_path(p).is_file() {
                return Err(bad(format!("Cannot open {key} {p}")));
            }
        }
    }
    check_drives(&config)?;
    let vsock = config
        .get("/vsock")
        .ok_or_else(|| bad("stand-in: noid's agent needs a vsock device"))?
        .clone();
    start_guest(vm, vsock["uds_path"].as_str().unwrap_or_default()).await?;
    vm.lock().unwrap().state = "Running";
    println!("fake-firecracker: guest booted");
    Ok(None)
}

fn check_drives(config: &BTreeMap<String, Value>) -> Result<(), (StatusCode, String)> {
    for (k, d) in config.iter().filter(|(k, _)| k.starts_with("/drives/")) {
        let p = d["path_on_host"].as_str().unwrap_or_default();
        if !host_path(p).is_file() {
            return Err(bad(format!("Unable to open the block device {k}: {p}")));
        }
    }
    Ok(())
}

/// Starts the guest's agent and the hybrid-vsock socket in front of it.
async fn start_guest(vm: &Shared, uds_path: &str) -> Result<(), (StatusCode, String)> {
    let agent_bin = std::env::var("FAKE_FC_AGENT").map_err(|_| bad("FAKE_FC_AGENT is not set"))?;
    let agent_sock = std::env::current_dir()
        .unwrap_or_default()
        .join(format!("guest-agent-{}.sock", std::process::id()));
    let mut cmd = tokio::process::Command::new(agent_bin);
    cmd.arg("--listen-unix").arg(&agent_sock).kill_on_drop(true);
    // SAFETY: setresuid/setresgid with plain integers between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setresuid(0, 0, 0);
            libc::setresgid(0, 0, 0);
            // Its socket is then open to the jailed user that proxies to it.
            libc::umask(0);
            // The "guest" ends with its VMM, even one killed with SIGKILL.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        })
    };
    let child = cmd.spawn().map_err(|e| bad(format!("guest agent: {e}")))?;
    vm.lock().unwrap().agent = Some(child);
    let _ = std::fs::remove_file(host_path(uds_path));
    let listener = UnixListener::bind(host_path(uds_path))
        .map_err(|e| bad(format!("vsock {uds_path}: {e}")))?;
    let vm = vm.clone();
    tokio::spawn(async move {
        let mut next_port = 1_073_741_824u64;
        while let Ok((stream, _)) = listener.accept().await {
            next_port += 1;
            tokio::spawn(hybrid_connection(
                stream,
                agent_sock.clone(),
                next_port,
                vm.clone(),
            ));
        }
    });
    Ok(())
}

/// One host-initiated connection: `CONNECT <port>\n`, then `OK <host port>\n` and bytes.
async fn hybrid_connection(stream: UnixStream, agent_sock: PathBuf, host_port: u64, vm: Shared) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let port: Option<u64> = line
        .strip_prefix("CONNECT ")
        .and_then(|p| p.trim().parse().ok());
    if port != Some(AGENT_PORT) || vm.lock().unwrap().state != "Running" {
        return; // Nobody listens there (or the guest is paused): the connection closes.
    }
    let mut guest = None;
    for _ in 0..100 {
        if let Ok(s) = UnixStream::connect(&agent_sock).await {
            guest = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let Some(mut guest) = guest else { return };
    let mut host = reader.into_inner();
    if host
        .write_all(format!("OK {host_port}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut host, &mut guest).await;
}

fn create_snapshot(body: &Value, vm: &Shared) -> Answer {
    let v = vm.lock().unwrap();
    let mem_mib = v.config["/machine-config"]["mem_size_mib"]
        .as_u64()
        .unwrap_or(128);
    let state = json!({ "format": "fake-firecracker-vmstate", "config": v.config });
    let snapshot_path = body["snapshot_path"].as_str().unwrap_or_default();
    let mem_path = body["mem_file_path"].as_str().unwrap_or_default();
    std::fs::write(host_path(snapshot_path), state.to_string())
        .map_err(|e| bad(format!("snapshot_path: {e}")))?;
    let mem = std::fs::File::create(host_path(mem_path))
        .map_err(|e| bad(format!("mem_file_path: {e}")))?;
    (&mem)
        .write_all(format!("fake guest memory of {}\n", v.id).as_bytes())
        .and_then(|_| mem.set_len(mem_mib << 20))
        .map_err(|e| bad(format!("mem_file_path: {e}")))?;
    Ok(None)
}

async fn load_snapshot(body: &Value, vm: &Shared) -> Answer {
    {
        let v = vm.lock().unwrap();
        if v.state != "Not started" || !v.config.is_empty() || v.loaded {
            return Err(bad(
                "Loading a snapshot is only allowed on a fresh microVM.",
            ));
        }
    }
    if body.get("mem_file_path").is_some() == body.get("mem_backend").is_some() {
        return Err(bad(
            "Exactly one of mem_file_path and mem_backend is required.",
        ));
    }
    let mem = body["mem_backend"]["backend_path"]
        .as_str()
        .or(body["mem_file_path"].as_str())
        .unwrap_or_default();
    let snapshot_path = body["snapshot_path"].as_str().unwrap_or_default();
    let state: Value = std::fs::read(host_path(snapshot_path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &Value| s["format"] == "fake-firecracker-vmstate")
        .ok_or_else(|| bad(format!("Cannot read the snapshot state {snapshot_path}")))?;
    let mut config: BTreeMap<String, Value> =
        serde_json::from_value(state["config"].clone()).unwrap_or_default();
    let mem_mib = config["/machine-config"]["mem_size_mib"]
        .as_u64()
        .unwrap_or(0);
    match std::fs::metadata(host_path(mem)) {
        Ok(m) if m.len() == mem_mib << 20 => {}
        _ => return Err(bad(format!("Cannot load the guest memory from {mem}"))),
    }
    for o in body["network_overrides"].as_array().into_iter().flatten() {
        let key = format!(
            "/network-interfaces/{}",
            o["iface_id"].as_str().unwrap_or("")
        );
        let iface = config
            .get_mut(&key)
            .ok_or_else(|| bad(format!("Invalid network override: no interface {key}")))?;
        iface["host_dev_name"] = o["host_dev_name"].clone();
    }
    if let Some(o) = body.get("vsock_override") {
        let vsock = config
            .get_mut("/vsock")
            .ok_or_else(|| bad("vsock_override given but the snapshot has no vsock device"))?;
        vsock["uds_path"] = o["uds_path"].clone();
    }
    check_drives(&config)?;
    let uds = config["/vsock"]["uds_path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let resume = body["resume_vm"].as_bool().unwrap_or(false);
    {
        let mut v = vm.lock().unwrap();
        v.config = config;
        v.loaded = true;
        v.state = if resume { "Running" } else { "Paused" };
    }
    start_guest(vm, &uds).await?;
    println!("fake-firecracker: guest restored");
    Ok(None)
}
