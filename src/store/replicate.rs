//! Replication support: what a member has ([`Reader::version_vector`]), what it can send a
//! peer that lacks some of it ([`Reader::rows_after`]), and how rows from other members are
//! merged ([`Writer::merge_batch`]). The network side lives in `crate::pool`.
//!
//! Rules:
//! - Last writer wins per row on the hybrid-logical-clock [`Version`] (wall time, counter,
//!   member id: a total order), deletes are tombstones, so every member that has seen the
//!   same rows holds the same data, whatever the order they arrived in.
//! - Anti-entropy by version vector: for each member `m`, `vv[m]` is the newest version
//!   written by `m` that this store has, and every older row written by `m` is here too or
//!   was overwritten by a newer row. A peer that is behind on `m` is sent the rows written by
//!   `m` after its `vv[m]`, oldest first, with `upto` = how far the batch covers (rows that
//!   were overwritten since are covered without being sent: their successors travel under
//!   their own writer's entry).
//! - Unique keys (`mac/...`, `ip/...`, `alias/...`) are claims: every live row records its
//!   claims (`claim\x1f<unique>\x1f<key>` in the index database) and the index entry belongs
//!   to the claimant with the highest version. Two members may accept the same MAC for two
//!   nodes while cut off from each other; after merging, both rows exist, every member
//!   agrees which one owns the MAC, and a local edit of the other is refused as a conflict
//!   until the admin resolves it.
//! - Boot logs merge as sets (`Record::union`): of two copies of one node's log, the union
//!   is kept. When it adds to the newer copy, it is written anew here (a new version), so
//!   that it travels back to the members that had either copy; a merge that adds nothing
//!   writes nothing, so the exchange settles.

use super::{
    decode, encode, model, row_key, Meta, Origins, Reader, Record, StoreError, Table, Version,
    Versioned, Writer,
};
use heed::RwTxn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// One row as it travels between members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub table: Table,
    pub key: String,
    pub version: Version,
    /// `None`: a tombstone.
    pub value: Option<serde_json::Value>,
}

/// Rows written by member `origin`, oldest first, covering everything it wrote up to `upto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub origin: u64,
    pub rows: Vec<Row>,
    pub upto: Version,
}

/// `member ++ wall_ms ++ logical`, big-endian: sorts by member, then version.
pub(super) fn origin_key(v: Version) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&v.member.to_be_bytes());
    k[8..16].copy_from_slice(&v.wall_ms.to_be_bytes());
    k[16..].copy_from_slice(&v.logical.to_be_bytes());
    k
}

fn vv_key(member: u64) -> String {
    format!("vv/{member:016x}")
}

fn claim_prefix(unique: &str) -> String {
    format!("claim\x1f{unique}\x1f")
}

fn claim_key(unique: &str, key: &str) -> String {
    format!("{}{key}", claim_prefix(unique))
}

/// Raises `vv[member]` to `v` if it is lower.
pub(super) fn advance_vv(
    meta: &Meta<'static>,
    txn: &mut RwTxn<'static>,
    member: u64,
    v: Version,
) -> Result<(), StoreError> {
    let key = vv_key(member);
    let current = match meta.get(txn, &key)? {
        Some(bytes) => Some(decode::<Version>(&key, bytes)?),
        None => None,
    };
    if current.is_none_or(|c| c < v) {
        meta.put(txn, &key, &encode(&v))?;
    }
    Ok(())
}

/// Runs `$body` with `$t` naming the record type stored in `$table`: the one place that maps
/// tables to types for code that handles rows of any table.
macro_rules! with_record_type {
    ($table:expr, $t:ident => $body:expr) => {
        match $table {
            Table::Nodes => {
                type $t = model::Node;
                $body
            }
            Table::Groups => {
                type $t = model::Group;
                $body
            }
            Table::Networks => {
                type $t = model::Network;
                $body
            }
            Table::Images => {
                type $t = model::Image;
                $body
            }
            Table::Leases => {
                type $t = model::Lease;
                $body
            }
            Table::Settings => {
                type $t = model::Setting;
                $body
            }
            Table::Users => {
                type $t = model::User;
                $body
            }
            Table::Tokens => {
                type $t = model::ApiToken;
                $body
            }
            Table::Boots => {
                type $t = model::BootLog;
                $body
            }
            Table::Bmc => {
                type $t = model::Bmc;
                $body
            }
            Table::Power => {
                type $t = model::PowerState;
                $body
            }
            Table::Members => {
                type $t = model::PoolMember;
                $body
            }
            Table::Exports => {
                type $t = model::Export;
                $body
            }
            Table::Audit => {
                type $t = model::AuditEntry;
                $body
            }
            Table::Discovered => {
                type $t = crate::discover::inventory::Discovered;
                $body
            }
            Table::Rules => {
                type $t = crate::discover::rule::NamingRule;
                $body
            }
            Table::Files => {
                type $t = crate::files::core::FileSet;
                $body
            }
        }
    };
}

/// The unique keys a stored row (`<table>/<key>` = `full`) claims.
fn unique_keys_of<T: Record>(
    full: &str,
    value: serde_json::Value,
) -> Result<Vec<String>, StoreError> {
    let record: T = serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        key: full.to_string(),
        reason: e.to_string(),
    })?;
    Ok(record.unique_keys())
}

/// Older schemas -> 3: origins, version vector and claims (of every table with unique keys)
/// from the existing rows.
pub(super) fn build_origins(
    records: &super::Records<'static>,
    index: &super::Index<'static>,
    origins: &Origins<'static>,
    meta: &Meta<'static>,
    txn: &mut RwTxn<'static>,
) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for item in records.iter(txn)? {
        let (full, bytes) = item?;
        let row: Versioned<serde_json::Value> = decode(full, bytes)?;
        rows.push((full.to_string(), row));
    }
    for (full, row) in rows {
        origins.put(txn, &origin_key(row.version), &full)?;
        advance_vv(meta, txn, row.version.member, row.version)?;
        let Some((table, key)) = full.split_once('/') else {
            continue;
        };
        let (Some(table), Some(value)) = (Table::from_name(table), row.value) else {
            continue;
        };
        let claims = with_record_type!(table, T => unique_keys_of::<T>(&full, value))?;
        for u in claims {
            index.put(txn, &claim_key(&u, key), "")?;
        }
    }
    Ok(())
}

impl Reader<'_> {
    /// The newest version this store has from each member.
    pub fn version_vector(&self) -> Result<BTreeMap<u64, Version>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.store.meta.prefix_iter(self.txn, "vv/")? {
            let (key, bytes) = item?;
            let v: Version = decode(key, bytes)?;
            out.insert(v.member, v);
        }
        Ok(out)
    }

    /// Up to `limit` rows written by `origin` after `after` (all when `None`), oldest first.
    pub fn rows_after(
        &self,
        origin: u64,
        after: Option<Version>,
        limit: usize,
    ) -> Result<Batch, StoreError> {
        let start = after.map(origin_key);
        let floor = origin_key(Version {
            wall_ms: 0,
            logical: 0,
            member: origin,
        });
        let lower = match &start {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Included(&floor[..]),
        };
        let ceiling = origin.checked_add(1).map(|next| {
            origin_key(Version {
                wall_ms: 0,
                logical: 0,
                member: next,
            })
        });
        let upper = match &ceiling {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        let mut rows = Vec::new();
        for item in self.store.origins.range(self.txn, &(lower, upper))? {
            if rows.len() == limit {
                break;
            }
            let (_, full) = item?;
            let Some(bytes) = self.store.records.get(self.txn, full)? else {
                continue;
            };
            let row: Versioned<serde_json::Value> = decode(full, bytes)?;
            let Some((table, key)) = full.split_once('/') else {
                continue;
            };
            let Some(table) = Table::from_name(table) else {
                continue;
            };
            rows.push(Row {
                table,
                key: key.to_string(),
                version: row.version,
                value: row.value,
            });
        }
        let upto = match (rows.len() == limit, rows.last()) {
            (true, Some(last)) => last.version,
            _ => self
                .version_vector()?
                .get(&origin)
                .copied()
                .or(after)
                .unwrap_or(Version {
                    wall_ms: 0,
                    logical: 0,
                    member: origin,
                }),
        };
        Ok(Batch { origin, rows, upto })
    }

    /// Every row, tombstones included, ordered by table and key (for comparing replicas).
    pub fn all_rows(&self) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        for item in self.store.records.iter(self.txn)? {
            let (full, bytes) = item?;
            let row: Versioned<serde_json::Value> = decode(full, bytes)?;
            if let Some((table, key)) = full.split_once('/') {
                if let Some(table) = Table::from_name(table) {
                    out.push(Row {
                        table,
                        key: key.to_string(),
                        version: row.version,
                        value: row.value,
                    });
                }
            }
        }
        Ok(out)
    }
}

impl Writer<'_, '_> {
    /// Merges a batch from a peer; returns how many rows changed here.
    pub fn merge_batch(&mut self, batch: &Batch) -> Result<usize, StoreError> {
        let mut changed = 0;
        for row in &batch.rows {
            if self.merge(row)? {
                changed += 1;
            }
        }
        if batch.upto.member == batch.origin {
            advance_vv(&self.store.meta, self.txn, batch.origin, batch.upto)?;
            self.hlc.observe(batch.upto);
        }
        Ok(changed)
    }

    /// Merges one row; `true` when it was newer than what this store had.
    pub fn merge(&mut self, row: &Row) -> Result<bool, StoreError> {
        with_record_type!(row.table, T => self.merge_typed::<T>(row))
    }

    fn merge_typed<T: Record>(&mut self, row: &Row) -> Result<bool, StoreError> {
        self.hlc.observe(row.version);
        let local = self.store.row::<T>(self.txn, &row.key)?;
        let value: Option<T> = row
            .value
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                key: row_key(T::TABLE, &row.key),
                reason: e.to_string(),
            })?;
        let newer = local.as_ref().is_none_or(|l| l.version < row.version);
        let mine = local.as_ref().and_then(|l| l.value.as_ref());
        if let Some((mine, theirs)) = mine.zip(value.as_ref()) {
            let union = mine.union(theirs).filter(|u| !(newer && u == theirs));
            if let Some(union) = union {
                // Covered by the copy here, or by the union written anew.
                advance_vv(&self.store.meta, self.txn, row.version.member, row.version)?;
                if union == *mine {
                    return Ok(false);
                }
                self.put(&union)?;
                return Ok(true);
            }
        }
        if !newer {
            // Ours is newer: the row is covered, but not applied.
            advance_vv(&self.store.meta, self.txn, row.version.member, row.version)?;
            return Ok(false);
        }
        let old = local.and_then(|l| l.value);
        self.claim_keys(&row.key, old.as_ref(), value.as_ref(), row.version, false)?;
        self.write_versioned(T::TABLE, &row.key, value.as_ref(), row.version)?;
        Ok(true)
    }

    /// Brings the unique index up to date for row `key` of `T` going from `old` to `new` at
    /// `version`. `strict` (a local write): a unique key owned by another row is a conflict.
    pub(super) fn claim_keys<T: Record>(
        &mut self,
        key: &str,
        old: Option<&T>,
        new: Option<&T>,
        version: Version,
        strict: bool,
    ) -> Result<(), StoreError> {
        let old_keys = old.map(Record::unique_keys).unwrap_or_default();
        let new_keys = new.map(Record::unique_keys).unwrap_or_default();
        if strict {
            for unique in &new_keys {
                if let Some(owner) = self.owner(unique)?.filter(|o| o != key) {
                    return Err(StoreError::Conflict {
                        what: unique.replace('/', " "),
                        table: T::TABLE.name(),
                        owner,
                    });
                }
            }
        }
        for unique in old_keys.iter().filter(|u| !new_keys.contains(u)) {
            self.store.index.delete(self.txn, &claim_key(unique, key))?;
            if self.owner(unique)?.as_deref() == Some(key) {
                self.store.index.delete(self.txn, unique)?;
                self.reassign::<T>(unique)?;
            }
        }
        for unique in &new_keys {
            self.store
                .index
                .put(self.txn, &claim_key(unique, key), "")?;
            let take = match self.owner(unique)? {
                None => true,
                Some(owner) if owner == key => false,
                Some(owner) => self
                    .store
                    .row::<T>(self.txn, &owner)?
                    .is_none_or(|r| r.value.is_none() || r.version < version),
            };
            if take {
                self.store.index.put(self.txn, unique, key)?;
            }
        }
        Ok(())
    }

    /// Gives `unique` to the live claimant with the highest version, if any.
    fn reassign<T: Record>(&mut self, unique: &str) -> Result<(), StoreError> {
        let prefix = claim_prefix(unique);
        let mut claimants = Vec::new();
        for item in self.store.index.prefix_iter(self.txn, &prefix)? {
            let (claim, _) = item?;
            claimants.push(claim[prefix.len()..].to_string());
        }
        let mut best: Option<(Version, String)> = None;
        for key in claimants {
            if let Some(row) = self.store.row::<T>(self.txn, &key)? {
                if row.value.is_some() && best.as_ref().is_none_or(|(v, _)| row.version > *v) {
                    best = Some((row.version, key));
                }
            }
        }
        if let Some((_, key)) = best {
            self.store.index.put(self.txn, unique, &key)?;
        }
        Ok(())
    }
}
