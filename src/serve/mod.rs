//! `drover serve`, the composition root: opens the store, maps the configuration to every
//! service's settings ([`settings`]), starts each service with its `start_<service>`, and
//! shuts everything down on SIGINT/SIGTERM.
//!
//! Every `start_<service>` has one shape: it takes the [`Context`] (interfaces, settings,
//! store and view, the links between tasks, the shutdown token) and the task set, binds its
//! sockets, registers its counters and spawns its tasks. Tasks: one per service and interface
//! (DHCP, TFTP, DNS, NTP, router advertisements, and the HTTP and NFS listeners: [`live`]),
//! the NFSv4 server (one for all interfaces, listening itself on the pool's service address
//! when configured), pool membership (idle until the state directory has a cluster key), the
//! service address (`net::floating`, with a grace period of the NFS server each time it is
//! taken), the HTTP server (one for all interfaces, listening itself on the admin address),
//! the boot-event writer (`crate::timeline::Writer`), the power poller and BMC session keeper,
//! and the view refresher, which brings the one [`SharedView`] up to date every
//! [`REFRESH_INTERVAL`] so that admin changes made by another process (the CLI) reach the
//! services without a restart, and the change-feed compaction timer (`pool::compact`). A
//! task that fails takes the server down with its error: a half-working boot server is worse
//! than a dead one that systemd restarts. Transient faults are not failures: a view refresh
//! that fails, or a receive error on a router-advertisement socket, is retried with backoff
//! and counted (`crate::faults`, `service="faults"` in `/metrics`) while the services go on
//! with what they have; a failed feed compaction is counted there and tried at its next tick.
//!
//! Order at start-up: the store opens, each interface's subnet is recorded as a network when
//! no network covers it yet (so the embedded default serves that subnet), the view is loaded,
//! then the services start and `drover: ready` is logged.
//!
//! Not here: what a service does (its own `serve` module), and reading the configuration
//! (`crate::config`).

mod live;
pub mod settings;

use crate::config::Config;
use crate::dhcp::Share;
use crate::ipmi::cache::SessionCache;
use crate::net::floating::Placement;
use crate::net::Interface;
use crate::nfs::state::Reclaimers;
use crate::overrides::{self, Base};
use crate::pool::compact::{self, Holders};
use crate::pool::floating::Decision;
use crate::pool::peers::Peers;
use crate::pool::tick::Reclaim;
use crate::store::model::Network;
use crate::store::{SharedView, Store};
use crate::timeline::{Recorder, Writer};
use anyhow::{Context as _, Result};
use settings::Settings;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the view picks up changes written by other processes.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// The server's tasks: each ends with its name and how it ended.
type Tasks = JoinSet<(String, Result<()>)>;

/// Runs the server until a signal arrives or a service fails: on `base` (the `--config` file
/// and `--interface` flags) with the store's appliance settings laid over it.
pub async fn run(state_dir: &Path, base: Base) -> Result<()> {
    // Every connection, transfer and open NFS file holds a descriptor.
    match crate::net::sys::raise_nofile_limit() {
        Ok(n) => tracing::debug!("open file limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let store = Arc::new(Store::open(state_dir)?);
    let (config, stored) = layered_config(&store, &base)?;
    base.record(state_dir)?;
    if config.interfaces.is_empty() {
        anyhow::bail!(
            "no interface to serve on: pass --interface IFACE, set `interfaces` in the config \
             or `drover config set interfaces '[\"IFACE\"]'`"
        );
    }
    let ctx = Arc::new(Context::open(state_dir, store, &config)?);
    let mut tasks = Tasks::new();
    start_boot_events(&ctx, &mut tasks).await?;
    let cores = live::Cores {
        http: start_http(&ctx, &mut tasks).await?,
        nfs: start_nfs(&ctx, &mut tasks).await?,
    };
    // DHCP, TFTP, DNS, NTP, RA, and HTTP and NFS listeners per interface: they follow the
    // store's settings.
    let plan = live::plan(&ctx.settings, &ctx.interfaces, &cores);
    let (running, live_tasks) = live::start_all(&ctx, cores, &plan).await?;
    let watch = live::Watch { base, stored };
    let run = live::supervise(ctx.clone(), running, live_tasks, watch);
    spawn(&mut tasks, "live services".into(), "live services", run);
    start_service_address(&ctx, &mut tasks).await?;
    start_pool(&ctx, &mut tasks).await?;
    start_view_refresher(&ctx, &mut tasks).await?;
    start_feed_compaction(&ctx, &mut tasks).await?;
    start_power(&ctx, &mut tasks).await?;
    let names: Vec<String> = ctx
        .interfaces
        .iter()
        .map(|i| format!("{} ({}/{})", i.name, i.addr, i.subnet.prefix()))
        .collect();
    tracing::info!(interfaces = %names.join(", "), http_port = config.http.port, "drover: ready");

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(done) = tasks.join_next() => match done {
            Ok((name, Ok(()))) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
            Ok((name, Err(e))) => Err(e.context(name)),
            Err(e) => Err(anyhow::anyhow!("a service task failed: {e}")),
        },
    };
    ctx.shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    outcome
}

/// The configuration to start with: `base` with the store's settings, or `base` alone (with
/// a warning) when those fail the checks; and the store's settings as read.
fn layered_config(store: &Store, base: &Base) -> Result<(Config, Vec<overrides::Stored>)> {
    // The file's own errors stop the server, as they always did.
    let alone = overrides::layered(base, &[])?;
    let stored = match overrides::stored(store, store.member()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "appliance settings of the store are unreadable; starting without them");
            return Ok((alone, Vec::new()));
        }
    };
    match overrides::layered(base, &stored) {
        Ok(c) => Ok((c, stored)),
        Err(e) => {
            tracing::warn!(error = %e, "appliance settings of the store not applied; starting with the file alone");
            Ok((alone, stored))
        }
    }
}

type HttpServer = crate::http::serve::Server;

/// The NFS server's connection side and port, which each interface's listener joins.
#[derive(Clone)]
struct NfsServer {
    front: crate::nfs::serve::Front,
    port: u16,
}

/// What every `start_<service>` gets: where it serves, its settings, and the handles it
/// shares with the other services.
struct Context {
    state_dir: PathBuf,
    interfaces: Vec<Interface>,
    settings: Settings,
    store: Arc<Store>,
    /// The one owner of the store view; services take snapshots of it.
    view: Arc<SharedView>,
    /// Where services report boot events; [`start_boot_events`] runs the writer.
    boot_events: Recorder,
    boot_writer: Mutex<Option<Writer>>,
    /// Where the pool's floating service address goes, if there is one.
    placement: Option<Placement>,
    links: Links,
    /// Copies of node layers on the other members, when NFS serves them and a pool may form.
    layers: Option<Arc<crate::pool::layers::Shipper>>,
    /// BMC sessions of the poller and the API, closed at shutdown by `keep_sessions`.
    bmc_sessions: Arc<SessionCache>,
    shutdown: CancellationToken,
}

/// The state the pool task keeps and the other services follow.
struct Links {
    /// Which clients and addresses this member's DHCP serves: the whole range until the
    /// pool task says otherwise.
    share: (watch::Sender<Arc<Share>>, watch::Receiver<Arc<Share>>),
    /// The other live pool members, which the boot path lists after this one: none until
    /// the pool task says otherwise.
    peers: (watch::Sender<Arc<Peers>>, watch::Receiver<Arc<Peers>>),
    /// Whether this member should hold the service address: the pool task decides (alone
    /// outside a pool), `net::floating` carries it out ...
    floating: (watch::Sender<Decision>, watch::Receiver<Decision>),
    /// ... and says whether it holds it.
    held: (watch::Sender<bool>, watch::Receiver<bool>),
    /// The NFS server's clients, for the pool's summary of this member.
    nfs_clients: (
        watch::Sender<Arc<Reclaimers>>,
        watch::Receiver<Arc<Reclaimers>>,
    ),
    /// Whose NFS clients may reclaim after this member took the service address.
    took: (watch::Sender<Reclaim>, watch::Receiver<Reclaim>),
    /// What the other live members have, for change-feed compaction: nobody else outside a
    /// pool; in one, unknown until the pool task says.
    holders: (watch::Sender<Holders>, watch::Receiver<Holders>),
    /// What each service does, for the API: `live` updates the services it restarts.
    health: (
        watch::Sender<Vec<crate::api::Service>>,
        watch::Receiver<Vec<crate::api::Service>>,
    ),
}

impl Context {
    fn open(state_dir: &Path, store: Arc<Store>, config: &Config) -> Result<Context> {
        let mut interfaces = Vec::new();
        for name in &config.interfaces {
            let iface = crate::net::interface(name).with_context(|| format!("interface {name}"))?;
            record_interface_network(&store, &iface)?;
            interfaces.push(iface);
        }
        let settings = Settings::new(config, &interfaces, store.member(), state_dir)?;
        // Where the pool's floating service address goes, checked before anything starts.
        let placement = match settings.service_address {
            Some(a) => Some(crate::net::floating::place(a, &interfaces)?),
            None => None,
        };
        if let Some(p) = &placement {
            warn_if_in_a_range(&store, p.addr.addr)?;
        }
        let links = Links {
            share: watch::channel(Arc::new(Share::solo(store.member()))),
            peers: watch::channel(Arc::new(Peers::default())),
            floating: watch::channel(match settings.pool {
                Some(_) => Decision::default(),
                None => Decision::solo(store.member()),
            }),
            held: watch::channel(false),
            nfs_clients: watch::channel(Arc::default()),
            took: watch::channel(Reclaim::Unknown),
            holders: watch::channel(match settings.pool {
                Some(_) => Holders::unknown(),
                None => Holders::default(),
            }),
            health: watch::channel(settings.health.clone()),
        };
        let view = Arc::new(SharedView::load(store.clone())?);
        // Boot events of every service go through one queue to one writer task.
        let (boot_events, writer) = Recorder::new(view.clone());
        let layers = (settings.pool.is_some() && settings.nfs.is_some()).then(|| {
            Arc::new(crate::pool::layers::Shipper::new(
                store.member(),
                crate::clock::unix_ms(),
            ))
        });
        Ok(Context {
            state_dir: state_dir.to_path_buf(),
            interfaces,
            bmc_sessions: settings.session_cache(),
            settings,
            store,
            view,
            boot_events,
            boot_writer: Mutex::new(Some(writer)),
            placement,
            links,
            layers,
            shutdown: CancellationToken::new(),
        })
    }

    /// The API's and poller's BMC session settings, with the server's session cache.
    fn power_fan(&self) -> crate::ipmi::power::FanOut {
        crate::ipmi::power::FanOut {
            cache: Some(self.bmc_sessions.clone()),
            ..self.settings.power.fan.clone()
        }
    }
}

/// Spawns `task` as `name`; its error is reported as `what`.
fn spawn<E>(
    tasks: &mut Tasks,
    name: String,
    what: &'static str,
    task: impl Future<Output = Result<(), E>> + Send + 'static,
) where
    anyhow::Error: From<E>,
{
    tasks.spawn(async move {
        let r = task.await.map_err(anyhow::Error::from);
        (name, r.context(what))
    });
}

async fn start_boot_events(ctx: &Context, tasks: &mut Tasks) -> Result<()> {
    // Taken once: this runs once per server.
    let taken = ctx.boot_writer.lock().map(|mut w| w.take());
    if let Ok(Some(writer)) = taken {
        let token = ctx.shutdown.clone();
        spawn(
            tasks,
            "boot event writer".into(),
            "boot events",
            async move {
                writer.run(token).await;
                Ok::<_, anyhow::Error>(())
            },
        );
    }
    Ok(())
}

/// The HTTP server, with listeners on the addresses that are not an interface's (the admin
/// address); each interface's listeners are its `http IFACE` unit (`live`). `None` when HTTP
/// is off.
async fn start_http(ctx: &Context, tasks: &mut Tasks) -> Result<Option<HttpServer>> {
    let Some(s) = &ctx.settings.http else {
        return Ok(None);
    };
    let https = match &s.https {
        Some(h) => Some(start_https(ctx, s, h)?),
        None => None,
    };
    let api = crate::api::Api::new(
        ctx.store.clone(),
        &ctx.state_dir,
        ctx.links.health.1.clone(),
        ctx.power_fan(),
        ctx.boot_events.clone(),
        https.as_ref().map(|(_, fp)| fp.clone()),
        ctx.shutdown.clone(),
    )
    .context("HTTP API")?;
    let shared = crate::http::serve::Shared {
        view: ctx.view.clone(),
        blobs: crate::image::Blobs::new(&ctx.state_dir),
        port: s.port,
        nfs_port: s.nfs_port,
        nfs_host: s.nfs_host,
        api: Some(api),
        peers: ctx.links.peers.1.clone(),
        dns: s.dns,
        ntp: s.ntp,
    };
    let stats = Arc::new(crate::http::listen::Stats::default());
    crate::counters::register("http", "all", stats.clone());
    let limits = crate::http::listen::Limits::default();
    let https = https.map(|(h, _)| h);
    let server =
        crate::http::serve::Server::new(https, shared, limits, stats, ctx.shutdown.clone());
    // Never 0.0.0.0: the admin API is not exposed on networks drover does not serve.
    let mut endpoints = Vec::new();
    for ip in s
        .listen
        .iter()
        .filter(|ip| !ctx.interfaces.iter().any(|i| i.addr == **ip))
    {
        endpoints.extend(bind_http(&server, *ip).await?);
    }
    let run = server.clone().run(endpoints, ctx.shutdown.clone());
    spawn(tasks, "http".into(), "HTTP server", run);
    Ok(Some(server))
}

/// The HTTP server's listeners on `ip`: plain HTTP, and HTTPS when it has a certificate.
async fn bind_http(
    server: &HttpServer,
    ip: Ipv4Addr,
) -> Result<Vec<crate::http::listen::Endpoint>> {
    use crate::http::serve::Scheme;
    let ports = [
        (Scheme::Plain, Some(server.port)),
        (Scheme::Tls, server.https_port),
    ];
    let mut endpoints = Vec::new();
    for (scheme, port) in ports {
        let Some(port) = port else { continue };
        let addr = SocketAddr::from((ip, port));
        let what = if scheme == Scheme::Tls {
            "HTTPS"
        } else {
            "HTTP"
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("{what}: cannot listen on {addr}"))?;
        endpoints.extend(server.endpoint(listener, scheme));
    }
    Ok(endpoints)
}

/// The HTTPS side (its listeners come with HTTP's, see [`bind_http`]) and the certificate:
/// the admin's, or the state directory's self-signed one, made now at first start for the
/// addresses served at start. Logs the fingerprint and returns it.
fn start_https(
    ctx: &Context,
    s: &settings::Http,
    h: &settings::Https,
) -> Result<(crate::http::serve::Https, String)> {
    let identity = match &h.cert_key {
        Some((cert, key)) => crate::tls::Identity::load(cert, key),
        None => {
            let names: Vec<String> = s.listen.iter().map(|a| a.to_string()).collect();
            crate::tls::Identity::self_signed(&ctx.state_dir, &names)
        }
    }
    .context("HTTPS certificate")?;
    let config = crate::tls::server_config(&identity).context("HTTPS certificate")?;
    tracing::info!(
        port = h.port,
        fingerprint = %identity.fingerprint(),
        "HTTPS for the page and API (SHA-256 fingerprint of the certificate)"
    );
    let https = crate::http::serve::Https {
        acceptor: tokio_rustls::TlsAcceptor::from(config),
        port: h.port,
        api_only: h.api_only,
    };
    Ok((https, identity.fingerprint()))
}

/// The NFS server, with its listener on the service address; each interface's listener is
/// its `nfs IFACE` unit (`live`). One server (one set of client state) for all addresses: a
/// client that reaches drover through two addresses is still one client. `None` when NFS is
/// off.
async fn start_nfs(ctx: &Context, tasks: &mut Tasks) -> Result<Option<NfsServer>> {
    let Some(s) = &ctx.settings.nfs else {
        return Ok(None);
    };
    let mut listeners = Vec::new();
    // The service address: bound before it is here, so it serves whenever it is.
    if let Some(p) = &ctx.placement {
        let addr = std::net::SocketAddrV4::new(p.addr.addr, s.port);
        listeners.push(
            crate::net::floating::freebind_listener(addr)
                .with_context(|| format!("NFS: cannot listen on TCP {addr}"))?,
        );
    }
    let replica = ctx
        .layers
        .clone()
        .map(|l| l as Arc<dyn crate::nfs::replica::Replica>);
    let vfs = crate::nfs::file_side(&ctx.state_dir, ctx.view.clone(), replica)
        .context("NFS: opening the exported files")?;
    let name = (s.server_name.as_str(), s.delegations);
    let server = crate::nfs::serve::server(vfs, s.limits, s.grace, &s.status_file, name);
    if ctx.placement.is_some() && !s.grace.is_zero() {
        let (server, grace, token) = (server.clone(), s.grace, ctx.shutdown.clone());
        let (mut held, decisions) = (ctx.links.held.1.clone(), ctx.links.floating.1.clone());
        let mut took = ctx.links.took.1.clone();
        spawn(tasks, "nfs grace".into(), "NFS grace", async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    r = held.changed() => if r.is_err() { break },
                }
                // Alone (outside a pool) nobody else held the address: the start-up rule
                // (a grace period if the last run had clients) already applies.
                let solo = decisions.borrow().fresh_until_ms.is_none();
                if !*held.borrow_and_update() || solo {
                    continue;
                }
                let now = std::time::Instant::now();
                // The pool says whose clients may reclaim with each decision that takes the
                // address; the address coming back without one (it lapsed for a moment) finds
                // this member's own clients still here.
                let fresh = took.has_changed().unwrap_or(false);
                let took = took.borrow_and_update().clone();
                let expected = match took {
                    _ if !fresh => continue,
                    Reclaim::Nobody => {
                        tracing::info!(
                            "NFS: no grace period: no other member held the service address before"
                        );
                        continue;
                    }
                    Reclaim::Unknown => None,
                    Reclaim::Known(r) => Some(r),
                };
                if server.begin_grace(now, now + grace, expected.as_ref()) {
                    tracing::info!(
                        secs = grace.as_secs(),
                        known = ?expected.as_ref().map(|r| r.v41.len() as u64 + r.v40),
                        "NFS: grace period: clients of the service address's previous holder may reclaim their state (it ends early once all known 4.1 clients did)"
                    );
                } else {
                    tracing::info!("NFS: no grace period: the service address's previous holder had no clients");
                }
            }
            // Only the shutdown ends this task.
            token.cancelled().await;
            Ok::<_, anyhow::Error>(())
        });
    }
    let stats = Arc::new(crate::nfs::serve::Stats::default());
    crate::counters::register("nfs", "all", stats.clone());
    let front = crate::nfs::serve::Front::new(server, &s.shell, stats, ctx.shutdown.clone());
    let run = crate::nfs::serve::run(
        front.clone(),
        listeners,
        s.shell.clone(),
        ctx.links.nfs_clients.0.clone(),
    );
    spawn(tasks, "nfs".into(), "NFS server", run);
    Ok(Some(NfsServer {
        front,
        port: s.port,
    }))
}

async fn start_service_address(ctx: &Context, tasks: &mut Tasks) -> Result<()> {
    let Some(p) = ctx.placement.clone() else {
        return Ok(());
    };
    let (decisions, held) = (ctx.links.floating.1.clone(), ctx.links.held.0.clone());
    let run = crate::net::floating::run(p, decisions, held, ctx.shutdown.clone());
    spawn(tasks, "service address".into(), "service address", run);
    Ok(())
}

async fn start_pool(ctx: &Context, tasks: &mut Tasks) -> Result<()> {
    let Some(s) = &ctx.settings.pool else {
        return Ok(());
    };
    let links = crate::pool::serve::Links {
        share: ctx.links.share.0.clone(),
        peers: ctx.links.peers.0.clone(),
        floating: ctx.links.floating.0.clone(),
        layers: ctx.layers.clone(),
        nfs_clients: ctx
            .settings
            .nfs
            .is_some()
            .then(|| ctx.links.nfs_clients.1.clone()),
        holders: ctx.links.holders.0.clone(),
        took: ctx.links.took.0.clone(),
    };
    let (dir, store) = (ctx.state_dir.clone(), ctx.store.clone());
    let run = crate::pool::serve::run(dir, s.clone(), store, links, ctx.shutdown.clone());
    spawn(tasks, "pool".into(), "pool membership", run);
    Ok(())
}

async fn start_view_refresher(ctx: &Context, tasks: &mut Tasks) -> Result<()> {
    // Registered here, once per server: the refresher and the RA sockets count into it.
    crate::counters::register("faults", "all", crate::faults::global().clone());
    let (view, token) = (ctx.view.clone(), ctx.shutdown.clone());
    spawn(
        tasks,
        "view".into(),
        "store view",
        refresh_view(view, token),
    );
    Ok(())
}

async fn start_feed_compaction(ctx: &Context, tasks: &mut Tasks) -> Result<()> {
    let (store, holders) = (ctx.store.clone(), ctx.links.holders.1.clone());
    let run = compact_feed(store, holders, ctx.shutdown.clone());
    spawn(
        tasks,
        "feed compaction".into(),
        "change-feed compaction",
        run,
    );
    Ok(())
}

/// Prunes the change feed every [`compact::COMPACT_EVERY`] (see `pool::compact` for the
/// rule). A failed run is logged, counted and tried again at the next tick, never fatal:
/// an unpruned feed only costs disk.
async fn compact_feed(
    store: Arc<Store>,
    holders: watch::Receiver<Holders>,
    shutdown: CancellationToken,
) -> Result<()> {
    let errors = &crate::faults::global().feed_compaction_errors;
    let mut tick = tokio::time::interval(compact::COMPACT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let (store, have) = (store.clone(), holders.borrow().clone());
        let run = tokio::task::spawn_blocking(move || {
            store.write(|w| {
                w.compact_feed(compact::FEED_KEEP, compact::COMPACT_LIMIT, |c| {
                    have.all_have(c.version)
                })
            })
        });
        match run.await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(pruned = n, "change feed compacted"),
            Ok(Err(e)) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "change-feed compaction failed; retried later");
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "change-feed compaction task failed; retried later");
            }
        }
    }
}

async fn start_power(ctx: &Context, tasks: &mut Tasks) -> Result<()> {
    let (store, token) = (ctx.store.clone(), ctx.shutdown.clone());
    let poller = ctx.settings.power.poller;
    let run = crate::ipmi::serve::poll(store, poller, ctx.power_fan(), token);
    spawn(tasks, "power poller".into(), "power poller", run);
    let (store, token) = (ctx.store.clone(), ctx.shutdown.clone());
    let run = crate::ipmi::serve::keep_sessions(store, ctx.bmc_sessions.clone(), token);
    spawn(tasks, "BMC sessions".into(), "BMC sessions", run);
    Ok(())
}

/// The service address lies in a dynamic range: DHCP could hand it to a node.
fn warn_if_in_a_range(store: &Store, addr: Ipv4Addr) -> Result<()> {
    for n in store.read(|r| r.all::<Network>())? {
        if let Some((first, last)) = n.range {
            if (first..=last).contains(&addr) {
                tracing::warn!(
                    network = %n.name, %addr,
                    "`pool.service-address` lies in the network's dynamic range: DHCP may lease it to a node; move it out of the range"
                );
            }
        }
    }
    Ok(())
}

/// Records `iface`'s subnet as a network unless one covers it already.
fn record_interface_network(store: &Store, iface: &Interface) -> Result<()> {
    let networks = store.read(|r| r.all::<Network>())?;
    if networks.iter().any(|n| n.subnet.contains(iface.addr)) {
        return Ok(());
    }
    let net = crate::dhcp::core::default_network(&iface.name, iface.addr, iface.subnet);
    tracing::info!(network = %net.name, subnet = %net.subnet, range = ?net.range, "serving the interface's subnet (no network in the store covered it)");
    crate::admin::add_network(store, &net)
        .with_context(|| format!("recording network {}", net.name))
}

pub(crate) async fn refresh_view(view: Arc<SharedView>, shutdown: CancellationToken) -> Result<()> {
    let errors = &crate::faults::global().view_refresh_errors;
    refresh_loop(REFRESH_INTERVAL, errors, shutdown, || {
        let view = view.clone();
        async move {
            // A refresh is a short LMDB read; keep it off the async workers anyway.
            match tokio::task::spawn_blocking(move || view.refresh()).await {
                Ok(refreshed) => refreshed.map_err(|e| e.to_string()),
                Err(e) => Err(format!("view refresh task: {e}")),
            }
        }
    })
    .await;
    Ok(())
}

/// Calls `step` (a refresh: whether anything changed, or why it failed) every `interval`
/// until `shutdown`. A failure is counted in `errors`, logged and retried after a
/// [`Backoff`](crate::faults::Backoff) wait: the services go on with the view they have
/// (stale, not wrong) instead of the server stopping.
async fn refresh_loop<F, Fut>(
    interval: Duration,
    errors: &AtomicU64,
    shutdown: CancellationToken,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<bool, String>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = crate::faults::Backoff::default();
    loop {
        tokio::select! {
            // Shutdown first: a tick that is due as well must not run one more step.
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match step().await {
            Ok(changed) => {
                let ended = backoff.succeeded();
                if ended > 0 {
                    tracing::info!(failures = ended, "store view refreshes work again");
                }
                if changed {
                    tracing::debug!("store view refreshed");
                }
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.failed();
                tracing::warn!(
                    error = %e, retry_in_ms = wait.as_millis() as u64,
                    "store view refresh failed; the services keep the view they have"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failed refreshes are counted and retried; the loop ends only at shutdown.
    #[tokio::test]
    async fn refresh_failures_are_counted_and_retried() {
        let errors = AtomicU64::new(0);
        let calls = AtomicU64::new(0);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        refresh_loop(Duration::from_millis(1), &errors, shutdown, || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            if n == 4 {
                stop.cancel();
            }
            async move {
                match n {
                    0 | 1 => Err("store read failed".to_string()),
                    _ => Ok(n == 2),
                }
            }
        })
        .await;
        assert_eq!(errors.load(Ordering::Relaxed), 2);
        assert_eq!(calls.load(Ordering::Relaxed), 5);
    }
}
