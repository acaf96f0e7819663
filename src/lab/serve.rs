//! A lab's services: the composition root of one lab, as `drover serve` is of a server.
//!
//! [`start`] opens the lab's own store (`<dir>/state`), starts the segment (VMs join at
//! `<dir>/segment.sock`), puts drover on it at [`SERVER`] through smoltcp, and runs there the
//! same shells as on kernel sockets: DHCP (`dhcp::serve::run_on` over the stack's UDP
//! socket), TFTP (`tftp::serve::run_on`: the embedded iPXE binaries, transfers on the
//! stack's ephemeral ports), DNS (`dns::serve::serve_on` over UDP and TCP: the lab store's
//! zones, no forwarding), NTP (`ntp::serve::run_on`: the host clock as the lab's reference)
//! and HTTP (`http::listen::serve` over the stack's TCP listener: boot path, API and
//! page). The same router also listens on a localhost port, so the user's browser and the
//! CLI reach the lab's page and API. A view refresher picks up changes that other processes
//! (`drover --state-dir <dir>/state node add ...`) write to the store, and the boot-event
//! writer records each VM's timeline.
//!
//! Not here (not yet on the lab network): NFS (its server takes kernel TCP connections
//! only), and pool members.

use super::segment::{Attachment, Segment};
use super::stack::Stack;
use super::LabError;
use crate::net::Interface;
use crate::store::model::{Ipv4Net, Network};
use crate::store::{SharedView, Store};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// drover's address on every lab segment (a benchmark-range address: nothing of it leaves
/// the process).
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The segment's prefix length.
pub const PREFIX: u8 = 24;
/// drover's Ethernet address on the segment (locally administered).
pub const SERVER_MAC: [u8; 6] = [0x02, 0xd7, 0x0e, 0x00, 0x00, 0x01];
/// The port of the boot path and API on the segment.
const HTTP_PORT: u16 = 80;
/// The datagram services' ports on the segment (their standard ports).
const TFTP_PORT: u16 = 69;
const DNS_PORT: u16 = 53;
const NTP_PORT: u16 = 123;

/// The files of a lab directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
        }
    }
    /// The lab's drover state directory (store, blobs, admin password).
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// Where VMs join the segment.
    pub fn segment(&self) -> PathBuf {
        self.dir.join("segment.sock")
    }
    /// Where VMs with a datagram NIC send their frames, and where each receives its own.
    pub fn segment_dgram(&self) -> PathBuf {
        self.dir.join("segment.dgram")
    }
    pub fn vm_dgram(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.dgram"))
    }
    /// A VM's serial console socket and its log.
    pub fn console(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.console"))
    }
    pub fn serial_log(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.serial.log"))
    }
    /// Pool member `index`'s state directory, record and log (labs with a pool).
    pub fn member_state(&self, index: u8) -> PathBuf {
        self.member_dir(index).join("state")
    }
    pub fn member_file(&self, index: u8) -> PathBuf {
        self.member_dir(index).join("member.json")
    }
    pub fn member_log(&self, index: u8) -> PathBuf {
        self.member_dir(index).join("drover.log")
    }
    fn member_dir(&self, index: u8) -> PathBuf {
        self.dir.join("members").join(format!("m{index}"))
    }
}

/// A started lab: where its page is, and its tasks (they end at shutdown).
pub struct Running {
    /// The page and API on localhost.
    pub http: SocketAddr,
    /// The segment, for in-process ports (tests attach their own stack to it).
    pub segment: Segment,
    pub tasks: JoinSet<Result<(), LabError>>,
}

/// The segment's subnet.
pub fn subnet() -> Ipv4Net {
    // A prefix of 24 is always valid.
    Ipv4Net::containing(SERVER, PREFIX).unwrap_or_else(|| unreachable!("prefix {PREFIX}"))
}

/// drover's place on the segment: its address and Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
}

impl Seat {
    /// Member `index` (from 1, at most [`MAX_MEMBERS`]) of a lab's pool: `198.18.0.index`;
    /// a lab without a pool is member 1 ([`SERVER`]).
    pub fn member(index: u8) -> Seat {
        let [a, b, c, _] = SERVER.octets();
        let [m0, m1, m2, m3, m4, _] = SERVER_MAC;
        Seat {
            addr: Ipv4Addr::new(a, b, c, index),
            mac: [m0, m1, m2, m3, m4, index],
        }
    }
}

/// Pool members in one lab at most (nodes' addresses start at `.11`).
pub const MAX_MEMBERS: u8 = 5;

/// Starts the lab's segment and its services on its `store` (opened on `paths.state()`);
/// `admin` is the localhost address of the page (port 0: any free port).
pub async fn start(
    paths: &Paths,
    store: Arc<Store>,
    admin: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Running, LabError> {
    let (segment, mut tasks) = start_segment(paths, &shutdown).await?;
    let seat = Seat::member(1);
    let solo = watch::channel(Arc::new(crate::dhcp::Share::solo(store.member()))).1;
    let (http, services) = start_services(
        &paths.state(),
        store,
        seat,
        &segment,
        solo,
        admin,
        &shutdown,
    )
    .await?;
    tasks.spawn(async move { join_all(services).await });
    tracing::info!(%http, segment = %paths.segment().display(), "lab ready");
    Ok(Running {
        http,
        segment,
        tasks,
    })
}

/// The segment (VMs join at `paths.segment()`) and its router advertisements.
pub async fn start_segment(
    paths: &Paths,
    shutdown: &CancellationToken,
) -> Result<(Segment, JoinSet<Result<(), LabError>>), LabError> {
    let mut tasks = JoinSet::new();
    // The switch announces itself over LLDP by the lab's name (its directory's).
    let name = paths.dir.file_name().map_or_else(
        || "drover-lab".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let segment = Segment::start_with(Some(name), shutdown.clone());
    let sock = paths.segment();
    let (listening, token) = (segment.clone(), shutdown.clone());
    tasks.spawn(async move {
        listening
            .listen(&sock, token)
            .await
            .map_err(LabError::io("listening on", sock.display()))
    });
    let (listening, sock, token) = (segment.clone(), paths.segment_dgram(), shutdown.clone());
    tasks.spawn(async move {
        listening
            .listen_dgram(&sock, token)
            .await
            .map_err(LabError::io("listening on", sock.display()))
    });
    let ra_port = segment
        .attach()
        .await
        .map_err(LabError::io("attaching to", paths.segment().display()))?;
    tasks.spawn(advertise(ra_port, shutdown.clone()));
    Ok((segment, tasks))
}

/// A pool member of a lab, in its own process: its own segment joined to the lab's
/// (`paths.segment()`), its services at `seat` on it with its own `store` (`state`), and
/// pool membership over loopback (`pool`), which gives DHCP its share.
pub async fn start_member(
    paths: &Paths,
    state: &Path,
    store: Arc<Store>,
    seat: Seat,
    pool: crate::pool::serve::Settings,
    admin: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Running, LabError> {
    let mut tasks = JoinSet::new();
    let segment = Segment::start(shutdown.clone());
    let (uplinked, sock, token) = (segment.clone(), paths.segment(), shutdown.clone());
    tasks.spawn(async move {
        uplinked
            .uplink(&sock, token)
            .await
            .map_err(LabError::io("joining the lab segment at", sock.display()))
    });
    let member = store.member();
    let share = watch::channel(Arc::new(crate::dhcp::Share::solo(member)));
    // The pool's views of its peers name their loopback pool addresses, which no VM can
    // reach: the boot path and DHCP get none (each member serves whole scripts itself).
    let peers = watch::channel(Arc::new(crate::pool::peers::Peers::default()));
    let links = crate::pool::serve::Links {
        share: share.0,
        peers: peers.0,
        floating: watch::channel(crate::pool::floating::Decision::default()).0,
        layers: None,
        nfs_clients: None,
        took: watch::channel(crate::pool::tick::Reclaim::Unknown).0,
        holders: watch::channel(crate::pool::compact::Holders::unknown()).0,
    };
    let pool = crate::pool::serve::run(
        state.to_path_buf(),
        pool,
        store.clone(),
        links,
        shutdown.clone(),
    );
    tasks.spawn(async move { pool.await.map_err(|e| LabError::Service("pool", e)) });
    let (http, services) =
        start_services(state, store, seat, &segment, share.1, admin, &shutdown).await?;
    tasks.spawn(async move { join_all(services).await });
    tracing::info!(%http, addr = %seat.addr, member, "lab member ready");
    Ok(Running {
        http,
        segment,
        tasks,
    })
}

/// Waits for all of `tasks`; the first error is the result.
async fn join_all(mut tasks: JoinSet<Result<(), LabError>>) -> Result<(), LabError> {
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

/// drover at `seat` on `segment` with the state directory `state` and its `store`: every
/// service of the lab, and the page on `admin`. Returns the page's address.
async fn start_services(
    state: &Path,
    store: Arc<Store>,
    seat: Seat,
    segment: &Segment,
    share: watch::Receiver<Arc<crate::dhcp::Share>>,
    admin: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(SocketAddr, JoinSet<Result<(), LabError>>), LabError> {
    let shutdown = shutdown.clone();
    record_network(&store)?;
    let view = Arc::new(SharedView::load(store.clone())?);
    let (events, writer) = crate::timeline::Recorder::new(view.clone());
    let mut tasks = JoinSet::new();
    let token = shutdown.clone();
    tasks.spawn(async move {
        writer.run(token).await;
        Ok(())
    });
    let token = shutdown.clone();
    let refresher = view.clone();
    tasks.spawn(async move {
        // It retries failed refreshes itself and returns Ok at shutdown.
        let _ = crate::serve::refresh_view(refresher, token).await;
        Ok(())
    });

    let port = segment
        .attach()
        .await
        .map_err(LabError::io("attaching to", "the lab segment"))?;
    let seed = u64::from_le_bytes(rand::random::<[u8; 8]>());
    let stack = Stack::start(port, seat.mac, seat.addr, PREFIX, seed, shutdown.clone());
    // DHCP: the same shell as on an interface, on the stack's UDP socket.
    let iface = Interface {
        name: "lab".into(),
        index: 0,
        mac: Some(crate::store::model::Mac(seat.mac)),
        addr: seat.addr,
        subnet: subnet(),
    };
    let config = crate::config::Config::embedded();
    let settings = crate::dhcp::serve::Settings {
        http_base: format!("http://{}", seat.addr),
        services: crate::dhcp::core::Services {
            dns: true,
            ntp: true,
            default_domain: Some(config.dns.domain.clone()),
        },
        ..Default::default()
    };
    let socket = stack.udp_bind(settings.port)?;
    let links = crate::dhcp::serve::Links {
        share,
        peers: watch::channel(Arc::default()).1,
        events: Some(events.clone()),
    };
    let dhcp_stats = Arc::new(crate::dhcp::serve::Stats::default());
    crate::counters::register("dhcp", "lab", dhcp_stats.clone());
    let on = crate::dhcp::serve::On {
        ctx: crate::dhcp::serve::context(&iface, &settings),
        name: iface.name.clone(),
        settings,
        store: store.clone(),
        view: view.clone(),
        links,
        stats: dhcp_stats,
    };
    let dhcp = crate::dhcp::serve::run_on(socket, on, shutdown.clone());
    tasks.spawn(async move { dhcp.await.map_err(|e| LabError::Service("DHCP", e)) });

    datagram_services(
        &stack,
        seat.addr,
        &store,
        &view,
        events.clone(),
        &mut tasks,
        &shutdown,
    )?;

    // HTTP: one router on the segment and on localhost.
    let power = crate::serve::settings::fan_out(&config.power);
    let services = vec![
        health(
            "dhcp",
            format!("port 67 on the lab segment ({})", seat.addr),
        ),
        health("tftp", format!("port {TFTP_PORT} on the lab segment")),
        health(
            "dns",
            format!("port {DNS_PORT} on the lab segment, no forwarding"),
        ),
        health("ntp", format!("port {NTP_PORT} on the lab segment")),
        health(
            "http",
            format!("port {HTTP_PORT} on the lab segment and {admin}"),
        ),
    ];
    let api = crate::api::Api::new(
        store.clone(),
        state,
        // The lab's services never restart: a channel whose sender is gone keeps the list.
        watch::channel(services).1,
        power,
        events,
        None,
        shutdown.clone(),
    )?;
    let shared = crate::http::serve::Shared {
        view,
        blobs: crate::image::Blobs::new(state),
        port: HTTP_PORT,
        nfs_port: 2049,
        nfs_host: None,
        api: Some(api),
        peers: watch::channel(Arc::default()).1,
        dns: true,
        ntp: true,
    };
    let app = crate::http::serve::router(shared);
    let local = tokio::net::TcpListener::bind(admin)
        .await
        .map_err(LabError::io("listening on", admin))?;
    let http = local
        .local_addr()
        .map_err(LabError::io("listening on", admin))?;
    let on_lab = stack.tcp_listen(HTTP_PORT)?;
    let limits = crate::http::listen::Limits::default();
    let stats = Arc::new(crate::http::listen::Stats::default());
    crate::counters::register("http", "lab", stats.clone());
    let endpoint = |listener| crate::http::listen::Endpoint {
        listener,
        app: app.clone(),
        tls: None,
    };
    let lab_http = crate::http::listen::serve(
        vec![endpoint(on_lab)],
        limits,
        stats.clone(),
        shutdown.clone(),
    );
    tasks.spawn(async move { lab_http.await.map_err(|e| LabError::Service("HTTP", e)) });
    let endpoint = crate::http::listen::Endpoint {
        listener: local,
        app,
        tls: None,
    };
    let local_http = crate::http::listen::serve(vec![endpoint], limits, stats, shutdown.clone());
    tasks.spawn(async move { local_http.await.map_err(|e| LabError::Service("HTTP", e)) });
    Ok((http, tasks))
}

/// TFTP, DNS and NTP on the stack: the same shells as on kernel sockets.
fn datagram_services(
    stack: &Stack,
    addr: Ipv4Addr,
    store: &Arc<Store>,
    view: &Arc<SharedView>,
    events: crate::timeline::Recorder,
    tasks: &mut JoinSet<Result<(), LabError>>,
    shutdown: &CancellationToken,
) -> Result<(), LabError> {
    // TFTP: the embedded iPXE binaries, for firmware that does not boot over HTTP itself.
    let tftp_stats = Arc::new(crate::tftp::serve::Stats::default());
    crate::counters::register("tftp", "lab", tftp_stats.clone());
    let tftp = crate::tftp::serve::run_on(
        stack.udp_bind(TFTP_PORT)?,
        stack.clone(),
        Arc::new(crate::tftp::serve::Roots::default()),
        crate::tftp::serve::Limits::default(),
        tftp_stats,
        Some(events),
        shutdown.clone(),
    );
    tasks.spawn(async move { tftp.await.map_err(|e| LabError::Service("TFTP", e)) });

    // DNS: the cluster's zones from the lab's store. No upstreams: nothing the VMs ask
    // leaves the process.
    let config = crate::config::Config::embedded();
    let mut dns = crate::serve::settings::dns(&config, &[addr], store.member());
    dns.port = DNS_PORT;
    dns.upstreams = Vec::new();
    let dns_stats = Arc::new(crate::dns::serve::Stats::default());
    crate::counters::register("dns", "lab", dns_stats.clone());
    let dns = crate::dns::serve::serve_on(
        vec![stack.udp_bind(DNS_PORT)?],
        stack.tcp_listen(DNS_PORT)?,
        SocketAddr::from((addr, DNS_PORT)),
        dns,
        view.clone(),
        shutdown.clone(),
        dns_stats,
    );
    tasks.spawn(async move { dns.await.map_err(|e| LabError::Service("DNS", e)) });

    // NTP: the host's clock, announced as the lab's reference even when unsynchronised (a
    // lab has no other).
    let ntp_settings = crate::ntp::serve::Settings {
        port: NTP_PORT,
        local_reference: true,
    };
    let ntp_stats = Arc::new(crate::ntp::serve::Stats::default());
    crate::counters::register("ntp", "lab", ntp_stats.clone());
    let ntp = crate::ntp::serve::run_on(
        stack.udp_bind(NTP_PORT)?,
        SocketAddr::from((addr, NTP_PORT)),
        ntp_settings,
        ntp_stats,
        shutdown.clone(),
    );
    tasks.spawn(async move { ntp.await.map_err(|e| LabError::Service("NTP", e)) });
    Ok(())
}

/// IPv6 router advertisements on the segment (`super::ra`): periodic, and in answer to
/// solicitations, paced as on a served interface (`crate::net::ra_pace`).
async fn advertise(port: Attachment, shutdown: CancellationToken) -> Result<(), LabError> {
    let Attachment { tx, mut rx, .. } = port;
    let frame = super::ra::advertisement_frame(crate::store::model::Mac(SERVER_MAC));
    let mut ticker = tokio::time::interval(crate::config::Config::embedded().ra.interval);
    let mut answers = crate::net::ra_pace::Answers::default();
    loop {
        let due = answers.due().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
            // Awaited only when an answer is pending (the `if` guard).
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)),
                if due.is_some() => {}
            got = rx.recv() => {
                match got {
                    Some(f) if super::ra::is_solicitation(&f) => {
                        answers.solicited(std::time::Instant::now());
                    }
                    Some(_) => {}
                    None => return Ok(()),
                }
                continue;
            }
        }
        answers.sent(std::time::Instant::now());
        // Lost when the segment is congested; the next one goes out at the next tick.
        tx.try_send(frame.clone());
    }
}

fn health(name: &str, detail: String) -> crate::api::Service {
    crate::api::Service {
        name: name.into(),
        enabled: true,
        detail,
    }
}

/// Records the segment's network (with its dynamic range) when the store has none for it.
pub(super) fn record_network(store: &Store) -> Result<(), LabError> {
    let networks = store.read(|r| r.all::<Network>())?;
    if networks.iter().any(|n| n.subnet.contains(SERVER)) {
        return Ok(());
    }
    let net = crate::dhcp::core::default_network("lab", SERVER, subnet());
    crate::admin::add_network(store, &net)?;
    Ok(())
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
