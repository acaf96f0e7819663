//! The tokio shell of the pool: membership on one UDP socket on the member's pool address
//! (with the timers foca asks for), store replication over TCP on the same address and port
//! (`replication`: one exchange with a random live member every second, and the listener
//! that answers others), and the status file `drover pool status` reads.
//!
//! The task runs whenever `[pool] enabled` (the default) and follows the state directory, so
//! the admin commands work against a running server: it idles until `<state>/cluster.key`
//! exists (`drover pool init` / `join`), then joins through the seeds (`[pool] seeds` and
//! `<state>/pool/seeds`, re-read every [`ANNOUNCE_EVERY`] while it knows no other member), and
//! leaves the pool gracefully when the key disappears (`drover pool leave`) or at shutdown.
//!
//! `<state>/pool/status.json` is rewritten (write + rename) on every membership change and
//! every [`STATUS_EVERY`]; its `updated_ms` tells the reader whether the server is alive.
//!
//! On the same occasions it hands the services what they need from the pool ([`Links`]): the
//! DHCP tasks their `Share`, DHCP and HTTP the other live members (`Peers`) to list after
//! this one.
//!
//! Not here: the protocol (`membership`), anything carried besides liveness.

use super::key::ClusterKey;
use super::membership::{self, Effect, MemberId, Membership};
use super::peers::Peers;
use super::replication;
use super::shares::Shares;
use crate::dhcp::Share;
use crate::store::model::{Network, PoolMember};
use crate::store::{Store, StoreError};
use foca::Timer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the seeds are asked again while no other member is known.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
/// How often the status file is rewritten without a change.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How often an idle task looks for a cluster key.
const KEY_POLL: Duration = Duration::from_secs(1);
/// Default UDP port of pool traffic.
pub const DEFAULT_PORT: u16 = 7946;

/// Start-up settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The address other members reach this one at (one of its interface addresses).
    pub addr: SocketAddrV4,
    /// Members to join through, besides `<state>/pool/seeds`.
    pub seeds: Vec<SocketAddrV4>,
    /// The store's member id.
    pub member_id: u64,
    /// The DHCP lease time in seconds (how long a recovery of address shares lasts).
    pub lease_time: u64,
}

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
    /// Whether this member sees a strict majority of the roster (needed to take over a dead
    /// member's share or extend leases on another member's addresses).
    #[serde(default)]
    pub majority: bool,
    /// The start (unix seconds) of the DHCP recovery window this member was in, carried to
    /// its next start (`Shares::recovering_since`).
    #[serde(default)]
    pub recovering_since: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub addr: SocketAddrV4,
    pub id: u64,
    pub epoch: u64,
    /// `alive`, `suspect` or `down`.
    pub state: String,
    /// When this member last pulled the store from it successfully (unix ms): how far
    /// behind that member this one may be.
    #[serde(default)]
    pub last_sync_ms: Option<u64>,
    /// How many dynamic addresses of the store's networks it owns (its DHCP share); `None`
    /// when it is not on the roster (yet).
    #[serde(default)]
    pub addresses: Option<u64>,
}

/// At most this many addresses are counted for the status's address shares.
const COUNT_LIMIT: u64 = 1 << 20;

/// `<state>/pool/`.
pub fn pool_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pool")
}

/// The seeds `drover pool join` recorded, one `IP:PORT` per line.
pub fn seeds_file(state_dir: &Path) -> PathBuf {
    pool_dir(state_dir).join("seeds")
}

pub fn status_file(state_dir: &Path) -> PathBuf {
    pool_dir(state_dir).join("status.json")
}

/// `IP` (default port) or `IP:PORT`.
pub fn parse_seed(s: &str) -> Option<SocketAddrV4> {
    let s = s.trim();
    s.parse::<SocketAddrV4>()
        .ok()
        .or_else(|| Some(SocketAddrV4::new(s.parse::<Ipv4Addr>().ok()?, DEFAULT_PORT)))
}

/// The recorded seeds (unparsable lines are skipped; `pool join` never writes them).
pub fn recorded_seeds(state_dir: &Path) -> Vec<SocketAddrV4> {
    std::fs::read_to_string(seeds_file(state_dir))
        .map(|t| t.lines().filter_map(parse_seed).collect())
        .unwrap_or_default()
}

/// Reads the status file.
pub fn read_status(state_dir: &Path) -> std::io::Result<Status> {
    let text = std::fs::read_to_string(status_file(state_dir))?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the pool task keeps current for the services.
pub struct Links {
    /// The DHCP share of this member.
    pub share: watch::Sender<Arc<Share>>,
    /// The other live members, which the boot path lists after this one.
    pub peers: watch::Sender<Arc<Peers>>,
}

/// Runs pool membership until `shutdown` is cancelled.
pub async fn run(
    state_dir: PathBuf,
    settings: Settings,
    store: Arc<Store>,
    links: Links,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut last_error = String::new();
    loop {
        let key = loop {
            match ClusterKey::load_state(&state_dir) {
                Ok(Some(k)) => break k,
                Ok(None) => last_error.clear(),
                // Once per distinct problem, not once per poll.
                Err(e) if e.to_string() != last_error => {
                    tracing::warn!(error = %e, "pool: the cluster key is unusable; not joining");
                    last_error = e.to_string();
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(KEY_POLL) => {}
            }
        };
        let socket = UdpSocket::bind(settings.addr).await?;
        let listener = tokio::net::TcpListener::bind(settings.addr).await?;
        let token = shutdown.child_token();
        tokio::spawn(replication::serve(
            listener,
            store.clone(),
            crate::image::Blobs::new(&state_dir),
            key.clone(),
            token.clone(),
        ));
        let left = member(
            &state_dir, &settings, key, &socket, &store, &links, &shutdown,
        )
        .await;
        token.cancel();
        // Outside the pool, this member's DHCP serves the whole range again, alone.
        links
            .share
            .send_replace(Arc::new(Share::solo(settings.member_id)));
        links.peers.send_replace(Arc::new(Peers::default()));
        let left = left?;
        if !left {
            return Ok(());
        }
    }
}

/// One membership from key to leave. Returns `true` when the key went away (the task waits
/// for a new one), `false` at shutdown.
async fn member(
    state_dir: &Path,
    settings: &Settings,
    key: ClusterKey,
    socket: &UdpSocket,
    store: &Arc<Store>,
    links: &Links,
    shutdown: &CancellationToken,
) -> std::io::Result<bool> {
    let me = MemberId {
        addr: settings.addr,
        id: settings.member_id,
        epoch: unix_ms(),
    };
    let founder = settings.seeds.is_empty() && recorded_seeds(state_dir).is_empty();
    if let Err(e) = enter_roster(store, settings, founder) {
        tracing::error!(error = %e, "pool: cannot write this member's roster row");
    }
    let last = read_status(state_dir).ok();
    let mut shares = Shares::new(
        settings.member_id,
        settings.lease_time,
        me.epoch,
        last.as_ref().map(|s| s.updated_ms),
        last.and_then(|s| s.recovering_since),
    );
    let mut m = Membership::new(me, key.clone(), membership::config(3), me.epoch ^ me.id);
    let mut rng = StdRng::seed_from_u64(me.epoch ^ me.id.rotate_left(17));
    let synced: Synced = Arc::default();
    let mut sync_tick = tokio::time::interval(replication::SYNC_EVERY);
    let mut syncing: Option<tokio::task::JoinHandle<()>> = None;
    tracing::info!(addr = %me.addr, "pool: member started");
    let mut timers: Vec<(Instant, Timer<MemberId>)> = Vec::new();
    let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
    let mut status = tokio::time::interval(STATUS_EVERY);
    let mut buf = vec![0u8; 65536];
    let mut result = None;
    while result.is_none() {
        let next_timer = timers
            .iter()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let effects = tokio::select! {
            _ = shutdown.cancelled() => {
                result = Some(false);
                m.leave()
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => m.handle_datagram(&buf[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "pool: receive error");
                    Vec::new()
                }
            },
            _ = tokio::time::sleep_until(next_timer) => {
                let now = Instant::now();
                let (due, rest): (Vec<_>, Vec<_>) = timers.drain(..).partition(|(at, _)| *at <= now);
                timers = rest;
                due.into_iter().flat_map(|(_, t)| m.handle_timer(t)).collect()
            }
            _ = announce.tick() => {
                if ClusterKey::load_state(state_dir).ok().flatten().is_none() {
                    tracing::info!("pool: the cluster key was removed; leaving the pool");
                    result = Some(true);
                    m.leave()
                } else if m.members().iter().all(|(_, s)| *s == foca::State::Down) {
                    let mut seeds = settings.seeds.clone();
                    seeds.extend(recorded_seeds(state_dir));
                    seeds.retain(|s| *s != me.addr);
                    seeds.dedup();
                    seeds.into_iter().flat_map(|s| m.announce(s)).collect()
                } else {
                    Vec::new()
                }
            }
            _ = status.tick() => {
                publish(&mut shares, &m, &synced, store, links);
                write_status(state_dir, &m, &synced, store, &links.share.borrow(), &shares);
                Vec::new()
            }
            _ = sync_tick.tick() => {
                let live: Vec<SocketAddrV4> = m
                    .members()
                    .iter()
                    .filter(|(_, s)| *s == foca::State::Alive)
                    .map(|(id, _)| id.addr)
                    .collect();
                let idle = syncing.as_ref().is_none_or(|h| h.is_finished());
                if let (true, false) = (idle, live.is_empty()) {
                    let peer = live[rng.random_range(0..live.len())];
                    let (store, key, synced) = (store.clone(), key.clone(), synced.clone());
                    let blobs = crate::image::Blobs::new(state_dir);
                    syncing = Some(tokio::spawn(async move {
                        match replication::pull(peer, store.clone(), &key).await {
                            Ok(rows) => {
                                if rows > 0 {
                                    tracing::debug!(%peer, rows, "pool: merged rows");
                                }
                                if let Ok(mut s) = synced.lock() {
                                    s.insert(peer, unix_ms());
                                }
                            }
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "pool: exchange failed");
                                return;
                            }
                        }
                        match replication::fetch_missing_blobs(peer, store, blobs, &key).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(%peer, blobs = n, "pool: fetched image files"),
                            Err(e) => tracing::warn!(%peer, error = %e, "pool: fetching image files failed"),
                        }
                    }));
                }
                Vec::new()
            }
        };
        let mut changed = false;
        for e in effects {
            match e {
                Effect::Send(dst, data) => {
                    // Best effort: SWIM tolerates loss; a full buffer is loss.
                    let _ = socket.try_send_to(&data, dst.into());
                }
                Effect::Schedule(after, t) => timers.push((Instant::now() + after, t)),
                Effect::Up(who) => {
                    tracing::info!(member = %who.addr, id = who.id, "pool: member up");
                    changed = true;
                }
                Effect::Down(who) => {
                    tracing::warn!(member = %who.addr, id = who.id, "pool: member down");
                    changed = true;
                }
                Effect::Rejoined(who) => {
                    tracing::warn!(as_ = %who.addr, epoch = who.epoch, "pool: the others had declared this member down; rejoined");
                    changed = true;
                }
            }
        }
        if changed {
            publish(&mut shares, &m, &synced, store, links);
            write_status(
                state_dir,
                &m,
                &synced,
                store,
                &links.share.borrow(),
                &shares,
            );
        }
    }
    if let Some(h) = syncing {
        h.abort();
    }
    let _ = std::fs::remove_file(status_file(state_dir));
    Ok(result == Some(true))
}

/// Writes this member's roster row unless it is there. A founder (no seeds: `pool init`)
/// counts at once; a joiner's row settles first, so that every member has it before the
/// joiner owns addresses.
fn enter_roster(store: &Store, settings: &Settings, founder: bool) -> Result<(), StoreError> {
    store.write(|w| {
        let key = PoolMember::key_of(settings.member_id);
        let old = w.get::<PoolMember>(&key)?;
        if old.as_ref().is_some_and(|o| o.addr == settings.addr) {
            return Ok(());
        }
        let now = unix_ms();
        let joined_ms = match old {
            Some(o) => o.joined_ms,
            None if founder => now.saturating_sub(PoolMember::SETTLE_MS + PoolMember::HANDOFF_MS),
            None => now,
        };
        w.put(&PoolMember {
            id: settings.member_id,
            addr: settings.addr,
            joined_ms,
        })
    })
}

/// Recomputes the DHCP share and the live peers and hands them to the services.
fn publish(shares: &mut Shares, m: &Membership, synced: &Synced, store: &Store, links: &Links) {
    let roster = match store.read(|r| r.all::<PoolMember>()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "pool: cannot read the roster; DHCP shares unchanged");
            return;
        }
    };
    let alive: Vec<MemberId> = m
        .members()
        .into_iter()
        .filter(|(_, s)| *s == foca::State::Alive)
        .map(|(id, _)| id)
        .collect();
    if let Ok(synced) = synced.lock() {
        for id in &alive {
            if let Some(at) = synced.get(&id.addr) {
                shares.pulled(id.id, *at);
            }
        }
    }
    let alive: Vec<u64> = alive.iter().map(|id| id.id).collect();
    let peers = Peers::live(m.me().id, &roster, &alive);
    links.peers.send_if_modified(|old| {
        let changed = **old != peers;
        if changed {
            tracing::info!(others = ?peers.others, "pool: live members for the boot path changed");
            *old = Arc::new(peers);
        }
        changed
    });
    let next = shares.share(&roster, &alive, unix_ms());
    links.share.send_if_modified(|old| {
        let changed = **old != next;
        if changed {
            tracing::info!(
                roster = next.roster.len(),
                live = next.live.len(),
                majority = next.majority(),
                "pool: DHCP shares changed"
            );
            *old = Arc::new(next);
        }
        changed
    });
}

fn state_name(s: foca::State) -> &'static str {
    match s {
        foca::State::Alive => "alive",
        foca::State::Suspect => "suspect",
        foca::State::Down => "down",
    }
}

/// When each peer was last pulled from successfully.
type Synced = Arc<Mutex<HashMap<SocketAddrV4, u64>>>;

fn write_status(
    state_dir: &Path,
    m: &Membership,
    synced: &Synced,
    store: &Store,
    share: &Share,
    shares: &Shares,
) {
    let synced = synced.lock().map(|s| s.clone()).unwrap_or_default();
    let ranges: Vec<(Ipv4Addr, Ipv4Addr)> = store
        .read(|r| r.all::<Network>())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.range)
        .collect();
    let owned = share.owned(&ranges, COUNT_LIMIT);
    let member_status = |id: MemberId, state: &str, last_sync_ms: Option<u64>| MemberStatus {
        addr: id.addr,
        id: id.id,
        epoch: id.epoch,
        state: state.to_string(),
        last_sync_ms,
        addresses: owned.get(&id.id).copied(),
    };
    let mut members: Vec<MemberStatus> = m
        .members()
        .into_iter()
        .map(|(id, s)| member_status(id, state_name(s), synced.get(&id.addr).copied()))
        .collect();
    members.sort_by_key(|s| (s.addr, s.epoch));
    let now_ms = unix_ms();
    let status = Status {
        me: member_status(m.me(), "alive", None),
        updated_ms: now_ms,
        members,
        unauthenticated: m.refusals().unauthenticated,
        roster: share.roster.clone(),
        majority: share.majority(),
        recovering_since: shares.recovering_since(now_ms),
    };
    let dir = pool_dir(state_dir);
    let tmp = dir.join("status.json.tmp");
    let result = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&tmp, serde_json::to_vec_pretty(&status).unwrap_or_default()))
        .and_then(|()| std::fs::rename(&tmp, status_file(state_dir)));
    if let Err(e) = result {
        tracing::warn!(error = %e, "pool: cannot write the status file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_with_and_without_port() {
        assert_eq!(
            parse_seed("10.0.0.1"),
            Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), DEFAULT_PORT))
        );
        assert_eq!(
            parse_seed(" 10.0.0.1:9000 "),
            Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 9000))
        );
        assert_eq!(parse_seed("host:1"), None);
    }
}
