//! Serving a host directory through the [`Vfs`] trait: `Tree` does the file work for one
//! directory, [`DirVfs`] serves one tree as a whole file system (tests, simple exports) and
//! `nfs::view` composes trees into per-node views.
//!
//! **Handles.** A `Tree` names objects by their Linux file handle (`name_to_handle_at`: the
//! file system's own inode name, which knfsd uses too). [`DirVfs`] and shared exports hand
//! that kernel handle to clients, sealed with a keyed BLAKE3 MAC over the tree's scope (its
//! path and the view it belongs to): it survives restarts of drover and reboots, goes stale
//! exactly when the inode is freed, and costs no index to keep consistent with renames,
//! hard links and changes made on the host. `open_by_handle_at` can open any inode of the
//! file system, so the MAC is what confines a client: only handles that drover issued for
//! objects under the tree's root open at all, and only in the scope they were issued for (a
//! forged, altered or replayed-elsewhere handle is `BadHandle`). The key persists in the
//! state directory ([`HandleKey::load_or_create`]), so handles do too. What a kernel handle
//! cannot do is name the same object on another machine: another pool member's copy of a
//! tree has other inodes. So node root views, which must survive the move of a node's
//! server address to another member, do not give kernel handles to clients: `nfs::ids`
//! names their objects by ids every member computes alike and maps those to this `Tree`'s
//! kernel handles (resolving with `Tree::open_beneath`); the kernel handle stays the
//! `Tree`'s internal name. Exports keep kernel handles and do not fail over.
//! Requires root (CAP_DAC_READ_SEARCH), which the server has anyway.
//!
//! **Names.** Every lookup is one `openat(dir, name, O_PATH|O_NOFOLLOW)` with `name` a
//! single checked component: no `..`, no `/`, and a symlink is returned as a symlink, never
//! followed here (the client follows it in its own namespace). `parent` stops at the root.
//! Mount points inside a tree are not crossed (their names answer `Access`).
//!
//! **Permissions.** The server runs as root, so it checks AUTH_SYS credentials against the
//! mode bits itself (owner, group incl. supplementary groups, other), applies the sticky bit
//! to remove and rename, lets only root make device nodes or give files away, and creates
//! objects owned by the caller (group from a setgid parent). As knfsd does, the owner of a
//! file may read and write it whatever its mode (the client checked at OPEN), and READ is
//! allowed with execute permission alone. Root is root for node root views (a node's root
//! must be able to write its own files); a tree may squash uid 0 to nobody (shared exports).
//!
//! **Data.** WRITE with DATA_SYNC/FILE_SYNC syncs before it answers; COMMIT fsyncs; CREATE,
//! LINK, REMOVE and RENAME fsync the directories whose entries they changed (both for a
//! RENAME between two) before they answer, as knfsd's metadata commit does. The write
//! verifier is random per process start. READDIR cookies are the file system's own
//! directory offsets (`d_off`, plus 3 to keep clear of the reserved 0..=2): ext4's are hashes
//! of the name, so they stay valid while entries come and go, and resuming is one `lseek`.
//!
//! Not here: ACLs, extended attributes for clients (the server keeps its own `user.drover.*`
//! ones, see `nfs::ids`), locking and open state (the protocol core's).

pub(crate) mod sys;

use super::vfs::{
    access, Allocate, Attr, Caller, CopyRange, DirEntry, FileType, FsStat, Handle, NewObject,
    SetAttr, SetTime, Stability, Time, Vfs, VfsError, VfsResult, MAX_HANDLE,
};
use crate::store::model::Ipv4Net;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) use sys::KernelHandle;

/// The longest name a directory entry may have (Linux `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The longest symlink target accepted.
pub const MAX_SYMLINK: usize = 4095;
/// The most bytes one READ returns.
pub const MAX_IO: u32 = 1 << 20;
/// The most bytes one COPY copies (the client asks again for the rest): a synchronous copy
/// holds one of the server's blocking workers meanwhile.
pub const MAX_COPY: u64 = 64 << 20;
/// Buffer for one getdents call.
const DIRENT_BUF: usize = 64 * 1024;
/// Bytes of MAC at the end of every handle.
pub(crate) const MAC_LEN: usize = 16;
/// READDIR cookies 0..=2 are reserved by NFSv4; ours are `d_off + COOKIE_BASE`.
const COOKIE_BASE: u64 = 3;
/// The uid and gid a squashed root becomes.
pub const NOBODY: u32 = crate::store::model::NOBODY;

/// The secret that seals handles (see the module docs).
#[derive(Clone)]
pub struct HandleKey([u8; 32]);

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleKey(..)")
    }
}

impl HandleKey {
    pub fn random() -> HandleKey {
        use rand_core::RngCore;
        let mut k = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut k);
        HandleKey(k)
    }

    /// Reads the key at `path`, or makes one there (mode 0600, written atomically).
    pub fn load_or_create(path: &Path) -> io::Result<HandleKey> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let k: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: not a 32-byte handle key", path.display()),
                    )
                })?;
                Ok(HandleKey(k))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let key = HandleKey::random();
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&key.0)?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// A key given by its 32 secret bytes (derived from the pool's cluster key, so that
    /// every member seals alike).
    pub fn from_secret(secret: [u8; 32]) -> HandleKey {
        HandleKey(secret)
    }

    /// A MAC over `body`, bound to `scope`.
    pub(crate) fn mac(&self, scope: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(&(scope.len() as u64).to_le_bytes());
        h.update(scope);
        h.update(body);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
        out
    }

    /// `prefix`, the kernel handle and a MAC binding both to `scope`.
    pub(crate) fn seal(&self, scope: &[u8], prefix: &[u8], kh: &KernelHandle) -> VfsResult<Handle> {
        let mut body = Vec::with_capacity(prefix.len() + 4 + kh.bytes.len() + MAC_LEN);
        body.extend_from_slice(prefix);
        body.extend_from_slice(&kh.kind.to_le_bytes());
        body.extend_from_slice(&kh.bytes);
        let mac = self.mac(scope, &body);
        body.extend_from_slice(&mac);
        if body.len() > MAX_HANDLE {
            // A file system whose handles leave no room for ours cannot be served.
            return Err(VfsError::NotSupported);
        }
        Ok(Handle(body))
    }

    /// The kernel handle in `h` after its first `prefix_len` bytes, if the MAC is right.
    pub(crate) fn unseal(
        &self,
        scope: &[u8],
        h: &Handle,
        prefix_len: usize,
    ) -> VfsResult<KernelHandle> {
        let b = &h.0;
        if b.len() < prefix_len + 4 + MAC_LEN || b.len() > MAX_HANDLE {
            return Err(VfsError::BadHandle);
        }
        let (body, mac) = b.split_at(b.len() - MAC_LEN);
        let want = self.mac(scope, body);
        // Compare without an early exit.
        if want.iter().zip(mac).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0 {
            return Err(VfsError::BadHandle);
        }
        let kind_bytes: [u8; 4] = body[prefix_len..prefix_len + 4]
            .try_into()
            .map_err(|_| VfsError::BadHandle)?;
        Ok(KernelHandle {
            kind: i32::from_le_bytes(kind_bytes),
            bytes: body[prefix_len + 4..].to_vec(),
        })
    }
}

/// Maps an OS error to the [`VfsError`] the protocol core turns into its status.
pub(crate) fn os_err(e: io::Error) -> VfsError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => VfsError::NoEnt,
        Some(libc::EEXIST) => VfsError::Exist,
        Some(libc::ENOTDIR) => VfsError::NotDir,
        Some(libc::EISDIR) => VfsError::IsDir,
        Some(libc::EACCES) => VfsError::Access,
        Some(libc::EPERM) => VfsError::Perm,
        Some(libc::ENOTEMPTY) => VfsError::NotEmpty,
        Some(libc::ENAMETOOLONG) => VfsError::NameTooLong,
        Some(libc::EROFS) => VfsError::ReadOnly,
        Some(libc::ENOSPC) => VfsError::NoSpace,
        Some(libc::EDQUOT) => VfsError::Quota,
        Some(libc::EFBIG) => VfsError::TooBig,
        Some(libc::ESTALE) => VfsError::Stale,
        Some(libc::EINVAL) => VfsError::Inval,
        Some(libc::EXDEV) => VfsError::XDev,
        Some(libc::ELOOP) => VfsError::Symlink,
        Some(libc::EOPNOTSUPP) => VfsError::NotSupported,
        Some(libc::ENXIO) => VfsError::NxIo,
        _ => VfsError::Io(e.to_string()),
    }
}

/// Checks a single name component.
pub(crate) fn check_name(name: &[u8]) -> VfsResult<std::ffi::CString> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(VfsError::BadName);
    }
    if name.len() > MAX_NAME {
        return Err(VfsError::NameTooLong);
    }
    sys::cstr(name).map_err(|_| VfsError::BadName)
}

/// How a tree maps the callers' AUTH_SYS identities, as `/etc/exports` does
/// (`root_squash`, `no_root_squash`, `all_squash` with `anonuid`/`anongid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Squash {
    /// Identities as the client sends them (node root views: a node's root owns its files).
    None,
    /// uid 0 becomes `uid`, and gid 0, as primary or supplementary group, becomes `gid`.
    Root { uid: u32, gid: u32 },
    /// Every caller becomes `uid`/`gid` without supplementary groups.
    All { uid: u32, gid: u32 },
}

impl Squash {
    /// Root squashed to nobody: the default of shared exports.
    pub const ROOT_TO_NOBODY: Squash = Squash::Root {
        uid: NOBODY,
        gid: NOBODY,
    };
}

/// AUTH_SYS credentials after squashing, and whether the caller may change the tree.
#[derive(Debug, Clone)]
pub(crate) struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
    /// The tree is read-only for this caller (the whole tree, or the caller's network).
    pub read_only: bool,
}

const R: u32 = 4;
const W: u32 = 2;
const X: u32 = 1;

impl Cred {
    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }

    /// Whether the mode bits of `st` grant all of `want` (R, W, X).
    fn may(&self, st: &libc::stat, want: u32) -> bool {
        let mode = st.st_mode;
        if self.uid == 0 {
            // Root reads and writes anything; it executes only what someone may execute.
            let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
            return want & X == 0 || is_dir || mode & 0o111 != 0;
        }
        let bits = if self.uid == st.st_uid {
            mode >> 6
        } else if self.in_group(st.st_gid) {
            mode >> 3
        } else {
            mode
        } & 7;
        bits & want == want
    }

    fn owns(&self, st: &libc::stat) -> bool {
        self.uid == 0 || self.uid == st.st_uid
    }
}

/// An opened object: an O_PATH descriptor and its stat.
pub(crate) struct Obj {
    pub fd: OwnedFd,
    pub st: libc::stat,
}

impl Obj {
    pub fn kind(&self) -> FileType {
        file_type(self.st.st_mode)
    }
    fn is_dir(&self) -> bool {
        self.kind() == FileType::Directory
    }
    fn proc_path(&self) -> std::ffi::CString {
        // Digits only: never contains NUL.
        std::ffi::CString::new(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).unwrap_or_default()
    }

    /// Opens `path` itself (a symlink is not followed), for work on the server's own files.
    pub fn open_nofollow(path: &Path) -> io::Result<Obj> {
        let c = sys::cstr(path.as_os_str().as_encoded_bytes())?;
        let fd = sys::openat(sys::cwd(), &c, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = sys::stat(fd.as_fd(), c"")?;
        Ok(Obj { fd, st })
    }

    /// Extended attribute `name` of this regular file or directory (`None`: not set). Other
    /// kinds of file cannot hold `user.*` attributes on Linux.
    pub fn xattr(&self, name: &CStr) -> io::Result<Option<Vec<u8>>> {
        let mut buf = [0u8; 256];
        match sys::getxattr(&self.proc_path(), name, &mut buf) {
            Ok(n) => Ok(Some(buf[..n].to_vec())),
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets extended attribute `name` of this regular file or directory.
    pub fn set_xattr(&self, name: &CStr, value: &[u8]) -> io::Result<()> {
        sys::setxattr(&self.proc_path(), name, value)
    }
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFBLK => FileType::Block,
        libc::S_IFCHR => FileType::Char,
        libc::S_IFIFO => FileType::Fifo,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::Regular,
    }
}

/// One directory of the host served as a tree of objects named by kernel handles. It knows
/// nothing of NFS handles or views: its owner seals and scopes the handles.
pub(crate) struct Tree {
    root: OwnedFd,
    root_id: (u64, u64),
    mount_id: i32,
    pub writable: bool,
    pub squash: Squash,
    /// Callers in these networks may not change the tree even when it is writable.
    pub read_only_clients: Vec<Ipv4Net>,
    pub fsid: (u64, u64),
}

impl Tree {
    pub fn open(path: &Path, writable: bool, squash: Squash) -> io::Result<Tree> {
        let c = sys::cstr(path.as_os_str().as_encoded_bytes())?;
        let cwd = sys::cwd();
        // Not O_PATH: open_by_handle_at refuses an O_PATH mount descriptor.
        let root = sys::openat(cwd, &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let st = sys::stat(root.as_fd(), c"")?;
        let (_, mount_id) = sys::name_to_handle(root.as_fd(), c"").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: no file handles here ({e}); serving needs root",
                    path.display()
                ),
            )
        })?;
        Ok(Tree {
            root,
            root_id: (st.st_dev, st.st_ino),
            mount_id,
            writable,
            squash,
            read_only_clients: Vec::new(),
            fsid: (st.st_dev, st.st_ino),
        })
    }

    pub fn root_handle(&self) -> VfsResult<KernelHandle> {
        sys::name_to_handle(self.root.as_fd(), c"")
            .map(|(kh, _)| kh)
            .map_err(os_err)
    }

    /// The caller's credentials in this tree: squashed as the tree says (knfsd's rules: root
    /// squash maps uid 0 and every gid 0, all squash maps everyone and drops the groups).
    pub fn cred(&self, c: &Caller) -> Cred {
        let read_only = !self.writable
            || match c.addr {
                IpAddr::V4(ip) => self.read_only_clients.iter().any(|n| n.contains(ip)),
                IpAddr::V6(_) => false,
            };
        let (uid, gid, gids) = match self.squash {
            Squash::None => (c.uid, c.gid, c.gids.clone()),
            Squash::Root { uid, gid } => {
                let g = |x: u32| if x == 0 { gid } else { x };
                let u = if c.uid == 0 { uid } else { c.uid };
                (u, g(c.gid), c.gids.iter().map(|&x| g(x)).collect())
            }
            Squash::All { uid, gid } => (uid, gid, Vec::new()),
        };
        Cred {
            uid,
            gid,
            gids,
            read_only,
        }
    }

    pub fn obj(&self, kh: &KernelHandle) -> VfsResult<Obj> {
        let fd = sys::open_by_handle(self.root.as_fd(), kh, libc::O_PATH).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ESTALE) | Some(libc::ENOENT) => VfsError::Stale,
                _ => VfsError::BadHandle,
            }
        })?;
        let st = sys::stat(fd.as_fd(), c"").map_err(os_err)?;
        Ok(Obj { fd, st })
    }

    fn reopen(&self, kh: &KernelHandle, flags: i32) -> VfsResult<File> {
        sys::open_by_handle(self.root.as_fd(), kh, flags)
            .map(File::from)
            .map_err(os_err)
    }

    pub fn attr(&self, st: &libc::stat) -> Attr {
        let t = |s: i64, n: i64| Time {
            seconds: s,
            nanos: n.clamp(0, 999_999_999) as u32,
        };
        Attr {
            kind: file_type(st.st_mode),
            mode: st.st_mode & 0o7777,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            used: st.st_blocks as u64 * 512,
            rdev: (sys::major(st.st_rdev), sys::minor(st.st_rdev)),
            fsid: self.fsid,
            fileid: st.st_ino,
            atime: t(st.st_atime, st.st_atime_nsec),
            mtime: t(st.st_mtime, st.st_mtime_nsec),
            ctime: t(st.st_ctime, st.st_ctime_nsec),
            change: (st.st_ctime as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(st.st_ctime_nsec as u64),
        }
    }

    /// Opens the relative `path` (components joined by `/`, empty for the root) below the
    /// root without following any symlink or leaving the tree (see `sys::open_beneath`).
    pub fn open_beneath(&self, path: &[u8]) -> VfsResult<(KernelHandle, Obj)> {
        if path.is_empty() {
            let kh = self.root_handle()?;
            return Ok((kh.clone(), self.obj(&kh)?));
        }
        let c = sys::cstr(path).map_err(|_| VfsError::BadName)?;
        let fd = sys::open_beneath(self.root.as_fd(), &c).map_err(os_err)?;
        let (kh, mount_id) = sys::name_to_handle(fd.as_fd(), c"").map_err(os_err)?;
        if mount_id != self.mount_id {
            return Err(VfsError::Access);
        }
        let st = sys::stat(fd.as_fd(), c"").map_err(os_err)?;
        Ok((kh, Obj { fd, st }))
    }

    pub fn getattr(&self, kh: &KernelHandle) -> VfsResult<Attr> {
        Ok(self.attr(&self.obj(kh)?.st))
    }

    fn is_root(&self, st: &libc::stat) -> bool {
        (st.st_dev, st.st_ino) == self.root_id
    }

    fn need_writable(&self, cred: &Cred) -> VfsResult<()> {
        if self.writable && !cred.read_only {
            Ok(())
        } else {
            Err(VfsError::ReadOnly)
        }
    }

    /// Opens `name` in `dir` without following it, with its kernel handle.
    fn child(&self, dir: BorrowedFd, name: &CStr) -> VfsResult<(KernelHandle, Obj)> {
        let fd = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(os_err)?;
        let (kh, mount_id) = sys::name_to_handle(fd.as_fd(), c"").map_err(os_err)?;
        if mount_id != self.mount_id {
            return Err(VfsError::Access);
        }
        let st = sys::stat(fd.as_fd(), c"").map_err(os_err)?;
        Ok((kh, Obj { fd, st }))
    }

    fn search(&self, cred: &Cred, dir: &Obj) -> VfsResult<()> {
        if !dir.is_dir() {
            return Err(VfsError::NotDir);
        }
        if !cred.may(&dir.st, X) {
            return Err(VfsError::Access);
        }
        Ok(())
    }

    pub fn lookup(
        &self,
        cred: &Cred,
        dir: &KernelHandle,
        name: &[u8],
    ) -> VfsResult<(KernelHandle, Attr)> {
        let d = self.obj(dir)?;
        self.search(cred, &d)?;
        let name = check_name(name)?;
        let (kh, o) = self.child(d.fd.as_fd(), &name)?;
        Ok((kh, self.attr(&o.st)))
    }

    /// The parent of `dir`, or `None` at the tree's root.
    pub fn parent(&self, cred: &Cred, dir: &KernelHandle) -> VfsResult<Option<KernelHandle>> {
        let d = self.obj(dir)?;
        self.search(cred, &d)?;
        if self.is_root(&d.st) {
            return Ok(None);
        }
        let (kh, _) = self.child(d.fd.as_fd(), c"..")?;
        Ok(Some(kh))
    }

    pub fn access(&self, cred: &Cred, kh: &KernelHandle, wanted: u32) -> VfsResult<u32> {
        let o = self.obj(kh)?;
        let mut got = 0;
        if cred.may(&o.st, R) {
            got |= access::READ;
        }
        if self.writable && !cred.read_only && cred.may(&o.st, W) {
            got |= access::MODIFY | access::EXTEND;
        }
        if o.is_dir() {
            if cred.may(&o.st, X) {
                got |= access::LOOKUP;
                if self.writable && !cred.read_only && cred.may(&o.st, W) {
                    got |= access::DELETE;
                }
            }
        } else if cred.may(&o.st, X) {
            got |= access::EXECUTE;
        }
        Ok(got & wanted)
    }

    /// The file behind `kh` if it is a regular file.
    fn regular(&self, kh: &KernelHandle) -> VfsResult<Obj> {
        let o = self.obj(kh)?;
        match o.kind() {
            FileType::Regular => Ok(o),
            FileType::Directory => Err(VfsError::IsDir),
            FileType::Symlink => Err(VfsError::Symlink),
            _ => Err(VfsError::Inval),
        }
    }

    pub fn read(
        &self,
        cred: &Cred,
        kh: &KernelHandle,
        offset: u64,
        count: u32,
    ) -> VfsResult<(Vec<u8>, bool)> {
        let o = self.regular(kh)?;
        if !(cred.owns(&o.st) || cred.may(&o.st, R) || cred.may(&o.st, X)) {
            return Err(VfsError::Access);
        }
        let f = self.reopen(kh, libc::O_RDONLY | libc::O_NOCTTY)?;
        let size = f.metadata().map_err(os_err)?.len();
        if offset >= size {
            return Ok((Vec::new(), true));
        }
        let want = count.min(MAX_IO) as u64;
        let want = want.min(size - offset) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(os_err(e)),
            }
        }
        buf.truncate(got);
        let eof = offset + got as u64 >= size;
        Ok((buf, eof))
    }

    pub fn write(
        &self,
        cred: &Cred,
        kh: &KernelHandle,
        offset: u64,
        data: &[u8],
        stable: Stability,
    ) -> VfsResult<(u32, Stability)> {
        self.need_writable(cred)?;
        let o = self.regular(kh)?;
        if !(cred.owns(&o.st) || cred.may(&o.st, W)) {
            return Err(VfsError::Access);
        }
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(VfsError::TooBig);
        }
        let f = self.reopen(kh, libc::O_WRONLY | libc::O_NOCTTY)?;
        f.write_all_at(data, offset).map_err(os_err)?;
        match stable {
            Stability::Unstable => {}
            Stability::DataSync => f.sync_data().map_err(os_err)?,
            Stability::FileSync => f.sync_all().map_err(os_err)?,
        }
        // We write as root, so the kernel keeps setuid/setgid bits that a write by the
        // caller itself would clear.
        let m = o.st.st_mode;
        if cred.uid != 0 && (m & 0o4000 != 0 || m & 0o2010 == 0o2010) {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(m & 0o1777));
        }
        Ok((data.len() as u32, stable))
    }

    /// The regular file behind `kh` opened for reading, if the caller may read it (READ's
    /// rule: owner, read or execute permission).
    fn open_read(&self, cred: &Cred, kh: &KernelHandle) -> VfsResult<File> {
        let o = self.regular(kh)?;
        if !(cred.owns(&o.st) || cred.may(&o.st, R) || cred.may(&o.st, X)) {
            return Err(VfsError::Access);
        }
        self.reopen(kh, libc::O_RDONLY | libc::O_NOCTTY)
    }

    /// The regular file behind `kh` opened for writing, if the caller may write it.
    fn open_write(&self, cred: &Cred, kh: &KernelHandle) -> VfsResult<File> {
        self.need_writable(cred)?;
        let o = self.regular(kh)?;
        if !(cred.owns(&o.st) || cred.may(&o.st, W)) {
            return Err(VfsError::Access);
        }
        self.reopen(kh, libc::O_WRONLY | libc::O_NOCTTY)
    }

    /// SEEK: the next data (`data`) or hole at or after `offset`, and the file's size.
    pub fn seek(
        &self,
        cred: &Cred,
        kh: &KernelHandle,
        offset: u64,
        data: bool,
    ) -> VfsResult<(u64, u64)> {
        let f = self.open_read(cred, kh)?;
        let size = f.metadata().map_err(os_err)?.len();
        let at = sys::seek(f.as_fd(), offset, data).map_err(os_err)?;
        Ok((at, size))
    }

    /// ALLOCATE (`punch` false) or DEALLOCATE (`punch` true, the size kept).
    pub fn allocate(&self, cred: &Cred, kh: &KernelHandle, how: &Allocate) -> VfsResult<()> {
        let f = self.open_write(cred, kh)?;
        let mode = if how.punch {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            0
        };
        sys::fallocate(f.as_fd(), mode, how.offset, how.length).map_err(os_err)
    }

    /// COPY within this tree: up to [`MAX_COPY`] of `count` bytes; how many were copied.
    /// With `clone`, CLONE: all `count` bytes share the source's blocks (reflinks), or
    /// `NotSupported` where the file system has none.
    pub fn copy(
        &self,
        cred: &Cred,
        src: &KernelHandle,
        dst: &KernelHandle,
        range: &CopyRange,
    ) -> VfsResult<u64> {
        let CopyRange {
            src_offset,
            dst_offset,
            count,
            clone,
        } = *range;
        let from = self.open_read(cred, src)?;
        let to = self.open_write(cred, dst)?;
        if clone {
            sys::clone_range(from.as_fd(), src_offset, count, to.as_fd(), dst_offset).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::EXDEV) | Some(libc::ENOTTY) => VfsError::NotSupported,
                    _ => os_err(e),
                },
            )?;
            return Ok(count);
        }
        let want = count.min(MAX_COPY);
        let mut buf = vec![0u8; want.min(u64::from(MAX_IO)) as usize];
        let mut done = 0u64;
        while done < want {
            let n = buf.len().min((want - done) as usize);
            let got = match from.read_at(&mut buf[..n], src_offset + done) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(os_err(e)),
            };
            to.write_all_at(&buf[..got], dst_offset + done)
                .map_err(os_err)?;
            done += got as u64;
        }
        Ok(done)
    }

    pub fn commit(&self, kh: &KernelHandle) -> VfsResult<()> {
        self.regular(kh)?;
        let f = self.reopen(kh, libc::O_RDONLY | libc::O_NOCTTY)?;
        f.sync_all().map_err(os_err)
    }

    /// Sets what `set` asks on the object behind `kh`, checking the caller may.
    pub fn setattr(&self, cred: &Cred, kh: &KernelHandle, set: &SetAttr) -> VfsResult<Attr> {
        let o = self.obj(kh)?;
        self.apply(cred, kh, &o, set, false)?;
        self.getattr(kh)
    }

    /// `fresh`: the object was just made for this caller (attributes of a create).
    fn apply(
        &self,
        cred: &Cred,
        kh: &KernelHandle,
        o: &Obj,
        set: &SetAttr,
        fresh: bool,
    ) -> VfsResult<()> {
        if *set == SetAttr::default() {
            return Ok(());
        }
        self.need_writable(cred)?;
        let st = &o.st;
        let is_link = o.kind() == FileType::Symlink;
        if let Some(size) = set.size {
            match o.kind() {
                FileType::Regular => {}
                FileType::Directory => return Err(VfsError::IsDir),
                _ => return Err(VfsError::Inval),
            }
            if !(cred.owns(st) || cred.may(st, W)) {
                return Err(VfsError::Access);
            }
            if size > i64::MAX as u64 {
                return Err(VfsError::TooBig);
            }
            let f = self.reopen(kh, libc::O_WRONLY | libc::O_NOCTTY)?;
            f.set_len(size).map_err(os_err)?;
        }
        let new_uid = set.uid.filter(|&u| u != st.st_uid);
        let new_gid = set.gid.filter(|&g| g != st.st_gid);
        if new_uid.is_some() && cred.uid != 0 {
            return Err(VfsError::Perm);
        }
        if let Some(g) = new_gid {
            if cred.uid != 0 && !(cred.uid == st.st_uid && cred.in_group(g)) {
                return Err(VfsError::Perm);
            }
        }
        if new_uid.is_some() || new_gid.is_some() {
            sys::chown_fd(o.fd.as_fd(), new_uid, new_gid).map_err(os_err)?;
        }
        if let Some(mode) = set.mode {
            if !cred.owns(st) {
                return Err(VfsError::Perm);
            }
            let mut mode = mode & 0o7777;
            let gid = new_gid.unwrap_or(st.st_gid);
            if cred.uid != 0 && !cred.in_group(gid) && !o.is_dir() {
                mode &= !0o2000;
            }
            // Symlinks have no mode of their own on Linux.
            if !is_link {
                std::fs::set_permissions(
                    o.proc_path().to_str().unwrap_or_default(),
                    std::fs::Permissions::from_mode(mode),
                )
                .map_err(os_err)?;
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let explicit = matches!(set.atime, Some(SetTime::Client(_)))
                || matches!(set.mtime, Some(SetTime::Client(_)));
            let allowed = fresh || cred.owns(st) || (!explicit && cred.may(st, W));
            if !allowed {
                return Err(if explicit {
                    VfsError::Perm
                } else {
                    VfsError::Access
                });
            }
            let conv = |t: Option<SetTime>| {
                t.map(|t| match t {
                    SetTime::ServerNow => None,
                    SetTime::Client(t) => Some((t.seconds, t.nanos.min(999_999_999))),
                })
            };
            if !is_link {
                sys::set_times(&o.proc_path(), conv(set.atime), conv(set.mtime)).map_err(os_err)?;
            }
        }
        Ok(())
    }

    /// Checks that the caller may add or remove entries of `dir`.
    fn modify_dir(&self, cred: &Cred, dir: &Obj) -> VfsResult<()> {
        self.need_writable(cred)?;
        if !dir.is_dir() {
            return Err(VfsError::NotDir);
        }
        if !cred.may(&dir.st, W | X) {
            return Err(VfsError::Access);
        }
        Ok(())
    }

    /// The sticky-bit rule: in a sticky directory only the owner of the entry or of the
    /// directory (or root) may remove or rename it.
    fn sticky_ok(cred: &Cred, dir: &Obj, victim: &libc::stat) -> bool {
        dir.st.st_mode & libc::S_ISVTX == 0
            || cred.uid == 0
            || cred.uid == victim.st_uid
            || cred.uid == dir.st.st_uid
    }

    /// Makes the entries of directory `dir` durable: a name that CREATE, LINK, REMOVE or
    /// RENAME added or took away survives a crash of the host once the client has its answer
    /// (the new object's own inode is made durable with it on the journalling file systems
    /// drover runs on).
    fn sync_dir(dir: &Obj) -> VfsResult<()> {
        // The O_PATH descriptor cannot be fsynced; "." reopens the directory itself.
        let fd = sys::openat(dir.fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(os_err)?;
        File::from(fd).sync_all().map_err(os_err)
    }

    pub fn create(
        &self,
        cred: &Cred,
        dir: &KernelHandle,
        name: &[u8],
        what: &NewObject,
        attrs: &SetAttr,
    ) -> VfsResult<(KernelHandle, Attr)> {
        let d = self.obj(dir)?;
        let cname = check_name(name)?;
        if let NewObject::File { exclusive: false } = what {
            // An existing file is opened, not made: only the search right is needed, and
            // truncation needs write permission on the file.
            self.search(cred, &d)?;
            match self.child(d.fd.as_fd(), &cname) {
                Ok((kh, o)) => {
                    match o.kind() {
                        FileType::Regular => {}
                        FileType::Directory => return Err(VfsError::IsDir),
                        FileType::Symlink => return Err(VfsError::Symlink),
                        _ => return Err(VfsError::Inval),
                    }
                    let trunc = SetAttr {
                        size: attrs.size,
                        ..SetAttr::default()
                    };
                    self.apply(cred, &kh, &o, &trunc, false)?;
                    let a = self.getattr(&kh)?;
                    return Ok((kh, a));
                }
                Err(VfsError::NoEnt) => {}
                Err(e) => return Err(e),
            }
        }
        self.modify_dir(cred, &d)?;
        let dfd = d.fd.as_fd();
        let setgid_dir = d.st.st_mode & libc::S_ISGID != 0;
        let mode = attrs.mode.unwrap_or(match what {
            NewObject::Directory => 0o755,
            _ => 0o644,
        }) & 0o7777;
        // Special bits are set only after the chown, which would clear them.
        let base = mode & 0o777;
        let made = match what {
            NewObject::File { .. } => sys::openat(
                dfd,
                &cname,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                base,
            )
            .map(drop),
            NewObject::Directory => sys::mkdirat(dfd, &cname, base),
            NewObject::Symlink { target } => {
                if target.is_empty() || target.len() > MAX_SYMLINK {
                    return Err(VfsError::Inval);
                }
                let t = sys::cstr(target).map_err(|_| VfsError::Inval)?;
                sys::symlinkat(&t, dfd, &cname)
            }
            NewObject::Block { major, minor } | NewObject::Char { major, minor } => {
                if cred.uid != 0 {
                    return Err(VfsError::Perm);
                }
                let t = if matches!(what, NewObject::Block { .. }) {
                    libc::S_IFBLK
                } else {
                    libc::S_IFCHR
                };
                sys::mknodat(dfd, &cname, t | base, sys::makedev(*major, *minor))
            }
            NewObject::Fifo => sys::mknodat(dfd, &cname, libc::S_IFIFO | base, 0),
            NewObject::Socket => sys::mknodat(dfd, &cname, libc::S_IFSOCK | base, 0),
        };
        made.map_err(os_err)?;
        let finish = || -> VfsResult<(KernelHandle, Attr)> {
            let (kh, o) = self.child(dfd, &cname)?;
            let gid = if setgid_dir { d.st.st_gid } else { cred.gid };
            sys::chown_fd(o.fd.as_fd(), Some(cred.uid), Some(gid)).map_err(os_err)?;
            let o = self.obj(&kh)?;
            let mut rest = attrs.clone();
            rest.size = attrs.size.filter(|&s| s != 0);
            let mut want_mode = mode;
            if setgid_dir && matches!(what, NewObject::Directory) {
                want_mode |= libc::S_ISGID;
            }
            rest.mode = (want_mode != o.st.st_mode & 0o7777).then_some(want_mode);
            self.apply(cred, &kh, &o, &rest, true)?;
            let a = self.getattr(&kh)?;
            Ok((kh, a))
        };
        let made = finish().inspect_err(|_| {
            let _ = sys::unlinkat(dfd, &cname, matches!(what, NewObject::Directory));
        })?;
        Self::sync_dir(&d)?;
        Ok(made)
    }

    pub fn link(
        &self,
        cred: &Cred,
        kh: &KernelHandle,
        dir: &KernelHandle,
        name: &[u8],
    ) -> VfsResult<()> {
        let d = self.obj(dir)?;
        self.modify_dir(cred, &d)?;
        let name = check_name(name)?;
        let o = self.obj(kh)?;
        if o.is_dir() {
            return Err(VfsError::IsDir);
        }
        // fs.protected_hardlinks, as the caller would meet it locally.
        if !(cred.owns(&o.st) || (o.kind() == FileType::Regular && cred.may(&o.st, R | W))) {
            return Err(VfsError::Perm);
        }
        sys::link_fd(o.fd.as_fd(), d.fd.as_fd(), &name).map_err(os_err)?;
        Self::sync_dir(&d)
    }

    pub fn remove(&self, cred: &Cred, dir: &KernelHandle, name: &[u8]) -> VfsResult<()> {
        let d = self.obj(dir)?;
        self.modify_dir(cred, &d)?;
        let name = check_name(name)?;
        let st = sys::stat(d.fd.as_fd(), &name).map_err(os_err)?;
        if !Self::sticky_ok(cred, &d, &st) {
            return Err(VfsError::Access);
        }
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        sys::unlinkat(d.fd.as_fd(), &name, is_dir).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => VfsError::NotEmpty,
            _ => os_err(e),
        })?;
        Self::sync_dir(&d)
    }

    pub fn rename(
        &self,
        cred: &Cred,
        from_dir: &KernelHandle,
        from: &[u8],
        to_dir: &KernelHandle,
        to: &[u8],
    ) -> VfsResult<()> {
        let fd = self.obj(from_dir)?;
        let td = self.obj(to_dir)?;
        self.modify_dir(cred, &fd)?;
        self.modify_dir(cred, &td)?;
        let from = check_name(from)?;
        let to = check_name(to)?;
        let src = sys::stat(fd.fd.as_fd(), &from).map_err(os_err)?;
        if !Self::sticky_ok(cred, &fd, &src) {
            return Err(VfsError::Access);
        }
        match sys::stat(td.fd.as_fd(), &to) {
            Ok(dst) if !Self::sticky_ok(cred, &td, &dst) => return Err(VfsError::Access),
            _ => {}
        }
        sys::renameat(fd.fd.as_fd(), &from, td.fd.as_fd(), &to).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EEXIST) => VfsError::NotEmpty,
                _ => os_err(e),
            }
        })?;
        // Both directories changed: the name left one and arrived in the other.
        Self::sync_dir(&fd)?;
        if (td.st.st_dev, td.st.st_ino) != (fd.st.st_dev, fd.st.st_ino) {
            Self::sync_dir(&td)?;
        }
        Ok(())
    }

    /// Entries after `cookie`: names, cookies, kernel handles and attributes.
    #[allow(clippy::type_complexity)]
    pub fn readdir(
        &self,
        cred: &Cred,
        dir: &KernelHandle,
        cookie: u64,
        max: usize,
    ) -> VfsResult<(Vec<(Vec<u8>, u64, KernelHandle, Attr)>, bool)> {
        use std::io::{Seek, SeekFrom};
        let d = self.obj(dir)?;
        if !d.is_dir() {
            return Err(VfsError::NotDir);
        }
        if !cred.may(&d.st, R) {
            return Err(VfsError::Access);
        }
        let mut f = self.reopen(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
        if cookie != 0 {
            if cookie < COOKIE_BASE {
                return Err(VfsError::BadCookie);
            }
            let pos = cookie.wrapping_sub(COOKIE_BASE) as i64;
            if pos < 0 {
                return Err(VfsError::BadCookie);
            }
            f.seek(SeekFrom::Start(pos as u64))
                .map_err(|_| VfsError::BadCookie)?;
        }
        let mut buf = vec![0u8; DIRENT_BUF];
        let mut out = Vec::new();
        loop {
            let batch = sys::getdents(f.as_fd(), &mut buf).map_err(os_err)?;
            if batch.is_empty() {
                return Ok((out, true));
            }
            for e in batch {
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                if out.len() == max {
                    return Ok((out, false));
                }
                let Ok(cname) = sys::cstr(&e.name) else {
                    continue;
                };
                // Gone since the listing (a race), or another mount: not listed.
                let Ok((kh, o)) = self.child(f.as_fd(), &cname) else {
                    continue;
                };
                let ck = (e.next as u64).wrapping_add(COOKIE_BASE);
                out.push((e.name, ck, kh, self.attr(&o.st)));
            }
        }
    }

    pub fn readlink(&self, kh: &KernelHandle) -> VfsResult<Vec<u8>> {
        let o = self.obj(kh)?;
        if o.kind() != FileType::Symlink {
            return Err(VfsError::Inval);
        }
        sys::readlink_fd(o.fd.as_fd()).map_err(os_err)
    }

    pub fn statfs(&self, kh: &KernelHandle) -> VfsResult<FsStat> {
        let o = self.obj(kh)?;
        let s = sys::statvfs(o.fd.as_fd()).map_err(os_err)?;
        let frsize = s.f_frsize;
        Ok(FsStat {
            bytes_total: s.f_blocks.saturating_mul(frsize),
            bytes_free: s.f_bfree.saturating_mul(frsize),
            bytes_avail: s.f_bavail.saturating_mul(frsize),
            files_total: s.f_files,
            files_free: s.f_ffree,
            files_avail: s.f_favail,
        })
    }
}

/// mknod(2) of `path` with the type and permission bits of `mode` (a raw `st_mode`) and
/// device number `rdev` (a raw `st_rdev`): copies a device node, FIFO or socket.
pub(crate) fn mknod_like(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let c = sys::cstr(path.as_os_str().as_encoded_bytes())?;
    sys::mknodat(sys::cwd(), &c, mode, rdev)
}

/// A device number from its major and minor numbers.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    sys::makedev(major, minor)
}

/// A random verifier for this process's writes.
pub(crate) fn new_verifier() -> [u8; 8] {
    use rand_core::RngCore;
    let mut v = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut v);
    v
}

/// One host directory served as a whole file system: the pseudo-root is the directory.
pub struct DirVfs {
    tree: Tree,
    key: HandleKey,
    scope: Vec<u8>,
    verifier: [u8; 8],
}

/// The first byte of every [`DirVfs`] handle.
const DIR_TAG: u8 = b'D';

impl DirVfs {
    /// Serves `root`; `key` seals the handles (persist it to keep handles across restarts).
    /// Root is not squashed: see [`DirVfs::squash_root`].
    pub fn new(root: PathBuf, writable: bool, key: HandleKey) -> io::Result<DirVfs> {
        let root = std::fs::canonicalize(&root)?;
        let tree = Tree::open(&root, writable, Squash::None)?;
        Ok(DirVfs {
            tree,
            key,
            scope: root.as_os_str().as_encoded_bytes().to_vec(),
            verifier: new_verifier(),
        })
    }

    /// Maps uid 0 to nobody (65534) from now on.
    pub fn squash_root(mut self) -> DirVfs {
        self.tree.squash = Squash::ROOT_TO_NOBODY;
        self
    }

    fn seal(&self, kh: &KernelHandle) -> VfsResult<Handle> {
        self.key.seal(&self.scope, &[DIR_TAG], kh)
    }

    fn unseal(&self, h: &Handle) -> VfsResult<KernelHandle> {
        if h.0.first() != Some(&DIR_TAG) {
            return Err(VfsError::BadHandle);
        }
        self.key.unseal(&self.scope, h, 1)
    }
}

impl Vfs for DirVfs {
    fn root(&self, _caller: &Caller) -> VfsResult<Handle> {
        self.seal(&self.tree.root_handle()?)
    }

    fn check(&self, _caller: &Caller, fh: &Handle) -> VfsResult<()> {
        self.tree.obj(&self.unseal(fh)?).map(|_| ())
    }

    fn seek(&self, caller: &Caller, fh: &Handle, offset: u64, data: bool) -> VfsResult<(u64, u64)> {
        self.tree
            .seek(&self.tree.cred(caller), &self.unseal(fh)?, offset, data)
    }

    fn allocate(&self, caller: &Caller, fh: &Handle, how: &Allocate) -> VfsResult<()> {
        let cred = self.tree.cred(caller);
        self.tree.allocate(&cred, &self.unseal(fh)?, how)
    }

    fn copy(
        &self,
        caller: &Caller,
        src: &Handle,
        dst: &Handle,
        range: &CopyRange,
    ) -> VfsResult<u64> {
        let (s, d) = (self.unseal(src)?, self.unseal(dst)?);
        self.tree.copy(&self.tree.cred(caller), &s, &d, range)
    }

    fn getattr(&self, _caller: &Caller, fh: &Handle) -> VfsResult<Attr> {
        self.tree.getattr(&self.unseal(fh)?)
    }

    fn setattr(&self, caller: &Caller, fh: &Handle, set: &SetAttr) -> VfsResult<Attr> {
        self.tree
            .setattr(&self.tree.cred(caller), &self.unseal(fh)?, set)
    }

    fn access(&self, caller: &Caller, fh: &Handle, wanted: u32) -> VfsResult<u32> {
        self.tree
            .access(&self.tree.cred(caller), &self.unseal(fh)?, wanted)
    }

    fn lookup(&self, caller: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<Handle> {
        let (kh, _) = self
            .tree
            .lookup(&self.tree.cred(caller), &self.unseal(dir)?, name)?;
        self.seal(&kh)
    }

    fn parent(&self, caller: &Caller, dir: &Handle) -> VfsResult<Handle> {
        match self
            .tree
            .parent(&self.tree.cred(caller), &self.unseal(dir)?)?
        {
            Some(kh) => self.seal(&kh),
            None => Err(VfsError::NoEnt),
        }
    }

    fn read(
        &self,
        caller: &Caller,
        fh: &Handle,
        offset: u64,
        count: u32,
    ) -> VfsResult<(Vec<u8>, bool)> {
        self.tree
            .read(&self.tree.cred(caller), &self.unseal(fh)?, offset, count)
    }

    fn write(
        &self,
        caller: &Caller,
        fh: &Handle,
        offset: u64,
        data: &[u8],
        stable: Stability,
    ) -> VfsResult<(u32, Stability)> {
        self.tree.write(
            &self.tree.cred(caller),
            &self.unseal(fh)?,
            offset,
            data,
            stable,
        )
    }

    fn commit(&self, _caller: &Caller, fh: &Handle, _offset: u64, _count: u32) -> VfsResult<()> {
        self.tree.commit(&self.unseal(fh)?)
    }

    fn write_verifier(&self) -> [u8; 8] {
        self.verifier
    }

    fn create(
        &self,
        caller: &Caller,
        dir: &Handle,
        name: &[u8],
        what: &NewObject,
        attrs: &SetAttr,
    ) -> VfsResult<(Handle, Attr)> {
        let (kh, a) = self.tree.create(
            &self.tree.cred(caller),
            &self.unseal(dir)?,
            name,
            what,
            attrs,
        )?;
        Ok((self.seal(&kh)?, a))
    }

    fn link(&self, caller: &Caller, fh: &Handle, dir: &Handle, name: &[u8]) -> VfsResult<()> {
        self.tree.link(
            &self.tree.cred(caller),
            &self.unseal(fh)?,
            &self.unseal(dir)?,
            name,
        )
    }

    fn remove(&self, caller: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<()> {
        self.tree
            .remove(&self.tree.cred(caller), &self.unseal(dir)?, name)
    }

    fn rename(
        &self,
        caller: &Caller,
        from_dir: &Handle,
        from: &[u8],
        to_dir: &Handle,
        to: &[u8],
    ) -> VfsResult<()> {
        self.tree.rename(
            &self.tree.cred(caller),
            &self.unseal(from_dir)?,
            from,
            &self.unseal(to_dir)?,
            to,
        )
    }

    fn readdir(
        &self,
        caller: &Caller,
        dir: &Handle,
        cookie: u64,
        max: usize,
    ) -> VfsResult<(Vec<DirEntry>, bool)> {
        let (raw, eof) =
            self.tree
                .readdir(&self.tree.cred(caller), &self.unseal(dir)?, cookie, max)?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, cookie, kh, attr) in raw {
            out.push(DirEntry {
                name,
                cookie,
                handle: self.seal(&kh)?,
                attr,
            });
        }
        Ok((out, eof))
    }

    fn readlink(&self, _caller: &Caller, fh: &Handle) -> VfsResult<Vec<u8>> {
        self.tree.readlink(&self.unseal(fh)?)
    }

    fn statfs(&self, _caller: &Caller, fh: &Handle) -> VfsResult<FsStat> {
        self.tree.statfs(&self.unseal(fh)?)
    }
}

#[cfg(test)]
pub(crate) mod tests;
