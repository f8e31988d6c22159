//! A VM's root disk in its directory: either its own raw copy (`rootfs.ext4`), or a qcow2
//! overlay (`rootfs.qcow2`) over a raw base (`base.ext4`) that is a hard link to the disk the
//! VM started from: the image's, a boot snapshot's or a checkpoint's. Those are written once
//! and never changed, so the link shares their data and outlives their removal; the VM
//! writes only into its overlay. This module owns making either kind, copying one out whole
//! (checkpoints, image builds) and setting one aside while a restore in place runs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ports::disk::DiskOverlays;
use super::ports::vmm::{DiskFormat, Vmm};
use super::DiskOverlaysSetting;
use crate::storage::{clone_file, Layout};
use noid::guest::DISK_FILE;

/// The overlay over `BASE`.
pub(super) const OVERLAY: &str = "rootfs.qcow2";
/// An overlay's base, named relative to the overlay (its directory moves with it).
const BASE: &str = "base.ext4";
/// What a restore in place puts after each file it sets aside.
const ASIDE: &str = ".before-restore";

/// What makes new VMs' overlays under `setting` (see `DiskOverlaysSetting`), if they get
/// overlays; says which at start.
pub(super) fn choose_overlays(
    setting: DiskOverlaysSetting,
    vmm: &dyn Vmm,
    layout: &Layout,
) -> Option<Arc<dyn DiskOverlays>> {
    let reflinks = || crate::storage::shares_extents(layout.root()).unwrap_or(false);
    let chosen = match setting {
        DiskOverlaysSetting::Never => None,
        DiskOverlaysSetting::Always => vmm.disk_overlays(),
        DiskOverlaysSetting::Auto if reflinks() => None,
        DiskOverlaysSetting::Auto => vmm.disk_overlays(),
    };
    tracing::info!(
        "VM disks: {}",
        if chosen.is_some() {
            "copy-on-write overlays over shared disks"
        } else {
            "copies (reflinks where the file system has them)"
        }
    );
    chosen
}

/// The file the VMM opens for the VM whose directory is `dir`, and how it is laid out.
pub(super) fn top(dir: &Path) -> (PathBuf, DiskFormat) {
    let overlay = dir.join(OVERLAY);
    if overlay.exists() {
        (overlay, DiskFormat::Qcow2)
    } else {
        (dir.join(DISK_FILE), DiskFormat::Raw)
    }
}

/// Gives the VM whose directory is `dir` an overlay over `source`, a raw disk that is never
/// changed: linked in as the base (copied, if it is on another file system).
pub(super) fn make_overlay(
    dir: &Path,
    source: &Path,
    overlays: &dyn DiskOverlays,
) -> io::Result<()> {
    let base = dir.join(BASE);
    if let Err(e) = std::fs::hard_link(source, &base) {
        if e.raw_os_error() != Some(libc::EXDEV) {
            return Err(e);
        }
        clone_file(source, &base)?;
    }
    overlays.create(&dir.join(OVERLAY), BASE)
}

/// A copy of a VM's whole disk as one raw file, `DISK_FILE` in `dest_dir`, made in steps
/// that keep the guest's pause short: only what the VM wrote itself is copied while it is
/// paused.
pub(super) struct DiskCopy {
    from: PathBuf,
    dest_dir: PathBuf,
    /// The VM runs on an overlay, with the tool that folds it.
    overlay: Option<Arc<dyn DiskOverlays>>,
}

impl DiskCopy {
    /// A copy of the disk of the VM whose directory is `from`; `overlays` is needed if the VM
    /// runs on an overlay (an error says so otherwise).
    pub(super) fn new(
        from: &Path,
        dest_dir: &Path,
        overlays: Option<Arc<dyn DiskOverlays>>,
    ) -> io::Result<Self> {
        let overlay = match (from.join(OVERLAY).exists(), overlays) {
            (false, _) => None,
            (true, Some(o)) => Some(o),
            (true, None) => {
                return Err(io::Error::other(
                    "the VM's disk is a qcow2 overlay, and qemu-img is not installed",
                ))
            }
        };
        Ok(Self {
            from: from.to_path_buf(),
            dest_dir: dest_dir.to_path_buf(),
            overlay,
        })
    }

    /// While the VM runs: the overlay's base, which never changes.
    pub(super) fn before_pause(&self) -> io::Result<()> {
        if self.overlay.is_some() {
            clone_file(&self.from.join(BASE), &self.dest_dir.join(BASE))?;
        }
        Ok(())
    }

    /// While the VM is paused and its VMM has flushed its writes: what the VM wrote (its
    /// overlay), or its whole raw disk.
    pub(super) fn while_paused(&self) -> io::Result<()> {
        let name = if self.overlay.is_some() {
            OVERLAY
        } else {
            DISK_FILE
        };
        clone_file(&self.from.join(name), &self.dest_dir.join(name)).map(|_| ())
    }

    /// After the VM runs again: the overlay's copy folded into the base's, which becomes the
    /// disk.
    pub(super) fn finish(&self) -> io::Result<()> {
        let Some(overlays) = &self.overlay else {
            return Ok(());
        };
        let overlay = self.dest_dir.join(OVERLAY);
        overlays.commit(&overlay)?;
        std::fs::remove_file(&overlay)?;
        std::fs::rename(self.dest_dir.join(BASE), self.dest_dir.join(DISK_FILE))
    }

    /// All three steps, for a VM that is paused throughout.
    pub(super) fn run(&self) -> io::Result<()> {
        self.before_pause()?;
        self.while_paused()?;
        self.finish()
    }
}

fn aside(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{ASIDE}"))
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Sets the VM's disk aside for a restore in place. The file the VMM opens goes first: its
/// name tells `put_back` what the set-aside disk is made of.
pub(super) fn set_aside(dir: &Path) -> io::Result<()> {
    for name in [DISK_FILE, OVERLAY, BASE] {
        if dir.join(name).exists() {
            std::fs::rename(dir.join(name), aside(dir, name))?;
        }
    }
    Ok(())
}

/// Whether a restore in place has set (some of) the VM's disk aside.
pub(super) fn is_set_aside(dir: &Path) -> bool {
    [DISK_FILE, OVERLAY, BASE]
        .iter()
        .any(|n| aside(dir, n).exists())
}

/// Puts back the disk that `set_aside` set aside, in place of whatever a failed restore made
/// there. Safe to run again after a crash in the middle: the file the VMM opens comes back
/// last.
pub(super) fn put_back(dir: &Path) -> io::Result<()> {
    let Some(top) = [DISK_FILE, OVERLAY]
        .into_iter()
        .find(|n| aside(dir, n).exists())
    else {
        return Ok(());
    };
    for name in [DISK_FILE, OVERLAY] {
        remove_if_there(&dir.join(name))?;
    }
    // An overlay whose base was not set aside (the setting aside stopped between the two)
    // keeps the base in place: no restore ran on it.
    let base_stays = top == OVERLAY && !aside(dir, BASE).exists();
    if !base_stays {
        remove_if_there(&dir.join(BASE))?;
        if aside(dir, BASE).exists() {
            std::fs::rename(aside(dir, BASE), dir.join(BASE))?;
        }
    }
    std::fs::rename(aside(dir, top), dir.join(top))
}

/// Removes the disk that a finished restore in place set aside.
pub(super) fn drop_aside(dir: &Path) {
    for name in [DISK_FILE, OVERLAY, BASE] {
        let _ = std::fs::remove_file(aside(dir, name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<(String, String)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                (e.file_name().to_string_lossy().into_owned(), text)
            })
            .collect();
        out.sort();
        out
    }

    fn files(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    fn pairs(files: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    /// Files by name and content.
    type Files<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn a_failed_restore_puts_back_either_kind_of_disk() {
        let cases: [(Files, Files); 4] = [
            // raw, replaced by an overlay
            (
                &[(DISK_FILE, "old")],
                &[(OVERLAY, "new"), (BASE, "new base")],
            ),
            // overlay, replaced by a raw copy
            (
                &[(OVERLAY, "old"), (BASE, "old base")],
                &[(DISK_FILE, "new")],
            ),
            // overlay by overlay
            (
                &[(OVERLAY, "old"), (BASE, "old base")],
                &[(OVERLAY, "new"), (BASE, "new base")],
            ),
            // nothing made yet
            (&[(DISK_FILE, "old")], &[]),
        ];
        for (before, made) in cases {
            let dir = tempfile::tempdir().unwrap();
            files(dir.path(), before);
            set_aside(dir.path()).unwrap();
            assert!(is_set_aside(dir.path()));
            files(dir.path(), made);
            put_back(dir.path()).unwrap();
            assert_eq!(names(dir.path()), pairs(before), "{before:?} then {made:?}");
            assert!(!is_set_aside(dir.path()));
            put_back(dir.path()).unwrap();
            assert_eq!(
                names(dir.path()),
                pairs(before),
                "a second put_back changes nothing"
            );
        }
    }

    #[test]
    fn a_setting_aside_cut_short_between_overlay_and_base_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path(), &[(OVERLAY, "old"), (BASE, "old base")]);
        // As a crash after the first rename leaves it.
        std::fs::rename(dir.path().join(OVERLAY), aside(dir.path(), OVERLAY)).unwrap();
        put_back(dir.path()).unwrap();
        assert_eq!(
            names(dir.path()),
            pairs(&[(OVERLAY, "old"), (BASE, "old base")])
        );
    }

    #[test]
    fn a_finished_restore_drops_what_was_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path(), &[(OVERLAY, "old"), (BASE, "old base")]);
        set_aside(dir.path()).unwrap();
        files(dir.path(), &[(DISK_FILE, "new")]);
        drop_aside(dir.path());
        assert_eq!(names(dir.path()), pairs(&[(DISK_FILE, "new")]));
        assert_eq!(
            top(dir.path()),
            (dir.path().join(DISK_FILE), DiskFormat::Raw)
        );
    }
}
