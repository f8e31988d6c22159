//! Benchmark of checkpoints on this machine (prints numbers, asserts none): checkpoint time
//! and size; the same VM migrated to a file by QEMU directly (the floor); restore in place
//! and fork until the agent answers; five concurrent forks.
//!
//! Run: cargo build --release --workspace && cargo bench --bench checkpoint

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use noid::v1::{CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, RestoreRequest};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let p50 = v[v.len() / 2];
    println!(
        "{name:<42} n={:<3} min {:>7.1} ms  p50 {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        ms(v[0]),
        ms(p50),
        ms(*v.last().unwrap())
    );
}

/// QEMU's own migration of the VM to a file (stop, migrate exec:cat > file, cont).
async fn qemu_floor(vm_dir: &std::path::Path, out: &std::path::Path) -> (Duration, u64) {
    let s = UnixStream::connect(vm_dir.join("qmp.sock")).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    lines.next_line().await.unwrap();
    let cmd = |c: Value| format!("{c}\n");
    w.write_all(cmd(json!({"execute": "qmp_capabilities"})).as_bytes())
        .await
        .unwrap();
    async fn reply(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    ) -> Value {
        loop {
            let v: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            if v.get("return").is_some() || v.get("error").is_some() {
                return v;
            }
        }
    }
    reply(&mut lines).await;
    let exec = |c: &str, a: Value| cmd(json!({"execute": c, "arguments": a}));
    w.write_all(
        exec(
            "migrate-set-parameters",
            json!({"max-bandwidth": 1u64 << 40}),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    reply(&mut lines).await;
    let t = Instant::now();
    w.write_all(exec("stop", json!({})).as_bytes())
        .await
        .unwrap();
    reply(&mut lines).await;
    let uri = format!("exec:cat > {}", out.display());
    w.write_all(exec("migrate", json!({"uri": uri})).as_bytes())
        .await
        .unwrap();
    reply(&mut lines).await;
    loop {
        w.write_all(exec("query-migrate", json!({})).as_bytes())
            .await
            .unwrap();
        let v = reply(&mut lines).await;
        match v["return"]["status"].as_str() {
            Some("completed") => break,
            Some("failed") => panic!("floor migration failed: {v}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    w.write_all(exec("cont", json!({})).as_bytes())
        .await
        .unwrap();
    reply(&mut lines).await;
    let took = t.elapsed();
    (took, std::fs::metadata(out).unwrap().len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = common::Server::start(&["bench"], "");
    let mut c = server.client("bench").await;
    let t = Instant::now();
    let vm = c
        .create_vm(CreateVmRequest {
            name: "src".into(),
            cpus: 0,
            memory_mib: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let cold = t.elapsed();
    println!(
        "noid checkpoint benchmark ({}, 256 MiB guest, data dir on {})",
        vm.backend,
        server.data_dir().display()
    );
    println!(
        "{:<42} {:>7.1} ms",
        "first create (boots, makes boot snapshot)",
        ms(cold)
    );

    let mut ckpts = Vec::new();
    let mut last = None;
    for i in 0..5 {
        let t = Instant::now();
        let ck = c
            .create_checkpoint(CreateCheckpointRequest {
                vm: "src".into(),
                label: format!("b{i}"),
            })
            .await
            .unwrap()
            .into_inner();
        ckpts.push(t.elapsed());
        last = Some(ck);
    }
    let ck = last.unwrap();
    stats("checkpoint create (API round trip)", ckpts);
    println!(
        "{:<42} memory {:.1} MiB, disk {:.1} MiB apparent",
        "checkpoint size",
        ck.memory_bytes as f64 / 1048576.0,
        ck.disk_bytes as f64 / 1048576.0
    );

    let vm_dir = server.data_dir().join("vms").join(&vm.id);
    let mut floors = Vec::new();
    let mut size = 0;
    for i in 0..5 {
        let out = server.dir.path().join(format!("floor-{i}.bin"));
        let (d, s) = qemu_floor(&vm_dir, &out).await;
        floors.push(d);
        size = s;
        let _ = std::fs::remove_file(out);
    }
    stats("QEMU stop+migrate to file+cont (floor)", floors);
    println!(
        "{:<42} {:.1} MiB",
        "QEMU migration file size",
        size as f64 / 1048576.0
    );

    let mut inplace = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        c.restore(RestoreRequest {
            checkpoint_id: ck.id.clone(),
            new_name: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
        inplace.push(t.elapsed());
    }
    stats("restore in place until agent answers", inplace);

    let mut forks = Vec::new();
    for i in 0..5 {
        let name = format!("fork-{i}");
        let t = Instant::now();
        c.restore(RestoreRequest {
            checkpoint_id: ck.id.clone(),
            new_name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        forks.push(t.elapsed());
        c.delete_vm(DeleteVmRequest { name }).await.unwrap();
    }
    stats("fork until agent answers", forks);

    let t = Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let mut c = c.clone();
            let id = ck.id.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                c.restore(RestoreRequest {
                    checkpoint_id: id,
                    new_name: format!("par-{i}"),
                    ..Default::default()
                })
                .await
                .unwrap();
                t.elapsed()
            })
        })
        .collect();
    let mut each = Vec::new();
    for task in tasks {
        each.push(task.await.unwrap());
    }
    let all = t.elapsed();
    stats("5 concurrent forks, each", each);
    println!(
        "{:<42} {:>7.1} ms",
        "5 concurrent forks, all ready",
        ms(all)
    );
}
