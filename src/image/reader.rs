//! [`BlobReader`]: one blob of the store opened for reading, as `Read + Seek` with
//! positioned reads, whatever its form on disk: a manifest and its chunks, or (stores made
//! before chunking) one whole file.
//!
//! A chunked blob is read one chunk at a time: the chunk that holds the current position is
//! read whole (at most `chunk::MAX_CHUNK` bytes, the only buffer), checked against its
//! BLAKE3 name and length, and kept until the position leaves it. Every load is checked, not
//! only the first: hashing 256 KiB costs far less than reading it from disk, and a chunk that
//! rots after it was written is caught by the next reader instead of being served.
//!
//! Not here: writing (`super::Blobs`), the whole-blob hash (a reader of part of a blob cannot
//! check it; chunk hashes are enough, since the manifest names them and the manifest is
//! named by the blob id it was written under).

use super::chunk::{self, Manifest};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// A blob opened for reading.
#[derive(Debug)]
pub struct BlobReader {
    size: u64,
    pos: u64,
    form: Form,
}

#[derive(Debug)]
enum Form {
    /// A whole-file blob, or a plain file (tests, `Tar::File`).
    Whole(File),
    Chunked {
        chunk_dir: PathBuf,
        manifest: Manifest,
        /// `manifest.offsets()`.
        offsets: Vec<u64>,
        /// The index of the chunk in `buf`.
        loaded: Option<usize>,
        buf: Vec<u8>,
    },
}

impl BlobReader {
    /// Reads a plain file (a whole-file blob).
    pub fn whole(file: File) -> io::Result<BlobReader> {
        let size = file.metadata()?.len();
        Ok(BlobReader {
            size,
            pos: 0,
            form: Form::Whole(file),
        })
    }

    /// Reads the blob `manifest` describes, from the chunks under `chunk_dir`.
    pub(super) fn chunked(chunk_dir: PathBuf, manifest: Manifest) -> BlobReader {
        BlobReader {
            size: manifest.size,
            pos: 0,
            form: Form::Chunked {
                chunk_dir,
                offsets: manifest.offsets(),
                manifest,
                loaded: None,
                buf: Vec::new(),
            },
        }
    }

    /// The blob's size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Reads into `buf` from `offset`, leaving the position after what was read.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.seek(SeekFrom::Start(offset))?;
        self.read(buf)
    }
}

/// The path of chunk `id` under `chunk_dir`: a directory per first byte keeps directories
/// small (a 1 GiB image is some 16 Ki chunks).
pub fn chunk_path(chunk_dir: &std::path::Path, id: &chunk::ChunkId) -> PathBuf {
    let name = chunk::hex(id);
    chunk_dir.join(&name[..2]).join(name)
}

/// Reads chunk `id`, which must be `len` bytes, and checks its hash.
pub fn read_chunk(
    chunk_dir: &std::path::Path,
    id: &chunk::ChunkId,
    len: Option<u32>,
) -> io::Result<Vec<u8>> {
    let path = chunk_path(chunk_dir, id);
    let file = File::open(&path)?;
    let mut buf = Vec::with_capacity(len.map_or(chunk::AVG_CHUNK, |l| l as usize));
    // One more byte than allowed shows a file that is too long without reading all of it.
    file.take(chunk::MAX_CHUNK as u64 + 1)
        .read_to_end(&mut buf)?;
    let corrupt = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk {} is corrupt: {what}", path.display()),
        )
    };
    if len.is_some_and(|l| l as usize != buf.len()) || buf.len() > chunk::MAX_CHUNK {
        return Err(corrupt("wrong length"));
    }
    if blake3::hash(&buf).as_bytes() != id {
        return Err(corrupt("its bytes do not hash to its name"));
    }
    Ok(buf)
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.form {
            Form::Whole(f) => {
                let n = f.read(out)?;
                self.pos += n as u64;
                Ok(n)
            }
            Form::Chunked {
                chunk_dir,
                manifest,
                offsets,
                loaded,
                buf,
            } => {
                if self.pos >= self.size || out.is_empty() {
                    return Ok(0);
                }
                // offsets[0] == 0 <= pos < size == last offset: the index is a chunk's.
                let i = offsets.partition_point(|&o| o <= self.pos) - 1;
                if *loaded != Some(i) {
                    let c = &manifest.chunks[i];
                    *loaded = None;
                    *buf = read_chunk(chunk_dir, &c.id, Some(c.len))?;
                    *loaded = Some(i);
                }
                let within = (self.pos - offsets[i]) as usize;
                let n = out.len().min(buf.len() - within);
                out[..n].copy_from_slice(&buf[within..within + n]);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if let Form::Whole(f) = &mut self.form {
            f.seek(SeekFrom::Start(target))?;
        }
        self.pos = target;
        Ok(target)
    }
}
