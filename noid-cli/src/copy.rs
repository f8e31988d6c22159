//! `noid cp SRC DST`: a file into a VM (`noid cp ./app.tar my-vm:/root/app.tar`) or out of
//! one (`noid cp my-vm:/var/log/app.log .`). `:PATH` means the active VM; `-` is stdin or
//! stdout. A guest path ending in `/` (or a local directory) takes the source's file name.
//! Downloads are written to a temporary file and renamed, so an interrupted copy leaves no
//! partial file under the destination's name.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use noid::v1::{copy_in_request, CopyInHeader, CopyInRequest, CopyOutRequest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::progress::spinning;

const CHUNK: usize = 256 * 1024;

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    Local(PathBuf),
    /// `vm` is None for `:PATH` (the active VM).
    Guest {
        vm: Option<String>,
        path: String,
    },
}

/// `VM:/path` or `:/path` is in a VM (VM being a valid VM name); anything else is local
/// (write `./a:/b` for a local file with such a name).
pub fn parse_place(s: &str) -> Place {
    if let Some((vm, path)) = s.split_once(':') {
        if path.starts_with('/') {
            if vm.is_empty() {
                return Place::Guest {
                    vm: None,
                    path: path.into(),
                };
            }
            if noid::names::validate_name("VM", vm).is_ok() {
                return Place::Guest {
                    vm: Some(vm.into()),
                    path: path.into(),
                };
            }
        }
    }
    Place::Local(s.into())
}

fn file_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / 1048576.0)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

pub async fn run(
    client: &mut noid::client::Client,
    src: &str,
    dst: &str,
    recursive: bool,
    json: bool,
) -> Result<()> {
    let resolve = |vm: Option<String>| crate::config::resolve_vm(vm);
    match (parse_place(src), parse_place(dst)) {
        (Place::Local(from), Place::Guest { vm, path }) if recursive && from.is_dir() => {
            crate::copy_dir::copy_in(client, &from, &resolve(vm)?, &path, json).await
        }
        (Place::Guest { vm, path }, Place::Local(to)) if recursive => {
            let vm = resolve(vm)?;
            match crate::copy_dir::copy_out(client, &vm, &path, &to, json).await? {
                crate::copy_dir::Copied::Tree => Ok(()),
                // As cp -r does with a file: copy it.
                crate::copy_dir::Copied::NotADirectory => {
                    copy_out(client, &vm, &path, &to, json).await
                }
            }
        }
        (Place::Local(from), Place::Guest { vm, path }) => {
            copy_in(client, &from, &resolve(vm)?, &path, json).await
        }
        (Place::Guest { vm, path }, Place::Local(to)) => {
            copy_out(client, &resolve(vm)?, &path, &to, json).await
        }
        (Place::Local(_), Place::Local(_)) => {
            bail!("one side must be in a VM: VM:/path (or :/path for the active VM)")
        }
        (Place::Guest { .. }, Place::Guest { .. }) => {
            bail!("copy between two VMs through a local file: noid cp VM:/a f; noid cp f VM2:/b")
        }
    }
}

async fn copy_in(
    client: &mut noid::client::Client,
    from: &Path,
    vm: &str,
    path: &str,
    json: bool,
) -> Result<()> {
    let stdin = from == Path::new("-");
    let (mut reader, mode): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, u32) = if stdin {
        (Box::new(tokio::io::stdin()), 0o644)
    } else {
        let f = tokio::fs::File::open(from)
            .await
            .with_context(|| format!("cannot read {}", from.display()))?;
        let meta = f.metadata().await?;
        if meta.is_dir() {
            bail!("{} is a directory: copy it with noid cp -r", from.display());
        }
        (Box::new(f), meta.permissions().mode() & 0o7777)
    };
    let source_name = from
        .file_name()
        .filter(|_| !stdin)
        .map(|n| n.to_string_lossy().into_owned());
    let path = if path.ends_with('/') {
        let name = source_name
            .as_deref()
            .context("give the guest file's full path when copying from stdin")?;
        format!("{path}{name}")
    } else {
        path.to_string()
    };
    let header = CopyInRequest {
        msg: Some(copy_in_request::Msg::Header(CopyInHeader {
            vm: vm.into(),
            path: path.clone(),
            mode,
            // An existing directory in the guest takes the file under this name.
            source_name: source_name.unwrap_or_default(),
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header).await.ok();
    let reading = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                // Only now is the upload complete; without this the server writes nothing.
                let end = CopyInRequest {
                    msg: Some(copy_in_request::Msg::End(true)),
                };
                let _ = tx.send(end).await;
                return Ok::<_, std::io::Error>(());
            }
            buf.truncate(n);
            let msg = CopyInRequest {
                msg: Some(copy_in_request::Msg::Data(buf)),
            };
            if tx.send(msg).await.is_err() {
                return Ok(());
            }
        }
    });
    let started = Instant::now();
    let call = client.copy_in(tokio_stream::wrappers::ReceiverStream::new(rx));
    let result = spinning(json, &format!("Copying to {vm}:{path}"), call).await;
    reading.await?.context("reading the local file")?;
    let done = result?.into_inner();
    let (bytes, path) = (done.bytes_written, done.path);
    if json {
        crate::output::print_json(&json!({"vm": vm, "path": path, "bytes": bytes}));
    } else {
        println!(
            "Copied {} to {vm}:{path} in {:.2}s",
            human(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn copy_out(
    client: &mut noid::client::Client,
    vm: &str,
    path: &str,
    to: &Path,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let mut chunks = client
        .copy_out(CopyOutRequest {
            vm: vm.into(),
            path: path.into(),
        })
        .await?
        .into_inner();
    if to == Path::new("-") {
        let mut out = tokio::io::stdout();
        while let Some(c) = chunks.next().await {
            out.write_all(&c?.data).await?;
        }
        out.flush().await?;
        return Ok(());
    }
    let target = if to.is_dir() {
        to.join(file_name(path).context("the guest path names no file")?)
    } else {
        to.to_path_buf()
    };
    let tmp = target.with_file_name(format!(
        ".{}.noid-tmp",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let copying = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut bytes = 0u64;
        while let Some(c) = chunks.next().await {
            let data = c?.data;
            bytes += data.len() as u64;
            file.write_all(&data).await?;
        }
        file.sync_all().await?;
        tokio::fs::rename(&tmp, &target)
            .await
            .with_context(|| format!("cannot write {}", target.display()))?;
        Ok::<_, anyhow::Error>(bytes)
    };
    let result = spinning(json, &format!("Copying {vm}:{path}"), copying).await;
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if json {
        crate::output::print_json(&json!({"vm": vm, "path": path, "file": target, "bytes": bytes}));
    } else {
        println!(
            "Copied {} from {vm}:{path} to {} in {:.2}s",
            human(bytes),
            target.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_guest_paths_from_local_ones() {
        assert_eq!(
            parse_place("web:/root/a"),
            Place::Guest {
                vm: Some("web".into()),
                path: "/root/a".into()
            }
        );
        assert_eq!(
            parse_place(":/tmp/x"),
            Place::Guest {
                vm: None,
                path: "/tmp/x".into()
            }
        );
        for local in ["./a:/b", "a.txt", "Web:/x", "web:relative", "-"] {
            assert_eq!(parse_place(local), Place::Local(local.into()), "{local}");
        }
    }
}
