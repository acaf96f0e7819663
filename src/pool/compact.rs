//! The rule of change-feed compaction: a feed entry may go once every live member has the
//! row version it records ([`Holders::all_have`]), and the newest [`FEED_KEEP`] entries always
//! stay. The pool task learns what each live member has from its summary (`Summary::has`,
//! its version vector) and publishes [`Holders`]; the server's compaction timer
//! (`crate::serve`) prunes with it every [`COMPACT_EVERY`] through
//! `store::Writer::compact_feed`.
//!
//! Why that is safe: members replicate by version vector and origins (`store::replicate`),
//! never by reading each other's feed, so a member that was down while entries went still
//! converges by anti-entropy when it returns; a local reader (the view, the event stream)
//! that fell behind the pruned floor reloads. Waiting for the live members keeps the feed
//! for whatever they have not seen yet while they can still ask for it.
//!
//! Pure: no store, no clock; ages are arguments. Not here: the timer and the store write.

use crate::store::Version;
use std::collections::BTreeMap;
use std::time::Duration;

/// Newest feed entries never pruned: slack for local readers between refreshes (a view
/// refresh reads 4096 at a time every 250 ms).
pub const FEED_KEEP: u64 = 4096;
/// How often the server prunes.
pub const COMPACT_EVERY: Duration = Duration::from_secs(10);
/// Entries pruned in one write transaction at most, so one run never holds the writer long.
pub const COMPACT_LIMIT: usize = 100_000;
/// A live member whose newest summary here is older than this counts as having nothing:
/// what it had may have been overtaken by what it lost since.
pub const SUMMARY_FRESH_MS: u64 = 30_000;

/// What the other live members have, as far as this member knows: one version vector per
/// live member (empty when nothing fresh is known of it). No members: alone, so every row
/// this store has is had by everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders(pub Vec<BTreeMap<u64, Version>>);

impl Holders {
    /// Before the pool task has looked: one member of whom nothing is known, so nothing goes.
    pub fn unknown() -> Holders {
        Holders(vec![BTreeMap::new()])
    }

    /// From each live member's summary version vector (`Summary::has`) and its age here
    /// (`None`: no summary yet), in milliseconds.
    pub fn from_summaries(live: impl IntoIterator<Item = Option<(Vec<Version>, u64)>>) -> Holders {
        Holders(
            live.into_iter()
                .map(|s| match s {
                    Some((has, age_ms)) if age_ms <= SUMMARY_FRESH_MS => {
                        has.into_iter().map(|v| (v.member, v)).collect()
                    }
                    _ => BTreeMap::new(),
                })
                .collect(),
        )
    }

    /// Whether every member has row version `v` (or a newer one of its writer: a version
    /// vector entry covers everything older from that writer).
    pub fn all_have(&self, v: Version) -> bool {
        self.0
            .iter()
            .all(|has| has.get(&v.member).is_some_and(|newest| *newest >= v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(member: u64, wall_ms: u64) -> Version {
        Version {
            wall_ms,
            logical: 0,
            member,
        }
    }

    #[test]
    fn alone_everything_is_had() {
        assert!(Holders::default().all_have(v(1, 5)));
    }

    #[test]
    fn unknown_nothing_is_had() {
        assert!(!Holders::unknown().all_have(v(1, 5)));
    }

    #[test]
    fn every_live_member_must_have_the_version() {
        let a = vec![v(1, 10), v(2, 3)];
        let b = vec![v(1, 7)];
        let h = Holders::from_summaries([Some((a.clone(), 0)), Some((b.clone(), 100))]);
        assert!(h.all_have(v(1, 7)));
        assert!(!h.all_have(v(1, 8)), "b has writer 1 only up to 7");
        assert!(!h.all_have(v(2, 1)), "b has nothing from writer 2");
    }

    #[test]
    fn a_stale_or_missing_summary_has_nothing() {
        let a = vec![v(1, 10)];
        let stale = Holders::from_summaries([Some((a.clone(), SUMMARY_FRESH_MS + 1))]);
        assert!(!stale.all_have(v(1, 1)));
        let missing = Holders::from_summaries([Some((a.clone(), 0)), None]);
        assert!(!missing.all_have(v(1, 1)));
        let fresh = Holders::from_summaries([Some((a.clone(), SUMMARY_FRESH_MS))]);
        assert!(fresh.all_have(v(1, 1)));
    }
}
