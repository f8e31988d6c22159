//! A client in another language: Python code generated from `proto/` with grpcio-tools, in a
//! clean virtualenv that this test makes (under `target/`), drives a real server and VM.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn generated_python_client_drives_a_vm() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = common::virtualenv("py-venv", "requirements.txt");
    let python = venv.join("bin/python");
    let gen = tempfile::tempdir().unwrap();
    common::python_stubs(&venv, gen.path());

    let mut server = common::Server::start(&["py"], "");
    let client = |server: &common::Server, ca: Option<&std::path::Path>| {
        let out = Command::new(&python)
            .arg(root.join("tests/python/client_test.py"))
            .arg(gen.path())
            .arg(server.url.trim_start_matches("http://"))
            .arg(&server.tokens["py"])
            .args(ca)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python client failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(client(&server, None).contains("python client: ok"));

    // The same over TLS, with the CA that `noid-server tls-init` made.
    let tls = common::tls_init();
    server.restart_with(&tls.config);
    assert!(client(&server, Some(&tls.ca)).contains("python client: ok (TLS)"));
}
