//! The tokio shell of the NFSv4 server: TCP listeners, one task per connection, the
//! blocking file work off the async workers, the lease clock and the status file.
//!
//! Data flow: [`run`] accepts on every listener it is given (one per interface address) up
//! to [`Settings::max_connections`]. A connection task reads RPC records (record marking,
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
//! Not here: UDP, rpcbind registration (NFSv4 clients connect to 2049 directly), TLS.

use super::core::{CallKind, ClientStatus, Outcome, Server};
use super::rpc;
use super::state::Reclaimers;
use super::status::Nfs4Status;
use super::wire::{opnum, MAX_RECORD};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
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
/// client).
pub fn server(
    vfs: Arc<dyn super::vfs::Vfs>,
    limits: super::state::Limits,
    grace: Duration,
    status_file: &Path,
    server_name: &str,
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
    };
    Arc::new(Server::new(vfs, core))
}

/// Serves NFSv4 on `listeners` until `shutdown` is cancelled; publishes its clients on
/// `clients` every [`TICK`] (for the pool's summary of this member, and for the grace period
/// of a member that takes the service address over from this one).
pub async fn run(
    listeners: Vec<TcpListener>,
    server: Arc<Server>,
    settings: Settings,
    stats: Arc<Stats>,
    clients: watch::Sender<Arc<Reclaimers>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let conns = Arc::new(Semaphore::new(settings.max_connections));
    let blocking = Arc::new(Semaphore::new(settings.max_blocking));
    let mut tasks = JoinSet::new();
    for l in listeners {
        let (server, stats, token) = (server.clone(), stats.clone(), shutdown.clone());
        let (conns, blocking) = (conns.clone(), blocking.clone());
        let limits = ConnLimits {
            inflight: settings.max_inflight,
            idle: settings.idle_timeout,
        };
        tasks.spawn(accept_loop(
            l, server, stats, conns, blocking, limits, token,
        ));
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let expired = server.handle_timeout(now);
        let known = super::core::reclaimers(&server.clients(now));
        clients.send_if_modified(|k| {
            let changed = **k != known;
            if changed {
                *k = Arc::new(known);
            }
            changed
        });
        if expired > 0 {
            stats
                .leases_expired
                .fetch_add(expired as u64, Ordering::Relaxed);
            tracing::info!(
                expired,
                "NFS: clients' leases expired; their state is released"
            );
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

async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    stats: Arc<Stats>,
    conns: Arc<Semaphore>,
    blocking: Arc<Semaphore>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
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
            bump(&stats.connections_refused);
            continue;
        };
        bump(&stats.connections);
        let _ = stream.set_nodelay(true);
        let (server, stats, blocking, token) = (
            server.clone(),
            stats.clone(),
            blocking.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            connection(stream, peer, server, stats, blocking, limits, token).await;
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

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    stats: Arc<Stats>,
    blocking: Arc<Semaphore>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let ConnLimits { inflight, idle } = limits;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(inflight);
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
        let Ok(conn_permit) = per_conn.clone().acquire_owned().await else {
            break;
        };
        let Ok(permit) = blocking.clone().acquire_owned().await else {
            break;
        };
        let record = std::mem::take(&mut buf);
        let (server, stats, tx) = (server.clone(), stats.clone(), tx.clone());
        let ip = peer.ip();
        tokio::spawn(async move {
            let _conn_permit = conn_permit;
            let call = rpc::parse_call(record);
            let xid = call.as_ref().map_or_else(rpc::Refusal::xid, |c| c.xid);
            let started = Instant::now();
            let mut work =
                tokio::task::spawn_blocking(move || server.handle_call(Instant::now(), ip, call));
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
    drop(tx);
    // In-flight requests finish and their replies are written before the writer ends.
    let _ = writer.await;
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
