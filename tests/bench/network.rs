//! Benchmark of guest networking on this machine (prints numbers, asserts none), inside a
//! network namespace of its own: host -> guest TCP round trip (1-byte echo over one
//! connection) and throughput both ways, to the guest's address over the bridge.
//!
//! Run: cargo build --release --workspace && cargo bench --bench network

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use noid::v1::CreateVmRequest;

fn connect(addr: &str) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr) {
            s.set_nodelay(true).unwrap();
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot connect to {addr}");
}

fn main() {
    let ns = common::NetNs::new("bench");
    let rt = ns.runtime();
    let server = common::Server::start(&["bench"], "[network]\nenabled = true\n");
    let mut c = rt.block_on(server.client("bench"));
    let vm = rt
        .block_on(c.create_vm(CreateVmRequest {
            name: "net".into(),
            cpus: 0,
            memory_mib: 0,
        }))
        .unwrap()
        .into_inner();
    println!(
        "noid network benchmark ({}, guest {} on bridge noid0)",
        vm.backend, vm.address
    );

    // Round trip: one connection, 1 byte there and back, 500 times.
    let mut ch = c.clone();
    rt.spawn(async move {
        let _ = common::exec(
            &mut ch,
            "net",
            &["nc", "-l", "-p", "9000", "-e", "cat"],
            None,
            None,
        )
        .await;
    });
    let mut s = connect(&format!("{}:9000", vm.address));
    let mut rtts = Vec::new();
    let mut b = [0u8; 1];
    for i in 0..520 {
        let t = Instant::now();
        s.write_all(b"x").unwrap();
        s.read_exact(&mut b).unwrap();
        if i >= 20 {
            rtts.push(t.elapsed());
        }
    }
    drop(s);
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<36} n={} p50 {:.3} ms  p99 {:.3} ms  min {:.3} ms",
        "TCP round trip host -> guest",
        rtts.len(),
        ms(rtts[rtts.len() / 2]),
        ms(rtts[rtts.len() * 99 / 100]),
        ms(rtts[0])
    );

    // Host -> guest: 64 MiB into the guest's nc, which discards it.
    let total = 64usize << 20;
    let mut ch = c.clone();
    rt.spawn(async move {
        let _ = common::exec(
            &mut ch,
            "net",
            &["sh", "-c", "nc -l -p 9001 > /dev/null"],
            None,
            None,
        )
        .await;
    });
    let mut s = connect(&format!("{}:9001", vm.address));
    let chunk = vec![7u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..(total >> 20) {
        s.write_all(&chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = s.read(&mut [0u8; 1]);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<36} {:.1} MiB/s",
        "TCP throughput host -> guest",
        64.0 / secs
    );

    // Guest -> host: the guest sends 64 MiB to a listener on the gateway address.
    let listener = TcpListener::bind("172.16.0.1:9002").unwrap();
    let mut ch = c.clone();
    rt.spawn(async move {
        let _ = common::exec(
            &mut ch,
            "net",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero bs=1M count=64 2>/dev/null | nc 172.16.0.1 9002",
            ],
            None,
            None,
        )
        .await;
    });
    let (mut conn, _) = listener.accept().unwrap();
    let t = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while got < total {
        match conn.read(&mut buf).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<36} {:.1} MiB/s ({} MiB)",
        "TCP throughput guest -> host",
        got as f64 / 1048576.0 / secs,
        got >> 20
    );
    drop(conn);
    drop(server);
    // The guest's sender may still be waiting; do not wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(ns);
}
