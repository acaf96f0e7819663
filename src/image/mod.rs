//! Images: the files a node boots (kernel, initrd, root filesystem) and drover's own
//! initramfs, kept in a content-addressed blob store under `<state>/blobs/` and
//! `<state>/chunks/` ([`Blobs`]).
//!
//! Data flow: `drover image add` imports each file once: [`Blobs::import_with`] hashes the
//! whole (BLAKE3: the blob's id, which image records name), cuts it into content-defined
//! chunks ([`chunk`]), stores each chunk not already there under its own hash, then the
//! blob's manifest. It packs a rootfs directory into a tar (`rootfs`), builds the agent
//! initramfs for it (`initramfs`), and records an [`Image`](crate::store::model::Image)
//! naming the blobs. `drover image import` ([`import`]) makes the rootfs tar from a
//! directory, a compressed tarball or a container image and takes the kernel from the tree.
//! Each change of an image's files is a new entry of its append-only history
//! (`crate::admin::record_files`, `rollback_image`); two versions one package apart share
//! all chunks but those around the package, and [`usage`] reports what each version adds.
//! Every consumer reads a blob through [`BlobReader`] (`Read + Seek`, chunk by chunk, each
//! chunk checked against its hash): the HTTP shell (with Range), the NFS server's unpacking,
//! the initramfs builder, backup and the pool's replication (`crate::pool::replication`,
//! which fetches a manifest and then only the chunks a member lacks). Blobs written before
//! chunking are single files named by their hash and are read as they are.
//!
//! `drover image build` ([`build`], from a [`recipe`]) bootstraps a Debian tree and imports
//! it the same way; `drover image shell` ([`shell`]) unpacks the latest tree, runs a command
//! in it ([`chroot`]) and, on success, imports the changed tree, summarised by [`diff`].
//!
//! Not here yet: garbage collection of chunks no image version names (nothing is deleted,
//! which backup relies on), chunks fetched from booting nodes.

pub mod build;
pub mod chroot;
pub mod chunk;
pub mod diff;
pub mod import;
pub mod initramfs;
pub mod mount;
pub mod reader;
pub mod recipe;
pub mod rootfs;
pub mod shell;
pub mod tarindex;
pub mod unpack;
pub mod usage;
#[cfg(test)]
mod version_tests;

use crate::store::model::{BlobId, ImageFile, ImageFiles};
use chunk::MAX_CHUNK;
pub use reader::BlobReader;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: no such file")]
    Missing(PathBuf),
    #[error("{0}: is a directory, expected a file")]
    NotAFile(PathBuf),
    #[error("rootfs {path}")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: rootfs::RootfsError,
    },
    #[error("blob {id}: {source}")]
    Manifest {
        id: BlobId,
        #[source]
        source: chunk::ManifestError,
    },
    #[error("chunk {0} does not hash to its name or has a bad size")]
    BadChunk(String),
    #[error("a blob of more than {} chunks", chunk::MAX_CHUNKS)]
    TooBig,
    #[error("building the agent initramfs for {path}")]
    Initramfs {
        path: PathBuf,
        #[source]
        source: initramfs::InitramfsError,
    },
}

/// The blob store. A blob is named by the BLAKE3 hash of its bytes (its [`BlobId`], what
/// image records name) and kept in one of two forms:
/// - chunked (every blob written now): `blobs/<id>.chunks`, a [`chunk::Manifest`], and its
///   chunks under `chunks/<first 2 hex digits>/<chunk hash>`, each stored once for all blobs;
/// - whole (stores made before chunking): `blobs/<id>`, the bytes themselves.
///
/// Readers do not care which: [`Blobs::open`] gives a [`BlobReader`] over either.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
    chunk_dir: PathBuf,
}

/// File name suffix of a manifest in the blob directory.
const MANIFEST_SUFFIX: &str = ".chunks";

/// Bytes a blob import adds to the store and finds there already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub new: u64,
    pub reused: u64,
}

impl Blobs {
    pub fn new(state_dir: &Path) -> Blobs {
        Blobs {
            dir: state_dir.join("blobs"),
            chunk_dir: state_dir.join("chunks"),
        }
    }

    /// The directory of the manifests and whole-file blobs (and of in-progress imports).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `id` could name a blob: a hash this store made (64 lowercase hex digits), so
    /// safe as a path component.
    pub fn valid_id(id: &str) -> bool {
        id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{MANIFEST_SUFFIX}"))
    }

    /// Whether the store holds blob `id`, in either form.
    pub fn contains(&self, id: &str) -> bool {
        Blobs::valid_id(id) && (self.manifest_path(id).exists() || self.dir.join(id).exists())
    }

    /// The manifest of chunked blob `id`, as stored (`None`: not here as a chunked blob).
    pub fn manifest_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, ImageError> {
        if !Blobs::valid_id(id) {
            return Ok(None);
        }
        let path = self.manifest_path(id);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ImageError::Io { path, source }),
        }
    }

    fn manifest(&self, id: &str) -> Result<Option<chunk::Manifest>, ImageError> {
        let Some(bytes) = self.manifest_bytes(id)? else {
            return Ok(None);
        };
        chunk::Manifest::decode(&bytes)
            .map(Some)
            .map_err(|source| ImageError::Manifest {
                id: id.to_string(),
                source,
            })
    }

    /// The size of blob `id`, from its manifest's header or its file.
    pub fn size(&self, id: &str) -> Result<u64, ImageError> {
        let path = self.manifest_path(id);
        let mut header = [0; chunk::HEADER];
        match File::open(&path).and_then(|mut f| io::Read::read_exact(&mut f, &mut header)) {
            Ok(()) => chunk::Manifest::decode_header(&header)
                .map(|(size, _)| size)
                .map_err(|source| ImageError::Manifest {
                    id: id.to_string(),
                    source,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(self.open(id)?.len()),
            Err(source) => Err(ImageError::Io { path, source }),
        }
    }

    /// Opens blob `id` for reading.
    pub fn open(&self, id: &str) -> Result<BlobReader, ImageError> {
        if let Some(m) = self.manifest(id)? {
            return Ok(BlobReader::chunked(self.chunk_dir.clone(), m));
        }
        let path = self.dir.join(id);
        if !Blobs::valid_id(id) {
            return Err(ImageError::Missing(path));
        }
        match File::open(&path) {
            Ok(f) => BlobReader::whole(f).map_err(|source| ImageError::Io { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::Missing(path)),
            Err(source) => Err(ImageError::Io { path, source }),
        }
    }

    /// The chunks of blob `id` with their sizes; a whole-file blob is one chunk named by its
    /// id. Empty when the store lacks the blob.
    pub fn chunk_list(&self, id: &str) -> Result<Vec<(chunk::ChunkId, u64)>, ImageError> {
        if let Some(m) = self.manifest(id)? {
            return Ok(m.chunks.iter().map(|c| (c.id, u64::from(c.len))).collect());
        }
        let path = self.dir.join(id);
        match (chunk::parse_hex(id), std::fs::metadata(&path)) {
            (Some(cid), Ok(meta)) => Ok(vec![(cid, meta.len())]),
            _ => Ok(Vec::new()),
        }
    }

    /// The chunks of `file`: from the store, or, when the store lacks the blob, one chunk
    /// named by its id (so figures still add up on a member that has not fetched it yet).
    fn file_chunks(&self, file: &ImageFile) -> Result<Vec<(chunk::ChunkId, u64)>, ImageError> {
        let chunks = self.chunk_list(&file.blob)?;
        if !chunks.is_empty() || file.size == 0 {
            return Ok(chunks);
        }
        let id =
            chunk::parse_hex(&file.blob).unwrap_or(*blake3::hash(file.blob.as_bytes()).as_bytes());
        Ok(vec![(id, file.size)])
    }

    /// Each version's figures (see [`usage::usage`]), oldest first.
    pub fn version_usage(
        &self,
        versions: &[crate::store::model::ImageVersion],
    ) -> Result<Vec<usage::Usage>, ImageError> {
        let mut lists = Vec::with_capacity(versions.len());
        for v in versions {
            let mut chunks = Vec::new();
            for f in v.files.iter() {
                chunks.extend(self.file_chunks(f)?);
            }
            lists.push(chunks);
        }
        Ok(usage::usage(&lists))
    }

    /// The store's totals for the blobs that `images` name in any version.
    pub fn totals(
        &self,
        images: &[crate::store::model::Image],
    ) -> Result<usage::StoreTotals, ImageError> {
        let mut named = std::collections::BTreeMap::new();
        for f in images.iter().flat_map(|i| i.all_files()) {
            named.insert(f.blob.as_str(), f.size);
        }
        Ok(usage::StoreTotals {
            blobs: named.len() as u64,
            logical: named.values().sum(),
            stored: self.stored_bytes().map_err(io_at(&self.dir))?,
        })
    }

    /// Whether chunk `id` is stored (not checked here: readers check it).
    pub fn has_chunk(&self, id: &chunk::ChunkId) -> bool {
        reader::chunk_path(&self.chunk_dir, id).exists()
    }

    /// Chunk `id`'s bytes, checked against its hash.
    pub fn read_chunk(&self, id: &chunk::ChunkId) -> io::Result<Vec<u8>> {
        reader::read_chunk(&self.chunk_dir, id, None)
    }

    /// Every blob id in the store, either form, sorted; in-progress imports left out.
    pub fn list(&self) -> io::Result<Vec<BlobId>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                let id = name.strip_suffix(MANIFEST_SUFFIX).unwrap_or(name);
                if Blobs::valid_id(id) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Bytes the store takes on disk: chunks, manifests and whole-file blobs.
    pub fn stored_bytes(&self) -> io::Result<u64> {
        fn walk(dir: &Path, depth: u8) -> io::Result<u64> {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            let mut sum = 0;
            for entry in entries {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() && depth > 0 {
                    sum += walk(&entry.path(), depth - 1)?;
                } else if meta.is_file() {
                    sum += meta.len();
                }
            }
            Ok(sum)
        }
        Ok(walk(&self.dir, 0)? + walk(&self.chunk_dir, 1)?)
    }

    /// Stores chunk `bytes` under its hash after checking that it hashes to `id` (a chunk
    /// from a peer); returns false when it was here already.
    pub fn put_chunk(&self, id: &chunk::ChunkId, bytes: &[u8]) -> Result<bool, ImageError> {
        if blake3::hash(bytes).as_bytes() != id || bytes.is_empty() || bytes.len() > MAX_CHUNK {
            return Err(ImageError::BadChunk(chunk::hex(id)));
        }
        let mut dirs = BTreeSet::new();
        let new = self.write_chunk(id, bytes, &mut dirs)?;
        sync_dirs(&dirs)?;
        Ok(new)
    }

    /// Writes chunk `id` durably unless it is stored; the directory to fsync goes to `dirs`.
    fn write_chunk(
        &self,
        id: &chunk::ChunkId,
        bytes: &[u8],
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<bool, ImageError> {
        let dest = reader::chunk_path(&self.chunk_dir, id);
        if dest.exists() {
            return Ok(false);
        }
        // chunk_path is chunk_dir/xx/NAME: it has a parent.
        let parent = dest.parent().unwrap_or(&self.chunk_dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io_at(&parent))?;
        let tmp = self
            .chunk_dir
            .join(format!(".incoming-{}-{}", std::process::id(), unique()));
        let written = write_synced(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .map_err(io_at(&dest));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        dirs.insert(parent);
        dirs.insert(self.chunk_dir.clone());
        Ok(true)
    }

    /// Records chunked blob `id` (whose chunks are all stored and synced) durably.
    pub fn put_manifest(&self, id: &str, manifest: &chunk::Manifest) -> Result<(), ImageError> {
        if !Blobs::valid_id(id) {
            return Err(ImageError::Missing(self.dir.join(id)));
        }
        std::fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        let dest = self.manifest_path(id);
        let tmp = self
            .dir
            .join(format!(".incoming-{}-{}", std::process::id(), unique()));
        let written = write_synced(&tmp, &manifest.encode())
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .map_err(io_at(&dest));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        sync_dirs(&BTreeSet::from([self.dir.clone()]))
    }

    /// Records chunked blob `id` from a peer's `manifest` once all its chunks are here and
    /// their bytes, read back in order, hash to `id`; false (nothing written) when they do not.
    pub fn adopt_manifest(&self, id: &str, manifest: &chunk::Manifest) -> Result<bool, ImageError> {
        let mut reader = BlobReader::chunked(self.chunk_dir.clone(), manifest.clone());
        let mut hasher = blake3::Hasher::new();
        io::copy(&mut reader, &mut hasher).map_err(io_at(&self.chunk_dir))?;
        if hasher.finalize().to_hex().as_str() != id {
            return Ok(false);
        }
        self.put_manifest(id, manifest)?;
        Ok(true)
    }

    /// Copies the regular file `src` into the store.
    pub fn import_file(&self, src: &Path) -> Result<ImageFile, ImageError> {
        let meta = std::fs::metadata(src).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::Missing(src.to_path_buf()),
            _ => ImageError::Io {
                path: src.to_path_buf(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            return Err(ImageError::NotAFile(src.to_path_buf()));
        }
        let mut input = File::open(src).map_err(io_at(src))?;
        self.import_with(|out| io::copy(&mut input, out).map(|_| ()))
    }

    /// Stores the finished file `tmp` (in [`Blobs::dir`]) and removes it.
    pub fn adopt(&self, tmp: &Path) -> Result<ImageFile, ImageError> {
        let stored = self.import_file(tmp)?;
        std::fs::remove_file(tmp).map_err(io_at(tmp))?;
        Ok(stored)
    }

    /// Stores whatever `fill` writes, under the hash of those bytes.
    pub fn import_with<E>(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<ImageFile, ImageError>
    where
        ImageError: From<E>,
    {
        self.import_counted(fill).map(|(file, _)| file)
    }

    /// [`Blobs::import_with`], also saying how many bytes were new to the store.
    ///
    /// Order of durable writes: every new chunk (temp file, fsync, rename), then their
    /// directories, then the manifest (temp, fsync, rename, fsync of `blobs/`): a manifest
    /// never names a chunk that a crash could lose.
    pub fn import_counted<E>(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<(ImageFile, Stored), ImageError>
    where
        ImageError: From<E>,
    {
        let mut writer = ChunkWriter {
            blobs: self,
            buf: Vec::with_capacity(2 * MAX_CHUNK),
            whole: blake3::Hasher::new(),
            manifest: chunk::Manifest::default(),
            dirs: BTreeSet::new(),
            stored: Stored::default(),
            failed: None,
        };
        let filled = fill(&mut writer);
        if let Some(e) = writer.failed.take() {
            return Err(e);
        }
        filled.map_err(ImageError::from)?;
        writer.flush_chunks(true)?;
        sync_dirs(&writer.dirs)?;
        let id = writer.whole.finalize().to_hex().to_string();
        self.put_manifest(&id, &writer.manifest)?;
        Ok((
            ImageFile {
                blob: id,
                size: writer.manifest.size,
            },
            writer.stored,
        ))
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io {
        path: path.clone(),
        source,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Fsyncs each directory, so the renames into them survive a crash.
fn sync_dirs(dirs: &BTreeSet<PathBuf>) -> Result<(), ImageError> {
    for d in dirs {
        File::open(d).and_then(|f| f.sync_all()).map_err(io_at(d))?;
    }
    Ok(())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl From<io::Error> for ImageError {
    fn from(source: io::Error) -> Self {
        ImageError::Io {
            path: PathBuf::new(),
            source,
        }
    }
}

/// Cuts what is written into chunks, stores the new ones and hashes the whole.
struct ChunkWriter<'a> {
    blobs: &'a Blobs,
    /// Bytes not yet cut; it starts at a chunk's first byte.
    buf: Vec<u8>,
    whole: blake3::Hasher,
    manifest: chunk::Manifest,
    /// Chunk directories written to, to fsync before the manifest.
    dirs: BTreeSet<PathBuf>,
    stored: Stored,
    /// The store error behind an `io::Error` handed to the filler, kept with its path.
    failed: Option<ImageError>,
}

impl ChunkWriter<'_> {
    /// Cuts and stores chunks while at least `MAX_CHUNK` bytes wait (all of them at `end`).
    fn flush_chunks(&mut self, end: bool) -> Result<(), ImageError> {
        let mut at = 0;
        while at < self.buf.len() && (end || self.buf.len() - at >= MAX_CHUNK) {
            let n = chunk::cut(&self.buf[at..]);
            let bytes = &self.buf[at..at + n];
            let id = *blake3::hash(bytes).as_bytes();
            if self.blobs.write_chunk(&id, bytes, &mut self.dirs)? {
                self.stored.new += n as u64;
            } else {
                self.stored.reused += n as u64;
            }
            if self.manifest.chunks.len() >= chunk::MAX_CHUNKS {
                return Err(ImageError::TooBig);
            }
            self.manifest.chunks.push(chunk::ChunkRef {
                id,
                // n <= MAX_CHUNK, which fits a u32.
                len: n as u32,
            });
            self.manifest.size += n as u64;
            at += n;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the blob store failed"));
        }
        self.whole.update(data);
        self.buf.extend_from_slice(data);
        // Cutting once 2 * MAX_CHUNK wait moves the rest down once per few chunks.
        if self.buf.len() >= 2 * MAX_CHUNK {
            if let Err(e) = self.flush_chunks(false) {
                let msg = e.to_string();
                self.failed = Some(e);
                return Err(io::Error::other(msg));
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rootfs tar to read, once per pass: a blob of the store or a plain file.
#[derive(Debug, Clone, Copy)]
pub enum Tar<'a> {
    Blob(&'a Blobs, &'a str),
    File(&'a Path),
}

impl Tar<'_> {
    pub fn open(&self) -> io::Result<BlobReader> {
        match self {
            Tar::Blob(blobs, id) => blobs.open(id).map_err(|e| match e {
                ImageError::Io { source, .. } => source,
                other => io::Error::new(io::ErrorKind::NotFound, other.to_string()),
            }),
            Tar::File(p) => BlobReader::whole(File::open(p)?),
        }
    }

    /// What to call it in errors.
    pub fn name(&self) -> PathBuf {
        match self {
            Tar::Blob(blobs, id) => blobs.dir.join(id),
            Tar::File(p) => p.to_path_buf(),
        }
    }
}

/// What `drover image add` was given.
#[derive(Debug, Clone)]
pub struct ImageSource {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    pub cmdline: String,
}

/// Imports an image's files into the blob store. For a rootfs it also builds drover's
/// initramfs with `agent` (normally this very binary) as `/init`.
pub fn import(blobs: &Blobs, src: &ImageSource, agent: &Path) -> Result<ImageFiles, ImageError> {
    let kernel = blobs.import_file(&src.kernel)?;
    let initrd = src
        .initrd
        .as_deref()
        .map(|p| blobs.import_file(p))
        .transpose()?;
    let (rootfs, initramfs) = match &src.rootfs {
        None => (None, None),
        Some(path) => {
            let rootfs_err = |source| ImageError::Rootfs {
                path: path.clone(),
                source,
            };
            let meta = std::fs::metadata(path).map_err(|_| ImageError::Missing(path.clone()))?;
            let tar = if meta.is_dir() {
                blobs.import_with(|out| rootfs::pack_dir(path, out).map_err(rootfs_err))?
            } else {
                rootfs::check_tar(path).map_err(rootfs_err)?;
                blobs.import_file(path)?
            };
            let initramfs = agent_initramfs(blobs, agent, Tar::Blob(blobs, &tar.blob), path)?;
            (Some(tar), Some(initramfs))
        }
    };
    Ok(ImageFiles {
        kernel,
        initrd,
        rootfs,
        initramfs,
    })
}

/// Builds and stores drover's initramfs (with `agent` as `/init`) for the rootfs tar at
/// `tar`, which came from `source`.
fn agent_initramfs(
    blobs: &Blobs,
    agent: &Path,
    tar: Tar<'_>,
    source: &Path,
) -> Result<ImageFile, ImageError> {
    blobs.import_with(|out| {
        initramfs::build(agent, tar, out)
            .map(|_| ())
            .map_err(|e| ImageError::Initramfs {
                path: source.to_path_buf(),
                source: e,
            })
    })
}
