//! Benchmark of images on this machine (not a test: it prints numbers, asserts none): the
//! time to build a Debian image with python3 and to import an image archive, and, for the
//! default image and the Debian one side by side, create from the image's boot snapshot,
//! checkpoint and fork of a VM that wrote 64 MiB, and the `exec -- true` round trip; creates,
//! checkpoints and forks with VM disks as overlays and as copies (`[vm] disk_overlays`).
//!
//! Run: cargo build --release --workspace && cargo bench --bench images

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use noid::v1::{CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, RestoreRequest};

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<40} n={:<4} min {:>8.1} ms  p50 {:>8.1} ms  max {:>8.1} ms",
        samples.len(),
        pct(0.0),
        pct(0.5),
        pct(1.0)
    );
}

fn timed(server: &common::Server, label: &str, args: &[&str]) {
    let t = Instant::now();
    let out = server.run("bench", args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{label:<40} {:>8.1} s", t.elapsed().as_secs_f64());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut server = common::Server::start(&["bench"], "");
    println!("noid image benchmark (2 cores)");

    timed(
        &server,
        "image build (debian bookworm +python3)",
        &[
            "image",
            "build",
            "py",
            "--debian",
            "bookworm",
            "--packages",
            "python3",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.tar");
    let big: Vec<u8> = (0..(32u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let data_layer = common::oci::tar_of(&[("data/blob", tar::EntryType::Regular, &big, 0o644)]);
    std::fs::write(
        &archive,
        common::oci::oci_archive(
            &[(common::oci::base_layer(), true), (data_layer, true)],
            serde_json::json!({"Env": ["PATH=/bin"]}),
        ),
    )
    .unwrap();
    let size = std::fs::metadata(&archive).unwrap().len() as f64 / 1048576.0;
    timed(
        &server,
        &format!("image import ({size:.0} MiB archive, 2 layers)"),
        &["image", "import", "app", archive.to_str().unwrap()],
    );

    // VM disks as overlays (the default here: /tmp has no reflinks), then as copies.
    for (mode, config) in [
        ("overlays", "[vm]\ndisk_overlays = \"always\"\n"),
        ("copies", "[vm]\ndisk_overlays = \"never\"\n"),
    ] {
        server.restart_with(config);
        let mut client = server.client("bench").await;
        for image in ["default", "py"] {
            let create = |name: String| CreateVmRequest {
                name,
                image: image.into(),
                ..Default::default()
            };
            let first = format!("{image}-first");
            if mode == "overlays" {
                // The first VM of the image boots and makes its boot snapshot.
                client.create_vm(create(first.clone())).await.unwrap();
            }
            let mut creates = Vec::new();
            for i in 0..5 {
                let name = format!("{image}-{i}");
                let t = Instant::now();
                client.create_vm(create(name.clone())).await.unwrap();
                creates.push(t.elapsed());
                client.delete_vm(DeleteVmRequest { name }).await.unwrap();
            }
            summary(
                &format!("create from boot snapshot ({image}, {mode})"),
                creates,
            );
            // Checkpoints and forks of a VM that wrote 64 MiB of its own.
            let vm = format!("{image}-ckpt-{mode}");
            client.create_vm(create(vm.clone())).await.unwrap();
            let wrote = common::exec(
                &mut client,
                &vm,
                &[
                    "sh",
                    "-c",
                    "head -c 67108864 /dev/urandom > /root/data; sync",
                ],
                None,
                None,
            )
            .await
            .unwrap();
            assert_eq!(wrote.code, 0);
            let (mut ckpts, mut forks) = (Vec::new(), Vec::new());
            for i in 0..3 {
                let t = Instant::now();
                let ckpt = client
                    .create_checkpoint(CreateCheckpointRequest {
                        vm: vm.clone(),
                        label: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                ckpts.push(t.elapsed());
                let name = format!("{vm}-fork-{i}");
                let t = Instant::now();
                client
                    .restore(RestoreRequest {
                        checkpoint_id: ckpt.id,
                        new_name: name.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                forks.push(t.elapsed());
                client.delete_vm(DeleteVmRequest { name }).await.unwrap();
            }
            summary(
                &format!("checkpoint, 64 MiB written ({image}, {mode})"),
                ckpts,
            );
            summary(&format!("fork ({image}, {mode})"), forks);
            client
                .delete_vm(DeleteVmRequest { name: vm })
                .await
                .unwrap();
            if mode == "overlays" {
                let mut rtt = Vec::new();
                for _ in 0..100 {
                    let t = Instant::now();
                    let r = common::exec(&mut client, &first, &["true"], None, None)
                        .await
                        .unwrap();
                    rtt.push(t.elapsed());
                    assert_eq!(r.code, 0);
                }
                summary(&format!("exec true ({image})"), rtt);
            }
        }
    }
}
