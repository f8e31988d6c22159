//! Images end to end, through the CLI: an image archive that the test makes itself (two
//! layers, the second with whiteouts) imports, and its VMs see the layers' files and run with
//! the image's Env, WorkingDir and User; a Debian image with python3 is built and runs
//! python; bad archives and recipes are refused with clear errors and leave nothing; an image
//! in use cannot be removed.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use common::Server;
use sha2::{Digest, Sha256};

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A tar of `entries`: (path, kind, content or link target, mode).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = std::str::from_utf8(data).unwrap();
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            _ => {
                h.set_size(data.len() as u64);
                // Raw names, so that a hostile `../` can be written too.
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout archive of `layers` (tar bytes, gzip them or not) with this run config.
fn oci_archive(layers: &[(Vec<u8>, bool)], config: serde_json::Value) -> Vec<u8> {
    let blobs: Vec<(Vec<u8>, &str)> = layers
        .iter()
        .map(|(tar, gz)| {
            if *gz {
                (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
            }
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|(t, _)| digest(t)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let layer_descs: Vec<_> = blobs
        .iter()
        .map(|(b, media)| {
            serde_json::json!({"mediaType": media, "digest": digest(b), "size": b.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(&manifest), "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    use tar::EntryType::Regular;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index),
    ];
    for b in [config, manifest]
        .into_iter()
        .chain(blobs.into_iter().map(|(b, _)| b))
    {
        files.push((format!("blobs/sha256/{}", &digest(&b)[7..]), b));
    }
    let entries: Vec<_> = files
        .iter()
        .map(|(p, b)| (p.as_str(), Regular, b.as_slice(), 0o644))
        .collect();
    tar_of(&entries)
}

/// The image's first layer: busybox as /bin, users, files to delete and keep.
fn base_layer() -> Vec<u8> {
    use tar::EntryType::*;
    let applets: Vec<String> = ["sh", "ls", "cat", "echo", "pwd", "id", "ip", "stat", "true"]
        .iter()
        .map(|a| format!("bin/{a}"))
        .collect();
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut entries: Vec<(&str, tar::EntryType, &[u8], u32)> = vec![
        ("bin/", Directory, b"", 0o755),
        ("bin/busybox", Regular, &busybox, 0o755),
        ("etc/", Directory, b"", 0o755),
        (
            "etc/passwd",
            Regular,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            0o644,
        ),
        ("etc/group", Regular, b"root:x:0:\napp:x:1000:\n", 0o644),
        ("etc/doomed", Regular, b"delete me\n", 0o644),
        ("etc/kept", Regular, b"kept\n", 0o600),
        ("etc/kept-link", Link, b"etc/kept", 0o600),
        ("srv/", Directory, b"", 0o755),
        ("srv/app/", Directory, b"", 0o755),
        ("srv/app/old.txt", Regular, b"old\n", 0o644),
        ("cache/", Directory, b"", 0o755),
        ("cache/stale", Regular, b"stale\n", 0o644),
        ("home/", Directory, b"", 0o755),
        ("home/app/", Directory, b"", 0o755),
    ];
    for applet in &applets {
        entries.push((applet, Symlink, b"busybox", 0o777));
    }
    tar_of(&entries)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A failed command's one-line error.
fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

/// What the store holds on disk: image directories, and nothing half-made.
fn store_entries(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.data_dir().join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn archives_import_with_their_layers_and_settings() {
    use tar::EntryType::*;
    let server = Server::start(&["alice", "bob"], "");
    let work = tempfile::tempdir().unwrap();
    let top = tar_of(&[
        ("etc/.wh.doomed", Regular, b"", 0o644),
        ("cache/.wh..wh..opq", Regular, b"", 0o644),
        ("cache/fresh", Regular, b"fresh\n", 0o644),
        ("srv/app/new.txt", Regular, b"new\n", 0o644),
    ]);
    let config = serde_json::json!({
        "Env": ["PATH=/bin", "GREETING=hello from the image"],
        "WorkingDir": "/srv/app",
        "User": "app",
        "Cmd": ["sh"],
    });
    let archive = oci_archive(&[(base_layer(), true), (top, false)], config.clone());
    let path = write(work.path(), "app.tar", &archive);

    let out = ok(&server.run("alice", &["image", "import", "app", &path]));
    assert!(out.contains("Imported image app"), "{out}");
    let list = ok(&server.run("alice", &["images"]));
    assert!(list.lines().any(|l| l.starts_with("app ")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("default ")), "{list}");
    let inspect: serde_json::Value = serde_json::from_str(&ok(
        &server.run("alice", &["--json", "image", "inspect", "app"])
    ))
    .unwrap();
    assert_eq!(inspect["config"]["working_dir"], "/srv/app");
    assert_eq!(inspect["owner"], "alice");

    // A VM of the image: the second layer's whiteouts took effect, its files are there, and
    // commands run with the image's settings unless told otherwise.
    ok(&server.run("alice", &["create", "box", "--image", "app"]));
    let seen = ok(&server.run(
        "alice",
        &[
            "exec", "box", "--", "sh", "-c",
            "echo $GREETING; pwd; id -u; ls /etc; ls /cache; cat /srv/app/new.txt /srv/app/old.txt; \
             stat -c '%a %h' /etc/kept",
        ],
    ));
    assert_eq!(
        seen,
        "hello from the image\n/srv/app\n1000\ngroup\nkept\nkept-link\npasswd\nfresh\nnew\nold\n\
         600 2\n"
    );
    let root = ok(&server.run(
        "alice",
        &[
            "exec",
            "box",
            "-u",
            "root",
            "-w",
            "/",
            "-e",
            "GREETING=mine",
            "--",
            "sh",
            "-c",
            "id -u; pwd; echo $GREETING",
        ],
    ));
    assert_eq!(root, "0\n/\nmine\n");
    let info = ok(&server.run("alice", &["info", "box"]));
    assert!(
        info.contains("image:") && info.contains("app (base "),
        "{info}"
    );

    // The name is taken; bad archives are refused, each with one line, and leave nothing.
    let e = refused(&server.run("alice", &["image", "import", "app", &path]));
    assert!(e.contains("already exists"), "{e}");
    let junk = write(work.path(), "junk.tar", b"this is not a tar archive at all");
    let e = refused(&server.run("alice", &["image", "import", "junk", &junk]));
    assert!(e.contains("not an image archive"), "{e}");
    // One byte of the uncompressed second layer flipped: its blob no longer has its digest.
    let mut corrupt = archive.clone();
    let at = corrupt
        .windows(6)
        .position(|w| w == b"fresh\n")
        .expect("the second layer's text is in the archive");
    corrupt[at] ^= 0x20;
    let corrupt = write(work.path(), "corrupt.tar", &corrupt);
    let e = refused(&server.run("alice", &["image", "import", "corrupt", &corrupt]));
    assert!(e.contains("corrupt"), "{e}");
    let escape = oci_archive(
        &[(tar_of(&[("../../escaped", Regular, b"x", 0o644)]), false)],
        serde_json::json!({}),
    );
    let escape = write(work.path(), "escape.tar", &escape);
    let e = refused(&server.run("alice", &["image", "import", "escape", &escape]));
    assert!(e.contains("leaves the image's root"), "{e}");
    let e = refused(&server.run("alice", &["image", "import", "Bad_Name", &path]));
    assert!(e.contains("image name"), "{e}");
    assert_eq!(store_entries(&server), ["app"]);

    // Removing: refused while a VM uses it, and to anyone but its maker; then it goes.
    let e = refused(&server.run("alice", &["image", "rm", "app"]));
    assert!(e.contains("in use by VMs box"), "{e}");
    let e = refused(&server.run("bob", &["image", "rm", "app"]));
    assert!(e.contains("belongs to alice"), "{e}");
    let e = refused(&server.run("alice", &["image", "rm", "default"]));
    assert!(e.contains("cannot be removed"), "{e}");
    ok(&server.run("alice", &["destroy", "box"]));
    ok(&server.run("alice", &["image", "rm", "app"]));
    assert!(store_entries(&server).is_empty());
    let e = refused(&server.run("alice", &["create", "gone", "--image", "app"]));
    assert!(e.contains("image \"app\" not found"), "{e}");
}

#[test]
fn a_debian_image_runs_python() {
    let server = Server::start(&["alice"], "");
    let e = refused(&server.run(
        "alice",
        &["image", "build", "bad", "--debian", "no-such-suite"],
    ));
    assert!(e.contains("no-such-suite"), "{e}");
    let e = refused(&server.run(
        "alice",
        &[
            "image",
            "build",
            "bad",
            "--debian",
            "bookworm",
            "--packages",
            "no-such-package-x",
        ],
    ));
    assert!(e.contains("no-such-package-x"), "{e}");
    assert!(store_entries(&server).is_empty());

    let out = ok(&server.run(
        "alice",
        &[
            "image",
            "build",
            "py",
            "--debian",
            "bookworm",
            "--packages",
            "python3",
        ],
    ));
    assert!(out.contains("Built image py"), "{out}");
    ok(&server.run("alice", &["create", "snake", "--image", "py"]));
    let answer = ok(&server.run(
        "alice",
        &["exec", "snake", "--", "python3", "-c", "print(6*7)"],
    ));
    assert_eq!(answer, "42\n");
    let release = ok(&server.run(
        "alice",
        &["exec", "snake", "--", "cat", "/etc/debian_version"],
    ));
    assert!(release.starts_with("12."), "{release}");
}
