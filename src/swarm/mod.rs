//! Swarm delivery of RAM-root images: booting nodes fetch the chunks of their image from
//! each other as well as from pool members, and members track who holds what.
//!
//! How the parts fit:
//! - a member serves the image's manifest (`GET /images/{name}/rootfs.manifest`, the blob id
//!   in `X-Drover-Blob`) and every chunk (`/chunks/{hash}`): members are seeds;
//! - a booting agent announces the blob to each member (`POST /boot/{mac}/swarm`, [`wire`])
//!   and gets back up to 8 other nodes that announced it ([`tracker`]); it fetches chunks
//!   from them and from members by a [`schedule`] (peers first, members last resort),
//!   checks each against its BLAKE3 name, unpacks the tar in order and serves what it holds
//!   (`crate::agent::seed`); then it reports its bytes per source
//!   (`POST /boot/{mac}/swarm/report`), which [`Swarm::report`] adds to the counters that
//!   `/metrics` shows as `drover_swarm_*`.
//!
//! This file is the member's side: one [`Swarm`] per server (inside `crate::api::Api`),
//! its tracker in memory only: a member that restarts forgets who holds what, and nodes
//! then fetch from members until new announces arrive. Trackers are per member, not
//! replicated: a node announces to every member it knows, so each member learns of it.
//!
//! Not here: the agent's download and seeder (`crate::agent::swarm`, `crate::agent::seed`),
//! the HTTP routes (`crate::http::serve`), the per-image/node/group switch (the boot script
//! renders `drover.swarm=0` when it is off).

pub mod schedule;
pub mod tracker;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

crate::counters::counter_set! {
    /// What the member's tracker did, and what booting nodes reported.
    pub struct Stats, snapshot StatsSnapshot {
        /// Announces accepted.
        announces,
        /// Announces or reports refused (not from the node's own address).
        refused,
        /// Peers named in answers.
        peers_named,
        /// Reports received.
        reports,
        /// Bytes nodes reported from pool members.
        bytes_members,
        /// Bytes nodes reported from peers.
        bytes_peers,
        /// Chunk fetches nodes reported as failed and retried elsewhere.
        retries,
    }
}

/// The member's swarm state.
#[derive(Debug, Default)]
pub struct Swarm {
    tracker: Mutex<tracker::Tracker>,
    pub stats: Stats,
}

impl Swarm {
    /// Records `addr` as a holder of `blob` and answers the other current holders (see
    /// [`tracker::Tracker::peers`]).
    pub fn announce(
        &self,
        now: u64,
        blob: &str,
        addr: SocketAddrV4,
        seed: u64,
        current: impl Fn(Ipv4Addr) -> bool,
    ) -> Vec<SocketAddrV4> {
        let peers = match self.tracker.lock() {
            Ok(mut t) => {
                t.announce(now, blob, addr);
                t.peers(now, blob, *addr.ip(), seed, current)
            }
            // A panic while holding the lock left the table in an unknown state: answer no
            // peers (the node fetches from members) rather than a table that may be torn.
            Err(_) => Vec::new(),
        };
        self.stats.announces.fetch_add(1, Relaxed);
        self.stats
            .peers_named
            .fetch_add(peers.len() as u64, Relaxed);
        peers
    }

    /// Adds a node's report to the counters.
    pub fn report(&self, r: wire::Report) {
        self.stats.reports.fetch_add(1, Relaxed);
        self.stats.bytes_members.fetch_add(r.members, Relaxed);
        self.stats.bytes_peers.fetch_add(r.peers, Relaxed);
        self.stats.retries.fetch_add(r.retries, Relaxed);
    }

    pub fn refuse(&self) {
        self.stats.refused.fetch_add(1, Relaxed);
    }
}
