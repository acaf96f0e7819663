//! `drover image mount NAME[@VERSION] DIR`: one version of an image's root tree as a
//! read-only FUSE file system, served straight from the content store. The rootfs tar is
//! indexed once at mount ([`super::tarindex`]); file data is read on demand through
//! [`BlobReader::read_at`], so nothing is unpacked to disk.
//!
//! Owners, modes, mtimes, symlinks, hard links (one inode), device nodes, FIFOs, sparse files
//! and xattrs read back as the tar holds them. The kernel checks permissions against the
//! modes (`default_permissions`); every user may look (`allow_other`), as on an NFS export.
//!
//! Runs in the foreground until SIGINT or SIGTERM (then unmounts) or until someone unmounts
//! DIR. Without `--foreground` the CLI starts itself again in the background
//! (`crate::cli`) and returns once the mount is up.
//!
//! Not here: writing (`image shell` makes new versions), picking the version (`crate::cli`),
//! fetching blobs from other pool members (the local store must hold them).

use super::reader::BlobReader;
use super::tarindex::{self, Data, Inode, Kind, TarIndex};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyStatfs,
    ReplyXattr, Request, SessionACL,
};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};

/// How long the kernel may cache attributes and names: the tree never changes while mounted.
const TTL: Duration = Duration::from_secs(3600);
/// Largest read the kernel asks for is 128 KiB; refuse anything absurd before allocating.
const MAX_READ: u32 = 16 << 20;

/// Why a mount could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting needs root (FUSE mounts without the setuid fusermount3 helper)")]
    NotRoot,
    #[error("/dev/fuse is missing: load the fuse module (`modprobe fuse`)")]
    NoFuse,
    #[error("{0}: not a directory")]
    NotDir(PathBuf),
    #[error("{0}: not empty (mount on an empty directory)")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("indexing the image's root tree: {0}")]
    Index(#[from] tarindex::IndexError<io::Error>),
    #[error("mounting on {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
}

/// Checks what can be checked before indexing: root, /dev/fuse, an empty directory.
pub fn preflight(dir: &Path, euid: u32) -> Result<(), MountError> {
    if euid != 0 {
        return Err(MountError::NotRoot);
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoFuse);
    }
    let io_err = |source| MountError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(MountError::NotDir(dir.to_path_buf()));
    }
    if std::fs::read_dir(dir).map_err(io_err)?.next().is_some() {
        return Err(MountError::NotEmpty(dir.to_path_buf()));
    }
    Ok(())
}

/// A mounted image: the index and a reader over the rootfs blob.
pub struct ImageFs {
    index: TarIndex,
    tar: Mutex<BlobReader>,
}

impl ImageFs {
    /// Indexes the tar behind `tar`.
    pub fn new(mut tar: BlobReader) -> Result<ImageFs, MountError> {
        let index = tarindex::index(|at, buf: &mut [u8]| read_full(&mut tar, at, buf))?;
        Ok(ImageFs {
            index,
            tar: Mutex::new(tar),
        })
    }

    /// How many inodes the tree has.
    pub fn inodes(&self) -> usize {
        self.index.len()
    }

    fn attr(&self, ino: u64, n: &Inode) -> FileAttr {
        let mtime = if n.mtime >= 0 {
            UNIX_EPOCH + Duration::new(n.mtime.unsigned_abs(), n.mtime_ns)
        } else {
            UNIX_EPOCH - Duration::from_secs(n.mtime.unsigned_abs())
        };
        FileAttr {
            ino: INodeNo(ino),
            size: n.size,
            blocks: n.stored().div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: kind(n.kind),
            // At most 0o7777 (the index masks it), which fits.
            perm: n.mode as u16,
            nlink: n.nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: linux_dev(n.major, n.minor),
            blksize: 4096,
            flags: 0,
        }
    }

    /// Reads `[offset, offset + size)` of a file.
    fn read_file(&self, n: &Inode, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let len = u64::from(size).min(n.size.saturating_sub(offset));
        // len <= MAX_READ (checked by the caller), which fits in memory.
        let mut out = vec![0u8; len as usize];
        // A poisoned lock only means another read panicked (the process then aborts).
        let mut tar = self.tar.lock().unwrap_or_else(|p| p.into_inner());
        match &n.data {
            Data::At(at) => read_full(&mut tar, at + offset, &mut out).map(|_| ())?,
            Data::Sparse(segs) => {
                for (to, from, l) in tarindex::sparse_copies(segs, offset, len) {
                    // Each copy lies inside `out` by construction of `sparse_copies`.
                    let dst = &mut out[to as usize..(to + l) as usize];
                    read_full(&mut tar, from, dst)?;
                }
            }
        }
        Ok(out)
    }
}

/// Fills `buf` from `at` unless the blob ends first; the bytes read.
fn read_full(tar: &mut BlobReader, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = tar.read_at(at + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Char => FileType::CharDevice,
        Kind::Block => FileType::BlockDevice,
        Kind::Fifo => FileType::NamedPipe,
    }
}

/// The kernel's 32-bit `new_encode_dev` of FUSE attributes.
fn linux_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Answers a getxattr or listxattr: the size when asked for 0 bytes, the bytes when they
/// fit, ERANGE otherwise.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(len) = u32::try_from(value.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len <= size {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl Filesystem for ImageFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self
            .index
            .lookup(parent.0, name.as_bytes())
            .and_then(|ino| Some((ino, self.index.get(ino)?)));
        match found {
            Some((ino, n)) => reply.entry(&TTL, &self.attr(ino, n), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.index.get(ino.0) {
            Some(n) => reply.attr(&TTL, &self.attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.index.get(ino.0) {
            Some(n) if n.kind == Kind::Symlink => reply.data(&n.target),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(n) = self.index.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != Kind::File {
            return reply.error(Errno::EINVAL);
        }
        if size > MAX_READ {
            return reply.error(Errno::EINVAL);
        }
        match self.read_file(n, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => {
                tracing::warn!(ino = ino.0, offset, error = %e, "reading the image failed");
                reply.error(Errno::EIO);
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(dir) = self.index.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if dir.kind != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let dots = [
            (&b"."[..], ino.0, Kind::Dir),
            (&b".."[..], dir.parent, Kind::Dir),
        ];
        let children = dir.children.iter().filter_map(|(name, &child)| {
            let k = self.index.get(child)?.kind;
            Some((&name[..], child, k))
        });
        // The offset of an entry is its position + 1: the kernel asks for what follows it.
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (name, child, k)) in dots.into_iter().chain(children).enumerate().skip(skip) {
            if reply.add(
                INodeNo(child),
                i as u64 + 1,
                kind(k),
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.index.len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(n) = self.index.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match n.xattrs.iter().find(|(k, _)| k[..] == *name.as_bytes()) {
            Some((_, v)) => xattr_reply(reply, size, v),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let Some(n) = self.index.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut list = Vec::new();
        for (k, _) in &n.xattrs {
            list.extend_from_slice(k);
            list.push(0);
        }
        xattr_reply(reply, size, &list);
    }
}

/// Mounts `fs` on `dir` and serves it until SIGINT or SIGTERM (then unmounts) or until DIR
/// is unmounted from outside. `ready` runs once the mount is up.
pub fn serve(
    fs: ImageFs,
    dir: &Path,
    source: &str,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(source.to_string()),
        MountOption::Subtype("drover".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    config.acl = SessionACL::All;
    let mount_err = |source| MountError::Mount {
        path: dir.to_path_buf(),
        source,
    };
    // The signals are caught before the mount is made, so that none can end the process
    // with the mount left behind.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(mount_err)?;
    let (mut int, mut term) = {
        let _in_runtime = runtime.enter();
        (
            signal(SignalKind::interrupt()).map_err(mount_err)?,
            signal(SignalKind::terminate()).map_err(mount_err)?,
        )
    };
    let mut session = fuser::Session::new(fs, dir, &config).map_err(mount_err)?;
    let mut unmounter = session.unmount_callable();
    let dir_shown = dir.display().to_string();
    // The signal thread is detached: it ends with the process, after `run` returns.
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(dir = %dir_shown, error = %e, "unmounting failed");
        }
    });
    ready();
    session.run().map_err(mount_err)
}
