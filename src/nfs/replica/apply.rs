//! Applying a shipment to this member's copy of a node's layer, `<state>/nfs/nodes/<node>/`.
//!
//! Confinement: every path is a list of checked names (`wire`), walked from the layer's root
//! one component at a time with `openat(.., O_NOFOLLOW)` (a directory on the way that is a
//! symlink fails the walk), and the last name is changed with the `*at` calls that do not
//! follow it. Regular files are written only through a descriptor whose `fstat` said
//! regular (never a FIFO or a device). So nothing a shipment names can reach outside the
//! layer, whatever the copy holds.
//!
//! Durability: after the operations of one shipment, every file and directory they touched is
//! fsynced (a snapshot: `syncfs` of the layer's file system), and only then does the caller
//! acknowledge.
//!
//! A snapshot makes the copy equal to the sender's layer: objects are changed in place where
//! their type allows it (directories keep their inodes, so a view open on this member stays
//! valid), and everything the snapshot does not name is removed.
//!
//! Not here: the order and origin of shipments (`pool::layers`).

use super::local::{is, list, open_obj, open_root, proc_link, reopen, Obj};
use super::sys as rsys;
use super::wire::{Body, Kind, Meta, Op, RelPath, MAX_DEPTH, XATTR_PREFIX};
use crate::nfs::fs::sys;
use std::collections::HashSet;
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why a shipment was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Not something a shipment may do (change the root's type, remove or rename it).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// This copy lacks what an operation needs, or differs from the sender's: a snapshot
    /// puts it right.
    #[error("this copy differs from the sender's layer: {0}")]
    Diverged(io::Error),
    #[error("{0}")]
    Io(io::Error),
}

fn diverged(e: io::Error) -> ApplyError {
    match e.raw_os_error() {
        Some(
            libc::ENOENT
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::EISDIR
            | libc::ENOTEMPTY
            | libc::EEXIST
            | libc::EINVAL,
        ) => ApplyError::Diverged(e),
        _ => ApplyError::Io(e),
    }
}

/// A temporary name for replacing a hard-linked file (never a name a client can make: it is
/// removed before the shipment is acknowledged, and shipments to one layer are serialised).
const TMP: &[u8] = b".drover-replica.tmp";

struct Applier {
    root: OwnedFd,
    /// Files and directories to fsync before acknowledging.
    dirty: Vec<File>,
}

/// Applies `body` to the layer `nodes_dir/node`, creating it if needed, and makes it durable.
/// `node` must be a checked node name (`admin::check_name`).
pub fn apply(nodes_dir: &Path, node: &str, body: &Body) -> Result<(), ApplyError> {
    super::wire::check_name(node.as_bytes()).map_err(|_| ApplyError::Refused("node name"))?;
    let dir = nodes_dir.join(node);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ApplyError::Io(e)),
    }
    let root = open_root(&dir).map_err(ApplyError::Io)?;
    let mut a = Applier {
        root,
        dirty: Vec::new(),
    };
    match body {
        Body::Ops(ops) => {
            for op in ops {
                a.op(op)?;
            }
            for f in &a.dirty {
                f.sync_all().map_err(ApplyError::Io)?;
            }
        }
        Body::Snapshot(ops) => {
            let mut named = HashSet::new();
            for op in ops {
                match op {
                    Op::Put { path, .. } | Op::Link { to: path, .. } => {
                        named.insert(path.clone());
                    }
                    _ => return Err(ApplyError::Refused("a snapshot holds only puts and links")),
                }
                a.op(op)?;
            }
            let root = a.dup_root()?;
            prune(root, &RelPath::root(), &named, 0)?;
            // Filling and pruning directories moved their mtimes: set them again, deepest
            // first (setting a directory's mtime does not touch its parent's).
            for op in ops.iter().rev() {
                if let Op::Put {
                    path,
                    kind: Kind::Dir,
                    meta,
                } = op
                {
                    let (dir, name) = match path.split_last() {
                        Some(_) => a.parent(path)?,
                        None => (a.dup_root()?, b".".to_vec()),
                    };
                    let c = cstr(&name)?;
                    rsys::set_mtime_at(dir.as_fd(), &c, meta.mtime.0, meta.mtime.1)
                        .map_err(ApplyError::Io)?;
                }
            }
            // A snapshot may touch the whole tree: flush the file system holding it.
            a.dirty.clear();
            rsys::syncfs(a.root.as_fd()).map_err(ApplyError::Io)?;
        }
    }
    Ok(())
}

fn reopen_dir(fd: BorrowedFd) -> io::Result<File> {
    Ok(File::from(sys::openat(
        fd,
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?))
}

/// Removes every object below `dir` whose path is not in `named`.
fn prune(
    dir: OwnedFd,
    at: &RelPath,
    named: &HashSet<RelPath>,
    depth: usize,
) -> Result<(), ApplyError> {
    for name in list(dir.as_fd()).map_err(ApplyError::Io)? {
        let Ok(path) = at.join(&name) else {
            // A name no shipment can hold: not the sender's.
            remove_any(dir.as_fd(), &name)?;
            continue;
        };
        if !named.contains(&path) {
            remove_any(dir.as_fd(), &name)?;
            continue;
        }
        let o = open_obj(dir.as_fd(), &name).map_err(ApplyError::Io)?;
        if is(&o.st, libc::S_IFDIR) && depth < MAX_DEPTH {
            let d = reopen(&o, libc::O_RDONLY | libc::O_DIRECTORY).map_err(ApplyError::Io)?;
            prune(d.into(), &path, named, depth + 1)?;
        }
    }
    Ok(())
}

/// Removes `name` from `dir`: a file, or a directory with everything in it.
fn remove_any(dir: BorrowedFd, name: &[u8]) -> Result<(), ApplyError> {
    remove_tree(dir, name, 0).map_err(ApplyError::Io)
}

fn remove_tree(dir: BorrowedFd, name: &[u8], depth: usize) -> io::Result<()> {
    let c = sys::cstr(name)?;
    let st = match sys::stat(dir, &c) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if is(&st, libc::S_IFDIR) {
        if depth > 4 * MAX_DEPTH {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let d = sys::openat(
            dir,
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        for n in list(d.as_fd())? {
            remove_tree(d.as_fd(), &n, depth + 1)?;
        }
        sys::unlinkat(dir, &c, true)
    } else {
        sys::unlinkat(dir, &c, false)
    }
}

impl Applier {
    fn dup_root(&self) -> Result<OwnedFd, ApplyError> {
        reopen_dir(self.root.as_fd())
            .map(OwnedFd::from)
            .map_err(ApplyError::Io)
    }

    /// The directory `names` below the root, walked without following symlinks.
    fn dir(&self, names: &[Vec<u8>]) -> Result<OwnedFd, ApplyError> {
        let mut cur = self.dup_root()?;
        for n in names {
            let c = sys::cstr(n).map_err(ApplyError::Io)?;
            cur = sys::openat(
                cur.as_fd(),
                &c,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(diverged)?;
        }
        Ok(cur)
    }

    /// The parent directory of `p` and the last name; the root itself is refused.
    fn parent(&self, p: &RelPath) -> Result<(OwnedFd, Vec<u8>), ApplyError> {
        let (dir, name) = p
            .split_last()
            .ok_or(ApplyError::Refused("the layer's root"))?;
        Ok((self.dir(dir)?, name.to_vec()))
    }

    fn keep(&mut self, fd: OwnedFd) {
        self.dirty.push(File::from(fd));
    }

    fn op(&mut self, op: &Op) -> Result<(), ApplyError> {
        match op {
            Op::Put { path, kind, meta } => {
                if path.is_root() {
                    if *kind != Kind::Dir {
                        return Err(ApplyError::Refused("the layer's root is a directory"));
                    }
                    let root = self.dup_root()?;
                    set_meta(root.as_fd(), c".", meta)?;
                    self.keep(root);
                    return Ok(());
                }
                let (dir, name) = self.parent(path)?;
                self.put(dir.as_fd(), &name, kind)?;
                let c = sys::cstr(&name).map_err(ApplyError::Io)?;
                set_meta(dir.as_fd(), &c, meta)?;
                self.keep(dir);
            }
            Op::Write {
                path,
                offset,
                data,
                size,
                meta,
            } => {
                let (dir, name) = self.parent(path)?;
                let f = open_regular(dir.as_fd(), &name, libc::O_WRONLY)?;
                f.write_all_at(data, *offset).map_err(ApplyError::Io)?;
                if f.metadata().map_err(ApplyError::Io)?.len() != *size {
                    f.set_len(*size).map_err(ApplyError::Io)?;
                }
                let c = sys::cstr(&name).map_err(ApplyError::Io)?;
                set_meta(dir.as_fd(), &c, meta)?;
                self.dirty.push(f);
            }
            Op::Attr { path, size, meta } => {
                let (dir, name) = match path.split_last() {
                    Some(_) => self.parent(path)?,
                    None => (self.dup_root()?, b".".to_vec()),
                };
                if let Some(size) = size {
                    let f = open_regular(dir.as_fd(), &name, libc::O_WRONLY)?;
                    f.set_len(*size).map_err(ApplyError::Io)?;
                    self.dirty.push(f);
                }
                let c = sys::cstr(&name).map_err(ApplyError::Io)?;
                set_meta(dir.as_fd(), &c, meta)?;
                self.keep(dir);
            }
            Op::Remove { path } => {
                let (dir, name) = self.parent(path)?;
                remove_any(dir.as_fd(), &name)?;
                self.keep(dir);
            }
            Op::Rename { from, to } => {
                let (fd, fname) = self.parent(from)?;
                let (td, tname) = self.parent(to)?;
                let (fc, tc) = (cstr(&fname)?, cstr(&tname)?);
                sys::renameat(fd.as_fd(), &fc, td.as_fd(), &tc).map_err(diverged)?;
                self.keep(fd);
                self.keep(td);
            }
            Op::Link { from, to } => {
                let (fd, fname) = self.parent(from)?;
                let (td, tname) = self.parent(to)?;
                let (fc, tc) = (cstr(&fname)?, cstr(&tname)?);
                match sys::stat(td.as_fd(), &tc) {
                    Ok(st) if is(&st, libc::S_IFDIR) => {
                        return Err(ApplyError::Diverged(io::Error::from_raw_os_error(
                            libc::EISDIR,
                        )))
                    }
                    Ok(_) => sys::unlinkat(td.as_fd(), &tc, false).map_err(ApplyError::Io)?,
                    Err(_) => {}
                }
                rsys::link_at(fd.as_fd(), &fc, td.as_fd(), &tc).map_err(diverged)?;
                self.keep(td);
            }
        }
        Ok(())
    }

    /// Makes `name` in `dir` the object `kind` (in place when the type matches).
    fn put(&mut self, dir: BorrowedFd, name: &[u8], kind: &Kind) -> Result<(), ApplyError> {
        let c = cstr(name)?;
        let existing = match sys::stat(dir, &c) {
            Ok(st) => Some(st),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(diverged(e)),
        };
        if let Some(st) = existing {
            match kind {
                Kind::Dir if is(&st, libc::S_IFDIR) => return Ok(()),
                Kind::File(data) if is(&st, libc::S_IFREG) && st.st_nlink == 1 => {
                    let f = open_regular(dir, name, libc::O_WRONLY | libc::O_TRUNC)?;
                    write_all(&f, data)?;
                    self.dirty.push(f);
                    return Ok(());
                }
                Kind::File(data) if is(&st, libc::S_IFREG) => {
                    // Another name shares this inode: give this name a new one.
                    let tmp = cstr(TMP)?;
                    let _ = sys::unlinkat(dir, &tmp, false);
                    let f = create_file(dir, &tmp, data)?;
                    sys::renameat(dir, &tmp, dir, &c).map_err(ApplyError::Io)?;
                    self.dirty.push(f);
                    return Ok(());
                }
                _ => remove_any(dir, name)?,
            }
        }
        match kind {
            Kind::File(data) => {
                let f = create_file(dir, &c, data)?;
                self.dirty.push(f);
            }
            Kind::Dir => sys::mkdirat(dir, &c, 0o700).map_err(diverged)?,
            Kind::Symlink(target) => {
                let t = cstr(target)?;
                sys::symlinkat(&t, dir, &c).map_err(diverged)?;
            }
            Kind::Block(rdev) => {
                sys::mknodat(dir, &c, libc::S_IFBLK | 0o600, *rdev).map_err(diverged)?
            }
            Kind::Char(rdev) => {
                sys::mknodat(dir, &c, libc::S_IFCHR | 0o600, *rdev).map_err(diverged)?
            }
            Kind::Fifo => sys::mknodat(dir, &c, libc::S_IFIFO | 0o600, 0).map_err(diverged)?,
            Kind::Socket => sys::mknodat(dir, &c, libc::S_IFSOCK | 0o600, 0).map_err(diverged)?,
        }
        Ok(())
    }
}

fn cstr(b: &[u8]) -> Result<std::ffi::CString, ApplyError> {
    sys::cstr(b).map_err(|_| ApplyError::Refused("NUL in a name"))
}

fn write_all(f: &File, data: &[u8]) -> Result<(), ApplyError> {
    let mut w: &File = f;
    w.write_all(data).map_err(ApplyError::Io)
}

fn create_file(dir: BorrowedFd, c: &CStr, data: &[u8]) -> Result<File, ApplyError> {
    let fd = sys::openat(
        dir,
        c,
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o600,
    )
    .map_err(diverged)?;
    let f = File::from(fd);
    write_all(&f, data)?;
    Ok(f)
}

/// `name` in `dir` opened with `flags`, if it is a regular file (checked on the descriptor,
/// so a FIFO, device or symlink is never opened for I/O).
fn open_regular(dir: BorrowedFd, name: &[u8], flags: i32) -> Result<File, ApplyError> {
    let o = open_obj(dir, name).map_err(diverged)?;
    if !is(&o.st, libc::S_IFREG) {
        return Err(ApplyError::Diverged(io::Error::from_raw_os_error(
            libc::EISDIR,
        )));
    }
    reopen(&o, flags).map_err(ApplyError::Io)
}

/// Owner, mode, `user.drover.*` attributes and mtime of `name` in `dir` (`.` for `dir`).
fn set_meta(dir: BorrowedFd, name: &CStr, meta: &Meta) -> Result<(), ApplyError> {
    let fd = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(diverged)?;
    let st = sys::stat(fd.as_fd(), c"").map_err(ApplyError::Io)?;
    let o = Obj { fd, st };
    // chown first: it clears setuid and setgid bits, which the chmod puts back.
    sys::chown_fd(o.fd.as_fd(), Some(meta.uid), Some(meta.gid)).map_err(ApplyError::Io)?;
    if !is(&o.st, libc::S_IFLNK) {
        rsys::chmod_path(&proc_link(o.fd.as_fd()), meta.mode).map_err(ApplyError::Io)?;
    }
    if is(&o.st, libc::S_IFREG) || is(&o.st, libc::S_IFDIR) {
        let f = reopen(&o, libc::O_RDONLY | libc::O_NONBLOCK).map_err(ApplyError::Io)?;
        let have = rsys::list_xattrs(f.as_fd()).map_err(ApplyError::Io)?;
        for (k, v) in &meta.xattrs {
            let c = cstr(k)?;
            rsys::set_xattr(f.as_fd(), &c, v).map_err(ApplyError::Io)?;
        }
        for k in have {
            if k.starts_with(XATTR_PREFIX) && !meta.xattrs.iter().any(|(n, _)| *n == k) {
                let c = cstr(&k)?;
                rsys::remove_xattr(f.as_fd(), &c).map_err(ApplyError::Io)?;
            }
        }
    }
    rsys::set_mtime_at(dir, name, meta.mtime.0, meta.mtime.1).map_err(ApplyError::Io)?;
    Ok(())
}
