//! The systemd unit as systemd reads it (`systemd-analyze verify`, and the sandboxing that
//! `systemd-analyze security` scores), and the server telling systemd it is ready and
//! stopping over `NOTIFY_SOCKET`, as `Type=notify` wants.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The unit with its ExecStart pointing at the binary this build made.
fn unit_here(dir: &std::path::Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/noid-server.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/noid-server serve"));
    let here = unit.replace(
        "/usr/local/bin/noid-server",
        &common::bin("noid-server").display().to_string(),
    );
    let path = dir.join("noid-server.service");
    std::fs::write(&path, here).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_is_sandboxed() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_here(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (deploy/install-deps.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("noid-server.service"),
        "systemd has something to say about the unit: {stderr}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for kept in [
        "✓ ProtectHome=",
        "✓ NoNewPrivileges=",
        "✓ PrivateTmp=",
        "✓ ProtectKernelModules=",
        "✓ UMask=",
        "✓ CapabilityBoundingSet=~CAP_SYS_MODULE",
    ] {
        assert!(text.contains(kept), "{kept} is not in force:\n{text}");
    }
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for noid-server.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{text}"));
    assert!(level <= 6.0, "the unit's exposure grew to {level}:\n{text}");
}

#[test]
fn the_server_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let mut server = common::Server::start(&["alice"], "");
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    server.set_env("NOTIFY_SOCKET", Some(socket_path.to_str().unwrap()));
    server.restart();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 from the server");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the API answers.
    assert!(server.run("alice", &["whoami"]).status.success());
    server.stop();
    let n = socket.recv(&mut buf).expect("STOPPING=1 from the server");
    assert_eq!(&buf[..n], b"STOPPING=1");
}
