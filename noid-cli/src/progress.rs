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

/// A byte counter for an upload of `total` bytes.
pub fn bytes(json: bool, msg: &str, total: u64) -> indicatif::ProgressBar {
    if json || !shown() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bytes}/{total_bytes} ({bytes_per_sec}) {elapsed}",
        )
        .expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb
}

/// A spinner whose message is the latest progress line of the server.
pub fn line(json: bool) -> indicatif::ProgressBar {
    if json || !shown() {
        return indicatif::ProgressBar::hidden();
    }
    start("")
}

fn shown() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

fn start(msg: &str) -> indicatif::ProgressBar {
    if !shown() {
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
