//! The services that restart alone: DHCP, TFTP, DNS, NTP and router advertisements, and
//! the HTTP and NFS servers' listeners, one unit per service and interface, and the task that
//! keeps them in step with the appliance settings of the store (`crate::overrides`).
//!
//! [`plan`] turns the services' settings into units (named like their tasks, `dns eth0`),
//! each with everything it runs with. [`supervise`] reads the store's settings every
//! [`WATCH_INTERVAL`]; when they change it lays them over the base again (the one parser),
//! maps the result to settings, and compares the plans: a unit whose settings changed is
//! stopped (its token cancelled, its task awaited so its sockets are closed) and started
//! again; a unit that is gone is stopped; a new one (a service switched on, an interface
//! added) is started. Units whose settings are equal keep running untouched, so adding an
//! interface starts its services without touching the others' (DNS on every interface
//! restarts only because its records list the appliance's addresses).
//!
//! Settings that fail the checks, an interface that does not exist (yet), or a unit that
//! cannot bind are logged and the services keep what runs; the check is tried again at the
//! next tick, so an interface made after `config set interfaces` is picked up when it
//! appears. A unit's task that ends by itself (not stopped here) ends the server, as every
//! other service task does.
//!
//! HTTP and NFS are one server each (`super`: routers, certificate, client state), started
//! once with the settings of the start ([`Cores`]); a unit only adds that server's listeners
//! on its interface's address (HTTP and HTTPS ports; NFS port), so an interface added later
//! serves the boot path, page and NFS roots too. Their own keys (`http.*`, `nfs.*`) still
//! take a restart, and a server that was off at the start gets no units.
//!
//! Not here: the pool, the service address (and its NFS listener) and the power poller,
//! which start once (`super`); their keys are reported as needing a restart
//! ([`crate::config::key_takes`]).

use super::settings::Settings;
use super::{spawn, Context, Tasks};
use crate::config::Takes;
use crate::net::{reuseport, Interface};
use crate::overrides::{Base, Stored};
use anyhow::{Context as _, Result};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How often the store's settings are compared with what runs.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// What one unit runs with: equal specs on the same interface mean nothing to restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Dhcp(crate::dhcp::serve::Settings),
    Tftp(u16, crate::tftp::serve::Limits),
    Dns(crate::dns::serve::Settings),
    Ntp(crate::ntp::serve::Settings),
    /// The time between advertisements.
    Ra(Duration),
    /// The HTTP server's listeners ([`Cores::http`]).
    Http,
    /// The NFS server's listener ([`Cores::nfs`]).
    Nfs,
}

impl Spec {
    fn service(&self) -> &'static str {
        match self {
            Spec::Dhcp(_) => "dhcp",
            Spec::Tftp(..) => "tftp",
            Spec::Dns(_) => "dns",
            Spec::Ntp(_) => "ntp",
            Spec::Ra(_) => "ra",
            Spec::Http => "http",
            Spec::Nfs => "nfs",
        }
    }
}

/// The units of `settings` on `interfaces`, by name (`SERVICE IFACE`).
pub type Plan = BTreeMap<String, (Interface, Spec)>;

/// The servers started once whose listeners are units: `None` when off at the start.
pub struct Cores {
    pub http: Option<super::HttpServer>,
    pub nfs: Option<super::NfsServer>,
}

pub fn plan(settings: &Settings, interfaces: &[Interface], cores: &Cores) -> Plan {
    let mut out = Plan::new();
    for (i, iface) in interfaces.iter().enumerate() {
        let mut specs = Vec::new();
        if let Some(d) = settings.dhcp.get(i) {
            specs.push(Spec::Dhcp(d.clone()));
        }
        if let Some(t) = &settings.tftp {
            specs.push(Spec::Tftp(t.port, t.limits));
        }
        if let Some(d) = &settings.dns {
            specs.push(Spec::Dns(d.clone()));
        }
        if let Some(n) = settings.ntp {
            specs.push(Spec::Ntp(n));
        }
        if let Some(r) = settings.ra {
            specs.push(Spec::Ra(r));
        }
        if cores.http.is_some() {
            specs.push(Spec::Http);
        }
        if cores.nfs.is_some() {
            specs.push(Spec::Nfs);
        }
        for spec in specs {
            let name = format!("{} {}", spec.service(), iface.name);
            out.insert(name, (iface.clone(), spec));
        }
    }
    out
}

/// The units that run, with what stops each.
pub struct Running {
    cores: Cores,
    units: BTreeMap<String, (Interface, Spec, CancellationToken)>,
    /// Counters per unit name, kept across restarts so that `/metrics` has one series each.
    dhcp: HashMap<String, Arc<crate::dhcp::serve::Stats>>,
    dns: HashMap<String, Arc<crate::dns::serve::Stats>>,
    ntp: HashMap<String, Arc<crate::ntp::serve::Stats>>,
    /// TFTP has one set of counters for the process (`tftp::serve::global_stats`).
    tftp_registered: bool,
}

/// The counters of unit `name`, registered at their first use.
fn stats<T: crate::counters::Counters + Default + 'static>(
    map: &mut HashMap<String, Arc<T>>,
    service: &'static str,
    name: &str,
    iface: &str,
) -> Arc<T> {
    map.entry(name.to_string())
        .or_insert_with(|| {
            let s = Arc::new(T::default());
            crate::counters::register(service, iface, s.clone());
            s
        })
        .clone()
}

impl Running {
    /// Binds unit `name`'s sockets and spawns its task into `tasks`.
    pub async fn start(
        &mut self,
        ctx: &Context,
        tasks: &mut Tasks,
        name: &str,
        iface: &Interface,
        spec: &Spec,
    ) -> Result<()> {
        let token = ctx.shutdown.child_token();
        let name_s = name.to_string();
        match spec {
            Spec::Dhcp(s) => {
                let stats = stats(&mut self.dhcp, "dhcp", name, &iface.name);
                let links = crate::dhcp::serve::Links {
                    share: ctx.links.share.1.clone(),
                    peers: ctx.links.peers.1.clone(),
                    events: Some(ctx.boot_events.clone()),
                };
                let run = crate::dhcp::serve::run_with_stats(
                    iface.clone(),
                    s.clone(),
                    ctx.store.clone(),
                    ctx.view.clone(),
                    links,
                    token.clone(),
                    stats,
                );
                spawn(tasks, name_s, "DHCP server", run);
            }
            Spec::Tftp(port, limits) => {
                if !self.tftp_registered {
                    let all = crate::tftp::serve::global_stats();
                    crate::counters::register("tftp", "all", all);
                    self.tftp_registered = true;
                }
                let dir = ctx.state_dir.join("tftp");
                std::fs::create_dir_all(&dir).context("creating the TFTP root")?;
                let roots = Arc::new(crate::tftp::serve::Roots { dirs: vec![dir] });
                let addr = SocketAddr::from((iface.addr, *port));
                let socket = UdpSocket::bind(addr)
                    .await
                    .with_context(|| format!("TFTP: cannot listen on {addr}"))?;
                let events = Some(ctx.boot_events.clone());
                let run = crate::tftp::serve::run(socket, roots, *limits, events, token.clone());
                spawn(tasks, name_s, "TFTP server", run);
            }
            Spec::Dns(s) => {
                let addr = SocketAddr::from((iface.addr, s.port));
                let udp = reuseport::bind_udp_group(addr, reuseport::workers())
                    .with_context(|| format!("DNS: cannot listen on UDP {addr}"))?;
                let tcp = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("DNS: cannot listen on TCP {addr}"))?;
                let stats = stats(&mut self.dns, "dns", name, &iface.name);
                let view = ctx.view.clone();
                let run = crate::dns::serve::serve(udp, tcp, s.clone(), view, token.clone(), stats);
                spawn(tasks, name_s, "DNS server", run);
            }
            Spec::Ntp(s) => {
                let addr = SocketAddr::from((iface.addr, s.port));
                let sockets = reuseport::bind_udp_group(addr, reuseport::workers())
                    .with_context(|| format!("NTP: cannot listen on {addr}"))?;
                let stats = stats(&mut self.ntp, "ntp", name, &iface.name);
                let run = crate::ntp::serve::run_group(sockets, *s, stats, token.clone());
                spawn(tasks, name_s, "NTP server", run);
            }
            Spec::Ra(interval) => {
                let run = crate::net::ra::run(iface.clone(), *interval, token.clone());
                spawn(tasks, name_s, "router advertisements", run);
            }
            Spec::Http => {
                let Some(server) = &self.cores.http else {
                    anyhow::bail!("HTTP is off since the start: it takes a restart");
                };
                let endpoints = super::bind_http(server, iface.addr).await?;
                let run = server.clone().run(endpoints, token.clone());
                spawn(tasks, name_s, "HTTP listener", run);
            }
            Spec::Nfs => {
                let Some(nfs) = &self.cores.nfs else {
                    anyhow::bail!("NFS is off since the start: it takes a restart");
                };
                let addr = SocketAddr::from((iface.addr, nfs.port));
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("NFS: cannot listen on TCP {addr}"))?;
                let front = nfs.front.clone();
                let stop = token.clone();
                spawn(tasks, name_s, "NFS listener", async move {
                    front.accept(listener, stop).await
                });
            }
        }
        let unit = (iface.clone(), spec.clone(), token);
        self.units.insert(name.to_string(), unit);
        Ok(())
    }

    /// Stops unit `name` and waits for its task to end (its sockets closed). Another unit's
    /// task that ends meanwhile by itself is an error, as in [`supervise`].
    async fn stop(&mut self, tasks: &mut Tasks, name: &str) -> Result<()> {
        let Some((_, _, token)) = self.units.get(name) else {
            return Ok(());
        };
        token.cancel();
        while let Some(done) = tasks.join_next().await {
            let (ended, outcome) = ended(done)?;
            if ended == name {
                self.units.remove(name);
                return outcome.map_err(|e| e.context(ended));
            }
            self.unexpected(&ended, outcome)?;
        }
        Ok(())
    }

    /// A task `name` ended with `outcome` without being stopped: the server's error.
    fn unexpected(&self, name: &str, outcome: Result<()>) -> Result<()> {
        let stopped = self.units.get(name).is_some_and(|u| u.2.is_cancelled());
        match (stopped, outcome) {
            (true, _) => Ok(()),
            (false, Ok(())) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
            (false, Err(e)) => Err(e.context(name.to_string())),
        }
    }
}

/// A joined task's name and outcome; a panicked task is the server's error.
fn ended(
    done: std::result::Result<(String, Result<()>), tokio::task::JoinError>,
) -> Result<(String, Result<()>)> {
    done.map_err(|e| anyhow::anyhow!("a service task failed: {e}"))
}

/// Starts every unit of `plan` (at start-up: a unit that cannot bind stops the server).
pub async fn start_all(ctx: &Context, cores: Cores, plan: &Plan) -> Result<(Running, Tasks)> {
    let mut running = Running {
        cores,
        units: BTreeMap::new(),
        dhcp: HashMap::new(),
        dns: HashMap::new(),
        ntp: HashMap::new(),
        tftp_registered: false,
    };
    let mut tasks = Tasks::new();
    for (name, (iface, spec)) in plan {
        running.start(ctx, &mut tasks, name, iface, spec).await?;
    }
    Ok((running, tasks))
}

/// What the supervisor compares and lays over.
pub struct Watch {
    pub base: Base,
    /// The store's settings in force (or last refused).
    pub stored: Vec<Stored>,
}

/// Keeps the units in step with the store's settings until shutdown (see the module doc).
pub async fn supervise(
    ctx: Arc<Context>,
    mut running: Running,
    mut tasks: Tasks,
    mut watch: Watch,
) -> Result<()> {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last problem logged, so that a lasting one is logged once.
    let mut last_problem = String::new();
    loop {
        tokio::select! {
            // Shutdown first: units stopped by it are not failures.
            biased;
            _ = ctx.shutdown.cancelled() => break,
            Some(done) = tasks.join_next() => {
                let (name, outcome) = ended(done)?;
                running.unexpected(&name, outcome)?;
                running.units.remove(&name);
                continue;
            }
            _ = tick.tick() => {}
        }
        let (store, member) = (ctx.store.clone(), ctx.store.member());
        let read = tokio::task::spawn_blocking(move || crate::overrides::stored(&store, member))
            .await
            .map_err(|e| anyhow::anyhow!("settings read task: {e}"))?;
        let step = match read {
            Ok(stored) if stored == watch.stored && last_problem.is_empty() => continue,
            Ok(stored) => apply(&ctx, &mut running, &mut tasks, &watch, &stored)
                .await
                .map(|()| stored),
            Err(e) => Err(Problem::Refused(e.to_string())),
        };
        match step {
            Ok(stored) => {
                log_restart_keys(&watch.stored, &stored);
                watch.stored = stored;
                last_problem.clear();
            }
            Err(Problem::Fatal(e)) => return Err(e),
            Err(Problem::Refused(p)) => {
                if p != last_problem {
                    tracing::warn!(
                        problem = %p,
                        "appliance settings of the store not applied; the services keep what runs (tried again)"
                    );
                    last_problem = p;
                }
            }
        }
    }
    // Shutdown: every unit's token is a child of the shutdown token.
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Why the store's settings were not applied.
enum Problem {
    /// They fail the checks, or name an interface that is not there: tried again later.
    Refused(String),
    /// A unit's task failed: the server stops.
    Fatal(anyhow::Error),
}

/// Lays `stored` over the base and restarts what changed.
async fn apply(
    ctx: &Context,
    running: &mut Running,
    tasks: &mut Tasks,
    watch: &Watch,
    stored: &[Stored],
) -> std::result::Result<(), Problem> {
    let refused = |e: &dyn std::fmt::Display| Problem::Refused(e.to_string());
    let config = crate::overrides::layered(&watch.base, stored).map_err(|e| refused(&e))?;
    let mut interfaces = Vec::new();
    for name in &config.interfaces {
        let iface = crate::net::interface(name).map_err(|e| refused(&e))?;
        interfaces.push(iface);
    }
    for iface in &interfaces {
        let (store, i) = (ctx.store.clone(), iface.clone());
        tokio::task::spawn_blocking(move || super::record_interface_network(&store, &i))
            .await
            .map_err(|e| refused(&e))?
            .map_err(|e| refused(&e))?;
    }
    let settings = Settings::new(&config, &interfaces, ctx.store.member(), &ctx.state_dir)
        .map_err(|e| refused(&e))?;
    let next = plan(&settings, &interfaces, &running.cores);
    let stale: Vec<String> = running
        .units
        .iter()
        .filter(|(name, (i, s, _))| next.get(*name) != Some(&(i.clone(), s.clone())))
        .map(|(name, _)| name.clone())
        .collect();
    for name in &stale {
        running.stop(tasks, name).await.map_err(Problem::Fatal)?;
        tracing::info!(unit = %name, "stopped (appliance settings changed)");
    }
    let mut failed = Vec::new();
    for (name, (iface, spec)) in &next {
        if running.units.contains_key(name) {
            continue;
        }
        match running.start(ctx, tasks, name, iface, spec).await {
            Ok(()) => tracing::info!(unit = %name, "started (appliance settings changed)"),
            Err(e) => failed.push(format!("{name}: {e:#}")),
        }
    }
    if !failed.is_empty() {
        return Err(Problem::Refused(failed.join("; ")));
    }
    // What the API says of the services restarted here; the others' entries stay as they
    // started (their changes wait for a restart).
    ctx.links.health.0.send_modify(|shown| {
        for entry in shown.iter_mut() {
            let fresh = settings.health.iter().find(|h| h.name == entry.name);
            if let Some(h) = fresh.filter(|h| LIVE.contains(&h.name.as_str())) {
                *entry = h.clone();
            }
        }
    });
    Ok(())
}

/// The services of `/api/v1/health` that restart here.
const LIVE: [&str; 5] = ["dhcp", "tftp", "dns", "ntp", "ra"];

/// Logs the changed keys that the running server does not follow.
fn log_restart_keys(before: &[Stored], after: &[Stored]) {
    let value =
        |list: &[Stored], key: &str| list.iter().find(|s| s.key == key).map(|s| s.value.clone());
    let mut keys: Vec<&str> = before.iter().chain(after).map(|s| s.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let changed = value(before, key) != value(after, key);
        if changed && crate::config::key_takes(key) == Takes::Restart {
            tracing::warn!(
                key,
                "setting changed; it takes effect at the next restart of drover serve"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::model::Ipv4Net;
    use std::net::Ipv4Addr;
    use std::path::Path;

    fn iface(name: &str, net: u8) -> Interface {
        let addr = Ipv4Addr::new(198, 18, net, 1);
        Interface {
            name: name.into(),
            index: u32::from(net),
            mac: None,
            addr,
            subnet: Ipv4Net::containing(addr, 24).unwrap(),
        }
    }

    fn plan_of(c: &Config, interfaces: &[Interface]) -> Plan {
        let cores = Cores {
            http: None,
            nfs: None,
        };
        plan(
            &Settings::new(c, interfaces, 1, Path::new("/s")).unwrap(),
            interfaces,
            &cores,
        )
    }

    /// An added interface gets its units and leaves the others' alone, but for DNS, whose
    /// records list the appliance's addresses; DNS off removes its units and changes DHCP's
    /// (no name server offered), nothing else.
    #[test]
    fn a_change_restarts_only_the_units_it_concerns() {
        let mut c = Config::embedded();
        c.pool.enabled = false;
        c.dns.upstreams = Some(Vec::new());
        let one = plan_of(&c, &[iface("a", 1)]);
        let both = plan_of(&c, &[iface("a", 1), iface("b", 2)]);
        for service in ["dhcp", "tftp", "ntp", "ra"] {
            let name = format!("{service} a");
            assert_eq!(one[&name], both[&name], "{name}");
            assert!(both.contains_key(&format!("{service} b")));
        }
        assert_ne!(one["dns a"], both["dns a"]);
        assert_eq!(both.len(), 10);
        c.dns.enabled = false;
        let off = plan_of(&c, &[iface("a", 1), iface("b", 2)]);
        assert!(
            !off.keys().any(|k| k.starts_with("dns ")),
            "{:?}",
            off.keys()
        );
        assert_ne!(off["dhcp a"], both["dhcp a"]);
        for name in ["tftp a", "ntp b", "ra a"] {
            assert_eq!(off[name], both[name], "{name}");
        }
    }
}
