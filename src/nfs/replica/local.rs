//! Reading a node's layer on this member: the path and attributes of an object named by its
//! descriptor (what a change is shipped as), and a whole layer as a snapshot.
//!
//! Every object is opened with `openat(dir, name, O_PATH|O_NOFOLLOW)` below the layer's root
//! and read through that descriptor (a regular file or directory is reopened through its
//! `/proc/self/fd` link, which names exactly that inode): a symlink planted in the layer by a
//! client is read as a symlink, never followed out of the layer.
//!
//! Not here: applying (`apply`), the wire format (`wire`).

use super::sys as rsys;
use super::wire::{
    Kind, Meta, Op, RelPath, MAX_CONTENT, MAX_DEPTH, MAX_OPS, MAX_XATTRS, MAX_XATTR_VALUE,
    XATTR_PREFIX,
};
use crate::nfs::fs::sys;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An object opened O_PATH and its lstat.
pub(crate) struct Obj {
    pub fd: OwnedFd,
    pub st: libc::stat,
}

pub(crate) fn proc_link(fd: BorrowedFd) -> CString {
    // Digits only: never contains NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

pub(crate) fn is(st: &libc::stat, t: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == t
}

/// `name` in `dir`, not following a symlink.
pub(crate) fn open_obj(dir: BorrowedFd, name: &[u8]) -> io::Result<Obj> {
    let c = sys::cstr(name)?;
    let fd = sys::openat(dir, &c, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let st = sys::stat(fd.as_fd(), c"")?;
    Ok(Obj { fd, st })
}

/// The inode behind an O_PATH descriptor of a regular file or directory, opened for real.
pub(crate) fn reopen(o: &Obj, flags: i32) -> io::Result<File> {
    let fd = sys::openat(sys::cwd(), &proc_link(o.fd.as_fd()), flags, 0)?;
    Ok(File::from(fd))
}

/// The attributes shipped with `o`.
pub(crate) fn meta_of(o: &Obj) -> io::Result<Meta> {
    let mut xattrs = Vec::new();
    if is(&o.st, libc::S_IFREG) || is(&o.st, libc::S_IFDIR) {
        let f = reopen(o, libc::O_RDONLY | libc::O_NONBLOCK)?;
        for name in rsys::list_xattrs(f.as_fd())? {
            if !name.starts_with(XATTR_PREFIX) || xattrs.len() == MAX_XATTRS {
                continue;
            }
            let c = sys::cstr(&name)?;
            match rsys::get_xattr(f.as_fd(), &c, MAX_XATTR_VALUE) {
                Ok(v) => xattrs.push((name, v)),
                // Removed meanwhile, or larger than drover ever writes: not copied.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ERANGE)) => {}
                Err(e) => return Err(e),
            }
        }
        xattrs.sort();
    }
    Ok(Meta {
        mode: o.st.st_mode & 0o7777,
        uid: o.st.st_uid,
        gid: o.st.st_gid,
        mtime: (
            o.st.st_mtime,
            o.st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        ),
        xattrs,
    })
}

/// What `o` is, with the content of a regular file (`budget` bytes at most).
fn kind_of(o: &Obj, budget: &mut usize) -> Result<Kind, SnapError> {
    let st = &o.st;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink(sys::readlink_fd(o.fd.as_fd())?),
        libc::S_IFBLK => Kind::Block(st.st_rdev),
        libc::S_IFCHR => Kind::Char(st.st_rdev),
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        _ => {
            let size = st.st_size.max(0) as usize;
            if size > *budget {
                return Err(SnapError::TooBig);
            }
            let f = reopen(o, libc::O_RDONLY)?;
            let mut data = vec![0u8; size];
            let n = read_full(&f, &mut data, 0)?;
            data.truncate(n);
            *budget -= n;
            Kind::File(data)
        }
    })
}

/// The object `o` at `path` as a `Put` (with a regular file's whole content).
pub(crate) fn put_of(o: &Obj, path: RelPath) -> Result<Op, SnapError> {
    let mut budget = MAX_CONTENT;
    Ok(Op::Put {
        path,
        kind: kind_of(o, &mut budget)?,
        meta: meta_of(o)?,
    })
}

fn read_full(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Bytes `offset..offset+len` of the regular file `o` as they are now (at most to its end).
pub(crate) fn read_range(o: &Obj, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let f = reopen(o, libc::O_RDONLY)?;
    let mut data = vec![0u8; len];
    let n = read_full(&f, &mut data, offset)?;
    data.truncate(n);
    Ok(data)
}

/// Where `o` is below the layer `root` (canonical): its `/proc/self/fd` link names it when
/// the kernel knows a connected name; otherwise (a file opened by handle after its name fell
/// out of the cache) the layer is searched for its inode. `None` if it is not in the layer
/// (removed meanwhile).
pub(crate) fn path_of(root: &Path, o: &Obj) -> Option<RelPath> {
    if let Ok(link) = std::fs::read_link(Path::new(std::ffi::OsStr::from_bytes(
        proc_link(o.fd.as_fd()).as_bytes(),
    ))) {
        if let Ok(rest) = link.strip_prefix(root) {
            let names: Vec<Vec<u8>> = rest.iter().map(|c| c.as_bytes().to_vec()).collect();
            if let Ok(p) = RelPath::new(names) {
                // A name that ends in " (deleted)" may be a removed file: check it.
                if find(root, &p).is_some_and(|st| same(&st, &o.st)) {
                    return Some(p);
                }
            }
        }
    }
    search(root, &o.st)
}

fn same(a: &libc::stat, b: &libc::stat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// The lstat of `p` below `root`, walking without following symlinks.
fn find(root: &Path, p: &RelPath) -> Option<libc::stat> {
    let mut cur = open_root(root).ok()?;
    let mut st = sys::stat(cur.as_fd(), c"").ok()?;
    for n in p.names() {
        let o = open_obj(cur.as_fd(), n).ok()?;
        st = o.st;
        cur = o.fd;
    }
    Some(st)
}

pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let c = sys::cstr(root.as_os_str().as_bytes())?;
    sys::openat(
        sys::cwd(),
        &c,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// The names in the directory open as `dir` (an O_RDONLY descriptor), sorted.
pub(crate) fn list(dir: BorrowedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let batch = sys::getdents(dir, &mut buf)?;
        if batch.is_empty() {
            break;
        }
        out.extend(
            batch
                .into_iter()
                .map(|e| e.name)
                .filter(|n| n != b"." && n != b".."),
        );
    }
    out.sort();
    Ok(out)
}

/// Depth-first search of the layer for the inode of `want`, bounded by [`MAX_OPS`] entries.
fn search(root: &Path, want: &libc::stat) -> Option<RelPath> {
    let mut seen = 0usize;
    let mut stack: Vec<(OwnedFd, RelPath)> = vec![(open_root(root).ok()?, RelPath::root())];
    while let Some((dir, at)) = stack.pop() {
        for name in list(dir.as_fd()).ok()? {
            seen += 1;
            if seen > MAX_OPS {
                return None;
            }
            let Ok(o) = open_obj(dir.as_fd(), &name) else {
                continue;
            };
            let Ok(p) = at.join(&name) else {
                continue;
            };
            if same(&o.st, want) {
                return Some(p);
            }
            if is(&o.st, libc::S_IFDIR) && p.names().len() < MAX_DEPTH {
                if let Ok(f) = reopen(&o, libc::O_RDONLY | libc::O_DIRECTORY) {
                    stack.push((f.into(), p));
                }
            }
        }
    }
    None
}

/// Why a layer could not be read as a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("the layer holds more than {} MiB of file content or {MAX_OPS} objects", MAX_CONTENT >> 20)]
    TooBig,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The whole layer at `root`: the root directory first, then every object below it as `Put`
/// (parents before children) and every further name of a hard-linked file as `Link`.
pub fn snapshot(root: &Path) -> Result<Vec<Op>, SnapError> {
    let rootfd = open_root(root)?;
    let st = sys::stat(rootfd.as_fd(), c"")?;
    let root_obj = Obj { fd: rootfd, st };
    let mut ops = vec![Op::Put {
        path: RelPath::root(),
        kind: Kind::Dir,
        meta: meta_of(&root_obj)?,
    }];
    let mut budget = MAX_CONTENT;
    let mut links: HashMap<(u64, u64), RelPath> = HashMap::new();
    let dir = reopen(&root_obj, libc::O_RDONLY | libc::O_DIRECTORY)?;
    walk(
        dir.into(),
        &RelPath::root(),
        &mut ops,
        &mut budget,
        &mut links,
    )?;
    Ok(ops)
}

fn walk(
    dir: OwnedFd,
    at: &RelPath,
    ops: &mut Vec<Op>,
    budget: &mut usize,
    links: &mut HashMap<(u64, u64), RelPath>,
) -> Result<(), SnapError> {
    for name in list(dir.as_fd())? {
        if ops.len() >= MAX_OPS {
            return Err(SnapError::TooBig);
        }
        let o = match open_obj(dir.as_fd(), &name) {
            Ok(o) => o,
            // Removed since the listing: its removal ships on its own.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(path) = at.join(&name) else {
            continue;
        };
        if !is(&o.st, libc::S_IFDIR) && o.st.st_nlink > 1 {
            let id = (o.st.st_dev, o.st.st_ino);
            if let Some(first) = links.get(&id) {
                ops.push(Op::Link {
                    from: first.clone(),
                    to: path,
                });
                continue;
            }
            links.insert(id, path.clone());
        }
        let kind = kind_of(&o, budget)?;
        ops.push(Op::Put {
            path: path.clone(),
            kind,
            meta: meta_of(&o)?,
        });
        if is(&o.st, libc::S_IFDIR) && path.names().len() < MAX_DEPTH {
            let d = reopen(&o, libc::O_RDONLY | libc::O_DIRECTORY)?;
            walk(d.into(), &path, ops, budget, links)?;
        }
    }
    Ok(())
}
