//! Copying files into and out of a VM, through the CLI and the gRPC API: contents and mode
//! arrive intact, errors name the problem and change nothing, and an interrupted upload
//! never replaces the destination.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{sh, Server};
use futures::StreamExt;
use noid::v1::{copy_in_request, CopyInHeader, CopyInRequest, CopyOutRequest, CreateVmRequest};
use rand::RngCore;
use tonic::Code;

fn header(path: &str) -> CopyInRequest {
    CopyInRequest {
        msg: Some(copy_in_request::Msg::Header(CopyInHeader {
            vm: "box".into(),
            path: path.into(),
            mode: 0,
            ..Default::default()
        })),
    }
}

fn data(d: &[u8]) -> CopyInRequest {
    CopyInRequest {
        msg: Some(copy_in_request::Msg::Data(d.to_vec())),
    }
}

fn end() -> CopyInRequest {
    CopyInRequest {
        msg: Some(copy_in_request::Msg::End(true)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_in_and_out_intact_and_failures_change_nothing() {
    let server = Server::start(&["alice"], "");
    let mut c = server.client("alice").await;
    c.create_vm(CreateVmRequest {
        name: "box".into(),
        cpus: 0,
        memory_mib: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();

    // In through the CLI: 1 MiB of random bytes, with the local file's mode.
    let mut bytes = vec![0u8; 1 << 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    let local = work.path().join("data.bin");
    std::fs::write(&local, &bytes).unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = server.run("alice", &["cp", local.to_str().unwrap(), "box:/root/"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Copied 1.0 MiB to box:/root/data.bin"));
    let inside = sh(
        &mut c,
        "box",
        "stat -c %a /root/data.bin; wc -c < /root/data.bin",
    )
    .await;
    assert_eq!(inside, "750\n1048576\n");

    // Out through the CLI, into a directory; the bytes are the same.
    let back = work.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let out = server.run(
        "alice",
        &["cp", "box:/root/data.bin", back.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(back.join("data.bin")).unwrap() == bytes);

    // stdin and stdout.
    let mut child = server
        .cli("alice")
        .args(["cp", "-", "box:/tmp/note"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a note\n").unwrap();
    assert!(child.wait().unwrap().success());
    let out = server.run("alice", &["cp", "box:/tmp/note", "-"]);
    assert_eq!(out.stdout, b"a note\n");

    // A missing file: one clear line, NOT_FOUND, and no local file.
    let out = server.run("alice", &["cp", "box:/nope", back.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("box:/nope") && err.contains("No such file"),
        "{err}"
    );
    assert!(!back.join("nope").exists());
    let e = c
        .copy_out(CopyOutRequest {
            vm: "box".into(),
            path: "/nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A directory tree with -r: in (into an existing directory, under its own name), out
    // again (as a new directory), with modes, a symlink and an empty directory kept.
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/empty")).unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho from-tree\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(tree.join("sub/data.bin"), &bytes[..300_000]).unwrap();
    std::os::unix::fs::symlink("../run.sh", tree.join("sub/link")).unwrap();
    sh(&mut c, "box", "mkdir -p /srv").await;
    let out = server.run("alice", &["cp", "-r", tree.to_str().unwrap(), "box:/srv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("box:/srv/tree"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        sh(
            &mut c,
            "box",
            "cd /srv/tree && find . | sort && sub/link && readlink sub/link && \
             stat -c %a run.sh && sha256sum < sub/data.bin"
        )
        .await,
        format!(
            ".\n./run.sh\n./sub\n./sub/data.bin\n./sub/empty\n./sub/link\nfrom-tree\n../run.sh\n755\n{:x}  -\n",
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes[..300_000]))
        )
    );
    // Never over what exists; a copy that fails half-way (its disk fills: a 64 KiB file
    // system for 300 kB) leaves nothing, not even a part of the tree.
    let out = server.run("alice", &["cp", "-r", tree.to_str().unwrap(), "box:/srv"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/srv/tree: already exists in the VM"), "{err}");
    sh(
        &mut c,
        "box",
        "mkdir -p /small && mount -t tmpfs -o size=64k tmpfs /small",
    )
    .await;
    let out = server.run("alice", &["cp", "-r", tree.to_str().unwrap(), "box:/small"]);
    assert!(!out.status.success(), "a full disk went unnoticed");
    assert_eq!(sh(&mut c, "box", "ls -A /small").await, "");
    let tree_back = work.path().join("tree-back");
    let out = server.run(
        "alice",
        &["cp", "-r", "box:/srv/tree", tree_back.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(tree_back.join("sub/data.bin")).unwrap(),
        &bytes[..300_000]
    );
    assert_eq!(
        std::fs::read_link(tree_back.join("sub/link")).unwrap(),
        std::path::Path::new("../run.sh")
    );
    assert!(tree_back.join("sub/empty").is_dir());
    let mode = std::fs::metadata(tree_back.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // A missing guest directory: one clear line, and nothing left behind locally.
    let before: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    let out = server.run(
        "alice",
        &[
            "cp",
            "-r",
            "box:/srv/nope",
            work.path().join("x").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/srv/nope: no such directory in the VM"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        before.len()
    );

    // Bad paths and a missing directory are refused; nothing is created.
    for (path, code) in [
        ("root/x", Code::InvalidArgument),
        ("/missing-dir/x", Code::NotFound),
    ] {
        let e = c
            .copy_in(futures::stream::iter([header(path), data(b"x"), end()]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{path}: {}", e.message());
    }
    let e = c
        .copy_in(futures::stream::iter([
            header("/root/x"),
            header("/root/y"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(sh(&mut c, "box", "ls /root").await, "data.bin\n");

    // An upload that stops without its end message, or is cut off half-way (the client goes
    // away), leaves the old file as it was and no temporary file.
    sh(&mut c, "box", "echo old > /root/keep").await;
    let e = c
        .copy_in(futures::stream::iter([header("/root/keep"), data(b"new")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(
        e.message().contains("nothing was written"),
        "{}",
        e.message()
    );
    let mut uploader = c.clone();
    let upload = tokio::spawn(async move {
        let first = futures::stream::iter([header("/root/keep"), data(&[b'n'; 100_000])]);
        uploader
            .copy_in(first.chain(futures::stream::pending()))
            .await
    });
    // The bytes reached the guest (its temporary file has them) before the client goes.
    let staged = "ls -a /root | grep -c '^\\.keep\\.noid-' || true";
    let deadline = Instant::now() + Duration::from_secs(20);
    while sh(
        &mut c,
        "box",
        "wc -c /root/.keep.noid-* 2>/dev/null | grep -c 100000 || true",
    )
    .await
    .trim()
        != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the upload's bytes never reached the guest"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    upload.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sh(&mut c, "box", staged).await.trim() != "0" {
        assert!(Instant::now() < deadline, "temporary file left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sh(&mut c, "box", "cat /root/keep").await, "old\n");

    // The same file through the API, in chunks.
    let chunks: Vec<_> = std::iter::once(header("/root/keep"))
        .chain(bytes.chunks(100_000).map(data))
        .chain([end()])
        .collect();
    let n = c
        .copy_in(futures::stream::iter(chunks))
        .await
        .unwrap()
        .into_inner()
        .bytes_written;
    assert_eq!(n, bytes.len() as u64);
    let mut got = Vec::new();
    let mut s = c
        .copy_out(CopyOutRequest {
            vm: "box".into(),
            path: "/root/keep".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = s.next().await {
        got.extend(chunk.unwrap().data);
    }
    assert!(got == bytes);

    // Into an existing directory: the file takes the source's name, as cp does; nothing else
    // is left there.
    let note = work.path().join("note.txt");
    std::fs::write(&note, "to a directory\n").unwrap();
    let out = server.run("alice", &["cp", note.to_str().unwrap(), "box:/tmp"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("box:/tmp/note.txt"));
    assert_eq!(
        sh(&mut c, "box", "cat /tmp/note.txt").await,
        "to a directory\n"
    );
    assert_eq!(
        sh(&mut c, "box", "ls -a /tmp | grep -c noid || true").await,
        "0\n"
    );
    // Without a name to use (stdin), a directory is refused.
    let e = c
        .copy_in(futures::stream::iter([header("/tmp"), data(b"x"), end()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("Is a directory"), "{}", e.message());

    // Onto a device: written to, not replaced.
    let out = server.run("alice", &["cp", note.to_str().unwrap(), "box:/dev/null"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sh(&mut c, "box", "stat -c %F /dev/null").await,
        "character special file\n"
    );

    // A copy out of an endless file that its reader abandons stops reading in the guest: the
    // agent (PID 1) closes the file.
    let mut endless = c
        .copy_out(CopyOutRequest {
            vm: "box".into(),
            path: "/dev/zero".into(),
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        assert!(!endless.next().await.unwrap().unwrap().data.is_empty());
    }
    let open_zero = "ls -l /proc/1/fd | grep -c /dev/zero || true";
    assert_eq!(sh(&mut c, "box", open_zero).await, "1\n");
    drop(endless);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sh(&mut c, "box", open_zero).await != "0\n" {
        assert!(Instant::now() < deadline, "the agent still reads /dev/zero");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Large copies take the transfer disk (its I/O counters move by the file's size), use
    // every slot of a window many times over, and come back byte for byte; more copies at
    // once than the disk has windows take the agent channel, and arrive as well.
    let disk_stat =
        "for d in /sys/block/*; do [ \"$(cat $d/serial 2>/dev/null)\" = noid-transfer ] \
                     && awk '{print $3, $7}' $d/stat; done";
    let sectors = |s: String| -> (u64, u64) {
        let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 2, "no transfer disk in the guest: {s:?}");
        (v[0], v[1])
    };
    let mut big = vec![0u8; 20 << 20];
    rand::thread_rng().fill_bytes(&mut big);
    let big_local = work.path().join("big.bin");
    std::fs::write(&big_local, &big).unwrap();
    let (read0, written0) = sectors(sh(&mut c, "box", disk_stat).await);
    let out = server.run(
        "alice",
        &["cp", big_local.to_str().unwrap(), "box:/root/big"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (read1, _) = sectors(sh(&mut c, "box", disk_stat).await);
    assert!(
        read1 - read0 >= (big.len() / 512) as u64,
        "{read0} -> {read1} sectors read"
    );
    let big_back = work.path().join("big.back");
    let out = server.run(
        "alice",
        &["cp", "box:/root/big", big_back.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, written1) = sectors(sh(&mut c, "box", disk_stat).await);
    assert!(
        written1 - written0 >= (big.len() / 512) as u64,
        "{written0} -> {written1} sectors written"
    );
    assert!(
        std::fs::read(&big_back).unwrap() == big,
        "the copy out differs"
    );
    let mid_local = work.path().join("mid.bin");
    std::fs::write(&mid_local, &big[..6 << 20]).unwrap();
    let copies: Vec<_> = (0..6)
        .map(|i| {
            server
                .cli("alice")
                .args([
                    "cp",
                    big_local.to_str().unwrap(),
                    &format!("box:/root/c{i}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for copy in copies {
        let out = copy.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sums = sh(
        &mut c,
        "box",
        "sha256sum /root/c? | cut -d' ' -f1 | sort -u",
    )
    .await;
    assert_eq!(sums.lines().count(), 1, "copies differ: {sums}");
    sh(&mut c, "box", "rm /root/big /root/c?").await;
}
