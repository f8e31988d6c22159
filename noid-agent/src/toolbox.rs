//! The programs the agent runs for itself (`ip`, a shell): the image's own where it has them,
//! otherwise the busybox that the initramfs put beside the agent under `/run/noid`, so an
//! image without iproute2 or even a shell (a minimal Debian, a distroless image) still gets
//! its network and console.

use std::path::Path;
use std::process::Command;

/// Where the initramfs leaves the agent and its busybox (a tmpfs in the guest's `/run`).
pub const DIR: &str = "/run/noid";
const BUSYBOX: &str = "/run/noid/bin/busybox";

/// A command for `argv`: the image's program if it has one on the standard path, else the
/// busybox applet of that name.
pub fn command(argv: &[String]) -> Command {
    let (prog, args) = argv.split_first().expect("a command has a program");
    if !has(prog) && Path::new(BUSYBOX).exists() {
        let mut c = Command::new(BUSYBOX);
        c.arg(prog).args(args);
        return c;
    }
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// The shell for the console: the image's `/bin/sh`, else busybox's.
pub fn shell() -> Command {
    if Path::new("/bin/sh").exists() || !Path::new(BUSYBOX).exists() {
        Command::new("/bin/sh")
    } else {
        let mut c = Command::new(BUSYBOX);
        c.arg("sh");
        c
    }
}

fn has(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).exists();
    }
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|d| Path::new(d).join(prog).exists())
}

/// A directory to start in: `preferred` where the image has it, else `/`.
pub fn dir_or_root(preferred: &str) -> &str {
    if Path::new(preferred).is_dir() {
        preferred
    } else {
        "/"
    }
}
