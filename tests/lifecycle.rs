//! VM lifecycle end to end with real VMs and the real CLI: pause and resume (and resume on use
//! with `auto_resume`), hibernate and wake (on use too), time limits and idle timeouts,
//! forking one checkpoint into many VMs in one call, checkpoint retention (count and age),
//! slow-checkpoint warnings, exec sessions that a checkpoint carries, and stop and start.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{host_now, sh, Server};
use noid::v1::{
    attach_session_request, attach_session_response, AttachSessionRequest, AttachTarget,
    ListCheckpointsRequest, ListSessionsRequest,
};
use reqwest::Method;
use serde_json::{json, Value};

/// Counts in /run/count, ten times a second of guest time.
const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /run/count.new; mv /run/count.new /run/count; sleep 0.1; done";

fn ok(server: &Server, args: &[&str]) -> String {
    let out = server.run("alice", args);
    assert!(
        out.status.success(),
        "noid {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CLI fails with one line on stderr; returns it.
fn fails(server: &Server, args: &[&str]) -> (String, String) {
    let out = server.run("alice", args);
    assert!(!out.status.success(), "noid {} succeeded", args.join(" "));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

async fn count(c: &mut noid::client::Client, vm: &str) -> u64 {
    sh(c, vm, "cat /run/count 2>/dev/null || echo 0")
        .await
        .trim()
        .parse()
        .unwrap()
}

async fn checkpoint_ids(c: &mut noid::client::Client, vm: &str) -> Vec<String> {
    c.list_checkpoints(ListCheckpointsRequest {
        vm: vm.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .checkpoints
    .into_iter()
    .map(|c| c.id)
    .collect()
}

/// A REST call to the gateway as alice: the status and the JSON body.
async fn rest(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", server.http_url))
        .bearer_auth(&server.tokens["alice"]);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `noid checkpoint VM` and the new checkpoint's id.
fn checkpoint(server: &Server, vm: &str) -> String {
    let out = ok(server, &["--json", "checkpoint", vm]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn pause_resume_and_resume_on_use() {
    let mut server = Server::start(&["alice"], "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = server.client("alice").await;
        ok(&server, &["create", "p"]);
        sh(
            &mut c,
            "p",
            &format!("setsid sh -c '{COUNTER}' >/dev/null 2>&1 < /dev/null &"),
        )
        .await;
        count_past(&mut c, "p", 0).await;

        // Paused: the guest does not run, and calls that need it say so.
        let before = count(&mut c, "p").await;
        assert!(ok(&server, &["pause", "p"]).contains("VM p is paused"));
        assert!(
            ok(&server, &["pause", "p"]).contains("paused"),
            "pausing again is no change"
        );
        let info = ok(&server, &["info", "p"]);
        assert!(info.contains("paused (paused by request"), "{info}");
        let (_, err) = fails(&server, &["exec", "p", "--", "true"]);
        assert!(err.contains("paused") && err.lines().count() == 1, "{err}");
        let (_, err) = fails(&server, &["cp", "p:/etc/hostname", "-"]);
        assert!(err.contains("paused"), "{err}");
        let (_, err) = fails(&server, &["checkpoint", "p"]);
        assert!(err.contains("paused"), "{err}");
        std::thread::sleep(Duration::from_secs(3));

        // Resumed: the counter goes on from where it stood (three seconds of running would
        // have added about 30), and the guest's clock is the host's again.
        assert!(ok(&server, &["resume", "p"]).contains("VM p is running"));
        let after = count(&mut c, "p").await;
        assert!(
            after >= before && after - before < 25,
            "the guest ran while paused: {before} -> {after}"
        );
        let guest_now: i64 = sh(&mut c, "p", "date +%s").await.trim().parse().unwrap();
        assert!(
            (guest_now - host_now()).abs() <= 2,
            "guest clock {guest_now}, host {}",
            host_now()
        );

        // The same over REST.
        let (status, vm) = rest(&server, Method::POST, "/vms/p/pause", None).await;
        assert_eq!(
            (status, vm["state"].as_str()),
            (200, Some("VM_STATE_PAUSED")),
            "{vm}"
        );
        let (status, vm) = rest(&server, Method::POST, "/vms/p/resume", None).await;
        assert_eq!(
            (status, vm["state"].as_str()),
            (200, Some("VM_STATE_RUNNING")),
            "{vm}"
        );

        // Still paused after a server restart; with auto_resume an exec resumes it.
        ok(&server, &["pause", "p"]);
        server.restart_with("[vm]\nauto_resume = true\n");
        let info = ok(&server, &["info", "p"]);
        assert!(info.contains("paused"), "{info}");
        let out = ok(&server, &["exec", "p", "--", "hostname"]);
        assert_eq!(out.trim(), "p");
        assert!(ok(&server, &["info", "p"]).contains("running"));
        assert!(server
            .log()
            .contains("resuming it for a call (auto_resume)"));

        // Hibernated: saved to disk, no VMM, not among the user's checkpoints; it survives a
        // server restart, and an exec wakes it with its processes and files.
        sh(&mut c, "p", "echo kept > /root/mark").await;
        let before = count(&mut c, "p").await;
        assert!(ok(&server, &["hibernate", "p"]).contains("VM p is hibernated"));
        assert!(server.vmm_pids().is_empty(), "the VMM is gone");
        assert!(ok(&server, &["info", "p"]).contains("hibernated"));
        assert!(!ok(&server, &["checkpoints"]).contains("hibernation"));
        server.restart_with("[vm]\nauto_resume = true\n");
        assert!(server.vmm_pids().is_empty());
        let (_, err) = fails(&server, &["pause", "p"]);
        assert!(err.contains("hibernated"), "{err}");
        let after = count(&mut c, "p").await;
        assert!(server
            .log()
            .contains("VM p is hibernated: waking it for a call"));
        assert!(
            after >= before && after - before < 25,
            "{before} -> {after}"
        );
        assert_eq!(sh(&mut c, "p", "cat /root/mark").await.trim(), "kept");
        let (later, started) = (count_past(&mut c, "p", after).await, after);
        assert!(later > started, "the counter runs on after the wake");
        assert!(ok(&server, &["info", "p"]).contains("running"));
        assert_eq!(server.vmm_pids().len(), 1);

        // Idle: hibernated after three seconds without a call (no call is made meanwhile:
        // the server's log is watched), then woken over REST.
        let hibernations = occurrences(&server, "VM hibernated: p");
        ok(&server, &["ttl", "p", "--idle-timeout", "3s"]);
        wait_for_log(&server, "VM p: no call for 3s; hibernating it");
        wait_until(|| occurrences(&server, "VM hibernated: p") > hibernations);
        assert!(server.vmm_pids().is_empty());
        ok(&server, &["ttl", "p", "--idle-timeout", "0"]);
        let (status, vm) = rest(&server, Method::POST, "/vms/p/wake", None).await;
        assert_eq!(
            (status, vm["state"].as_str()),
            (200, Some("VM_STATE_RUNNING")),
            "{vm}"
        );

        // A time limit that hibernates, then one that destroys (a paused VM, which is
        // destroyed without waiting for a guest that cannot answer).
        let hibernations = occurrences(&server, "VM hibernated: p");
        ok(&server, &["ttl", "p", "2s", "--on-expiry", "hibernate"]);
        let info = ok(&server, &["info", "p"]);
        assert!(info.contains("left, then hibernate"), "{info}");
        wait_for_log(&server, "VM p: its time limit passed; hibernating it");
        wait_until(|| occurrences(&server, "VM hibernated: p") > hibernations);
        let info = ok(&server, &["info", "p"]);
        assert!(info.contains("hibernated"), "{info}");
        assert!(
            info.lines()
                .any(|l| l.starts_with("time limit:") && l.ends_with(" none")),
            "the spent limit is gone: {info}"
        );
        ok(&server, &["wake", "p"]);
        ok(&server, &["pause", "p"]);
        ok(&server, &["ttl", "p", "2s", "--on-expiry", "destroy"]);
        wait_for_log(&server, "VM p reached its time limit: destroying it");
        wait_until(|| !server.run("alice", &["info", "p"]).status.success());
        let (_, err) = fails(&server, &["info", "p"]);
        assert!(err.contains("not found"), "{err}");
        assert!(server.vmm_pids().is_empty());
        assert!(
            !server.log().contains("VM p: time limit: "),
            "{}",
            server.log()
        );
    });
}

/// Stop and start: a stopped VM keeps its disk and comes back by booting it, also after its
/// VMM died; calls to a stopped VM say what to do; start refuses what it cannot start.
#[test]
fn stop_and_start() {
    let server = Server::start(&["alice"], "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = server.client("alice").await;
        ok(&server, &["create", "s"]);
        // Not synced by hand: the stop has the guest sync as it powers off.
        sh(&mut c, "s", "echo kept > /root/mark").await;
        let boot = sh(&mut c, "s", "cat /proc/sys/kernel/random/boot_id").await;
        assert!(ok(&server, &["stop", "s"]).contains("VM s is stopped"));
        assert!(server.vmm_pids().is_empty(), "the VMM is gone");
        assert!(ok(&server, &["info", "s"]).contains("stopped"));
        let (_, err) = fails(&server, &["exec", "s", "--", "true"]);
        assert!(
            err.contains("is stopped: start it first (noid start s)") && err.lines().count() == 1,
            "{err}"
        );
        assert!(
            ok(&server, &["stop", "s"]).contains("stopped"),
            "a second stop"
        );
        assert!(ok(&server, &["start", "s"]).contains("VM s is running"));
        assert_eq!(server.vmm_pids().len(), 1);
        assert_eq!(sh(&mut c, "s", "cat /root/mark").await.trim(), "kept");
        let again = sh(&mut c, "s", "cat /proc/sys/kernel/random/boot_id").await;
        assert_ne!(again, boot, "a new boot");

        // A VMM that dies: the VM is found stopped and starts again (over REST here).
        sh(&mut c, "s", "echo again > /root/mark2; sync").await;
        for pid in server.vmm_pids() {
            // SAFETY: kill(2) on a process id; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        wait_until(|| ok(&server, &["info", "s"]).contains("stopped"));
        let (status, vm) = rest(&server, Method::POST, "/vms/s/start", None).await;
        assert_eq!(
            (status, vm["state"].as_str()),
            (200, Some("VM_STATE_RUNNING")),
            "{vm}"
        );
        assert_eq!(sh(&mut c, "s", "cat /root/mark2").await.trim(), "again");
        let (status, vm) = rest(&server, Method::POST, "/vms/s/stop", None).await;
        assert_eq!(
            (status, vm["state"].as_str()),
            (200, Some("VM_STATE_STOPPED")),
            "{vm}"
        );

        // What start cannot do: wake a hibernated VM (it says how), find a missing one.
        ok(&server, &["start", "s"]);
        ok(&server, &["hibernate", "s"]);
        let (_, err) = fails(&server, &["start", "s"]);
        assert!(err.contains("hibernated: wake it"), "{err}");
        let (_, err) = fails(&server, &["start", "nope"]);
        assert!(err.contains("not found"), "{err}");
        assert!(server.log().contains("VM started: s (booted its own disk"));
    });
}

/// How many times the server's log has `line`.
fn occurrences(server: &Server, line: &str) -> usize {
    server.log().matches(line).count()
}

/// Waits (up to a minute) until the server's log has `line`.
fn wait_for_log(server: &Server, line: &str) {
    wait_until(|| server.log().contains(line));
}

fn wait_until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the VM's counter passes `past`, and returns it.
async fn count_past(c: &mut noid::client::Client, vm: &str, past: u64) -> u64 {
    for _ in 0..100 {
        let n = count(c, vm).await;
        if n > past {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the counter in {vm} stays at {past}");
}

#[test]
fn fork_many_retention_and_slow_checkpoints() {
    let server = Server::start(&["alice"], "[checkpoints]\nslow_secs = 0.0\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = server.client("alice").await;
        ok(&server, &["create", "a"]);
        sh(&mut c, "a", "echo source > /root/mark").await;
        let first = checkpoint(&server, "a");

        // Every checkpoint is slow at a threshold of 0 s: logged and counted.
        assert!(
            server.log().contains("Slow checkpoint creation"),
            "{}",
            server.log()
        );
        let metrics = reqwest::get(format!("{}/metrics", server.http_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("noid_slow_checkpoints_total 1"),
            "{metrics}"
        );

        // Three forks in one call, each its own VM with its own hostname and entropy.
        let out = ok(&server, &["restore", &first, "--as", "w", "--count", "3"]);
        assert!(out.contains("Forked 3 of 3 VMs"), "{out}");
        let mut seeds = HashSet::new();
        for name in ["w-1", "w-2", "w-3"] {
            let got = sh(
                &mut c,
                name,
                "hostname; cat /root/mark; head -c 16 /dev/urandom | od -An -tx1",
            )
            .await;
            let mut lines = got.lines();
            assert_eq!(lines.next(), Some(name));
            assert_eq!(lines.next(), Some("source"));
            seeds.insert(lines.collect::<String>());
        }
        assert_eq!(seeds.len(), 3, "forks share their entropy");
        sh(&mut c, "w-2", "echo mine > /root/mark").await;
        assert_eq!(sh(&mut c, "w-1", "cat /root/mark").await.trim(), "source");

        // One fork that cannot be made (its name is taken) fails alone and leaves nothing.
        ok(&server, &["restore", &first, "--as", "x-2"]);
        let pids_before = server.vmm_pids().len();
        let (out, err) = fails(&server, &["restore", &first, "--as", "x", "--count", "3"]);
        assert!(
            out.contains("x-2") && out.contains("ALREADY_EXISTS"),
            "{out}"
        );
        assert!(out.contains("Forked 2 of 3"), "{out}");
        assert!(err.contains("1 of 3 forks failed"), "{err}");
        assert_eq!(server.vmm_pids().len(), pids_before + 2);
        let (_, err) = fails(&server, &["restore", &first, "--as", "y", "--count", "0"]);
        assert!(err.contains("count must be 1 to 64"), "{err}");
        let (_, err) = fails(
            &server,
            &["restore", &first, "--as", "Bad_Name", "--count", "2"],
        );
        assert!(err.contains("Bad_Name"), "{err}");
        assert_eq!(server.vmm_pids().len(), pids_before + 2);

        // Keep the newest two: older ones go, oldest first. The forks of the first run on:
        // what they map of it stays theirs until they stop (QEMU maps the memory file, the
        // disks are hard links; a VMM that needs the checkpoint's files keeps it instead).
        let out = ok(&server, &["retention", "a", "--keep-last", "2"]);
        assert!(out.contains("newest 2"), "{out}");
        let _second = checkpoint(&server, "a");
        let third = checkpoint(&server, "a");
        let fourth = checkpoint(&server, "a");
        assert_eq!(checkpoint_ids(&mut c, "a").await, [fourth.clone(), third]);
        let log = server.log();
        let first_removed = log
            .find(&format!(
                "checkpoint retention: removed {first} of a (beyond the newest 2)"
            ))
            .unwrap_or_else(|| panic!("{log}"));
        let earliest_removal = log
            .find("checkpoint retention: removed ")
            .expect("the log says what it removed");
        assert_eq!(first_removed, earliest_removal, "oldest first");
        for vm in ["w-1", "w-2", "w-3", "x-1", "x-3"] {
            let got = sh(
                &mut c,
                vm,
                "cat /root/mark; sync; echo 3 > /proc/sys/vm/drop_caches; ls /bin | wc -l",
            )
            .await;
            assert!(
                got.starts_with("source") || got.starts_with("mine"),
                "{vm}: {got}"
            );
        }
        for vm in ["w-1", "w-2", "w-3", "x-1", "x-2", "x-3"] {
            ok(&server, &["destroy", vm]);
        }
        let fifth = checkpoint(&server, "a");
        assert_eq!(checkpoint_ids(&mut c, "a").await, [fifth.clone(), fourth]);

        // Forks over REST; by age (set over REST): after two seconds only the checkpoint just
        // taken is young enough.
        let path = format!("/checkpoints/{fifth}/forks");
        let body = json!({"prefix": "r", "count": 2});
        let (status, forks) = rest(&server, Method::POST, &path, Some(body)).await;
        assert_eq!(status, 200, "{forks}");
        let made: Vec<_> = forks["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap(), r["vm"]["state"].as_str()))
            .collect();
        assert_eq!(
            made,
            [
                ("r-1", Some("VM_STATE_RUNNING")),
                ("r-2", Some("VM_STATE_RUNNING"))
            ]
        );
        ok(&server, &["destroy", "r-1"]);
        ok(&server, &["destroy", "r-2"]);
        let body = json!({"keep_last": 0, "max_age_secs": 2});
        let path = "/vms/a/checkpoint_retention";
        let (status, vm) = rest(&server, Method::PUT, path, Some(body)).await;
        assert_eq!(status, 200, "{vm}");
        assert_eq!(
            vm["checkpoint_retention"]["max_age_secs"],
            json!("2"),
            "{vm}"
        );
        std::thread::sleep(Duration::from_secs(3));
        let sixth = checkpoint(&server, "a");
        assert_eq!(checkpoint_ids(&mut c, "a").await, [sixth]);
        let info = ok(&server, &["info", "a"]);
        assert!(info.contains("any number, for 2s"), "{info}");
        let (_, err) = fails(&server, &["retention", "a", "--max-age", "soon"]);
        assert!(err.contains("soon"), "{err}");
        ok(&server, &["retention", "a", "--max-age", "0"]);

        sessions_live_in_the_guest(&server, &mut c).await;
    });
}

/// The `buffered_bytes` of session `id` in `vm`, and whether it still runs.
async fn session_state(c: &mut noid::client::Client, vm: &str, id: u32) -> (u64, bool) {
    let list = c
        .list_sessions(ListSessionsRequest { vm: vm.into() })
        .await
        .unwrap()
        .into_inner();
    let s = list.sessions.iter().find(|s| s.id == id).expect("listed");
    (s.buffered_bytes, s.exit.is_none())
}

/// Exec sessions: detached, listed, attached (output kept since the start, then live),
/// carried by a checkpoint into a restore in place and into a fork, killed.
async fn sessions_live_in_the_guest(server: &Server, c: &mut noid::client::Client) {
    let ticker = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    let id: u32 = ok(server, &["exec", "-d", "a", "--", "sh", "-c", ticker])
        .trim()
        .parse()
        .unwrap();
    let ps = ok(server, &["ps", "a"]);
    assert!(
        ps.contains(&format!("{id:<5} running")) && ps.contains("sh -c"),
        "{ps}"
    );

    // Attached: what it printed since it started, then live; dropping the stream detaches.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AttachSessionRequest {
        msg: Some(attach_session_request::Msg::Attach(AttachTarget {
            vm: "a".into(),
            session: id,
        })),
    })
    .await
    .unwrap();
    let mut stream = c
        .attach_session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut seen = String::new();
    while !seen.contains("tick 4\n") {
        match stream.message().await.unwrap().and_then(|m| m.msg) {
            Some(attach_session_response::Msg::Stdout(d)) => {
                seen.push_str(&String::from_utf8_lossy(&d))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen.starts_with("tick 1\n"), "{seen}");
    drop((stream, tx));
    assert!(
        session_state(c, "a", id).await.1,
        "detaching leaves it running"
    );

    // A checkpoint carries it: restored in place it is back with the buffer it had then,
    // still running; a fork has its own copy, which can be killed alone.
    let at = checkpoint(server, "a");
    // Its output grows past what it had at the checkpoint (a few ticks more).
    let (at_checkpoint, _) = session_state(c, "a", id).await;
    wait_until_async(|| async {
        session_state(&mut server.client("alice").await, "a", id)
            .await
            .0
            > at_checkpoint + 40
    })
    .await;
    let (before_restore, _) = session_state(c, "a", id).await;
    ok(server, &["restore", &at]);
    let (after_restore, running) = session_state(c, "a", id).await;
    assert!(running, "the session runs after the restore");
    assert!(
        after_restore < before_restore,
        "the buffer is the checkpoint's: {after_restore} < {before_restore}"
    );
    ok(server, &["restore", &at, "--as", "sf"]);
    assert!(session_state(c, "sf", id).await.1);
    assert!(ok(server, &["kill", "sf", &id.to_string(), "KILL"]).contains("signal 9"));
    wait_until_async(|| async {
        !session_state(&mut server.client("alice").await, "sf", id)
            .await
            .1
    })
    .await;
    assert!(ok(server, &["ps", "sf"]).contains("killed by signal 9"));
    assert!(
        session_state(c, "a", id).await.1,
        "the source's session runs on"
    );
    ok(server, &["destroy", "sf"]);

    // Killed; attaching to a finished session replays its output and exits with its status.
    ok(server, &["kill", "a", &id.to_string()]);
    wait_until_async(|| async {
        !session_state(&mut server.client("alice").await, "a", id)
            .await
            .1
    })
    .await;
    let out = server.run("alice", &["attach", "a", &id.to_string()]);
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tick 1\n"));

    // A session that prints more than its buffer keeps: the oldest output goes, counted.
    let big = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done";
    let id: u32 = ok(server, &["exec", "-d", "a", "--", "sh", "-c", big])
        .trim()
        .parse()
        .unwrap();
    wait_until_async(|| async {
        !session_state(&mut server.client("alice").await, "a", id)
            .await
            .1
    })
    .await;
    let out = server.run("alice", &["attach", "a", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("xxx\ndone\n"));
    assert!(out.stdout.len() <= 1 << 20);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bytes of earlier output were dropped"),
        "{err}"
    );

    let (_, err) = fails(server, &["attach", "a", "99"]);
    assert!(err.contains("no exec session 99"), "{err}");
    let (_, err) = fails(server, &["kill", "a", "1", "BOGUS"]);
    assert!(err.contains("unknown signal"), "{err}");
}

async fn wait_until_async<F, Fut>(done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
