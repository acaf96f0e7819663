//! Open operations: OPEN (claims null, previous, fh, and the delegated opens of a client
//! giving a delegation back: delegate_cur and deleg_cur_fh; unchecked, guarded, exclusive
//! and 4.1 exclusive4_1 creates), OPEN_CONFIRM (4.0), OPEN_DOWNGRADE and CLOSE, with share
//! reservations (deny modes) checked in the state tables; read delegations granted with an
//! OPEN for reading, recalled by another client's OPEN for writing (or denying reads),
//! DELEGRETURN, DELEGPURGE.
//!
//! An exclusive create keeps its verifier in the new file's atime and mtime, so that a
//! retransmitted OPEN finds the file it made. 4.0 open owners consume a seqid per operation
//! and keep their last reply for replays (see [`Ctx::consume_seqid`]). Not here: write
//! delegations (a node's layer is copied to the pool's other members as it changes, and a
//! client caching writes under a delegation would hold changes no copy has: see
//! `nfs::state`), claims of delegations of a previous client instance (delegate_prev:
//! NOTSUPP), OPEN's WANT_ flags beyond "no delegation".

use super::{check_name, regular_only, Ctx, NeedsRegular};
use crate::nfs::state::{Open, State, Stateful};
use crate::nfs::status::Nfs4Status;
use crate::nfs::vfs::{self, FileType, Handle, NewObject, SetAttr, SetTime, Time, VfsError};
use crate::nfs::wire::{
    fattr, Bitmap, ChangeInfo, Claim, CreateHow, OpenArgs, Owner, Res, StateId,
};

const SHARE_ACCESS_MASK: u32 = 0x3;
/// The OPEN4_SHARE_ACCESS_WANT_* field of 4.1's share_access, and its values that ask for
/// no delegation: WANT_NO_DELEG and WANT_CANCEL (RFC 8881 §18.16.3).
const SHARE_WANT_MASK: u32 = 0xff00;
const SHARE_WANT_NO_DELEG: u32 = 0x0400;
const SHARE_WANT_CANCEL: u32 = 0x0500;
const OPEN4_RESULT_CONFIRM: u32 = 2;
const OPEN4_RESULT_LOCKTYPE_POSIX: u32 = 4;

/// The times an exclusive create stores its verifier in.
fn verifier_times(verf: [u8; 8]) -> (Time, Time) {
    let a = u32::from_be_bytes([verf[0], verf[1], verf[2], verf[3]]);
    let b = u32::from_be_bytes([verf[4], verf[5], verf[6], verf[7]]);
    (
        Time {
            seconds: i64::from(a),
            nanos: 0,
        },
        Time {
            seconds: i64::from(b),
            nanos: 0,
        },
    )
}

/// SHARE_DENIED if another open-owner's open of `fh` denies what this one asks, or asks
/// what this one would deny (RFC 7530 §9.9, RFC 8881 §9.7).
fn share_check(
    cx: &Ctx,
    fh: &Handle,
    owner: &Owner,
    access: u32,
    deny: u32,
) -> Result<(), Nfs4Status> {
    if cx.state().share_conflict(fh, owner, access, deny) {
        return Err(Nfs4Status::ShareDenied);
    }
    Ok(())
}

/// Recalls other clients' delegations of `fh` that an open by `client` with `access` and
/// `deny` conflicts with: writing, or denying reads, to the holder of a read delegation.
fn deleg_conflict(
    cx: &Ctx,
    fh: &Handle,
    client: u64,
    access: u32,
    deny: u32,
) -> Result<(), Nfs4Status> {
    if access & 2 != 0 || deny & 1 != 0 {
        cx.recall(fh, Some(client))?;
    }
    Ok(())
}

/// The delegation `id` of `client` on `fh`, which a delegate_cur claim names.
fn claimed_deleg(cx: &Ctx, id: StateId, fh: &Handle, client: u64) -> Result<(), Nfs4Status> {
    let st = cx.state();
    match st.lookup_state(&id, cx.minor)? {
        Stateful::Deleg(d) if d.client == client && d.fh == *fh => Ok(()),
        _ => Err(Nfs4Status::BadStateId),
    }
}

/// The share access bits OPEN asks for, if its share modes are valid: some access, a known
/// deny mode, and write access for a create that truncates an existing file (which writes
/// it, as knfsd requires).
fn open_access(a: &OpenArgs) -> Result<u32, Nfs4Status> {
    let access = a.share_access & SHARE_ACCESS_MASK;
    if access == 0 || a.share_deny > 3 {
        return Err(Nfs4Status::Inval);
    }
    let truncates = match &a.create {
        Some(CreateHow::Unchecked(f) | CreateHow::Guarded(f) | CreateHow::Exclusive41(_, f)) => {
            f.settable()?.size.is_some()
        }
        _ => false,
    };
    if truncates && access & 2 == 0 {
        return Err(Nfs4Status::Inval);
    }
    Ok(access)
}

pub(super) fn open(cx: &mut Ctx, a: &OpenArgs) -> Result<Res, Nfs4Status> {
    let dir_or_file = cx.fh()?.clone();
    let now = cx.now;
    // State checks first: client, seqid (consumed by the argument errors after it too, RFC
    // 7530 §9.1.7), grace.
    let (owner, access) = {
        let mut st = cx.state();
        let clientid = cx.client_of(&mut st, a.owner.clientid)?;
        let owner = Owner {
            clientid,
            owner: a.owner.owner.clone(),
        };
        let restarts = st
            .open_owners
            .get(&owner)
            .is_some_and(|o| !o.confirmed && o.last.is_some());
        if !cx.consume_seqid(&mut st, true, &owner, a.seqid)? {
            return Ok(Res::Empty); // replayed from the owner's cache
        }
        if restarts && cx.minor == 0 {
            // An owner that never confirmed its open starts over: that open goes (RFC 7530
            // §16.18.5).
            st.states
                .retain(|_, s| !matches!(s, Stateful::Open(o) if o.owner == owner));
        }
        let access = open_access(a)?;
        let grace = st.in_grace(now);
        let reclaimed = st
            .clients
            .get(&clientid)
            .is_some_and(|c| c.reclaim_complete);
        match &a.claim {
            Claim::Previous(_) if !grace || reclaimed => return Err(Nfs4Status::NoGrace),
            Claim::Null(_) | Claim::Fh if grace => return Err(Nfs4Status::Grace),
            _ => {}
        }
        if !st.may_add_state(clientid) {
            return Err(Nfs4Status::Resource);
        }
        (owner, access)
    };
    let caller = cx.caller;
    let vfs = cx.vfs;
    let mut cinfo = ChangeInfo::default();
    let mut attrset = Bitmap::default();
    let mut created = false;
    let fh = match &a.claim {
        Claim::Null(name) => {
            check_name(name)?;
            let da = vfs.getattr(caller, &dir_or_file)?;
            if da.kind != FileType::Directory {
                return Err(Nfs4Status::NotDir);
            }
            // An existing file is checked against other opens' deny modes before a create
            // may truncate it. An object that is no regular file gets OPEN's type error,
            // unless the create mode makes any existing name EXIST.
            if let Ok(existing) = vfs.lookup(caller, &dir_or_file, name) {
                if matches!(a.create, None | Some(CreateHow::Unchecked(_))) {
                    let kind = vfs.getattr(caller, &existing)?.kind;
                    regular_only(kind, cx.minor, NeedsRegular::Open)?;
                }
                share_check(cx, &existing, &owner, access, a.share_deny)?;
                deleg_conflict(cx, &existing, owner.clientid, access, a.share_deny)?;
            }
            let fh = match &a.create {
                None => vfs.lookup(caller, &dir_or_file, name)?,
                Some(how) => {
                    let (set, exclusive, verf) = match how {
                        CreateHow::Unchecked(f) => {
                            attrset = f.mask.clone();
                            (f.settable()?, false, None)
                        }
                        CreateHow::Guarded(f) => {
                            attrset = f.mask.clone();
                            (f.settable()?, true, None)
                        }
                        CreateHow::Exclusive(verf) => (SetAttr::default(), true, Some(*verf)),
                        CreateHow::Exclusive41(verf, f) => {
                            attrset = f.mask.clone();
                            let set = f.settable()?;
                            if set.atime.is_some() || set.mtime.is_some() {
                                return Err(Nfs4Status::Inval);
                            }
                            (set, true, Some(*verf))
                        }
                    };
                    let mut set = set;
                    if let Some(verf) = verf {
                        // The verifier is kept in atime and mtime (the client sets the
                        // real times afterwards, as attrset tells it).
                        let (t1, t2) = verifier_times(verf);
                        set.atime = Some(SetTime::Client(t1));
                        set.mtime = Some(SetTime::Client(t2));
                        attrset.set(fattr::TIME_ACCESS_SET);
                        attrset.set(fattr::TIME_MODIFY_SET);
                    }
                    match vfs.create(
                        caller,
                        &dir_or_file,
                        name,
                        &NewObject::File { exclusive },
                        &set,
                    ) {
                        Ok((fh, _)) => {
                            created = true;
                            fh
                        }
                        Err(VfsError::Exist) if verf.is_some() => {
                            let fh = vfs.lookup(caller, &dir_or_file, name)?;
                            let fa = vfs.getattr(caller, &fh)?;
                            let (t1, t2) = verifier_times(verf.unwrap_or_default());
                            if fa.atime != t1 || fa.mtime != t2 {
                                return Err(Nfs4Status::Exist);
                            }
                            fh
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            cinfo = ChangeInfo {
                atomic: false,
                before: da.change,
                after: cx.change(&dir_or_file),
            };
            fh
        }
        Claim::Previous(_) | Claim::Fh => dir_or_file.clone(),
        Claim::DelegateCur(id, name) => {
            check_name(name)?;
            let fh = vfs.lookup(caller, &dir_or_file, name)?;
            claimed_deleg(cx, cx.stateid(*id)?, &fh, owner.clientid)?;
            fh
        }
        Claim::DelegCurFh(id) => {
            claimed_deleg(cx, cx.stateid(*id)?, &dir_or_file, owner.clientid)?;
            dir_or_file.clone()
        }
        Claim::DelegatePrev(_) | Claim::DelegPrevFh => return Err(Nfs4Status::NotSupp),
    };
    regular_only(vfs.getattr(caller, &fh)?.kind, cx.minor, NeedsRegular::Open)?;
    share_check(cx, &fh, &owner, access, a.share_deny)?;
    deleg_conflict(cx, &fh, owner.clientid, access, a.share_deny)?;
    if !created {
        let mut want = 0;
        if access & 1 != 0 {
            want |= vfs::access::READ;
        }
        if access & 2 != 0 {
            want |= vfs::access::MODIFY;
        }
        let got = vfs.access(caller, &fh, want)?;
        if got & want != want {
            return Err(Nfs4Status::Access);
        }
        if let Some(CreateHow::Unchecked(f)) = &a.create {
            // UNCHECKED on an existing file applies the size (truncation) only.
            let set = f.settable()?;
            if set.size.is_some() {
                vfs.setattr(
                    caller,
                    &fh,
                    &SetAttr {
                        size: set.size,
                        ..SetAttr::default()
                    },
                )?;
            }
            attrset = Bitmap::default();
        }
    }
    let mut st = cx.state();
    if st.share_conflict(&fh, &owner, access, a.share_deny) {
        return Err(Nfs4Status::ShareDenied);
    }
    let existing = st.states.iter_mut().find_map(|(other, s)| match s {
        Stateful::Open(o) if o.owner == owner && o.fh == fh => Some((*other, o)),
        _ => None,
    });
    let stateid = match existing {
        Some((other, o)) => {
            o.access |= access;
            o.deny |= a.share_deny;
            o.seqid = o.seqid.wrapping_add(1);
            StateId {
                seqid: o.seqid,
                other,
            }
        }
        None => {
            let other = st.new_other();
            st.states.insert(
                other,
                Stateful::Open(Open {
                    seqid: 1,
                    client: owner.clientid,
                    owner: owner.clone(),
                    fh: fh.clone(),
                    access,
                    deny: a.share_deny,
                }),
            );
            StateId { seqid: 1, other }
        }
    };
    let mut rflags = OPEN4_RESULT_LOCKTYPE_POSIX;
    if cx.minor == 0 && !st.open_owners.get(&owner).is_some_and(|o| o.confirmed) {
        if matches!(a.claim, Claim::Previous(_)) {
            if let Some(o) = st.open_owners.get_mut(&owner) {
                o.confirmed = true;
            }
        } else {
            rflags |= OPEN4_RESULT_CONFIRM;
        }
    }
    // A read delegation for a plain open for reading, unless the client said it wants
    // none; a 4.0 owner that still has to confirm gets none (as knfsd does: its open may
    // yet be thrown away).
    let want = a.share_access & SHARE_WANT_MASK;
    let deleg = (cx.delegations
        && access == 1
        && a.share_deny & 1 == 0
        && matches!(a.claim, Claim::Null(_) | Claim::Fh)
        && rflags & OPEN4_RESULT_CONFIRM == 0
        && want != SHARE_WANT_NO_DELEG
        && want != SHARE_WANT_CANCEL
        && st.may_delegate(owner.clientid, &fh, now))
    .then(|| st.delegate(owner.clientid, &fh));
    drop(st);
    cx.cfh = Some(fh);
    cx.current_stateid = Some(stateid);
    Ok(Res::Open {
        stateid,
        cinfo,
        rflags,
        attrset,
        deleg,
    })
}

/// Finds the open state of `id` (resolving the current stateid), consuming the owner's
/// seqid in 4.0. `Ok(None)` means a replay was queued.
pub(super) fn open_state(
    cx: &mut Ctx,
    st: &mut State,
    id: StateId,
    seqid: u32,
) -> Result<Option<(StateId, Open)>, Nfs4Status> {
    let Some((id, s)) = cx.seq_state(st, id, seqid)? else {
        return Ok(None);
    };
    let Stateful::Open(o) = s else {
        return Err(Nfs4Status::BadStateId);
    };
    if cx.cfh.as_ref() != Some(&o.fh) {
        return Err(if cx.cfh.is_none() {
            Nfs4Status::NoFileHandle
        } else {
            Nfs4Status::BadStateId
        });
    }
    st.renew(cx.now, o.client)?;
    if !cx.consume_seqid(st, true, &o.owner, seqid)? {
        return Ok(None);
    }
    Ok(Some((id, o)))
}

pub(super) fn open_confirm(cx: &mut Ctx, id: StateId, seqid: u32) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    // OPEN_CONFIRM's seqid follows the OPEN's even though the owner is unconfirmed.
    let Some((id, Stateful::Open(o))) = cx.seq_state(&mut st, id, seqid)? else {
        return match cx.replay {
            Some(_) => Ok(Res::Empty),
            None => Err(Nfs4Status::BadStateId),
        };
    };
    if cx.cfh.as_ref() != Some(&o.fh) {
        return Err(Nfs4Status::BadStateId);
    }
    let seq = st.open_owners.get(&o.owner).cloned().unwrap_or_default();
    if seq.confirmed {
        if seqid == seq.seqid {
            if let Some(b) = seq.last {
                cx.replay = Some(b);
                return Ok(Res::Empty);
            }
        }
        return Err(Nfs4Status::BadSeqId);
    }
    if seqid != seq.seqid.wrapping_add(1) {
        return Err(Nfs4Status::BadSeqId);
    }
    if let Some(s) = st.open_owners.get_mut(&o.owner) {
        s.confirmed = true;
    }
    cx.seq_owner = Some((true, o.owner.clone()));
    let res = cx.advance(&mut st, id.other)?;
    st.renew(cx.now, o.client)?;
    Ok(res)
}

pub(super) fn open_downgrade(
    cx: &mut Ctx,
    id: StateId,
    seqid: u32,
    access: u32,
    deny: u32,
) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let Some((id, o)) = open_state(cx, &mut st, id, seqid)? else {
        return Ok(Res::Empty);
    };
    let access = access & SHARE_ACCESS_MASK;
    if access == 0 || deny > 3 || access & !o.access != 0 || deny & !o.deny != 0 {
        return Err(Nfs4Status::Inval);
    }
    let Some(Stateful::Open(open)) = st.states.get_mut(&id.other) else {
        return Err(Nfs4Status::BadStateId);
    };
    open.access = access;
    open.deny = deny;
    cx.advance(&mut st, id.other)
}

pub(super) fn close(cx: &mut Ctx, seqid: u32, id: StateId) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    let Some((id, o)) = open_state(cx, &mut st, id, seqid)? else {
        return Ok(Res::Empty);
    };
    let lock_owners: Vec<Owner> = st
        .states
        .values()
        .filter_map(|s| match s {
            Stateful::Lock(l) if l.open == id.other => Some(l.owner.clone()),
            _ => None,
        })
        .collect();
    if lock_owners.iter().any(|lo| st.holds_locks(lo, Some(&o.fh))) {
        return Err(Nfs4Status::LocksHeld);
    }
    st.states.retain(|other, s| {
        *other != id.other && !matches!(s, Stateful::Lock(l) if l.open == id.other)
    });
    if let Some(seq) = st.open_owners.get_mut(&o.owner) {
        // A retransmitted CLOSE names this stateid: it leads to the owner's replay cache.
        seq.closed = Some(id.other);
    }
    let out = if cx.minor >= 1 {
        // The invalid special stateid, which becomes the current stateid: an operation
        // after CLOSE that uses the current stateid gets BAD_STATEID (RFC 8881 §16.2.3.1.2,
        // §18.2.4).
        let invalid = StateId {
            seqid: u32::MAX,
            other: [0; 12],
        };
        cx.current_stateid = Some(invalid);
        invalid
    } else {
        StateId {
            seqid: id.seqid.wrapping_add(1),
            other: id.other,
        }
    };
    Ok(Res::StateId(out))
}

/// DELEGPURGE (RFC 7530 §16.5, RFC 8881 §18.5): this server keeps no delegations across
/// client restarts and does not take delegate_prev claims, so there is nothing to purge:
/// NOTSUPP, as the RFCs ask of such a server.
pub(super) fn delegpurge(_cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    Err(Nfs4Status::NotSupp)
}

/// DELEGRETURN (RFC 7530 §16.8, RFC 8881 §18.6): the delegation of the current file goes.
/// A revoked one answers DELEG_REVOKED (4.1; EXPIRED in 4.0); another client's (4.1), or
/// another file's, BAD_STATEID.
pub(super) fn delegreturn(cx: &mut Ctx, id: StateId) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?.clone();
    let id = cx.stateid(id)?;
    let session_client = cx.session_client();
    let mut st = cx.state();
    let client = match st.lookup_state(&id, cx.minor)? {
        Stateful::Deleg(d) if d.fh == fh && session_client.is_none_or(|c| c == d.client) => {
            d.client
        }
        _ => return Err(Nfs4Status::BadStateId),
    };
    st.states.remove(&id.other);
    st.renew(cx.now, client)?;
    Ok(Res::Empty)
}
