//! Gathers this member's [`Summary`] (what it serves) for the pool task to publish: its DHCP
//! share from the store's ranges and leases, the services it was started with, its NFS
//! clients (from the NFS server's `<state>/nfs/clients.json`), its image files (the blob
//! directory) and the newest record it wrote (the store's version vector).
//!
//! Reads the store, the state directory and the clock; small and bounded (at most
//! [`COUNT_LIMIT`] addresses and [`MAX_BLOBS`] directory entries are counted).
//!
//! Not here: passing summaries on (`replication`), merging them (`summary`).

use super::membership::MemberId;
use super::summary::{DhcpShare, Service, Summary};
use crate::dhcp::Share;
use crate::image::Blobs;
use crate::store::model::{Lease, Network};
use crate::store::Store;
use std::net::Ipv4Addr;
use std::path::Path;

/// At most this many addresses are counted for address shares.
pub const COUNT_LIMIT: u64 = 1 << 20;
/// At most this many blob directory entries are counted.
pub const MAX_BLOBS: usize = 100_000;

/// The dynamic ranges of the store's networks.
pub fn ranges(store: &Store) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    store
        .read(|r| r.all::<Network>())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.range)
        .collect()
}

/// What this member is, serves and holds now.
pub struct Inputs<'a> {
    pub state_dir: &'a Path,
    pub me: MemberId,
    pub seq: u64,
    pub uptime_secs: u64,
    pub store: &'a Store,
    pub share: &'a Share,
    pub services: &'a [Service],
    /// Unix seconds, for which leases are active.
    pub now_secs: u64,
}

pub fn summary(i: &Inputs) -> Summary {
    let serves = |name: &str| i.services.iter().any(|s| s.name == name);
    let dhcp = serves("dhcp").then(|| {
        let owned = i.share.owned(&ranges(i.store), COUNT_LIMIT);
        let leases = i
            .store
            .read(|r| r.all::<Lease>())
            .unwrap_or_default()
            .iter()
            .filter(|l| l.holds(i.now_secs) && i.share.owner(l.ip) == i.me.id)
            .count() as u64;
        DhcpShare {
            addresses: owned.get(&i.me.id).copied().unwrap_or(0),
            leases,
        }
    });
    // The NFS server rewrites this file every few seconds (`nfs::serve`).
    let nfs_clients = serves("nfs")
        .then(|| crate::nfs::serve::read_status(&i.state_dir.join("nfs").join("clients.json")))
        .and_then(Result::ok)
        .map(|s| s.clients.len() as u64);
    let (blobs, blob_bytes) = count_blobs(&Blobs::new(i.state_dir));
    let newest_own = i
        .store
        .read(|r| r.version_vector())
        .ok()
        .and_then(|vv| vv.get(&i.me.id).copied());
    Summary {
        id: i.me.id,
        addr: i.me.addr,
        epoch: i.me.epoch,
        seq: i.seq,
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: i.uptime_secs,
        dhcp,
        services: i.services.to_vec(),
        nfs_clients,
        blobs,
        blob_bytes,
        newest_own,
    }
}

/// Blob files (named by their hash) and their bytes; fetches in progress are not counted.
fn count_blobs(blobs: &Blobs) -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir(blobs.dir()) else {
        return (0, 0);
    };
    let (mut n, mut bytes) = (0, 0);
    for entry in dir.flatten().take(MAX_BLOBS) {
        let name = entry.file_name();
        let is_blob = name
            .to_str()
            .is_some_and(|s| blobs.path(&s.to_string()).is_some());
        if let (true, Ok(meta)) = (is_blob, entry.metadata()) {
            n += 1;
            bytes += meta.len();
        }
    }
    (n, bytes)
}
