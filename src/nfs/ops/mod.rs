//! NFSv4 operations, one file per family: [`filehandle`] (PUTFH, PUTROOTFH, PUTPUBFH, GETFH,
//! SAVEFH, RESTOREFH, LOOKUP, LOOKUPP, SECINFO, SECINFO_NO_NAME), [`attr`] (GETATTR, SETATTR,
//! ACCESS, VERIFY, NVERIFY), [`io`] (READ, WRITE, COMMIT; 4.2 READ_PLUS, SEEK, ALLOCATE,
//! DEALLOCATE, COPY, CLONE), [`open`] (OPEN, OPEN_CONFIRM,
//! OPEN_DOWNGRADE, CLOSE, and the delegation operations, never granted), [`lock`] (LOCK, LOCKT,
//! LOCKU, RELEASE_LOCKOWNER), [`session`] (client ids, leases, sessions and stateids: 4.0
//! SETCLIENTID, SETCLIENTID_CONFIRM, RENEW; 4.1 EXCHANGE_ID, CREATE_SESSION, SEQUENCE,
//! DESTROY_SESSION, DESTROY_CLIENTID, BIND_CONN_TO_SESSION, RECLAIM_COMPLETE, TEST_STATEID,
//! FREE_STATEID) and [`dir`] (READDIR, CREATE, REMOVE, RENAME, LINK, READLINK).
//!
//! Each operation takes the COMPOUND's context ([`Ctx`]: current and saved filehandles and
//! stateids, the caller, the session, the state tables and the [`Vfs`]) and its decoded
//! arguments, and returns its result body or its [`Nfs4Status`]; [`run`] dispatches one
//! [`Op`] to its family. The state mutex is taken per state step and never held across a
//! [`Vfs`] call. The rules of an operation (RFC 7530, RFC 8881) live in its family's file.
//!
//! Not here: decoding and encoding ([`super::wire`]), the COMPOUND loop, SEQUENCE's position,
//! reply size limits and replay caches ([`super::core`]). Like the core, the operations do no
//! I/O of their own and read no clock: `now` is in the context.

mod attr;
mod dir;
mod filehandle;
mod io;
mod lock;
mod open;
pub(crate) mod session;

use super::state::{SeqCheck, State, Stateful};
use super::status::Nfs4Status;
use super::vfs::{Caller, FileType, Handle, Vfs};
use super::wire::{Op, OpError, OpResult, Owner, Res, StateId, MAX_NAME};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Takes the state tables' lock.
pub(crate) fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A poisoned lock means a panic elsewhere, which aborts the process (panic = abort);
    // the data is still the last consistent state.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every COMPOUND works on: the file side, the state tables and the server's identity.
pub(crate) struct Shared {
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) state: Mutex<State>,
    /// EXCHANGE_ID's server owner and scope.
    pub(crate) server_owner: Vec<u8>,
    /// Whether OPEN grants read delegations (`[nfs] delegations`).
    pub(crate) delegations: bool,
}

/// Per-COMPOUND context.
pub(crate) struct Ctx<'a> {
    vfs: &'a dyn Vfs,
    state: &'a Mutex<State>,
    /// EXCHANGE_ID's server owner and scope.
    server_owner: &'a [u8],
    delegations: bool,
    now: Instant,
    caller: &'a Caller,
    /// The connection the COMPOUND came on (a 4.1 back channel may be bound to it).
    conn: u64,
    minor: u32,
    cfh: Option<Handle>,
    saved: Option<Handle>,
    current_stateid: Option<StateId>,
    saved_stateid: Option<StateId>,
    /// 4.1: the SEQUENCE'd session, the slot in use and the session's client.
    pub(crate) session: Option<([u8; 16], u32, u64)>,
    /// The largest reply the client takes (the session's, or 4.0's record limit).
    pub(crate) max_response: usize,
    /// A 4.0 seqid replay: the encoded result to send verbatim.
    pub(crate) replay: Option<Vec<u8>>,
    /// A 4.0 owner whose seqid this op consumed (open or lock owner).
    pub(crate) seq_owner: Option<(bool, Owner)>,
}

impl<'a> Ctx<'a> {
    /// The context of a COMPOUND of minor version `minor` from `caller` on connection
    /// `conn`, whose replies may be `max_response` bytes long until SEQUENCE says otherwise.
    pub(crate) fn new(
        shared: &'a Shared,
        now: Instant,
        caller: &'a Caller,
        conn: u64,
        minor: u32,
        max_response: usize,
    ) -> Self {
        Ctx {
            vfs: &*shared.vfs,
            state: &shared.state,
            server_owner: &shared.server_owner,
            delegations: shared.delegations,
            now,
            caller,
            conn,
            minor,
            cfh: None,
            saved: None,
            current_stateid: None,
            saved_stateid: None,
            session: None,
            max_response,
            replay: None,
            seq_owner: None,
        }
    }

    /// The state tables, locked for one step (not across a [`Vfs`] call).
    fn state(&self) -> MutexGuard<'a, State> {
        lock_state(self.state)
    }

    fn fh(&self) -> Result<&Handle, Nfs4Status> {
        self.cfh.as_ref().ok_or(Nfs4Status::NoFileHandle)
    }

    /// Resolves NFSv4.1's "current stateid" placeholder.
    fn stateid(&self, id: StateId) -> Result<StateId, Nfs4Status> {
        if self.minor >= 1 && id == StateId::CURRENT {
            self.current_stateid.ok_or(Nfs4Status::BadStateId)
        } else {
            Ok(id)
        }
    }

    fn in_grace(&self) -> bool {
        self.state().in_grace(self.now)
    }

    /// The client this COMPOUND speaks for, where the request says: its session's (4.1).
    fn session_client(&self) -> Option<u64> {
        self.session.map(|(_, _, c)| c)
    }

    /// Recalls the delegations of `fh` held by others than `except`, whose operation
    /// conflicts with them: NFS4ERR_DELAY while any is outstanding (RFC 8881 §10.4.4, RFC
    /// 7530 §10.4.4), so that the client retries once they are returned or revoked.
    fn recall(&self, fh: &Handle, except: Option<u64>) -> Result<(), Nfs4Status> {
        if self.state().recall(fh, except, self.now) {
            return Err(Nfs4Status::Delay);
        }
        Ok(())
    }

    /// [`Ctx::recall`] for the object `name` in directory `dir`, if there is one and any
    /// delegation exists at all (REMOVE, RENAME).
    fn recall_name(&self, dir: &Handle, name: &[u8]) -> Result<(), Nfs4Status> {
        if !self.state().has_delegations() {
            return Ok(());
        }
        match self.vfs.lookup(self.caller, dir, name) {
            Ok(fh) => self.recall(&fh, self.session_client()),
            Err(_) => Ok(()),
        }
    }

    /// A directory's change attribute after an operation (0 if it cannot be read).
    fn change(&self, dir: &Handle) -> u64 {
        self.vfs
            .getattr(self.caller, dir)
            .map(|a| a.change)
            .unwrap_or(0)
    }

    /// The client of this request: the session's (4.1) or the given id (4.0), renewed.
    fn client_of(&self, st: &mut State, clientid: u64) -> Result<u64, Nfs4Status> {
        let id = match self.session {
            Some((_, _, c)) => c,
            None => clientid,
        };
        st.renew(self.now, id)?;
        Ok(id)
    }

    /// Moves the seqid of state `other` on, and makes the new stateid current and the
    /// operation's result.
    fn advance(&mut self, st: &mut State, other: [u8; 12]) -> Result<Res, Nfs4Status> {
        let seqid = match st.states.get_mut(&other) {
            Some(Stateful::Open(o)) => {
                o.seqid = o.seqid.wrapping_add(1);
                o.seqid
            }
            Some(Stateful::Lock(l)) => {
                l.seqid = l.seqid.wrapping_add(1);
                l.seqid
            }
            Some(Stateful::Deleg(_)) | None => return Err(Nfs4Status::BadStateId),
        };
        let out = StateId { seqid, other };
        self.current_stateid = Some(out);
        Ok(Res::StateId(out))
    }

    /// Looks up the stateid of a seqid-bearing operation (CLOSE, OPEN_CONFIRM,
    /// OPEN_DOWNGRADE, LOCK, LOCKU), resolving the current stateid. In 4.0 a stateid that
    /// moved on (OLD_STATEID) or was closed still names its owner: that owner's last seqid
    /// again is a retransmission, answered from its cache (`Ok(None)`), and its next seqid is
    /// consumed by the error, which moves the seqid on as every error but those of RFC 7530
    /// §9.1.7 does.
    fn seq_state(
        &mut self,
        st: &mut State,
        id: StateId,
        seqid: u32,
    ) -> Result<Option<(StateId, Stateful)>, Nfs4Status> {
        let id = self.stateid(id)?;
        let err = match st.lookup_state(&id, self.minor) {
            Ok(s) => return Ok(Some((id, s.clone()))),
            Err(e) => e,
        };
        if self.minor >= 1 {
            return Err(err);
        }
        let owner = match st.states.get(&id.other) {
            Some(Stateful::Open(o)) => Some((true, o.owner.clone())),
            Some(Stateful::Lock(l)) => Some((false, l.owner.clone())),
            Some(Stateful::Deleg(_)) => None,
            None => st
                .open_owners
                .iter()
                .find(|(_, s)| s.closed == Some(id.other))
                .map(|(o, _)| (true, o.clone())),
        };
        let Some((is_open, owner)) = owner else {
            return Err(err);
        };
        if !self.consume_seqid(st, is_open, &owner, seqid)? {
            return Ok(None);
        }
        Err(err)
    }

    /// Consumes `seqid` of a 4.0 owner (creating the owner on first use). Returns whether to
    /// run the op; on a replay, the encoded reply is left in `self.replay`.
    fn consume_seqid(
        &mut self,
        st: &mut State,
        is_open: bool,
        owner: &Owner,
        seqid: u32,
    ) -> Result<bool, Nfs4Status> {
        if self.minor >= 1 {
            return Ok(true);
        }
        let table = if is_open {
            &mut st.open_owners
        } else {
            &mut st.lock_owners
        };
        match State::check_seqid(table.get(owner), seqid)? {
            SeqCheck::Replay(bytes) => {
                self.replay = Some(bytes);
                Ok(false)
            }
            SeqCheck::New => {
                let entry = table.entry(owner.clone()).or_default();
                if !entry.confirmed || !is_open {
                    // A new (or unconfirmed, hence restarting) owner starts at this seqid.
                    entry.seqid = seqid.wrapping_sub(1);
                    if !is_open {
                        entry.confirmed = true;
                    }
                }
                self.seq_owner = Some((is_open, owner.clone()));
                Ok(true)
            }
        }
    }
}

/// Checks a component name the way every name-taking operation must.
fn check_name(name: &[u8]) -> Result<(), Nfs4Status> {
    if name.is_empty() {
        return Err(Nfs4Status::Inval);
    }
    if name.len() > MAX_NAME {
        return Err(Nfs4Status::NameTooLong);
    }
    if name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Nfs4Status::BadName);
    }
    Ok(())
}

/// An operation that works on regular files only, for [`regular_only`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NeedsRegular {
    Open,
    /// LOCK, LOCKT.
    Lock,
}

/// Refuses an object of type `kind` where `op` needs a regular file, with the status the
/// RFCs give: a directory is NFS4ERR_ISDIR. OPEN of anything else is NFS4ERR_SYMLINK in
/// 4.0 (RFC 7530 §16.16.6: symlinks and special files alike), and in 4.1 NFS4ERR_SYMLINK
/// for a symlink and NFS4ERR_WRONG_TYPE for the rest (RFC 8881 §18.16.3). LOCK and LOCKT
/// have no NFS4ERR_SYMLINK in 4.0 (RFC 7530 §13.2): NFS4ERR_INVAL; in 4.1 a symlink is
/// NFS4ERR_SYMLINK and the rest NFS4ERR_WRONG_TYPE (RFC 8881 §18.10.4, §18.11.4).
fn regular_only(kind: FileType, minor: u32, op: NeedsRegular) -> Result<(), Nfs4Status> {
    match (kind, op) {
        (FileType::Regular, _) => Ok(()),
        (FileType::Directory, _) => Err(Nfs4Status::IsDir),
        (_, NeedsRegular::Lock) if minor == 0 => Err(Nfs4Status::Inval),
        (FileType::Symlink, _) => Err(Nfs4Status::Symlink),
        (_, NeedsRegular::Open) if minor == 0 => Err(Nfs4Status::Symlink),
        _ => Err(Nfs4Status::WrongType),
    }
}

/// Runs one operation (SEQUENCE's place in the COMPOUND is the pipeline's business).
pub(crate) fn run(cx: &mut Ctx, op: &Op) -> OpResult {
    let r = match op {
        Op::PutRootFh | Op::PutPubFh => filehandle::put_root(cx),
        Op::PutFh(h) => filehandle::put(cx, h),
        Op::GetFh => filehandle::get(cx),
        Op::SaveFh => filehandle::save(cx),
        Op::RestoreFh => filehandle::restore(cx),
        Op::Lookup(name) => filehandle::lookup(cx, name),
        Op::LookupP => filehandle::lookupp(cx),
        Op::SecInfo(name) => filehandle::secinfo(cx, name),
        Op::SecInfoNoName(style) => filehandle::secinfo_no_name(cx, *style),
        Op::GetAttr(want) => attr::getattr(cx, want),
        Op::Verify(f) => attr::verify(cx, f, true),
        Op::NVerify(f) => attr::verify(cx, f, false),
        Op::Access(wanted) => attr::access(cx, *wanted),
        Op::SetAttr { stateid, attrs } => return attr::setattr(cx, *stateid, attrs),
        Op::Read {
            stateid,
            offset,
            count,
        } => io::read(cx, *stateid, *offset, *count),
        Op::Write {
            stateid,
            offset,
            stable,
            data,
        } => io::write(cx, *stateid, *offset, *stable, data),
        Op::Commit { offset, count } => io::commit(cx, *offset, *count),
        Op::Allocate {
            stateid,
            offset,
            length,
            punch,
        } => io::allocate(cx, *stateid, *offset, *length, *punch),
        Op::Copy {
            src,
            dst,
            src_offset,
            dst_offset,
            count,
            clone,
        } => io::copy(cx, (*src, *src_offset), (*dst, *dst_offset), *count, *clone),
        Op::ReadPlus {
            stateid,
            offset,
            count,
        } => io::read_plus(cx, *stateid, *offset, *count),
        Op::Seek {
            stateid,
            offset,
            data,
        } => io::seek(cx, *stateid, *offset, *data),
        Op::ReadLink => dir::readlink(cx),
        Op::Create { kind, name, attrs } => dir::create(cx, kind, name, attrs),
        Op::Link(name) => dir::link(cx, name),
        Op::Remove(name) => dir::remove(cx, name),
        Op::Rename { from, to } => dir::rename(cx, from, to),
        Op::ReadDir {
            cookie,
            verifier,
            dircount,
            maxcount,
            attrs,
        } => dir::readdir(cx, *cookie, *verifier, *dircount, *maxcount, attrs),
        Op::Open(args) => open::open(cx, args),
        Op::OpenConfirm { stateid, seqid } => open::open_confirm(cx, *stateid, *seqid),
        Op::OpenDowngrade {
            stateid,
            seqid,
            share_access,
            share_deny,
        } => open::open_downgrade(cx, *stateid, *seqid, *share_access, *share_deny),
        Op::Close { seqid, stateid } => open::close(cx, *seqid, *stateid),
        Op::DelegPurge(_) => open::delegpurge(cx),
        Op::DelegReturn(id) => open::delegreturn(cx, *id),
        Op::Lock {
            write,
            reclaim,
            offset,
            length,
            locker,
        } => return lock::lock(cx, *write, *reclaim, *offset, *length, locker),
        Op::LockT {
            write,
            offset,
            length,
            owner,
        } => return lock::lockt(cx, *write, *offset, *length, owner),
        Op::LockU {
            seqid,
            stateid,
            offset,
            length,
        } => lock::locku(cx, *seqid, *stateid, *offset, *length),
        Op::ReleaseLockOwner(owner) => lock::release_lockowner(cx, owner),
        Op::Renew(clientid) => session::renew(cx, *clientid),
        Op::SetClientId {
            verifier,
            id,
            callback,
        } => session::setclientid(cx, *verifier, id, callback),
        Op::SetClientIdConfirm { clientid, verifier } => {
            session::setclientid_confirm(cx, *clientid, *verifier)
        }
        Op::ExchangeId {
            verifier,
            owner,
            flags,
            state_protect,
        } => session::exchange_id(cx, *verifier, owner, *flags, *state_protect),
        Op::CreateSession {
            clientid,
            sequence,
            flags,
            fore,
            back,
            callback,
        } => session::create_session(cx, *clientid, *sequence, *flags, (fore, back), callback),
        Op::BackchannelCtl(callback) => session::backchannel_ctl(cx, callback),
        Op::DestroySession(id) => session::destroy_session(cx, id),
        Op::DestroyClientId(id) => session::destroy_clientid(cx, *id),
        Op::BindConnToSession { session, dir } => session::bind_conn(cx, session, *dir),
        Op::ReclaimComplete(_) => session::reclaim_complete(cx),
        Op::FreeStateId(id) => session::free_stateid(cx, *id),
        Op::TestStateId(ids) => session::test_stateid(cx, ids),
        // The pipeline runs SEQUENCE itself, as the first operation only.
        Op::Sequence { .. } => Err(Nfs4Status::SequencePos),
        Op::OpenAttr | Op::NotSupported(_) => Err(Nfs4Status::NotSupp),
        Op::Illegal => Err(Nfs4Status::OpIllegal),
        Op::Bad(_) => Err(Nfs4Status::BadXdr),
    };
    r.map_err(OpError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_get_the_status_of_their_minor_version() {
        use FileType::*;
        use NeedsRegular::*;
        use Nfs4Status::{Inval, IsDir, Symlink as Sym, WrongType};
        let specials = [Fifo, Socket, Char, Block];
        for minor in [0, 1, 2] {
            for op in [Open, Lock] {
                assert_eq!(regular_only(Regular, minor, op), Ok(()));
                assert_eq!(regular_only(Directory, minor, op), Err(IsDir));
            }
        }
        assert_eq!(regular_only(Symlink, 0, Open), Err(Sym));
        assert_eq!(regular_only(Symlink, 0, Lock), Err(Inval));
        for minor in [1, 2] {
            assert_eq!(regular_only(Symlink, minor, Open), Err(Sym));
            assert_eq!(regular_only(Symlink, minor, Lock), Err(Sym));
        }
        for kind in specials {
            assert_eq!(regular_only(kind, 0, Open), Err(Sym), "{kind:?}");
            assert_eq!(regular_only(kind, 0, Lock), Err(Inval), "{kind:?}");
            for minor in [1, 2] {
                for op in [Open, Lock] {
                    assert_eq!(regular_only(kind, minor, op), Err(WrongType), "{kind:?}");
                }
            }
        }
    }
}
