//! Scenarios of the COMPOUND pipeline on virtual time against the in-memory test Vfs, and
//! the malformed-input battery.

use super::core::{CallKind, CbResult, CbRoute, Outcome, Peer, Server, Settings};
use super::memvfs::MemVfs;
use super::rpc::{self, AUTH_SYS, NFS_PROGRAM};
use super::state::{owner_digest, Limits, Reclaimers};
use super::status::Nfs4Status;
use super::wire::{fattr, opnum, Bitmap};
use super::xdr::{Reader, Writer};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

/// `addr` on connection 1.
fn peer(addr: IpAddr) -> Peer {
    Peer { addr, conn: 1 }
}

fn server(grace: bool, start: Instant) -> Server {
    Server::new(
        Arc::new(MemVfs::new()),
        Settings {
            limits: Limits {
                lease: Duration::from_secs(30),
                ..Limits::default()
            },
            boot: 77,
            grace_until: grace.then(|| start + Duration::from_secs(10)),
            reclaimers: None,
            server_owner: b"test".to_vec(),
            delegations: true,
        },
    )
}

pub(super) fn call(procedure: u32, uid: u32, args: &[u8]) -> Vec<u8> {
    let mut cred = Writer::new();
    cred.u32(0);
    cred.opaque(b"client");
    cred.u32(uid);
    cred.u32(uid);
    cred.u32(0);
    let mut w = Writer::new();
    w.u32(42);
    w.u32(0);
    w.u32(2);
    w.u32(NFS_PROGRAM);
    w.u32(4);
    w.u32(procedure);
    w.u32(AUTH_SYS);
    w.opaque(&cred.buf);
    w.u32(0);
    w.u32(0);
    w.buf.extend_from_slice(args);
    w.buf
}

/// Builds COMPOUND arguments.
pub(super) struct C {
    w: Writer,
    n: u32,
    at: usize,
}

impl C {
    pub(super) fn new(minor: u32) -> C {
        let mut w = Writer::new();
        w.opaque(b"tag");
        w.u32(minor);
        let at = w.len();
        w.u32(0);
        C { w, n: 0, at }
    }
    pub(super) fn op(mut self, num: u32, f: impl FnOnce(&mut Writer)) -> C {
        self.w.u32(num);
        f(&mut self.w);
        self.n += 1;
        self
    }
    pub(super) fn bytes(mut self) -> Vec<u8> {
        self.w.patch_u32(self.at, self.n);
        self.w.buf
    }
}

/// Answers one record as the shell does: the call decoded once, then handled.
fn handle(s: &Server, now: Instant, record: &[u8]) -> Outcome {
    s.handle_call(now, peer(PEER), rpc::parse_call(record.to_vec()))
}

/// A status from a reply (every status this server sends is a known one).
fn status(v: u32) -> Nfs4Status {
    Nfs4Status::from_u32(v).unwrap_or_else(|| panic!("unknown status {v}"))
}

/// Runs a COMPOUND; returns the overall status and a reader at the first result.
fn run(s: &Server, now: Instant, uid: u32, c: C) -> (Nfs4Status, Vec<u8>) {
    run_from(s, now, PEER, uid, c)
}

/// [`run`] from the client address `peer`.
fn run_from(s: &Server, now: Instant, peer: IpAddr, uid: u32, c: C) -> (Nfs4Status, Vec<u8>) {
    let out = s.handle_call(
        now,
        self::peer(peer),
        rpc::parse_call(call(1, uid, &c.bytes())),
    );
    let reply = out.reply.expect("a reply");
    let mut r = Reader::new(&reply);
    assert_eq!(r.u32().unwrap(), 42);
    assert_eq!(r.u32().unwrap(), 1);
    assert_eq!(r.u32().unwrap(), 0, "accepted");
    r.u32().unwrap();
    r.opaque(400).unwrap();
    assert_eq!(r.u32().unwrap(), 0, "SUCCESS");
    let st = status(r.u32().unwrap());
    assert_eq!(r.opaque(100).unwrap(), b"tag");
    r.u32().unwrap();
    (st, r.rest().to_vec())
}

fn res(r: &mut Reader, op: u32) -> Nfs4Status {
    assert_eq!(r.u32().unwrap(), op, "result for op {op}");
    status(r.u32().unwrap())
}

fn stateid(r: &mut Reader) -> (u32, [u8; 12]) {
    (r.u32().unwrap(), r.fixed::<12>().unwrap())
}

fn put_stateid(w: &mut Writer, s: (u32, [u8; 12])) {
    w.u32(s.0);
    w.fixed(&s.1);
}

fn bitmap(w: &mut Writer, bits: &[u32]) {
    Bitmap::from_bits(bits).encode(w);
}

fn empty_attrs(w: &mut Writer) {
    w.u32(0);
    w.u32(0);
}

/// SETCLIENTID + SETCLIENTID_CONFIRM; returns the client id.
fn client40(s: &Server, now: Instant, id: &[u8]) -> u64 {
    setclientid_from(s, now, PEER, id, true).expect("a confirmed client")
}

fn open_args(
    w: &mut Writer,
    seqid: u32,
    clientid: u64,
    owner: &[u8],
    access: u32,
    create: bool,
    name: &[u8],
) {
    w.u32(seqid);
    w.u32(access);
    w.u32(0);
    w.u64(clientid);
    w.opaque(owner);
    if create {
        w.u32(1);
        w.u32(0); // UNCHECKED4
        bitmap(w, &[fattr::MODE]);
        let mut v = Writer::new();
        v.u32(0o644);
        w.opaque(&v.buf);
    } else {
        w.u32(0);
    }
    w.u32(0); // CLAIM_NULL
    w.opaque(name);
}

#[test]
fn null_and_minor_version_mismatch() {
    let now = Instant::now();
    let s = server(false, now);
    let out = handle(&s, now, &call(0, 0, &[]));
    assert_eq!(out.reply.unwrap().len(), 24);
    let (st, body) = run(&s, now, 0, C::new(3).op(opnum::PUTROOTFH, |_| {}));
    assert_eq!(st, Nfs4Status::MinorVersMismatch);
    assert!(body.is_empty());
}

#[test]
fn v40_open_write_read_lock_close() {
    let now = Instant::now();
    let s = server(false, now);
    let cid = client40(&s, now, b"linux client 1");
    // Root attributes the Linux client asks for at mount.
    let (st, body) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::GETATTR, |w| {
                bitmap(
                    w,
                    &[
                        fattr::SUPPORTED_ATTRS,
                        fattr::TYPE,
                        fattr::FH_EXPIRE_TYPE,
                        fattr::LEASE_TIME,
                        fattr::OWNER,
                    ],
                )
            }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    assert_eq!(res(&mut r, opnum::PUTROOTFH), Nfs4Status::Ok);
    assert_eq!(res(&mut r, opnum::GETATTR), Nfs4Status::Ok);
    let n = r.u32().unwrap();
    assert!(n >= 2);
    for _ in 0..n {
        r.u32().unwrap();
    }
    let vals = r.opaque(1000).unwrap();
    let mut v = Reader::new(vals);
    let sup_n = v.u32().unwrap() as usize;
    let sup: Vec<u32> = (0..sup_n).map(|_| v.u32().unwrap()).collect();
    assert!(Bitmap(sup).has(fattr::MOUNTED_ON_FILEID));
    assert_eq!(v.u32().unwrap(), 2, "directory");
    assert_eq!(v.u32().unwrap(), 0, "FH4_PERSISTENT");
    assert_eq!(v.u32().unwrap(), 30, "lease");
    assert_eq!(v.opaque(20).unwrap(), b"0", "numeric owner");

    // OPEN (create) + GETFH, then OPEN_CONFIRM.
    let (st, body) = run(
        &s,
        now,
        1000,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::OPEN, |w| {
                open_args(w, 1, cid, b"owner1", 3, true, b"f")
            })
            .op(opnum::GETFH, |_| {}),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTROOTFH);
    assert_eq!(res(&mut r, opnum::OPEN), Nfs4Status::Ok);
    let sid = stateid(&mut r);
    r.bool().unwrap();
    r.u64().unwrap();
    r.u64().unwrap();
    let rflags = r.u32().unwrap();
    assert_eq!(rflags & 2, 2, "4.0 new owner must confirm");
    let n = r.u32().unwrap();
    for _ in 0..n {
        r.u32().unwrap();
    }
    assert_eq!(r.u32().unwrap(), 0, "no delegation");
    assert_eq!(res(&mut r, opnum::GETFH), Nfs4Status::Ok);
    let fh = r.opaque(128).unwrap().to_vec();
    let putfh = |w: &mut Writer| w.opaque(&fh);
    let (st, body) = run(
        &s,
        now,
        1000,
        C::new(0)
            .op(opnum::PUTFH, putfh)
            .op(opnum::OPEN_CONFIRM, |w| {
                put_stateid(w, sid);
                w.u32(2);
            }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTFH);
    res(&mut r, opnum::OPEN_CONFIRM);
    let sid = stateid(&mut r);
    assert_eq!(sid.0, 2);

    // WRITE then READ.
    let (st, body) = run(
        &s,
        now,
        1000,
        C::new(0)
            .op(opnum::PUTFH, putfh)
            .op(opnum::WRITE, |w| {
                put_stateid(w, sid);
                w.u64(0);
                w.u32(2);
                w.opaque(b"hello world");
            })
            .op(opnum::READ, |w| {
                put_stateid(w, sid);
                w.u64(6);
                w.u32(100);
            }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTFH);
    res(&mut r, opnum::WRITE);
    assert_eq!(r.u32().unwrap(), 11);
    assert_eq!(r.u32().unwrap(), 2, "FILE_SYNC");
    assert_eq!(&r.fixed::<8>().unwrap(), b"verifier");
    res(&mut r, opnum::READ);
    assert!(r.bool().unwrap());
    assert_eq!(r.opaque(100).unwrap(), b"world");

    // A write lock, a conflicting LOCKT from another owner, a stale seqid.
    let lock = |seqid: u32, open_sid: (u32, [u8; 12]), owner: &'static [u8]| {
        C::new(0).op(opnum::PUTFH, putfh).op(opnum::LOCK, move |w| {
            w.u32(2);
            w.bool(false);
            w.u64(0);
            w.u64(10);
            w.bool(true);
            w.u32(seqid);
            put_stateid(w, open_sid);
            w.u32(1);
            w.u64(cid);
            w.opaque(owner);
        })
    };
    let (st, body) = run(&s, now, 1000, lock(3, sid, b"lock1"));
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTFH);
    res(&mut r, opnum::LOCK);
    let lsid = stateid(&mut r);
    let (st, body) = run(
        &s,
        now,
        1000,
        C::new(0).op(opnum::PUTFH, putfh).op(opnum::LOCKT, |w| {
            w.u32(1);
            w.u64(5);
            w.u64(1);
            w.u64(cid);
            w.opaque(b"lock2");
        }),
    );
    assert_eq!(st, Nfs4Status::Denied);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTFH);
    res(&mut r, opnum::LOCKT);
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap(), r.u32().unwrap()),
        (0, 10, 2)
    );
    // The same OPEN seqid again (3) is a replay of the LOCK: identical bytes.
    let (_, again) = run(&s, now, 1000, lock(3, sid, b"lock1"));
    assert_eq!(again, body_of_lock_replay(&s, now, putfh, sid, cid));
    let (st, _) = run(&s, now, 1000, lock(9, sid, b"lock1"));
    assert_eq!(st, Nfs4Status::BadSeqId);
    // CLOSE with locks held is refused; LOCKU then CLOSE works.
    let close = |seqid: u32, sid: (u32, [u8; 12])| {
        C::new(0)
            .op(opnum::PUTFH, putfh)
            .op(opnum::CLOSE, move |w| {
                w.u32(seqid);
                put_stateid(w, sid);
            })
    };
    assert_eq!(run(&s, now, 1000, close(4, sid)).0, Nfs4Status::LocksHeld);
    let (st, _) = run(
        &s,
        now,
        1000,
        C::new(0).op(opnum::PUTFH, putfh).op(opnum::LOCKU, |w| {
            w.u32(2);
            w.u32(2);
            put_stateid(w, lsid);
            w.u64(0);
            w.u64(u64::MAX);
        }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    assert_eq!(run(&s, now, 1000, close(5, sid)).0, Nfs4Status::Ok);
    let st = s.clients(now);
    assert_eq!((st.len(), st[0].opens, st[0].confirmed), (1, 0, true));
}

fn body_of_lock_replay(
    s: &Server,
    now: Instant,
    putfh: impl Fn(&mut Writer),
    sid: (u32, [u8; 12]),
    cid: u64,
) -> Vec<u8> {
    // A second replay must equal the first: the owner's cached reply.
    run(
        s,
        now,
        1000,
        C::new(0).op(opnum::PUTFH, putfh).op(opnum::LOCK, move |w| {
            w.u32(2);
            w.bool(false);
            w.u64(0);
            w.u64(10);
            w.bool(true);
            w.u32(3);
            put_stateid(w, sid);
            w.u32(1);
            w.u64(cid);
            w.opaque(b"lock1");
        }),
    )
    .1
}

/// EXCHANGE_ID + CREATE_SESSION; returns the session id.
fn session41(s: &Server, now: Instant) -> [u8; 16] {
    session41_as(s, now, (PEER, 1), b"linux 4.1 client", 0)
}

/// One COMPOUND as uid 0 from `(address, connection)`: the overall status and the bytes
/// after the result count.
fn call_from(s: &Server, now: Instant, from: (IpAddr, u64), c: C) -> (Nfs4Status, Vec<u8>) {
    let peer = Peer {
        addr: from.0,
        conn: from.1,
    };
    let out = s.handle_call(now, peer, rpc::parse_call(call(1, 0, &c.bytes())));
    let reply = out.reply.expect("a reply");
    // RPC reply header (24 bytes), status, tag "tag", count.
    let st = status(u32::from_be_bytes(reply[24..28].try_into().unwrap()));
    (st, reply[40..].to_vec())
}

/// EXCHANGE_ID of client `owner` from `from`: its client id and CREATE_SESSION sequence.
fn exchange_id(s: &Server, now: Instant, from: (IpAddr, u64), owner: &[u8]) -> (u64, u32) {
    let (st, body) = call_from(
        s,
        now,
        from,
        C::new(1).op(opnum::EXCHANGE_ID, |w| {
            w.fixed(b"bootverf");
            w.opaque(owner);
            w.u32(0);
            w.u32(0);
            w.u32(0);
        }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::EXCHANGE_ID);
    (r.u64().unwrap(), r.u32().unwrap())
}

/// [`session41`] of client `owner` from `(address, connection)` with CREATE_SESSION's
/// `flags` (2: the connection is the back channel; AUTH_SYS callbacks).
fn session41_as(
    s: &Server,
    now: Instant,
    from: (IpAddr, u64),
    owner: &[u8],
    flags: u32,
) -> [u8; 16] {
    let (clientid, seq) = exchange_id(s, now, from, owner);
    let attrs = |w: &mut Writer| {
        w.u32(0);
        w.u32(1 << 20);
        w.u32(1 << 20);
        w.u32(8192);
        w.u32(16);
        w.u32(8);
        w.u32(0);
    };
    let (st, body) = call_from(
        s,
        now,
        from,
        C::new(1).op(opnum::CREATE_SESSION, |w| {
            w.u64(clientid);
            w.u32(seq);
            w.u32(flags);
            attrs(w);
            attrs(w);
            w.u32(0x40000000);
            w.u32(1);
            // AUTH_SYS: authsys_parms inline (stamp, machine name, uid, gid, no groups), as
            // Linux sends it.
            w.u32(1);
            w.u32(0);
            w.opaque(b"client");
            w.u32(0);
            w.u32(0);
            w.u32(0);
        }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::CREATE_SESSION);
    r.fixed::<16>().unwrap()
}

fn seq(sess: [u8; 16], seqid: u32) -> impl FnOnce(&mut Writer) {
    move |w| {
        w.fixed(&sess);
        w.u32(seqid);
        w.u32(0);
        w.u32(0);
        w.bool(true);
    }
}

#[test]
fn v41_sessions_replay_and_order() {
    let now = Instant::now();
    let s = server(false, now);
    let sess = session41(&s, now);
    let create = |n: u32| {
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, n))
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::OPEN, |w| open_args(w, 0, 0, b"o", 2, true, b"new"))
            .op(opnum::GETFH, |_| {})
    };
    let (st, first) = run(&s, now, 0, create(1));
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&first);
    res(&mut r, opnum::SEQUENCE);
    r.fixed::<16>().unwrap();
    assert_eq!(r.u32().unwrap(), 1);
    // The same slot and sequence: the cached reply, byte for byte.
    let (st, again) = run(&s, now, 0, create(1));
    assert_eq!((st, &again), (Nfs4Status::Ok, &first));
    assert_eq!(run(&s, now, 0, create(5)).0, Nfs4Status::SeqMisordered);
    // No SEQUENCE, SEQUENCE not first.
    assert_eq!(
        run(&s, now, 0, C::new(1).op(opnum::PUTROOTFH, |_| {})).0,
        Nfs4Status::OpNotInSession
    );
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 2))
            .op(opnum::SEQUENCE, seq(sess, 3)),
    );
    assert_eq!(st, Nfs4Status::SequencePos);
    // 4.0-only operations are illegal in 4.1.
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 3))
            .op(opnum::RENEW, |w| w.u64(1)),
    );
    assert_eq!(st, Nfs4Status::OpIllegal);
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 4))
            .op(opnum::GETDEVICEINFO, |_| {}),
    );
    assert_eq!(st, Nfs4Status::NotSupp);
    assert_eq!(s.clients(now)[0].opens, 1);
}

#[test]
fn readdir_pages_through_large_directories() {
    let now = Instant::now();
    let s = server(false, now);
    let cid = client40(&s, now, b"c");
    for i in 0..300u32 {
        let name = format!("file-{i:04}");
        let (st, _) = run(
            &s,
            now,
            0,
            C::new(0)
                .op(opnum::PUTROOTFH, |_| {})
                .op(opnum::CREATE, |w| {
                    w.u32(2); // directory
                    w.opaque(name.as_bytes());
                    empty_attrs(w);
                }),
        );
        assert_eq!(st, Nfs4Status::Ok);
    }
    let _ = cid;
    let (mut cookie, mut verf, mut names) = (0u64, [0u8; 8], Vec::new());
    loop {
        let (st, body) = run(
            &s,
            now,
            0,
            C::new(0)
                .op(opnum::PUTROOTFH, |_| {})
                .op(opnum::READDIR, |w| {
                    w.u64(cookie);
                    w.fixed(&verf);
                    w.u32(1000);
                    w.u32(2000);
                    bitmap(w, &[fattr::TYPE, fattr::FILEID]);
                }),
        );
        assert_eq!(st, Nfs4Status::Ok);
        let mut r = Reader::new(&body);
        res(&mut r, opnum::PUTROOTFH);
        res(&mut r, opnum::READDIR);
        verf = r.fixed::<8>().unwrap();
        let before = names.len();
        while r.bool().unwrap() {
            cookie = r.u64().unwrap();
            names.push(String::from_utf8(r.opaque(255).unwrap().to_vec()).unwrap());
            let n = r.u32().unwrap();
            for _ in 0..n {
                r.u32().unwrap();
            }
            r.opaque(100).unwrap();
        }
        assert!(names.len() > before, "each page makes progress");
        if r.bool().unwrap() {
            break;
        }
    }
    assert_eq!(names.len(), 300);
    assert_eq!(names[299], "file-0299");
    // A maxcount too small for one entry.
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::READDIR, |w| {
                w.u64(0);
                w.fixed(&[0; 8]);
                w.u32(10);
                w.u32(20);
                bitmap(w, &[]);
            }),
    );
    assert_eq!(st, Nfs4Status::TooSmall);
}

#[test]
fn grace_and_lease_expiry() {
    let start = Instant::now();
    let s = server(true, start);
    let cid = client40(&s, start, b"c");
    let open = |seqid| {
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::OPEN, move |w| {
                open_args(w, seqid, cid, b"o", 1, true, b"g")
            })
    };
    assert_eq!(run(&s, start, 0, open(1)).0, Nfs4Status::Grace);
    let later = start + Duration::from_secs(11);
    // GRACE consumed seqid 1 (RFC 7530 §9.1.7): the same seqid again is a replay of it.
    assert_eq!(run(&s, later, 0, open(1)).0, Nfs4Status::Grace);
    assert_eq!(run(&s, later, 0, open(2)).0, Nfs4Status::Ok);
    // Nothing renews: the lease runs out and the client goes with its state.
    assert_eq!(s.handle_timeout(later + Duration::from_secs(29)).leases, 0);
    assert_eq!(s.handle_timeout(later + Duration::from_secs(31)).leases, 1);
    let (st, _) = run(
        &s,
        later + Duration::from_secs(32),
        0,
        C::new(0).op(opnum::RENEW, |w| w.u64(cid)),
    );
    // The server remembers the expired id (RFC 7530 §16.29: EXPIRED, not STALE_CLIENTID).
    assert_eq!(st, Nfs4Status::Expired);
    assert!(s.clients(later).is_empty());
}

/// A 4.0 OPEN that creates `g` in the root (CLAIM_NULL: refused in a grace period).
fn create_g(cid: u64, owner: &'static [u8]) -> C {
    C::new(0)
        .op(opnum::PUTROOTFH, |_| {})
        .op(opnum::OPEN, move |w| {
            open_args(w, 1, cid, owner, 1, true, b"g")
        })
}

#[test]
fn grace_begins_when_the_service_address_is_taken() {
    let start = Instant::now();
    let s = server(false, start);
    let cid = client40(&s, start, b"c");
    let open = |owner: &'static [u8]| create_g(cid, owner);
    // OPEN4 with CLAIM_PREVIOUS (delegation type none) on the file itself.
    let reclaim = |owner: &'static [u8]| {
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::LOOKUP, |w| w.opaque(b"g"))
            .op(opnum::OPEN, move |w| {
                w.u32(1);
                w.u32(1);
                w.u32(0);
                w.u64(cid);
                w.opaque(owner);
                w.u32(0); // OPEN4_NOCREATE
                w.u32(1); // CLAIM_PREVIOUS
                w.u32(0); // OPEN_DELEGATE_NONE
            })
    };
    assert_eq!(run(&s, start, 0, open(b"o1")).0, Nfs4Status::Ok);
    assert_eq!(run(&s, start, 0, reclaim(b"o2")).0, Nfs4Status::NoGrace);
    // This member takes over the service address: the previous holder's clients reclaim,
    // new opens wait.
    assert!(s.begin_grace(start, start + Duration::from_secs(10), None));
    let during = start + Duration::from_secs(1);
    assert_eq!(run(&s, during, 0, open(b"o3")).0, Nfs4Status::Grace);
    assert_eq!(run(&s, during, 0, reclaim(b"o4")).0, Nfs4Status::Ok);
    // A second takeover never shortens a running grace period.
    assert!(s.begin_grace(during, start + Duration::from_secs(5), None));
    let after = start + Duration::from_secs(11);
    assert_eq!(
        run(&s, start + Duration::from_secs(7), 0, open(b"o5")).0,
        Nfs4Status::Grace
    );
    assert_eq!(run(&s, after, 0, open(b"o6")).0, Nfs4Status::Ok);
}

#[test]
fn grace_ends_once_every_known_client_completed_its_reclaim() {
    let start = Instant::now();
    let s = server(false, start);
    let cid = client40(&s, start, b"c");
    let open = |owner: &'static [u8]| create_g(cid, owner);
    let until = start + Duration::from_secs(60);
    // The previous holder had no clients: nothing to wait for.
    assert!(!s.begin_grace(start, until, Some(&Reclaimers::default())));
    assert_eq!(run(&s, start, 0, open(b"o1")).0, Nfs4Status::Ok);
    // It had one 4.1 client: new opens wait until that one has reclaimed.
    let known = Reclaimers {
        v41: vec![owner_digest(b"linux 4.1 client")],
        v40: 0,
    };
    assert!(s.begin_grace(start, until, Some(&known)));
    assert_eq!(run(&s, start, 0, open(b"o2")).0, Nfs4Status::Grace);
    let sess = session41(&s, start);
    let done = |one_fs: bool| {
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 1))
            .op(opnum::RECLAIM_COMPLETE, move |w| w.bool(one_fs))
    };
    assert_eq!(run(&s, start, 0, done(false)).0, Nfs4Status::Ok);
    assert_eq!(
        run(&s, start, 0, open(b"o3")).0,
        Nfs4Status::Ok,
        "ended early"
    );

    // With a 4.0 client among them (no RECLAIM_COMPLETE there), the period runs out.
    let s = server(false, start);
    let cid = client40(&s, start, b"c");
    let open = |owner: &'static [u8]| create_g(cid, owner);
    let mixed = Reclaimers { v40: 1, ..known };
    assert!(s.begin_grace(start, until, Some(&mixed)));
    let sess = session41(&s, start);
    let done = C::new(1)
        .op(opnum::SEQUENCE, seq(sess, 1))
        .op(opnum::RECLAIM_COMPLETE, |w| w.bool(false));
    assert_eq!(run(&s, start, 0, done).0, Nfs4Status::Ok);
    assert_eq!(run(&s, start, 0, open(b"o4")).0, Nfs4Status::Grace);
    assert_eq!(run(&s, until, 0, open(b"o5")).0, Nfs4Status::Ok);
}

#[test]
fn permissions_and_names() {
    let now = Instant::now();
    let s = server(false, now);
    let cid = client40(&s, now, b"c");
    // root makes a file only root may read.
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(0).op(opnum::PUTROOTFH, |_| {}).op(opnum::OPEN, |w| {
            w.u32(1);
            w.u32(1);
            w.u32(0);
            w.u64(cid);
            w.opaque(b"r");
            w.u32(1);
            w.u32(1); // GUARDED4
            bitmap(w, &[fattr::MODE]);
            w.opaque(&0o600u32.to_be_bytes());
            w.u32(0);
            w.opaque(b"secret");
        }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let (st, _) = run(
        &s,
        now,
        1000,
        C::new(0).op(opnum::PUTROOTFH, |_| {}).op(opnum::OPEN, |w| {
            open_args(w, 1, cid, b"u", 1, false, b"secret")
        }),
    );
    assert_eq!(st, Nfs4Status::Access);
    for (name, want) in [
        (&b""[..], Nfs4Status::Inval),
        (b"..", Nfs4Status::BadName),
        (b"a/b", Nfs4Status::BadName),
        (&[b'x'; 256][..], Nfs4Status::NameTooLong),
        (b"missing", Nfs4Status::NoEnt),
    ] {
        let (st, _) = run(
            &s,
            now,
            0,
            C::new(0)
                .op(opnum::PUTROOTFH, |_| {})
                .op(opnum::LOOKUP, |w| w.opaque(name)),
        );
        assert_eq!(st, want, "{name:?}");
    }
    assert_eq!(
        run(&s, now, 0, C::new(0).op(opnum::GETFH, |_| {})).0,
        Nfs4Status::NoFileHandle
    );
}

#[test]
fn op_limit_and_bad_xdr() {
    let now = Instant::now();
    let s = server(false, now);
    let mut c = C::new(0);
    for _ in 0..100 {
        c = c.op(opnum::PUTROOTFH, |_| {});
    }
    assert_eq!(run(&s, now, 0, c).0, Nfs4Status::Resource);
    let (st, body) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::GETATTR, |w| w.u32(1000)),
    );
    assert_eq!(st, Nfs4Status::BadXdr);
    let mut r = Reader::new(&body);
    assert_eq!(res(&mut r, opnum::PUTROOTFH), Nfs4Status::Ok);
    assert_eq!(res(&mut r, opnum::GETATTR), Nfs4Status::BadXdr);
    let (st, body) = run(&s, now, 0, C::new(0).op(4242, |_| {}));
    assert_eq!(st, Nfs4Status::OpIllegal);
    assert_eq!(
        res(&mut Reader::new(&body), opnum::ILLEGAL),
        Nfs4Status::OpIllegal
    );
}

/// Truncations and bit flips of real requests, and random records: every one gets a
/// protocol-correct answer or none, never a panic.
#[test]
fn malformed_battery() {
    let now = Instant::now();
    let s = server(false, now);
    let cid = client40(&s, now, b"fuzz");
    let samples = vec![
        call(
            1,
            0,
            &C::new(0)
                .op(opnum::PUTROOTFH, |_| {})
                .op(opnum::OPEN, |w| open_args(w, 1, cid, b"o", 3, true, b"f"))
                .op(opnum::GETATTR, |w| bitmap(w, &[0, 1, 3, 4, 33, 36, 55]))
                .bytes(),
        ),
        call(
            1,
            0,
            &C::new(1)
                .op(opnum::EXCHANGE_ID, |w| {
                    w.fixed(b"12345678");
                    w.opaque(b"x");
                    w.u32(0);
                    w.u32(0);
                    w.u32(0);
                })
                .bytes(),
        ),
        call(
            1,
            0,
            &C::new(0)
                .op(opnum::PUTROOTFH, |_| {})
                .op(opnum::READDIR, |w| {
                    w.u64(0);
                    w.fixed(&[0; 8]);
                    w.u32(4096);
                    w.u32(8192);
                    bitmap(w, &[0, 1, 19]);
                })
                .bytes(),
        ),
    ];
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for sample in &samples {
        for cut in 0..sample.len() {
            let out = handle(&s, now, &sample[..cut]);
            if let Some(reply) = out.reply {
                assert!(reply.len() >= 12);
            }
        }
        for _ in 0..2000 {
            let mut m = sample.clone();
            let i = (rand() as usize) % m.len();
            m[i] ^= 1 << (rand() % 8);
            if rand() % 4 == 0 {
                let j = (rand() as usize) % m.len();
                m[j] = 0xff;
            }
            let _ = handle(&s, now, &m);
        }
    }
    for _ in 0..2000 {
        let len = (rand() % 200) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        let _ = handle(&s, now, &junk);
    }
    // Huge lengths in the tag, the op count and an opaque.
    let mut c = call(1, 0, &[]);
    c.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0]);
    let out = handle(&s, now, &c);
    assert_eq!(out.kind, CallKind::Refused, "garbage args");
    let mut c = call(1, 0, &[]);
    c.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
    let out = handle(&s, now, &c);
    assert!(out.reply.is_some());
}

fn open_fh(s: &Server, now: Instant, c: C) -> (Nfs4Status, (u32, [u8; 12])) {
    let (st, body) = run(s, now, 0, c);
    if st != Nfs4Status::Ok {
        return (st, (0, [0; 12]));
    }
    let mut r = Reader::new(&body);
    res(&mut r, opnum::SEQUENCE);
    r.fixed::<16>().unwrap();
    for _ in 0..5 {
        r.u32().unwrap();
    }
    res(&mut r, opnum::PUTROOTFH);
    res(&mut r, opnum::OPEN);
    (st, stateid(&mut r))
}

#[test]
fn v41_exclusive_create_share_deny_downgrade_close() {
    let now = Instant::now();
    let s = server(false, now);
    let sess = session41(&s, now);
    let excl = |n: u32, verf: &'static [u8; 8]| {
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, n))
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::OPEN, move |w| {
                w.u32(0);
                w.u32(3);
                w.u32(0);
                w.u64(0);
                w.opaque(b"x");
                w.u32(1);
                w.u32(3); // EXCLUSIVE4_1
                w.fixed(verf);
                empty_attrs(w);
                w.u32(0);
                w.opaque(b"ex");
            })
    };
    let (st, sid) = open_fh(&s, now, excl(1, b"verf0001"));
    assert_eq!(st, Nfs4Status::Ok);
    // The same verifier again (a retransmitted create) opens the same file; another fails.
    let (st, again) = open_fh(&s, now, excl(2, b"verf0001"));
    assert_eq!((st, again.1), (Nfs4Status::Ok, sid.1));
    assert_eq!(open_fh(&s, now, excl(3, b"verf0002")).0, Nfs4Status::Exist);
    // Another owner asking to deny reads conflicts with the open for read+write.
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 4))
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::OPEN, |w| {
                w.u32(0);
                w.u32(1);
                w.u32(1); // DENY_READ
                w.u64(0);
                w.opaque(b"other");
                w.u32(0);
                w.u32(0);
                w.opaque(b"ex");
            }),
    );
    assert_eq!(st, Nfs4Status::ShareDenied);
    // Downgrade to read only, then a write with that stateid is refused; close.
    let (st, body) = run(
        &s,
        now,
        0,
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 5))
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::LOOKUP, |w| w.opaque(b"ex"))
            .op(opnum::OPEN_DOWNGRADE, move |w| {
                put_stateid(w, (0, sid.1));
                w.u32(0);
                w.u32(1);
                w.u32(0);
            })
            .op(opnum::WRITE, move |w| {
                put_stateid(w, (0, sid.1));
                w.u64(0);
                w.u32(0);
                w.opaque(b"x");
            }),
    );
    assert_eq!(st, Nfs4Status::OpenMode);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::SEQUENCE);
    r.fixed::<16>().unwrap();
    for _ in 0..5 {
        r.u32().unwrap();
    }
    res(&mut r, opnum::PUTROOTFH);
    res(&mut r, opnum::LOOKUP);
    assert_eq!(res(&mut r, opnum::OPEN_DOWNGRADE), Nfs4Status::Ok);
    let (st, body) = run(
        &s,
        now,
        0,
        C::new(1)
            .op(opnum::SEQUENCE, seq(sess, 6))
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::LOOKUP, |w| w.opaque(b"ex"))
            .op(opnum::CLOSE, move |w| {
                w.u32(0);
                put_stateid(w, (0, sid.1));
            }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::SEQUENCE);
    r.fixed::<16>().unwrap();
    for _ in 0..5 {
        r.u32().unwrap();
    }
    res(&mut r, opnum::PUTROOTFH);
    res(&mut r, opnum::LOOKUP);
    res(&mut r, opnum::CLOSE);
    assert_eq!(
        stateid(&mut r),
        (u32::MAX, [0; 12]),
        "4.1 CLOSE: invalid stateid"
    );
    // The session's client cannot be destroyed while the session lives.
    let cid = u64::from_str_radix(&s.clients(now)[0].clientid, 16).unwrap();
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1).op(opnum::DESTROY_CLIENTID, move |w| w.u64(cid)),
    );
    assert_eq!(st, Nfs4Status::ClientIdBusy);
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1).op(opnum::DESTROY_SESSION, move |w| w.fixed(&sess)),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(1).op(opnum::DESTROY_CLIENTID, move |w| w.u64(cid)),
    );
    assert_eq!(st, Nfs4Status::Ok);
    assert!(s.clients(now).is_empty());
}

#[test]
fn verify_nverify_setattr_and_reply_limits() {
    let now = Instant::now();
    let s = server(false, now);
    let size_is = |size: u64| {
        move |w: &mut Writer| {
            bitmap(w, &[fattr::TYPE]);
            let mut v = Writer::new();
            v.u32(if size == 0 { 2 } else { 1 });
            w.opaque(&v.buf);
        }
    };
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::VERIFY, size_is(0)),
    );
    assert_eq!(st, Nfs4Status::Ok, "the root is a directory");
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::VERIFY, size_is(1)),
    );
    assert_eq!(st, Nfs4Status::NotSame);
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::NVERIFY, size_is(0)),
    );
    assert_eq!(st, Nfs4Status::Same);
    // SETATTR answers the attributes it set; a read-only attribute is INVAL with none set.
    let (st, body) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::SETATTR, |w| {
                put_stateid(w, (0, [0; 12]));
                bitmap(w, &[fattr::MODE]);
                w.opaque(&0o755u32.to_be_bytes());
            }),
    );
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTROOTFH);
    res(&mut r, opnum::SETATTR);
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap(), r.u32().unwrap()),
        (2, 0, 2)
    );
    let (st, body) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::SETATTR, |w| {
                put_stateid(w, (0, [0; 12]));
                bitmap(w, &[fattr::FILEID]);
                w.opaque(&7u64.to_be_bytes());
            }),
    );
    assert_eq!(st, Nfs4Status::Inval);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTROOTFH);
    res(&mut r, opnum::SETATTR);
    assert_eq!(r.u32().unwrap(), 0, "empty attrsset");
    // GETATTR of a write-only attribute.
    let (st, _) = run(
        &s,
        now,
        0,
        C::new(0)
            .op(opnum::PUTROOTFH, |_| {})
            .op(opnum::GETATTR, |w| bitmap(w, &[fattr::TIME_MODIFY_SET])),
    );
    assert_eq!(st, Nfs4Status::Inval);
}

/// SETCLIENTID from `peer` (and SETCLIENTID_CONFIRM if `confirm`): the client id, or the
/// status of the first operation that failed.
fn setclientid_from(
    s: &Server,
    now: Instant,
    peer: IpAddr,
    id: &[u8],
    confirm: bool,
) -> Result<u64, Nfs4Status> {
    let (st, body) = run_from(
        s,
        now,
        peer,
        0,
        C::new(0).op(opnum::SETCLIENTID, |w| {
            w.fixed(b"bootverf");
            w.opaque(id);
            w.u32(0x40000000);
            w.opaque(b"tcp");
            w.opaque(b"198.18.0.2.3.4");
            w.u32(1);
        }),
    );
    if st != Nfs4Status::Ok {
        return Err(st);
    }
    let mut r = Reader::new(&body);
    res(&mut r, opnum::SETCLIENTID);
    let clientid = r.u64().unwrap();
    let verifier = r.fixed::<8>().unwrap();
    if !confirm {
        return Ok(clientid);
    }
    let (st, _) = run_from(
        s,
        now,
        peer,
        0,
        C::new(0).op(opnum::SETCLIENTID_CONFIRM, |w| {
            w.u64(clientid);
            w.fixed(&verifier);
        }),
    );
    if st != Nfs4Status::Ok {
        return Err(st);
    }
    Ok(clientid)
}

/// One address making client records by the thousand, confirmed or not, fills only its own
/// share of the table: another address still gets its record.
#[test]
fn a_flood_of_client_records_hurts_only_its_address() {
    let now = Instant::now();
    let s = server(false, now);
    let flooder = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 66));
    let per_addr = Limits::default().max_clients_per_addr;
    let mut refused = 0;
    for i in 0..1100 {
        let id = format!("flood-{i}");
        match setclientid_from(&s, now, flooder, id.as_bytes(), true) {
            Ok(_) => {}
            Err(Nfs4Status::Resource) => refused += 1,
            Err(other) => panic!("record {i}: {other:?}"),
        }
    }
    assert_eq!(
        refused,
        1100 - per_addr,
        "confirmed records beyond the address's share"
    );
    // Unconfirmed records of a full address push out its own, never another's.
    for i in 0..1100 {
        let id = format!("unconfirmed-{i}");
        let st = setclientid_from(&s, now, flooder, id.as_bytes(), false);
        assert_eq!(
            st,
            Err(Nfs4Status::Resource),
            "the flooder's share is all confirmed"
        );
    }
    let node = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 7));
    assert!(setclientid_from(&s, now, node, b"node7", true).is_ok());

    // A second flooder of unconfirmed records only: each new record replaces its oldest.
    let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 67));
    for i in 0..1100 {
        let id = format!("half-{i}");
        assert!(setclientid_from(&s, now, other, id.as_bytes(), false).is_ok());
    }
    let node8 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 8));
    assert!(setclientid_from(&s, now, node8, b"node8", true).is_ok());
}

/// One COMPOUND in session `sess` at slot sequence `n` from `from`: SEQUENCE (its status
/// flags returned), then `ops`; the overall status and a reader after SEQUENCE's result.
fn in_session(
    s: &Server,
    now: Instant,
    from: IpAddr,
    (sess, n): ([u8; 16], u32),
    ops: impl FnOnce(C) -> C,
) -> (Nfs4Status, u32, Vec<u8>) {
    let (st, body) = run_from(
        s,
        now,
        from,
        0,
        ops(C::new(1).op(opnum::SEQUENCE, seq(sess, n))),
    );
    let mut r = Reader::new(&body);
    assert_eq!(res(&mut r, opnum::SEQUENCE), Nfs4Status::Ok);
    r.fixed::<16>().unwrap();
    for _ in 0..4 {
        r.u32().unwrap();
    }
    let flags = r.u32().unwrap();
    (st, flags, r.rest().to_vec())
}

/// OPEN in the session by owner `owner` of `name` at the root (created if `create`),
/// access `access`: the status, the open stateid and the delegation's stateid if granted.
type Sid = (u32, [u8; 12]);
fn open41(
    s: &Server,
    now: Instant,
    from: IpAddr,
    sess: ([u8; 16], u32),
    (owner, access, create, name): (&'static [u8], u32, bool, &'static [u8]),
) -> (Nfs4Status, Option<(Sid, Option<Sid>)>) {
    let (st, _, body) = in_session(s, now, from, sess, |c| {
        c.op(opnum::PUTROOTFH, |_| {}).op(opnum::OPEN, |w| {
            open_args(w, 0, 0, owner, access, create, name)
        })
    });
    if st != Nfs4Status::Ok {
        return (st, None);
    }
    let mut r = Reader::new(&body);
    res(&mut r, opnum::PUTROOTFH);
    res(&mut r, opnum::OPEN);
    let open = stateid(&mut r);
    r.fixed::<20>().unwrap(); // change info
    r.u32().unwrap(); // result flags
    let words = r.u32().unwrap();
    for _ in 0..words {
        r.u32().unwrap();
    }
    let deleg = match r.u32().unwrap() {
        0 => None,
        1 => Some(stateid(&mut r)),
        t => panic!("delegation type {t}"),
    };
    (st, Some((open, deleg)))
}

/// RFC 8881 §10.2, §10.4, §18.46.3: a read delegation goes to a client with a back channel
/// (none to one without); another client's OPEN for writing recalls it over that back
/// channel and gets DELAY until DELEGRETURN; one never returned is revoked a lease after
/// the recall, which the holder hears of in SEQUENCE's flags, TEST_STATEID and READ, until
/// FREE_STATEID.
#[test]
fn v41_read_delegation_recall_return_and_revocation() {
    let now = Instant::now();
    let s = server(false, now);
    let b_addr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
    let a = session41_as(&s, now, (PEER, 1), b"holder", 2);
    let b = session41_as(&s, now, (b_addr, 2), b"writer", 0);
    let (mut an, mut bn) = (0u32, 0u32);
    let next = |n: &mut u32| {
        *n += 1;
        *n
    };
    // The holder creates and opens f for reading: a delegation; the other client (no back
    // channel) opening it for reading gets none.
    let (st, got) = open41(&s, now, PEER, (a, next(&mut an)), (b"a", 1, true, b"f"));
    assert_eq!(st, Nfs4Status::Ok);
    let deleg = got.unwrap().1.expect("a read delegation");
    let (st, got) = open41(&s, now, b_addr, (b, next(&mut bn)), (b"b", 1, false, b"f"));
    assert_eq!((st, got.unwrap().1), (Nfs4Status::Ok, None));
    // The holder reads under the delegation.
    let (st, _, _) = in_session(&s, now, PEER, (a, next(&mut an)), |c| {
        c.op(opnum::PUTROOTFH, |_| {})
            .op(opnum::LOOKUP, |w| w.opaque(b"f"))
            .op(opnum::READ, |w| {
                put_stateid(w, deleg);
                w.u64(0);
                w.u32(10);
            })
    });
    assert_eq!(st, Nfs4Status::Ok);
    assert!(s.poll_callback().is_none(), "no callback before a conflict");
    // Opening for writing conflicts: DELAY, and a CB_RECALL on the holder's connection.
    let write_f = |n| open41(&s, now, b_addr, (b, n), (b"b", 2, false, b"f")).0;
    assert_eq!(write_f(next(&mut bn)), Nfs4Status::Delay);
    let job = s.poll_callback().expect("a recall");
    assert_eq!(job.recall.as_ref().map(|r| r.stateid.other), Some(deleg.1));
    let CbRoute::V41 { conn, seq, .. } = &job.route else {
        panic!("{job:?}")
    };
    assert_eq!((*conn, seq.session, seq.sequence), (1, a, 1));
    assert!(s.poll_callback().is_none(), "one recall at a time");
    assert_eq!(write_f(next(&mut bn)), Nfs4Status::Delay);
    s.callback_done(&job, CbResult::Ok);
    assert!(s.poll_callback().is_none(), "the recall was answered");
    // DELEGRETURN of the current file: the conflicting OPEN now succeeds.
    let (st, _, _) = in_session(&s, now, PEER, (a, next(&mut an)), |c| {
        c.op(opnum::PUTROOTFH, |_| {})
            .op(opnum::LOOKUP, |w| w.opaque(b"f"))
            .op(opnum::DELEGRETURN, |w| put_stateid(w, deleg))
    });
    assert_eq!(st, Nfs4Status::Ok);
    assert_eq!(write_f(next(&mut bn)), Nfs4Status::Ok);

    // A second file, whose holder does not answer: the back channel is down (SEQUENCE
    // says so), and a lease after the recall the delegation is revoked.
    let (st, got) = open41(&s, now, PEER, (a, next(&mut an)), (b"a", 1, true, b"g"));
    assert_eq!(st, Nfs4Status::Ok);
    let deleg = got.unwrap().1.expect("a read delegation of g");
    let t1 = now + Duration::from_secs(20);
    let write_g = |t, n| open41(&s, t, b_addr, (b, n), (b"b", 2, false, b"g")).0;
    assert_eq!(write_g(t1, next(&mut bn)), Nfs4Status::Delay);
    let job = s.poll_callback().expect("a recall of g");
    s.callback_done(&job, CbResult::Unreachable);
    assert!(s.poll_callback().is_none(), "no back channel to call on");
    let t2 = now + Duration::from_secs(25);
    let (_, flags, _) = in_session(&s, t2, PEER, (a, next(&mut an)), |c| c);
    assert_eq!(flags, 0x200 | 0x1, "CB_PATH_DOWN_SESSION and CB_PATH_DOWN");
    assert_eq!(write_g(t2, next(&mut bn)), Nfs4Status::Delay);
    let t3 = now + Duration::from_secs(51);
    assert_eq!(s.handle_timeout(t3).revoked, 1);
    assert_eq!(write_g(t3, next(&mut bn)), Nfs4Status::Ok);
    let (_, flags, _) = in_session(&s, t3, PEER, (a, next(&mut an)), |c| c);
    assert_eq!(flags & 0x40, 0x40, "RECALLABLE_STATE_REVOKED");
    let (st, _, body) = in_session(&s, t3, PEER, (a, next(&mut an)), |c| {
        c.op(opnum::TEST_STATEID, |w| {
            w.u32(1);
            put_stateid(w, deleg);
        })
    });
    assert_eq!(st, Nfs4Status::Ok);
    let mut r = Reader::new(&body);
    res(&mut r, opnum::TEST_STATEID);
    assert_eq!(
        (r.u32().unwrap(), status(r.u32().unwrap())),
        (1, Nfs4Status::DelegRevoked)
    );
    let (st, _, _) = in_session(&s, t3, PEER, (a, next(&mut an)), |c| {
        c.op(opnum::FREE_STATEID, |w| put_stateid(w, deleg))
    });
    assert_eq!(st, Nfs4Status::Ok);
    let (_, flags, _) = in_session(&s, t3, PEER, (a, next(&mut an)), |c| c);
    assert_eq!(flags & 0x40, 0, "freed");
}

/// RFC 7530 §16.33, §3.3.5 of the threat model: a confirmed 4.0 client's callback is
/// probed with CB_NULL before any delegation, and only at the client's own address.
#[test]
fn v40_callbacks_are_probed_and_only_at_the_clients_address() {
    let now = Instant::now();
    let s = server(false, now);
    let cid = client40(&s, now, b"c40");
    let job = s.poll_callback().expect("a CB_NULL probe");
    assert_eq!(job.client, cid);
    assert!(job.recall.is_none());
    let CbRoute::V40(to) = job.route else {
        panic!("{job:?}")
    };
    assert_eq!(
        (to.addr, to.program, to.ident),
        ("198.18.0.2:772".parse().unwrap(), 0x4000_0000, 1)
    );
    s.callback_done(&job, CbResult::Ok);
    // A client naming 198.18.0.2 as its callback from another address is not called.
    let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9));
    assert!(setclientid_from(&s, now, other, b"elsewhere", true).is_ok());
    assert!(s.poll_callback().is_none());
}

/// RFC 8881 §18.36.3: channel attributes too small for this server's messages, for
/// SEQUENCE and one operation, or without a slot are TOOSMALL, never enlarged; the back
/// channel's count only when the client asks for one.
#[test]
fn create_session_refuses_channels_too_small() {
    let now = Instant::now();
    let s = server(false, now);
    let (clientid, seq) = exchange_id(&s, now, (PEER, 1), b"small channels");
    // (request, response, ops, slots) of each channel.
    let create = |flags: u32, fore: [u32; 4], back: [u32; 4]| {
        let attrs = |w: &mut Writer, a: [u32; 4]| {
            w.u32(0);
            w.u32(a[0]);
            w.u32(a[1]);
            w.u32(4096);
            w.u32(a[2]);
            w.u32(a[3]);
            w.u32(0);
        };
        run(
            &s,
            now,
            0,
            C::new(1).op(opnum::CREATE_SESSION, |w| {
                w.u64(clientid);
                w.u32(seq);
                w.u32(flags);
                attrs(w, fore);
                attrs(w, back);
                w.u32(0x40000000);
                w.u32(1);
                w.u32(0);
            }),
        )
        .0
    };
    let good = [1 << 20, 1 << 20, 8, 4];
    for fore in [
        [1023, 1 << 20, 8, 4],
        [1 << 20, 512, 8, 4],
        [1 << 20, 1 << 20, 1, 4],
        [1 << 20, 1 << 20, 8, 0],
    ] {
        assert_eq!(create(0, fore, good), Nfs4Status::TooSmall, "{fore:?}");
    }
    for back in [[4096, 4096, 1, 1], [4096, 4096, 2, 0], [512, 4096, 2, 1]] {
        assert_eq!(create(2, good, back), Nfs4Status::TooSmall, "{back:?}");
    }
    // Without a back channel its attributes do not matter.
    assert_eq!(create(0, good, [0, 0, 0, 0]), Nfs4Status::Ok);
}
