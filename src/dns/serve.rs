//! The tokio shell of the DNS server: UDP and TCP on one address, the forwarder and its cache.
//!
//! UDP comes in on a group of sockets bound to the address with SO_REUSEPORT, one per worker
//! core, each with its own receive loop (the kernel spreads clients over them); the zones,
//! cache and counters are shared.
//!
//! Data flow, per query: bytes -> [`wire::decode`] -> the current [`Zones`] (rebuilt from a
//! snapshot of the [`SharedView`] only when `View::seq()` moved since the last build; checking
//! costs one snapshot per query; at most one rebuild per [`REBUILD_INTERVAL`]) -> [`core::handle`] ->
//! act:
//! - `Reply`: encode within the client's limit (UDP: 512, or the EDNS size up to 1232; TCP:
//!   65535) and send; `Refuse`: the same, capped at the request's own length;
//! - `Transfer` (TCP only): a series of length-prefixed messages;
//! - `Forward`: answer from the [`Cache`] if it holds the question, else ask the upstreams in
//!   order over UDP (fresh socket and random ID per attempt, response ID and question checked,
//!   TCP retry when an upstream truncates), each within `upstream_timeout`; SERVFAIL when all
//!   fail. At most `max_in_flight` forwarded queries at once; beyond that UDP queries are
//!   dropped (the client retries) and TCP queries get SERVFAIL.
//!
//! TCP: at most `max_tcp` connections and `max_tcp_per_client` from one address (further ones
//! are closed at once and counted, so one address cannot hold every slot), queries on one
//! connection are answered in order, a connection idle for `tcp_idle` is closed.
//! Malformed input: a readable header gets a header-only FORMERR (never larger than what was
//! sent), anything else is dropped and counted.
//!
//! Not here: recvmmsg/sendmmsg batching, response rate limiting, IP_PKTINFO (bind one address per interface, not the
//! wildcard, so replies leave from the address that was asked), DNS over TLS, serving stale
//! cache entries, prefetching.

use super::core::{self, AccessPolicy, Action, Identity, Transport, Zones};
use super::wire::{self, Request};
use crate::http::listen::Accept;
use crate::net::datagram::Datagram;
use crate::net::limit::{Caps, Refused};
use crate::store::model::Ipv4Net;
use crate::store::SharedView;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest time a forwarded answer is cached, whatever its TTL.
pub const CACHE_MAX_TTL: u32 = 3600;
/// Longest time a negative forwarded answer (NXDOMAIN/NODATA) is cached (RFC 2308 §5 allows
/// up to hours; short keeps the cluster responsive to upstream fixes).
pub const CACHE_MAX_NEGATIVE_TTL: u32 = 300;
/// Shortest time between two zone rebuilds; with the view refreshed every 250 ms, a store
/// change is answered within about half a second.
pub const REBUILD_INTERVAL: Duration = Duration::from_millis(200);
/// How long the receive loop backs off after a socket error.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Upstream reply buffer (we advertise 1232; some upstreams send more).
const UPSTREAM_BUF: usize = 4096;

/// Start-up settings of the DNS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// UDP and TCP port (53).
    pub port: u16,
    /// Resolvers for names outside our zones; empty: forwarding is off (REFUSED).
    pub upstreams: Vec<SocketAddr>,
    /// Clients allowed to transfer the zones (AXFR/IXFR over TCP).
    pub axfr_allow: Vec<IpAddr>,
    /// Clients allowed to use the forwarder besides the store's networks (loopback).
    pub forward_from: Vec<Ipv4Net>,
    /// Host label of the appliance in every zone.
    pub hostname: String,
    /// Domain of networks without one.
    pub domain: String,
    /// The appliance's addresses to publish; empty: the bind address (if IPv4 and not the
    /// wildcard).
    pub addrs: Vec<Ipv4Addr>,
    /// This member's store id (the zones name the pool's members while it is on the roster).
    pub member: u64,
    /// Per upstream attempt.
    pub upstream_timeout: Duration,
    /// Forwarded queries in flight at once.
    pub max_in_flight: usize,
    /// Open TCP connections at once.
    pub max_tcp: usize,
    /// Open TCP connections from one client address at once.
    pub max_tcp_per_client: usize,
    /// Idle time after which a TCP connection is closed.
    pub tcp_idle: Duration,
    /// Entries in the forwarder's cache.
    pub cache_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 53,
            upstreams: Vec::new(),
            axfr_allow: Vec::new(),
            forward_from: AccessPolicy::default().forward_from,
            hostname: core::DEFAULT_HOSTNAME.into(),
            domain: core::DEFAULT_DOMAIN.into(),
            addrs: Vec::new(),
            member: 0,
            upstream_timeout: Duration::from_millis(1500),
            max_in_flight: 1024,
            max_tcp: 128,
            max_tcp_per_client: 16,
            tcp_idle: Duration::from_secs(10),
            cache_entries: 10_000,
        }
    }
}

impl Settings {
    /// The appliance as published in the zones when serving on `bind`.
    pub fn identity(&self, bind: IpAddr) -> Identity {
        let mut addrs = self.addrs.clone();
        if let (true, IpAddr::V4(a)) = (addrs.is_empty(), bind) {
            if !a.is_unspecified() {
                addrs.push(a);
            }
        }
        Identity {
            hostname: self.hostname.clone(),
            addrs,
            default_domain: self.domain.clone(),
            member: self.member,
        }
    }

    /// Who may forward and transfer, from these settings.
    pub fn policy(&self) -> AccessPolicy {
        AccessPolicy {
            forwarding: !self.upstreams.is_empty(),
            forward_from: self.forward_from.clone(),
            axfr_allow: self.axfr_allow.clone(),
        }
    }
}

/// The `nameserver` lines of a resolv.conf, on port 53, without `own` addresses (so drover
/// never forwards to itself).
pub fn resolv_conf_upstreams(text: &str, own: &[IpAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // Drop an IPv6 zone index (`fe80::1%eth0`); link-local upstreams are not supported.
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            (!own.contains(&ip) && !ip.is_unspecified()).then_some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// [`resolv_conf_upstreams`] of the host's `/etc/resolv.conf` (empty when unreadable).
pub fn system_upstreams(own: &[IpAddr]) -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| resolv_conf_upstreams(&t, own))
        .unwrap_or_default()
}

crate::counters::counter_set! {
    /// Counters of one DNS server.
    pub struct Stats, snapshot StatsSnapshot {
        udp_queries,
        tcp_queries,
        /// Authoritative replies (including NXDOMAIN/NODATA, NOTIMP, BADVERS).
        answered,
        refused,
        /// FORMERR sent for malformed queries.
        formerr,
        /// Undecodable datagrams dropped without reply.
        dropped,
        /// Replies sent with TC.
        truncated,
        transfers,
        forwarded,
        cache_hits,
        /// Upstream attempts that timed out or failed.
        upstream_failures,
        /// SERVFAIL sent because no upstream answered.
        servfail,
        /// Forwarded UDP queries dropped because `max_in_flight` were busy.
        overload,
        /// TCP connections closed at once because `max_tcp` were open.
        tcp_rejected,
        /// TCP connections closed at once because `max_tcp_per_client` from that address were
        /// open.
        tcp_rejected_per_client,
        send_errors,
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Serves on sockets bound by the caller (UDP and TCP on one address) until `shutdown` is
/// cancelled, counting into `stats`. `udp` is a group bound with SO_REUSEPORT, one socket per
/// worker core ([`crate::net::reuseport`]); each gets its own receive loop.
pub async fn serve(
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    settings: Settings,
    view: Arc<SharedView>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> io::Result<()> {
    let bind = tcp.local_addr()?;
    serve_on(udp, tcp, bind, settings, view, shutdown, stats).await
}

/// [`serve`] on any datagram sockets and connection source bound to `bind` (the lab serves on
/// its smoltcp interface this way).
pub async fn serve_on<U: Datagram, L: Accept>(
    udp: Vec<U>,
    tcp: L,
    bind: SocketAddr,
    settings: Settings,
    view: Arc<SharedView>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        ident: settings.identity(bind.ip()),
        policy: settings.policy(),
        in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
        cache: Mutex::new(Cache::new(settings.cache_entries)),
        zones: Mutex::new(None),
        settings,
        view,
        stats,
    });
    tracing::info!(
        addr = %bind,
        udp_sockets = udp.len(),
        upstreams = ?shared.settings.upstreams,
        "DNS server listening"
    );
    let mut udp_tasks = JoinSet::new();
    for socket in udp {
        udp_tasks.spawn(udp_loop(Arc::new(socket), shared.clone(), shutdown.clone()));
    }
    let udp_done = async { while udp_tasks.join_next().await.is_some() {} };
    let tcp_task = tcp_loop(tcp, shared, shutdown);
    tokio::join!(udp_done, tcp_task);
    Ok(())
}

struct Shared {
    settings: Settings,
    ident: Identity,
    policy: AccessPolicy,
    view: Arc<SharedView>,
    /// The zones (they know the view sequence they were built from) and when they were built.
    zones: Mutex<Option<(Arc<Zones>, Instant)>>,
    cache: Mutex<Cache>,
    in_flight: Arc<Semaphore>,
    stats: Arc<Stats>,
}

/// What to do after the synchronous part of a query.
enum Step {
    /// Send these messages (one for UDP; several for a zone transfer); none: stay silent.
    Send(Vec<Vec<u8>>),
    /// Resolve upstream, then send.
    Forward(Box<(Request, Query)>),
}

// Locks here are never held across an `.await`; a poisoned lock cannot occur with
// panic = "abort", and the data would still be usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The zones for the current view, rebuilt when the store changed, at most once per
    /// [`REBUILD_INTERVAL`] (a DHCP boot storm changes the store with every lease).
    fn zones(&self) -> Arc<Zones> {
        let view = self.view.snapshot();
        let mut cached = lock(&self.zones);
        if let Some((z, built)) = cached.as_ref() {
            if z.seq() == view.seq() || built.elapsed() < REBUILD_INTERVAL {
                return z.clone();
            }
        }
        let z = Arc::new(Zones::build(&view, &self.ident));
        tracing::debug!(
            seq = view.seq(),
            zones = z.zones().len(),
            "DNS zones rebuilt"
        );
        *cached = Some((z.clone(), Instant::now()));
        z
    }

    fn limit(req: &Request, transport: Transport) -> usize {
        match transport {
            Transport::Udp => usize::from(req.udp_limit()),
            Transport::Tcp => wire::MAX_TCP_SIZE,
        }
    }

    fn encode(&self, msg: &Message, limit: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        match wire::encode(msg, limit, &mut out) {
            Ok(fit) => {
                if fit == wire::Fit::Truncated {
                    bump(&self.stats.truncated);
                }
                vec![out]
            }
            Err(e) => {
                tracing::warn!("DNS reply not sent: {e}");
                Vec::new()
            }
        }
    }

    fn decide(&self, bytes: &[u8], client: IpAddr, transport: Transport) -> Step {
        let req = match wire::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%client, "DNS query not decoded: {e}");
                return match e.reply() {
                    Some(m) => {
                        bump(&self.stats.formerr);
                        // Header only: at most as long as what arrived.
                        Step::Send(self.encode(&m, bytes.len()))
                    }
                    None => {
                        bump(&self.stats.dropped);
                        Step::Send(Vec::new())
                    }
                };
            }
        };
        let zones = self.zones();
        match core::handle(&req, &zones, client, transport, &self.policy) {
            Action::Reply(m) => {
                bump(&self.stats.answered);
                Step::Send(self.encode(&m, Self::limit(&req, transport)))
            }
            Action::Refuse(m) => {
                bump(&self.stats.refused);
                let limit = Self::limit(&req, transport).min(bytes.len());
                Step::Send(self.encode(&m, limit))
            }
            Action::Transfer(m) => {
                bump(&self.stats.transfers);
                match wire::encode_transfer(&m) {
                    Ok(frames) => Step::Send(frames),
                    Err(e) => {
                        tracing::warn!("zone transfer not sent: {e}");
                        Step::Send(Vec::new())
                    }
                }
            }
            Action::Forward(q) => {
                let hit = lock(&self.cache).get(&q, Instant::now());
                match hit {
                    Some(m) => {
                        bump(&self.stats.cache_hits);
                        let reply = relay(&req, &m);
                        Step::Send(self.encode(&reply, Self::limit(&req, transport)))
                    }
                    None => Step::Forward(Box::new((req, q))),
                }
            }
        }
    }

    /// Resolves `q` upstream for `req` and returns the encoded reply (SERVFAIL on failure).
    async fn resolve(&self, req: &Request, q: &Query, transport: Transport) -> Vec<Vec<u8>> {
        bump(&self.stats.forwarded);
        let reply = match self.exchange(q).await {
            Some(m) => {
                lock(&self.cache).insert(q, &m, Instant::now());
                relay(req, &m)
            }
            None => {
                bump(&self.stats.servfail);
                let mut m = core::refused(req);
                m.metadata.response_code = ResponseCode::ServFail;
                m.metadata.recursion_available = true;
                m
            }
        };
        self.encode(&reply, Self::limit(req, transport))
    }

    /// Asks each upstream in turn; the first matching response wins.
    async fn exchange(&self, q: &Query) -> Option<Message> {
        let timeout = self.settings.upstream_timeout;
        for up in &self.settings.upstreams {
            match tokio::time::timeout(timeout, udp_exchange(*up, q)).await {
                Ok(Ok(m)) if !m.metadata.truncation => return Some(m),
                Ok(Ok(_)) => {
                    // Truncated: the whole answer over TCP from the same upstream.
                    match tokio::time::timeout(timeout, tcp_exchange(*up, q)).await {
                        Ok(Ok(m)) => return Some(m),
                        _ => bump(&self.stats.upstream_failures),
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %up, "upstream failed: {e}");
                    bump(&self.stats.upstream_failures);
                }
                Err(_) => {
                    tracing::debug!(upstream = %up, "upstream timed out");
                    bump(&self.stats.upstream_failures);
                }
            }
        }
        None
    }
}

/// The upstream answer `m` dressed as our reply to `req`.
fn relay(req: &Request, m: &Message) -> Message {
    let mut r = m.clone();
    r.metadata.id = req.header.id;
    r.metadata.recursion_desired = req.header.recursion_desired;
    r.metadata.checking_disabled = req.header.checking_disabled;
    r.metadata.recursion_available = true;
    r.metadata.authoritative = false;
    r.metadata.truncation = false;
    r.queries = req.question.iter().cloned().collect();
    r.edns = req.edns.as_ref().map(|_| wire::reply_edns());
    r.signature = None;
    r
}

/// A random query ID from hickory's generator (thread RNG).
fn random_id() -> u16 {
    Message::query().metadata.id
}

fn unspecified_for(up: SocketAddr) -> SocketAddr {
    match up {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn bad_data(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// One query to `up` over UDP from a fresh socket (random port); waits for the matching
/// response, ignoring anything else (the caller bounds the wait).
async fn udp_exchange(up: SocketAddr, q: &Query) -> io::Result<Message> {
    let socket = UdpSocket::bind(unspecified_for(up)).await?;
    socket.connect(up).await?;
    let id = random_id();
    let mut out = Vec::with_capacity(512);
    wire::encode_query(id, q, &mut out).map_err(|_| bad_data("query not encodable"))?;
    socket.send(&out).await?;
    let mut buf = vec![0u8; UPSTREAM_BUF];
    loop {
        let n = socket.recv(&mut buf).await?;
        if let Some(m) = wire::decode_response(&buf[..n], id, q) {
            return Ok(m);
        }
    }
}

/// One query to `up` over TCP.
async fn tcp_exchange(up: SocketAddr, q: &Query) -> io::Result<Message> {
    let mut stream = TcpStream::connect(up).await?;
    let id = random_id();
    let mut out = Vec::with_capacity(512);
    wire::encode_query(id, q, &mut out).map_err(|_| bad_data("query not encodable"))?;
    let len = u16::try_from(out.len()).map_err(|_| bad_data("query too long"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&out).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    wire::decode_response(&buf, id, q).ok_or_else(|| bad_data("mismatched upstream response"))
}

async fn udp_loop<U: Datagram>(socket: Arc<U>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; wire::MAX_QUERY_SIZE];
    let mut tasks = JoinSet::new();
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, from) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("DNS UDP receive failed: {e}");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        bump(&shared.stats.udp_queries);
        match shared.decide(&buf[..len], from.ip(), Transport::Udp) {
            Step::Send(frames) => {
                for f in frames {
                    send_udp(&*socket, &shared.stats, &f, from).await;
                }
            }
            Step::Forward(fwd) => {
                let (req, q) = *fwd;
                let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
                    bump(&shared.stats.overload);
                    continue;
                };
                let (socket, shared) = (socket.clone(), shared.clone());
                tasks.spawn(async move {
                    let frames = shared.resolve(&req, &q, Transport::Udp).await;
                    for f in frames {
                        send_udp(&*socket, &shared.stats, &f, from).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    tasks.shutdown().await;
}

async fn send_udp(socket: &impl Datagram, stats: &Stats, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to).await {
        tracing::debug!(%to, "DNS send failed: {e}");
        bump(&stats.send_errors);
    }
}

async fn tcp_loop<L: Accept>(listener: L, shared: Arc<Shared>, shutdown: CancellationToken) {
    let caps = Caps::new(
        shared.settings.max_tcp.max(1),
        shared.settings.max_tcp_per_client.max(1),
    );
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("DNS TCP accept failed: {e}");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let permit = match caps.take(peer.ip()) {
            Ok(slot) => slot,
            Err(over) => {
                bump(match over {
                    Refused::Total => &shared.stats.tcp_rejected,
                    Refused::PerAddress => &shared.stats.tcp_rejected_per_client,
                });
                continue; // dropping the stream closes it
            }
        };
        let (shared, token) = (shared.clone(), shutdown.clone());
        conns.spawn(async move {
            if let Err(e) = connection(stream, peer, &shared, token).await {
                tracing::debug!(%peer, "DNS TCP connection ended: {e}");
            }
            drop(permit);
        });
    }
    conns.shutdown().await;
}

/// Serves the queries of one TCP connection, in order, until EOF, idle timeout or shutdown.
async fn connection(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let idle = shared.settings.tcp_idle;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "idle");
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, stream.read_exact(&mut len)) => {
                match r {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Ok(r) => { r?; }
                }
            }
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(idle, stream.read_exact(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        bump(&shared.stats.tcp_queries);
        let frames = match shared.decide(&buf, peer.ip(), Transport::Tcp) {
            Step::Send(frames) => frames,
            Step::Forward(fwd) => {
                let (req, q) = *fwd;
                let permit = shared.in_flight.clone().try_acquire_owned();
                match permit {
                    Ok(_permit) => shared.resolve(&req, &q, Transport::Tcp).await,
                    Err(_) => {
                        bump(&shared.stats.overload);
                        let mut m = core::refused(&req);
                        m.metadata.response_code = ResponseCode::ServFail;
                        shared.encode(&m, wire::MAX_TCP_SIZE)
                    }
                }
            }
        };
        for f in frames {
            // encode() never produces more than MAX_TCP_SIZE bytes.
            let len = u16::try_from(f.len()).map_err(|_| bad_data("reply too long"))?;
            let mut framed = Vec::with_capacity(f.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&f);
            tokio::time::timeout(idle, stream.write_all(&framed))
                .await
                .map_err(|_| timed_out())??;
        }
    }
}

/// The forwarder's cache: upstream answers by question, for their TTL (bounded), with
/// negative answers cached per RFC 2308 (bounded) and nothing else (SERVFAIL, truncated).
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<(Name, RecordType, DNSClass), Entry>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    msg: Message,
    stored: Instant,
    expires: Instant,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(q: &Query) -> (Name, RecordType, DNSClass) {
        (q.name().clone(), q.query_type(), q.query_class())
    }

    /// How long `m` may be cached, or `None`.
    pub fn ttl_of(m: &Message) -> Option<u32> {
        if m.metadata.truncation {
            return None;
        }
        let rcode = m.metadata.response_code;
        let positive = rcode == ResponseCode::NoError && !m.answers.is_empty();
        let ttl = if positive {
            m.answers
                .iter()
                .chain(&m.authorities)
                .map(|r| r.ttl)
                .min()?
                .min(CACHE_MAX_TTL)
        } else if rcode == ResponseCode::NoError || rcode == ResponseCode::NXDomain {
            // RFC 2308 §5: negative answers are cached only with an SOA, for
            // min(SOA TTL, SOA minimum).
            let soa = m.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(s) => Some(r.ttl.min(s.minimum)),
                _ => None,
            })?;
            soa.min(CACHE_MAX_NEGATIVE_TTL)
        } else {
            return None;
        };
        (ttl > 0).then_some(ttl)
    }

    /// Stores `m` as the answer to `q` at time `now`, if cacheable.
    pub fn insert(&mut self, q: &Query, m: &Message, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = Cache::ttl_of(m) else {
            return;
        };
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.expires > now);
        }
        if self.entries.len() >= self.capacity {
            // Still full of live entries: make room by dropping an arbitrary one.
            if let Some(k) = self.entries.keys().next().cloned() {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(
            Cache::key(q),
            Entry {
                msg: m.clone(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    /// The cached answer to `q` at `now`, TTLs reduced by its age.
    pub fn get(&mut self, q: &Query, now: Instant) -> Option<Message> {
        let key = Cache::key(q);
        let e = self.entries.get(&key)?;
        if e.expires <= now {
            self.entries.remove(&key);
            return None;
        }
        let age = u32::try_from(now.duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        let mut m = e.msg.clone();
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Record;

    fn q(name: &str) -> Query {
        Query::query(Name::from_ascii(name).unwrap(), RecordType::A)
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.queries.push(q("example.test."));
        m.answers.push(Record::from_rdata(
            Name::from_ascii("example.test.").unwrap(),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        ));
        m
    }

    fn negative(soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let n = Name::from_ascii("test.").unwrap();
        m.authorities.push(Record::from_rdata(
            n.clone(),
            soa_ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 1, 1, 1, minimum)),
        ));
        m
    }

    #[test]
    fn cache_ttls_are_bounded() {
        assert_eq!(Cache::ttl_of(&answer(60)), Some(60));
        assert_eq!(Cache::ttl_of(&answer(86400)), Some(CACHE_MAX_TTL));
        assert_eq!(Cache::ttl_of(&answer(0)), None);
        assert_eq!(Cache::ttl_of(&negative(3600, 120)), Some(120));
        assert_eq!(Cache::ttl_of(&negative(50, 120)), Some(50));
        assert_eq!(
            Cache::ttl_of(&negative(86400, 86400)),
            Some(CACHE_MAX_NEGATIVE_TTL)
        );
        let mut no_soa = negative(60, 60);
        no_soa.authorities.clear();
        assert_eq!(Cache::ttl_of(&no_soa), None);
        let mut servfail = answer(60);
        servfail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(Cache::ttl_of(&servfail), None);
        let mut tc = answer(60);
        tc.metadata.truncation = true;
        assert_eq!(Cache::ttl_of(&tc), None);
    }

    #[test]
    fn cache_expires_ages_and_stays_bounded() {
        let mut c = Cache::new(2);
        let t0 = Instant::now();
        c.insert(&q("example.test."), &answer(60), t0);
        let hit = c
            .get(&q("EXAMPLE.test."), t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(hit.answers[0].ttl, 50);
        assert!(c
            .get(&q("example.test."), t0 + Duration::from_secs(60))
            .is_none());
        for i in 0..10 {
            c.insert(&q(&format!("n{i}.test.")), &answer(60), t0);
        }
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn upstreams_from_resolv_conf() {
        let text = "# comment\nnameserver 10.255.255.53\nnameserver 198.18.0.1\n\
                    search lab\nnameserver fe80::1%eth0\nnameserver bogus\n";
        let own = [IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))];
        let ups = resolv_conf_upstreams(text, &own);
        assert_eq!(
            ups,
            vec![
                "10.255.255.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn identity_defaults_to_the_bind_address() {
        let s = Settings::default();
        let id = s.identity("198.18.0.1".parse().unwrap());
        assert_eq!(id.addrs, vec![Ipv4Addr::new(198, 18, 0, 1)]);
        assert!(s.identity("0.0.0.0".parse().unwrap()).addrs.is_empty());
        assert!(!s.policy().forwarding);
    }
}
