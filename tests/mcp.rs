//! `noid mcp` driven by a real MCP client (the official Python SDK, pinned in
//! `tests/python/mcp-requirements.txt`, in a fresh virtualenv): initialize, tools/list and a
//! tools/call of every tool, against a real server and VMs.

mod common;

use std::process::Command;

#[test]
fn an_mcp_client_uses_every_tool() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = common::virtualenv("mcp-venv", "mcp-requirements.txt");
    let server = common::Server::start(&["agent"], "");
    let out = Command::new(venv.join("bin/python"))
        .arg(root.join("tests/python/mcp_client.py"))
        .arg(common::bin("noid"))
        .env("NOID_URL", &server.url)
        .env("NOID_TOKEN", &server.tokens["agent"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("mcp: ok"),
        "MCP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
