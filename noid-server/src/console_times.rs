//! When each part of a VM's console log was written: beside each log file an index of
//! records (the byte offset where a write began, and the host's time of it), and the log cut
//! into lines that each carry the time their first byte came. `noid logs --since` and `-t`
//! read it; a log without an index (written before there was one) takes its file's time.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One record: the offset (u64) and the time in milliseconds since the epoch (i64), both
/// little-endian.
const RECORD: usize = 16;

/// A line of console output (with its `\n`, except a last line still being written) and when
/// its first byte came from the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub at: SystemTime,
    pub text: Vec<u8>,
}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Appends a record: the write that begins at `offset` of the log came at `at`.
pub fn record(index: &Path, offset: u64, at: SystemTime) -> std::io::Result<()> {
    let mut rec = [0u8; RECORD];
    rec[..8].copy_from_slice(&offset.to_le_bytes());
    rec[8..].copy_from_slice(&millis(at).to_le_bytes());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(index)?
        .write_all(&rec)
}

/// The records of an index, in order; a torn last record is left out.
fn records(index: &Path) -> Vec<(u64, SystemTime)> {
    let bytes = std::fs::read(index).unwrap_or_default();
    bytes
        .chunks_exact(RECORD)
        .map(|r| {
            let offset = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
            let ms = i64::from_le_bytes(r[8..].try_into().expect("8 bytes"));
            (offset, from_millis(ms))
        })
        .collect()
}

/// The lines of one log file with the time each began: that of the last write that began at
/// or before the line's first byte; with no such record, the earliest time known for the
/// file (its first record, else its modification time).
pub fn lines(log: &Path, index: &Path) -> Vec<Line> {
    let Ok(text) = std::fs::read(log) else {
        return Vec::new();
    };
    let records = records(index);
    let fallback = records.first().map(|r| r.1).unwrap_or_else(|| {
        std::fs::metadata(log)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH)
    });
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut next = 0usize;
    let mut at = fallback;
    while start < text.len() {
        while next < records.len() && records[next].0 as usize <= start {
            at = records[next].1;
            next += 1;
        }
        let end = text[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| start + i + 1)
            .unwrap_or(text.len());
        out.push(Line {
            at,
            text: text[start..end].to_vec(),
        });
        start = end;
    }
    out
}

/// Cuts live output into pieces that each start a line or continue the one before; a piece
/// that starts a line is paired with its time.
pub struct LineStarts {
    at_line_start: bool,
}

impl LineStarts {
    /// `after` is the output already sent (a new line starts unless it ended inside one).
    pub fn after(sent: &[u8]) -> Self {
        Self {
            at_line_start: sent.is_empty() || sent.ends_with(b"\n"),
        }
    }

    pub fn cut(&mut self, at: SystemTime, data: &[u8]) -> Vec<(Option<SystemTime>, Vec<u8>)> {
        let mut out = Vec::new();
        for piece in data.split_inclusive(|b| *b == b'\n') {
            out.push((self.at_line_start.then_some(at), piece.to_vec()));
            self.at_line_start = piece.ends_with(b"\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> SystemTime {
        from_millis(ms)
    }

    #[test]
    fn each_line_takes_the_time_of_the_write_it_began_in() {
        let dir = tempfile::tempdir().unwrap();
        let (log, index) = (dir.path().join("log"), dir.path().join("idx"));
        // Writes: "one\ntw" at 1000, "o\nthree\n" at 2000, "four" at 3000.
        std::fs::write(&log, b"one\ntwo\nthree\nfour").unwrap();
        record(&index, 0, t(1000)).unwrap();
        record(&index, 6, t(2000)).unwrap();
        record(&index, 14, t(3000)).unwrap();
        let got: Vec<(i64, String)> = lines(&log, &index)
            .into_iter()
            .map(|l| (millis(l.at), String::from_utf8(l.text).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (1000, "one\n".into()),
                (1000, "two\n".into()),
                (2000, "three\n".into()),
                (3000, "four".into())
            ]
        );
    }

    #[test]
    fn a_log_without_an_index_takes_its_files_time_and_a_torn_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (log, index) = (dir.path().join("log"), dir.path().join("idx"));
        std::fs::write(&log, b"a\nb\n").unwrap();
        let modified = std::fs::metadata(&log).unwrap().modified().unwrap();
        assert!(lines(&log, &index).iter().all(|l| l.at == modified));
        std::fs::write(&index, [0u8; RECORD + 3]).unwrap();
        assert_eq!(records(&index).len(), 1);
        assert!(lines(&dir.path().join("none"), &index).is_empty());
    }

    #[test]
    fn live_output_is_cut_at_line_starts() {
        let mut cut = LineStarts::after(b"partial");
        let pieces = cut.cut(t(5), b"end\nnext\nhalf");
        assert_eq!(
            pieces,
            [
                (None, b"end\n".to_vec()),
                (Some(t(5)), b"next\n".to_vec()),
                (Some(t(5)), b"half".to_vec())
            ]
        );
        assert_eq!(cut.cut(t(6), b"rest\n"), [(None, b"rest\n".to_vec())]);
        assert_eq!(cut.cut(t(7), b"x"), [(Some(t(7)), b"x".to_vec())]);
    }
}
