//! The QEMU backend: `qemu-system-x86_64 -M microvm`, KVM or TCG, controlled over QMP. The
//! agent channel is a virtio-serial port on a Unix socket (vhost-user-vsock cannot migrate).
//! QEMU daemonizes, so it outlives the server; its pid file and start time identify it.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;

use super::accel::Accel;
use super::qmp::Qmp;
use super::{process, AgentEndpoint, BootSpec, Vmm, VmmError};
use crate::store::ProcessId;

/// File names inside a VM's directory; QEMU runs there, so they stay relative and short.
pub const AGENT_SOCKET: &str = "agent.sock";
pub const QMP_SOCKET: &str = "qmp.sock";
pub const CONSOLE_SOCKET: &str = "console.sock";
pub const CONSOLE_LOG: &str = "console.log";
const PID_FILE: &str = "qemu.pid";

pub struct QemuVmm {
    binary: PathBuf,
    accel: Accel,
    /// The host's TSC rate, handed to TCG guests (see `host_tsc_khz`).
    tsc_khz: Option<u64>,
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
    pub fn new(binary: PathBuf, accel: Accel) -> Self {
        let tsc_khz = match accel {
            Accel::Tcg => host_tsc_khz(),
            Accel::Kvm => None,
        };
        Self {
            binary,
            accel,
            tsc_khz,
        }
    }

    fn args(&self, spec: &BootSpec) -> Vec<String> {
        let mut cmdline = format!(
            "console=ttyS0 root=/dev/vda rw quiet panic=-1 reboot=t noid.hostname={}",
            spec.hostname
        );
        if let Some(khz) = self.tsc_khz {
            cmdline.push_str(&format!(" tsc_early_khz={khz}"));
        }
        let cpu = match self.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        };
        let path = |p: &Path| p.display().to_string();
        let mut a: Vec<String> = vec![
            "-M".into(),
            "microvm,x-option-roms=off,rtc=on".into(),
            "-accel".into(),
            self.accel.as_str().into(),
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
            "-kernel".into(),
            path(&spec.kernel),
            "-initrd".into(),
            path(&spec.initrd),
            "-append".into(),
            cmdline,
            "-drive".into(),
            format!("id=root,file={},format=raw,if=none", path(&spec.rootfs)),
            "-device".into(),
            "virtio-blk-device,drive=root".into(),
            "-device".into(),
            "virtio-rng-device".into(),
            "-device".into(),
            "virtio-serial-device,max_ports=2".into(),
            "-chardev".into(),
            format!("socket,id=agent,path={AGENT_SOCKET},server=on,wait=off"),
            "-device".into(),
            "virtserialport,chardev=agent,name=noid.agent".into(),
            "-chardev".into(),
            format!(
                "socket,id=console,path={CONSOLE_SOCKET},server=on,wait=off,logfile={CONSOLE_LOG},logappend=on"
            ),
            "-serial".into(),
            "chardev:console".into(),
            "-qmp".into(),
            format!("unix:{QMP_SOCKET},server=on,wait=off"),
            "-pidfile".into(),
            PID_FILE.into(),
            "-daemonize".into(),
        ];
        a.shrink_to_fit();
        a
    }
}

#[async_trait]
impl Vmm for QemuVmm {
    fn backend(&self) -> String {
        format!("qemu/{}", self.accel.as_str())
    }

    async fn start(&self, spec: &BootSpec) -> Result<ProcessId, VmmError> {
        let output = tokio::process::Command::new(&self.binary)
            .args(self.args(spec))
            .current_dir(&spec.dir)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| VmmError::Start(format!("{}: {e}", self.binary.display())))?;
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
        let id = process::identify(pid)
            .ok_or_else(|| VmmError::Start("QEMU exited right after starting".into()))?;
        let mut qmp = Qmp::connect(&spec.dir.join(QMP_SOCKET)).await?;
        let status = qmp.execute("query-status", json!({})).await?;
        if status.get("status").and_then(|s| s.as_str()) != Some("running") {
            let _ = process::terminate(&id, std::time::Duration::from_secs(1)).await;
            return Err(VmmError::Start(format!("QEMU is not running: {status}")));
        }
        Ok(id)
    }

    fn agent_endpoint(&self, dir: &Path) -> AgentEndpoint {
        AgentEndpoint::Serial(dir.join(AGENT_SOCKET))
    }
}
