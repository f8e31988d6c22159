//! The virtio-serial transport (QEMU). The port is a character device that carries one host
//! connection at a time. While no host is connected a read returns 0 and poll reports POLLHUP,
//! so between sessions the agent waits for the hang-up to clear (sleeping, never spinning), then
//! serves a fresh HTTP/2 session. The port survives migration; a restore is just a reconnect.
//!
//! The wait is woken by the driver: with `O_ASYNC` on the port, virtio-console sends SIGIO when
//! the host's side opens, so a restored VM answers at once. It still looks every `HOST_POLL`
//! in case a signal is missed, but seldom: under emulation each look costs the host CPU, and
//! looking every 20 ms made each VM that no host was connected to (all of them, after a
//! server restart) take about 7% of a host CPU while idle.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use noid::agent::v1::agent_server::AgentServer;

use crate::fdstream::FdStream;
use crate::service::AgentService;

/// Without SIGIO (the signal could not be set up) the agent looks this often.
const HOST_POLL_ALONE: Duration = Duration::from_millis(20);
const HOST_POLL: Duration = Duration::from_secs(1);

/// Finds the device node of the virtio-serial port called `name`.
pub fn find_port(name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for e in entries.flatten() {
        let port_name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if port_name.trim() == name {
            return Some(PathBuf::from("/dev").join(e.file_name()));
        }
    }
    None
}

fn open_port(path: &std::path::Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in a device path");
    // SAFETY: opens a valid C path; the returned descriptor is checked and then owned.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Turns SIGIO on the port's state changes on or off (on while waiting for a host: during a
/// session every incoming buffer would signal).
fn signal_changes(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, libc::getpid()) < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_ASYNC
        } else {
            flags & !libc::O_ASYNC
        };
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn host_connected(fd: &OwnedFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one pollfd that lives on the stack, without blocking.
    if unsafe { libc::poll(&mut pfd, 1, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pfd.revents & libc::POLLHUP == 0)
}

/// Serves sessions on the port named `name` forever.
pub async fn serve(name: String, service: AgentServer<AgentService>) {
    let path = loop {
        match find_port(&name) {
            Some(p) => break p,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    eprintln!(
        "noid-agent: serving on virtio-serial port {name} ({})",
        path.display()
    );
    // Made before O_ASYNC is ever set: SIGIO's default action ends the process.
    let mut sigio = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::io())
        .map_err(|e| eprintln!("noid-agent: SIGIO: {e}"))
        .ok();
    loop {
        let fd = match open_port(&path) {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("noid-agent: open {}: {e}", path.display());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Woken by the driver only where the signal is set up for this descriptor.
        let mut wake = sigio.as_mut().filter(|_| match signal_changes(&fd, true) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("noid-agent: O_ASYNC: {e}");
                false
            }
        });
        let signalled = wake.is_some();
        loop {
            match host_connected(&fd) {
                Ok(true) => break,
                Ok(false) => match wake.as_mut() {
                    Some(sigio) => {
                        let _ = tokio::time::timeout(HOST_POLL, sigio.recv()).await;
                    }
                    None => tokio::time::sleep(HOST_POLL_ALONE).await,
                },
                Err(e) => {
                    eprintln!("noid-agent: poll: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if signalled {
            let _ = signal_changes(&fd, false);
        }
        match FdStream::new(fd, false) {
            Ok(stream) => super::serve_connection(stream, service.clone()).await,
            Err(e) => eprintln!("noid-agent: port: {e}"),
        }
        // The descriptor closes here; a fresh open starts the next session clean.
    }
}
