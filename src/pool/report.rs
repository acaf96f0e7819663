//! What `drover pool status` says about each member besides who it is: its health and how far
//! this member's store may be behind it (replication lag). Pure: the pool task's core (`tick`)
//! records the facts (exchanges, datagrams heard, membership changes) and builds the status
//! from them with these rules.
//!
//! **Health** ([`health`]): foca's view of the member (`alive`, `suspect`, `down`), except
//! that a member that is down and no longer on the roster is `left` (it ran `drover pool
//! leave`, or was forgotten), and a roster member membership has not heard of since this
//! member started is `down`.
//!
//! **Replication lag** ([`Lag`]), per peer, as this member sees it:
//! - the time since the last *completed* anti-entropy exchange with it (this member asked, the
//!   peer answered with every row this store lacked, up to `sync::MAX_ROWS`, and they were
//!   merged), how many rows that exchange carried and how many changed the store; a peer that
//!   had nothing new carries 0 rows and still counts as an exchange: the point is that this
//!   store had everything the peer had at that moment (or `MAX_ROWS` of it);
//! - the newest record *written by the peer* that this store holds (`newest_here`, from the
//!   store's version vector) against the newest record the peer says it wrote
//!   (`newest_there`, from its summary, which may be seconds old); `behind_ms` is the
//!   difference of their HLC wall times, 0 when this store has it all. That compares
//!   hybrid-logical-clock stamps, not clocks: it says how much of the peer's writing history
//!   is missing here, not how long ago the peer wrote it.
//!
//! Exchanges the peer started (it pulling from this member) are its lag, and show in its own
//! status.
//!
//! Not here: the summaries themselves (`summary`), gathering facts (`facts`), building the
//! status (`tick`).

use crate::store::Version;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddrV4;

/// A member's health as `pool status` shows it.
pub fn health(state: Option<foca::State>, on_roster: bool) -> &'static str {
    match state {
        Some(foca::State::Alive) => "alive",
        Some(foca::State::Suspect) => "suspect",
        Some(foca::State::Down) if !on_roster => "left",
        Some(foca::State::Down) | None => "down",
    }
}

/// The exchanges this member made with one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchanges {
    /// When the last exchange completed (unix ms).
    pub last_ms: Option<u64>,
    /// Rows the last completed exchange carried.
    pub carried: u64,
    /// Of those, rows that changed this store.
    pub merged: u64,
    /// Completed and failed exchanges since this member started.
    pub completed: u64,
    pub failed: u64,
    /// When the last one failed (unix ms).
    pub last_failure_ms: Option<u64>,
}

/// The exchanges with every peer, by pool address.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    peers: HashMap<SocketAddrV4, Exchanges>,
}

impl Ledger {
    pub fn completed(&mut self, peer: SocketAddrV4, now_ms: u64, carried: u64, merged: u64) {
        let e = self.peers.entry(peer).or_default();
        e.last_ms = Some(now_ms);
        e.carried = carried;
        e.merged = merged;
        e.completed += 1;
    }

    pub fn failed(&mut self, peer: SocketAddrV4, now_ms: u64) {
        let e = self.peers.entry(peer).or_default();
        e.failed += 1;
        e.last_failure_ms = Some(now_ms);
    }

    pub fn get(&self, peer: &SocketAddrV4) -> Option<&Exchanges> {
        self.peers.get(peer)
    }

    /// When the last exchange with `peer` completed.
    pub fn last_ms(&self, peer: &SocketAddrV4) -> Option<u64> {
        self.peers.get(peer).and_then(|e| e.last_ms)
    }
}

/// How far this member's store may be behind one peer (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    #[serde(flatten)]
    pub exchanges: Exchanges,
    /// The newest record written by the peer that this store holds.
    pub newest_here: Option<Version>,
    /// The newest record the peer says it wrote (its summary).
    pub newest_there: Option<Version>,
    /// How much newer (HLC wall ms) `newest_there` is than `newest_here`; 0 when this store
    /// has it; `None` without both (`newest_here` is `None` while this store holds nothing
    /// the peer wrote).
    pub behind_ms: Option<u64>,
}

impl Lag {
    pub fn new(
        exchanges: Exchanges,
        newest_here: Option<Version>,
        newest_there: Option<Version>,
    ) -> Lag {
        let behind_ms = match (newest_here, newest_there) {
            (Some(here), Some(there)) if here >= there => Some(0),
            (Some(here), Some(there)) => Some(there.wall_ms.saturating_sub(here.wall_ms)),
            // Nothing of the peer's here yet (shown as such), or no word from it.
            (None, _) | (_, None) => None,
        };
        Lag {
            exchanges,
            newest_here,
            newest_there,
            behind_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v(wall_ms: u64, logical: u32) -> Option<Version> {
        Some(Version {
            wall_ms,
            logical,
            member: 7,
        })
    }

    #[test]
    fn health_names_left_and_unknown_members() {
        assert_eq!(health(Some(foca::State::Alive), true), "alive");
        assert_eq!(health(Some(foca::State::Alive), false), "alive");
        assert_eq!(health(Some(foca::State::Suspect), true), "suspect");
        assert_eq!(health(Some(foca::State::Down), true), "down");
        assert_eq!(health(Some(foca::State::Down), false), "left");
        assert_eq!(health(None, true), "down");
    }

    #[test]
    fn behind_compares_the_peers_newest_write_with_what_is_here() {
        assert_eq!(
            Lag::new(Exchanges::default(), v(500, 0), v(500, 0)).behind_ms,
            Some(0)
        );
        assert_eq!(
            Lag::new(Exchanges::default(), v(600, 0), v(500, 3)).behind_ms,
            Some(0)
        );
        assert_eq!(
            Lag::new(Exchanges::default(), v(500, 0), v(1700, 0)).behind_ms,
            Some(1200)
        );
        // Same wall time, a later logical tick: behind, by less than a millisecond.
        assert_eq!(
            Lag::new(Exchanges::default(), v(500, 0), v(500, 1)).behind_ms,
            Some(0)
        );
        assert_eq!(
            Lag::new(Exchanges::default(), None, v(900, 0)).behind_ms,
            None
        );
        assert_eq!(
            Lag::new(Exchanges::default(), v(900, 0), None).behind_ms,
            None
        );
    }

    #[test]
    fn the_ledger_keeps_the_last_exchange_and_counts() {
        let peer = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 7946);
        let mut l = Ledger::default();
        assert_eq!(l.last_ms(&peer), None);
        l.completed(peer, 1_000, 40, 38);
        l.failed(peer, 2_000);
        l.completed(peer, 3_000, 0, 0);
        let e = l.get(&peer).unwrap();
        assert_eq!(
            (
                e.last_ms,
                e.carried,
                e.merged,
                e.completed,
                e.failed,
                e.last_failure_ms
            ),
            (Some(3_000), 0, 0, 2, 1, Some(2_000))
        );
        let json = serde_json::to_value(Lag::new(e.clone(), None, None)).unwrap();
        assert_eq!(
            json["completed"], 2,
            "exchange counts are flat in the lag: {json}"
        );
    }
}
