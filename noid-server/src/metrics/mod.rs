//! Prometheus metrics, kept by hand (a few counters and histograms do not need a registry
//! crate) and rendered in the text exposition format at `GET /metrics`: what the server counts
//! as it goes (requests, durations, sizes) here, what only a scrape can know (VMs by state,
//! each VM's memory, CPU, network and disk) from a `Snapshot` the core samples (`sample`).
//! Names and units follow Prometheus' conventions (`_seconds`, `_bytes`, `_total`); labels
//! are VM and user names, API methods and route templates, never tokens or request data.

mod histogram;
pub mod sample;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use histogram::{Histogram, CHECKPOINT_BYTES, EXEC_START_SECONDS, OPERATION_SECONDS};

/// Where a created VM came from, for `noid_vm_create_duration_seconds{source}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CreateSource {
    Boot,
    Snapshot,
}

impl CreateSource {
    fn label(self) -> &'static str {
        match self {
            CreateSource::Boot => "boot",
            CreateSource::Snapshot => "snapshot",
        }
    }
}

struct State {
    vm_create: BTreeMap<CreateSource, Histogram>,
    checkpoint: Histogram,
    checkpoint_size: Histogram,
    checkpoint_bytes_total: u64,
    restore: Histogram,
    exec_start: Histogram,
    exec_total: u64,
    exec_failures: u64,
    slow_checkpoints: u64,
    /// (api, method, code) -> calls.
    requests: BTreeMap<(&'static str, String, &'static str), u64>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            vm_create: BTreeMap::new(),
            checkpoint: Histogram::new(OPERATION_SECONDS),
            checkpoint_size: Histogram::new(CHECKPOINT_BYTES),
            checkpoint_bytes_total: 0,
            restore: Histogram::new(OPERATION_SECONDS),
            exec_start: Histogram::new(EXEC_START_SECONDS),
            exec_total: 0,
            exec_failures: 0,
            slow_checkpoints: 0,
            requests: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// What only a scrape can know.
#[derive(Default)]
pub struct Snapshot {
    /// The server's version and VMM backend (`noid_build_info`).
    pub version: String,
    pub backend: String,
    /// Every VM's state, counted.
    pub vms_by_state: BTreeMap<String, usize>,
    /// VMs whose VMM runs.
    pub running_vms: usize,
    pub vms: Vec<sample::VmSample>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("metrics lock"));
    }

    pub fn vm_created(&self, source: CreateSource, secs: f64) {
        self.with(|s| {
            s.vm_create
                .entry(source)
                .or_insert_with(|| Histogram::new(OPERATION_SECONDS))
                .observe(secs)
        });
    }

    pub fn checkpoint_created(&self, secs: f64, bytes: u64) {
        self.with(|s| {
            s.checkpoint.observe(secs);
            s.checkpoint_size.observe(bytes as f64);
            s.checkpoint_bytes_total += bytes;
        });
    }

    /// A checkpoint took longer than `[checkpoints] slow_secs`.
    pub fn slow_checkpoint(&self) {
        self.with(|s| s.slow_checkpoints += 1);
    }

    pub fn restored(&self, secs: f64) {
        self.with(|s| s.restore.observe(secs));
    }

    /// An exec's command reached the guest agent after `secs`.
    pub fn exec_started(&self, secs: f64) {
        self.with(|s| {
            s.exec_total += 1;
            s.exec_start.observe(secs);
        });
    }

    pub fn exec_failed(&self) {
        self.with(|s| {
            s.exec_total += 1;
            s.exec_failures += 1;
        });
    }

    /// One API call: `api` is grpc or rest, `method` the RPC or route template, `code` the
    /// gRPC code name it ended with (for a stream: began with).
    pub fn request(&self, api: &'static str, method: String, code: &'static str) {
        self.with(|s| *s.requests.entry((api, method, code)).or_default() += 1);
    }

    pub fn render(&self, snap: &Snapshot) -> String {
        let s = self.state.lock().expect("metrics lock");
        let mut out = String::new();
        let mut family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "noid_build_info",
            "gauge",
            "The server's version and VMM backend (always 1).",
        );
        let _ = writeln!(
            out,
            "noid_build_info{{version=\"{}\",backend=\"{}\"}} 1",
            escape(&snap.version),
            escape(&snap.backend)
        );

        family(
            &mut out,
            "noid_api_requests_total",
            "counter",
            "API calls by API (grpc, rest), method (RPC or route) and gRPC code.",
        );
        for ((api, method, code), n) in &s.requests {
            let _ = writeln!(
                out,
                "noid_api_requests_total{{api=\"{api}\",method=\"{}\",code=\"{code}\"}} {n}",
                escape(method)
            );
        }
        family(
            &mut out,
            "noid_api_errors_total",
            "counter",
            "API calls that ended with an error, by gRPC code (both APIs).",
        );
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        for ((_, _, code), n) in &s.requests {
            if *code != "OK" {
                *errors.entry(code).or_default() += n;
            }
        }
        for (code, n) in errors {
            let _ = writeln!(out, "noid_api_errors_total{{code=\"{code}\"}} {n}");
        }

        family(
            &mut out,
            "noid_vm_create_duration_seconds",
            "histogram",
            "Time from a create request until the guest agent answers, by source (boot, snapshot).",
        );
        for (source, h) in &s.vm_create {
            h.render(
                &mut out,
                "noid_vm_create_duration_seconds",
                &format!("source=\"{}\"", source.label()),
            );
        }
        family(
            &mut out,
            "noid_checkpoint_duration_seconds",
            "histogram",
            "Time to create a checkpoint.",
        );
        s.checkpoint
            .render(&mut out, "noid_checkpoint_duration_seconds", "");
        family(
            &mut out,
            "noid_checkpoint_size_bytes",
            "histogram",
            "Size of each checkpoint created (memory and disk).",
        );
        s.checkpoint_size
            .render(&mut out, "noid_checkpoint_size_bytes", "");
        family(
            &mut out,
            "noid_checkpoint_bytes_total",
            "counter",
            "Bytes of all checkpoints created.",
        );
        let _ = writeln!(
            out,
            "noid_checkpoint_bytes_total {}",
            s.checkpoint_bytes_total
        );
        family(
            &mut out,
            "noid_slow_checkpoints_total",
            "counter",
            "Checkpoints that took longer than the configured slow_secs.",
        );
        let _ = writeln!(out, "noid_slow_checkpoints_total {}", s.slow_checkpoints);
        family(
            &mut out,
            "noid_restore_duration_seconds",
            "histogram",
            "Time to restore a checkpoint (in place or fork) until the agent answers.",
        );
        s.restore
            .render(&mut out, "noid_restore_duration_seconds", "");
        family(
            &mut out,
            "noid_exec_start_duration_seconds",
            "histogram",
            "Time from an exec request until the guest agent took the command.",
        );
        s.exec_start
            .render(&mut out, "noid_exec_start_duration_seconds", "");
        family(
            &mut out,
            "noid_exec_total",
            "counter",
            "Commands asked to run in guests.",
        );
        let _ = writeln!(out, "noid_exec_total {}", s.exec_total);
        family(
            &mut out,
            "noid_exec_failures_total",
            "counter",
            "Commands that could not be started or lost their stream.",
        );
        let _ = writeln!(out, "noid_exec_failures_total {}", s.exec_failures);
        drop(s);

        family(&mut out, "noid_vms", "gauge", "VMs by state.");
        for (state, n) in &snap.vms_by_state {
            let _ = writeln!(out, "noid_vms{{state=\"{}\"}} {n}", escape(state));
        }
        family(&mut out, "noid_vms_running", "gauge", "VMs whose VMM runs.");
        let _ = writeln!(out, "noid_vms_running {}", snap.running_vms);
        sample::render(&mut out, &snap.vms, &mut family);
        out
    }
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The canonical name of a numeric gRPC status code.
pub fn grpc_code_name(code: i32) -> &'static str {
    noid::client::code_name(tonic::Code::from_i32(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.vm_created(CreateSource::Snapshot, 2.0);
        m.request("grpc", "GetVm".into(), "NOT_FOUND");
        m.request("rest", "GET /vms/:name".into(), "NOT_FOUND");
        m.request("grpc", "GetVm".into(), "OK");
        let text = m.render(&Snapshot {
            version: "0.1.0".into(),
            backend: "qemu/tcg".into(),
            running_vms: 1,
            vms: vec![sample::VmSample {
                name: "a".into(),
                owner: "alice".into(),
                memory_bytes: 1024,
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(text
            .contains("noid_vm_create_duration_seconds_bucket{source=\"snapshot\",le=\"2.5\"} 1"));
        assert!(
            text.contains("noid_vm_create_duration_seconds_bucket{source=\"snapshot\",le=\"1\"} 0")
        );
        assert!(text.contains("noid_api_errors_total{code=\"NOT_FOUND\"} 2"));
        assert!(
            text.contains("noid_api_requests_total{api=\"grpc\",method=\"GetVm\",code=\"OK\"} 1")
        );
        assert!(text.contains("noid_vm_memory_bytes{vm=\"a\",owner=\"alice\"} 1024"));
        assert!(text.contains("noid_build_info{version=\"0.1.0\",backend=\"qemu/tcg\"} 1"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
