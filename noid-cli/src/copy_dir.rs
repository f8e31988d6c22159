//! `noid cp -r`: a directory into or out of a VM, as a tar stream through an exec of the
//! guest's own `tar` (busybox's in the default image), so modes, symlinks and empty
//! directories come along. As `cp -r`: when the destination is an existing directory the
//! copy goes into it under the source's name, else the destination becomes the copy. A copy
//! out is unpacked by the tar crate, which refuses entries that would land outside the
//! destination.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use noid::v1::{exec_request, exec_response, ExecRequest, ExecStart};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::progress::spinning;

const CHUNK: usize = 256 * 1024;

/// The script that decides where a copy into the guest goes and unpacks it there: into
/// `$1/$2` when `$1` is an existing directory, else into `$1`; never over something that
/// exists. The tree is unpacked into a hidden directory beside its place and renamed into it
/// only when whole: the archive's last entry is the empty file `$3`, so a stream cut short
/// (the host could not read a file, or went away) lacks it even where it stops between
/// entries, which tar takes for a whole archive. A copy that fails half-way leaves nothing.
const UNPACK: &str = r#"d="$1"; if [ -d "$d" ]; then d="$d/$2"; fi
if [ -e "$d" ] || [ -L "$d" ]; then echo "$d: already exists in the VM" >&2; exit 4; fi
p=$(dirname "$d"); t="$p/.noid-cp.$$"
mkdir -p "$p" && mkdir "$t" || exit 1
trap 'rm -rf "$t"; exit 1' TERM INT HUP
tar -C "$t" -xf - || { rm -rf "$t"; exit 1; }
[ -f "$t/$3" ] || { rm -rf "$t"; echo "the copy was cut short" >&2; exit 1; }
if rm "$t/$3" && mv "$t" "$d"; then echo "$d"; else rm -rf "$t"; exit 1; fi"#;
/// Packs directory `$1` of the guest; exits 3 for a plain file (copied as a file instead).
const PACK: &str = r#"if [ -f "$1" ]; then exit 3; fi; if [ ! -d "$1" ]; then echo "$1: no such directory in the VM" >&2; exit 2; fi; tar -C "$1" -cf - ."#;
/// PACK's exit code for a plain file.
const IS_FILE: i32 = 3;

fn start(vm: &str, script: &str, args: &[&str], stdin: bool) -> ExecRequest {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            vm: vm.into(),
            argv,
            stdin,
            ..Default::default()
        })),
    }
}

/// What a finished guest command left: its exit code, stdout and stderr.
struct Finished {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `requests` as an exec, handing stdout to `on_stdout` (or keeping it when none).
async fn run_exec(
    client: &mut noid::client::Client,
    requests: impl futures::Stream<Item = ExecRequest> + Send + 'static,
    mut on_stdout: Option<&mut (dyn FnMut(Vec<u8>) -> Result<()> + Send)>,
) -> Result<Finished> {
    let mut stream = client.exec(requests).await?.into_inner();
    let (mut stdout, mut stderr, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = stream.next().await {
        match msg?.msg {
            Some(exec_response::Msg::Stdout(d)) => match on_stdout.as_mut() {
                Some(f) => f(d)?,
                None => stdout.extend(d),
            },
            Some(exec_response::Msg::Stderr(d)) => stderr.extend(d),
            Some(exec_response::Msg::Exit(e)) => {
                code = Some(if e.signal != 0 { -1 } else { e.code })
            }
            _ => {}
        }
    }
    let code = code.context("the copy's stream ended without its exit status")?;
    Ok(Finished {
        code,
        stdout,
        stderr,
    })
}

fn guest_failure(what: &str, f: &Finished) -> anyhow::Error {
    let why = String::from_utf8_lossy(&f.stderr).trim().to_string();
    match f.code {
        127 => {
            anyhow::anyhow!("{what}: the VM has no tar (a directory copy needs one in the image)")
        }
        _ if why.is_empty() => anyhow::anyhow!("{what} failed in the VM (exit {})", f.code),
        _ => anyhow::anyhow!("{what} failed in the VM: {why}"),
    }
}

/// The name of the empty entry that ends a copy's archive: one no tree would hold.
fn end_marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(".noid-cp-end-{}-{nanos}", std::process::id())
}

fn base_name(path: &Path) -> Result<String> {
    let name = path
        .canonicalize()
        .with_context(|| format!("cannot read {}", path.display()))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("copy a named directory, not /")?;
    Ok(name)
}

/// A pipe from blocking code (the tar builder) to the exec's stdin messages.
struct ChunkWriter {
    tx: mpsc::Sender<ExecRequest>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(ExecRequest {
                msg: Some(exec_request::Msg::Stdin(data)),
            })
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the copy ended"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_chunk()
    }
}

pub async fn copy_in(
    client: &mut noid::client::Client,
    from: &Path,
    vm: &str,
    path: &str,
    json: bool,
) -> Result<()> {
    let name = base_name(from)?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(4);
    let complete = end_marker();
    tx.send(start(vm, UNPACK, &[path, &name, &complete], true))
        .await?;
    let dir = from.to_path_buf();
    let packer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut out = ChunkWriter {
            tx,
            buf: Vec::new(),
        };
        let mut tar = tar::Builder::new(&mut out);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", &dir)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, &complete, std::io::empty())?;
        tar.finish()?;
        drop(tar);
        out.flush()?;
        Ok(())
    });
    let call = run_exec(client, ReceiverStream::new(rx), None);
    let finished = spinning(
        json,
        &format!("Copying {} to {vm}:{path}", from.display()),
        call,
    )
    .await;
    let packed = packer.await?;
    // The server's error first (a missing VM also stops the packer), then the local side's
    // (an unreadable file), then the guest's.
    let finished = finished?;
    packed?;
    if finished.code != 0 {
        return Err(guest_failure("the copy", &finished));
    }
    let landed = String::from_utf8_lossy(&finished.stdout).trim().to_string();
    report(
        json,
        &format!("{}", from.display()),
        &format!("{vm}:{landed}"),
        started,
    );
    Ok(())
}

/// Blocking reader over the chunks of a tar stream that arrive from the guest.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(next) => self.current = std::io::Cursor::new(next),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// What a copy of a guest directory did.
pub enum Copied {
    Tree,
    /// The guest path is a file: nothing was copied.
    NotADirectory,
}

pub async fn copy_out(
    client: &mut noid::client::Client,
    vm: &str,
    path: &str,
    to: &Path,
    json: bool,
) -> Result<Copied> {
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .context("copy a named directory of the VM, not /")?
        .to_string();
    let target: PathBuf = if to.is_dir() {
        to.join(&name)
    } else {
        to.to_path_buf()
    };
    if target.exists() {
        bail!(
            "{} exists already: noid cp -r does not merge into it",
            target.display()
        );
    }
    let started = Instant::now();
    // Unpacked beside the destination first, then renamed: an interrupted copy leaves no
    // half directory under its name.
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".noid-cp-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let into = staging.path().to_path_buf();
    let unpacker = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut archive = tar::Archive::new(ChunkReader {
            rx,
            current: std::io::Cursor::new(Vec::new()),
        });
        archive.set_preserve_permissions(true);
        archive.unpack(&into).context("cannot unpack the copy")?;
        Ok(())
    });
    // Waits for the unpacker when it falls behind (off the async runtime's back).
    let mut forward = move |d: Vec<u8>| -> Result<()> {
        tokio::task::block_in_place(|| tx.send(d))
            .map_err(|_| anyhow::anyhow!("the copy's unpacking stopped"))
    };
    let requests = futures::stream::iter([start(vm, PACK, &[path], false)]);
    let call = run_exec(client, requests, Some(&mut forward));
    let finished = spinning(json, &format!("Copying {vm}:{path}"), call).await;
    drop(forward);
    let unpacked = unpacker.await?;
    let finished = finished?;
    if finished.code == IS_FILE {
        // The staging directory goes with its guard; the caller copies the file.
        return Ok(Copied::NotADirectory);
    }
    if finished.code != 0 {
        return Err(guest_failure("the copy", &finished));
    }
    unpacked?;
    std::fs::rename(staging.path(), &target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    // The directory was renamed away; nothing is left for the guard to remove.
    let _ = staging.keep();
    report(
        json,
        &format!("{vm}:{path}"),
        &target.display().to_string(),
        started,
    );
    Ok(Copied::Tree)
}

fn report(json: bool, from: &str, to: &str, started: Instant) {
    if json {
        crate::output::print_json(&json!({ "from": from, "to": to }));
    } else {
        println!(
            "Copied {from} to {to} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}
