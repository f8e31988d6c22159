//! What a scrape reads about each VM from the host: its VMM process's resident memory and CPU
//! time (/proc), its TAP's byte counters (/sys/class/net), the disk its directory takes.

use std::fmt::Write;
use std::path::Path;

/// One VM at the moment of a scrape.
#[derive(Debug, Clone, Default)]
pub struct VmSample {
    pub name: String,
    pub owner: String,
    pub memory_bytes: u64,
    pub cpu_seconds: f64,
    /// Bytes the VM received and sent, when it has a network.
    pub network: Option<(u64, u64)>,
    /// Host disk its directory takes (allocated blocks).
    pub disk_bytes: u64,
}

impl VmSample {
    /// Samples the VM `name` of `owner` whose VMM is `pid` (0: not running), whose TAP is
    /// `tap`, and whose files are in `dir`.
    pub fn take(name: &str, owner: &str, pid: u32, tap: Option<&str>, dir: &Path) -> Self {
        Self {
            name: name.to_string(),
            owner: owner.to_string(),
            memory_bytes: if pid > 0 { resident_bytes(pid) } else { 0 },
            cpu_seconds: if pid > 0 { cpu_seconds(pid) } else { 0.0 },
            network: tap.and_then(tap_bytes),
            disk_bytes: allocated_bytes(dir),
        }
    }
}

/// Resident memory of a process, from /proc/PID/status.
pub fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// User and system CPU time of a process, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name, in parentheses, may hold spaces: fields count from after it.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return 0.0;
    }
    ticks as f64 / per_second as f64
}

/// (received, sent) by the guest behind `tap`: the TAP's transmit and receive counters.
fn tap_bytes(tap: &str) -> Option<(u64, u64)> {
    let read = |what: &str| -> Option<u64> {
        let path = format!("/sys/class/net/{tap}/statistics/{what}");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    };
    Some((read("tx_bytes")?, read("rx_bytes")?))
}

/// Allocated bytes of the regular files directly in `dir`.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// The per-VM families.
pub(super) fn render(
    out: &mut String,
    vms: &[VmSample],
    family: &mut impl FnMut(&mut String, &str, &str, &str),
) {
    let labels = |v: &VmSample| {
        format!(
            "vm=\"{}\",owner=\"{}\"",
            super::escape(&v.name),
            super::escape(&v.owner)
        )
    };
    type Value = fn(&VmSample) -> Option<f64>;
    let families: [(&str, &str, &str, Value); 5] = [
        (
            "noid_vm_memory_bytes",
            "gauge",
            "Resident memory of each running VM's VMM process.",
            |v| (v.memory_bytes > 0).then_some(v.memory_bytes as f64),
        ),
        (
            "noid_vm_cpu_seconds_total",
            "counter",
            "CPU time (user and system) of each running VM's VMM process.",
            |v| (v.memory_bytes > 0).then_some(v.cpu_seconds),
        ),
        (
            "noid_vm_network_receive_bytes_total",
            "counter",
            "Bytes each VM with a network received.",
            |v| v.network.map(|(rx, _)| rx as f64),
        ),
        (
            "noid_vm_network_transmit_bytes_total",
            "counter",
            "Bytes each VM with a network sent.",
            |v| v.network.map(|(_, tx)| tx as f64),
        ),
        (
            "noid_vm_disk_bytes",
            "gauge",
            "Host disk each VM's own files take (its disk overlay or copy, and the rest).",
            |v| Some(v.disk_bytes as f64),
        ),
    ];
    for (name, kind, help, value) in families {
        family(out, name, kind, help);
        for v in vms {
            if let Some(x) = value(v) {
                let _ = writeln!(out, "{name}{{{}}} {x}", labels(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        assert!(resident_bytes(me) > 0);
        // Burn a little CPU so that the count is above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_seconds(me) > 0.0);
        assert_eq!(tap_bytes("no-such-tap-0"), None);
    }
}
