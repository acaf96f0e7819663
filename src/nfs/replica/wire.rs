//! Bytes <-> layer shipments: what one member sends another so that the other's copy of a
//! node's writable layer follows this member's.
//!
//! A shipment names the node, its origin (member id and the epoch of its run), a sequence
//! number, and a body: either operations ([`Op`]) in the order this member applied them, or a
//! snapshot (the whole layer as `Put` and `Link` operations, parents before children). Paths
//! are relative to the node's layer directory, as lists of checked names: no `.`, `..`, `/` or
//! NUL inside a name, so a path can never leave the layer whatever the receiver does with it.
//!
//! Format: `MAGIC`, then big-endian integers and length-prefixed byte strings; every length is
//! checked against the bytes left and against the limits below before anything is read, so
//! decoding rejects (never panics on) truncated, oversized or trailing input. An ack is
//! `ACK_MAGIC` and one status byte.
//!
//! Not here: reading or applying layers (`apply`), transport and sealing (`pool::layers`).

use std::fmt;

/// First bytes of a shipment (the pool port carries it in its own frame kind, `pool::frame`).
pub const MAGIC: &[u8; 3] = b"\0L1";
/// First bytes of an ack.
pub const ACK_MAGIC: &[u8; 3] = b"\0A1";
/// The longest name of a layer object (Linux `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The deepest path shipped.
pub const MAX_DEPTH: usize = 64;
/// The longest symlink target.
pub const MAX_TARGET: usize = 4095;
/// `user.drover.*` extended attributes copied per object, and their sizes.
pub const MAX_XATTRS: usize = 16;
pub const MAX_XATTR_VALUE: usize = 4096;
/// Operations in one shipment.
pub const MAX_OPS: usize = 65_536;
/// Bytes of file content in one shipment (one WRITE carries at most 1 MiB; a snapshot may
/// carry the whole layer up to this).
pub const MAX_CONTENT: usize = 24 << 20;
/// The prefix of the extended attributes that travel with each object.
pub const XATTR_PREFIX: &[u8] = b"user.drover.";

/// A path below a layer's root: checked names; empty is the root itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(Vec<Vec<u8>>);

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0.join(&b'/')))
    }
}

/// Why a name or a shipment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated")]
    Short,
    #[error("bad magic")]
    Magic,
    #[error("unknown tag {0}")]
    Tag(u8),
    #[error("over a limit: {0}")]
    Limit(&'static str),
    #[error("bad name")]
    Name,
    #[error("trailing bytes")]
    Trailing,
}

/// Whether `name` is one plain component.
pub fn check_name(name: &[u8]) -> Result<(), WireError> {
    if name.is_empty()
        || name == b"."
        || name == b".."
        || name.len() > MAX_NAME
        || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(WireError::Name);
    }
    Ok(())
}

impl RelPath {
    pub fn root() -> RelPath {
        RelPath(Vec::new())
    }

    /// A path from checked names.
    pub fn new(names: Vec<Vec<u8>>) -> Result<RelPath, WireError> {
        if names.len() > MAX_DEPTH {
            return Err(WireError::Limit("path depth"));
        }
        for n in &names {
            check_name(n)?;
        }
        Ok(RelPath(names))
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &[u8]) -> Result<RelPath, WireError> {
        let mut v = self.0.clone();
        v.push(name.to_vec());
        RelPath::new(v)
    }

    pub fn names(&self) -> &[Vec<u8>] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The parent's names and the last name; `None` for the root.
    pub fn split_last(&self) -> Option<(&[Vec<u8>], &[u8])> {
        self.0.split_last().map(|(l, p)| (p, l.as_slice()))
    }
}

/// Attributes copied with every object. `mtime` is (seconds, nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits incl. setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    /// The object's `user.drover.*` extended attributes (all of them: those missing here
    /// are removed on the receiver).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What an object is, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    /// Raw device numbers (`st_rdev`).
    Block(u64),
    Char(u64),
    Fifo,
    Socket,
}

/// One change to a layer, stated as the result (idempotent where it can be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The object at `path` is now this (replacing whatever is there).
    Put {
        path: RelPath,
        kind: Kind,
        meta: Meta,
    },
    /// `data` at `offset` of the regular file at `path`, which is now `size` bytes long.
    Write {
        path: RelPath,
        offset: u64,
        data: Vec<u8>,
        size: u64,
        meta: Meta,
    },
    /// The object's attributes (and, for a regular file, its size) are now these.
    Attr {
        path: RelPath,
        size: Option<u64>,
        meta: Meta,
    },
    Remove {
        path: RelPath,
    },
    Rename {
        from: RelPath,
        to: RelPath,
    },
    /// `to` is now another name of the object at `from`.
    Link {
        from: RelPath,
        to: RelPath,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Ops(Vec<Op>),
    /// The whole layer: `Put` and `Link` only, parents before children, the root first.
    Snapshot(Vec<Op>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub node: String,
    /// The sending member's id and the start of its run (unix ms).
    pub origin: u64,
    pub epoch: u64,
    /// Increases with every shipment of this run for this node.
    pub seq: u64,
    pub body: Body,
}

/// The receiver's answer to one shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Applied and on stable storage.
    Done,
    /// Could not be applied to this copy (it lacks an object the operations need): send a
    /// snapshot.
    NeedSnapshot,
    /// Malformed, out of order or not allowed: not applied.
    Refused,
}

const K_FILE: u8 = 1;
const K_DIR: u8 = 2;
const K_SYMLINK: u8 = 3;
const K_BLOCK: u8 = 4;
const K_CHAR: u8 = 5;
const K_FIFO: u8 = 6;
const K_SOCKET: u8 = 7;
const O_PUT: u8 = 1;
const O_WRITE: u8 = 2;
const O_ATTR: u8 = 3;
const O_REMOVE: u8 = 4;
const O_RENAME: u8 = 5;
const O_LINK: u8 = 6;
const B_OPS: u8 = 1;
const B_SNAPSHOT: u8 = 2;

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn path(&mut self, p: &RelPath) {
        self.u8(p.0.len() as u8);
        for n in &p.0 {
            self.u8(n.len() as u8);
            self.0.extend_from_slice(n);
        }
    }
    fn meta(&mut self, m: &Meta) {
        self.u32(m.mode);
        self.u32(m.uid);
        self.u32(m.gid);
        self.u64(m.mtime.0 as u64);
        self.u32(m.mtime.1);
        self.u8(m.xattrs.len() as u8);
        for (k, v) in &m.xattrs {
            self.bytes(k);
            self.bytes(v);
        }
    }
    fn op(&mut self, op: &Op) {
        match op {
            Op::Put { path, kind, meta } => {
                self.u8(O_PUT);
                self.path(path);
                match kind {
                    Kind::File(d) => {
                        self.u8(K_FILE);
                        self.bytes(d);
                    }
                    Kind::Dir => self.u8(K_DIR),
                    Kind::Symlink(t) => {
                        self.u8(K_SYMLINK);
                        self.bytes(t);
                    }
                    Kind::Block(r) => {
                        self.u8(K_BLOCK);
                        self.u64(*r);
                    }
                    Kind::Char(r) => {
                        self.u8(K_CHAR);
                        self.u64(*r);
                    }
                    Kind::Fifo => self.u8(K_FIFO),
                    Kind::Socket => self.u8(K_SOCKET),
                }
                self.meta(meta);
            }
            Op::Write {
                path,
                offset,
                data,
                size,
                meta,
            } => {
                self.u8(O_WRITE);
                self.path(path);
                self.u64(*offset);
                self.bytes(data);
                self.u64(*size);
                self.meta(meta);
            }
            Op::Attr { path, size, meta } => {
                self.u8(O_ATTR);
                self.path(path);
                match size {
                    Some(s) => {
                        self.u8(1);
                        self.u64(*s);
                    }
                    None => self.u8(0),
                }
                self.meta(meta);
            }
            Op::Remove { path } => {
                self.u8(O_REMOVE);
                self.path(path);
            }
            Op::Rename { from, to } => {
                self.u8(O_RENAME);
                self.path(from);
                self.path(to);
            }
            Op::Link { from, to } => {
                self.u8(O_LINK);
                self.path(from);
                self.path(to);
            }
        }
    }
}

/// Bounded reading: every accessor checks the bytes left first.
struct In<'a> {
    buf: &'a [u8],
    content: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Short);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| WireError::Short)?;
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| WireError::Short)?;
        Ok(u64::from_be_bytes(b))
    }
    fn bytes(&mut self, max: usize, what: &'static str) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(WireError::Limit(what));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn content(&mut self) -> Result<Vec<u8>, WireError> {
        let d = self.bytes(MAX_CONTENT, "content")?;
        self.content += d.len();
        if self.content > MAX_CONTENT {
            return Err(WireError::Limit("content"));
        }
        Ok(d)
    }
    fn path(&mut self) -> Result<RelPath, WireError> {
        let depth = self.u8()? as usize;
        let mut names = Vec::with_capacity(depth.min(MAX_DEPTH));
        for _ in 0..depth {
            let n = self.u8()? as usize;
            names.push(self.take(n)?.to_vec());
        }
        RelPath::new(names)
    }
    fn meta(&mut self) -> Result<Meta, WireError> {
        let mode = self.u32()?;
        if mode & !0o7777 != 0 {
            return Err(WireError::Limit("mode"));
        }
        let (uid, gid) = (self.u32()?, self.u32()?);
        let secs = self.u64()? as i64;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(WireError::Limit("nanoseconds"));
        }
        let n = self.u8()? as usize;
        if n > MAX_XATTRS {
            return Err(WireError::Limit("xattrs"));
        }
        let mut xattrs = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.bytes(MAX_NAME, "xattr name")?;
            if !k.starts_with(XATTR_PREFIX) || k.contains(&0) {
                return Err(WireError::Name);
            }
            let v = self.bytes(MAX_XATTR_VALUE, "xattr value")?;
            xattrs.push((k, v));
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime: (secs, nanos),
            xattrs,
        })
    }
    fn op(&mut self) -> Result<Op, WireError> {
        Ok(match self.u8()? {
            O_PUT => {
                let path = self.path()?;
                let kind = match self.u8()? {
                    K_FILE => Kind::File(self.content()?),
                    K_DIR => Kind::Dir,
                    K_SYMLINK => {
                        let t = self.bytes(MAX_TARGET, "symlink target")?;
                        if t.is_empty() || t.contains(&0) {
                            return Err(WireError::Name);
                        }
                        Kind::Symlink(t)
                    }
                    K_BLOCK => Kind::Block(self.u64()?),
                    K_CHAR => Kind::Char(self.u64()?),
                    K_FIFO => Kind::Fifo,
                    K_SOCKET => Kind::Socket,
                    t => return Err(WireError::Tag(t)),
                };
                Op::Put {
                    path,
                    kind,
                    meta: self.meta()?,
                }
            }
            O_WRITE => Op::Write {
                path: self.path()?,
                offset: self.u64()?,
                data: self.content()?,
                size: self.u64()?,
                meta: self.meta()?,
            },
            O_ATTR => {
                let path = self.path()?;
                let size = match self.u8()? {
                    0 => None,
                    1 => Some(self.u64()?),
                    t => return Err(WireError::Tag(t)),
                };
                Op::Attr {
                    path,
                    size,
                    meta: self.meta()?,
                }
            }
            O_REMOVE => Op::Remove { path: self.path()? },
            O_RENAME => Op::Rename {
                from: self.path()?,
                to: self.path()?,
            },
            O_LINK => Op::Link {
                from: self.path()?,
                to: self.path()?,
            },
            t => return Err(WireError::Tag(t)),
        })
    }
}

impl Shipment {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out(Vec::with_capacity(64));
        o.0.extend_from_slice(MAGIC);
        o.bytes(self.node.as_bytes());
        o.u64(self.origin);
        o.u64(self.epoch);
        o.u64(self.seq);
        let ops = match &self.body {
            Body::Ops(ops) => {
                o.u8(B_OPS);
                ops
            }
            Body::Snapshot(ops) => {
                o.u8(B_SNAPSHOT);
                ops
            }
        };
        o.u32(ops.len() as u32);
        for op in ops {
            o.op(op);
        }
        o.0
    }

    /// Parses a whole shipment; anything left over is an error.
    pub fn decode(buf: &[u8]) -> Result<Shipment, WireError> {
        let mut r = In { buf, content: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(WireError::Magic);
        }
        let node =
            String::from_utf8(r.bytes(MAX_NAME, "node name")?).map_err(|_| WireError::Name)?;
        let (origin, epoch, seq) = (r.u64()?, r.u64()?, r.u64()?);
        let kind = r.u8()?;
        let n = r.u32()? as usize;
        if n > MAX_OPS {
            return Err(WireError::Limit("operations"));
        }
        // Each operation takes at least two bytes: never reserve more than the input holds.
        let mut ops = Vec::with_capacity(n.min(r.buf.len() / 2));
        for _ in 0..n {
            ops.push(r.op()?);
        }
        if !r.buf.is_empty() {
            return Err(WireError::Trailing);
        }
        let body = match kind {
            B_OPS => Body::Ops(ops),
            B_SNAPSHOT => {
                if ops
                    .iter()
                    .any(|o| !matches!(o, Op::Put { .. } | Op::Link { .. }))
                {
                    return Err(WireError::Tag(kind));
                }
                Body::Snapshot(ops)
            }
            t => return Err(WireError::Tag(t)),
        };
        Ok(Shipment {
            node,
            origin,
            epoch,
            seq,
            body,
        })
    }
}

impl Ack {
    pub fn encode(self) -> Vec<u8> {
        let mut v = ACK_MAGIC.to_vec();
        v.push(match self {
            Ack::Done => 0,
            Ack::NeedSnapshot => 1,
            Ack::Refused => 2,
        });
        v
    }

    pub fn decode(buf: &[u8]) -> Result<Ack, WireError> {
        match buf {
            [a, b, c, s] if [*a, *b, *c] == *ACK_MAGIC => match s {
                0 => Ok(Ack::Done),
                1 => Ok(Ack::NeedSnapshot),
                2 => Ok(Ack::Refused),
                t => Err(WireError::Tag(*t)),
            },
            _ => Err(WireError::Magic),
        }
    }
}
