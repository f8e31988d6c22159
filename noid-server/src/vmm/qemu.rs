//! The QEMU backend: `qemu-system-x86_64 -M microvm`, KVM or TCG, controlled over QMP (a
//! running VM is a `QemuVm`: its directory, where the QMP socket is). The agent channel is a
//! virtio-serial port on a Unix socket (vhost-user-vsock cannot migrate). QEMU daemonizes, so
//! it outlives the server; its pid file and start time identify it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::accel::Accel;
use super::qemu_img::QemuImg;
use super::qemu_snapshot::{MEMORY_FILE, RAM_BLOCK};
use super::qmp::Qmp;
use super::{process, BootSpec, DiskFormat, RunState, SavedFile, VmHandle, Vmm, VmmError};
use crate::core::model::ProcessId;
use crate::core::model::{AgentEndpoint, Backend};
use noid::guest::transfer_disk;

/// File names inside a VM's directory; QEMU runs there, so they stay relative and short.
pub const AGENT_SOCKET: &str = "agent.sock";
/// QEMU device id of the agent's virtio-serial port.
pub const AGENT_PORT_ID: &str = "agentport";
pub const QMP_SOCKET: &str = "qmp.sock";
pub const CONSOLE_SOCKET: &str = "console.sock";
const PID_FILE: &str = "qemu.pid";
/// The CPU priority (nice) a warm VMM starts and waits at.
const WARM_NICE: i32 = 10;

pub struct QemuVmm {
    binary: PathBuf,
    accel: Accel,
    version: String,
    /// The host's TSC rate, handed to TCG guests (see `host_tsc_khz`).
    tsc_khz: Option<u64>,
    /// The binary's process name, for reaping what its daemonizing leaves.
    comm: String,
    /// Pids of launchers being waited for right now (not to be reaped by anyone else).
    launching: Arc<std::sync::Mutex<Vec<u32>>>,
    /// Makes qcow2 overlays, if `qemu-img` is installed.
    overlays: Option<Arc<QemuImg>>,
    /// Saves guest RAM as a memory file apart from the migration stream.
    memory_files: bool,
    /// TCG's code buffer in MiB (0: QEMU's default).
    tb_size_mib: u32,
}

/// Measures the host's TSC rate against the monotonic clock.
///
/// A TCG guest reads the host's TSC, but calibrates it against an emulated PIT whose timing
/// slips when the host is busy (several guests booting at once on two cores): calibration
/// then fails ("Unable to calibrate against PIT") and the guest kernel hangs before its
/// console comes up. Passing the rate as `tsc_early_khz` skips that calibration.
#[cfg(target_arch = "x86_64")]
pub fn host_tsc_khz() -> Option<u64> {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    // SAFETY: rdtsc only reads the time-stamp counter; every x86_64 CPU has it.
    let c0 = unsafe { core::arch::x86_64::_rdtsc() };
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: as above.
    let c1 = unsafe { core::arch::x86_64::_rdtsc() };
    let ns = t0.elapsed().as_nanos() as u64;
    (ns > 0 && c1 > c0).then(|| (c1 - c0) * 1_000_000 / ns)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn host_tsc_khz() -> Option<u64> {
    None
}

impl QemuVmm {
    pub fn new(config: &crate::config::QemuConfig, accel: Accel) -> Self {
        let binary = config.binary.clone();
        let tsc_khz = match accel {
            Accel::Tcg => host_tsc_khz(),
            Accel::Kvm => None,
        };
        let version = std::process::Command::new(&binary)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.lines().next().map(|l| {
                    l.trim_start_matches("QEMU emulator version ")
                        .trim()
                        .to_string()
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let comm = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let overlays = QemuImg::find(&binary).map(Arc::new);
        if overlays.is_none() {
            tracing::warn!("qemu-img not found: every VM gets a full copy of its disk");
        }
        Self {
            memory_files: config.memory_files,
            tb_size_mib: config.tb_size_mib,
            overlays,
            binary,
            accel,
            version,
            tsc_khz,
            comm,
            launching: Default::default(),
        }
    }

    pub(super) fn qmp_socket(dir: &Path) -> PathBuf {
        dir.join(QMP_SOCKET)
    }

    /// Starts QEMU (daemonized) for `spec`; with `incoming` it waits for migration state.
    /// `transfer_disk`: the size of the transfer disk to attach (a fresh, empty one), if any.
    /// `memory_file`: a saved RAM file to map copy-on-write as the guest's RAM. `nice`: the
    /// CPU priority QEMU starts with (0: the normal one).
    pub(super) async fn launch(
        &self,
        spec: &BootSpec,
        incoming: bool,
        transfer_disk: Option<u64>,
        memory_file: Option<&Path>,
        nice: i32,
    ) -> Result<ProcessId, VmmError> {
        let mut args = self.args(spec, incoming, memory_file);
        let disk_file = spec.dir.join(transfer_disk::FILE);
        match transfer_disk {
            Some(bytes) => {
                std::fs::File::create(&disk_file)?.set_len(bytes)?;
                args.extend([
                    "-drive".into(),
                    // An absolute path: QEMU reopens its disks at the end of a migration,
                    // after daemonizing has moved it to `/`.
                    format!(
                        "id=transfer,file={},format=raw,if=none",
                        disk_file.display()
                    ),
                    "-device".into(),
                    format!(
                        "virtio-blk-device,drive=transfer,serial={}",
                        transfer_disk::SERIAL
                    ),
                ]);
            }
            None => match std::fs::remove_file(&disk_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        if incoming {
            args.extend(["-incoming".into(), "defer".into(), "-S".into()]);
        }
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .current_dir(&spec.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if !spec.cgroup.is_empty() {
            let slot = spec.cgroup.clone();
            // SAFETY: the closure only opens, writes and closes files (async-signal-safe).
            unsafe { command.pre_exec(move || slot.enter_before_exec()) };
        }
        if nice != 0 {
            // SAFETY: setpriority on the calling process, async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                    Ok(())
                })
            };
        }
        let launcher = command
            .spawn()
            .map_err(|e| VmmError::Start(format!("{}: {e}", self.binary.display())))?;
        // The launcher is waited for here; the middle process of QEMU's daemonizing is not
        // anyone's, so it is reaped below, once the launcher is done.
        let launcher_pid = launcher.id().unwrap_or(0);
        self.launching.lock().expect("launching").push(launcher_pid);
        let output = launcher.wait_with_output().await;
        let keep = {
            let mut launching = self.launching.lock().expect("launching");
            launching.retain(|p| *p != launcher_pid);
            launching.clone()
        };
        process::reap_zombies_named(&self.comm, &keep);
        // The middle process may exit only after the launcher: look once more a moment later.
        let (comm, launching) = (self.comm.clone(), self.launching.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let keep = launching.lock().expect("launching").clone();
            process::reap_zombies_named(&comm, &keep);
        });
        let output =
            output.map_err(|e| VmmError::Start(format!("{}: {e}", self.binary.display())))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let msg = stderr
                .lines()
                .last()
                .unwrap_or("exited with an error")
                .trim();
            return Err(VmmError::Start(msg.to_string()));
        }
        let pid_text = std::fs::read_to_string(spec.dir.join(PID_FILE))?;
        let pid: u32 = pid_text
            .trim()
            .parse()
            .map_err(|_| VmmError::Start(format!("unreadable pid file: {pid_text:?}")))?;
        process::identify(pid)
            .ok_or_else(|| VmmError::Start("QEMU exited right after starting".into()))
    }

    /// The command line for `spec`. A VM that will receive saved state (`incoming`) gets no
    /// kernel: its memory comes from the state, and the kernel and initramfs would only be
    /// read into the process's own memory (tens of MiB per VM) for nothing.
    fn args(&self, spec: &BootSpec, incoming: bool, memory_file: Option<&Path>) -> Vec<String> {
        let cpu = match self.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        };
        let path = |p: &Path| p.display().to_string();
        let mut machine = "microvm,x-option-roms=off,rtc=on".to_string();
        let mut accel = self.accel.as_str().to_string();
        if self.accel == Accel::Tcg && self.tb_size_mib > 0 {
            accel.push_str(&format!(",tb-size={}", self.tb_size_mib));
        }
        let mut a: Vec<String> = Vec::new();
        if let Some(file) = memory_file {
            // Private: the guest's writes are its own; the file is never written.
            a.extend([
                "-object".into(),
                format!(
                    "memory-backend-file,id={RAM_BLOCK},size={}M,mem-path={},share=off",
                    spec.memory_mib,
                    path(file)
                ),
            ]);
            machine.push_str(&format!(",memory-backend={RAM_BLOCK}"));
        }
        a.extend([
            "-M".into(),
            machine,
            "-accel".into(),
            accel,
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            spec.cpus.to_string(),
            "-m".into(),
            format!("{}M", spec.memory_mib),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-drive".into(),
            format!(
                "id=root,file={},format={},if=none",
                path(&spec.rootfs),
                match spec.rootfs_format {
                    DiskFormat::Raw => "raw",
                    DiskFormat::Qcow2 => "qcow2",
                }
            ),
            "-device".into(),
            "virtio-blk-device,drive=root".into(),
            "-device".into(),
            "virtio-rng-device".into(),
            "-device".into(),
            "virtio-serial-device,max_ports=2".into(),
            "-chardev".into(),
            format!("socket,id=agent,path={AGENT_SOCKET},server=on,wait=off"),
            "-device".into(),
            format!(
                "virtserialport,chardev=agent,name={},id={AGENT_PORT_ID}",
                noid::guest::SERIAL_PORT_NAME
            ),
            "-chardev".into(),
            format!("socket,id=console,path={CONSOLE_SOCKET},server=on,wait=off"),
            "-serial".into(),
            "chardev:console".into(),
            "-qmp".into(),
            format!("unix:{QMP_SOCKET},server=on,wait=off"),
            "-pidfile".into(),
            PID_FILE.into(),
            "-daemonize".into(),
        ]);
        if !incoming {
            let mut extra = "reboot=t".to_string();
            if let Some(khz) = self.tsc_khz {
                extra.push_str(&format!(" tsc_early_khz={khz}"));
            }
            let cmdline = super::kernel_cmdline(spec, &extra);
            a.extend([
                "-kernel".into(),
                path(&spec.kernel),
                "-initrd".into(),
                path(&spec.initrd),
                "-append".into(),
                cmdline,
            ]);
        }
        if let Some(n) = &spec.net {
            a.extend([
                "-netdev".into(),
                format!("tap,id=net0,ifname={},script=no,downscript=no", n.tap),
                "-device".into(),
                format!("virtio-net-device,netdev=net0,mac={}", n.mac),
            ]);
        }
        a.shrink_to_fit();
        a
    }
}

#[async_trait]
impl Vmm for QemuVmm {
    fn is_running(&self, process: &ProcessId) -> bool {
        process::is_alive(process)
    }

    async fn wait_exit(&self, process: &ProcessId, limit: std::time::Duration) -> bool {
        process::wait_exit(process, limit).await
    }

    async fn stop(&self, process: &ProcessId, grace: std::time::Duration) -> Result<(), VmmError> {
        process::terminate(process, grace).await
    }

    fn backend(&self) -> Backend {
        match self.accel {
            Accel::Kvm => Backend::QemuKvm,
            Accel::Tcg => Backend::QemuTcg,
        }
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    async fn start(&self, spec: &BootSpec) -> Result<ProcessId, VmmError> {
        let id = self
            .launch(spec, false, Some(transfer_disk::BYTES), None, 0)
            .await?;
        let mut qmp = Qmp::connect(&Self::qmp_socket(&spec.dir)).await?;
        let status = qmp.status().await?;
        if status != "running" {
            let _ = process::terminate(&id, std::time::Duration::from_secs(1)).await;
            return Err(VmmError::Start(format!("QEMU is not running: {status}")));
        }
        Ok(id)
    }

    fn disk_overlays(&self) -> Option<Arc<dyn crate::core::ports::disk::DiskOverlays>> {
        self.overlays
            .clone()
            .map(|o| o as Arc<dyn crate::core::ports::disk::DiskOverlays>)
    }

    /// QEMU stops a guest whose disk write failed (`werror=enospc`, its default).
    fn pauses_on_its_own(&self) -> bool {
        true
    }

    fn vm<'a>(&'a self, dir: &Path) -> Box<dyn VmHandle + 'a> {
        Box::new(QemuVm {
            qmp: Self::qmp_socket(dir),
            dir: dir.to_path_buf(),
            memory_files: self.memory_files,
        })
    }

    fn snapshot_flavor(&self) -> String {
        if self.memory_files {
            "memory-file".into()
        } else {
            "stream".into()
        }
    }

    async fn restore(&self, spec: &BootSpec, state_dir: &Path) -> Result<ProcessId, VmmError> {
        let started = std::time::Instant::now();
        let id = self.launch_for_state(spec, state_dir, 0).await?;
        tracing::debug!("QEMU started for a restore in {:?}", started.elapsed());
        let result = self.load_waiting(spec, state_dir).await;
        tracing::debug!("QEMU restored in {:?}", started.elapsed());
        if let Err(e) = result {
            let _ = process::terminate(&id, std::time::Duration::from_secs(1)).await;
            return Err(e);
        }
        Ok(id)
    }

    fn can_wait_for_state(&self) -> bool {
        true
    }

    /// QEMU started at a low CPU priority (nice `WARM_NICE`): starting it never slows a
    /// create or anything else in flight.
    async fn start_waiting(
        &self,
        spec: &BootSpec,
        state_dir: &Path,
    ) -> Result<ProcessId, VmmError> {
        self.launch_for_state(spec, state_dir, WARM_NICE).await
    }

    async fn load_waiting(&self, spec: &BootSpec, state_dir: &Path) -> Result<(), VmmError> {
        super::qemu_snapshot::load(&Self::qmp_socket(&spec.dir), state_dir).await
    }

    fn set_normal_priority(&self, process: &ProcessId) {
        process::set_nice(process.pid, 0);
    }

    fn find_process(&self, dir: &Path) -> Option<ProcessId> {
        process::find_by_pid_file(&dir.join(PID_FILE), dir)
    }

    fn console_socket(&self, dir: &Path) -> PathBuf {
        dir.join(CONSOLE_SOCKET)
    }

    fn agent_endpoint(&self, dir: &Path) -> AgentEndpoint {
        let disk = dir.join(transfer_disk::FILE);
        AgentEndpoint::Serial {
            socket: dir.join(AGENT_SOCKET),
            transfer_disk: disk.exists().then_some(disk),
        }
    }
}

impl QemuVmm {
    /// QEMU with the state's devices and memory file, stopped (`-S`) and waiting for the
    /// device state (`-incoming defer`), at CPU priority `nice`.
    async fn launch_for_state(
        &self,
        spec: &BootSpec,
        state_dir: &Path,
        nice: i32,
    ) -> Result<ProcessId, VmmError> {
        // The devices must be those the state was saved with: a checkpoint from before the
        // transfer disk existed restores without one (its copies take the agent channel).
        let disk = super::qemu_snapshot::saved_transfer_disk(state_dir)?;
        let memory = state_dir.join(MEMORY_FILE);
        let memory = memory.exists().then_some(memory.as_path());
        self.launch(spec, true, disk, memory, nice).await
    }
}

/// A running QEMU VM, reached over its QMP socket.
struct QemuVm {
    qmp: PathBuf,
    dir: PathBuf,
    memory_files: bool,
}

#[async_trait]
impl VmHandle for QemuVm {
    async fn run_state(&self) -> Result<RunState, VmmError> {
        let mut qmp = Qmp::connect(&self.qmp).await?;
        Ok(match qmp.status().await?.as_str() {
            "running" => RunState::Running,
            "io-error" => RunState::IoError,
            // Paused by `stop`, or left by an outgoing migration (a checkpoint).
            "paused" | "postmigrate" | "finish-migrate" => RunState::Paused,
            other => RunState::Other(other.to_string()),
        })
    }

    async fn pause(&self) -> Result<(), VmmError> {
        let mut qmp = Qmp::connect(&self.qmp).await?;
        qmp.execute("stop", json!({})).await?;
        Ok(())
    }

    async fn resume(&self) -> Result<(), VmmError> {
        let mut qmp = Qmp::connect(&self.qmp).await?;
        qmp.execute("cont", json!({})).await?;
        Ok(())
    }

    async fn save_state(&self, out_dir: &Path) -> Result<Vec<SavedFile>, VmmError> {
        super::qemu_snapshot::save(&self.qmp, &self.dir, out_dir, self.memory_files).await
    }

    async fn hang_up_agent(&self, hang_up: Box<dyn FnOnce() + Send>) -> Result<(), VmmError> {
        let mut qmp = Qmp::connect(&self.qmp).await?;
        hang_up();
        super::qemu_snapshot::wait_agent_disconnected(&mut qmp).await
    }
}
