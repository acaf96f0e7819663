//! Pool membership and failure detection, sans IO: SWIM (through the `foca` crate, which does
//! no I/O of its own) behind the cluster key.
//!
//! Data flow: the shell hands in what happened — a datagram ([`Membership::handle_datagram`]),
//! a timer that came due ([`Membership::handle_timer`]), an admin request to join a seed
//! ([`Membership::announce`]) or to leave ([`Membership::leave`]) — and gets back the
//! [`Effect`]s to carry out: datagrams to send (already sealed with the cluster key), timers to
//! schedule, and members that came up or went down. Datagrams are sealed with the cluster key
//! (`seal::DatagramKey`: encrypted and authenticated) and opened before foca sees them; one
//! that does not open is dropped and counted. Time and randomness come from the caller
//! (timers are durations the shell schedules; the RNGs, foca's and the one that draws
//! datagram nonces, are seeded by the caller), so the simulation tests run many members on
//! virtual time.
//!
//! Tuning ([`config`]): a probe every [`PROBE_PERIOD_MS`] with a [`PROBE_RTT_MS`] round trip,
//! and a suspected member declared down [`SUSPECT_MS`] after suspicion, so a dead member is
//! noticed within about 2 s on a LAN. [`notice_skew_ms`] bounds how much later one member may
//! notice a loss than another (what `floating` waits for before taking the service address).
//!
//! Not here: what members share besides liveness (store replication, DHCP shares: later), the
//! sockets and the clock (`pool::serve`).

use super::key::ClusterKey;
use super::seal::{DatagramKey, DATAGRAM_NONCE_LEN};
use foca::{
    AccumulatingRuntime, Config, Foca, Identity, NoCustomBroadcast, OwnedNotification,
    PostcardCodec, Timer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::net::SocketAddrV4;
use std::num::NonZeroU32;
use std::time::Duration;

/// A member as the pool knows it: where it listens, the store's member id, and when this
/// incarnation of it started (a restarted member wins over its former self at the same address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    pub addr: SocketAddrV4,
    pub id: u64,
    /// Unix milliseconds at start, bumped when the member has to renew its identity.
    pub epoch: u64,
    /// A vote-only witness (`pool::witness`): no store, no services, no exchanges.
    pub witness: bool,
}

impl Identity for MemberId {
    type Addr = SocketAddrV4;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            epoch: self.epoch + 1,
            ..*self
        })
    }

    fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.epoch > adversary.epoch
    }
}

/// What the shell must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this sealed datagram to the address.
    Send(SocketAddrV4, Vec<u8>),
    /// Call [`Membership::handle_timer`] with this timer after the duration.
    Schedule(Duration, Timer<MemberId>),
    Up(MemberId),
    Down(MemberId),
    /// This member was declared down by the others and rejoined under a new identity.
    Rejoined(MemberId),
}

/// Counters of inputs that were refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// Datagrams that did not open with the cluster key.
    pub unauthenticated: u64,
    /// Authenticated datagrams foca rejected (malformed, from ourselves, ...).
    pub rejected: u64,
}

/// How often a member probes another (one member per period, round-robin in a shuffled
/// order).
pub const PROBE_PERIOD_MS: u64 = 500;
/// How long a probe waits for its ack before asking others to probe indirectly.
pub const PROBE_RTT_MS: u64 = 200;
/// How long a suspected member has to refute the suspicion before it is declared down: the
/// least time from a member's death (or a cut) to anyone declaring it down.
pub const SUSPECT_MS: u64 = 1_000;

/// The most by which one member may notice that another is gone later than a third member
/// does, in a pool of `members`: foca probes the others in a shuffled round-robin, so the
/// same member is probed again at most `2 (members - 1)` periods later (the end of one round
/// and the start of the next); the suspicion timeout is the same everywhere. A member cut
/// off alone notices each of the others that late at worst, while the earliest anyone may
/// declare it down is [`SUSPECT_MS`] after the cut.
pub fn notice_skew_ms(members: usize) -> u64 {
    2 * (members.max(2) as u64 - 1) * PROBE_PERIOD_MS
}

/// The membership tuning drover uses (see the module docs).
pub fn config(expected_members: u32) -> Config {
    let mut c =
        Config::new_lan(NonZeroU32::new(expected_members.max(1)).unwrap_or(NonZeroU32::MIN));
    c.probe_period = Duration::from_millis(PROBE_PERIOD_MS);
    c.probe_rtt = Duration::from_millis(PROBE_RTT_MS);
    c.suspect_to_down_after = Duration::from_millis(SUSPECT_MS);
    c.remove_down_after = Some(Duration::from_secs(3600));
    c.max_packet_size = std::num::NonZeroUsize::new(1200).unwrap_or(std::num::NonZeroUsize::MIN);
    // Members that were down are asked again now and then, so a healed partition merges.
    if let Some(p) = c.periodic_announce_to_down_members.as_mut() {
        p.frequency = Duration::from_secs(10);
    }
    if let Some(p) = c.periodic_announce.as_mut() {
        p.frequency = Duration::from_secs(15);
    }
    c
}

/// One member's view of the pool.
pub struct Membership {
    foca: Foca<MemberId, PostcardCodec, StdRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<MemberId>,
    /// Seals what this member sends.
    key: DatagramKey,
    /// Opens what it receives: the sending key, and the other key of a rekey in progress.
    accepted: Vec<DatagramKey>,
    /// Draws datagram nonces: a CSPRNG seeded with fresh randomness by the shell, so no two
    /// members or runs draw the same sequence.
    nonces: StdRng,
    refusals: Refusals,
}

impl Membership {
    /// A member that knows nobody yet; `seed` seeds foca's RNG, `nonce_seed` (fresh
    /// randomness, never reused) the datagram nonces.
    pub fn new(
        me: MemberId,
        key: &ClusterKey,
        config: Config,
        seed: u64,
        nonce_seed: [u8; 32],
    ) -> Membership {
        Membership {
            foca: Foca::new(me, config, StdRng::seed_from_u64(seed), PostcardCodec),
            runtime: AccumulatingRuntime::new(),
            key: DatagramKey::new(key),
            accepted: vec![DatagramKey::new(key)],
            nonces: StdRng::from_seed(nonce_seed),
            refusals: Refusals::default(),
        }
    }

    pub fn me(&self) -> MemberId {
        *self.foca.identity()
    }

    /// Active members besides this one, and their liveness as this member sees it.
    pub fn members(&self) -> Vec<(MemberId, foca::State)> {
        self.foca
            .iter_membership_state()
            .map(|m| (*m.id(), m.state()))
            .collect()
    }

    /// Seal with `send` from now on and open with any of `accepted` (a rekey).
    pub fn set_keys(&mut self, send: &ClusterKey, accepted: &[ClusterKey]) {
        self.key = DatagramKey::new(send);
        self.accepted = accepted.iter().map(DatagramKey::new).collect();
    }

    pub fn refusals(&self) -> Refusals {
        self.refusals
    }

    /// Asks the member at `seed` to let this one in.
    pub fn announce(&mut self, seed: SocketAddrV4) -> Vec<Effect> {
        // foca accepts an Announce addressed to any identity at the receiver's address.
        let dst = MemberId {
            addr: seed,
            id: 0,
            epoch: 0,
            witness: false,
        };
        let r = self.foca.announce(dst, &mut self.runtime);
        self.drain(r.is_err())
    }

    /// A datagram as received, still sealed.
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Vec<Effect> {
        let Some(payload) = self.accepted.iter().find_map(|k| k.open(datagram)) else {
            self.refusals.unauthenticated += 1;
            return Vec::new();
        };
        let r = self.foca.handle_data(&payload, &mut self.runtime);
        self.drain(r.is_err())
    }

    /// A timer that came due.
    pub fn handle_timer(&mut self, timer: Timer<MemberId>) -> Vec<Effect> {
        let r = self.foca.handle_timer(timer, &mut self.runtime);
        self.drain(r.is_err())
    }

    /// Tells the pool this member is leaving (at shutdown).
    pub fn leave(&mut self) -> Vec<Effect> {
        let r = self.foca.leave_cluster(&mut self.runtime);
        self.drain(r.is_err())
    }

    fn drain(&mut self, rejected: bool) -> Vec<Effect> {
        if rejected {
            self.refusals.rejected += 1;
        }
        let mut out = self.collect();
        // After a healed partition every member may have renewed its identity at once, and
        // foca's rejoin gossip goes to identities that no longer exist. An Announce is
        // accepted by address, so announcing to everyone we know (whatever their state)
        // brings back their current identities.
        if out.iter().any(|e| matches!(e, Effect::Rejoined(_))) {
            let mut addrs: Vec<SocketAddrV4> = self.members().iter().map(|(m, _)| m.addr).collect();
            addrs.sort();
            addrs.dedup();
            for addr in addrs {
                let dst = MemberId {
                    addr,
                    id: 0,
                    epoch: 0,
                    witness: false,
                };
                if self.foca.announce(dst, &mut self.runtime).is_err() {
                    self.refusals.rejected += 1;
                }
            }
            out.extend(self.collect());
        }
        out
    }

    fn collect(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        while let Some((dst, data)) = self.runtime.to_send() {
            let mut nonce = [0u8; DATAGRAM_NONCE_LEN];
            self.nonces.fill_bytes(&mut nonce);
            // foca's datagrams are at most `max_packet_size`, far under the cipher's limit.
            if let Ok(sealed) = self.key.seal(nonce, &data) {
                out.push(Effect::Send(dst.addr, sealed));
            }
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            out.push(Effect::Schedule(after, timer));
        }
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(m) => out.push(Effect::Up(m)),
                OwnedNotification::MemberDown(m) => out.push(Effect::Down(m)),
                OwnedNotification::Rejoin(m) => out.push(Effect::Rejoined(m)),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
