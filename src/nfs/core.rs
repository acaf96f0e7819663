//! The NFSv4 COMPOUND pipeline: one RPC record in, one reply out.
//!
//! Data flow: [`Server::handle_record`] checks the RPC header ([`rpc::parse_call`]), decodes
//! the COMPOUND into a bounded list of [`Op`]s ([`wire::decode_compound`]), runs each op
//! against the state tables ([`State`], behind one mutex taken per state step) and the
//! [`Vfs`] (called without the mutex held), encodes each result as it completes, and stops at
//! the first failure. NFSv4.1 requests go through SEQUENCE's slot table; replies are kept in
//! the slot for replays. NFSv4.0 open and lock owners keep their last reply for seqid replays.
//!
//! Time comes in as `now`, the boot epoch and grace period at construction; the core never
//! reads a clock, opens a socket or spawns. [`Server::handle_timeout`] expires clients whose
//! lease ran out.
//!
//! Not here: delegations (never granted, OPEN answers OPEN_DELEGATE_NONE), callbacks and the
//! back channel, pNFS, named attributes, ACLs, RPCSEC_GSS, SP4_MACH_CRED/SSV state protection,
//! mandatory byte-range locking (locks are advisory: READ and WRITE do not check them),
//! persistence of client state across restarts.

use super::rpc::{self, AcceptStat, Cred};
use super::state::{
    range_end, seqid_unchanged, Client, Limits, LockState, Open, SeqCheck, Session, Slot, State,
    Stateful,
};
use super::vfs::{
    Attr, Caller, FileType, Handle, NewObject, SetAttr, SetTime, Stability, Time, Vfs, VfsError,
};
use super::wire::{
    self, encode_attrs, fattr, status, AttrSource, Bitmap, ChangeInfo, ChannelAttrs, Claim,
    CreateHow, CreateType, ErrBody, Locker, Op, OpenArgs, Owner, Res, StateId, MAX_IO, MAX_NAME,
};
use super::xdr::{opaque_len, Writer};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Most operations decoded from one COMPOUND.
pub const MAX_OPS: usize = 64;
/// Largest RPC record accepted (a maximal WRITE plus headers).
pub const MAX_RECORD: usize = MAX_IO as usize + 64 * 1024;
/// The uid and gid of AUTH_NONE callers.
pub const NOBODY: u32 = 65534;

const SHARE_ACCESS_MASK: u32 = 0x3;
const OPEN4_RESULT_CONFIRM: u32 = 2;
const OPEN4_RESULT_LOCKTYPE_POSIX: u32 = 4;
const EXCHGID4_FLAG_USE_NON_PNFS: u32 = 0x0001_0000;
const EXCHGID4_FLAG_CONFIRMED_R: u32 = 0x8000_0000;
const EXCHGID4_FLAG_UPD_CONFIRMED_REC_A: u32 = 0x4000_0000;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Identifies this server run (e.g. its start time in seconds); part of every client id,
    /// stateid and session id so that ids from an earlier run are recognised as stale.
    pub boot: u32,
    /// End of the grace period (None: no grace period, nothing to reclaim).
    pub grace_until: Option<Instant>,
    /// EXCHANGE_ID's server owner and scope (the same for servers sharing state; here: one).
    pub server_owner: Vec<u8>,
}

/// What one call produced: the reply to send (None: close the connection) and, for the
/// counters, each executed operation's number and status.
#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<Vec<u8>>,
    pub ops: OpStatuses,
    /// The RPC layer refused the call (bad version, credential ...).
    pub refused: bool,
}

/// A status line for `drover nfs clients`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientStatus {
    pub clientid: String,
    pub owner: String,
    pub addr: IpAddr,
    pub minor_version: u32,
    pub confirmed: bool,
    pub lease_remaining_secs: u64,
    pub sessions: usize,
    pub opens: usize,
    pub locks: usize,
}

/// The protocol server: state tables and the file side.
pub struct Server {
    vfs: Arc<dyn Vfs>,
    state: Mutex<State>,
    server_owner: Vec<u8>,
}

type OpResult = Result<Res, (u32, ErrBody)>;
/// Each executed operation's number and status.
pub type OpStatuses = Vec<(u32, u32)>;

fn err(st: u32) -> (u32, ErrBody) {
    (st, ErrBody::None)
}

/// Maps a file-side error to its `nfsstat4`.
pub fn vfs_status(e: &VfsError) -> u32 {
    match e {
        VfsError::NoEnt => status::NOENT,
        VfsError::Exist => status::EXIST,
        VfsError::NotDir => status::NOTDIR,
        VfsError::IsDir => status::ISDIR,
        VfsError::Access => status::ACCESS,
        VfsError::Perm => status::PERM,
        VfsError::NotEmpty => status::NOTEMPTY,
        VfsError::NameTooLong => status::NAMETOOLONG,
        VfsError::BadName => status::BADNAME,
        VfsError::ReadOnly => status::ROFS,
        VfsError::NoSpace => status::NOSPC,
        VfsError::Quota => status::DQUOT,
        VfsError::TooBig => status::FBIG,
        VfsError::Stale => status::STALE,
        VfsError::BadHandle => status::BADHANDLE,
        VfsError::Inval => status::INVAL,
        VfsError::XDev => status::XDEV,
        VfsError::Symlink => status::SYMLINK,
        VfsError::BadCookie => status::BAD_COOKIE,
        VfsError::NotSupported => status::NOTSUPP,
        VfsError::Io(_) => status::IO,
    }
}

fn v<T>(r: Result<T, VfsError>) -> Result<T, (u32, ErrBody)> {
    r.map_err(|e| err(vfs_status(&e)))
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
                owner = %String::from_utf8_lossy(owner),
                old = %old_addr,
                new = %addr,
                "NFS: a client at another address took over this client owner and the old \
                 record's state: two machines with the same NFSv4 client owner (host name)?"
            );
        }
        st.remove_client(id);
    }
}

/// Checks a component name the way every name-taking operation must.
fn check_name(name: &[u8]) -> Result<(), (u32, ErrBody)> {
    if name.is_empty() {
        return Err(err(status::INVAL));
    }
    if name.len() > MAX_NAME {
        return Err(err(status::NAMETOOLONG));
    }
    if name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(err(status::BADNAME));
    }
    Ok(())
}

/// Per-COMPOUND context.
struct Ctx<'a> {
    now: Instant,
    caller: &'a Caller,
    minor: u32,
    cfh: Option<Handle>,
    saved: Option<Handle>,
    current_stateid: Option<StateId>,
    saved_stateid: Option<StateId>,
    /// 4.1: the client of the SEQUENCE'd session, and the slot in use.
    session: Option<([u8; 16], u32, u64)>,
    max_response: usize,
    /// A 4.0 seqid replay: the encoded result to send verbatim.
    replay: Option<Vec<u8>>,
    /// A 4.0 owner whose seqid this op consumed (open or lock owner).
    seq_owner: Option<(bool, Owner)>,
}

impl Ctx<'_> {
    fn fh(&self) -> Result<&Handle, (u32, ErrBody)> {
        self.cfh.as_ref().ok_or(err(status::NOFILEHANDLE))
    }

    /// Resolves NFSv4.1's "current stateid" placeholder.
    fn stateid(&self, id: StateId) -> Result<StateId, (u32, ErrBody)> {
        if self.minor >= 1 && id == StateId::CURRENT {
            self.current_stateid.ok_or(err(status::BAD_STATEID))
        } else {
            Ok(id)
        }
    }
}

fn sessionless(op: &Op) -> bool {
    matches!(
        op,
        Op::ExchangeId { .. }
            | Op::CreateSession { .. }
            | Op::DestroySession(_)
            | Op::DestroyClientId(_)
            | Op::BindConnToSession { .. }
    )
}

impl Server {
    pub fn new(vfs: Arc<dyn Vfs>, settings: Settings) -> Self {
        Server {
            vfs,
            state: Mutex::new(State::new(
                settings.limits,
                settings.boot,
                settings.grace_until,
            )),
            server_owner: settings.server_owner,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere, which aborts the process (panic = abort);
        // the data is still the last consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expires clients whose lease ran out; returns how many.
    pub fn handle_timeout(&self, now: Instant) -> usize {
        self.state().expire(now)
    }

    /// Starts (or lengthens) a grace period that ends at `until`: this member took over the
    /// pool's service address, so the previous holder's clients reclaim their opens and locks
    /// (CLAIM_PREVIOUS, reclaim LOCK) and new ones get NFS4ERR_GRACE meanwhile.
    pub fn begin_grace(&self, until: Instant) {
        let mut st = self.state();
        st.grace_until = Some(st.grace_until.map_or(until, |g| g.max(until)));
    }

    /// When [`Server::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.state().next_expiry()
    }

    /// The clients and what they hold.
    pub fn clients(&self, now: Instant) -> Vec<ClientStatus> {
        let st = self.state();
        let mut out: Vec<ClientStatus> = st
            .clients
            .values()
            .map(|c| {
                let (mut opens, mut locks) = (0, 0);
                for s in st.states.values().filter(|s| s.client() == c.id) {
                    match s {
                        Stateful::Open(_) => opens += 1,
                        Stateful::Lock(_) => locks += 1,
                    }
                }
                ClientStatus {
                    clientid: format!("{:016x}", c.id),
                    owner: String::from_utf8_lossy(&c.owner).into_owned(),
                    addr: c.addr,
                    minor_version: c.minor,
                    confirmed: c.confirmed,
                    lease_remaining_secs: c.lease_until.saturating_duration_since(now).as_secs(),
                    sessions: st.sessions.values().filter(|s| s.client == c.id).count(),
                    opens,
                    locks,
                }
            })
            .collect();
        out.sort_by(|a, b| a.clientid.cmp(&b.clientid));
        out
    }

    /// Handles one RPC record from `peer`.
    pub fn handle_record(&self, now: Instant, peer: IpAddr, record: &[u8]) -> Outcome {
        let call = match rpc::parse_call(record) {
            Ok(c) => c,
            Err(refusal) => {
                return Outcome {
                    reply: refusal.reply(),
                    ops: Vec::new(),
                    refused: true,
                }
            }
        };
        let caller = match &call.cred {
            Cred::None => Caller {
                addr: peer,
                uid: NOBODY,
                gid: NOBODY,
                gids: Vec::new(),
            },
            Cred::Sys { uid, gid, gids } => Caller {
                addr: peer,
                uid: *uid,
                gid: *gid,
                gids: gids.clone(),
            },
        };
        let mut w = rpc::accepted(call.xid, AcceptStat::Success);
        if call.procedure == rpc::PROC_NULL {
            return Outcome {
                reply: Some(w.buf),
                ..Outcome::default()
            };
        }
        match self.compound(now, &caller, call.args) {
            Ok((body, ops)) => {
                w.buf.extend_from_slice(&body);
                Outcome {
                    reply: Some(w.buf),
                    ops,
                    refused: false,
                }
            }
            Err(wire::Garbage) => Outcome {
                reply: Some(rpc::accepted(call.xid, AcceptStat::GarbageArgs).buf),
                ops: Vec::new(),
                refused: true,
            },
        }
    }

    /// Runs one COMPOUND; returns the encoded COMPOUND4res.
    pub fn compound(
        &self,
        now: Instant,
        caller: &Caller,
        args: &[u8],
    ) -> Result<(Vec<u8>, OpStatuses), wire::Garbage> {
        let c = wire::decode_compound(args, MAX_OPS)?;
        let mut head = Writer::new();
        if c.minor > 1 {
            head.u32(status::MINOR_VERS_MISMATCH);
            head.opaque(&c.tag);
            head.u32(0);
            return Ok((head.buf, Vec::new()));
        }
        let mut ctx = Ctx {
            now,
            caller,
            minor: c.minor,
            cfh: None,
            saved: None,
            current_stateid: None,
            saved_stateid: None,
            session: None,
            max_response: MAX_RECORD,
            replay: None,
            seq_owner: None,
        };
        let mut results = Writer::new();
        let mut count = 0u32;
        let mut last = status::OK;
        let mut ops = Vec::new();
        let n_ops = c.ops.len();
        for (i, op) in c.ops.iter().enumerate() {
            let num = op.number();
            let result: OpResult = if c.too_many {
                Err(err(if c.minor == 0 {
                    status::RESOURCE
                } else {
                    status::TOO_MANY_OPS
                }))
            } else if c.minor >= 1 && i == 0 && !matches!(op, Op::Sequence { .. }) {
                if !sessionless(op) {
                    Err(err(status::OP_NOT_IN_SESSION))
                } else if n_ops > 1 && !matches!(op, Op::DestroySession(_) | Op::DestroyClientId(_))
                {
                    Err(err(status::NOT_ONLY_OP))
                } else {
                    self.op(&mut ctx, op)
                }
            } else if c.minor >= 1 && i > 0 && matches!(op, Op::Sequence { .. }) {
                Err(err(status::SEQUENCE_POS))
            } else if let Op::Sequence {
                session,
                sequence,
                slot,
                highest_slot,
                ..
            } = op
            {
                match self.sequence(&mut ctx, *session, *sequence, *slot, *highest_slot, n_ops) {
                    SeqOutcome::Replay(bytes) => return Ok((bytes, Vec::new())),
                    SeqOutcome::Result(r) => r,
                }
            } else {
                self.op(&mut ctx, op)
            };
            let mark = results.len();
            let st = if let Some(bytes) = ctx.replay.take() {
                results.buf.extend_from_slice(&bytes);
                bytes.get(4..8).map_or(status::SERVERFAULT, |b| {
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
                })
            } else {
                wire::encode_result(&mut results, num, &result);
                let st = result.as_ref().err().map_or(status::OK, |e| e.0);
                if let Some((is_open, owner)) = ctx.seq_owner.take() {
                    self.record_seqid(is_open, &owner, st, &results.buf[mark..]);
                }
                st
            };
            if results.len() + head_len(&c.tag) > ctx.max_response {
                results.truncate(mark);
                let too_big = if c.minor == 0 {
                    status::RESOURCE
                } else {
                    status::REP_TOO_BIG
                };
                wire::encode_result(&mut results, num, &Err(err(too_big)));
                ops.push((num, too_big));
                count += 1;
                last = too_big;
                break;
            }
            ops.push((num, st));
            count += 1;
            last = st;
            if st != status::OK {
                break;
            }
        }
        head.u32(last);
        head.opaque(&c.tag);
        head.u32(count);
        head.buf.extend_from_slice(&results.buf);
        if let Some((session, slot, _)) = ctx.session {
            let mut st = self.state();
            let max_cache = st.limits.max_cached_reply;
            if let Some(s) = st.sessions.get_mut(&session) {
                if let Some(sl) = s.slots.get_mut(slot as usize) {
                    sl.busy = false;
                    sl.reply = (head.len() <= max_cache).then(|| head.buf.clone());
                }
            }
        }
        Ok((head.buf, ops))
    }

    fn record_seqid(&self, is_open: bool, owner: &Owner, st: u32, encoded: &[u8]) {
        if seqid_unchanged(st) {
            return;
        }
        let mut state = self.state();
        let table = if is_open {
            &mut state.open_owners
        } else {
            &mut state.lock_owners
        };
        if let Some(seq) = table.get_mut(owner) {
            seq.seqid = seq.seqid.wrapping_add(1);
            seq.last = Some(encoded.to_vec());
        }
    }

    /// Consumes `seqid` of a 4.0 owner (creating the owner on first use). Returns whether to
    /// run the op; on a replay, the encoded reply is left in `ctx.replay`.
    fn consume_seqid(
        &self,
        ctx: &mut Ctx,
        st: &mut State,
        is_open: bool,
        owner: &Owner,
        seqid: u32,
    ) -> Result<bool, (u32, ErrBody)> {
        if ctx.minor >= 1 {
            return Ok(true);
        }
        let table = if is_open {
            &mut st.open_owners
        } else {
            &mut st.lock_owners
        };
        match State::check_seqid(table.get(owner), seqid).map_err(err)? {
            SeqCheck::Replay(bytes) => {
                ctx.replay = Some(bytes);
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
                ctx.seq_owner = Some((is_open, owner.clone()));
                Ok(true)
            }
        }
    }

    fn sequence(
        &self,
        ctx: &mut Ctx,
        session: [u8; 16],
        sequence: u32,
        slot: u32,
        highest_slot: u32,
        n_ops: usize,
    ) -> SeqOutcome {
        let mut st = self.state();
        let lease = st.limits.lease;
        let Some(s) = st.sessions.get_mut(&session) else {
            return SeqOutcome::Result(Err(err(status::BADSESSION)));
        };
        if n_ops > s.fore.max_ops as usize {
            return SeqOutcome::Result(Err(err(status::TOO_MANY_OPS)));
        }
        let nslots = s.slots.len() as u32;
        let client = s.client;
        let Some(sl) = s.slots.get_mut(slot as usize) else {
            return SeqOutcome::Result(Err(err(status::BADSLOT)));
        };
        if highest_slot >= nslots {
            return SeqOutcome::Result(Err(err(status::BADSLOT)));
        }
        if sequence == sl.seq {
            if sl.busy {
                return SeqOutcome::Result(Err(err(status::DELAY)));
            }
            return match &sl.reply {
                Some(r) => SeqOutcome::Replay(r.clone()),
                None => SeqOutcome::Result(Err(err(status::RETRY_UNCACHED_REP))),
            };
        }
        if sequence != sl.seq.wrapping_add(1) {
            return SeqOutcome::Result(Err(err(status::SEQ_MISORDERED)));
        }
        if sl.busy {
            return SeqOutcome::Result(Err(err(status::DELAY)));
        }
        sl.seq = sequence;
        sl.busy = true;
        sl.reply = None;
        let max_response = s.fore.max_response as usize;
        if let Some(c) = st.clients.get_mut(&client) {
            c.lease_until = ctx.now + lease;
        }
        ctx.session = Some((session, slot, client));
        ctx.max_response = max_response;
        SeqOutcome::Result(Ok(Res::Sequence {
            session,
            sequence,
            slot,
            highest_slot,
            target_highest_slot: nslots - 1,
            flags: 0,
        }))
    }

    /// The client of this request: the session's (4.1) or the given id (4.0), renewed.
    fn client_of(&self, ctx: &Ctx, st: &mut State, clientid: u64) -> Result<u64, (u32, ErrBody)> {
        let id = match ctx.session {
            Some((_, _, c)) => c,
            None => clientid,
        };
        st.renew(ctx.now, id).map_err(err)?;
        Ok(id)
    }

    fn attr_source_write(
        &self,
        ctx: &Ctx,
        w: &mut Writer,
        want: &Bitmap,
        fh: &Handle,
        attr: &Attr,
    ) -> Result<(), (u32, ErrBody)> {
        let fsstat = if wire::needs_fsstat(want) {
            Some(v(self.vfs.statfs(ctx.caller, fh))?)
        } else {
            None
        };
        let lease_seconds = self.state().limits.lease.as_secs() as u32;
        encode_attrs(
            w,
            want,
            &AttrSource {
                attr,
                handle: fh,
                fsstat,
                lease_seconds,
                minor: ctx.minor,
            },
        );
        Ok(())
    }

    fn change(&self, ctx: &Ctx, dir: &Handle) -> u64 {
        self.vfs
            .getattr(ctx.caller, dir)
            .map(|a| a.change)
            .unwrap_or(0)
    }

    fn op(&self, ctx: &mut Ctx, op: &Op) -> OpResult {
        let vfs = &*self.vfs;
        let caller = ctx.caller;
        match op {
            Op::PutRootFh | Op::PutPubFh => {
                ctx.cfh = Some(v(vfs.root(caller))?);
                Ok(Res::Empty)
            }
            Op::PutFh(h) => {
                if h.0.is_empty() {
                    return Err(err(status::BADHANDLE));
                }
                ctx.cfh = Some(h.clone());
                Ok(Res::Empty)
            }
            Op::GetFh => Ok(Res::Fh(ctx.fh()?.clone())),
            Op::SaveFh => {
                ctx.saved = Some(ctx.fh()?.clone());
                ctx.saved_stateid = ctx.current_stateid;
                Ok(Res::Empty)
            }
            Op::RestoreFh => {
                ctx.cfh = Some(ctx.saved.clone().ok_or(err(status::RESTOREFH))?);
                ctx.current_stateid = ctx.saved_stateid;
                Ok(Res::Empty)
            }
            Op::Lookup(name) => {
                let dir = ctx.fh()?;
                check_name(name)?;
                let a = v(vfs.getattr(caller, dir))?;
                if a.kind != FileType::Directory {
                    return Err(err(if a.kind == FileType::Symlink {
                        status::SYMLINK
                    } else {
                        status::NOTDIR
                    }));
                }
                ctx.cfh = Some(v(vfs.lookup(caller, dir, name))?);
                Ok(Res::Empty)
            }
            Op::LookupP => {
                let dir = ctx.fh()?;
                let a = v(vfs.getattr(caller, dir))?;
                if a.kind != FileType::Directory {
                    return Err(err(status::NOTDIR));
                }
                ctx.cfh = Some(v(vfs.parent(caller, dir))?);
                Ok(Res::Empty)
            }
            Op::GetAttr(want) => {
                let fh = ctx.fh()?;
                if write_only(want) {
                    return Err(err(status::INVAL));
                }
                let a = v(vfs.getattr(caller, fh))?;
                let mut w = Writer::new();
                self.attr_source_write(ctx, &mut w, want, fh, &a)?;
                Ok(Res::Attrs(w.buf))
            }
            Op::Verify(f) | Op::NVerify(f) => {
                let fh = ctx.fh()?;
                let sup = wire::supported(ctx.minor);
                if f.mask.bits().any(|b| !sup.has(b)) {
                    return Err(err(status::ATTRNOTSUPP));
                }
                if [
                    fattr::RDATTR_ERROR,
                    fattr::TIME_ACCESS_SET,
                    fattr::TIME_MODIFY_SET,
                ]
                .iter()
                .any(|&b| f.mask.has(b))
                {
                    return Err(err(status::INVAL));
                }
                let a = v(vfs.getattr(caller, fh))?;
                let mut w = Writer::new();
                self.attr_source_write(ctx, &mut w, &f.mask, fh, &a)?;
                let mut mine = Writer::new();
                mine.opaque(&f.vals);
                let same = w.buf.ends_with(&mine.buf);
                match (matches!(op, Op::Verify(_)), same) {
                    (true, true) | (false, false) => Ok(Res::Empty),
                    (true, false) => Err(err(status::NOT_SAME)),
                    (false, true) => Err(err(status::SAME)),
                }
            }
            Op::Access(wanted) => {
                let fh = ctx.fh()?;
                let supported = wanted & 0x3f;
                let access = v(vfs.access(caller, fh, supported))? & supported;
                Ok(Res::Access { supported, access })
            }
            Op::ReadLink => {
                let fh = ctx.fh()?;
                let a = v(vfs.getattr(caller, fh))?;
                if a.kind != FileType::Symlink {
                    return Err(err(status::INVAL));
                }
                Ok(Res::Link(v(vfs.readlink(caller, fh))?))
            }
            Op::SecInfo(name) => {
                let dir = ctx.fh()?;
                check_name(name)?;
                v(vfs.lookup(caller, dir, name))?;
                if ctx.minor >= 1 {
                    ctx.cfh = None;
                }
                Ok(Res::SecInfo)
            }
            Op::SecInfoNoName(_) => {
                ctx.fh()?;
                ctx.cfh = None;
                Ok(Res::SecInfo)
            }
            Op::Read {
                stateid,
                offset,
                count,
            } => {
                let fh = ctx.fh()?.clone();
                self.check_io_stateid(ctx, *stateid, &fh, false)?;
                let a = v(vfs.getattr(caller, &fh))?;
                match a.kind {
                    FileType::Regular => {}
                    FileType::Directory => return Err(err(status::ISDIR)),
                    _ => return Err(err(status::INVAL)),
                }
                let count = (*count)
                    .min(MAX_IO)
                    .min(ctx.max_response.saturating_sub(256) as u32);
                let (data, eof) = v(vfs.read(caller, &fh, *offset, count))?;
                Ok(Res::Read { eof, data })
            }
            Op::Write {
                stateid,
                offset,
                stable,
                data,
            } => {
                let fh = ctx.fh()?.clone();
                self.check_io_stateid(ctx, *stateid, &fh, true)?;
                if offset.checked_add(data.len() as u64).is_none() {
                    return Err(err(status::FBIG));
                }
                let a = v(vfs.getattr(caller, &fh))?;
                match a.kind {
                    FileType::Regular => {}
                    FileType::Directory => return Err(err(status::ISDIR)),
                    _ => return Err(err(status::INVAL)),
                }
                let how = match stable {
                    0 => Stability::Unstable,
                    1 => Stability::DataSync,
                    _ => Stability::FileSync,
                };
                let (count, got) = v(vfs.write(caller, &fh, *offset, data, how))?;
                Ok(Res::Write {
                    count,
                    committed: match got {
                        Stability::Unstable => 0,
                        Stability::DataSync => 1,
                        Stability::FileSync => 2,
                    },
                    verifier: vfs.write_verifier(),
                })
            }
            Op::Commit { offset, count } => {
                let fh = ctx.fh()?;
                let a = v(vfs.getattr(caller, fh))?;
                match a.kind {
                    FileType::Regular => {}
                    FileType::Directory => return Err(err(status::ISDIR)),
                    _ => return Err(err(status::INVAL)),
                }
                if offset.checked_add(u64::from(*count)).is_none() {
                    return Err(err(status::INVAL));
                }
                v(vfs.commit(caller, fh, *offset, *count))?;
                Ok(Res::Verifier(vfs.write_verifier()))
            }
            Op::SetAttr { stateid, attrs } => {
                let fh = ctx.fh()?.clone();
                let set = attrs
                    .settable()
                    .map_err(|st| (st, ErrBody::AttrSet(Bitmap::default())))?;
                if set.size.is_some() {
                    self.check_io_stateid(ctx, *stateid, &fh, true)
                        .map_err(|e| (e.0, ErrBody::AttrSet(Bitmap::default())))?;
                }
                vfs.setattr(caller, &fh, &set)
                    .map_err(|e| (vfs_status(&e), ErrBody::AttrSet(Bitmap::default())))?;
                let mut w = Writer::new();
                attrs.mask.encode(&mut w);
                Ok(Res::Attrs(w.buf))
            }
            Op::Create { kind, name, attrs } => {
                let dir = ctx.fh()?.clone();
                check_name(name)?;
                let set = attrs.settable().map_err(err)?;
                let what = match kind {
                    CreateType::Link(t) => {
                        if t.is_empty() {
                            return Err(err(status::INVAL));
                        }
                        NewObject::Symlink { target: t.clone() }
                    }
                    CreateType::Block(ma, mi) => NewObject::Block {
                        major: *ma,
                        minor: *mi,
                    },
                    CreateType::Char(ma, mi) => NewObject::Char {
                        major: *ma,
                        minor: *mi,
                    },
                    CreateType::Socket => NewObject::Socket,
                    CreateType::Fifo => NewObject::Fifo,
                    CreateType::Dir => NewObject::Directory,
                    CreateType::BadType => return Err(err(status::BADTYPE)),
                };
                let da = v(vfs.getattr(caller, &dir))?;
                if da.kind != FileType::Directory {
                    return Err(err(status::NOTDIR));
                }
                let (fh, _) = v(vfs.create(caller, &dir, name, &what, &set))?;
                let after = self.change(ctx, &dir);
                ctx.cfh = Some(fh);
                Ok(Res::Create {
                    cinfo: ChangeInfo {
                        atomic: false,
                        before: da.change,
                        after,
                    },
                    attrset: attrs.mask.clone(),
                })
            }
            Op::Link(name) => {
                let dir = ctx.fh()?.clone();
                let src = ctx.saved.clone().ok_or(err(status::NOFILEHANDLE))?;
                check_name(name)?;
                let before = v(vfs.getattr(caller, &dir))?;
                if before.kind != FileType::Directory {
                    return Err(err(status::NOTDIR));
                }
                if v(vfs.getattr(caller, &src))?.kind == FileType::Directory {
                    return Err(err(status::ISDIR));
                }
                v(vfs.link(caller, &src, &dir, name))?;
                Ok(Res::Change(ChangeInfo {
                    atomic: false,
                    before: before.change,
                    after: self.change(ctx, &dir),
                }))
            }
            Op::Remove(name) => {
                let dir = ctx.fh()?.clone();
                check_name(name)?;
                let before = v(vfs.getattr(caller, &dir))?;
                if before.kind != FileType::Directory {
                    return Err(err(status::NOTDIR));
                }
                if self.in_grace(ctx.now) {
                    // Removing a file a client may still reclaim an open of.
                    return Err(err(status::GRACE));
                }
                v(vfs.remove(caller, &dir, name))?;
                Ok(Res::Change(ChangeInfo {
                    atomic: false,
                    before: before.change,
                    after: self.change(ctx, &dir),
                }))
            }
            Op::Rename { from, to } => {
                let to_dir = ctx.fh()?.clone();
                let from_dir = ctx.saved.clone().ok_or(err(status::NOFILEHANDLE))?;
                check_name(from)?;
                check_name(to)?;
                let fb = v(vfs.getattr(caller, &from_dir))?;
                let tb = v(vfs.getattr(caller, &to_dir))?;
                if fb.kind != FileType::Directory || tb.kind != FileType::Directory {
                    return Err(err(status::NOTDIR));
                }
                if self.in_grace(ctx.now) {
                    return Err(err(status::GRACE));
                }
                v(vfs.rename(caller, &from_dir, from, &to_dir, to))?;
                Ok(Res::Rename {
                    source: ChangeInfo {
                        atomic: false,
                        before: fb.change,
                        after: self.change(ctx, &from_dir),
                    },
                    target: ChangeInfo {
                        atomic: false,
                        before: tb.change,
                        after: self.change(ctx, &to_dir),
                    },
                })
            }
            Op::ReadDir {
                cookie,
                verifier,
                dircount,
                maxcount,
                attrs,
            } => self.readdir(ctx, *cookie, *verifier, *dircount, *maxcount, attrs),
            Op::Open(args) => self.open(ctx, args),
            Op::OpenConfirm { stateid, seqid } => self.open_confirm(ctx, *stateid, *seqid),
            Op::OpenDowngrade {
                stateid,
                seqid,
                share_access,
                share_deny,
            } => self.open_downgrade(ctx, *stateid, *seqid, *share_access, *share_deny),
            Op::Close { seqid, stateid } => self.close(ctx, *seqid, *stateid),
            Op::Lock {
                write,
                reclaim,
                offset,
                length,
                locker,
            } => self.lock(ctx, *write, *reclaim, *offset, *length, locker),
            Op::LockT {
                write,
                offset,
                length,
                owner,
            } => {
                let fh = ctx.fh()?.clone();
                let end = lock_range(*offset, *length)?;
                let mut st = self.state();
                let owner = Owner {
                    clientid: self.client_of(ctx, &mut st, owner.clientid)?,
                    owner: owner.owner.clone(),
                };
                match st.conflict(&fh, &owner, *write, *offset, end) {
                    Some(d) => Err((status::DENIED, ErrBody::Denied(d))),
                    None => Ok(Res::Empty),
                }
            }
            Op::LockU {
                seqid,
                stateid,
                offset,
                length,
            } => self.unlock(ctx, *seqid, *stateid, *offset, *length),
            Op::ReleaseLockOwner(owner) => {
                let mut st = self.state();
                st.renew(ctx.now, owner.clientid).map_err(err)?;
                if st.holds_locks(owner, None) {
                    return Err(err(status::LOCKS_HELD));
                }
                st.lock_owners.remove(owner);
                st.states
                    .retain(|_, s| !matches!(s, Stateful::Lock(l) if l.owner == *owner));
                Ok(Res::Empty)
            }
            Op::Renew(clientid) => {
                let mut st = self.state();
                st.renew(ctx.now, *clientid).map_err(err)?;
                Ok(Res::Empty)
            }
            Op::SetClientId { verifier, id } => self.setclientid(ctx, *verifier, id),
            Op::SetClientIdConfirm { clientid, verifier } => {
                self.setclientid_confirm(ctx, *clientid, *verifier)
            }
            Op::ExchangeId {
                verifier,
                owner,
                flags,
                state_protect,
            } => self.exchange_id(ctx, *verifier, owner, *flags, *state_protect),
            Op::CreateSession {
                clientid,
                sequence,
                flags: _,
                fore,
                back,
            } => self.create_session(ctx, *clientid, *sequence, fore, back),
            Op::DestroySession(id) => {
                let mut st = self.state();
                let s = st.sessions.get(id).ok_or(err(status::BADSESSION))?;
                // Destroying the session this request runs in is allowed only as its last op.
                if s.slots.iter().any(|sl| sl.busy)
                    && ctx.session.is_none_or(|(cur, _, _)| cur != *id)
                {
                    return Err(err(status::DELAY));
                }
                st.sessions.remove(id);
                if ctx.session.is_some_and(|(cur, _, _)| cur == *id) {
                    ctx.session = None;
                }
                Ok(Res::Empty)
            }
            Op::DestroyClientId(id) => {
                let mut st = self.state();
                if !st.clients.contains_key(id) {
                    return Err(err(status::STALE_CLIENTID));
                }
                if st.sessions.values().any(|s| s.client == *id) {
                    return Err(err(status::CLIENTID_BUSY));
                }
                st.remove_client(*id);
                Ok(Res::Empty)
            }
            Op::BindConnToSession { session, dir } => {
                let st = self.state();
                if !st.sessions.contains_key(session) {
                    return Err(err(status::BADSESSION));
                }
                // Only the fore channel exists; CDFC4_BACK alone cannot be granted.
                if *dir == 2 {
                    return Err(err(status::INVAL));
                }
                Ok(Res::BindConn {
                    session: *session,
                    dir: 1,
                })
            }
            Op::ReclaimComplete(_) => {
                let mut st = self.state();
                let (_, _, client) = ctx.session.ok_or(err(status::OP_NOT_IN_SESSION))?;
                let c = st
                    .clients
                    .get_mut(&client)
                    .ok_or(err(status::STALE_CLIENTID))?;
                if c.reclaim_complete {
                    return Err(err(status::COMPLETE_ALREADY));
                }
                c.reclaim_complete = true;
                Ok(Res::Empty)
            }
            Op::FreeStateId(id) => {
                let id = ctx.stateid(*id)?;
                let mut st = self.state();
                let s = st.lookup_state(&id, ctx.minor).map_err(err)?;
                match s {
                    Stateful::Open(_) => Err(err(status::LOCKS_HELD)),
                    Stateful::Lock(l) => {
                        if st.holds_locks(&l.owner, Some(&l.fh)) {
                            return Err(err(status::LOCKS_HELD));
                        }
                        st.states.remove(&id.other);
                        Ok(Res::Empty)
                    }
                }
            }
            Op::TestStateId(ids) => {
                let st = self.state();
                let client = ctx.session.map(|s| s.2);
                let codes = ids
                    .iter()
                    .map(|id| match st.lookup_state(id, ctx.minor) {
                        Ok(s) if Some(s.client()) == client => status::OK,
                        Ok(_) => status::BAD_STATEID,
                        Err(e) => e,
                    })
                    .collect();
                Ok(Res::TestStateId(codes))
            }
            Op::Sequence { .. } => Err(err(status::SEQUENCE_POS)),
            Op::DelegPurge | Op::DelegReturn => Err(err(if ctx.minor == 0 {
                status::BAD_STATEID
            } else {
                status::NOTSUPP
            })),
            Op::OpenAttr => Err(err(status::NOTSUPP)),
            Op::NotSupported(_) => Err(err(status::NOTSUPP)),
            Op::Illegal => Err(err(status::OP_ILLEGAL)),
            Op::Bad(_) => Err(err(status::BADXDR)),
        }
    }

    fn in_grace(&self, now: Instant) -> bool {
        self.state().in_grace(now)
    }

    /// Checks a READ/WRITE/SETATTR stateid against the current file.
    fn check_io_stateid(
        &self,
        ctx: &mut Ctx,
        id: StateId,
        fh: &Handle,
        write: bool,
    ) -> Result<(), (u32, ErrBody)> {
        let id = ctx.stateid(id)?;
        if id == StateId::ANONYMOUS || id == StateId::BYPASS {
            return Ok(());
        }
        let mut st = self.state();
        let s = st.lookup_state(&id, ctx.minor).map_err(err)?.clone();
        if s.fh() != fh {
            return Err(err(status::BAD_STATEID));
        }
        let open = match &s {
            Stateful::Open(o) => o.clone(),
            Stateful::Lock(l) => match st.states.get(&l.open) {
                Some(Stateful::Open(o)) => o.clone(),
                _ => return Err(err(status::BAD_STATEID)),
            },
        };
        if write && open.access & 2 == 0 {
            return Err(err(status::OPENMODE));
        }
        st.renew(ctx.now, s.client()).map_err(err)?;
        Ok(())
    }

    fn readdir(
        &self,
        ctx: &mut Ctx,
        cookie: u64,
        verifier: [u8; 8],
        dircount: u32,
        maxcount: u32,
        want: &Bitmap,
    ) -> OpResult {
        let dir = ctx.fh()?.clone();
        let caller = ctx.caller;
        let a = v(self.vfs.getattr(caller, &dir))?;
        if a.kind != FileType::Directory {
            return Err(err(status::NOTDIR));
        }
        if cookie == 1 || cookie == 2 {
            return Err(err(status::BAD_COOKIE));
        }
        if write_only(want) {
            return Err(err(status::INVAL));
        }
        // The verifier names this server run; cookies from another run are refused.
        let ours = self.vfs.write_verifier();
        if cookie != 0 && verifier != [0; 8] && verifier != ours {
            return Err(err(status::NOT_SAME));
        }
        let maxcount = (maxcount as usize).min(ctx.max_response.saturating_sub(512));
        // verifier + end-of-list marker + eof
        let fixed = 8 + 4 + 4;
        if maxcount < fixed + 24 {
            return Err(err(status::TOOSMALL));
        }
        let max_entries = (maxcount / 24).clamp(1, 4096);
        let (entries, complete) = v(self.vfs.readdir(caller, &dir, cookie, max_entries))?;
        let sup = wire::supported(ctx.minor);
        let want = want.intersect(&sup);
        let fsstat = if wire::needs_fsstat(&want) {
            Some(v(self.vfs.statfs(caller, &dir))?)
        } else {
            None
        };
        let lease_seconds = self.state().limits.lease.as_secs() as u32;
        let mut body = Writer::new();
        body.fixed(&ours);
        let mut names = 0usize;
        let mut all = true;
        let mut n = 0;
        for e in &entries {
            let mark = body.len();
            body.bool(true);
            body.u64(e.cookie);
            body.opaque(&e.name);
            encode_attrs(
                &mut body,
                &want,
                &AttrSource {
                    attr: &e.attr,
                    handle: &e.handle,
                    fsstat,
                    lease_seconds,
                    minor: ctx.minor,
                },
            );
            names += 8 + opaque_len(e.name.len());
            if body.len() + 8 > maxcount || (dircount > 0 && n > 0 && names > dircount as usize) {
                body.truncate(mark);
                all = false;
                break;
            }
            n += 1;
        }
        if n == 0 && !entries.is_empty() {
            return Err(err(status::TOOSMALL));
        }
        body.bool(false);
        body.bool(all && complete);
        Ok(Res::ReadDir(body.buf))
    }

    fn setclientid(&self, ctx: &mut Ctx, verifier: [u8; 8], id: &[u8]) -> OpResult {
        let mut st = self.state();
        let now = ctx.now;
        let lease = st.limits.lease;
        let confirmed = st
            .clients
            .values()
            .find(|c| c.owner == id && c.confirmed && c.minor == 0)
            .map(|c| (c.id, c.verifier));
        // Unconfirmed records of this owner are replaced.
        let stale: Vec<u64> = st
            .clients
            .values()
            .filter(|c| c.owner == id && !c.confirmed)
            .map(|c| c.id)
            .collect();
        for s in stale {
            st.remove_client(s);
        }
        let confirm = st.new_other();
        let mut confirm8 = [0u8; 8];
        confirm8.copy_from_slice(&confirm[4..]);
        if let Some((cid, v0)) = confirmed {
            if v0 == verifier {
                // The same client updating its callback: same id, new confirm verifier.
                if let Some(c) = st.clients.get_mut(&cid) {
                    c.confirm = confirm8;
                    c.lease_until = now + lease;
                }
                return Ok(Res::SetClientId {
                    clientid: cid,
                    verifier: confirm8,
                });
            }
        }
        if st.clients.len() >= st.limits.max_clients {
            return Err(err(status::RESOURCE));
        }
        let cid = st.new_clientid();
        st.clients.insert(
            cid,
            Client {
                id: cid,
                owner: id.to_vec(),
                verifier,
                minor: 0,
                confirmed: false,
                confirm: confirm8,
                addr: ctx.caller.addr,
                lease_until: now + lease,
                cs_seq: 0,
                cs_reply: None,
                reclaim_complete: false,
            },
        );
        Ok(Res::SetClientId {
            clientid: cid,
            verifier: confirm8,
        })
    }

    fn setclientid_confirm(&self, ctx: &mut Ctx, clientid: u64, verifier: [u8; 8]) -> OpResult {
        let mut st = self.state();
        let lease = st.limits.lease;
        let c = st
            .clients
            .get(&clientid)
            .ok_or(err(status::STALE_CLIENTID))?;
        if c.confirm != verifier {
            return Err(err(status::STALE_CLIENTID));
        }
        let owner = c.owner.clone();
        // A rebooted client's old record (and its state) goes.
        drop_old_records(&mut st, ctx.now, clientid, &owner, false);
        if let Some(c) = st.clients.get_mut(&clientid) {
            c.confirmed = true;
            c.lease_until = ctx.now + lease;
        }
        Ok(Res::Empty)
    }

    fn exchange_id(
        &self,
        ctx: &mut Ctx,
        verifier: [u8; 8],
        owner: &[u8],
        flags: u32,
        state_protect: u32,
    ) -> OpResult {
        if state_protect != 0 {
            return Err(err(status::ENCR_ALG_UNSUPP));
        }
        // CONFIRMED_R is a reply flag; other unknown bits are ignored (RFC 8881 §18.35.3).
        if flags & EXCHGID4_FLAG_CONFIRMED_R != 0 {
            return Err(err(status::INVAL));
        }
        let mut st = self.state();
        let now = ctx.now;
        let lease = st.limits.lease;
        let existing = st
            .clients
            .values()
            .find(|c| c.owner == owner && c.minor >= 1 && c.confirmed)
            .map(|c| (c.id, c.verifier, c.cs_seq));
        let base = EXCHGID4_FLAG_USE_NON_PNFS;
        if let Some((id, v0, cs)) = existing {
            if v0 == verifier || flags & EXCHGID4_FLAG_UPD_CONFIRMED_REC_A != 0 {
                if let Some(c) = st.clients.get_mut(&id) {
                    c.lease_until = now + lease;
                }
                return Ok(Res::ExchangeId {
                    clientid: id,
                    sequence: cs.wrapping_add(1),
                    flags: base | EXCHGID4_FLAG_CONFIRMED_R,
                    server_owner: self.server_owner.clone(),
                    scope: self.server_owner.clone(),
                });
            }
        } else if flags & EXCHGID4_FLAG_UPD_CONFIRMED_REC_A != 0 {
            return Err(err(status::NOENT));
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
        if st.clients.len() >= st.limits.max_clients {
            return Err(err(status::DELAY));
        }
        let id = st.new_clientid();
        st.clients.insert(
            id,
            Client {
                id,
                owner: owner.to_vec(),
                verifier,
                minor: ctx.minor,
                confirmed: false,
                confirm: [0; 8],
                addr: ctx.caller.addr,
                lease_until: now + lease,
                cs_seq: 0,
                cs_reply: None,
                reclaim_complete: false,
            },
        );
        Ok(Res::ExchangeId {
            clientid: id,
            sequence: 1,
            flags: base,
            server_owner: self.server_owner.clone(),
            scope: self.server_owner.clone(),
        })
    }

    fn create_session(
        &self,
        ctx: &mut Ctx,
        clientid: u64,
        sequence: u32,
        fore: &ChannelAttrs,
        back: &ChannelAttrs,
    ) -> OpResult {
        let mut st = self.state();
        let limits = st.limits;
        let c = st
            .clients
            .get(&clientid)
            .ok_or(err(status::STALE_CLIENTID))?;
        if sequence == c.cs_seq && c.cs_seq != 0 {
            return c.cs_reply.clone().ok_or(err(status::SEQ_MISORDERED));
        }
        if sequence != c.cs_seq.wrapping_add(1) {
            return Err(err(status::SEQ_MISORDERED));
        }
        let owner = c.owner.clone();
        if st
            .sessions
            .values()
            .filter(|s| s.client == clientid)
            .count()
            >= limits.max_sessions_per_client
        {
            return Err(err(status::DELAY));
        }
        if fore.max_request < 1024 || fore.max_response < 1024 {
            return Err(err(status::TOOSMALL));
        }
        let fore = ChannelAttrs {
            header_pad: 0,
            max_request: fore.max_request.min(MAX_RECORD as u32),
            max_response: fore.max_response.min(MAX_RECORD as u32),
            max_response_cached: fore.max_response_cached.min(limits.max_cached_reply as u32),
            max_ops: fore.max_ops.clamp(2, MAX_OPS as u32),
            max_requests: fore.max_requests.clamp(1, limits.max_slots),
        };
        let back = ChannelAttrs {
            header_pad: 0,
            max_requests: back.max_requests.clamp(1, 1),
            max_ops: back.max_ops.clamp(1, 2),
            ..*back
        };
        // Confirming a new record of a rebooted client drops the old one.
        drop_old_records(&mut st, ctx.now, clientid, &owner, true);
        let session = st.new_session_id(clientid);
        st.sessions.insert(
            session,
            Session {
                client: clientid,
                slots: vec![Slot::default(); fore.max_requests as usize],
                fore,
            },
        );
        let res = Res::CreateSession {
            session,
            sequence,
            flags: 0,
            fore,
            back,
        };
        let lease = limits.lease;
        if let Some(c) = st.clients.get_mut(&clientid) {
            c.confirmed = true;
            c.cs_seq = sequence;
            c.cs_reply = Some(res.clone());
            c.lease_until = ctx.now + lease;
        }
        Ok(res)
    }

    fn open(&self, ctx: &mut Ctx, a: &OpenArgs) -> OpResult {
        let access = a.share_access & SHARE_ACCESS_MASK;
        if access == 0 || a.share_deny > 3 {
            return Err(err(status::INVAL));
        }
        let dir_or_file = ctx.fh()?.clone();
        let now = ctx.now;
        // State checks first: client, seqid, grace.
        let owner = {
            let mut st = self.state();
            let clientid = self.client_of(ctx, &mut st, a.owner.clientid)?;
            let owner = Owner {
                clientid,
                owner: a.owner.owner.clone(),
            };
            if !self.consume_seqid(ctx, &mut st, true, &owner, a.seqid)? {
                return Ok(Res::Empty); // replayed from the owner's cache
            }
            let grace = st.in_grace(now);
            let reclaimed = st
                .clients
                .get(&clientid)
                .is_some_and(|c| c.reclaim_complete);
            match &a.claim {
                Claim::Previous(_) if !grace || reclaimed => return Err(err(status::NO_GRACE)),
                Claim::Null(_) | Claim::Fh if grace => return Err(err(status::GRACE)),
                _ => {}
            }
            if !st.may_add_state(clientid) {
                return Err(err(status::RESOURCE));
            }
            owner
        };
        let caller = ctx.caller;
        let vfs = &*self.vfs;
        let mut cinfo = ChangeInfo::default();
        let mut attrset = Bitmap::default();
        let mut created = false;
        let fh = match &a.claim {
            Claim::Null(name) => {
                check_name(name)?;
                let da = v(vfs.getattr(caller, &dir_or_file))?;
                if da.kind != FileType::Directory {
                    return Err(err(status::NOTDIR));
                }
                let fh = match &a.create {
                    None => v(vfs.lookup(caller, &dir_or_file, name))?,
                    Some(how) => {
                        let (set, exclusive, verf) = match how {
                            CreateHow::Unchecked(f) => {
                                attrset = f.mask.clone();
                                (f.settable().map_err(err)?, false, None)
                            }
                            CreateHow::Guarded(f) => {
                                attrset = f.mask.clone();
                                (f.settable().map_err(err)?, true, None)
                            }
                            CreateHow::Exclusive(verf) => (SetAttr::default(), true, Some(*verf)),
                            CreateHow::Exclusive41(verf, f) => {
                                attrset = f.mask.clone();
                                let set = f.settable().map_err(err)?;
                                if set.atime.is_some() || set.mtime.is_some() {
                                    return Err(err(status::INVAL));
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
                                let fh = v(vfs.lookup(caller, &dir_or_file, name))?;
                                let fa = v(vfs.getattr(caller, &fh))?;
                                let (t1, t2) = verifier_times(verf.unwrap_or_default());
                                if fa.atime != t1 || fa.mtime != t2 {
                                    return Err(err(status::EXIST));
                                }
                                fh
                            }
                            Err(e) => return Err(err(vfs_status(&e))),
                        }
                    }
                };
                cinfo = ChangeInfo {
                    atomic: false,
                    before: da.change,
                    after: self.change(ctx, &dir_or_file),
                };
                fh
            }
            Claim::Previous(_) | Claim::Fh => dir_or_file.clone(),
            Claim::DelegateCur(..) | Claim::DelegCurFh(_) => return Err(err(status::BAD_STATEID)),
            Claim::DelegatePrev(_) | Claim::DelegPrevFh => return Err(err(status::NOTSUPP)),
        };
        let fa = v(vfs.getattr(caller, &fh))?;
        match fa.kind {
            FileType::Regular => {}
            FileType::Directory => return Err(err(status::ISDIR)),
            FileType::Symlink => return Err(err(status::SYMLINK)),
            _ => return Err(err(status::INVAL)),
        }
        if !created {
            let mut want = 0;
            if access & 1 != 0 {
                want |= super::vfs::access::READ;
            }
            if access & 2 != 0 {
                want |= super::vfs::access::MODIFY;
            }
            let got = v(vfs.access(caller, &fh, want))?;
            if got & want != want {
                return Err(err(status::ACCESS));
            }
            if let Some(CreateHow::Unchecked(f)) = &a.create {
                // UNCHECKED on an existing file applies the size (truncation) only.
                let set = f.settable().map_err(err)?;
                if set.size.is_some() {
                    v(vfs.setattr(
                        caller,
                        &fh,
                        &SetAttr {
                            size: set.size,
                            ..SetAttr::default()
                        },
                    ))?;
                }
                attrset = Bitmap::default();
            }
        }
        let mut st = self.state();
        if st.share_conflict(&fh, &owner, access, a.share_deny) {
            return Err(err(status::SHARE_DENIED));
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
        if ctx.minor == 0 && !st.open_owners.get(&owner).is_some_and(|o| o.confirmed) {
            if matches!(a.claim, Claim::Previous(_)) {
                if let Some(o) = st.open_owners.get_mut(&owner) {
                    o.confirmed = true;
                }
            } else {
                rflags |= OPEN4_RESULT_CONFIRM;
            }
        }
        drop(st);
        ctx.cfh = Some(fh);
        ctx.current_stateid = Some(stateid);
        Ok(Res::Open {
            stateid,
            cinfo,
            rflags,
            attrset,
        })
    }

    /// Finds the open state of `id` (resolving the current stateid), consuming the owner's
    /// seqid in 4.0. `Ok(None)` means a replay was queued.
    fn open_state(
        &self,
        ctx: &mut Ctx,
        st: &mut State,
        id: StateId,
        seqid: u32,
    ) -> Result<Option<(StateId, Open)>, (u32, ErrBody)> {
        let id = ctx.stateid(id)?;
        let s = match st.lookup_state(&id, ctx.minor) {
            Ok(s) => s.clone(),
            Err(e) => {
                // A retransmitted CLOSE/OPEN_CONFIRM whose stateid moved on is a replay.
                if ctx.minor == 0 && e == status::OLD_STATEID {
                    if let Some(Stateful::Open(o)) = st.states.get(&id.other) {
                        let owner = o.owner.clone();
                        if let Ok(SeqCheck::Replay(b)) =
                            State::check_seqid(st.open_owners.get(&owner), seqid)
                        {
                            ctx.replay = Some(b);
                            return Ok(None);
                        }
                    }
                }
                return Err(err(e));
            }
        };
        let Stateful::Open(o) = s else {
            return Err(err(status::BAD_STATEID));
        };
        if ctx.cfh.as_ref() != Some(&o.fh) {
            return Err(err(if ctx.cfh.is_none() {
                status::NOFILEHANDLE
            } else {
                status::BAD_STATEID
            }));
        }
        st.renew(ctx.now, o.client).map_err(err)?;
        if !self.consume_seqid(ctx, st, true, &o.owner, seqid)? {
            return Ok(None);
        }
        Ok(Some((id, o)))
    }

    fn open_confirm(&self, ctx: &mut Ctx, id: StateId, seqid: u32) -> OpResult {
        let mut st = self.state();
        // OPEN_CONFIRM's seqid follows the OPEN's even though the owner is unconfirmed.
        let id = ctx.stateid(id)?;
        let Ok(Stateful::Open(o)) = st.lookup_state(&id, ctx.minor).cloned() else {
            return Err(err(st
                .lookup_state(&id, ctx.minor)
                .err()
                .unwrap_or(status::BAD_STATEID)));
        };
        if ctx.cfh.as_ref() != Some(&o.fh) {
            return Err(err(status::BAD_STATEID));
        }
        let seq = st.open_owners.get(&o.owner).cloned().unwrap_or_default();
        if seq.confirmed {
            if seqid == seq.seqid {
                if let Some(b) = seq.last {
                    ctx.replay = Some(b);
                    return Ok(Res::Empty);
                }
            }
            return Err(err(status::BAD_SEQID));
        }
        if seqid != seq.seqid.wrapping_add(1) {
            return Err(err(status::BAD_SEQID));
        }
        if let Some(s) = st.open_owners.get_mut(&o.owner) {
            s.confirmed = true;
        }
        ctx.seq_owner = Some((true, o.owner.clone()));
        let Some(Stateful::Open(open)) = st.states.get_mut(&id.other) else {
            return Err(err(status::BAD_STATEID));
        };
        open.seqid = open.seqid.wrapping_add(1);
        let out = StateId {
            seqid: open.seqid,
            other: id.other,
        };
        let client = open.client;
        st.renew(ctx.now, client).map_err(err)?;
        ctx.current_stateid = Some(out);
        Ok(Res::StateId(out))
    }

    fn open_downgrade(
        &self,
        ctx: &mut Ctx,
        id: StateId,
        seqid: u32,
        access: u32,
        deny: u32,
    ) -> OpResult {
        let mut st = self.state();
        let Some((id, o)) = self.open_state(ctx, &mut st, id, seqid)? else {
            return Ok(Res::Empty);
        };
        let access = access & SHARE_ACCESS_MASK;
        if access == 0 || deny > 3 || access & !o.access != 0 || deny & !o.deny != 0 {
            return Err(err(status::INVAL));
        }
        let Some(Stateful::Open(open)) = st.states.get_mut(&id.other) else {
            return Err(err(status::BAD_STATEID));
        };
        open.access = access;
        open.deny = deny;
        open.seqid = open.seqid.wrapping_add(1);
        let out = StateId {
            seqid: open.seqid,
            other: id.other,
        };
        ctx.current_stateid = Some(out);
        Ok(Res::StateId(out))
    }

    fn close(&self, ctx: &mut Ctx, seqid: u32, id: StateId) -> OpResult {
        let mut st = self.state();
        let Some((id, o)) = self.open_state(ctx, &mut st, id, seqid)? else {
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
            return Err(err(status::LOCKS_HELD));
        }
        st.states.retain(|other, s| {
            *other != id.other && !matches!(s, Stateful::Lock(l) if l.open == id.other)
        });
        let out = if ctx.minor >= 1 {
            // RFC 8881: the invalid special stateid.
            StateId {
                seqid: u32::MAX,
                other: [0; 12],
            }
        } else {
            StateId {
                seqid: id.seqid.wrapping_add(1),
                other: id.other,
            }
        };
        Ok(Res::StateId(out))
    }

    fn lock(
        &self,
        ctx: &mut Ctx,
        write: bool,
        reclaim: bool,
        offset: u64,
        length: u64,
        locker: &Locker,
    ) -> OpResult {
        let fh = ctx.fh()?.clone();
        let end = lock_range(offset, length)?;
        let mut st = self.state();
        let grace = st.in_grace(ctx.now);
        if reclaim && !grace {
            return Err(err(status::NO_GRACE));
        }
        if !reclaim && grace {
            return Err(err(status::GRACE));
        }
        let (lock_other, owner) = match locker {
            Locker::New {
                open_seqid,
                open_stateid,
                lock_seqid,
                owner,
            } => {
                let Some((oid, open)) =
                    self.open_state(ctx, &mut st, *open_stateid, *open_seqid)?
                else {
                    return Ok(Res::Empty);
                };
                let owner = Owner {
                    clientid: open.client,
                    owner: owner.owner.clone(),
                };
                // The lock owner's seqid starts here (4.0); the open owner's was consumed.
                if ctx.minor == 0 {
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
                            return Err(err(status::RESOURCE));
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
                let id = ctx.stateid(*lock_stateid)?;
                let s = st.lookup_state(&id, ctx.minor).map_err(err)?.clone();
                let Stateful::Lock(l) = s else {
                    return Err(err(status::BAD_STATEID));
                };
                if l.fh != fh {
                    return Err(err(status::BAD_STATEID));
                }
                st.renew(ctx.now, l.client).map_err(err)?;
                if !self.consume_seqid(ctx, &mut st, false, &l.owner, *lock_seqid)? {
                    return Ok(Res::Empty);
                }
                (id.other, l.owner)
            }
        };
        if matches!(locker, Locker::New { .. }) && ctx.minor == 0 {
            // Both owners' seqids move on with this LOCK; the open owner's is recorded by
            // the pipeline, the lock owner's here.
            if let Some(e) = st.lock_owners.get_mut(&owner) {
                e.seqid = e.seqid.wrapping_add(1);
            }
        }
        if let Some(d) = st.conflict(&fh, &owner, write, offset, end) {
            return Err((status::DENIED, ErrBody::Denied(d)));
        }
        st.set_range(&fh, &owner, Some(write), offset, end)
            .map_err(err)?;
        let Some(Stateful::Lock(l)) = st.states.get_mut(&lock_other) else {
            return Err(err(status::BAD_STATEID));
        };
        l.seqid = l.seqid.wrapping_add(1);
        let out = StateId {
            seqid: l.seqid,
            other: lock_other,
        };
        ctx.current_stateid = Some(out);
        Ok(Res::StateId(out))
    }

    fn unlock(&self, ctx: &mut Ctx, seqid: u32, id: StateId, offset: u64, length: u64) -> OpResult {
        let fh = ctx.fh()?.clone();
        let end = lock_range(offset, length)?;
        let id = ctx.stateid(id)?;
        let mut st = self.state();
        let s = st.lookup_state(&id, ctx.minor).map_err(err)?.clone();
        let Stateful::Lock(l) = s else {
            return Err(err(status::BAD_STATEID));
        };
        if l.fh != fh {
            return Err(err(status::BAD_STATEID));
        }
        st.renew(ctx.now, l.client).map_err(err)?;
        if !self.consume_seqid(ctx, &mut st, false, &l.owner, seqid)? {
            return Ok(Res::Empty);
        }
        st.set_range(&fh, &l.owner, None, offset, end)
            .map_err(err)?;
        let Some(Stateful::Lock(l)) = st.states.get_mut(&id.other) else {
            return Err(err(status::BAD_STATEID));
        };
        l.seqid = l.seqid.wrapping_add(1);
        let out = StateId {
            seqid: l.seqid,
            other: id.other,
        };
        ctx.current_stateid = Some(out);
        Ok(Res::StateId(out))
    }
}

enum SeqOutcome {
    Replay(Vec<u8>),
    Result(OpResult),
}

/// Whether a request asks to read a write-only attribute (RFC 7530 §5.5: NFS4ERR_INVAL).
fn write_only(mask: &Bitmap) -> bool {
    mask.has(fattr::TIME_ACCESS_SET) || mask.has(fattr::TIME_MODIFY_SET)
}

fn lock_range(offset: u64, length: u64) -> Result<u64, (u32, ErrBody)> {
    if length == 0 {
        return Err(err(status::INVAL));
    }
    range_end(offset, length).ok_or(err(status::INVAL))
}

fn head_len(tag: &[u8]) -> usize {
    // RPC reply header + status + tag + count
    24 + 4 + opaque_len(tag.len()) + 4
}

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
