//! Benchmark of the lifecycle calls on this machine (prints numbers, asserts none): pause and
//! resume, hibernate, wake by `noid wake` and by an exec (until its first output), and fork-many
//! of ten VMs (until all are ready), each over the gRPC API of a real server with real VMs.
//!
//! Run: cargo build --release --workspace && cargo bench --bench lifecycle

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use noid::v1::{
    exec_request, exec_response, CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest,
    ExecRequest, ExecStart, ForkManyRequest, HibernateVmRequest, PauseVmRequest, ResumeVmRequest,
    WakeVmRequest,
};

const ROUNDS: usize = 5;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name:<44} n={:<3} min {:>8.1} ms  p50 {:>8.1} ms  max {:>8.1} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(*v.last().unwrap())
    );
}

/// Time from sending an exec of `echo ready` until its first stdout arrives.
async fn first_output(c: &mut noid::client::Client, vm: &str) -> Duration {
    let start = ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            vm: vm.into(),
            argv: vec!["echo".into(), "ready".into()],
            ..Default::default()
        })),
    };
    let t = Instant::now();
    let mut stream = c
        .exec(futures::stream::iter(vec![start]))
        .await
        .unwrap()
        .into_inner();
    let mut first = None;
    while let Some(msg) = stream.next().await {
        match msg.unwrap().msg {
            Some(exec_response::Msg::Stdout(_)) if first.is_none() => first = Some(t.elapsed()),
            Some(exec_response::Msg::Exit(x)) => {
                assert_eq!(x.code, 0, "echo in {vm}");
                break;
            }
            _ => {}
        }
    }
    first.expect("echo printed nothing")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = common::Server::start(&["bench"], "");
    let mut c = server.client("bench").await;
    let vm = c
        .create_vm(CreateVmRequest {
            name: "src".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    println!(
        "noid lifecycle benchmark ({}, {} MiB guest, data dir on {})",
        vm.backend,
        vm.memory_mib,
        server.data_dir().display()
    );
    // A counter keeps the guest busy as a real workload would.
    common::sh(
        &mut c,
        "src",
        "(i=0; while true; do i=$((i+1)); echo $i > /run/count; sleep 0.1; done) >/dev/null 2>&1 &",
    )
    .await;

    let (mut pause, mut resume) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        c.pause_vm(PauseVmRequest { name: "src".into() })
            .await
            .unwrap();
        pause.push(t.elapsed());
        let t = Instant::now();
        c.resume_vm(ResumeVmRequest { name: "src".into() })
            .await
            .unwrap();
        resume.push(t.elapsed());
    }
    stats("pause", pause);
    stats("resume", resume);

    let (mut hibernate, mut wake, mut wake_on_exec) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS * 2 {
        let t = Instant::now();
        c.hibernate_vm(HibernateVmRequest { name: "src".into() })
            .await
            .unwrap();
        hibernate.push(t.elapsed());
        if round % 2 == 0 {
            let t = Instant::now();
            c.wake_vm(WakeVmRequest { name: "src".into() })
                .await
                .unwrap();
            first_output(&mut c, "src").await;
            wake.push(t.elapsed());
        } else {
            wake_on_exec.push(first_output(&mut c, "src").await);
        }
    }
    stats("hibernate", hibernate);
    stats("noid wake, then an exec's first output", wake);
    stats("exec on a hibernated VM, first output", wake_on_exec);

    let ckpt = c
        .create_checkpoint(CreateCheckpointRequest {
            vm: "src".into(),
            label: "fork-source".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut all_ready = Vec::new();
    for round in 0..3 {
        let prefix = format!("f{round}");
        let t = Instant::now();
        let res = c
            .fork_many(ForkManyRequest {
                checkpoint_id: ckpt.id.clone(),
                prefix: prefix.clone(),
                count: 10,
                network_policy: None,
            })
            .await
            .unwrap()
            .into_inner();
        all_ready.push(t.elapsed());
        for r in &res.results {
            assert!(r.vm.is_some(), "{}: {} {}", r.name, r.error_code, r.error);
        }
        for r in res.results {
            c.delete_vm(DeleteVmRequest { name: r.name }).await.unwrap();
        }
    }
    stats("fork-many of 10, all ready", all_ready);
}
