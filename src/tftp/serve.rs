//! The tokio shell of the TFTP server: sockets, timers, file access, counters.
//!
//! Data flow: [`run`] owns the listening socket (bound by the caller to `IFACE_IP:port`). Each
//! datagram is parsed ([`Packet::parse`]) and dispatched ([`core::dispatch`]): write
//! requests and refused paths get an ERROR from the listening socket, non-requests and
//! malformed datagrams are dropped and counted, and a read request takes a slot (at most
//! `max_transfers` in all and `max_transfers_per_client` per client address, so one address
//! cannot hold them all; none left: ERROR 0 "server busy") and becomes a task in a
//! `JoinSet`. The task binds a fresh socket on the same local IP, port 0 (the server's TID),
//! connects it to the client (the kernel then drops datagrams from any other TID; [`run_on`]
//! takes any [`Dial`] for this, e.g. the lab's smoltcp interface), opens the
//! file and runs a [`core::Transfer`]: it feeds the core the bytes it asks for, sends what the
//! core emits, and sleeps until the core's timeout or the client's next packet. Files are read
//! sequentially through a small buffer as blocks are needed; only embedded firmware is served
//! from memory.
//!
//! Boot events: a transfer of embedded firmware (iPXE) that starts is queued as a `firmware`
//! event of the node at the client's address (its reservation or lease), through a
//! non-blocking [`Recorder`]; nothing here waits for the store.
//!
//! File lookup: the cleaned relative path ([`core::clean_path`]: no `..`, no absolute paths
//! after stripping one leading `/`, no backslashes or control characters) is looked up first
//! in the embedded firmware ([`crate::firmware::get`]), then in each of `Roots::dirs` in
//! order. Symlinks inside a root are allowed; no request can read outside its root:
//! 1. the root and the candidate are canonicalized and the candidate must lie under the root
//!    (this resolves every symlink, including ones in intermediate directories);
//! 2. the canonical path is opened with `O_NOFOLLOW | O_NONBLOCK` (no FIFO can stall us) and
//!    must be a regular file;
//! 3. the path of the *opened* descriptor (`/proc/self/fd/N`) must still lie under the root,
//!    which defeats a symlink swapped in between steps 1 and 2.
//!
//! We chose canonicalize-and-verify over an `openat(O_NOFOLLOW)` walk per component because the
//! latter needs `unsafe` libc calls, which this crate keeps in `src/net/sys.rs` only, and
//! because the verification of the opened descriptor gives the same guarantee without them.
//! Without `/proc` mounted, step 3 falls back to comparing device and inode of the opened file
//! with the canonical path.
//!
//! Shutdown: cancelling the token stops the listener; each transfer sends ERROR 0 "server
//! shutting down" to its client and ends; [`run`] returns after all of them.
//!
//! Not here: WRQ (refused), TFTP over IPv6 (works if the caller binds an IPv6 socket, but is
//! untested), multicast (RFC 2090), per-client rate limits over time, detection of a client's
//! retransmitted RRQ (it starts a second transfer, as tftpd-hpa does).

use std::borrow::Cow;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::{self, Action, Outcome, Refused, SessionLimits, Transfer};
use super::wire::{ErrorCode, Mode, Packet, Request, TftpOption, MAX_BLKSIZE, MAX_PACKET};
use crate::logsafe::Escaped;
use crate::net::datagram::{Connected, Datagram, Dial, KernelDial};
use crate::net::limit::{self, Caps};
use crate::store::model::BootStage;
use crate::timeline::Recorder;

/// Directories searched, in order, after the embedded firmware.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub dirs: Vec<PathBuf>,
}

/// Server limits (defaults suit an Ethernet boot network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent transfers; more requests get ERROR 0 "server busy".
    pub max_transfers: usize,
    /// Concurrent transfers to one client address; more get ERROR 0 "server busy" too.
    pub max_transfers_per_client: usize,
    /// Largest granted `blksize`; 1468 keeps a DATA packet inside a 1500-byte MTU.
    pub max_blksize: u16,
    /// Largest granted `windowsize` (RFC 7440).
    pub max_windowsize: u16,
    /// Retransmission timeout unless the client negotiates `timeout`.
    pub timeout: Duration,
    /// Retransmissions of the same packet before a transfer is abandoned.
    pub retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transfers: 64,
            max_transfers_per_client: 8,
            max_blksize: 1468,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// Capacity of the read-ahead buffer per transfer from disk.
const READ_BUFFER: usize = 64 * 1024;
/// Receive buffer of a transfer socket: clients only send ACK and ERROR; a longer ERROR is
/// truncated by the kernel, which the parser tolerates.
const TRANSFER_RECV: usize = 2048;
/// Pause after a receive error on the listening socket, so a persistent error cannot spin.
const RECV_BACKOFF: Duration = Duration::from_millis(50);

crate::counters::counter_set! {
    /// Counters, updated with relaxed atomics; read them with [`Stats::snapshot`].
    pub struct Stats, snapshot StatsSnapshot, sorted {
        requests,
        transfers_started,
        transfers_completed,
        transfers_failed,
        timeouts,
        not_found,
        refused,
        write_requests,
        busy,
        /// Requests refused because `max_transfers_per_client` to that address were running.
        busy_per_client,
        malformed,
        dropped,
        bytes_sent,
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The counters [`run`] updates (one set per process, for metrics).
pub fn global_stats() -> Arc<Stats> {
    static GLOBAL: OnceLock<Arc<Stats>> = OnceLock::new();
    GLOBAL.get_or_init(|| Arc::new(Stats::default())).clone()
}

/// Serves TFTP read requests on `socket` until `shutdown` is cancelled; counts into
/// [`global_stats`] and reports firmware fetches of known nodes to `events`.
pub async fn run(
    socket: UdpSocket,
    roots: Arc<Roots>,
    limits: Limits,
    events: Option<Recorder>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let dial = kernel_dial(&socket)?;
    run_on(
        socket,
        dial,
        roots,
        limits,
        global_stats(),
        events,
        shutdown,
    )
    .await
}

/// [`run`] with the caller's counters and no boot events (tests run several servers in one
/// process).
pub async fn run_with_stats(
    socket: UdpSocket,
    roots: Arc<Roots>,
    limits: Limits,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let dial = kernel_dial(&socket)?;
    run_on(socket, dial, roots, limits, stats, None, shutdown).await
}

/// Transfer sockets on the listening socket's address, and a log line that it listens.
fn kernel_dial(socket: &UdpSocket) -> io::Result<KernelDial> {
    let addr = socket.local_addr()?;
    info!(%addr, "tftp: listening");
    Ok(KernelDial {
        local_ip: addr.ip(),
    })
}

/// The server on any [`Datagram`] socket, with transfers on sockets from `dial` (the lab
/// serves on its smoltcp interface this way).
pub async fn run_on<S: Datagram, D: Dial>(
    socket: S,
    dial: D,
    roots: Arc<Roots>,
    limits: Limits,
    stats: Arc<Stats>,
    events: Option<Recorder>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = Caps::new(limits.max_transfers, limits.max_transfers_per_client);
    let mut transfers = JoinSet::new();
    let mut buf = vec![0u8; MAX_PACKET];
    let ctx = Arc::new(Context {
        dial,
        roots,
        limits,
        stats,
        events,
        shutdown: shutdown.clone(),
    });
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(joined) = transfers.join_next(), if !transfers.is_empty() => {
                if let Err(e) = joined {
                    warn!(error = %e, "tftp: transfer task failed");
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, peer)) => {
                    let datagram = buf.get(..len).unwrap_or_default();
                    on_datagram(&socket, datagram, peer, &ctx, &permits, &mut transfers).await;
                }
                Err(e) => {
                    warn!(error = %e, "tftp: receive failed");
                    tokio::time::sleep(RECV_BACKOFF).await;
                }
            },
        }
    }
    debug!(active = transfers.len(), "tftp: shutting down");
    while let Some(joined) = transfers.join_next().await {
        if let Err(e) = joined {
            warn!(error = %e, "tftp: transfer task failed");
        }
    }
    Ok(())
}

/// What every transfer task shares.
struct Context<D> {
    dial: D,
    roots: Arc<Roots>,
    limits: Limits,
    stats: Arc<Stats>,
    events: Option<Recorder>,
    shutdown: CancellationToken,
}

/// A request copied out of the receive buffer for its task.
struct OwnedRequest {
    path: String,
    mode: Mode,
    options: Vec<(String, String)>,
}

async fn on_datagram<S: Datagram, D: Dial>(
    socket: &S,
    datagram: &[u8],
    peer: SocketAddr,
    ctx: &Arc<Context<D>>,
    permits: &Arc<Caps>,
    transfers: &mut JoinSet<()>,
) {
    let stats = &ctx.stats;
    let packet = match Packet::parse(datagram) {
        Ok(packet) => packet,
        Err(e) => {
            bump(&stats.malformed);
            debug!(%peer, error = %e, "tftp: malformed datagram dropped");
            return;
        }
    };
    match core::dispatch(&packet) {
        Action::Drop(reason) => {
            bump(&stats.dropped);
            debug!(%peer, ?reason, "tftp: dropped");
        }
        Action::Reply { code, message, why } => {
            bump(&stats.requests);
            match why {
                Refused::WriteRequest => {
                    bump(&stats.write_requests);
                    info!(%peer, "tftp: write request refused");
                }
                Refused::Path(why) => {
                    bump(&stats.refused);
                    let name = request_name(&packet);
                    info!(%peer, file = %Escaped(name.unwrap_or_default()), %why, "tftp: path refused");
                }
            }
            send_error(socket, peer, code, message).await;
        }
        Action::Serve { path } => {
            bump(&stats.requests);
            let Packet::Rrq(req) = &packet else {
                // dispatch only serves read requests.
                return;
            };
            let permit = match permits.take(peer.ip()) {
                Ok(slot) => slot,
                Err(over) => {
                    bump(match over {
                        limit::Refused::Total => &stats.busy,
                        limit::Refused::PerAddress => &stats.busy_per_client,
                    });
                    info!(%peer, file = %Escaped(&path), ?over, "tftp: busy, request refused");
                    send_error(socket, peer, ErrorCode::NotDefined, "server busy").await;
                    return;
                }
            };
            let request = OwnedRequest {
                path,
                mode: req.mode,
                options: req
                    .options
                    .iter()
                    .map(|o| (o.name.to_owned(), o.value.to_owned()))
                    .collect(),
            };
            let ctx = ctx.clone();
            transfers.spawn(async move {
                transfer(&ctx, peer, request).await;
                drop(permit);
            });
        }
    }
}

fn request_name<'a>(packet: &Packet<'a>) -> Option<&'a str> {
    match packet {
        Packet::Rrq(req) | Packet::Wrq(req) => Some(req.filename),
        _ => None,
    }
}

async fn send_error(socket: &impl Datagram, peer: SocketAddr, code: ErrorCode, message: &str) {
    let mut buf = [0u8; 128];
    let packet = Packet::Error { code, message };
    match packet.emit(&mut buf) {
        Ok(len) => {
            if let Err(e) = socket.send_to(&buf[..len], peer).await {
                debug!(%peer, error = %e, "tftp: sending error failed");
            }
        }
        // Our messages are short literals without NUL.
        Err(e) => warn!(error = %e, "tftp: error packet not emitted"),
    }
}

/// Why a file could not be opened for a request.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("not found")]
    NotFound,
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Where a transfer's bytes come from.
enum Source {
    Memory {
        data: Cow<'static, [u8]>,
        pos: usize,
    },
    File(BufReader<tokio::fs::File>),
}

impl Source {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Memory { data, pos } => {
                let rest = data.get(*pos..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *pos += n;
                Ok(n)
            }
            Source::File(file) => file.read(buf).await,
        }
    }
}

/// The byte stream a transfer sends: the source, netascii-encoded if asked.
struct Stream {
    source: Source,
    netascii: bool,
    /// Encoded bytes not yet handed to the core (netascii only).
    pending: Vec<u8>,
    raw: Vec<u8>,
    eof: bool,
}

impl Stream {
    /// Appends up to `want` bytes to `out`; fewer only at the end of the stream.
    async fn read(&mut self, want: usize, out: &mut Vec<u8>) -> io::Result<()> {
        while out.len() < want {
            if self.netascii && !self.pending.is_empty() {
                let n = self.pending.len().min(want - out.len());
                out.extend(self.pending.drain(..n));
                continue;
            }
            if self.eof {
                break;
            }
            let chunk = want - out.len();
            self.raw.resize(chunk, 0);
            let n = self.source.read(&mut self.raw).await?;
            if n == 0 {
                self.eof = true;
                continue;
            }
            let got = self.raw.get(..n).unwrap_or_default();
            if self.netascii {
                core::netascii_encode(got, &mut self.pending);
            } else {
                out.extend_from_slice(got);
            }
        }
        Ok(())
    }
}

/// Looks `path` up in the firmware, then in each root. Returns the source and its size.
async fn open(roots: &Roots, path: &str) -> Result<(Source, u64), OpenError> {
    if let Some(data) = crate::firmware::get(path) {
        let size = data.len() as u64;
        return Ok((Source::Memory { data, pos: 0 }, size));
    }
    for dir in &roots.dirs {
        let (dir, rel) = (dir.clone(), path.to_owned());
        let opened = tokio::task::spawn_blocking(move || open_in_root(&dir, &rel))
            .await
            .map_err(io::Error::other)?;
        match opened {
            Ok((file, size)) => {
                let file = tokio::fs::File::from_std(file);
                let reader = BufReader::with_capacity(READ_BUFFER, file);
                return Ok((Source::File(reader), size));
            }
            Err(OpenError::NotFound) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(OpenError::NotFound)
}

/// Opens `rel` (already cleaned) under `root` such that the opened file lies inside `root`;
/// see the module docs for the three checks.
fn open_in_root(root: &Path, rel: &str) -> Result<(std::fs::File, u64), OpenError> {
    let not_found_or = |e: io::Error, refused: &'static str| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => OpenError::NotFound,
        io::ErrorKind::PermissionDenied => OpenError::Refused(refused),
        _ if e.raw_os_error() == Some(libc::ELOOP) => OpenError::Refused("symlink loop"),
        _ => OpenError::Io(e),
    };
    let root = root
        .canonicalize()
        .map_err(|e| not_found_or(e, "root not accessible"))?;
    let real = root
        .join(rel)
        .canonicalize()
        .map_err(|e| not_found_or(e, "permission denied"))?;
    if !real.starts_with(&root) {
        return Err(OpenError::Refused("resolves outside the root"));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|e| not_found_or(e, "permission denied"))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(OpenError::Refused("not a regular file"));
    }
    let fd_link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    match std::fs::read_link(&fd_link) {
        Ok(actual) if actual.starts_with(&root) => {}
        Ok(_) => return Err(OpenError::Refused("opened file is outside the root")),
        Err(_) => {
            // No /proc: the opened file must be the very inode the checked path names now.
            let named = std::fs::symlink_metadata(&real)?;
            if (named.dev(), named.ino()) != (meta.dev(), meta.ino()) {
                return Err(OpenError::Refused("file changed while opening"));
            }
        }
    }
    Ok((file, meta.len()))
}

/// One transfer, from opening the file to the final ACK (or failure).
async fn transfer<D: Dial>(ctx: &Context<D>, peer: SocketAddr, request: OwnedRequest) {
    let stats = &ctx.stats;
    let socket = match ctx.dial.dial(peer).await {
        Ok(socket) => socket,
        Err(e) => {
            warn!(%peer, error = %e, "tftp: cannot open a transfer socket");
            bump(&stats.transfers_failed);
            return;
        }
    };
    let path = request.path.as_str();
    let (source, size) = match open(&ctx.roots, path).await {
        Ok(opened) => opened,
        Err(OpenError::NotFound) => {
            bump(&stats.not_found);
            info!(%peer, file = %Escaped(path), "tftp: file not found");
            send_connected_error(&socket, ErrorCode::FileNotFound, "file not found").await;
            return;
        }
        Err(OpenError::Refused(why)) => {
            bump(&stats.refused);
            info!(%peer, file = %Escaped(path), why, "tftp: access refused");
            send_connected_error(&socket, ErrorCode::AccessViolation, "access violation").await;
            return;
        }
        Err(OpenError::Io(e)) => {
            bump(&stats.transfers_failed);
            warn!(%peer, file = %Escaped(path), error = %e, "tftp: cannot open");
            send_connected_error(&socket, ErrorCode::NotDefined, "cannot open file").await;
            return;
        }
    };
    bump(&stats.transfers_started);
    if let (Source::Memory { .. }, Some(events), IpAddr::V4(ip)) = (&source, &ctx.events, peer.ip())
    {
        // Embedded firmware is iPXE: the node at this address is chaining into it.
        events.record_addr(ip, BootStage::Firmware, "tftp", path.to_string());
    }
    let limits = SessionLimits {
        max_blksize: ctx.limits.max_blksize.min(MAX_BLKSIZE),
        max_windowsize: ctx.limits.max_windowsize,
        timeout: ctx.limits.timeout,
        retries: ctx.limits.retries,
    };
    let options: Vec<TftpOption<'_>> = request
        .options
        .iter()
        .map(|(name, value)| TftpOption { name, value })
        .collect();
    let wire_request = Request {
        filename: path,
        mode: request.mode,
        options,
    };
    let mut core = Transfer::new(&wire_request, Some(size), &limits);
    debug!(
        %peer, file = %Escaped(path), size, blksize = core.blksize(), windowsize = core.windowsize(),
        "tftp: transfer started"
    );
    let mut stream = Stream {
        source,
        netascii: request.mode == Mode::Netascii,
        pending: Vec::new(),
        raw: Vec::new(),
        eof: false,
    };
    let started = Instant::now();
    let mut send_buf = vec![0u8; 4 + usize::from(core.blksize()).max(MAX_OACK)];
    let mut recv_buf = vec![0u8; TRANSFER_RECV];
    let mut chunk = Vec::with_capacity(usize::from(core.blksize()));
    let outcome = loop {
        while let Some(want) = core.poll_read() {
            chunk.clear();
            match stream.read(want, &mut chunk).await {
                Ok(()) => core.supply(&chunk),
                Err(e) => {
                    warn!(%peer, file = %Escaped(path), error = %e, "tftp: read failed");
                    core.abort(ErrorCode::NotDefined, "read error");
                    break;
                }
            }
        }
        let mut gone = false;
        while let Some(len) = core.poll_transmit(started.elapsed(), &mut send_buf) {
            if let Err(e) = socket.send(&send_buf[..len]).await {
                // ECONNREFUSED: the client's port is closed, it gave up.
                debug!(%peer, error = %e, "tftp: send failed");
                gone = true;
                break;
            }
        }
        if let Some(outcome) = core.outcome() {
            break outcome.clone();
        }
        if gone {
            break Outcome::Aborted;
        }
        let wake = started
            + core
                .poll_timeout()
                .unwrap_or(started.elapsed() + limits.timeout);
        tokio::select! {
            () = ctx.shutdown.cancelled() => {
                core.abort(ErrorCode::NotDefined, "server shutting down");
            }
            () = tokio::time::sleep_until(wake.into()) => core.handle_timeout(started.elapsed()),
            received = socket.recv(&mut recv_buf) => match received {
                Ok(len) => match Packet::parse(recv_buf.get(..len).unwrap_or_default()) {
                    Ok(packet) => core.handle_input(started.elapsed(), &packet),
                    Err(e) => {
                        bump(&stats.malformed);
                        debug!(%peer, error = %e, "tftp: malformed packet in transfer");
                    }
                },
                Err(e) => {
                    debug!(%peer, error = %e, "tftp: receive failed, client gone");
                    break Outcome::Aborted;
                }
            },
        }
    };
    match outcome {
        Outcome::Complete { bytes, blocks } => {
            bump(&stats.transfers_completed);
            stats.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
            info!(
                %peer, file = %Escaped(path), bytes, blocks, elapsed_ms = started.elapsed().as_millis(),
                "tftp: transfer complete"
            );
        }
        Outcome::TimedOut => {
            bump(&stats.transfers_failed);
            bump(&stats.timeouts);
            info!(%peer, file = %Escaped(path), "tftp: transfer timed out");
        }
        Outcome::PeerError { code, message } => {
            bump(&stats.transfers_failed);
            info!(%peer, file = %Escaped(path), %code, message = %Escaped(&message), "tftp: client ended the transfer");
        }
        Outcome::Aborted => {
            bump(&stats.transfers_failed);
            info!(%peer, file = %Escaped(path), "tftp: transfer aborted");
        }
    }
}

/// Room for an OACK with every option we answer (4 options, short names, 20-digit values).
const MAX_OACK: usize = 128;

async fn send_connected_error(socket: &impl Connected, code: ErrorCode, message: &str) {
    let mut buf = [0u8; 128];
    if let Ok(len) = (Packet::Error { code, message }).emit(&mut buf) {
        if let Err(e) = socket.send(&buf[..len]).await {
            debug!(error = %e, "tftp: sending error failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drover-tftp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn open_in_root_keeps_requests_inside() {
        let base = tempdir("open");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("secret"), b"outside").unwrap();
        std::fs::write(root.join("sub/file"), b"inside").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
        std::os::unix::fs::symlink(&base, root.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("sub/file", root.join("inner")).unwrap();
        assert_eq!(open_in_root(&root, "sub/file").unwrap().1, 6);
        assert_eq!(open_in_root(&root, "inner").unwrap().1, 6);
        assert!(matches!(
            open_in_root(&root, "escape"),
            Err(OpenError::Refused(_))
        ));
        assert!(matches!(
            open_in_root(&root, "dirlink/secret"),
            Err(OpenError::Refused(_))
        ));
        assert!(matches!(
            open_in_root(&root, "sub"),
            Err(OpenError::Refused(_))
        ));
        assert!(matches!(
            open_in_root(&root, "missing"),
            Err(OpenError::NotFound)
        ));
        assert!(matches!(
            open_in_root(&root, "sub/file/x"),
            Err(OpenError::NotFound)
        ));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[tokio::test]
    async fn netascii_stream_translates_across_reads() {
        let data: &'static [u8] = b"a\nb\rc\n\n";
        let mut stream = Stream {
            source: Source::Memory {
                data: Cow::Borrowed(data),
                pos: 0,
            },
            netascii: true,
            pending: Vec::new(),
            raw: Vec::new(),
            eof: false,
        };
        let mut all = Vec::new();
        loop {
            let mut out = Vec::new();
            stream.read(3, &mut out).await.unwrap();
            let short = out.len() < 3;
            all.extend(out);
            if short {
                break;
            }
        }
        assert_eq!(all, b"a\r\nb\r\0c\r\n\r\n");
    }
}
