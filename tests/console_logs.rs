//! The serial console and the console log of a real VM: the boot log, following new output,
//! typing into the console shell (over gRPC and through the CLI in a real terminal, tmux),
//! several watchers at once, and a flooding guest whose log stays within its bound.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{sh, Server};
use futures::StreamExt;
use noid::v1::{console_request, ConsoleRequest, CreateVmRequest, StreamLogsRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const LOG_BOUND: u64 = 64 * 1024;

/// Reads `stream` until its accumulated text contains `needle` (or 20 s pass).
async fn read_until<S, F>(stream: &mut S, needle: &str, text_of: F) -> String
where
    S: futures::Stream + Unpin,
    F: Fn(S::Item) -> Vec<u8>,
{
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(item)) => seen.extend(text_of(item)),
            _ => panic!(
                "{needle:?} never came; got: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_logs() {
    let server = Server::start(
        &["alice"],
        &format!("[vm]\nconsole_log_bytes = {LOG_BOUND}\n"),
    );
    let mut c = server.client("alice").await;
    let vm = c
        .create_vm(CreateVmRequest {
            name: "tty".into(),
            cpus: 0,
            memory_mib: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // The boot log: the agent announces itself on the console.
    let mut logs = c
        .stream_logs(StreamLogsRequest {
            vm: "tty".into(),
            follow: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let text = read_until(&mut logs, "noid-agent", |m| m.unwrap().data).await;
    assert!(text.contains("noid-agent"), "{text}");
    let out = server.run("alice", &["logs", "tty", "--tail", "3"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() <= 3);
    let out = server.run("alice", &["logs", "tty", "--tail", "0"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "--tail 0 prints nothing"
    );

    // Following: output written later arrives.
    let mut follow = c
        .stream_logs(StreamLogsRequest {
            vm: "tty".into(),
            follow: true,
            tail: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    sh(&mut c, "tty", "echo marker-one > /dev/ttyS0").await;
    read_until(&mut follow, "marker-one", |m| m.unwrap().data).await;
    // marker-one's line was stamped before it reached this follower.
    let seen_one = std::time::SystemTime::now();

    // Times: --since keeps the lines that came after a moment, -t prints each line's time,
    // and a follower that asked for times gets each new line with its own.
    let mut timed = c
        .stream_logs(StreamLogsRequest {
            vm: "tty".into(),
            follow: true,
            tail: Some(0),
            timestamps: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The moment for --since: a later millisecond than marker-one's (times print to the ms).
    let cut = loop {
        let now = std::time::SystemTime::now();
        if now.duration_since(seen_one).unwrap_or_default() >= Duration::from_millis(2) {
            break now;
        }
        tokio::task::yield_now().await;
    };
    sh(&mut c, "tty", "echo marker-two > /dev/ttyS0").await;
    let chunk = loop {
        let chunk = timed.next().await.unwrap().unwrap();
        if String::from_utf8_lossy(&chunk.data).contains("marker-two") {
            break chunk;
        }
    };
    let at = noid::time::to_system(chunk.time.as_ref().expect("a new line has its time"));
    assert!(
        at >= cut && at <= std::time::SystemTime::now(),
        "marker-two at {at:?}, after {cut:?}"
    );
    let since = humantime::format_rfc3339_millis(cut).to_string();
    let out = server.run("alice", &["logs", "tty", "--since", &since]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("marker-two") && !text.contains("marker-one") && !text.contains("noid-agent"),
        "since {since}: {text}"
    );
    let out = server.run(
        "alice",
        &["logs", "tty", "--since", "10m", "-t", "--tail", "2"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default().to_string();
    let (stamp, line) = last.split_once(' ').unwrap_or_default();
    let stamp = humantime::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("{last}: {e}"));
    assert!(line.contains("marker-two") && stamp >= cut, "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    let out = server.run("alice", &["logs", "tty", "--since", "yesterday-ish"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("neither an age"),
        "{err}"
    );

    // Typing into the console shell, with two clients watching.
    let attach = |mut c: noid::client::Client| async move {
        let (tx, rx) = mpsc::channel(8);
        tx.send(ConsoleRequest {
            msg: Some(console_request::Msg::Vm("tty".into())),
        })
        .await
        .unwrap();
        let out = c
            .console(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, out)
    };
    let (typer, mut out1) = attach(c.clone()).await;
    let (_watcher, mut out2) = attach(c.clone()).await;
    typer
        .send(ConsoleRequest {
            msg: Some(console_request::Msg::Input(
                b"echo $((6*7))-answer\n".to_vec(),
            )),
        })
        .await
        .unwrap();
    read_until(&mut out1, "42-answer", |m| m.unwrap().output).await;
    read_until(&mut out2, "42-answer", |m| m.unwrap().output).await;

    // The CLI in a real terminal: attach, type, detach with Ctrl-Q; the VM keeps running.
    let session = format!("noid-console-{}", std::process::id());
    let cli = common::bin("noid");
    let cmd = format!(
        "NOID_URL={} NOID_TOKEN={} {} console tty; echo EXITED; sleep 30",
        server.url,
        server.tokens["alice"],
        cli.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let screen_has = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = tmux(&["capture-pane", "-p", "-t", &session]);
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not on screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    screen_has("Detach with Ctrl-Q");
    tmux(&["send-keys", "-t", &session, "echo typed-$((40+2))", "Enter"]);
    screen_has("typed-42");
    // The terminal's size reaches the guest's console, and so does a resize.
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "echo size-$(stty size | tr ' ' x)",
        "Enter",
    ]);
    screen_has("size-30x100");
    tmux(&["resize-window", "-t", &session, "-x", "90", "-y", "25"]);
    // The resize travels on its own; ask until the guest sees it. Each answer carries a
    // number the typed command does not show, so an answer is never mistaken for its question.
    let deadline = Instant::now() + Duration::from_secs(15);
    for attempt in 1.. {
        let ask = format!("echo size-$(stty size | tr ' ' x)-answer-$((1000+{attempt}))");
        tmux(&["send-keys", "-t", &session, &ask, "Enter"]);
        let screen = screen_has(&format!("-answer-{}", 1000 + attempt));
        if screen.contains("size-25x90-answer") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resize never reached the guest:\n{screen}"
        );
    }
    tmux(&["send-keys", "-t", &session, "C-q"]);
    let screen = screen_has("EXITED");
    assert!(screen.contains("keeps running"), "{screen}");
    tmux(&["kill-session", "-t", &session]);
    assert_eq!(sh(&mut c, "tty", "echo alive").await, "alive\n");

    // A guest flooding its console: the log on disk stays within its bound. The follow and
    // console streams above, unread meanwhile, share this client's connection: the flood
    // reaches them in messages big enough that HTTP/2's budget for unread small frames holds
    // (it closed the whole connection when every line was a message of its own).
    sh(
        &mut c,
        "tty",
        "i=0; while [ $i -lt 10000 ]; do echo flood-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done > /dev/ttyS0",
    )
    .await;
    read_until(&mut follow, "flood-9999", |m| m.unwrap().data).await;
    assert_eq!(
        sh(&mut c, "tty", "echo connection-alive").await,
        "connection-alive\n"
    );
    let dir = server.data_dir().join("vms").join(&vm.id);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
        if h.contains("flood-9999") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the end of the flood never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for f in ["console.log", "console.log.1"] {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= LOG_BOUND, "{f} is {len} bytes, bound {LOG_BOUND}");
    }
}
