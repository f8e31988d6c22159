//! Networking end to end. Each test makes its own network namespace and runs the server, the
//! VMs and every client inside it, so all traffic stays there: VMs reach each other and the
//! gateway, TCP reaches a guest through its address and through a published port, forks (one,
//! and five in one call) get their own addresses, and nothing (TAP, lease, rule) outlives a VM.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{sh, NetNs, Server};
use noid::v1::{
    AddPortRequest, CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, ForkManyRequest,
    GetVmRequest, ListVmsRequest, RestoreRequest,
};
use tonic::Code;

/// A second address of the "host" (the namespace), like a public interface.
const HOST_ADDR: &str = "10.99.0.1";

/// Runs the two CLI commands that take VM `a` away and bring it back (hibernate and wake,
/// stop and start), then checks it has its address and MAC and that VM b reaches it.
async fn leave_and_return(
    server: &Server,
    c: &mut noid::client::Client,
    a: &noid::v1::Vm,
    steps: [&str; 2],
) {
    for step in steps {
        let out = server.run("alice", &[step, &a.name]);
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let back = c
        .get_vm(GetVmRequest {
            name: a.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((back.address, back.mac), (a.address.clone(), a.mac.clone()));
    sh(c, "b", &format!("ping -c 1 -W 3 {} >/dev/null", a.address)).await;
}

fn create(name: &str) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        cpus: 0,
        memory_mib: 0,
        ..Default::default()
    }
}

async fn create_vm(mut c: noid::client::Client, name: String) -> noid::v1::Vm {
    c.create_vm(create(&name)).await.unwrap().into_inner()
}

async fn delete_vm(mut c: noid::client::Client, name: String) {
    c.delete_vm(DeleteVmRequest { name }).await.unwrap();
}

/// GET / from a guest's web server at `addr`.
fn http_get(addr: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn taps(ns: &NetNs) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("nt"))
        .collect()
}

/// The TAPs of VMs: all but those of the warm VMMs (by id).
fn vm_taps(ns: &NetNs, warm: &BTreeSet<String>) -> Vec<String> {
    let warm: Vec<String> = warm.iter().map(|id| format!("nt{id}")).collect();
    taps(ns).into_iter().filter(|t| !warm.contains(t)).collect()
}

fn nft_table(bridge: &str) -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &format!("noid_{bridge}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `body` on a runtime whose threads all live in `ns`.
fn in_netns(ns: &NetNs, body: impl std::future::Future<Output = ()>) {
    let rt = ns.runtime();
    ns.ip(&["addr", "add", &format!("{HOST_ADDR}/32"), "dev", "lo"]);
    rt.block_on(body);
}

#[test]
fn guests_talk_publish_ports_fork_and_clean_up() {
    let ns = NetNs::new("net");
    in_netns(&ns, async {
        let mut server = Server::start(&["alice"], "[network]\nenabled = true\n");
        let mut c = server.client("alice").await;
        let (a, b) = tokio::join!(
            create_vm(c.clone(), "a".into()),
            create_vm(c.clone(), "b".into())
        );
        assert_ne!(a.address, b.address);
        assert!(a.address.starts_with("172.16.0.") && b.address.starts_with("172.16.0."));
        let out = server.run("alice", &["list"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&a.address));

        // The guests reach each other and the gateway.
        for (vm, peer) in [("a", &b.address), ("b", &a.address)] {
            sh(&mut c, vm, &format!("ping -c 1 -W 3 {peer} >/dev/null")).await;
            sh(&mut c, vm, "ping -c 1 -W 3 172.16.0.1 >/dev/null").await;
        }

        // A TCP server in a guest answers the host on its address and on a published port.
        sh(
            &mut c,
            "a",
            "mkdir -p /www; echo hello-from-a > /www/index.html; httpd -p 8000 -h /www",
        )
        .await;
        assert!(http_get(&format!("{}:8000", a.address)).contains("hello-from-a"));
        let out = server.run("alice", &["port", "add", "a", "20800:8000"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(http_get(&format!("{HOST_ADDR}:20800")).contains("hello-from-a"));
        let out = server.run("alice", &["info", "a"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("20800->8000"));
        let e = c
            .add_port(AddPortRequest {
                vm: "b".into(),
                host_port: 20800,
                guest_port: 80,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        let out = server.run("alice", &["port", "add", "a", "x:80"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("HOSTPORT:GUESTPORT")
                || !out.status.success()
        );

        // A fork answers on its own address while the source keeps its own.
        let ck = c
            .create_checkpoint(CreateCheckpointRequest {
                vm: "a".into(),
                label: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let fork = c
            .restore(RestoreRequest {
                checkpoint_id: ck.id.clone(),
                new_name: "a-fork".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(fork.address, a.address);
        assert_ne!(fork.mac, a.mac);
        assert!(http_get(&format!("{}:8000", fork.address)).contains("hello-from-a"));
        assert!(http_get(&format!("{}:8000", a.address)).contains("hello-from-a"));
        let inside = sh(&mut c, "a-fork", "ip -o -4 addr show eth0").await;
        assert!(inside.contains(&format!("{}/24", fork.address)), "{inside}");

        // Five forks in one call: five working VMs, each on an address of its own.
        let many = c
            .fork_many(ForkManyRequest {
                checkpoint_id: ck.id.clone(),
                prefix: "m".into(),
                count: 5,
                network_policy: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut addresses = HashSet::from([a.address.clone(), fork.address.clone()]);
        for r in &many.results {
            let vm =
                r.vm.as_ref()
                    .unwrap_or_else(|| panic!("{}: {}", r.name, r.error));
            assert!(
                addresses.insert(vm.address.clone()),
                "{} shares {}",
                r.name,
                vm.address
            );
            let page = http_get(&format!("{}:8000", vm.address));
            assert!(page.contains("hello-from-a"), "{}: {page}", r.name);
        }
        assert_eq!(addresses.len(), 7);
        for r in many.results {
            c.delete_vm(DeleteVmRequest { name: r.name }).await.unwrap();
        }

        // A restart keeps leases and connectivity.
        drop(c);
        server.restart();
        let mut c = server.client("alice").await;
        let again = c
            .get_vm(GetVmRequest { name: "a".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.address, a.address);
        assert!(http_get(&format!("{HOST_ADDR}:20800")).contains("hello-from-a"));
        sh(
            &mut c,
            "b",
            &format!("ping -c 1 -W 3 {} >/dev/null", a.address),
        )
        .await;

        // Hibernated and woken: the same address and published port, the server still serving.
        leave_and_return(&server, &mut c, &a, ["hibernate", "wake"]).await;
        assert!(http_get(&format!("{HOST_ADDR}:20800")).contains("hello-from-a"));

        // Stopped and started (a new boot of its own disk): the same address and MAC, and
        // the guest reachable at it again.
        leave_and_return(&server, &mut c, &a, ["stop", "start"]).await;

        // Destroy removes the TAP, the lease and the port rule.
        let tap_a = format!("nt{}", a.id);
        assert!(taps(&ns).contains(&tap_a));
        assert!(nft_table("noid0").contains("dport 20800"));
        for vm in ["a", "a-fork"] {
            c.delete_vm(DeleteVmRequest { name: vm.into() })
                .await
                .unwrap();
        }
        assert!(!taps(&ns).contains(&tap_a));
        assert!(!nft_table("noid0").contains("dport 20800"));
        assert!(TcpStream::connect_timeout(
            &format!("{HOST_ADDR}:20800").parse().unwrap(),
            Duration::from_secs(2)
        )
        .is_err());

        // 30 create/destroy cycles leave no TAP, lease or rule behind: afterwards the next VM
        // gets the lowest free address again, and only b's TAP exists.
        for round in 0..15 {
            let names = [format!("cycle-{round}-x"), format!("cycle-{round}-y")];
            tokio::join!(
                create_vm(c.clone(), names[0].clone()),
                create_vm(c.clone(), names[1].clone())
            );
            c.add_port(AddPortRequest {
                vm: names[0].clone(),
                host_port: 21000 + round,
                guest_port: 80,
            })
            .await
            .unwrap();
            tokio::join!(
                delete_vm(c.clone(), names[0].clone()),
                delete_vm(c.clone(), names[1].clone())
            );
        }
        let warm = server.settled_warm_vmms(&[b.id.clone()].into()).await;
        assert_eq!(vm_taps(&ns, &warm), [format!("nt{}", b.id)]);
        assert!(
            !nft_table("noid0").contains("dnat to"),
            "{}",
            nft_table("noid0")
        );
        let next = c.create_vm(create("last")).await.unwrap().into_inner();
        let lowest_free = if b.address == "172.16.0.2" {
            "172.16.0.3"
        } else {
            "172.16.0.2"
        };
        assert_eq!(next.address, lowest_free, "leases were not all released");
    });
}

#[test]
fn small_pool_is_exhausted_cleanly_and_overlaps_are_refused() {
    let ns = NetNs::new("pool");
    in_netns(&ns, async {
        // A route the host already has: a pool inside it is refused at start, by name.
        ns.ip(&["route", "add", "10.77.0.0/16", "dev", "lo"]);
        let out = std::process::Command::new(common::bin("noid-server"))
            .args(["serve", "--listen", "127.0.0.1:1", "--image-dir"])
            .arg(common::image_dir())
            .arg("--config")
            .arg({
                let p =
                    std::env::temp_dir().join(format!("noid-overlap-{}.toml", std::process::id()));
                std::fs::write(
                    &p,
                    "data_dir = \"/tmp/noid-overlap-data\"\n[network]\ncidr = \"10.77.1.0/24\"\n",
                )
                .unwrap();
                p
            })
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all("/tmp/noid-overlap-data");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("10.77.1.0/24 overlaps") && err.contains("10.77.0.0/16"),
            "{err}"
        );

        // A /29 has five guest addresses: the sixth create is RESOURCE_EXHAUSTED and leaves
        // no TAP, record or process behind. (Five software-emulated boots at once share two
        // cores: on a loaded host they take a minute, so the boot timeout is generous.)
        let server = Server::start(
            &["alice"],
            "[vm]\nboot_timeout_secs = 240\n[network]\nbridge = \"noidt\"\ncidr = \"172.16.9.0/29\"\n",
        );
        let c = server.client("alice").await;
        let creates: Vec<_> = (0..5)
            .map(|i| {
                let mut c = c.clone();
                tokio::spawn(async move { c.create_vm(create(&format!("v{i}"))).await })
            })
            .collect();
        for t in creates {
            t.await.unwrap().unwrap();
        }
        let ids = |c: noid::client::Client| async move {
            let mut c = c;
            let vms = c.list_vms(ListVmsRequest::default()).await.unwrap();
            vms.into_inner()
                .vms
                .into_iter()
                .map(|v| v.id)
                .collect::<BTreeSet<_>>()
        };
        let warm = server.settled_warm_vmms(&ids(c.clone()).await).await;
        let taps_before = vm_taps(&ns, &warm);
        assert_eq!(taps_before.len(), 5);
        let e = c
            .clone()
            .create_vm(create("one-too-many"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
        assert!(e.message().contains("172.16.9.0/29"), "{}", e.message());
        let warm = server.settled_warm_vmms(&ids(c.clone()).await).await;
        assert_eq!(vm_taps(&ns, &warm), taps_before);
        let e = c
            .clone()
            .get_vm(GetVmRequest {
                name: "one-too-many".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(server.vmm_pids().len(), 5);
    });
}
