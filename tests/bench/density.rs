//! Density benchmark on this machine (prints numbers, asserts none but that things work):
//! 50 idle VMs started from one boot snapshot, with guest memory mapped copy-on-write from the
//! snapshot's memory file and, in the same run, with memory loaded from the migration stream
//! (the old path, `[qemu] memory_files = false`), and without warm VMMs (`[vm] warm_vmms =
//! 0`): create p50/p99, host memory per idle VM (from /proc/meminfo before and after, and the
//! sum of the VMMs' PSS), fork p50/p99. Then
//! 100 idle VMs at once, each answering an exec; then TCG's code buffer size against idle
//! memory and CPU-bound speed.
//!
//! Run: cargo build --release --workspace && cargo bench --bench density

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::future::join_all;
use noid::v1::{CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, RestoreRequest};

const IDLE_VMS: usize = 50;
const FORKS: usize = 10;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    ms(v[((v.len() as f64 - 1.0) * p).round() as usize])
}

fn p50_p99(v: &[Duration]) -> String {
    format!(
        "p50 {:>6.1} ms  p99 {:>6.1} ms",
        pct(v.to_vec(), 0.5),
        pct(v.to_vec(), 0.99)
    )
}

/// A /proc/meminfo field, in KiB.
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Host memory in use, page cache included (MiB): what the VMs cost the host, shared pages
/// once.
fn used_mib() -> f64 {
    (meminfo("MemTotal") - meminfo("MemFree")) as f64 / 1024.0
}

/// The PSS of every running VMM of the server's VMs (MiB): warm VMMs (`[vm] warm_vmms`)
/// are left out, and their PSS returned apart.
fn vmm_pss_split(server: &common::Server) -> (Vec<f64>, Vec<f64>) {
    let warm_dirs = server.warm_vmm_dirs();
    let (mut each, mut warm) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(server.data_dir().join("vms"))
        .unwrap()
        .flatten()
    {
        let Ok(pid) = std::fs::read_to_string(e.path().join("qemu.pid")) else {
            continue;
        };
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", pid.trim()))
        else {
            continue;
        };
        if let Some(kib) = rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            let mib = kib as f64 / 1024.0;
            if warm_dirs.contains(&e.path()) {
                warm.push(mib);
            } else {
                each.push(mib);
            }
        }
    }
    (each, warm)
}

/// The PSS of every running VMM of the server's VMs (MiB).
fn vmm_pss_each(server: &common::Server) -> Vec<f64> {
    vmm_pss_split(server).0
}

/// The sum of the PSS of every running VMM of the server (MiB), and how many there are.
fn vmm_pss_mib(server: &common::Server) -> (f64, usize) {
    let each = vmm_pss_each(server);
    (each.iter().sum(), each.len())
}

fn create(name: String) -> CreateVmRequest {
    CreateVmRequest {
        name,
        ..Default::default()
    }
}

async fn delete_all(client: &noid::client::Client, names: Vec<String>) {
    for chunk in names.chunks(10) {
        join_all(chunk.iter().map(|name| {
            let mut c = client.clone();
            let name = name.clone();
            async move { c.delete_vm(DeleteVmRequest { name }).await.unwrap() }
        }))
        .await;
    }
}

/// Creates `names` one after another; their create times.
async fn create_each(client: &mut noid::client::Client, names: &[String]) -> Vec<Duration> {
    let mut times = Vec::new();
    for name in names {
        let t = Instant::now();
        client.create_vm(create(name.clone())).await.unwrap();
        times.push(t.elapsed());
    }
    times
}

/// 50 idle VMs and 10 forks with the server's current settings; leaves the idle VMs running.
async fn idle_vms(server: &common::Server, mode: &str) -> Vec<String> {
    let mut client = server.client("bench").await;
    // The first VM boots and makes the boot snapshot the others start from.
    client
        .create_vm(create(format!("seed-{mode}")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = used_mib();
    let names: Vec<String> = (0..IDLE_VMS).map(|i| format!("idle-{mode}-{i}")).collect();
    let creates = create_each(&mut client, &names).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = used_mib();
    let (pss, n) = vmm_pss_mib(server);
    let warm = vmm_pss_split(server).1;
    let into_warm = server
        .log()
        .lines()
        .filter(|l| {
            l.contains(&format!("VM created: idle-{mode}-")) && l.contains("into a warm VMM")
        })
        .count();
    println!(
        "[{mode}] create from boot snapshot   n={:<3} {} ({into_warm} into a warm VMM)",
        creates.len(),
        p50_p99(&creates)
    );
    println!(
        "[{mode}] host memory per idle VM     {:>6.1} MiB (MemTotal-MemFree, {} VMs, 20 s idle)",
        (after - before) / IDLE_VMS as f64,
        IDLE_VMS
    );
    println!(
        "[{mode}] PSS per VMM                 {:>6.1} MiB ({} VMMs, the seed included; \
         {} warm VMM(s) waiting apart: {:.1} MiB PSS in all)",
        pss / n as f64,
        n,
        warm.len(),
        warm.iter().fold(0.0, |a, b| a + b)
    );
    let ckpt = client
        .create_checkpoint(CreateCheckpointRequest {
            vm: names[0].clone(),
            label: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut forks = Vec::new();
    let mut fork_names = Vec::new();
    for i in 0..FORKS {
        let name = format!("fork-{mode}-{i}");
        let t = Instant::now();
        client
            .restore(RestoreRequest {
                checkpoint_id: ckpt.id.clone(),
                new_name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        forks.push(t.elapsed());
        fork_names.push(name);
    }
    println!(
        "[{mode}] fork                        n={:<3} {}",
        forks.len(),
        p50_p99(&forks)
    );
    delete_all(&client, fork_names).await;
    let mut all = names;
    all.push(format!("seed-{mode}"));
    all
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut server = common::Server::start(&["bench"], "[qemu]\nmemory_files = true\n");
    println!("noid density benchmark (2 cores, QEMU/TCG, 256 MiB guests)");

    let running = idle_vms(&server, "memory-file").await;
    // 100 at once: 50 more, then every one answers.
    let mut client = server.client("bench").await;
    let more: Vec<String> = (0..100 - running.len())
        .map(|i| format!("more-{i}"))
        .collect();
    let before = Instant::now();
    create_each(&mut client, &more).await;
    let all: Vec<String> = running.iter().chain(&more).cloned().collect();
    let mut answered = 0;
    for name in &all {
        let r = common::exec(&mut client, name, &["true"], None, None).await;
        answered += usize::from(r.is_ok_and(|r| r.code == 0));
    }
    let (pss, n) = vmm_pss_mib(&server);
    println!(
        "[memory-file] {n} VMs running at once, {answered} answered an exec; PSS {:.0} MiB in \
         all, MemAvailable {:.1} GiB ({:.0} s to create the last {})",
        pss,
        meminfo("MemAvailable") as f64 / 1048576.0,
        before.elapsed().as_secs_f64(),
        more.len()
    );
    delete_all(&client, all).await;

    // Without warm VMMs: every create starts its QEMU.
    server.restart_with("[vm]\nwarm_vmms = 0\n");
    let running = idle_vms(&server, "no-warm").await;
    delete_all(&server.client("bench").await, running).await;

    server.restart_with("[qemu]\nmemory_files = false\n");
    let running = idle_vms(&server, "stream").await;
    delete_all(&server.client("bench").await, running).await;

    // TCG's code buffer: idle memory against the speed of CPU-bound guest code.
    for tb in [0u32, 64, 16, 4] {
        server.restart_with(&format!("[qemu]\ntb_size_mib = {tb}\n"));
        let mut client = server.client("bench").await;
        let names: Vec<String> = (0..10).map(|i| format!("tb-{tb}-{i}")).collect();
        create_each(&mut client, &names).await;
        let t = Instant::now();
        let r = common::exec(
            &mut client,
            &names[0],
            &[
                "sh",
                "-c",
                // `ls -R /` fails now and then on /proc entries that vanish while it walks:
                // its status is not what is measured.
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; ls -R / >/dev/null 2>&1; exit 0",
            ],
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.code, 0);
        let busy = t.elapsed();
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The median: the first VM after a restart may have booted (and holds far more).
        let mut each = vmm_pss_each(&server);
        each.sort_by(f64::total_cmp);
        let (pss, n) = (each[each.len() / 2], each.len());
        println!(
            "[tb-size {:>7}] PSS per VMM, median {:>6.1} MiB ({n} VMMs); a shell loop and ls -R: {:>6.0} ms",
            if tb == 0 {
                "default".to_string()
            } else {
                format!("{tb} MiB")
            },
            pss,
            ms(busy)
        );
        delete_all(&client, names).await;
    }
}
