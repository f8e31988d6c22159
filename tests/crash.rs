//! A server killed with SIGKILL loses nothing it reported as done, and the restarted server
//! undoes what it had half done (a VM being created: its process, files and record go).

mod common;

use std::time::{Duration, Instant};

use common::{exec, Server};
use noid::v1::{CreateCheckpointRequest, CreateVmRequest, ListCheckpointsRequest, ListVmsRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_create_and_after_done() {
    let mut server = Server::start(&["alice"], "");
    let mut c = server.client("alice").await;

    // Done before the crash: a VM and a checkpoint of it.
    c.create_vm(CreateVmRequest {
        name: "kept".into(),
        cpus: 0,
        memory_mib: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    exec(
        &mut c,
        "kept",
        &["sh", "-c", "echo durable > /root/f; sync"],
        None,
        None,
    )
    .await
    .unwrap();
    let ckpt = c
        .create_checkpoint(CreateCheckpointRequest {
            vm: "kept".into(),
            label: "pre-crash".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // Half done at the crash: a VM whose QEMU runs but whose guest has not answered yet (of
    // a size that has no boot snapshot yet, so that it boots, which takes seconds).
    let vms = server.data_dir().join("vms");
    let before: Vec<_> = std::fs::read_dir(&vms)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mut creating = server
        .cli("alice")
        .args(["create", "half", "--mem", "192"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let half_dir = loop {
        let new = std::fs::read_dir(&vms)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                !before.contains(p) && (p.join("qemu.pid").exists() || p.join("shim.pid").exists())
            });
        if let Some(d) = new {
            break d;
        }
        assert!(Instant::now() < deadline, "the VM never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(c);
    server.crash_and_restart();
    let status = creating.wait().unwrap();
    assert!(
        !status.success(),
        "create must not report success across a crash"
    );

    // The half-made VM is gone: no record, no directory, no process.
    let mut c = server.client("alice").await;
    let names: Vec<String> = c
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["kept"]);
    assert!(!half_dir.exists(), "{} left behind", half_dir.display());
    assert_eq!(
        common::processes_mentioning(&half_dir.display().to_string()).len(),
        0,
        "its QEMU still runs"
    );
    // Only complete boot snapshots remain (the one "kept" made); none of the crashed size.
    let snapshots: Vec<String> = std::fs::read_dir(server.data_dir().join("boot-snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert!(!snapshots[0].starts_with('.'), "{snapshots:?}");

    // What was done survives: the VM runs with its file, the checkpoint is listed and restores.
    let r = exec(&mut c, "kept", &["cat", "/root/f"], None, None)
        .await
        .unwrap();
    assert_eq!(r.out(), "durable\n");
    let list = c
        .list_checkpoints(ListCheckpointsRequest {
            vm: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, ckpt.id);
    c.restore(noid::v1::RestoreRequest {
        checkpoint_id: ckpt.id,
        new_name: "after".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = exec(&mut c, "after", &["cat", "/root/f"], None, None)
        .await
        .unwrap();
    assert_eq!(r.out(), "durable\n");
}
