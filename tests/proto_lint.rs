//! The protos as other toolchains see them: `buf lint` (buf from npm, pinned, installed under
//! `target/`) passes with the committed `buf.yaml`, and every file names its Go and Java
//! packages.

use std::path::PathBuf;
use std::process::Command;

const BUF_VERSION: &str = "1.75.0";

/// buf from npm, installed once per version under `target/buf-tool`.
fn buf() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = root.join("target/buf-tool");
    let installed = prefix.join("node_modules/@bufbuild/buf/package.json");
    let current = std::fs::read_to_string(&installed)
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{BUF_VERSION}\"")));
    if !current {
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("@bufbuild/buf@{BUF_VERSION}"))
            .status()
            .expect("npm (deploy/install-deps.sh installs it)");
        assert!(status.success(), "npm install @bufbuild/buf failed");
    }
    prefix.join("node_modules/.bin/buf")
}

#[test]
fn buf_lint_passes_and_every_proto_names_its_packages() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(buf())
        .arg("lint")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = 0;
    for dir in ["proto/noid/v1", "proto/noid/agent/v1"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for option in ["option go_package = ", "option java_package = "] {
                assert!(text.contains(option), "{} lacks {option}", path.display());
            }
            files += 1;
        }
    }
    assert_eq!(files, 7);
}
