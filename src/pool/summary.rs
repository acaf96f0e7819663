//! What each member serves, as it says itself: a small [`Summary`] every member publishes about
//! itself and the members pass on to each other, so that every member's `drover pool status`,
//! `GET /api/v1/pool` and web page show every member's share, services, NFS clients, image
//! files and version, with how old that word is.
//!
//! Data flow: the pool task's core (`tick`) makes this member's summary every tick
//! ([`Table::publish`] with a new `seq`); with every store exchange the asker sends its whole table
//! ([`Table::relay`]) and gets the answerer's back, and each side merges the other's
//! ([`Table::merge`]) — push-pull epidemic spread over the key-sealed replication connection
//! (`frame::Frame::Summaries`), so a summary reaches every member of a pool of N in
//! O(log N) exchanges.
//!
//! Ages need no synchronised clocks: a relayed entry carries how old it was when it was sent
//! ([`Relayed::age_ms`]); the receiver keeps that and its own (monotonic) time of arrival, so
//! the age it shows is `age when received + time since`. Transmission time is not counted,
//! so ages are low by a network delay per hop (milliseconds on a LAN). Of two copies of the
//! same summary the younger-looking is kept; a newer `(epoch, seq)` of a member replaces the
//! older whatever its age.
//!
//! Input from peers is checked ([`Summary::check`]): an entry with too many services or too
//! long strings is dropped, a table longer than [`MAX_MEMBERS`] is cut. A key holder could
//! still publish a false summary in another member's name; summaries inform the admin, and
//! drive only which member keeps the floating service address (`pool::floating`), which a key
//! holder can disturb anyway.
//!
//! Pure: no I/O, no clock (`now_ms` is any monotonic milliseconds the caller chooses).
//! Not here: gathering the facts (`pool::facts`, `pool::tick`), the transport
//! (`pool::replication`), membership health (foca's view, in `pool::tick`'s status).

use crate::nfs::state::Reclaimers;
use crate::store::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Most members a table holds (entries past it are dropped, the oldest first).
pub const MAX_MEMBERS: usize = 256;
/// Most services in one summary.
pub const MAX_SERVICES: usize = 32;
/// Most addresses of one service.
pub const MAX_ADDRS: usize = 16;
/// Most writers in a summary's version vector (`Summary::has`).
pub const MAX_WRITERS: usize = 1024;
/// Longest name (service names, the version string), in bytes.
pub const MAX_NAME: usize = 64;
/// Most NFS clients in `Summary::nfs_known`.
pub const MAX_KNOWN: usize = 4096;

/// One member's word about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The store's member id.
    pub id: u64,
    /// Its pool address.
    pub addr: SocketAddrV4,
    /// Its membership incarnation (unix ms at start): a restarted member's summaries win
    /// over its former self's.
    pub epoch: u64,
    /// Counts up with every summary of one incarnation.
    pub seq: u64,
    /// drover's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Seconds since `drover serve` started, when the summary was made.
    pub uptime_secs: u64,
    /// Its DHCP address share, if it serves DHCP.
    #[serde(default)]
    pub dhcp: Option<DhcpShare>,
    /// What it serves where. A floating service address it holds is listed here too, with
    /// `floating` set.
    #[serde(default)]
    pub services: Vec<Service>,
    /// NFSv4 clients it holds state for, if it serves NFS.
    #[serde(default)]
    pub nfs_clients: Option<u64>,
    /// It holds the pool's floating service address (`pool::floating` keeps it there while
    /// it says so: the address is sticky).
    #[serde(default)]
    pub holds_service_address: bool,
    /// While it holds the service address: its NFS clients, which may reclaim their state
    /// from the member that takes the address over (at most [`MAX_KNOWN`]).
    #[serde(default)]
    pub nfs_known: Option<Reclaimers>,
    /// Image files (content-addressed blobs) it has, and their bytes.
    #[serde(default)]
    pub blobs: u64,
    #[serde(default)]
    pub blob_bytes: u64,
    /// The newest record this member wrote itself, as its own store has it: a member whose
    /// store has this version from it has everything it wrote up to when the summary was made.
    #[serde(default)]
    pub newest_own: Option<Version>,
    /// Its version vector (the newest row of each writer it has; a list, as JSON maps with
    /// number keys do not survive the status file's flattening), at most [`MAX_WRITERS`]
    /// entries: what the other members may prune from their change feeds (`compact`).
    #[serde(default)]
    pub has: Vec<Version>,
    /// The newest change-feed entry its store pruned (0: none).
    #[serde(default)]
    pub feed_floor: u64,
    /// It was drained (`drover pool drain`) and has stopped serving its DHCP share: the
    /// roster row's `drained_ms` it obeys (`pool::drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<u64>,
}

/// A DHCP share as its owner counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpShare {
    /// Dynamic addresses of the store's ranges it owns.
    pub addresses: u64,
    /// Active leases on addresses of its share.
    pub leases: u64,
}

/// A service and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// `dhcp`, `tftp`, `http`, `dns`, `ntp`, `nfs`, ...
    pub name: String,
    pub addrs: Vec<Ipv4Addr>,
    pub port: u16,
    /// The address is one of the pool's floating service addresses, which this member
    /// holds for now.
    #[serde(default)]
    pub floating: bool,
}

/// Why a peer's summary was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("more than {MAX_SERVICES} services")]
    TooManyServices,
    #[error("a service with more than {MAX_ADDRS} addresses")]
    TooManyAddrs,
    #[error("a name longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error("a version vector of more than {MAX_WRITERS} writers")]
    TooManyWriters,
    #[error("more than {MAX_KNOWN} NFS clients")]
    TooManyClients,
}

impl Summary {
    /// Checks the limits a peer's summary must keep.
    pub fn check(&self) -> Result<(), Refused> {
        if self.services.len() > MAX_SERVICES {
            return Err(Refused::TooManyServices);
        }
        if self.version.len() > MAX_NAME || self.services.iter().any(|s| s.name.len() > MAX_NAME) {
            return Err(Refused::NameTooLong);
        }
        if self.services.iter().any(|s| s.addrs.len() > MAX_ADDRS) {
            return Err(Refused::TooManyAddrs);
        }
        if self.has.len() > MAX_WRITERS {
            return Err(Refused::TooManyWriters);
        }
        if self
            .nfs_known
            .as_ref()
            .is_some_and(|k| k.v41.len() > MAX_KNOWN)
        {
            return Err(Refused::TooManyClients);
        }
        Ok(())
    }

    /// `(epoch, seq)`: the larger is newer.
    fn order(&self) -> (u64, u64) {
        (self.epoch, self.seq)
    }
}

/// A summary on the wire: how old it was when sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    pub summary: Summary,
    pub age_ms: u64,
}

/// A summary as held here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    summary: Summary,
    /// Its age when it arrived (or was made, for this member's own).
    age_ms: u64,
    /// When it arrived, in the caller's monotonic milliseconds.
    at_ms: u64,
}

impl Held {
    fn age(&self, now_ms: u64) -> u64 {
        self.age_ms
            .saturating_add(now_ms.saturating_sub(self.at_ms))
    }
}

/// Every member's newest summary this member knows, by member id.
#[derive(Debug, Clone, Default)]
pub struct Table {
    held: BTreeMap<u64, Held>,
}

impl Table {
    /// This member's own fresh summary (age 0).
    pub fn publish(&mut self, summary: Summary, now_ms: u64) {
        self.held.insert(
            summary.id,
            Held {
                summary,
                age_ms: 0,
                at_ms: now_ms,
            },
        );
        self.trim(now_ms);
    }

    /// What to send a peer: every summary held, with its age now.
    pub fn relay(&self, now_ms: u64) -> Vec<Relayed> {
        self.held
            .values()
            .map(|h| Relayed {
                summary: h.summary.clone(),
                age_ms: h.age(now_ms),
            })
            .collect()
    }

    /// Takes in what a peer sent: a newer summary of a member replaces the one held, the same
    /// one seen younger lowers its age. Entries that break the limits are dropped, and so is
    /// anything about `me` (this member's word about itself is the only one it keeps).
    /// Returns how many entries changed.
    pub fn merge(&mut self, me: u64, incoming: Vec<Relayed>, now_ms: u64) -> usize {
        let mut changed = 0;
        for r in incoming.into_iter().take(MAX_MEMBERS) {
            if r.summary.id == me || r.summary.check().is_err() {
                continue;
            }
            let take = match self.held.get(&r.summary.id) {
                None => true,
                Some(h) if r.summary.order() != h.summary.order() => {
                    r.summary.order() > h.summary.order()
                }
                Some(h) => r.age_ms < h.age(now_ms),
            };
            if take {
                changed += 1;
                self.held.insert(
                    r.summary.id,
                    Held {
                        summary: r.summary,
                        age_ms: r.age_ms,
                        at_ms: now_ms,
                    },
                );
            }
        }
        self.trim(now_ms);
        changed
    }

    /// Member `id`'s summary and its age now.
    pub fn get(&self, id: u64, now_ms: u64) -> Option<(&Summary, u64)> {
        self.held.get(&id).map(|h| (&h.summary, h.age(now_ms)))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }

    /// Drops the oldest entries beyond [`MAX_MEMBERS`].
    fn trim(&mut self, now_ms: u64) {
        while self.held.len() > MAX_MEMBERS {
            let oldest = self
                .held
                .iter()
                .max_by_key(|(_, h)| h.age(now_ms))
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.held.remove(&id);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: u64, epoch: u64, seq: u64) -> Summary {
        Summary {
            id,
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, id as u8), 7946),
            epoch,
            seq,
            version: "0.1.0".into(),
            uptime_secs: seq * 2,
            dhcp: Some(DhcpShare {
                addresses: 50,
                leases: 3,
            }),
            services: vec![Service {
                name: "nfs".into(),
                addrs: vec![Ipv4Addr::new(198, 18, 0, id as u8)],
                port: 2049,
                floating: false,
            }],
            nfs_clients: Some(2),
            holds_service_address: false,
            nfs_known: None,
            blobs: 4,
            blob_bytes: 1 << 20,
            newest_own: Some(Version {
                wall_ms: 1000 + seq,
                logical: 0,
                member: id,
            }),
            has: Vec::new(),
            feed_floor: 0,
            drained: None,
        }
    }

    fn relayed(s: Summary, age_ms: u64) -> Relayed {
        Relayed { summary: s, age_ms }
    }

    #[test]
    fn encoding_round_trips_and_older_fields_default() {
        let r = relayed(summary(2, 10, 3), 1500);
        let json = serde_json::to_vec(&r).unwrap();
        let back: Relayed = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, r);
        // A summary from a member that does not know the optional parts yet still reads.
        let minimal = r#"{"summary":{"id":7,"addr":"198.18.0.7:7946","epoch":1,"seq":0,
            "version":"0.1.0","uptime_secs":5},"age_ms":0}"#;
        let m: Relayed = serde_json::from_str(minimal).unwrap();
        assert_eq!(m.summary.services, []);
        assert_eq!((m.summary.dhcp, m.summary.nfs_clients), (None, None));
    }

    #[test]
    fn ages_add_up_along_the_way() {
        let mut a = Table::default();
        a.publish(summary(1, 10, 0), 1_000);
        // B's clock is unrelated to A's: only differences count.
        let mut b = Table::default();
        assert_eq!(b.merge(2, a.relay(1_400), 90_000), 1);
        assert_eq!(b.get(1, 90_000).map(|(_, age)| age), Some(400));
        assert_eq!(b.get(1, 90_600).map(|(_, age)| age), Some(1_000));
        // C hears it from B later.
        let mut c = Table::default();
        c.merge(3, b.relay(91_000), 5);
        assert_eq!(c.get(1, 5).map(|(_, age)| age), Some(1_400));
    }

    #[test]
    fn newer_wins_and_the_same_summary_keeps_its_youngest_age() {
        let mut t = Table::default();
        t.merge(9, vec![relayed(summary(1, 10, 5), 3_000)], 0);
        // An older seq, however fresh it looks, does not replace it.
        assert_eq!(t.merge(9, vec![relayed(summary(1, 10, 4), 0)], 0), 0);
        assert_eq!(t.get(1, 0).unwrap().0.seq, 5);
        // The same summary by a quicker path: its age drops.
        assert_eq!(t.merge(9, vec![relayed(summary(1, 10, 5), 1_000)], 0), 1);
        assert_eq!(t.get(1, 0).unwrap().1, 1_000);
        // ... but not up.
        assert_eq!(t.merge(9, vec![relayed(summary(1, 10, 5), 2_000)], 0), 0);
        // A newer seq replaces it even when older-looking.
        assert_eq!(t.merge(9, vec![relayed(summary(1, 10, 6), 9_000)], 0), 1);
        // A restart (new epoch) wins over any seq of the former incarnation.
        assert_eq!(t.merge(9, vec![relayed(summary(1, 11, 0), 0)], 0), 1);
        assert_eq!(t.merge(9, vec![relayed(summary(1, 10, 99), 0)], 0), 0);
        assert_eq!(t.get(1, 0).unwrap().0.epoch, 11);
    }

    #[test]
    fn merging_is_order_independent() {
        let inputs = [
            relayed(summary(1, 10, 2), 50),
            relayed(summary(1, 10, 3), 900),
            relayed(summary(2, 20, 1), 10),
            relayed(summary(1, 9, 7), 0),
            relayed(summary(2, 20, 1), 5),
        ];
        let mut forward = Table::default();
        for r in inputs.iter().cloned() {
            forward.merge(0, vec![r], 0);
        }
        let mut backward = Table::default();
        for r in inputs.iter().rev().cloned() {
            backward.merge(0, vec![r], 0);
        }
        assert_eq!(forward.relay(0), backward.relay(0));
        let got: Vec<(u64, u64, u64)> = forward
            .relay(0)
            .iter()
            .map(|r| (r.summary.id, r.summary.seq, r.age_ms))
            .collect();
        assert_eq!(got, [(1, 3, 900), (2, 1, 5)]);
    }

    #[test]
    fn own_word_and_bad_entries_are_not_taken_from_peers() {
        let mut t = Table::default();
        t.publish(summary(1, 10, 0), 0);
        assert_eq!(t.merge(1, vec![relayed(summary(1, 10, 50), 0)], 0), 0);
        assert_eq!(t.get(1, 0).unwrap().0.seq, 0);
        let mut many = summary(2, 1, 0);
        many.services = (0..=MAX_SERVICES)
            .map(|i| Service {
                name: format!("s{i}"),
                addrs: Vec::new(),
                port: 1,
                floating: false,
            })
            .collect();
        let mut long = summary(3, 1, 0);
        long.version = "x".repeat(MAX_NAME + 1);
        let mut wide = summary(4, 1, 0);
        wide.services[0].addrs = vec![Ipv4Addr::LOCALHOST; MAX_ADDRS + 1];
        assert_eq!(many.check(), Err(Refused::TooManyServices));
        assert_eq!(long.check(), Err(Refused::NameTooLong));
        assert_eq!(wide.check(), Err(Refused::TooManyAddrs));
        let mut crowded = summary(5, 1, 0);
        crowded.has = (0..=MAX_WRITERS as u64)
            .map(|member| Version {
                wall_ms: 1,
                logical: 0,
                member,
            })
            .collect();
        assert_eq!(crowded.check(), Err(Refused::TooManyWriters));
        let n = t.merge(
            1,
            vec![relayed(many, 0), relayed(long, 0), relayed(wide, 0)],
            0,
        );
        assert_eq!((n, t.len()), (0, 1));
    }

    #[test]
    fn the_table_stays_bounded_dropping_the_oldest() {
        let mut t = Table::default();
        let flood: Vec<Relayed> = (1..=MAX_MEMBERS as u64 + 10)
            .map(|id| relayed(summary(id, 1, 0), id))
            .collect();
        t.merge(0, flood, 0);
        assert_eq!(t.len(), MAX_MEMBERS);
        // A peer's table is cut at MAX_MEMBERS entries before merging, and among what is
        // held, the oldest go first: here all 256 first ones fit.
        assert!(t.get(1, 0).is_some());
        t.publish(summary(0, 1, 0), 0);
        assert_eq!(t.len(), MAX_MEMBERS);
        assert!(
            t.get(0, 0).is_some(),
            "this member's own summary is the youngest"
        );
        assert!(t.get(MAX_MEMBERS as u64, 0).is_none(), "the oldest went");
    }
}
