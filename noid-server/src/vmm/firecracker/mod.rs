//! The Firecracker backend, driven through its HTTP API (v1.16; see `model`) on a Unix
//! socket. Each VM's Firecracker runs in a directory of its own — the VM's directory, or a
//! jailer chroot holding hard links to the VM's files — and every path it is given is
//! relative to that directory, so a snapshot names `rootfs.ext4` and a restored copy opens
//! the disk of the directory it runs in. The serial console is Firecracker's stdio, which the
//! console shim (`super::shim`) offers on `console.sock` like QEMU's.

mod api;
mod jail;
mod model;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::api::Api;
use self::jail::RunDir;
use self::model::*;
use super::shim::{self, ShimArgs};
use super::{process, BootSpec, RunState, SavedFile, VmHandle, Vmm, VmmError};
use crate::core::model::ProcessId;
use crate::core::model::{AgentEndpoint, Backend};

/// Names inside the directory Firecracker runs in.
pub const API_SOCKET: &str = "firecracker.sock";
pub const VSOCK_SOCKET: &str = "vsock.sock";
const ROOTFS: &str = noid::guest::DISK_FILE;
/// Names inside the VM's own directory.
pub const CONSOLE_SOCKET: &str = "console.sock";
const SHIM_PID: &str = "shim.pid";
const VMM_PID: &str = "firecracker.pid";
const VMM_LOG: &str = "firecracker.log";
/// Checkpoint files.
pub const VMSTATE_FILE: &str = "vmstate";
pub const MEMORY_FILE: &str = "memory";
/// The guest's vsock CID and the port its agent listens on.
const GUEST_CID: u32 = 3;
pub const AGENT_PORT: u32 = noid::guest::VSOCK_PORT;
const NET_IFACE: &str = "eth0";

/// How Firecracker is run: directly, or under the jailer.
#[derive(Debug, Clone)]
pub struct FirecrackerConfig {
    pub binary: PathBuf,
    pub jailer: Option<jail::JailerConfig>,
}

pub use jail::JailerConfig;

pub struct FirecrackerVmm {
    config: FirecrackerConfig,
    version: String,
    /// VMs paused without a snapshot since; see `resume`.
    paused_bare: Mutex<HashSet<PathBuf>>,
}

/// `firecracker --version` prints "Firecracker v1.16.1" first.
pub fn version_of(binary: &Path) -> Option<String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().next()?.trim();
    Some(line.trim_start_matches("Firecracker").trim().to_string()).filter(|v| !v.is_empty())
}

impl FirecrackerVmm {
    pub fn new(config: FirecrackerConfig) -> Result<Self, VmmError> {
        let version = version_of(&config.binary).ok_or_else(|| {
            VmmError::Start(format!(
                "{} --version did not answer: is Firecracker installed?",
                config.binary.display()
            ))
        })?;
        Ok(Self {
            config,
            version,
            paused_bare: Mutex::default(),
        })
    }

    fn run_dir(&self, vm_dir: &Path) -> RunDir {
        RunDir::new(vm_dir, &self.config)
    }

    fn api(&self, vm_dir: &Path) -> Api {
        Api::new(&self.run_dir(vm_dir).root.join(API_SOCKET))
    }

    /// Starts a fresh Firecracker (under the shim) for the VM in `vm_dir` and waits for its
    /// API socket.
    async fn launch(&self, spec: &BootSpec, run: &RunDir) -> Result<ProcessId, VmmError> {
        for stale in [API_SOCKET, VSOCK_SOCKET] {
            let _ = std::fs::remove_file(run.root.join(stale));
        }
        let _ = std::fs::remove_file(spec.dir.join(VMM_PID));
        let (program, args) = run.command(&self.config);
        let shim_args = ShimArgs {
            cwd: run.root.clone(),
            console: spec.dir.join(CONSOLE_SOCKET),
            pid_file: spec.dir.join(VMM_PID),
            log: spec.dir.join(VMM_LOG),
            program,
            args,
        };
        let pid = shim::spawn(&shim_args, &spec.cgroup)
            .map_err(|e| VmmError::Start(format!("cannot start the console shim: {e}")))?;
        let id = process::identify(pid)
            .ok_or_else(|| VmmError::Start("the console shim exited at once".into()))?;
        std::fs::write(spec.dir.join(SHIM_PID), pid.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let socket = run.root.join(API_SOCKET);
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            if !process::is_alive(&id) || Instant::now() > deadline {
                let _ = process::terminate(&id, Duration::from_secs(1)).await;
                return Err(VmmError::Start(format!(
                    "Firecracker did not open its API socket: {}",
                    last_line(&spec.dir.join(VMM_LOG))
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(id)
    }

    async fn configure_and_boot(&self, spec: &BootSpec, run: &RunDir) -> Result<(), VmmError> {
        let api = Api::new(&run.root.join(API_SOCKET));
        api.put(
            "/machine-config",
            &MachineConfiguration {
                vcpu_count: spec.cpus,
                mem_size_mib: spec.memory_mib,
            },
        )
        .await?;
        api.put(
            "/boot-source",
            &BootSource {
                kernel_image_path: run.kernel.clone(),
                initrd_path: run.initrd.clone(),
                boot_args: super::kernel_cmdline(spec, "reboot=k pci=off"),
            },
        )
        .await?;
        api.put(
            "/drives/root",
            &Drive {
                drive_id: "root".into(),
                is_root_device: true,
                is_read_only: false,
                path_on_host: ROOTFS.into(),
            },
        )
        .await?;
        if let Some(n) = &spec.net {
            api.put(
                &format!("/network-interfaces/{NET_IFACE}"),
                &NetworkInterface {
                    iface_id: NET_IFACE.into(),
                    host_dev_name: n.tap.clone(),
                    guest_mac: n.mac.clone(),
                },
            )
            .await?;
        }
        api.put(
            "/vsock",
            &Vsock {
                guest_cid: GUEST_CID,
                uds_path: VSOCK_SOCKET.into(),
            },
        )
        .await?;
        api.put("/entropy", &EntropyDevice {}).await?;
        api.put(
            "/actions",
            &InstanceActionInfo {
                action_type: ActionType::InstanceStart,
            },
        )
        .await
    }

    /// Stops a process that a failed start left, and says why it failed.
    async fn abandon(&self, id: &ProcessId, dir: &Path, e: VmmError) -> VmmError {
        let _ = self.stop(id, Duration::from_secs(1)).await;
        let log = last_line(&dir.join(VMM_LOG));
        if log.is_empty() {
            e
        } else {
            VmmError::Start(format!("{e}; Firecracker: {log}"))
        }
    }
}

/// The last non-empty line of a log file.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

#[async_trait]
impl Vmm for FirecrackerVmm {
    fn is_running(&self, process: &ProcessId) -> bool {
        process::is_alive(process)
    }

    async fn wait_exit(&self, process: &ProcessId, limit: std::time::Duration) -> bool {
        process::wait_exit(process, limit).await
    }

    fn backend(&self) -> Backend {
        if self.config.jailer.is_some() {
            Backend::FirecrackerJailer
        } else {
            Backend::Firecracker
        }
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    async fn start(&self, spec: &BootSpec) -> Result<ProcessId, VmmError> {
        let mut run = self.run_dir(&spec.dir);
        run.prepare(spec, &self.config)?;
        let id = self.launch(spec, &run).await?;
        match self.configure_and_boot(spec, &run).await {
            Ok(()) => Ok(id),
            Err(e) => Err(self.abandon(&id, &spec.dir, e).await),
        }
    }

    fn console_socket(&self, dir: &Path) -> PathBuf {
        dir.join(CONSOLE_SOCKET)
    }

    fn agent_endpoint(&self, dir: &Path) -> AgentEndpoint {
        AgentEndpoint::HybridVsock {
            socket: self.run_dir(dir).root.join(VSOCK_SOCKET),
            port: AGENT_PORT,
        }
    }

    /// The shim's command line names the VM's directory (its console socket is there).
    fn find_process(&self, dir: &Path) -> Option<ProcessId> {
        process::find_by_pid_file(&dir.join(SHIM_PID), dir)
    }

    fn vm<'a>(&'a self, dir: &Path) -> Box<dyn VmHandle + 'a> {
        Box::new(FirecrackerVm {
            vmm: self,
            dir: dir.to_path_buf(),
        })
    }

    async fn restore(&self, spec: &BootSpec, state_dir: &Path) -> Result<ProcessId, VmmError> {
        let mut run = self.run_dir(&spec.dir);
        run.prepare(spec, &self.config)?;
        let (vmstate, memory) = run.link_snapshot(state_dir, &self.config)?;
        let id = self.launch(spec, &run).await?;
        let load = SnapshotLoadParams {
            snapshot_path: vmstate,
            mem_backend: MemoryBackend {
                backend_type: MemoryBackendType::File,
                backend_path: memory,
            },
            resume_vm: true,
            network_overrides: spec
                .net
                .iter()
                .map(|n| NetworkOverride {
                    iface_id: NET_IFACE.into(),
                    host_dev_name: n.tap.clone(),
                })
                .collect(),
            vsock_override: VsockOverride {
                uds_path: VSOCK_SOCKET.into(),
            },
        };
        let api = Api::new(&run.root.join(API_SOCKET));
        let loaded = async {
            api.put("/snapshot/load", &load).await?;
            let info: InstanceInfo = api.get("/").await?;
            match info.state {
                InstanceState::Running => Ok(()),
                other => Err(VmmError::Control(format!(
                    "the restored VM is not running (state {other:?})"
                ))),
            }
        }
        .await;
        match loaded {
            Ok(()) => Ok(id),
            Err(e) => Err(self.abandon(&id, &spec.dir, e).await),
        }
    }

    fn remove_vm_files(&self, dir: &Path) {
        self.run_dir(dir).remove();
    }

    /// Under the jailer, Firecracker opens the VM's TAP as the jail's user.
    fn tap_owner(&self) -> Option<(u32, u32)> {
        self.config.jailer.as_ref().map(|j| (j.uid, j.gid))
    }

    fn pause_unsupported(&self) -> Option<&'static str> {
        Some(
            "Firecracker's vsock hangs when a paused VM resumes without a snapshot in between \
             (firecracker#6100); checkpoint the VM instead",
        )
    }

    /// The jailer makes each VM's cgroups itself.
    fn manages_cgroups(&self) -> bool {
        self.config.jailer.is_some()
    }

    /// A restored Firecracker maps the checkpoint's memory file for as long as it runs.
    fn restore_maps_memory(&self) -> bool {
        true
    }

    async fn stop(&self, process: &ProcessId, grace: Duration) -> Result<(), VmmError> {
        // The shim passes SIGTERM on and exits with Firecracker.
        let result = process::terminate(process, grace).await;
        result
    }
}

/// A running Firecracker VM, reached over its API socket.
struct FirecrackerVm<'a> {
    vmm: &'a FirecrackerVmm,
    dir: PathBuf,
}

#[async_trait]
impl VmHandle for FirecrackerVm<'_> {
    async fn run_state(&self) -> Result<RunState, VmmError> {
        let info: InstanceInfo = self.vmm.api(&self.dir).get("/").await?;
        Ok(match info.state {
            InstanceState::Running => RunState::Running,
            InstanceState::Paused => {
                // Paused by a server that is gone, for all we know without a snapshot since:
                // a resume takes the throwaway snapshot that keeps vsock alive.
                self.vmm
                    .paused_bare
                    .lock()
                    .expect("paused set")
                    .insert(self.dir.clone());
                RunState::Paused
            }
            InstanceState::NotStarted => RunState::Other("not started".into()),
        })
    }

    async fn pause(&self) -> Result<(), VmmError> {
        self.vmm
            .api(&self.dir)
            .patch(
                "/vm",
                &Vm {
                    state: VmState::Paused,
                },
            )
            .await?;
        self.vmm
            .paused_bare
            .lock()
            .expect("paused set")
            .insert(self.dir.clone());
        Ok(())
    }

    /// Firecracker 1.16.x wedges host-initiated vsock connections after a pause and resume
    /// with no snapshot in between (firecracker#6100): the resume arms a reset gate that only
    /// the reset event queued by `snapshot/create` clears. So a VM paused without a snapshot
    /// (a checkpoint that failed before Firecracker wrote one) gets a throwaway snapshot
    /// before it runs again.
    async fn resume(&self) -> Result<(), VmmError> {
        let bare = self
            .vmm
            .paused_bare
            .lock()
            .expect("paused set")
            .remove(&self.dir);
        let api = self.vmm.api(&self.dir);
        if bare {
            let run = self.vmm.run_dir(&self.dir);
            let throwaway = SnapshotCreateParams {
                snapshot_type: SnapshotType::Full,
                snapshot_path: "discard.vmstate".into(),
                mem_file_path: "discard.memory".into(),
            };
            if let Err(e) = api.put("/snapshot/create", &throwaway).await {
                tracing::warn!(
                    "cannot take the snapshot that keeps vsock alive across a resume ({e}): \
                     the agent may not answer until the VM is restarted"
                );
            }
            let _ = std::fs::remove_file(run.root.join("discard.vmstate"));
            let _ = std::fs::remove_file(run.root.join("discard.memory"));
        }
        api.patch(
            "/vm",
            &Vm {
                state: VmState::Resumed,
            },
        )
        .await
    }

    async fn save_state(&self, out_dir: &Path) -> Result<Vec<SavedFile>, VmmError> {
        let run = self.vmm.run_dir(&self.dir);
        let params = SnapshotCreateParams {
            snapshot_type: SnapshotType::Full,
            snapshot_path: format!("{VMSTATE_FILE}.new"),
            mem_file_path: format!("{MEMORY_FILE}.new"),
        };
        let result = self
            .vmm
            .api(&self.dir)
            .put("/snapshot/create", &params)
            .await;
        self.vmm
            .paused_bare
            .lock()
            .expect("paused set")
            .remove(&self.dir);
        let mut saved = Vec::new();
        for (written, name) in [
            (&params.snapshot_path, VMSTATE_FILE),
            (&params.mem_file_path, MEMORY_FILE),
        ] {
            let from = run.root.join(written);
            if result.is_err() {
                let _ = std::fs::remove_file(&from);
                continue;
            }
            let to = out_dir.join(name);
            jail::move_file(&from, &to)?;
            let path = to.clone();
            let sha256 = tokio::task::spawn_blocking(move || crate::checksum::file_sha256(&path))
                .await
                .map_err(|e| VmmError::Control(e.to_string()))??;
            saved.push(SavedFile {
                name: name.into(),
                bytes: std::fs::metadata(&to)?.len(),
                sha256: Some(sha256),
            });
        }
        result.map(|()| saved)
    }
}
