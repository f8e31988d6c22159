//! Reliability, against a real server and real VMs: each case is a failure that was seen
//! (a guest agent crashed by a user, a frozen VM hanging calls, a client that stops reading
//! holding its command back, zombies, a retried create that cannot get its VM back, a
//! server that does not stop), reproduced and shown fixed; and what keeps one user or VM
//! from hurting the rest (quotas, host memory, cgroups).

mod common;

use std::time::{Duration, Instant};

use common::{exec, sh, Server};
use futures::StreamExt;
use noid::v1::{
    exec_request, CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, ExecRequest,
    ExecStart, GetCheckpointRequest, GetVmRequest, RestoreRequest, VmState,
};
use tonic::Code;

fn create(name: &str) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn start(vm: &str, argv: &[&str], stdin: bool) -> ExecRequest {
    ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            vm: vm.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin,
            ..Default::default()
        })),
    }
}

/// How an Exec call ends: its exit code, or the error status.
async fn exec_end(
    c: &mut noid::client::Client,
    msgs: Vec<ExecRequest>,
) -> Result<i32, tonic::Status> {
    let mut stream = c.exec(futures::stream::iter(msgs)).await?.into_inner();
    while let Some(m) = stream.next().await {
        if let Some(noid::v1::exec_response::Msg::Exit(x)) = m?.msg {
            return Ok(x.code);
        }
    }
    Err(tonic::Status::unknown("no exit"))
}

/// Zombie children of process `pid`.
fn zombie_children(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        if rest.next() == Some("Z") && rest.next() == Some(&pid.to_string()) {
            out.push(stat[..close + 1].to_string());
        }
    }
    out
}

/// The VMM pid of `vm`.
async fn vmm_pid(c: &mut noid::client::Client, vm: &str) -> u32 {
    c.get_vm(GetVmRequest { name: vm.into() })
        .await
        .unwrap()
        .into_inner()
        .vmm_pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_calls_streams_retries_quotas_and_cgroups() {
    let mut server = Server::start(
        &["alice", "bob"],
        "[vm]\nagent_timeout_secs = 3\nexec_stall_secs = 2\n[quota]\nvms = 4\n",
    );
    let mut c = server.client("alice").await;
    c.create_vm(create("r")).await.unwrap();

    // 1. Commands too long for the guest kernel (E2BIG), six at a time, several rounds: each
    // is INVALID_ARGUMENT, and the agent lives on (exec, checkpoint and fork still work).
    // (One argument above the kernel's 128 KiB limit per argument is enough.)
    let huge = "x".repeat(200_000);
    for _ in 0..3 {
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let mut c = c.clone();
                let mut argv = vec!["/bin/true".to_string()];
                argv.push(huge.clone());
                tokio::spawn(async move {
                    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    exec(&mut c, "r", &argv, None, None).await
                })
            })
            .collect();
        for call in calls {
            let e = call.await.unwrap().unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
            assert!(e.message().contains("E2BIG"), "{}", e.message());
        }
    }
    assert_eq!(sh(&mut c, "r", "echo alive").await, "alive\n");
    let ck = c
        .create_checkpoint(CreateCheckpointRequest {
            vm: "r".into(),
            label: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    c.restore(RestoreRequest {
        checkpoint_id: ck.id.clone(),
        new_name: "r-fork".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(sh(&mut c, "r-fork", "echo forked").await, "forked\n");

    // 2. A second `start`, and a stdin message above the server's limit: the call fails with
    // the reason, and the command is killed (it never sees end of input and carries on).
    let e = exec_end(
        &mut c,
        vec![
            start("r", &["sleep", "30"], false),
            start("r", &["true"], false),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let big = ExecRequest {
        msg: Some(exec_request::Msg::Stdin(vec![b'x'; 70 << 20])),
    };
    let script = "cat > /tmp/in; echo done > /tmp/stdin-done";
    // (The error reaches the client as the server's status, or, when the server resets the
    // stream it stopped reading while the client still sends, as that reset.)
    let e = exec_end(&mut c, vec![start("r", &["sh", "-c", script], true), big])
        .await
        .unwrap_err();
    assert!(
        e.code() == Code::ResourceExhausted && e.message().contains("too large")
            || e.message().contains("h2 protocol error"),
        "{e:?}"
    );
    // Both commands end (killed, or finished because their input ended); only the second
    // way leaves /tmp/stdin-done behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sh(&mut c, "r", "pidof sleep cat || true").await.is_empty() {
        assert!(Instant::now() < deadline, "the commands were not killed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        sh(&mut c, "r", "cat /tmp/stdin-done 2>/dev/null || true").await,
        "",
        "the command went on as if its input had ended"
    );

    // 3. A frozen VM (its VMM stopped): calls fail within the agent timeout with UNAVAILABLE
    // instead of hanging; once it runs again, so do they.
    let pid = vmm_pid(&mut c, "r").await;
    // SAFETY: stops the VMM process this test's server started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let began = Instant::now();
    let e = exec(&mut c, "r", &["true"], None, None).await.unwrap_err();
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(
        e.message().contains("did not answer within 3s"),
        "{}",
        e.message()
    );
    assert!(began.elapsed() < Duration::from_secs(30));
    assert_eq!(sh(&mut c, "r", "echo thawed").await, "thawed\n");

    // 4. A client that never reads its command's output does not hold the command back: the
    // output is dropped after exec_stall_secs, the command finishes, and the client learns
    // at the end how much was dropped.
    let script = "yes | head -c 30000000; echo finished > /tmp/unread";
    // (On a connection of its own: unread data holds part of a connection's window.)
    let mut unread = server
        .client("alice")
        .await
        .exec(futures::stream::iter([start(
            "r",
            &["sh", "-c", script],
            false,
        )]))
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sh(&mut c, "r", "cat /tmp/unread 2>/dev/null || true").await != "finished\n" {
        assert!(
            Instant::now() < deadline,
            "the command waited for its reader"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let end = loop {
        match unread.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without saying output was dropped"),
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted);
    assert!(
        end.message().contains("bytes of output were dropped"),
        "{}",
        end.message()
    );

    // 5. No zombie per VM start (QEMU daemonizes by forking twice).
    let server_pid = server.pid().unwrap();
    assert_eq!(zombie_children(server_pid), Vec::<String>::new());

    // 6. A create whose client gives up (deadline) still completes; its retry with the same
    // request id gets that VM, not ALREADY_EXISTS; another id (or none) does. (A size of its
    // own: it boots, which takes far longer than the deadline, where a create into a warm VMM
    // may not.)
    let idem = || CreateVmRequest {
        memory_mib: 192,
        ..create("idem")
    };
    let mut req = tonic::Request::new(CreateVmRequest {
        request_id: "req-1".into(),
        ..idem()
    });
    req.set_timeout(Duration::from_millis(50));
    let e = c.create_vm(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    let again = c
        .create_vm(CreateVmRequest {
            request_id: "req-1".into(),
            ..idem()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state, VmState::Running as i32);
    let again2 = c
        .create_vm(CreateVmRequest {
            request_id: "req-1".into(),
            ..idem()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again2.id, again.id);
    for id in ["req-2", ""] {
        let e = c
            .create_vm(CreateVmRequest {
                request_id: id.into(),
                ..idem()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
    }

    // 7. Quotas: alice may have 4 VMs (r, r-fork, idem, a fourth); bob is not limited by
    // alice's VMs.
    c.create_vm(create("fourth")).await.unwrap();
    let e = c.create_vm(create("fifth")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("user alice has 4 VMs"),
        "{}",
        e.message()
    );
    let e = c
        .restore(RestoreRequest {
            checkpoint_id: ck.id.clone(),
            new_name: "fork-5".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let mut bob = server.client("bob").await;
    bob.create_vm(create("b")).await.unwrap();

    // 8. Each VMM runs in a cgroup of its own with its limits, gone with the VM.
    let pid = vmm_pid(&mut c, "fourth").await;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = cgroups
        .lines()
        .find(|l| l.contains("/noid-"))
        .unwrap_or_else(|| panic!("the VMM is in no cgroup of noid's: {cgroups}"));
    let path = line.splitn(3, ':').nth(2).unwrap().to_string();
    let id = path.rsplit('/').next().unwrap().to_string();
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|f| {
        let (root, file) = f.rsplit_once('/').unwrap();
        std::fs::read_to_string(format!("{root}{path}/{file}")).ok()
    })
    .expect("a memory limit");
    assert_eq!(limit.trim(), ((256u64 + 256) << 20).to_string());
    c.delete_vm(DeleteVmRequest {
        name: "fourth".into(),
    })
    .await
    .unwrap();
    let leftovers: Vec<_> = [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
    ]
    .iter()
    .map(|root| format!("{root}{path}"))
    .filter(|p| std::path::Path::new(p).exists())
    .collect();
    assert!(
        leftovers.is_empty(),
        "cgroup of VM {id} left: {leftovers:?}"
    );

    // 9. Input an API should refuse, refused with a short, clear message.
    let e = c
        .get_checkpoint(GetCheckpointRequest {
            id: "f".repeat(16 * 1024),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 200, "{}", e.message());
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/vms/r/checkpoints", server.http_url))
        .bearer_auth(&server.tokens["alice"])
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .post(format!("{}/vms/r/exec", server.http_url))
        .bearer_auth(&server.tokens["alice"])
        .json(&serde_json::json!({"command": ["true"], "timeout_secs": 1e9}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body.to_string().contains("up to 4000000 seconds"), "{body}");
    // A VM with no checkpoints leaves no folder for them behind.
    let b_id = bob
        .get_vm(GetVmRequest { name: "b".into() })
        .await
        .unwrap()
        .into_inner()
        .id;
    bob.delete_vm(DeleteVmRequest { name: "b".into() })
        .await
        .unwrap();
    assert!(!server.data_dir().join("checkpoints").join(&b_id).exists());

    // 10. SIGTERM ends the server promptly even with a follower of the logs attached.
    let mut follower = server
        .cli("alice")
        .args(["logs", "-f", "r"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its stream is open once the console's history arrives.
    let mut first = [0u8; 1];
    std::io::Read::read_exact(follower.stdout.as_mut().unwrap(), &mut first)
        .expect("the follower got the console's history");
    // SAFETY: signals the server this test started.
    unsafe { libc::kill(server.pid().unwrap() as i32, libc::SIGTERM) };
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("the server did not stop within 15s of SIGTERM");
    assert!(status.success(), "{status}");
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn memory_the_host_lacks_is_refused_up_front() {
    let server = Server::start(&["alice"], "[vm]\nhost_memory_reserve_mib = 100000000\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let e = server
            .client("alice")
            .await
            .create_vm(create("big"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(
            e.message().contains("insufficient memory"),
            "{}",
            e.message()
        );
    });
    assert!(server.vmm_pids().is_empty());
}

#[test]
fn running_out_of_descriptors_degrades_instead_of_exiting() {
    // 128 open files, and more API connections allowed than that: accepts fail for want of
    // descriptors while the connections below are held.
    let mut server = Server::start_opts(
        &["alice"],
        "max_connections = 1000\n",
        None,
        &["prlimit", "--nofile=128:128", "--"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = rt.block_on(server.client("alice"));
    rt.block_on(c.create_vm(create("v"))).unwrap();
    let addr = server.url.trim_start_matches("http://").to_string();
    let held: Vec<_> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(held.len() > 150, "{} connections", held.len());
    // Long enough for the state watcher to look at the VM meanwhile.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server exited"
    );
    drop(held);
    let vm = rt
        .block_on(c.get_vm(GetVmRequest { name: "v".into() }))
        .unwrap()
        .into_inner();
    assert_eq!(vm.state, VmState::Running as i32, "{vm:?}");
    assert_eq!(rt.block_on(sh(&mut c, "v", "echo ok")), "ok\n");
    assert!(
        server.log().contains("cannot accept API connections"),
        "{}",
        server.log()
    );
}

#[test]
fn a_full_host_disk_pauses_vms_visibly_until_space_returns() {
    let mount = common::Mount::tmpfs("1500M");
    // (No cgroups: on a tmpfs, what the VMM writes to its disk counts as its memory.)
    let server = Server::start_in(
        &["alice"],
        "[vm]\ndisk_reserve_mib = 0\ncgroups = false\n",
        Some(mount.path.join("data")),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = server.client("alice").await;
        c.create_vm(create("d")).await.unwrap();
        let snapshots = server.data_dir().join("boot-snapshots");
        assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 1);
        // Fill the data directory's filesystem but for a few MiB.
        let filler = mount.path.join("filler");
        let free = mount.free_bytes();
        let status = std::process::Command::new("fallocate")
            .args(["-l", &(free - (4 << 20)).to_string()])
            .arg(&filler)
            .status()
            .unwrap();
        assert!(status.success());
        let mut writer = c.clone();
        let dd = tokio::spawn(async move {
            let script = "dd if=/dev/zero of=/root/big bs=1M count=200 conv=fsync 2>/dev/null";
            exec(&mut writer, "d", &["sh", "-c", script], None, None).await
        });
        // The guest's writes fail on the host: the VM shows as paused, and why.
        let deadline = Instant::now() + Duration::from_secs(60);
        let vm = loop {
            let vm = c
                .get_vm(GetVmRequest { name: "d".into() })
                .await
                .unwrap()
                .into_inner();
            if vm.state == VmState::Paused as i32 {
                break vm;
            }
            assert!(Instant::now() < deadline, "never paused: {vm:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(vm.state_reason.contains("no space"), "{}", vm.state_reason);
        let e = exec(&mut c, "d", &["true"], None, None).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("paused"), "{}", e.message());
        // No room for another VM: refused before anything is made; the boot snapshot stays.
        let e = c.create_vm(create("e")).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
        assert!(
            e.message().contains("insufficient disk space"),
            "{}",
            e.message()
        );
        assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 1);
        // Space again: the VM runs on by itself, and its write completes.
        std::fs::remove_file(&filler).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let vm = c
                .get_vm(GetVmRequest { name: "d".into() })
                .await
                .unwrap()
                .into_inner();
            if vm.state == VmState::Running as i32 {
                assert!(vm.state_reason.is_empty());
                break;
            }
            assert!(Instant::now() < deadline, "never resumed: {vm:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // (The writer's exec stream may have ended while the guest was paused: the agent
        // connection's keepalive gives up on a guest that does not answer.)
        let _ = dd.await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while sh(&mut c, "d", "pidof dd || wc -c < /root/big").await != format!("{}\n", 200 << 20) {
            assert!(
                Instant::now() < deadline,
                "the guest's write never completed"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        c.create_vm(create("e")).await.unwrap();
        assert!(server
            .log()
            .contains("VM created: e (no network, from the boot snapshot"));
    });
}
