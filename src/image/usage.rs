//! What image versions store: per version, the bytes of its files, the bytes it added to the
//! blob store and the bytes it shares with earlier versions; for the whole store, the bytes
//! of all image files against the bytes on disk. Pure: chunk lists in, figures out.
//!
//! Data flow: `super::Blobs::version_usage` lists each version's chunks from the manifests
//! (a whole-file blob counts as one chunk named by the blob's id) and calls [`usage`]; the
//! API and the CLI's local backend send the figures with the history ([`HistoryEntry`]) and
//! with `image list` ([`StoreTotals`]); `cli::print` renders them.
//!
//! Not here: reading manifests, garbage collection.

use super::chunk::ChunkId;
use crate::store::model::ImageVersion;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// One version's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The bytes of the version's files.
    pub logical: u64,
    /// Bytes of chunks that no earlier version (nor an earlier file of this one) has: what
    /// the version added to the store.
    pub new: u64,
    /// Bytes of chunks an earlier version has too.
    pub shared: u64,
}

/// Per version, oldest first, what it adds to the store and shares with those before it.
/// `versions[i]` lists the chunks (id, bytes) of version i's files, in any order. Bytes
/// repeated within one version count in `logical` only.
pub fn usage(versions: &[Vec<(ChunkId, u64)>]) -> Vec<Usage> {
    let mut before = HashSet::new();
    let mut out = Vec::with_capacity(versions.len());
    for chunks in versions {
        let mut u = Usage::default();
        let mut mine = HashSet::new();
        for &(id, len) in chunks {
            u.logical += len;
            if before.contains(&id) {
                u.shared += len;
            } else if mine.insert(id) {
                u.new += len;
            }
        }
        before.extend(mine);
        out.push(u);
    }
    out
}

/// An entry of `GET /images/{name}/history`: the version and its figures (missing from a
/// server older than chunking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(flatten)]
    pub version: ImageVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Usage>,
}

/// Pairs `versions` with their figures (as many, in order).
pub fn with_usage(versions: Vec<ImageVersion>, usage: Vec<Usage>) -> Vec<HistoryEntry> {
    versions
        .into_iter()
        .zip(usage.into_iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(version, stored)| HistoryEntry { version, stored })
        .collect()
}

/// The blob store as a whole (`GET /image-store`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreTotals {
    /// Distinct blobs that some image version names.
    pub blobs: u64,
    /// Their bytes: what plain whole files would take.
    pub logical: u64,
    /// Bytes on disk: chunks, manifests and whole-file blobs.
    pub stored: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_new_and_shared_bytes() {
        let c = |n: u8, len: u64| ([n; 32], len);
        let u = usage(&[
            vec![c(1, 10), c(2, 20), c(1, 10)],
            vec![c(1, 10), c(3, 5)],
            vec![c(2, 20), c(3, 5)],
        ]);
        let want = |logical, new, shared| Usage {
            logical,
            new,
            shared,
        };
        assert_eq!(u, vec![want(40, 30, 0), want(15, 5, 10), want(25, 0, 25)]);
    }

    #[test]
    fn a_history_entry_reads_without_figures() {
        let v = r#"{"number":1,"created_ms":0,"by":"","what":"add",
            "files":{"kernel":{"blob":"ab","size":2},"initrd":null,"rootfs":null,
            "initramfs":null}}"#;
        let e: HistoryEntry = serde_json::from_str(v).unwrap();
        assert_eq!((e.version.number, e.stored), (1, None));
        let back = serde_json::to_value(&e).unwrap();
        assert!(back.get("stored").is_none() && back.get("number").is_some());
    }
}
