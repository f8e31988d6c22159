//! Applying a container image's layers to a directory, as a container runtime does: in order,
//! with OCI whiteouts (`.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties
//! its directory of them), keeping modes, owners, modification times, symbolic and hard links
//! and device nodes. Nothing can land outside the root: a path with `..` is refused, and every
//! path is resolved inside the root, symbolic links included (an absolute link target names a
//! path of the root, as it would in the guest).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::store::{io, ImageError};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Symbolic links followed while resolving one path, as Linux's limit.
const MAX_LINKS: usize = 40;

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::Invalid(msg.into())
}

/// A layer's path as relative components; `..` is refused.
pub fn clean_path(p: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "{}: the path leaves the image's root",
                    p.display()
                )))
            }
        }
    }
    Ok(out)
}

/// The host path of `rel` inside `root`, following symbolic links (the last component's too
/// when `follow_last`) without ever leaving `root`.
pub fn resolve(root: &Path, rel: &Path, follow_last: bool) -> Result<PathBuf, ImageError> {
    let mut parts: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = VecDeque::new();
    let push_all = |todo: &mut VecDeque<OsString>, p: &Path, front: bool| {
        let comps: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        if front {
            for c in comps.into_iter().rev() {
                todo.push_front(c);
            }
        } else {
            todo.extend(comps);
        }
    };
    push_all(&mut todo, rel, false);
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&parts);
        here.push(&c);
        let last = todo.is_empty();
        let is_link = std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(invalid(format!(
                    "{}: too many levels of symbolic links",
                    rel.display()
                )));
            }
            let target = std::fs::read_link(&here).map_err(io(here.display().to_string()))?;
            if target.is_absolute() {
                parts.clear();
            }
            push_all(&mut todo, &target, true);
        } else {
            parts.push(c);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&parts);
    Ok(out)
}

/// Removes whatever is at `path` (not following a link there); a missing path is fine.
fn remove(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A layer blob, decompressed as its first bytes say.
fn open_layer(path: &Path) -> Result<Box<dyn Read>, ImageError> {
    let mut file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io("reading a layer"))?;
    let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            return Err(invalid(
                "a layer is zstd-compressed, which noid cannot read yet: save the image with \
                 gzip or uncompressed layers",
            ))
        }
        _ => Box::new(reader),
    })
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Applies the layer in `blob` to `root`; returns the digest of its uncompressed tar (the
/// image config's `diff_id`).
pub fn apply(root: &Path, blob: &Path) -> Result<String, ImageError> {
    // First the whiteouts, which only touch what the layers below left; then the entries.
    let mut hashing = Hashing {
        inner: open_layer(blob)?,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(bad_tar)? {
            let entry = entry.map_err(bad_tar)?;
            let path = clean_path(&entry.path().map_err(bad_tar)?)?;
            whiteout(root, &path)?;
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(bad_tar)?;
    let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));

    let mut archive = tar::Archive::new(open_layer(blob)?);
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let path = clean_path(&entry.path().map_err(bad_tar)?)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name {
            None => continue,
            Some(n) if n.starts_with(WHITEOUT) => continue,
            Some(_) => place(root, &path, &mut entry)?,
        }
    }
    Ok(diff_id)
}

fn bad_tar(e: io::Error) -> ImageError {
    invalid(format!("a layer is not a readable tar archive: {e}"))
}

/// Carries out the whiteout at `path`, if it is one.
fn whiteout(root: &Path, path: &Path) -> Result<(), ImageError> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    if !name.starts_with(WHITEOUT) {
        return Ok(());
    }
    let parent = resolve(root, path.parent().unwrap_or(Path::new("")), true)?;
    if name == OPAQUE {
        if let Ok(children) = std::fs::read_dir(&parent) {
            for c in children.flatten() {
                remove(&c.path()).map_err(io(format!("whiteout in {}", path.display())))?;
            }
        }
        return Ok(());
    }
    let victim = &name[WHITEOUT.len()..];
    if victim.is_empty() || victim == "." || victim == ".." {
        return Err(invalid(format!("{}: not a whiteout", path.display())));
    }
    remove(&parent.join(victim)).map_err(io(format!("whiteout {}", path.display())))
}

/// Puts one entry at `path` (relative) under `root`.
fn place<R: Read>(root: &Path, path: &Path, entry: &mut tar::Entry<R>) -> Result<(), ImageError> {
    let what = || path.display().to_string();
    let parent = resolve(root, path.parent().unwrap_or(Path::new("")), true)?;
    std::fs::create_dir_all(&parent).map_err(io(what()))?;
    let dest = parent.join(path.file_name().expect("entries have names"));
    let header = entry.header();
    let mode = header.mode().map_err(bad_tar)? & 0o7777;
    // Some tar writers leave the owner fields empty: root, then.
    let (uid, gid) = (
        header.uid().unwrap_or(0) as u32,
        header.gid().unwrap_or(0) as u32,
    );
    let mtime = header.mtime().unwrap_or(0);
    let kind = header.entry_type();
    use tar::EntryType as T;
    match kind {
        T::Directory => {
            if !std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                remove(&dest).map_err(io(what()))?;
                std::fs::create_dir(&dest).map_err(io(what()))?;
            }
        }
        T::Regular | T::Continuous => {
            remove(&dest).map_err(io(what()))?;
            let mut file = File::create(&dest).map_err(io(what()))?;
            io::copy(entry, &mut file).map_err(io(what()))?;
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            let _ = file.set_modified(when);
        }
        T::Symlink => {
            let target = entry
                .link_name()
                .map_err(bad_tar)?
                .ok_or_else(|| invalid(format!("{}: a link without a target", what())))?;
            remove(&dest).map_err(io(what()))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(io(what()))?;
        }
        T::Link => {
            let target = entry
                .link_name()
                .map_err(bad_tar)?
                .ok_or_else(|| invalid(format!("{}: a link without a target", what())))?;
            let target = resolve(root, &clean_path(&target)?, false)?;
            remove(&dest).map_err(io(what()))?;
            std::fs::hard_link(&target, &dest).map_err(io(what()))?;
            // A hard link shares its target's owner and mode.
            return Ok(());
        }
        T::Char | T::Block | T::Fifo => {
            let major = header.device_major().map_err(bad_tar)?.unwrap_or(0);
            let minor = header.device_minor().map_err(bad_tar)?.unwrap_or(0);
            let file_type = match kind {
                T::Char => libc::S_IFCHR,
                T::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            remove(&dest).map_err(io(what()))?;
            mknod(&dest, file_type | mode, libc::makedev(major, minor)).map_err(io(what()))?;
        }
        // Metadata entries (pax, GNU long names) are read by `tar` itself; others are skipped.
        _ => return Ok(()),
    }
    std::os::unix::fs::lchown(&dest, Some(uid), Some(gid)).map_err(io(what()))?;
    if kind != T::Symlink {
        // After chown, which clears set-id bits.
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
            .map_err(io(what()))?;
    }
    Ok(())
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar with the given entries: (path, kind, data or link target).
    fn layer(dir: &Path, name: &str, entries: &[(&str, tar::EntryType, &str)]) -> PathBuf {
        let path = dir.join(name);
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (p, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o640
            });
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_mtime(1_600_000_000);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, p, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    // Raw names: the builder would refuse `..`, which is what we test.
                    h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.finish().unwrap();
        path
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts() {
        use tar::EntryType::*;
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let l1 = layer(
            work.path(),
            "l1",
            &[
                ("etc/", Directory, ""),
                ("etc/gone", Regular, "x"),
                ("etc/kept", Regular, "k"),
                ("opq/", Directory, ""),
                ("opq/old", Regular, "o"),
                ("usr/bin/", Directory, ""),
                ("bin", Symlink, "usr/bin"),
                ("etc/hard", Link, "etc/kept"),
            ],
        );
        let l2 = layer(
            work.path(),
            "l2",
            &[
                ("etc/.wh.gone", Regular, ""),
                ("opq/.wh..wh..opq", Regular, ""),
                ("opq/new", Regular, "n"),
                // Through the merged-/usr link, as Debian images do.
                ("bin/tool", Regular, "t"),
            ],
        );
        apply(&root, &l1).unwrap();
        assert!(root.join("etc/gone").exists());
        let digest = apply(&root, &l2).unwrap();
        assert!(digest.starts_with("sha256:"));
        assert!(!root.join("etc/gone").exists());
        assert_eq!(std::fs::read_to_string(root.join("etc/kept")).unwrap(), "k");
        assert_eq!(std::fs::read_to_string(root.join("etc/hard")).unwrap(), "k");
        assert!(!root.join("opq/old").exists());
        assert_eq!(std::fs::read_to_string(root.join("opq/new")).unwrap(), "n");
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
            "t"
        );
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(root.join("etc/kept")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o640));
        assert_eq!(m.mtime(), 1_600_000_000);
    }

    #[test]
    fn nothing_lands_outside_the_root() {
        use tar::EntryType::*;
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let escape = layer(work.path(), "dotdot", &[("../evil", Regular, "x")]);
        let e = apply(&root, &escape).unwrap_err().to_string();
        assert!(e.contains("leaves the image's root"), "{e}");
        assert!(!work.path().join("evil").exists());

        // A link to an absolute path outside, then a file through it: it lands inside.
        let outside = work.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let trick = layer(
            work.path(),
            "trick",
            &[
                ("sneaky", Symlink, outside.to_str().unwrap()),
                ("sneaky/file", Regular, "x"),
                ("up", Symlink, "../../.."),
                ("up/file2", Regular, "y"),
            ],
        );
        apply(&root, &trick).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("file")
            .exists());
        assert!(root.join("file2").exists());
        assert!(!work.path().join("file2").exists());
    }

    #[test]
    fn resolving_follows_links_inside_the_root() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(
            resolve(root, Path::new("lib/x"), true).unwrap(),
            root.join("usr/lib/x")
        );
        assert_eq!(
            resolve(root, Path::new("lib"), false).unwrap(),
            root.join("lib")
        );
        assert!(resolve(root, Path::new("loop1/x"), true).is_err());
    }
}
