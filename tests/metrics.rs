//! `/metrics` as Prometheus reads it: the text parsed by the Prometheus client's own parser
//! (in a clean virtualenv under `target/`), after a VM was created, ran a command, was
//! checkpointed, and calls failed over both APIs; then a server that wants a token for it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn scrape(venv: &Path, url: &str, token: Option<&str>) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(venv.join("bin/python"))
        .arg(root.join("tests/python/metrics_check.py"))
        .arg(format!("{url}/metrics"))
        .args(token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the metrics do not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scraped: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scraped["samples"].as_array().unwrap().iter().find_map(|s| {
        let matches = s[0] == name && labels.iter().all(|(k, v)| s[1][k] == *v);
        matches.then(|| s[2].as_f64().unwrap())
    })
}

#[test]
fn metrics_parse_and_count_what_happened() {
    let venv = common::virtualenv("py-metrics-venv", "metrics-requirements.txt");
    let mut server = common::Server::start(&["alice"], "");
    let ok = |args: &[&str]| {
        let out = server.run("alice", args);
        assert!(out.status.success(), "{args:?}: {:?}", out);
    };
    ok(&["create", "m"]);
    ok(&[
        "exec",
        "m",
        "--",
        "sh",
        "-c",
        "echo busy; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
    ]);
    ok(&["checkpoint", "m"]);
    assert!(!server.run("alice", &["info", "nope"]).status.success());
    // A REST call that fails, counted by its route, not its path.
    let rest = Command::new("python3")
        .args(["-c", "import sys, urllib.request\ntry:\n urllib.request.urlopen(sys.argv[1])\nexcept Exception as e:\n print(e)"])
        .arg(format!("{}/vms/nope", server.http_url))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&rest.stdout).contains("401"));

    let m = scrape(&venv, &server.http_url, None);
    assert_eq!(m["status"], 200);
    let types = &m["types"];
    for (family, kind) in [
        ("noid_api_requests", "counter"),
        ("noid_vm_create_duration_seconds", "histogram"),
        ("noid_exec_start_duration_seconds", "histogram"),
        ("noid_checkpoint_duration_seconds", "histogram"),
        ("noid_checkpoint_size_bytes", "histogram"),
        ("noid_vms", "gauge"),
        ("noid_vm_cpu_seconds", "counter"),
        ("noid_vm_disk_bytes", "gauge"),
        ("noid_vm_memory_bytes", "gauge"),
        ("noid_build_info", "gauge"),
    ] {
        assert_eq!(types[family], kind, "{family}: {types}");
    }
    let get_vm = [("api", "grpc"), ("method", "GetVm"), ("code", "NOT_FOUND")];
    assert_eq!(value(&m, "noid_api_requests_total", &get_vm), Some(1.0));
    let create = [("api", "grpc"), ("method", "CreateVm"), ("code", "OK")];
    assert_eq!(value(&m, "noid_api_requests_total", &create), Some(1.0));
    let rest = [
        ("api", "rest"),
        ("method", "GET /vms/:name"),
        ("code", "UNAUTHENTICATED"),
    ];
    assert_eq!(value(&m, "noid_api_requests_total", &rest), Some(1.0));
    assert!(value(&m, "noid_api_errors_total", &[("code", "NOT_FOUND")]).is_some());
    // Boot snapshots on: the first VM of its shape boots (and leaves the snapshot).
    let created = value(&m, "noid_vm_create_duration_seconds_count", &[]).unwrap();
    assert_eq!(created, 1.0);
    assert_eq!(
        value(&m, "noid_exec_start_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "noid_checkpoint_size_bytes_count", &[]),
        Some(1.0)
    );
    assert!(value(&m, "noid_checkpoint_size_bytes_sum", &[]).unwrap() > 1e6);
    assert_eq!(value(&m, "noid_vms", &[("state", "running")]), Some(1.0));
    let vm = [("vm", "m"), ("owner", "alice")];
    assert!(value(&m, "noid_vm_cpu_seconds_total", &vm).unwrap() > 0.0);
    assert!(value(&m, "noid_vm_disk_bytes", &vm).unwrap() > 0.0);
    assert!(value(&m, "noid_vm_memory_bytes", &vm).unwrap() > 1e6);
    let build = value(
        &m,
        "noid_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(build, Some(1.0));
    // No label holds a token or a request's data.
    let text = m["samples"].to_string();
    assert!(!text.contains(&server.tokens["alice"]));
    assert!(!text.contains("/vms/nope"), "a raw path as a label");

    // A server that wants a token for its metrics.
    server.restart_with("metrics_need_token = true\n");
    assert_eq!(scrape(&venv, &server.http_url, None)["status"], 401);
    let token = server.tokens["alice"].clone();
    let m = scrape(&venv, &server.http_url, Some(&token));
    assert_eq!(m["status"], 200);
    assert_eq!(value(&m, "noid_vms", &[("state", "running")]), Some(1.0));
    assert!(server.run("alice", &["destroy", "m"]).status.success());
}
