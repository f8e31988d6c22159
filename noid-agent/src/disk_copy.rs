//! File copies through the transfer disk (see `noid::guest::transfer_disk`): the host puts a
//! copy's bytes in slots of a second virtio-blk disk and says which; the agent moves them
//! between the slots and the file with direct I/O (no page cache on either side, which under
//! TCG is where the time goes: ~40 MiB/s buffered against ~250 MiB/s direct), and hands each
//! slot back once done with it. The file is placed as `files::write` does: a temporary file,
//! synced, renamed only once every byte has arrived.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use noid::agent::v1::{
    disk_read_request, disk_write_request, disk_write_response, DiskExtent, DiskReadRequest,
    DiskReadResponse, DiskReadStart, DiskWriteRequest, DiskWriteResponse, WriteFileResponse,
};
use noid::guest::transfer_disk::{ALIGN, BYTES, SERIAL};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::files::{self, status, Staged, Target};

/// The largest slot the host may name.
const MAX_SLOT: u64 = 16 << 20;

/// The transfer disk's device, opened for direct I/O; None in a VM without one.
fn device() -> Option<Arc<File>> {
    static DEVICE: OnceLock<Option<Arc<File>>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let dev = find_device(Path::new("/sys/block"))?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(dev)
                .ok()
                .map(Arc::new)
        })
        .clone()
}

/// The block device under `sys_block` whose serial is the transfer disk's.
fn find_device(sys_block: &Path) -> Option<PathBuf> {
    std::fs::read_dir(sys_block).ok()?.flatten().find_map(|e| {
        let serial = std::fs::read_to_string(e.path().join("serial")).ok()?;
        (serial.trim() == SERIAL).then(|| Path::new("/dev").join(e.file_name()))
    })
}

fn no_disk() -> Status {
    Status::unimplemented("this VM has no transfer disk")
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// A slot the host named: aligned, inside the disk, of a sane size.
fn check_slot(e: &DiskExtent, slot_len: u64) -> Result<(), Status> {
    let fits = e.offset % ALIGN == 0
        && slot_len % ALIGN == 0
        && slot_len > 0
        && slot_len <= MAX_SLOT
        && e.length <= slot_len
        && e.offset
            .checked_add(slot_len)
            .is_some_and(|end| end <= BYTES);
    if fits {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "transfer disk slot {}+{} (of {slot_len}) is not aligned or not on the disk",
            e.offset, e.length
        )))
    }
}

/// A buffer whose start is aligned for direct I/O, without unsafe code: a larger vector and
/// the aligned window into it.
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let align = ALIGN as usize;
        let raw = vec![0u8; len + align];
        let start = raw.as_ptr().align_offset(align);
        assert!(start < align, "u8 pointers can always be aligned");
        Self { raw, start }
    }

    fn get(&mut self, len: usize) -> &mut [u8] {
        &mut self.raw[self.start..self.start + len]
    }
}

/// Where the bytes of a write go: a staged file (through a direct-I/O descriptor while the
/// offsets stay aligned) or a device or pipe, in place.
enum Sink {
    Staged {
        staged: Staged,
        direct: Option<File>,
    },
    InPlace(File),
}

impl Sink {
    fn open(target: &Target) -> Result<(PathBuf, Self), Status> {
        Ok(match target {
            Target::Replace(p) => {
                let staged = Staged::create(p)?;
                // Some file systems refuse O_DIRECT; their writes go through the page cache.
                let direct = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&staged.tmp)
                    .ok();
                (p.clone(), Sink::Staged { staged, direct })
            }
            Target::InPlace(p) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map_err(|e| status(p, e))?;
                (p.clone(), Sink::InPlace(file))
            }
        })
    }

    /// Writes the first `len` bytes of `buf` at `at`: the aligned part directly where it
    /// can, the rest through the page cache (so the file never holds more than was sent).
    fn write(&mut self, buf: &[u8], len: usize, at: u64) -> io::Result<()> {
        match self {
            Sink::Staged { staged, direct } => {
                let mut done = 0;
                if at % ALIGN == 0 {
                    if let Some(d) = direct {
                        let head = len - len % ALIGN as usize;
                        match d.write_all_at(&buf[..head], at) {
                            Ok(()) => done = head,
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => *direct = None,
                            Err(e) => return Err(e),
                        }
                    }
                }
                staged.file.write_all_at(&buf[done..len], at + done as u64)
            }
            Sink::InPlace(f) => f.write_all(&buf[..len]),
        }
    }

    /// Syncs and renames into place.
    fn finish(self, path: &Path, mode: u32) -> Result<(), Status> {
        match self {
            Sink::Staged { staged, direct } => {
                drop(direct);
                staged.place(path, mode)
            }
            Sink::InPlace(_) => Ok(()),
        }
    }
}

/// Serves a `WriteFileFromDisk` call: checks the header, then moves the slots into the file
/// on a thread of its own, answering on `reply`.
pub async fn write(
    mut input: Streaming<DiskWriteRequest>,
    reply: mpsc::Sender<Result<DiskWriteResponse, Status>>,
) -> Result<(), Status> {
    let disk = device().ok_or_else(no_disk)?;
    let header = match input.message().await? {
        Some(DiskWriteRequest {
            msg: Some(disk_write_request::Msg::Header(h)),
        }) => h,
        _ => {
            return Err(Status::invalid_argument(
                "the first WriteFileFromDisk message must be the header",
            ))
        }
    };
    let mode = header.mode;
    let (path, sink) = tokio::task::spawn_blocking(move || {
        let target = files::target(&header)?;
        Sink::open(&target)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))??;
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || {
        let result = write_slots(&rt, &disk, input, &reply, sink, &path, mode);
        let answer = result.map(|bytes| DiskWriteResponse {
            msg: Some(disk_write_response::Msg::Written(WriteFileResponse {
                path: path.display().to_string(),
                bytes,
            })),
        });
        let _ = reply.blocking_send(answer);
    });
    Ok(())
}

fn write_slots(
    rt: &Handle,
    disk: &File,
    mut input: Streaming<DiskWriteRequest>,
    reply: &mpsc::Sender<Result<DiskWriteResponse, Status>>,
    mut sink: Sink,
    path: &Path,
    mode: u32,
) -> Result<u64, Status> {
    let mut buf = AlignedBuf::new(MAX_SLOT as usize);
    let mut written = 0u64;
    loop {
        match rt.block_on(input.message())?.and_then(|m| m.msg) {
            Some(disk_write_request::Msg::Extent(e)) => {
                let padded = round_up(e.length);
                check_slot(&e, padded)?;
                let bytes = buf.get(padded as usize);
                disk.read_exact_at(bytes, e.offset)
                    .map_err(|err| Status::internal(format!("transfer disk: {err}")))?;
                sink.write(bytes, e.length as usize, written)
                    .map_err(|err| status(path, err))?;
                written += e.length;
                let consumed = DiskWriteResponse {
                    msg: Some(disk_write_response::Msg::Consumed(e)),
                };
                if reply.blocking_send(Ok(consumed)).is_err() {
                    return Err(Status::cancelled("the host hung up"));
                }
            }
            Some(disk_write_request::Msg::End(sent)) => {
                if sent != written {
                    return Err(Status::data_loss(format!(
                        "{}: {written} of {sent} bytes arrived; nothing was replaced",
                        path.display()
                    )));
                }
                sink.finish(path, mode)?;
                return Ok(written);
            }
            Some(disk_write_request::Msg::Header(_)) => {
                return Err(Status::invalid_argument(
                    "a WriteFileFromDisk stream has one header, first",
                ))
            }
            // The host went away before `end`: the staged file goes with the sink.
            None => {
                return Err(Status::cancelled(format!(
                    "{}: the copy stopped before its end; nothing was replaced",
                    path.display()
                )))
            }
        }
    }
}

/// The file being read: through a direct-I/O descriptor when the file system allows it.
struct Source {
    path: PathBuf,
    file: File,
    direct: bool,
    offset: u64,
}

impl Source {
    fn open(path: PathBuf) -> Result<Self, Status> {
        let meta = std::fs::metadata(&path).map_err(|e| status(&path, e))?;
        if meta.is_dir() {
            return Err(Status::invalid_argument(format!(
                "{}: Is a directory",
                path.display()
            )));
        }
        let direct = meta.is_file().then(|| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
        });
        let (file, direct) = match direct {
            Some(Ok(f)) => (f, true),
            _ => (File::open(&path).map_err(|e| status(&path, e))?, false),
        };
        Ok(Self {
            path,
            file,
            direct,
            offset: 0,
        })
    }

    /// Fills `buf` from the file; fewer bytes only at its end.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Status> {
        let mut n = 0;
        while n < buf.len() {
            match self.file.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    self.offset += k as u64;
                    // A short direct read is the end of the file; the next would be unaligned.
                    if self.direct && k % ALIGN as usize != 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.reopen_buffered()?
                }
                Err(e) => return Err(status(&self.path, e)),
            }
        }
        Ok(n)
    }

    fn reopen_buffered(&mut self) -> Result<(), Status> {
        let mut file = File::open(&self.path).map_err(|e| status(&self.path, e))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| status(&self.path, e))?;
        self.file = file;
        self.direct = false;
        Ok(())
    }
}

/// Serves a `ReadFileToDisk` call: opens the file (a missing one is an error before any
/// data), then fills the host's slots on a thread of its own until the file ends or the host
/// hangs up.
pub async fn read(
    mut input: Streaming<DiskReadRequest>,
    reply: mpsc::Sender<Result<DiskReadResponse, Status>>,
) -> Result<(), Status> {
    let disk = device().ok_or_else(no_disk)?;
    let start: DiskReadStart = match input.message().await? {
        Some(DiskReadRequest {
            msg: Some(disk_read_request::Msg::Start(s)),
        }) => s,
        _ => {
            return Err(Status::invalid_argument(
                "the first ReadFileToDisk message must be start",
            ))
        }
    };
    for slot in &start.slots {
        check_slot(slot, slot.length)?;
    }
    if start.slots.is_empty() {
        return Err(Status::invalid_argument("ReadFileToDisk needs a slot"));
    }
    let path = PathBuf::from(start.path);
    let source = tokio::task::spawn_blocking(move || Source::open(path))
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = fill_slots(&rt, &disk, input, &reply, source, start.slots) {
            let _ = reply.blocking_send(Err(e));
        }
    });
    Ok(())
}

fn fill_slots(
    rt: &Handle,
    disk: &File,
    mut input: Streaming<DiskReadRequest>,
    reply: &mpsc::Sender<Result<DiskReadResponse, Status>>,
    mut source: Source,
    slots: Vec<DiskExtent>,
) -> Result<(), Status> {
    let sizes: HashMap<u64, u64> = slots.iter().map(|s| (s.offset, s.length)).collect();
    let mut free: Vec<u64> = slots.iter().rev().map(|s| s.offset).collect();
    let largest = sizes.values().copied().max().unwrap_or(ALIGN);
    let mut buf = AlignedBuf::new(largest as usize);
    loop {
        let offset = match free.pop() {
            Some(o) => o,
            None => match rt.block_on(input.message()) {
                Ok(Some(DiskReadRequest {
                    msg: Some(disk_read_request::Msg::Consumed(e)),
                })) if sizes.contains_key(&e.offset) => e.offset,
                Ok(Some(_)) => {
                    return Err(Status::invalid_argument(
                        "ReadFileToDisk expects consumed slots it handed out",
                    ))
                }
                // The host hung up: stop reading.
                Ok(None) | Err(_) => return Ok(()),
            },
        };
        let size = sizes[&offset];
        let n = source.fill(buf.get(size as usize))?;
        if n == 0 {
            return Ok(());
        }
        let padded = round_up(n as u64) as usize;
        disk.write_all_at(buf.get(padded), offset)
            .map_err(|e| Status::internal(format!("transfer disk: {e}")))?;
        let filled = DiskReadResponse {
            extent: Some(DiskExtent {
                offset,
                length: n as u64,
            }),
        };
        if reply.blocking_send(Ok(filled)).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_is_found_by_its_serial() {
        let sys = tempfile::tempdir().unwrap();
        for (dev, serial) in [("vda", ""), ("vdb", "noid-transfer\n"), ("vdc", "other")] {
            std::fs::create_dir(sys.path().join(dev)).unwrap();
            std::fs::write(sys.path().join(dev).join("serial"), serial).unwrap();
        }
        assert_eq!(find_device(sys.path()), Some(PathBuf::from("/dev/vdb")));
        std::fs::remove_dir_all(sys.path().join("vdb")).unwrap();
        assert_eq!(find_device(sys.path()), None);
    }

    #[test]
    fn slots_must_be_aligned_and_on_the_disk() {
        let e = |offset, length| DiskExtent { offset, length };
        assert!(check_slot(&e(0, 10), 4096).is_ok());
        assert!(check_slot(&e(BYTES - 4096, 4096), 4096).is_ok());
        assert!(check_slot(&e(100, 10), 4096).is_err(), "unaligned offset");
        assert!(
            check_slot(&e(0, 5000), 4096).is_err(),
            "longer than its slot"
        );
        assert!(check_slot(&e(BYTES, 1), 4096).is_err(), "past the end");
        assert!(
            check_slot(&e(u64::MAX - 4095, 1), 4096).is_err(),
            "overflow"
        );
        assert!(check_slot(&e(0, 1), MAX_SLOT * 2).is_err(), "too large");
    }

    #[test]
    fn buffers_are_aligned() {
        for len in [1, 4096, 1 << 20] {
            let mut b = AlignedBuf::new(len);
            let s = b.get(len);
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % ALIGN as usize, 0);
        }
    }

    #[test]
    fn a_sink_writes_only_what_was_sent_and_places_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let (path, mut sink) = Sink::open(&Target::Replace(dest.clone())).unwrap();
        let mut buf = AlignedBuf::new(8192);
        let b = buf.get(8192);
        b.fill(b'x');
        sink.write(b, 8192, 0).unwrap();
        b.fill(b'y');
        sink.write(&b[..4096], 5, 8192).unwrap();
        if let Sink::Staged { staged, .. } = &sink {
            let staged_len = std::fs::metadata(&staged.tmp).unwrap().len();
            assert_eq!(staged_len, 8197, "the staged file holds padding");
        }
        sink.finish(&path, 0o600).unwrap();
        let got = std::fs::read(&dest).unwrap();
        assert_eq!(got.len(), 8197);
        assert!(got[..8192].iter().all(|&c| c == b'x'));
        assert_eq!(&got[8192..], b"yyyyy");
    }

    #[test]
    fn a_source_reads_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut s = Source::open(p).unwrap();
        let mut buf = AlignedBuf::new(8192);
        let mut got = Vec::new();
        loop {
            let n = s.fill(buf.get(8192)).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf.get(n)[..n]);
        }
        assert_eq!(got, data);
        let e = Source::open(dir.path().to_path_buf()).err().unwrap();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
}
