//! The audit log: who changed what, when and from where. The API records every change it
//! accepted (any method but GET/HEAD that answered 2xx: the caller, its address, the method
//! and path), the local CLI every command that is not a read (the unix user, `local`, the
//! command line; passwords are read from standard input, never from it).
//!
//! Entries are rows of the store's `audit` table, so they replicate to pool members like any
//! record, and are capped at [`MAX_ENTRIES`]: a new entry past the cap removes the oldest in
//! the same transaction.
//!
//! Not here: request bodies (they may hold passwords), reads, the boot path (nodes' own
//! requests), and atomicity with the change itself: an entry is written right after the
//! change committed, in its own transaction, so a crash between the two loses the entry.

use crate::store::model::AuditEntry;
use crate::store::{Store, StoreError};

/// Entries kept at most (per pool: the table replicates).
pub const MAX_ENTRIES: usize = 10_000;

/// Records a change; `now_ms` is the wall clock in unix milliseconds.
pub fn record(
    store: &Store,
    now_ms: u64,
    who: &str,
    from: &str,
    what: &str,
) -> Result<(), StoreError> {
    // Time first so that ids sort in time order; the member and a random part keep two
    // changes in the same millisecond (here or on another member) apart.
    let id = format!(
        "{now_ms:016}-{:016x}-{}",
        store.member(),
        crate::auth::random_hex(4)
    );
    let entry = AuditEntry {
        id,
        at: now_ms / 1000,
        who: who.to_string(),
        from: from.to_string(),
        what: what.to_string(),
    };
    store.write(|w| {
        w.put(&entry)?;
        let mut ids: Vec<String> = w.all::<AuditEntry>()?.into_iter().map(|e| e.id).collect();
        if ids.len() > MAX_ENTRIES {
            ids.sort();
            for id in &ids[..ids.len() - MAX_ENTRIES] {
                w.delete::<AuditEntry>(id)?;
            }
        }
        Ok(())
    })
}

/// Entries at or after `since` (unix seconds), oldest first.
pub fn since(store: &Store, since: u64) -> Result<Vec<AuditEntry>, StoreError> {
    let mut all: Vec<AuditEntry> = store
        .read(|r| r.all::<AuditEntry>())?
        .into_iter()
        .filter(|e| e.at >= since)
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(all)
}

/// `--since`: unix seconds, or an age (`90s`, `30m`, `12h`, `7d`) before `now`.
pub fn parse_since(text: &str, now: u64) -> Option<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    let (num, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(now.saturating_sub(n.checked_mul(scale)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_seconds_or_an_age() {
        assert_eq!(parse_since("1700000000", 5), Some(1_700_000_000));
        assert_eq!(parse_since("2h", 10_000), Some(10_000 - 7200));
        assert_eq!(parse_since("7d", 10), Some(0));
        for bad in ["", "h", "2w", "-1m", "1.5h"] {
            assert_eq!(parse_since(bad, 10), None, "{bad}");
        }
    }
}
