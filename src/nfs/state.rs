//! NFSv4 state tables: clients, sessions and slots, open and lock stateids, owners with
//! their sequence ids, byte-range locks, leases and the grace period.
//!
//! Everything here is plain data plus the rules that need no file system: the COMPOUND
//! pipeline ([`super::core`]) holds the tables behind one mutex, takes it for a state step,
//! and releases it around every [`super::vfs::Vfs`] call. Time is an argument (`now`).
//!
//! An expired lease's state is released at once; what stays is a bounded memory of its
//! client id and stateids ([`Expired`]), so that their later use is NFS4ERR_EXPIRED.
//!
//! Read delegations live here too: whether one may be granted ([`State::may_delegate`]),
//! their recall when another client's operation conflicts ([`State::recall`]), the
//! callbacks to make ([`State::poll_callback`], one at a time per client) and what their
//! outcome means ([`State::callback_done`]), and the revocation of a delegation not returned
//! within a lease of its recall (4.1 clients learn of it through SEQUENCE's status flags and
//! TEST_STATEID, and FREE_STATEID forgets it). Recalls come only from operations through
//! this server: a change made to an exported file on the host recalls nothing.
//!
//! Write delegations are not granted, not even on a node's own layer: under one a client
//! keeps its writes to itself until it returns the delegation, while the pool's copies of
//! the layer learn of a change only from the WRITE or COMMIT this server answers (after a
//! copy acknowledged it). A member taking the service address over would serve a layer
//! without what the client holds, and the client's late flush would meet a server that
//! never granted the delegation. Making that safe needs the delegation in the replicated
//! state; read delegations need nothing of the sort (a client that loses one in a failover
//! reclaims its opens and revalidates, and nothing changes the file during the grace).
//!
//! Not here: persistence (state is lost on restart; clients reclaim during the grace
//! period), sending the callbacks ([`super::serve`] does, encoded by
//! [`super::cb`]), "courteous" keeping of expired state until a conflict.

use super::cb::{CbSequence, Recall};
use super::status::Nfs4Status;
use super::vfs::Handle;
use super::wire::{Callback40, Callback41, CbSec, ChannelAttrs, Denied, Owner, StateId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Limits on what clients may make the server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_clients: usize,
    /// Client records of one address: a flood of records from one address takes that
    /// address's room, never another's (its sessions are bounded by this times
    /// `max_sessions_per_client`).
    pub max_clients_per_addr: usize,
    pub max_sessions_per_client: usize,
    /// Open, lock and delegation stateids together.
    pub max_states_per_client: usize,
    /// Open, lock and delegation stateids of all the clients of one address.
    pub max_states_per_addr: usize,
    /// Byte ranges locked per file.
    pub max_locks_per_file: usize,
    /// Slots per session (the client's `ca_maxrequests` is cut to this).
    pub max_slots: u32,
    /// Largest reply kept in a slot's replay cache.
    pub max_cached_reply: usize,
    pub lease: Duration,
    /// Client ids and stateids of expired leases remembered, so that their use answers
    /// NFS4ERR_EXPIRED rather than STALE_CLIENTID or BAD_STATEID (the oldest are forgotten
    /// first).
    pub max_expired_remembered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 1024,
            max_clients_per_addr: 16,
            max_sessions_per_client: 4,
            max_states_per_client: 4096,
            max_states_per_addr: 8192,
            max_locks_per_file: 1024,
            max_slots: 64,
            max_cached_reply: 64 * 1024,
            lease: Duration::from_secs(90),
            max_expired_remembered: 65_536,
        }
    }
}

/// One client (a SETCLIENTID or EXCHANGE_ID record).
#[derive(Debug, Clone)]
pub struct Client {
    pub id: u64,
    pub owner: Vec<u8>,
    pub verifier: [u8; 8],
    pub minor: u32,
    pub confirmed: bool,
    /// 4.0: the verifier SETCLIENTID_CONFIRM must present.
    pub confirm: [u8; 8],
    /// 4.0, a confirmed record: the confirm verifier of a callback update the client asked
    /// for (SETCLIENTID with this record's verifier) and has not confirmed yet. RFC 7530
    /// §16.33.5 calls it an unconfirmed record with the confirmed one's client id.
    pub update: Option<[u8; 8]>,
    /// Who made the record: the AUTH_SYS uid (nobody for AUTH_NONE). Another principal
    /// presenting the same owner gets NFS4ERR_CLID_INUSE while the record's lease runs.
    pub principal: u32,
    pub addr: IpAddr,
    pub lease_until: Instant,
    /// 4.1: the last CREATE_SESSION sequence and its cached result.
    pub cs_seq: u32,
    pub cs_reply: Option<super::wire::Res>,
    pub reclaim_complete: bool,
    /// 4.0: the callback SETCLIENTID offered for this (unconfirmed) record or for its
    /// pending callback update; it takes effect on SETCLIENTID_CONFIRM.
    pub cb_offer: Option<Callback40>,
    /// 4.0: the callback path in effect.
    pub cb40: Option<Cb40>,
    /// A callback to this client is under way: the next waits for its outcome.
    pub cb_busy: bool,
}

/// A 4.0 client's callback path: where to connect, the program and ident to call, and
/// whether CB_NULL answered there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cb40 {
    pub addr: SocketAddr,
    pub program: u32,
    pub ident: u32,
    pub probe: Probe,
}

/// What is known of a 4.0 callback path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Not probed yet (or to probe again).
    Needed,
    Running,
    Up,
    Down,
}

/// A 4.1 session's back channel, asked for in CREATE_SESSION or BIND_CONN_TO_SESSION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Back {
    /// The connection it runs on (None: that connection closed; the client is told with
    /// SEQUENCE's CB_PATH_DOWN flags and binds another).
    pub conn: Option<u64>,
    /// CB_SEQUENCE's sequence id for the next call on the one slot.
    pub seq: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub seq: u32,
    pub busy: bool,
    /// The COMPOUND4res of the last request, when it fitted the cache.
    pub reply: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub client: u64,
    pub slots: Vec<Slot>,
    pub fore: ChannelAttrs,
    /// The callback program and credential (CREATE_SESSION, BACKCHANNEL_CTL).
    pub callback: Callback41,
    pub back: Option<Back>,
}

impl Session {
    /// The back channel's connection, if it has one it can call on.
    pub fn back_conn(&self) -> Option<u64> {
        self.callback.sec.as_ref()?;
        self.back.as_ref()?.conn
    }
}

/// An open stateid: one open owner's open of one file.
#[derive(Debug, Clone)]
pub struct Open {
    pub seqid: u32,
    pub client: u64,
    pub owner: Owner,
    pub fh: Handle,
    pub access: u32,
    pub deny: u32,
}

/// A lock stateid: one lock owner's locks on one file, derived from an open.
#[derive(Debug, Clone)]
pub struct LockState {
    pub seqid: u32,
    pub client: u64,
    pub owner: Owner,
    pub fh: Handle,
    pub open: [u8; 12],
}

/// A read delegation of one file to one client.
#[derive(Debug, Clone)]
pub struct Deleg {
    pub client: u64,
    pub fh: Handle,
    /// When another client's operation conflicted with it: it is revoked a lease after
    /// that unless returned.
    pub recalled: Option<Instant>,
    /// The CB_RECALL went out (or is going out).
    pub sent: bool,
}

#[derive(Debug, Clone)]
pub enum Stateful {
    Open(Open),
    Lock(LockState),
    Deleg(Deleg),
}

impl Stateful {
    pub fn seqid(&self) -> u32 {
        match self {
            Stateful::Open(o) => o.seqid,
            Stateful::Lock(l) => l.seqid,
            // A delegation's stateid never moves on.
            Stateful::Deleg(_) => 1,
        }
    }
    pub fn client(&self) -> u64 {
        match self {
            Stateful::Open(o) => o.client,
            Stateful::Lock(l) => l.client,
            Stateful::Deleg(d) => d.client,
        }
    }
    pub fn fh(&self) -> &Handle {
        match self {
            Stateful::Open(o) => &o.fh,
            Stateful::Lock(l) => &l.fh,
            Stateful::Deleg(d) => &d.fh,
        }
    }
}

/// A callback the shell is to make ([`State::poll_callback`]), reported back with
/// [`State::callback_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbJob {
    pub client: u64,
    pub route: CbRoute,
    /// None: a 4.0 CB_NULL probe; else CB_RECALL of this delegation.
    pub recall: Option<Recall>,
}

/// Where a callback goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbRoute {
    /// 4.0: a new TCP connection to the client's callback address.
    V40(Cb40),
    /// 4.1: the connection `conn` carrying the back channel of `seq.session`.
    V41 {
        conn: u64,
        program: u32,
        sec: CbSec,
        minor: u32,
        seq: CbSequence,
    },
}

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CbResult {
    /// The client answered NFS4_OK.
    Ok,
    /// The client answered with this status.
    Status(Nfs4Status),
    /// No answer: no connection, a connection that failed, or silence.
    Unreachable,
}

/// What a timer step released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expiry {
    /// Clients whose lease ran out.
    pub leases: usize,
    /// Delegations revoked because they were not returned within a lease of their recall.
    pub revoked: usize,
}

/// SEQUENCE's status flags (RFC 8881 §18.46.3).
pub const SEQ4_STATUS_CB_PATH_DOWN: u32 = 0x1;
pub const SEQ4_STATUS_RECALLABLE_STATE_REVOKED: u32 = 0x40;
pub const SEQ4_STATUS_CB_PATH_DOWN_SESSION: u32 = 0x200;

/// An NFSv4.0 owner's sequence: the last seqid and the encoded reply to it (replayed when
/// the client retransmits).
#[derive(Debug, Clone, Default)]
pub struct OwnerSeq {
    pub seqid: u32,
    pub confirmed: bool,
    pub last: Option<Vec<u8>>,
    /// The open this owner closed last: its stateid is gone from the tables, but a
    /// retransmitted CLOSE still names it and must find this owner's replay cache.
    pub closed: Option<[u8; 12]>,
}

/// One locked byte range; `end` is exclusive, `u64::MAX` meaning "to the end of file".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub owner: Owner,
    pub write: bool,
    pub start: u64,
    pub end: u64,
}

/// Outcome of a seqid check (NFSv4.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqCheck {
    New,
    Replay(Vec<u8>),
}

/// Whether an error leaves the owner's seqid alone (RFC 7530 §9.1.7: every other status,
/// errors included, moves it on).
pub fn seqid_unchanged(st: Nfs4Status) -> bool {
    matches!(
        st,
        Nfs4Status::StaleClientId
            | Nfs4Status::StaleStateId
            | Nfs4Status::BadStateId
            | Nfs4Status::BadSeqId
            | Nfs4Status::BadXdr
            | Nfs4Status::Resource
            | Nfs4Status::NoFileHandle
            | Nfs4Status::Moved
    )
}

/// What an expired lease left behind: its client id and the `other` fields of its stateids,
/// bounded (the oldest go first). The state itself is released when the lease expires (RFC
/// 7530 §9.6.3, RFC 8881 §8.3); these only let the server say NFS4ERR_EXPIRED.
#[derive(Debug, Default)]
pub struct Expired {
    order: VecDeque<Tomb>,
    clients: HashSet<u64>,
    states: HashSet<[u8; 12]>,
}

#[derive(Debug, Clone, Copy)]
enum Tomb {
    Client(u64),
    State([u8; 12]),
}

impl Expired {
    fn add(&mut self, t: Tomb, max: usize) {
        let fresh = match t {
            Tomb::Client(id) => self.clients.insert(id),
            Tomb::State(o) => self.states.insert(o),
        };
        if fresh {
            self.order.push_back(t);
        }
        while self.order.len() > max {
            match self.order.pop_front() {
                Some(Tomb::Client(id)) => self.clients.remove(&id),
                Some(Tomb::State(o)) => self.states.remove(&o),
                None => break,
            };
        }
    }

    pub fn client(&self, id: u64) -> bool {
        self.clients.contains(&id)
    }

    pub fn state(&self, other: &[u8; 12]) -> bool {
        self.states.contains(other)
    }
}

/// The clients a previous server (this member's last run, or the pool member that held the
/// service address before) knew: who may reclaim state in a grace period, so that it can end
/// early once they all have (RFC 8881 §8.4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reclaimers {
    /// The 4.1 and 4.2 clients, by [`owner_digest`] of their client owner.
    #[serde(default)]
    pub v41: Vec<u64>,
    /// How many 4.0 clients: they have no RECLAIM_COMPLETE, so any of them keeps the whole
    /// period.
    #[serde(default)]
    pub v40: u64,
}

/// A client owner as a short digest, the same on every member (the first 8 bytes of the
/// BLAKE3 hash of the owner as `drover nfs clients` shows it).
pub fn owner_digest(owner: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(owner);
    let h = blake3::hash(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// All protocol state of the server.
#[derive(Debug)]
pub struct State {
    pub limits: Limits,
    /// Distinguishes this run's client ids, stateids and sessions from an earlier run's.
    pub boot: u32,
    pub grace_until: Option<Instant>,
    /// The clients whose RECLAIM_COMPLETE ends the grace period early (digests); `None`: not
    /// known, the period runs out.
    pub awaited: Option<HashSet<u64>>,
    counter: u64,
    pub clients: HashMap<u64, Client>,
    pub sessions: HashMap<[u8; 16], Session>,
    pub states: HashMap<[u8; 12], Stateful>,
    pub open_owners: HashMap<Owner, OwnerSeq>,
    pub lock_owners: HashMap<Owner, OwnerSeq>,
    pub locks: HashMap<Handle, Vec<Range>>,
    pub expired: Expired,
    /// 4.1 delegations revoked and not yet freed (FREE_STATEID), by `other`: their client.
    /// A client with any gets no new delegation, which bounds them.
    pub revoked: HashMap<[u8; 12], u64>,
    /// Something changed that may make a callback due ([`State::poll_callback`] looks only
    /// then).
    pub cb_due: bool,
}

/// The exclusive end of `length` bytes from `offset`, or None if it overflows.
pub fn range_end(offset: u64, length: u64) -> Option<u64> {
    if length == u64::MAX {
        Some(u64::MAX)
    } else {
        offset.checked_add(length)
    }
}

fn overlaps(a_start: u64, a_end: u64, b_start: u64, b_end: u64) -> bool {
    a_start < b_end && b_start < a_end
}

impl State {
    pub fn new(limits: Limits, boot: u32, grace_until: Option<Instant>) -> Self {
        State {
            limits,
            boot,
            grace_until,
            awaited: None,
            counter: 0,
            clients: HashMap::new(),
            sessions: HashMap::new(),
            states: HashMap::new(),
            open_owners: HashMap::new(),
            lock_owners: HashMap::new(),
            locks: HashMap::new(),
            expired: Expired::default(),
            revoked: HashMap::new(),
            cb_due: false,
        }
    }

    pub fn in_grace(&self, now: Instant) -> bool {
        self.grace_until.is_some_and(|g| now < g)
    }

    /// Starts (or lengthens) a grace period until `until`, for `expected` (`None`: the
    /// clients are not known). Returns false, beginning nothing, when no client is expected:
    /// nothing to reclaim.
    pub fn begin_grace(
        &mut self,
        now: Instant,
        until: Instant,
        expected: Option<&Reclaimers>,
    ) -> bool {
        let known = expected.filter(|r| r.v40 == 0);
        if known.is_some_and(|r| r.v41.is_empty()) {
            return false;
        }
        let running = self.in_grace(now);
        self.awaited = match (running, known) {
            (true, Some(r)) => self.awaited.take().map(|mut a| {
                a.extend(&r.v41);
                a
            }),
            (false, Some(r)) => Some(r.v41.iter().copied().collect()),
            (_, None) => None,
        };
        self.grace_until = Some(match self.grace_until {
            Some(g) if running => g.max(until),
            _ => until,
        });
        true
    }

    /// A client sent RECLAIM_COMPLETE: the grace period ends once every awaited one has.
    pub fn reclaimed(&mut self, owner: &[u8]) {
        let Some(awaited) = self.awaited.as_mut() else {
            return;
        };
        awaited.remove(&owner_digest(owner));
        if awaited.is_empty() {
            self.awaited = None;
            self.grace_until = None;
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    pub fn new_clientid(&mut self) -> u64 {
        (u64::from(self.boot) << 32) | (self.next() & 0xffff_ffff)
    }

    pub fn new_other(&mut self) -> [u8; 12] {
        let mut o = [0u8; 12];
        o[..4].copy_from_slice(&self.boot.to_be_bytes());
        o[4..].copy_from_slice(&self.next().to_be_bytes());
        o
    }

    pub fn new_session_id(&mut self, client: u64) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&client.to_be_bytes());
        s[8..].copy_from_slice(&self.new_other()[4..]);
        s
    }

    /// A confirmed client, renewing its lease; NFS4ERR_EXPIRED if its lease expired,
    /// NFS4ERR_STALE_CLIENTID if unknown (or of an earlier server instance).
    pub fn renew(&mut self, now: Instant, clientid: u64) -> Result<&mut Client, Nfs4Status> {
        let lease = self.limits.lease;
        let expired = self.expired.client(clientid);
        match self.clients.get_mut(&clientid) {
            Some(c) if c.confirmed => {
                c.lease_until = now + lease;
                Ok(c)
            }
            _ if expired => Err(Nfs4Status::Expired),
            _ => Err(Nfs4Status::StaleClientId),
        }
    }

    /// Whether `client` may hold one more open or lock state: below its own limit and its
    /// address's.
    pub fn may_add_state(&self, client: u64) -> bool {
        let Some(addr) = self.clients.get(&client).map(|c| c.addr) else {
            return false;
        };
        let mut own = 0;
        let mut at_addr = 0;
        for s in self.states.values() {
            let c = s.client();
            if c == client {
                own += 1;
                at_addr += 1;
            } else if self.clients.get(&c).is_some_and(|c| c.addr == addr) {
                at_addr += 1;
            }
        }
        own < self.limits.max_states_per_client && at_addr < self.limits.max_states_per_addr
    }

    /// Makes room for one more client record from `addr`, or says there is none. An address
    /// at its own limit, or a full table, first loses an unconfirmed record (of `addr`
    /// itself, or of the address holding the most records): unconfirmed records cost their
    /// maker nothing, so they are what a flood consists of.
    pub fn room_for_client(&mut self, addr: IpAddr) -> bool {
        let mut per_addr: HashMap<IpAddr, usize> = HashMap::new();
        for c in self.clients.values() {
            *per_addr.entry(c.addr).or_default() += 1;
        }
        let own = per_addr.get(&addr).copied().unwrap_or(0);
        let victim_addr = if own >= self.limits.max_clients_per_addr {
            addr
        } else if self.clients.len() >= self.limits.max_clients {
            match per_addr.iter().max_by_key(|(a, n)| (**n, **a == addr)) {
                Some((a, _)) => *a,
                None => return false,
            }
        } else {
            return true;
        };
        // The oldest unconfirmed record of that address (ids grow with time).
        let victim = self
            .clients
            .values()
            .filter(|c| c.addr == victim_addr && !c.confirmed)
            .map(|c| c.id)
            .min();
        match victim {
            Some(id) => {
                self.remove_client(id);
                true
            }
            None => false,
        }
    }

    /// Finds a stateid, checking its generation: `minor` 1 treats seqid 0 as "current".
    pub fn lookup_state(&self, id: &StateId, minor: u32) -> Result<&Stateful, Nfs4Status> {
        // All-zero `other` is a special stateid (the invalid one among them) that the
        // operation did not take as such: no epoch of ours (`new_other` never makes it).
        if id.other == [0; 12] {
            return Err(Nfs4Status::BadStateId);
        }
        if id.other[..4] != self.boot.to_be_bytes() {
            return Err(Nfs4Status::StaleStateId);
        }
        let Some(s) = self.states.get(&id.other) else {
            return Err(if self.revoked.contains_key(&id.other) {
                Nfs4Status::DelegRevoked
            } else if self.expired.state(&id.other) {
                Nfs4Status::Expired
            } else {
                Nfs4Status::BadStateId
            });
        };
        let cur = s.seqid();
        if minor >= 1 && id.seqid == 0 {
            return Ok(s);
        }
        if id.seqid > cur {
            Err(Nfs4Status::BadStateId)
        } else if id.seqid < cur {
            Err(Nfs4Status::OldStateId)
        } else {
            Ok(s)
        }
    }

    /// Removes a client and everything it holds.
    pub fn remove_client(&mut self, id: u64) {
        self.clients.remove(&id);
        self.sessions.retain(|_, s| s.client != id);
        self.states.retain(|_, s| s.client() != id);
        self.open_owners.retain(|o, _| o.clientid != id);
        self.lock_owners.retain(|o, _| o.clientid != id);
        for ranges in self.locks.values_mut() {
            ranges.retain(|r| r.owner.clientid != id);
        }
        self.locks.retain(|_, r| !r.is_empty());
        self.revoked.retain(|_, c| *c != id);
    }

    /// Expires clients whose lease ran out, remembering the confirmed ones' ids and
    /// stateids (an unconfirmed record was never usable). Returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let dead: Vec<(u64, bool)> = self
            .clients
            .values()
            .filter(|c| c.lease_until <= now)
            .map(|c| (c.id, c.confirmed))
            .collect();
        let max = self.limits.max_expired_remembered;
        for &(id, confirmed) in &dead {
            if confirmed {
                let others: Vec<[u8; 12]> = self
                    .states
                    .iter()
                    .filter(|(_, s)| s.client() == id)
                    .map(|(o, _)| *o)
                    .collect();
                for o in others {
                    self.expired.add(Tomb::State(o), max);
                }
                self.expired.add(Tomb::Client(id), max);
            }
            self.remove_client(id);
        }
        dead.len()
    }

    /// The earliest lease expiry or revocation of a recalled delegation (for the shell's
    /// timer).
    pub fn next_expiry(&self) -> Option<Instant> {
        let lease = self.limits.lease;
        let recalls = self.states.values().filter_map(|s| match s {
            Stateful::Deleg(d) => d.recalled.map(|t| t + lease),
            _ => None,
        });
        self.clients
            .values()
            .map(|c| c.lease_until)
            .chain(recalls)
            .min()
    }

    /// Revokes the delegations recalled a lease ago or more and still not returned (RFC 8881
    /// §10.2, RFC 7530 §10.2): a 4.1 client's are remembered as revoked until it frees them,
    /// a 4.0 client's as expired. Returns how many.
    pub fn revoke_overdue(&mut self, now: Instant) -> usize {
        let lease = self.limits.lease;
        let overdue: Vec<([u8; 12], u64)> = self
            .states
            .iter()
            .filter_map(|(o, s)| match s {
                Stateful::Deleg(d) if d.recalled.is_some_and(|t| t + lease <= now) => {
                    Some((*o, d.client))
                }
                _ => None,
            })
            .collect();
        let max = self.limits.max_expired_remembered;
        for &(other, client) in &overdue {
            self.states.remove(&other);
            if self.clients.get(&client).is_some_and(|c| c.minor >= 1) {
                self.revoked.insert(other, client);
            } else {
                self.expired.add(Tomb::State(other), max);
            }
        }
        overdue.len()
    }

    /// Whether any delegation exists (to skip the work of finding conflicts).
    pub fn has_delegations(&self) -> bool {
        self.states
            .values()
            .any(|s| matches!(s, Stateful::Deleg(_)))
    }

    /// Whether `client` has a way to take callbacks: a 4.0 callback address that answered
    /// CB_NULL, or a 4.1 session with a back channel on a live connection.
    pub fn callback_up(&self, client: u64) -> bool {
        match self.clients.get(&client) {
            Some(c) if c.minor == 0 => c.cb40.is_some_and(|cb| cb.probe == Probe::Up),
            Some(_) => self
                .sessions
                .values()
                .any(|s| s.client == client && s.back_conn().is_some()),
            None => false,
        }
    }

    /// Whether a read delegation of `fh` may go to `client` now (RFC 8881 §10.4, RFC 7530
    /// §10.4): outside the grace period, with a working callback path, nothing of the
    /// client's revoked and unfreed, no open of the file for writing (by anyone), no
    /// delegation of it being recalled, none of the client's own already, and room for one
    /// more state.
    pub fn may_delegate(&self, client: u64, fh: &Handle, now: Instant) -> bool {
        if self.in_grace(now) || !self.callback_up(client) {
            return false;
        }
        if self.revoked.values().any(|c| *c == client) {
            return false;
        }
        let busy = self.states.values().any(|s| match s {
            Stateful::Open(o) => o.fh == *fh && o.access & 2 != 0,
            Stateful::Deleg(d) => d.fh == *fh && (d.recalled.is_some() || d.client == client),
            Stateful::Lock(_) => false,
        });
        !busy && self.may_add_state(client)
    }

    /// Grants `client` a read delegation of `fh` ([`State::may_delegate`] said it may).
    pub fn delegate(&mut self, client: u64, fh: &Handle) -> StateId {
        let other = self.new_other();
        self.states.insert(
            other,
            Stateful::Deleg(Deleg {
                client,
                fh: fh.clone(),
                recalled: None,
                sent: false,
            }),
        );
        StateId { seqid: 1, other }
    }

    /// Recalls the delegations of `fh` held by clients other than `except` (an operation
    /// that conflicts with them is about to run). Returns whether any is outstanding: the
    /// operation is then answered NFS4ERR_DELAY, and succeeds once they are returned or
    /// revoked.
    pub fn recall(&mut self, fh: &Handle, except: Option<u64>, now: Instant) -> bool {
        let mut any = false;
        for s in self.states.values_mut() {
            if let Stateful::Deleg(d) = s {
                if d.fh == *fh && Some(d.client) != except {
                    any = true;
                    if d.recalled.is_none() {
                        d.recalled = Some(now);
                        self.cb_due = true;
                    }
                }
            }
        }
        any
    }

    /// The next callback to make, if any: a 4.0 client's CB_NULL probe, or the CB_RECALL of
    /// a recalled delegation whose client has a callback path and no other callback under
    /// way. Marks it under way.
    pub fn poll_callback(&mut self) -> Option<CbJob> {
        if !self.cb_due {
            return None;
        }
        for c in self.clients.values_mut() {
            if let Some(cb) = c.cb40.as_mut() {
                if c.confirmed && !c.cb_busy && cb.probe == Probe::Needed {
                    cb.probe = Probe::Running;
                    c.cb_busy = true;
                    return Some(CbJob {
                        client: c.id,
                        route: CbRoute::V40(*cb),
                        recall: None,
                    });
                }
            }
        }
        let due = self.states.iter().find_map(|(o, s)| match s {
            Stateful::Deleg(d)
                if d.recalled.is_some()
                    && !d.sent
                    && self.clients.get(&d.client).is_some_and(|c| !c.cb_busy)
                    && self.callback_up(d.client) =>
            {
                Some((*o, d.client, d.fh.clone()))
            }
            _ => None,
        });
        let Some((other, client, fh)) = due else {
            self.cb_due = false;
            return None;
        };
        let minor = self.clients.get(&client).map_or(0, |c| c.minor);
        let route = if minor == 0 {
            CbRoute::V40(self.clients.get(&client)?.cb40?)
        } else {
            let (id, s) = self
                .sessions
                .iter()
                .find(|(_, s)| s.client == client && s.back_conn().is_some())?;
            CbRoute::V41 {
                conn: s.back_conn()?,
                program: s.callback.program,
                sec: s.callback.sec.clone()?,
                minor,
                seq: CbSequence {
                    session: *id,
                    sequence: s.back.as_ref()?.seq,
                },
            }
        };
        if let Some(Stateful::Deleg(d)) = self.states.get_mut(&other) {
            d.sent = true;
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.cb_busy = true;
        }
        Some(CbJob {
            client,
            route,
            recall: Some(Recall {
                stateid: StateId { seqid: 1, other },
                fh,
            }),
        })
    }

    /// Takes in how `job` ended. A probe that answered makes the 4.0 path usable; an
    /// unreachable client's path is down (4.1: the session's connection is forgotten, so
    /// SEQUENCE tells the client to bind another) and its recall goes out again once the
    /// path is back; a recall the client answered, whatever it said, waits for DELEGRETURN
    /// or the revocation (NFS4ERR_DELAY: it is sent again).
    pub fn callback_done(&mut self, job: &CbJob, result: CbResult) {
        self.cb_due = true;
        let Some(c) = self.clients.get_mut(&job.client) else {
            return;
        };
        c.cb_busy = false;
        if let (CbRoute::V40(_), Some(cb)) = (&job.route, c.cb40.as_mut()) {
            if job.recall.is_none() || result == CbResult::Unreachable {
                cb.probe = if result == CbResult::Ok {
                    Probe::Up
                } else {
                    Probe::Down
                };
            }
        }
        if let CbRoute::V41 { conn, seq, .. } = &job.route {
            if let Some(b) = self
                .sessions
                .get_mut(&seq.session)
                .and_then(|s| s.back.as_mut())
            {
                if result == CbResult::Unreachable {
                    if b.conn == Some(*conn) {
                        b.conn = None;
                    }
                } else {
                    b.seq = b.seq.wrapping_add(1);
                }
            }
        }
        let again = matches!(
            result,
            CbResult::Unreachable | CbResult::Status(Nfs4Status::Delay)
        );
        if let Some(r) = &job.recall {
            if let Some(Stateful::Deleg(d)) = self.states.get_mut(&r.stateid.other) {
                if again {
                    d.sent = false;
                }
            }
        }
    }

    /// The connection `conn` closed: the back channels it carried are down.
    pub fn connection_closed(&mut self, conn: u64) {
        for s in self.sessions.values_mut() {
            if let Some(b) = s.back.as_mut() {
                if b.conn == Some(conn) {
                    b.conn = None;
                }
            }
        }
    }

    /// NFSv4.0 seqid rule for an owner's next operation (RFC 7530 §9.1.7): the last seqid
    /// again is a retransmission, answered from the cache; the next one is new; anything
    /// else is NFS4ERR_BAD_SEQID. An unconfirmed open owner may start over at any seqid
    /// (§16.18.5), but its retransmissions are still replays.
    pub fn check_seqid(seq: Option<&OwnerSeq>, seqid: u32) -> Result<SeqCheck, Nfs4Status> {
        match seq {
            None => Ok(SeqCheck::New),
            Some(OwnerSeq {
                seqid: last,
                last: Some(reply),
                ..
            }) if seqid == *last => Ok(SeqCheck::Replay(reply.clone())),
            Some(s) if !s.confirmed || seqid == s.seqid.wrapping_add(1) => Ok(SeqCheck::New),
            Some(_) => Err(Nfs4Status::BadSeqId),
        }
    }

    /// The first lock of another owner that conflicts with a lock of `owner`.
    pub fn conflict(
        &self,
        fh: &Handle,
        owner: &Owner,
        write: bool,
        start: u64,
        end: u64,
    ) -> Option<Denied> {
        self.locks.get(fh)?.iter().find_map(|r| {
            (r.owner != *owner && (write || r.write) && overlaps(start, end, r.start, r.end)).then(
                || Denied {
                    offset: r.start,
                    length: if r.end == u64::MAX {
                        u64::MAX
                    } else {
                        r.end - r.start
                    },
                    write: r.write,
                    owner: r.owner.clone(),
                },
            )
        })
    }

    /// Sets (`Some(write)`) or clears (`None`) `owner`'s lock on `[start, end)`, splitting and
    /// replacing its overlapping ranges as POSIX locks do.
    pub fn set_range(
        &mut self,
        fh: &Handle,
        owner: &Owner,
        lock: Option<bool>,
        start: u64,
        end: u64,
    ) -> Result<(), Nfs4Status> {
        let ranges = self.locks.get(fh).cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(ranges.len() + 2);
        for r in ranges {
            if r.owner != *owner || !overlaps(start, end, r.start, r.end) {
                out.push(r);
                continue;
            }
            if r.start < start {
                out.push(Range {
                    end: start,
                    ..r.clone()
                });
            }
            if r.end > end {
                out.push(Range { start: end, ..r });
            }
        }
        if let Some(write) = lock {
            // The owner's ranges of the same type that touch the new one merge with it
            // (overlapping ones were cut away above), so that one lock is one range.
            let (mut start, mut end) = (start, end);
            out.retain(|r| {
                let touches =
                    r.owner == *owner && r.write == write && r.start <= end && start <= r.end;
                if touches {
                    start = start.min(r.start);
                    end = end.max(r.end);
                }
                !touches
            });
            if out.len() >= self.limits.max_locks_per_file {
                return Err(Nfs4Status::Resource);
            }
            out.push(Range {
                owner: owner.clone(),
                write,
                start,
                end,
            });
        }
        if out.is_empty() {
            self.locks.remove(fh);
        } else {
            self.locks.insert(fh.clone(), out);
        }
        Ok(())
    }

    /// Whether `owner` holds any byte-range lock (on `fh`, or anywhere).
    pub fn holds_locks(&self, owner: &Owner, fh: Option<&Handle>) -> bool {
        self.locks
            .iter()
            .filter(|(h, _)| fh.is_none_or(|f| f == *h))
            .any(|(_, rs)| rs.iter().any(|r| r.owner == *owner))
    }

    /// Whether an open of `fh` denies the share access bits `access` (1 read, 2 write) to
    /// everyone else: for I/O under the special stateids, which belong to no open.
    pub fn denied(&self, fh: &Handle, access: u32) -> bool {
        self.states.values().any(|s| match s {
            Stateful::Open(o) => o.fh == *fh && o.deny & access != 0,
            Stateful::Lock(_) | Stateful::Deleg(_) => false,
        })
    }

    /// Share reservation check for an open of `fh` by `owner`.
    pub fn share_conflict(&self, fh: &Handle, owner: &Owner, access: u32, deny: u32) -> bool {
        self.states.values().any(|s| match s {
            Stateful::Open(o) => {
                o.fh == *fh && o.owner != *owner && (o.deny & access != 0 || deny & o.access != 0)
            }
            Stateful::Lock(_) | Stateful::Deleg(_) => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: u8) -> Owner {
        Owner {
            clientid: 1,
            owner: vec![n],
        }
    }

    #[test]
    fn ranges_split_merge_and_conflict() {
        let mut s = State::new(Limits::default(), 7, None);
        let fh = Handle(vec![1]);
        s.set_range(&fh, &owner(1), Some(true), 0, 100).unwrap();
        assert!(s.conflict(&fh, &owner(2), false, 50, 60).is_some());
        assert!(s.conflict(&fh, &owner(1), true, 50, 60).is_none());
        s.set_range(&fh, &owner(1), None, 40, 60).unwrap();
        assert!(s.conflict(&fh, &owner(2), true, 45, 55).is_none());
        assert!(s.conflict(&fh, &owner(2), true, 30, 45).is_some());
        assert_eq!(s.locks[&fh].len(), 2);
        s.set_range(&fh, &owner(2), Some(false), 40, 60).unwrap();
        assert!(s.conflict(&fh, &owner(3), false, 40, 60).is_none());
        let d = s.conflict(&fh, &owner(3), true, 0, u64::MAX).unwrap();
        assert_eq!((d.offset, d.length, d.write), (0, 40, true));
        s.set_range(&fh, &owner(1), None, 0, u64::MAX).unwrap();
        s.set_range(&fh, &owner(2), None, 0, u64::MAX).unwrap();
        assert!(s.locks.is_empty());
        assert_eq!(range_end(u64::MAX - 1, 2), None);
        assert_eq!(range_end(5, u64::MAX), Some(u64::MAX));
    }

    /// One owner's ranges, sorted, as (start, end, write).
    fn ranges_of(s: &State, fh: &Handle, o: &Owner) -> Vec<(u64, u64, bool)> {
        let mut v: Vec<_> = s.locks.get(fh).map_or_else(Vec::new, |rs| {
            rs.iter()
                .filter(|r| r.owner == *o)
                .map(|r| (r.start, r.end, r.write))
                .collect()
        });
        v.sort_unstable();
        v
    }

    #[test]
    fn one_owners_ranges_merge_when_they_touch_and_split_when_unlocked() {
        let mut s = State::new(Limits::default(), 7, None);
        let fh = Handle(vec![1]);
        let o = owner(1);
        // Adjacent ranges of one type merge; a gap keeps them apart.
        s.set_range(&fh, &o, Some(true), 0, 100).unwrap();
        s.set_range(&fh, &o, Some(true), 100, 200).unwrap();
        s.set_range(&fh, &o, Some(true), 300, 400).unwrap();
        assert_eq!(
            ranges_of(&s, &fh, &o),
            vec![(0, 200, true), (300, 400, true)]
        );
        // An overlapping lock bridging the gap makes one range.
        s.set_range(&fh, &o, Some(true), 150, 350).unwrap();
        assert_eq!(ranges_of(&s, &fh, &o), vec![(0, 400, true)]);
        // The conflict another owner sees is the whole merged range.
        let d = s.conflict(&fh, &owner(2), false, 399, 400).unwrap();
        assert_eq!((d.offset, d.length, d.write), (0, 400, true));
        // Unlocking the middle splits it.
        s.set_range(&fh, &o, None, 100, 300).unwrap();
        assert_eq!(
            ranges_of(&s, &fh, &o),
            vec![(0, 100, true), (300, 400, true)]
        );
        // A read lock in the middle of a write lock splits it into three; the types do
        // not merge.
        s.set_range(&fh, &o, Some(false), 40, 60).unwrap();
        assert_eq!(
            ranges_of(&s, &fh, &o),
            vec![
                (0, 40, true),
                (40, 60, false),
                (60, 100, true),
                (300, 400, true)
            ]
        );
        // Write again over it: one range once more; to the end of file merges too.
        s.set_range(&fh, &o, Some(true), 30, 70).unwrap();
        s.set_range(&fh, &o, Some(true), 400, u64::MAX).unwrap();
        assert_eq!(
            ranges_of(&s, &fh, &o),
            vec![(0, 100, true), (300, u64::MAX, true)]
        );
        // Another owner's adjacent range stays its own.
        s.set_range(&fh, &owner(2), Some(true), 100, 300).unwrap();
        assert_eq!(ranges_of(&s, &fh, &owner(2)), vec![(100, 300, true)]);
        assert_eq!(s.locks[&fh].len(), 3);
    }

    #[test]
    fn expired_leases_are_remembered_within_a_bound() {
        let now = Instant::now();
        let limits = Limits {
            lease: Duration::from_secs(10),
            max_expired_remembered: 3,
            ..Limits::default()
        };
        let mut s = State::new(limits, 7, None);
        let addr = IpAddr::from([127, 0, 0, 1]);
        let mut ids = Vec::new();
        for confirmed in [true, true, false] {
            let id = s.new_clientid();
            s.clients.insert(
                id,
                Client {
                    id,
                    owner: id.to_be_bytes().to_vec(),
                    verifier: [0; 8],
                    minor: 0,
                    confirmed,
                    confirm: [0; 8],
                    update: None,
                    principal: 0,
                    addr,
                    lease_until: now + Duration::from_secs(10),
                    cs_seq: 0,
                    cs_reply: None,
                    reclaim_complete: false,
                    cb_offer: None,
                    cb40: None,
                    cb_busy: false,
                },
            );
            ids.push(id);
        }
        let other = s.new_other();
        s.states.insert(
            other,
            Stateful::Open(Open {
                seqid: 1,
                client: ids[0],
                owner: owner(1),
                fh: Handle(vec![1]),
                access: 1,
                deny: 0,
            }),
        );
        let id = StateId { seqid: 1, other };
        assert!(s.lookup_state(&id, 0).is_ok());
        // Renewed, the first lives on; the others expire.
        assert!(s.renew(now + Duration::from_secs(5), ids[0]).is_ok());
        assert_eq!(s.expire(now + Duration::from_secs(10)), 2);
        assert_eq!(s.renew(now, ids[1]).err(), Some(Nfs4Status::Expired));
        // An unconfirmed record was never usable: it stays unknown.
        assert_eq!(s.renew(now, ids[2]).err(), Some(Nfs4Status::StaleClientId));
        assert_eq!(s.expire(now + Duration::from_secs(15)), 1);
        assert_eq!(s.renew(now, ids[0]).err(), Some(Nfs4Status::Expired));
        assert_eq!(s.lookup_state(&id, 0).err(), Some(Nfs4Status::Expired));
        // Remembering 3 at most: two more expired clients push out the oldest two.
        for _ in 0..2 {
            let id = s.new_clientid();
            s.expired.add(Tomb::Client(id), 3);
        }
        assert_eq!(s.renew(now, ids[1]).err(), Some(Nfs4Status::StaleClientId));
        assert_eq!(s.lookup_state(&id, 0).err(), Some(Nfs4Status::BadStateId));
        assert_eq!(s.renew(now, ids[0]).err(), Some(Nfs4Status::Expired));
    }

    #[test]
    fn seqid_rules() {
        let mut seq = OwnerSeq {
            seqid: 5,
            confirmed: true,
            last: Some(vec![1, 2]),
            closed: None,
        };
        assert_eq!(State::check_seqid(Some(&seq), 6), Ok(SeqCheck::New));
        assert_eq!(
            State::check_seqid(Some(&seq), 5),
            Ok(SeqCheck::Replay(vec![1, 2]))
        );
        assert_eq!(State::check_seqid(Some(&seq), 9), Err(Nfs4Status::BadSeqId));
        assert_eq!(State::check_seqid(Some(&seq), 4), Err(Nfs4Status::BadSeqId));
        assert_eq!(State::check_seqid(None, 9), Ok(SeqCheck::New));
        // Wrapping: after 0xffffffff comes 0.
        seq.seqid = u32::MAX;
        assert_eq!(State::check_seqid(Some(&seq), 0), Ok(SeqCheck::New));
        // An unconfirmed open owner may start over anywhere, but its retransmission is
        // still a replay.
        seq.confirmed = false;
        assert_eq!(State::check_seqid(Some(&seq), 77), Ok(SeqCheck::New));
        assert_eq!(
            State::check_seqid(Some(&seq), u32::MAX),
            Ok(SeqCheck::Replay(vec![1, 2]))
        );
        // Without a cached reply the same seqid cannot be answered.
        seq.confirmed = true;
        seq.last = None;
        assert_eq!(
            State::check_seqid(Some(&seq), u32::MAX),
            Err(Nfs4Status::BadSeqId)
        );
        for kept in [
            Nfs4Status::BadSeqId,
            Nfs4Status::StaleClientId,
            Nfs4Status::Moved,
        ] {
            assert!(seqid_unchanged(kept));
        }
        for bumped in [
            Nfs4Status::OldStateId,
            Nfs4Status::Inval,
            Nfs4Status::Denied,
        ] {
            assert!(!seqid_unchanged(bumped));
        }
    }
}
