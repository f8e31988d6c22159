//! The web console (`/ui`) in headless Chromium, driven by playwright-core (pinned in
//! `tests/web/package-lock.json`, installed with `npm ci`): refused with a wrong token,
//! signed in, the VM listed, its console opened, a typed command's output read off the page,
//! and a resize of the window reaching the guest. The token never appears in a URL or the
//! server's log.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[tokio::test]
async fn the_web_console_lists_a_vm_and_opens_its_console_in_a_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("target/web-test");
    let _ = std::fs::remove_dir_all(&web);
    std::fs::create_dir_all(&web).unwrap();
    for f in ["package.json", "package-lock.json", "console_test.mjs"] {
        std::fs::copy(root.join("tests/web").join(f), web.join(f)).unwrap();
    }
    let npm = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--quiet"])
        .current_dir(&web)
        .output()
        .unwrap();
    assert!(
        npm.status.success(),
        "npm ci: {}",
        String::from_utf8_lossy(&npm.stderr)
    );

    let server = common::Server::start(&["web"], "");
    let mut client = server.client("web").await;
    client
        .create_vm(noid::v1::CreateVmRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let token = &server.tokens["web"];
    let out = Command::new("node")
        .arg(web.join("console_test.mjs"))
        .arg(&server.http_url)
        .arg(token)
        .arg("web")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("web console: ok"),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = server.log();
    assert!(
        log.contains("GET /console/web"),
        "the console's WebSocket was not audited"
    );
    assert!(
        !log.contains(token.as_str()),
        "the token is in the server's log"
    );
}
