//! Splitting a saved QEMU migration stream in two: the guest RAM's pages go into a memory
//! file (each page at its own offset, zero pages left as holes), everything else stays a
//! valid stream (device state, and the pages of small RAM blocks such as firmware). A VM
//! restored from the pair maps the memory file privately (copy-on-write) as its RAM and loads
//! the small stream: pages it only reads stay shared in the page cache with every other VM
//! started from the same file, and nothing of the RAM is read or parsed at start.
//!
//! The stream (QEMU 7.2, precopy, no compression, no postcopy or x-ignore-shared):
//! a header, the machine configuration, the `ram` section's START, PARTs and END (a list of
//! RAM blocks, then pages), then the devices' FULL sections, EOF and a description. Only the
//! `ram` sections are taken apart; from the first device section on the stream is copied as
//! it is. Anything else is refused, and the caller keeps the stream whole.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use thiserror::Error;

const MAGIC: u32 = 0x5145_564d;
const VERSION: u32 = 3;

const SECTION_START: u8 = 0x01;
const SECTION_PART: u8 = 0x02;
const SECTION_END: u8 = 0x03;
const SECTION_FULL: u8 = 0x04;
const SUBSECTION: u8 = 0x05;
const CONFIGURATION: u8 = 0x07;
const SECTION_FOOTER: u8 = 0x7e;

const PAGE: u64 = 4096;
const FLAG_ZERO: u64 = 0x02;
const FLAG_MEM_SIZE: u64 = 0x04;
const FLAG_PAGE: u64 = 0x08;
const FLAG_EOS: u64 = 0x10;
const FLAG_CONTINUE: u64 = 0x20;
const FLAGS: u64 = PAGE - 1;

#[derive(Debug, Error)]
pub enum StreamError {
    #[error("migration stream: {0}")]
    Io(#[from] io::Error),
    /// A layout this splitter does not know; the stream is fine, only not split.
    #[error("migration stream not split: {0}")]
    Unsupported(String),
}

fn unsupported<T>(why: impl Into<String>) -> Result<T, StreamError> {
    Err(StreamError::Unsupported(why.into()))
}

/// What a split took out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The RAM block's size: the memory file's length.
    pub block_bytes: u64,
    /// Pages with data written into the memory file.
    pub pages: u64,
}

/// Reads the stream, copying what it reads to `out` unless told otherwise.
struct Splitter<'a, R, W> {
    input: R,
    out: W,
    memory: &'a File,
    block: &'a str,
    /// The block of the last page (pages with CONTINUE are of the same block).
    current: Option<String>,
    split: Split,
    ram_section: Option<u32>,
}

impl<R: Read, W: Write> Splitter<'_, R, W> {
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.input.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn be32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn be64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// A string with a one-byte length, as QEMU writes block and section names.
    fn name(&mut self) -> io::Result<String> {
        let len = self.u8()? as usize;
        Ok(String::from_utf8_lossy(&self.take(len)?).into_owned())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    fn put_name(&mut self, name: &str) -> io::Result<()> {
        self.put(&[name.len() as u8])?;
        self.put(name.as_bytes())
    }

    fn run(mut self) -> Result<Split, StreamError> {
        if self.be32()? != MAGIC || self.be32()? != VERSION {
            return unsupported("not a QEMU migration stream of version 3");
        }
        self.put(&MAGIC.to_be_bytes())?;
        self.put(&VERSION.to_be_bytes())?;
        loop {
            let kind = self.u8()?;
            match kind {
                CONFIGURATION => {
                    let len = self.be32()?;
                    let name = self.take(len as usize)?;
                    self.put(&[kind])?;
                    self.put(&len.to_be_bytes())?;
                    self.put(&name)?;
                }
                SECTION_START => {
                    let id = self.be32()?;
                    let name = self.name()?;
                    let (instance, version) = (self.be32()?, self.be32()?);
                    if name != "ram" || self.ram_section.is_some() {
                        return unsupported(format!("an iterative section {name:?}"));
                    }
                    self.ram_section = Some(id);
                    self.put(&[kind])?;
                    self.put(&id.to_be_bytes())?;
                    self.put_name(&name)?;
                    self.put(&instance.to_be_bytes())?;
                    self.put(&version.to_be_bytes())?;
                    self.ram_data()?;
                    self.footer(id)?;
                }
                SECTION_PART | SECTION_END => {
                    let id = self.be32()?;
                    if Some(id) != self.ram_section {
                        return unsupported(format!("section {id} is not RAM"));
                    }
                    self.put(&[kind])?;
                    self.put(&id.to_be_bytes())?;
                    self.ram_data()?;
                    self.footer(id)?;
                    if kind == SECTION_END {
                        // The devices' state and the end of the stream, as they are.
                        io::copy(&mut self.input, &mut self.out)?;
                        break;
                    }
                }
                SECTION_FULL => return unsupported("device state before the end of RAM"),
                SUBSECTION => return unsupported("configuration subsections"),
                other => return unsupported(format!("section type {other:#x}")),
            }
        }
        if self.split.block_bytes == 0 {
            return unsupported(format!("no RAM block {:?}", self.block));
        }
        self.memory.set_len(self.split.block_bytes)?;
        self.out.flush()?;
        Ok(self.split)
    }

    fn footer(&mut self, id: u32) -> Result<(), StreamError> {
        if self.u8()? != SECTION_FOOTER || self.be32()? != id {
            return unsupported(format!("section {id} has no footer"));
        }
        self.put(&[SECTION_FOOTER])?;
        self.put(&id.to_be_bytes())?;
        Ok(())
    }

    /// One RAM section's data, up to and including its end-of-section mark.
    fn ram_data(&mut self) -> Result<(), StreamError> {
        loop {
            let word = self.be64()?;
            let (flags, addr) = (word & FLAGS, word & !FLAGS);
            if flags & (FLAG_ZERO | FLAG_PAGE) != 0 {
                let block = if flags & FLAG_CONTINUE == 0 {
                    Some(self.name()?)
                } else {
                    None
                };
                if let Some(b) = &block {
                    self.current = Some(b.clone());
                }
                let ours = self.current.as_deref() == Some(self.block);
                if self.current.is_none() {
                    return unsupported("a page continues no block");
                }
                if ours {
                    self.our_page(flags, addr)?;
                } else {
                    self.put(&word.to_be_bytes())?;
                    if let Some(b) = block {
                        self.put_name(&b)?;
                    }
                    let len = if flags & FLAG_ZERO != 0 { 1 } else { PAGE };
                    let data = self.take(len as usize)?;
                    self.put(&data)?;
                }
                continue;
            }
            match flags & !FLAG_CONTINUE {
                FLAG_MEM_SIZE => {
                    self.put(&word.to_be_bytes())?;
                    let mut left = addr;
                    while left > 0 {
                        let name = self.name()?;
                        let len = self.be64()?;
                        self.put_name(&name)?;
                        self.put(&len.to_be_bytes())?;
                        if name == self.block {
                            self.split.block_bytes = len;
                        }
                        left = left
                            .checked_sub(len)
                            .map_or_else(|| unsupported("RAM block sizes do not add up"), Ok)?;
                    }
                }
                FLAG_EOS => {
                    self.put(&word.to_be_bytes())?;
                    return Ok(());
                }
                other => return unsupported(format!("RAM page flags {other:#x}")),
            }
        }
    }

    /// A page of the split block: into the memory file at its offset, not into the stream.
    fn our_page(&mut self, flags: u64, addr: u64) -> Result<(), StreamError> {
        if addr
            .checked_add(PAGE)
            .is_none_or(|end| end > self.split.block_bytes)
        {
            return unsupported(format!("a page at {addr:#x} beyond its block"));
        }
        if flags & FLAG_ZERO != 0 {
            let fill = self.u8()?;
            if fill != 0 {
                self.memory.write_all_at(&[fill; PAGE as usize], addr)?;
                self.split.pages += 1;
            }
            return Ok(());
        }
        let data = self.take(PAGE as usize)?;
        if data.iter().any(|&b| b != 0) {
            self.memory.write_all_at(&data, addr)?;
            self.split.pages += 1;
        }
        Ok(())
    }
}

/// Splits the stream read from `input`: the pages of RAM block `block` into `memory` (an
/// empty file, which ends as long as the block), the rest to `state`. Each page is written
/// once; a stream with the same page twice would keep the later one, as QEMU does.
pub fn split(
    input: impl Read,
    state: impl Write,
    memory: &File,
    block: &str,
) -> Result<Split, StreamError> {
    Splitter {
        input,
        out: state,
        memory,
        block,
        current: None,
        split: Split {
            block_bytes: 0,
            pages: 0,
        },
        ram_section: None,
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds streams the way QEMU writes them.
    #[derive(Default)]
    struct Stream(Vec<u8>);

    impl Stream {
        fn b(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn u32(self, v: u32) -> Self {
            self.b(&v.to_be_bytes())
        }
        fn u64(self, v: u64) -> Self {
            self.b(&v.to_be_bytes())
        }
        fn name(self, n: &str) -> Self {
            self.b(&[n.len() as u8]).b(n.as_bytes())
        }
        fn header(self) -> Self {
            self.u32(MAGIC)
                .u32(VERSION)
                .b(&[CONFIGURATION])
                .u32(7)
                .b(b"microvm")
        }
        fn start(self, id: u32) -> Self {
            self.b(&[SECTION_START]).u32(id).name("ram").u32(0).u32(4)
        }
        fn footer(self, id: u32) -> Self {
            self.b(&[SECTION_FOOTER]).u32(id)
        }
        fn page(self, addr: u64, block: Option<&str>, byte: u8) -> Self {
            let cont = if block.is_none() { FLAG_CONTINUE } else { 0 };
            let s = self.u64(addr | FLAG_PAGE | cont);
            let s = match block {
                Some(b) => s.name(b),
                None => s,
            };
            s.b(&[byte; PAGE as usize])
        }
        fn zero(self, addr: u64, block: Option<&str>) -> Self {
            let cont = if block.is_none() { FLAG_CONTINUE } else { 0 };
            let s = self.u64(addr | FLAG_ZERO | cont);
            let s = match block {
                Some(b) => s.name(b),
                None => s,
            };
            s.b(&[0])
        }
        fn eos(self) -> Self {
            self.u64(FLAG_EOS)
        }
        /// Ends the PART section open (id 1), then RAM, then the devices and the stream.
        fn finish(self) -> Self {
            self.eos()
                .footer(1)
                .b(&[SECTION_END])
                .u32(1)
                .eos()
                .footer(1)
                .b(devices())
        }
    }

    const RAM: &str = "microvm.ram";
    const RAM_BYTES: u64 = 8 * PAGE;

    fn blocks(s: Stream) -> Stream {
        s.u64((RAM_BYTES + PAGE) | FLAG_MEM_SIZE)
            .name(RAM)
            .u64(RAM_BYTES)
            .name("bios")
            .u64(PAGE)
    }

    fn devices() -> &'static [u8] {
        &[SECTION_FULL, 0, 0, 0, 9, 3, b'c', b'p', b'u', 1, 2, 3, 0x08]
    }

    fn split_of(stream: &Stream) -> (Result<Split, StreamError>, Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let memory = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("ram"))
            .unwrap();
        let mut state = Vec::new();
        let r = split(&stream.0[..], &mut state, &memory, RAM);
        let mut mem = Vec::new();
        (&memory).read_to_end(&mut mem).unwrap();
        (r, state, mem)
    }

    #[test]
    fn ram_pages_go_to_the_memory_file_and_the_rest_stays_a_stream() {
        let full = blocks(Stream::default().header().start(1))
            .eos()
            .footer(1)
            .b(&[SECTION_PART])
            .u32(1)
            .page(0, Some(RAM), 0xaa)
            .zero(PAGE, None)
            .page(2 * PAGE, None, 0xbb)
            .page(0, Some("bios"), 0xcc)
            .page(5 * PAGE, Some(RAM), 0xdd)
            .finish();
        let (r, state, mem) = split_of(&full);
        assert_eq!(
            r.unwrap(),
            Split {
                block_bytes: RAM_BYTES,
                pages: 3
            }
        );
        let want = blocks(Stream::default().header().start(1))
            .eos()
            .footer(1)
            .b(&[SECTION_PART])
            .u32(1)
            .page(0, Some("bios"), 0xcc)
            .finish();
        assert_eq!(state, want.0, "the stream keeps all but the RAM's pages");
        assert_eq!(mem.len() as u64, RAM_BYTES);
        let page = |i: u64| &mem[(i * PAGE) as usize..((i + 1) * PAGE) as usize];
        assert!(page(0).iter().all(|&b| b == 0xaa));
        assert!(page(1).iter().all(|&b| b == 0));
        assert!(page(2).iter().all(|&b| b == 0xbb));
        assert!(page(5).iter().all(|&b| b == 0xdd));
        assert!(page(7).iter().all(|&b| b == 0));
    }

    #[test]
    fn layouts_it_does_not_know_are_refused() {
        let other_iterative = Stream::default()
            .header()
            .b(&[SECTION_START])
            .u32(1)
            .name("block")
            .u32(0)
            .u32(1);
        let compressed = blocks(Stream::default().header().start(1))
            .eos()
            .footer(1)
            .b(&[SECTION_PART])
            .u32(1)
            .u64(0x100);
        let no_block = Stream::default()
            .header()
            .start(1)
            .u64(PAGE | FLAG_MEM_SIZE)
            .name("bios")
            .u64(PAGE)
            .eos()
            .footer(1)
            .b(&[SECTION_END])
            .u32(1)
            .eos()
            .footer(1);
        for (what, s) in [
            ("another iterative section", other_iterative),
            ("compressed pages", compressed),
            ("no such block", no_block),
            ("not a stream", Stream::default().u32(1).u32(3)),
        ] {
            let (r, _, _) = split_of(&s);
            assert!(
                matches!(r, Err(StreamError::Unsupported(_))),
                "{what}: {r:?}"
            );
        }
        let (r, _, _) = split_of(&Stream::default().header().start(1));
        assert!(matches!(r, Err(StreamError::Io(_))), "truncated: {r:?}");
    }
}
