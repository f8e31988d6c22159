//! The serial consoles of running VMs. One task per VM holds the VMM's console socket: it
//! writes the output to a bounded log on disk (`console.log` plus one rotated
//! `console.log.1`, so a guest that floods its console cannot fill the host's disk), passes it
//! on to every attached client, and writes their input to the guest. While the server is down
//! the console is not read and its output is lost; the task reconnects when it comes back, and
//! after a restore (a new VMM process).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use noid::coalesce::{read_coalesced, LINGER};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

pub const LOG: &str = "console.log";
pub const LOG_ROTATED: &str = "console.log.1";

struct Console {
    output: broadcast::Sender<Vec<u8>>,
    input: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

/// The consoles of all VMs, by VM id.
pub struct Consoles {
    max_log_bytes: u64,
    by_vm: Mutex<HashMap<String, Console>>,
}

/// An attachment to one console: live output and a way to type.
pub struct Attachment {
    pub output: broadcast::Receiver<Vec<u8>>,
    pub input: mpsc::Sender<Vec<u8>>,
}

impl Consoles {
    pub fn new(max_log_bytes: u64) -> Self {
        Self {
            max_log_bytes,
            by_vm: Mutex::new(HashMap::new()),
        }
    }

    /// Starts following the console of VM `id` whose files are in `dir` (idempotent).
    pub fn watch(&self, id: &str, dir: &Path, socket: PathBuf) {
        let mut map = self.by_vm.lock().expect("consoles lock");
        if map.get(id).is_some_and(|c| !c.task.is_finished()) {
            return;
        }
        let (output, _) = broadcast::channel(256);
        let (input, input_rx) = mpsc::channel(64);
        let log = BoundedLog {
            dir: dir.to_path_buf(),
            max: self.max_log_bytes,
        };
        let task = tokio::spawn(follow(socket, log, output.clone(), input_rx));
        map.insert(
            id.to_string(),
            Console {
                output,
                input,
                task,
            },
        );
    }

    /// Stops following the console of VM `id`.
    pub fn forget(&self, id: &str) {
        if let Some(c) = self.by_vm.lock().expect("consoles lock").remove(id) {
            c.task.abort();
        }
    }

    pub fn attach(&self, id: &str) -> Option<Attachment> {
        let map = self.by_vm.lock().expect("consoles lock");
        map.get(id).map(|c| Attachment {
            output: c.output.subscribe(),
            input: c.input.clone(),
        })
    }
}

/// The on-disk log: appends go to `console.log`; past `max` bytes it becomes `console.log.1`.
struct BoundedLog {
    dir: PathBuf,
    max: u64,
}

impl BoundedLog {
    fn append(&self, data: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(LOG);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len + data.len() as u64 > self.max && len > 0 {
            std::fs::rename(&path, self.dir.join(LOG_ROTATED))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // A single write larger than the bound keeps only its tail.
        let keep = data.len().saturating_sub(self.max as usize);
        f.write_all(&data[keep..])
    }
}

/// The kept console output of a VM, oldest first.
pub fn history(dir: &Path) -> Vec<u8> {
    let mut out = std::fs::read(dir.join(LOG_ROTATED)).unwrap_or_default();
    out.extend(std::fs::read(dir.join(LOG)).unwrap_or_default());
    out
}

async fn follow(
    socket: PathBuf,
    log: BoundedLog,
    output: broadcast::Sender<Vec<u8>>,
    mut input: mpsc::Receiver<Vec<u8>>,
) {
    loop {
        if !log.dir.exists() {
            return;
        }
        let stream = match UnixStream::connect(&socket).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (mut r, mut w) = stream.into_split();
        // Reading and typing run side by side; a read is never cut short (it may hold a
        // burst of output gathered into one message).
        let reading = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match read_coalesced(&mut r, &mut buf, LINGER).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Err(e) = log.append(&buf[..n]) {
                            tracing::warn!("console log {}: {e}", log.dir.display());
                        }
                        let _ = output.send(buf[..n].to_vec());
                    }
                }
            }
        };
        let typing = async {
            while let Some(data) = input.recv().await {
                if w.write_all(&data).await.is_err() {
                    return;
                }
            }
            // No one can type any more: keep reading.
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = reading => {}
            () = typing => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_stays_within_twice_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = BoundedLog {
            dir: dir.path().to_path_buf(),
            max: 1000,
        };
        for i in 0..500 {
            log.append(format!("line {i}\n").as_bytes()).unwrap();
        }
        let a = std::fs::metadata(dir.path().join(LOG)).unwrap().len();
        let b = std::fs::metadata(dir.path().join(LOG_ROTATED))
            .unwrap()
            .len();
        assert!(a <= 1000 && b <= 1000, "{a} {b}");
        let h = String::from_utf8(history(dir.path())).unwrap();
        assert!(h.ends_with("line 499\n"));
        log.append(&vec![b'x'; 5000]).unwrap();
        assert!(std::fs::metadata(dir.path().join(LOG)).unwrap().len() <= 1000);
    }
}
