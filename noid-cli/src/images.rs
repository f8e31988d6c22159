//! The image commands: `noid images`, `noid image inspect|rm|import|build`. Imports and builds
//! show the upload and the server's progress lines as they come.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use noid::client::Client;
use noid::v1 as pb;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::output;

#[derive(clap::Subcommand, Debug)]
pub enum ImageAction {
    /// Show one image: its source, sizes and run settings.
    Inspect { name: String },
    /// Remove an image (refused while a VM or checkpoint uses it).
    Rm { name: String },
    /// Make an image from an archive of `docker save`, `podman save` or `skopeo copy ...
    /// oci-archive:` (gzip or plain layers).
    Import {
        name: String,
        file: std::path::PathBuf,
        /// Root disk size, e.g. 2G or 512M [default: what the files need plus 256 MiB]
        #[arg(long, value_name = "SIZE")]
        disk: Option<String>,
    },
    /// Make an image by installing a Debian suite (noid image build NAME --debian bookworm
    /// --packages python3,git) or from a Dockerfile (noid image build NAME -f Dockerfile
    /// [CONTEXT]).
    Build {
        name: String,
        /// The Debian suite (bookworm, trixie, ...).
        #[arg(
            long,
            value_name = "SUITE",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        debian: Option<String>,
        /// A Dockerfile to build (FROM an image here; RUN, COPY, ADD, ENV, WORKDIR, USER,
        /// ENTRYPOINT, CMD, ARG).
        #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
        file: Option<std::path::PathBuf>,
        /// The directory COPY and ADD take files from [default: the Dockerfile's directory]
        #[arg(requires = "file")]
        context: Option<std::path::PathBuf>,
        /// A value for one of the Dockerfile's ARGs (repeatable).
        #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "file")]
        build_args: Vec<String>,
        /// Packages to install, comma separated.
        #[arg(long, value_delimiter = ',', value_name = "PKG,...")]
        packages: Vec<String>,
        /// Root disk size, e.g. 2G [default: what the files need plus 256 MiB]
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
    },
}

/// "2G", "512M", "1024K" or plain bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid size {s:?}: use e.g. 2G or 512M"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => bail!("invalid size {s:?}: use e.g. 2G or 512M"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

pub async fn list(client: &mut Client, json: bool) -> Result<()> {
    let resp = client
        .list_images(pb::ListImagesRequest::default())
        .await
        .map_err(crate::status)?
        .into_inner();
    if json {
        output::print_message(&resp);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.id.clone(),
                size_text(i.disk_bytes),
                output::age(i.created_at.as_ref()),
                i.source.clone(),
            ]
        })
        .collect();
    output::table(&["NAME", "ID", "DISK", "CREATED", "SOURCE"], &rows);
    Ok(())
}

pub async fn run(client: &mut Client, action: ImageAction, json: bool) -> Result<()> {
    match action {
        ImageAction::Inspect { name } => {
            let image = client
                .get_image(pb::GetImageRequest { name })
                .await
                .map_err(crate::status)?
                .into_inner();
            if json {
                output::print_message(&image);
            } else {
                details(&image);
            }
        }
        ImageAction::Rm { name } => {
            client
                .delete_image(pb::DeleteImageRequest { name: name.clone() })
                .await
                .map_err(crate::status)?;
            if json {
                output::print_json(&json!({"removed": name}));
            } else {
                println!("Removed image {name}");
            }
        }
        ImageAction::Import { name, file, disk } => {
            noid::names::validate_name("image", &name)?;
            let disk_bytes = disk.as_deref().map(parse_size).transpose()?.unwrap_or(0);
            import(client, name, &file, disk_bytes, json).await?
        }
        ImageAction::Build {
            name,
            file: Some(file),
            context,
            build_args,
            ..
        } => {
            noid::names::validate_name("image", &name)?;
            dockerfile(client, name, &file, context, &build_args, json).await?
        }
        ImageAction::Build {
            name,
            debian,
            packages,
            size,
            ..
        } => {
            noid::names::validate_name("image", &name)?;
            let debian = debian.unwrap_or_default();
            let disk_bytes = size.as_deref().map(parse_size).transpose()?.unwrap_or(0);
            let request = pb::BuildImageRequest {
                name: name.clone(),
                debian_suite: debian,
                packages,
                disk_bytes,
            };
            let started = Instant::now();
            let events = client
                .build_image(request)
                .await
                .map_err(crate::status)?
                .into_inner();
            let image = follow(events, json).await?;
            finish(&image, started, "Built", json);
        }
    }
    Ok(())
}

async fn import(
    client: &mut Client,
    name: String,
    file: &std::path::Path,
    disk_bytes: u64,
    json: bool,
) -> Result<()> {
    let mut f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("{}", file.display()))?;
    let total = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = crate::progress::bytes(json, &format!("Uploading {}", file.display()), total);
    let header = pb::ImportImageRequest {
        msg: Some(pb::import_image_request::Msg::Header(
            pb::ImportImageHeader { name, disk_bytes },
        )),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header).await.ok();
    let path = file.display().to_string();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.with_context(|| path.clone())?;
            if n == 0 {
                return Ok::<_, anyhow::Error>(());
            }
            bar.inc(n as u64);
            let msg = pb::import_image_request::Msg::Data(buf[..n].to_vec());
            if tx
                .send(pb::ImportImageRequest { msg: Some(msg) })
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    });
    let started = Instant::now();
    let events = client
        .import_image(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(crate::status)?
        .into_inner();
    let image = follow(events, json).await;
    reader.await??;
    finish(&image?, started, "Imported", json);
    Ok(())
}

/// Builds image `name` from the Dockerfile `file` with the directory `context`.
async fn dockerfile(
    client: &mut Client,
    name: String,
    file: &std::path::Path,
    context: Option<std::path::PathBuf>,
    build_args: &[String],
    json: bool,
) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let context = context.unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| ".".into())
    });
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let mut args = std::collections::HashMap::new();
    for a in build_args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => args.insert(k.to_string(), v.to_string()),
            _ => bail!("invalid --build-arg {a:?}: expected KEY=VALUE"),
        };
    }
    // The context as one tar archive, sent in pieces after the header.
    let dir = context.clone();
    let archive = tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", &dir)?;
        b.into_inner()
    })
    .await?
    .with_context(|| format!("reading the build context {}", context.display()))?;
    let mut messages = vec![pb::BuildDockerfileRequest {
        msg: Some(pb::build_dockerfile_request::Msg::Header(
            pb::BuildDockerfileHeader {
                name,
                dockerfile: text,
                build_args: args,
            },
        )),
    }];
    for piece in archive.chunks(1 << 20) {
        messages.push(pb::BuildDockerfileRequest {
            msg: Some(pb::build_dockerfile_request::Msg::Context(piece.to_vec())),
        });
    }
    let started = Instant::now();
    let events = client
        .build_dockerfile(futures::stream::iter(messages))
        .await
        .map_err(crate::status)?
        .into_inner();
    let image = follow(events, json).await?;
    finish(&image, started, "Built", json);
    Ok(())
}

/// Shows the server's progress lines until the image arrives.
async fn follow(mut events: tonic::Streaming<pb::ImageProgress>, json: bool) -> Result<pb::Image> {
    let line = crate::progress::line(json);
    while let Some(event) = events.message().await.map_err(crate::status)? {
        match event.msg {
            Some(pb::image_progress::Msg::Log(l)) => line.set_message(l),
            Some(pb::image_progress::Msg::Image(i)) => {
                line.finish_and_clear();
                return Ok(i);
            }
            None => {}
        }
    }
    bail!("the server ended the image stream without an image")
}

fn finish(image: &pb::Image, started: Instant, verb: &str, json: bool) {
    if json {
        output::print_message(image);
    } else {
        println!(
            "{verb} image {} in {:.1}s ({}, disk {})",
            image.name,
            started.elapsed().as_secs_f64(),
            image.source,
            size_text(image.disk_bytes)
        );
    }
}

fn details(i: &pb::Image) {
    let c = i.config.clone().unwrap_or_default();
    let owner = if i.owner.is_empty() { "-" } else { &i.owner };
    println!("Name:        {}", i.name);
    println!("ID:          {}", i.id);
    println!("Source:      {}", i.source);
    println!("Created:     {} ago", output::age(i.created_at.as_ref()));
    println!("Owner:       {owner}");
    println!(
        "Disk:        {} ({} on the host)",
        size_text(i.disk_bytes),
        size_text(i.stored_bytes)
    );
    println!("Kernel:      {}", i.kernel_release);
    if !c.env.is_empty() {
        println!("Env:         {}", c.env.join(" "));
    }
    if !c.working_dir.is_empty() {
        println!("WorkingDir:  {}", c.working_dir);
    }
    if !c.user.is_empty() {
        println!("User:        {}", c.user);
    }
    if !c.entrypoint.is_empty() {
        println!("Entrypoint:  {}", c.entrypoint.join(" "));
    }
    if !c.cmd.is_empty() {
        println!("Cmd:         {}", c.cmd.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_like_humans_write_them() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "G", "2X", "-1G", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
