//! Waiting for the guest to settle after its boot, before the host freezes it into a boot
//! snapshot. Whatever still runs at that moment (a login shell reading its profile, which
//! starts `id` and `mesg` from the disk) runs again in every VM started from the snapshot,
//! and under emulation that costs each of them tens of milliseconds.
//!
//! Settled means: for a quiet spell on end, the kernel's counters in `/proc/stat` showed no
//! runnable task but the caller (`procs_running` 1), none waiting on I/O (`procs_blocked`)
//! and no new task (`processes`, the forks since boot).

use std::time::{Duration, Instant};

/// How often the counters are read.
const EVERY: Duration = Duration::from_millis(10);

/// The counters of one reading of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub running: u64,
    pub blocked: u64,
    pub forks: u64,
}

impl Sample {
    /// Reads the counters out of `/proc/stat`'s text.
    pub fn parse(stat: &str) -> Option<Sample> {
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        Some(Sample {
            running: field("procs_running ")?,
            blocked: field("procs_blocked ")?,
            forks: field("processes ")?,
        })
    }

    fn read() -> Option<Sample> {
        Sample::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }
}

/// Counts the quiet readings in a row; a busy one starts the count again.
#[derive(Debug)]
pub struct QuietSpell {
    needed: u32,
    streak: u32,
    last_forks: Option<u64>,
}

impl QuietSpell {
    /// A spell of `needed` quiet readings after the first.
    pub fn new(needed: u32) -> Self {
        Self {
            needed: needed.max(1),
            streak: 0,
            last_forks: None,
        }
    }

    /// Takes one reading; says whether the spell is complete.
    pub fn observe(&mut self, s: Sample) -> bool {
        let forked = self.last_forks.is_some_and(|f| f != s.forks);
        let quiet = self.last_forks.is_some() && s.running <= 1 && s.blocked == 0 && !forked;
        self.last_forks = Some(s.forks);
        self.streak = if quiet { self.streak + 1 } else { 0 };
        self.streak >= self.needed
    }
}

/// Waits until the guest has been quiet for `quiet`, or `timeout` has passed; says which,
/// and how long it waited.
pub async fn settle(quiet: Duration, timeout: Duration) -> (bool, Duration) {
    let started = Instant::now();
    let needed = (quiet.as_millis() / EVERY.as_millis()).max(1);
    let mut spell = QuietSpell::new(u32::try_from(needed).unwrap_or(u32::MAX));
    while started.elapsed() < timeout {
        match Sample::read() {
            Some(s) if spell.observe(s) => return (true, started.elapsed()),
            Some(_) => {}
            // No /proc/stat to judge by: nothing to wait for.
            None => return (false, started.elapsed()),
        }
        tokio::time::sleep(EVERY).await;
    }
    (false, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  1 2 3 4\nintr 5\nctxt 77\nbtime 1\nprocesses 118\n\
                        procs_running 2\nprocs_blocked 1\nsoftirq 0 0\n";

    fn sample(running: u64, blocked: u64, forks: u64) -> Sample {
        Sample {
            running,
            blocked,
            forks,
        }
    }

    #[test]
    fn reads_the_counters() {
        assert_eq!(Sample::parse(STAT), Some(sample(2, 1, 118)));
        assert_eq!(Sample::parse("cpu 1 2\n"), None);
    }

    #[test]
    fn a_spell_needs_quiet_readings_in_a_row() {
        let mut spell = QuietSpell::new(3);
        // The first reading only sets the fork count.
        assert!(!spell.observe(sample(1, 0, 100)));
        assert!(!spell.observe(sample(1, 0, 100)));
        assert!(!spell.observe(sample(1, 0, 100)));
        assert!(spell.observe(sample(1, 0, 100)));
    }

    #[test]
    fn work_starts_the_spell_again() {
        for busy in [sample(2, 0, 100), sample(1, 1, 100), sample(1, 0, 101)] {
            let mut spell = QuietSpell::new(2);
            spell.observe(sample(1, 0, 100));
            spell.observe(sample(1, 0, 100));
            assert!(!spell.observe(busy), "{busy:?} is not quiet");
            assert!(!spell.observe(sample(1, 0, busy.forks)));
            assert!(spell.observe(sample(1, 0, busy.forks)));
        }
    }
}
