//! Benchmark of the core path on this machine (not a test: it prints numbers, asserts none).
//! Create until the agent answers (booting, and from the boot snapshot), and the `exec -- true` round trip over the Rust client
//! (gRPC stream to the guest and back) and through the CLI (process start included), and file
//! copy throughput in and out (`noid cp`).
//!
//! Run: cargo build --release --workspace && cargo bench --bench core

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use noid::v1::{CreateVmRequest, DeleteVmRequest};

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<34} n={:<4} min {:>8.1} ms  p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
        samples.len(),
        pct(0.0),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

async fn create(client: &mut noid::client::Client, name: &str) {
    client
        .create_vm(CreateVmRequest {
            name: name.into(),
            cpus: 0,
            memory_mib: 0,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// `n` creates one after the other, each deleted after it answered; their durations.
async fn create_delete(client: &mut noid::client::Client, prefix: &str, n: usize) -> Vec<Duration> {
    let mut samples = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let t = Instant::now();
        create(client, &name).await;
        samples.push(t.elapsed());
        client.delete_vm(DeleteVmRequest { name }).await.unwrap();
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = common::Server::start(&["bench"], "");
    let mut client = server.client("bench").await;
    let backend = {
        use noid::v1::GetServerInfoRequest;
        client
            .get_server_info(GetServerInfoRequest::default())
            .await
            .unwrap()
            .into_inner()
            .backend
    };
    println!(
        "noid core benchmark ({backend}, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Every create boots: the snapshot-less path.
    {
        let cold = common::Server::start(&["bench"], "[vm]\nboot_snapshots = false\n");
        let mut c = cold.client("bench").await;
        summary(
            "create, booting (no snapshot)",
            create_delete(&mut c, "cold", 5).await,
        );
    }

    // Every create from the boot snapshot starts its own QEMU: no warm VMMs.
    {
        let plain = common::Server::start(&["bench"], "[vm]\nwarm_vmms = 0\n");
        let mut c = plain.client("bench").await;
        create(&mut c, "first").await;
        summary(
            "create from the boot snapshot, no warm VMM",
            create_delete(&mut c, "plain", 10).await,
        );
    }

    let t = Instant::now();
    create(&mut client, "first").await;
    summary("first create (boot + snapshot)", vec![t.elapsed()]);
    summary(
        "create from the boot snapshot",
        create_delete(&mut client, "warm", 10).await,
    );
    let t = Instant::now();
    let names: Vec<String> = (0..5).map(|i| format!("five-{i}")).collect();
    futures::future::join_all(names.iter().map(|n| {
        let mut c = client.clone();
        async move { create(&mut c, n).await }
    }))
    .await;
    summary("5 concurrent creates, all ready", vec![t.elapsed()]);
    for name in names {
        client.delete_vm(DeleteVmRequest { name }).await.unwrap();
    }

    let vm = "first";
    for _ in 0..10 {
        common::exec(&mut client, vm, &["true"], None, None)
            .await
            .unwrap();
    }
    let mut rtt = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let r = common::exec(&mut client, vm, &["true"], None, None)
            .await
            .unwrap();
        rtt.push(t.elapsed());
        assert_eq!(r.code, 0);
    }
    summary("exec true (Rust client)", rtt);

    let mut cli = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let out = server.run("bench", &["exec", vm, "--", "true"]);
        cli.push(t.elapsed());
        assert!(out.status.success());
    }
    summary("exec true (noid CLI process)", cli);

    // 64 MiB through `noid cp`, each way, three times.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let size = 64u64 << 20;
    std::fs::write(&file, vec![0x5au8; size as usize]).unwrap();
    let guest = format!("{vm}:/root/blob");
    for (label, args) in [
        (
            "cp 64 MiB into the VM",
            [file.to_str().unwrap(), guest.as_str()],
        ),
        (
            "cp 64 MiB out of the VM",
            [guest.as_str(), dir.path().to_str().unwrap()],
        ),
    ] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let out = server.run("bench", &["cp", args[0], args[1]]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            rates.push(size as f64 / 1048576.0 / t.elapsed().as_secs_f64());
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{label:<34} n=3    median {:>6.1} MiB/s (min {:.1}, max {:.1})",
            rates[1], rates[0], rates[2]
        );
    }

    client
        .delete_vm(DeleteVmRequest { name: vm.into() })
        .await
        .unwrap();
}
