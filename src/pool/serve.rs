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
//! On every membership change and every [`STATUS_EVERY`] it runs a tick of the core
//! (`tick`): the facts are read (`facts::gather`), the share walk counted (`facts::count`) and
//! the status written in `spawn_blocking`, one step after the other, never on an async
//! worker; the membership loop goes on meanwhile and feeds the results to the core when they
//! arrive. A tick asked for while one runs follows it. The shell carries out the core's
//! actions: it hands the services what they need from the pool ([`Links`]): the DHCP tasks
//! their `Share`, DHCP and HTTP the other live members (`Peers`) to list after this one,
//! `net::floating` whether to hold the service address (decided at least every
//! [`STATUS_EVERY`] and renewed every `floating::RENEW_MS` while membership is unchanged, so
//! that a decision on an old view goes stale within `floating::FRESH_MS`), the
//! layer shipper the live members; it publishes this member's summary, which every exchange
//! passes on, and rewrites `<state>/pool/status.json` (`status`), whose `updated_ms` tells the
//! reader whether the server is alive.
//!
//! Not here: the protocol (`membership`), what a tick decides (`tick`), the exchanges
//! (`replication`), the rules of summaries, health and lag (`summary`, `report`).

use super::compact::Holders;
use super::facts;
use super::floating::{Decision, RENEW_MS};
use super::key::{random_bytes, ClusterKey, KeyError, Keyring, Rekey};
use super::layers::{Receiver, Shipper};
use super::membership::{self, Effect, MemberId, Membership};
use super::peers::Peers;
use super::replication::{self, Listener, Pulled, Summaries};
use super::status::{read_status, status_file, write_status};
use super::summary::Service;
use super::tick::{Action, Counts, Event, Facts, Reclaim, Report, Tick, TickSettings};
use crate::dhcp::Share;
use crate::nfs::state::Reclaimers;
use crate::store::model::PoolMember;
use crate::store::{Store, StoreError};
use foca::Timer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
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

/// `<state>/pool/`.
pub fn pool_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pool")
}

/// The seeds `drover pool join` recorded, one `IP:PORT` per line.
pub fn seeds_file(state_dir: &Path) -> PathBuf {
    pool_dir(state_dir).join("seeds")
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
    /// The NFS server's clients (when NFS serves), which it publishes.
    pub nfs_clients: Option<watch::Receiver<Arc<Reclaimers>>>,
    /// Whose NFS clients may reclaim after this member took the service address: set just
    /// before the decision that takes it is handed on.
    pub took: watch::Sender<Reclaim>,
    /// What the other live members have (their summaries' version vectors), for change-feed
    /// compaction (`compact`); nobody outside the pool.
    pub holders: watch::Sender<Holders>,
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
        let ring = loop {
            match load_keyring(&state_dir).await {
                Ok(Some(k)) => break k,
                Ok(None) => {
                    last_error.clear();
                    // Outside a pool nobody else needs this store's change feed.
                    links.holders.send_replace(Holders::default());
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
        let (keys_tx, keys) = watch::channel(Arc::from(ring.accepted(unix_ms())));
        tokio::spawn(replication::serve(
            listener,
            Listener {
                store: store.clone(),
                state_dir: state_dir.clone(),
                layers: Arc::new(Receiver::new(&state_dir, settings.member_id)),
                keys,
                summaries: summaries.clone(),
            },
            token.clone(),
        ));
        let task = Task {
            state_dir: &state_dir,
            settings: &settings,
            store: &store,
            links: &links,
            summaries,
            started,
            layer_peers: std::sync::Mutex::default(),
        };
        let left = member(&task, ring, keys_tx, &socket, &shutdown).await;
        token.cancel();
        // Outside the pool, this member's DHCP serves the whole range again, alone.
        links
            .share
            .send_replace(Arc::new(Share::solo(settings.member_id)));
        links.peers.send_replace(Arc::new(Peers::default()));
        links.holders.send_replace(Holders::default());
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

/// `Keyring::load_state`, off the async workers.
async fn load_keyring(state_dir: &Path) -> Result<Option<Keyring>, KeyError> {
    let dir = state_dir.to_path_buf();
    tokio::task::spawn_blocking(move || Keyring::load_state(&dir))
        .await
        .unwrap_or_else(|e| {
            Err(KeyError::Read {
                path: ClusterKey::path(state_dir),
                source: std::io::Error::other(e),
            })
        })
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
    /// The live members the layer shipper was last told, told again when the key changes.
    layer_peers: std::sync::Mutex<Vec<SocketAddrV4>>,
}

/// The tick's work off the async workers, reported back to the membership loop.
enum Done {
    Facts(Result<Facts, StoreError>),
    Counts(Counts),
    /// The status file was written (or could not be): the tick is over.
    Written,
}

/// One membership from key to leave. Returns `true` when the key went away (the task waits
/// for a new one), `false` at shutdown.
async fn member(
    task: &Task<'_>,
    mut ring: Keyring,
    keys: watch::Sender<Arc<[ClusterKey]>>,
    socket: &UdpSocket,
    shutdown: &CancellationToken,
) -> std::io::Result<bool> {
    let (state_dir, settings, store) = (task.state_dir, task.settings, task.store);
    let me = MemberId {
        addr: settings.addr,
        id: settings.member_id,
        epoch: unix_ms(),
        witness: false,
    };
    let last = {
        let (dir, store, settings) = (state_dir.to_path_buf(), store.clone(), settings.clone());
        tokio::task::spawn_blocking(move || {
            let founder = settings.seeds.is_empty() && recorded_seeds(&dir).is_empty();
            if let Err(e) = enter_roster(&store, &settings, founder) {
                tracing::error!(error = %e, "pool: cannot write this member's roster row");
            }
            read_status(&dir).ok()
        })
        .await
        .map_err(std::io::Error::other)?
    };
    let mut core = Tick::new(
        TickSettings {
            me,
            lease_time: settings.lease_time,
            service_address: settings.service_address,
            services: settings.services.clone(),
        },
        last.as_ref().map(|s| s.updated_ms),
        last.and_then(|s| s.recovering_since),
    );
    let mut key = ring.send(unix_ms()).clone();
    let mut m = Membership::new(
        me,
        &key,
        membership::config(3),
        me.epoch ^ me.id,
        random_bytes()?,
    );
    let mut rng = StdRng::seed_from_u64(me.epoch ^ me.id.rotate_left(17));
    let mut sync_tick = tokio::time::interval(replication::SYNC_EVERY);
    let mut syncing: Option<tokio::task::JoinHandle<()>> = None;
    // Exchanges report their pulls, the tick's blocking work its results; one of each runs at
    // a time, so the channels never fill.
    let (events_tx, mut events) = mpsc::channel::<Event>(4);
    let (done_tx, mut done) = mpsc::channel::<Done>(4);
    // The tick's blocking work in progress, and whether another tick was asked for meanwhile.
    let mut work: Option<tokio::task::JoinHandle<()>> = None;
    let mut again = false;
    tracing::info!(addr = %me.addr, "pool: member started");
    let mut timers: Vec<(Instant, Timer<MemberId>)> = Vec::new();
    let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
    let mut status = tokio::time::interval(STATUS_EVERY);
    m.set_keys(&key, &ring.accepted(unix_ms()));
    let mut key_poll = tokio::time::interval(KEY_POLL);
    let mut renew = tokio::time::interval(Duration::from_millis(RENEW_MS));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The members that have the pending rekey, and the task passing it on.
    let offered: Arc<std::sync::Mutex<(Option<Rekey>, Vec<SocketAddrV4>)>> = Arc::default();
    let mut offering: Option<tokio::task::JoinHandle<()>> = None;
    let mut buf = vec![0u8; 65536];
    let mut result = None;
    while result.is_none() {
        let next_timer = timers
            .iter()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut tick_now = false;
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
                        core.handle_event(unix_ms(), Event::Heard(from));
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
                let dir = state_dir.to_path_buf();
                let look = tokio::task::spawn_blocking(move || {
                    (ClusterKey::load_state(&dir), recorded_seeds(&dir))
                });
                let alone = m.members().iter().all(|(_, s)| *s == foca::State::Down);
                match look.await {
                    // An unusable key counts as gone, as at start.
                    Ok((Ok(None) | Err(_), _)) => {
                        tracing::info!("pool: the cluster key was removed; leaving the pool");
                        result = Some(true);
                        m.leave()
                    }
                    Ok((_, recorded)) if alone => {
                        let mut seeds = settings.seeds.clone();
                        seeds.extend(recorded);
                        seeds.retain(|s| *s != me.addr);
                        seeds.dedup();
                        seeds.into_iter().flat_map(|s| m.announce(s)).collect()
                    }
                    _ => Vec::new(),
                }
            }
            _ = status.tick() => {
                tick_now = true;
                Vec::new()
            }
            _ = renew.tick() => {
                match core.renew(unix_ms(), &m.members()) {
                    Some(decision) => {
                        task.links.floating.send_replace(decision);
                    }
                    // Membership changed since the decision: it goes stale unless a tick
                    // renews it.
                    None => tick_now = true,
                }
                Vec::new()
            }
            _ = key_poll.tick() => {
                if let Some(new) = follow_rekey(task.state_dir, &ring).await {
                    ring = new;
                }
                let now = unix_ms();
                let accepted = ring.accepted(now);
                m.set_keys(ring.send(now), &accepted);
                keys.send_if_modified(|k| {
                    let changed = **k != *accepted;
                    if changed {
                        *k = Arc::from(accepted);
                    }
                    changed
                });
                if *ring.send(now) != key {
                    key = ring.send(now).clone();
                    tracing::info!("pool: sending with the new cluster key");
                    if let Some(l) = &task.links.layers {
                        l.set_peers(Some(&key), &lock(&task.layer_peers));
                    }
                }
                let idle = offering.as_ref().is_none_or(|h| h.is_finished());
                if let (Some(rekey), true) = (ring.rekey.clone(), idle) {
                    let live = live_members(&m);
                    offering = Some(tokio::spawn(offer_rekey(
                        ring.current.clone(),
                        rekey,
                        live,
                        offered.clone(),
                    )));
                }
                Vec::new()
            }
            Some(event) = events.recv() => {
                core.handle_event(unix_ms(), event);
                Vec::new()
            }
            Some(d) = done.recv() => {
                let next = match d {
                    Done::Facts(Ok(facts)) => {
                        let summaries = &task.summaries;
                        let actions = core.handle_facts(
                            unix_ms(),
                            &m.members(),
                            &|id| summaries.get(id),
                            facts,
                        );
                        carry_out(task, &key, actions, &done_tx)
                    }
                    Done::Facts(Err(e)) => {
                        tracing::warn!(
                            error = %e,
                            "pool: cannot read the store; DHCP shares unchanged"
                        );
                        None
                    }
                    Done::Counts(counts) => {
                        let (layers, unreplicated) = task
                            .links
                            .layers
                            .as_ref()
                            .map(|l| l.counts())
                            .unwrap_or_default();
                        let nfs_clients =
                            task.links.nfs_clients.as_ref().map(|c| c.borrow().clone());
                        let summaries = &task.summaries;
                        let report = Report {
                            counts,
                            unauthenticated: m.refusals().unauthenticated,
                            layers: (layers, unreplicated),
                            nfs_clients,
                            uptime_secs: task.started.elapsed().as_secs(),
                            summary_of: &|id| summaries.get(id),
                        };
                        let actions = core.handle_counts(unix_ms(), report);
                        // What the live members have, from their summaries (compaction).
                        let live = m.members();
                        let holders = Holders::from_summaries(
                            live.iter()
                                .filter(|(id, s)| *s == foca::State::Alive && !id.witness)
                                .map(|(id, _)| summaries.get(id.id).map(|(s, age)| (s.has, age))),
                        );
                        task.links.holders.send_replace(holders);
                        carry_out(task, &key, actions, &done_tx)
                    }
                    Done::Written => None,
                };
                work = next;
                if work.is_none() && std::mem::take(&mut again) {
                    tick_now = true;
                }
                Vec::new()
            }
            _ = sync_tick.tick() => {
                let live = live_members(&m);
                let idle = syncing.as_ref().is_none_or(|h| h.is_finished());
                if let (true, false) = (idle, live.is_empty()) {
                    let peer = live[rng.random_range(0..live.len())];
                    let events = events_tx.clone();
                    // At most one exchange runs: its one report always finds room.
                    let report = move |pulled: Option<Pulled>| {
                        let _ = events.try_send(match pulled {
                            Some(Pulled { carried, merged }) => {
                                Event::Pulled { peer, carried, merged }
                            }
                            None => Event::PullFailed(peer),
                        });
                    };
                    syncing = Some(tokio::spawn(replication::exchange(
                        peer,
                        store.clone(),
                        crate::image::Blobs::new(state_dir),
                        key.clone(),
                        task.summaries.clone(),
                        report,
                    )));
                }
                Vec::new()
            }
        };
        for e in effects {
            match e {
                Effect::Send(dst, data) => {
                    // Best effort: SWIM tolerates loss; a full buffer is loss.
                    let _ = socket.try_send_to(&data, dst.into());
                }
                Effect::Schedule(after, t) => timers.push((Instant::now() + after, t)),
                Effect::Up(who) => {
                    tracing::info!(member = %who.addr, id = who.id, "pool: member up");
                    core.handle_event(unix_ms(), Event::Up(who));
                    tick_now = true;
                }
                Effect::Down(who) => {
                    tracing::warn!(member = %who.addr, id = who.id, "pool: member down");
                    core.handle_event(unix_ms(), Event::Down(who));
                    tick_now = true;
                }
                Effect::Rejoined(who) => {
                    tracing::warn!(as_ = %who.addr, epoch = who.epoch, "pool: the others had declared this member down; rejoined");
                    core.handle_event(unix_ms(), Event::Rejoined(who));
                    tick_now = true;
                }
            }
        }
        match (tick_now, &work) {
            (true, None) => work = Some(gather(task, &done_tx)),
            (true, Some(_)) => again = true,
            _ => {}
        }
    }
    for h in [syncing, offering].into_iter().flatten() {
        h.abort();
    }
    // A status write in flight must not land after the removal.
    if let Some(w) = work {
        let _ = w.await;
    }
    let file = status_file(state_dir);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(file)).await;
    Ok(result == Some(true))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock aborts the process (panic = "abort").
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The live members that keep a store (witnesses do not: nothing to exchange with them).
fn live_members(m: &Membership) -> Vec<SocketAddrV4> {
    m.members()
        .iter()
        .filter(|(id, s)| *s == foca::State::Alive && !id.witness)
        .map(|(id, _)| id.addr)
        .collect()
}

/// The keyring on disk when it differs from `ring`, after ending a finished transition
/// there; `None` when unchanged or unreadable (the announce tick deals with a lost key).
async fn follow_rekey(state_dir: &Path, ring: &Keyring) -> Option<Keyring> {
    let dir = state_dir.to_path_buf();
    let r = tokio::task::spawn_blocking(move || {
        let ring = Keyring::load_state(&dir)?;
        if let Some(done) = ring.as_ref().and_then(|r| r.finished(unix_ms())) {
            Keyring::finish(&dir, done)?;
            tracing::info!("pool: the rekey is over; the old cluster key is refused from now on");
            return Keyring::load_state(&dir);
        }
        Ok(ring)
    })
    .await;
    match r {
        Ok(Ok(Some(new))) if new != *ring => Some(new),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "pool: cannot read or finish the rekey");
            None
        }
        _ => None,
    }
}

/// Passes `rekey` to each member of `live` that has not taken it yet, over connections made
/// with `current` (which every member accepts until the rekey retires it).
async fn offer_rekey(
    current: ClusterKey,
    rekey: Rekey,
    live: Vec<SocketAddrV4>,
    offered: Arc<std::sync::Mutex<(Option<Rekey>, Vec<SocketAddrV4>)>>,
) {
    {
        let mut o = lock(&offered);
        if o.0.as_ref() != Some(&rekey) {
            *o = (Some(rekey.clone()), Vec::new());
        }
    }
    for peer in live {
        if lock(&offered).1.contains(&peer) {
            continue;
        }
        match replication::offer_rekey(peer, &current, rekey.clone()).await {
            Ok(()) => {
                tracing::info!(%peer, "pool: passed the new cluster key on");
                lock(&offered).1.push(peer);
            }
            Err(e) => tracing::debug!(%peer, error = %e, "pool: passing the new key on failed"),
        }
    }
}

/// Starts a tick: reads its facts off the async workers.
fn gather(task: &Task, done: &mpsc::Sender<Done>) -> tokio::task::JoinHandle<()> {
    let (store, done) = (task.store.clone(), done.clone());
    tokio::task::spawn_blocking(move || {
        let facts = facts::gather(&store, unix_ms() / 1000);
        let _ = done.blocking_send(Done::Facts(facts));
    })
}

/// Carries out the core's actions; returns the blocking work it started, if any.
fn carry_out(
    task: &Task,
    key: &ClusterKey,
    actions: Vec<Action>,
    done: &mpsc::Sender<Done>,
) -> Option<tokio::task::JoinHandle<()>> {
    let links = task.links;
    let mut work = None;
    for action in actions {
        match action {
            Action::Share(share) => {
                tracing::info!(
                    roster = share.roster.len(),
                    live = share.live.len(),
                    majority = share.majority(),
                    "pool: DHCP shares changed"
                );
                links.share.send_replace(share);
            }
            Action::Peers(peers) => {
                tracing::info!(
                    others = ?peers.others,
                    "pool: live members for the boot path changed"
                );
                links.peers.send_replace(peers);
            }
            Action::Floating {
                decision,
                changed,
                took,
            } => {
                if let Some(took) = took {
                    links.took.send_replace(took);
                }
                if changed {
                    tracing::info!(
                        holder = ?decision.holder,
                        "pool: service address holder changed"
                    );
                }
                links.floating.send_replace(decision);
            }
            Action::LayerPeers(live) => {
                if let Some(l) = &links.layers {
                    l.set_peers(Some(key), &live);
                }
                *lock(&task.layer_peers) = live;
            }
            Action::Count(job) => {
                let (me, done) = (task.settings.member_id, done.clone());
                let blobs = crate::image::Blobs::new(task.state_dir);
                work = Some(tokio::task::spawn_blocking(move || {
                    let _ = done.blocking_send(Done::Counts(facts::count(&job, me, &blobs)));
                }));
            }
            Action::EnterWitnesses(rows) => {
                let store = task.store.clone();
                // Not the tick's work: a failed write is tried again on the next tick.
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = enter_witnesses(&store, &rows) {
                        tracing::warn!(error = %e, "pool: cannot write a witness's roster row");
                    }
                });
            }
            Action::Publish(summary) => task.summaries.publish(summary),
            Action::Status(status) => {
                let (dir, done) = (task.state_dir.to_path_buf(), done.clone());
                work = Some(tokio::task::spawn_blocking(move || {
                    if let Err(e) = write_status(&dir, &status) {
                        tracing::warn!(error = %e, "pool: cannot write the status file");
                    }
                    let _ = done.blocking_send(Done::Written);
                }));
            }
        }
    }
    work
}

/// Writes this member's roster row unless it is there (and not marked dead). A founder (no seeds: `pool init`)
/// counts at once; a joiner's row settles first, so that every member has it before the
/// joiner owns addresses.
fn enter_roster(store: &Store, settings: &Settings, founder: bool) -> Result<(), StoreError> {
    store.write(|w| {
        let key = PoolMember::key_of(settings.member_id);
        let old = w.get::<PoolMember>(&key)?;
        // An admin's mark (`pool mark-dead`) was about an earlier incarnation: this one is
        // alive, and must count again even if it goes out of the others' sight later.
        if old
            .as_ref()
            .is_some_and(|o| o.addr == settings.addr && o.dead_ms.is_none())
        {
            return Ok(());
        }
        let now = unix_ms();
        // A drain outlives restarts: the admin undrains.
        let drained_ms = old.as_ref().and_then(|o| o.drained_ms);
        let joined_ms = match old {
            Some(o) => o.joined_ms,
            None if founder => now.saturating_sub(PoolMember::SETTLE_MS + PoolMember::HANDOFF_MS),
            None => now,
        };
        w.put(&PoolMember {
            id: settings.member_id,
            addr: settings.addr,
            joined_ms,
            dead_ms: None,
            witness: false,
            drained_ms,
        })
    })
}

/// Writes the roster rows of witnesses that are not on the roster yet (another member may
/// have written one since the tick read the roster: that row stays).
fn enter_witnesses(store: &Store, rows: &[PoolMember]) -> Result<(), StoreError> {
    store.write(|w| {
        for row in rows {
            if w.get::<PoolMember>(&PoolMember::key_of(row.id))?.is_none() {
                w.put(row)?;
            }
        }
        Ok(())
    })
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
