//! Gathers what a pool tick needs (`tick::Facts`) from the store, and counts who owns how much
//! of the dynamic ranges and the image files in the blob directory (`tick::Counts`).
//! Blocking: the shell runs both off the async workers (`spawn_blocking`). Bounded: at most
//! [`COUNT_LIMIT`] addresses and [`MAX_BLOBS`] directory entries are counted.
//!
//! Not here: what the facts mean (`tick`); NFS clients, which the NFS server publishes in
//! memory (`serve::Links`).

use super::tick::{CountJob, Counts, Facts};
use crate::image::Blobs;
use crate::store::model::{Lease, Network, PoolMember};
use crate::store::{Store, StoreError};

/// At most this many addresses are counted for address shares.
pub const COUNT_LIMIT: u64 = 1 << 20;
/// At most this many blob directory entries are counted.
pub const MAX_BLOBS: usize = 100_000;

/// The store's roster, ranges, active leases (at `now_secs`) and version vector, in one read
/// transaction.
pub fn gather(store: &Store, now_secs: u64) -> Result<Facts, StoreError> {
    store.read(|r| -> Result<Facts, StoreError> {
        Ok(Facts {
            roster: r.all::<PoolMember>()?,
            ranges: r.all::<Network>()?.iter().filter_map(|n| n.range).collect(),
            leases: r
                .all::<Lease>()?
                .iter()
                .filter(|l| l.holds(now_secs))
                .map(|l| l.ip)
                .collect(),
            version_vector: r.version_vector()?,
            my_row: r.version_of::<PoolMember>(&PoolMember::key_of(store.member()))?,
            feed_floor: r.feed_floor()?,
        })
    })
}

/// The addresses each member owns, the active leases on this member's (`me`) and the image
/// files in `blobs`.
pub fn count(job: &CountJob, me: u64, blobs: &Blobs) -> Counts {
    Counts {
        owned: job.share.owned(&job.ranges, COUNT_LIMIT),
        leases: job
            .leases
            .iter()
            .filter(|ip| job.share.owner(**ip) == me)
            .count() as u64,
        blobs: count_blobs(blobs),
    }
}

/// Blobs (either form) and their bytes (as whole files; shared chunks count in each blob);
/// imports and fetches in progress are not counted.
fn count_blobs(blobs: &Blobs) -> (u64, u64) {
    let ids = blobs.list().unwrap_or_default();
    let ids = &ids[..ids.len().min(MAX_BLOBS)];
    let bytes = ids.iter().filter_map(|id| blobs.size(id).ok()).sum();
    (ids.len() as u64, bytes)
}
