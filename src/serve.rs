//! `drover serve`: opens the store, starts every service on every configured interface, keeps
//! the shared store view current, and shuts everything down on SIGINT/SIGTERM.
//!
//! Tasks: one per service and interface (DHCP, TFTP, DNS, NTP, router advertisements), the
//! NFSv4 server (one for all interfaces, and the pool's service address when configured),
//! pool membership (idle until the state directory has a cluster key), the service address
//! (`net::floating`, with a grace period of the NFS server each time it is taken), one HTTP
//! listener for all interfaces, the boot-event writer (`crate::timeline::Writer`), and the
//! view refresher, which applies the store's change feed
//! every [`REFRESH_INTERVAL`] so that admin changes made by another process (the CLI) reach
//! the services without a restart. A task that fails takes the server down with its error:
//! a half-working boot server is worse than a dead one that systemd restarts.
//!
//! Order at start-up: the store opens, each interface's subnet is recorded as a network when
//! no network covers it yet (so the embedded default serves that subnet), the view is loaded,
//! then the services start and `drover: ready` is logged.

use crate::config::Config;
use crate::image::Blobs;
use crate::net::Interface;
use crate::store::model::Network;
use crate::store::{Store, View};
use anyhow::{Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What this member serves where, as its pool summary says (`pool::summary`).
fn pool_services(config: &Config, interfaces: &[Interface]) -> Vec<crate::pool::summary::Service> {
    let addrs: Vec<Ipv4Addr> = interfaces.iter().map(|i| i.addr).collect();
    [
        ("dhcp", config.dhcp.enabled, config.dhcp.port),
        ("tftp", config.tftp.enabled, config.tftp.port),
        ("http", config.http.enabled, config.http.port),
        ("dns", config.dns.enabled, config.dns.port),
        ("ntp", config.ntp.enabled, config.ntp.port),
        ("nfs", config.nfs.enabled, config.nfs.port),
    ]
    .into_iter()
    .filter(|(_, on, _)| *on)
    .map(|(name, _, port)| crate::pool::summary::Service {
        name: name.into(),
        addrs: addrs
            .iter()
            .copied()
            .take(crate::pool::summary::MAX_ADDRS)
            .collect(),
        port,
        floating: false,
    })
    .collect()
}

/// How often the view picks up changes written by other processes.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the server until a signal arrives or a service fails.
pub async fn run(state_dir: &Path, config: Config) -> Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let store = Arc::new(Store::open(state_dir)?);
    let mut interfaces = Vec::new();
    for name in &config.interfaces {
        let iface = crate::net::interface(name).with_context(|| format!("interface {name}"))?;
        record_interface_network(&store, &iface)?;
        interfaces.push(iface);
    }
    // Where the pool's floating service address goes, checked before anything starts.
    let placement = match config.pool.service_address {
        Some(a) => Some(crate::net::floating::place(a, &interfaces)?),
        None => None,
    };
    if let Some(p) = &placement {
        warn_if_in_a_range(&store, p.addr.addr)?;
    }
    // Whether this member holds the service address: the pool task decides (alone outside
    // a pool), `net::floating` carries it out and says when it holds it.
    let (floating_tx, floating_rx) = tokio::sync::watch::channel(if config.pool.enabled {
        crate::pool::floating::Decision::default()
    } else {
        crate::pool::floating::Decision::solo(store.member())
    });
    let (held_tx, held_rx) = tokio::sync::watch::channel(false);
    let view = Arc::new(RwLock::new(View::load(&store)?));
    let shutdown = CancellationToken::new();
    let mut tasks: JoinSet<(String, Result<()>)> = JoinSet::new();
    let blobs = Blobs::new(state_dir);
    std::fs::create_dir_all(state_dir.join("tftp")).context("creating the TFTP root")?;
    let tftp_roots = Arc::new(crate::tftp::serve::Roots {
        dirs: vec![state_dir.join("tftp")],
    });
    // Boot events of every service go through one queue to one writer task.
    let (boot_events, writer) = crate::timeline::Recorder::new(store.clone(), view.clone());
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            writer.run(token).await;
            ("boot event writer".into(), Ok(()))
        });
    }

    // BMC sessions of the poller and the API, closed at shutdown by `keep_sessions`.
    let bmc_sessions = crate::ipmi::serve::session_cache(&config.power);
    let power_fan = crate::ipmi::power::FanOut {
        cache: Some(bmc_sessions.clone()),
        ..crate::ipmi::serve::fan_out(&config.power)
    };
    // The other live pool members, which the boot path lists after this one: none until the
    // pool task says otherwise.
    let (peers_tx, peers_rx) =
        tokio::sync::watch::channel(Arc::new(crate::pool::peers::Peers::default()));
    // How many clients the NFS server has, for the pool's summary of this member.
    let (nfs_clients_tx, nfs_clients_rx) = tokio::sync::watch::channel(0usize);
    // Copies of node layers on the other members, when NFS serves them and a pool may form.
    let layers = (config.pool.enabled && config.nfs.enabled).then(|| {
        Arc::new(crate::pool::layers::Shipper::new(
            store.member(),
            crate::pool::serve::unix_ms(),
        ))
    });
    if config.http.enabled {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.http.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("HTTP: cannot listen on {addr}"))?;
        let shared = crate::http::serve::Shared {
            view: view.clone(),
            blobs: blobs.clone(),
            port: config.http.port,
            nfs_port: config.nfs.port,
            nfs_host: config.pool.service_address,
            api: Some(
                crate::api::Api::new(
                    store.clone(),
                    state_dir,
                    crate::api::services(&config, &interfaces),
                    power_fan.clone(),
                    boot_events.clone(),
                    shutdown.clone(),
                )
                .context("HTTP API")?,
            ),
            peers: peers_rx.clone(),
            dns: config.dns.enabled,
            ntp: config.ntp.enabled,
        };
        let token = shutdown.clone();
        tasks.spawn(async move {
            let r = crate::http::serve::run(listener, shared, token).await;
            ("http".into(), r.context("HTTP server"))
        });
    }
    if config.tftp.enabled {
        // One set of TFTP counters for the process (see `tftp::serve::global_stats`).
        crate::counters::register("tftp", "all", crate::tftp::serve::global_stats());
    }
    if config.nfs.enabled {
        // One server (one set of client state) for all interfaces: a client that reaches
        // drover through two addresses is still one client.
        let mut listeners = Vec::new();
        for iface in &interfaces {
            let addr = SocketAddr::from((iface.addr, config.nfs.port));
            listeners.push(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("NFS: cannot listen on TCP {addr}"))?,
            );
        }
        // The service address: bound before it is here, so it serves whenever it is.
        if let Some(p) = &placement {
            let addr = std::net::SocketAddrV4::new(p.addr.addr, config.nfs.port);
            listeners.push(
                crate::net::floating::freebind_listener(addr)
                    .with_context(|| format!("NFS: cannot listen on TCP {addr}"))?,
            );
        }
        let replica = layers
            .clone()
            .map(|l| l as Arc<dyn crate::nfs::replica::Replica>);
        let vfs = crate::nfs::file_side(state_dir, store.clone(), replica)
            .context("NFS: opening the exported files")?;
        // Every member answers as the same server when the root is served from the service
        // address, so that a client that moves with it may reclaim its state (RFC 8881
        // §2.10.4: reclaims need an equal server scope).
        let server_name = config
            .pool
            .service_address
            .map_or_else(|| own_addr(&interfaces), |a| a.to_string());
        let (server, settings) =
            crate::nfs::serve::server(vfs, &config.nfs, state_dir, &server_name);
        let grace = Duration::from_secs(u64::from(config.nfs.grace_secs));
        if placement.is_some() && !grace.is_zero() {
            let (server, mut held, token) = (server.clone(), held_rx.clone(), shutdown.clone());
            let decisions = floating_rx.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        r = held.changed() => if r.is_err() { break },
                    }
                    // Alone (outside a pool) nobody else held the address: the start-up rule
                    // (a grace period if the last run had clients) already applies.
                    let solo = decisions.borrow().fresh_until_ms.is_none();
                    if *held.borrow_and_update() && !solo {
                        tracing::info!(
                            secs = grace.as_secs(),
                            "NFS: grace period: clients of the service address's previous holder may reclaim their state"
                        );
                        server.begin_grace(std::time::Instant::now() + grace);
                    }
                }
                // Only the service address task's end (at shutdown) ends this one.
                token.cancelled().await;
                ("nfs grace".into(), Ok(()))
            });
        }
        let stats = Arc::new(crate::nfs::serve::Stats::default());
        crate::counters::register("nfs", "all", stats.clone());
        let token = shutdown.clone();
        tasks.spawn(async move {
            let r =
                crate::nfs::serve::run(listeners, server, settings, stats, nfs_clients_tx, token)
                    .await;
            ("nfs".into(), r.context("NFS server"))
        });
    }
    let own: Vec<Ipv4Addr> = interfaces.iter().map(|i| i.addr).collect();
    let dns_settings = config.dns.settings(&own, store.member());
    if config.dns.enabled {
        let upstreams: Vec<String> = dns_settings
            .upstreams
            .iter()
            .map(|u| u.to_string())
            .collect();
        if upstreams.is_empty() {
            tracing::info!(
                "DNS: no upstream resolvers; names outside the cluster zones are refused"
            );
        } else {
            tracing::info!(upstreams = %upstreams.join(", "), "DNS: forwarding other names");
        }
    }
    // Which clients and addresses this member's DHCP serves: the whole range until the pool
    // task says otherwise.
    let (share_tx, share_rx) =
        tokio::sync::watch::channel(Arc::new(crate::dhcp::Share::solo(store.member())));
    for iface in &interfaces {
        if config.dns.enabled {
            let addr = SocketAddr::from((iface.addr, config.dns.port));
            let udp = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("DNS: cannot listen on UDP {addr}"))?;
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("DNS: cannot listen on TCP {addr}"))?;
            let (settings, view, token) = (dns_settings.clone(), view.clone(), shutdown.clone());
            let name = format!("dns {}", iface.name);
            let stats = Arc::new(crate::dns::serve::Stats::default());
            crate::counters::register("dns", &iface.name, stats.clone());
            tasks.spawn(async move {
                let r = crate::dns::serve::serve(udp, tcp, settings, view, token, stats).await;
                (name, r.context("DNS server"))
            });
        }
        if config.ntp.enabled {
            let addr = SocketAddr::from((iface.addr, config.ntp.port));
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("NTP: cannot listen on {addr}"))?;
            let settings = crate::ntp::serve::Settings {
                port: config.ntp.port,
                local_reference: config.ntp.local_reference,
            };
            let (token, name) = (shutdown.clone(), format!("ntp {}", iface.name));
            let stats = Arc::new(crate::ntp::serve::Stats::default());
            crate::counters::register("ntp", &iface.name, stats.clone());
            tasks.spawn(async move {
                (
                    name,
                    crate::ntp::serve::run_with_stats(socket, settings, stats, token)
                        .await
                        .context("NTP server"),
                )
            });
        }
        if config.dhcp.enabled {
            let http_base = match config.http.port {
                80 => format!("http://{}", iface.addr),
                port => format!("http://{}:{port}", iface.addr),
            };
            let settings = crate::dhcp::serve::Settings {
                port: config.dhcp.port,
                client_port: config.dhcp.client_port,
                lease_time: config.dhcp.lease_time,
                http_base,
                uefi_loader: config.dhcp.uefi_loader.clone(),
                services: crate::dhcp::core::Services {
                    dns: config.dns.enabled,
                    ntp: config.ntp.enabled,
                    default_domain: Some(config.dns.domain.clone()),
                },
            };
            let (iface, store, view, share, peers, token) = (
                iface.clone(),
                store.clone(),
                view.clone(),
                share_rx.clone(),
                peers_rx.clone(),
                shutdown.clone(),
            );
            let stats = Arc::new(crate::dhcp::serve::Stats::default());
            crate::counters::register("dhcp", &iface.name, stats.clone());
            let events = Some(boot_events.clone());
            tasks.spawn(async move {
                let name = format!("dhcp {}", iface.name);
                (
                    name,
                    crate::dhcp::serve::run_with_stats(
                        iface,
                        settings,
                        store,
                        view,
                        crate::dhcp::serve::Links {
                            share,
                            peers,
                            events,
                        },
                        token,
                        stats,
                    )
                    .await
                    .context("DHCP server"),
                )
            });
        }
        if config.tftp.enabled {
            let addr = SocketAddr::from((iface.addr, config.tftp.port));
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("TFTP: cannot listen on {addr}"))?;
            let limits = crate::tftp::serve::Limits {
                max_transfers: config.tftp.max_transfers,
                max_blksize: config.tftp.max_blksize,
                max_windowsize: config.tftp.max_windowsize,
                ..crate::tftp::serve::Limits::default()
            };
            let (roots, token, name) = (
                tftp_roots.clone(),
                shutdown.clone(),
                format!("tftp {}", iface.name),
            );
            let events = Some(boot_events.clone());
            tasks.spawn(async move {
                (
                    name,
                    crate::tftp::serve::run(socket, roots, limits, events, token)
                        .await
                        .context("TFTP server"),
                )
            });
        }
        if config.ra.enabled {
            let (iface, token) = (iface.clone(), shutdown.clone());
            let interval = Duration::from_secs(u64::from(config.ra.interval));
            tasks.spawn(async move {
                let name = format!("ra {}", iface.name);
                (
                    name,
                    crate::net::ra::run(iface, interval, token)
                        .await
                        .context("router advertisements"),
                )
            });
        }
    }
    if let Some(p) = placement {
        let token = shutdown.clone();
        tasks.spawn(async move {
            let r = crate::net::floating::run(p, floating_rx, held_tx, token).await;
            ("service address".into(), r.map_err(anyhow::Error::from))
        });
    }
    if config.pool.enabled {
        let addr = config
            .pool
            .address
            .or_else(|| interfaces.first().map(|i| i.addr))
            .context("pool: no address to gossip from (set `pool.address`)")?;
        let settings = crate::pool::serve::Settings {
            addr: std::net::SocketAddrV4::new(addr, config.pool.port),
            seeds: config
                .pool
                .seeds
                .iter()
                .filter_map(|s| crate::pool::serve::parse_seed(s))
                .collect(),
            member_id: store.member(),
            lease_time: u64::from(config.dhcp.lease_time),
            service_address: config.pool.service_address,
            services: pool_services(&config, &interfaces),
        };
        let (dir, store, token) = (state_dir.to_path_buf(), store.clone(), shutdown.clone());
        tasks.spawn(async move {
            let links = crate::pool::serve::Links {
                share: share_tx,
                peers: peers_tx,
                floating: floating_tx,
                layers,
                nfs_clients: config.nfs.enabled.then_some(nfs_clients_rx),
            };
            let r = crate::pool::serve::run(dir, settings, store, links, token).await;
            ("pool".into(), r.context("pool membership"))
        });
    }
    {
        let (store, view, token) = (store.clone(), view.clone(), shutdown.clone());
        tasks.spawn(async move { ("view".into(), refresh_view(store, view, token).await) });
    }
    {
        let (store, power, token) = (store.clone(), config.power.clone(), shutdown.clone());
        tasks.spawn(async move {
            let r = crate::ipmi::serve::poll(store, power, power_fan, token).await;
            ("power poller".into(), r)
        });
    }
    {
        let (store, token) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            let r = crate::ipmi::serve::keep_sessions(store, bmc_sessions, token).await;
            ("BMC sessions".into(), r)
        });
    }
    let names: Vec<String> = interfaces
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
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    outcome
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

fn own_addr(interfaces: &[Interface]) -> String {
    interfaces
        .first()
        .map_or_else(|| "drover".to_string(), |i| i.addr.to_string())
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

async fn refresh_view(
    store: Arc<Store>,
    view: Arc<RwLock<View>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut ticker = tokio::time::interval(REFRESH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        let (store, view) = (store.clone(), view.clone());
        // A refresh is a short LMDB read; keep it off the async workers anyway.
        let changed = tokio::task::spawn_blocking(move || -> Result<bool> {
            // Refresh a copy so readers are never blocked by the store read.
            let mut next = view.read().map(|v| v.clone()).unwrap_or_default();
            if next.seq() == store.last_seq()? {
                return Ok(false);
            }
            let changed = next.refresh(&store)?;
            if let Ok(mut v) = view.write() {
                if v.seq() < next.seq() {
                    *v = next;
                }
            }
            Ok(changed)
        })
        .await
        .context("view refresh task")??;
        if changed {
            tracing::debug!("store view refreshed");
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
