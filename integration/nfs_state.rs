//! drover's NFSv4 state rules through the real binary over TCP on loopback, one test per
//! RFC section: NFSv4.0 open- and lock-owner seqids and their replay cache (RFC 7530 §9.1.7
//! and the operations of §16), SETCLIENTID and SETCLIENTID_CONFIRM (§16.33, §16.34),
//! stateid and client id checks and lease expiry (§9.1.4, §9.6), byte-range locks (§9.2,
//! §16.10-16.12), and the NFSv4.1 client and session operations (RFC 8881 §18.35, §18.36,
//! §18.50, §18.51, §16.2.3.1.2).
//!
//! Each test starts `drover serve` on `lo` with an export `t` (read-write, open to
//! 127.0.0.0/29) and speaks COMPOUNDs with the small client of `common::nfs4`. Needs root
//! (the export's files are made as root and handed to the tests' user); fails otherwise.

mod common;

use common::nfs4::*;
use common::*;
use std::net::SocketAddr;
use std::path::PathBuf;

struct Server {
    /// Keeps the server running for the test.
    _drover: Drover,
    addr: SocketAddr,
    export: PathBuf,
}

/// `drover serve` with a lease of `lease_secs` seconds and the export `t`, a directory
/// everyone may write.
fn serve(lease_secs: u64) -> Server {
    serve_with(&format!("lease-secs = {lease_secs}\n"))
}

/// `drover serve` with `nfs` (more keys of `[nfs]`) and the export `t`.
fn serve_with(nfs: &str) -> Server {
    require_root();
    let mut drover = Drover::new();
    let export = drover.scratch().join("export");
    export_open_dir(&drover, "t", &export, "127.0.0.0/29");
    let port = common::api::free_port();
    let section = format!("[nfs]\nenabled = true\nport = {port}\ngrace-secs = 0\n{nfs}");
    drover.serve_with(None, "lo", &config_only(&[], &section));
    Server {
        _drover: drover,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        export,
    }
}

fn user() -> Cred {
    Cred::user(1000, 1000, &[])
}

/// `id` with its last byte changed: a stateid this server never issued (BAD_STATEID).
fn bad(id: &[u8; 16]) -> [u8; 16] {
    let mut b = *id;
    b[15] ^= 0x5a;
    b
}

/// `id` with the boot epoch in its `other` field changed: a stateid of another server
/// instance (STALE_STATEID).
fn stale(id: &[u8; 16]) -> [u8; 16] {
    let mut b = *id;
    b[4] ^= 0x5a;
    b
}

/// The seqid field of a stateid.
fn seqid_of(id: &[u8; 16]) -> u32 {
    u32::from_be_bytes([id[0], id[1], id[2], id[3]])
}

/// A connection and a confirmed 4.0 client with an open (confirmed) of `/t/NAME` by owner
/// `owner`: the file's handle, the client id and the open stateid; the owner's next seqid
/// is 2.
struct Opened {
    c: Client,
    clientid: u64,
    fh: Vec<u8>,
    open: [u8; 16],
}

fn open_confirmed(s: &Server, id: &str, owner: &str, name: &str) -> Opened {
    let mut c = Client::connect(s.addr, None).expect("connect");
    let clientid = c.client40(&user(), id, *b"verifier");
    let r = c
        .compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(clientid, owner, 0, 3, 0, name, true)
                .getfh(),
        )
        .expect("open");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let fh = r.body(OP_GETFH).to_vec();
    let r = c
        .compound(
            0,
            &user(),
            Ops::new().putfh(&fh).open_confirm(&r.stateid(OP_OPEN), 1),
        )
        .expect("open_confirm");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let open = r.stateid(OP_OPEN_CONFIRM);
    Opened {
        c,
        clientid,
        fh,
        open,
    }
}

/// [`open_confirmed`] of `/t/f` by owner "o1", and a write lock of `[0, length)` by the new
/// lock owner "l1" (whose next seqid is 1): its stateid.
fn open_locked(s: &Server, id: &str, length: u64) -> (Opened, [u8; 16]) {
    let mut o = open_confirmed(s, id, "o1", "f");
    let (cid, open) = (o.clientid, o.open);
    let r = o.on_file(|x| x.lock_new(true, 0, length, 2, &open, 0, cid, "l1"));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let lock = r.stateid(OP_LOCK);
    (o, lock)
}

impl Opened {
    /// PUTFH of the file, then what `ops` adds.
    fn on_file(&mut self, ops: impl FnOnce(Ops) -> Ops) -> Reply {
        let fh = self.fh.clone();
        self.c
            .compound(0, &user(), ops(Ops::new().putfh(&fh)))
            .expect("compound")
    }
}

/// RFC 7530 §9.1.7 and §16.16/16.18/16.20/16.2: the open owner's last reply is replayed
/// for its seqid again (OPEN, OPEN_CONFIRM, OPEN_DOWNGRADE, CLOSE), without running the
/// operation again; a seqid neither the last nor the next is BAD_SEQID; errors move the
/// seqid on (and are replayed) except BAD_SEQID, BAD_STATEID and STALE_STATEID.
#[test]
fn v40_open_owner_seqids_and_replays() {
    let s = serve(30);
    let mut c = Client::connect(s.addr, None).expect("connect");
    let cid = c.client40(&user(), "seqid-client", *b"verifier");
    let open_g = |c: &mut Client| {
        c.compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(cid, "o-g", 7, 3, 0, "g", true)
                .getfh(),
        )
        .expect("open g")
    };
    // OPEN replayed: the file it created is gone, and the retransmission neither makes it
    // again nor moves the stateid on.
    let first = open_g(&mut c);
    assert_eq!(first.status, NFS4_OK, "{first:?}");
    std::fs::remove_file(s.export.join("g")).expect("remove g");
    let again = open_g(&mut c);
    assert_eq!(again.status, NFS4_OK, "{again:?}");
    assert_eq!(again.stateid(OP_OPEN), first.stateid(OP_OPEN));
    assert!(!s.export.join("g").exists(), "the replayed OPEN ran again");

    let mut o = open_confirmed(&s, "seqid-client-2", "o1", "f");
    assert_eq!(seqid_of(&o.open), 2);
    // OPEN_CONFIRM replayed: the same confirmed stateid, although the OPEN's stateid it
    // names is now old.
    let opened =
        o.c.compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(o.clientid, "o2", 0, 1, 0, "f", false),
        )
        .expect("open");
    assert_eq!(opened.status, NFS4_OK, "{opened:?}");
    let confirm = |o: &mut Opened| o.on_file(|x| x.open_confirm(&opened.stateid(OP_OPEN), 1));
    let confirmed = confirm(&mut o);
    assert_eq!(confirmed.status, NFS4_OK, "{confirmed:?}");
    let replayed = confirm(&mut o);
    assert_eq!(replayed.results, confirmed.results);

    // A seqid ahead of the next one, or behind the last, is BAD_SEQID and consumes nothing.
    let open = o.open;
    for seqid in [3, 9, 0] {
        let r = o.on_file(|x| x.close(seqid, &open));
        assert_eq!(r.last_status(), NFS4ERR_BAD_SEQID, "seqid {seqid}: {r:?}");
    }
    // OPEN_DOWNGRADE to no access is INVAL: seqid 2 is consumed, its error replayed.
    let r = o.on_file(|x| x.open_downgrade(&open, 2, 0, 0));
    assert_eq!(r.last_status(), NFS4ERR_INVAL, "{r:?}");
    let r = o.on_file(|x| x.open_downgrade(&open, 2, 1, 0));
    assert_eq!(
        r.last_status(),
        NFS4ERR_INVAL,
        "seqid 2 again is a replay of the INVAL: {r:?}"
    );
    let down = o.on_file(|x| x.open_downgrade(&open, 3, 1, 0));
    assert_eq!(down.status, NFS4_OK, "{down:?}");
    let down_id = down.stateid(OP_OPEN_DOWNGRADE);
    assert_eq!(seqid_of(&down_id), 3);
    let replayed = o.on_file(|x| x.open_downgrade(&open, 3, 1, 0));
    assert_eq!(replayed.results, down.results, "OPEN_DOWNGRADE replayed");

    // An old stateid is OLD_STATEID, which consumes seqid 4; a bad and a stale one consume
    // nothing, so seqid 5 is next.
    let r = o.on_file(|x| x.close(4, &open));
    assert_eq!(r.last_status(), NFS4ERR_OLD_STATEID, "{r:?}");
    let r = o.on_file(|x| x.close(5, &bad(&down_id)));
    assert_eq!(r.last_status(), NFS4ERR_BAD_STATEID, "{r:?}");
    let r = o.on_file(|x| x.close(5, &stale(&down_id)));
    assert_eq!(r.last_status(), NFS4ERR_STALE_STATEID, "{r:?}");
    let closed = o.on_file(|x| x.close(5, &down_id));
    assert_eq!(closed.status, NFS4_OK, "{closed:?}");
    // CLOSE replayed: its stateid is gone, yet the retransmission gets the same answer;
    // the next seqid with it finds no open.
    let replayed = o.on_file(|x| x.close(5, &down_id));
    assert_eq!(replayed.results, closed.results, "CLOSE replayed");
    let r = o.on_file(|x| x.close(6, &down_id));
    assert_eq!(r.last_status(), NFS4ERR_BAD_STATEID, "{r:?}");
}

/// RFC 7530 §9.1.7, §16.10 and §16.12: LOCK (new and existing lock owner) and LOCKU
/// replayed from the cache without running again; a lock owner's bad seqid; OLD_STATEID
/// consumes the lock owner's seqid.
#[test]
fn v40_lock_owner_seqids_and_replays() {
    let s = serve(30);
    let (mut o, l1) = open_locked(&s, "lock-client", 100);
    let (cid, open) = (o.clientid, o.open);
    // The open owner's seqid 2 again: the LOCK's reply from the open owner's cache (run
    // again, it would have moved the lock stateid on).
    let again = o.on_file(|x| x.lock_new(true, 0, 100, 2, &open, 0, cid, "l1"));
    assert_eq!(again.status, NFS4_OK, "{again:?}");
    assert_eq!(again.stateid(OP_LOCK), l1, "LOCK (new owner) replayed");

    let second = o.on_file(|x| x.lock(true, 200, 100, &l1, 1));
    assert_eq!(second.status, NFS4_OK, "{second:?}");
    let l2 = second.stateid(OP_LOCK);
    assert_eq!(seqid_of(&l2), seqid_of(&l1) + 1);
    let again = o.on_file(|x| x.lock(true, 200, 100, &l1, 1));
    assert_eq!(
        again.results, second.results,
        "LOCK (existing owner) replayed"
    );

    let unlocked = o.on_file(|x| x.locku(2, &l2, 0, 50));
    assert_eq!(unlocked.status, NFS4_OK, "{unlocked:?}");
    let l3 = unlocked.stateid(OP_LOCKU);
    let again = o.on_file(|x| x.locku(2, &l2, 0, 50));
    assert_eq!(again.results, unlocked.results, "LOCKU replayed");
    let r = o.on_file(|x| x.locku(7, &l3, 0, 50));
    assert_eq!(r.last_status(), NFS4ERR_BAD_SEQID, "{r:?}");

    // An old lock stateid consumes seqid 3: 3 again replays OLD_STATEID, 4 works.
    let r = o.on_file(|x| x.lock(true, 400, 10, &l1, 3));
    assert_eq!(r.last_status(), NFS4ERR_OLD_STATEID, "{r:?}");
    let r = o.on_file(|x| x.locku(3, &l3, 50, 50));
    assert_eq!(
        r.last_status(),
        NFS4ERR_OLD_STATEID,
        "seqid 3 again is a replay: {r:?}"
    );
    let r = o.on_file(|x| x.locku(4, &l3, 50, 50));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    // The file still holds the lock on 200..300: CLOSE refuses with LOCKS_HELD.
    let r = o.on_file(|x| x.close(3, &open));
    assert_eq!(r.last_status(), NFS4ERR_LOCKS_HELD, "{r:?}");
}

/// SETCLIENTID as `cred`: its client id and confirm verifier, or its status.
fn setclientid(
    c: &mut Client,
    cred: &Cred,
    id: &str,
    verf: &[u8; 8],
) -> Result<(u64, [u8; 8]), u32> {
    let r = c
        .compound(0, cred, Ops::new().setclientid_verf(id, *verf))
        .expect("SETCLIENTID");
    if r.status != NFS4_OK {
        return Err(r.status);
    }
    let b = r.body(OP_SETCLIENTID);
    Ok((
        u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
        b[8..16].try_into().expect("8 bytes"),
    ))
}

/// A connection, and two principals to use on it: root and another user.
fn two_principals(s: &Server) -> (Client, Cred, Cred) {
    let c = Client::connect(s.addr, None).expect("connect");
    (c, Cred::user(0, 0, &[]), Cred::user(4321, 4321, &[]))
}

/// One single-operation COMPOUND's status.
fn status(c: &mut Client, cred: &Cred, ops: Ops) -> u32 {
    c.compound(0, cred, ops).expect("compound").status
}

/// RFC 7530 §16.33.5 and §16.34.5: a new client is unusable until confirmed; a wrong
/// confirm verifier or client id is STALE_CLIENTID and a retransmitted confirm succeeds;
/// another principal presenting the same client owner gets CLID_INUSE; SETCLIENTID with
/// the confirmed record's verifier is a callback update (same client id, new confirm
/// verifier); a new verifier replaces an unconfirmed record; and a rebooted client's
/// confirm drops its old record with the state it held.
#[test]
fn v40_setclientid_and_confirm_cases() {
    let s = serve(30);
    let (mut c, root, other) = two_principals(&s);
    let (x1, c1) = setclientid(&mut c, &root, "sc", b"boot-one").expect("new client");
    assert_eq!(
        status(&mut c, &root, Ops::new().renew(x1)),
        NFS4ERR_STALE_CLIENTID
    );
    let mut wrong = c1;
    wrong[7] ^= 1;
    let confirm = |x, v| Ops::new().setclientid_confirm(x, v);
    assert_eq!(
        status(&mut c, &root, confirm(x1, wrong)),
        NFS4ERR_STALE_CLIENTID
    );
    assert_eq!(
        status(&mut c, &root, confirm(x1 ^ 0xff, c1)),
        NFS4ERR_STALE_CLIENTID
    );
    assert_eq!(status(&mut c, &other, confirm(x1, c1)), NFS4ERR_CLID_INUSE);
    assert_eq!(status(&mut c, &root, confirm(x1, c1)), NFS4_OK);
    assert_eq!(
        status(&mut c, &root, confirm(x1, c1)),
        NFS4_OK,
        "retransmitted"
    );
    assert_eq!(status(&mut c, &root, Ops::new().renew(x1)), NFS4_OK);

    // The same owner from another principal while the lease runs.
    assert_eq!(
        setclientid(&mut c, &other, "sc", b"boot-one"),
        Err(NFS4ERR_CLID_INUSE)
    );

    // A callback update: the same client id, a new confirm verifier; the old one no longer
    // confirms once the update is.
    let (x, c2) = setclientid(&mut c, &root, "sc", b"boot-one").expect("update");
    assert_eq!(x, x1);
    assert_ne!(c2, c1);
    assert_eq!(status(&mut c, &root, Ops::new().renew(x1)), NFS4_OK);
    assert_eq!(status(&mut c, &root, confirm(x1, c2)), NFS4_OK);
    assert_eq!(
        status(&mut c, &root, confirm(x1, c1)),
        NFS4ERR_STALE_CLIENTID
    );

    // State of the first boot.
    let r = c
        .compound(
            0,
            &root,
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(x1, "o", 0, 3, 0, "f", true)
                .getfh(),
        )
        .expect("open");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let (fh, open) = (r.body(OP_GETFH).to_vec(), r.stateid(OP_OPEN));
    let r = c
        .compound(0, &root, Ops::new().putfh(&fh).open_confirm(&open, 1))
        .expect("confirm open");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let open = r.stateid(OP_OPEN_CONFIRM);

    // The client reboots (a new verifier): a new unconfirmed record, replaced by the next
    // SETCLIENTID with yet another verifier; the confirmed record keeps its state meanwhile.
    let (x2, c3) = setclientid(&mut c, &root, "sc", b"boot-two").expect("reboot");
    assert_ne!(x2, x1);
    let (x3, c4) = setclientid(&mut c, &root, "sc", b"boot-3!!").expect("reboot again");
    assert_ne!(x3, x2);
    assert_eq!(
        status(&mut c, &root, confirm(x2, c3)),
        NFS4ERR_STALE_CLIENTID
    );
    assert_eq!(status(&mut c, &root, Ops::new().renew(x1)), NFS4_OK);
    assert_eq!(status(&mut c, &root, confirm(x3, c4)), NFS4_OK);
    // Confirmed, the new record replaces the old one and its open.
    assert_eq!(
        status(&mut c, &root, Ops::new().renew(x1)),
        NFS4ERR_STALE_CLIENTID
    );
    assert_eq!(status(&mut c, &root, Ops::new().renew(x3)), NFS4_OK);
    let r = c
        .compound(0, &root, Ops::new().putfh(&fh).close(2, &open))
        .expect("close");
    assert_eq!(r.last_status(), NFS4ERR_BAD_STATEID, "{r:?}");
}

/// `clientid` with the boot epoch in its upper half changed: a client id of another server
/// instance.
fn stale_clientid(clientid: u64) -> u64 {
    clientid ^ (0x5a << 32)
}

/// RFC 7530 §9.1.4 and §9.6: a stateid of another server instance is STALE_STATEID on
/// every operation taking one, a made-up one BAD_STATEID, an old one OLD_STATEID; a client
/// id of another instance is STALE_CLIENTID (RENEW, OPEN, LOCK, LOCKT,
/// SETCLIENTID_CONFIRM). Once the lease ran out unrenewed (the server runs with a lease of
/// 10 s), the client's id and stateids are EXPIRED on RENEW, OPEN, LOCKT, READ, CLOSE and
/// LOCKU.
#[test]
fn v40_stateid_and_clientid_checks_and_lease_expiry() {
    let s = serve(10);
    let (mut o, lock) = open_locked(&s, "lease-client", 10);
    let (cid, open) = (o.clientid, o.open);

    let stale_open = stale(&open);
    let stale_lock = stale(&lock);
    type Build = Box<dyn Fn(Ops) -> Ops>;
    let stale_stateid_ops: Vec<(&str, Build)> = vec![
        ("CLOSE", Box::new(move |x| x.close(3, &stale_open))),
        (
            "OPEN_DOWNGRADE",
            Box::new(move |x| x.open_downgrade(&stale_open, 3, 1, 0)),
        ),
        (
            "OPEN_CONFIRM",
            Box::new(move |x| x.open_confirm(&stale_open, 3)),
        ),
        (
            "LOCK",
            Box::new(move |x| x.lock(true, 20, 5, &stale_lock, 1)),
        ),
        ("LOCKU", Box::new(move |x| x.locku(1, &stale_lock, 0, 5))),
        ("READ", Box::new(move |x| x.read_as(&stale_open, 0, 10))),
    ];
    for (name, build) in &stale_stateid_ops {
        let r = o.on_file(build);
        assert_eq!(r.last_status(), NFS4ERR_STALE_STATEID, "{name}: {r:?}");
    }
    let r = o.on_file(|x| x.read_as(&bad(&open), 0, 10));
    assert_eq!(r.last_status(), NFS4ERR_BAD_STATEID, "{r:?}");
    let mut old = open;
    old[3] -= 1;
    let r = o.on_file(|x| x.read_as(&old, 0, 10));
    assert_eq!(r.last_status(), NFS4ERR_OLD_STATEID, "{r:?}");

    let gone = stale_clientid(cid);
    let user = user();
    assert_eq!(
        status(&mut o.c, &user, Ops::new().renew(gone)),
        NFS4ERR_STALE_CLIENTID
    );
    assert_eq!(
        status(
            &mut o.c,
            &user,
            Ops::new().setclientid_confirm(gone, [0; 8])
        ),
        NFS4ERR_STALE_CLIENTID
    );
    let stale_clientid_ops: Vec<(&str, Build)> = vec![
        (
            "OPEN",
            Box::new(move |x| x.open40(gone, "o9", 0, 1, 0, "f", false)),
        ),
        ("LOCKT", Box::new(move |x| x.lockt(true, 0, 5, gone, "l9"))),
        (
            "LOCK",
            Box::new(move |x| x.lock_new(true, 20, 5, 2, &open, 0, gone, "l9")),
        ),
    ];
    for (name, build) in &stale_clientid_ops {
        let r = if *name == "OPEN" {
            o.c.compound(0, &user, build(Ops::new().putrootfh().lookup("t")))
                .expect("open")
        } else {
            o.on_file(build)
        };
        assert_eq!(r.last_status(), NFS4ERR_STALE_CLIENTID, "{name}: {r:?}");
    }
    // Still good before the lease runs out.
    assert_eq!(status(&mut o.c, &user, Ops::new().renew(cid)), NFS4_OK);
    let r = o.on_file(|x| x.read_as(&open, 0, 10));
    assert_eq!(r.status, NFS4_OK, "{r:?}");

    // No renewal for longer than the lease (and the server's one-second expiry tick).
    std::thread::sleep(std::time::Duration::from_secs(13));
    assert_eq!(
        status(&mut o.c, &user, Ops::new().renew(cid)),
        NFS4ERR_EXPIRED
    );
    let expired_ops: Vec<(&str, Build)> = vec![
        ("READ", Box::new(move |x| x.read_as(&open, 0, 10))),
        ("CLOSE", Box::new(move |x| x.close(3, &open))),
        ("LOCKU", Box::new(move |x| x.locku(1, &lock, 0, 10))),
        ("LOCKT", Box::new(move |x| x.lockt(true, 0, 5, cid, "l9"))),
    ];
    for (name, build) in &expired_ops {
        let r = o.on_file(build);
        assert_eq!(r.last_status(), NFS4ERR_EXPIRED, "{name}: {r:?}");
    }
    let r =
        o.c.compound(
            0,
            &user,
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(cid, "o1", 3, 1, 0, "f", false),
        )
        .expect("open");
    assert_eq!(r.last_status(), NFS4ERR_EXPIRED, "{r:?}");
}

/// A LOCK4denied body: offset, length, whether a write lock, the owner's client id and name.
fn denied(r: &Reply, op: u32) -> (u64, u64, bool, u64, Vec<u8>) {
    let b = r.body(op);
    let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let kind = u32::from_be_bytes(b[16..20].try_into().expect("4 bytes"));
    (
        u64_at(0),
        u64_at(8),
        kind == 2,
        u64_at(20),
        b[28..].to_vec(),
    )
}

/// RFC 7530 §9.2, §16.10-16.12 (RFC 8881 §18.10-18.12 alike): one owner's adjacent and
/// overlapping ranges merge into one lock, unlocking the middle splits it, and LOCKT and a
/// conflicting LOCK answer DENIED with the conflicting range, its type and its owner.
#[test]
fn byte_range_locks_merge_split_and_report_conflicts() {
    let s = serve(30);
    let (mut o, mut l) = open_locked(&s, "ranges", 100);
    let cid = o.clientid;
    let mut seq = 1;
    let mut step = |o: &mut Opened, ops: &dyn Fn(Ops, &[u8; 16], u32) -> Ops| {
        let r = o.on_file(|x| ops(x, &l, seq));
        assert_eq!(r.status, NFS4_OK, "{r:?}");
        l = r.stateid(r.results.last().expect("a result").op);
        seq += 1;
    };
    // Adjacent (100..200) and overlapping (150..250) write locks: one range 0..250.
    step(&mut o, &|x, l, q| x.lock(true, 100, 100, l, q));
    step(&mut o, &|x, l, q| x.lock(true, 150, 100, l, q));
    let mut other = Client::connect(s.addr, None).expect("connect");
    let cid2 = other.client40(&user(), "ranges-2", *b"verifier");
    let fh = o.fh.clone();
    let mut lockt = |offset, length| {
        other
            .compound(
                0,
                &user(),
                Ops::new()
                    .putfh(&fh)
                    .lockt(false, offset, length, cid2, "them"),
            )
            .expect("lockt")
    };
    let r = lockt(240, 1);
    assert_eq!(r.last_status(), NFS4ERR_DENIED, "{r:?}");
    assert_eq!(denied(&r, OP_LOCKT), (0, 250, true, cid, b"l1".to_vec()));
    // Unlocking the middle (50..200) leaves 0..50 and 200..250.
    step(&mut o, &|x, l, q| x.locku(q, l, 50, 150));
    assert_eq!(lockt(50, 150).status, NFS4_OK);
    let r = lockt(10, 1);
    assert_eq!(denied(&r, OP_LOCKT), (0, 50, true, cid, b"l1".to_vec()));
    let r = lockt(199, 2);
    assert_eq!(denied(&r, OP_LOCKT), (200, 50, true, cid, b"l1".to_vec()));
    // A lock to the end of the file, adjacent to 200..250, merges with it: the length of
    // "to the end" is all ones.
    step(&mut o, &|x, l, q| x.lock(true, 250, u64::MAX, l, q));
    let r = lockt(1 << 40, 1);
    assert_eq!(
        denied(&r, OP_LOCKT),
        (200, u64::MAX, true, cid, b"l1".to_vec())
    );
    // The other client's LOCK is denied the same way.
    let r = other
        .compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(cid2, "o2", 0, 3, 0, "f", false),
        )
        .expect("open");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let open2 = r.stateid(OP_OPEN);
    let r = other
        .compound(0, &user(), Ops::new().putfh(&fh).open_confirm(&open2, 1))
        .expect("confirm");
    let open2 = r.stateid(OP_OPEN_CONFIRM);
    let r = other
        .compound(
            0,
            &user(),
            Ops::new()
                .putfh(&fh)
                .lock_new(false, 20, 10, 2, &open2, 0, cid2, "them"),
        )
        .expect("lock");
    assert_eq!(r.last_status(), NFS4ERR_DENIED, "{r:?}");
    assert_eq!(denied(&r, OP_LOCK), (0, 50, true, cid, b"l1".to_vec()));
}

const EXCHGID4_FLAG_CONFIRMED_R: u32 = 0x8000_0000;
const EXCHGID4_FLAG_UPD_CONFIRMED_REC_A: u32 = 0x4000_0000;

/// EXCHANGE_ID (minor version 1) as `cred`: client id, sequence and flags, or the status.
fn exchange_id(
    c: &mut Client,
    cred: &Cred,
    owner: &str,
    verf: &[u8; 8],
    flags: u32,
) -> Result<(u64, u32, u32), u32> {
    let r = c
        .compound(
            1,
            cred,
            Ops::new().with(OP_EXCHANGE_ID, |s| {
                s.fixed(verf);
                s.opaque(owner.as_bytes());
                s.u32(flags);
                s.u32(0); // SP4_NONE
                s.u32(0); // no implementation id
            }),
        )
        .expect("EXCHANGE_ID");
    if r.status != NFS4_OK {
        return Err(r.status);
    }
    let b = r.body(OP_EXCHANGE_ID);
    let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Ok((
        u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
        u32_at(8),
        u32_at(12),
    ))
}

/// CREATE_SESSION (minor version 1) as `cred` with fore channel requests and replies of up
/// to `max_size` bytes: the session id, or the status.
fn create_session(
    c: &mut Client,
    cred: &Cred,
    clientid: u64,
    sequence: u32,
    flags: u32,
    max_size: u32,
) -> Result<[u8; 16], u32> {
    let r = c
        .compound(
            1,
            cred,
            Ops::new().with(OP_CREATE_SESSION, |s| {
                s.u64(clientid);
                s.u32(sequence);
                s.u32(flags);
                for size in [max_size, 1 << 20] {
                    for v in [0, size, size, 16 << 10, 16, 1, 0] {
                        s.u32(v);
                    }
                }
                s.u32(0x4000_0000); // callback program
                s.u32(1);
                s.u32(0); // AUTH_NONE
            }),
        )
        .expect("CREATE_SESSION");
    if r.status != NFS4_OK {
        return Err(r.status);
    }
    Ok(r.body(OP_CREATE_SESSION).try_into().expect("16 bytes"))
}

/// RFC 8881 §18.35 and §18.36: EXCHANGE_ID refuses undefined and reply-only flags (INVAL)
/// and goes through the record cases of §18.35.5 (update of no record, of another
/// verifier, by another principal; the same client again; another principal's collision;
/// a restart, confirmed by CREATE_SESSION); CREATE_SESSION checks the principal, its
/// sequence, its flags and the channel sizes, and answers a retransmission from its cache.
#[test]
fn v41_exchange_id_and_create_session_cases() {
    let s = serve(30);
    let (mut c, root, other) = two_principals(&s);
    for bad_flags in [0xf0f0_f0f0, 0x8, EXCHGID4_FLAG_CONFIRMED_R] {
        assert_eq!(
            exchange_id(&mut c, &root, "e", b"verifier", bad_flags),
            Err(NFS4ERR_INVAL),
            "flags {bad_flags:#x}"
        );
    }
    assert_eq!(
        exchange_id(
            &mut c,
            &root,
            "e",
            b"verifier",
            EXCHGID4_FLAG_UPD_CONFIRMED_REC_A
        ),
        Err(NFS4ERR_NOENT),
        "an update of no record"
    );
    let (id, seq, flags) = exchange_id(&mut c, &root, "e", b"verifier", 0).expect("new");
    assert_eq!(flags & EXCHGID4_FLAG_CONFIRMED_R, 0);

    assert_eq!(
        create_session(&mut c, &other, id, seq, 0, 1 << 20),
        Err(NFS4ERR_CLID_INUSE)
    );
    assert_eq!(
        create_session(&mut c, &root, id, seq + 4, 0, 1 << 20),
        Err(NFS4ERR_SEQ_MISORDERED)
    );
    assert_eq!(
        create_session(&mut c, &root, id, seq, 0x10, 1 << 20),
        Err(NFS4ERR_INVAL),
        "an undefined CREATE_SESSION flag"
    );
    assert_eq!(
        create_session(&mut c, &root, id, seq, 0, 512),
        Err(NFS4ERR_TOOSMALL)
    );
    assert_eq!(
        create_session(&mut c, &root, 0x5a5a_5a5a_0000_0001, 1, 0, 1 << 20),
        Err(NFS4ERR_STALE_CLIENTID)
    );
    let sid = create_session(&mut c, &root, id, seq, 0, 1 << 20).expect("session");
    let replayed = create_session(&mut c, &root, id, seq, 0, 1 << 20).expect("replay");
    assert_eq!(replayed, sid, "a retransmitted CREATE_SESSION");

    // Confirmed now: the same verifier and principal get the same record.
    let (again, _, flags) = exchange_id(&mut c, &root, "e", b"verifier", 0).expect("again");
    assert_eq!(again, id);
    assert_ne!(flags & EXCHGID4_FLAG_CONFIRMED_R, 0);
    assert_eq!(
        exchange_id(&mut c, &other, "e", b"verifier", 0),
        Err(NFS4ERR_CLID_INUSE),
        "another principal's collision"
    );
    let upd = EXCHGID4_FLAG_UPD_CONFIRMED_REC_A;
    assert_eq!(
        exchange_id(&mut c, &root, "e", b"otherver", upd),
        Err(NFS4ERR_NOT_SAME)
    );
    assert_eq!(
        exchange_id(&mut c, &other, "e", b"verifier", upd),
        Err(NFS4ERR_PERM)
    );
    let (updated, _, flags) = exchange_id(&mut c, &root, "e", b"verifier", upd).expect("upd");
    assert_eq!(updated, id);
    assert_ne!(flags & EXCHGID4_FLAG_CONFIRMED_R, 0);

    // A restart (new verifier): a new record; the old session works until CREATE_SESSION
    // confirms the new one.
    let (id2, seq2, _) = exchange_id(&mut c, &root, "e", b"rebooted", 0).expect("restart");
    assert_ne!(id2, id);
    let mut old = Session::from_id(sid, 1);
    assert_eq!(old.compound(&mut c, &root, |o| o).status, NFS4_OK);
    create_session(&mut c, &root, id2, seq2, 0, 1 << 20).expect("new session");
    let r = old.compound(&mut c, &root, |o| o);
    assert_eq!(r.status, NFS4ERR_BADSESSION, "{r:?}");
}

/// DESTROY_SESSION alone; panics unless it succeeds.
fn destroy_session(c: &mut Client, sid: &[u8; 16]) {
    let ops = Ops::new().with(OP_DESTROY_SESSION, |s| s.fixed(sid));
    let r = c
        .compound(1, &Cred::user(0, 0, &[]), ops)
        .expect("DESTROY_SESSION");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
}

/// RFC 8881 §18.51 (RECLAIM_COMPLETE twice: COMPLETE_ALREADY), §18.50 (DESTROY_CLIENTID
/// not alone: NOT_ONLY_OP; with a session or with state: CLIENTID_BUSY; else done), and
/// §16.2.3.1.2 with §18.2.4: CLOSE returns the invalid special stateid, which becomes the
/// current stateid, so an operation using the current stateid after it gets BAD_STATEID.
#[test]
fn v41_reclaim_complete_destroy_clientid_and_current_stateid_after_close() {
    let s = serve(30);
    let mut c = Client::connect(s.addr, None).expect("connect");
    let root = Cred::user(0, 0, &[]);
    let (id, seq, _) = exchange_id(&mut c, &root, "d", b"verifier", 0).expect("client");
    let sid = create_session(&mut c, &root, id, seq, 0, 1 << 20).expect("session");
    let mut sess = Session::from_id(sid, 1);
    let reclaim = |o: Ops| o.with(OP_RECLAIM_COMPLETE, |s| s.u32(0));
    assert_eq!(sess.compound(&mut c, &root, reclaim).status, NFS4_OK);
    let r = sess.compound(&mut c, &root, reclaim);
    assert_eq!(r.last_status(), NFS4ERR_COMPLETE_ALREADY, "{r:?}");

    // OPEN, CLOSE and READ with the current stateid (seqid 1, other all zeros).
    let mut current = [0u8; 16];
    current[3] = 1;
    let r = sess.compound(&mut c, &root, |o| {
        o.putrootfh()
            .lookup("t")
            .open("o", 3, 0, "f", true)
            .close(0, &current)
            .read_as(&current, 0, 1)
    });
    assert_eq!(r.results[r.results.len() - 2].op, OP_CLOSE, "{r:?}");
    let mut invalid = [0u8; 16];
    invalid[..4].copy_from_slice(&[0xff; 4]);
    assert_eq!(r.stateid(OP_CLOSE), invalid);
    assert_eq!(r.last_status(), NFS4ERR_BAD_STATEID, "{r:?}");

    // An open held: the client id is busy even without a session.
    let r = sess.compound(&mut c, &root, |o| {
        o.putrootfh().lookup("t").open("o", 3, 0, "g", true)
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let open_g = r.stateid(OP_OPEN);
    let destroy = |o: Ops| o.with(OP_DESTROY_CLIENTID, |s| s.u64(id));
    let r = c
        .compound(1, &root, destroy(Ops::new()).putrootfh())
        .expect("not alone");
    assert_eq!(r.last_status(), NFS4ERR_NOT_ONLY_OP, "{r:?}");
    let r = sess.compound(&mut c, &root, destroy);
    assert_eq!(
        r.last_status(),
        NFS4ERR_CLIENTID_BUSY,
        "its own session: {r:?}"
    );
    let r = c.compound(1, &root, destroy(Ops::new())).expect("alone");
    assert_eq!(r.last_status(), NFS4ERR_CLIENTID_BUSY, "a session: {r:?}");
    destroy_session(&mut c, &sid);
    let r = c.compound(1, &root, destroy(Ops::new())).expect("alone");
    assert_eq!(r.last_status(), NFS4ERR_CLIENTID_BUSY, "an open: {r:?}");

    // Closed in a new session, the client id goes.
    let sid = create_session(&mut c, &root, id, seq + 1, 0, 1 << 20).expect("session 2");
    let mut sess = Session::from_id(sid, 1);
    let r = sess.compound(&mut c, &root, |o| {
        o.putrootfh().lookup("t").lookup("g").close(0, &open_g)
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    destroy_session(&mut c, &sid);
    let r = c.compound(1, &root, destroy(Ops::new())).expect("alone");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(
        create_session(&mut c, &root, id, seq + 2, 0, 1 << 20),
        Err(NFS4ERR_STALE_CLIENTID)
    );
}

/// `[nfs] max-clients-per-addr` and `max-states-per-addr` bound what one address holds:
/// its third confirmed client record is RESOURCE, and so is its third open across its
/// clients; another address still gets both.
#[test]
fn per_address_limits_from_the_config() {
    let s = serve_with(
        "max-clients-per-addr = 2\nmax-states-per-client = 2\nmax-states-per-addr = 2\n",
    );
    let root = Cred::user(0, 0, &[]);
    let from = |last: u8| {
        Client::connect(s.addr, Some(std::net::Ipv4Addr::new(127, 0, 0, last))).expect("connect")
    };
    let mut flood = from(1);
    let a = flood.client40(&root, "a1", *b"verifier");
    let b = flood.client40(&root, "a2", *b"verifier");
    assert_eq!(
        setclientid(&mut flood, &root, "a3", b"verifier"),
        Err(NFS4ERR_RESOURCE)
    );
    let open = |c: &mut Client, clientid: u64, name: &str| {
        c.compound(
            0,
            &root,
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(clientid, name, 0, 3, 0, name, true),
        )
        .expect("open")
        .last_status()
    };
    assert_eq!(open(&mut flood, a, "f1"), NFS4_OK);
    assert_eq!(open(&mut flood, b, "f2"), NFS4_OK);
    assert_eq!(open(&mut flood, b, "f3"), NFS4ERR_RESOURCE, "a third state");
    let mut node = from(2);
    let n = node.client40(&root, "node", *b"verifier");
    assert_eq!(open(&mut node, n, "f4"), NFS4_OK);
}
