//! The serial consoles of running VMs. One task per VM holds the VMM's console socket: it
//! writes the output to a bounded log on disk (`console.log` plus one rotated
//! `console.log.1`, so a guest that floods its console cannot fill the host's disk), passes it
//! on to every attached client, and writes their input to the guest. While the server is down
//! the console is not read and its output is lost; the task reconnects when it comes back, and
//! after a restore (a new VMM process). Beside each log file an index says when each part
//! came (`crate::console_times`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use noid::coalesce::{read_coalesced, LINGER};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

pub const LOG: &str = "console.log";
pub const LOG_ROTATED: &str = "console.log.1";
const TIMES: &str = "console.times";
const TIMES_ROTATED: &str = "console.times.1";

/// Console output as it came from the guest, and when (the host's clock).
#[derive(Clone, Debug)]
pub struct Chunk {
    pub at: SystemTime,
    pub data: Vec<u8>,
}

struct Console {
    output: broadcast::Sender<Chunk>,
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
    pub output: broadcast::Receiver<Chunk>,
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
/// Each append is also recorded with its time in `console.times` (rotated with the log).
struct BoundedLog {
    dir: PathBuf,
    max: u64,
}

impl BoundedLog {
    fn append(&self, data: &[u8], at: SystemTime) -> std::io::Result<()> {
        let path = self.dir.join(LOG);
        let mut len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len + data.len() as u64 > self.max && len > 0 {
            std::fs::rename(&path, self.dir.join(LOG_ROTATED))?;
            // An index without its log would give the next log's lines wrong times.
            if let Err(e) = std::fs::rename(self.dir.join(TIMES), self.dir.join(TIMES_ROTATED)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e);
                }
                let _ = std::fs::remove_file(self.dir.join(TIMES_ROTATED));
            }
            len = 0;
        }
        crate::console_times::record(&self.dir.join(TIMES), len, at)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // A single write larger than the bound keeps only its tail.
        let keep = data.len().saturating_sub(self.max as usize);
        f.write_all(&data[keep..])
    }
}

/// Starts a VM's console log with `text` (the boot a boot snapshot froze), as of now.
pub fn begin_log(dir: &Path, text: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(LOG), text)?;
    let _ = std::fs::remove_file(dir.join(TIMES));
    crate::console_times::record(&dir.join(TIMES), 0, SystemTime::now())
}

/// The kept console output of a VM, oldest first.
pub fn history(dir: &Path) -> Vec<u8> {
    let mut out = std::fs::read(dir.join(LOG_ROTATED)).unwrap_or_default();
    out.extend(std::fs::read(dir.join(LOG)).unwrap_or_default());
    out
}

/// The kept console output of a VM as lines with the time each began, oldest first.
pub fn timed_history(dir: &Path) -> Vec<crate::console_times::Line> {
    let mut out = crate::console_times::lines(&dir.join(LOG_ROTATED), &dir.join(TIMES_ROTATED));
    out.extend(crate::console_times::lines(
        &dir.join(LOG),
        &dir.join(TIMES),
    ));
    out
}

async fn follow(
    socket: PathBuf,
    log: BoundedLog,
    output: broadcast::Sender<Chunk>,
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
                        let at = SystemTime::now();
                        if let Err(e) = log.append(&buf[..n], at) {
                            tracing::warn!("console log {}: {e}", log.dir.display());
                        }
                        let _ = output.send(Chunk {
                            at,
                            data: buf[..n].to_vec(),
                        });
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
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..500 {
            let at = t0 + Duration::from_secs(i);
            log.append(format!("line {i}\n").as_bytes(), at).unwrap();
        }
        let a = std::fs::metadata(dir.path().join(LOG)).unwrap().len();
        let b = std::fs::metadata(dir.path().join(LOG_ROTATED))
            .unwrap()
            .len();
        assert!(a <= 1000 && b <= 1000, "{a} {b}");
        let h = String::from_utf8(history(dir.path())).unwrap();
        assert!(h.ends_with("line 499\n"));
        // Every kept line has the time of its own write, across the rotation.
        let lines = timed_history(dir.path());
        assert_eq!(lines.len(), h.lines().count());
        for line in &lines {
            let i: u64 = String::from_utf8_lossy(&line.text)
                .trim()
                .strip_prefix("line ")
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(line.at, t0 + Duration::from_secs(i), "line {i}");
        }
        log.append(&vec![b'x'; 5000], t0).unwrap();
        assert!(std::fs::metadata(dir.path().join(LOG)).unwrap().len() <= 1000);
    }
}
