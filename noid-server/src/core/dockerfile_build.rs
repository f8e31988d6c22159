//! Building an image from a Dockerfile without Docker: a build VM starts from the FROM image,
//! each RUN is an exec in it, each COPY/ADD a file copy from the build context, and the
//! other instructions set the new image's run settings. Once every step has passed, the
//! guest syncs, the VM is paused and its disk becomes the image. A failing step stops the
//! build with its output and exit code; the build VM is always removed, and nothing
//! half-built is listed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::images::Progress;
use super::{CopyTarget, CoreError, CreateVm, ExecEvent, ExecSpec, Manager, Result, User};
use crate::images::dockerfile::{self, Dockerfile, Step};
use crate::images::layers::{clean_path, resolve};
use crate::images::store::{ImageConfig, ImageManifest, Staging};

/// Output lines of a failed RUN quoted in its error.
const ERROR_TAIL_LINES: usize = 20;

/// What the steps so far have set: the new image's settings and the build's variables.
struct BuildState {
    env: Vec<(String, String)>,
    args: Vec<(String, String)>,
    workdir: String,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

impl BuildState {
    fn from_image(config: &ImageConfig) -> Self {
        Self {
            env: config.env_pairs(),
            args: Vec::new(),
            workdir: config.working_dir.clone(),
            user: config.user.clone(),
            entrypoint: config.entrypoint.clone(),
            cmd: config.cmd.clone(),
        }
    }

    /// Variables for substitution: build arguments, then the environment over them.
    fn vars(&self) -> Vec<(String, String)> {
        self.args.iter().chain(&self.env).cloned().collect()
    }

    /// A guest path: absolute, or relative to the working directory.
    fn guest_path(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.to_string()
        } else {
            let base = if self.workdir.is_empty() {
                "/"
            } else {
                &self.workdir
            };
            format!("{}/{p}", base.trim_end_matches('/'))
        }
    }

    fn config(&self) -> ImageConfig {
        ImageConfig {
            env: self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
        }
    }
}

impl Manager {
    /// Builds image `name` from `dockerfile`, with the build context that `context` streams
    /// (a tar archive); `build_args` override ARG defaults.
    pub async fn build_dockerfile<S>(
        self: &Arc<Self>,
        user: &User,
        name: &str,
        dockerfile_text: &str,
        build_args: Vec<(String, String)>,
        context: S,
        progress: Progress,
    ) -> Result<ImageManifest>
    where
        S: Stream<Item = Result<Vec<u8>>> + Send + 'static,
    {
        let parsed = dockerfile::parse(dockerfile_text)?;
        // The image's disk is the build VM's: its FROM image's size.
        let base = self.images.get(&parsed.from)?;
        let staging = self.images.staging(name)?;
        let context_dir = receive_context(&staging, context).await?;
        let this = Arc::clone(self);
        let user = user.clone();
        super::detached("image build", async move {
            let vm_name = build_vm_name(staging.name());
            let say = |s: String| {
                let _ = progress.send(s);
            };
            say(format!(
                "starting build VM {vm_name} from image {}",
                parsed.from
            ));
            let create = CreateVm {
                name: vm_name.clone(),
                image: Some(parsed.from.clone()),
                ..Default::default()
            };
            this.create_vm(&user, create).await?;
            let built = this
                .run_steps(
                    &user,
                    &vm_name,
                    &parsed,
                    &base,
                    build_args,
                    &context_dir,
                    &say,
                )
                .await;
            let result = match built {
                Ok(state) => this
                    .take_disk(&user, &vm_name, &staging)
                    .await
                    .map(|()| state),
                Err(e) => Err(e),
            };
            if let Err(e) = this.delete_vm(&user, &vm_name).await {
                tracing::warn!("removing build VM {vm_name}: {e}");
            }
            let state = result?;
            let manifest = ImageManifest {
                id: super::vms::new_id(),
                name: staging.name().to_string(),
                source: format!(
                    "dockerfile (FROM {}, {} steps)",
                    parsed.from,
                    parsed.steps.len()
                ),
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                disk_bytes: 0,
                stored_bytes: 0,
                kernel_release: base.kernel_release.clone(),
                owner: user.0.clone(),
                config: state.config(),
            };
            let _ = std::fs::remove_dir_all(&context_dir);
            let manifest = tokio::task::spawn_blocking(move || staging.commit(manifest))
                .await
                .map_err(|e| CoreError::Internal(format!("the image task failed: {e}")))??;
            say(format!("image {} made", manifest.name));
            Ok(manifest)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_steps(
        self: &Arc<Self>,
        user: &User,
        vm: &str,
        parsed: &Dockerfile,
        base: &ImageManifest,
        build_args: Vec<(String, String)>,
        context: &Path,
        say: &(dyn Fn(String) + Sync),
    ) -> Result<BuildState> {
        let mut state = BuildState::from_image(&base.config);
        let total = parsed.steps.len();
        for (i, (line, step)) in parsed.steps.iter().enumerate() {
            say(format!(
                "step {}/{total} (line {line}): {}",
                i + 1,
                describe(step)
            ));
            let vars = state.vars();
            match step {
                Step::Run(argv) => self.run(user, vm, &state, argv.clone(), *line, say).await?,
                Step::Copy { sources, dest } => {
                    let dest = state.guest_path(&dockerfile::substitute(dest, &vars));
                    for source in sources {
                        let source = dockerfile::substitute(source, &vars);
                        self.copy_from_context(
                            user,
                            vm,
                            context,
                            &source,
                            &dest,
                            sources.len() > 1,
                        )
                        .await
                        .map_err(|e| step_error(*line, e))?;
                    }
                }
                Step::Env(pairs) => {
                    for (k, v) in pairs {
                        let v = dockerfile::substitute(v, &state.vars());
                        state.env.retain(|(key, _)| key != k);
                        state.env.push((k.clone(), v));
                    }
                }
                Step::Workdir(dir) => {
                    state.workdir = state.guest_path(&dockerfile::substitute(dir, &vars));
                    let mkdir = vec!["mkdir".into(), "-p".into(), state.workdir.clone()];
                    self.run_as_root(user, vm, mkdir)
                        .await
                        .map_err(|e| step_error(*line, e))?;
                }
                Step::User(u) => state.user = dockerfile::substitute(u, &vars),
                Step::Entrypoint(argv) => state.entrypoint = argv.clone(),
                Step::Cmd(argv) => state.cmd = argv.clone(),
                Step::Arg(name, default) => {
                    let value = build_args
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .or_else(|| default.clone())
                        .unwrap_or_default();
                    state.args.push((name.clone(), value));
                }
            }
        }
        Ok(state)
    }

    /// A RUN: its output goes to the progress; a failure ends the build with its tail.
    async fn run(
        &self,
        user: &User,
        vm: &str,
        state: &BuildState,
        argv: Vec<String>,
        line: usize,
        say: &(dyn Fn(String) + Sync),
    ) -> Result<()> {
        let mut env: std::collections::HashMap<String, String> =
            state.args.iter().cloned().collect();
        env.extend(state.env.iter().cloned());
        let spec = ExecSpec {
            argv,
            env,
            cwd: (!state.workdir.is_empty()).then(|| state.workdir.clone()),
            user: Some(if state.user.is_empty() {
                "root".into()
            } else {
                state.user.clone()
            }),
            ..Default::default()
        };
        let mut events = std::pin::pin!(self.exec(user, vm, spec, futures::stream::empty()).await?);
        let mut tail: Vec<String> = Vec::new();
        let mut partial = String::new();
        while let Some(event) = events.next().await {
            match event? {
                ExecEvent::Stdout(d) | ExecEvent::Stderr(d) => {
                    partial.push_str(&String::from_utf8_lossy(&d));
                    while let Some(at) = partial.find('\n') {
                        let l: String = partial.drain(..=at).collect();
                        let l = l.trim_end().to_string();
                        say(l.clone());
                        tail.push(l);
                        if tail.len() > ERROR_TAIL_LINES {
                            tail.remove(0);
                        }
                    }
                }
                ExecEvent::Exit(status) => {
                    if !partial.is_empty() {
                        tail.push(std::mem::take(&mut partial));
                    }
                    if status.code == 0 && status.signal == 0 {
                        return Ok(());
                    }
                    let how = if status.signal != 0 {
                        format!("was killed by signal {}", status.signal)
                    } else {
                        format!("failed with exit code {}", status.code)
                    };
                    return Err(CoreError::FailedPrecondition(format!(
                        "Dockerfile line {line}: RUN {how}; its last output:\n{}",
                        tail.join("\n")
                    )));
                }
                ExecEvent::Started { .. } => {}
            }
        }
        Err(CoreError::Unavailable(format!(
            "Dockerfile line {line}: RUN ended without an exit status"
        )))
    }

    async fn run_as_root(&self, user: &User, vm: &str, argv: Vec<String>) -> Result<()> {
        let spec = ExecSpec {
            argv: argv.clone(),
            user: Some("root".into()),
            cwd: Some("/".into()),
            ..Default::default()
        };
        let mut events = std::pin::pin!(self.exec(user, vm, spec, futures::stream::empty()).await?);
        let mut output = Vec::new();
        while let Some(event) = events.next().await {
            match event? {
                ExecEvent::Stdout(d) | ExecEvent::Stderr(d) => output.extend(d),
                ExecEvent::Exit(s) if s.code == 0 && s.signal == 0 => return Ok(()),
                ExecEvent::Exit(_) => {
                    return Err(CoreError::FailedPrecondition(format!(
                        "`{}` failed: {}",
                        argv.join(" "),
                        String::from_utf8_lossy(&output).trim()
                    )))
                }
                ExecEvent::Started { .. } => {}
            }
        }
        Ok(())
    }

    /// COPY of `source` (a file or a directory's contents) from the context to `dest`.
    async fn copy_from_context(
        self: &Arc<Self>,
        user: &User,
        vm: &str,
        context: &Path,
        source: &str,
        dest: &str,
        several: bool,
    ) -> Result<()> {
        let rel = clean_path(Path::new(source))?;
        let host = resolve(context, &rel, true)?;
        let meta = std::fs::metadata(&host).map_err(|_| {
            CoreError::InvalidArgument(format!("COPY {source}: not found in the build context"))
        })?;
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        if meta.is_dir() {
            dirs.push(dest.trim_end_matches('/').to_string());
            walk(&host, dest.trim_end_matches('/'), &mut files, &mut dirs);
        } else {
            let into_dir = several || dest.ends_with('/');
            let target = if into_dir {
                let name = host.file_name().map(|n| n.to_string_lossy().into_owned());
                format!(
                    "{}/{}",
                    dest.trim_end_matches('/'),
                    name.unwrap_or_default()
                )
            } else {
                dest.to_string()
            };
            if let Some(parent) = Path::new(&target).parent() {
                dirs.push(parent.display().to_string());
            }
            files.push((host, target));
        }
        dirs.retain(|d| !d.is_empty());
        if !dirs.is_empty() {
            let argv = ["mkdir", "-p"]
                .iter()
                .map(|s| s.to_string())
                .chain(dirs)
                .collect();
            self.run_as_root(user, vm, argv).await?;
        }
        for (host, target) in files {
            let mode = {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(&host).map_or(0o644, |m| m.permissions().mode() & 0o7777)
            };
            let name = host.file_name().map(|n| n.to_string_lossy().into_owned());
            let copy = CopyTarget {
                path: target,
                mode,
                source_name: name.unwrap_or_default(),
            };
            self.copy_in(user, vm, copy, file_chunks(host)).await?;
        }
        Ok(())
    }

    /// Syncs the build VM's disk, pauses it and takes a copy of its disk into `staging`.
    async fn take_disk(&self, user: &User, vm: &str, staging: &Staging) -> Result<()> {
        self.run_as_root(user, vm, vec!["sync".into()]).await?;
        let record = self.running_vm(user, vm).await?;
        let dir = self.layout.vm(&record.id);
        self.vmm.vm(&dir).pause().await?;
        let dest = staging.rootfs();
        let dest_dir = dest
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .to_path_buf();
        let overlays = self.vmm.disk_overlays();
        super::blocking(move || super::vm_disk::DiskCopy::new(&dir, &dest_dir, overlays)?.run())
            .await
            .map_err(|e| super::error::io_error("copying the build VM's disk", e))
    }
}

/// Saves the uploaded context and unpacks it (safely) next to it.
async fn receive_context<S>(staging: &Staging, context: S) -> Result<PathBuf>
where
    S: Stream<Item = Result<Vec<u8>>> + Send + 'static,
{
    let archive = staging.dir().join("context.tar");
    let mut file = tokio::fs::File::create(&archive)
        .await
        .map_err(|e| super::error::io_error("storing the build context", e))?;
    let mut context = std::pin::pin!(context);
    while let Some(chunk) = context.next().await {
        file.write_all(&chunk?)
            .await
            .map_err(|e| super::error::io_error("storing the build context", e))?;
    }
    file.flush()
        .await
        .map_err(|e| super::error::io_error("storing the build context", e))?;
    let dir = staging.dir().join("context");
    let (a, d) = (archive.clone(), dir.clone());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&d).map_err(|e| super::error::io_error("the build context", e))?;
        if std::fs::metadata(&a).map_or(0, |m| m.len()) > 0 {
            crate::images::layers::apply(&d, &a)?;
        }
        let _ = std::fs::remove_file(&a);
        Ok::<_, CoreError>(())
    })
    .await
    .map_err(|e| CoreError::Internal(format!("the image task failed: {e}")))??;
    Ok(dir)
}

/// The files and directories under `dir`, mapped to guest paths under `dest`.
fn walk(dir: &Path, dest: &str, files: &mut Vec<(PathBuf, String)>, dirs: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let target = format!("{dest}/{name}");
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                dirs.push(target.clone());
                walk(&e.path(), &target, files, dirs);
            }
            Ok(t) if t.is_file() => files.push((e.path(), target)),
            _ => {}
        }
    }
}

/// A file's bytes, 1 MiB at a time.
fn file_chunks(path: PathBuf) -> impl Stream<Item = Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(Some((path, None::<tokio::fs::File>)), |state| async move {
        let (path, file) = state?;
        let mut file = match file {
            Some(f) => f,
            None => match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) => {
                    return Some((Err(super::error::io_error("reading the context", e)), None))
                }
            },
        };
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some((path, Some(file)))))
            }
            Err(e) => Some((Err(super::error::io_error("reading the context", e)), None)),
        }
    })
}

fn step_error(line: usize, e: CoreError) -> CoreError {
    match e {
        CoreError::InvalidArgument(m) => {
            CoreError::InvalidArgument(format!("Dockerfile line {line}: {m}"))
        }
        CoreError::FailedPrecondition(m) => {
            CoreError::FailedPrecondition(format!("Dockerfile line {line}: {m}"))
        }
        other => other,
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::Run(argv) => format!("RUN {}", argv.last().cloned().unwrap_or_default()),
        Step::Copy { sources, dest } => format!("COPY {} {dest}", sources.join(" ")),
        Step::Env(pairs) => format!(
            "ENV {}",
            pairs
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Step::Workdir(d) => format!("WORKDIR {d}"),
        Step::User(u) => format!("USER {u}"),
        Step::Entrypoint(a) => format!("ENTRYPOINT {}", a.join(" ")),
        Step::Cmd(a) => format!("CMD {}", a.join(" ")),
        Step::Arg(n, _) => format!("ARG {n}"),
    }
}

/// The build VM's name: the image's, with a random suffix, within the 63 characters.
fn build_vm_name(image: &str) -> String {
    let suffix = super::vms::new_id();
    let stem: String = image.chars().take(63 - 7 - suffix.len()).collect();
    format!("build-{stem}-{suffix}")
}
