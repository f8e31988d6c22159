//! `noid checkpoint`, `noid checkpoints`, `noid restore`.

use std::time::Instant;

use anyhow::Result;
use noid::v1::{
    CreateCheckpointRequest, DeleteCheckpointRequest, ForkManyRequest, ListCheckpointsRequest,
    RestoreRequest,
};
use serde_json::json;

use crate::output;
use crate::progress::spinning;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

pub async fn create(
    client: &mut noid::client::Client,
    vm: String,
    label: Option<String>,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let call = client.create_checkpoint(CreateCheckpointRequest {
        vm: vm.clone(),
        label: label.unwrap_or_default(),
    });
    let c = spinning(json, &format!("Checkpointing VM {vm}"), call)
        .await?
        .into_inner();
    if json {
        output::print_message(&c);
    } else {
        println!(
            "Checkpoint {} of {} in {:.2}s (memory {}, disk {})",
            c.id,
            c.vm,
            started.elapsed().as_secs_f64(),
            mib(c.memory_bytes),
            mib(c.disk_bytes)
        );
    }
    Ok(())
}

pub async fn list(client: &mut noid::client::Client, vm: Option<String>, json: bool) -> Result<()> {
    let list = client
        .list_checkpoints(ListCheckpointsRequest {
            vm: vm.unwrap_or_default(),
            ..Default::default()
        })
        .await?
        .into_inner();
    if json {
        output::print_message(&list);
        return Ok(());
    }
    let list = list.checkpoints;
    if list.is_empty() {
        println!("No checkpoints. Make one with: noid checkpoint VM");
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.vm.clone(),
                    if c.label.is_empty() {
                        "-".into()
                    } else {
                        c.label.clone()
                    },
                    output::age(c.created_at.as_ref()),
                    mib(c.memory_bytes),
                    mib(c.disk_bytes),
                ]
            })
            .collect();
        output::table(&["ID", "VM", "LABEL", "AGE", "MEMORY", "DISK"], &rows);
    }
    Ok(())
}

pub async fn remove(client: &mut noid::client::Client, id: String, json: bool) -> Result<()> {
    client
        .delete_checkpoint(DeleteCheckpointRequest { id: id.clone() })
        .await?;
    if json {
        output::print_json(&json!({"deleted": id}));
    } else {
        println!("Deleted checkpoint {id}");
    }
    Ok(())
}

pub async fn restore(
    client: &mut noid::client::Client,
    id: String,
    new_name: Option<String>,
    network_policy: Option<noid::v1::NetworkPolicy>,
    json: bool,
) -> Result<()> {
    if let Some(n) = &new_name {
        noid::names::validate_name("VM", n)?;
    }
    let started = Instant::now();
    let what = match &new_name {
        Some(n) => format!("Forking checkpoint {id} as {n}"),
        None => format!("Restoring checkpoint {id}"),
    };
    let request = RestoreRequest {
        checkpoint_id: id.clone(),
        new_name: new_name.clone().unwrap_or_default(),
        network_policy,
        // A fork may be retried safely; a restore in place is not retried.
        request_id: if new_name.is_some() {
            crate::request_id()
        } else {
            String::new()
        },
    };
    let call = async {
        if new_name.is_some() {
            crate::retried(|| {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.restore(request).await }
            })
            .await
        } else {
            client.restore(request).await
        }
    };
    let vm = spinning(json, &what, call).await?.into_inner();
    if json {
        output::print_message(&vm);
    } else if new_name.is_some() {
        println!(
            "Created VM {} from checkpoint {id} in {:.2}s",
            vm.name,
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "Restored VM {} to checkpoint {id} in {:.2}s",
            vm.name,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Forks checkpoint `id` into `count` VMs named `prefix-1` ..; prints each VM or its error.
/// Fails (after printing) when any fork failed.
pub async fn fork_many(
    client: &mut noid::client::Client,
    id: String,
    prefix: String,
    count: u32,
    network_policy: Option<noid::v1::NetworkPolicy>,
    json: bool,
) -> Result<()> {
    noid::names::validate_name("VM", &format!("{prefix}-{count}"))?;
    let started = Instant::now();
    let call = client.fork_many(ForkManyRequest {
        checkpoint_id: id.clone(),
        prefix: prefix.clone(),
        count,
        network_policy,
    });
    let what = format!("Forking checkpoint {id} into {prefix}-1..{prefix}-{count}");
    let results = spinning(json, &what, call).await?.into_inner();
    let failed = results.results.iter().filter(|r| r.vm.is_none()).count();
    if json {
        output::print_message(&results);
    } else {
        for r in &results.results {
            match &r.vm {
                Some(vm) => println!(
                    "{:<24} {} {}",
                    r.name,
                    output::state_name(vm.state),
                    vm.address
                ),
                None => println!("{:<24} failed: {} ({})", r.name, r.error, r.error_code),
            }
        }
        println!(
            "Forked {} of {count} VMs from checkpoint {id} in {:.2}s",
            count as usize - failed,
            started.elapsed().as_secs_f64()
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {count} forks failed");
    }
    Ok(())
}
