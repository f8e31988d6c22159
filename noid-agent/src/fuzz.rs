//! Fuzz targets for what the agent does with the host's messages: whatever bytes arrive,
//! decoding them and turning them into a command, a file target or a network configuration
//! ends in a value or a clear status, never a panic that would take the guest's agent down.
//! Bolero targets: `cargo test` runs each for about a second; see the README for longer runs.

use prost::Message;

use noid::agent::v1::{
    exec_request, ExecRequest, PostRestoreRequest, ReadFileRequest, WriteFileRequest,
};

use crate::net::NetConfig;

fn handle(bytes: &[u8]) {
    if let Ok(ExecRequest {
        msg: Some(exec_request::Msg::Start(start)),
    }) = ExecRequest::decode(bytes)
    {
        if let Ok(mut cmd) = crate::exec::build_command(&start) {
            // Runs a harmless program with the message's arguments, environment and directory:
            // whatever they hold, spawning answers with an error or runs it.
            let mut harmless = std::process::Command::new("/bin/true");
            harmless.args(cmd.get_args()).env_clear();
            for (k, v) in cmd.get_envs() {
                if let Some(v) = v {
                    harmless.env(k, v);
                }
            }
            if let Some(dir) = cmd.get_current_dir() {
                harmless.current_dir(dir);
            }
            if let Ok(mut child) = harmless.stdin(std::process::Stdio::null()).spawn() {
                child.wait().unwrap();
            }
            let _ = cmd.stdin(std::process::Stdio::null());
        }
    }
    if let Ok(WriteFileRequest {
        msg: Some(noid::agent::v1::write_file_request::Msg::Header(h)),
    }) = WriteFileRequest::decode(bytes)
    {
        let _ = crate::files::target(&h);
    }
    let _ = ReadFileRequest::decode(bytes);
    if let Ok(req) = PostRestoreRequest::decode(bytes) {
        if let Some(n) = req.network {
            let cfg = NetConfig {
                mac: Some(n.mac),
                address: n.address,
                gateway: n.gateway,
                dns: n.dns,
            };
            assert!(cfg.commands().iter().all(|c| !c.is_empty()));
        }
    }
}

#[test]
fn fuzz_agent_messages() {
    bolero::check!().for_each(handle);
}

/// Start messages with fields of any content, so that most inputs reach the checks.
#[test]
fn fuzz_exec_start() {
    bolero::check!()
        .with_type::<(Vec<String>, Vec<(String, String)>, String, bool)>()
        .for_each(|(argv, env, cwd, tty)| {
            let start = noid::agent::v1::ExecStart {
                argv: argv.clone(),
                env: env.iter().cloned().collect(),
                cwd: cwd.clone(),
                tty: *tty,
                ..Default::default()
            };
            handle(
                &ExecRequest {
                    msg: Some(exec_request::Msg::Start(start)),
                }
                .encode_to_vec(),
            );
        });
}

#[test]
fn fuzz_kernel_command_line() {
    bolero::check!().with_type::<String>().for_each(|line| {
        if let Some(cfg) = NetConfig::from_cmdline(line) {
            assert!(!cfg.address.contains(char::is_whitespace));
            assert!(cfg.dns.iter().all(|d| !d.is_empty()));
        }
    });
}
