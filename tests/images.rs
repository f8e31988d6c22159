//! Images end to end, through the CLI: an image archive that the test makes itself (two
//! layers, the second with whiteouts) imports, and its VMs see the layers' files, run with
//! the image's Env, WorkingDir and User, and get their network though the image has no `ip`; a Debian image with python3 is built and runs
//! python; bad archives and recipes are refused with clear errors and leave nothing; an image
//! in use cannot be removed.

mod common;

use std::path::Path;
use std::process::Output;

use common::oci::{base_layer, oci_archive, tar_of};
use common::Server;

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
    // In a network namespace of its own, with guest networking on: the image has no `ip`,
    // and its VMs get their network all the same (from the agent's own busybox).
    let ns = common::NetNs::new("images");
    ns.enter();
    let server = Server::start(
        &["alice", "bob"],
        "[network]\nenabled = true\nnat = false\n",
    );
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

    // A VM of the image: the second layer's whiteouts took effect, its files are there (and
    // the agent's resolv.conf), and commands run with the image's settings unless told
    // otherwise.
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
        "hello from the image\n/srv/app\n1000\ngroup\nkept\nkept-link\npasswd\nresolv.conf\nfresh\nnew\nold\n\
         600 2\n"
    );
    let route = ok(&server.run("alice", &["exec", "box", "--", "cat", "/proc/net/route"]));
    assert!(
        route
            .lines()
            .any(|l| l.starts_with("eth0") && l.split_whitespace().nth(1) == Some("00000000")),
        "no default route in a VM of an image without ip: {route}"
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
    let image_line = format!("app {} (base ", inspect["id"].as_str().unwrap());
    assert!(info.contains(&image_line), "{info}");

    // A bigger disk than the image's, file system grown; a smaller one is refused.
    ok(&server.run(
        "alice",
        &["create", "roomy", "--image", "app", "--disk", "1G"],
    ));
    let blocks = ok(&server.run(
        "alice",
        &["exec", "roomy", "--", "stat", "-f", "-c", "%b %S", "/"],
    ));
    let v: Vec<u64> = blocks
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        v[0] * v[1] > 900 << 20,
        "the file system was not grown: {blocks}"
    );
    ok(&server.run("alice", &["destroy", "roomy"]));
    let e = refused(&server.run(
        "alice",
        &["create", "tiny", "--image", "app", "--disk", "1M"],
    ));
    assert!(e.contains("smaller than image"), "{e}");

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

    // The second VM starts from the boot snapshot that the first one's boot left. It was
    // taken once the guest had settled: the console's login shell had run Debian's profile
    // (which starts `id` and `mesg`) and printed its prompt, so none of that runs again in
    // the new VM (were it replayed, the prompt would follow the snapshot's line).
    ok(&server.run("alice", &["create", "snake2", "--image", "py"]));
    let log = ok(&server.run("alice", &["logs", "snake2"]));
    let marker = "[noid: started from a boot snapshot of this image]";
    let (boot, after) = log.split_once(marker).expect("started from the snapshot");
    assert!(boot.trim_end().ends_with('#'), "no prompt before: {boot}");
    assert_eq!(after.trim(), "", "the guest replayed start-up work: {log}");
    ok(&server.run("alice", &["destroy", "snake2"]));

    // A Dockerfile built on it: each step's effect shows in VMs of the new image.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("app.py"), "print('app says', 6 * 7)\n").unwrap();
    std::fs::create_dir(ctx.path().join("conf")).unwrap();
    std::fs::write(ctx.path().join("conf/a.conf"), "setting=1\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM py\nARG GREETING=hello\nENV MODE=test APP_HOME=/srv/app\nWORKDIR $APP_HOME\n\
         COPY app.py ./\nCOPY conf /etc/app/\n\
         RUN python3 app.py > built.txt && echo \"$GREETING $MODE\" >> built.txt\n\
         RUN useradd -m builder\nUSER builder\nCMD [\"python3\", \"app.py\"]\n",
    )
    .unwrap();
    let dockerfile = ctx.path().join("Dockerfile");
    let out = ok(&server.run(
        "alice",
        &[
            "image",
            "build",
            "web",
            "-f",
            dockerfile.to_str().unwrap(),
            "--build-arg",
            "GREETING=hi",
        ],
    ));
    assert!(out.contains("Built image web"), "{out}");
    ok(&server.run("alice", &["create", "site", "--image", "web"]));
    let seen = ok(&server.run(
        "alice",
        &[
            "exec",
            "site",
            "--",
            "sh",
            "-c",
            "pwd; cat built.txt /etc/app/a.conf; echo $MODE; id -un",
        ],
    ));
    assert_eq!(
        seen,
        "/srv/app\napp says 42\nhi test\nsetting=1\ntest\nbuilder\n"
    );
    let inspect: serde_json::Value = serde_json::from_str(&ok(
        &server.run("alice", &["--json", "image", "inspect", "web"])
    ))
    .unwrap();
    assert_eq!(
        inspect["config"]["cmd"],
        serde_json::json!(["python3", "app.py"])
    );

    // A failing RUN stops the build with its output and exit code; nothing is left.
    std::fs::write(&dockerfile, "FROM py\nRUN echo about to fail && exit 3\n").unwrap();
    let out = server.run(
        "alice",
        &[
            "image",
            "build",
            "broken",
            "-f",
            dockerfile.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("exit code 3") && err.contains("about to fail"),
        "{err}"
    );
    std::fs::write(&dockerfile, "FROM py\nHEALTHCHECK CMD true\n").unwrap();
    let e = refused(&server.run(
        "alice",
        &[
            "image",
            "build",
            "broken",
            "-f",
            dockerfile.to_str().unwrap(),
        ],
    ));
    assert!(e.contains("line 2") && e.contains("HEALTHCHECK"), "{e}");
    assert_eq!(store_entries(&server), ["py", "web"]);
    let vms = ok(&server.run("alice", &["list"]));
    assert!(!vms.contains("build-"), "a build VM was left: {vms}");
}
