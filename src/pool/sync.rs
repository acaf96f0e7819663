//! Store anti-entropy between two members, over any transport: the asker sends its
//! [`Digest`] (version vector); the peer answers with the [`Batch`]es the asker lacks
//! (bounded); the asker merges them. Running it in both directions between every pair of
//! members, now and then, makes all members converge (see `store::replicate` for the rules
//! that make the merge order-independent).
//!
//! Not here: the transport (`pool::frame`/`pool::conn`, one exchange per connection in
//! `pool::replication`), the choice of peer (`pool::serve`), image blobs (content-addressed
//! files, fetched in the same exchange after the rows).

use crate::store::replicate::Batch;
use crate::store::{Store, StoreError, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rows sent in one answer, at most.
pub const MAX_ROWS: usize = 2000;

/// What a member has: the newest version it holds from each writer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub vv: BTreeMap<u64, Version>,
}

pub fn digest(store: &Store) -> Result<Digest, StoreError> {
    Ok(Digest {
        vv: store.read(|r| r.version_vector())?,
    })
}

/// The batches `theirs` lacks, oldest first per writer, at most `limit` rows in all.
pub fn answer(store: &Store, theirs: &Digest, limit: usize) -> Result<Vec<Batch>, StoreError> {
    store.read(|r| {
        let mut out = Vec::new();
        let mut budget = limit;
        for (origin, mine) in r.version_vector()? {
            let behind = theirs.vv.get(&origin).is_none_or(|t| *t < mine);
            if !behind || budget == 0 {
                continue;
            }
            let batch = r.rows_after(origin, theirs.vv.get(&origin).copied(), budget)?;
            budget -= batch.rows.len();
            out.push(batch);
        }
        Ok(out)
    })
}

/// Merges `batches` in one transaction; returns the rows that changed.
pub fn apply(store: &Store, batches: &[Batch]) -> Result<usize, StoreError> {
    if batches.is_empty() {
        return Ok(0);
    }
    store.write(|w| {
        let mut changed = 0;
        for b in batches {
            changed += w.merge_batch(b)?;
        }
        Ok(changed)
    })
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
