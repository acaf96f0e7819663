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
//! Each rewrite also publishes a fresh summary of this member (`facts`, `summary`), which
//! every store exchange passes on; the status shows every member with its health, its
//! summary and its replication lag (`report`).
//!
//! On the same occasions it hands the services what they need from the pool ([`Links`]): the
//! DHCP tasks their `Share`, DHCP and HTTP the other live members (`Peers`) to list after
//! this one, `net::floating` whether to hold the service address (`floating`; renewed at
//! least every [`STATUS_EVERY`], and every second outside a pool, where this member
//! holds it alone).
//!
//! Not here: the protocol (`membership`), the exchanges (`replication`), the rules of
//! summaries, health and lag (`summary`, `report`).

use super::floating::{Decision, Floating, Seen};
use super::key::ClusterKey;
use super::layers::{LayerCounts, Receiver, Shipper};
use super::membership::{self, Effect, MemberId, Membership};
use super::peers::Peers;
use super::replication::{self, Summaries};
use super::report::{self, Lag, Ledger};
use super::shares::Shares;
use super::summary::{Service, Summary};
use crate::dhcp::Share;
use crate::store::model::PoolMember;
use crate::store::{Store, StoreError};
use foca::Timer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// The floating service address (`[pool] service-address`), for the status.
    pub service_address: Option<Ipv4Addr>,
    /// What this member serves where, for its summary.
    pub services: Vec<Service>,
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
    #[serde(flatten)]
    pub detail: MemberDetail,
}

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

use crate::clock::unix_ms;

/// What the pool task keeps current for the services.
pub struct Links {
    /// The DHCP share of this member.
    pub share: watch::Sender<Arc<Share>>,
    /// The other live members, which the boot path lists after this one.
    pub peers: watch::Sender<Arc<Peers>>,
    /// Whether this member holds the floating service address (`pool::floating`).
    pub floating: watch::Sender<Decision>,
    /// Where NFS layer changes are shipped (when NFS serves): told the live members.
    pub layers: Option<Arc<Shipper>>,
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
    let started = std::time::Instant::now();
    // A member that left a pool does not take the service address alone: the pool it left
    // still holds it.
    let mut was_member = false;
    loop {
        let key = loop {
            match ClusterKey::load_state(&state_dir) {
                Ok(Some(k)) => break k,
                Ok(None) => {
                    last_error.clear();
                    // Outside a pool this member holds the service address alone.
                    if !was_member {
                        links
                            .floating
                            .send_replace(Decision::solo(settings.member_id));
                    }
                }
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
        let summaries = Summaries::new(settings.member_id);
        tokio::spawn(replication::serve(
            listener,
            store.clone(),
            crate::image::Blobs::new(&state_dir),
            Arc::new(Receiver::new(&state_dir, settings.member_id)),
            key.clone(),
            summaries.clone(),
            token.clone(),
        ));
        let task = Task {
            state_dir: &state_dir,
            settings: &settings,
            store: &store,
            links: &links,
            summaries,
            started,
        };
        let left = member(&task, key, &socket, &shutdown).await;
        token.cancel();
        // Outside the pool, this member's DHCP serves the whole range again, alone.
        links
            .share
            .send_replace(Arc::new(Share::solo(settings.member_id)));
        links.peers.send_replace(Arc::new(Peers::default()));
        links.floating.send_replace(Decision::default());
        if let Some(l) = &links.layers {
            l.set_peers(None, &[]);
        }
        let left = left?;
        if !left {
            return Ok(());
        }
        was_member = true;
        if settings.service_address.is_some() {
            tracing::warn!("pool: left the pool; this member no longer takes the service address (remove `pool.service-address` from its configuration before it restarts outside the pool)");
        }
    }
}

/// What one membership works with.
struct Task<'a> {
    state_dir: &'a Path,
    settings: &'a Settings,
    store: &'a Arc<Store>,
    links: &'a Links,
    summaries: Summaries,
    /// When the pool task started (for uptimes).
    started: std::time::Instant,
}

/// What the pool task records for the status besides membership.
#[derive(Default)]
struct Heard {
    /// The last authenticated datagram from each pool address (unix ms); the status also
    /// counts completed exchanges (the ledger) as hearing from a member.
    last: HashMap<SocketAddrV4, u64>,
    /// When each member incarnation was seen going down (unix ms).
    down_since: HashMap<MemberId, u64>,
    /// Summaries this member has published.
    published: u64,
}

/// One membership from key to leave. Returns `true` when the key went away (the task waits
/// for a new one), `false` at shutdown.
async fn member(
    task: &Task<'_>,
    key: ClusterKey,
    socket: &UdpSocket,
    shutdown: &CancellationToken,
) -> std::io::Result<bool> {
    let (state_dir, settings, store, links) =
        (task.state_dir, task.settings, task.store, task.links);
    let mut heard = Heard::default();
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
    let mut floating = Floating::new(settings.member_id);
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
                Ok((n, from)) => {
                    let refused = m.refusals().unauthenticated;
                    let effects = m.handle_datagram(&buf[..n]);
                    if let (std::net::SocketAddr::V4(from), true) =
                        (from, m.refusals().unauthenticated == refused)
                    {
                        heard.last.insert(from, unix_ms());
                    }
                    effects
                }
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
                publish(&mut shares, &mut floating, &m, &synced, store, links);
                hand_layers(links, &key, &m);
                publish_summary(task, &mut heard, &m);
                write_status(task, &m, &synced, &heard, &shares);
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
                    let summaries = task.summaries.clone();
                    syncing = Some(tokio::spawn(async move {
                        match replication::pull(peer, store.clone(), &key).await {
                            Ok(p) => {
                                if p.merged > 0 {
                                    tracing::debug!(%peer, rows = p.merged, "pool: merged rows");
                                }
                                if let Ok(mut s) = synced.lock() {
                                    s.completed(peer, unix_ms(), p.carried, p.merged);
                                }
                            }
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "pool: exchange failed");
                                if let Ok(mut s) = synced.lock() {
                                    s.failed(peer, unix_ms());
                                }
                                return;
                            }
                        }
                        if let Err(e) = replication::exchange_summaries(peer, &key, &summaries).await {
                            tracing::debug!(%peer, error = %e, "pool: summary exchange failed");
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
                    heard.down_since.remove(&who);
                    changed = true;
                }
                Effect::Down(who) => {
                    tracing::warn!(member = %who.addr, id = who.id, "pool: member down");
                    heard.down_since.insert(who, unix_ms());
                    changed = true;
                }
                Effect::Rejoined(who) => {
                    tracing::warn!(as_ = %who.addr, epoch = who.epoch, "pool: the others had declared this member down; rejoined");
                    changed = true;
                }
            }
        }
        if changed {
            publish(&mut shares, &mut floating, &m, &synced, store, links);
            hand_layers(links, &key, &m);
            write_status(task, &m, &synced, &heard, &shares);
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

/// Recomputes the DHCP share, the live peers and the service address decision and hands
/// them to the services.
fn publish(
    shares: &mut Shares,
    floating: &mut Floating,
    m: &Membership,
    synced: &Synced,
    store: &Store,
    links: &Links,
) {
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
            if let Some(at) = synced.last_ms(&id.addr) {
                shares.pulled(id.id, at);
            }
        }
    }
    let seen: Vec<Seen> = alive
        .iter()
        .map(|id| Seen {
            id: id.id,
            epoch: id.epoch,
        })
        .collect();
    let decision = floating.decide(&roster, m.me().epoch, &seen, unix_ms());
    let was = links.floating.send_replace(decision);
    if was.holder != decision.holder {
        tracing::info!(holder = ?decision.holder, "pool: service address holder changed");
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

/// Tells the layer shipper the live members.
fn hand_layers(links: &Links, key: &ClusterKey, m: &Membership) {
    if let Some(l) = &links.layers {
        let live: Vec<SocketAddrV4> = m
            .members()
            .into_iter()
            .filter(|(_, s)| *s == foca::State::Alive)
            .map(|(id, _)| id.addr)
            .collect();
        l.set_peers(Some(key), &live);
    }
}

/// The exchanges with each peer: when it was last pulled from successfully, what that carried.
type Synced = Arc<Mutex<Ledger>>;

/// Makes this member's summary afresh and publishes it.
fn publish_summary(task: &Task, heard: &mut Heard, m: &Membership) {
    heard.published += 1;
    let share = task.links.share.borrow().clone();
    // The service address goes with NFS, on whichever member holds it now.
    let mut services = task.settings.services.clone();
    let decision = *task.links.floating.borrow();
    if let (Some(addr), true) = (task.settings.service_address, decision.holds_at(unix_ms())) {
        if let Some(nfs) = services.iter().find(|s| s.name == "nfs").cloned() {
            services.push(Service {
                addrs: vec![addr],
                floating: true,
                ..nfs
            });
        }
    }
    let summary = super::facts::summary(&super::facts::Inputs {
        state_dir: task.state_dir,
        me: m.me(),
        seq: heard.published,
        uptime_secs: task.started.elapsed().as_secs(),
        store: task.store,
        share: &share,
        services: &services,
        now_secs: unix_ms() / 1000,
    });
    task.summaries.publish(summary);
}

fn write_status(task: &Task, m: &Membership, synced: &Synced, heard: &Heard, shares: &Shares) {
    let (state_dir, store) = (task.state_dir, task.store);
    let share = task.links.share.borrow().clone();
    let decision = *task.links.floating.borrow();
    let (layers, unreplicated) = task
        .links
        .layers
        .as_ref()
        .map(|l| l.counts())
        .unwrap_or_default();
    let synced = synced.lock().map(|s| s.clone()).unwrap_or_default();
    let owned = share.owned(&super::facts::ranges(store), super::facts::COUNT_LIMIT);
    let roster = store.read(|r| r.all::<PoolMember>()).unwrap_or_default();
    let vv = store.read(|r| r.version_vector()).unwrap_or_default();
    let member_status = |id: MemberId, state: &str, peer: bool| {
        let summary = task.summaries.get(id.id);
        let exchanges = synced.get(&id.addr).cloned();
        let last_heard_ms = heard
            .last
            .get(&id.addr)
            .copied()
            .max(exchanges.as_ref().and_then(|e| e.last_ms));
        let newest_there = summary.as_ref().and_then(|(s, _)| s.newest_own);
        MemberStatus {
            addr: id.addr,
            id: id.id,
            epoch: id.epoch,
            state: state.to_string(),
            last_sync_ms: exchanges.as_ref().and_then(|e| e.last_ms),
            addresses: owned.get(&id.id).copied(),
            layers: layers.get(&id.addr).cloned(),
            detail: MemberDetail {
                last_heard_ms: last_heard_ms.filter(|_| peer),
                down_since_ms: heard.down_since.get(&id).copied(),
                summary_age_ms: summary.as_ref().map(|(_, age)| *age),
                lag: peer.then(|| {
                    Lag::new(
                        exchanges.unwrap_or_default(),
                        vv.get(&id.id).copied(),
                        newest_there,
                    )
                }),
                summary: summary.map(|(s, _)| s),
            },
        }
    };
    // One row per member: its newest incarnation as membership knows it, then roster members
    // membership has not heard of since this member started.
    let mut newest: HashMap<u64, (MemberId, foca::State)> = HashMap::new();
    for (id, st) in m.members() {
        if id.id == m.me().id {
            continue;
        }
        let e = newest.entry(id.id).or_insert((id, st));
        if id.epoch > e.0.epoch {
            *e = (id, st);
        }
    }
    let on_roster = |id: u64| roster.iter().any(|r| r.id == id);
    let mut members: Vec<MemberStatus> = newest
        .values()
        .map(|(id, st)| member_status(*id, report::health(Some(*st), on_roster(id.id)), true))
        .collect();
    for r in &roster {
        if r.id != m.me().id && !newest.contains_key(&r.id) {
            let id = MemberId {
                addr: r.addr,
                id: r.id,
                epoch: 0,
            };
            members.push(member_status(id, report::health(None, true), true));
        }
    }
    members.sort_by_key(|s| (s.addr, s.epoch));
    let now_ms = unix_ms();
    let status = Status {
        me: member_status(m.me(), "alive", false),
        updated_ms: now_ms,
        members,
        unauthenticated: m.refusals().unauthenticated,
        roster: share.roster.clone(),
        majority: share.majority(),
        service_address: task.settings.service_address.map(|addr| ServiceAddress {
            addr,
            holder: decision.holder,
            here: decision.holds_at(now_ms),
        }),
        layers_unreplicated: unreplicated,
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
