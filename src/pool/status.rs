//! What `drover pool status` shows: the types of `<state>/pool/status.json`, which the pool
//! task rewrites (write + rename) and `GET /api/v1/pool` and `pool status --json` return as
//! they are, and reading and writing that file.
//!
//! Not here: what the terms mean (`report`), building a status (`tick`), rendering it as
//! tables (`show`).

use super::report::Lag;
use super::summary::Summary;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// What `drover pool status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub me: MemberStatus,
    /// Unix milliseconds of the last rewrite.
    pub updated_ms: u64,
    pub members: Vec<MemberStatus>,
    /// Datagrams dropped because their tag did not verify with the cluster key.
    pub unauthenticated: u64,
    /// The roster's member ids that own DHCP address shares (settled rows).
    #[serde(default)]
    pub roster: Vec<u64>,
    /// The roster's witnesses (`drover witness`): they vote in the majorities and own
    /// nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<u64>,
    /// Whether this member sees a strict majority of the roster (needed to take over a dead
    /// member's share or extend leases on another member's addresses).
    #[serde(default)]
    pub majority: bool,
    /// Stable changes of NFS layers answered before any other member had a copy.
    #[serde(default)]
    pub layers_unreplicated: u64,
    /// The floating service address, when configured, and who holds it.
    #[serde(default)]
    pub service_address: Option<ServiceAddress>,
    /// The start (unix seconds) of the DHCP recovery window this member was in, carried to
    /// its next start (`Shares::recovering_since`).
    #[serde(default)]
    pub recovering_since: Option<u64>,
}

/// The floating service address in `drover pool status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    pub addr: Ipv4Addr,
    /// The member that holds it (or takes it after its wait) as this member sees it; `None`
    /// when this member sees no majority.
    pub holder: Option<u64>,
    /// Whether this member holds it now.
    pub here: bool,
    /// How many times this member took it since it started.
    #[serde(default)]
    pub takeovers: u64,
}

/// Health, summary and lag of one member, besides its identity (see `report` for what the
/// terms mean).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDetail {
    /// When this member last heard from it (unix ms): an authenticated datagram or a
    /// completed exchange.
    #[serde(default)]
    pub last_heard_ms: Option<u64>,
    /// When this member saw it go down (unix ms), while it is down or left.
    #[serde(default)]
    pub down_since_ms: Option<u64>,
    /// What it serves, as it said itself; `None` until its summary arrived.
    #[serde(default)]
    pub summary: Option<Summary>,
    /// How old `summary` was at `updated_ms`.
    #[serde(default)]
    pub summary_age_ms: Option<u64>,
    /// How far this member's store may be behind it (not for this member itself).
    #[serde(default)]
    pub lag: Option<Lag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub addr: SocketAddrV4,
    pub id: u64,
    pub epoch: u64,
    /// `alive`, `suspect`, `down` or `left` (`report::health`).
    pub state: String,
    /// When this member last pulled the store from it successfully (unix ms): how far
    /// behind that member this one may be.
    #[serde(default)]
    pub last_sync_ms: Option<u64>,
    /// How many dynamic addresses of the store's networks it owns (its DHCP share); `None`
    /// when it is not on the roster (yet).
    #[serde(default)]
    pub addresses: Option<u64>,
    /// Its copies of the NFS layers of nodes this member serves (`None`: no link to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<LayerCounts>,
    /// `draining` (`drover pool drain`: its share not handed over yet, as this member sees
    /// it) or `drained` (handed over; `pool::drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
    /// A witness (`drover witness`): it votes and serves nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
    #[serde(flatten)]
    pub detail: MemberDetail,
}

/// Per member: what `pool status` shows about its copies of this member's NFS layers
/// (counted by `layers::Shipper`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerCounts {
    /// Jobs queued for it.
    pub pending: u64,
    /// Shipments it did not acknowledge (or that found its queue full) since this start.
    pub failed: u64,
    /// Nodes served here whose copy on it is not level.
    pub behind: u64,
}

/// `<state>/pool/status.json`.
pub fn status_file(state_dir: &Path) -> PathBuf {
    state_dir.join("pool").join("status.json")
}

/// Reads the status file.
pub fn read_status(state_dir: &Path) -> io::Result<Status> {
    let text = std::fs::read_to_string(status_file(state_dir))?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Rewrites the status file durably (a reader never sees half of it, and a crash leaves the
/// old or the new one: it carries the DHCP recovery window across restarts). Blocking.
pub fn write_status(state_dir: &Path, status: &Status) -> io::Result<()> {
    let file = status_file(state_dir);
    let dir = file.parent().unwrap_or(state_dir);
    let text = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    crate::durable::write(&file, &text, 0o644)
}
