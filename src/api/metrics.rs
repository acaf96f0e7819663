//! `GET /metrics`: Prometheus text format (version 0.0.4), behind the same login as the API
//! (Prometheus sends the token with `authorization: {credentials: TOKEN}`).
//!
//! Counted here: HTTP requests per route class and status class with the time to the
//! response head, logins by outcome; boot events per stage come from the boot-event
//! recorder's counts (`crate::timeline::Counts`). Read from the store at scrape
//! time: nodes by boot state, leases by state, images, networks, and the durations of the
//! last complete boots. The DHCP, TFTP, DNS and NTP servers keep their own counters
//! (`crate::counters`); this only renders them. In a pool, the pool task's status file
//! (`pool::status`, rewritten every few seconds) gives the pool families: members by health,
//! replication lag and exchanges per peer, layer changes answered unreplicated, the DHCP share
//! of each member, and the service address held here and how often it was taken. Outside a
//! pool (no cluster key) there are no pool families.

use super::Api;
use crate::pool::status::{MemberStatus as PoolMember, Status as PoolStatus};
use crate::store::model::{BootLog, BootStage, Image, Lease, Network, Node};
use crate::timeline::{self, NodeState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

crate::labels::labels! {
    /// Route classes, as the `route` label.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Route {
        Boot = "boot",
        Images = "images",
        Firmware = "firmware",
        Health = "health",
        Api = "api",
        Metrics = "metrics",
        /// The web page: `/` and `/ui/...`.
        Page = "page",
        Other = "other",
    }
}

/// Status classes, as the `code` label: index `status / 100 - 1`, clamped.
const CODES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

crate::labels::labels! {
    /// Login outcomes, as the `result` label.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Login {
        Ok = "ok",
        Failed = "failed",
        /// Refused by the rate limit before the password was checked.
        Limited = "limited",
    }
}

/// The counters (relaxed atomics: each is independent).
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; CODES.len()]; Route::ALL.len()],
    micros: [AtomicU64; Route::ALL.len()],
    logins: [AtomicU64; Login::ALL.len()],
}

fn route_class(path: &str) -> Route {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "boot" => Route::Boot,
        "images" => Route::Images,
        "firmware" => Route::Firmware,
        "health" => Route::Health,
        "api" => Route::Api,
        "metrics" => Route::Metrics,
        "" | "ui" => Route::Page,
        _ => Route::Other,
    }
}

impl Metrics {
    pub fn login(&self, outcome: Login) {
        self.logins[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn request(&self, route: Route, status: u16, micros: u64) {
        let code = usize::from(status / 100).clamp(1, CODES.len()) - 1;
        self.requests[route.index()][code].fetch_add(1, Ordering::Relaxed);
        self.micros[route.index()].fetch_add(micros, Ordering::Relaxed);
    }
}

/// Middleware over the whole HTTP router: counts every request.
pub async fn count(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let route = route_class(req.uri().path());
    let start = Instant::now();
    let resp = next.run(req).await;
    let micros = start.elapsed().as_micros() as u64;
    api.metrics.request(route, resp.status().as_u16(), micros);
    resp
}

/// What the store holds, counted at scrape time.
#[derive(Default)]
struct StoreCounts {
    nodes: [u64; NodeState::ALL.len()],
    leases: Vec<(&'static str, u64)>,
    images: u64,
    networks: u64,
    boots: Vec<f64>,
}

fn store_counts(store: &crate::store::Store) -> Result<StoreCounts, super::ApiError> {
    let now_ms = crate::clock::unix_ms();
    store.read(|r| {
        let mut c = StoreCounts::default();
        let logs: std::collections::HashMap<String, Vec<_>> = r
            .all::<BootLog>()?
            .into_iter()
            .map(|b| (b.name, b.events))
            .collect();
        for n in r.all::<Node>()? {
            let events = logs.get(&n.name).map(Vec::as_slice).unwrap_or(&[]);
            let state = timeline::state(events, now_ms);
            c.nodes[state.index()] += 1;
            let last = timeline::last_boot(events);
            if let (Some(first), Some(end), NodeState::Up) = (last.first(), last.last(), state) {
                if matches!(first.stage, BootStage::Dhcp | BootStage::Script) {
                    c.boots
                        .push(end.at_ms.saturating_sub(first.at_ms) as f64 / 1000.0);
                }
            }
        }
        let now = now_ms / 1000;
        let mut leases: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for l in r.all::<Lease>()? {
            *leases
                .entry(super::resources::lease_state(&l, now))
                .or_default() += 1;
        }
        c.leases = leases.into_iter().collect();
        c.images = r.all::<Image>()?.len() as u64;
        c.networks = r.all::<Network>()?.len() as u64;
        Ok(c)
    })
}

/// The pool task's status, when this member is in a pool and the task has written one.
fn pool_status(dir: &std::path::Path) -> Option<PoolStatus> {
    // A member that left keeps its last status file but not its key: no pool families.
    crate::pool::key::ClusterKey::load_state(dir)
        .ok()
        .flatten()?;
    crate::pool::status::read_status(dir).ok()
}

pub async fn scrape(State(api): State<Arc<Api>>) -> Result<Response, super::ApiError> {
    let dir = api.state_dir.clone();
    let (counts, pool) = api
        .blocking(move |store| Ok((store_counts(store)?, pool_status(&dir))))
        .await?;
    let m = &api.metrics;
    let mut out = String::new();
    let name = family(
        &mut out,
        "drover_http_requests_total",
        "counter",
        "HTTP requests by route class and status class.",
    );
    for (r, route) in Route::NAMES.iter().enumerate() {
        for (c, code) in CODES.iter().enumerate() {
            let v = m.requests[r][c].load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(out, "{name}{{route=\"{route}\",code=\"{code}\"}} {v}");
            }
        }
    }
    let name = family(
        &mut out,
        "drover_http_request_seconds_total",
        "counter",
        "Time to the response head, summed per route class.",
    );
    for (r, route) in Route::NAMES.iter().enumerate() {
        let v = m.micros[r].load(Ordering::Relaxed);
        if v > 0 {
            let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", v as f64 / 1e6);
        }
    }
    let name = family(
        &mut out,
        "drover_boot_events_total",
        "counter",
        "Boot events recorded, by stage.",
    );
    let boot_events = api.boot_events.counts();
    for (stage, v) in BootStage::ALL.iter().zip(boot_events.queued()) {
        let _ = writeln!(out, "{name}{{stage=\"{}\"}} {v}", stage.name());
    }
    let name = family(
        &mut out,
        "drover_boot_events_dropped_total",
        "counter",
        "Boot events dropped because too many were waiting to be written.",
    );
    let _ = writeln!(out, "{name} {}", boot_events.dropped());
    let name = family(
        &mut out,
        "drover_boot_events_refused_total",
        "counter",
        "Agent boot events refused: not from the node's reserved or leased address.",
    );
    let _ = writeln!(out, "{name} {}", boot_events.refused());
    let name = family(
        &mut out,
        "drover_logins_total",
        "counter",
        "Logins by outcome.",
    );
    for (i, result) in Login::NAMES.iter().enumerate() {
        let v = m.logins[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{result=\"{result}\"}} {v}");
    }
    let name = family(&mut out, "drover_nodes", "gauge", "Nodes by boot state.");
    for (i, state) in NodeState::NAMES.iter().enumerate() {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {}", counts.nodes[i]);
    }
    let name = family(&mut out, "drover_leases", "gauge", "DHCP leases by state.");
    for (state, v) in &counts.leases {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {v}");
    }
    let name = family(&mut out, "drover_images", "gauge", "Images.");
    let _ = writeln!(out, "{name} {}", counts.images);
    let name = family(&mut out, "drover_networks", "gauge", "Networks.");
    let _ = writeln!(out, "{name} {}", counts.networks);
    let name = family(
        &mut out,
        "drover_last_boot_seconds",
        "summary",
        "Duration from the first event (DHCP offer or boot script) to ready of each node's last complete boot.",
    );
    let _ = writeln!(out, "{name}_sum {}", counts.boots.iter().sum::<f64>());
    let _ = writeln!(out, "{name}_count {}", counts.boots.len());
    let name = family(
        &mut out,
        "drover_service_events_total",
        "counter",
        "What the DHCP, TFTP, DNS and NTP servers did, by service, interface and event.",
    );
    for e in crate::counters::entries() {
        for (event, v) in e.source.counters() {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",iface=\"{}\",event=\"{event}\"}} {v}",
                e.service, e.iface
            );
        }
    }
    let swarm = api.swarm.stats.snapshot();
    let name = family(
        &mut out,
        "drover_swarm_bytes_total",
        "counter",
        "Bytes of RAM-root images that booting nodes reported, by source (pool members or peer nodes).",
    );
    let _ = writeln!(out, "{name}{{source=\"members\"}} {}", swarm.bytes_members);
    let _ = writeln!(out, "{name}{{source=\"peers\"}} {}", swarm.bytes_peers);
    let name = family(
        &mut out,
        "drover_swarm_events_total",
        "counter",
        "What this member's swarm tracker did, by event.",
    );
    for (event, v) in swarm.pairs() {
        if !event.starts_with("bytes_") {
            let _ = writeln!(out, "{name}{{event=\"{event}\"}} {v}");
        }
    }
    let name = family(
        &mut out,
        "drover_uptime_seconds",
        "gauge",
        "Seconds since this server started.",
    );
    let _ = writeln!(out, "{name} {}", api.started.elapsed().as_secs());
    if let Some(status) = &pool {
        pool_families(&mut out, status, crate::clock::unix_ms());
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response())
}

/// Health names of pool members, as the `state` label (`pool::report::health`).
const POOL_STATES: [&str; 4] = ["alive", "suspect", "down", "left"];

/// The pool families, from the pool task's status at `now_ms`.
fn pool_families(out: &mut String, s: &PoolStatus, now_ms: u64) {
    let all = || std::iter::once(&s.me).chain(&s.members);
    let age = now_ms.saturating_sub(s.updated_ms) as f64 / 1000.0;
    let help = "Seconds since the pool task last rewrote the status these pool families come from.";
    single(
        out,
        "drover_pool_status_age_seconds",
        "gauge",
        help,
        "",
        age,
    );
    let name = family(
        out,
        "drover_pool_members",
        "gauge",
        "Pool members by health as this member sees them, itself included.",
    );
    for state in POOL_STATES {
        let v = all().filter(|m| m.state == state).count();
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {v}");
    }
    let help = "1 when this member sees a strict majority of the roster (it may take over shares).";
    let majority = u8::from(s.majority);
    single(out, "drover_pool_majority", "gauge", help, "", majority);
    let name = family(
        out,
        "drover_pool_share_addresses",
        "gauge",
        "Dynamic DHCP addresses each member owns (its share), by member id.",
    );
    for m in all() {
        if let Some(v) = m.addresses {
            let _ = writeln!(out, "{name}{{member=\"{}\"}} {v}", m.id);
        }
    }
    // Per peer: the lag, exchanges and layer copies of the newest incarnation shown for it.
    let rows = |f: &dyn Fn(&PoolMember) -> Vec<(&'static str, f64)>| {
        s.members
            .iter()
            .flat_map(|m| f(m).into_iter().map(move |(l, v)| (m, l, v)))
            .collect::<Vec<_>>()
    };
    per_peer(
        out,
        "drover_pool_replication_behind_seconds",
        "gauge",
        "How much of each peer's writing history (HLC wall time) this store lacks.",
        &rows(&|m| {
            let behind = m.detail.lag.as_ref().and_then(|l| l.behind_ms);
            behind
                .map(|ms| ("", ms as f64 / 1000.0))
                .into_iter()
                .collect()
        }),
    );
    per_peer(
        out,
        "drover_pool_replication_last_exchange_age_seconds",
        "gauge",
        "Seconds since the last completed store exchange with each peer.",
        &rows(&|m| {
            let age = |last| s.updated_ms.saturating_sub(last) as f64 / 1000.0;
            m.last_sync_ms.map(|l| ("", age(l))).into_iter().collect()
        }),
    );
    per_peer(
        out,
        "drover_pool_replication_exchanges_total",
        "counter",
        "Store exchanges this member started with each peer since it started, by result.",
        &rows(&|m| {
            let Some(e) = m.detail.lag.as_ref().map(|l| &l.exchanges) else {
                return Vec::new();
            };
            vec![
                (",result=\"completed\"", e.completed as f64),
                (",result=\"failed\"", e.failed as f64),
            ]
        }),
    );
    per_peer(
        out,
        "drover_pool_layers_behind",
        "gauge",
        "Nodes served here whose NFS layer copy on each peer is not level.",
        &rows(&|m| {
            let behind = m.layers.as_ref().map(|l| ("", l.behind as f64));
            behind.into_iter().collect()
        }),
    );
    let help = "Stable NFS layer changes answered before any other member had a copy.";
    let unreplicated = s.layers_unreplicated;
    single(
        out,
        "drover_pool_layers_unreplicated_total",
        "counter",
        help,
        "",
        unreplicated,
    );
    if let Some(vip) = &s.service_address {
        let addr = format!("{{address=\"{}\"}}", vip.addr);
        let help = "1 while this member holds the floating service address.";
        let held = u8::from(vip.here);
        single(
            out,
            "drover_pool_service_address_held",
            "gauge",
            help,
            &addr,
            held,
        );
        let help = "Times this member took the floating service address since it started.";
        let name = "drover_pool_service_address_takeovers_total";
        single(out, name, "counter", help, &addr, vip.takeovers);
    }
}

/// A family with one series per peer: `(peer, more labels after a comma, value)`.
fn per_peer(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    rows: &[(&PoolMember, &str, f64)],
) {
    let name = family(out, name, kind, help);
    for (m, labels, v) in rows {
        let _ = writeln!(
            out,
            "{name}{{member=\"{}\",addr=\"{}\"{labels}}} {v}",
            m.id, m.addr
        );
    }
}

/// A family of one series: HELP, TYPE and `name{labels} value` (`labels` with its braces).
fn single(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    labels: &str,
    value: impl std::fmt::Display,
) {
    let name = family(out, name, kind, help);
    let _ = writeln!(out, "{name}{labels} {value}");
}

/// Writes the HELP and TYPE lines of a metric family; returns its name.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> String {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        assert_eq!(route_class("/boot/52:54:00:00:00:01").name(), "boot");
        assert_eq!(route_class("/images/a/kernel").name(), "images");
        assert_eq!(route_class("/api/v1/nodes").name(), "api");
        assert_eq!(route_class("/").name(), "page");
        assert_eq!(route_class("/ui/app.js").name(), "page");
        assert_eq!(route_class("/nope").name(), "other");
        let m = Metrics::default();
        m.request(Route::Boot, 200, 5);
        m.request(Route::Boot, 999, 5);
        assert_eq!(m.requests[0][1].load(Ordering::Relaxed), 1);
        assert_eq!(m.requests[0][4].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn label_names_are_stable() {
        // What /metrics has always printed, in this order.
        let routes = [
            "boot", "images", "firmware", "health", "api", "metrics", "page",
        ];
        assert_eq!(Route::NAMES, [&routes[..], &["other"]].concat());
        assert_eq!(Login::NAMES, ["ok", "failed", "limited"]);
        assert_eq!(NodeState::NAMES, ["unknown", "booting", "up", "failed"]);
    }

    #[test]
    fn pool_families_count_members_lag_shares_and_takeovers() {
        use crate::pool::report::{Exchanges, Lag};
        use crate::pool::status::{MemberDetail, MemberStatus, ServiceAddress};
        let member = |id: u64, state: &str, addresses: Option<u64>| MemberStatus {
            addr: format!("127.0.0.1:{}", 7000 + id).parse().unwrap(),
            id,
            epoch: 1,
            state: state.into(),
            last_sync_ms: None,
            addresses,
            layers: None,
            drain: None,
            witness: false,
            detail: MemberDetail::default(),
        };
        let mut b = member(2, "alive", Some(30));
        b.last_sync_ms = Some(9_000);
        let exchanges = Exchanges {
            completed: 5,
            failed: 1,
            ..Exchanges::default()
        };
        b.detail.lag = Some(Lag {
            behind_ms: Some(1_500),
            ..Lag::new(exchanges, None, None)
        });
        let status = PoolStatus {
            me: member(1, "alive", Some(70)),
            updated_ms: 10_000,
            members: vec![b, member(3, "down", None), member(4, "left", None)],
            unauthenticated: 0,
            roster: vec![1, 2, 3],
            witnesses: Vec::new(),
            majority: true,
            layers_unreplicated: 2,
            service_address: Some(ServiceAddress {
                addr: "10.0.0.200".parse().unwrap(),
                holder: Some(1),
                here: true,
                takeovers: 3,
            }),
            recovering_since: None,
        };
        let mut out = String::new();
        pool_families(&mut out, &status, 12_000);
        let b = r#"{member="2",addr="127.0.0.1:7002""#;
        let per_b = [
            format!("drover_pool_replication_behind_seconds{b}}} 1.5"),
            format!("drover_pool_replication_last_exchange_age_seconds{b}}} 1"),
            format!(r#"drover_pool_replication_exchanges_total{b},result="failed"}} 1"#),
        ];
        for line in per_b.iter().map(String::as_str).chain([
            "drover_pool_status_age_seconds 2",
            "drover_pool_members{state=\"alive\"} 2",
            "drover_pool_members{state=\"suspect\"} 0",
            "drover_pool_members{state=\"down\"} 1",
            "drover_pool_members{state=\"left\"} 1",
            "drover_pool_majority 1",
            "drover_pool_share_addresses{member=\"1\"} 70",
            "drover_pool_share_addresses{member=\"2\"} 30",
            "drover_pool_layers_unreplicated_total 2",
            "drover_pool_service_address_held{address=\"10.0.0.200\"} 1",
            "drover_pool_service_address_takeovers_total{address=\"10.0.0.200\"} 3",
        ]) {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        // Members without a share or a lag get no series.
        assert!(!out.contains("member=\"3\""), "{out}");
    }
}
