//! Telling systemd how the server is doing (`sd_notify(3)`): ready once both APIs listen,
//! stopping when a signal came. Only when systemd asked for it (`Type=notify` sets
//! `NOTIFY_SOCKET`); a no-op otherwise.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to systemd's notification socket, if there is one.
pub fn notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        notify_to(&path, state);
    }
}

/// Sends `state` to the socket at `path` (`@name`: an abstract one).
fn notify_to(path: &std::ffi::OsStr, state: &str) {
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let path = path.as_encoded_bytes();
        match path.strip_prefix(b"@") {
            // An abstract socket: the name after the '@'.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), std::ffi::OsStr::from_bytes(path)),
        }
    });
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd {state}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_state_to_the_socket_systemd_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
