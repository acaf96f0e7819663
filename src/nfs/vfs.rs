//! The boundary between the NFSv4 protocol core and the files it serves.
//!
//! The protocol side (`wire`, `core`, `serve`) knows RPC, COMPOUND, state and leases, and
//! nothing about directories on disk; a [`Vfs`] knows files, views and permissions, and
//! nothing about NFS state (opens, locks, sessions, leases live in the core). Modelled on
//! the VFS boundary of nfsserve (an NFSv3 server), reshaped for NFSv4: handles are opaque
//! bytes chosen by the [`Vfs`], the pseudo-root is the [`Vfs`]'s business, and every call
//! names its [`Caller`] so that one tree can show each node its own view.
//!
//! Calls are blocking (they touch the disk); the serving shell runs them off the async
//! runtime. A [`Vfs`] enforces permissions itself (AUTH_SYS uid/gid against mode bits, read-only
//! trees, which views a caller's address may see): the core does not second-guess it.

use super::status::Nfs4Status;
use std::net::IpAddr;

/// NFSv4's limit on a file handle's size (`NFS4_FHSIZE`).
pub const MAX_HANDLE: usize = 128;

/// An opaque file handle, at most [`MAX_HANDLE`] bytes. A [`Vfs`] makes handles that stay
/// valid across restarts of drover (persistent handles, `FH4_PERSISTENT`) for as long as the
/// object exists; an unknown or deleted one is [`VfsError::Stale`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle(pub Vec<u8>);

/// Who is asking: the client's address (which selects the node's view) and its AUTH_SYS
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub addr: IpAddr,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (AUTH_SYS carries up to 16).
    pub gids: Vec<u32>,
}

/// A point in time as NFSv4's `nfstime4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time {
    pub seconds: i64,
    pub nanos: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    Block,
    Char,
    Fifo,
    Socket,
}

/// The attributes of one object, as much as the core needs to answer GETATTR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: FileType,
    /// Permission bits including setuid, setgid and sticky (`mode4`, 0o7777).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Bytes of storage used (`space_used`).
    pub used: u64,
    /// Device numbers (major, minor) for block and character devices.
    pub rdev: (u32, u32),
    /// Which file system the object is on; it changes where one export or view is mounted in
    /// another, so that clients see a mount point there.
    pub fsid: (u64, u64),
    /// Unique within `fsid` and stable for the object's lifetime.
    pub fileid: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Changes whenever the object's data or attributes change (`change`).
    pub change: u64,
}

/// What SETATTR and the create operations may set; `None` leaves a field alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    ServerNow,
    Client(Time),
}

/// What a create operation makes. Regular files are created by OPEN, the rest by CREATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewObject {
    /// `exclusive`: fail with [`VfsError::Exist`] if the name exists (GUARDED/EXCLUSIVE
    /// creates); otherwise an existing regular file is opened (and truncated if `attrs.size`
    /// says so).
    File {
        exclusive: bool,
    },
    Directory,
    Symlink {
        target: Vec<u8>,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Char {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

/// ALLOCATE's and DEALLOCATE's arguments: `length` bytes at `offset`, reserved (`punch`
/// false) or freed to read back as zeros (`punch` true, the size kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocate {
    pub offset: u64,
    pub length: u64,
    pub punch: bool,
}

/// COPY's and CLONE's arguments besides the two files: `count` bytes from `src_offset` of
/// the source to `dst_offset` of the destination; `clone` shares the source's blocks
/// (CLONE) instead of copying them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRange {
    pub src_offset: u64,
    pub dst_offset: u64,
    pub count: u64,
    pub clone: bool,
}

/// How far a WRITE's data must be on stable storage before it is acknowledged (`stable_how4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stability {
    Unstable,
    DataSync,
    FileSync,
}

/// Access bits as in NFSv4's ACCESS operation.
pub mod access {
    pub const READ: u32 = 0x01;
    pub const LOOKUP: u32 = 0x02;
    pub const MODIFY: u32 = 0x04;
    pub const EXTEND: u32 = 0x08;
    pub const DELETE: u32 = 0x10;
    pub const EXECUTE: u32 = 0x20;
}

/// One directory entry from [`Vfs::readdir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    /// Where a later READDIR resumes after this entry; never 0, 1 or 2 (reserved by NFSv4).
    pub cookie: u64,
    pub handle: Handle,
    pub attr: Attr,
}

/// Space and file counts of the file system holding an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStat {
    pub bytes_total: u64,
    pub bytes_free: u64,
    /// Free to the caller (`space_avail`).
    pub bytes_avail: u64,
    pub files_total: u64,
    pub files_free: u64,
    pub files_avail: u64,
}

/// Why a [`Vfs`] call failed; each maps to its `nfsstat4` ([`Nfs4Status`]) below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VfsError {
    #[error("no such file or directory")]
    NoEnt,
    #[error("file exists")]
    Exist,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("permission denied")]
    Access,
    #[error("operation not permitted")]
    Perm,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    /// A name that is not allowed (empty, ".", "..", contains '/' or NUL).
    #[error("bad name")]
    BadName,
    #[error("read-only file system")]
    ReadOnly,
    #[error("no space left")]
    NoSpace,
    #[error("quota exceeded")]
    Quota,
    #[error("file too large")]
    TooBig,
    #[error("stale file handle")]
    Stale,
    #[error("malformed file handle")]
    BadHandle,
    #[error("invalid argument")]
    Inval,
    #[error("cross-device link")]
    XDev,
    #[error("symbolic link")]
    Symlink,
    #[error("bad readdir cookie")]
    BadCookie,
    #[error("not supported")]
    NotSupported,
    /// SEEK found no data (or hole) at or after the offset.
    #[error("no such device or address")]
    NxIo,
    #[error("I/O error: {0}")]
    Io(String),
}

pub type VfsResult<T> = Result<T, VfsError>;

/// The one mapping of file-side errors to protocol statuses.
impl From<VfsError> for Nfs4Status {
    fn from(e: VfsError) -> Self {
        match e {
            VfsError::NoEnt => Nfs4Status::NoEnt,
            VfsError::Exist => Nfs4Status::Exist,
            VfsError::NotDir => Nfs4Status::NotDir,
            VfsError::IsDir => Nfs4Status::IsDir,
            VfsError::Access => Nfs4Status::Access,
            VfsError::Perm => Nfs4Status::Perm,
            VfsError::NotEmpty => Nfs4Status::NotEmpty,
            VfsError::NameTooLong => Nfs4Status::NameTooLong,
            VfsError::BadName => Nfs4Status::BadName,
            VfsError::ReadOnly => Nfs4Status::RoFs,
            VfsError::NoSpace => Nfs4Status::NoSpc,
            VfsError::Quota => Nfs4Status::DQuot,
            VfsError::TooBig => Nfs4Status::FBig,
            VfsError::Stale => Nfs4Status::Stale,
            VfsError::BadHandle => Nfs4Status::BadHandle,
            VfsError::Inval => Nfs4Status::Inval,
            VfsError::XDev => Nfs4Status::XDev,
            VfsError::Symlink => Nfs4Status::Symlink,
            VfsError::BadCookie => Nfs4Status::BadCookie,
            VfsError::NotSupported => Nfs4Status::NotSupp,
            VfsError::NxIo => Nfs4Status::NxIo,
            VfsError::Io(_) => Nfs4Status::Io,
        }
    }
}

/// A tree of files served over NFSv4, as seen by each caller.
pub trait Vfs: Send + Sync + 'static {
    /// The caller's pseudo-root (PUTROOTFH, PUTPUBFH): the directory holding what the caller
    /// may mount (`/root` for a node's own root view, `/NAME` for shared exports).
    fn root(&self, caller: &Caller) -> VfsResult<Handle>;

    /// Whether `fh` is a handle this Vfs made, naming an object that `caller` may reach now
    /// (PUTFH checks every handle a client presents): [`VfsError::BadHandle`] for bytes it
    /// did not make, [`VfsError::Stale`] for an object that is gone or out of the caller's
    /// reach (another address's view, an export not open to it).
    fn check(&self, caller: &Caller, fh: &Handle) -> VfsResult<()>;

    fn getattr(&self, caller: &Caller, fh: &Handle) -> VfsResult<Attr>;

    fn setattr(&self, caller: &Caller, fh: &Handle, set: &SetAttr) -> VfsResult<Attr>;

    /// Which of `wanted` (bits of [`access`]) the caller has on `fh`.
    fn access(&self, caller: &Caller, fh: &Handle, wanted: u32) -> VfsResult<u32>;

    /// `name` in directory `dir`; `.` and `..` are not names here ([`VfsError::BadName`]).
    fn lookup(&self, caller: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<Handle>;

    /// The parent of directory `dir` (LOOKUPP); [`VfsError::NoEnt`] at the pseudo-root.
    fn parent(&self, caller: &Caller, dir: &Handle) -> VfsResult<Handle>;

    /// Up to `count` bytes from `offset`, and whether they reach the end of the file.
    fn read(
        &self,
        caller: &Caller,
        fh: &Handle,
        offset: u64,
        count: u32,
    ) -> VfsResult<(Vec<u8>, bool)>;

    /// Writes `data` at `offset`; returns the bytes written and how stable they are, which is
    /// at least `stable`.
    fn write(
        &self,
        caller: &Caller,
        fh: &Handle,
        offset: u64,
        data: &[u8],
        stable: Stability,
    ) -> VfsResult<(u32, Stability)>;

    /// Makes earlier unstable writes to `fh` stable (COMMIT); `count` 0 means to the end.
    fn commit(&self, caller: &Caller, fh: &Handle, offset: u64, count: u32) -> VfsResult<()>;

    /// Changes whenever unstable writes may have been lost (a restart): WRITE and COMMIT
    /// return it so that clients know to write again.
    fn write_verifier(&self) -> [u8; 8];

    /// Makes `name` in `dir`; returns its handle and attributes.
    fn create(
        &self,
        caller: &Caller,
        dir: &Handle,
        name: &[u8],
        what: &NewObject,
        attrs: &SetAttr,
    ) -> VfsResult<(Handle, Attr)>;

    /// A hard link to `fh` named `name` in `dir`.
    fn link(&self, caller: &Caller, fh: &Handle, dir: &Handle, name: &[u8]) -> VfsResult<()>;

    /// Removes `name` (a file, or an empty directory) from `dir`.
    fn remove(&self, caller: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<()>;

    fn rename(
        &self,
        caller: &Caller,
        from_dir: &Handle,
        from: &[u8],
        to_dir: &Handle,
        to: &[u8],
    ) -> VfsResult<()>;

    /// Entries of `dir` after `cookie` (0 = from the start), at most `max` of them, without
    /// `.` and `..`; and whether the listing is complete.
    fn readdir(
        &self,
        caller: &Caller,
        dir: &Handle,
        cookie: u64,
        max: usize,
    ) -> VfsResult<(Vec<DirEntry>, bool)>;

    fn readlink(&self, caller: &Caller, fh: &Handle) -> VfsResult<Vec<u8>>;

    /// Where the next data (`data`) or hole at or after `offset` of regular file `fh` starts,
    /// and the file's size (SEEK); [`VfsError::NxIo`] when there is none.
    fn seek(&self, caller: &Caller, fh: &Handle, offset: u64, data: bool) -> VfsResult<(u64, u64)> {
        let _ = (caller, fh, offset, data);
        Err(VfsError::NotSupported)
    }

    /// Reserves (ALLOCATE) or frees (DEALLOCATE, reading back as zeros) a range of `fh`.
    fn allocate(&self, caller: &Caller, fh: &Handle, how: &Allocate) -> VfsResult<()> {
        let _ = (caller, fh, how);
        Err(VfsError::NotSupported)
    }

    /// Copies up to `range.count` bytes from `src` to `dst` (COPY); returns how many it
    /// copied, which may be fewer; the data is not yet stable. With `range.clone` (CLONE)
    /// the bytes share `src`'s blocks instead, all of them, or [`VfsError::NotSupported`]
    /// where the file system cannot.
    fn copy(
        &self,
        caller: &Caller,
        src: &Handle,
        dst: &Handle,
        range: &CopyRange,
    ) -> VfsResult<u64> {
        let _ = (caller, src, dst, range);
        Err(VfsError::NotSupported)
    }

    fn statfs(&self, caller: &Caller, fh: &Handle) -> VfsResult<FsStat>;
}
