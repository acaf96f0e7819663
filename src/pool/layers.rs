//! Copies of nodes' writable NFS layers on the other live members: the shipping side
//! ([`Shipper`], the `nfs::replica::Replica` the NFS views call) and the receiving side
//! ([`Receiver`], answered on the pool port by `replication::serve`).
//!
//! Shipping: for each live member (from the pool task, [`Shipper::set_peers`]) one task owns
//! a TCP connection to that member's pool port and works through a bounded queue of jobs in
//! order. `ship` describes a change under the node's lock (so jobs are queued in the order of
//! their read-back), queues it for every live member and, for a stable change, blocks until
//! one of them acknowledged it (the receiver fsyncs before it acks), all failed, or
//! [`WAIT`] passed. A change answered without any acknowledgement is counted as unreplicated
//! (`pool status`). UNSTABLE writes are queued without waiting; COMMIT queues a flush, which a
//! member acknowledges once everything before it on its queue was.
//!
//! Catch-up: a member's copy of a node's layer is *level* once it acknowledged a snapshot of
//! the whole layer in this run, and stays so while every shipment after it is acknowledged.
//! A change for a node whose copy is not level (the first after this member started or the
//! peer appeared, any after a failure or a full queue) is shipped as a snapshot instead; and
//! every [`RESYNC_EVERY`] each member's task snapshots the nodes this member has served in
//! this run whose copies are not level, so a member that was down catches up without waiting
//! for the node's next write. A snapshot holds at most `replica::wire::MAX_CONTENT` bytes of
//! file content (24 MiB); a larger layer is not replicated (logged, counted as failed).
//!
//! Frames: a shipment is a `frame::Frame::Layer` on the pool port (`conn`), answered by
//! `replication`'s listener with a `Frame::LayerAck`. Each shipment carries this member's id,
//! the start of its run and a sequence number that grows with every shipment; a receiver
//! refuses one that is not newer than the last it applied from that member, so a recorded
//! shipment cannot be replayed to roll a copy back while the receiver runs.
//!
//! Not here: describing and applying changes (`nfs::replica`); choosing which member serves a
//! node (the floating service address). A member that takes over a node serves its own copy;
//! it does not ask the others whether theirs is newer.

use super::conn::{unexpected, Conn, ConnError};
use super::frame::Frame;
use super::key::ClusterKey;
use super::status::LayerCounts;
use crate::nfs::replica::wire::{Ack, Body, Op, Shipment};
use crate::nfs::replica::{apply, local, Replica, Wait};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest a shipment of operations may take with one member (connect, send, apply, ack).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a snapshot may take with one member.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a stable change waits for its first acknowledgement.
pub const WAIT: Duration = Duration::from_millis(2500);
/// Jobs queued per member; a change that finds the queue full makes that copy fall behind.
pub const QUEUE: usize = 1024;
/// How often copies that are not level are brought level by a snapshot.
pub const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// A connection idle for this long is replaced before use (the receiver closes idle ones).
const IDLE: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock aborts the process (panic = "abort").
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One node this member has served in this run.
struct NodeEntry {
    layer: PathBuf,
}

type Nodes = Arc<Mutex<HashMap<String, Arc<Mutex<NodeEntry>>>>>;

#[derive(Default)]
struct PeerState {
    level: Mutex<HashSet<String>>,
    pending: AtomicU64,
    failed: AtomicU64,
}

struct Link {
    tx: mpsc::Sender<Job>,
    state: Arc<PeerState>,
    stop: CancellationToken,
}

#[derive(Clone)]
enum Work {
    Ops(Arc<Vec<Op>>),
    /// Acknowledge once everything before is (COMMIT).
    Flush,
    /// Ship a snapshot unless the copy is level.
    Resync,
}

struct Job {
    node: String,
    layer: PathBuf,
    work: Work,
    waiter: Option<Arc<Waiter>>,
}

/// Counts the answers of the members a stable change went to.
struct Waiter {
    state: Mutex<(usize, usize)>,
    cv: Condvar,
    total: usize,
}

impl Waiter {
    fn new(total: usize) -> Waiter {
        Waiter {
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
            total,
        }
    }

    fn report(&self, ok: bool) {
        let mut s = lock(&self.state);
        s.1 += 1;
        if ok {
            s.0 += 1;
        }
        self.cv.notify_all();
    }

    /// Whether a member acknowledged within `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state);
        while s.0 == 0 && s.1 < self.total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        s.0 > 0
    }
}

struct Members {
    key: Option<ClusterKey>,
    links: HashMap<SocketAddrV4, Link>,
}

/// The shipping side (see the module docs).
pub struct Shipper {
    origin: u64,
    epoch: u64,
    seq: Arc<AtomicU64>,
    members: Mutex<Members>,
    nodes: Nodes,
    unreplicated: AtomicU64,
}

impl Shipper {
    /// `origin`: this member's id; `epoch`: the start of this run (unix ms).
    pub fn new(origin: u64, epoch: u64) -> Shipper {
        Shipper {
            origin,
            epoch,
            seq: Arc::new(AtomicU64::new(0)),
            members: Mutex::new(Members {
                key: None,
                links: HashMap::new(),
            }),
            nodes: Nodes::default(),
            unreplicated: AtomicU64::new(0),
        }
    }

    /// The cluster key and the other live members' pool addresses, from the pool task (which
    /// must call it on the tokio runtime). `None` (out of the pool) drops every link.
    pub fn set_peers(&self, key: Option<&ClusterKey>, live: &[SocketAddrV4]) {
        let mut m = lock(&self.members);
        if m.key.as_ref() != key {
            for (_, l) in m.links.drain() {
                l.stop.cancel();
            }
            m.key = key.cloned();
        }
        let Some(key) = m.key.clone() else {
            return;
        };
        m.links.retain(|addr, l| {
            let keep = live.contains(addr);
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        for addr in live {
            if m.links.contains_key(addr) {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            let state = Arc::new(PeerState::default());
            let stop = CancellationToken::new();
            let task = PeerTask {
                addr: *addr,
                key: key.clone(),
                origin: self.origin,
                epoch: self.epoch,
                seq: self.seq.clone(),
                state: state.clone(),
                nodes: self.nodes.clone(),
                conn: None,
            };
            tokio::spawn(task.run(rx, stop.clone()));
            m.links.insert(*addr, Link { tx, state, stop });
        }
    }

    /// Per live member, the counts `pool status` shows; and the stable changes answered
    /// without any member's acknowledgement since this start.
    pub fn counts(&self) -> (HashMap<SocketAddrV4, LayerCounts>, u64) {
        let served: Vec<String> = lock(&self.nodes).keys().cloned().collect();
        let m = lock(&self.members);
        let per = m
            .links
            .iter()
            .map(|(addr, l)| {
                let level = lock(&l.state.level);
                let behind = served.iter().filter(|n| !level.contains(*n)).count() as u64;
                let c = LayerCounts {
                    pending: l.state.pending.load(Ordering::Relaxed),
                    failed: l.state.failed.load(Ordering::Relaxed),
                    behind,
                };
                (*addr, c)
            })
            .collect();
        (per, self.unreplicated.load(Ordering::Relaxed))
    }

    fn node(&self, node: &str, layer: &Path) -> Arc<Mutex<NodeEntry>> {
        let mut nodes = lock(&self.nodes);
        let e = nodes.entry(node.to_string()).or_insert_with(|| {
            Arc::new(Mutex::new(NodeEntry {
                layer: layer.to_path_buf(),
            }))
        });
        lock(e).layer = layer.to_path_buf();
        e.clone()
    }
}

impl Replica for Shipper {
    fn ship(&self, node: &str, layer: &Path, describe: &dyn Fn() -> Option<Vec<Op>>, wait: Wait) {
        let entry = self.node(node, layer);
        let links: Vec<(mpsc::Sender<Job>, Arc<PeerState>)> = lock(&self.members)
            .links
            .values()
            .map(|l| (l.tx.clone(), l.state.clone()))
            .collect();
        if links.is_empty() {
            if wait == Wait::Stable {
                self.unreplicated.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let waiter = (wait == Wait::Stable).then(|| Arc::new(Waiter::new(links.len())));
        {
            // Read back and queue under the node's lock: queues follow the read-back order.
            let _order = lock(&entry);
            let work = match describe() {
                Some(ops) if ops.is_empty() => Work::Flush,
                Some(ops) => Work::Ops(Arc::new(ops)),
                None => Work::Resync,
            };
            for (tx, state) in &links {
                let job = Job {
                    node: node.to_string(),
                    layer: layer.to_path_buf(),
                    work: work.clone(),
                    waiter: waiter.clone(),
                };
                match tx.try_send(job) {
                    Ok(()) => {
                        state.pending.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        // Full (or the link just went): that copy falls behind.
                        lock(&state.level).remove(node);
                        state.failed.fetch_add(1, Ordering::Relaxed);
                        if let Some(w) = &waiter {
                            w.report(false);
                        }
                    }
                }
            }
        }
        if let Some(w) = waiter {
            if !w.wait(WAIT) {
                self.unreplicated.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node, "pool: a stable change of the node's NFS layer was answered before any member had a copy");
            }
        }
    }
}

/// One member's queue and connection.
struct PeerTask {
    addr: SocketAddrV4,
    key: ClusterKey,
    origin: u64,
    epoch: u64,
    seq: Arc<AtomicU64>,
    state: Arc<PeerState>,
    nodes: Nodes,
    conn: Option<(Conn, Instant)>,
}

impl PeerTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                job = rx.recv() => {
                    let Some(job) = job else { break };
                    self.state.pending.fetch_sub(1, Ordering::Relaxed);
                    let ok = self.job(&job.node, &job.layer, &job.work).await;
                    if let Some(w) = &job.waiter {
                        w.report(ok);
                    }
                }
                _ = tick.tick() => self.resync().await,
            }
        }
        // Jobs left behind answer "not copied" at once rather than at their timeout.
        rx.close();
        while let Ok(job) = rx.try_recv() {
            if let Some(w) = &job.waiter {
                w.report(false);
            }
        }
    }

    fn level(&self, node: &str) -> bool {
        lock(&self.state.level).contains(node)
    }

    /// Snapshots every node served here whose copy on this member is not level.
    async fn resync(&mut self) {
        let served: Vec<(String, PathBuf)> = lock(&self.nodes)
            .iter()
            .map(|(n, e)| (n.clone(), lock(e).layer.clone()))
            .collect();
        for (node, layer) in served {
            if !self.level(&node) {
                self.job(&node, &layer, &Work::Resync).await;
            }
        }
    }

    /// Does one job; whether the member has everything of `node` up to it.
    async fn job(&mut self, node: &str, layer: &Path, work: &Work) -> bool {
        let level = self.level(node);
        let ok = match work {
            Work::Flush | Work::Resync if level => true,
            Work::Ops(ops) if level => match self.send(node, Body::Ops(ops.to_vec())).await {
                Ok(Ack::Done) => true,
                Ok(Ack::NeedSnapshot) => self.snapshot(node, layer).await,
                Ok(Ack::Refused) | Err(_) => false,
            },
            _ => self.snapshot(node, layer).await,
        };
        if ok {
            lock(&self.state.level).insert(node.to_string());
        } else {
            lock(&self.state.level).remove(node);
            self.state.failed.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    async fn snapshot(&mut self, node: &str, layer: &Path) -> bool {
        let path = layer.to_path_buf();
        let ops = match tokio::task::spawn_blocking(move || local::snapshot(&path)).await {
            Ok(Ok(ops)) => ops,
            Ok(Err(e)) => {
                tracing::warn!(node, peer = %self.addr, error = %e, "pool: cannot snapshot the node's NFS layer");
                return false;
            }
            Err(_) => return false,
        };
        match self.send(node, Body::Snapshot(ops)).await {
            Ok(Ack::Done) => true,
            Ok(a) => {
                tracing::warn!(node, peer = %self.addr, ack = ?a, "pool: a member did not take the node's layer snapshot");
                false
            }
            Err(e) => {
                tracing::debug!(node, peer = %self.addr, error = %e, "pool: layer snapshot failed");
                false
            }
        }
    }

    /// Sends one shipment and reads the ack; a reused connection that fails is replaced
    /// once.
    async fn send(&mut self, node: &str, body: Body) -> Result<Ack, ConnError> {
        let timeout = match body {
            Body::Snapshot(_) => SNAPSHOT_TIMEOUT,
            Body::Ops(_) => PEER_TIMEOUT,
        };
        let shipment = Shipment {
            node: node.to_string(),
            origin: self.origin,
            epoch: self.epoch,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            body,
        };
        let frame = Frame::Layer(shipment.encode());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let reused = self
                .conn
                .take()
                .filter(|(_, at)| at.elapsed() < IDLE)
                .map(|(c, _)| c);
            let was_reused = reused.is_some();
            let r = tokio::time::timeout_at(deadline, async {
                let mut c = match reused {
                    Some(c) => c,
                    None => Conn::connect(self.addr, &self.key, timeout).await?,
                };
                match c.ask(&frame, timeout).await? {
                    Frame::LayerAck(ack) => Ok((c, ack)),
                    other => Err(unexpected("layer ack", &other)),
                }
            })
            .await
            .unwrap_or(Err(ConnError::TimedOut));
            attempt += 1;
            match r {
                Ok((c, ack)) => {
                    self.conn = Some((c, Instant::now()));
                    return Ok(ack);
                }
                Err(e) if attempt == 1 && was_reused => {
                    tracing::debug!(peer = %self.addr, error = %e, "pool: reconnecting for layers");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The receiving side: applies shipments to `<state>/nfs/nodes/<node>/`.
pub struct Receiver {
    nodes_dir: PathBuf,
    me: u64,
    /// Per origin member: the (epoch, seq) of the last shipment applied.
    last: Mutex<HashMap<u64, (u64, u64)>>,
}

impl Receiver {
    pub fn new(state_dir: &Path, me: u64) -> Receiver {
        Receiver {
            nodes_dir: state_dir.join("nfs").join("nodes"),
            me,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `<state>/nfs/nodes/`, with `<state>/nfs/` 0700 as the NFS views keep it (layers hold
    /// nodes' host keys).
    fn make_dirs(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.nodes_dir)?;
        match self.nodes_dir.parent() {
            Some(nfs) => std::fs::set_permissions(nfs, std::fs::Permissions::from_mode(0o700)),
            None => Ok(()),
        }
    }

    /// Applies one shipment (blocking: run it off the async workers); the ack to send.
    pub fn answer(&self, payload: &[u8]) -> Ack {
        let s = match Shipment::decode(payload) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "pool: malformed layer shipment refused");
                return Ack::Refused;
            }
        };
        if crate::admin::check_name(&s.node).is_err() || s.origin == self.me {
            return Ack::Refused;
        }
        // One shipment at a time: the replay check and the apply belong together.
        let mut last = lock(&self.last);
        if last.get(&s.origin).is_some_and(|l| (s.epoch, s.seq) <= *l) {
            tracing::warn!(origin = s.origin, node = %s.node, "pool: an old layer shipment (replayed?) refused");
            return Ack::Refused;
        }
        if let Err(e) = self.make_dirs() {
            tracing::warn!(error = %e, "pool: cannot make the NFS layers directory");
            return Ack::NeedSnapshot;
        }
        let r = apply::apply(&self.nodes_dir, &s.node, &s.body);
        last.insert(s.origin, (s.epoch, s.seq));
        match r {
            Ok(()) => Ack::Done,
            Err(apply::ApplyError::Refused(why)) => {
                tracing::warn!(node = %s.node, why, "pool: layer shipment refused");
                Ack::Refused
            }
            Err(e) => {
                tracing::debug!(node = %s.node, error = %e, "pool: layer copy needs a snapshot");
                Ack::NeedSnapshot
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiter_returns_on_first_ack_or_when_all_failed() {
        let w = Waiter::new(2);
        w.report(false);
        w.report(true);
        assert!(w.wait(Duration::from_secs(5)));
        let w = Waiter::new(2);
        w.report(false);
        w.report(false);
        assert!(
            !w.wait(Duration::from_secs(5)),
            "all failed: no wait, no ack"
        );
        let w = Waiter::new(1);
        assert!(!w.wait(Duration::from_millis(10)), "nobody answered");
    }

    #[test]
    fn receiver_refuses_garbage_replays_and_bad_names() {
        let dir = std::env::temp_dir().join(format!("drover-recv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let r = Receiver::new(&dir, 1);
        assert_eq!(r.answer(b"{\"sync\":{}}"), Ack::Refused);
        assert_eq!(r.answer(b"\0L1\0\0"), Ack::Refused);
        let ship = |node: &str, origin: u64, seq: u64| Shipment {
            node: node.into(),
            origin,
            epoch: 5,
            seq,
            body: Body::Ops(Vec::new()),
        };
        assert_eq!(r.answer(&ship("n1", 2, 1).encode()), Ack::Done);
        assert!(dir.join("nfs/nodes/n1").is_dir());
        assert_eq!(r.answer(&ship("n1", 2, 1).encode()), Ack::Refused, "replay");
        assert_eq!(r.answer(&ship("n1", 2, 2).encode()), Ack::Done);
        assert_eq!(
            r.answer(&ship("n1", 1, 9).encode()),
            Ack::Refused,
            "from myself"
        );
        assert_eq!(r.answer(&ship("..", 3, 1).encode()), Ack::Refused);
        assert_eq!(r.answer(&ship("a/b", 3, 2).encode()), Ack::Refused);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
