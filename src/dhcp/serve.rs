//! The tokio shell of the DHCPv4 server: one task per interface.
//!
//! Data flow: one UDP socket bound to `0.0.0.0:port` on the interface (SO_BINDTODEVICE,
//! SO_BROADCAST, SO_REUSEADDR) -> receive into a preallocated buffer -> [`wire::decode`] ->
//! a snapshot of the server's [`SharedView`] for [`core::handle`] (never across an
//! `.await`) -> act:
//!
//! - `Hold`: remember the offer in this task's [`Offers`] table, send the OFFER; an offer to
//!   a known node's PXE/iPXE firmware is also queued as the node's `dhcp` boot event (a
//!   non-blocking [`Recorder`] call; its writer task batches the store writes);
//! - `CommitThenReply` / `Commit`: queue the lease (with its ACK, if any) for this task's
//!   committer and go on receiving. The committer, one thread on the blocking pool, takes
//!   everything queued (up to [`COMMIT_BATCH`]), writes it in one [`Store::write`] (one LMDB
//!   fsync for the group), refreshes the shared view ([`SharedView::refresh`]) so the next
//!   packet, here or on another interface, sees the leases, and hands the group back. Only
//!   then does this task send the group's ACKs (persistence is an output; if the write fails,
//!   no ACK of the group is sent and the clients retry);
//! - `Reply`: send (NAK, ACK to INFORM); `Drop`: count and log.
//!
//! The receive loop never waits for the disk, so DISCOVERs and a well-behaved client's DORA
//! are answered during a flood of REQUESTs. Fairness: a client has at most one ACK in the
//! queue (a retransmission while it is pending is coalesced: the pending ACK answers it), an
//! address is in at most one pending ACK (a second client asking for it waits for the first
//! commit and is then judged against the store), and the queue is bounded ([`COMMIT_QUEUE`]:
//! beyond it a REQUEST is dropped and counted, and its client retransmits).
//!
//! Destinations follow RFC 2131 §4.1: giaddr set -> the relay's server port; ciaddr set ->
//! unicast to ciaddr on the client port; otherwise the limited broadcast 255.255.255.255 on
//! the client port, which §4.1 permits whatever the broadcast bit says (unicast to yiaddr
//! would need an ARP entry written for a client that has no address yet).
//!
//! Counters live in [`Stats`].
//!
//! In a pool, the task reads the current [`Share`] (kept by the pool task) for every request:
//! which clients it answers and which addresses it may hand out.
//!
//! The loop itself ([`run_on`]) takes any [`Datagram`] socket bound to the server port: the
//! kernel socket of an interface ([`run_with_stats`] binds it), or the lab's smoltcp socket
//! (`crate::lab::serve`).
//!
//! Not here: periodic view refresh for changes made by other processes (whoever owns the
//! shared view refreshes it; this task refreshes after its own writes), IP_PKTINFO (the
//! socket is per interface instead).

use super::core::{self, Action, Context, Destination, DropReason, Offers};
use super::share::Share;
use super::wire::{self, WireError, WireReason};
use crate::net::datagram::Datagram;
use crate::net::Interface;
use crate::pool::peers::Peers;
use crate::store::model::{BootStage, Lease, Mac};
use crate::store::{SharedView, Store, StoreError};
use crate::timeline::Recorder;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Start-up settings of the DHCP server (from the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Server port (67); relays are answered on it too.
    pub port: u16,
    /// Client port (68).
    pub client_port: u16,
    /// Lease time in seconds.
    pub lease_time: u32,
    /// `http://SERVER_IP[:PORT]`, used for iPXE boot URLs.
    pub http_base: String,
    /// x86-64 UEFI loader: `ipxe.efi` or `snponly.efi`.
    pub uefi_loader: String,
    /// DNS and NTP offered to clients (options 6, 15, 119, 42).
    pub services: core::Services,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 67,
            client_port: 68,
            lease_time: core::DEFAULT_LEASE_TIME,
            http_base: String::new(),
            uefi_loader: core::DEFAULT_UEFI_LOADER.to_string(),
            services: core::Services::default(),
        }
    }
}

/// How long the receive loop backs off after a socket error.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Expired offers are purged every this many packets.
const PURGE_EVERY: u64 = 256;
/// Leases waiting for the committer of one interface. One per client at most, so this is
/// also how many different clients can be between REQUEST and ACK at once; a boot storm of
/// thousands of nodes spreads its REQUESTs over seconds and is never limited.
pub const COMMIT_QUEUE: usize = 2048;
/// Most leases written under one fsync.
pub const COMMIT_BATCH: usize = 512;

crate::counters::counter_set! {
    /// What one DHCP server task did with the requests it did not drop (drops: [`Stats`]).
    pub struct Outcomes, snapshot OutcomesSnapshot {
        received,
        offers,
        acks,
        naks,
        informs,
        /// DECLINE and RELEASE written.
        commits,
        /// Store writes (fsyncs) of groups of leases.
        commit_batches,
        /// REQUESTs answered by a pending ACK (a retransmission while its lease was written).
        coalesced,
        /// REQUESTs not answered because another client's ACK for that address was pending.
        commit_conflicts,
        /// REQUESTs, DECLINEs and RELEASEs dropped because the commit queue was full.
        commit_queue_full,
        store_errors,
        send_errors,
        encode_errors,
    }
}

/// Counters of one DHCP server task: the outcomes, then dropped requests by reason (wire
/// errors, then the core's reasons), named by their enums, as `/metrics` lists them.
#[derive(Debug, Default)]
pub struct Stats {
    pub outcomes: Outcomes,
    wire_drops: [AtomicU64; WireReason::ALL.len()],
    core_drops: [AtomicU64; DropReason::ALL.len()],
}

impl Stats {
    fn count_wire_drop(&self, reason: WireReason) {
        self.wire_drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn count_drop(&self, reason: DropReason) {
        self.core_drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter: the outcomes, then drops as `dropped_<reason>`.
    fn all(&self) -> Vec<(String, u64)> {
        let outcomes = self.outcomes.snapshot().pairs().into_iter();
        let drops = self.drops().into_iter();
        outcomes
            .map(|(n, v)| (n.to_string(), v))
            .chain(drops.map(|(n, v)| (format!("dropped_{n}"), v)))
            .collect()
    }

    /// Dropped requests by reason, including zeros.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        let wire = WireReason::NAMES.iter().zip(&self.wire_drops);
        let core = DropReason::NAMES.iter().zip(&self.core_drops);
        wire.chain(core)
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// All requests dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        let all = self.wire_drops.iter().chain(&self.core_drops);
        all.map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl crate::counters::Counters for Stats {
    fn counters(&self) -> Vec<(String, u64)> {
        self.all()
    }
}

/// What a DHCP task shares with the rest of the server besides the store.
pub struct Links {
    /// The pool member's current share of clients and addresses.
    pub share: watch::Receiver<Arc<Share>>,
    /// The other live pool members, announced after this one as name and time servers.
    pub peers: watch::Receiver<Arc<Peers>>,
    /// Where offers to known nodes' boot firmware are reported.
    pub events: Option<Recorder>,
}

/// Serves DHCP on `iface` until `shutdown` is cancelled, as a member on its own.
pub async fn run(
    iface: Interface,
    settings: Settings,
    store: Arc<Store>,
    view: Arc<SharedView>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let (_, share) = watch::channel(Arc::new(Share::solo(store.member())));
    let (_, peers) = watch::channel(Arc::new(Peers::default()));
    let links = Links {
        share,
        peers,
        events: None,
    };
    run_with_stats(
        iface,
        settings,
        store,
        view,
        links,
        shutdown,
        Arc::new(Stats::default()),
    )
    .await
}

/// The context the core runs with on `iface`.
pub fn context(iface: &Interface, settings: &Settings) -> Context {
    let mut ctx = Context::new(
        &iface.name,
        iface.addr,
        iface.subnet,
        settings.http_base.clone(),
    );
    ctx.lease_time = settings.lease_time;
    ctx.uefi_loader = settings.uefi_loader.clone();
    ctx.services = settings.services.clone();
    ctx.arm64_loader =
        crate::firmware::get(core::ARM64_LOADER).map(|_| core::ARM64_LOADER.to_string());
    if ctx.arm64_loader.is_none() {
        tracing::debug!(
            "no {} in the firmware bundle: arm64 UEFI clients get no boot file",
            core::ARM64_LOADER
        );
    }
    ctx
}

/// [`run`] as the pool member that `share` describes (the pool task keeps it current),
/// counting into `stats` and reporting offers to known nodes' boot firmware to `events`.
pub async fn run_with_stats(
    iface: Interface,
    settings: Settings,
    store: Arc<Store>,
    view: Arc<SharedView>,
    links: Links,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> io::Result<()> {
    let socket = UdpSocket::from_std(bind(&iface.name, settings.port)?)?;
    let ctx = context(&iface, &settings);
    tracing::info!(
        interface = %iface.name, addr = %iface.addr, port = settings.port,
        "DHCP server listening"
    );
    let on = On {
        name: iface.name,
        ctx,
        settings,
        store,
        view,
        links,
        stats,
    };
    run_on(socket, on, shutdown).await
}

/// What [`run_on`] serves with: the interface's name (for logs), the core's context and
/// settings, the store and its view, the links to the other tasks, the counters.
pub struct On {
    pub name: String,
    pub ctx: Context,
    pub settings: Settings,
    pub store: Arc<Store>,
    pub view: Arc<SharedView>,
    pub links: Links,
    pub stats: Arc<Stats>,
}

/// The receive loop on any datagram socket already bound to the server port (a kernel
/// socket on an interface, or the lab's smoltcp socket).
pub async fn run_on<S: Datagram>(socket: S, on: On, shutdown: CancellationToken) -> io::Result<()> {
    let Links {
        share,
        peers,
        events,
    } = on.links;
    let (name, ctx, settings) = (on.name, on.ctx, on.settings);
    let (store, view, stats) = (on.store, on.view, on.stats);
    let (queue, commits) = mpsc::channel(COMMIT_QUEUE);
    // Never full: the committer has at most COMMIT_QUEUE leases out, in groups of one or more.
    let (done_tx, mut done) = mpsc::channel(COMMIT_QUEUE);
    let shared = view.clone();
    // Ends when `queue` is dropped (this function returns) and the queue is drained.
    tokio::task::spawn_blocking(move || committer(&store, &shared, commits, &done_tx));
    let mut shell = Shell {
        socket,
        settings,
        ctx,
        view,
        share,
        peers,
        stats,
        events,
        offers: Offers::default(),
        queue,
        pending: Pending::default(),
        out: Vec::with_capacity(wire::CEILING_MAX_REPLY),
    };
    let mut buf = vec![0u8; wire::MAX_DATAGRAM + 1];
    let mut packets: u64 = 0;
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(group) = done.recv() => {
                shell.committed(group).await;
                continue;
            }
            r = shell.socket.recv_from(&mut buf) => r,
        };
        let (len, from) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(interface = %name, "DHCP receive failed: {e}");
                tokio::time::sleep(RECV_ERROR_BACKOFF).await;
                continue;
            }
        };
        packets += 1;
        let now = crate::clock::unix_secs();
        if packets % PURGE_EVERY == 0 {
            shell.offers.purge(now);
        }
        shell
            .stats
            .outcomes
            .received
            .fetch_add(1, Ordering::Relaxed);
        match wire::decode(&buf[..len]) {
            Ok(req) => shell.handle(now, req).await,
            Err(e) => shell.malformed(from, e),
        }
    }
}

struct Shell<S> {
    socket: S,
    settings: Settings,
    ctx: Context,
    view: Arc<SharedView>,
    share: watch::Receiver<Arc<Share>>,
    peers: watch::Receiver<Arc<Peers>>,
    stats: Arc<Stats>,
    events: Option<Recorder>,
    offers: Offers,
    /// To the committer.
    queue: mpsc::Sender<Queued>,
    pending: Pending,
    out: Vec<u8>,
}

/// A lease for the committer, and the ACK to send once it is durable (none for DECLINE and
/// RELEASE).
struct Queued {
    lease: Lease,
    ack: Option<(wire::Reply, Destination)>,
}

/// A group of leases written together, handed back by the committer.
struct Committed {
    group: Vec<Queued>,
    result: Result<(), StoreError>,
}

/// The ACKs queued and not yet sent, by client and by address (the two maps mirror each
/// other).
#[derive(Default)]
struct Pending {
    by_mac: HashMap<Mac, Ipv4Addr>,
    by_ip: HashMap<Ipv4Addr, Mac>,
}

impl Pending {
    fn insert(&mut self, mac: Mac, ip: Ipv4Addr) {
        self.by_mac.insert(mac, ip);
        self.by_ip.insert(ip, mac);
    }

    fn remove(&mut self, mac: Mac, ip: Ipv4Addr) {
        self.by_mac.remove(&mac);
        self.by_ip.remove(&ip);
    }
}

/// The committer: one blocking-pool thread per interface task. Takes whatever is queued (up
/// to [`COMMIT_BATCH`]), writes it under one fsync, refreshes the shared view and hands the
/// group back; returns when the queue's sender is gone and the queue is drained.
fn committer(
    store: &Store,
    view: &SharedView,
    mut queue: mpsc::Receiver<Queued>,
    done: &mpsc::Sender<Committed>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < COMMIT_BATCH {
            match queue.try_recv() {
                Ok(q) => group.push(q),
                Err(_) => break,
            }
        }
        let result = store
            .write(|w| group.iter().try_for_each(|q| w.put(&q.lease)))
            .and_then(|()| view.refresh().map(drop));
        // Nobody to tell after shutdown: the leases are durable, their ACKs unsent.
        if done.blocking_send(Committed { group, result }).is_err() {
            return;
        }
    }
}

impl<S: Datagram> Shell<S> {
    fn malformed(&self, from: std::net::SocketAddr, e: WireError) {
        tracing::debug!(%from, "dropping DHCP datagram: {e}");
        self.stats.count_wire_drop(e.reason());
    }

    async fn handle(&mut self, now: u64, req: wire::Request) {
        let share = self.share.borrow().clone();
        if self.peers.has_changed().unwrap_or(false) {
            self.ctx.peers = self.peers.borrow_and_update().others.clone();
        }
        let view = self.view.snapshot();
        let action = core::handle(now, &req, &self.ctx, &share, &view, &self.offers);
        // Let go of the snapshot at once, so that the committer's refresh can update the
        // view in place instead of copying it.
        drop(view);
        match action {
            Action::Drop(reason) => {
                if reason == DropReason::OtherServer {
                    // The client chose another server's offer: ours is free again.
                    self.offers.remove_mac(req.chaddr);
                }
                tracing::debug!(mac = %req.chaddr, xid = req.xid, "no reply: {}", reason.name());
                self.stats.count_drop(reason);
            }
            Action::Hold(offer, reply, dest) => {
                let ip = offer.ip;
                if !self.offers.insert(now, offer) {
                    self.stats.count_drop(DropReason::OffersFull);
                    return;
                }
                tracing::debug!(mac = %req.chaddr, %ip, "DHCPOFFER");
                if self.send(&reply, dest).await {
                    self.stats.outcomes.offers.fetch_add(1, Ordering::Relaxed);
                    self.boot_event(&req, &reply);
                }
            }
            Action::Reply(reply, dest) => {
                let nak = reply.kind == wire::ReplyKind::Nak;
                if nak {
                    tracing::info!(mac = %req.chaddr, "DHCPNAK: {}", reply.message.as_deref().unwrap_or(""));
                }
                if self.send(&reply, dest).await {
                    let counter = if nak {
                        &self.stats.outcomes.naks
                    } else {
                        &self.stats.outcomes.informs
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Action::CommitThenReply(lease, reply, dest) => {
                let (mac, ip) = (lease.mac, lease.ip);
                if self.pending.by_mac.contains_key(&mac) {
                    // A retransmission: the pending ACK answers it.
                    self.stats
                        .outcomes
                        .coalesced
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if self.pending.by_ip.contains_key(&ip) {
                    // Another client's ACK for this address is on its way to the disk; the
                    // view does not show it yet. This client retransmits and is then judged
                    // against the store.
                    tracing::debug!(%mac, %ip, "address pending for another client");
                    self.stats
                        .outcomes
                        .commit_conflicts
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let ack = Some((reply, dest));
                if self.enqueue(Queued { lease, ack }) {
                    self.pending.insert(mac, ip);
                }
            }
            Action::Commit(lease) => {
                self.enqueue(Queued { lease, ack: None });
            }
        }
    }

    /// Hands `queued` to the committer without waiting; false (and counted) when the queue
    /// is full.
    fn enqueue(&self, queued: Queued) -> bool {
        let mac = queued.lease.mac;
        match self.queue.try_send(queued) {
            Ok(()) => true,
            Err(_) => {
                tracing::debug!(%mac, "commit queue full, request dropped");
                self.stats
                    .outcomes
                    .commit_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A group is durable (or failed): send its ACKs, in the order they were queued.
    async fn committed(&mut self, done: Committed) {
        self.stats
            .outcomes
            .commit_batches
            .fetch_add(1, Ordering::Relaxed);
        let failed = done.result.as_ref().err();
        for Queued { lease, ack } in done.group {
            let (mac, ip, state) = (lease.mac, lease.ip, lease.state);
            let Some((reply, dest)) = ack else {
                match failed {
                    None => {
                        tracing::info!(%mac, %ip, ?state, "lease updated");
                        self.stats.outcomes.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(e) => {
                        tracing::error!(%mac, %ip, "lease not written: {e}");
                        self.stats
                            .outcomes
                            .store_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            };
            self.pending.remove(mac, ip);
            if let Some(e) = failed {
                tracing::error!(%mac, %ip, "lease not written, ACK not sent: {e}");
                self.stats
                    .outcomes
                    .store_errors
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.offers.remove_mac(mac);
            tracing::info!(%mac, %ip, "DHCPACK");
            if self.send(&reply, dest).await {
                self.stats.outcomes.acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An offer to network-boot firmware (PXE or iPXE) is the first step of a boot; queued
    /// for the boot-event writer, never written here.
    fn boot_event(&self, req: &wire::Request, reply: &wire::Reply) {
        let Some(events) = &self.events else { return };
        if !(req.is_pxe() || req.is_ipxe()) {
            return;
        }
        let client = if req.is_ipxe() { "iPXE" } else { "PXE" };
        let file = reply.boot_file.as_deref().unwrap_or("none");
        let detail = format!("offer {} to {client}, boot file {file}", reply.yiaddr);
        events.record_mac(req.chaddr, BootStage::Dhcp, "dhcp", detail);
    }

    /// Encodes and sends; false (and counted) on failure.
    async fn send(&mut self, reply: &wire::Reply, dest: Destination) -> bool {
        if let Err(e) = wire::encode(reply, &mut self.out) {
            tracing::warn!(mac = %reply.chaddr, "cannot encode reply: {e}");
            self.stats
                .outcomes
                .encode_errors
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let to = match dest {
            Destination::Relay(ip) => SocketAddrV4::new(ip, self.settings.port),
            Destination::Unicast(ip) => SocketAddrV4::new(ip, self.settings.client_port),
            Destination::Broadcast => {
                SocketAddrV4::new(Ipv4Addr::BROADCAST, self.settings.client_port)
            }
        };
        match self.socket.send_to(&self.out, to.into()).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%to, "DHCP send failed: {e}");
                self.stats
                    .outcomes
                    .send_errors
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// A UDP socket on `0.0.0.0:port` that only sees (and sends on) interface `iface`.
fn bind(iface: &str, port: u16) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(iface.as_bytes()))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_from_interface_and_settings() {
        let iface = Interface {
            name: "br0".into(),
            index: 3,
            mac: None,
            addr: Ipv4Addr::new(198, 18, 0, 1),
            subnet: "198.18.0.0/24".parse().unwrap(),
        };
        let settings = Settings {
            lease_time: 600,
            http_base: "http://198.18.0.1:8080".into(),
            uefi_loader: "snponly.efi".into(),
            ..Settings::default()
        };
        let ctx = context(&iface, &settings);
        assert_eq!(ctx.server, iface.addr);
        assert_eq!(ctx.lease_time, 600);
        assert_eq!(ctx.uefi_loader, "snponly.efi");
        assert_eq!(ctx.http_base, "http://198.18.0.1:8080");
        assert_eq!(ctx.fallback.subnet, iface.subnet);
        // Only when the firmware bundle has it.
        assert_eq!(
            ctx.arm64_loader.is_some(),
            crate::firmware::get(core::ARM64_LOADER).is_some()
        );
    }

    #[test]
    fn every_drop_reason_is_counted() {
        use crate::dhcp::core::DropReason as D;
        let core = [
            D::UnknownRelayNetwork,
            D::UnknownClientNetwork,
            D::ReservationOutsideNetwork,
            D::ReservedAddressInUse,
            D::NoDynamicRange,
            D::RangeExhausted,
            D::OffersFull,
            D::OtherServer,
            D::MissingAddress,
            D::NotHolder,
            D::InformWithoutAddress,
            D::OtherMember,
            D::Drained,
        ];
        let wire = [
            WireError::Truncated(0),
            WireError::TooLong(0),
            WireError::BadCookie,
            WireError::NotRequest(0),
            WireError::UnsupportedHardware { htype: 0, hlen: 0 },
            WireError::OptionOverrun { code: 0 },
            WireError::BadOptionLength { code: 0, len: 0 },
            WireError::UndecodableOption { code: 0 },
            WireError::Header(String::new()),
            WireError::NoMessageType,
            WireError::UnsupportedMessageType(0),
        ];
        let stats = Stats::default();
        for d in core {
            stats.count_drop(d);
        }
        for w in &wire {
            stats.count_wire_drop(w.reason());
        }
        let drops = stats.drops();
        assert_eq!(drops.len(), core.len() + wire.len());
        assert!(drops.iter().all(|(_, v)| *v == 1), "{drops:?}");
        assert_eq!(stats.dropped(), drops.len() as u64);
    }
}
