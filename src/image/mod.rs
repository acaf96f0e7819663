//! Images: the files a node boots (kernel, initrd, root filesystem) and drover's own
//! initramfs, kept in a content-addressed blob store under `<state>/blobs/`.
//!
//! Data flow: `drover image add` imports each file once (copied, hashed with BLAKE3 while it
//! is written, renamed into place under its hash), packs a rootfs directory into a tar
//! (`rootfs`), builds the agent initramfs for it (`initramfs`), and records an
//! [`Image`](crate::store::model::Image) naming the blobs. `drover image import` ([`import`])
//! makes the rootfs tar from a directory, a compressed tarball or a container image and takes
//! the kernel from the tree. Each change of an image's files is a new entry of its
//! append-only history (`crate::admin::record_files`, `rollback_image`); nodes and groups
//! follow the latest version or pin one, and the boot path serves a pinned version as
//! `/images/NAME@N/...` (`crate::http::ipxe::image_path_name`). The HTTP shell serves blobs
//! by path; identical files share one blob.
//!
//! Not here yet: chunked or per-file blobs (a one-file change stores a whole new rootfs
//! tar), garbage collection of unreferenced blobs. Replication between pool members is
//! `crate::pool::replication` (it fetches the blobs of every version).

pub mod import;
pub mod initramfs;
pub mod rootfs;
pub mod unpack;
#[cfg(test)]
mod version_tests;

use crate::store::model::{BlobId, ImageFile, ImageFiles};
use std::fs::File;
use std::io::{self, BufWriter, Write};
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
    #[error("building the agent initramfs for {path}")]
    Initramfs {
        path: PathBuf,
        #[source]
        source: initramfs::InitramfsError,
    },
}

/// The blob store: one file per content hash.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn new(state_dir: &Path) -> Blobs {
        Blobs {
            dir: state_dir.join("blobs"),
        }
    }

    /// The directory of the blob files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob `id` lives. `id` must be a hash this store made (hex only).
    pub fn path(&self, id: &BlobId) -> Option<PathBuf> {
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| self.dir.join(id))
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
        let mut input = File::open(src).map_err(|source| ImageError::Io {
            path: src.to_path_buf(),
            source,
        })?;
        self.import_with(|out| io::copy(&mut input, out).map(|_| ()))
    }

    /// Moves the finished file `tmp` (in [`Blobs::dir`]) into the store under its hash,
    /// without copying it.
    pub fn adopt(&self, tmp: &Path) -> Result<ImageFile, ImageError> {
        let io_err = |source| ImageError::Io {
            path: tmp.to_path_buf(),
            source,
        };
        let mut file = File::open(tmp).map_err(io_err)?;
        let mut writer = HashingWriter {
            inner: io::sink(),
            hasher: blake3::Hasher::new(),
            size: 0,
        };
        io::copy(&mut file, &mut writer).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        let id = writer.hasher.finalize().to_hex().to_string();
        crate::durable::rename(tmp, &self.dir.join(&id)).map_err(io_err)?;
        Ok(ImageFile {
            blob: id,
            size: writer.size,
        })
    }

    /// Stores whatever `fill` writes, under the hash of those bytes.
    pub fn import_with<E>(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<ImageFile, ImageError>
    where
        ImageError: From<E>,
    {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let tmp = self
            .dir
            .join(format!(".incoming-{}-{}", std::process::id(), unique()));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut writer = HashingWriter {
            inner: BufWriter::new(file),
            hasher: blake3::Hasher::new(),
            size: 0,
        };
        let result = fill(&mut writer).map_err(ImageError::from).and_then(|()| {
            let file = writer
                .inner
                .into_inner()
                .map_err(|e| e.into_error())
                .map_err(io_err(&tmp))?;
            file.sync_all().map_err(io_err(&tmp))?;
            let id = writer.hasher.finalize().to_hex().to_string();
            let dest = self.dir.join(&id);
            crate::durable::rename(&tmp, &dest).map_err(io_err(&dest))?;
            Ok(ImageFile {
                blob: id,
                size: writer.size,
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
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

struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
            let tar_path = blobs
                .path(&tar.blob)
                .ok_or_else(|| ImageError::Missing(path.clone()))?;
            let initramfs = agent_initramfs(blobs, agent, &tar_path, path)?;
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
/// `tar_path`, which came from `source`.
fn agent_initramfs(
    blobs: &Blobs,
    agent: &Path,
    tar_path: &Path,
    source: &Path,
) -> Result<ImageFile, ImageError> {
    blobs.import_with(|out| {
        initramfs::build(agent, tar_path, out)
            .map(|_| ())
            .map_err(|e| ImageError::Initramfs {
                path: source.to_path_buf(),
                source: e,
            })
    })
}
