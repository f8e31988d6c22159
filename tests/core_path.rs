//! The core path end to end: a real server boots a real VM (QEMU; TCG where KVM cannot run
//! standard guests), and the real CLI and Rust client run commands in it. One VM serves all
//! the exec assertions (boots take seconds under TCG); restart and destroy come last.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{exec, pid_alive, Server};
use futures::StreamExt;
use noid::v1::{GetVmRequest, ListVmsRequest};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_exec_restart_destroy() {
    let mut server = Server::start(&["alice"], "");

    // Create through the CLI, JSON for the script.
    let out = server.run("alice", &["create", "box", "--json"]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let vm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vm["name"], "box");
    assert_eq!(vm["state"], "VM_STATE_RUNNING");
    let vmm_pid = vm["vmm_pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(vmm_pid));

    // The guest runs the image's kernel.
    let out = server.run("alice", &["exec", "box", "--", "uname", "-r"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), common::image_kernel_release());

    // 1 MiB of random bytes through `cat` in the guest comes back identical.
    let data: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    let mut child = server
        .cli("alice")
        .args(["exec", "-i", "box", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data).unwrap())
    };
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "bytes differ after the round trip");

    // Separate streams and the exit status.
    let out = server.run(
        "alice",
        &[
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    // Environment and working directory.
    let out = server.run(
        "alice",
        &[
            "exec",
            "box",
            "-e",
            "GREETING=hi there",
            "-w",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING\"; pwd",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi there\n/tmp\n");
    let out = server.run("alice", &["exec", "box", "-w", "/nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nope does not exist"),
        "{}",
        text(&out.stderr)
    );

    // A timeout kills the command and says so.
    let out = server.run(
        "alice",
        &["exec", "box", "--timeout", "1", "--", "sleep", "30"],
    );
    assert_eq!(out.status.code(), Some(124));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    let out = server.run(
        "alice",
        &[
            "exec",
            "box",
            "--json",
            "--timeout",
            "0.5",
            "--",
            "sleep",
            "30",
        ],
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["timed_out"], true);
    assert_eq!(j["signal"], 9);

    // Ctrl-C on the CLI interrupts the remote command, which sees SIGINT.
    let mut child = server
        .cli("alice")
        .args([
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "trap 'echo got-int; exit 3' INT; echo ready; sleep 30 & wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the command runs (and so has its trap), not before.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "ready\n");
    // SAFETY: signals the CLI process this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(rest, "got-int\n");
    assert_eq!(out.status.code(), Some(3));

    // 20 concurrent execs on one VM over the Rust client, each with its own input and output.
    let client = server.client("alice").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let input = format!("line-{i}\n").repeat(1000);
                let r = exec(
                    &mut c,
                    "box",
                    &[
                        "sh",
                        "-c",
                        &format!("wc -l; echo task-{i} >&2; exit {}", i % 4),
                    ],
                    Some(input.into_bytes()),
                    None,
                )
                .await
                .unwrap();
                (i, r)
            })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.out().trim(), "1000", "task {i}");
        assert_eq!(text(&r.stderr), format!("task-{i}\n"));
        assert_eq!(r.code, i % 4);
    }

    // A background process that keeps the command's output open does not hold its exec open:
    // the exit comes (with all the output) once the pipe has been quiet for a moment.
    let mut c = client.clone();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        exec(
            &mut c,
            "box",
            &["sh", "-c", "sleep 300 & echo started; exit 5"],
            None,
            None,
        ),
    )
    .await
    .expect("an exec whose background process holds stdout never ended")
    .unwrap();
    assert_eq!(r.out(), "started\n");
    assert_eq!(r.code, 5);

    // A reader that falls behind: a command prints 20000 short lines while nobody reads its
    // stream. Other calls on the same connection and VM go on working meanwhile, and the
    // output then arrives whole and in order.
    let mut c = client.clone();
    let start = noid::v1::ExecStart {
        vm: "box".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "i=0; while [ $i -lt 20000 ]; do echo $i; i=$((i+1)); done; touch /run/printed".into(),
        ],
        ..Default::default()
    };
    let msgs = vec![noid::v1::ExecRequest {
        msg: Some(noid::v1::exec_request::Msg::Start(start)),
    }];
    let mut unread = c
        .exec(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = exec(&mut c, "box", &["test", "-e", "/run/printed"], None, None)
            .await
            .expect("another exec while one stream goes unread");
        if r.code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the printing never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut out = Vec::new();
    while let Some(m) = unread.next().await {
        match m.unwrap().msg {
            Some(noid::v1::exec_response::Msg::Stdout(d)) => out.extend(d),
            Some(noid::v1::exec_response::Msg::Exit(x)) => {
                assert_eq!(x.code, 0);
                break;
            }
            _ => {}
        }
    }
    let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
    assert_eq!(lines.len(), 20000);
    assert_eq!(lines[19999], "19999");

    // A TTY exec sees a terminal of the requested size.
    let mut c = client.clone();
    let r = exec(
        &mut c,
        "box",
        &["sh", "-c", "stty size; test -t 0 && echo tty"],
        None,
        Some((40, 123)),
    )
    .await
    .unwrap();
    assert_eq!(r.out().replace('\r', ""), "40 123\ntty\n");
    let out = server.run("alice", &["exec", "-t", "box", "--", "stty", "size"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        "24 80",
        "the default size without a local terminal"
    );

    // A command killed by a signal reports it.
    let r = exec(&mut c, "box", &["sh", "-c", "kill -TERM $$"], None, None)
        .await
        .unwrap();
    assert_eq!((r.code, r.signal), (-1, 15));
    // A program that is not there, or cannot be executed, ends as in a shell: 127 or 126,
    // with the reason on stderr.
    let r = exec(&mut c, "box", &["no-such-program"], None, None)
        .await
        .unwrap();
    assert_eq!(r.code, 127);
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        "no-such-program: command not found\n"
    );
    let r = exec(&mut c, "box", &["/etc/hostname"], None, None)
        .await
        .unwrap();
    assert_eq!(r.code, 126);
    assert!(String::from_utf8_lossy(&r.stderr).contains("permission denied"));
    let out = server.run("alice", &["exec", "box", "--", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("command not found"));

    // The CLI as docker's: the command right after the VM's name, options before it, and
    // everything after the command passed on as it is.
    let out = server.run(
        "alice",
        &["exec", "-e", "A=1", "box", "sh", "-c", "echo $A $0", "-x"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1 -x\n");
    let out = server.run("alice", &["exec", "box"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("noid: no command: noid exec VM CMD"));
    // The shell completes VM names as the user types (clap_complete's dynamic completion, as
    // `source <(COMPLETE=bash noid)` sets it up), asking the server; without a server it
    // offers nothing and fails no command line.
    let complete = |url: &str, words: &[&str]| {
        let out = server
            .cli("alice")
            .env("NOID_URL", url)
            .env("COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
            .arg("--")
            .args(words)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(complete(&server.url, &["noid", "exec", "b"]).trim(), "box");
    assert_eq!(complete(&server.url, &["noid", "info", "x"]).trim(), "");
    assert_eq!(
        complete("http://127.0.0.1:1", &["noid", "rm", "b"]).trim(),
        ""
    );

    // Clear words for a name that is nothing, a missing token and a server that is not there.
    let out = server.run("alice", &["checkpoints", "nope"]);
    assert!(
        text(&out.stderr).contains("VM \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    let out = server
        .cli("alice")
        .env("NOID_TOKEN", "")
        .arg("list")
        .output()
        .unwrap();
    assert!(text(&out.stderr).starts_with("noid: no token: run `noid auth setup"));
    let out = server
        .cli("alice")
        .env("NOID_URL", "http://127.0.0.1:1")
        .arg("list")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("is noid-server running there?"),
        "{}",
        text(&out.stderr)
    );

    // A mistyped command is not answered with a command that loses data.
    let out = server.run("alice", &["destory", "box"]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unrecognized subcommand 'destory'"),
        "{err}"
    );
    assert!(!err.contains("destroy") && !err.contains("'stop'"), "{err}");
    let err = text(&server.run("alice", &["lsit"]).stderr);
    assert!(err.contains("'list'"), "harmless suggestions stay: {err}");

    // A file written before a server restart is still there after it, in the same VM.
    let out = server.run(
        "alice",
        &["exec", "box", "--", "sh", "-c", "echo kept > /root/f"],
    );
    assert!(out.status.success());
    drop(client);
    drop(c);
    server.restart();
    assert!(pid_alive(vmm_pid), "the VMM must survive a server restart");
    let out = server.run("alice", &["exec", "box", "--", "cat", "/root/f"]);
    assert!(
        out.status.success(),
        "exec after restart: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "kept\n");
    let mut client = server.client("alice").await;
    let got = client
        .get_vm(GetVmRequest { name: "box".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.vmm_pid, vmm_pid);

    // `use` and `current`: the active VM from a .noid file found by walking up.
    let out = server.run("alice", &["use", "box"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sub = server.dir.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let out = server
        .cli("alice")
        .current_dir(&sub)
        .arg("current")
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).starts_with("box"),
        "{}",
        text(&out.stdout)
    );
    let out = server
        .cli("alice")
        .current_dir(&sub)
        .args(["exec", "--", "hostname"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "box");

    // Destroy leaves no process, file or record.
    let vm_dir = server.data_dir().join("vms").join(got.id);
    assert!(vm_dir.exists());
    // Several names: each destroyed or told why not, exit 1 if any failed (as `docker rm`).
    let out = server.run("alice", &["rm", "ghost", "box"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Destroyed VM box\n");
    assert_eq!(
        text(&out.stderr).trim(),
        "noid: ghost: VM \"ghost\" not found"
    );
    assert!(!pid_alive(vmm_pid), "VMM still running after destroy");
    assert!(!vm_dir.exists(), "VM directory left behind");
    let vms = client
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms;
    assert!(vms.is_empty());
    let out = server.run("alice", &["info", "box"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "noid: VM \"box\" not found");
}
