//! Translation between generated proto types and core domain types.

use std::time::Duration;

use noid::v1 as pb;

use noid::netpolicy::{Egress, NetPolicy};

use crate::core::model::{CheckpointRecord, Expiry, Retention, VmRecord, VmState};
use crate::core::{CoreError, ExecEvent, ExecInput, ExecSpec, ExitStatus, Manager, TtySize};

pub fn vm(v: &VmRecord) -> pb::Vm {
    let state = match v.state {
        VmState::Creating => pb::VmState::Creating,
        VmState::Running => pb::VmState::Running,
        VmState::Paused => pb::VmState::Paused,
        VmState::Stopped => pb::VmState::Stopped,
        VmState::Restoring => pb::VmState::Restoring,
        VmState::Deleting => pb::VmState::Deleting,
        VmState::Hibernated => pb::VmState::Hibernated,
    };
    pb::Vm {
        name: v.name.clone(),
        id: v.id.clone(),
        state: state as i32,
        cpus: v.cpus,
        memory_mib: v.memory_mib,
        created_at: Some(noid::time::from_secs(v.created_at)),
        backend: v.backend.clone(),
        image_id: v.image_id.clone(),
        kernel_release: v.kernel_release.clone(),
        address: v.net.as_ref().map(|n| n.ip.to_string()).unwrap_or_default(),
        checkpoint_retention: Some(retention(v.retention)),
        expires_at: v.expires_at.map(noid::time::from_secs),
        on_expiry: expiry(v.on_expiry) as i32,
        idle_timeout_secs: v.idle_timeout_secs.unwrap_or(0),
        parent_checkpoint: v.parent_checkpoint.clone().unwrap_or_default(),
        vmm_pid: v.process.map(|p| p.pid).unwrap_or(0),
        mac: v.net.as_ref().map(|n| n.mac.clone()).unwrap_or_default(),
        ports: v
            .net
            .iter()
            .flat_map(|n| &n.ports)
            .map(|p| pb::PortMapping {
                host_port: p.host.into(),
                guest_port: p.guest.into(),
            })
            .collect(),
        network_policy: v.net.as_ref().map(|n| n.policy.to_proto()),
        state_reason: v.state_reason.clone().unwrap_or_default(),
        image: v.image.clone(),
    }
}

/// A policy a client sent, checked (rules parsed, the server's default egress when none).
pub fn parse_net_policy(core: &Manager, p: pb::NetworkPolicy) -> Result<NetPolicy, CoreError> {
    let egress =
        Egress::from_proto(p.egress).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
    core.parse_policy(egress, &p.allow, &p.deny, p.isolated)
}

pub fn size(s: pb::TtySize) -> TtySize {
    TtySize {
        rows: s.rows,
        cols: s.cols,
    }
}

/// The VM name and the command of an Exec stream's first message.
pub fn exec_start(s: pb::ExecStart) -> (String, ExecSpec) {
    let spec = ExecSpec {
        argv: s.argv,
        env: s.env.into_iter().collect(),
        cwd: (!s.cwd.is_empty()).then_some(s.cwd),
        stdin: s.stdin,
        tty: s
            .tty
            .then(|| size(s.tty_size.unwrap_or(pb::TtySize { rows: 24, cols: 80 }))),
        timeout: (s.timeout_ms > 0).then(|| Duration::from_millis(s.timeout_ms.into())),
        user: (!s.user.is_empty()).then_some(s.user),
    };
    (s.vm, spec)
}

pub fn exec_input(r: pb::ExecRequest) -> Option<ExecInput> {
    use pb::exec_request::Msg;
    Some(match r.msg? {
        Msg::Stdin(d) => ExecInput::Stdin(d),
        Msg::CloseStdin(_) => ExecInput::CloseStdin,
        Msg::Signal(s) => ExecInput::Signal(s),
        Msg::Resize(s) => ExecInput::Resize(size(s)),
        Msg::Start(_) => return None,
    })
}

pub fn exec_exit(x: ExitStatus) -> pb::ExecExit {
    pb::ExecExit {
        code: x.code,
        signal: x.signal,
        timed_out: x.timed_out,
    }
}

pub fn exec_event(e: ExecEvent) -> pb::ExecResponse {
    use pb::exec_response::Msg;
    let msg = match e {
        ExecEvent::Started { pid } => Msg::Started(pb::ExecStarted { pid }),
        ExecEvent::Stdout(d) => Msg::Stdout(d),
        ExecEvent::Stderr(d) => Msg::Stderr(d),
        ExecEvent::Exit(x) => Msg::Exit(exec_exit(x)),
    };
    pb::ExecResponse { msg: Some(msg) }
}

pub fn checkpoint(c: &CheckpointRecord) -> pb::Checkpoint {
    pb::Checkpoint {
        id: c.id.clone(),
        vm: c.vm_name.clone(),
        label: c.label.clone(),
        created_at: Some(noid::time::from_secs(c.created_at)),
        memory_bytes: c.memory_bytes,
        disk_bytes: c.disk_bytes,
        backend: c.backend.clone(),
        parent_checkpoint: c.parent.clone().unwrap_or_default(),
    }
}

pub fn retention(r: Retention) -> pb::CheckpointRetention {
    pb::CheckpointRetention {
        keep_last: r.keep_last,
        max_age_secs: r.max_age_secs,
    }
}

pub fn parse_retention(r: Option<pb::CheckpointRetention>) -> Retention {
    r.map(|r| Retention {
        keep_last: r.keep_last,
        max_age_secs: r.max_age_secs,
    })
    .unwrap_or_default()
}

pub fn expiry(e: Expiry) -> pb::Expiry {
    match e {
        Expiry::Destroy => pb::Expiry::Destroy,
        Expiry::Hibernate => pb::Expiry::Hibernate,
    }
}

/// The proto's expiry (an enum number); an unknown number is INVALID_ARGUMENT.
pub fn parse_expiry(n: i32) -> Result<Expiry, tonic::Status> {
    match pb::Expiry::try_from(n) {
        Ok(pb::Expiry::Unspecified | pb::Expiry::Destroy) => Ok(Expiry::Destroy),
        Ok(pb::Expiry::Hibernate) => Ok(Expiry::Hibernate),
        Err(_) => Err(tonic::Status::invalid_argument(format!(
            "on_expiry: {n} is not an Expiry"
        ))),
    }
}
