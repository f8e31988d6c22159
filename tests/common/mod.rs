//! Test fixture: a real `noid-server` on a temporary data directory with real users, driven
//! through the real `noid` CLI and the `noid::client` Rust client. Dropping it stops the
//! server and every VMM it started, and removes the data directory.
#![allow(dead_code)]

pub mod oci;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use noid::v1::{exec_request, exec_response, ExecRequest, ExecStart, TtySize};

/// Where the built binaries are: next to this test executable's `deps/` folder.
/// A fresh Python virtualenv at `target/NAME` with the packages of `tests/python/REQUIREMENTS`
/// (pinned there), so that Python-side checks run in a clean environment.
pub fn virtualenv(name: &str, requirements: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join(name);
    let _ = std::fs::remove_dir_all(&venv);
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?} failed");
    ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    ok(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(root.join("tests/python").join(requirements)));
    venv
}

/// Python code (with type stubs) generated from `proto/noid/v1` into `out` by the
/// grpcio-tools of the virtualenv `venv`.
pub fn python_stubs(venv: &Path, out: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let protos: Vec<PathBuf> = std::fs::read_dir(root.join("proto/noid/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run_ok(
        Command::new(venv.join("bin/python"))
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(root.join("proto"))
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--pyi_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .args(&protos),
    );
}

/// Runs `cmd` to its end; panics with its output unless it succeeded. Returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and server certificate from `noid-server tls-init`, and the `[tls]` config lines.
pub struct TlsSetup {
    pub _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub config: String,
    pub fingerprint: String,
}

/// Runs `noid-server tls-init` in a directory of its own.
pub fn tls_init() -> TlsSetup {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("noid-server"))
        .args(["tls-init", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tls-init: {stderr}");
    let fingerprint = stderr
        .split("fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("tls-init prints the fingerprint")
        .to_string();
    TlsSetup {
        ca: dir.path().join("tls/ca.pem"),
        config: String::from_utf8(out.stdout).unwrap(),
        fingerprint,
        _dir: dir,
    }
}

pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// The guest image the tests boot (built by deploy/build-image.sh).
pub fn image_dir() -> PathBuf {
    let dir = std::env::var_os("NOID_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/noid/images/default"));
    assert!(
        dir.join("manifest.json").exists(),
        "no guest image at {}: run deploy/build-image.sh (or set NOID_IMAGE_DIR)",
        dir.display()
    );
    dir
}

pub fn image_kernel_release() -> String {
    let text = std::fs::read_to_string(image_dir().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["kernel_release"].as_str().unwrap().to_string()
}

/// Whether something accepts connections on `addr`. A connect to a free port in the
/// ephemeral range can meet itself (TCP simultaneous open: the kernel picked that very
/// port as the source), which looks like success but is no server.
fn listening(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub dir: tempfile::TempDir,
    /// The data directory when it is not `dir/data` (a test's own filesystem).
    data_override: Option<PathBuf>,
    image_override: Option<PathBuf>,
    pub url: String,
    /// The REST/WebSocket gateway.
    pub http_url: String,
    pub tokens: HashMap<String, String>,
    extra_config: String,
    child: Option<Child>,
    /// Environment of the next launches (e.g. NOID_CRASH_AT).
    env: Vec<(String, String)>,
    /// Runs the server through this command (e.g. prlimit with its arguments).
    wrapper: Vec<String>,
}

impl Server {
    /// Starts a server with these users and extra TOML config lines.
    pub fn start(users: &[&str], extra_config: &str) -> Server {
        Self::start_in(users, extra_config, None)
    }

    /// Starts a server whose data directory is `data_dir` (e.g. a small or btrfs mount).
    pub fn start_in(users: &[&str], extra_config: &str, data_dir: Option<PathBuf>) -> Server {
        Self::start_opts(users, extra_config, data_dir, &[])
    }

    /// Starts a server through `wrapper` (a command and its arguments, e.g. prlimit's).
    pub fn start_opts(
        users: &[&str],
        extra_config: &str,
        data_dir: Option<PathBuf>,
        wrapper: &[&str],
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("noid-e2e")
            .tempdir()
            .unwrap();
        let data = data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
        let mut tokens = HashMap::new();
        for u in users {
            let out = Command::new(bin("noid-server"))
                .args(["add-user", u, "--data-dir"])
                .arg(&data)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "add-user: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
            tokens.insert(u.to_string(), token);
        }
        let url = format!("http://127.0.0.1:{}", free_port());
        let http_url = format!("http://127.0.0.1:{}", free_port());
        let mut s = Server {
            dir,
            data_override: data_dir,
            image_override: None,
            url,
            http_url,
            tokens,
            extra_config: extra_config.to_string(),
            child: None,
            env: Vec::new(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        };
        s.launch();
        s
    }

    /// Boots from `dir` instead of the default image after the next (re)start.
    pub fn set_image_dir(&mut self, dir: &Path) {
        self.image_override = Some(dir.to_path_buf());
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_override
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    fn launch(&mut self) {
        let config = self.dir.path().join("server.toml");
        let listen = self.url.trim_start_matches("http://");
        // Tests that do not run in a network namespace of their own must not touch the host's
        // network: they turn networking off unless they configure it.
        let network = if self.extra_config.contains("[network]") {
            ""
        } else {
            "[network]\nenabled = false\n"
        };
        std::fs::write(
            &config,
            format!(
                "listen = \"{listen}\"\nhttp_listen = \"{}\"\ndata_dir = \"{}\"\nimage_dir = \"{}\"\n{}\n{network}",
                self.http_url.trim_start_matches("http://"),
                self.data_dir().display(),
                self.image_override
                    .clone()
                    .unwrap_or_else(image_dir)
                    .display(),
                self.extra_config
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("noid-server"));
                c
            }
            None => Command::new(bin("noid-server")),
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !listening(listen) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("noid-server exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets an environment variable for the next launches (None removes it).
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.into(), v.into()));
        }
    }

    /// Starts the server through `wrapper` (a command and its arguments) from the next launch.
    pub fn set_wrapper(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
    }

    /// The running server's process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits for the server to exit on its own (a crash point) and returns how it ended.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again after it has exited (or been stopped).
    pub fn start_again(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the server (SIGTERM) and starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the server and starts it again with other extra config lines.
    pub fn restart_with(&mut self, extra_config: &str) {
        self.stop();
        self.extra_config = extra_config.to_string();
        self.launch();
    }

    /// Kills the server with SIGKILL (a crash) and starts it again on the same data directory.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    /// Stops the server (SIGTERM); its VMs keep running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals the server process we spawned and still own.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The `noid` CLI as `user`, with its own config file and working directory.
    pub fn cli(&self, user: &str) -> Command {
        let mut c = Command::new(bin("noid"));
        c.env("NOID_URL", &self.url)
            .env("NOID_TOKEN", &self.tokens[user])
            .env(
                "NOID_CONFIG_FILE",
                self.dir.path().join(format!("{user}.toml")),
            )
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI with `args` and returns its output.
    pub fn run(&self, user: &str, args: &[&str]) -> Output {
        self.cli(user).args(args).output().unwrap()
    }

    pub async fn client(&self, user: &str) -> noid::client::Client {
        noid::client::connect(&self.url, Some(&self.tokens[user]))
            .await
            .unwrap()
    }

    /// Pids of the VMMs whose pid files are in this server's data directory, but for warm
    /// VMMs (which wait for a VM to take them, or are starting: `warm_vmm_dirs_in`).
    pub fn vmm_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let warm = self.warm_vmm_dirs_in(false);
        if let Ok(entries) = std::fs::read_dir(self.data_dir().join("vms")) {
            for e in entries.flatten().filter(|e| !warm.contains(&e.path())) {
                // QEMU; or Firecracker and the console shim in front of it.
                for file in ["qemu.pid", "firecracker.pid", "shim.pid"] {
                    if let Ok(p) = std::fs::read_to_string(e.path().join(file)) {
                        if let Ok(pid) = p.trim().parse() {
                            pids.push(pid);
                        }
                    }
                }
            }
        }
        pids
    }

    /// The directories of the warm VMMs: VMMs started ahead of need for a boot snapshot's
    /// state, which no VM owns yet (the server marks them with a `warm-vmm` file saying
    /// "starting", then "ready"); with `ready`, only those that wait.
    pub fn warm_vmm_dirs_in(&self, ready: bool) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.data_dir().join("vms")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|d| match std::fs::read_to_string(d.join("warm-vmm")) {
                Ok(state) => !ready || state.trim() == "ready",
                Err(_) => false,
            })
            .collect()
    }

    /// The directories of the warm VMMs that wait.
    pub fn warm_vmm_dirs(&self) -> Vec<PathBuf> {
        self.warm_vmm_dirs_in(true)
    }

    /// The ids of the warm VMMs, once every VM directory that `vm_ids` does not name is one:
    /// right after a create or a start of the server, one may still be starting. At most one
    /// waits for each boot snapshot.
    pub async fn settled_warm_vmms(
        &self,
        vm_ids: &std::collections::BTreeSet<String>,
    ) -> std::collections::BTreeSet<String> {
        let name = |d: &Path| d.file_name().unwrap().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let warm: std::collections::BTreeSet<String> =
                self.warm_vmm_dirs().iter().map(|d| name(d)).collect();
            let others: std::collections::BTreeSet<String> =
                std::fs::read_dir(self.data_dir().join("vms"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| name(&e.path()))
                    .filter(|n| !vm_ids.contains(n))
                    .collect();
            if others == warm {
                return warm;
            }
            assert!(
                Instant::now() < deadline,
                "VM directories no VM owns: {others:?}, warm VMMs among them: {warm:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `noid-server ARGS` (an admin command), checks that it succeeded, returns its stdout.
pub fn server_command<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(bin("noid-server"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host's clock, in seconds since the epoch (to compare with a guest's `date +%s`).
pub fn host_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Whether a process runs (not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s[s.rfind(')').unwrap() + 2..].chars().next().unwrap();
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

/// Live processes whose command line mentions `needle` (e.g. a test server's data directory).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) && pid_alive(pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Where a server on `data_dir` keeps its VMs' cgroups: `noid-<first 4 bytes of the
/// SHA-256 of the path, hex>` under each hierarchy's root (as `vmm/cgroup.rs` names them).
pub fn cgroup_parents(data_dir: &Path) -> Vec<PathBuf> {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    let hash = sha2::Sha256::digest(data_dir.as_os_str().as_bytes());
    let name: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/pids",
    ]
    .iter()
    .map(|root| Path::new(root).join(format!("noid-{name}")))
    .filter(|p| p.is_dir())
    .collect()
}

/// Removes the cgroups of a stopped test server's VMs (their VMMs were killed; an exiting
/// process keeps its cgroup busy for a moment), so test runs leave none on the host.
fn remove_cgroups(data_dir: &Path) {
    for parent in cgroup_parents(data_dir) {
        let children = std::fs::read_dir(&parent).into_iter().flatten().flatten();
        for child in children.filter(|e| e.path().is_dir()) {
            for _ in 0..50 {
                if std::fs::remove_dir(child.path()).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir(&parent);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pids = self.vmm_pids();
        self.stop();
        for pid in &pids {
            // SAFETY: kills a VMM this test's server started (pid from its own pid file).
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        remove_cgroups(&self.data_dir());
        // NOID_TEST_LOGS=1 shows the log of passing tests too (with --nocapture).
        if std::thread::panicking() || std::env::var_os("NOID_TEST_LOGS").is_some() {
            eprintln!("--- server log ---\n{}", self.log());
            for vm in std::fs::read_dir(self.data_dir().join("vms"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let log =
                    std::fs::read_to_string(vm.path().join("console.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "--- console of VM {} (last lines) ---",
                    vm.file_name().to_string_lossy()
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// What a finished exec produced.
#[derive(Debug, Default)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
    pub signal: i32,
    pub timed_out: bool,
}

impl ExecResult {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a command through the Rust client's bidirectional Exec stream.
pub async fn exec(
    client: &mut noid::client::Client,
    vm: &str,
    argv: &[&str],
    stdin: Option<Vec<u8>>,
    tty: Option<(u32, u32)>,
) -> Result<ExecResult, tonic::Status> {
    let start = ExecStart {
        vm: vm.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: stdin.is_some(),
        tty: tty.is_some(),
        tty_size: tty.map(|(rows, cols)| TtySize { rows, cols }),
        ..Default::default()
    };
    let mut msgs = vec![ExecRequest {
        msg: Some(exec_request::Msg::Start(start)),
    }];
    if let Some(data) = stdin {
        for chunk in data.chunks(64 * 1024) {
            msgs.push(ExecRequest {
                msg: Some(exec_request::Msg::Stdin(chunk.to_vec())),
            });
        }
        msgs.push(ExecRequest {
            msg: Some(exec_request::Msg::CloseStdin(true)),
        });
    }
    let mut stream = client.exec(futures::stream::iter(msgs)).await?.into_inner();
    let mut r = ExecResult::default();
    while let Some(msg) = stream.next().await {
        match msg?.msg {
            Some(exec_response::Msg::Stdout(d)) => r.stdout.extend(d),
            Some(exec_response::Msg::Stderr(d)) => r.stderr.extend(d),
            Some(exec_response::Msg::Exit(x)) => {
                r.code = x.code;
                r.signal = x.signal;
                r.timed_out = x.timed_out;
                return Ok(r);
            }
            _ => {}
        }
    }
    Err(tonic::Status::unknown("exec stream ended without exit"))
}

/// Runs `sh -c script` in `vm` and returns its stdout, failing the test on a non-zero status.
pub async fn sh(client: &mut noid::client::Client, vm: &str, script: &str) -> String {
    let r = exec(client, vm, &["sh", "-c", script], None, None)
        .await
        .unwrap_or_else(|e| panic!("exec in {vm}: {e}"));
    assert_eq!(
        r.code,
        0,
        "{vm}: `{script}` failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    r.out()
}

/// A filesystem mounted for one test (tmpfs or a loop device), unmounted on drop.
pub struct Mount {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    pub fn tmpfs(size: &str) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("noid-mnt")
            .tempdir()
            .unwrap();
        let path = dir.path().join("m");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs");
        Mount { path, _dir: dir }
    }

    pub fn btrfs_loop(size: &str) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("noid-mnt")
            .tempdir()
            .unwrap();
        let img = dir.path().join("fs.img");
        let path = dir.path().join("m");
        std::fs::create_dir(&path).unwrap();
        let run = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        run(Command::new("truncate").args(["-s", size]).arg(&img));
        run(Command::new("mkfs.btrfs").arg("-q").arg(&img));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&path));
        Mount { path, _dir: dir }
    }

    /// Free bytes on the filesystem.
    pub fn free_bytes(&self) -> u64 {
        let _ = Command::new("sync").status();
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A network namespace made for one test and deleted after it. `enter` moves the calling
/// thread into it; threads and processes started from that thread afterwards live there too,
/// so all of a test's traffic stays inside the namespace.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = format!("noid-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        NetNs { name }
    }

    /// Moves this thread into the namespace and returns a runtime whose threads all live
    /// there, so that the server and every client it starts are inside.
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        self.enter();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Moves this thread into the namespace and brings up its loopback device.
    pub fn enter(&self) {
        Self::enter_named(&self.name);
        self.ip(&["link", "set", "lo", "up"]);
    }

    /// Moves this thread into the namespace called `name` (e.g. from a thread of its own).
    pub fn enter_named(name: &str) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        // SAFETY: setns with a namespace file descriptor we hold open; affects this thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// Runs `ip ARGS` in the namespace (the calling thread must have entered it).
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}
