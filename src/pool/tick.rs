//! The pool task's core for one member in a pool, sans IO: what membership, the exchanges
//! and the store say goes in with the time; what the services and the admin should see comes
//! out as [`Action`]s, which the shell (`serve`) carries out.
//!
//! Data flow of one tick (every `serve::STATUS_EVERY`, and at once after a membership
//! change):
//! 1. the shell gathers [`Facts`] from the store off the async workers
//!    (`facts::gather`) and calls [`Tick::handle_facts`] with the members membership knows:
//!    the DHCP share (`Shares`), the live peers for the boot path, the floating address
//!    decision and the members to ship NFS layers to come out ([`Action::Share`],
//!    [`Action::Peers`], [`Action::Floating`], [`Action::LayerPeers`]), and an
//!    [`Action::Count`]: the walk over the dynamic ranges that says how many addresses each
//!    member owns (up to 2^20 hashes) and the count of image files, which the shell runs off
//!    the async workers too;
//! 2. with those [`Counts`] and what the shell holds in memory (layer copies, NFS clients,
//!    the summaries of the others), [`Tick::handle_counts`] makes this member's summary
//!    ([`Action::Publish`]) and the status ([`Action::Status`], which the shell writes to
//!    `<state>/pool/status.json`).
//!
//! Between ticks, [`Tick::handle_event`] records what happened: datagrams heard, members up
//! and down, store pulls completed or failed (which let `Shares` serve again after a member
//! came into sight).
//!
//! Not here: membership itself (`membership`, whose effects the shell passes on), the rules
//! of shares, the floating address, health and lag (`shares`, `floating`, `report`),
//! sockets, files, the store and the clock.

use super::drain::{self, Drain, Drains};
use super::floating::{Decision, Floating, Said, Seen, FRESH_MS};
use super::membership::MemberId;
use super::peers::Peers;
use super::report::{self, Lag, Ledger};
use super::shares::Shares;
use super::status::{LayerCounts, MemberDetail, MemberStatus, ServiceAddress, Status};
use super::summary::{DhcpShare, Service, Summary, MAX_KNOWN};
use crate::dhcp::Share;
use crate::nfs::state::Reclaimers;
use crate::store::model::PoolMember;
use crate::store::Version;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// What the core is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickSettings {
    /// This member as membership knows it at the start (`Event::Rejoined` renews it).
    pub me: MemberId,
    /// The DHCP lease time in seconds (how long a recovery of address shares lasts).
    pub lease_time: u64,
    /// The floating service address (`[pool] service-address`), for the status.
    pub service_address: Option<Ipv4Addr>,
    /// What this member serves where, for its summary.
    pub services: Vec<Service>,
}

/// Something that happened between ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An authenticated datagram from this pool address.
    Heard(SocketAddrV4),
    Up(MemberId),
    Down(MemberId),
    /// The others had declared this member down; it rejoined as this new incarnation.
    Rejoined(MemberId),
    /// A store pull from this peer completed.
    Pulled {
        peer: SocketAddrV4,
        carried: u64,
        merged: u64,
    },
    PullFailed(SocketAddrV4),
}

/// What the shell read from the store and the state directory for a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub roster: Vec<PoolMember>,
    /// The dynamic ranges of the store's networks.
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// The addresses of the leases active when the facts were read.
    pub leases: Vec<Ipv4Addr>,
    /// The newest record of each writer in the store.
    pub version_vector: BTreeMap<u64, Version>,
    /// The newest change-feed entry the store pruned.
    pub feed_floor: u64,
    /// The version of this member's roster row (`pool::drain` waits for the others to have
    /// it after an undrain).
    pub my_row: Option<Version>,
}

/// The count [`Action::Count`] asks for (see `facts::count`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountJob {
    pub share: Arc<Share>,
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub leases: Vec<Ipv4Addr>,
}

/// Its result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Dynamic addresses each member owns.
    pub owned: HashMap<u64, u64>,
    /// Active leases on addresses of this member's share.
    pub leases: u64,
    /// Image files (blobs) and their bytes, counted with the rest so that a slow blob
    /// directory never holds up the decisions of the first half.
    pub blobs: (u64, u64),
}

/// What the shell holds in memory for the second half of a tick.
pub struct Report<'a> {
    pub counts: Counts,
    /// Datagrams dropped because their tag did not verify.
    pub unauthenticated: u64,
    /// Per live member, its copies of this member's NFS layers; and the stable changes
    /// answered without a copy.
    pub layers: (HashMap<SocketAddrV4, LayerCounts>, u64),
    /// NFS clients of this member, when it serves NFS.
    pub nfs_clients: Option<Arc<Reclaimers>>,
    pub uptime_secs: u64,
    /// Another member's summary and its age (ms), from the table of summaries.
    pub summary_of: &'a dyn Fn(u64) -> Option<(Summary, u64)>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hand DHCP this share (only when it changed).
    Share(Arc<Share>),
    /// Hand DHCP and HTTP these live peers (only when they changed).
    Peers(Arc<Peers>),
    /// The floating address decision, renewed every tick; `changed` when the holder moved;
    /// `took` when this member takes the address now: whose NFS clients may reclaim.
    Floating {
        decision: Decision,
        changed: bool,
        took: Option<Reclaim>,
    },
    /// Ship NFS layers to these members.
    LayerPeers(Vec<SocketAddrV4>),
    /// Write these roster rows of witnesses seen alive that the roster lacks (unless another
    /// member wrote them meanwhile): a witness keeps no store and cannot write its own.
    EnterWitnesses(Vec<PoolMember>),
    /// Count this off the async workers and call [`Tick::handle_counts`].
    Count(CountJob),
    /// Publish this member's summary.
    Publish(Summary),
    /// Write the status file.
    Status(Box<Status>),
}

/// Who may reclaim NFS state after this member took the service address, from the last
/// summary of the member that held it before (`Summary::nfs_known`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// No other member held it since this one last did, as far as the summaries tell (the
    /// pool's first holder): no grace period.
    Nobody,
    /// The previous holder's clients are not known: the whole grace period.
    Unknown,
    /// The previous holder's clients: the grace period ends once they all reclaimed.
    Known(Reclaimers),
}

/// The core (see the module docs).
pub struct Tick {
    settings: TickSettings,
    shares: Shares,
    drain: Drain,
    /// What the drains meant at the last tick.
    drains: Drains,
    floating: Floating,
    ledger: Ledger,
    /// The last authenticated datagram from each pool address (unix ms); the status also
    /// counts completed exchanges as hearing from a member.
    heard: HashMap<SocketAddrV4, u64>,
    /// When each member incarnation was seen going down (unix ms).
    down_since: HashMap<MemberId, u64>,
    /// Summaries this member has published.
    published: u64,
    share: Arc<Share>,
    peers: Arc<Peers>,
    decision: Decision,
    /// The live incarnations (id, epoch) `decision` was made with: while they are the same,
    /// [`Tick::renew`] keeps it fresh.
    decided_with: Vec<(u64, u64)>,
    /// When this member last held the service address (unix ms).
    last_held_ms: Option<u64>,
    /// The members and facts of the tick whose counts are awaited.
    pending: Option<(Vec<(MemberId, foca::State)>, Facts)>,
}

impl Tick {
    /// `last_alive_ms` and `recovering_since`: what the status file of this member's last
    /// run said (`Status::updated_ms`, `Status::recovering_since`), if any.
    pub fn new(
        settings: TickSettings,
        last_alive_ms: Option<u64>,
        recovering_since: Option<u64>,
    ) -> Tick {
        let me = settings.me;
        Tick {
            shares: Shares::new(
                me.id,
                settings.lease_time,
                me.epoch,
                last_alive_ms,
                recovering_since,
            ),
            drain: Drain::new(me.id),
            drains: Drains::default(),
            floating: Floating::new(me.id),
            ledger: Ledger::default(),
            heard: HashMap::new(),
            down_since: HashMap::new(),
            published: 0,
            share: Arc::new(Share::solo(me.id)),
            peers: Arc::default(),
            decision: Decision::default(),
            decided_with: Vec::new(),
            last_held_ms: None,
            pending: None,
            settings,
        }
    }

    pub fn handle_event(&mut self, now_ms: u64, event: Event) {
        match event {
            Event::Heard(from) => {
                self.heard.insert(from, now_ms);
            }
            Event::Up(who) => {
                self.down_since.remove(&who);
            }
            Event::Down(who) => {
                self.down_since.insert(who, now_ms);
            }
            Event::Rejoined(me) => self.settings.me = me,
            Event::Pulled {
                peer,
                carried,
                merged,
            } => self.ledger.completed(peer, now_ms, carried, merged),
            Event::PullFailed(peer) => self.ledger.failed(peer, now_ms),
        }
    }

    /// The floating address decision of the last tick, renewed until `now_ms` +
    /// [`FRESH_MS`] if the live members are still those it was made with; `None` when they
    /// changed (the shell then asks for a tick: a decision on an old view must go stale).
    pub fn renew(&mut self, now_ms: u64, members: &[(MemberId, foca::State)]) -> Option<Decision> {
        if alive_set(members) != self.decided_with || self.decision.fresh_until_ms.is_none() {
            return None;
        }
        self.decision.fresh_until_ms = Some(now_ms.saturating_add(FRESH_MS));
        Some(self.decision)
    }

    /// First half of a tick: recomputes the DHCP share, the live peers and the floating
    /// address decision from `facts` and `members` (every member membership knows, with its
    /// state) and what each says of itself (`summary_of`: its summary and that summary's age
    /// in ms), and asks for the counts.
    pub fn handle_facts(
        &mut self,
        now_ms: u64,
        members: &[(MemberId, foca::State)],
        summary_of: &dyn Fn(u64) -> Option<(Summary, u64)>,
        facts: Facts,
    ) -> Vec<Action> {
        let me = self.settings.me;
        let alive: Vec<MemberId> = members
            .iter()
            .filter(|(_, s)| *s == foca::State::Alive)
            .map(|(id, _)| *id)
            .collect();
        let witnesses: Vec<PoolMember> = alive
            .iter()
            .filter(|id| id.witness && !facts.roster.iter().any(|r| r.id == id.id))
            .map(|id| PoolMember {
                id: id.id,
                addr: id.addr,
                joined_ms: now_ms,
                dead_ms: None,
                drained_ms: None,
                witness: true,
            })
            .collect();
        for id in &alive {
            if let Some(at) = self.ledger.last_ms(&id.addr) {
                self.shares.pulled(id.id, at);
            }
        }
        let seen: Vec<Seen> = alive
            .iter()
            .map(|id| Seen {
                id: id.id,
                epoch: id.epoch,
                // Only this incarnation's word.
                said: summary_of(id.id)
                    .filter(|(s, _)| s.epoch == id.epoch)
                    .map(|(s, age)| Said {
                        at_ms: now_ms.saturating_sub(age),
                        holds: s.holds_service_address,
                    }),
            })
            .collect();
        let mut actions = Vec::new();
        let decision = self.floating.decide(&facts.roster, me.epoch, &seen, now_ms);
        self.decided_with = alive_set(members);
        let changed = decision.holder != self.decision.holder;
        let took = (decision.hold && !self.decision.hold)
            .then(|| self.reclaim(now_ms, &facts.roster, summary_of));
        if decision.hold {
            self.last_held_ms = Some(now_ms);
        }
        self.decision = decision;
        actions.push(Action::Floating {
            decision,
            changed,
            took,
        });
        // Witnesses vote (`shares`, `floating`) and serve nothing: no boot path, no layers.
        let ids: Vec<u64> = alive.iter().map(|id| id.id).collect();
        let serving: Vec<&MemberId> = alive.iter().filter(|id| !id.witness).collect();
        // A drained member still takes layer copies, but is no boot-path peer.
        let drained = |id: u64| {
            facts
                .roster
                .iter()
                .any(|r| r.id == id && r.drained_ms.is_some())
        };
        let serving_ids: Vec<u64> = serving
            .iter()
            .map(|id| id.id)
            .filter(|id| !drained(*id))
            .collect();
        let peers = Peers::live(me.id, &facts.roster, &serving_ids);
        if *self.peers != peers {
            self.peers = Arc::new(peers);
            actions.push(Action::Peers(self.peers.clone()));
        }
        let said = |id: u64| summary_of(id).map(|(s, _)| s);
        self.drains = self.drain.step(&drain::Seen {
            roster: &facts.roster,
            alive: &alive,
            summary_of: &said,
            version_vector: &facts.version_vector,
            my_row: facts.my_row,
        });
        let share = self.shares.share(&facts.roster, &ids, &self.drains, now_ms);
        if *self.share != share {
            self.share = Arc::new(share);
            actions.push(Action::Share(self.share.clone()));
        }
        actions.push(Action::LayerPeers(
            serving.iter().map(|id| id.addr).collect(),
        ));
        if !witnesses.is_empty() {
            actions.push(Action::EnterWitnesses(witnesses));
        }
        actions.push(Action::Count(CountJob {
            share: self.share.clone(),
            ranges: facts.ranges.clone(),
            leases: facts.leases.clone(),
        }));
        self.pending = Some((members.to_vec(), facts));
        actions
    }

    /// Whose clients may reclaim after this member took the address at `now_ms`: those of the
    /// other roster member that said most recently that it held it, unless this member held
    /// it since.
    fn reclaim(
        &self,
        now_ms: u64,
        roster: &[PoolMember],
        summary_of: &dyn Fn(u64) -> Option<(Summary, u64)>,
    ) -> Reclaim {
        let me = self.settings.me.id;
        let previous = roster
            .iter()
            .filter(|r| r.id != me)
            .filter_map(|r| summary_of(r.id))
            .filter(|(s, _)| s.holds_service_address)
            .map(|(s, age)| (now_ms.saturating_sub(age), s))
            .max_by_key(|(at, _)| *at);
        match previous {
            None => Reclaim::Nobody,
            Some((at, _)) if self.last_held_ms.is_some_and(|t| t >= at) => Reclaim::Nobody,
            Some((_, s)) => s.nfs_known.map_or(Reclaim::Unknown, Reclaim::Known),
        }
    }

    /// The start (unix seconds) of the DHCP recovery window this member is in at `now_ms`,
    /// kept in the status for the next start (`Shares::recovering_since`).
    pub fn recovering_since(&self, now_ms: u64) -> Option<u64> {
        self.shares.recovering_since(now_ms)
    }

    /// Second half of a tick: this member's summary and the status.
    pub fn handle_counts(&mut self, now_ms: u64, report: Report) -> Vec<Action> {
        let Some((members, facts)) = self.pending.take() else {
            return Vec::new();
        };
        let summary = self.summary(now_ms, &facts, &report);
        let status = self.status(now_ms, &members, &facts, &report, &summary);
        vec![Action::Publish(summary), Action::Status(Box::new(status))]
    }

    fn summary(&mut self, now_ms: u64, facts: &Facts, report: &Report) -> Summary {
        let me = self.settings.me;
        self.published += 1;
        // The service address goes with NFS, on whichever member holds it now.
        let mut services = self.settings.services.clone();
        if let (Some(addr), true) = (
            self.settings.service_address,
            self.decision.holds_at(now_ms),
        ) {
            if let Some(nfs) = services.iter().find(|s| s.name == "nfs").cloned() {
                services.push(Service {
                    addrs: vec![addr],
                    floating: true,
                    ..nfs
                });
            }
        }
        let serves = |name: &str| services.iter().any(|s| s.name == name);
        let dhcp = serves("dhcp").then(|| DhcpShare {
            addresses: report.counts.owned.get(&me.id).copied().unwrap_or(0),
            leases: report.counts.leases,
        });
        let known = report.nfs_clients.as_ref().filter(|_| serves("nfs"));
        let nfs_clients = known.map(|k| k.v41.len() as u64 + k.v40);
        let holds = self.decision.holds_at(now_ms);
        // Only the holder's list matters (to its successor); a longer one than MAX_KNOWN is
        // left out (the successor then waits out the whole grace period).
        let nfs_known = known
            .filter(|k| holds && k.v41.len() <= MAX_KNOWN)
            .map(|k| (**k).clone());
        Summary {
            id: me.id,
            addr: me.addr,
            epoch: me.epoch,
            seq: self.published,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: report.uptime_secs,
            dhcp,
            services,
            nfs_clients,
            holds_service_address: holds,
            nfs_known,
            blobs: report.counts.blobs.0,
            blob_bytes: report.counts.blobs.1,
            newest_own: facts.version_vector.get(&me.id).copied(),
            has: facts.version_vector.values().copied().collect(),
            feed_floor: facts.feed_floor,
            drained: self.drain.word(),
        }
    }

    fn status(
        &self,
        now_ms: u64,
        members: &[(MemberId, foca::State)],
        facts: &Facts,
        report: &Report,
        mine: &Summary,
    ) -> Status {
        let me = self.settings.me;
        let (layers, unreplicated) = &report.layers;
        let drain_of = |id: u64| {
            let row = facts.roster.iter().find(|r| r.id == id);
            let drained = if id == me.id {
                self.drains.me
            } else {
                row.is_some_and(|r| r.drained_ms.is_some())
            };
            let handed = if id == me.id {
                self.drain.word().is_some()
            } else {
                self.drains.handed_over.contains(&id)
            };
            drained.then(|| if handed { "drained" } else { "draining" }.to_string())
        };
        let member_status = |id: MemberId, state: &str, peer: bool| {
            // This member's own summary was made just now.
            let summary = if peer {
                (report.summary_of)(id.id)
            } else {
                Some((mine.clone(), 0))
            };
            let exchanges = self.ledger.get(&id.addr).cloned();
            let last_heard_ms = self
                .heard
                .get(&id.addr)
                .copied()
                .max(exchanges.as_ref().and_then(|e| e.last_ms));
            let newest_there = summary.as_ref().and_then(|(s, _)| s.newest_own);
            MemberStatus {
                addr: id.addr,
                id: id.id,
                epoch: id.epoch,
                state: state.to_string(),
                last_sync_ms: exchanges.as_ref().and_then(|e| e.last_ms),
                addresses: report.counts.owned.get(&id.id).copied(),
                layers: layers.get(&id.addr).cloned(),
                drain: drain_of(id.id),
                witness: id.witness || facts.roster.iter().any(|r| r.id == id.id && r.witness),
                detail: MemberDetail {
                    last_heard_ms: last_heard_ms.filter(|_| peer),
                    down_since_ms: self.down_since.get(&id).copied(),
                    summary_age_ms: summary.as_ref().map(|(_, age)| *age),
                    lag: peer.then(|| {
                        Lag::new(
                            exchanges.unwrap_or_default(),
                            facts.version_vector.get(&id.id).copied(),
                            newest_there,
                        )
                    }),
                    summary: summary.map(|(s, _)| s),
                },
            }
        };
        // One row per member: its newest incarnation as membership knows it, then roster
        // members membership has not heard of since this member started.
        let mut newest: HashMap<u64, (MemberId, foca::State)> = HashMap::new();
        for &(id, st) in members {
            if id.id == me.id {
                continue;
            }
            let e = newest.entry(id.id).or_insert((id, st));
            if id.epoch > e.0.epoch {
                *e = (id, st);
            }
        }
        let on_roster = |id: u64| facts.roster.iter().any(|r| r.id == id);
        let mut rows: Vec<MemberStatus> = newest
            .values()
            .map(|(id, st)| member_status(*id, report::health(Some(*st), on_roster(id.id)), true))
            .collect();
        for r in &facts.roster {
            if r.id != me.id && !newest.contains_key(&r.id) {
                let id = MemberId {
                    addr: r.addr,
                    id: r.id,
                    epoch: 0,
                    witness: false,
                };
                rows.push(member_status(id, report::health(None, true), true));
            }
        }
        rows.sort_by_key(|s| (s.addr, s.epoch));
        Status {
            me: member_status(me, "alive", false),
            updated_ms: now_ms,
            members: rows,
            unauthenticated: report.unauthenticated,
            roster: self.share.roster.clone(),
            witnesses: facts
                .roster
                .iter()
                .filter(|r| r.witness && r.settled(now_ms))
                .map(|r| r.id)
                .collect(),
            majority: self.share.majority(),
            service_address: self.settings.service_address.map(|addr| ServiceAddress {
                addr,
                holder: self.decision.holder,
                here: self.decision.holds_at(now_ms),
                takeovers: self.floating.takeovers(),
            }),
            layers_unreplicated: *unreplicated,
            recovering_since: self.recovering_since(now_ms),
        }
    }
}

/// The live incarnations among `members`, sorted.
fn alive_set(members: &[(MemberId, foca::State)]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = members
        .iter()
        .filter(|(_, s)| *s == foca::State::Alive)
        .map(|(id, _)| (id.id, id.epoch))
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::shares::SETTLE_MS;

    const T0: u64 = 1_800_000_000_000;

    fn id(n: u8) -> MemberId {
        MemberId {
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, n), 7946),
            id: u64::from(n),
            epoch: T0,
            witness: false,
        }
    }

    fn facts() -> Facts {
        let row = |m: MemberId| PoolMember {
            id: m.id,
            addr: m.addr,
            joined_ms: 0,
            dead_ms: None,
            drained_ms: None,
            witness: false,
        };
        Facts {
            roster: vec![row(id(1)), row(id(2))],
            ranges: vec![(Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 19))],
            leases: vec![Ipv4Addr::new(10, 0, 0, 11)],
            ..Facts::default()
        }
    }

    /// A report of no counts, layers, clients or summaries.
    fn nothing() -> Report<'static> {
        Report {
            counts: Counts::default(),
            unauthenticated: 0,
            layers: (HashMap::new(), 0),
            nfs_clients: None,
            uptime_secs: 0,
            summary_of: &|_| None,
        }
    }

    fn share_of(actions: &[Action]) -> Option<Arc<Share>> {
        actions.iter().find_map(|a| match a {
            Action::Share(s) => Some(s.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_witness_goes_on_the_roster_and_serves_nothing() {
        let settings = TickSettings {
            me: id(1),
            lease_time: 60,
            service_address: None,
            services: Vec::new(),
        };
        let mut core = Tick::new(settings, None, None);
        let w = MemberId {
            witness: true,
            ..id(3)
        };
        let alive = [(id(2), foca::State::Alive), (w, foca::State::Alive)];
        let actions = core.handle_facts(T0, &alive, &|_| None, facts());
        let entered = actions.iter().find_map(|a| match a {
            Action::EnterWitnesses(rows) => Some(rows.clone()),
            _ => None,
        });
        let row = PoolMember {
            id: 3,
            addr: w.addr,
            joined_ms: T0,
            dead_ms: None,
            drained_ms: None,
            witness: true,
        };
        assert_eq!(entered, Some(vec![row.clone()]));
        assert!(actions.contains(&Action::LayerPeers(vec![id(2).addr])));
        // On the roster: not asked for again, and not a boot-path peer.
        let mut with_row = facts();
        with_row.roster.push(row);
        let again = core.handle_facts(T0 + 1, &alive, &|_| None, with_row.clone());
        assert!(!again.iter().any(|a| matches!(a, Action::EnterWitnesses(_))));
        let peers = again.iter().find_map(|a| match a {
            Action::Peers(p) => Some(p.others.clone()),
            _ => None,
        });
        assert_eq!(peers, None, "the peers are still member 2 alone");
        assert_eq!(*core.peers, Peers::live(1, &facts().roster, &[2]));
        // The status shows it as a witness, and counts it on the roster once its row settled.
        let settled = T0 + PoolMember::SETTLE_MS;
        core.handle_facts(settled, &alive, &|_| None, with_row);
        let out = core.handle_counts(settled, nothing());
        let Some(Action::Status(status)) = out.last() else {
            panic!("a status: {out:?}");
        };
        assert_eq!(status.witnesses, vec![3]);
        let row = status.members.iter().find(|m| m.id == 3).expect("a row");
        assert!(row.witness && !status.members.iter().any(|m| m.id == 2 && m.witness));
    }

    #[test]
    fn a_tick_hands_out_shares_after_a_pull_and_reports_what_it_heard() {
        let dhcp = Service {
            name: "dhcp".into(),
            addrs: vec![Ipv4Addr::new(10, 0, 0, 1)],
            port: 67,
            floating: false,
        };
        let settings = TickSettings {
            me: id(1),
            lease_time: 60,
            service_address: None,
            services: vec![dhcp],
        };
        let mut core = Tick::new(settings, None, None);
        let alive = [(id(2), foca::State::Alive)];
        core.handle_event(T0, Event::Up(id(2)));
        let first = core.handle_facts(T0, &alive, &|_| None, facts());
        // Member 2 just came into sight: wait for a pull from it.
        let waiting = share_of(&first).expect("the solo share changed");
        assert!(!waiting.in_roster);
        assert!(first.contains(&Action::LayerPeers(vec![id(2).addr])));
        assert!(first
            .iter()
            .any(|a| matches!(a, Action::Peers(p) if p.others.len() == 1)));
        let job = first.iter().find_map(|a| match a {
            Action::Count(j) => Some(j.clone()),
            _ => None,
        });
        assert_eq!(job.map(|j| j.share), Some(waiting.clone()));

        let later = T0 + SETTLE_MS + 1_000;
        let pulled = Event::Pulled {
            peer: id(2).addr,
            carried: 5,
            merged: 2,
        };
        core.handle_event(later, pulled);
        core.handle_event(later, Event::Heard(id(2).addr));
        let second = core.handle_facts(later, &alive, &|_| None, facts());
        let serving = share_of(&second).expect("the pull lets it serve");
        assert!(serving.in_roster && serving.majority());
        // An unchanged share is not handed out again.
        assert_eq!(
            share_of(&core.handle_facts(later, &alive, &|_| None, facts())),
            None
        );

        let report = Report {
            counts: Counts {
                owned: HashMap::from([(1, 4), (2, 6)]),
                leases: 1,
                blobs: (0, 0),
            },
            unauthenticated: 3,
            layers: (HashMap::new(), 0),
            nfs_clients: Some(Arc::new(Reclaimers {
                v41: vec![7, 8],
                v40: 0,
            })),
            uptime_secs: 9,
            summary_of: &|_| None,
        };
        let out = core.handle_counts(later, report);
        let [Action::Publish(summary), Action::Status(status)] = &out[..] else {
            panic!("a summary and a status: {out:?}");
        };
        assert_eq!(
            summary.dhcp,
            Some(DhcpShare {
                addresses: 4,
                leases: 1
            })
        );
        assert_eq!(summary.nfs_clients, None, "this member does not serve NFS");
        assert_eq!(status.me.addresses, Some(4));
        assert_eq!(status.me.detail.summary.as_ref(), Some(summary));
        assert_eq!(status.unauthenticated, 3);
        assert_eq!(status.roster, vec![1, 2]);
        let two = &status.members[0];
        assert_eq!((two.id, two.state.as_str()), (2, "alive"));
        assert_eq!(two.last_sync_ms, Some(later));
        assert_eq!(two.detail.last_heard_ms, Some(later));
        assert_eq!(two.detail.lag.as_ref().map(|l| l.exchanges.merged), Some(2));
        // The counts answer the tick that asked for them, once.
        assert!(core.handle_counts(later, nothing()).is_empty());
    }

    #[test]
    fn a_member_seen_down_shows_since_when() {
        let settings = TickSettings {
            me: id(1),
            lease_time: 60,
            service_address: Some(Ipv4Addr::new(10, 0, 0, 200)),
            services: Vec::new(),
        };
        let mut core = Tick::new(settings, None, None);
        core.handle_event(T0 + 5, Event::Down(id(2)));
        let members = [(id(2), foca::State::Down)];
        let first = core.handle_facts(T0 + 10, &members, &|_| None, facts());
        assert!(first.contains(&Action::LayerPeers(Vec::new())));
        let out = core.handle_counts(T0 + 10, nothing());
        let Some(Action::Status(status)) = out.last() else {
            panic!("a status: {out:?}");
        };
        let two = &status.members[0];
        assert_eq!(
            (two.state.as_str(), two.detail.down_since_ms),
            ("down", Some(T0 + 5))
        );
        let vip = status.service_address.as_ref().expect("configured");
        assert!(!vip.here, "no majority without member 2");
    }

    fn took(actions: &[Action]) -> Option<Reclaim> {
        actions.iter().find_map(|a| match a {
            Action::Floating { took, .. } => took.clone(),
            _ => None,
        })
    }

    #[test]
    fn a_takeover_names_the_previous_holders_clients() {
        let settings = TickSettings {
            me: id(1),
            lease_time: 60,
            service_address: Some(Ipv4Addr::new(10, 0, 0, 200)),
            services: Vec::new(),
        };
        let roster = Facts {
            roster: [1, 2, 3]
                .map(|n| PoolMember {
                    id: n,
                    addr: id(n as u8).addr,
                    joined_ms: 0,
                    dead_ms: None,
                    drained_ms: None,
                    witness: false,
                })
                .to_vec(),
            ..Facts::default()
        };
        let word = |n: u8, holds: bool, known: Option<Reclaimers>| Summary {
            id: u64::from(n),
            addr: id(n).addr,
            epoch: T0,
            seq: 1,
            version: String::new(),
            uptime_secs: 0,
            dhcp: None,
            services: Vec::new(),
            nfs_clients: None,
            holds_service_address: holds,
            nfs_known: known,
            blobs: 0,
            blob_bytes: 0,
            newest_own: None,
            has: Vec::new(),
            feed_floor: 0,
            drained: None,
        };
        let clients = Reclaimers {
            v41: vec![11, 12],
            v40: 0,
        };
        // Member 2 held the address and died; 3 is alive and does not hold it.
        let (c, w2) = (clients.clone(), word(2, true, Some(clients.clone())));
        let summaries = move |n: u64| match n {
            2 => Some((w2.clone(), 4_000)),
            3 => Some((word(3, false, None), 0)),
            _ => None,
        };
        let alive = [(id(3), foca::State::Alive), (id(2), foca::State::Down)];
        let mut core = Tick::new(settings.clone(), None, None);
        let first = core.handle_facts(T0, &alive, &summaries, roster.clone());
        assert_eq!(took(&first), None, "chosen, waiting");
        let later = T0 + crate::pool::floating::take_after_ms(3);
        let second = core.handle_facts(later, &alive, &summaries, roster.clone());
        assert_eq!(took(&second), Some(Reclaim::Known(c)));
        // Renewed while membership is unchanged; not once it changed.
        assert!(core.renew(later + 100, &alive).is_some_and(|d| d.hold));
        assert_eq!(core.renew(later + 200, &alive[1..]), None);

        // Nobody ever said it held the address: the pool's first holder, no grace period.
        let nobody = |n: u64| (n == 3).then(|| (word(3, false, None), 0));
        let mut core = Tick::new(settings, None, None);
        core.handle_facts(T0, &alive, &nobody, roster.clone());
        let second = core.handle_facts(later, &alive, &nobody, roster);
        assert_eq!(took(&second), Some(Reclaim::Nobody));
    }
}
