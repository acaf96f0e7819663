//! Client and session operations: client ids and leases (4.0 SETCLIENTID,
//! SETCLIENTID_CONFIRM, RENEW; 4.1 EXCHANGE_ID, CREATE_SESSION with its own replay,
//! DESTROY_CLIENTID, RECLAIM_COMPLETE), sessions (SEQUENCE's slot table and reply cache,
//! DESTROY_SESSION, BIND_CONN_TO_SESSION, BACKCHANNEL_CTL) and stateids as such
//! (TEST_STATEID, FREE_STATEID). Callback paths: a 4.0 client's SETCLIENTID callback takes
//! effect when confirmed and is probed with CB_NULL before it counts (and only an address
//! of the client's own is called: the server connects nowhere else on a client's word);
//! a 4.1 session's back channel is the connection CREATE_SESSION (CONN_BACK_CHAN) or
//! BIND_CONN_TO_SESSION (BACK or BOTH) came on, and SEQUENCE says when it is gone
//! (CB_PATH_DOWN) or a delegation was revoked (RECALLABLE_STATE_REVOKED).
//!
//! A confirmed record of a client owner replaces the owner's older records and their state
//! (a rebooted client, RFC 7530 §9.1.1, RFC 8881 §18.35.4). Each record keeps its principal
//! (the AUTH_SYS uid): another principal's SETCLIENTID or EXCHANGE_ID for the same owner is
//! refused while the record's lease runs (CLID_INUSE), as are its confirm and
//! CREATE_SESSION. Bounded by [`Limits`]: clients,
//! sessions per client, slots. Not here: making the callbacks (`nfs::serve`), more than one
//! back-channel slot, RPCSEC_GSS callbacks, SP4_MACH_CRED/SSV state protection, client state across restarts; SEQUENCE's place
//! in the COMPOUND and the slot's reply once the COMPOUND ends ([`crate::nfs::core`]).
//!
//! [`Limits`]: crate::nfs::state::Limits

use super::Ctx;
use crate::nfs::cb::parse_uaddr;
use crate::nfs::state::{
    Back, Cb40, Client, Probe, Session, Slot, State, Stateful, SEQ4_STATUS_CB_PATH_DOWN,
    SEQ4_STATUS_CB_PATH_DOWN_SESSION, SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
};
use crate::nfs::status::Nfs4Status;
use crate::nfs::wire::{
    Callback40, Callback41, ChannelAttrs, OpResult, Res, StateId, MAX_OPS, MAX_RECORD,
};
use std::net::IpAddr;
use std::time::Instant;

const EXCHGID4_FLAG_USE_NON_PNFS: u32 = 0x0001_0000;
const EXCHGID4_FLAG_CONFIRMED_R: u32 = 0x8000_0000;
const EXCHGID4_FLAG_UPD_CONFIRMED_REC_A: u32 = 0x4000_0000;
/// The flags a client may send in EXCHANGE_ID (RFC 8881 §18.35.3, RFC 7862 §15.1's
/// SUPP_FENCE_OPS): SUPP_MOVED_REFER, SUPP_MOVED_MIGR, SUPP_FENCE_OPS,
/// BIND_PRINC_STATEID, the three pNFS roles and UPD_CONFIRMED_REC_A.
const EXCHGID4_FLAG_MASK_A: u32 = 0x1 | 0x2 | 0x4 | 0x100 | 0x7_0000 | 0x4000_0000;
/// CREATE_SESSION's flags: PERSIST, CONN_BACK_CHAN, CONN_RDMA (RFC 8881 §18.36.1).
const CREATE_SESSION4_FLAG_MASK: u32 = 0x7;
const CREATE_SESSION4_FLAG_CONN_BACK_CHAN: u32 = 0x2;
/// BIND_CONN_TO_SESSION's directions (`channel_dir_from_client4`, `..._from_server4`).
const CDFC4_FORE: u32 = 0x1;
const CDFC4_BACK: u32 = 0x2;
const CDFC4_FORE_OR_BOTH: u32 = 0x3;
const CDFC4_BACK_OR_BOTH: u32 = 0x7;
const CDFS4_FORE: u32 = 0x1;
const CDFS4_BACK: u32 = 0x2;
const CDFS4_BOTH: u32 = 0x3;
/// The smallest request and reply a channel must take: a SEQUENCE (CB_SEQUENCE) with a small
/// operation, or a CB_RECALL with an AUTH_SYS credential and a full filehandle, fit in it.
const MIN_CHANNEL_MESSAGE: u32 = 1024;
/// Operations per COMPOUND a channel must take: SEQUENCE and one more.
const MIN_CHANNEL_OPS: u32 = 2;

/// Whether a channel's attributes are below what this server needs to use it.
fn too_small(c: &ChannelAttrs) -> bool {
    c.max_request < MIN_CHANNEL_MESSAGE
        || c.max_response < MIN_CHANNEL_MESSAGE
        || c.max_ops < MIN_CHANNEL_OPS
        || c.max_requests == 0
}

/// Drops the other records of `owner` (of minor version 1+ if `v41`, else 0) now that record
/// `keep` is confirmed: they belong to the same client before a reboot (RFC 7530 §9.1.1,
/// RFC 8881 §18.35.4), and their state goes with them.
///
/// One of another address whose lease still runs is more likely a second machine presenting
/// the same owner string (Linux builds it from the host name, e.g. "(none)" on every machine
/// that mounts before setting one): the two take each other's state in turn, and their
/// clients stall or fail without saying why. The protocol cannot tell them apart; the log
/// says what happened.
fn drop_old_records(st: &mut State, now: Instant, keep: u64, owner: &[u8], v41: bool) {
    let Some(addr) = st.clients.get(&keep).map(|c| c.addr) else {
        return;
    };
    let old: Vec<(u64, IpAddr, bool)> = st
        .clients
        .values()
        .filter(|o| o.owner == owner && o.id != keep && (o.minor >= 1) == v41)
        .map(|o| (o.id, o.addr, o.confirmed && o.lease_until > now))
        .collect();
    for (id, old_addr, live) in old {
        if live && old_addr != addr {
            tracing::warn!(
                owner = %crate::logsafe::Escaped(&String::from_utf8_lossy(owner)),
                old = %old_addr,
                new = %addr,
                "NFS: a client at another address took over this client owner and the old \
                 record's state: two machines with the same NFSv4 client owner (host name)?"
            );
        }
        st.remove_client(id);
    }
}

/// Adds an unconfirmed record of client `owner` at the caller's address (of the COMPOUND's
/// minor version, with the verifier SETCLIENTID_CONFIRM must present) if the table and the
/// address's share of it have room ([`State::room_for_client`]), else fails with `full`.
fn add_client(
    cx: &Ctx,
    st: &mut State,
    owner: &[u8],
    verifier: [u8; 8],
    confirm: [u8; 8],
    full: Nfs4Status,
) -> Result<u64, Nfs4Status> {
    if !st.room_for_client(cx.caller.addr) {
        return Err(full);
    }
    let id = st.new_clientid();
    let lease_until = cx.now + st.limits.lease;
    st.clients.insert(
        id,
        Client {
            id,
            owner: owner.to_vec(),
            verifier,
            minor: cx.minor,
            confirmed: false,
            confirm,
            update: None,
            principal: cx.caller.uid,
            addr: cx.caller.addr,
            lease_until,
            cs_seq: 0,
            cs_reply: None,
            reclaim_complete: false,
            cb_offer: None,
            cb40: None,
            cb_busy: false,
        },
    );
    Ok(id)
}

/// What SEQUENCE decided: replay a cached reply, or this result (and go on if it is one).
pub(crate) enum SeqOutcome {
    Replay(Vec<u8>),
    Result(OpResult),
}

/// SEQUENCE: checks the slot, renews the lease and marks the slot busy until the pipeline
/// stores the reply in it.
pub(crate) fn sequence(
    cx: &mut Ctx,
    session: [u8; 16],
    sequence: u32,
    slot: u32,
    highest_slot: u32,
    n_ops: usize,
) -> SeqOutcome {
    let fail = |s: Nfs4Status| SeqOutcome::Result(Err(s.into()));
    let mut st = cx.state();
    let lease = st.limits.lease;
    let Some(s) = st.sessions.get_mut(&session) else {
        return fail(Nfs4Status::BadSession);
    };
    if n_ops > s.fore.max_ops as usize {
        return fail(Nfs4Status::TooManyOps);
    }
    let nslots = s.slots.len() as u32;
    let client = s.client;
    let Some(sl) = s.slots.get_mut(slot as usize) else {
        return fail(Nfs4Status::BadSlot);
    };
    if highest_slot >= nslots {
        return fail(Nfs4Status::BadSlot);
    }
    if sequence == sl.seq {
        if sl.busy {
            return fail(Nfs4Status::Delay);
        }
        return match &sl.reply {
            Some(r) => SeqOutcome::Replay(r.clone()),
            None => fail(Nfs4Status::RetryUncachedRep),
        };
    }
    if sequence != sl.seq.wrapping_add(1) {
        return fail(Nfs4Status::SeqMisordered);
    }
    if sl.busy {
        return fail(Nfs4Status::Delay);
    }
    sl.seq = sequence;
    sl.busy = true;
    sl.reply = None;
    let max_response = s.fore.max_response as usize;
    // A back channel asked for and lost: the client binds a connection again (RFC 8881
    // §18.46.3); CB_PATH_DOWN too when no session of the client has one left.
    let lost_back = s.back.as_ref().is_some_and(|b| b.conn.is_none());
    let mut flags = 0;
    if lost_back {
        flags |= SEQ4_STATUS_CB_PATH_DOWN_SESSION;
        if !st.callback_up(client) {
            flags |= SEQ4_STATUS_CB_PATH_DOWN;
        }
    }
    if st.revoked.values().any(|c| *c == client) {
        flags |= SEQ4_STATUS_RECALLABLE_STATE_REVOKED;
    }
    if let Some(c) = st.clients.get_mut(&client) {
        c.lease_until = cx.now + lease;
    }
    cx.session = Some((session, slot, client));
    cx.max_response = max_response;
    SeqOutcome::Result(Ok(Res::Sequence {
        session,
        sequence,
        slot,
        highest_slot,
        target_highest_slot: nslots - 1,
        flags,
    }))
}

/// RENEW (RFC 7530 §16.24): renews the lease; a client holding delegations whose callback
/// path failed hears CB_PATH_DOWN (its lease renewed all the same), so that it sets up a
/// new callback with SETCLIENTID.
pub(super) fn renew(cx: &mut Ctx, clientid: u64) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let down = st
        .renew(cx.now, clientid)?
        .cb40
        .is_some_and(|cb| cb.probe == Probe::Down);
    let delegated = st
        .states
        .values()
        .any(|s| matches!(s, Stateful::Deleg(d) if d.client == clientid));
    if down && delegated {
        return Err(Nfs4Status::CbPathDown);
    }
    Ok(Res::Empty)
}

/// Whether a live confirmed record of `owner` (minor version 1+ if `v41`, else 0) other than
/// `except` belongs to a principal other than the caller's.
fn clid_in_use(cx: &Ctx, st: &State, owner: &[u8], v41: bool, except: u64) -> bool {
    st.clients.values().any(|c| {
        c.owner == owner
            && c.id != except
            && (c.minor >= 1) == v41
            && c.confirmed
            && c.lease_until > cx.now
            && c.principal != cx.caller.uid
    })
}

/// SETCLIENTID (RFC 7530 §16.33.5). Another principal's live record of the same client
/// owner: CLID_INUSE. Otherwise any unconfirmed record of the owner goes, and with a
/// confirmed record of the same verifier this is a callback update (same client id, a new
/// confirm verifier, the record unchanged until confirmed); a new client or a rebooted one
/// (another verifier) gets a new unconfirmed record and client id.
pub(super) fn setclientid(
    cx: &mut Ctx,
    verifier: [u8; 8],
    id: &[u8],
    callback: &Callback40,
) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    if clid_in_use(cx, &st, id, false, 0) {
        return Err(Nfs4Status::ClidInUse);
    }
    let confirmed = st
        .clients
        .values()
        .find(|c| c.owner == id && c.confirmed && c.minor == 0)
        .map(|c| (c.id, c.verifier));
    let stale: Vec<u64> = st
        .clients
        .values()
        .filter(|c| c.owner == id && !c.confirmed && c.minor == 0)
        .map(|c| c.id)
        .collect();
    for s in stale {
        st.remove_client(s);
    }
    let confirm = st.new_other();
    let mut confirm8 = [0u8; 8];
    confirm8.copy_from_slice(&confirm[4..]);
    if let Some((cid, v0)) = confirmed {
        if let Some(c) = st.clients.get_mut(&cid) {
            c.update = None;
            if v0 == verifier {
                c.update = Some(confirm8);
                c.cb_offer = Some(callback.clone());
                return Ok(Res::SetClientId {
                    clientid: cid,
                    verifier: confirm8,
                });
            }
        }
    }
    let cid = add_client(cx, &mut st, id, verifier, confirm8, Nfs4Status::Resource)?;
    if let Some(c) = st.clients.get_mut(&cid) {
        c.cb_offer = Some(callback.clone());
    }
    Ok(Res::SetClientId {
        clientid: cid,
        verifier: confirm8,
    })
}

/// SETCLIENTID_CONFIRM (RFC 7530 §16.34.5): confirms a callback update of a confirmed
/// record, or a new record (whose owner's older records and their state go: the client
/// rebooted); the confirm of a record already confirmed with that verifier is a
/// retransmission and succeeds again. No record with that client id and verifier:
/// STALE_CLIENTID; a record of another principal: CLID_INUSE.
pub(super) fn setclientid_confirm(
    cx: &mut Ctx,
    clientid: u64,
    verifier: [u8; 8],
) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let lease = st.limits.lease;
    let now = cx.now;
    let c = st.clients.get(&clientid).ok_or(Nfs4Status::StaleClientId)?;
    if c.minor != 0 {
        return Err(Nfs4Status::StaleClientId);
    }
    let matches = c.confirm == verifier || c.update == Some(verifier);
    if matches && c.principal != cx.caller.uid {
        return Err(Nfs4Status::ClidInUse);
    }
    if !matches {
        return Err(Nfs4Status::StaleClientId);
    }
    let owner = c.owner.clone();
    if !c.confirmed {
        if clid_in_use(cx, &st, &owner, false, clientid) {
            return Err(Nfs4Status::ClidInUse);
        }
        // A rebooted client's old record (and its state) goes.
        drop_old_records(&mut st, now, clientid, &owner, false);
    }
    let mut probe = false;
    if let Some(c) = st.clients.get_mut(&clientid) {
        let fresh = !c.confirmed || c.update == Some(verifier);
        if c.update == Some(verifier) {
            c.confirm = verifier;
            c.update = None;
        }
        if fresh {
            // The record's callback (new, or updated) takes effect, to be probed first.
            let addr = c.addr;
            c.cb40 = c.cb_offer.take().and_then(|cb| callback40(&cb, addr));
            probe = c.cb40.is_some();
        }
        c.confirmed = true;
        c.lease_until = now + lease;
    }
    st.cb_due |= probe;
    Ok(Res::Empty)
}

/// The callback path of a 4.0 callback, if it is one this server calls: TCP to the
/// address the client record came from (a client naming another host would make this
/// server connect wherever it is told).
fn callback40(cb: &Callback40, client_addr: std::net::IpAddr) -> Option<Cb40> {
    let addr = parse_uaddr(&cb.netid, &cb.addr)?;
    (addr.ip() == client_addr && addr.port() != 0).then_some(Cb40 {
        addr,
        program: cb.program,
        ident: cb.ident,
        probe: Probe::Needed,
    })
}

/// EXCHANGE_ID (RFC 8881 §18.35.4-5). Undefined flags or the reply-only CONFIRMED_R:
/// INVAL. With UPD_CONFIRMED_REC_A, the client's confirmed record is updated (its lease
/// renewed): none, NOENT; another verifier, NOT_SAME; another principal, PERM. Without it:
/// a confirmed record of the same verifier and principal is returned again; another
/// principal's live record is a collision (CLID_INUSE); otherwise (a new client, or one that
/// restarted with a new verifier) a new unconfirmed record replaces any unconfirmed one,
/// and CREATE_SESSION confirms it (dropping the old record and its state).
pub(super) fn exchange_id(
    cx: &mut Ctx,
    verifier: [u8; 8],
    owner: &[u8],
    flags: u32,
    state_protect: u32,
) -> Result<Res, Nfs4Status> {
    if state_protect != 0 {
        return Err(Nfs4Status::EncrAlgUnsupp);
    }
    if flags & !EXCHGID4_FLAG_MASK_A != 0 {
        return Err(Nfs4Status::Inval);
    }
    let update = flags & EXCHGID4_FLAG_UPD_CONFIRMED_REC_A != 0;
    let mut st = cx.state();
    let now = cx.now;
    let lease = st.limits.lease;
    let existing = st
        .clients
        .values()
        .find(|c| c.owner == owner && c.minor >= 1 && c.confirmed)
        .map(|c| (c.id, c.verifier, c.cs_seq, c.principal));
    let base = EXCHGID4_FLAG_USE_NON_PNFS;
    let same_principal = existing.is_some_and(|(.., p)| p == cx.caller.uid);
    match existing {
        None if update => return Err(Nfs4Status::NoEnt),
        Some((_, v0, ..)) if update && v0 != verifier => return Err(Nfs4Status::NotSame),
        Some(_) if update && !same_principal => return Err(Nfs4Status::Perm),
        Some((id, v0, cs, _)) if same_principal && (update || v0 == verifier) => {
            if let Some(c) = st.clients.get_mut(&id) {
                c.lease_until = now + lease;
            }
            return Ok(Res::ExchangeId {
                clientid: id,
                sequence: cs.wrapping_add(1),
                flags: base | EXCHGID4_FLAG_CONFIRMED_R,
                server_owner: cx.server_owner.to_vec(),
                scope: cx.server_owner.to_vec(),
            });
        }
        _ => {}
    }
    if clid_in_use(cx, &st, owner, true, 0) {
        return Err(Nfs4Status::ClidInUse);
    }
    let stale: Vec<u64> = st
        .clients
        .values()
        .filter(|c| c.owner == owner && c.minor >= 1 && !c.confirmed)
        .map(|c| c.id)
        .collect();
    for s in stale {
        st.remove_client(s);
    }
    let id = add_client(cx, &mut st, owner, verifier, [0; 8], Nfs4Status::Delay)?;
    Ok(Res::ExchangeId {
        clientid: id,
        sequence: 1,
        flags: base,
        server_owner: cx.server_owner.to_vec(),
        scope: cx.server_owner.to_vec(),
    })
}

/// CREATE_SESSION (RFC 8881 §18.36.4): the client's sequence (a retransmission answered
/// from the record's cache, a misordered one SEQ_MISORDERED), its principal (another one's:
/// CLID_INUSE), known flags (else INVAL), channels (the fore channel, and the back channel
/// if asked for) that hold this server's messages, two operations and a slot (else
/// TOOSMALL). Confirms the record and drops the owner's older ones with their state.
pub(super) fn create_session(
    cx: &mut Ctx,
    clientid: u64,
    sequence: u32,
    flags: u32,
    (fore, back): (&ChannelAttrs, &ChannelAttrs),
    callback: &Callback41,
) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let limits = st.limits;
    let c = st.clients.get(&clientid).ok_or(Nfs4Status::StaleClientId)?;
    if c.minor == 0 {
        return Err(Nfs4Status::StaleClientId);
    }
    if c.principal != cx.caller.uid {
        return Err(Nfs4Status::ClidInUse);
    }
    if sequence == c.cs_seq && c.cs_seq != 0 {
        return c.cs_reply.clone().ok_or(Nfs4Status::SeqMisordered);
    }
    if sequence != c.cs_seq.wrapping_add(1) {
        return Err(Nfs4Status::SeqMisordered);
    }
    if flags & !CREATE_SESSION4_FLAG_MASK != 0 {
        return Err(Nfs4Status::Inval);
    }
    let owner = c.owner.clone();
    if st
        .sessions
        .values()
        .filter(|s| s.client == clientid)
        .count()
        >= limits.max_sessions_per_client
    {
        return Err(Nfs4Status::Delay);
    }
    // The channels must carry what this server sends and needs (RFC 8881 §18.36.3): a
    // smaller one is TOOSMALL, never silently made larger; a larger one is cut down.
    let wants_back = flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN != 0;
    if too_small(fore) || (wants_back && too_small(back)) {
        return Err(Nfs4Status::TooSmall);
    }
    let fore = ChannelAttrs {
        header_pad: 0,
        max_request: fore.max_request.min(MAX_RECORD as u32),
        max_response: fore.max_response.min(MAX_RECORD as u32),
        max_response_cached: fore.max_response_cached.min(limits.max_cached_reply as u32),
        max_ops: fore.max_ops.min(MAX_OPS as u32),
        max_requests: fore.max_requests.min(limits.max_slots),
    };
    // One back-channel slot, CB_SEQUENCE + CB_RECALL.
    let back = ChannelAttrs {
        header_pad: 0,
        max_requests: back.max_requests.min(1),
        max_ops: back.max_ops.min(MIN_CHANNEL_OPS),
        ..*back
    };
    // Confirming a new record of a rebooted client drops the old one.
    drop_old_records(&mut st, cx.now, clientid, &owner, true);
    let session = st.new_session_id(clientid);
    // The connection of this request becomes the back channel if the client asks
    // (CONN_BACK_CHAN); CB_SEQUENCE counts from 1 on its one slot.
    st.sessions.insert(
        session,
        Session {
            client: clientid,
            slots: vec![Slot::default(); fore.max_requests as usize],
            fore,
            callback: callback.clone(),
            back: wants_back.then_some(Back {
                conn: Some(cx.conn),
                seq: 1,
            }),
        },
    );
    st.cb_due = true;
    let res = Res::CreateSession {
        session,
        sequence,
        flags: flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
        fore,
        back,
    };
    let lease = limits.lease;
    if let Some(c) = st.clients.get_mut(&clientid) {
        c.confirmed = true;
        c.cs_seq = sequence;
        c.cs_reply = Some(res.clone());
        c.lease_until = cx.now + lease;
    }
    Ok(res)
}

pub(super) fn destroy_session(cx: &mut Ctx, id: &[u8; 16]) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let s = st.sessions.get(id).ok_or(Nfs4Status::BadSession)?;
    // Destroying the session this request runs in is allowed only as its last op.
    if s.slots.iter().any(|sl| sl.busy) && cx.session.is_none_or(|(cur, _, _)| cur != *id) {
        return Err(Nfs4Status::Delay);
    }
    st.sessions.remove(id);
    if cx.session.is_some_and(|(cur, _, _)| cur == *id) {
        cx.session = None;
    }
    Ok(Res::Empty)
}

pub(super) fn destroy_clientid(cx: &mut Ctx, id: u64) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    if !st.clients.contains_key(&id) {
        return Err(Nfs4Status::StaleClientId);
    }
    // Sessions or state of its own keep a client id (RFC 8881 §18.50.3).
    if st.sessions.values().any(|s| s.client == id) || st.states.values().any(|s| s.client() == id)
    {
        return Err(Nfs4Status::ClientIdBusy);
    }
    st.remove_client(id);
    Ok(Res::Empty)
}

/// BIND_CONN_TO_SESSION (RFC 8881 §18.34): this connection serves the session's fore
/// channel, and its back channel if asked (BACK, or either *_OR_BOTH, which this server
/// always takes as both).
pub(super) fn bind_conn(cx: &mut Ctx, session: &[u8; 16], dir: u32) -> Result<Res, Nfs4Status> {
    let conn = cx.conn;
    let mut st = cx.state();
    let s = st.sessions.get_mut(session).ok_or(Nfs4Status::BadSession)?;
    let granted = match dir {
        CDFC4_FORE => CDFS4_FORE,
        CDFC4_BACK => CDFS4_BACK,
        CDFC4_FORE_OR_BOTH | CDFC4_BACK_OR_BOTH => CDFS4_BOTH,
        _ => return Err(Nfs4Status::Inval),
    };
    if granted & CDFS4_BACK != 0 {
        let seq = s.back.as_ref().map_or(1, |b| b.seq);
        s.back = Some(Back {
            conn: Some(conn),
            seq,
        });
        st.cb_due = true;
    }
    Ok(Res::BindConn {
        session: *session,
        dir: granted,
    })
}

/// BACKCHANNEL_CTL (RFC 8881 §18.33): the session's new callback program and credential.
pub(super) fn backchannel_ctl(cx: &mut Ctx, callback: &Callback41) -> Result<Res, Nfs4Status> {
    let (session, _, _) = cx.session.ok_or(Nfs4Status::OpNotInSession)?;
    let mut st = cx.state();
    let s = st
        .sessions
        .get_mut(&session)
        .ok_or(Nfs4Status::BadSession)?;
    s.callback = callback.clone();
    st.cb_due = true;
    Ok(Res::Empty)
}

pub(super) fn reclaim_complete(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let (_, _, client) = cx.session.ok_or(Nfs4Status::OpNotInSession)?;
    let c = st
        .clients
        .get_mut(&client)
        .ok_or(Nfs4Status::StaleClientId)?;
    if c.reclaim_complete {
        return Err(Nfs4Status::CompleteAlready);
    }
    c.reclaim_complete = true;
    let owner = c.owner.clone();
    st.reclaimed(&owner);
    Ok(Res::Empty)
}

/// FREE_STATEID (RFC 8881 §18.38): forgets a lock stateid without locks, or a revoked
/// delegation (which ends SEQUENCE's RECALLABLE_STATE_REVOKED once none is left); an open
/// or a delegation still held is LOCKS_HELD.
pub(super) fn free_stateid(cx: &mut Ctx, id: StateId) -> Result<Res, Nfs4Status> {
    let id = cx.stateid(id)?;
    let mut st = cx.state();
    let client = cx.session_client();
    if st
        .revoked
        .get(&id.other)
        .is_some_and(|c| Some(*c) == client)
    {
        st.revoked.remove(&id.other);
        return Ok(Res::Empty);
    }
    let s = st.lookup_state(&id, cx.minor)?;
    match s {
        Stateful::Open(_) | Stateful::Deleg(_) => Err(Nfs4Status::LocksHeld),
        Stateful::Lock(l) => {
            if st.holds_locks(&l.owner, Some(&l.fh)) {
                return Err(Nfs4Status::LocksHeld);
            }
            st.states.remove(&id.other);
            Ok(Res::Empty)
        }
    }
}

pub(super) fn test_stateid(cx: &mut Ctx, ids: &[StateId]) -> Result<Res, Nfs4Status> {
    let st = cx.state();
    let client = cx.session.map(|s| s.2);
    let codes = ids
        .iter()
        .map(|id| match st.lookup_state(id, cx.minor) {
            Ok(s) if Some(s.client()) == client => Nfs4Status::Ok,
            Ok(_) => Nfs4Status::BadStateId,
            Err(e) => e,
        })
        .collect();
    Ok(Res::TestStateId(codes))
}
