//! Files in and out of the guest, for the host's copies. A file is written to a temporary
//! name next to its destination, synced, and renamed into place only once every byte the host
//! sent has arrived, so an interrupted copy never leaves a partial file under the
//! destination's name; an existing device or pipe is written in place (as cp would). A read
//! streams the file and stops as soon as the host hangs up, so an endless file (/dev/zero)
//! costs nothing once nobody reads it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use noid::agent::v1::{write_file_request, FileData, WriteFileHeader, WriteFileRequest};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// Bytes per message of a read.
const READ_CHUNK: usize = 256 * 1024;

/// An I/O error about `path`, as the status the host maps to its own error kinds.
pub(crate) fn status(path: &Path, e: io::Error) -> Status {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Status::not_found(format!("{p}: No such file or directory")),
        Some(libc::EISDIR) => Status::invalid_argument(format!("{p}: Is a directory")),
        Some(libc::ENOTDIR) => Status::invalid_argument(format!("{p}: Not a directory")),
        Some(libc::EACCES | libc::EPERM) => {
            Status::permission_denied(format!("{p}: Permission denied"))
        }
        Some(libc::ENOSPC | libc::EDQUOT) => {
            Status::resource_exhausted(format!("{p}: No space left on the guest's disk"))
        }
        Some(libc::EROFS) => Status::failed_precondition(format!("{p}: Read-only file system")),
        _ => Status::internal(format!("{p}: {e}")),
    }
}

/// Where a write goes, and how.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A regular file (or none yet): through a temporary file and a rename.
    Replace(PathBuf),
    /// A device, pipe or socket that exists: written in place.
    InPlace(PathBuf),
}

/// Resolves the header's path: into a directory under the given name, through symbolic links
/// to what they name.
pub(crate) fn target(header: &WriteFileHeader) -> Result<Target, Status> {
    let mut path = PathBuf::from(&header.path);
    if !path.is_absolute() {
        return Err(Status::invalid_argument(format!(
            "{}: the path must be absolute",
            header.path
        )));
    }
    if path.is_dir() {
        let name = &header.name_in_dir;
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Status::invalid_argument(format!(
                "{}: Is a directory",
                header.path
            )));
        }
        path.push(name);
        if path.is_dir() {
            return Err(Status::invalid_argument(format!(
                "{}: Is a directory",
                path.display()
            )));
        }
    }
    // Write what a symbolic link names, not over the link.
    if path.is_symlink() {
        path = std::fs::canonicalize(&path).map_err(|e| status(&path, e))?;
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_file() => Ok(Target::Replace(path)),
        Ok(m)
            if m.file_type().is_char_device()
                || m.file_type().is_block_device()
                || m.file_type().is_fifo()
                || m.file_type().is_socket() =>
        {
            Ok(Target::InPlace(path))
        }
        Ok(_) => Err(Status::invalid_argument(format!(
            "{}: not a file that can be written",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Target::Replace(path)),
        Err(e) => Err(status(&path, e)),
    }
}

/// A temporary file next to `path`, removed on drop unless it was put in place.
pub(crate) struct Staged {
    pub(crate) tmp: PathBuf,
    pub(crate) file: File,
    done: bool,
}

impl Staged {
    pub(crate) fn create(path: &Path) -> Result<Self, Status> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut random = [0u8; 6];
        let _ = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{name}.noid-{suffix}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| status(path, e))?;
        Ok(Self {
            tmp,
            file,
            done: false,
        })
    }

    /// Syncs the file, gives it `mode` and renames it to `path`.
    pub(crate) fn place(mut self, path: &Path, mode: u32) -> Result<(), Status> {
        let fail = |e| status(path, e);
        self.file.sync_all().map_err(fail)?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail)?;
        std::fs::rename(&self.tmp, path).map_err(fail)?;
        self.done = true;
        if let Some(dir) = path.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes what the host sends; returns where it went and how many bytes it holds.
pub async fn write(mut input: Streaming<WriteFileRequest>) -> Result<(String, u64), Status> {
    let header = match input.message().await? {
        Some(WriteFileRequest {
            msg: Some(write_file_request::Msg::Header(h)),
        }) => h,
        _ => {
            return Err(Status::invalid_argument(
                "the first WriteFile message must be the header",
            ))
        }
    };
    let target = tokio::task::spawn_blocking(move || target(&header).map(|t| (t, header.mode)))
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
    let (target, mode) = target;
    let (path, staged, mut file) = match &target {
        Target::Replace(p) => {
            let staged = Staged::create(p)?;
            let file = staged.file.try_clone().map_err(|e| status(p, e))?;
            (p.clone(), Some(staged), file)
        }
        Target::InPlace(p) => {
            let file = OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| status(p, e))?;
            (p.clone(), None, file)
        }
    };
    let mut written = 0u64;
    loop {
        let msg = input.message().await?;
        match msg.and_then(|m| m.msg) {
            Some(write_file_request::Msg::Data(data)) => {
                let n = data.len() as u64;
                let p = path.clone();
                file = tokio::task::spawn_blocking(move || {
                    file.write_all(&data)
                        .map(|()| file)
                        .map_err(|e| status(&p, e))
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
                written += n;
            }
            Some(write_file_request::Msg::End(sent)) => {
                if sent != written {
                    return Err(Status::data_loss(format!(
                        "{}: {written} of {sent} bytes arrived; nothing was replaced",
                        path.display()
                    )));
                }
                break;
            }
            Some(write_file_request::Msg::Header(_)) => {
                return Err(Status::invalid_argument(
                    "a WriteFile stream has one header, first",
                ))
            }
            // The host went away before `end`: the staged file goes with `staged`.
            None => {
                return Err(Status::cancelled(format!(
                    "{}: the copy stopped before its end; nothing was replaced",
                    path.display()
                )))
            }
        }
    }
    drop(file);
    if let Some(staged) = staged {
        let p = path.clone();
        tokio::task::spawn_blocking(move || staged.place(&p, mode))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
    }
    Ok((path.display().to_string(), written))
}

/// Streams the file at `path` into `reply` until its end, an error, or the host hanging up.
pub fn read(path: String, reply: mpsc::Sender<Result<FileData, Status>>) -> Result<(), Status> {
    let path = PathBuf::from(path);
    let mut file = File::open(&path).map_err(|e| status(&path, e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Status::invalid_argument(format!(
            "{}: Is a directory",
            path.display()
        )));
    }
    std::thread::spawn(move || {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let item = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(FileData {
                    data: buf[..n].to_vec(),
                }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(status(&path, e)),
            };
            let failed = item.is_err();
            // A closed channel: the host hung up, and the file is closed here.
            if reply.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &Path, name: &str) -> WriteFileHeader {
        WriteFileHeader {
            path: path.display().to_string(),
            mode: 0o644,
            name_in_dir: name.into(),
        }
    }

    #[test]
    fn targets_follow_cp() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A new file, an existing one, a directory with and without the source's name.
        assert_eq!(
            target(&header(&d.join("new"), "")).unwrap(),
            Target::Replace(d.join("new"))
        );
        std::fs::write(d.join("old"), "x").unwrap();
        assert_eq!(
            target(&header(&d.join("old"), "")).unwrap(),
            Target::Replace(d.join("old"))
        );
        assert_eq!(
            target(&header(d, "f.txt")).unwrap(),
            Target::Replace(d.join("f.txt"))
        );
        let e = target(&header(d, "")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().ends_with("Is a directory"), "{}", e.message());
        for bad in ["..", ".", "a/b"] {
            assert!(target(&header(d, bad)).is_err(), "{bad}");
        }
        // A device is written in place; a link, what it names.
        assert_eq!(
            target(&header(Path::new("/dev/null"), "")).unwrap(),
            Target::InPlace("/dev/null".into())
        );
        std::os::unix::fs::symlink(d.join("old"), d.join("link")).unwrap();
        let real = std::fs::canonicalize(d.join("old")).unwrap();
        assert_eq!(
            target(&header(&d.join("link"), "")).unwrap(),
            Target::Replace(real)
        );
        assert!(target(&header(Path::new("relative"), "")).is_err());
    }

    #[test]
    fn a_staged_file_is_placed_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(&dest, "before").unwrap();
        let mut staged = Staged::create(&dest).unwrap();
        staged.file.write_all(b"half").unwrap();
        drop(staged);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "before");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left"
        );
        let mut staged = Staged::create(&dest).unwrap();
        staged.file.write_all(b"after").unwrap();
        staged.place(&dest, 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "after");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_path_and_the_kind() {
        let e = status(Path::new("/x"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(e.message(), "/x: No space left on the guest's disk");
        let e = status(Path::new("/x"), io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.code(), tonic::Code::NotFound);
    }
}
