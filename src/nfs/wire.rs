//! NFSv4 COMPOUND on the wire (RFC 7530 / RFC 8881 XDR): arguments decoded into a bounded
//! list of typed [`Op`]s, results ([`Res`]) encoded back, plus operation and attribute
//! numbers and the attribute (fattr4) codec. Statuses are [`Nfs4Status`].
//!
//! Decoding is all-or-nothing per operation: an operation whose arguments do not decode
//! becomes [`Op::Bad`] (answered NFS4ERR_BADXDR), an unknown operation number becomes
//! [`Op::Illegal`] (answered NFS4ERR_OP_ILLEGAL), and decoding stops there, as the COMPOUND
//! stops at the first failure anyway. Every variable-length field has a limit.
//!
//! Not here: what operations do (see [`super::core`]); RPC framing (see [`super::rpc`]).

use super::status::Nfs4Status;
use super::vfs::{Attr, FileType, FsStat, Handle, SetAttr, SetTime, Time, VfsError, MAX_HANDLE};
use super::xdr::{Reader, Writer, XdrError, XdrResult};

/// Longest file name accepted (`maxname`).
pub const MAX_NAME: usize = 255;
/// Longest symlink target accepted.
pub const MAX_LINK: usize = 4096;
/// Longest client, owner and implementation identifiers (`NFS4_OPAQUE_LIMIT`).
pub const MAX_OPAQUE: usize = 1024;
/// Most bitmap words accepted in a request (bits beyond the known attributes are ignored).
pub const MAX_BITMAP_WORDS: usize = 8;
/// Largest attribute value block accepted in a request.
pub const MAX_ATTR_BYTES: usize = 64 * 1024;
/// Largest READ or WRITE payload (`maxread`, `maxwrite`).
pub const MAX_IO: u32 = 1024 * 1024;
/// Largest COMPOUND tag.
pub const MAX_TAG: usize = 1024;
/// Most operations decoded from one COMPOUND.
pub const MAX_OPS: usize = 64;
/// Largest RPC record accepted (a maximal WRITE plus headers).
pub const MAX_RECORD: usize = MAX_IO as usize + 64 * 1024;

/// Operation numbers (`nfs_opnum4`).
#[allow(missing_docs)]
pub mod opnum {
    pub const ACCESS: u32 = 3;
    pub const CLOSE: u32 = 4;
    pub const COMMIT: u32 = 5;
    pub const CREATE: u32 = 6;
    pub const DELEGPURGE: u32 = 7;
    pub const DELEGRETURN: u32 = 8;
    pub const GETATTR: u32 = 9;
    pub const GETFH: u32 = 10;
    pub const LINK: u32 = 11;
    pub const LOCK: u32 = 12;
    pub const LOCKT: u32 = 13;
    pub const LOCKU: u32 = 14;
    pub const LOOKUP: u32 = 15;
    pub const LOOKUPP: u32 = 16;
    pub const NVERIFY: u32 = 17;
    pub const OPEN: u32 = 18;
    pub const OPENATTR: u32 = 19;
    pub const OPEN_CONFIRM: u32 = 20;
    pub const OPEN_DOWNGRADE: u32 = 21;
    pub const PUTFH: u32 = 22;
    pub const PUTPUBFH: u32 = 23;
    pub const PUTROOTFH: u32 = 24;
    pub const READ: u32 = 25;
    pub const READDIR: u32 = 26;
    pub const READLINK: u32 = 27;
    pub const REMOVE: u32 = 28;
    pub const RENAME: u32 = 29;
    pub const RENEW: u32 = 30;
    pub const RESTOREFH: u32 = 31;
    pub const SAVEFH: u32 = 32;
    pub const SECINFO: u32 = 33;
    pub const SETATTR: u32 = 34;
    pub const SETCLIENTID: u32 = 35;
    pub const SETCLIENTID_CONFIRM: u32 = 36;
    pub const VERIFY: u32 = 37;
    pub const WRITE: u32 = 38;
    pub const RELEASE_LOCKOWNER: u32 = 39;
    pub const BACKCHANNEL_CTL: u32 = 40;
    pub const BIND_CONN_TO_SESSION: u32 = 41;
    pub const EXCHANGE_ID: u32 = 42;
    pub const CREATE_SESSION: u32 = 43;
    pub const DESTROY_SESSION: u32 = 44;
    pub const FREE_STATEID: u32 = 45;
    pub const GET_DIR_DELEGATION: u32 = 46;
    pub const GETDEVICEINFO: u32 = 47;
    pub const GETDEVICELIST: u32 = 48;
    pub const LAYOUTCOMMIT: u32 = 49;
    pub const LAYOUTGET: u32 = 50;
    pub const LAYOUTRETURN: u32 = 51;
    pub const SECINFO_NO_NAME: u32 = 52;
    pub const SEQUENCE: u32 = 53;
    pub const SET_SSV: u32 = 54;
    pub const TEST_STATEID: u32 = 55;
    pub const WANT_DELEGATION: u32 = 56;
    pub const DESTROY_CLIENTID: u32 = 57;
    pub const RECLAIM_COMPLETE: u32 = 58;
    // NFSv4.2 (RFC 7862), and the extended attribute operations (RFC 8276).
    pub const ALLOCATE: u32 = 59;
    pub const COPY: u32 = 60;
    pub const COPY_NOTIFY: u32 = 61;
    pub const DEALLOCATE: u32 = 62;
    pub const IO_ADVISE: u32 = 63;
    pub const LAYOUTERROR: u32 = 64;
    pub const LAYOUTSTATS: u32 = 65;
    pub const OFFLOAD_CANCEL: u32 = 66;
    pub const OFFLOAD_STATUS: u32 = 67;
    pub const READ_PLUS: u32 = 68;
    pub const SEEK: u32 = 69;
    pub const WRITE_SAME: u32 = 70;
    pub const CLONE: u32 = 71;
    pub const GETXATTR: u32 = 72;
    pub const SETXATTR: u32 = 73;
    pub const LISTXATTRS: u32 = 74;
    pub const REMOVEXATTR: u32 = 75;
    pub const ILLEGAL: u32 = 10044;
}

/// Attribute numbers (`FATTR4_*`).
#[allow(missing_docs)]
pub mod fattr {
    pub const SUPPORTED_ATTRS: u32 = 0;
    pub const TYPE: u32 = 1;
    pub const FH_EXPIRE_TYPE: u32 = 2;
    pub const CHANGE: u32 = 3;
    pub const SIZE: u32 = 4;
    pub const LINK_SUPPORT: u32 = 5;
    pub const SYMLINK_SUPPORT: u32 = 6;
    pub const NAMED_ATTR: u32 = 7;
    pub const FSID: u32 = 8;
    pub const UNIQUE_HANDLES: u32 = 9;
    pub const LEASE_TIME: u32 = 10;
    pub const RDATTR_ERROR: u32 = 11;
    pub const ACLSUPPORT: u32 = 13;
    pub const CANSETTIME: u32 = 15;
    pub const CASE_INSENSITIVE: u32 = 16;
    pub const CASE_PRESERVING: u32 = 17;
    pub const CHOWN_RESTRICTED: u32 = 18;
    pub const FILEHANDLE: u32 = 19;
    pub const FILEID: u32 = 20;
    pub const FILES_AVAIL: u32 = 21;
    pub const FILES_FREE: u32 = 22;
    pub const FILES_TOTAL: u32 = 23;
    pub const HOMOGENEOUS: u32 = 26;
    pub const MAXFILESIZE: u32 = 27;
    pub const MAXLINK: u32 = 28;
    pub const MAXNAME: u32 = 29;
    pub const MAXREAD: u32 = 30;
    pub const MAXWRITE: u32 = 31;
    pub const MODE: u32 = 33;
    pub const NO_TRUNC: u32 = 34;
    pub const NUMLINKS: u32 = 35;
    pub const OWNER: u32 = 36;
    pub const OWNER_GROUP: u32 = 37;
    pub const RAWDEV: u32 = 41;
    pub const SPACE_AVAIL: u32 = 42;
    pub const SPACE_FREE: u32 = 43;
    pub const SPACE_TOTAL: u32 = 44;
    pub const SPACE_USED: u32 = 45;
    pub const TIME_ACCESS: u32 = 47;
    pub const TIME_ACCESS_SET: u32 = 48;
    pub const TIME_DELTA: u32 = 51;
    pub const TIME_METADATA: u32 = 52;
    pub const TIME_MODIFY: u32 = 53;
    pub const TIME_MODIFY_SET: u32 = 54;
    pub const MOUNTED_ON_FILEID: u32 = 55;
    pub const SUPPATTR_EXCLCREAT: u32 = 75;
}

/// Attributes this server returns (GETATTR, READDIR) in NFSv4.0.
pub const SUPPORTED_V40: &[u32] = &[
    fattr::SUPPORTED_ATTRS,
    fattr::TYPE,
    fattr::FH_EXPIRE_TYPE,
    fattr::CHANGE,
    fattr::SIZE,
    fattr::LINK_SUPPORT,
    fattr::SYMLINK_SUPPORT,
    fattr::NAMED_ATTR,
    fattr::FSID,
    fattr::UNIQUE_HANDLES,
    fattr::LEASE_TIME,
    fattr::RDATTR_ERROR,
    fattr::ACLSUPPORT,
    fattr::CANSETTIME,
    fattr::CASE_INSENSITIVE,
    fattr::CASE_PRESERVING,
    fattr::CHOWN_RESTRICTED,
    fattr::FILEHANDLE,
    fattr::FILEID,
    fattr::FILES_AVAIL,
    fattr::FILES_FREE,
    fattr::FILES_TOTAL,
    fattr::HOMOGENEOUS,
    fattr::MAXFILESIZE,
    fattr::MAXLINK,
    fattr::MAXNAME,
    fattr::MAXREAD,
    fattr::MAXWRITE,
    fattr::MODE,
    fattr::NO_TRUNC,
    fattr::NUMLINKS,
    fattr::OWNER,
    fattr::OWNER_GROUP,
    fattr::RAWDEV,
    fattr::SPACE_AVAIL,
    fattr::SPACE_FREE,
    fattr::SPACE_TOTAL,
    fattr::SPACE_USED,
    fattr::TIME_ACCESS,
    fattr::TIME_ACCESS_SET,
    fattr::TIME_DELTA,
    fattr::TIME_METADATA,
    fattr::TIME_MODIFY,
    fattr::TIME_MODIFY_SET,
    fattr::MOUNTED_ON_FILEID,
];

/// Attributes a client may set in SETATTR and creates.
pub const SETTABLE: &[u32] = &[
    fattr::SIZE,
    fattr::MODE,
    fattr::OWNER,
    fattr::OWNER_GROUP,
    fattr::TIME_ACCESS_SET,
    fattr::TIME_MODIFY_SET,
];

/// An attribute bitmap (`bitmap4`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitmap(pub Vec<u32>);

impl Bitmap {
    pub fn from_bits(bits: &[u32]) -> Self {
        let mut b = Bitmap::default();
        for &bit in bits {
            b.set(bit);
        }
        b
    }

    pub fn has(&self, bit: u32) -> bool {
        let (w, b) = ((bit / 32) as usize, bit % 32);
        self.0.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    pub fn set(&mut self, bit: u32) {
        let (w, b) = ((bit / 32) as usize, bit % 32);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }

    /// Set bits in ascending order.
    pub fn bits(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            (0..32)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| w as u32 * 32 + b)
        })
    }

    /// The bits of `self` that are also in `other`.
    pub fn intersect(&self, other: &Bitmap) -> Bitmap {
        Bitmap(
            self.0
                .iter()
                .zip(other.0.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a & b)
                .collect(),
        )
    }

    fn decode(r: &mut Reader) -> XdrResult<Self> {
        let n = r.count(MAX_BITMAP_WORDS, 4)?;
        let mut words = Vec::with_capacity(n);
        for _ in 0..n {
            words.push(r.u32()?);
        }
        Ok(Bitmap(words))
    }

    pub fn encode(&self, w: &mut Writer) {
        let n = self.0.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
        w.u32(n as u32);
        for &word in &self.0[..n] {
            w.u32(word);
        }
    }
}

/// A `fattr4` from a request: the mask and the raw values, decoded on use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FAttr {
    pub mask: Bitmap,
    pub vals: Vec<u8>,
}

impl FAttr {
    fn decode(r: &mut Reader) -> XdrResult<Self> {
        let mask = Bitmap::decode(r)?;
        let vals = r.opaque(MAX_ATTR_BYTES)?.to_vec();
        Ok(FAttr { mask, vals })
    }

    /// The settable attributes; anything else set in the mask fails: unknown or read-only
    /// attributes with NFS4ERR_ATTRNOTSUPP / NFS4ERR_INVAL, bad values with NFS4ERR_BADXDR,
    /// unmappable owners with NFS4ERR_BADOWNER.
    pub fn settable(&self) -> Result<SetAttr, Nfs4Status> {
        let mut set = SetAttr::default();
        let mut r = Reader::new(&self.vals);
        let bad = |_: XdrError| Nfs4Status::BadXdr;
        for bit in self.mask.bits() {
            match bit {
                fattr::SIZE => set.size = Some(r.u64().map_err(bad)?),
                fattr::MODE => set.mode = Some(mode(r.u32().map_err(bad)?)?),
                fattr::OWNER => set.uid = Some(parse_id(r.opaque(MAX_OPAQUE).map_err(bad)?)?),
                fattr::OWNER_GROUP => set.gid = Some(parse_id(r.opaque(MAX_OPAQUE).map_err(bad)?)?),
                fattr::TIME_ACCESS_SET => set.atime = Some(settime(&mut r)?),
                fattr::TIME_MODIFY_SET => set.mtime = Some(settime(&mut r)?),
                b if SUPPORTED_V40.contains(&b) || b == fattr::SUPPATTR_EXCLCREAT => {
                    return Err(Nfs4Status::Inval)
                }
                _ => return Err(Nfs4Status::AttrNotSupp),
            }
        }
        if r.remaining() != 0 {
            return Err(Nfs4Status::BadXdr);
        }
        Ok(set)
    }
}

/// A `mode4` a client sets: bits beyond the permission, setuid, setgid and sticky bits are
/// not defined, and setting them is NFS4ERR_INVAL (RFC 8881 §6.2.4, RFC 7530 §6.2.4).
fn mode(m: u32) -> Result<u32, Nfs4Status> {
    if m & !0o7777 != 0 {
        return Err(Nfs4Status::Inval);
    }
    Ok(m)
}

/// Owners travel as numeric strings ("1000"); AUTH_SYS clients with id mapping off send
/// them so. Names (`user@domain`) are not mapped: NFS4ERR_BADOWNER. An empty string names
/// no one: a malformed argument (NFS4ERR_INVAL), not a name this server fails to map.
fn parse_id(s: &[u8]) -> Result<u32, Nfs4Status> {
    if s.is_empty() {
        return Err(Nfs4Status::Inval);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Nfs4Status::BadOwner)
}

/// An `nfstime4` a client sets. Bytes missing are NFS4ERR_BADXDR; nseconds of 10^9 or more
/// decode but are no time (RFC 8881 §3.3.1, RFC 7530 §2.2): NFS4ERR_INVAL.
fn time(r: &mut Reader) -> Result<Time, Nfs4Status> {
    let seconds = r.i64().map_err(|_| Nfs4Status::BadXdr)?;
    let nanos = r.u32().map_err(|_| Nfs4Status::BadXdr)?;
    if nanos >= 1_000_000_000 {
        return Err(Nfs4Status::Inval);
    }
    Ok(Time { seconds, nanos })
}

/// A `settime4`; an unknown `time_how4` does not decode (NFS4ERR_BADXDR).
fn settime(r: &mut Reader) -> Result<SetTime, Nfs4Status> {
    match r.u32().map_err(|_| Nfs4Status::BadXdr)? {
        0 => Ok(SetTime::ServerNow),
        1 => Ok(SetTime::Client(time(r)?)),
        _ => Err(Nfs4Status::BadXdr),
    }
}

fn put_time(w: &mut Writer, t: Time) {
    w.i64(t.seconds);
    w.u32(t.nanos);
}

/// Everything an attribute value can come from.
pub struct AttrSource<'a> {
    pub attr: &'a Attr,
    pub handle: &'a Handle,
    /// Present when a space or file count was asked for.
    pub fsstat: Option<FsStat>,
    pub lease_seconds: u32,
    pub minor: u32,
}

/// The supported attributes of a minor version.
pub fn supported(minor: u32) -> Bitmap {
    let mut b = Bitmap::from_bits(SUPPORTED_V40);
    if minor >= 1 {
        b.set(fattr::SUPPATTR_EXCLCREAT);
    }
    b
}

/// Whether answering `mask` needs file system statistics.
pub fn needs_fsstat(mask: &Bitmap) -> bool {
    [
        fattr::FILES_AVAIL,
        fattr::FILES_FREE,
        fattr::FILES_TOTAL,
        fattr::SPACE_AVAIL,
        fattr::SPACE_FREE,
        fattr::SPACE_TOTAL,
    ]
    .iter()
    .any(|&b| mask.has(b))
}

fn ftype(k: FileType) -> u32 {
    match k {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::Block => 3,
        FileType::Char => 4,
        FileType::Symlink => 5,
        FileType::Socket => 6,
        FileType::Fifo => 7,
    }
}

/// Encodes a `fattr4` with the requested attributes this server supports (the others are
/// left out of the returned mask, as GETATTR does).
pub fn encode_attrs(w: &mut Writer, want: &Bitmap, src: &AttrSource) {
    let sup = supported(src.minor);
    let mask = want.intersect(&sup);
    let mut v = Writer::new();
    let a = src.attr;
    let fs = src.fsstat.unwrap_or_default();
    for bit in mask.bits() {
        match bit {
            fattr::SUPPORTED_ATTRS => sup.encode(&mut v),
            fattr::TYPE => v.u32(ftype(a.kind)),
            fattr::FH_EXPIRE_TYPE => v.u32(0), // FH4_PERSISTENT
            fattr::CHANGE => v.u64(a.change),
            fattr::SIZE => v.u64(a.size),
            fattr::LINK_SUPPORT | fattr::SYMLINK_SUPPORT => v.bool(true),
            fattr::NAMED_ATTR | fattr::CASE_INSENSITIVE => v.bool(false),
            fattr::FSID => {
                v.u64(a.fsid.0);
                v.u64(a.fsid.1);
            }
            fattr::UNIQUE_HANDLES => v.bool(true),
            fattr::LEASE_TIME => v.u32(src.lease_seconds),
            fattr::RDATTR_ERROR => v.u32(Nfs4Status::Ok.code()),
            fattr::ACLSUPPORT => v.u32(0),
            fattr::CANSETTIME
            | fattr::CASE_PRESERVING
            | fattr::CHOWN_RESTRICTED
            | fattr::HOMOGENEOUS
            | fattr::NO_TRUNC => v.bool(true),
            fattr::FILEHANDLE => v.opaque(&src.handle.0),
            fattr::FILEID | fattr::MOUNTED_ON_FILEID => v.u64(a.fileid),
            fattr::FILES_AVAIL => v.u64(fs.files_avail),
            fattr::FILES_FREE => v.u64(fs.files_free),
            fattr::FILES_TOTAL => v.u64(fs.files_total),
            fattr::MAXFILESIZE => v.u64(i64::MAX as u64),
            fattr::MAXLINK => v.u32(u32::from(u16::MAX)),
            fattr::MAXNAME => v.u32(MAX_NAME as u32),
            fattr::MAXREAD | fattr::MAXWRITE => v.u64(u64::from(MAX_IO)),
            fattr::MODE => v.u32(a.mode & 0o7777),
            fattr::NUMLINKS => v.u32(a.nlink),
            fattr::OWNER => v.opaque(a.uid.to_string().as_bytes()),
            fattr::OWNER_GROUP => v.opaque(a.gid.to_string().as_bytes()),
            fattr::RAWDEV => {
                v.u32(a.rdev.0);
                v.u32(a.rdev.1);
            }
            fattr::SPACE_AVAIL => v.u64(fs.bytes_avail),
            fattr::SPACE_FREE => v.u64(fs.bytes_free),
            fattr::SPACE_TOTAL => v.u64(fs.bytes_total),
            fattr::SPACE_USED => v.u64(a.used),
            fattr::TIME_ACCESS => put_time(&mut v, a.atime),
            fattr::TIME_DELTA => put_time(
                &mut v,
                Time {
                    seconds: 0,
                    nanos: 1,
                },
            ),
            fattr::TIME_METADATA => put_time(&mut v, a.ctime),
            fattr::TIME_MODIFY => put_time(&mut v, a.mtime),
            fattr::SUPPATTR_EXCLCREAT => Bitmap::from_bits(SETTABLE).encode(&mut v),
            // Write-only attributes (the *_SET times) have no value to read.
            _ => {}
        }
    }
    let mut mask = mask;
    for wo in [fattr::TIME_ACCESS_SET, fattr::TIME_MODIFY_SET] {
        if mask.has(wo) {
            mask.0[(wo / 32) as usize] &= !(1 << (wo % 32));
        }
    }
    mask.encode(w);
    w.opaque(&v.buf);
}

/// A stateid (`stateid4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StateId {
    pub seqid: u32,
    pub other: [u8; 12],
}

impl StateId {
    pub const ANONYMOUS: StateId = StateId {
        seqid: 0,
        other: [0; 12],
    };
    pub const BYPASS: StateId = StateId {
        seqid: u32::MAX,
        other: [0xff; 12],
    };
    /// NFSv4.1's "current stateid" of the COMPOUND.
    pub const CURRENT: StateId = StateId {
        seqid: 1,
        other: [0; 12],
    };

    fn decode(r: &mut Reader) -> XdrResult<Self> {
        Ok(StateId {
            seqid: r.u32()?,
            other: r.fixed::<12>()?,
        })
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.seqid);
        w.fixed(&self.other);
    }
}

/// An open or lock owner (`state_owner4`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub clientid: u64,
    pub owner: Vec<u8>,
}

impl Owner {
    fn decode(r: &mut Reader) -> XdrResult<Self> {
        Ok(Owner {
            clientid: r.u64()?,
            owner: r.opaque(MAX_OPAQUE)?.to_vec(),
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.u64(self.clientid);
        w.opaque(&self.owner);
    }
}

/// How OPEN creates (`createhow4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateHow {
    Unchecked(FAttr),
    Guarded(FAttr),
    Exclusive([u8; 8]),
    /// NFSv4.1's EXCLUSIVE4_1: a verifier and attributes.
    Exclusive41([u8; 8], FAttr),
}

/// Which file OPEN opens (`open_claim4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Null(Vec<u8>),
    Previous(u32),
    DelegateCur(StateId, Vec<u8>),
    DelegatePrev(Vec<u8>),
    Fh,
    DelegCurFh(StateId),
    DelegPrevFh,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenArgs {
    pub seqid: u32,
    pub share_access: u32,
    pub share_deny: u32,
    pub owner: Owner,
    pub create: Option<CreateHow>,
    pub claim: Claim,
}

/// Who takes a lock (`locker4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locker {
    New {
        open_seqid: u32,
        open_stateid: StateId,
        lock_seqid: u32,
        owner: Owner,
    },
    Existing {
        lock_stateid: StateId,
        lock_seqid: u32,
    },
}

/// What CREATE makes (`createtype4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateType {
    Link(Vec<u8>),
    Block(u32, u32),
    Char(u32, u32),
    Socket,
    Fifo,
    Dir,
    /// A type CREATE does not make (answered NFS4ERR_BADTYPE).
    BadType,
}

/// Channel attributes of CREATE_SESSION (`channel_attrs4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelAttrs {
    pub header_pad: u32,
    pub max_request: u32,
    pub max_response: u32,
    pub max_response_cached: u32,
    pub max_ops: u32,
    pub max_requests: u32,
}

impl ChannelAttrs {
    fn decode(r: &mut Reader) -> XdrResult<Self> {
        let a = ChannelAttrs {
            header_pad: r.u32()?,
            max_request: r.u32()?,
            max_response: r.u32()?,
            max_response_cached: r.u32()?,
            max_ops: r.u32()?,
            max_requests: r.u32()?,
        };
        let n = r.count(1, 4)?;
        for _ in 0..n {
            r.u32()?;
        }
        Ok(a)
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(self.header_pad);
        w.u32(self.max_request);
        w.u32(self.max_response);
        w.u32(self.max_response_cached);
        w.u32(self.max_ops);
        w.u32(self.max_requests);
        w.u32(0); // no RDMA
    }
}

/// Longest callback network id (`r_netid`, e.g. "tcp6") accepted.
pub const MAX_NETID: usize = 16;
/// Longest callback universal address (`r_addr`, e.g. an IPv6 address and port) accepted.
pub const MAX_UADDR: usize = 64;
/// `authsys_parms` limits (RFC 5531 §8.2): the machine name and the supplementary groups.
const MAX_MACHINE_NAME: usize = 255;
const MAX_AUTH_GIDS: usize = 16;

/// SETCLIENTID's callback (`cb_client4` and `callback_ident`): where a 4.0 client takes
/// calls of program `program`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Callback40 {
    pub program: u32,
    pub netid: Vec<u8>,
    pub addr: Vec<u8>,
    pub ident: u32,
}

/// The credential to send back-channel calls with: one of the client's
/// `callback_sec_parms4` this server can use (AUTH_NONE or AUTH_SYS, whose body is kept as
/// the client sent it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbSec {
    pub flavor: u32,
    pub body: Vec<u8>,
}

/// CREATE_SESSION's and BACKCHANNEL_CTL's callback program and the first usable security
/// parameters (None: only RPCSEC_GSS was offered, which this server cannot use).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Callback41 {
    pub program: u32,
    pub sec: Option<CbSec>,
}

impl Callback41 {
    fn decode(r: &mut Reader) -> XdrResult<Self> {
        let program = r.u32()?;
        let n = r.count(16, 4)?;
        let mut sec = None;
        for _ in 0..n {
            let flavor = r.u32()?;
            let body = match flavor {
                0 => Vec::new(),
                // `authsys_parms` is a struct in this union, not an opaque (RFC 8881
                // §18.36.1): kept as its XDR, which is the body of the callbacks' AUTH_SYS
                // credential.
                1 => {
                    let from = r.rest();
                    let before = r.remaining();
                    r.u32()?; // stamp
                    r.opaque(MAX_MACHINE_NAME)?;
                    r.u32()?; // uid
                    r.u32()?; // gid
                    for _ in 0..r.count(MAX_AUTH_GIDS, 4)? {
                        r.u32()?;
                    }
                    from[..before - r.remaining()].to_vec()
                }
                6 => {
                    r.u32()?;
                    r.opaque(MAX_OPAQUE)?;
                    r.opaque(MAX_OPAQUE)?;
                    continue;
                }
                _ => return Err(XdrError::BadValue),
            };
            sec.get_or_insert(CbSec { flavor, body });
        }
        Ok(Callback41 { program, sec })
    }
}

/// One decoded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Access(u32),
    Close {
        seqid: u32,
        stateid: StateId,
    },
    Commit {
        offset: u64,
        count: u32,
    },
    Create {
        kind: CreateType,
        name: Vec<u8>,
        attrs: FAttr,
    },
    /// DELEGPURGE of a 4.0 client id.
    DelegPurge(u64),
    DelegReturn(StateId),
    GetAttr(Bitmap),
    GetFh,
    Link(Vec<u8>),
    Lock {
        write: bool,
        reclaim: bool,
        offset: u64,
        length: u64,
        locker: Locker,
    },
    LockT {
        write: bool,
        offset: u64,
        length: u64,
        owner: Owner,
    },
    LockU {
        seqid: u32,
        stateid: StateId,
        offset: u64,
        length: u64,
    },
    Lookup(Vec<u8>),
    LookupP,
    NVerify(FAttr),
    Open(Box<OpenArgs>),
    OpenAttr,
    OpenConfirm {
        stateid: StateId,
        seqid: u32,
    },
    OpenDowngrade {
        stateid: StateId,
        seqid: u32,
        share_access: u32,
        share_deny: u32,
    },
    PutFh(Handle),
    PutPubFh,
    PutRootFh,
    Read {
        stateid: StateId,
        offset: u64,
        count: u32,
    },
    ReadDir {
        cookie: u64,
        verifier: [u8; 8],
        dircount: u32,
        maxcount: u32,
        attrs: Bitmap,
    },
    ReadLink,
    Remove(Vec<u8>),
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Renew(u64),
    RestoreFh,
    SaveFh,
    SecInfo(Vec<u8>),
    SetAttr {
        stateid: StateId,
        attrs: FAttr,
    },
    SetClientId {
        verifier: [u8; 8],
        id: Vec<u8>,
        callback: Callback40,
    },
    SetClientIdConfirm {
        clientid: u64,
        verifier: [u8; 8],
    },
    Verify(FAttr),
    Write {
        stateid: StateId,
        offset: u64,
        stable: u32,
        data: Vec<u8>,
    },
    ReleaseLockOwner(Owner),
    BindConnToSession {
        session: [u8; 16],
        dir: u32,
    },
    ExchangeId {
        verifier: [u8; 8],
        owner: Vec<u8>,
        flags: u32,
        state_protect: u32,
    },
    CreateSession {
        clientid: u64,
        sequence: u32,
        flags: u32,
        fore: ChannelAttrs,
        back: ChannelAttrs,
        callback: Callback41,
    },
    /// BACKCHANNEL_CTL: the session's new callback program and security.
    BackchannelCtl(Callback41),
    DestroySession([u8; 16]),
    FreeStateId(StateId),
    SecInfoNoName(u32),
    Sequence {
        session: [u8; 16],
        sequence: u32,
        slot: u32,
        highest_slot: u32,
        cache_this: bool,
    },
    TestStateId(Vec<StateId>),
    DestroyClientId(u64),
    ReclaimComplete(bool),
    /// 4.2: ALLOCATE (`punch` false) and DEALLOCATE (`punch` true) of a byte range.
    Allocate {
        stateid: StateId,
        offset: u64,
        length: u64,
        punch: bool,
    },
    /// 4.2: intra-server COPY from the saved filehandle to the current one; CLONE (`clone`)
    /// shares the source's blocks instead.
    Copy {
        src: StateId,
        dst: StateId,
        src_offset: u64,
        dst_offset: u64,
        count: u64,
        clone: bool,
    },
    /// 4.2: READ_PLUS.
    ReadPlus {
        stateid: StateId,
        offset: u64,
        count: u32,
    },
    /// 4.2: SEEK to the next data (`data`) or hole.
    Seek {
        stateid: StateId,
        offset: u64,
        data: bool,
    },
    /// A known operation this server does not implement (pNFS, delegations, SSV ...).
    NotSupported(u32),
    /// An operation number that does not exist in the minor version.
    Illegal,
    /// An operation whose arguments did not decode.
    Bad(u32),
}

impl Op {
    /// The operation number to put in the result.
    pub fn number(&self) -> u32 {
        use opnum::*;
        match self {
            Op::Access(_) => ACCESS,
            Op::Close { .. } => CLOSE,
            Op::Commit { .. } => COMMIT,
            Op::Create { .. } => CREATE,
            Op::DelegPurge(_) => DELEGPURGE,
            Op::DelegReturn(_) => DELEGRETURN,
            Op::GetAttr(_) => GETATTR,
            Op::GetFh => GETFH,
            Op::Link(_) => LINK,
            Op::Lock { .. } => LOCK,
            Op::LockT { .. } => LOCKT,
            Op::LockU { .. } => LOCKU,
            Op::Lookup(_) => LOOKUP,
            Op::LookupP => LOOKUPP,
            Op::NVerify(_) => NVERIFY,
            Op::Open(_) => OPEN,
            Op::OpenAttr => OPENATTR,
            Op::OpenConfirm { .. } => OPEN_CONFIRM,
            Op::OpenDowngrade { .. } => OPEN_DOWNGRADE,
            Op::PutFh(_) => PUTFH,
            Op::PutPubFh => PUTPUBFH,
            Op::PutRootFh => PUTROOTFH,
            Op::Read { .. } => READ,
            Op::ReadDir { .. } => READDIR,
            Op::ReadLink => READLINK,
            Op::Remove(_) => REMOVE,
            Op::Rename { .. } => RENAME,
            Op::Renew(_) => RENEW,
            Op::RestoreFh => RESTOREFH,
            Op::SaveFh => SAVEFH,
            Op::SecInfo(_) => SECINFO,
            Op::SetAttr { .. } => SETATTR,
            Op::SetClientId { .. } => SETCLIENTID,
            Op::SetClientIdConfirm { .. } => SETCLIENTID_CONFIRM,
            Op::Verify(_) => VERIFY,
            Op::Write { .. } => WRITE,
            Op::ReleaseLockOwner(_) => RELEASE_LOCKOWNER,
            Op::BindConnToSession { .. } => BIND_CONN_TO_SESSION,
            Op::ExchangeId { .. } => EXCHANGE_ID,
            Op::CreateSession { .. } => CREATE_SESSION,
            Op::BackchannelCtl(_) => BACKCHANNEL_CTL,
            Op::DestroySession(_) => DESTROY_SESSION,
            Op::FreeStateId(_) => FREE_STATEID,
            Op::SecInfoNoName(_) => SECINFO_NO_NAME,
            Op::Sequence { .. } => SEQUENCE,
            Op::TestStateId(_) => TEST_STATEID,
            Op::DestroyClientId(_) => DESTROY_CLIENTID,
            Op::ReclaimComplete(_) => RECLAIM_COMPLETE,
            Op::Allocate { punch: false, .. } => ALLOCATE,
            Op::Allocate { punch: true, .. } => DEALLOCATE,
            Op::Copy { clone: false, .. } => COPY,
            Op::Copy { clone: true, .. } => CLONE,
            Op::ReadPlus { .. } => READ_PLUS,
            Op::Seek { .. } => SEEK,
            Op::NotSupported(n) | Op::Bad(n) => *n,
            Op::Illegal => ILLEGAL,
        }
    }
}

/// A decoded COMPOUND request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compound {
    pub tag: Vec<u8>,
    pub minor: u32,
    pub ops: Vec<Op>,
    /// More operations than the limit were sent: only the first is kept (to answer it with
    /// NFS4ERR_RESOURCE or NFS4ERR_TOO_MANY_OPS).
    pub too_many: bool,
}

/// Why a COMPOUND could not be decoded at all (answered GARBAGE_ARGS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garbage;

fn name(r: &mut Reader) -> XdrResult<Vec<u8>> {
    // Names longer than MAX_NAME decode (up to a sanity bound) so that the operation can
    // answer NFS4ERR_NAMETOOLONG instead of BADXDR.
    Ok(r.opaque(MAX_OPAQUE)?.to_vec())
}

fn decode_create_how(r: &mut Reader) -> XdrResult<CreateHow> {
    Ok(match r.u32()? {
        0 => CreateHow::Unchecked(FAttr::decode(r)?),
        1 => CreateHow::Guarded(FAttr::decode(r)?),
        2 => CreateHow::Exclusive(r.fixed::<8>()?),
        3 => {
            let v = r.fixed::<8>()?;
            CreateHow::Exclusive41(v, FAttr::decode(r)?)
        }
        _ => return Err(XdrError::BadValue),
    })
}

fn decode_open(r: &mut Reader) -> XdrResult<OpenArgs> {
    let seqid = r.u32()?;
    let share_access = r.u32()?;
    let share_deny = r.u32()?;
    let owner = Owner::decode(r)?;
    let create = match r.u32()? {
        0 => None,
        1 => Some(decode_create_how(r)?),
        _ => return Err(XdrError::BadValue),
    };
    let claim = match r.u32()? {
        0 => Claim::Null(name(r)?),
        1 => Claim::Previous(r.u32()?),
        2 => {
            let s = StateId::decode(r)?;
            Claim::DelegateCur(s, name(r)?)
        }
        3 => Claim::DelegatePrev(name(r)?),
        4 => Claim::Fh,
        5 => Claim::DelegCurFh(StateId::decode(r)?),
        6 => Claim::DelegPrevFh,
        _ => return Err(XdrError::BadValue),
    };
    Ok(OpenArgs {
        seqid,
        share_access,
        share_deny,
        owner,
        create,
        claim,
    })
}

fn lock_type(r: &mut Reader) -> XdrResult<bool> {
    match r.u32()? {
        1 | 3 => Ok(false),
        2 | 4 => Ok(true),
        _ => Err(XdrError::BadValue),
    }
}

fn decode_op(r: &mut Reader, num: u32, minor: u32) -> XdrResult<Op> {
    use opnum::*;
    let v41 = minor >= 1;
    Ok(match num {
        ACCESS => Op::Access(r.u32()?),
        CLOSE => Op::Close {
            seqid: r.u32()?,
            stateid: StateId::decode(r)?,
        },
        COMMIT => Op::Commit {
            offset: r.u64()?,
            count: r.u32()?,
        },
        CREATE => {
            let kind = match r.u32()? {
                5 => CreateType::Link(r.opaque(MAX_LINK)?.to_vec()),
                3 => CreateType::Block(r.u32()?, r.u32()?),
                4 => CreateType::Char(r.u32()?, r.u32()?),
                6 => CreateType::Socket,
                7 => CreateType::Fifo,
                2 => CreateType::Dir,
                // Regular files are made by OPEN; named-attribute types do not exist here.
                1 | 8 | 9 => CreateType::BadType,
                _ => return Err(XdrError::BadValue),
            };
            Op::Create {
                kind,
                name: name(r)?,
                attrs: FAttr::decode(r)?,
            }
        }
        DELEGPURGE => Op::DelegPurge(r.u64()?),
        DELEGRETURN => Op::DelegReturn(StateId::decode(r)?),
        GETATTR => Op::GetAttr(Bitmap::decode(r)?),
        GETFH => Op::GetFh,
        LINK => Op::Link(name(r)?),
        LOCK => Op::Lock {
            write: lock_type(r)?,
            reclaim: r.bool()?,
            offset: r.u64()?,
            length: r.u64()?,
            locker: if r.bool()? {
                Locker::New {
                    open_seqid: r.u32()?,
                    open_stateid: StateId::decode(r)?,
                    lock_seqid: r.u32()?,
                    owner: Owner::decode(r)?,
                }
            } else {
                Locker::Existing {
                    lock_stateid: StateId::decode(r)?,
                    lock_seqid: r.u32()?,
                }
            },
        },
        LOCKT => Op::LockT {
            write: lock_type(r)?,
            offset: r.u64()?,
            length: r.u64()?,
            owner: Owner::decode(r)?,
        },
        LOCKU => {
            lock_type(r)?;
            Op::LockU {
                seqid: r.u32()?,
                stateid: StateId::decode(r)?,
                offset: r.u64()?,
                length: r.u64()?,
            }
        }
        LOOKUP => Op::Lookup(name(r)?),
        LOOKUPP => Op::LookupP,
        NVERIFY => Op::NVerify(FAttr::decode(r)?),
        OPEN => Op::Open(Box::new(decode_open(r)?)),
        OPENATTR => {
            r.bool()?;
            Op::OpenAttr
        }
        OPEN_CONFIRM if !v41 => Op::OpenConfirm {
            stateid: StateId::decode(r)?,
            seqid: r.u32()?,
        },
        OPEN_DOWNGRADE => Op::OpenDowngrade {
            stateid: StateId::decode(r)?,
            seqid: r.u32()?,
            share_access: r.u32()?,
            share_deny: r.u32()?,
        },
        PUTFH => Op::PutFh(Handle(r.opaque(MAX_HANDLE)?.to_vec())),
        PUTPUBFH => Op::PutPubFh,
        PUTROOTFH => Op::PutRootFh,
        READ => Op::Read {
            stateid: StateId::decode(r)?,
            offset: r.u64()?,
            count: r.u32()?,
        },
        READDIR => Op::ReadDir {
            cookie: r.u64()?,
            verifier: r.fixed::<8>()?,
            dircount: r.u32()?,
            maxcount: r.u32()?,
            attrs: Bitmap::decode(r)?,
        },
        READLINK => Op::ReadLink,
        REMOVE => Op::Remove(name(r)?),
        RENAME => Op::Rename {
            from: name(r)?,
            to: name(r)?,
        },
        RENEW if !v41 => Op::Renew(r.u64()?),
        RESTOREFH => Op::RestoreFh,
        SAVEFH => Op::SaveFh,
        SECINFO => Op::SecInfo(name(r)?),
        SETATTR => Op::SetAttr {
            stateid: StateId::decode(r)?,
            attrs: FAttr::decode(r)?,
        },
        SETCLIENTID if !v41 => {
            let verifier = r.fixed::<8>()?;
            let id = r.opaque(MAX_OPAQUE)?.to_vec();
            let callback = Callback40 {
                program: r.u32()?,
                netid: r.opaque(MAX_NETID)?.to_vec(),
                addr: r.opaque(MAX_UADDR)?.to_vec(),
                ident: r.u32()?,
            };
            Op::SetClientId {
                verifier,
                id,
                callback,
            }
        }
        SETCLIENTID_CONFIRM if !v41 => Op::SetClientIdConfirm {
            clientid: r.u64()?,
            verifier: r.fixed::<8>()?,
        },
        VERIFY => Op::Verify(FAttr::decode(r)?),
        WRITE => {
            let stateid = StateId::decode(r)?;
            let offset = r.u64()?;
            let stable = r.u32()?;
            if stable > 2 {
                return Err(XdrError::BadValue);
            }
            Op::Write {
                stateid,
                offset,
                stable,
                data: r.opaque(MAX_IO as usize)?.to_vec(),
            }
        }
        RELEASE_LOCKOWNER if !v41 => Op::ReleaseLockOwner(Owner::decode(r)?),
        BIND_CONN_TO_SESSION if v41 => {
            let session = r.fixed::<16>()?;
            let dir = r.u32()?;
            r.bool()?;
            Op::BindConnToSession { session, dir }
        }
        EXCHANGE_ID if v41 => {
            let verifier = r.fixed::<8>()?;
            let owner = r.opaque(MAX_OPAQUE)?.to_vec();
            let flags = r.u32()?;
            let state_protect = r.u32()?;
            match state_protect {
                0 => {}
                1 => {
                    Bitmap::decode(r)?;
                    Bitmap::decode(r)?;
                }
                // SP4_SSV's parameters are not parsed: it is refused whatever they are.
                2 => {
                    return Ok(Op::ExchangeId {
                        verifier,
                        owner,
                        flags,
                        state_protect,
                    })
                }
                _ => return Err(XdrError::BadValue),
            }
            let n = r.count(1, 4)?;
            for _ in 0..n {
                r.opaque(MAX_OPAQUE)?;
                r.opaque(MAX_OPAQUE)?;
                time(r).map_err(|_| XdrError::BadValue)?;
            }
            Op::ExchangeId {
                verifier,
                owner,
                flags,
                state_protect,
            }
        }
        CREATE_SESSION if v41 => {
            let clientid = r.u64()?;
            let sequence = r.u32()?;
            let flags = r.u32()?;
            let fore = ChannelAttrs::decode(r)?;
            let back = ChannelAttrs::decode(r)?;
            let callback = Callback41::decode(r)?;
            Op::CreateSession {
                clientid,
                sequence,
                flags,
                fore,
                back,
                callback,
            }
        }
        BACKCHANNEL_CTL if v41 => Op::BackchannelCtl(Callback41::decode(r)?),
        DESTROY_SESSION if v41 => Op::DestroySession(r.fixed::<16>()?),
        FREE_STATEID if v41 => Op::FreeStateId(StateId::decode(r)?),
        SECINFO_NO_NAME if v41 => {
            let style = r.u32()?;
            if style > 1 {
                return Err(XdrError::BadValue);
            }
            Op::SecInfoNoName(style)
        }
        SEQUENCE if v41 => Op::Sequence {
            session: r.fixed::<16>()?,
            sequence: r.u32()?,
            slot: r.u32()?,
            highest_slot: r.u32()?,
            cache_this: r.bool()?,
        },
        TEST_STATEID if v41 => {
            let n = r.count(1024, 16)?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(StateId::decode(r)?);
            }
            Op::TestStateId(ids)
        }
        DESTROY_CLIENTID if v41 => Op::DestroyClientId(r.u64()?),
        RECLAIM_COMPLETE if v41 => Op::ReclaimComplete(r.bool()?),
        // Known 4.1 operations without an implementation: their arguments are not decoded,
        // so nothing after them in the COMPOUND can be either; they end it with NOTSUPP.
        GET_DIR_DELEGATION | GETDEVICEINFO | GETDEVICELIST | LAYOUTCOMMIT | LAYOUTGET
        | LAYOUTRETURN | SET_SSV | WANT_DELEGATION
            if v41 =>
        {
            Op::NotSupported(num)
        }
        ALLOCATE | DEALLOCATE if minor >= 2 => Op::Allocate {
            stateid: StateId::decode(r)?,
            offset: r.u64()?,
            length: r.u64()?,
            punch: num == DEALLOCATE,
        },
        COPY if minor >= 2 => {
            let (src, dst) = (StateId::decode(r)?, StateId::decode(r)?);
            let (src_offset, dst_offset, count) = (r.u64()?, r.u64()?, r.u64()?);
            let (_consecutive, _synchronous) = (r.bool()?, r.bool()?);
            // Source servers (netloc4): only an intra-server copy (none) is supported.
            let n = r.count(16, 8)?;
            for _ in 0..n {
                match r.u32()? {
                    1 | 2 => {
                        r.opaque(MAX_NAME)?;
                    }
                    3 => {
                        r.opaque(MAX_NAME)?;
                        r.opaque(MAX_NAME)?;
                    }
                    _ => return Err(XdrError::BadValue),
                }
            }
            if n > 0 {
                return Ok(Op::NotSupported(num));
            }
            Op::Copy {
                src,
                dst,
                src_offset,
                dst_offset,
                count,
                clone: false,
            }
        }
        CLONE if minor >= 2 => Op::Copy {
            src: StateId::decode(r)?,
            dst: StateId::decode(r)?,
            src_offset: r.u64()?,
            dst_offset: r.u64()?,
            count: r.u64()?,
            clone: true,
        },
        READ_PLUS if minor >= 2 => Op::ReadPlus {
            stateid: StateId::decode(r)?,
            offset: r.u64()?,
            count: r.u32()?,
        },
        SEEK if minor >= 2 => Op::Seek {
            stateid: StateId::decode(r)?,
            offset: r.u64()?,
            data: match r.u32()? {
                0 => true,
                1 => false,
                _ => return Err(XdrError::BadValue),
            },
        },
        // 4.2 operations without an implementation (asynchronous and inter-server copies,
        // I/O hints, pNFS statistics, WRITE_SAME, extended attributes): NOTSUPP, as above.
        COPY_NOTIFY | IO_ADVISE | LAYOUTERROR | LAYOUTSTATS | OFFLOAD_CANCEL | OFFLOAD_STATUS
        | WRITE_SAME | GETXATTR | SETXATTR | LISTXATTRS | REMOVEXATTR
            if minor >= 2 =>
        {
            Op::NotSupported(num)
        }
        _ => Op::Illegal,
    })
}

/// The highest NFSv4 minor version served (4.2, RFC 7862).
pub const MAX_MINOR: u32 = 2;

/// Decodes COMPOUND arguments, keeping at most `max_ops` operations.
pub fn decode_compound(args: &[u8], max_ops: usize) -> Result<Compound, Garbage> {
    let mut r = Reader::new(args);
    let tag = r.opaque(MAX_TAG).map_err(|_| Garbage)?.to_vec();
    let minor = r.u32().map_err(|_| Garbage)?;
    let n = r.u32().map_err(|_| Garbage)? as usize;
    let mut c = Compound {
        tag,
        minor,
        ops: Vec::new(),
        too_many: n > max_ops,
    };
    if minor > MAX_MINOR {
        return Ok(c);
    }
    for _ in 0..n.min(max_ops.max(1)) {
        let Ok(num) = r.u32() else {
            c.ops.push(Op::Bad(opnum::ILLEGAL));
            break;
        };
        match decode_op(&mut r, num, minor) {
            Ok(op @ (Op::Illegal | Op::NotSupported(_))) => {
                c.ops.push(op);
                break;
            }
            Ok(op) => c.ops.push(op),
            Err(_) => {
                c.ops.push(Op::Bad(num));
                break;
            }
        }
        if c.too_many {
            break;
        }
    }
    Ok(c)
}

/// `change_info4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeInfo {
    pub atomic: bool,
    pub before: u64,
    pub after: u64,
}

impl ChangeInfo {
    fn encode(&self, w: &mut Writer) {
        w.bool(self.atomic);
        w.u64(self.before);
        w.u64(self.after);
    }
}

/// A conflicting lock (`LOCK4denied`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub offset: u64,
    pub length: u64,
    pub write: bool,
    pub owner: Owner,
}

impl Denied {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.offset);
        w.u64(self.length);
        w.u32(if self.write { 2 } else { 1 });
        self.owner.encode(w);
    }
}

/// The successful result body of one operation (the status is encoded separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Res {
    Empty,
    Access {
        supported: u32,
        access: u32,
    },
    StateId(StateId),
    Verifier([u8; 8]),
    Create {
        cinfo: ChangeInfo,
        attrset: Bitmap,
    },
    /// An encoded `fattr4`.
    Attrs(Vec<u8>),
    Fh(Handle),
    Change(ChangeInfo),
    Open {
        stateid: StateId,
        cinfo: ChangeInfo,
        rflags: u32,
        attrset: Bitmap,
        /// The stateid of a read delegation granted with the open.
        deleg: Option<StateId>,
    },
    Read {
        eof: bool,
        data: Vec<u8>,
    },
    /// An encoded READDIR4resok.
    ReadDir(Vec<u8>),
    Link(Vec<u8>),
    Rename {
        source: ChangeInfo,
        target: ChangeInfo,
    },
    SecInfo,
    SetClientId {
        clientid: u64,
        verifier: [u8; 8],
    },
    Write {
        count: u32,
        committed: u32,
        verifier: [u8; 8],
    },
    ExchangeId {
        clientid: u64,
        sequence: u32,
        flags: u32,
        server_owner: Vec<u8>,
        scope: Vec<u8>,
    },
    CreateSession {
        session: [u8; 16],
        sequence: u32,
        flags: u32,
        fore: ChannelAttrs,
        back: ChannelAttrs,
    },
    BindConn {
        session: [u8; 16],
        dir: u32,
    },
    Sequence {
        session: [u8; 16],
        sequence: u32,
        slot: u32,
        highest_slot: u32,
        target_highest_slot: u32,
        flags: u32,
    },
    TestStateId(Vec<Nfs4Status>),
    /// SEEK4resok.
    Seek {
        eof: bool,
        offset: u64,
    },
    /// READ_PLUS4resok with the data as one `NFS4_CONTENT_DATA` segment at `offset`.
    ReadPlus {
        eof: bool,
        offset: u64,
        data: Vec<u8>,
    },
    /// COPY4resok of a synchronous copy (no callback stateid).
    Copy {
        count: u64,
        committed: u32,
        verifier: [u8; 8],
    },
}

/// What follows a failed status in a result (most failures carry nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrBody {
    None,
    /// SETATTR always returns the attributes it set.
    AttrSet(Bitmap),
    /// LOCK and LOCKT return the conflicting lock.
    Denied(Denied),
}

/// A failed operation: its status and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub status: Nfs4Status,
    pub body: ErrBody,
}

impl From<Nfs4Status> for OpError {
    fn from(status: Nfs4Status) -> Self {
        OpError {
            status,
            body: ErrBody::None,
        }
    }
}

impl From<VfsError> for OpError {
    fn from(e: VfsError) -> Self {
        Nfs4Status::from(e).into()
    }
}

/// What one operation produced.
pub type OpResult = Result<Res, OpError>;

/// Encodes one `nfs_resop4`.
pub fn encode_result(w: &mut Writer, op: u32, result: &OpResult) {
    w.u32(op);
    match result {
        Err(OpError { status, body }) => {
            // A failure that says NFS4_OK would be read as a success with a missing body.
            debug_assert_ne!(*status, Nfs4Status::Ok, "op {op} failed with NFS4_OK");
            w.u32(status.code());
            match body {
                // SETATTR4res carries its bitmap whatever the status (RFC 7530 §16.32.2,
                // RFC 8881 §18.30.2), also when the op failed before it ran (no filehandle,
                // undecodable arguments): nothing was set.
                ErrBody::None if op == opnum::SETATTR => Bitmap::default().encode(w),
                ErrBody::None => {}
                ErrBody::AttrSet(b) => b.encode(w),
                ErrBody::Denied(d) => d.encode(w),
            }
        }
        Ok(res) => {
            w.u32(Nfs4Status::Ok.code());
            encode_res(w, res);
        }
    }
}

fn encode_res(w: &mut Writer, res: &Res) {
    match res {
        Res::Empty => {}
        Res::Access { supported, access } => {
            w.u32(*supported);
            w.u32(*access);
        }
        Res::StateId(s) => s.encode(w),
        Res::Verifier(v) => w.fixed(v),
        Res::Create { cinfo, attrset } => {
            cinfo.encode(w);
            attrset.encode(w);
        }
        Res::Attrs(a) => w.fixed(a),
        Res::Fh(h) => w.opaque(&h.0),
        Res::Change(c) => c.encode(w),
        Res::Open {
            stateid,
            cinfo,
            rflags,
            attrset,
            deleg,
        } => {
            stateid.encode(w);
            cinfo.encode(w);
            w.u32(*rflags);
            attrset.encode(w);
            match deleg {
                None => w.u32(0), // OPEN_DELEGATE_NONE
                Some(d) => {
                    w.u32(1); // OPEN_DELEGATE_READ
                    d.encode(w);
                    w.bool(false); // recall: not already being recalled
                                   // The permissions nfsace4: an empty ALLOW entry, so the client asks
                                   // ACCESS as it would without the delegation (RFC 8881 §10.4.1 allows
                                   // a server to grant nothing here).
                    w.u32(0); // ACE4_ACCESS_ALLOWED_ACE_TYPE
                    w.u32(0); // flags
                    w.u32(0); // access mask
                    w.opaque(b""); // who
                }
            }
        }
        Res::Read { eof, data } => {
            w.bool(*eof);
            w.opaque(data);
        }
        Res::Seek { eof, offset } => {
            w.bool(*eof);
            w.u64(*offset);
        }
        Res::ReadPlus { eof, offset, data } => {
            w.bool(*eof);
            if data.is_empty() {
                w.u32(0);
            } else {
                w.u32(1);
                w.u32(0); // NFS4_CONTENT_DATA
                w.u64(*offset);
                w.opaque(data);
            }
        }
        Res::Copy {
            count,
            committed,
            verifier,
        } => {
            w.u32(0); // wr_callback_id: none, the copy is done
            w.u64(*count);
            w.u32(*committed);
            w.fixed(verifier);
            w.bool(true); // cr_consecutive
            w.bool(true); // cr_synchronous
        }
        Res::ReadDir(d) => w.fixed(d),
        Res::Link(l) => w.opaque(l),
        Res::Rename { source, target } => {
            source.encode(w);
            target.encode(w);
        }
        Res::SecInfo => {
            w.u32(1);
            w.u32(super::rpc::AUTH_SYS);
        }
        Res::SetClientId { clientid, verifier } => {
            w.u64(*clientid);
            w.fixed(verifier);
        }
        Res::Write {
            count,
            committed,
            verifier,
        } => {
            w.u32(*count);
            w.u32(*committed);
            w.fixed(verifier);
        }
        Res::ExchangeId {
            clientid,
            sequence,
            flags,
            server_owner,
            scope,
        } => {
            w.u64(*clientid);
            w.u32(*sequence);
            w.u32(*flags);
            w.u32(0); // SP4_NONE
            w.u64(0); // so_minor_id
            w.opaque(server_owner);
            w.opaque(scope);
            w.u32(0); // no implementation id
        }
        Res::CreateSession {
            session,
            sequence,
            flags,
            fore,
            back,
        } => {
            w.fixed(session);
            w.u32(*sequence);
            w.u32(*flags);
            fore.encode(w);
            back.encode(w);
        }
        Res::BindConn { session, dir } => {
            w.fixed(session);
            w.u32(*dir);
            w.bool(false);
        }
        Res::Sequence {
            session,
            sequence,
            slot,
            highest_slot,
            target_highest_slot,
            flags,
        } => {
            w.fixed(session);
            w.u32(*sequence);
            w.u32(*slot);
            w.u32(*highest_slot);
            w.u32(*target_highest_slot);
            w.u32(*flags);
        }
        Res::TestStateId(codes) => {
            w.u32(codes.len() as u32);
            for c in codes {
                w.u32(c.code());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_bits_and_encoding() {
        let b = Bitmap::from_bits(&[0, 33, 75]);
        assert!(b.has(33) && b.has(75) && !b.has(1));
        assert_eq!(b.bits().collect::<Vec<_>>(), vec![0, 33, 75]);
        let mut w = Writer::new();
        Bitmap(vec![1, 0, 0]).encode(&mut w);
        assert_eq!(w.buf, vec![0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn settable_attrs_decode_and_refuse() {
        let mut v = Writer::new();
        v.u32(0o644);
        v.opaque(b"1000");
        let f = FAttr {
            mask: Bitmap::from_bits(&[fattr::MODE, fattr::OWNER]),
            vals: v.buf,
        };
        let s = f.settable().unwrap();
        assert_eq!((s.mode, s.uid), (Some(0o644), Some(1000)));
        let mut v = Writer::new();
        v.opaque(b"root@example");
        let f = FAttr {
            mask: Bitmap::from_bits(&[fattr::OWNER]),
            vals: v.buf,
        };
        assert_eq!(f.settable(), Err(Nfs4Status::BadOwner));
        let f = FAttr {
            mask: Bitmap::from_bits(&[fattr::TYPE]),
            vals: vec![0, 0, 0, 1],
        };
        assert_eq!(f.settable(), Err(Nfs4Status::Inval));
        let f = FAttr {
            mask: Bitmap::from_bits(&[fattr::SIZE]),
            vals: vec![0, 0, 0, 1],
        };
        assert_eq!(f.settable(), Err(Nfs4Status::BadXdr));
    }

    #[test]
    fn a_failed_setattr_always_carries_its_bitmap() {
        for status in [Nfs4Status::NoFileHandle, Nfs4Status::BadXdr] {
            let mut w = Writer::new();
            encode_result(&mut w, opnum::SETATTR, &Err(status.into()));
            let mut want = Writer::new();
            want.u32(opnum::SETATTR);
            want.u32(status.code());
            want.u32(0);
            assert_eq!(w.buf, want.buf, "{status:?}");
        }
        let mut w = Writer::new();
        encode_result(
            &mut w,
            opnum::GETATTR,
            &Err(Nfs4Status::NoFileHandle.into()),
        );
        assert_eq!(w.buf.len(), 8, "other failures carry nothing");
    }

    #[test]
    fn settable_times_and_owners_are_checked() {
        let one = |bit: u32, vals: Writer| FAttr {
            mask: Bitmap::from_bits(&[bit]),
            vals: vals.buf,
        };
        let time = |how: u32, nanos: u32| {
            let mut v = Writer::new();
            v.u32(how);
            v.i64(5);
            v.u32(nanos);
            v
        };
        for (nanos, want) in [
            (999_999_999, Ok(())),
            (1_000_000_000, Err(Nfs4Status::Inval)),
            (u32::MAX, Err(Nfs4Status::Inval)),
        ] {
            let got = one(fattr::TIME_MODIFY_SET, time(1, nanos)).settable();
            assert_eq!(got.map(|_| ()), want, "nseconds {nanos}");
        }
        let s = one(fattr::TIME_ACCESS_SET, time(1, 7)).settable().unwrap();
        let t = Time {
            seconds: 5,
            nanos: 7,
        };
        assert_eq!(s.atime, Some(SetTime::Client(t)));
        // An unknown time_how4 and a time cut short do not decode.
        let bad_how = one(fattr::TIME_MODIFY_SET, time(2, 0)).settable();
        assert_eq!(bad_how, Err(Nfs4Status::BadXdr));
        let mut short = Writer::new();
        short.u32(1);
        short.u32(0);
        let cut = one(fattr::TIME_MODIFY_SET, short).settable();
        assert_eq!(cut, Err(Nfs4Status::BadXdr));
        for bit in [fattr::OWNER, fattr::OWNER_GROUP] {
            let mut v = Writer::new();
            v.opaque(b"");
            assert_eq!(one(bit, v).settable(), Err(Nfs4Status::Inval), "bit {bit}");
        }
        for (m, want) in [
            (0o7777, Ok(Some(0o7777))),
            (0o10644, Err(Nfs4Status::Inval)),
            (0o100644, Err(Nfs4Status::Inval)),
        ] {
            let mut v = Writer::new();
            v.u32(m);
            let got = one(fattr::MODE, v).settable().map(|s| s.mode);
            assert_eq!(got, want, "mode {m:o}");
        }
    }

    #[test]
    fn compound_limits_and_bad_ops() {
        let mut w = Writer::new();
        w.opaque(b"t");
        w.u32(0);
        w.u32(3);
        w.u32(opnum::PUTROOTFH);
        w.u32(9999);
        w.u32(opnum::GETFH);
        let c = decode_compound(&w.buf, 16).unwrap();
        assert_eq!(c.ops, vec![Op::PutRootFh, Op::Illegal]);
        let c = decode_compound(&w.buf, 1).unwrap();
        assert!(c.too_many);
        assert_eq!(c.ops, vec![Op::PutRootFh]);
        // A LOOKUP whose name runs past the end.
        let mut w = Writer::new();
        w.opaque(b"");
        w.u32(1);
        w.u32(1);
        w.u32(opnum::LOOKUP);
        w.u32(100);
        let c = decode_compound(&w.buf, 16).unwrap();
        assert_eq!(c.ops, vec![Op::Bad(opnum::LOOKUP)]);
        // 4.0 has no SEQUENCE.
        let mut w = Writer::new();
        w.opaque(b"");
        w.u32(0);
        w.u32(1);
        w.u32(opnum::SEQUENCE);
        assert_eq!(decode_compound(&w.buf, 16).unwrap().ops, vec![Op::Illegal]);
        assert_eq!(decode_compound(&[0, 0], 16), Err(Garbage));
    }
}
