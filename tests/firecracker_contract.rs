//! The Firecracker backend against Firecracker's API contract, on hosts where Firecracker
//! cannot run. The real server (vmm = "firecracker") drives a stand-in Firecracker
//! (`tests/firecracker/fake_firecracker.rs`) that checks every request against the v1.16.1
//! OpenAPI spec and the documented order of calls, answers as the spec says, and runs a real
//! agent behind a hybrid-vsock socket. Every flow — boot, the boot snapshot, a VM started from
//! it, exec, console, checkpoint, restore in place, fork, delete, server restart — must pass
//! through it without one rejected request, in the order and with the relative paths the
//! backend promises.

mod common;

#[path = "firecracker/spec.rs"]
mod spec;

use std::path::PathBuf;
use std::sync::Once;

use common::{sh, NetNs, Server};
use noid::v1::{
    CreateCheckpointRequest, CreateVmRequest, DeleteCheckpointRequest, DeleteVmRequest,
    GetVmRequest, RestoreRequest,
};
use serde_json::{json, Value};
use tonic::Code;

/// Where the stand-in's request logs go: the build's target directory, not the host's /tmp.
fn log_dir() -> PathBuf {
    common::bin("noid-server")
        .parent()
        .unwrap()
        .join("fake-firecracker-logs")
}

/// The stand-in's request log (shared by every process of this test binary's servers).
fn request_log() -> PathBuf {
    log_dir().join(format!("{}.log", std::process::id()))
}

/// Builds the stand-in if needed, sets its environment, and returns its path.
fn setup() -> PathBuf {
    static ONCE: Once = Once::new();
    let target = common::bin("noid-server").parent().unwrap().to_path_buf();
    let fake = target.join("examples/fake-firecracker");
    ONCE.call_once(|| {
        // Always through cargo: a stand-in left from an older build would test old code.
        // In the profile of this test build, so that it lands where `target` says.
        let profile = match target.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let ok = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--example",
                "fake-firecracker",
                "--profile",
                profile,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build --example fake-firecracker");
        // Logs of earlier runs are of no use to this one.
        let _ = std::fs::remove_dir_all(log_dir());
        std::fs::create_dir_all(log_dir()).unwrap();
        std::env::set_var("FAKE_FC_LOG", request_log());
        // The config below chooses the VMM, whatever the suite runs with.
        std::env::remove_var("NOID_VMM");
        std::env::set_var("FAKE_FC_AGENT", common::bin("noid-agent"));
    });
    fake
}

/// The requests the stand-in saw whose working directory is `dir`. A last line without its
/// newline is still being written by a stand-in of the other test, and is left out.
fn requests_in(dir: &std::path::Path) -> Vec<Value> {
    let log = std::fs::read_to_string(request_log()).unwrap_or_default();
    let finished = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
    finished
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("log line {l}: {e}")))
        .filter(|r| r["cwd"].as_str() == Some(&dir.display().to_string()))
        .collect()
}

fn calls(reqs: &[Value]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect()
}

fn rejected(reqs: &[Value]) -> Vec<String> {
    reqs.iter()
        .filter(|r| !r["error"].is_null())
        .map(|r| format!("{} {}: {}", r["method"], r["path"], r["error"]))
        .collect()
}

fn body<'a>(reqs: &'a [Value], call: &str) -> &'a Value {
    &reqs
        .iter()
        .rfind(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            ) == call
        })
        .unwrap_or_else(|| panic!("no {call} in {:?}", calls(reqs)))["body"]
}

#[test]
fn every_flow_goes_through_the_firecracker_api_as_specified() {
    flows(false);
}

/// The same under the jailer: the stand-in checks the jailer's arguments, works in the
/// chroot it names, as the unprivileged user.
#[test]
fn every_flow_goes_through_the_jailer_as_specified() {
    flows(true);
}

const JAIL_UID: u32 = 65534;

fn flows(jailed: bool) {
    // The stand-in plays both Firecracker and, under the jailer, the jailer.
    let fake = setup().display().to_string();
    let mut config = format!("vmm = \"firecracker\"\n[firecracker]\nbinary = \"{fake}\"\n");
    if jailed {
        config.push_str(&format!(
            "jailer = \"{fake}\"\nuid = {JAIL_UID}\ngid = {JAIL_UID}\n"
        ));
    }
    let ns = NetNs::new(if jailed { "fcj" } else { "fc" });
    ns.runtime().block_on(async {
        let mut server = Server::start(
            &["alice"],
            &format!("{config}[network]\nenabled = true\ncidr = \"172.16.40.0/24\"\nbridge = \"noidfc0\"\n"),
        );
        let mut c = server.client("alice").await;
        let vms = server.data_dir().join("vms");
        let jails = server.data_dir().join("jail/fake-firecracker");
        // Where a restored Firecracker is told its memory file is: inside its jail (a hard
        // link), or in the snapshot's directory.
        let memory_path = |dir: &std::path::Path| {
            if jailed {
                "memory".to_string()
            } else {
                dir.join("memory").display().to_string()
            }
        };
        // Where Firecracker runs: the VM's directory, or its jail.
        let run_dir = |id: &str| {
            if jailed {
                jails.join(id).join("root")
            } else {
                vms.join(id)
            }
        };

        // Boot: the pre-boot resources, then InstanceStart, all relative to the VM's directory.
        let a = c
            .create_vm(CreateVmRequest {
                name: "a".into(),
                cpus: 2,
                memory_mib: 256,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            a.backend,
            if jailed { "firecracker/jailer" } else { "firecracker" }
        );
        let a_dir = vms.join(&a.id);
        let reqs = requests_in(&run_dir(&a.id));
        // The first VM of its size is then frozen once into the boot snapshot.
        assert_eq!(
            calls(&reqs),
            [
                "PUT /machine-config",
                "PUT /boot-source",
                "PUT /drives/root",
                "PUT /network-interfaces/eth0",
                "PUT /vsock",
                "PUT /entropy",
                "PUT /actions",
                "PATCH /vm",
                "PUT /snapshot/create",
                "PATCH /vm"
            ]
        );
        assert_eq!(rejected(&reqs), Vec::<String>::new());
        assert_eq!(body(&reqs, "PUT /machine-config"), &json!({"vcpu_count": 2, "mem_size_mib": 256}));
        assert_eq!(body(&reqs, "PUT /drives/root")["path_on_host"], "rootfs.ext4");
        assert_eq!(body(&reqs, "PUT /vsock")["uds_path"], "vsock.sock");
        let iface = body(&reqs, "PUT /network-interfaces/eth0");
        assert_eq!(iface["host_dev_name"], format!("nt{}", a.id));
        assert_eq!(iface["guest_mac"], a.mac.as_str());
        let args = body(&reqs, "PUT /boot-source")["boot_args"].as_str().unwrap().to_string();
        assert!(args.contains(&format!("noid.ip={}/24", a.address)), "{args}");
        let kernel = body(&reqs, "PUT /boot-source")["kernel_image_path"]
            .as_str()
            .unwrap()
            .to_string();
        if jailed {
            // Inside the jail, by relative name; the disk belongs to the jail's user, the
            // TAP too.
            assert_eq!(kernel, "vmlinux");
            use std::os::unix::fs::MetadataExt;
            let disk = std::fs::metadata(run_dir(&a.id).join("rootfs.ext4")).unwrap();
            assert_eq!(disk.uid(), JAIL_UID);
            let tap = ns.ip(&["-d", "-o", "link", "show", "dev", &format!("nt{}", a.id)]);
            assert!(tap.contains(" user nobody ") || tap.contains(&format!(" user {JAIL_UID} ")), "{tap}");
        } else {
            assert!(kernel.starts_with('/') && kernel.ends_with("/vmlinux"), "{kernel}");
        }

        // The agent answers through the hybrid vsock socket; the console reaches the log.
        assert_eq!(sh(&mut c, "a", "echo hello from a").await, "hello from a\n");
        let out = server.run("alice", &["logs", "a"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("fake-firecracker: guest booted"));

        // The next VM of that size starts from the boot snapshot: a fresh process loads it
        // with the new VM's own TAP and socket.
        let snapshots: Vec<_> = std::fs::read_dir(server.data_dir().join("boot-snapshots"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(snapshots.len(), 1, "{snapshots:?}");
        let snap = &snapshots[0];
        assert!(snap.join("vmstate").is_file() && snap.join("memory").is_file());
        let w = c
            .create_vm(CreateVmRequest {
                name: "w".into(),
                cpus: 2,
                memory_mib: 256,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let reqs = requests_in(&run_dir(&w.id));
        assert_eq!(calls(&reqs), ["PUT /snapshot/load", "GET /"]);
        assert_eq!(
            reqs[0]["body"]["network_overrides"],
            json!([{"iface_id": "eth0", "host_dev_name": format!("nt{}", w.id)}])
        );
        assert_eq!(reqs[0]["body"]["vsock_override"], json!({"uds_path": "vsock.sock"}));
        assert_eq!(reqs[0]["body"]["mem_backend"]["backend_path"], memory_path(snap.as_path()));
        assert_eq!(sh(&mut c, "w", "echo warm").await, "warm\n");
        let fc_log = std::fs::read_to_string(vms.join(&w.id).join("firecracker.log")).unwrap();
        assert!(
            fc_log.contains(&format!("post-restore for w at {}/24", w.address)),
            "{fc_log}"
        );
        c.delete_vm(DeleteVmRequest { name: "w".into() })
            .await
            .unwrap();
        assert_eq!(common::processes_mentioning(&w.id), Vec::<u32>::new());
        assert_eq!(rejected(&requests_in(&run_dir(&w.id))), Vec::<String>::new());

        // Checkpoint: pause, snapshot/create (full), resume; the source keeps answering.
        let ck = c
            .create_checkpoint(CreateCheckpointRequest {
                vm: "a".into(),
                label: "one".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let reqs = requests_in(&run_dir(&a.id));
        assert_eq!(
            calls(&reqs)[10..],
            ["PATCH /vm", "PUT /snapshot/create", "PATCH /vm"]
        );
        assert_eq!(reqs[10]["body"], json!({"state": "Paused"}));
        assert_eq!(reqs[11]["body"]["snapshot_type"], "Full");
        assert_eq!(reqs[12]["body"], json!({"state": "Resumed"}));
        assert_eq!(sh(&mut c, "a", "echo still here").await, "still here\n");
        let ck_dir = server.data_dir().join("checkpoints").join(&a.id).join(&ck.id);
        assert!(ck_dir.join("vmstate").is_file() && ck_dir.join("memory").is_file());

        // Restore in place: a fresh process loads the snapshot with the VM's own TAP and
        // socket, resumes, and the agent's post-restore step runs.
        let before = requests_in(&run_dir(&a.id)).len();
        let restored = c
            .restore(RestoreRequest {
                checkpoint_id: ck.id.clone(),
                new_name: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(restored.vmm_pid, a.vmm_pid);
        let reqs = requests_in(&run_dir(&a.id));
        assert_eq!(calls(&reqs[before..]), ["PUT /snapshot/load", "GET /"]);
        let load = &reqs[before]["body"];
        assert_eq!(load["mem_backend"]["backend_type"], "File");
        assert_eq!(load["resume_vm"], true);
        assert_eq!(load["vsock_override"], json!({"uds_path": "vsock.sock"}));
        assert_eq!(
            load["network_overrides"],
            json!([{"iface_id": "eth0", "host_dev_name": format!("nt{}", a.id)}])
        );
        assert_eq!(sh(&mut c, "a", "echo restored").await, "restored\n");

        // Fork: its own directory, disk, TAP and socket; the checkpoint's memory stays mapped,
        // so the checkpoint cannot be deleted while the fork runs.
        let b = c
            .restore(RestoreRequest {
                checkpoint_id: ck.id.clone(),
                new_name: "b".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let b_dir = vms.join(&b.id);
        let reqs = requests_in(&run_dir(&b.id));
        assert_eq!(calls(&reqs), ["PUT /snapshot/load", "GET /"]);
        assert_eq!(
            reqs[0]["body"]["network_overrides"],
            json!([{"iface_id": "eth0", "host_dev_name": format!("nt{}", b.id)}])
        );
        assert_eq!(reqs[0]["body"]["mem_backend"]["backend_path"], memory_path(ck_dir.as_path()));
        assert!(b_dir.join("rootfs.ext4").is_file());
        assert_eq!(sh(&mut c, "b", "echo fork").await, "fork\n");
        let fc_log = std::fs::read_to_string(b_dir.join("firecracker.log")).unwrap();
        assert!(
            fc_log.contains(&format!("post-restore for b at {}/24", b.address)),
            "{fc_log}"
        );
        let e = c
            .delete_checkpoint(DeleteCheckpointRequest { id: ck.id.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("in use"), "{}", e.message());

        // VMs outlive a server restart: the console shim and Firecracker keep running.
        drop(c);
        server.restart();
        let mut c = server.client("alice").await;
        assert_eq!(sh(&mut c, "b", "echo after restart").await, "after restart\n");
        let got = c
            .get_vm(GetVmRequest { name: "a".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.vmm_pid, restored.vmm_pid);

        // A boot that Firecracker refuses fails with its reason and leaves nothing behind.
        let before: Vec<_> = std::fs::read_dir(&vms).unwrap().flatten().map(|e| e.path()).collect();
        let e = c
            .create_vm(CreateVmRequest {
                name: "fail-boot".into(),
                cpus: 0,
                memory_mib: 0,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Internal);
        assert!(e.message().contains("set to fail at InstanceStart"), "{}", e.message());
        let after: Vec<_> = std::fs::read_dir(&vms).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(before, after);
        let taps = std::process::Command::new("ip").args(["-o", "link"]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&taps.stdout).matches(": nt").count(),
            2,
            "only a's and b's TAPs"
        );

        // Delete stops the processes; then the checkpoint can go.
        for name in ["a", "b"] {
            c.delete_vm(DeleteVmRequest { name: name.into() })
                .await
                .unwrap();
        }
        for (dir, id) in [(&a_dir, &a.id), (&b_dir, &b.id)] {
            assert!(!dir.exists() && !jails.join(id).exists());
            assert_eq!(common::processes_mentioning(id), Vec::<u32>::new());
        }
        c.delete_checkpoint(DeleteCheckpointRequest { id: ck.id })
            .await
            .unwrap();
        for id in [&a.id, &b.id] {
            assert_eq!(rejected(&requests_in(&run_dir(id))), Vec::<String>::new());
        }
        // No jail outlives its VM (the refused boot's included).
        let left: Vec<_> = std::fs::read_dir(&jails).into_iter().flatten().collect();
        assert!(left.is_empty(), "jails left: {left:?}");
    });
}

#[test]
fn the_spec_checker_refuses_what_firecracker_would() {
    let s = spec::Spec::v1_16_1();
    assert_eq!(s.version(), "1.16.1");
    let ok = |m: &str, p: &str, b: &str| s.check(m, p, b.as_bytes()).unwrap();
    let err = |m: &str, p: &str, b: &str| s.check(m, p, b.as_bytes()).unwrap_err();
    assert_eq!(
        ok(
            "PUT",
            "/drives/root",
            r#"{"drive_id":"root","is_root_device":true,"path_on_host":"r"}"#
        )
        .params,
        [("drive_id".to_string(), "root".to_string())]
    );
    ok("PATCH", "/vm", r#"{"state":"Paused"}"#);
    ok("GET", "/", "");
    // Unknown path, undefined method, missing or stray body.
    assert!(err("PUT", "/drive/root", "{}").contains("no such path"));
    assert!(err("GET", "/boot-source", "").contains("defines no GET"));
    assert!(err("PUT", "/boot-source", "").contains("body is required"));
    assert!(err("GET", "/version", "{}").contains("takes no body"));
    // Required field, unknown field, wrong type, enum and bounds.
    assert!(err(
        "PUT",
        "/drives/root",
        r#"{"drive_id":"root","path_on_host":"r"}"#
    )
    .contains("\"is_root_device\" is missing"));
    assert!(err(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count":1,"mem_size_mib":128,"memory":1}"#
    )
    .contains("unknown field \"memory\""));
    assert!(err(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count":"1","mem_size_mib":128}"#
    )
    .contains("expected an integer"));
    assert!(err(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count":0,"mem_size_mib":128}"#
    )
    .contains("below the minimum"));
    assert!(err("PATCH", "/vm", r#"{"state":"Stopped"}"#).contains("is not one of"));
    assert!(err(
        "PUT",
        "/snapshot/load",
        r#"{"snapshot_path":"s","mem_backend":{"backend_type":"File"}}"#
    )
    .contains("body.mem_backend: the required field \"backend_path\""));
    assert!(err(
        "PUT",
        "/snapshot/load",
        r#"{"snapshot_path":"s","network_overrides":[{"iface_id":"eth0"}]}"#
    )
    .contains("network_overrides[0]"));
}
