//! Benchmark of images on this machine (not a test: it prints numbers, asserts none): the
//! time to build a Debian image with python3 and to import an image archive, and, for the
//! default image and the Debian one side by side, create from the image's boot snapshot and
//! the `exec -- true` round trip.
//!
//! Run: cargo build --release --workspace && cargo bench --bench images

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
    let server = common::Server::start(&["bench"], "");
    let mut client = server.client("bench").await;
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

    for image in ["default", "py"] {
        // The first VM of the image boots and makes its boot snapshot.
        let create = |name: String| CreateVmRequest {
            name,
            image: image.into(),
            ..Default::default()
        };
        client
            .create_vm(create(format!("{image}-first")))
            .await
            .unwrap();
        let mut creates = Vec::new();
        for i in 0..5 {
            let name = format!("{image}-{i}");
            let t = Instant::now();
            client.create_vm(create(name.clone())).await.unwrap();
            creates.push(t.elapsed());
            client.delete_vm(DeleteVmRequest { name }).await.unwrap();
        }
        summary(&format!("create from boot snapshot ({image})"), creates);
        let vm = format!("{image}-first");
        let mut rtt = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let r = common::exec(&mut client, &vm, &["true"], None, None)
                .await
                .unwrap();
            rtt.push(t.elapsed());
            assert_eq!(r.code, 0);
        }
        summary(&format!("exec true ({image})"), rtt);
        client
            .delete_vm(DeleteVmRequest { name: vm })
            .await
            .unwrap();
    }
}
