//! TLS end to end: a server with the CA and certificate that `noid-server tls-init` made. The
//! CLI works over https with the CA file and with a fingerprint pinned by `noid auth setup`
//! (a VM created and an exec streamed through it), and is refused with another CA, with the
//! system's CAs, with a wrong pin, and over plain HTTP; the gateway answers over https only.

mod common;

use std::process::{Command, Output};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(out: &Output, why: &str) {
    let (stdout, stderr) = text(out);
    assert!(!out.status.success(), "succeeded: {stdout}");
    assert!(stderr.contains(why), "expected {why:?} in: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

/// GETs `url` with Python's standard library, trusting `ca`; prints the status and body.
fn python_get(url: &str, token: &str, ca: &std::path::Path) -> Output {
    let script = "import ssl, sys, urllib.request\n\
                  url, token, ca = sys.argv[1:4]\n\
                  req = urllib.request.Request(url, headers={'authorization': 'Bearer ' + token})\n\
                  ctx = ssl.create_default_context(cafile=ca)\n\
                  with urllib.request.urlopen(req, context=ctx, timeout=10) as r:\n\
                  \x20   print(r.status, r.read().decode())\n";
    Command::new("python3")
        .args(["-c", script, url, token])
        .arg(ca)
        .output()
        .unwrap()
}

#[test]
fn tls_end_to_end() {
    let tls = common::tls_init();
    let other = common::tls_init();
    let server = common::Server::start(&["alice"], &tls.config);
    let https = server.url.replace("http://", "https://");
    let ca = tls.ca.to_str().unwrap();
    let cli = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = server.cli("alice");
        c.env("NOID_URL", &https);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    };

    let out = cli(&[("NOID_CA_FILE", ca)], &["whoami"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0.trim(), format!("alice at {https}"));

    // A VM over TLS: create, then a streamed exec with its output and exit code.
    let out = cli(&[("NOID_CA_FILE", ca)], &["create", "tls-vm"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(
        &[("NOID_CA_FILE", ca)],
        &["exec", "tls-vm", "--", "sh", "-c", "echo over-tls; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert_eq!(text(&out).0, "over-tls\n");

    // Whatever cannot be verified is refused, with what to do about it.
    let out = cli(&[("NOID_TLS_FINGERPRINT", &other.fingerprint)], &["whoami"]);
    assert_refused(&out, "not the pinned one");
    let out = cli(&[("NOID_CA_FILE", other.ca.to_str().unwrap())], &["whoami"]);
    assert_refused(&out, "cannot verify the server's certificate");
    // (the system's CAs: no config file yet)
    let out = cli(&[], &["whoami"]);
    assert_refused(&out, "cannot verify the server's certificate");
    // A pinned fingerprint, saved by `auth setup` and used from the config file alone.
    let out = server
        .cli("alice")
        .args(["auth", "setup", "--url", &https, "--token"])
        .arg(&server.tokens["alice"])
        .args(["--fingerprint", &tls.fingerprint])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let out = server
        .cli("alice")
        .env_remove("NOID_URL")
        .env_remove("NOID_TOKEN")
        .arg("whoami")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0.trim(), format!("alice at {https}"));

    // Plain HTTP to a TLS server fails, and a CA with an http:// URL is a mistake.
    let out = cli(&[("NOID_URL", &server.url)], &["whoami"]);
    assert_refused(&out, "https://");
    let out = cli(
        &[("NOID_URL", &server.url), ("NOID_CA_FILE", ca)],
        &["whoami"],
    );
    assert_refused(&out, "the URL is not https://");

    // The gateway speaks TLS too, and only TLS.
    let token = &server.tokens["alice"];
    let gateway = server.http_url.replace("http://", "https://");
    let out = python_get(&format!("{gateway}/whoami"), token, &tls.ca);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("200 "), "{stdout}");
    assert!(stdout.contains("\"alice\""), "{stdout}");
    let out = python_get(&format!("{}/whoami", server.http_url), token, &tls.ca);
    assert!(
        !out.status.success(),
        "plain HTTP to the TLS gateway: {:?}",
        text(&out)
    );
    let out = python_get(&format!("{gateway}/whoami"), token, &other.ca);
    assert!(!out.status.success(), "another CA: {:?}", text(&out));

    let out = cli(&[("NOID_CA_FILE", ca)], &["destroy", "tls-vm"]);
    assert!(out.status.success(), "{:?}", text(&out));
}
