//! Time limits: a VM's time limit (it is destroyed or hibernated when the limit passes) and
//! its idle timeout (it hibernates after so long without a call). Both are kept in the VM's
//! record, so they survive a server restart, and a round every few seconds enforces them.

use std::sync::Arc;
use std::time::Duration;

use super::model::{Expiry, VmRecord, VmState};
use super::run_state::PAUSED_BY_REQUEST;
use super::vms::now_secs;
use super::{CoreError, Manager, Result, User};

/// How often limits are checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A change to a VM's time limits; None leaves a part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeLimits {
    /// A new time limit from now; `Some(0)` removes it.
    pub ttl_secs: Option<u64>,
    pub on_expiry: Option<Expiry>,
    /// `Some(0)`: no idle timeout.
    pub idle_timeout_secs: Option<u64>,
}

/// What a round does to one VM, if anything.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Destroy,
    /// Hibernate because the time limit passed (and clear it).
    HibernateExpired,
    HibernateIdle,
}

/// What is due for `vm` at `now`, when it has been without a call for `idle`. A VM that QEMU
/// paused on a host I/O error cannot be saved: its limit waits until it runs again.
fn due(vm: &VmRecord, now: i64, idle: Duration) -> Option<Due> {
    let paused_by_user = vm.state_reason.as_deref() == Some(PAUSED_BY_REQUEST);
    let live = vm.state == VmState::Running || (vm.state == VmState::Paused && paused_by_user);
    if vm.expires_at.is_some_and(|t| t <= now) {
        return match vm.on_expiry {
            Expiry::Destroy => Some(Due::Destroy),
            Expiry::Hibernate if live => Some(Due::HibernateExpired),
            Expiry::Hibernate => None,
        };
    }
    match vm.idle_timeout_secs {
        Some(t) if t > 0 && vm.state == VmState::Running && idle >= Duration::from_secs(t) => {
            Some(Due::HibernateIdle)
        }
        _ => None,
    }
}

impl Manager {
    /// Changes the time limits of the caller's VM `name`.
    pub async fn set_time_limits(
        &self,
        user: &User,
        name: &str,
        change: TimeLimits,
    ) -> Result<VmRecord> {
        let (mut vm, _guard) = self.locked_vm(user, name).await?;
        if vm.state == VmState::Deleting {
            return Err(CoreError::FailedPrecondition(format!(
                "VM {name:?} is being destroyed"
            )));
        }
        if let Some(ttl) = change.ttl_secs {
            vm.expires_at = (ttl > 0).then(|| now_secs().saturating_add(ttl as i64));
        }
        if let Some(on_expiry) = change.on_expiry {
            vm.on_expiry = on_expiry;
        }
        if let Some(idle) = change.idle_timeout_secs {
            vm.idle_timeout_secs = (idle > 0).then_some(idle);
        }
        self.store.update_vm(&vm)?;
        tracing::info!(
            "VM {name}: time limit {}, idle timeout {}",
            vm.expires_at.map_or("none".into(), |t| format!(
                "in {}s, then {}",
                t - now_secs(),
                vm.on_expiry.as_str()
            )),
            vm.idle_timeout_secs
                .map_or("none".into(), |t| format!("{t}s"))
        );
        Ok(vm)
    }

    /// Starts the round; it ends with the core.
    pub(super) fn watch_time_limits(self: &Arc<Self>) {
        super::flow::every(self, CHECK_EVERY, |core| async move {
            core.time_limits_round().await
        });
    }

    async fn time_limits_round(self: &Arc<Self>) {
        let Ok(vms) = self.store.list_vms(None) else {
            return;
        };
        for vm in vms {
            let Some(what) = due(&vm, now_secs(), self.activity.idle_for(&vm.id)) else {
                continue;
            };
            let user = User(vm.owner.clone());
            let result = match what {
                Due::Destroy => {
                    tracing::info!("VM {} reached its time limit: destroying it", vm.name);
                    self.delete_vm(&user, &vm.name).await
                }
                Due::HibernateExpired | Due::HibernateIdle => {
                    let why = if what == Due::HibernateIdle {
                        format!(
                            "no call for {}",
                            humantime::format_duration(Duration::from_secs(
                                vm.idle_timeout_secs.unwrap_or(0)
                            ))
                        )
                    } else {
                        "its time limit passed".to_string()
                    };
                    tracing::info!("VM {}: {why}; hibernating it", vm.name);
                    self.hibernate_for_limit(&vm, what == Due::HibernateExpired)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::warn!("VM {}: time limit: {e}", vm.name);
            }
        }
    }

    /// Hibernates `vm` for a limit, unless a flow holds it (the next round tries again) or a
    /// call came meanwhile; `expired`: the time limit is spent and goes.
    async fn hibernate_for_limit(self: &Arc<Self>, vm: &VmRecord, expired: bool) -> Result<()> {
        let Some(_guard) = self.try_lock_vm(&vm.id) else {
            return Ok(());
        };
        let Some(mut vm) = self
            .store
            .find_vm(&vm.owner, &vm.name)?
            .filter(|v| v.id == vm.id)
        else {
            return Ok(());
        };
        if due(&vm, now_secs(), self.activity.idle_for(&vm.id)).is_none() {
            return Ok(());
        }
        if expired {
            vm.expires_at = None;
            self.store.update_vm(&vm)?;
        }
        self.hibernate_locked(&mut vm).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_due() {
        let mut vm = VmRecord::for_test("1", "u", "v");
        let minute = Duration::from_secs(60);
        assert_eq!(due(&vm, 1000, minute), None, "no limits");
        vm.expires_at = Some(1000);
        assert_eq!(due(&vm, 999, minute), None);
        assert_eq!(due(&vm, 1000, minute), Some(Due::Destroy));
        vm.on_expiry = Expiry::Hibernate;
        assert_eq!(due(&vm, 1000, minute), Some(Due::HibernateExpired));
        vm.state = VmState::Hibernated;
        assert_eq!(due(&vm, 1000, minute), None, "already hibernated");
        vm.expires_at = None;
        vm.state = VmState::Running;
        vm.idle_timeout_secs = Some(60);
        assert_eq!(due(&vm, 1000, Duration::from_secs(59)), None);
        assert_eq!(due(&vm, 1000, minute), Some(Due::HibernateIdle));
        vm.state = VmState::Paused;
        assert_eq!(
            due(&vm, 1000, minute),
            None,
            "a paused VM is not idle-hibernated"
        );
        vm.idle_timeout_secs = None;
        vm.expires_at = Some(1000);
        vm.state_reason = Some(PAUSED_BY_REQUEST.into());
        assert_eq!(due(&vm, 1000, minute), Some(Due::HibernateExpired));
        vm.state_reason = Some(crate::core::run_state::IO_ERROR_REASON.into());
        assert_eq!(
            due(&vm, 1000, minute),
            None,
            "paused on an I/O error: it waits"
        );
    }
}
