//! `noid`: the command-line client. Every command talks gRPC through `noid::client`, prints a
//! table for people or one JSON document with `--json`, and reports errors on one line
//! (details with `-v`).

mod checkpoints;
mod complete;
mod config;
mod console;
mod copy;
mod copy_dir;
mod exec;
mod images;
mod mcp;
mod net;
mod output;
mod progress;
mod sessions;
mod suggest;
mod terminal;
mod vms;

use std::time::Duration;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use noid::v1::{StreamLogsRequest, WhoAmIRequest};
use serde_json::json;

#[derive(Parser)]
#[command(name = "noid", version, about = "Create, run and manage microVMs")]
struct Cli {
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Show error details.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Configure the server URL and token.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Show who the token belongs to.
    Whoami,
    /// Create a VM and wait until it is ready.
    Create(vms::CreateArgs),
    /// List your VMs.
    #[command(alias = "ls")]
    List,
    /// Show one VM (default: the active one).
    Info {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Destroy VMs (default: the active one): their processes, disks and records.
    #[command(alias = "rm")]
    Destroy {
        #[arg(add = complete::vm_names())]
        names: Vec<String>,
    },
    /// Shut a VM (default: the active one) down: its guest syncs and powers off; its disk,
    /// address, ports and checkpoints stay for `noid start`.
    Stop {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Boot a stopped VM (default: the active one) again from its own disk: one that `noid
    /// stop` stopped, or whose VMM died.
    Start {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Stop a VM's vCPUs (default: the active one); its memory and processes wait as they are.
    Pause {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Let a paused VM (default: the active one) run again.
    Resume {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Save a VM (default: the active one) to disk and stop it: it holds no memory or CPU
    /// until it wakes (`noid wake`, or any exec, cp, console or logs -f).
    Hibernate {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Bring a hibernated VM (default: the active one) back as it was.
    Wake {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Show a VM's time limit and idle timeout, or change them: noid ttl [VM] [TTL]
    /// [--on-expiry destroy|hibernate] [--idle-timeout AGE]
    Ttl(vms::TtlArgs),
    /// Make NAME the active VM for this directory (writes ./.noid).
    Use {
        #[arg(add = complete::vm_names())]
        name: String,
    },
    /// Show the active VM and the file that names it.
    Current,
    /// Checkpoint a VM (default: the active one): memory, devices and disk.
    #[command(args_conflicts_with_subcommands = true)]
    Checkpoint {
        #[command(subcommand)]
        action: Option<CheckpointAction>,
        /// The VM [default: the active one]
        #[arg(add = complete::vm_names())]
        vm: Option<String>,
        /// A note to find the checkpoint by.
        #[arg(long)]
        label: Option<String>,
    },
    /// List checkpoints, newest first (all of yours, or one VM's).
    Checkpoints {
        #[arg(add = complete::vm_names())]
        vm: Option<String>,
    },
    /// Restore a checkpoint into its VM, or into a new VM with --as.
    Restore {
        #[arg(add = complete::checkpoint_ids())]
        id: String,
        /// Fork: create a new VM with this name from the checkpoint.
        #[arg(long = "as", value_name = "NEW_NAME")]
        new_name: Option<String>,
        /// Fork N VMs at once, named NEW_NAME-1 .. NEW_NAME-N.
        #[arg(long, value_name = "N", requires = "new_name")]
        count: Option<u32>,
        /// Network policy flags replace the VM's policy (default: a fork gets its source's)
        #[command(flatten)]
        policy: net::PolicyArgs,
    },
    /// Show how many checkpoints a VM (default: the active one) keeps and for how long, or
    /// change it: noid retention [VM] [--keep-last N] [--max-age AGE]
    Retention {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
        #[command(flatten)]
        args: vms::RetentionArgs,
    },
    /// Show a VM's network policy, or change it: noid net [VM] [--egress allow|deny]
    /// [--allow RULE]... [--deny RULE]... [--remove RULE]... [--clear] [--peers allow|deny]
    Net(net::NetArgs),
    /// Attach to the VM's serial console (detach: Ctrl-Q).
    Console {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Print the VM's console output since boot.
    Logs {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (0: none; with -f, only what comes next).
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
        /// Only lines since then: an age (10m, 2h) or a time (2026-11-30T12:00:00Z).
        #[arg(long, value_name = "WHEN", value_parser = console::parse_since)]
        since: Option<std::time::SystemTime>,
        /// Start each line with the time it came (RFC 3339, the server's clock).
        #[arg(short, long)]
        timestamps: bool,
    },
    /// Copy a file into or out of a VM: noid cp LOCAL VM:/PATH, noid cp VM:/PATH LOCAL
    /// (`:/PATH` is in the active VM; `-` is stdin or stdout).
    Cp {
        /// Copy a directory and everything in it (needs tar in the VM's image)
        #[arg(short = 'r', long)]
        recursive: bool,
        src: String,
        dst: String,
    },
    /// List the images VMs can start from.
    Images,
    /// Inspect, remove, import or build images.
    Image {
        #[command(subcommand)]
        action: images::ImageAction,
    },
    /// Print a shell completion script: noid completions bash > /etc/bash_completion.d/noid
    Completions { shell: clap_complete::Shell },
    /// Serve the Model Context Protocol on stdin/stdout, so that an AI agent can use VMs as
    /// tools (with this CLI's server and token)
    Mcp,
    /// Publish guest ports on the host.
    Port {
        #[command(subcommand)]
        action: vms::PortAction,
    },
    /// List a VM's exec sessions (default: the active one's).
    Ps {
        #[arg(add = complete::vm_names())]
        name: Option<String>,
    },
    /// Show what a session printed since it started, then follow it; stdin goes to it.
    /// Ctrl-Q (terminal sessions) or Ctrl-C detaches; the session runs on.
    Attach {
        #[arg(add = complete::vm_names())]
        vm: String,
        id: u32,
    },
    /// Signal a session (default SIGTERM): noid kill VM ID [SIGNAL]
    Kill {
        #[arg(add = complete::vm_names())]
        vm: String,
        id: u32,
        /// A number or a name: TERM, KILL, INT, HUP, ...
        signal: Option<String>,
    },
    /// Run a command in a VM: noid exec [NAME] [-e K=V] [-w DIR] [-i] [-t] [-d] -- CMD...
    Exec {
        /// The VM [default: the active one, when the command follows `--`]
        #[arg(add = complete::vm_names())]
        name: Option<String>,
        /// Set an environment variable (repeatable).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Working directory in the guest [default: the image's, else the user's home].
        #[arg(short = 'w', long = "workdir", value_name = "DIR")]
        workdir: Option<String>,
        /// Run as this guest user: NAME, UID or NAME:GROUP [default: the image's, else root].
        #[arg(short = 'u', long = "user", value_name = "USER")]
        user: Option<String>,
        /// Send this terminal's stdin to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Run the command on a pseudo-terminal.
        #[arg(short, long)]
        tty: bool,
        /// Kill the command after this many seconds (exit status 124).
        #[arg(long, value_name = "SECS", conflicts_with = "detach")]
        timeout: Option<f64>,
        /// Start the command as a session that runs on its own and print its id (see
        /// `noid ps`, `noid attach`, `noid kill`).
        #[arg(short, long)]
        detach: bool,
        /// The command and its arguments, after the VM's name (as `docker exec` takes them)
        #[arg(value_name = "CMD", allow_hyphen_values = true)]
        words: Vec<String>,
        /// Or the command after `--` (needed for the active VM, or to pass `--` on)
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

/// The VM and the command of `noid exec`: `VM CMD...`, `VM -- CMD...` or `-- CMD...`.
fn exec_target(
    name: Option<String>,
    words: Vec<String>,
    command: Vec<String>,
) -> Result<(String, Vec<String>)> {
    let usage = "no command: noid exec VM CMD [ARG]... (or noid exec -- CMD for the active VM)";
    match (command.is_empty(), words.is_empty()) {
        (false, true) => Ok((config::resolve_vm(name)?, command)),
        (true, false) => Ok((name.ok_or_else(|| anyhow::anyhow!(usage))?, words)),
        (false, false) => anyhow::bail!(
            "the command is given twice, before and after `--`: noid exec VM CMD [ARG]... or \
             noid exec VM -- CMD [ARG]..."
        ),
        (true, true) => anyhow::bail!(usage),
    }
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Delete a checkpoint.
    Rm {
        #[arg(add = complete::checkpoint_ids())]
        id: String,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Save the server URL and token in the user's config file.
    Setup {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        /// Trust the server's certificate if this CA (PEM) signed it (https:// URLs)
        #[arg(long, conflicts_with = "fingerprint")]
        ca_file: Option<std::path::PathBuf>,
        /// Trust exactly the server certificate with this SHA-256 fingerprint
        #[arg(long)]
        fingerprint: Option<String>,
    },
}

fn main() {
    // Answers the shell's completion requests (`source <(COMPLETE=bash noid)`), then exits.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the async runtime");
    runtime.block_on(cli_main());
}

async fn cli_main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| suggest::safe_suggestions(e).exit());
    let (verbose, json) = (cli.verbose, cli.json);
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) if json => {
            report_json(&e);
            std::process::exit(1);
        }
        Err(e) => {
            report(&e, verbose);
            std::process::exit(1);
        }
    }
}

/// Under `--json`, the error as a JSON document on stdout, where a script reads the rest:
/// `{"error": {"code", "reason", "message"}}` (code and reason are the server's, for errors
/// it sent).
fn report_json(e: &anyhow::Error) {
    let error = match e.downcast_ref::<tonic::Status>() {
        Some(status) => json!({
            "code": noid::client::code_name(status.code()),
            "reason": noid::client::error_reason(status),
            "message": status.message(),
        }),
        None => json!({"code": null, "reason": null, "message": e.to_string()}),
    };
    output::print_json(&json!({ "error": error }));
}

/// One clear line; the code and the cause chain under `-v`.
fn report(e: &anyhow::Error, verbose: u8) {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let msg = if status.message().is_empty() {
            format!("{:?}", status.code())
        } else if std::error::Error::source(status).is_some() {
            // Made on this side from a broken connection (a server's own status has no
            // source): say how it broke.
            let why =
                noid::client::with_causes(status.message(), std::error::Error::source(status));
            format!(
                "the connection to the server failed: {why} (is the URL noid's API port, and \
                 does the server want https://?)"
            )
        } else if status.code() == tonic::Code::Unauthenticated
            && status.message().starts_with("missing")
        {
            "no token: run `noid auth setup --url URL --token TOKEN`, or set NOID_TOKEN".into()
        } else {
            status.message().to_string()
        };
        eprintln!("noid: {msg}");
        if verbose > 0 {
            eprintln!("  gRPC status: {:?}", status.code());
            if let Some(reason) = noid::client::error_reason(status) {
                eprintln!("  reason: {reason}");
            }
        }
        return;
    }
    eprintln!("noid: {e}");
    if verbose > 0 {
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    }
}

async fn connect() -> Result<noid::client::Client> {
    let cfg = config::load()?;
    let trust = cfg.trust();
    let url = cfg.url.unwrap_or_else(|| config::DEFAULT_URL.to_string());
    Ok(noid::client::connect_with(&url, cfg.token.as_deref(), &trust).await?)
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(e)
}

async fn run(cli: Cli) -> Result<i32> {
    let json = cli.json;
    match cli.command {
        Command::Auth {
            command:
                AuthCommand::Setup {
                    url,
                    token,
                    ca_file,
                    fingerprint,
                },
        } => {
            // Saved as an absolute path: the CLI runs from any directory.
            let ca_file = ca_file
                .map(|f| {
                    anyhow::Context::with_context(std::path::absolute(&f), || {
                        f.display().to_string()
                    })
                })
                .transpose()?;
            let setup = config::AuthConfig {
                url: Some(url.clone()),
                token: Some(token.clone()),
                ca_file,
                tls_fingerprint: fingerprint,
            };
            let mut client = noid::client::connect_with(&url, Some(&token), &setup.trust()).await?;
            let user = client
                .who_am_i(WhoAmIRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .user;
            let path = config::save(&setup)?;
            if json {
                output::print_json(&json!({"user": user, "url": url, "config": path}));
            } else {
                println!(
                    "Authenticated as {user} at {url} (saved to {})",
                    path.display()
                );
            }
        }
        Command::Whoami => {
            let cfg = config::load()?;
            let mut client = connect().await?;
            let user = client
                .who_am_i(WhoAmIRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .user;
            let url = cfg.url.unwrap_or_else(|| config::DEFAULT_URL.into());
            if json {
                output::print_json(&json!({"user": user, "url": url}));
            } else {
                println!("{user} at {url}");
            }
        }
        Command::Create(args) => vms::create(connect().await?, args, json).await?,
        Command::List => vms::list(&mut connect().await?, json).await?,
        Command::Info { name } => {
            let name = config::resolve_vm(name)?;
            vms::info(&mut connect().await?, name, json).await?
        }
        Command::Destroy { mut names } => {
            if names.len() > 1 {
                return vms::destroy_many(&mut connect().await?, names, json).await;
            }
            let name = config::resolve_vm(names.pop())?;
            vms::destroy(&mut connect().await?, name, json).await?
        }
        Command::Stop { name } => {
            let name = config::resolve_vm(name)?;
            vms::stop(&mut connect().await?, name, json).await?
        }
        Command::Start { name } => {
            let name = config::resolve_vm(name)?;
            vms::start(&mut connect().await?, name, json).await?
        }
        Command::Pause { name } => {
            let name = config::resolve_vm(name)?;
            vms::pause(&mut connect().await?, name, json).await?
        }
        Command::Resume { name } => {
            let name = config::resolve_vm(name)?;
            vms::resume(&mut connect().await?, name, json).await?
        }
        Command::Hibernate { name } => {
            let name = config::resolve_vm(name)?;
            vms::hibernate(&mut connect().await?, name, json).await?
        }
        Command::Wake { name } => {
            let name = config::resolve_vm(name)?;
            vms::wake(&mut connect().await?, name, json).await?
        }
        Command::Ttl(args) => {
            let name = config::resolve_vm(args.vm.clone())?;
            vms::ttl(&mut connect().await?, name, args, json).await?
        }
        Command::Use { name } => vms::use_vm(&mut connect().await?, name, json).await?,
        Command::Current => vms::current(json)?,
        Command::Checkpoint {
            action: Some(CheckpointAction::Rm { id }),
            ..
        } => checkpoints::remove(&mut connect().await?, id, json).await?,
        Command::Checkpoint {
            action: None,
            vm,
            label,
        } => {
            let vm = config::resolve_vm(vm)?;
            checkpoints::create(&mut connect().await?, vm, label, json).await?
        }
        Command::Checkpoints { vm } => checkpoints::list(&mut connect().await?, vm, json).await?,
        Command::Restore {
            id,
            new_name: Some(prefix),
            count: Some(count),
            policy,
        } => {
            checkpoints::fork_many(
                &mut connect().await?,
                id,
                prefix,
                count,
                policy.to_proto(),
                json,
            )
            .await?
        }
        Command::Restore {
            id,
            new_name,
            policy,
            ..
        } => {
            checkpoints::restore(&mut connect().await?, id, new_name, policy.to_proto(), json)
                .await?
        }
        Command::Retention { name, args } => {
            let name = config::resolve_vm(name)?;
            vms::retention(&mut connect().await?, name, args, json).await?
        }
        Command::Net(args) => {
            let vm = config::resolve_vm(args.vm.clone())?;
            net::run(&mut connect().await?, vm, args, json).await?
        }
        Command::Console { name } => {
            let vm = config::resolve_vm(name)?;
            console::attach(&mut connect().await?, vm).await?
        }
        Command::Logs {
            name,
            follow,
            tail,
            since,
            timestamps,
        } => {
            let vm = config::resolve_vm(name)?;
            console::logs(
                &mut connect().await?,
                StreamLogsRequest {
                    vm,
                    follow,
                    tail,
                    since: since.map(noid::time::from_system),
                    timestamps,
                },
            )
            .await?
        }
        Command::Cp {
            recursive,
            src,
            dst,
        } => copy::run(&mut connect().await?, &src, &dst, recursive, json).await?,
        Command::Mcp => mcp::serve(connect().await?).await?,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "noid", &mut std::io::stdout());
        }
        Command::Ps { name } => {
            let vm = config::resolve_vm(name)?;
            sessions::list(&mut connect().await?, vm, json).await?
        }
        Command::Attach { vm, id } => {
            return sessions::attach(&mut connect().await?, vm, id)
                .await
                .map_err(|e| match e.downcast::<tonic::Status>() {
                    Ok(s) => status(s),
                    Err(e) => e,
                });
        }
        Command::Kill { vm, id, signal } => {
            sessions::kill(&mut connect().await?, vm, id, signal, json).await?
        }
        Command::Port { action } => vms::port(&mut connect().await?, action, json).await?,
        Command::Images => images::list(&mut connect().await?, json).await?,
        Command::Image { action } => images::run(&mut connect().await?, action, json).await?,
        Command::Exec {
            name,
            env,
            workdir,
            user,
            interactive,
            tty,
            timeout,
            detach,
            words,
            command,
        } => {
            let (vm, command) = exec_target(name, words, command)?;
            let mut client = connect().await?;
            if detach {
                let start = noid::v1::ExecStart {
                    vm,
                    argv: command,
                    env: exec::parse_env(&env)?,
                    cwd: workdir.unwrap_or_default(),
                    stdin: interactive,
                    tty,
                    tty_size: tty.then_some(noid::v1::TtySize { rows: 24, cols: 80 }),
                    timeout_ms: 0,
                    user: user.unwrap_or_default(),
                };
                sessions::start(&mut client, start, json).await?;
                return Ok(0);
            }
            let args = exec::ExecArgs {
                vm,
                argv: command,
                env,
                cwd: workdir,
                user,
                interactive,
                tty,
                timeout_secs: timeout,
                json,
            };
            return exec::run(&mut client, args).await.map_err(|e| {
                match e.downcast::<tonic::Status>() {
                    Ok(s) => status(s),
                    Err(e) => e,
                }
            });
        }
    }
    Ok(0)
}

/// A random id for a request that creates something, so that a retry of it is safe.
fn request_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 12];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `call` again (at most twice more) when the server could not be reached or the
/// connection broke: safe for calls that carry a request id.
async fn retried<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(s) if s.code() == tonic::Code::Unavailable && attempt < 2 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            other => return other,
        }
    }
}
