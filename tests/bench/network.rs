//! Benchmark of guest networking on this machine (prints numbers, asserts none), inside a
//! network namespace of its own: host <-> guest TCP round trip and throughput both ways, and
//! guest <-> guest ping round trip and TCP throughput, each with noid's isolation rules in
//! place and without them.
//!
//! Software-emulated guests are noisy from one moment to the next, so "with" and "without" are
//! measured on the same two VMs, alternating several times: between rounds the benchmark
//! empties the filter chains of noid's tables (what `[network] isolation = false` leaves) and
//! then loads the saved rules back.
//!
//! Run: cargo build --release --workspace && cargo bench --bench network

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use noid::v1::CreateVmRequest;

const MIB: usize = 1 << 20;
/// Rounds of each measurement, alternating with and without rules.
const ROUNDS: usize = 4;
/// MiB the host sends to a guest in one round.
const HOST_SENDS_MIB: usize = 32;
/// MiB a guest sends in one round (its TCP send path is slow under TCG: a few MiB/s).
const GUEST_SENDS_MIB: usize = 8;

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

fn nft(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Switches noid's filtering off (its base chains emptied) and back on (the saved tables).
struct Rules {
    saved: String,
}

impl Rules {
    fn save() -> Rules {
        let saved = ["bridge", "ip"]
            .iter()
            .map(|f| nft(&["list", "table", f, "noid_noid0"], None))
            .collect();
        Rules { saved }
    }

    fn set(&self, on: bool) {
        let script = if on {
            format!(
                "delete table bridge noid_noid0\ndelete table ip noid_noid0\n{}",
                self.saved
            )
        } else {
            [
                "bridge noid_noid0 prerouting",
                "bridge noid_noid0 forward",
                "bridge noid_noid0 input",
                "ip noid_noid0 input",
                "ip noid_noid0 forward",
            ]
            .iter()
            .map(|c| format!("flush chain {c}\n"))
            .collect()
        };
        nft(&["-f", "-"], Some(&script));
    }
}

/// Runs `script` in `vm` in the background (its result is not waited for).
fn spawn_in(rt: &tokio::runtime::Runtime, c: &noid::client::Client, vm: &str, script: &str) {
    let (mut c, vm, script) = (c.clone(), vm.to_string(), script.to_string());
    rt.spawn(async move {
        let _ = common::exec(&mut c, &vm, &["sh", "-c", &script], None, None).await;
    });
}

/// Samples of one measurement, with rules and without.
#[derive(Default)]
struct Samples {
    on: Vec<f64>,
    off: Vec<f64>,
}

impl Samples {
    fn push(&mut self, on: bool, values: impl IntoIterator<Item = f64>) {
        let v = if on { &mut self.on } else { &mut self.off };
        v.extend(values);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let ns = common::NetNs::new("bench");
    let rt = ns.runtime();
    let server = common::Server::start(
        &["bench"],
        "[network]\n# The guest -> host listener.\nhost_services = [\"tcp:9002\"]\n",
    );
    let mut c = rt.block_on(server.client("bench"));
    let create = |name: &str| {
        rt.block_on(c.clone().create_vm(CreateVmRequest {
            name: name.into(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
    };
    let (a, b) = (create("a"), create("b"));
    let rules = Rules::save();
    println!(
        "noid network benchmark ({}; guests {} and {} on bridge noid0, own namespace)",
        a.backend, a.address, b.address
    );

    let mut rtt = Samples::default();
    let mut host_to_guest = Samples::default();
    let mut guest_to_host = Samples::default();
    let mut ping = Samples::default();
    let mut guest_to_guest = Samples::default();
    let listener = TcpListener::bind("172.16.0.1:9002").unwrap();
    for round in 0..ROUNDS * 2 {
        let on = round % 2 == 0;
        rules.set(on);
        // (busybox nc ends at EOF on its stdin: listeners get a stdin that stays open.)
        spawn_in(&rt, &c, "a", "nc -l -p 9000 -e cat");
        spawn_in(&rt, &c, "a", "sleep 3600 | nc -l -p 9001 > /dev/null");

        // Host -> guest round trip: 1 byte there and back, 200 times on one connection.
        let mut s = connect(&format!("{}:9000", a.address));
        let mut byte = [0u8; 1];
        let mut v = Vec::new();
        for i in 0..210 {
            let t = Instant::now();
            s.write_all(b"x").unwrap();
            s.read_exact(&mut byte).unwrap();
            if i >= 10 {
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        rtt.push(on, v);
        drop(s);

        // Host -> guest throughput, into the guest's nc, which discards it.
        let mut s = connect(&format!("{}:9001", a.address));
        let chunk = vec![7u8; MIB];
        let t = Instant::now();
        for _ in 0..HOST_SENDS_MIB {
            s.write_all(&chunk).unwrap();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = s.read(&mut [0u8; 1]);
        host_to_guest.push(on, [HOST_SENDS_MIB as f64 / t.elapsed().as_secs_f64()]);

        // Guest -> host throughput, to a listener on the gateway address.
        spawn_in(
            &rt,
            &c,
            "a",
            &format!(
                "dd if=/dev/zero bs=1M count={GUEST_SENDS_MIB} 2>/dev/null | nc 172.16.0.1 9002"
            ),
        );
        let (mut conn, _) = listener.accept().unwrap();
        let t = Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; MIB];
        while got < GUEST_SENDS_MIB * MIB {
            match conn.read(&mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        guest_to_host.push(on, [got as f64 / MIB as f64 / t.elapsed().as_secs_f64()]);
        drop(conn);

        // Guest -> guest round trip: the guest's own ping.
        let out = rt.block_on(common::sh(
            &mut c,
            "a",
            &format!("ping -c 20 -i 0.05 {} | grep time=", b.address),
        ));
        ping.push(
            on,
            out.lines()
                .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok()),
        );

        // Guest -> guest throughput: from a to b, until b has counted all of it (wc writes
        // the count once nc has ended).
        spawn_in(
            &rt,
            &c,
            "b",
            "sleep 3600 | nc -l -p 9003 | wc -c > /tmp/got",
        );
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        spawn_in(
            &rt,
            &c,
            "a",
            &format!(
                "dd if=/dev/zero bs=1M count={GUEST_SENDS_MIB} 2>/dev/null | nc {} 9003",
                b.address
            ),
        );
        let got: usize = loop {
            let out = rt.block_on(common::sh(&mut c, "b", "cat /tmp/got"));
            if let Ok(n) = out.trim().parse() {
                break n;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(got, GUEST_SENDS_MIB * MIB, "b did not receive it all");
        guest_to_guest.push(on, [got as f64 / MIB as f64 / t.elapsed().as_secs_f64()]);
        rt.block_on(common::sh(&mut c, "b", "killall sleep; rm /tmp/got"));
        rt.block_on(common::sh(&mut c, "a", "killall sleep; true"));
    }
    rules.set(true);

    println!(
        "{:<38} {:>12} {:>12} {:>8}   (median of {ROUNDS} rounds each, alternating)",
        "", "with rules", "without", "diff"
    );
    for (name, unit, s) in [
        ("TCP round trip host -> guest", "ms", &rtt),
        ("TCP throughput host -> guest", "MiB/s", &host_to_guest),
        ("TCP throughput guest -> host", "MiB/s", &guest_to_host),
        ("ping round trip guest -> guest", "ms", &ping),
        ("TCP throughput guest -> guest", "MiB/s", &guest_to_guest),
    ] {
        let (on, off) = (median(&s.on), median(&s.off));
        println!(
            "{name:<38} {on:>6.3} {unit:<5} {off:>6.3} {unit:<5} {:>+7.1}%",
            (on - off) / off * 100.0
        );
    }
    drop(server);
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(ns);
}
