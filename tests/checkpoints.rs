//! Checkpoints end to end with real VMs: freeze a running VM, restore it in place, fork it,
//! and the failure cases (corrupt files, another image, a full disk), each leaving nothing
//! behind. Disk copies share extents on btrfs and fall back to sparse copies elsewhere.

mod common;

use common::{exec, host_now, sh, Mount, Server};
use noid::v1::{
    CreateCheckpointRequest, CreateVmRequest, DeleteCheckpointRequest, DeleteVmRequest,
    GetCheckpointRequest, ListCheckpointsRequest, ListVmsRequest, RestoreRequest,
};
use tonic::Code;

/// Counts in /run/count, replacing the file whole each time (a reader, or a checkpoint, never
/// catches it truncated).
const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /run/count.new; mv /run/count.new /run/count; sleep 0.1; done";

fn create(name: &str) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        cpus: 0,
        memory_mib: 0,
        ..Default::default()
    }
}

fn checkpoint(vm: &str, label: &str) -> CreateCheckpointRequest {
    CreateCheckpointRequest {
        vm: vm.into(),
        label: label.into(),
    }
}

fn restore(id: &str, new_name: &str) -> RestoreRequest {
    RestoreRequest {
        checkpoint_id: id.into(),
        new_name: new_name.into(),
        ..Default::default()
    }
}

async fn count(c: &mut noid::client::Client, vm: &str) -> u64 {
    sh(c, vm, "cat /run/count 2>/dev/null || echo 0")
        .await
        .trim()
        .parse()
        .unwrap()
}

/// Waits until the VM's counter passes `past`, and returns it.
async fn count_past(c: &mut noid::client::Client, vm: &str, past: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = count(c, vm).await;
        if n > past {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the counter of {vm} stays at {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_restore_and_fork() {
    let server = Server::start(&["alice", "bob"], "");
    let mut c = server.client("alice").await;
    c.create_vm(create("src")).await.unwrap();

    // A process with state in memory (the counter in a tmpfs) and a file on disk.
    sh(
        &mut c,
        "src",
        &format!("setsid sh -c '{COUNTER}' >/dev/null 2>&1 < /dev/null &"),
    )
    .await;
    sh(&mut c, "src", "echo before > /root/file; sync").await;
    count_past(&mut c, "src", 2).await;
    let pid = sh(&mut c, "src", "pgrep -f 'while :' | head -n1").await;

    let ckpt = c
        .create_checkpoint(checkpoint("src", "first"))
        .await
        .unwrap()
        .into_inner();
    let at_checkpoint = count(&mut c, "src").await;
    assert_eq!(ckpt.vm, "src");
    assert_eq!(ckpt.label, "first");
    assert!(
        ckpt.memory_bytes > 1 << 20 && ckpt.disk_bytes > 1 << 20,
        "{ckpt:?}"
    );
    // The guest kept running across the checkpoint and never noticed. (Far enough that the
    // counter gets well past what a restore plus a read can add after the restore.)
    let later = count_past(&mut c, "src", at_checkpoint + 15).await;

    // Change both, then restore in place.
    sh(
        &mut c,
        "src",
        "echo after > /root/file; echo new > /root/new; sync",
    )
    .await;
    let out = server.run("alice", &["restore", &ckpt.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = count(&mut c, "src").await;
    assert!(
        restored < later,
        "the counter must continue from the checkpoint: {at_checkpoint} / {later} / {restored}"
    );
    assert_eq!(sh(&mut c, "src", "cat /root/file").await, "before\n");
    assert_eq!(
        sh(&mut c, "src", "test -e /root/new || echo gone").await,
        "gone\n"
    );
    assert_eq!(
        sh(&mut c, "src", "pgrep -f 'while :' | head -n1").await,
        pid
    );
    // The counter runs again.
    count_past(&mut c, "src", restored).await;

    // Three forks at once: own hostname, own randomness, the host's clock, working exec.
    let forks: Vec<_> = ["fork-a", "fork-b", "fork-c"]
        .into_iter()
        .map(|name| {
            let mut c = c.clone();
            let id = ckpt.id.clone();
            tokio::spawn(async move { c.restore(restore(&id, name)).await.map(|r| r.into_inner()) })
        })
        .collect();
    let mut randoms = Vec::new();
    for (f, name) in forks.into_iter().zip(["fork-a", "fork-b", "fork-c"]) {
        let vm = f.await.unwrap().unwrap();
        assert_eq!(vm.name, name);
        assert_eq!(vm.parent_checkpoint, ckpt.id);
        assert_eq!(sh(&mut c, name, "hostname").await.trim(), name);
        assert_eq!(sh(&mut c, name, "cat /root/file").await, "before\n");
        // The fork's clock is the host's, not the checkpoint's (seconds behind by now); a
        // little slack for a loaded host, where the guest's reply itself takes a while.
        let guest_now: i64 = sh(&mut c, name, "date +%s").await.trim().parse().unwrap();
        let off = guest_now - host_now();
        assert!(off.abs() <= 4, "{name} clock off by {off} s");
        randoms.push(sh(&mut c, name, "head -c 32 /dev/urandom | od -An -tx1").await);
    }
    randoms.sort();
    randoms.dedup();
    assert_eq!(randoms.len(), 3, "forks must not share random numbers");

    // Destroying one fork leaves the others and the source working.
    c.delete_vm(DeleteVmRequest {
        name: "fork-b".into(),
    })
    .await
    .unwrap();
    for vm in ["src", "fork-a", "fork-c"] {
        assert_eq!(sh(&mut c, vm, "echo ok").await, "ok\n", "{vm}");
    }

    // Listing: newest first, with label; the CLI shows the same.
    let second = c
        .create_checkpoint(checkpoint("fork-a", ""))
        .await
        .unwrap()
        .into_inner();
    let list = c
        .list_checkpoints(ListCheckpointsRequest {
            vm: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str(), ckpt.id.as_str()]);
    assert_eq!(
        second.parent_checkpoint, ckpt.id,
        "a fork's checkpoint names its parent"
    );
    let out = server.run("alice", &["checkpoints", "src", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["checkpoints"].as_array().unwrap().len(), 1);
    assert_eq!(j["checkpoints"][0]["label"], "first");

    // Errors: unknown, malformed, another user's, a taken name.
    let e = c.restore(restore("0123456789ab", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.restore(restore("../etc", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut bob = server.client("bob").await;
    let e = bob
        .get_checkpoint(GetCheckpointRequest {
            id: ckpt.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.restore(restore(&ckpt.id, "fork-a")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c
        .create_checkpoint(checkpoint("src", "a\nb"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A corrupted checkpoint is caught before QEMU sees it, and nothing is created.
    let ckpt_dir = find_checkpoint_dir(&server, &second.id);
    let state = ckpt_dir.join("memory.state");
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&state, &bytes).unwrap();
    let vms_before = c
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms
        .len();
    let e = c
        .restore(restore(&second.id, "from-bad"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("damaged") && e.message().contains("memory.state"),
        "{}",
        e.message()
    );
    let vms_after = c
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms
        .len();
    assert_eq!(vms_before, vms_after);
    // Truncated: the size check names it.
    bytes[mid] ^= 0xff;
    std::fs::write(&state, &bytes[..mid]).unwrap();
    let e = c.restore(restore(&second.id, "")).await.unwrap_err();
    assert!(e.message().contains("bytes"), "{}", e.message());
    assert_eq!(
        sh(&mut c, "fork-a", "echo alive").await,
        "alive\n",
        "a refused restore leaves the VM alone"
    );

    // Delete: the record and the files go.
    let out = server.run("alice", &["checkpoint", "rm", &second.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ckpt_dir.exists());
    let e = c
        .delete_checkpoint(DeleteCheckpointRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The source's checkpoint outlives the source: fork from it after the source is gone.
    c.delete_vm(DeleteVmRequest { name: "src".into() })
        .await
        .unwrap();
    let e = c.restore(restore(&ckpt.id, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    c.restore(restore(&ckpt.id, "phoenix")).await.unwrap();
    assert_eq!(sh(&mut c, "phoenix", "cat /root/file").await, "before\n");

    // A checkpoint made with another guest image is refused by name.
    drop(c);
    drop(bob);
    let mut server = server;
    let other_image = server.dir.path().join("other-image");
    std::fs::create_dir(&other_image).unwrap();
    for f in ["vmlinuz", "initrd.img", "rootfs.ext4"] {
        std::os::unix::fs::symlink(common::image_dir().join(f), other_image.join(f)).unwrap();
    }
    // The same base but for its id: the format of the real one.
    let real: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::image_dir().join("manifest.json")).unwrap())
            .unwrap();
    std::fs::write(
        other_image.join("manifest.json"),
        format!(
            r#"{{"format": {}, "id": "someotherimage", "kernel_release": "{}"}}"#,
            real["format"],
            common::image_kernel_release()
        ),
    )
    .unwrap();
    server.set_image_dir(&other_image);
    server.restart();
    let mut c = server.client("alice").await;
    let e = c.restore(restore(&ckpt.id, "mismatch")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("someotherimage"), "{}", e.message());
}

fn find_checkpoint_dir(server: &Server, id: &str) -> std::path::PathBuf {
    for vm in std::fs::read_dir(server.data_dir().join("checkpoints"))
        .unwrap()
        .flatten()
    {
        let p = vm.path().join(id);
        if p.is_dir() {
            return p;
        }
    }
    panic!("no directory for checkpoint {id}");
}

/// A disk that fills up while a checkpoint is written: RESOURCE_EXHAUSTED, no files, no
/// record, and the VM runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_during_checkpoint() {
    let mount = Mount::tmpfs("48m");
    // (No reserve: admission would refuse the VM on so small a disk.)
    let server = Server::start_in(
        &["alice"],
        "[vm]\ndisk_reserve_mib = 0\n",
        Some(mount.path.join("data")),
    );
    let mut c = server.client("alice").await;
    c.create_vm(create("tight")).await.unwrap();
    let e = c
        .create_checkpoint(checkpoint("tight", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(e.message().contains("no space"), "{}", e.message());
    let list = c
        .list_checkpoints(ListCheckpointsRequest {
            vm: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    assert!(list.is_empty());
    let leftovers: Vec<_> = walk(&server.data_dir().join("checkpoints"));
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    let r = exec(&mut c, "tight", &["echo", "still running"], None, None)
        .await
        .unwrap();
    assert_eq!(r.out(), "still running\n");
    c.delete_vm(DeleteVmRequest {
        name: "tight".into(),
    })
    .await
    .unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// On btrfs the checkpoint's disk copy shares extents with the VM's disk: 200 MiB written in
/// the guest cost (almost) nothing again when checkpointed. Elsewhere the sparse copy is the
/// fallback, exercised by every other test here (the data directory is ext4 or tmpfs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_checkpoints_share_extents() {
    let mount = Mount::btrfs_loop("2G");
    let server = Server::start_in(&["alice"], "", Some(mount.path.join("data")));
    let mut c = server.client("alice").await;
    c.create_vm(create("cow")).await.unwrap();
    sh(
        &mut c,
        "cow",
        "dd if=/dev/urandom of=/root/big bs=1M count=200 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches",
    )
    .await;
    let before = mount.free_bytes();
    let ckpt = c
        .create_checkpoint(checkpoint("cow", ""))
        .await
        .unwrap()
        .into_inner();
    let used = before.saturating_sub(mount.free_bytes());
    println!(
        "checkpoint used {} MiB of btrfs for {} MiB memory state and a {} MiB disk holding 200 MiB of data",
        used >> 20,
        ckpt.memory_bytes >> 20,
        ckpt.disk_bytes >> 20
    );
    assert!(
        used < ckpt.memory_bytes + (40 << 20),
        "the disk copy was not shared: {} MiB used",
        used >> 20
    );
    // The shared copy restores like any other.
    c.restore(restore(&ckpt.id, "cow-2")).await.unwrap();
    assert_eq!(
        sh(&mut c, "cow-2", "stat -c %s /root/big").await.trim(),
        "209715200"
    );
}
