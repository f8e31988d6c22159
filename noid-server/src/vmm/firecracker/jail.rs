//! Where a VM's Firecracker runs and what it sees there. Without the jailer that is the VM's
//! own directory, with the kernel and initrd named by absolute path. Under the jailer it is
//! the chroot `<chroot_base>/<exec name>/<vm id>/root`, holding hard links to the boot files,
//! the VM's disk (owned by the jail's user) and checkpoint files (copies where a hard link
//! cannot be made). Firecracker only reads all but the disk.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};

use super::{FirecrackerConfig, MEMORY_FILE, ROOTFS, VMSTATE_FILE};
use crate::vmm::{BootSpec, VmmError};

/// Jailer settings (see the README's production notes).
#[derive(Debug, Clone)]
pub struct JailerConfig {
    pub binary: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub chroot_base: PathBuf,
    /// Cgroup settings the jailer applies to each VM (`--cgroup`, e.g. `cpu.max=100000
    /// 100000`), on this cgroup version.
    pub cgroups: Vec<String>,
    pub cgroup_version: u8,
}

/// The directory Firecracker runs in, and how it names the boot files.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
    vm_id: String,
    pub kernel: String,
    pub initrd: Option<String>,
    jailed: bool,
}

impl RunDir {
    pub fn new(vm_dir: &Path, config: &FirecrackerConfig) -> Self {
        let vm_id = vm_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &config.jailer {
            None => Self {
                root: vm_dir.to_path_buf(),
                vm_id,
                kernel: String::new(),
                initrd: None,
                jailed: false,
            },
            Some(j) => Self {
                root: j
                    .chroot_base
                    .join(exec_name(&config.binary))
                    .join(&vm_id)
                    .join("root"),
                vm_id,
                kernel: "vmlinux".into(),
                initrd: Some("initrd.img".into()),
                jailed: true,
            },
        }
    }

    /// Makes the run directory ready for a fresh Firecracker of `spec`.
    pub fn prepare(&mut self, spec: &BootSpec, config: &FirecrackerConfig) -> Result<(), VmmError> {
        if !spec.kernel_elf.exists() {
            return Err(VmmError::Start(format!(
                "Firecracker boots an uncompressed kernel and the image has none: {} is \
                 missing (rebuild the image with deploy/build-image.sh)",
                spec.kernel_elf.display()
            )));
        }
        let Some(j) = &config.jailer else {
            self.kernel = spec.kernel_elf.display().to_string();
            self.initrd = Some(spec.initrd.display().to_string());
            return Ok(());
        };
        std::fs::create_dir_all(&self.root)?;
        chown(&self.root, Some(j.uid), Some(j.gid))?;
        for (from, name) in [
            (&spec.kernel_elf, "vmlinux"),
            (&spec.initrd, "initrd.img"),
            (&spec.rootfs, ROOTFS),
        ] {
            link_or_copy(from, &self.root.join(name))?;
        }
        // Firecracker writes only the disk; the rest it reads, and a hard link shares the
        // owner with the image's file, which must stay as it is.
        chown(self.root.join(ROOTFS), Some(j.uid), Some(j.gid))?;
        Ok(())
    }

    /// The checkpoint files as Firecracker is to name them: the vmstate and memory file.
    pub fn link_snapshot(
        &self,
        state_dir: &Path,
        config: &FirecrackerConfig,
    ) -> Result<(String, String), VmmError> {
        if config.jailer.is_none() {
            let abs = |n: &str| state_dir.join(n).display().to_string();
            return Ok((abs(VMSTATE_FILE), abs(MEMORY_FILE)));
        };
        for name in [VMSTATE_FILE, MEMORY_FILE] {
            link_or_copy(&state_dir.join(name), &self.root.join(name))?;
        }
        Ok((VMSTATE_FILE.into(), MEMORY_FILE.into()))
    }

    /// The program and arguments that run Firecracker.
    pub fn command(&self, config: &FirecrackerConfig) -> (OsString, Vec<OsString>) {
        let api_sock = if self.jailed {
            format!("/{}", super::API_SOCKET)
        } else {
            super::API_SOCKET.to_string()
        };
        let fc_args: Vec<OsString> = vec!["--api-sock".into(), api_sock.into()];
        match &config.jailer {
            None => {
                let mut a: Vec<OsString> = vec!["--id".into(), self.vm_id.clone().into()];
                a.extend(fc_args);
                (config.binary.clone().into(), a)
            }
            Some(j) => {
                let mut a: Vec<OsString> = vec![
                    "--id".into(),
                    self.vm_id.clone().into(),
                    "--exec-file".into(),
                    config.binary.clone().into(),
                    "--uid".into(),
                    j.uid.to_string().into(),
                    "--gid".into(),
                    j.gid.to_string().into(),
                    "--chroot-base-dir".into(),
                    j.chroot_base.clone().into(),
                    "--cgroup-version".into(),
                    j.cgroup_version.to_string().into(),
                ];
                for c in &j.cgroups {
                    a.extend(["--cgroup".into(), c.into()]);
                }
                a.push("--".into());
                a.extend(fc_args);
                (j.binary.clone().into(), a)
            }
        }
    }

    /// Removes the jail of a VM that is gone (nothing to do without the jailer).
    pub fn remove(&self) {
        if self.jailed {
            if let Some(jail) = self.root.parent() {
                let _ = std::fs::remove_dir_all(jail);
            }
        }
    }
}

/// The jailer names the chroot after the executable's file name.
fn exec_name(binary: &Path) -> String {
    binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "firecracker".into())
}

/// Hard-links `from` to `to` (replacing `to`), or copies where no link can be made.
fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    crate::storage::clone_file(from, to).map(|_| ())
}

/// Moves a file Firecracker wrote into the checkpoint being made.
pub fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            crate::storage::clone_file(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jailer: bool) -> FirecrackerConfig {
        FirecrackerConfig {
            binary: "/usr/local/bin/firecracker".into(),
            jailer: jailer.then(|| JailerConfig {
                binary: "/usr/local/bin/jailer".into(),
                uid: 900,
                gid: 901,
                chroot_base: "/srv/jailer".into(),
                cgroups: vec!["cpu.weight=50".into()],
                cgroup_version: 2,
            }),
        }
    }

    #[test]
    fn runs_in_the_vm_directory_or_the_jail() {
        let direct = RunDir::new(Path::new("/data/vms/0123456789ab"), &config(false));
        assert_eq!(direct.root, Path::new("/data/vms/0123456789ab"));
        let (prog, args) = direct.command(&config(false));
        assert_eq!(prog, "/usr/local/bin/firecracker");
        assert_eq!(
            args,
            ["--id", "0123456789ab", "--api-sock", "firecracker.sock"]
        );

        let jailed = RunDir::new(Path::new("/data/vms/0123456789ab"), &config(true));
        assert_eq!(
            jailed.root,
            Path::new("/srv/jailer/firecracker/0123456789ab/root")
        );
        let (prog, args) = jailed.command(&config(true));
        assert_eq!(prog, "/usr/local/bin/jailer");
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args.join(" "),
            "--id 0123456789ab --exec-file /usr/local/bin/firecracker --uid 900 --gid 901 \
             --chroot-base-dir /srv/jailer --cgroup-version 2 --cgroup cpu.weight=50 -- \
             --api-sock /firecracker.sock"
        );
    }
}
