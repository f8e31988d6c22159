//! The Python SDK (`clients/python`): its generated stubs are those of today's `proto/`, and,
//! installed with pip into a fresh virtualenv, it drives a real server and real VMs through a
//! whole lifecycle, sync and asyncio (`tests/python/sdk_test.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "py" || x == "pyi"))
        .filter(|p| p.file_name().unwrap() != "__init__.py")
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    all.sort();
    all
}

#[test]
fn python_sdk_runs_a_whole_lifecycle() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    // The committed stubs are what grpcio-tools makes of proto/ now.
    let tools = common::virtualenv("py-venv", "requirements.txt");
    let gen = tempfile::tempdir().unwrap();
    common::python_stubs(&tools, gen.path());
    let committed = root.join("clients/python/src/noid/v1");
    let fresh = files(&gen.path().join("noid/v1"));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&files(&committed)), names(&fresh));
    for (name, text) in fresh {
        assert!(
            std::fs::read(committed.join(&name)).unwrap() == text,
            "clients/python/src/noid/v1/{name} is stale: regenerate the stubs (README, Python SDK)"
        );
    }

    // pip install from the repo into a virtualenv of its own. From a copy: setuptools leaves
    // build/ and *.egg-info behind in the tree it installs from, and a build/ left by an
    // earlier install by hand would be packed instead of the sources.
    let source = tempfile::tempdir().unwrap();
    common::run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(root.join("clients/python"))
            .arg(source.path()),
    );
    let _ = std::fs::remove_dir_all(source.path().join("python/build"));
    let venv = tempfile::tempdir().unwrap();
    common::run_ok(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv.path()),
    );
    let pip = venv.path().join("bin/pip");
    common::run_ok(
        Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check", "-c"])
            .arg(root.join("tests/python/sdk-constraints.txt"))
            .arg(source.path().join("python")),
    );

    let server = common::Server::start(&["sdk"], "");
    let out = common::run_ok(
        Command::new(venv.path().join("bin/python"))
            .arg(root.join("tests/python/sdk_test.py"))
            .arg(&server.url)
            .arg(&server.tokens["sdk"])
            // Not from the source tree: the installed package.
            .current_dir(venv.path()),
    );
    assert!(out.contains("python sdk: ok"), "{out}");
}
