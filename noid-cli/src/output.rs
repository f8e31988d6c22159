//! Output for people (aligned tables) and for scripts (`--json`: one JSON document on stdout).

use noid::v1::{Vm, VmState};
use serde_json::Value;

pub fn state_name(state: i32) -> &'static str {
    match VmState::try_from(state).unwrap_or(VmState::Unspecified) {
        VmState::Creating => "creating",
        VmState::Running => "running",
        VmState::Paused => "paused",
        VmState::Stopped => "stopped",
        VmState::Restoring => "restoring",
        VmState::Deleting => "deleting",
        VmState::Hibernated => "hibernated",
        VmState::Unspecified => "unknown",
    }
}

/// Prints an API message as the API's own JSON (the proto3 JSON mapping, as the REST
/// gateway prints it: field names as in the proto, enums by name, 64-bit integers as strings).
pub fn print_message<T: serde::Serialize>(message: &T) {
    print_json(&serde_json::to_value(message).expect("API messages serialize"));
}

pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

/// Human age of an API time: "12s", "5m", "3h", "2d"; "-" when there is none.
pub fn age(t: Option<&noid::time::Timestamp>) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let s = std::time::SystemTime::now()
        .duration_since(noid::time::to_system(t))
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn vm_rows(vms: &[Vm]) -> Vec<Vec<String>> {
    vms.iter()
        .map(|v| {
            vec![
                v.name.clone(),
                state_name(v.state).to_string(),
                v.cpus.to_string(),
                format!("{} MiB", v.memory_mib),
                if v.address.is_empty() {
                    "-".into()
                } else {
                    v.address.clone()
                },
                age(v.created_at.as_ref()),
            ]
        })
        .collect()
}

pub const VM_HEADER: [&str; 6] = ["NAME", "STATE", "CPUS", "MEMORY", "ADDRESS", "AGE"];

/// `noid info`: one field a line, in a reading order; `image_id` is the id of the VM's image
/// where it could be looked up.
pub fn vm_details(vm: &Vm, image_id: Option<&str>) {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows = [
        ("name", vm.name.clone()),
        (
            "state",
            if vm.state_reason.is_empty() {
                state_name(vm.state).to_string()
            } else {
                format!("{} ({})", state_name(vm.state), vm.state_reason)
            },
        ),
        ("id", vm.id.clone()),
        ("cpus", vm.cpus.to_string()),
        ("memory", format!("{} MiB", vm.memory_mib)),
        ("address", or_dash(&vm.address)),
        ("mac", or_dash(&vm.mac)),
        ("ports", ports(vm)),
        ("network", policy_summary(vm)),
        ("backend", vm.backend.clone()),
        (
            "image",
            match image_id {
                Some(id) => format!("{} {id} (base {})", vm.image, vm.image_id),
                None => format!("{} (base {})", vm.image, vm.image_id),
            },
        ),
        ("kernel", vm.kernel_release.clone()),
        ("from checkpoint", or_dash(&vm.parent_checkpoint)),
        (
            "checkpoints kept",
            retention(vm.checkpoint_retention.as_ref()),
        ),
        ("time limit", time_left(vm)),
        ("idle timeout", idle_timeout(vm)),
        ("vmm pid", vm.vmm_pid.to_string()),
        ("age", age(vm.created_at.as_ref())),
    ];
    for (k, v) in rows {
        println!("{:<16} {v}", format!("{k}:"));
    }
}

/// "destroy" or "hibernate".
pub fn expiry_name(n: i32) -> &'static str {
    match noid::v1::Expiry::try_from(n) {
        Ok(noid::v1::Expiry::Hibernate) => "hibernate",
        _ => "destroy",
    }
}

/// "none", or "12m 3s left, then destroy".
pub fn time_left(vm: &Vm) -> String {
    let Some(expires) = &vm.expires_at else {
        return "none".into();
    };
    let left = noid::time::to_system(expires)
        .duration_since(std::time::SystemTime::now())
        .map(|d| std::time::Duration::from_secs(d.as_secs()))
        .unwrap_or_default();
    format!(
        "{} left, then {}",
        humantime::format_duration(left),
        expiry_name(vm.on_expiry)
    )
}

/// "none", or "10m without a call, then hibernate".
pub fn idle_timeout(vm: &Vm) -> String {
    match vm.idle_timeout_secs {
        0 => "none".into(),
        s => format!(
            "{} without a call, then hibernate",
            humantime::format_duration(std::time::Duration::from_secs(s))
        ),
    }
}

/// "newest 5, for 7days", with "server default" for what the VM leaves to the server.
pub fn retention(r: Option<&noid::v1::CheckpointRetention>) -> String {
    let keep = match r.and_then(|r| r.keep_last) {
        None => "count: server default".to_string(),
        Some(0) => "any number".to_string(),
        Some(n) => format!("newest {n}"),
    };
    let age = match r.and_then(|r| r.max_age_secs) {
        None => "age: server default".to_string(),
        Some(0) => "any age".to_string(),
        Some(s) => format!(
            "for {}",
            humantime::format_duration(std::time::Duration::from_secs(s))
        ),
    };
    format!("{keep}, {age}")
}

/// "8080->80, 2222->22", or "-".
pub fn ports(vm: &Vm) -> String {
    if vm.ports.is_empty() {
        return "-".into();
    }
    vm.ports
        .iter()
        .map(|p| format!("{}->{}", p.host_port, p.guest_port))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A VM's network policy in one line, for `noid info` and `noid net`.
pub fn policy_summary(vm: &Vm) -> String {
    let policy = vm
        .network_policy
        .as_ref()
        .map(|p| noid::netpolicy::NetPolicy::from_proto(p, noid::netpolicy::Egress::Allow));
    match policy {
        Some(Ok(p)) => p.summary(),
        Some(Err(e)) => format!("(unreadable: {e})"),
        None => "-".into(),
    }
}
