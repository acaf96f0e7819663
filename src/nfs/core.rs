//! The NFSv4 COMPOUND pipeline: one RPC call in, one reply out.
//!
//! Data flow: [`Server::handle_call`] takes a call [`rpc::parse_call`] decoded (or the
//! refusal to answer), decodes the COMPOUND into a bounded list of [`Op`]s
//! ([`wire::decode_compound`]), hands each op to its family in `nfs::ops` (which runs it
//! against the state tables, behind one mutex taken per state step, and the [`Vfs`], called
//! without the mutex held), encodes each result as it completes, and stops at the first
//! failure. The pipeline owns what is about the COMPOUND as a whole: SEQUENCE first and only
//! first in 4.1 (its slot table keeps each reply for replays), the operations allowed
//! without a session, the operation limit, the reply size limit, and 4.0 open and lock
//! owners' last replies (replayed on a retransmitted seqid).
//!
//! Time comes in as `now`, the boot epoch and grace period at construction; the core never
//! reads a clock, opens a socket or spawns. [`Server::handle_timeout`] expires clients whose
//! lease ran out and revokes delegations not returned within a lease of their recall.
//! Callbacks are outputs: [`Server::poll_callback`] hands the shell the next one to make (a
//! 4.0 CB_NULL probe or a CB_RECALL, as a [`CbJob`]), [`Server::callback_done`] takes in
//! how it ended, and [`Server::connection_closed`] says a 4.1 back channel's connection is
//! gone. Each call names its connection ([`Peer`]), which is how CREATE_SESSION and
//! BIND_CONN_TO_SESSION bind a back channel.
//!
//! Not here: the rules of each operation (its family file in `nfs::ops`), sending
//! callbacks (`nfs::serve`, encoded by `nfs::cb`), write delegations, pNFS,
//! named attributes, ACLs, RPCSEC_GSS, SP4_MACH_CRED/SSV state protection, mandatory
//! byte-range locking (locks are advisory: READ and WRITE do not check them), persistence of
//! client state across restarts.

use super::ops::session::{sequence, SeqOutcome};
use super::ops::{self, lock_state, Ctx, Shared};
use super::rpc::{self, AcceptStat, Call, Cred, Procedure, Refusal};
use super::state::{seqid_unchanged, Limits, Reclaimers, State, Stateful};
pub use super::state::{CbJob, CbResult, CbRoute, Expiry};
use super::status::Nfs4Status;
use super::vfs::{Caller, Vfs};
use super::wire::{self, Compound, Op, Owner, MAX_OPS, MAX_RECORD};
use super::xdr::{opaque_len, Writer};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The uid and gid of AUTH_NONE callers.
pub const NOBODY: u32 = 65534;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Identifies this server run (e.g. its start time in seconds); part of every client id,
    /// stateid and session id so that ids from an earlier run are recognised as stale.
    pub boot: u32,
    /// End of the grace period (None: no grace period, nothing to reclaim).
    pub grace_until: Option<Instant>,
    /// Who may reclaim in it, if known: it ends once they all sent RECLAIM_COMPLETE.
    pub reclaimers: Option<Reclaimers>,
    /// EXCHANGE_ID's server owner and scope (the same for servers sharing state; here: one).
    pub server_owner: Vec<u8>,
    /// Whether OPEN grants read delegations to clients with a working callback path.
    pub delegations: bool,
}

/// Where a call came from: the peer's address, and the connection it came on (an id the
/// shell gives each connection; a 4.1 back channel is bound to one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: IpAddr,
    pub conn: u64,
}

/// What kind of call a record was, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Null,
    Compound,
    /// The RPC layer refused the call (bad version, credential, undecodable arguments ...).
    Refused,
}

/// What one call produced: the reply to send (None: close the connection) and, for the
/// counters and the log, what kind of call it was and each executed operation's number and
/// status.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Option<Vec<u8>>,
    pub ops: OpStatuses,
    pub kind: CallKind,
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
    /// Read delegations held (absent in status files of earlier versions).
    #[serde(default)]
    pub delegations: usize,
}

/// The clients of `clients` as a later grace period expects them to reclaim.
pub fn reclaimers(clients: &[ClientStatus]) -> Reclaimers {
    let mut r = Reclaimers::default();
    for c in clients {
        if c.minor_version == 0 {
            r.v40 += 1;
        } else {
            r.v41.push(super::state::owner_digest(c.owner.as_bytes()));
        }
    }
    r
}

/// The protocol server: state tables and the file side.
pub struct Server {
    shared: Shared,
}

/// Each executed operation's number and status.
pub type OpStatuses = Vec<(u32, Nfs4Status)>;

/// The operations a 4.1 COMPOUND may start with instead of SEQUENCE.
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

/// Runs the `i`-th operation of `c` after the rules about the COMPOUND as a whole: the
/// operation limit, and in 4.1 SEQUENCE first and only first (or else one of the sessionless
/// operations, alone). A retransmitted SEQUENCE answers with its slot's cached reply.
fn step(cx: &mut Ctx, c: &Compound, i: usize, op: &Op) -> SeqOutcome {
    let fail = |s: Nfs4Status| SeqOutcome::Result(Err(s.into()));
    if c.too_many {
        return fail(if c.minor == 0 {
            Nfs4Status::Resource
        } else {
            Nfs4Status::TooManyOps
        });
    }
    let first_of_41 = c.minor >= 1 && i == 0;
    match op {
        Op::Sequence { .. } if c.minor >= 1 && i > 0 => fail(Nfs4Status::SequencePos),
        Op::Sequence {
            session,
            sequence: seq,
            slot,
            highest_slot,
            ..
        } => sequence(cx, *session, *seq, *slot, *highest_slot, c.ops.len()),
        _ if first_of_41 && !sessionless(op) => fail(Nfs4Status::OpNotInSession),
        // Without SEQUENCE, each of them must be alone (RFC 8881 §18.35.3, §18.36.3,
        // §18.37.3, §18.50.3, §18.34.3).
        _ if first_of_41 && c.ops.len() > 1 => fail(Nfs4Status::NotOnlyOp),
        _ => SeqOutcome::Result(ops::run(cx, op)),
    }
}

fn head_len(tag: &[u8]) -> usize {
    // RPC reply header + status + tag + count
    24 + 4 + opaque_len(tag.len()) + 4
}

impl Server {
    pub fn new(vfs: Arc<dyn Vfs>, settings: Settings) -> Self {
        let mut state = State::new(settings.limits, settings.boot, None);
        if let Some(until) = settings.grace_until {
            // No period runs yet, whatever the time: `until` stands in for `now`.
            state.begin_grace(until, until, settings.reclaimers.as_ref());
        }
        Server {
            shared: Shared {
                vfs,
                state: Mutex::new(state),
                server_owner: settings.server_owner,
                delegations: settings.delegations,
            },
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_state(&self.shared.state)
    }

    /// Expires clients whose lease ran out and revokes delegations recalled a lease ago
    /// and not returned; returns how many of each.
    pub fn handle_timeout(&self, now: Instant) -> Expiry {
        let mut st = self.state();
        Expiry {
            leases: st.expire(now),
            revoked: st.revoke_overdue(now),
        }
    }

    /// The next callback to make, marked under way until [`Server::callback_done`].
    pub fn poll_callback(&self) -> Option<CbJob> {
        self.state().poll_callback()
    }

    /// How a callback from [`Server::poll_callback`] ended.
    pub fn callback_done(&self, job: &CbJob, result: CbResult) {
        self.state().callback_done(job, result);
    }

    /// Connection `conn` closed: a back channel it carried is down.
    pub fn connection_closed(&self, conn: u64) {
        self.state().connection_closed(conn);
    }

    /// Starts (or lengthens) a grace period that ends at `until` (or once every client of
    /// `expected` sent RECLAIM_COMPLETE): this member took over the pool's service address,
    /// so the previous holder's clients reclaim their opens and locks (CLAIM_PREVIOUS, reclaim
    /// LOCK) and new ones get NFS4ERR_GRACE meanwhile. Returns false when `expected` names
    /// no client (no grace period needed).
    pub fn begin_grace(&self, now: Instant, until: Instant, expected: Option<&Reclaimers>) -> bool {
        self.state().begin_grace(now, until, expected)
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
                let (mut opens, mut locks, mut delegations) = (0, 0, 0);
                for s in st.states.values().filter(|s| s.client() == c.id) {
                    match s {
                        Stateful::Open(_) => opens += 1,
                        Stateful::Lock(_) => locks += 1,
                        Stateful::Deleg(_) => delegations += 1,
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
                    delegations,
                }
            })
            .collect();
        out.sort_by(|a, b| a.clientid.cmp(&b.clientid));
        out
    }

    /// Answers one call of `peer` as [`rpc::parse_call`] decoded it (a refusal is answered
    /// as such).
    pub fn handle_call(&self, now: Instant, peer: Peer, call: Result<Call, Refusal>) -> Outcome {
        let call = match call {
            Ok(c) => c,
            Err(refusal) => {
                return Outcome {
                    reply: refusal.reply(),
                    ops: Vec::new(),
                    kind: CallKind::Refused,
                }
            }
        };
        let caller = match &call.cred {
            Cred::None => Caller {
                addr: peer.addr,
                uid: NOBODY,
                gid: NOBODY,
                gids: Vec::new(),
            },
            Cred::Sys { uid, gid, gids } => Caller {
                addr: peer.addr,
                uid: *uid,
                gid: *gid,
                gids: gids.clone(),
            },
        };
        let mut w = rpc::accepted(call.xid, AcceptStat::Success);
        if call.procedure == Procedure::Null {
            return Outcome {
                reply: Some(w.buf),
                ops: Vec::new(),
                kind: CallKind::Null,
            };
        }
        match self.compound(now, &caller, peer.conn, call.args()) {
            Ok((body, ops)) => {
                w.buf.extend_from_slice(&body);
                Outcome {
                    reply: Some(w.buf),
                    ops,
                    kind: CallKind::Compound,
                }
            }
            Err(wire::Garbage) => Outcome {
                reply: Some(rpc::accepted(call.xid, AcceptStat::GarbageArgs).buf),
                ops: Vec::new(),
                kind: CallKind::Refused,
            },
        }
    }

    /// Runs one COMPOUND; returns the encoded COMPOUND4res.
    fn compound(
        &self,
        now: Instant,
        caller: &Caller,
        conn: u64,
        args: &[u8],
    ) -> Result<(Vec<u8>, OpStatuses), wire::Garbage> {
        let c = wire::decode_compound(args, MAX_OPS)?;
        let mut head = Writer::new();
        if c.minor > wire::MAX_MINOR {
            head.u32(Nfs4Status::MinorVersMismatch.code());
            head.opaque(&c.tag);
            head.u32(0);
            return Ok((head.buf, Vec::new()));
        }
        let mut cx = Ctx::new(&self.shared, now, caller, conn, c.minor, MAX_RECORD);
        let mut results = Writer::new();
        let mut count = 0u32;
        let mut last = Nfs4Status::Ok;
        let mut ops = Vec::new();
        for (i, op) in c.ops.iter().enumerate() {
            let num = op.number();
            let result = match step(&mut cx, &c, i, op) {
                SeqOutcome::Replay(bytes) => return Ok((bytes, Vec::new())),
                SeqOutcome::Result(r) => r,
            };
            let mark = results.len();
            let st = if let Some(bytes) = cx.replay.take() {
                results.buf.extend_from_slice(&bytes);
                // The status the replayed result was first sent with (after its op number).
                bytes
                    .get(4..8)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .and_then(Nfs4Status::from_u32)
                    .unwrap_or(Nfs4Status::ServerFault)
            } else {
                wire::encode_result(&mut results, num, &result);
                let st = result.as_ref().err().map_or(Nfs4Status::Ok, |e| e.status);
                if let Some((is_open, owner)) = cx.seq_owner.take() {
                    self.record_seqid(is_open, &owner, st, &results.buf[mark..]);
                }
                st
            };
            if results.len() + head_len(&c.tag) > cx.max_response {
                results.truncate(mark);
                let too_big = if c.minor == 0 {
                    Nfs4Status::Resource
                } else {
                    Nfs4Status::RepTooBig
                };
                wire::encode_result(&mut results, num, &Err(too_big.into()));
                ops.push((num, too_big));
                count += 1;
                last = too_big;
                break;
            }
            ops.push((num, st));
            count += 1;
            last = st;
            if st != Nfs4Status::Ok {
                break;
            }
        }
        head.u32(last.code());
        head.opaque(&c.tag);
        head.u32(count);
        head.buf.extend_from_slice(&results.buf);
        if let Some((session, slot, _)) = cx.session {
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

    /// Moves a 4.0 owner's seqid on and keeps the encoded result for replays, unless the
    /// status leaves the seqid alone (RFC 7530 §9.1.7).
    fn record_seqid(&self, is_open: bool, owner: &Owner, st: Nfs4Status, encoded: &[u8]) {
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
}
