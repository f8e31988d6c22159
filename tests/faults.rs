//! Crashes at every step of every flow. The server (a debug build) kills itself with SIGKILL at
//! the crash point that NOID_CRASH_AT names; the test starts it again and checks what a user
//! would: the VM of the flow is either as it was or fully undone (or, past the flow's last
//! step, done), every VM that runs answers and is not paused, no VMM, TAP, directory, cgroup
//! or temporary file is left that no VM owns, and checkpoints reported done are intact. All of
//! it in a network namespace of the test's own, so TAPs and leases are checked too.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{sh, NetNs, Server};
use noid::v1::{
    copy_in_request, AddPortRequest, CopyInHeader, CopyInRequest, CreateCheckpointRequest,
    CreateVmRequest, DeleteVmRequest, GetVmRequest, HibernateVmRequest, ListCheckpointsRequest,
    ListVmsRequest, RestoreRequest, StartVmRequest, StopVmRequest, Vm, VmState, WakeVmRequest,
};

const CONFIG: &str = "[network]\nenabled = true\n";

fn create(name: &str, memory_mib: u32) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        memory_mib,
        ..Default::default()
    }
}

/// Names of the VMM processes (QEMU) that run for this server's data directory.
fn vmm_processes(server: &Server) -> BTreeSet<u32> {
    let dir = server.data_dir().display().to_string();
    common::processes_mentioning(&dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("qemu-system"))
        })
        .collect()
}

fn listed(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What the host must look like whatever crashed: returns the VMs.
async fn check_host(
    server: &Server,
    ns: &NetNs,
    c: &mut noid::client::Client,
    point: &str,
) -> Vec<Vm> {
    let vms = c
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms;
    let ids: BTreeSet<String> = vms.iter().map(|v| v.id.clone()).collect();
    let mut running = BTreeSet::new();
    for vm in &vms {
        let state = VmState::try_from(vm.state).unwrap();
        assert!(
            matches!(
                state,
                VmState::Running | VmState::Stopped | VmState::Hibernated
            ),
            "{point}: VM {} is left {state:?}",
            vm.name
        );
        if state == VmState::Running {
            assert_eq!(
                sh(c, &vm.name, "echo up").await,
                "up\n",
                "{point}: VM {} does not answer",
                vm.name
            );
            running.insert(vm.vmm_pid);
        }
    }
    // Besides the VMs: at most one warm VMM per boot snapshot, waiting for the next create (its directory,
    // process and TAP named by the id its VM will take).
    let warm = server.settled_warm_vmms(&ids).await;
    let data = server.data_dir();
    let snapshots = listed(&data.join("boot-snapshots")).len();
    assert!(
        warm.len() <= snapshots,
        "{point}: warm VMMs {warm:?} for {snapshots} boot snapshots"
    );
    for id in &warm {
        let pid = std::fs::read_to_string(data.join("vms").join(id).join("qemu.pid")).unwrap();
        running.insert(pid.trim().parse().unwrap());
    }
    assert_eq!(
        vmm_processes(server),
        running,
        "{point}: VMM processes that no running VM or warm VMM owns"
    );
    let owned: BTreeSet<String> = ids.union(&warm).cloned().collect();
    assert_eq!(listed(&data.join("vms")), owned, "{point}: VM directories");
    let taps: BTreeSet<String> = ns
        .ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("nt"))
        .collect();
    let want: BTreeSet<String> = owned.iter().map(|id| format!("nt{id}")).collect();
    assert_eq!(taps, want, "{point}: TAPs");
    for vm_dir in listed(&data.join("checkpoints")) {
        for entry in listed(&data.join("checkpoints").join(&vm_dir)) {
            assert!(
                !entry.starts_with('.'),
                "{point}: checkpoint files {entry} left"
            );
        }
    }
    for snap in listed(&data.join("boot-snapshots")) {
        assert!(
            !snap.starts_with('.'),
            "{point}: boot snapshot files {snap} left"
        );
    }
    let addresses: BTreeSet<&str> = vms.iter().map(|v| v.address.as_str()).collect();
    assert_eq!(addresses.len(), vms.len(), "{point}: addresses shared");
    vms
}

fn find<'a>(vms: &'a [Vm], name: &str) -> Option<&'a Vm> {
    vms.iter().find(|v| v.name == name)
}

/// Runs `flow` with the server set to crash at `point`, then starts it again normally.
async fn crash<F, Fut>(server: &mut Server, point: &str, flow: F)
where
    F: FnOnce(noid::client::Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    server.set_env("NOID_CRASH_AT", Some(point));
    server.restart();
    let client = server.client("alice").await;
    // The call fails when the server dies under it; what matters is that it died there.
    tokio::select! {
        () = flow(client) => {}
        () = tokio::time::sleep(Duration::from_secs(120)) => {}
    }
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some(),
        "{point}: the flow never reached the crash point"
    );
    server.set_env("NOID_CRASH_AT", None);
    server.start_again();
}

#[test]
fn a_crash_at_any_step_leaves_a_consistent_host() {
    let points: BTreeSet<String> = common::server_command(["crash-points"])
        .lines()
        .map(str::to_string)
        .collect();
    if points.is_empty() {
        eprintln!("SKIP: this server build has no crash points (a release build); run in debug");
        return;
    }
    let ns = NetNs::new("faults");
    let rt = ns.runtime();
    let mut server = Server::start(&["alice"], CONFIG);
    let mut covered = BTreeSet::new();
    rt.block_on(async {
        let mut c = server.client("alice").await;
        c.create_vm(create("base", 0)).await.unwrap();
        sh(&mut c, "base", "echo v1 > /root/state").await;
        let ckpt = c
            .create_checkpoint(CreateCheckpointRequest {
                vm: "base".into(),
                label: "c".into(),
            })
            .await
            .unwrap()
            .into_inner();

        // Creates: from the boot snapshot (256 MiB), and booting (192 MiB, no snapshot yet;
        // the point after the boot snapshot is written comes last).
        for (point, memory) in [
            ("create.recorded", 0),
            ("create.network_attached", 0),
            ("create.from_snapshot_started", 0),
            ("create.vmm_started", 192),
            ("create.agent_answered", 192),
            ("create.boot_snapshot_saved", 192),
            ("create.done", 0),
        ] {
            crash(&mut server, point, |mut c| async move {
                let _ = c.create_vm(create("x", memory)).await;
            })
            .await;
            let mut c = server.client("alice").await;
            let vms = check_host(&server, &ns, &mut c, point).await;
            let x = find(&vms, "x");
            if point == "create.done" {
                assert_eq!(x.map(|v| v.state), Some(VmState::Running as i32), "{point}");
                c.delete_vm(DeleteVmRequest { name: "x".into() })
                    .await
                    .unwrap();
            } else {
                assert!(
                    x.is_none(),
                    "{point}: the half-made VM is still there: {x:?}"
                );
            }
            covered.insert(point);
        }

        // Checkpoints: the VM runs on, unpaused; a checkpoint whose files were published is
        // kept (its record rebuilt) and can be forked.
        for point in [
            "checkpoint.paused",
            "checkpoint.saved",
            "checkpoint.published",
        ] {
            let before = c
                .list_checkpoints(ListCheckpointsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .checkpoints
                .len();
            crash(&mut server, point, |mut c| async move {
                let _ = c
                    .create_checkpoint(CreateCheckpointRequest {
                        vm: "base".into(),
                        label: point.into(),
                    })
                    .await;
            })
            .await;
            c = server.client("alice").await;
            check_host(&server, &ns, &mut c, point).await;
            let after = c
                .list_checkpoints(ListCheckpointsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .checkpoints;
            if point == "checkpoint.published" {
                assert_eq!(after.len(), before + 1, "{point}");
                let newest = after
                    .iter()
                    .find(|k| k.label == point)
                    .expect("rebuilt record");
                c.restore(RestoreRequest {
                    checkpoint_id: newest.id.clone(),
                    new_name: "from-rebuilt".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
                assert_eq!(sh(&mut c, "from-rebuilt", "cat /root/state").await, "v1\n");
                c.delete_vm(DeleteVmRequest {
                    name: "from-rebuilt".into(),
                })
                .await
                .unwrap();
            } else {
                assert_eq!(
                    after.len(),
                    before,
                    "{point}: a half-written checkpoint is listed"
                );
            }
            covered.insert(point);
        }

        // Restores in place: the VM runs (the restore had not begun to change it, or it was
        // done), or it is stopped on its own disk; either way another restore brings it back.
        for point in [
            "restore.marked",
            "restore.disk_aside",
            "restore.vmm_started",
            "restore.done",
        ] {
            sh(&mut c, "base", "echo v2 > /root/state").await;
            let id = ckpt.id.clone();
            crash(&mut server, point, |mut c| async move {
                let _ = c
                    .restore(RestoreRequest {
                        checkpoint_id: id,
                        ..Default::default()
                    })
                    .await;
            })
            .await;
            c = server.client("alice").await;
            let vms = check_host(&server, &ns, &mut c, point).await;
            let base = find(&vms, "base").expect("the VM is still there");
            if base.state == VmState::Stopped as i32 {
                c.restore(RestoreRequest {
                    checkpoint_id: ckpt.id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{point}: restoring again: {e}"));
            }
            let state = sh(&mut c, "base", "cat /root/state").await;
            match point {
                "restore.marked" => assert_eq!(state, "v2\n", "{point}"),
                _ => assert_eq!(state, "v1\n", "{point}"),
            }
            covered.insert(point);
        }

        // Forks: undone, or (after the last step) there and running.
        for point in ["fork.recorded", "fork.vmm_started", "fork.done"] {
            let id = ckpt.id.clone();
            crash(&mut server, point, |mut c| async move {
                let _ = c
                    .restore(RestoreRequest {
                        checkpoint_id: id,
                        new_name: "f".into(),
                        ..Default::default()
                    })
                    .await;
            })
            .await;
            c = server.client("alice").await;
            let vms = check_host(&server, &ns, &mut c, point).await;
            if point == "fork.done" {
                assert!(find(&vms, "f").is_some(), "{point}");
                c.delete_vm(DeleteVmRequest { name: "f".into() })
                    .await
                    .unwrap();
            } else {
                assert!(find(&vms, "f").is_none(), "{point}");
            }
            covered.insert(point);
        }

        // Deletes: finished at the restart.
        for point in [
            "delete.marked",
            "delete.vmm_stopped",
            "delete.files_removed",
        ] {
            c.create_vm(create("d", 0)).await.unwrap();
            crash(&mut server, point, |mut c| async move {
                let _ = c.delete_vm(DeleteVmRequest { name: "d".into() }).await;
            })
            .await;
            c = server.client("alice").await;
            let vms = check_host(&server, &ns, &mut c, point).await;
            assert!(find(&vms, "d").is_none(), "{point}");
            covered.insert(point);
        }

        // Hibernation: the VM runs on (the crash came before its record said hibernated), or
        // it is hibernated and wakes as it was; no saved state is left that it does not need.
        for point in ["hibernate.saved", "hibernate.recorded"] {
            sh(&mut c, "base", "echo h > /root/hib").await;
            crash(&mut server, point, |mut c| async move {
                let _ = c
                    .hibernate_vm(HibernateVmRequest {
                        name: "base".into(),
                    })
                    .await;
            })
            .await;
            c = server.client("alice").await;
            let vms = check_host(&server, &ns, &mut c, point).await;
            let base = find(&vms, "base").expect("the VM is still there");
            if point == "hibernate.saved" {
                assert_eq!(base.state, VmState::Running as i32, "{point}");
            } else {
                assert_eq!(base.state, VmState::Hibernated as i32, "{point}");
                c.wake_vm(WakeVmRequest {
                    name: "base".into(),
                })
                .await
                .unwrap_or_else(|e| panic!("{point}: waking: {e}"));
            }
            assert_eq!(sh(&mut c, "base", "cat /root/hib").await, "h\n", "{point}");
            let listed_ckpts = c
                .list_checkpoints(ListCheckpointsRequest {
                    vm: "base".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .checkpoints
                .len();
            let on_disk = listed(&server.data_dir().join("checkpoints").join(&base.id)).len();
            assert_eq!(on_disk, listed_ckpts, "{point}: hibernation state left");
            covered.insert(point);
        }

        // A published port recorded but not yet in the rules: the restart applies it.
        crash(&mut server, "port.recorded", |mut c| async move {
            let _ = c
                .add_port(AddPortRequest {
                    vm: "base".into(),
                    host_port: 20444,
                    guest_port: 80,
                })
                .await;
        })
        .await;
        c = server.client("alice").await;
        check_host(&server, &ns, &mut c, "port.recorded").await;
        let base = c
            .get_vm(GetVmRequest {
                name: "base".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let rules = std::process::Command::new("nft")
            .args(["list", "table", "ip", "noid_noid0"])
            .output()
            .unwrap();
        let has_rule = String::from_utf8_lossy(&rules.stdout).contains("dport 20444 dnat to");
        assert_eq!(
            base.ports.len() == 1,
            has_rule,
            "port.recorded: record and rules differ"
        );
        covered.insert("port.recorded");

        // A copy that the guest finished: the file is whole, and no temporary file is left.
        let data = vec![7u8; 300_000];
        let body = data.clone();
        crash(&mut server, "copy_in.sent", |mut c| async move {
            let msgs = vec![
                CopyInRequest {
                    msg: Some(copy_in_request::Msg::Header(CopyInHeader {
                        vm: "base".into(),
                        path: "/root/copied".into(),
                        ..Default::default()
                    })),
                },
                CopyInRequest {
                    msg: Some(copy_in_request::Msg::Data(body)),
                },
                CopyInRequest {
                    msg: Some(copy_in_request::Msg::End(true)),
                },
            ];
            let _ = c.copy_in(futures::stream::iter(msgs)).await;
        })
        .await;
        c = server.client("alice").await;
        check_host(&server, &ns, &mut c, "copy_in.sent").await;
        assert_eq!(sh(&mut c, "base", "wc -c < /root/copied").await, "300000\n");
        assert_eq!(
            sh(&mut c, "base", "ls -a /root | grep -c noid || true").await,
            "0\n"
        );
        covered.insert("copy_in.sent");

        // Stop: a crash after the VMM ended leaves the VM stopped. Start: a crash after the
        // new VMM was recorded, before the start was reported done, leaves it stopped too
        // (that VMM is ended at the restart); either way a start brings it back with its disk.
        sh(&mut c, "base", "echo s > /root/stopped; sync").await;
        for point in ["stop.vmm_stopped", "start.launched"] {
            crash(&mut server, point, |mut c| async move {
                let name = "base".to_string();
                let _ = if point == "stop.vmm_stopped" {
                    c.stop_vm(StopVmRequest { name }).await
                } else {
                    c.start_vm(StartVmRequest { name }).await
                };
            })
            .await;
            c = server.client("alice").await;
            let vms = check_host(&server, &ns, &mut c, point).await;
            let base = find(&vms, "base").expect("the VM is still there");
            assert_eq!(base.state, VmState::Stopped as i32, "{point}");
            let dir = server.data_dir().join("vms").join(&base.id);
            let left: Vec<u32> = vmm_processes(&server)
                .into_iter()
                .filter(|pid| {
                    common::processes_mentioning(&dir.display().to_string()).contains(pid)
                })
                .collect();
            assert!(
                left.is_empty(),
                "{point}: a VMM of the stopped VM runs: {left:?}"
            );
        }
        c.start_vm(StartVmRequest {
            name: "base".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("starting after the crashes: {e}"));
        assert_eq!(sh(&mut c, "base", "cat /root/stopped").await, "s\n");
        covered.insert("stop.vmm_stopped");
        covered.insert("start.launched");
    });
    let covered: BTreeSet<String> = covered.into_iter().map(str::to_string).collect();
    assert_eq!(
        covered, points,
        "crash points this test does not cover (or no longer exist)"
    );
    drop(server);
    drop(rt);
}
