//! drover's read delegations through the real binary over TCP on loopback (RFC 7530 §10.2,
//! §10.4, §16.7-16.8, §16.33; RFC 8881 §10.2, §10.4, §18.6, §18.36, §18.46.3, §20.2): a
//! 4.0 client's callback service (probed with CB_NULL, recalled over a new connection) and a
//! 4.1 client's back channel (CB_SEQUENCE + CB_RECALL on its own connection). In each: a
//! read open gets a delegation; another client opening the file for writing gets DELAY
//! while the holder receives CB_RECALL; after DELEGRETURN the open succeeds. A holder that
//! never returns has its delegation revoked a lease (10 s) after the recall.
//!
//! Each test starts `drover serve` on `lo` with an export `t` open to 127.0.0.0/29 and the
//! shortest lease the config takes. Needs root (the export is made as root); fails
//! otherwise.

mod common;

use common::nfs4::*;
use common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The shortest lease `[nfs] lease-secs` takes: a revocation comes this long after the
/// recall.
const LEASE_SECS: u64 = 10;

struct Server {
    _drover: Drover,
    addr: SocketAddr,
    export: PathBuf,
}

fn serve() -> Server {
    require_root();
    let mut drover = Drover::new();
    let export = drover.scratch().join("export");
    export_open_dir(&drover, "t", &export, "127.0.0.0/29");
    let port = common::api::free_port();
    let section = format!(
        "[nfs]\nenabled = true\nport = {port}\ngrace-secs = 0\nlease-secs = {LEASE_SECS}\ndelegations = true\n"
    );
    drover.serve_with(None, "lo", &config_only(&[], &section));
    Server {
        _drover: drover,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        export,
    }
}

impl Server {
    /// A file `name` in the export that everyone may read and write.
    fn file(&self, name: &str) {
        let p = self.export.join(name);
        std::fs::write(&p, b"cached by the holder").expect("write a test file");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod");
    }
}

fn user() -> Cred {
    Cred::user(1000, 1000, &[])
}

/// The other client: from 127.0.0.2, whose callback (naming 127.0.0.1) the server never
/// calls, so it holds no delegation itself.
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Retries `op` while it answers DELAY (as a client does), up to `limit`: the last reply
/// and how many DELAYs came before it.
fn until_not_delayed(limit: Duration, mut op: impl FnMut() -> Reply) -> (Reply, usize) {
    let start = Instant::now();
    let mut delays = 0;
    loop {
        let r = op();
        if r.last_status() != NFS4ERR_DELAY || start.elapsed() > limit {
            return (r, delays);
        }
        delays += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// RFC 7530 §10.2, §10.4.4, §16.8, §16.33: a 4.0 client whose callback address answers
/// CB_NULL gets a read delegation with an open for reading by a confirmed owner; another
/// client's OPEN for writing gets DELAY and the holder a CB_RECALL of that stateid and file
/// over a new connection; after DELEGRETURN the OPEN succeeds. Recalled and never returned,
/// a delegation is revoked a lease later: the OPEN goes through and the holder's stateid is
/// EXPIRED.
#[test]
fn v40_read_delegation_recalled_over_the_callback_path_returned_and_revoked() {
    let s = serve();
    s.file("f");
    s.file("g");
    let cb = CbListener::start();
    let mut a = Client::connect(s.addr, None).expect("connect");
    let r = a
        .compound(0, &user(), Ops::new().setclientid_cb("holder", cb.addr))
        .expect("SETCLIENTID");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let b = r.body(OP_SETCLIENTID);
    let cid = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let confirm: [u8; 8] = b[8..16].try_into().expect("8 bytes");
    let r = a
        .compound(0, &user(), Ops::new().setclientid_confirm(cid, confirm))
        .expect("SETCLIENTID_CONFIRM");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let probe = cb
        .calls
        .recv_timeout(Duration::from_secs(10))
        .expect("a CB_NULL");
    assert_eq!((probe.procedure, probe.program), (0, CB_PROGRAM));

    // The first OPEN of a new owner must be confirmed: no delegation yet.
    let open = |a: &mut Client, seqid, name: &str| {
        a.compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(cid, "o1", seqid, 1, 0, name, false)
                .getfh(),
        )
        .expect("OPEN")
    };
    let r = open(&mut a, 0, "f");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(r.delegation(), None, "an unconfirmed owner's open");
    let fh = r.body(OP_GETFH).to_vec();
    let r = a
        .compound(
            0,
            &user(),
            Ops::new().putfh(&fh).open_confirm(&r.stateid(OP_OPEN), 1),
        )
        .expect("OPEN_CONFIRM");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let r = open(&mut a, 2, "f");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let deleg = r.delegation().expect("a read delegation");
    let r = a
        .compound(0, &user(), Ops::new().putfh(&fh).read_as(&deleg, 0, 6))
        .expect("READ");
    assert_eq!((r.status, r.body(OP_READ)), (NFS4_OK, &b"cached"[..]));

    // The writer: DELAY (each consuming its seqid, RFC 7530 §9.1.7) until the return.
    let mut w = Client::connect(s.addr, Some(OTHER)).expect("connect");
    let wid = w.client40(&user(), "writer", *b"verifier");
    let mut wseq = 0;
    let mut open_w = |w: &mut Client, name: &str| {
        wseq += 1;
        w.compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(wid, "w1", wseq - 1, 2, 0, name, false),
        )
        .expect("OPEN for writing")
    };
    let r = open_w(&mut w, "f");
    assert_eq!(r.last_status(), NFS4ERR_DELAY, "{r:?}");
    let recall = cb
        .calls
        .recv_timeout(Duration::from_secs(10))
        .expect("CB_RECALL");
    assert_eq!((recall.procedure, recall.minor, recall.ident), (1, 0, 7));
    assert_eq!(recall.sequence, None);
    assert_eq!(recall.recall, Some((deleg, fh.clone())));
    let r = open_w(&mut w, "f");
    assert_eq!(r.last_status(), NFS4ERR_DELAY, "still held: {r:?}");
    let r = a
        .compound(0, &user(), Ops::new().putfh(&fh).delegreturn(&deleg))
        .expect("DELEGRETURN");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let r = open_w(&mut w, "f");
    assert_eq!(r.status, NFS4_OK, "{r:?}");

    // g: recalled, never returned, the holder renewing its lease all along.
    let r = a
        .compound(
            0,
            &user(),
            Ops::new()
                .putrootfh()
                .lookup("t")
                .open40(cid, "o1", 3, 1, 0, "g", false)
                .getfh(),
        )
        .expect("OPEN g");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let (deleg, gfh) = (
        r.delegation().expect("a delegation of g"),
        r.body(OP_GETFH).to_vec(),
    );
    let recalled = Instant::now();
    let (r, delays) = until_not_delayed(Duration::from_secs(3 * LEASE_SECS), || {
        let renewed = a
            .compound(0, &user(), Ops::new().renew(cid))
            .expect("RENEW");
        assert_eq!(renewed.status, NFS4_OK, "{renewed:?}");
        open_w(&mut w, "g")
    });
    assert_eq!(r.status, NFS4_OK, "after {delays} DELAYs: {r:?}");
    assert!(delays >= 1, "the OPEN waited for the revocation");
    assert!(recalled.elapsed() >= Duration::from_secs(LEASE_SECS - 1));
    let recall = cb
        .calls
        .recv_timeout(Duration::from_secs(1))
        .expect("CB_RECALL of g");
    assert_eq!(recall.recall, Some((deleg, gfh.clone())));
    let r = a
        .compound(0, &user(), Ops::new().putfh(&gfh).read_as(&deleg, 0, 6))
        .expect("READ");
    assert_eq!(r.last_status(), NFS4ERR_EXPIRED, "{r:?}");
}

/// RFC 8881 §18.36 (CONN_BACK_CHAN), §20.9-20.10, §18.6, §18.46.3, §18.38: the session's
/// own connection carries CB_SEQUENCE + CB_RECALL when another client opens for writing
/// (DELAY meanwhile); after DELEGRETURN the OPEN succeeds. Never returned, the delegation
/// is revoked a lease later: SEQUENCE says RECALLABLE_STATE_REVOKED, READ with it is
/// DELEG_REVOKED, and FREE_STATEID clears the flag.
#[test]
fn v41_read_delegation_recalled_over_the_back_channel_returned_and_revoked() {
    let s = serve();
    s.file("f");
    s.file("g");
    let mut a = Client::connect(s.addr, None).expect("connect");
    let mut sa = a
        .session_with(1, "holder", 2)
        .expect("a session with a back channel");
    let open_read = |a: &mut Client, sa: &mut Session, name: &str| {
        let r = sa.compound(a, &user(), |o| {
            o.putrootfh()
                .lookup("t")
                .open("a", 1, 0, name, false)
                .getfh()
        });
        assert_eq!(r.status, NFS4_OK, "{r:?}");
        let deleg = r.delegation().expect("a read delegation");
        (deleg, r.body(OP_GETFH).to_vec())
    };
    let (deleg, fh) = open_read(&mut a, &mut sa, "f");

    let mut w = Client::connect(s.addr, Some(OTHER)).expect("connect");
    let mut sw = w
        .session(1, "writer")
        .expect("a session without a back channel");
    let mut open_w = |w: &mut Client, name: &str| {
        sw.compound(w, &user(), |o| {
            o.putrootfh().lookup("t").open("w", 2, 0, name, false)
        })
    };
    let r = open_w(&mut w, "f");
    assert_eq!(r.last_status(), NFS4ERR_DELAY, "{r:?}");
    let call = a.next_call().expect("a call on the back channel");
    assert_eq!(
        (call.procedure, call.program, call.minor),
        (1, CB_PROGRAM, 1)
    );
    assert_eq!(call.flavor, 1, "AUTH_SYS, the flavor the session offered");
    let (session, seq) = call.sequence.expect("CB_SEQUENCE first");
    assert_eq!((session, seq), (sa.id(), 1));
    assert_eq!(call.recall, Some((deleg, fh.clone())));
    a.reply_recall(&call, NFS4_OK).expect("answer");
    let r = open_w(&mut w, "f");
    assert_eq!(r.last_status(), NFS4ERR_DELAY, "still held: {r:?}");
    let r = sa.compound(&mut a, &user(), |o| o.putfh(&fh).delegreturn(&deleg));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let r = open_w(&mut w, "f");
    assert_eq!(r.status, NFS4_OK, "{r:?}");

    // g: the recall is answered but the delegation never returned.
    let (deleg, gfh) = open_read(&mut a, &mut sa, "g");
    let r = open_w(&mut w, "g");
    assert_eq!(r.last_status(), NFS4ERR_DELAY, "{r:?}");
    let call = a.next_call().expect("CB_RECALL of g");
    assert_eq!(
        call.sequence.map(|s| s.1),
        Some(2),
        "the slot's next sequence"
    );
    assert_eq!(call.recall, Some((deleg, gfh.clone())));
    a.reply_recall(&call, NFS4_OK).expect("answer");
    let (r, delays) = until_not_delayed(Duration::from_secs(3 * LEASE_SECS), || {
        let renewed = sa.compound(&mut a, &user(), |o| o);
        assert_eq!(renewed.status, NFS4_OK, "{renewed:?}");
        open_w(&mut w, "g")
    });
    assert_eq!(r.status, NFS4_OK, "after {delays} DELAYs: {r:?}");
    assert!(delays >= 1, "the OPEN waited for the revocation");
    let r = sa.compound(&mut a, &user(), |o| o.putfh(&gfh).read_as(&deleg, 0, 6));
    assert_eq!(r.last_status(), NFS4ERR_DELEG_REVOKED, "{r:?}");
    assert_ne!(
        r.seq_flags() & SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
        0,
        "{r:?}"
    );
    let r = sa.compound(&mut a, &user(), |o| {
        o.with(OP_FREE_STATEID, |x| x.fixed(&deleg))
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let r = sa.compound(&mut a, &user(), |o| o);
    assert_eq!(
        r.seq_flags() & SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
        0,
        "{r:?}"
    );
}

/// `[nfs] delegations = false`: a client with a working back channel gets none, and a
/// writer is never delayed.
#[test]
fn delegations_off_grants_none() {
    require_root();
    let mut drover = Drover::new();
    let export = drover.scratch().join("export");
    export_open_dir(&drover, "t", &export, "127.0.0.0/29");
    std::fs::write(export.join("f"), b"x").expect("write");
    std::fs::set_permissions(
        export.join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod");
    let port = common::api::free_port();
    let section =
        format!("[nfs]\nenabled = true\nport = {port}\ngrace-secs = 0\ndelegations = false\n");
    drover.serve_with(None, "lo", &config_only(&[], &section));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut a = Client::connect(addr, None).expect("connect");
    let mut sa = a.session_with(1, "holder", 2).expect("session");
    let r = sa.compound(&mut a, &user(), |o| {
        o.putrootfh().lookup("t").open("a", 1, 0, "f", false)
    });
    assert_eq!((r.status, r.delegation()), (NFS4_OK, None), "{r:?}");
    let mut w = Client::connect(addr, Some(OTHER)).expect("connect");
    let mut sw = w.session(1, "writer").expect("session");
    let r = sw.compound(&mut w, &user(), |o| {
        o.putrootfh().lookup("t").open("w", 2, 0, "f", false)
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
}
