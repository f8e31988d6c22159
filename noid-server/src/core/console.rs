//! Console and logs of the caller's VMs, over `crate::console`.

use super::{CoreError, Manager, Result, User};
use crate::console::{history, Attachment};
use crate::core::model::{VmRecord, VmState};

/// The last `n` lines of `text`.
fn tail_lines(text: &[u8], n: usize) -> Vec<u8> {
    if n == 0 {
        return Vec::new();
    }
    let mut seen = 0;
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return text[i + 1..].to_vec();
            }
        }
    }
    text.to_vec()
}

impl Manager {
    /// Starts following a running VM's console.
    pub(super) fn watch_console(&self, vm: &VmRecord) {
        let dir = self.layout.vm(&vm.id);
        self.consoles
            .watch(&vm.id, &dir, self.vmm.console_socket(&dir));
    }

    /// The VM's kept console output (the last `tail` lines when given), and live output to
    /// follow when `follow` (which wakes a hibernated VM).
    pub async fn logs(
        &self,
        user: &User,
        name: &str,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<(Vec<u8>, Option<Attachment>)> {
        let mut vm = self.get_vm(user, name)?;
        if follow && vm.state == VmState::Hibernated {
            // Following a hibernated VM's output wakes it, as any call that needs it does.
            vm = self.running_vm(user, name).await?;
        }
        // Subscribe first: a line written meanwhile may come twice, never not at all.
        let live = if follow {
            self.consoles.attach(&vm.id)
        } else {
            None
        };
        let text = history(&self.layout.vm(&vm.id));
        let text = match tail {
            Some(n) => tail_lines(&text, n),
            None => text,
        };
        Ok((text, live))
    }

    /// Attaches to a running VM's console: its recent output, then live output and input. The
    /// VM counts as busy until the returned hold drops.
    pub async fn console(
        &self,
        user: &User,
        name: &str,
    ) -> Result<(Vec<u8>, Attachment, super::Hold)> {
        let vm = self.running_vm(user, name).await?;
        self.watch_console(&vm);
        let attachment = self.consoles.attach(&vm.id).ok_or_else(|| {
            CoreError::Unavailable(format!("console of {name:?} is not available"))
        })?;
        let text = history(&self.layout.vm(&vm.id));
        let recent = text[text.len().saturating_sub(4096)..].to_vec();
        Ok((recent, attachment, self.activity.hold(&vm.id)))
    }
}

impl Manager {
    /// Passes a client's window size to the guest's serial console.
    pub async fn resize_console(
        &self,
        user: &User,
        name: &str,
        size: super::TtySize,
    ) -> Result<()> {
        let vm = self.get_vm(user, name)?;
        self.agent(&vm).resize_console(size).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::tail_lines;

    #[test]
    fn tails() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_lines(b"a\n", 5), b"a\n");
        assert_eq!(tail_lines(b"a\nb\n", 0), b"");
    }
}
