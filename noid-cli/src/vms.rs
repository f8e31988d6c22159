//! The VM commands: create, list, info, destroy, pause, resume, use/current (the active VM of a
//! directory) and port (published ports).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use noid::client::Client;
use noid::v1 as pb;
use serde_json::json;

use crate::progress::spinning;
use crate::{config, net, output};

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// Virtual CPUs [default: the server's]
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory in MiB [default: the server's]
    #[arg(long)]
    pub mem: Option<u32>,
    /// The image to start from (see `noid images`) [default: default]
    #[arg(long)]
    pub image: Option<String>,
    /// Grow the root disk to SIZE, e.g. 4G (the VM then boots instead of starting from a
    /// boot snapshot) [default: the image's size]
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    #[command(flatten)]
    pub policy: net::PolicyArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// A time limit, e.g. 30m or 2h: then the VM is destroyed (or hibernated, --on-expiry)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub ttl: Option<u64>,
    /// What happens when the time limit passes
    #[arg(long, value_enum, default_value_t = OnExpiry::Destroy)]
    pub on_expiry: OnExpiry,
    /// Hibernate the VM after this long without a call to it (exec, cp, console, API), e.g. 10m
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub idle_timeout: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExpiry {
    Destroy,
    Hibernate,
}

impl OnExpiry {
    fn to_proto(self) -> i32 {
        match self {
            OnExpiry::Destroy => pb::Expiry::Destroy as i32,
            OnExpiry::Hibernate => pb::Expiry::Hibernate as i32,
        }
    }
}

/// `noid ttl [VM] [TTL] [--on-expiry ...] [--idle-timeout AGE]`.
#[derive(clap::Args, Debug)]
pub struct TtlArgs {
    /// The VM [default: the active one]
    pub vm: Option<String>,
    /// A new time limit from now, e.g. 1h (0 removes it)
    #[arg(value_parser = parse_age)]
    pub ttl: Option<u64>,
    /// What happens when the time limit passes
    #[arg(long, value_enum)]
    pub on_expiry: Option<OnExpiry>,
    /// Hibernate the VM after this long without a call (0: never)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub idle_timeout: Option<u64>,
}

/// How many checkpoints a VM keeps, and for how long.
#[derive(clap::Args, Debug, Default)]
pub struct RetentionArgs {
    /// Keep only the newest N checkpoints of the VM (0: any number) [default: the server's]
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Remove the VM's checkpoints older than AGE, e.g. 12h or 7d (0: any age) [default: the
    /// server's]
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub max_age: Option<u64>,
}

impl RetentionArgs {
    pub fn to_proto(&self) -> Option<pb::CheckpointRetention> {
        (self.keep_last.is_some() || self.max_age.is_some()).then_some(pb::CheckpointRetention {
            keep_last: self.keep_last,
            max_age_secs: self.max_age,
        })
    }
}

/// Seconds in "7d", "12h", "90m" (or "0").
fn parse_age(s: &str) -> std::result::Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{e} (e.g. 12h or 7d)"))
}

#[derive(clap::Subcommand, Debug)]
pub enum PortAction {
    /// TCP to the host's HOSTPORT reaches the VM's GUESTPORT.
    Add {
        vm: String,
        #[arg(value_name = "HOSTPORT:GUESTPORT")]
        mapping: String,
    },
    /// Stop publishing the host's HOSTPORT.
    Rm {
        vm: String,
        #[arg(value_name = "HOSTPORT")]
        host_port: u16,
    },
}

fn parse_mapping(m: &str) -> Result<(u32, u32)> {
    let parse = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).map(u32::from);
    match m.split_once(':') {
        Some((h, g)) => match (parse(h), parse(g)) {
            (Some(h), Some(g)) => Ok((h, g)),
            _ => bail!("invalid port mapping {m:?}: ports are 1-65535"),
        },
        None => bail!("invalid port mapping {m:?}: expected HOSTPORT:GUESTPORT"),
    }
}

pub async fn create(client: Client, args: CreateArgs, json: bool) -> Result<()> {
    let CreateArgs {
        name,
        cpus,
        mem,
        image,
        disk,
        policy,
        retention,
        ttl,
        on_expiry,
        idle_timeout,
    } = args;
    let disk_bytes = disk
        .as_deref()
        .map(crate::images::parse_size)
        .transpose()?
        .unwrap_or(0);
    noid::names::validate_name("VM", &name)?;
    let started = Instant::now();
    let request = pb::CreateVmRequest {
        name: name.clone(),
        cpus: cpus.unwrap_or(0),
        memory_mib: mem.unwrap_or(0),
        network_policy: policy.to_proto(),
        request_id: crate::request_id(),
        image: image.unwrap_or_default(),
        disk_bytes,
        checkpoint_retention: retention.to_proto(),
        ttl_secs: ttl.unwrap_or(0),
        on_expiry: on_expiry.to_proto(),
        idle_timeout_secs: idle_timeout.unwrap_or(0),
    };
    let what = create_progress(&client, &request).await;
    let call = crate::retried(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.create_vm(request).await }
    });
    let vm = spinning(json, &what, call).await?.into_inner();
    if json {
        output::print_message(&vm);
    } else {
        println!(
            "Created VM {} in {:.2}s ({} vCPU, {} MiB, {})",
            vm.name,
            started.elapsed().as_secs_f64(),
            vm.cpus,
            vm.memory_mib,
            vm.backend
        );
    }
    Ok(())
}

/// What the spinner says while a create runs: whether the VM starts from its shape's boot
/// snapshot or boots (as the server tells; it is not asked when a grown disk means a boot).
async fn create_progress(client: &Client, req: &pb::CreateVmRequest) -> String {
    let name = &req.name;
    if req.disk_bytes > 0 {
        return format!("Creating VM {name}: booting (a grown disk needs a boot)");
    }
    let ask = pb::GetServerInfoRequest {
        image: req.image.clone(),
        cpus: req.cpus,
        memory_mib: req.memory_mib,
    };
    match client.clone().get_server_info(ask).await {
        Ok(info) if info.get_ref().boot_snapshot_ready => {
            format!("Creating VM {name} from the boot snapshot")
        }
        Ok(_) => format!(
            "Creating VM {name}: booting (the first VM of this shape; later ones start from \
             its boot snapshot)"
        ),
        Err(_) => format!("Creating VM {name}"),
    }
}

pub async fn list(client: &mut Client, json: bool) -> Result<()> {
    let vms = client
        .list_vms(pb::ListVmsRequest::default())
        .await?
        .into_inner();
    if json {
        output::print_message(&vms);
    } else if vms.vms.is_empty() {
        println!("No VMs. Create one with: noid create NAME");
    } else {
        output::table(&output::VM_HEADER, &output::vm_rows(&vms.vms));
    }
    Ok(())
}

pub async fn info(client: &mut Client, name: String, json: bool) -> Result<()> {
    let vm = client.get_vm(pb::GetVmRequest { name }).await?.into_inner();
    if json {
        output::print_message(&vm);
    } else {
        // The image's own id, where it can be looked up.
        let image = client
            .get_image(pb::GetImageRequest {
                name: vm.image.clone(),
            })
            .await
            .ok()
            .map(|r| r.into_inner().id);
        output::vm_details(&vm, image.as_deref());
    }
    Ok(())
}

pub async fn destroy(client: &mut Client, name: String, json: bool) -> Result<()> {
    let call = client.delete_vm(pb::DeleteVmRequest { name: name.clone() });
    spinning(json, &format!("Destroying VM {name}"), call).await?;
    if json {
        output::print_json(&json!({"destroyed": name}));
    } else {
        println!("Destroyed VM {name}");
    }
    Ok(())
}

/// Destroys each of `names`, going on past failures (each told on its own line); the exit
/// status is 1 if any failed, as `docker rm` does.
pub async fn destroy_many(client: &mut Client, names: Vec<String>, json: bool) -> Result<i32> {
    let (mut destroyed, mut failed) = (Vec::new(), Vec::new());
    for name in names {
        let call = client.delete_vm(pb::DeleteVmRequest { name: name.clone() });
        match spinning(json, &format!("Destroying VM {name}"), call).await {
            Ok(_) => {
                if !json {
                    println!("Destroyed VM {name}");
                }
                destroyed.push(name);
            }
            Err(e) => {
                if !json {
                    eprintln!("noid: {name}: {}", e.message());
                }
                failed.push(json!({"name": name, "error": e.message()}));
            }
        }
    }
    if json {
        output::print_json(&json!({"destroyed": destroyed, "failed": failed}));
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

pub async fn pause(client: &mut Client, name: String, json: bool) -> Result<()> {
    let vm = client
        .pause_vm(pb::PauseVmRequest { name })
        .await?
        .into_inner();
    print_state(&vm, json);
    Ok(())
}

pub async fn stop(client: &mut Client, name: String, json: bool) -> Result<()> {
    let call = client.stop_vm(pb::StopVmRequest { name: name.clone() });
    let vm = spinning(json, &format!("Stopping VM {name}"), call)
        .await?
        .into_inner();
    print_state(&vm, json);
    Ok(())
}

pub async fn start(client: &mut Client, name: String, json: bool) -> Result<()> {
    let call = client.start_vm(pb::StartVmRequest { name: name.clone() });
    let vm = spinning(
        json,
        &format!("Starting VM {name} (booting its disk)"),
        call,
    )
    .await?
    .into_inner();
    print_state(&vm, json);
    Ok(())
}

pub async fn hibernate(client: &mut Client, name: String, json: bool) -> Result<()> {
    let call = client.hibernate_vm(pb::HibernateVmRequest { name: name.clone() });
    let vm = spinning(json, &format!("Hibernating VM {name}"), call)
        .await?
        .into_inner();
    print_state(&vm, json);
    Ok(())
}

pub async fn wake(client: &mut Client, name: String, json: bool) -> Result<()> {
    let call = client.wake_vm(pb::WakeVmRequest { name: name.clone() });
    let vm = spinning(json, &format!("Waking VM {name}"), call)
        .await?
        .into_inner();
    print_state(&vm, json);
    Ok(())
}

/// Shows the VM's time limit and idle timeout, or changes what `args` sets.
pub async fn ttl(client: &mut Client, name: String, args: TtlArgs, json: bool) -> Result<()> {
    let vm = if args.ttl.is_some() || args.on_expiry.is_some() || args.idle_timeout.is_some() {
        client
            .set_time_limits(pb::SetTimeLimitsRequest {
                name,
                ttl_secs: args.ttl,
                on_expiry: args.on_expiry.map(OnExpiry::to_proto),
                idle_timeout_secs: args.idle_timeout,
            })
            .await?
            .into_inner()
    } else {
        client.get_vm(pb::GetVmRequest { name }).await?.into_inner()
    };
    if json {
        output::print_json(&json!({
            "expires_at": vm.expires_at,
            "on_expiry": output::expiry_name(vm.on_expiry),
            "idle_timeout_secs": vm.idle_timeout_secs,
        }));
    } else {
        println!(
            "VM {}: time limit {}; idle timeout {}",
            vm.name,
            output::time_left(&vm),
            output::idle_timeout(&vm)
        );
    }
    Ok(())
}

pub async fn resume(client: &mut Client, name: String, json: bool) -> Result<()> {
    let vm = client
        .resume_vm(pb::ResumeVmRequest { name })
        .await?
        .into_inner();
    print_state(&vm, json);
    Ok(())
}

fn print_state(vm: &pb::Vm, json: bool) {
    if json {
        output::print_message(vm);
    } else {
        println!("VM {} is {}", vm.name, output::state_name(vm.state));
    }
}

/// Shows the VM's checkpoint retention, or changes what `args` sets.
pub async fn retention(
    client: &mut Client,
    name: String,
    args: RetentionArgs,
    json: bool,
) -> Result<()> {
    let vm = match args.to_proto() {
        Some(retention) => client
            .set_checkpoint_retention(pb::SetCheckpointRetentionRequest {
                name,
                retention: Some(retention),
            })
            .await?
            .into_inner(),
        None => client.get_vm(pb::GetVmRequest { name }).await?.into_inner(),
    };
    if json {
        output::print_message(&vm.checkpoint_retention.unwrap_or_default());
    } else {
        println!(
            "VM {} keeps checkpoints: {}",
            vm.name,
            output::retention(vm.checkpoint_retention.as_ref())
        );
    }
    Ok(())
}

/// Makes `name` the active VM of the current directory (`./.noid`).
pub async fn use_vm(client: &mut Client, name: String, json: bool) -> Result<()> {
    noid::names::validate_name("VM", &name)?;
    client
        .get_vm(pb::GetVmRequest { name: name.clone() })
        .await?;
    let path = std::env::current_dir()?.join(config::ACTIVE_VM_FILE);
    std::fs::write(&path, format!("{name}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    if json {
        output::print_json(&json!({"active": name, "file": path}));
    } else {
        println!("Active VM is now {name} (in {})", path.display());
    }
    Ok(())
}

pub fn current(json: bool) -> Result<()> {
    let Some((name, file)) = config::active_vm()? else {
        bail!("no active VM here: run `noid use NAME`");
    };
    if json {
        output::print_json(&json!({"active": name, "file": file}));
    } else {
        println!("{name} (from {})", file.display());
    }
    Ok(())
}

pub async fn port(client: &mut Client, action: PortAction, json: bool) -> Result<()> {
    let vm = match action {
        PortAction::Add { vm, mapping } => {
            let (host_port, guest_port) = parse_mapping(&mapping)?;
            let request = pb::AddPortRequest {
                vm,
                host_port,
                guest_port,
            };
            client.add_port(request).await?.into_inner()
        }
        PortAction::Rm { vm, host_port } => {
            let request = pb::RemovePortRequest {
                vm,
                host_port: host_port.into(),
            };
            client.remove_port(request).await?.into_inner()
        }
    };
    if json {
        output::print_message(&vm);
    } else {
        println!("VM {} publishes: {}", vm.name, output::ports(&vm));
    }
    Ok(())
}
