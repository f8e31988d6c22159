//! Boot snapshots with real VMs: the first VM of a size boots and leaves a snapshot of its
//! freshly booted self; the next ones start from it, each its own machine (hostname, entropy,
//! clock, disk, boot log), untouched by what the first VM did since. A damaged snapshot, or
//! one the VMM fails to restore, is removed and the create boots instead; switching the
//! feature off removes them all.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{host_now, sh, Server};
use noid::v1::{CreateCheckpointRequest, CreateVmRequest, RestoreRequest};

fn create(name: &str, memory_mib: u32) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        cpus: 0,
        memory_mib,
        ..Default::default()
    }
}

/// The boot snapshot directories: complete ones (with a manifest) only.
fn snapshots(server: &Server) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(server.data_dir().join("boot-snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    out.sort();
    out
}

/// The boot snapshot of VMs with `memory_mib` of memory.
fn snapshot_of_size(server: &Server, memory_mib: u32) -> std::path::PathBuf {
    snapshots(server)
        .into_iter()
        .find(|p| {
            let m = std::fs::read_to_string(p.join("manifest.json")).unwrap();
            m.contains(&format!("\"memory_mib\": {memory_mib}"))
        })
        .unwrap()
}

/// The directories of the VMs (not of warm VMMs, which no VM owns yet).
fn vm_dirs(server: &Server) -> Vec<std::path::PathBuf> {
    let warm = server.warm_vmm_dirs();
    std::fs::read_dir(server.data_dir().join("vms"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|d| !warm.contains(d))
        .collect()
}

/// The directories of the VMs whose disk is an overlay over `disk` (a hard link to it).
fn vms_on(server: &Server, disk: &std::path::Path) -> Vec<std::path::PathBuf> {
    let ino = std::fs::metadata(disk).unwrap().ino();
    vm_dirs(server)
        .into_iter()
        .filter(|d| std::fs::metadata(d.join("base.ext4")).is_ok_and(|m| m.ino() == ino))
        .collect()
}

/// Checkpoints `vm` and forks the checkpoint as `fork`; the checkpoint's id.
async fn checkpoint_and_fork(client: &mut noid::client::Client, vm: &str, fork: &str) -> String {
    let ckpt = client
        .create_checkpoint(CreateCheckpointRequest {
            vm: vm.into(),
            label: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .restore(RestoreRequest {
            checkpoint_id: ckpt.id.clone(),
            new_name: fork.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    ckpt.id
}

/// The directories under `dir`, at any depth.
fn walk_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk_dirs(&e.path()));
            out.push(e.path());
        }
    }
    out
}

fn created_lines(server: &Server, how: &str) -> usize {
    server
        .log()
        .lines()
        .filter(|l| l.contains("VM created:") && l.contains(how))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_vms_start_from_a_boot_snapshot_of_their_size() {
    let mut server = Server::start(&["alice", "bob"], "");
    let mut alice = server.client("alice").await;
    // The server tells whether a VM of a shape would start from a boot snapshot (what the
    // CLI's spinner says while it creates one).
    let ready = |mut c: noid::client::Client, memory_mib: u32| async move {
        let ask = noid::v1::GetServerInfoRequest {
            memory_mib,
            ..Default::default()
        };
        c.get_server_info(ask)
            .await
            .unwrap()
            .into_inner()
            .boot_snapshot_ready
    };
    assert!(!ready(alice.clone(), 0).await);
    alice.create_vm(create("first", 0)).await.unwrap();
    assert_eq!(created_lines(&server, "booted"), 1, "{}", server.log());
    assert_eq!(snapshots(&server).len(), 1, "{}", server.log());
    assert!(ready(alice.clone(), 0).await);
    assert!(
        !ready(alice.clone(), 384).await,
        "another size has none yet"
    );
    // What the first VM does from now on is its own.
    sh(&mut alice, "first", "echo mine > /root/first-only").await;

    // Two VMs at once, of two users, from the snapshot.
    let mut bob = server.client("bob").await;
    let (a, b) = tokio::join!(
        alice.create_vm(create("second", 0)),
        bob.create_vm(create("third", 0))
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        created_lines(&server, "from the boot snapshot"),
        2,
        "{}",
        server.log()
    );
    // Each has a disk of its own: an overlay over the snapshot's disk, which it shares (a
    // hard link), holding only what the VM wrote.
    sh(&mut alice, "second", "echo second > /root/second-only").await;
    assert!(!sh(&mut bob, "third", "ls /root")
        .await
        .contains("second-only"));
    let snap_disk = snapshots(&server)[0].join("rootfs.ext4");
    assert_eq!(vms_on(&server, &snap_disk).len(), 2, "{}", server.log());
    for dir in vms_on(&server, &snap_disk) {
        let overlay = std::fs::metadata(dir.join("rootfs.qcow2")).unwrap();
        assert!(
            overlay.blocks() * 512 < 16 << 20,
            "an overlay of {} bytes",
            overlay.blocks() * 512
        );
        assert!(!dir.join("rootfs.ext4").exists());
    }
    // Their memory is the snapshot's memory file, mapped copy-on-write: both map it, and what
    // each writes into its memory is its own.
    let snap_memory = snapshots(&server)[0].join("memory.ram");
    for dir in vms_on(&server, &snap_disk) {
        let pid = std::fs::read_to_string(dir.join("qemu.pid")).unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", pid.trim())).unwrap();
        assert!(
            maps.contains(&snap_memory.display().to_string()),
            "{} does not map {}",
            dir.display(),
            snap_memory.display()
        );
    }
    let fill = "head -c 33554432 /dev/urandom > /dev/shm/mine; md5sum < /dev/shm/mine";
    let second_sum = sh(&mut alice, "second", fill).await;
    let third_sum = sh(&mut bob, "third", fill).await;
    assert_ne!(second_sum, third_sum);
    let sum = "md5sum < /dev/shm/mine";
    assert_eq!(sh(&mut alice, "second", sum).await, second_sum);
    assert_eq!(sh(&mut bob, "third", sum).await, third_sum);
    let mut seen = Vec::new();
    for (client, name) in [(&mut alice, "second"), (&mut bob, "third")] {
        let out = sh(
            client,
            name,
            "hostname; date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; \
             ls /root",
        )
        .await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], name, "{out}");
        let clock: i64 = lines[1].parse().unwrap();
        assert!((clock - host_now()).abs() <= 2, "{name}'s clock: {out}");
        seen.push(lines[2].to_string());
        assert!(
            !out.contains("first-only"),
            "{name} sees the first VM's file"
        );
        // The console history starts with the boot its memory went through.
        let logs = server.run(
            if name == "second" { "alice" } else { "bob" },
            &["logs", name],
        );
        let text = String::from_utf8_lossy(&logs.stdout);
        assert!(text.contains("noid-agent"), "{name}'s logs: {text}");
        assert!(text.contains("started from a boot snapshot"), "{text}");
    }
    assert_ne!(
        seen[0], seen[1],
        "two VMs from one snapshot share their entropy"
    );
    assert_eq!(
        sh(&mut alice, "first", "cat /root/first-only").await,
        "mine\n"
    );

    // A VM from the snapshot checkpoints and forks like any other.
    checkpoint_and_fork(&mut alice, "second", "second-fork").await;
    assert_eq!(
        sh(&mut alice, "second-fork", "hostname").await,
        "second-fork\n"
    );
    assert_eq!(
        sh(&mut alice, "second-fork", sum).await,
        second_sum,
        "the fork has the memory of the checkpoint"
    );

    // Another size gets a snapshot of its own.
    alice.create_vm(create("bigger", 320)).await.unwrap();
    assert_eq!(created_lines(&server, "booted"), 2);
    assert_eq!(snapshots(&server).len(), 2);

    // A damaged snapshot (checked once per server run) is removed; the create boots instead
    // and makes a new one.
    let snap = snapshot_of_size(&server, 256);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap.join("manifest.json")).unwrap())
            .unwrap();
    // The device state: VMs started from the snapshot map its memory file, which is never
    // changed under them (truncating it would take their memory away).
    let memory = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .find(|n| *n == "memory.state")
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(snap.join(memory))
        .unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    server.restart();
    let mut alice = server.client("alice").await;
    alice.create_vm(create("fourth", 0)).await.unwrap();
    assert!(server.log().contains("removing it and booting instead"));
    // The VMs on its disk run on, and their disks still checkpoint and fork whole.
    assert_eq!(
        sh(&mut alice, "second", "cat /root/second-only").await,
        "second\n"
    );
    checkpoint_and_fork(&mut alice, "second", "second-fork-2").await;
    assert_eq!(
        sh(
            &mut alice,
            "second-fork-2",
            "cat /root/second-only; hostname"
        )
        .await,
        "second\nsecond-fork-2\n"
    );
    assert_eq!(created_lines(&server, "booted"), 3, "{}", server.log());
    assert_eq!(sh(&mut alice, "fourth", "hostname").await, "fourth\n");
    assert_eq!(snapshots(&server).len(), 2, "the snapshot is made again");

    // One whose files match their manifest but that the VMM cannot restore (here: memory
    // overwritten and the manifest made to agree) goes the same way.
    let snap = snapshot_of_size(&server, 256);
    let len = std::fs::metadata(snap.join(memory)).unwrap().len();
    std::fs::write(snap.join(memory), vec![0x5a; len as usize]).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(snap.join(memory))
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap.join("manifest.json")).unwrap())
            .unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["name"] == memory {
            f["checksum"] = sum.into();
        }
    }
    std::fs::write(snap.join("manifest.json"), manifest.to_string()).unwrap();
    server.restart();
    let mut alice = server.client("alice").await;
    alice.create_vm(create("fourth-b", 0)).await.unwrap();
    assert_eq!(created_lines(&server, "booted"), 4, "{}", server.log());
    assert_eq!(sh(&mut alice, "fourth-b", "hostname").await, "fourth-b\n");
    let logs = server.run("alice", &["logs", "fourth-b"]);
    assert!(
        !String::from_utf8_lossy(&logs.stdout).contains("started from a boot snapshot"),
        "the failed restore's console history went with it"
    );
    assert_eq!(snapshots(&server).len(), 2, "the snapshot is made again");

    // The old ways: memory inside the migration stream (a snapshot of its own, so the first
    // create boots), and each VM a copy of the snapshot's disk, where a spare copy, made in
    // the background, is ready for the next create.
    server.restart_with("[vm]\ndisk_overlays = \"never\"\n[qemu]\nmemory_files = false\n");
    let mut alice = server.client("alice").await;
    alice.create_vm(create("copied", 0)).await.unwrap();
    assert_eq!(created_lines(&server, "booted"), 5, "{}", server.log());
    let stream_snap = snapshots(&server)
        .into_iter()
        .find(|s| !s.join("memory.ram").exists())
        .expect("a snapshot without a memory file");
    let spare = stream_snap.join("spare-rootfs.ext4");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !spare.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no spare disk was made"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let spare_ino = std::fs::metadata(&spare).unwrap().ino();
    alice.create_vm(create("spare", 0)).await.unwrap();
    // The create took the spare, or the warm VMM started for the next create did.
    let took = std::fs::read_dir(server.data_dir().join("vms"))
        .unwrap()
        .flatten()
        .any(|e| {
            std::fs::metadata(e.path().join("rootfs.ext4")).is_ok_and(|m| m.ino() == spare_ino)
        });
    assert!(took, "the spare was taken");
    for name in ["copied", "spare"] {
        assert_eq!(sh(&mut alice, name, "hostname").await, format!("{name}\n"));
    }
    let raw_vms = vm_dirs(&server)
        .into_iter()
        .filter(|d| d.join("rootfs.ext4").is_file())
        .count();
    assert_eq!(
        raw_vms, 2,
        "only the VMs made without overlays have raw disks"
    );
    sh(&mut alice, "spare", "echo kept > /dev/shm/note").await;
    let id = checkpoint_and_fork(&mut alice, "spare", "spare-fork").await;
    let ckpt_dir = walk_dirs(&server.data_dir().join("checkpoints"))
        .into_iter()
        .find(|d| d.ends_with(&id))
        .unwrap();
    assert!(ckpt_dir.join("memory.state").is_file());
    assert!(!ckpt_dir.join("memory.ram").exists());
    assert_eq!(
        sh(&mut alice, "spare-fork", "cat /dev/shm/note").await,
        "kept\n"
    );

    // Off: the snapshots go, and every create boots.
    server.restart_with("[vm]\nboot_snapshots = false\n");
    let mut alice = server.client("alice").await;
    assert!(snapshots(&server).is_empty());
    alice.create_vm(create("fifth", 0)).await.unwrap();
    assert_eq!(created_lines(&server, "booted"), 6);
    assert!(snapshots(&server).is_empty());
    assert_eq!(sh(&mut alice, "fifth", "hostname").await, "fifth\n");
}

/// Waits until the server has exactly `n` warm VMMs; their directories.
async fn warm_vmms(server: &Server, n: usize) -> Vec<std::path::PathBuf> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let dirs = server.warm_vmm_dirs();
        if dirs.len() == n {
            return dirs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} warm VMMs, not {n}: {dirs:?}\n{}",
            dirs.len(),
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn dir_name(dir: &std::path::Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_take_warm_vmms_that_waited_for_the_boot_snapshot() {
    let mut server = Server::start(&["alice"], "");
    let mut alice = server.client("alice").await;
    alice.create_vm(create("first", 0)).await.unwrap();
    // Once the boot snapshot is made, a VMM waits for the next create.
    let warm = warm_vmms(&server, 1).await;
    let waiting = std::fs::read_to_string(warm[0].join("qemu.pid")).unwrap();
    assert!(common::pid_alive(waiting.trim().parse().unwrap()));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // The next create takes it: the VM is the warm VMM's directory and process.
    let second = alice.create_vm(create("second", 0)).await.unwrap();
    let second = second.into_inner();
    assert_eq!(second.id, dir_name(&warm[0]), "{}", server.log());
    assert_eq!(created_lines(&server, "from the boot snapshot"), 1);
    assert_eq!(sh(&mut alice, "second", "hostname").await, "second\n");
    // Its clock is the host's, not the one it stood at while it waited paused.
    let guest_now: i64 = sh(&mut alice, "second", "date +%s")
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(
        (guest_now - host_now()).abs() <= 1,
        "guest clock {guest_now}"
    );
    // And another waits in its place.
    let warm = warm_vmms(&server, 1).await;
    assert_ne!(dir_name(&warm[0]), second.id);

    // A warm VMM that cannot be resumed (here its QMP socket is gone) is stopped, and the VM
    // restores into a VMM of its own in the same place.
    std::fs::remove_file(warm[0].join("qmp.sock")).unwrap();
    let third = alice.create_vm(create("third", 0)).await.unwrap();
    assert_eq!(third.into_inner().id, dir_name(&warm[0]));
    assert!(server.log().contains("a warm VMM could not be resumed"));
    assert_eq!(created_lines(&server, "from the boot snapshot"), 2);
    assert_eq!(sh(&mut alice, "third", "hostname").await, "third\n");

    // A warm VMM that died is not taken: the create restores into a VMM of its own, the dead
    // one's directory goes, and a new one waits.
    let warm = warm_vmms(&server, 1).await;
    let pid: u32 = std::fs::read_to_string(warm[0].join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill with a pid read from the warm VMM's pid file.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while common::pid_alive(pid) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let fourth = alice.create_vm(create("fourth", 0)).await.unwrap();
    assert_ne!(fourth.into_inner().id, dir_name(&warm[0]));
    assert_eq!(created_lines(&server, "from the boot snapshot"), 3);
    assert_eq!(sh(&mut alice, "fourth", "hostname").await, "fourth\n");
    let replaced = warm_vmms(&server, 1).await;
    assert!(!warm[0].exists(), "the dead warm VMM's directory is gone");
    assert_ne!(replaced, warm);

    // A server that stops stops its warm VMMs; one that starts starts them again.
    let waiting = std::fs::read_to_string(replaced[0].join("qemu.pid")).unwrap();
    server.stop();
    assert!(!replaced[0].exists());
    assert!(!common::pid_alive(waiting.trim().parse().unwrap()));
    server.start_again();
    let warm = warm_vmms(&server, 1).await;
    // A crash leaves its warm VMM to the next start, which removes it and starts another.
    server.crash_and_restart();
    let after_crash = warm_vmms(&server, 1).await;
    assert!(!warm[0].exists(), "{}", server.log());
    assert_ne!(after_crash, warm);
    assert_eq!(server.vmm_pids().len(), 4, "four VMs");

    // None with the setting at 0.
    server.restart_with("[vm]\nwarm_vmms = 0\n");
    let mut alice = server.client("alice").await;
    alice.create_vm(create("fifth", 0)).await.unwrap();
    assert_eq!(created_lines(&server, "from the boot snapshot"), 4);
    warm_vmms(&server, 0).await;
    assert_eq!(server.vmm_pids().len(), 5, "five VMs");
}
