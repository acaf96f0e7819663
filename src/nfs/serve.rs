//! The tokio shell of the NFSv4 server: TCP listeners, one task per connection, the
//! blocking file work off the async workers, the lease clock and the status file.
//!
//! Data flow: [`run`] and [`Front::accept`] accept on every listener they are given (one
//! per interface address, the service address) up to [`Settings::max_connections`] in all. A connection task reads RPC records (record marking,
//! at most [`MAX_RECORD`] bytes: a larger record closes the connection, as there is no way
//! to answer part of one), decodes each call's header once ([`rpc::parse_call`]: the xid
//! for the log) and hands the call to [`Server::handle_call`] in `spawn_blocking`,
//! at most [`Settings::max_inflight`] per connection and [`Settings::max_blocking`] in all;
//! replies go back through a bounded channel to the connection's writer half, in completion
//! order (RPC matches them by xid). A call gives its shared permit back before its reply
//! waits for the writer, so a client that stops reading holds up only its own connection;
//! when the writer fails, the connection stops reading. Each call is logged at debug level
//! (peer, xid, each operation and its status), a call running [`SLOW_CALL`] or longer as a
//! warning. A connection silent for [`Settings::idle_timeout`] is closed; record buffers
//! grow as bytes arrive. A tick every [`TICK`] expires clients whose lease ran out, publishes
//! how many clients there are (a `watch` the pool reads) and, every [`STATUS_INTERVAL`],
//! writes `clients.json` for `drover nfs clients` and the next start's grace decision.
//!
//! Callbacks: a task takes each callback the core asks for ([`Server::poll_callback`],
//! woken after every call and every tick) and makes it within [`CB_TIMEOUT`]: to a 4.0
//! client over a new TCP connection to its callback address; to a 4.1 client as an RPC call
//! written on the connection its session's back channel is bound to, whose reader hands
//! records that are replies (not calls) to the waiting callback by xid. The outcome goes
//! back to the core ([`Server::callback_done`]); a connection's end is reported too
//! ([`Server::connection_closed`]).
//!
//! Not here: UDP, rpcbind registration (NFSv4 clients connect to 2049 directly), TLS,
//! RPCSEC_GSS callbacks.

use super::cb;
use super::core::{CallKind, CbJob, CbResult, CbRoute, ClientStatus, Outcome, Peer, Server};
use super::rpc;
use super::state::Reclaimers;
use super::status::Nfs4Status;
use super::wire::{opnum, CbSec, MAX_RECORD};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often leases are checked.
pub const TICK: Duration = Duration::from_secs(1);
/// How often `clients.json` is rewritten.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Pause after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A call still running after this long is logged as a warning (and again when it ends).
const SLOW_CALL: Duration = Duration::from_secs(5);
/// A connection that sends nothing (not even the rest of a record) for this long is closed,
/// as knfsd closes idle connections after 6 minutes; clients reconnect when they need to.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(360);
/// How long a callback may take, connecting (4.0) and answering included, before the
/// client counts as unreachable.
pub const CB_TIMEOUT: Duration = Duration::from_secs(5);
/// Callbacks under way at once (the core makes one per client at a time).
const MAX_CALLBACKS: usize = 64;

/// Shell settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    /// Requests of one connection being worked on at once.
    pub max_inflight: usize,
    /// Requests being worked on at once in all.
    pub max_blocking: usize,
    /// Where to write the client status (`<state>/nfs/clients.json`), if anywhere.
    pub status_file: Option<PathBuf>,
    /// How long a connection may stay silent ([`IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 1024,
            max_inflight: 16,
            max_blocking: 64,
            status_file: None,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

crate::counters::counter_set! {
    /// Counters for `/metrics`: calls, refusals, and operations and their errors by class.
    pub struct Stats, snapshot StatsSnapshot, sorted {
        connections,
        connections_refused,
        connections_idle,
        records_oversized,
        calls_null,
        calls_compound,
        calls_refused,
        ops_read,
        ops_write,
        ops_meta,
        ops_state,
        errors_read,
        errors_write,
        errors_meta,
        errors_state,
        leases_expired,
        callbacks,
        callbacks_failed,
        delegations_revoked,
    }
}

impl Stats {
    fn count(&self, outcome: &Outcome) {
        bump(match outcome.kind {
            CallKind::Refused => &self.calls_refused,
            CallKind::Null => &self.calls_null,
            CallKind::Compound => &self.calls_compound,
        });
        for &(op, st) in &outcome.ops {
            let (ops, errors) = match op {
                opnum::READ | opnum::READDIR | opnum::READLINK | opnum::READ_PLUS => {
                    (&self.ops_read, &self.errors_read)
                }
                opnum::WRITE
                | opnum::COMMIT
                | opnum::CREATE
                | opnum::REMOVE
                | opnum::RENAME
                | opnum::LINK
                | opnum::SETATTR
                | opnum::ALLOCATE
                | opnum::COPY
                | opnum::DEALLOCATE
                | opnum::CLONE => (&self.ops_write, &self.errors_write),
                opnum::OPEN..=opnum::OPEN_DOWNGRADE
                | opnum::CLOSE
                | opnum::LOCK..=opnum::LOCKU
                | opnum::RENEW
                | opnum::SETCLIENTID..=opnum::SETCLIENTID_CONFIRM
                | opnum::RELEASE_LOCKOWNER..=opnum::RECLAIM_COMPLETE => {
                    (&self.ops_state, &self.errors_state)
                }
                _ => (&self.ops_meta, &self.errors_meta),
            };
            bump(ops);
            if st != Nfs4Status::Ok {
                bump(errors);
            }
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The status file's contents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusFile {
    /// Unix seconds when written.
    pub written: u64,
    pub clients: Vec<ClientStatus>,
}

use crate::clock::unix_secs as unix_now;

/// Reads a status file (for `drover nfs clients` and for deciding on a grace period).
pub fn read_status(path: &Path) -> io::Result<StatusFile> {
    let data = std::fs::read(path)?;
    serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn write_status(path: &Path, clients: Vec<ClientStatus>) -> io::Result<()> {
    let file = StatusFile {
        written: unix_now(),
        clients,
    };
    let data = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Durable: a restart reads it to decide the grace period.
    crate::durable::write(path, &data, 0o644)
}

/// A boot id for [`super::core::Settings::boot`]: random, so that two runs (even within one
/// second) never share client ids, stateids or session ids.
pub fn boot_id() -> u32 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u32()
}

/// The protocol server of `drover serve` with the core's `limits`, answering as
/// `server_name`: a grace period of `grace` only if the previous run's `status_file` lists
/// clients, which ends early once they all sent RECLAIM_COMPLETE (unless one is a 4.0
/// client); read delegations if `delegations`.
pub fn server(
    vfs: Arc<dyn super::vfs::Vfs>,
    limits: super::state::Limits,
    grace: Duration,
    status_file: &Path,
    (server_name, delegations): (&str, bool),
) -> Arc<Server> {
    let now = Instant::now();
    let previous = read_status(status_file)
        .ok()
        .filter(|s| !s.clients.is_empty())
        .map(|s| super::core::reclaimers(&s.clients));
    let grace_until = (previous.is_some() && !grace.is_zero()).then(|| now + grace);
    if grace_until.is_some() {
        tracing::info!(
            secs = grace.as_secs(),
            "NFS: grace period: clients of the previous run may reclaim their state"
        );
    }
    let core = super::core::Settings {
        limits,
        boot: boot_id(),
        grace_until,
        reclaimers: previous,
        server_owner: format!("drover {server_name}").into_bytes(),
        delegations,
    };
    Arc::new(Server::new(vfs, core))
}

/// The connection side of one NFS server: the shell every connection runs in and the cap
/// on connections. Listeners are added while the server runs (`crate::serve` gives each
/// served interface its own, as a unit that follows the appliance settings).
#[derive(Clone)]
pub struct Front {
    shell: Shell,
    conns: Arc<Semaphore>,
}

impl Front {
    pub fn new(
        server: Arc<Server>,
        settings: &Settings,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Front {
        let shell = Shell {
            server,
            stats,
            blocking: Arc::new(Semaphore::new(settings.max_blocking)),
            calls: Arc::new(Calls::default()),
            limits: ConnLimits {
                inflight: settings.max_inflight,
                idle: settings.idle_timeout,
            },
            shutdown,
        };
        let conns = Arc::new(Semaphore::new(settings.max_connections));
        Front { shell, conns }
    }

    /// Accepts on `listener` until `stop` fires or the server shuts down. Connections it
    /// took are not ended by `stop`: they go on until their client leaves or the server
    /// shuts down (a client of an address that went away stops on its own).
    pub async fn accept(&self, listener: TcpListener, stop: CancellationToken) -> io::Result<()> {
        accept_loop(listener, self.shell.clone(), self.conns.clone(), stop).await;
        Ok(())
    }
}

/// Serves NFSv4 through `front` on `listeners` (more come through [`Front::accept`]) until
/// the server shuts down; publishes its clients on `clients` every [`TICK`] (for the pool's
/// summary of this member, and for the grace period of a member that takes the service
/// address over from this one).
pub async fn run(
    front: Front,
    listeners: Vec<TcpListener>,
    settings: Settings,
    clients: watch::Sender<Arc<Reclaimers>>,
) -> io::Result<()> {
    let Front { shell, conns } = front;
    let (server, stats, shutdown) = (
        shell.server.clone(),
        shell.stats.clone(),
        shell.shutdown.clone(),
    );
    let mut tasks = JoinSet::new();
    for l in listeners {
        let stop = shutdown.clone();
        tasks.spawn(accept_loop(l, shell.clone(), conns.clone(), stop));
    }
    tasks.spawn(callbacks(shell.clone()));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let expiry = server.handle_timeout(now);
        let known = super::core::reclaimers(&server.clients(now));
        clients.send_if_modified(|k| {
            let changed = **k != known;
            if changed {
                *k = Arc::new(known);
            }
            changed
        });
        shell.calls.wake.notify_one();
        let released = [
            (
                expiry.leases,
                &stats.leases_expired,
                "clients' leases expired; their state is released",
            ),
            (
                expiry.revoked,
                &stats.delegations_revoked,
                "delegations revoked: not returned within a lease of their recall",
            ),
        ];
        for (n, counter, what) in released {
            if n > 0 {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                tracing::info!(n, "NFS: {what}");
            }
        }
        if let Some(path) = &settings.status_file {
            if last_status.is_none_or(|t| now.duration_since(t) >= STATUS_INTERVAL) {
                last_status = Some(now);
                let (path, clients) = (path.clone(), server.clients(now));
                let r = tokio::task::spawn_blocking(move || write_status(&path, clients)).await;
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %e, "NFS: cannot write the client status file");
                }
            }
        }
    }
    tasks.shutdown().await;
    if let Some(path) = &settings.status_file {
        let _ = write_status(path, server.clients(Instant::now()));
    }
    Ok(())
}

/// What one connection may hold: calls in flight, and silence.
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    inflight: usize,
    idle: Duration,
}

/// What every connection task works with.
#[derive(Clone)]
struct Shell {
    server: Arc<Server>,
    stats: Arc<Stats>,
    /// Calls being worked on in all.
    blocking: Arc<Semaphore>,
    calls: Arc<Calls>,
    limits: ConnLimits,
    shutdown: CancellationToken,
}

/// The callbacks' side of the connections: each connection's writer (a 4.1 back channel
/// writes its calls there), the callbacks waiting for their replies by xid, and the wake-up
/// of the callback task.
#[derive(Default)]
struct Calls {
    writers: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    waiting: Mutex<HashMap<u32, oneshot::Sender<Vec<u8>>>>,
    next_conn: AtomicU64,
    next_xid: AtomicU32,
    wake: Notify,
}

impl Calls {
    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Vec<u8>>>> {
        // A poisoned lock means a panic elsewhere, which aborts the process.
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<Vec<u8>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes the callbacks the core asks for, [`MAX_CALLBACKS`] at a time, until shutdown.
async fn callbacks(shell: Shell) {
    let mut jobs = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = shell.shutdown.cancelled() => break,
            _ = shell.calls.wake.notified() => {}
            _ = tick.tick() => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
        while jobs.len() < MAX_CALLBACKS {
            let Some(job) = shell.server.poll_callback() else {
                break;
            };
            let shell = shell.clone();
            jobs.spawn(async move {
                bump(&shell.stats.callbacks);
                let result = callback(&shell.calls, &job).await;
                if result != CbResult::Ok {
                    bump(&shell.stats.callbacks_failed);
                    tracing::info!(
                        client = format_args!("{:016x}", job.client),
                        recall = job.recall.is_some(),
                        ?result,
                        "NFS: a callback failed"
                    );
                }
                shell.server.callback_done(&job, result);
                shell.calls.wake.notify_one();
            });
        }
    }
    jobs.shutdown().await;
}

/// Makes one callback and waits for its reply, within [`CB_TIMEOUT`].
async fn callback(calls: &Calls, job: &CbJob) -> CbResult {
    let xid = calls.next_xid.fetch_add(1, Ordering::Relaxed);
    let reply = match &job.route {
        CbRoute::V40(to) => {
            // AUTH_NONE: a 4.0 callback carries no credential the client checks.
            let sec = CbSec {
                flavor: rpc::AUTH_NONE,
                body: Vec::new(),
            };
            let call = match &job.recall {
                None => cb::cb_null(xid, to.program, &sec),
                Some(r) => cb::cb_recall(xid, to.program, &sec, 0, to.ident, None, r),
            };
            tokio::time::timeout(CB_TIMEOUT, call40(to.addr, &call))
                .await
                .ok()
                .and_then(Result::ok)
        }
        CbRoute::V41 {
            conn,
            program,
            sec,
            minor,
            seq,
        } => {
            let Some(r) = &job.recall else {
                return CbResult::Unreachable;
            };
            let call = cb::cb_recall(xid, *program, sec, *minor, 0, Some(seq), r);
            call41(calls, *conn, xid, call).await
        }
    };
    let Some(reply) = reply else {
        return CbResult::Unreachable;
    };
    match cb::decode_reply(&reply, job.recall.is_some()) {
        Ok(Nfs4Status::Ok) => CbResult::Ok,
        Ok(status) => CbResult::Status(status),
        Err(e) => {
            tracing::debug!(error = %e, "NFS: callback reply");
            CbResult::Unreachable
        }
    }
}

/// A 4.0 callback: connects to `addr`, sends `call`, reads the reply.
async fn call40(addr: SocketAddr, call: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&rpc::record(call)).await?;
    let mut buf = Vec::new();
    match read_record(&mut s, &mut buf).await? {
        Some(()) => Ok(buf),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// A 4.1 callback: `call` written on connection `conn`, its reply awaited by `xid`.
async fn call41(calls: &Calls, conn: u64, xid: u32, call: Vec<u8>) -> Option<Vec<u8>> {
    let writer = calls.writers().get(&conn).cloned()?;
    let (tx, rx) = oneshot::channel();
    calls.waiting().insert(xid, tx);
    let sent = writer.send(call).await.is_ok();
    let reply = if sent {
        tokio::time::timeout(CB_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    calls.waiting().remove(&xid);
    reply
}

async fn accept_loop(
    listener: TcpListener,
    shell: Shell,
    conns: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shell.shutdown.cancelled() => break,
            _ = stop.cancelled() => {
                // Only this listener stops: its connections run on in their own tasks.
                tasks.detach_all();
                return;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "NFS: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            bump(&shell.stats.connections_refused);
            continue;
        };
        bump(&shell.stats.connections);
        let _ = stream.set_nodelay(true);
        let shell = shell.clone();
        tasks.spawn(async move {
            let _permit = permit;
            connection(stream, peer, shell).await;
        });
    }
    tasks.shutdown().await;
}

/// Logs one call: at debug level each COMPOUND's operations and statuses (op/status, both
/// as numbered in RFC 7530/8881), as a warning when it took [`SLOW_CALL`] or longer.
fn log_call(peer: SocketAddr, xid: u32, outcome: &Outcome, took: Duration) {
    let slow = took >= SLOW_CALL;
    if !slow && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let ops = outcome
        .ops
        .iter()
        .map(|(op, st)| format!("{op}/{}", st.code()))
        .collect::<Vec<_>>()
        .join(" ");
    let (xid, ms) = (format_args!("{xid:#010x}"), took.as_millis());
    let refused = outcome.kind == CallKind::Refused;
    if slow {
        tracing::warn!(%peer, xid, ms, ops, refused, "NFS: slow call");
    } else {
        tracing::debug!(%peer, xid, ms, ops, refused, "NFS: call");
    }
}

/// Reads one record; `Ok(None)` at a clean end of stream. The buffer grows as the record's
/// bytes arrive, not by what its fragment headers announce: a header claiming 1 MiB costs
/// nothing until the data is there.
async fn read_record<R: AsyncReadExt + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<()>> {
    buf.clear();
    loop {
        let mut mark = [0u8; 4];
        match r.read_exact(&mut mark).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && buf.is_empty() => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let (last, len) = rpc::fragment_header(mark);
        if buf.len() + len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RPC record too large",
            ));
        }
        let got = (&mut *r).take(len as u64).read_to_end(buf).await?;
        if got < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if last {
            return Ok(Some(()));
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, shell: Shell) {
    let ConnLimits { inflight, idle } = shell.limits;
    let (server, stats, blocking, calls, shutdown) = (
        shell.server,
        shell.stats,
        shell.blocking,
        shell.calls,
        shell.shutdown,
    );
    let conn = calls.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(inflight);
    calls.writers().insert(conn, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if let Err(e) = wr.write_all(&rpc::record(&reply)).await {
                tracing::debug!(%peer, error = %e, "NFS: cannot write a reply");
                break;
            }
        }
    });
    let per_conn = Arc::new(Semaphore::new(inflight));
    let mut buf = Vec::new();
    loop {
        let got = tokio::select! {
            _ = shutdown.cancelled() => break,
            // The writer gave up: calls read from now on could not be answered.
            _ = tx.closed() => break,
            r = tokio::time::timeout(idle, read_record(&mut rd, &mut buf)) => match r {
                Ok(r) => r,
                Err(_) => {
                    bump(&stats.connections_idle);
                    tracing::debug!(%peer, "NFS: idle connection closed");
                    break;
                }
            },
        };
        match got {
            Ok(Some(())) => {}
            Ok(None) => break,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    bump(&stats.records_oversized);
                }
                tracing::debug!(%peer, error = %e, "NFS: connection closed");
                break;
            }
        }
        if let Some(xid) = cb::reply_xid(&buf) {
            // A reply to a callback on this connection's back channel (one nobody waits
            // for any more is dropped).
            if let Some(waiting) = calls.waiting().remove(&xid) {
                let _ = waiting.send(std::mem::take(&mut buf));
            }
            continue;
        }
        let Ok(conn_permit) = per_conn.clone().acquire_owned().await else {
            break;
        };
        let Ok(permit) = blocking.clone().acquire_owned().await else {
            break;
        };
        let record = std::mem::take(&mut buf);
        let (server, stats, tx, calls) = (server.clone(), stats.clone(), tx.clone(), calls.clone());
        let from = Peer {
            addr: peer.ip(),
            conn,
        };
        tokio::spawn(async move {
            let _conn_permit = conn_permit;
            let call = rpc::parse_call(record);
            let xid = call.as_ref().map_or_else(rpc::Refusal::xid, |c| c.xid);
            let started = Instant::now();
            let mut work =
                tokio::task::spawn_blocking(move || server.handle_call(Instant::now(), from, call));
            // A call that never finishes leaves its client waiting without an error (a hard
            // mount retransmits only after its timeout): say so while it is still running.
            let outcome = match tokio::time::timeout(SLOW_CALL, &mut work).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        %peer,
                        xid = format_args!("{xid:#010x}"),
                        "NFS: a call is still running after {SLOW_CALL:?}"
                    );
                    work.await
                }
            };
            // The shared permit goes back before the reply waits for the connection's
            // writer: a client that stops reading holds up only its own connection.
            drop(permit);
            let Ok(outcome) = outcome else { return };
            // The call may have made a callback due (a recall, a back channel bound).
            calls.wake.notify_one();
            log_call(peer, xid, &outcome, started.elapsed());
            stats.count(&outcome);
            match outcome.reply {
                Some(reply) => {
                    let _ = tx.send(reply).await;
                }
                None => {
                    // Not an RPC call at all: nothing sensible to answer. The reader goes on;
                    // a peer sending garbage gets no replies.
                }
            }
        });
    }
    calls.writers().remove(&conn);
    server.connection_closed(conn);
    drop(tx);
    // In-flight requests finish and their replies are written before the writer ends.
    let _ = writer.await;
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
