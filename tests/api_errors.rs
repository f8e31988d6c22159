//! Bad input, authentication and isolation between users, against a real server: every
//! refusal has its gRPC code and a message naming what was wrong, and changes nothing.

mod common;

use common::{exec, Server};
use noid::v1::{
    CopyOutRequest, CreateVmRequest, DeleteVmRequest, GetVmRequest, HealthRequest, ListVmsRequest,
    WhoAmIRequest,
};
use tonic::Code;

fn create(name: &str) -> CreateVmRequest {
    CreateVmRequest {
        name: name.into(),
        cpus: 0,
        memory_mib: 0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_auth_and_isolation() {
    let mut server = Server::start(
        &["alice", "bob"],
        "[vm]\nmax_cpus = 2\nmax_memory_mib = 1024\n",
    );
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;

    // Health needs no token; everything else does.
    let mut anon = noid::client::connect(&server.url, None).await.unwrap();
    assert!(
        anon.health(HealthRequest {})
            .await
            .unwrap()
            .into_inner()
            .serving
    );
    let e = anon.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut forged = noid::client::connect(&server.url, Some("noid_forged"))
        .await
        .unwrap();
    let e = forged
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unauthenticated, "invalid token")
    );
    assert_eq!(
        alice
            .who_am_i(WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner()
            .user,
        "alice"
    );

    // Generic gRPC tools work without the .proto files: the standard health service and
    // server reflection, both without a token.
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "noid.v1.Noid"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    // Reflection, in both versions, lists the public services and never the agent's.
    let public = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "noid.v1.Noid",
    ];
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut refl = ServerReflectionClient::new(channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = refl
            .server_reflection_info(futures::stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let msg = resp.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
            panic!("unexpected reflection answer");
        };
        let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, public, "v1");
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut refl = ServerReflectionClient::new(channel);
        let mut resp = refl
            .server_reflection_info(futures::stream::iter([
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::FileContainingSymbol(
                        "noid.agent.v1.Agent".into(),
                    )),
                },
            ]))
            .await
            .unwrap()
            .into_inner();
        let msg = resp.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
            panic!("unexpected reflection answer");
        };
        let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, public, "v1alpha");
        match resp.message().await {
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            Ok(msg) => assert!(
                matches!(
                    msg.as_ref().and_then(|m| m.message_response.as_ref()),
                    Some(MessageResponse::ErrorResponse(_))
                ),
                "the agent's service is described: {msg:?}"
            ),
        }
    }

    // Names: 1-63 of [a-z0-9-], not starting with '-'.
    for (name, rule) in [
        ("", "must not be empty"),
        ("Web", "lowercase letters, digits and '-'"),
        ("a_b", "lowercase letters, digits and '-'"),
        ("../etc", "lowercase letters, digits and '-'"),
        ("-web", "must not start with '-'"),
        (&"x".repeat(64), "longer than 63"),
    ] {
        let e = alice.create_vm(create(name)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}");
        assert!(e.message().contains(rule), "{name:?}: {}", e.message());
    }
    let out = server.run("alice", &["create", "Web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "noid: VM name \"Web\" may only contain lowercase letters, digits and '-'"
    );

    // Resources outside the configured bounds.
    let e = alice
        .create_vm(CreateVmRequest {
            name: "big".into(),
            cpus: 3,
            memory_mib: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "cpus must be between 1 and 2, got 3");
    for mem in [64, 2048] {
        let e = alice
            .create_vm(CreateVmRequest {
                name: "big".into(),
                cpus: 1,
                memory_mib: mem,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message()
                .contains("memory must be between 128 and 1024 MiB"),
            "{}",
            e.message()
        );
    }

    // Unknown VMs.
    let e = alice
        .get_vm(GetVmRequest {
            name: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "VM \"ghost\" not found")
    );
    let e = alice
        .delete_vm(DeleteVmRequest {
            name: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = exec(&mut alice, "ghost", &["true"], None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(alice
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms
        .is_empty());

    // One real VM: duplicates and other users.
    alice.create_vm(create("web")).await.unwrap();
    let e = alice.create_vm(create("web")).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::AlreadyExists, "VM \"web\" already exists")
    );
    // Each error says what it is about in its ErrorInfo, for programs to match on.
    let reason = |e: &tonic::Status| noid::client::error_reason(e).unwrap_or_default();
    assert_eq!(reason(&e), "VM_ALREADY_EXISTS");
    let e = alice
        .get_vm(GetVmRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "VM_NOT_FOUND");
    let e = alice
        .get_checkpoint(noid::v1::GetCheckpointRequest {
            id: "0123456789ab".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e)),
        (Code::NotFound, "CHECKPOINT_NOT_FOUND".into())
    );
    let e = alice
        .get_image(noid::v1::GetImageRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "IMAGE_NOT_FOUND");
    let e = alice.create_vm(create("Bad")).await.unwrap_err();
    assert_eq!(reason(&e), "INVALID_ARGUMENT");
    let out = server.run("alice", &["-v", "info", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason: VM_NOT_FOUND"));
    // With --json the error is a JSON document on stdout, where a script reads the rest.
    let out = server.run("alice", &["--json", "info", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "NOT_FOUND", "{doc}");
    assert_eq!(doc["error"]["reason"], "VM_NOT_FOUND", "{doc}");
    assert!(bob
        .list_vms(ListVmsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vms
        .is_empty());
    let e = bob
        .get_vm(GetVmRequest { name: "web".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = exec(&mut bob, "web", &["true"], None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // An Exec stream that makes no sense is refused, not half-obeyed: stdin for a command
    // started without `start.stdin` ends the call with an error (and the command).
    {
        use noid::v1::{exec_request::Msg, ExecRequest, ExecStart};
        let start = ExecStart {
            vm: "web".into(),
            argv: vec!["sleep".into(), "30".into()],
            ..Default::default()
        };
        let messages = futures::stream::iter([
            ExecRequest {
                msg: Some(Msg::Start(start)),
            },
            ExecRequest {
                msg: Some(Msg::Stdin(b"ignored?".to_vec())),
            },
        ]);
        let mut replies = alice.exec(messages).await.unwrap().into_inner();
        let e = loop {
            match replies.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("start.stdin"), "{}", e.message());
    }
    let e = bob
        .delete_vm(DeleteVmRequest { name: "web".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let out = server.run("bob", &["exec", "web", "--", "true"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "noid: VM \"web\" not found"
    );
    // ... and alice's VM is untouched by all that.
    let r = exec(&mut alice, "web", &["echo", "still here"], None, None)
        .await
        .unwrap();
    assert_eq!(r.out(), "still here\n");

    // Exec input errors.
    let e = exec(&mut alice, "web", &[], None, None).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Files are as private as the VM: bob cannot read alice's.
    let e = bob
        .copy_out(CopyOutRequest {
            vm: "web".into(),
            path: "/etc/hostname".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A token rotated while the server runs stops working at once.
    let data = server.data_dir();
    let new_token = common::server_command([
        "rotate-token".as_ref(),
        "bob".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let e = bob.list_vms(ListVmsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut bob2 = noid::client::connect(&server.url, Some(new_token.trim()))
        .await
        .unwrap();
    assert_eq!(
        bob2.who_am_i(WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner()
            .user,
        "bob"
    );

    alice
        .delete_vm(DeleteVmRequest { name: "web".into() })
        .await
        .unwrap();

    // The audit trail: every refusal and every state-changing call, with who, what, the
    // result and from where; timestamps on text lines.
    let log = server.log();
    assert!(
        log.contains("audit: authentication failed from 127.0.0.1:")
            && log.contains("for /noid.v1.Noid/ListVms: invalid token"),
        "{log}"
    );
    assert!(
        log.contains("audit: alice CreateVm: INVALID_ARGUMENT"),
        "{log}"
    );
    assert!(log.contains("audit: alice DeleteVm: OK"), "{log}");
    assert!(
        !log.contains("audit: alice GetVm"),
        "reads are not audited: {log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("audit: alice DeleteVm"))
        .unwrap();
    assert!(
        line.starts_with("20") && line.contains("Z [INFO] audit:"),
        "a timestamp first: {line}"
    );

    // JSON logs carry the same as fields.
    server.set_env("NOID_LOG_FORMAT", Some("json"));
    server.restart();
    let mut alice = server.client("alice").await;
    let e = alice
        .delete_vm(DeleteVmRequest {
            name: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let log = server.log();
    let entry = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["operation"] == "DeleteVm" && v["result"] == "NOT_FOUND")
        .unwrap_or_else(|| panic!("no JSON audit entry: {log}"));
    assert_eq!(entry["owner"], "alice", "{entry}");
    assert_eq!(entry["target"], "noid::audit", "{entry}");
    assert!(entry["duration_ms"].is_u64(), "{entry}");
    assert!(entry["timestamp"].is_string(), "{entry}");
    assert!(
        entry["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{entry}"
    );
}

/// A create that fails half-way (here: the guest cannot come up within the boot timeout)
/// leaves no process, file or record; so does one whose VMM cannot start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_leaves_nothing_behind() {
    // A VMM that exits at once: QEMU itself, or what runs Firecracker (its jailer).
    let broken_vmm = if std::env::var("NOID_VMM").as_deref() == Ok("firecracker") {
        "[firecracker]\njailer = \"/bin/false\"\n"
    } else {
        "[qemu]\nbinary = \"/bin/false\"\n"
    };
    // A guest whose agent never answers, however fast the host: QEMU as usual, but the
    // agent's channel on another socket than the one the server dials. (Firecracker runs
    // check the broken VMM only.)
    let hidden = common::bin("noid-server")
        .parent()
        .unwrap()
        .join("qemu-agent-hidden");
    std::fs::write(
        &hidden,
        "#!/bin/sh\nfor a; do shift; case \"$a\" in *path=agent.sock*) \
         a=$(printf %s \"$a\" | sed s/agent.sock/agent-hidden.sock/);; esac; set -- \"$@\" \"$a\"; done\n\
         exec qemu-system-x86_64 \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&hidden, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let silent_vmm = format!(
        "[vm]\nboot_timeout_secs = 2\nboot_snapshots = false\n[qemu]\nbinary = {:?}\n",
        hidden.display().to_string()
    );
    let mut cases = vec![(broken_vmm.to_string(), Code::Internal)];
    if std::env::var("NOID_VMM").as_deref() != Ok("firecracker") {
        cases.push((silent_vmm, Code::DeadlineExceeded));
    }
    for (config, code) in cases {
        let config = config.as_str();
        let server = Server::start(&["alice"], config);
        let mut alice = server.client("alice").await;
        let e = alice.create_vm(create("doomed")).await.unwrap_err();
        assert_eq!(e.code(), code, "{config}: {}", e.message());
        let data = server.data_dir();
        let leftovers: Vec<_> = std::fs::read_dir(data.join("vms")).unwrap().collect();
        assert!(leftovers.is_empty(), "{config}: files left: {leftovers:?}");
        assert!(alice
            .list_vms(ListVmsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .vms
            .is_empty());
        let procs = common::processes_mentioning(&data.display().to_string());
        assert!(procs.is_empty(), "{config}: processes left: {procs:?}");
        // The name is free again.
        let e = alice
            .get_vm(GetVmRequest {
                name: "doomed".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
}
