//! Soak benchmark (prints numbers, asserts none): many create/destroy cycles, then many
//! checkpoint/fork/destroy cycles, on one server in a network namespace of its own (so each VM
//! gets a TAP, a lease and firewall rules). Before and after each phase it prints what a leak
//! would grow: the server's open descriptors, threads and resident memory, zombie processes on
//! the host, VMM processes, TAP devices, cgroups, the data directory's size and the sled
//! store's size. After a phase every figure should be back at its baseline (the store may keep
//! a little: sled grows its log in steps and compacts it later).
//!
//! Run: cargo build --release --workspace && cargo bench --bench soak
//! Smaller: NOID_SOAK_CREATES=100 NOID_SOAK_FORKS=20 cargo bench --bench soak

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use noid::v1::{CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, RestoreRequest};

fn count_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes under `path` (allocated, like `du`: sparse disks count what they hold).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| du(&e.path()))
            .sum::<u64>()
            + meta.blocks() * 512
    } else {
        meta.blocks() * 512
    }
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Processes in state Z: on the whole host, and those whose parent is `parent` (the server's,
/// which only it can reap).
fn zombies(parent: u32) -> (usize, usize) {
    let mut all = 0;
    let mut own = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) STATE PPID ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        if fields.next() == Some("Z") {
            all += 1;
            if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                own += 1;
            }
        }
    }
    (all, own)
}

/// TAP devices in this namespace (sysfs shows the host's, so ask `ip`).
fn taps() -> usize {
    let out = std::process::Command::new("ip")
        .args(["-o", "-d", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("tun type tap"))
        .count()
}

/// The VM cgroups of this server.
fn cgroups(data_dir: &Path) -> usize {
    common::cgroup_parents(data_dir)
        .iter()
        .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
        .filter(|e| e.path().is_dir())
        .count()
}

struct Figures {
    fds: usize,
    threads: String,
    rss: String,
    zombies: (usize, usize),
    vmms: usize,
    taps: usize,
    cgroups: usize,
    data_mib: f64,
    sled_mib: f64,
}

fn figures(server: &common::Server) -> Figures {
    let pid = server.pid().expect("the server runs");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    Figures {
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0),
        threads: status_field(pid, "Threads:"),
        rss: status_field(pid, "VmRSS:"),
        zombies: zombies(pid),
        vmms: server.vmm_pids().len(),
        taps: taps(),
        cgroups: cgroups(&server.data_dir()),
        data_mib: mib(du(&server.data_dir())),
        sled_mib: mib(du(&server.data_dir().join("db"))),
    }
}

fn print(when: &str, f: &Figures) {
    println!(
        "{when:<28} fds {:>4}  threads {:>3}  rss {:>10}  zombies {:>2} (server's {})  vmms {:>2}  taps {:>2}  cgroups {:>2}  data {:>8.1} MiB  sled {:>6.2} MiB",
        f.fds, f.threads, f.rss, f.zombies.0, f.zombies.1, f.vmms, f.taps, f.cgroups, f.data_mib, f.sled_mib
    );
}

fn main() {
    let creates = count_env("NOID_SOAK_CREATES", 1000);
    let forks = count_env("NOID_SOAK_FORKS", 200);
    let ns = common::NetNs::new("soak");
    let rt = ns.runtime();
    let server = common::Server::start(&["alice"], "[network]\n");
    rt.block_on(async {
        let mut c = server.client("alice").await;
        // Warm up: the boot snapshot is made on the first create; the figures start after.
        let create = |name: &str| CreateVmRequest {
            name: name.into(),
            ..Default::default()
        };
        let delete = |name: &str| DeleteVmRequest { name: name.into() };
        c.create_vm(create("warm")).await.unwrap();
        c.delete_vm(delete("warm")).await.unwrap();

        let base = figures(&server);
        print("baseline", &base);
        let t = Instant::now();
        let mut failures = 0;
        for i in 0..creates {
            let name = format!("soak-{}", i % 7);
            match c.create_vm(create(&name)).await {
                Ok(_) => {
                    c.delete_vm(delete(&name)).await.unwrap();
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("create {name}: {}", e.message());
                }
            }
            if (i + 1) % 100 == 0 {
                print(
                    &format!("after {} create/destroy", i + 1),
                    &figures(&server),
                );
            }
        }
        println!(
            "{creates} create/destroy cycles in {:.1} s ({failures} failed)",
            t.elapsed().as_secs_f64()
        );
        print("after create/destroy", &figures(&server));

        c.create_vm(create("source")).await.unwrap();
        let base = figures(&server);
        print("with the source VM", &base);
        let t = Instant::now();
        let mut failures = 0;
        for i in 0..forks {
            let ckpt = c
                .create_checkpoint(CreateCheckpointRequest {
                    vm: "source".into(),
                    label: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let fork = format!("fork-{}", i % 5);
            let done = c
                .restore(RestoreRequest {
                    checkpoint_id: ckpt.id.clone(),
                    new_name: fork.clone(),
                    ..Default::default()
                })
                .await;
            match done {
                Ok(_) => {
                    c.delete_vm(delete(&fork)).await.unwrap();
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("fork {fork}: {}", e.message());
                }
            }
            c.delete_checkpoint(noid::v1::DeleteCheckpointRequest { id: ckpt.id })
                .await
                .unwrap();
            if (i + 1) % 50 == 0 {
                print(
                    &format!("after {} ckpt/fork/destroy", i + 1),
                    &figures(&server),
                );
            }
        }
        println!(
            "{forks} checkpoint/fork/destroy cycles in {:.1} s ({failures} failed)",
            t.elapsed().as_secs_f64()
        );
        print("after checkpoint/fork", &figures(&server));
        c.delete_vm(delete("source")).await.unwrap();
    });
    drop(server);
}
