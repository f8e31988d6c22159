//! The image calls of the gRPC service: translation to and from the core, and the progress
//! streams of imports and builds (lines while the work runs, then the image or the error).

use std::sync::Arc;

use futures::{Future, Stream};
use noid::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::core::{CoreError, ImageSource, Manager, User};
use crate::images::debian::Recipe;
use crate::images::ImageManifest;

pub fn image(m: &ImageManifest) -> pb::Image {
    pb::Image {
        name: m.name.clone(),
        id: m.id.clone(),
        source: m.source.clone(),
        created_at: Some(noid::time::from_secs(m.created_at as i64)),
        disk_bytes: m.disk_bytes,
        stored_bytes: m.stored_bytes,
        kernel_release: m.kernel_release.clone(),
        owner: m.owner.clone(),
        config: Some(pb::ImageConfig {
            env: m.config.env.clone(),
            working_dir: m.config.working_dir.clone(),
            user: m.config.user.clone(),
            entrypoint: m.config.entrypoint.clone(),
            cmd: m.config.cmd.clone(),
        }),
    }
}

pub type ProgressStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<pb::ImageProgress, Status>> + Send>>;

/// Runs `work` (which reports on the sender it is given) and streams its progress, then its
/// image or error.
fn with_progress<F, W>(work: W) -> ProgressStream
where
    W: FnOnce(crate::core::Progress) -> F,
    F: Future<Output = Result<ImageManifest, CoreError>> + Send + 'static,
{
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let (tx, rx) = mpsc::channel(16);
    let done = work(lines_tx);
    tokio::spawn(async move {
        let mut done = std::pin::pin!(done);
        let result = loop {
            tokio::select! {
                biased;
                Some(line) = lines.recv() => {
                    let msg = pb::image_progress::Msg::Log(line);
                    // A client that went away does not stop the work.
                    let _ = tx.send(Ok(pb::ImageProgress { msg: Some(msg) })).await;
                }
                result = &mut done => break result,
            }
        };
        while let Ok(line) = lines.try_recv() {
            let msg = pb::image_progress::Msg::Log(line);
            let _ = tx.send(Ok(pb::ImageProgress { msg: Some(msg) })).await;
        }
        let last = result
            .map(|m| pb::ImageProgress {
                msg: Some(pb::image_progress::Msg::Image(image(&m))),
            })
            .map_err(Status::from);
        let _ = tx.send(last).await;
    });
    Box::pin(ReceiverStream::new(rx))
}

/// One part of an upload stream (ImportImage, BuildDockerfile): its header, its bytes, or
/// something out of place.
enum Part<H> {
    Header(H),
    Bytes(Vec<u8>),
    Other,
}

/// Splits an upload stream into its header (which must come first and name a valid image)
/// and the stream of its bytes; `call` names the RPC in errors.
async fn upload<R, H>(
    mut inbound: Streaming<R>,
    part: fn(R) -> Part<H>,
    name: fn(&H) -> &str,
    call: &'static str,
) -> Result<
    (
        H,
        impl Stream<Item = Result<Vec<u8>, CoreError>> + Send + 'static,
    ),
    Status,
>
where
    R: Send + 'static,
    H: 'static,
{
    let header = match inbound.message().await?.map(part) {
        Some(Part::Header(h)) => h,
        _ => {
            return Err(Status::invalid_argument(format!(
                "the first message of a {call} stream must be `header`"
            )))
        }
    };
    noid::names::validate_name("image", name(&header)).map_err(CoreError::from)?;
    let bytes = futures::stream::unfold(inbound, move |mut inbound| async move {
        let item = match inbound.message().await {
            Ok(Some(r)) => match part(r) {
                Part::Bytes(d) => Ok(d),
                _ => Err(CoreError::InvalidArgument(format!(
                    "a {call} stream is one header, then bytes"
                ))),
            },
            Ok(None) => return None,
            Err(e) => Err(CoreError::Unavailable(format!(
                "the upload broke off ({}); no image was made",
                e.message()
            ))),
        };
        Some((item, inbound))
    });
    Ok((header, bytes))
}

pub async fn import(
    core: Arc<Manager>,
    user: User,
    inbound: Streaming<pb::ImportImageRequest>,
) -> Result<ProgressStream, Status> {
    use pb::import_image_request::Msg;
    let part = |r: pb::ImportImageRequest| match r.msg {
        Some(Msg::Header(h)) => Part::Header(h),
        Some(Msg::Data(d)) => Part::Bytes(d),
        None => Part::Other,
    };
    let (header, data) = upload(inbound, part, |h| &h.name, "ImportImage").await?;
    Ok(with_progress(move |progress| async move {
        core.import_image(&user, &header.name, header.disk_bytes, data, progress)
            .await
    }))
}

pub async fn build_dockerfile(
    core: Arc<Manager>,
    user: User,
    inbound: Streaming<pb::BuildDockerfileRequest>,
) -> Result<ProgressStream, Status> {
    use pb::build_dockerfile_request::Msg;
    let part = |r: pb::BuildDockerfileRequest| match r.msg {
        Some(Msg::Header(h)) => Part::Header(h),
        Some(Msg::Context(d)) => Part::Bytes(d),
        None => Part::Other,
    };
    let (header, context) = upload(inbound, part, |h| &h.name, "BuildDockerfile").await?;
    let args: Vec<(String, String)> = header.build_args.into_iter().collect();
    Ok(with_progress(move |progress| async move {
        core.build_dockerfile(
            &user,
            &header.name,
            &header.dockerfile,
            args,
            context,
            progress,
        )
        .await
    }))
}

pub fn build(core: Arc<Manager>, user: User, r: pb::BuildImageRequest) -> ProgressStream {
    let recipe = Recipe {
        suite: r.debian_suite,
        packages: r.packages,
    };
    with_progress(move |progress| async move {
        core.build_image(
            &user,
            &r.name,
            ImageSource::Debian(recipe),
            r.disk_bytes,
            progress,
        )
        .await
    })
}
