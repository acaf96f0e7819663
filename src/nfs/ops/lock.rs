//! Byte-range lock operations: LOCK, LOCKT, LOCKU and RELEASE_LOCKOWNER.
//!
//! Locks are POSIX-style and advisory, held in the state tables per file (split and merged
//! per owner, bounded per file); a conflict answers NFS4ERR_DENIED with the conflicting lock.
//! A 4.0 LOCK with a new lock owner consumes both the open owner's and the lock owner's
//! seqid. Reclaims are taken only during the grace period, new locks only outside it. Not
//! here: mandatory locking (READ and WRITE do not check locks), blocking locks (no callbacks).

use super::open::open_state;
use super::Ctx;
use crate::nfs::state::{range_end, LockState, Stateful};
use crate::nfs::status::Nfs4Status;
use crate::nfs::wire::{ErrBody, Locker, OpError, OpResult, Owner, Res, StateId};

/// The exclusive end of a lock's range; a zero length or an overflowing one is invalid.
fn lock_range(offset: u64, length: u64) -> Result<u64, Nfs4Status> {
    if length == 0 {
        return Err(Nfs4Status::Inval);
    }
    range_end(offset, length).ok_or(Nfs4Status::Inval)
}

pub(super) fn lock(
    cx: &mut Ctx,
    write: bool,
    reclaim: bool,
    offset: u64,
    length: u64,
    locker: &Locker,
) -> OpResult {
    let fh = cx.fh()?.clone();
    let end = lock_range(offset, length)?;
    let mut st = cx.state();
    let grace = st.in_grace(cx.now);
    if reclaim && !grace {
        return Err(Nfs4Status::NoGrace.into());
    }
    if !reclaim && grace {
        return Err(Nfs4Status::Grace.into());
    }
    let (lock_other, owner) = match locker {
        Locker::New {
            open_seqid,
            open_stateid,
            lock_seqid,
            owner,
        } => {
            if cx.minor == 0 {
                // 4.0 names the client in the new lock owner (4.1 takes the session's).
                st.renew(cx.now, owner.clientid)?;
            }
            let Some((oid, open)) = open_state(cx, &mut st, *open_stateid, *open_seqid)? else {
                return Ok(Res::Empty);
            };
            let owner = Owner {
                clientid: open.client,
                owner: owner.owner.clone(),
            };
            // The lock owner's seqid starts here (4.0); the open owner's was consumed.
            if cx.minor == 0 {
                let e = st.lock_owners.entry(owner.clone()).or_default();
                e.seqid = lock_seqid.wrapping_sub(1);
                e.confirmed = true;
            }
            let existing = st.states.iter().find_map(|(other, s)| match s {
                Stateful::Lock(l) if l.owner == owner && l.fh == fh => Some(*other),
                _ => None,
            });
            let other = match existing {
                Some(o) => o,
                None => {
                    if !st.may_add_state(open.client) {
                        return Err(Nfs4Status::Resource.into());
                    }
                    let other = st.new_other();
                    st.states.insert(
                        other,
                        Stateful::Lock(LockState {
                            seqid: 0,
                            client: open.client,
                            owner: owner.clone(),
                            fh: fh.clone(),
                            open: oid.other,
                        }),
                    );
                    other
                }
            };
            (other, owner)
        }
        Locker::Existing {
            lock_stateid,
            lock_seqid,
        } => {
            let Some((id, s)) = cx.seq_state(&mut st, *lock_stateid, *lock_seqid)? else {
                return Ok(Res::Empty);
            };
            let Stateful::Lock(l) = s else {
                return Err(Nfs4Status::BadStateId.into());
            };
            if l.fh != fh {
                return Err(Nfs4Status::BadStateId.into());
            }
            st.renew(cx.now, l.client)?;
            if !cx.consume_seqid(&mut st, false, &l.owner, *lock_seqid)? {
                return Ok(Res::Empty);
            }
            (id.other, l.owner)
        }
    };
    if matches!(locker, Locker::New { .. }) && cx.minor == 0 {
        // Both owners' seqids move on with this LOCK; the open owner's is recorded by
        // the pipeline, the lock owner's here.
        if let Some(e) = st.lock_owners.get_mut(&owner) {
            e.seqid = e.seqid.wrapping_add(1);
        }
    }
    if let Some(d) = st.conflict(&fh, &owner, write, offset, end) {
        return Err(OpError {
            status: Nfs4Status::Denied,
            body: ErrBody::Denied(d),
        });
    }
    st.set_range(&fh, &owner, Some(write), offset, end)?;
    Ok(cx.advance(&mut st, lock_other)?)
}

pub(super) fn lockt(
    cx: &mut Ctx,
    write: bool,
    offset: u64,
    length: u64,
    owner: &Owner,
) -> OpResult {
    let fh = cx.fh()?.clone();
    let kind = cx.vfs.getattr(cx.caller, &fh)?.kind;
    super::regular_only(kind, cx.minor, super::NeedsRegular::Lock)?;
    let end = lock_range(offset, length)?;
    let mut st = cx.state();
    let owner = Owner {
        clientid: cx.client_of(&mut st, owner.clientid)?,
        owner: owner.owner.clone(),
    };
    match st.conflict(&fh, &owner, write, offset, end) {
        Some(d) => Err(OpError {
            status: Nfs4Status::Denied,
            body: ErrBody::Denied(d),
        }),
        None => Ok(Res::Empty),
    }
}

pub(super) fn locku(
    cx: &mut Ctx,
    seqid: u32,
    id: StateId,
    offset: u64,
    length: u64,
) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?.clone();
    let end = lock_range(offset, length)?;
    let mut st = cx.state();
    let Some((id, s)) = cx.seq_state(&mut st, id, seqid)? else {
        return Ok(Res::Empty);
    };
    let Stateful::Lock(l) = s else {
        return Err(Nfs4Status::BadStateId);
    };
    if l.fh != fh {
        return Err(Nfs4Status::BadStateId);
    }
    st.renew(cx.now, l.client)?;
    if !cx.consume_seqid(&mut st, false, &l.owner, seqid)? {
        return Ok(Res::Empty);
    }
    st.set_range(&fh, &l.owner, None, offset, end)?;
    cx.advance(&mut st, id.other)
}

pub(super) fn release_lockowner(cx: &mut Ctx, owner: &Owner) -> Result<Res, Nfs4Status> {
    let mut st = cx.state();
    st.renew(cx.now, owner.clientid)?;
    if st.holds_locks(owner, None) {
        return Err(Nfs4Status::LocksHeld);
    }
    st.lock_owners.remove(owner);
    st.states
        .retain(|_, s| !matches!(s, Stateful::Lock(l) if l.owner == *owner));
    Ok(Res::Empty)
}
