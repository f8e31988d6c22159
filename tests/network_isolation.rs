//! Network isolation end to end, in network namespaces this test makes (no traffic leaves
//! them): users' VMs apart, no spoofing, the host closed to VMs, egress policies (with a
//! "remote" host in a second namespace behind a veth), policies across changes, checkpoints,
//! forks and restarts, published ports that cannot take the host's ports, and rules that go
//! with their VMs and with `network-down`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{exec, sh, NetNs, Server};
use noid::v1::{
    AddPortRequest, CreateCheckpointRequest, CreateVmRequest, DeleteVmRequest, GetVmRequest,
    RestoreRequest,
};
use tonic::Code;

/// Addresses of the host (the test's namespace) besides the bridge.
const HOST_ADDR: &str = "10.99.0.1";
const HOST_ADDR2: &str = "10.99.0.2";
const METADATA: &str = "169.254.169.254";
/// The remote host (another namespace): a public-looking address, a second one, and one in a
/// private network that the operator's default `blocked` list covers.
const REMOTE: &str = "198.51.100.2";
const REMOTE2: &str = "198.51.100.4";
const REMOTE_PRIVATE: &str = "10.200.0.2";
const GATEWAY: &str = "172.16.0.1";

/// Serves "NAME PORT" to every connection on `addr:port`, from a thread in `ns`.
fn serve_banner(ns: Option<&NetNs>, addr: &str, port: u16, name: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.map(|n| n.name.clone());
    let addr = format!("{addr}:{port}");
    std::thread::spawn(move || {
        if let Some(name) = ns {
            NetNs::enter_named(&name);
        }
        let l = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        tx.send(()).unwrap();
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(format!("{name} {port}\n").as_bytes());
        }
    });
    rx.recv().unwrap();
}

/// What `vm` reads from a TCP connection to `addr:port`, or None when it cannot connect.
async fn tcp(c: &mut noid::client::Client, vm: &str, addr: &str, port: u16) -> Option<String> {
    let script = format!("nc -w 3 {addr} {port} </dev/null");
    let r = exec(c, vm, &["sh", "-c", &script], None, None)
        .await
        .unwrap();
    (r.code == 0 && !r.stdout.is_empty()).then(|| r.out().trim().to_string())
}

/// Whether `vm` gets an answer to one ping of `addr` (extra `ping` flags in `flags`).
async fn ping(c: &mut noid::client::Client, vm: &str, flags: &str, addr: &str) -> bool {
    let script = format!("ping -c 1 -W 2 {flags} {addr}");
    let r = exec(c, vm, &["sh", "-c", &script], None, None)
        .await
        .unwrap();
    // Shown with a failing assertion.
    eprintln!("{vm}$ {script}: exit {}\n{}", r.code, r.out());
    r.code == 0
}

/// The neighbour entry `vm` has for `addr` ("" when none).
async fn neighbour(c: &mut noid::client::Client, vm: &str, addr: &str) -> String {
    sh(c, vm, &format!("ip neigh show {addr}")).await
}

fn create(name: &str) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        ..Default::default()
    }
}

/// Both of noid's tables for the bridge, as nft lists them ("" for a missing one).
fn nft_tables() -> String {
    ["bridge", "ip"]
        .iter()
        .map(|family| {
            let out = std::process::Command::new("nft")
                .args(["list", "table", family, "noid_noid0"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

fn cli_ok(server: &Server, user: &str, args: &[&str]) -> String {
    let out = server.run(user, args);
    assert!(
        out.status.success(),
        "noid {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_err(server: &Server, user: &str, args: &[&str]) -> String {
    let out = server.run(user, args);
    assert!(!out.status.success(), "noid {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tenants_spoofing_host_egress_ports_and_cleanup() {
    let ns = NetNs::new("iso");
    let remote = NetNs::new("iso-remote");
    let rt = ns.runtime();
    // The host's other addresses: two "public" ones and a cloud metadata address on a
    // device of its own.
    ns.ip(&["addr", "add", &format!("{HOST_ADDR}/32"), "dev", "lo"]);
    ns.ip(&["addr", "add", &format!("{HOST_ADDR2}/32"), "dev", "lo"]);
    // (This kernel has no dummy devices: one end of a veth pair does the same job.)
    ns.ip(&[
        "link", "add", "meta0", "type", "veth", "peer", "name", "meta1",
    ]);
    ns.ip(&["addr", "add", &format!("{METADATA}/32"), "dev", "meta0"]);
    ns.ip(&["link", "set", "meta0", "up"]);
    ns.ip(&["link", "set", "meta1", "up"]);
    // The remote host, behind a veth.
    ns.ip(&[
        "link",
        "add",
        "vr0",
        "type",
        "veth",
        "peer",
        "name",
        "vr1",
        "netns",
        &remote.name,
    ]);
    ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "vr0"]);
    ns.ip(&["addr", "add", "10.200.0.1/24", "dev", "vr0"]);
    ns.ip(&["link", "set", "vr0", "up"]);
    for args in [
        vec!["addr", "add", "198.51.100.2/24", "dev", "vr1"],
        vec!["addr", "add", "198.51.100.4/24", "dev", "vr1"],
        vec!["addr", "add", "10.200.0.2/24", "dev", "vr1"],
        vec!["link", "set", "vr1", "up"],
        vec!["link", "set", "lo", "up"],
    ] {
        ns.ip(&[&["-n", remote.name.as_str()], args.as_slice()].concat());
    }
    for port in [8080, 9090] {
        serve_banner(Some(&remote), "0.0.0.0", port, "remote");
    }
    serve_banner(None, METADATA, 80, "metadata");
    serve_banner(None, HOST_ADDR, 7001, "host");

    rt.block_on(async {
        let mut server = Server::start(
            &["alice", "bob"],
            "[network]\nhost_services = [\"tcp:7002\"]\n",
        );
        // Services of the host on the bridge's address: one VMs may use, one they may not.
        serve_banner(None, GATEWAY, 7000, "private");
        serve_banner(None, GATEWAY, 7002, "offered");
        let mut alice = server.client("alice").await;
        let mut bob = server.client("bob").await;
        let (mut c1, mut c2, mut c3) = (alice.clone(), alice.clone(), bob.clone());
        let (a1, a2, b1) = tokio::join!(
            c1.create_vm(create("a1")),
            c2.create_vm(create("a2")),
            c3.create_vm(create("b1")),
        );
        let (a1, a2, b1) = (
            a1.unwrap().into_inner(),
            a2.unwrap().into_inner(),
            b1.unwrap().into_inner(),
        );
        cli_ok(
            &server,
            "alice",
            &[
                "create",
                "a3",
                "--egress",
                "deny",
                "--allow",
                "198.51.100.2:8080",
                "--peers",
                "deny",
            ],
        );
        let a3 = alice
            .get_vm(GetVmRequest { name: "a3".into() })
            .await
            .unwrap()
            .into_inner();

        // 1. One user's VMs reach each other; other users' VMs exchange nothing, not even ARP.
        assert!(ping(&mut alice, "a1", "", &a2.address).await);
        assert!(ping(&mut alice, "a2", "", &a1.address).await);
        sh(
            &mut alice,
            "a1",
            "mkdir -p /www; echo from-a1 > /www/index.html; httpd -p 8000 -h /www",
        )
        .await;
        // (busybox's static wget crashes in the guest; nc speaks the request instead.)
        let get = |addr: &str| {
            format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {addr} 8000")
        };
        assert!(sh(&mut alice, "a2", &get(&a1.address))
            .await
            .ends_with("from-a1\n"));
        assert!(!ping(&mut bob, "b1", "", &a1.address).await);
        let r = exec(&mut bob, "b1", &["sh", "-c", &get(&a1.address)], None, None)
            .await
            .unwrap();
        assert!(
            r.code != 0 && r.stdout.is_empty(),
            "bob's VM read alice's web server"
        );
        // b1's ARP requests (broadcasts) never reached a1: it would have learned b1's address.
        assert_eq!(neighbour(&mut alice, "a1", &b1.address).await, "");
        assert!(!ping(&mut alice, "a1", "", &b1.address).await);
        assert!(!neighbour(&mut bob, "b1", &a1.address)
            .await
            .contains(&a1.mac));
        // A VM whose policy keeps it from its owner's other VMs.
        assert!(!ping(&mut alice, "a3", "", &a1.address).await);
        assert!(!ping(&mut alice, "a1", "", &a3.address).await);

        // 2. No spoofing: another address or another MAC gets nothing through.
        sh(&mut alice, "a2", "ip addr add 172.16.0.200/24 dev eth0").await;
        assert!(!ping(&mut alice, "a2", "-I 172.16.0.200", &a1.address).await);
        assert!(!ping(&mut alice, "a2", "-I 172.16.0.200", REMOTE).await);
        // (Its ARP requests went out with the other address too, so its neighbour entries
        // failed: start them over.)
        sh(
            &mut alice,
            "a2",
            "ip addr del 172.16.0.200/24 dev eth0; ip neigh flush dev eth0",
        )
        .await;
        assert!(ping(&mut alice, "a2", "", REMOTE).await);
        sh(
            &mut alice,
            "a2",
            "ip link set eth0 address 02:de:ad:be:ef:01; ip neigh flush dev eth0",
        )
        .await;
        assert!(!ping(&mut alice, "a2", "", &a1.address).await);
        assert!(!ping(&mut alice, "a2", "", GATEWAY).await);
        sh(
            &mut alice,
            "a2",
            &format!(
                "ip link set eth0 address {}; ip neigh flush dev eth0",
                a2.mac
            ),
        )
        .await;
        assert!(ping(&mut alice, "a2", "", &a1.address).await);

        // 3. The host answers VMs only for ping and what the operator offers on the gateway;
        // not on its other addresses, not the metadata address, not private networks.
        assert!(ping(&mut alice, "a1", "", GATEWAY).await);
        assert_eq!(
            tcp(&mut alice, "a1", GATEWAY, 7002).await.as_deref(),
            Some("offered 7002")
        );
        assert_eq!(tcp(&mut alice, "a1", GATEWAY, 7000).await, None);
        assert_eq!(tcp(&mut alice, "a1", HOST_ADDR, 7001).await, None);
        assert_eq!(tcp(&mut alice, "a1", METADATA, 80).await, None);
        assert!(!ping(&mut alice, "a1", "", METADATA).await);
        assert_eq!(tcp(&mut alice, "a1", REMOTE_PRIVATE, 8080).await, None);
        // The test's own listeners answer the host itself (so the refusals above mean something).
        for (addr, port) in [(GATEWAY, 7000), (HOST_ADDR, 7001), (METADATA, 80)] {
            let mut s = TcpStream::connect((addr, port)).unwrap();
            let mut line = String::new();
            s.read_to_string(&mut line).unwrap();
            assert!(line.ends_with(&format!("{port}\n")), "{line}");
        }

        // 4. Egress policies: open by default; "deny" with one allowed address and port.
        assert_eq!(
            tcp(&mut alice, "a1", REMOTE, 9090).await.as_deref(),
            Some("remote 9090")
        );
        assert_eq!(
            tcp(&mut alice, "a3", REMOTE, 8080).await.as_deref(),
            Some("remote 8080")
        );
        assert_eq!(tcp(&mut alice, "a3", REMOTE, 9090).await, None);
        assert_eq!(tcp(&mut alice, "a3", REMOTE2, 8080).await, None);
        let info = cli_ok(&server, "alice", &["info", "a3"]);
        assert!(
            info.contains("egress deny, allow 198.51.100.2:8080, no other VMs"),
            "{info}"
        );
        // A change on a running VM applies at once.
        cli_ok(
            &server,
            "alice",
            &["net", "a3", "--allow", "198.51.100.2:9090"],
        );
        assert_eq!(
            tcp(&mut alice, "a3", REMOTE, 9090).await.as_deref(),
            Some("remote 9090")
        );
        cli_ok(
            &server,
            "alice",
            &["net", "a1", "--deny", "198.51.100.0/24:9090"],
        );
        assert_eq!(tcp(&mut alice, "a1", REMOTE, 9090).await, None);
        assert_eq!(
            tcp(&mut alice, "a1", REMOTE, 8080).await.as_deref(),
            Some("remote 8080")
        );
        let e = cli_err(&server, "alice", &["net", "a1", "--allow", "10.0.0.5/8"]);
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        let e = cli_err(&server, "bob", &["net", "a1", "--egress", "allow"]);
        assert!(e.contains("not found"), "{e}");

        // 5. A fork keeps its source's policy; one told otherwise gets that; so does a restart.
        let ck = alice
            .create_checkpoint(CreateCheckpointRequest {
                vm: "a3".into(),
                label: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let fork = alice
            .restore(RestoreRequest {
                checkpoint_id: ck.id.clone(),
                new_name: "a3-fork".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fork.network_policy, a3_policy(&mut alice).await);
        assert_eq!(
            tcp(&mut alice, "a3-fork", REMOTE, 9090).await.as_deref(),
            Some("remote 9090")
        );
        assert_eq!(tcp(&mut alice, "a3-fork", REMOTE2, 8080).await, None);
        cli_ok(
            &server,
            "alice",
            &["restore", &ck.id, "--as", "a3-open", "--egress", "allow"],
        );
        assert_eq!(
            tcp(&mut alice, "a3-open", REMOTE2, 8080).await.as_deref(),
            Some("remote 8080")
        );
        drop((alice, bob));
        server.restart();
        let mut alice = server.client("alice").await;
        let bob = server.client("bob").await;
        let info = cli_ok(&server, "alice", &["info", "a3"]);
        assert!(
            info.contains("egress deny, allow 198.51.100.2:8080 198.51.100.2:9090, no other VMs"),
            "{info}"
        );
        assert_eq!(tcp(&mut alice, "a3", REMOTE2, 8080).await, None);
        assert_eq!(
            tcp(&mut alice, "a3", REMOTE, 8080).await.as_deref(),
            Some("remote 8080")
        );
        let mut bob2 = bob.clone();
        assert!(!ping(&mut bob2, "b1", "", &a1.address).await);

        // 6. Published ports: never noid's own, a port in use, or one outside the range.
        let api_port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
        let in_range = TcpListener::bind("0.0.0.0:20555").unwrap();
        for (port, code, why) in [
            (api_port, Code::InvalidArgument, "noid's own".to_string()),
            (
                20555,
                Code::AlreadyExists,
                "in use by a program".to_string(),
            ),
            (
                8080,
                Code::InvalidArgument,
                "outside the ports this server publishes (20000-29999)".to_string(),
            ),
            (22, Code::InvalidArgument, "privileged".to_string()),
        ] {
            let e = alice
                .add_port(AddPortRequest {
                    vm: "a1".into(),
                    host_port: port.into(),
                    guest_port: 8000,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{port}: {}", e.message());
            assert!(e.message().contains(&why), "{port}: {}", e.message());
        }
        drop(in_range);
        // The API still answers, and nothing was published.
        let vm = alice
            .get_vm(GetVmRequest { name: "a1".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(vm.ports.is_empty());
        cli_ok(&server, "alice", &["port", "add", "a1", "20555:8000"]);
        let e = bob
            .clone()
            .add_port(AddPortRequest {
                vm: "b1".into(),
                host_port: 20555,
                guest_port: 80,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        let http = |addr: &str| {
            let mut s = TcpStream::connect((addr, 20555)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        assert!(http(HOST_ADDR).contains("from-a1"));
        // VMs do not reach published ports through the host.
        assert_eq!(tcp(&mut alice, "a2", HOST_ADDR, 20555).await, None);
        // Only on the host addresses the config names.
        drop(alice);
        server.restart_with(&format!(
            "[network]\nhost_services = [\"tcp:7002\"]\npublish_addresses = [\"{HOST_ADDR}\"]\n"
        ));
        let mut alice = server.client("alice").await;
        assert!(http(HOST_ADDR).contains("from-a1"));
        assert!(TcpStream::connect((HOST_ADDR2, 20555)).is_err());

        // 7. A destroyed VM's rules go with it; network-down removes the rest.
        let tap = format!("nt{}", a1.id);
        assert!(nft_tables().contains(&tap));
        alice
            .delete_vm(DeleteVmRequest { name: "a1".into() })
            .await
            .unwrap();
        let rules = nft_tables();
        assert!(
            !rules.contains(&tap)
                && !rules.contains(&format!("{} : goto", a1.address))
                && !rules.contains("dnat to"),
            "{rules}"
        );
        for vm in ["a2", "a3", "a3-fork", "a3-open"] {
            alice
                .delete_vm(DeleteVmRequest { name: vm.into() })
                .await
                .unwrap();
        }
        bob.clone()
            .delete_vm(DeleteVmRequest { name: "b1".into() })
            .await
            .unwrap();
        let rules = nft_tables();
        assert!(
            !rules.contains("chain from_nt") && !rules.contains("chain egress_nt"),
            "{rules}"
        );
        drop(alice);
        server.stop();
        let config = server.dir.path().join("server.toml");
        common::server_command([
            "network-down".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        assert_eq!(nft_tables(), "");
    });
    drop(rt);
}

/// a3's policy as the server reports it.
async fn a3_policy(c: &mut noid::client::Client) -> Option<noid::v1::NetworkPolicy> {
    c.get_vm(GetVmRequest { name: "a3".into() })
        .await
        .unwrap()
        .into_inner()
        .network_policy
}
