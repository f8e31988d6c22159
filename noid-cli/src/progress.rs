//! Progress for long operations: a spinner with the elapsed time on stderr while a call
//! runs, shown only to people (not with `--json`, not when stderr is no terminal).

use std::future::Future;
use std::time::Duration;

/// Runs `work` with a spinner saying `msg`; the spinner is gone once `work` is done.
pub async fn spinning<T>(json: bool, msg: &str, work: impl Future<Output = T>) -> T {
    let spinner = (!json).then(|| start(msg));
    let result = work.await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    result
}

fn start(msg: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}
