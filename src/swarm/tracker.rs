//! The tracker of one member (sans-IO): which nodes said they hold (or are fetching) which
//! image blob, and the answer to "who else holds this blob".
//!
//! A node announces a blob as a whole, not chunk by chunk: a holder that lacks a chunk
//! answers 404 and the asker tries elsewhere, which costs one small request, while a
//! per-chunk table would cost the member a write per chunk per node. Entries expire
//! [`HOLD_SECS`] after the last announce (the agent's seeder lives about that long); the
//! table is capped per blob and in blobs, so a flood of announces cannot grow it without
//! bound (the oldest entry gives way).
//!
//! Not here: whether an announcing node may announce (the shell checks its address against
//! its reservation or lease first) and whether a holder still has a current lease (the
//! shell passes that in as `current`); time and randomness are arguments.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Seconds an announce counts: a little longer than the agent's seeder lives.
pub const HOLD_SECS: u64 = 15 * 60;
/// Holders remembered per blob.
pub const MAX_HOLDERS: usize = 4096;
/// Blobs tracked at once.
pub const MAX_BLOBS: usize = 64;
/// Peers in one answer.
pub const MAX_ANSWER: usize = 8;

/// One node that holds a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    addr: SocketAddrV4,
    /// Unix seconds of the last announce.
    seen: u64,
}

/// Holders per blob id (hex).
#[derive(Debug, Default)]
pub struct Tracker {
    blobs: HashMap<String, Vec<Holder>>,
}

impl Tracker {
    /// Records that `addr` holds (or is fetching) `blob`, at unix second `now`. One entry per
    /// node address: a node that restarts its seeder on another port replaces its entry.
    pub fn announce(&mut self, now: u64, blob: &str, addr: SocketAddrV4) {
        self.expire(now);
        if !self.blobs.contains_key(blob) && self.blobs.len() >= MAX_BLOBS {
            // The blob whose newest announce is oldest is the one nobody boots any more.
            let stalest = self
                .blobs
                .iter()
                .min_by_key(|(_, h)| h.iter().map(|h| h.seen).max().unwrap_or(0))
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                self.blobs.remove(&k);
            }
        }
        let holders = self.blobs.entry(blob.to_string()).or_default();
        holders.retain(|h| h.addr.ip() != addr.ip());
        if holders.len() >= MAX_HOLDERS {
            // Kept in announce order: the first is the oldest.
            holders.remove(0);
        }
        holders.push(Holder { addr, seen: now });
    }

    /// Up to [`MAX_ANSWER`] holders of `blob` in random order (from `seed`), never `asker`'s
    /// address and only those for which `current` (the node there still has its reservation
    /// or a lease) holds.
    pub fn peers(
        &self,
        now: u64,
        blob: &str,
        asker: Ipv4Addr,
        seed: u64,
        current: impl Fn(Ipv4Addr) -> bool,
    ) -> Vec<SocketAddrV4> {
        let mut out: Vec<SocketAddrV4> = self
            .blobs
            .get(blob)
            .into_iter()
            .flatten()
            .filter(|h| now.saturating_sub(h.seen) < HOLD_SECS)
            .filter(|h| *h.addr.ip() != asker && current(*h.addr.ip()))
            .map(|h| h.addr)
            .collect();
        shuffle(&mut out, seed);
        out.truncate(MAX_ANSWER);
        out
    }

    /// Holders of `blob` remembered now (for tests and the status line).
    pub fn holders(&self, blob: &str) -> usize {
        self.blobs.get(blob).map_or(0, Vec::len)
    }

    fn expire(&mut self, now: u64) {
        self.blobs.retain(|_, holders| {
            holders.retain(|h| now.saturating_sub(h.seen) < HOLD_SECS);
            !holders.is_empty()
        });
    }
}

/// Fisher-Yates with a splitmix64 stream from `seed`: random enough to spread the load of
/// many askers over the holders, and reproducible in tests.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), 7171)
    }

    #[test]
    fn answers_other_current_holders_never_the_asker() {
        let mut t = Tracker::default();
        for i in 1..=5 {
            t.announce(100, "b", addr(i));
        }
        t.announce(100, "other", addr(9));
        let all = |_| true;
        let got = t.peers(101, "b", *addr(3).ip(), 7, all);
        assert_eq!(got.len(), 4);
        assert!(!got.contains(&addr(3)), "{got:?}");
        assert!(!got.contains(&addr(9)), "{got:?}");
        // A holder whose lease ended is left out.
        let no_lease = *addr(2).ip();
        let got = t.peers(101, "b", *addr(3).ip(), 7, |ip| ip != no_lease);
        assert_eq!(got.len(), 3);
        assert!(!got.contains(&addr(2)));
        assert!(t.peers(101, "unknown", *addr(1).ip(), 7, all).is_empty());
    }

    #[test]
    fn answers_are_bounded_and_in_varying_order() {
        let mut t = Tracker::default();
        for i in 1..=40 {
            t.announce(5, "b", addr(i));
        }
        let asker = Ipv4Addr::new(10, 0, 1, 1);
        let a = t.peers(6, "b", asker, 1, |_| true);
        assert_eq!(a.len(), MAX_ANSWER);
        let firsts: std::collections::BTreeSet<_> = (0..20)
            .map(|seed| t.peers(6, "b", asker, seed, |_| true)[0])
            .collect();
        // Twenty askers do not all go to the same first peer.
        assert!(firsts.len() > 5, "{firsts:?}");
    }

    #[test]
    fn announces_expire_and_replace_the_same_node() {
        let mut t = Tracker::default();
        t.announce(0, "b", addr(1));
        t.announce(10, "b", SocketAddrV4::new(*addr(1).ip(), 8000));
        assert_eq!(t.holders("b"), 1);
        let asker = Ipv4Addr::new(10, 0, 1, 1);
        assert_eq!(
            t.peers(11, "b", asker, 0, |_| true),
            vec![SocketAddrV4::new(*addr(1).ip(), 8000)]
        );
        assert!(t.peers(10 + HOLD_SECS, "b", asker, 0, |_| true).is_empty());
        t.announce(20 + HOLD_SECS, "c", addr(2));
        assert_eq!(t.holders("b"), 0, "expired entries are dropped");
    }

    #[test]
    fn tables_are_capped() {
        let mut t = Tracker::default();
        for i in 0..MAX_BLOBS as u64 + 3 {
            t.announce(i, &format!("blob{i}"), addr(1));
        }
        assert_eq!(t.blobs.len(), MAX_BLOBS);
        assert_eq!(t.holders("blob0"), 0, "the stalest blob gave way");
        for i in 0..MAX_HOLDERS as u32 + 10 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            t.announce(1000, "big", SocketAddrV4::new(ip, 1));
        }
        assert_eq!(t.holders("big"), MAX_HOLDERS);
    }
}
