//! Prometheus metrics, kept by hand (a few counters and histograms do not need a registry
//! crate) and rendered in the text exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Bucket bounds in seconds for durations (TCG boots take seconds, checkpoints a fraction).
const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

#[derive(Default)]
struct State {
    vm_create: Histogram,
    checkpoint: Histogram,
    restore: Histogram,
    checkpoint_bytes_total: u64,
    last_checkpoint_bytes: u64,
    exec_total: u64,
    exec_failures: u64,
    slow_checkpoints: u64,
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// What only a scrape can know: running VMs and their memory.
pub struct Snapshot {
    pub running_vms: usize,
    /// (VM name, owner, resident bytes of its VMM process).
    pub vm_memory: Vec<(String, String, u64)>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("metrics lock"));
    }

    pub fn vm_created(&self, secs: f64) {
        self.with(|s| s.vm_create.observe(secs));
    }

    pub fn checkpoint_created(&self, secs: f64, bytes: u64) {
        self.with(|s| {
            s.checkpoint.observe(secs);
            s.checkpoint_bytes_total += bytes;
            s.last_checkpoint_bytes = bytes;
        });
    }

    /// A checkpoint took longer than `[checkpoints] slow_secs`.
    pub fn slow_checkpoint(&self) {
        self.with(|s| s.slow_checkpoints += 1);
    }

    pub fn restored(&self, secs: f64) {
        self.with(|s| s.restore.observe(secs));
    }

    pub fn exec_started(&self) {
        self.with(|s| s.exec_total += 1);
    }

    pub fn exec_failed(&self) {
        self.with(|s| s.exec_failures += 1);
    }

    /// One API error, by gRPC code name.
    pub fn error(&self, code: &'static str) {
        self.with(|s| *s.errors.entry(code).or_default() += 1);
    }

    pub fn render(&self, snap: &Snapshot) -> String {
        let s = self.state.lock().expect("metrics lock");
        let mut out = String::new();
        s.vm_create.render(
            &mut out,
            "noid_vm_create_duration_seconds",
            "Time from create request until the guest agent answers.",
        );
        s.checkpoint.render(
            &mut out,
            "noid_checkpoint_duration_seconds",
            "Time to create a checkpoint.",
        );
        s.restore.render(
            &mut out,
            "noid_restore_duration_seconds",
            "Time to restore a checkpoint (in place or fork) until the agent answers.",
        );
        let _ = writeln!(out, "# HELP noid_checkpoint_size_bytes Size (memory state and disk) of the last checkpoint.\n# TYPE noid_checkpoint_size_bytes gauge\nnoid_checkpoint_size_bytes {}", s.last_checkpoint_bytes);
        let _ = writeln!(out, "# HELP noid_checkpoint_bytes_total Bytes of all checkpoints created.\n# TYPE noid_checkpoint_bytes_total counter\nnoid_checkpoint_bytes_total {}", s.checkpoint_bytes_total);
        let _ = writeln!(out, "# HELP noid_slow_checkpoints_total Checkpoints that took longer than the configured slow_secs.\n# TYPE noid_slow_checkpoints_total counter\nnoid_slow_checkpoints_total {}", s.slow_checkpoints);
        let _ = writeln!(out, "# HELP noid_vms_running VMs whose VMM runs.\n# TYPE noid_vms_running gauge\nnoid_vms_running {}", snap.running_vms);
        let _ = writeln!(out, "# HELP noid_vm_memory_bytes Resident memory of each VM's VMM process.\n# TYPE noid_vm_memory_bytes gauge");
        for (vm, owner, bytes) in &snap.vm_memory {
            let _ = writeln!(
                out,
                "noid_vm_memory_bytes{{vm=\"{vm}\",owner=\"{owner}\"}} {bytes}"
            );
        }
        let _ = writeln!(out, "# HELP noid_exec_total Commands started in guests.\n# TYPE noid_exec_total counter\nnoid_exec_total {}", s.exec_total);
        let _ = writeln!(out, "# HELP noid_exec_failures_total Commands that could not be started or lost their stream.\n# TYPE noid_exec_failures_total counter\nnoid_exec_failures_total {}", s.exec_failures);
        let _ = writeln!(out, "# HELP noid_api_errors_total API errors by gRPC code.\n# TYPE noid_api_errors_total counter");
        for (code, n) in &s.errors {
            let _ = writeln!(out, "noid_api_errors_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}

/// The canonical name of a numeric gRPC status code.
pub fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.vm_created(2.0);
        m.error("NOT_FOUND");
        m.error("NOT_FOUND");
        let text = m.render(&Snapshot {
            running_vms: 1,
            vm_memory: vec![("a".into(), "alice".into(), 1024)],
        });
        assert!(text.contains("noid_vm_create_duration_seconds_bucket{le=\"2.5\"} 1"));
        assert!(text.contains("noid_vm_create_duration_seconds_bucket{le=\"1\"} 0"));
        assert!(text.contains("noid_api_errors_total{code=\"NOT_FOUND\"} 2"));
        assert!(text.contains("noid_vm_memory_bytes{vm=\"a\",owner=\"alice\"} 1024"));
    }
}
