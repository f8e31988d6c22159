//! `noid-server doctor` reports the host's facts and names what is missing.

mod common;

#[test]
fn doctor_reports_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::server_command([
        "doctor".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    for what in [
        "qemu",
        "firecracker",
        "kvm",
        "vmm",
        "data dir",
        "disk overlays",
        "image",
        "firewall",
        "free disk",
        "api port",
        "gateway port",
        "tun",
        "ip_forward",
    ] {
        let line = text
            .lines()
            .find(|l| l[3..].starts_with(what))
            .unwrap_or_else(|| panic!("no {what} line in:\n{text}"));
        assert!(line.starts_with("ok ") || line.starts_with("-- "), "{line}");
    }
    assert!(text.contains("ok qemu"), "{text}");
    // install-deps.sh installs qemu-img.
    assert!(text.contains("ok disk overlays"), "{text}");
    // A fresh data directory has no image: doctor says so, and why.
    assert!(
        text.contains("-- image") && text.contains("deploy/build-image.sh"),
        "{text}"
    );
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    // nft checked noid's rules against this kernel.
    assert!(
        text.contains("ok firewall     isolation rules accepted"),
        "{text}"
    );

    // The same findings for programs.
    let json = common::server_command([
        "doctor".as_ref(),
        "--json".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    let findings: serde_json::Value = serde_json::from_str(&json).unwrap();
    let findings = findings.as_array().unwrap();
    assert_eq!(findings.len(), text.lines().count(), "{json}");
    let disk = findings.iter().find(|f| f["what"] == "free disk").unwrap();
    assert!(disk["ok"].is_boolean() && disk["detail"].as_str().unwrap().contains("GiB free"));
}
