//! A small NFSv4 COMPOUND client for tests that talk to `drover serve` over TCP: ONC RPC
//! record marking, AUTH_SYS with any uid/gid/groups, a chosen source address, and the
//! operations the tests need encoded by hand (RFC 7530/8881 numbering). Results are decoded
//! as far as the tests look at them: each operation's status, and the bodies of GETFH and
//! READ.
//!
//! Callbacks: a 4.0 callback listener ([`CbListener`]) answers CB_NULL and CB_RECALL on its
//! own port and reports each recall; a 4.1 connection with a back channel keeps the calls
//! the server sends on it ([`Client::next_call`]) and answers them with
//! [`Client::reply_recall`].
//!
//! Not a general client: no sessions of its own (4.1 tests encode SEQUENCE themselves), no
//! retransmission. Uses socket2 (a dependency of drover anyway) to bind the source address,
//! which std's TcpStream cannot.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

pub const OP_ACCESS: u32 = 3;
pub const OP_CLOSE: u32 = 4;
pub const OP_CREATE: u32 = 6;
pub const OP_GETATTR: u32 = 9;
pub const OP_GETFH: u32 = 10;
pub const OP_LINK: u32 = 11;
pub const OP_LOCK: u32 = 12;
pub const OP_LOCKT: u32 = 13;
pub const OP_LOCKU: u32 = 14;
pub const OP_LOOKUPP: u32 = 16;
pub const OP_OPEN_CONFIRM: u32 = 20;
pub const OP_OPEN_DOWNGRADE: u32 = 21;
pub const OP_READDIR: u32 = 26;
pub const OP_REMOVE: u32 = 28;
pub const OP_RENAME: u32 = 29;
pub const OP_RENEW: u32 = 30;
pub const OP_RESTOREFH: u32 = 31;
pub const OP_SECINFO: u32 = 33;
pub const OP_SETATTR: u32 = 34;
pub const OP_DELEGRETURN: u32 = 8;
pub const OP_DESTROY_SESSION: u32 = 44;
pub const OP_FREE_STATEID: u32 = 45;
pub const OP_TEST_STATEID: u32 = 55;
pub const OP_SECINFO_NO_NAME: u32 = 52;
pub const OP_DESTROY_CLIENTID: u32 = 57;
pub const OP_RECLAIM_COMPLETE: u32 = 58;
pub const OP_ILLEGAL: u32 = 10044;
pub const OP_OPEN: u32 = 18;
pub const OP_LOOKUP: u32 = 15;
pub const OP_PUTFH: u32 = 22;
pub const OP_PUTROOTFH: u32 = 24;
pub const OP_READ: u32 = 25;
pub const OP_SAVEFH: u32 = 32;
pub const OP_WRITE: u32 = 38;
pub const OP_SETCLIENTID: u32 = 35;
pub const OP_SETCLIENTID_CONFIRM: u32 = 36;
pub const OP_EXCHANGE_ID: u32 = 42;
pub const OP_CREATE_SESSION: u32 = 43;
pub const OP_SEQUENCE: u32 = 53;
pub const OP_ALLOCATE: u32 = 59;
pub const OP_COPY: u32 = 60;
pub const OP_DEALLOCATE: u32 = 62;
pub const OP_OFFLOAD_STATUS: u32 = 67;
pub const OP_READ_PLUS: u32 = 68;
pub const OP_SEEK: u32 = 69;
pub const OP_CLONE: u32 = 71;

pub const NFS4_OK: u32 = 0;
pub const NFS4ERR_ACCESS: u32 = 13;
pub const NFS4ERR_INVAL: u32 = 22;
pub const NFS4ERR_NOENT: u32 = 2;
pub const NFS4ERR_EXIST: u32 = 17;
pub const NFS4ERR_NOTDIR: u32 = 20;
pub const NFS4ERR_ISDIR: u32 = 21;
pub const NFS4ERR_PERM: u32 = 1;
pub const NFS4ERR_BAD_COOKIE: u32 = 10003;
pub const NFS4ERR_BADTYPE: u32 = 10007;
pub const NFS4ERR_TOOSMALL: u32 = 10005;
pub const NFS4ERR_NOT_SAME: u32 = 10027;
pub const NFS4ERR_SYMLINK: u32 = 10029;
pub const NFS4ERR_ATTRNOTSUPP: u32 = 10032;
pub const NFS4ERR_BADOWNER: u32 = 10039;
pub const NFS4ERR_OP_ILLEGAL: u32 = 10044;
pub const NFS4ERR_WRONG_TYPE: u32 = 10083;
pub const NFS4ERR_NXIO: u32 = 6;
pub const NFS4ERR_NOTSUPP: u32 = 10004;
pub const NFS4ERR_MINOR_VERS_MISMATCH: u32 = 10021;
pub const NFS4ERR_STALE: u32 = 70;
pub const NFS4ERR_BADHANDLE: u32 = 10001;
pub const NFS4ERR_LOCKED: u32 = 10012;
pub const NFS4ERR_SHARE_DENIED: u32 = 10015;
pub const NFS4ERR_RESOURCE: u32 = 10018;
pub const NFS4ERR_NOFILEHANDLE: u32 = 10020;
pub const NFS4ERR_DENIED: u32 = 10010;
pub const NFS4ERR_EXPIRED: u32 = 10011;
pub const NFS4ERR_CLID_INUSE: u32 = 10017;
pub const NFS4ERR_STALE_CLIENTID: u32 = 10022;
pub const NFS4ERR_STALE_STATEID: u32 = 10023;
pub const NFS4ERR_OLD_STATEID: u32 = 10024;
pub const NFS4ERR_BAD_STATEID: u32 = 10025;
pub const NFS4ERR_BAD_SEQID: u32 = 10026;
pub const NFS4ERR_LOCKS_HELD: u32 = 10037;
pub const NFS4ERR_SEQ_MISORDERED: u32 = 10063;
pub const NFS4ERR_COMPLETE_ALREADY: u32 = 10054;
pub const NFS4ERR_CLIENTID_BUSY: u32 = 10074;
pub const NFS4ERR_NOT_ONLY_OP: u32 = 10081;
pub const NFS4ERR_BADSESSION: u32 = 10052;
pub const NFS4ERR_DELAY: u32 = 10008;
pub const NFS4ERR_DELEG_REVOKED: u32 = 10087;
/// SEQUENCE's status flag RECALLABLE_STATE_REVOKED.
pub const SEQ4_STATUS_RECALLABLE_STATE_REVOKED: u32 = 0x40;
/// The callback program the tests' clients name.
pub const CB_PROGRAM: u32 = 0x4000_0000;

/// The anonymous stateid (all zeros) and the READ bypass stateid (all ones).
pub const ANONYMOUS: [u8; 16] = [0; 16];
pub const BYPASS: [u8; 16] = [0xff; 16];

/// `drover nfs export add NAME --path DIR --clients NETS --rw` on `drover`'s store, with
/// `dir` made first and opened to everyone (root is squashed, so the tests' files are
/// written as nobody or as their own user).
pub fn export_open_dir(drover: &super::Drover, name: &str, dir: &std::path::Path, nets: &str) {
    std::fs::create_dir_all(dir).expect("export dir");
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod the export");
    let path = dir.to_str().expect("utf-8 path");
    let args = [
        "nfs",
        "export",
        "add",
        name,
        "--path",
        path,
        "--clients",
        nets,
        "--rw",
    ];
    drover.cli_ok(&args);
}

/// XDR encoding of one COMPOUND's operations.
#[derive(Default)]
pub struct Ops {
    buf: Vec<u8>,
    n: u32,
}

impl Ops {
    pub fn new() -> Ops {
        Ops::default()
    }
    /// Appends an XDR unsigned int (an argument of the last operation).
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn fixed(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn opaque(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        self.buf.resize(self.buf.len() + (4 - b.len() % 4) % 4, 0);
    }
    /// The encoded operations (for an opaque made of them, or an `fattr4`'s values).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// Starts operation `num`; its arguments follow with the encoders above.
    pub fn op(mut self, num: u32) -> Ops {
        self.u32(num);
        self.n += 1;
        self
    }
    /// An operation whose arguments `args` encodes.
    pub fn with(self, num: u32, args: impl FnOnce(&mut Ops)) -> Ops {
        let mut s = self.op(num);
        args(&mut s);
        s
    }
    pub fn savefh(self) -> Ops {
        self.op(OP_SAVEFH)
    }
    /// SEQUENCE on slot 0 of `session`.
    pub fn sequence(self, session: &[u8; 16], seq: u32) -> Ops {
        self.with(OP_SEQUENCE, |s| {
            s.fixed(session);
            s.u32(seq);
            s.u32(0);
            s.u32(0);
            s.u32(0);
        })
    }
    pub fn putrootfh(self) -> Ops {
        self.op(OP_PUTROOTFH)
    }
    pub fn putfh(self, fh: &[u8]) -> Ops {
        let mut s = self.op(OP_PUTFH);
        s.opaque(fh);
        s
    }
    pub fn lookup(self, name: &str) -> Ops {
        let mut s = self.op(OP_LOOKUP);
        s.opaque(name.as_bytes());
        s
    }
    pub fn getfh(self) -> Ops {
        self.op(OP_GETFH)
    }
    pub fn lookupp(self) -> Ops {
        self.op(OP_LOOKUPP)
    }
    /// GETATTR of the attributes numbered `attrs` (any number, known to the server or not).
    pub fn getattr(self, attrs: &[u32]) -> Ops {
        let mut s = self.op(OP_GETATTR);
        s.bitmap(attrs);
        s
    }
    /// A `bitmap4` with the bits `attrs` set.
    pub fn bitmap(&mut self, attrs: &[u32]) {
        let words = attrs.iter().map(|a| a / 32 + 1).max().unwrap_or(0);
        let mut w = vec![0u32; words as usize];
        for a in attrs {
            w[(a / 32) as usize] |= 1 << (a % 32);
        }
        self.u32(words);
        for v in w {
            self.u32(v);
        }
    }
    /// READ with the anonymous stateid.
    pub fn read(self, offset: u64, count: u32) -> Ops {
        self.read_as(&ANONYMOUS, offset, count)
    }
    /// READ with `stateid`.
    pub fn read_as(self, stateid: &[u8; 16], offset: u64, count: u32) -> Ops {
        let mut s = self.op(OP_READ);
        s.fixed(stateid);
        s.u64(offset);
        s.u32(count);
        s
    }
    /// WRITE (FILE_SYNC) of `data` at `offset` with `stateid`.
    pub fn write_as(self, stateid: &[u8; 16], offset: u64, data: &[u8]) -> Ops {
        let mut s = self.op(OP_WRITE);
        s.fixed(stateid);
        s.u64(offset);
        s.u32(2);
        s.opaque(data);
        s
    }
    /// OPEN (4.1 style: the session names the client) of `name` in the current directory by
    /// open-owner `owner`; `truncate` creates UNCHECKED with size 0 (an existing file is
    /// truncated).
    pub fn open(self, owner: &str, access: u32, deny: u32, name: &str, truncate: bool) -> Ops {
        self.with(OP_OPEN, |s| {
            s.u32(0);
            s.u32(access);
            s.u32(deny);
            s.u64(0);
            s.opaque(owner.as_bytes());
            if truncate {
                s.u32(1); // OPEN4_CREATE
                s.u32(0); // UNCHECKED4
                s.u32(1); // bitmap: size (attribute 4)
                s.u32(1 << 4);
                s.opaque(&0u64.to_be_bytes());
            } else {
                s.u32(0);
            }
            s.u32(0); // CLAIM_NULL
            s.opaque(name.as_bytes());
        })
    }
    /// OPEN by 4.0 open-owner `owner` of client `clientid` with `seqid`, of `name` in the
    /// current directory; `create` creates UNCHECKED with no attributes.
    #[allow(clippy::too_many_arguments)]
    pub fn open40(
        self,
        clientid: u64,
        owner: &str,
        seqid: u32,
        access: u32,
        deny: u32,
        name: &str,
        create: bool,
    ) -> Ops {
        self.with(OP_OPEN, |s| {
            s.u32(seqid);
            s.u32(access);
            s.u32(deny);
            s.u64(clientid);
            s.opaque(owner.as_bytes());
            s.u32(u32::from(create));
            if create {
                s.u32(0); // UNCHECKED4, no attributes
                s.u32(0);
                s.u32(0);
            }
            s.u32(0); // CLAIM_NULL
            s.opaque(name.as_bytes());
        })
    }
    pub fn open_confirm(self, stateid: &[u8; 16], seqid: u32) -> Ops {
        self.with(OP_OPEN_CONFIRM, |s| {
            s.fixed(stateid);
            s.u32(seqid);
        })
    }
    pub fn open_downgrade(self, stateid: &[u8; 16], seqid: u32, access: u32, deny: u32) -> Ops {
        self.with(OP_OPEN_DOWNGRADE, |s| {
            s.fixed(stateid);
            s.u32(seqid);
            s.u32(access);
            s.u32(deny);
        })
    }
    pub fn close(self, seqid: u32, stateid: &[u8; 16]) -> Ops {
        self.with(OP_CLOSE, |s| {
            s.u32(seqid);
            s.fixed(stateid);
        })
    }
    /// LOCK of `[offset, offset + length)` by a new lock-owner `owner`, from an open.
    #[allow(clippy::too_many_arguments)]
    pub fn lock_new(
        self,
        write: bool,
        offset: u64,
        length: u64,
        open_seqid: u32,
        open_stateid: &[u8; 16],
        lock_seqid: u32,
        clientid: u64,
        owner: &str,
    ) -> Ops {
        self.with(OP_LOCK, |s| {
            s.u32(if write { 2 } else { 1 });
            s.u32(0); // not a reclaim
            s.u64(offset);
            s.u64(length);
            s.u32(1); // new lock owner
            s.u32(open_seqid);
            s.fixed(open_stateid);
            s.u32(lock_seqid);
            s.u64(clientid);
            s.opaque(owner.as_bytes());
        })
    }
    /// LOCK by the lock-owner of `stateid`.
    pub fn lock(
        self,
        write: bool,
        offset: u64,
        length: u64,
        stateid: &[u8; 16],
        seqid: u32,
    ) -> Ops {
        self.with(OP_LOCK, |s| {
            s.u32(if write { 2 } else { 1 });
            s.u32(0);
            s.u64(offset);
            s.u64(length);
            s.u32(0); // an existing lock owner
            s.fixed(stateid);
            s.u32(seqid);
        })
    }
    pub fn locku(self, seqid: u32, stateid: &[u8; 16], offset: u64, length: u64) -> Ops {
        self.with(OP_LOCKU, |s| {
            s.u32(2);
            s.u32(seqid);
            s.fixed(stateid);
            s.u64(offset);
            s.u64(length);
        })
    }
    pub fn lockt(self, write: bool, offset: u64, length: u64, clientid: u64, owner: &str) -> Ops {
        self.with(OP_LOCKT, |s| {
            s.u32(if write { 2 } else { 1 });
            s.u64(offset);
            s.u64(length);
            s.u64(clientid);
            s.opaque(owner.as_bytes());
        })
    }
    pub fn renew(self, clientid: u64) -> Ops {
        self.with(OP_RENEW, |s| s.u64(clientid))
    }
    pub fn setclientid(self, id: &str) -> Ops {
        self.setclientid_verf(id, *b"verifier")
    }
    /// SETCLIENTID of client `id` with boot verifier `verf`.
    pub fn setclientid_verf(self, id: &str, verf: [u8; 8]) -> Ops {
        let mut s = self.op(OP_SETCLIENTID);
        s.buf.extend_from_slice(&verf);
        s.opaque(id.as_bytes());
        s.u32(0x4000_0000);
        s.opaque(b"tcp");
        s.opaque(b"127.0.0.1.3.4");
        s.u32(1);
        s
    }
    /// SETCLIENTID of client `id` whose callback is `cb` (TCP, IPv4), program
    /// [`CB_PROGRAM`], ident 7.
    pub fn setclientid_cb(self, id: &str, cb: SocketAddr) -> Ops {
        let mut s = self.op(OP_SETCLIENTID);
        s.buf.extend_from_slice(b"verifier");
        s.opaque(id.as_bytes());
        s.u32(CB_PROGRAM);
        s.opaque(b"tcp");
        let port = cb.port();
        s.opaque(format!("{}.{}.{}", cb.ip(), port >> 8, port & 0xff).as_bytes());
        s.u32(7);
        s
    }
    /// DELEGRETURN of `stateid` (of the current file).
    pub fn delegreturn(self, stateid: &[u8; 16]) -> Ops {
        self.with(OP_DELEGRETURN, |s| s.fixed(stateid))
    }
    pub fn setclientid_confirm(self, clientid: u64, verifier: [u8; 8]) -> Ops {
        let mut s = self.op(OP_SETCLIENTID_CONFIRM);
        s.buf.extend_from_slice(&clientid.to_be_bytes());
        s.buf.extend_from_slice(&verifier);
        s
    }
}

/// One operation's result: its number, status and (for GETFH, READ and SETCLIENTID) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRes {
    pub op: u32,
    pub status: u32,
    /// GETFH: the handle; GETATTR: the `fattr4` (bitmap and values) as sent; ACCESS:
    /// supported (4) + access (4); SETATTR: the attrsset bitmap (also on errors); READDIR,
    /// SECINFO, SECINFO_NO_NAME: the rest of the reply undecoded; READ and READ_PLUS: the
    /// data (of the first segment); OPEN: the stateid; WRITE: count, committed and verifier;
    /// SETCLIENTID: client id (8) + verifier (8); OPEN_CONFIRM, OPEN_DOWNGRADE, CLOSE, LOCK
    /// and LOCKU: the stateid; LOCK and LOCKT denied: offset (8), length (8), lock type (4),
    /// the owner's client id (8) and name; EXCHANGE_ID: client id (8) + sequence (4) + flags (4);
    /// CREATE_SESSION: the session id; SEEK: eof (4) + offset (8); COPY: the callback id
    /// count (4), the bytes copied (8), committed (4), verifier (8), two bools (8).
    pub body: Vec<u8>,
    /// READ: the eof flag.
    pub eof: bool,
}

/// A COMPOUND reply: the overall status and the results of the operations that ran.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u32,
    pub results: Vec<OpRes>,
}

impl Reply {
    /// The body of the last result of operation `op`; panics if there is none.
    pub fn body(&self, op: u32) -> &[u8] {
        &self
            .results
            .iter()
            .rev()
            .find(|r| r.op == op)
            .unwrap_or_else(|| panic!("no result of op {op} in {self:?}"))
            .body
    }
}

impl Reply {
    /// The read delegation the last OPEN granted, if any.
    pub fn delegation(&self) -> Option<[u8; 16]> {
        self.body(OP_OPEN)
            .get(16..32)
            .and_then(|b| b.try_into().ok())
    }
    /// SEQUENCE's status flags.
    pub fn seq_flags(&self) -> u32 {
        let b = self.body(OP_SEQUENCE);
        u32::from_be_bytes(b[32..36].try_into().expect("4 bytes"))
    }
    /// The stateid in the last result of `op` (OPEN, OPEN_CONFIRM, OPEN_DOWNGRADE, CLOSE,
    /// LOCK, LOCKU); panics if there is none.
    pub fn stateid(&self, op: u32) -> [u8; 16] {
        self.body(op)
            .get(..16)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_else(|| panic!("no stateid of op {op} in {self:?}"))
    }
    /// The status of the last result (the one that ended the COMPOUND).
    pub fn last_status(&self) -> u32 {
        self.results.last().map_or(NFS4_OK, |r| r.status)
    }
}

/// AUTH_SYS credentials.
#[derive(Debug, Clone)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Cred {
    pub fn user(uid: u32, gid: u32, gids: &[u32]) -> Cred {
        Cred {
            uid,
            gid,
            gids: gids.to_vec(),
        }
    }
}

/// A 4.1 or 4.2 session of one slot.
pub struct Session {
    id: [u8; 16],
    seq: u32,
    minor: u32,
}

impl Session {
    /// One COMPOUND on `c`: SEQUENCE on the slot, then what `ops` adds; panics on I/O errors.
    pub fn compound(&mut self, c: &mut Client, cred: &Cred, ops: impl FnOnce(Ops) -> Ops) -> Reply {
        self.try_compound(c, cred, ops)
            .expect("a COMPOUND in the session")
    }

    /// [`Session::compound`], with I/O errors returned (a server that may be killed).
    pub fn try_compound(
        &mut self,
        c: &mut Client,
        cred: &Cred,
        ops: impl FnOnce(Ops) -> Ops,
    ) -> std::io::Result<Reply> {
        self.seq += 1;
        let all = ops(Ops::new().sequence(&self.id, self.seq));
        c.compound(self.minor, cred, all)
    }
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }
    /// The session `id` (made with CREATE_SESSION by the test), at slot sequence 0.
    pub fn from_id(id: [u8; 16], minor: u32) -> Session {
        Session { id, seq: 0, minor }
    }
}

/// One TCP connection to an NFSv4 server.
pub struct Client {
    sock: TcpStream,
    xid: u32,
    /// Calls the server sent on this connection (a 4.1 back channel), not answered yet.
    calls: std::collections::VecDeque<Vec<u8>>,
}

impl Client {
    /// Connects to `server`, from `source` if given (any loopback address works on `lo`).
    pub fn connect(server: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<Client> {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        if let Some(ip) = source {
            s.bind(&SocketAddr::from((ip, 0)).into())?;
        }
        s.connect_timeout(&server.into(), Duration::from_secs(5))?;
        let sock: TcpStream = s.into();
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            sock,
            xid: 1,
            calls: Default::default(),
        })
    }

    /// Sends one COMPOUND of minor version `minor` and decodes the reply.
    pub fn compound(&mut self, minor: u32, cred: &Cred, ops: Ops) -> std::io::Result<Reply> {
        self.xid += 1;
        let mut m = Ops::new();
        for v in [self.xid, 0, 2, 100003, 4, 1, 1] {
            m.u32(v);
        }
        let mut auth = Ops::new();
        auth.u32(0);
        auth.opaque(b"test");
        auth.u32(cred.uid);
        auth.u32(cred.gid);
        auth.u32(cred.gids.len() as u32);
        for g in &cred.gids {
            auth.u32(*g);
        }
        m.opaque(&auth.buf);
        m.u32(0);
        m.u32(0);
        m.opaque(b"");
        m.u32(minor);
        m.u32(ops.n);
        m.buf.extend_from_slice(&ops.buf);
        self.send_record(&m.buf)?;
        let body = loop {
            let rec = self.read_record()?;
            if is_call(&rec) {
                self.calls.push_back(rec);
            } else {
                break rec;
            }
        };
        decode(&body).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "undecodable reply")
        })
    }

    /// SETCLIENTID of client `id` (verifier `verf`) and its SETCLIENTID_CONFIRM as `cred`:
    /// a confirmed 4.0 client id; panics unless both succeed.
    pub fn client40(&mut self, cred: &Cred, id: &str, verf: [u8; 8]) -> u64 {
        let r = self
            .compound(0, cred, Ops::new().setclientid_verf(id, verf))
            .expect("SETCLIENTID");
        assert_eq!(r.status, NFS4_OK, "SETCLIENTID: {r:?}");
        let b = r.body(OP_SETCLIENTID);
        let clientid = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
        let confirm: [u8; 8] = b[8..16].try_into().expect("8 bytes");
        let r = self
            .compound(0, cred, Ops::new().setclientid_confirm(clientid, confirm))
            .expect("SETCLIENTID_CONFIRM");
        assert_eq!(r.status, NFS4_OK, "SETCLIENTID_CONFIRM: {r:?}");
        clientid
    }

    fn send_record(&mut self, msg: &[u8]) -> std::io::Result<()> {
        let mut rec = (0x8000_0000u32 | msg.len() as u32).to_be_bytes().to_vec();
        rec.extend_from_slice(msg);
        self.sock.write_all(&rec)
    }

    /// The next call the server sent on this connection (its back channel), waiting for it
    /// as long as the read timeout.
    pub fn next_call(&mut self) -> std::io::Result<CbCall> {
        let rec = match self.calls.pop_front() {
            Some(r) => r,
            None => self.read_record()?,
        };
        CbCall::decode(&rec)
            .ok_or_else(|| std::io::Error::other(format!("not a callback call: {rec:?}")))
    }

    /// Answers `call` (a CB_COMPOUND of CB_SEQUENCE and CB_RECALL) with `status` for both.
    pub fn reply_recall(&mut self, call: &CbCall, status: u32) -> std::io::Result<()> {
        let reply = call.reply(status);
        self.send_record(&reply)
    }

    /// EXCHANGE_ID and CREATE_SESSION of minor version `minor`: a session of one slot.
    pub fn session(&mut self, minor: u32, owner: &str) -> std::io::Result<Session> {
        self.session_with(minor, owner, 0)
    }

    /// [`Client::session`] with CREATE_SESSION's `flags` (2: this connection is the
    /// session's back channel, called with AUTH_SYS as root).
    pub fn session_with(
        &mut self,
        minor: u32,
        owner: &str,
        flags: u32,
    ) -> std::io::Result<Session> {
        let root = Cred::user(0, 0, &[]);
        let fail = |what: &str, r: &Reply| std::io::Error::other(format!("{what}: {r:?}"));
        let r = self.compound(
            minor,
            &root,
            Ops::new().with(OP_EXCHANGE_ID, |s| {
                s.fixed(b"verifier");
                s.opaque(owner.as_bytes());
                s.u32(0); // flags
                s.u32(0); // SP4_NONE
                s.u32(0); // no implementation id
            }),
        )?;
        if r.status != NFS4_OK {
            return Err(fail("EXCHANGE_ID", &r));
        }
        let b = r.body(OP_EXCHANGE_ID);
        let clientid = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
        let seq = u32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
        let channel = |s: &mut Ops| {
            for v in [0, 1 << 21, 1 << 21, 64 << 10, 16, 1, 0] {
                s.u32(v);
            }
        };
        let r = self.compound(
            minor,
            &root,
            Ops::new().with(OP_CREATE_SESSION, |s| {
                s.u64(clientid);
                s.u32(seq);
                s.u32(flags);
                channel(s);
                channel(s);
                s.u32(CB_PROGRAM);
                s.u32(1);
                if flags & 2 == 0 {
                    s.u32(0); // AUTH_NONE
                } else {
                    // AUTH_SYS as Linux offers it: the authsys_parms struct inline (stamp,
                    // machine name, uid, gid, no groups), not wrapped in an opaque.
                    s.u32(1);
                    s.u32(0);
                    s.opaque(b"client");
                    for v in [0, 0, 0] {
                        s.u32(v);
                    }
                }
            }),
        )?;
        if r.status != NFS4_OK {
            return Err(fail("CREATE_SESSION", &r));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(r.body(OP_CREATE_SESSION));
        Ok(Session { id, seq: 0, minor })
    }

    fn read_record(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut mark = [0u8; 4];
            self.sock.read_exact(&mut mark)?;
            let m = u32::from_be_bytes(mark);
            let start = out.len();
            out.resize(start + (m & 0x7fff_ffff) as usize, 0);
            self.sock.read_exact(&mut out[start..])?;
            if m & 0x8000_0000 != 0 {
                return Ok(out);
            }
        }
    }
}

/// Whether `rec` is an RPC call (the server calling back) rather than a reply.
fn is_call(rec: &[u8]) -> bool {
    rec.get(4..8) == Some(&[0, 0, 0, 0])
}

/// A callback call as this client understood it: CB_NULL or a CB_COMPOUND whose
/// operations were CB_SEQUENCE (4.1) and CB_RECALL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbCall {
    pub xid: u32,
    pub program: u32,
    /// 0 CB_NULL, 1 CB_COMPOUND.
    pub procedure: u32,
    /// The credential's flavor.
    pub flavor: u32,
    pub minor: u32,
    pub ident: u32,
    /// CB_SEQUENCE's session and sequence id.
    pub sequence: Option<([u8; 16], u32)>,
    /// CB_RECALL's stateid and filehandle.
    pub recall: Option<([u8; 16], Vec<u8>)>,
}

impl CbCall {
    pub fn decode(rec: &[u8]) -> Option<CbCall> {
        let mut r = Rd(rec);
        let xid = r.u32()?;
        if r.u32()? != 0 || r.u32()? != 2 {
            return None;
        }
        let (program, version, procedure) = (r.u32()?, r.u32()?, r.u32()?);
        if version != 1 {
            return None;
        }
        let flavor = r.u32()?;
        r.opaque()?;
        r.u32()?;
        r.opaque()?;
        let mut call = CbCall {
            xid,
            program,
            procedure,
            flavor,
            minor: 0,
            ident: 0,
            sequence: None,
            recall: None,
        };
        if procedure == 0 {
            return Some(call);
        }
        r.opaque()?; // tag
        call.minor = r.u32()?;
        call.ident = r.u32()?;
        for _ in 0..r.u32()? {
            match r.u32()? {
                11 => {
                    let session: [u8; 16] = r.fixed(16)?.try_into().ok()?;
                    let seq = r.u32()?;
                    r.fixed(12)?; // slot, highest slot, cachethis
                    if r.u32()? != 0 {
                        return None; // referring call lists: not expected
                    }
                    call.sequence = Some((session, seq));
                }
                4 => {
                    let stateid: [u8; 16] = r.fixed(16)?.try_into().ok()?;
                    r.u32()?; // truncate
                    call.recall = Some((stateid, r.opaque()?));
                }
                _ => return None,
            }
        }
        Some(call)
    }

    /// The reply: accepted, and for a CB_COMPOUND `status` for each of its operations.
    pub fn reply(&self, status: u32) -> Vec<u8> {
        let mut w = Ops::new();
        for v in [self.xid, 1, 0, 0, 0, 0] {
            w.u32(v);
        }
        if self.procedure == 0 {
            return w.buf;
        }
        w.u32(status);
        w.opaque(b"");
        let n = u32::from(self.sequence.is_some()) + u32::from(self.recall.is_some());
        w.u32(n);
        if let Some((session, seq)) = self.sequence {
            w.u32(11);
            w.u32(status);
            if status == NFS4_OK {
                w.fixed(&session);
                for v in [seq, 0, 0, 0] {
                    w.u32(v);
                }
            }
        }
        if self.recall.is_some() {
            w.u32(4);
            w.u32(status);
        }
        w.buf
    }
}

/// A 4.0 client's callback service on a loopback port: answers every call (CB_NULL and
/// CB_COMPOUND) with NFS4_OK and sends each decoded call to the test.
pub struct CbListener {
    pub addr: SocketAddr,
    pub calls: std::sync::mpsc::Receiver<CbCall>,
}

impl CbListener {
    pub fn start() -> CbListener {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the callback port");
        let addr = l.local_addr().expect("address");
        let (tx, calls) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(sock) = s else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut c = Client {
                        sock,
                        xid: 0,
                        calls: Default::default(),
                    };
                    while let Ok(rec) = c.read_record() {
                        let Some(call) = CbCall::decode(&rec) else {
                            return;
                        };
                        if c.send_record(&call.reply(NFS4_OK)).is_err() || tx.send(call).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CbListener { addr, calls }
    }
}

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn u32(&mut self) -> Option<u32> {
        let (h, t) = self.0.split_at_checked(4)?;
        self.0 = t;
        Some(u32::from_be_bytes(h.try_into().ok()?))
    }
    fn fixed(&mut self, n: usize) -> Option<Vec<u8>> {
        let (h, t) = self.0.split_at_checked(n)?;
        self.0 = t;
        Some(h.to_vec())
    }
    fn opaque(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        let v = self.fixed(n)?;
        self.fixed((4 - n % 4) % 4)?;
        Some(v)
    }
}

fn decode(b: &[u8]) -> Option<Reply> {
    let mut r = Rd(b);
    let _xid = r.u32()?;
    if r.u32()? != 1 || r.u32()? != 0 {
        return None;
    }
    let _verf_flavor = r.u32()?;
    r.opaque()?;
    if r.u32()? != 0 {
        return None;
    }
    let status = r.u32()?;
    r.opaque()?;
    let n = r.u32()?;
    let mut results = Vec::new();
    for _ in 0..n {
        let op = r.u32()?;
        let st = r.u32()?;
        let mut res = OpRes {
            op,
            status: st,
            body: Vec::new(),
            eof: false,
        };
        if op == OP_SETATTR {
            // SETATTR answers its bitmap whatever the status.
            let start = r.0;
            let words = r.u32()? as usize;
            r.fixed(4 * words)?;
            res.body = start[..4 + 4 * words].to_vec();
        } else if st == NFS4ERR_DENIED && (op == OP_LOCK || op == OP_LOCKT) {
            // LOCK4denied: offset, length, type, then the owner's client id and name.
            let mut d = r.fixed(28)?;
            d.extend_from_slice(&r.opaque()?);
            res.body = d;
        } else if st == NFS4_OK {
            match op {
                OP_GETFH => res.body = r.opaque()?,
                OP_GETATTR => {
                    let start = r.0;
                    let words = r.u32()? as usize;
                    r.fixed(4 * words)?;
                    r.opaque()?;
                    res.body = start[..start.len() - r.0.len()].to_vec();
                }
                OP_ACCESS => res.body = r.fixed(8)?,
                OP_CREATE => {
                    r.fixed(20)?; // change info
                    let words = r.u32()? as usize;
                    r.fixed(4 * words)?;
                }
                OP_REMOVE => {
                    r.fixed(20)?;
                }
                OP_RENAME => {
                    r.fixed(40)?;
                }
                OP_READDIR | OP_SECINFO | OP_SECINFO_NO_NAME => {
                    res.body = r.0.to_vec();
                    results.push(res);
                    break;
                }
                OP_READ => {
                    res.eof = r.u32()? != 0;
                    res.body = r.opaque()?;
                }
                OP_SETCLIENTID => res.body = r.fixed(16)?,
                OP_SEQUENCE => res.body = r.fixed(36)?,
                OP_WRITE => res.body = r.fixed(16)?,
                OP_OPEN => {
                    res.body = r.fixed(16)?; // the stateid
                    r.fixed(24)?; // change info, result flags
                    let words = r.u32()? as usize;
                    r.fixed(4 * words)?;
                    match r.u32()? {
                        0 => {}
                        1 => {
                            // A read delegation: its stateid follows the open's.
                            res.body.extend_from_slice(&r.fixed(16)?);
                            r.fixed(16)?; // recall, ACE type, flags and mask
                            r.opaque()?; // who
                        }
                        _ => return None, // a write delegation: not expected
                    }
                }
                OP_SEEK => res.body = r.fixed(12)?,
                OP_OPEN_CONFIRM | OP_OPEN_DOWNGRADE | OP_CLOSE | OP_LOCK | OP_LOCKU => {
                    res.body = r.fixed(16)?
                }
                OP_COPY => res.body = r.fixed(32)?,
                OP_READ_PLUS => {
                    res.eof = r.u32()? != 0;
                    let segments = r.u32()?;
                    if segments > 0 {
                        // NFS4_CONTENT_DATA at an offset.
                        if r.u32()? != 0 {
                            return None;
                        }
                        r.fixed(8)?;
                        res.body = r.opaque()?;
                    }
                    if segments > 1 {
                        results.push(res);
                        break;
                    }
                }
                // The sessionless operations come alone: only their heads are read.
                OP_EXCHANGE_ID | OP_CREATE_SESSION => {
                    res.body = r.fixed(16)?;
                    results.push(res);
                    break;
                }
                OP_PUTFH
                | OP_PUTROOTFH
                | OP_LOOKUP
                | OP_LOOKUPP
                | OP_RESTOREFH
                | OP_SETCLIENTID_CONFIRM
                | OP_LOCKT
                | OP_RENEW
                | OP_RECLAIM_COMPLETE
                | OP_DESTROY_SESSION
                | OP_DESTROY_CLIENTID
                | OP_SAVEFH
                | OP_DELEGRETURN
                | OP_FREE_STATEID
                | OP_ALLOCATE
                | OP_DEALLOCATE
                | OP_CLONE => {}
                // Bodies this client does not decode end the walk.
                _ => {
                    results.push(res);
                    break;
                }
            }
        }
        results.push(res);
    }
    Some(Reply { status, results })
}
