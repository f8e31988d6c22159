//! The TypeScript SDK (`clients/typescript`): built with a fresh `npm ci` (its lockfile pins
//! everything), packed with `npm pack`, installed from the tarball into a project of its own,
//! and driven through a whole lifecycle against a real server and real VMs by
//! `tests/typescript/sdk_test.ts`, compiled with `tsc --strict` against the SDK's types.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn npm(dir: &Path, args: &[&str]) -> String {
    common::run_ok(
        Command::new("npm")
            .args(args)
            .args(["--no-audit", "--no-fund", "--quiet"])
            .current_dir(dir),
    )
}

#[test]
fn typescript_sdk_runs_a_whole_lifecycle() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sdk = root.join("clients/typescript");
    let _ = std::fs::remove_dir_all(sdk.join("node_modules"));
    npm(&sdk, &["ci"]);
    let project = root.join("target/ts-sdk-test");
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(&project).unwrap();
    let packed = npm(
        &sdk,
        &["pack", "--pack-destination", project.to_str().unwrap()],
    );
    let tarball = project.join(packed.trim().lines().last().unwrap());
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "noid-sdk-test", "private": true}"#,
    )
    .unwrap();
    npm(&project, &["install", tarball.to_str().unwrap()]);
    std::fs::copy(
        root.join("tests/typescript/sdk_test.ts"),
        project.join("sdk_test.ts"),
    )
    .unwrap();
    common::run_ok(
        Command::new(sdk.join("node_modules/.bin/tsc"))
            .args([
                "--strict",
                "--target",
                "ES2022",
                "--module",
                "commonjs",
                "--types",
                "node",
                "--typeRoots",
            ])
            .arg(sdk.join("node_modules/@types"))
            .arg("sdk_test.ts")
            .current_dir(&project),
    );

    let server = common::Server::start(&["ts"], "");
    let out = common::run_ok(
        Command::new("node")
            .arg("sdk_test.js")
            .arg(&server.url)
            .arg(&server.tokens["ts"])
            .current_dir(&project),
    );
    assert!(out.contains("typescript sdk: ok"), "{out}");
}
