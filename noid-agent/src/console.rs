//! A shell on the serial console (as PID 1 only), started again whenever it exits, so that
//! `noid console` always finds a prompt.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use crate::reaper::Reaper;

const TTY: &str = "/dev/ttyS0";

fn spawn(
    reaper: &Reaper,
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::process::ExitStatus>> {
    let tty = || std::fs::OpenOptions::new().read(true).write(true).open(TTY);
    let mut cmd = crate::toolbox::shell();
    cmd.arg("-l")
        .current_dir(crate::toolbox::dir_or_root("/root"))
        .env_clear()
        .envs([
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("HOME", "/root"),
            ("TERM", "vt100"),
            ("USER", "root"),
        ])
        .stdin(Stdio::from(tty()?))
        .stdout(Stdio::from(tty()?))
        .stderr(Stdio::from(tty()?));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::ioctl(0, libc::TIOCSCTTY, 1);
            Ok(())
        });
    }
    let (_child, exit) = reaper.spawn(&mut cmd)?;
    Ok(exit)
}

pub async fn shell_loop(reaper: Reaper) {
    if !std::path::Path::new("/bin/sh").exists() {
        return;
    }
    loop {
        match spawn(&reaper) {
            Ok(exit) => {
                let _ = exit.await;
            }
            Err(e) => eprintln!("noid-agent: console shell: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sets the console's window size; the kernel signals the shell (SIGWINCH).
pub fn resize(rows: u32, cols: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TTY)?;
    let ws = libc::winsize {
        ws_row: rows.clamp(1, u16::MAX.into()) as u16,
        ws_col: cols.clamp(1, u16::MAX.into()) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a pointer to a live local.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
