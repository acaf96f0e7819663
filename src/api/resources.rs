//! The API's resource handlers: nodes, groups, networks, images, leases, settings, tokens and
//! health. Each parses its input with [`super::input`], calls `crate::admin` (the functions
//! the CLI uses) on the blocking pool, and answers JSON.

use super::error::ApiError;
use super::input::{Fields, Listing, Query};
use super::{Api, Principal};
use crate::admin::{self, NetworkChange, NodeChange};
use crate::auth;
use crate::clock;
use crate::store::model::{
    BootEvent, BootLog, Group, Image, ImageFile, Ipv4Net, Lease, LeaseState, Mac, Network, Node,
    Role, RootMode, Setting,
};
use crate::store::Store;
use crate::timeline::{self, NodeState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

type Q = axum::extract::Query<Vec<(String, String)>>;
type Res = Result<Response, ApiError>;

/// Runs an admin change about `resource` on the blocking pool, mapping its error.
async fn admin_change<R: Send + 'static>(
    api: &Arc<Api>,
    resource: &'static str,
    f: impl FnOnce(&Store) -> Result<R, admin::AdminError> + Send + 'static,
) -> Result<R, ApiError> {
    api.blocking(move |store| f(store).map_err(|e| ApiError::admin(resource, e)))
        .await
}

/// A `DELETE .../{name}` answer.
type Removal = std::pin::Pin<Box<dyn std::future::Future<Output = Res> + Send>>;

/// The handler of `DELETE .../{name}` for `resource`, through `remove` (an `admin` or `auth`
/// remove function): 204, or the mapped admin error.
pub fn remover(
    resource: &'static str,
    remove: fn(&Store, &str) -> Result<(), admin::AdminError>,
) -> impl Fn(State<Arc<Api>>, Path<String>) -> Removal + Clone + Send + Sync + 'static {
    move |State(api), Path(name)| {
        Box::pin(async move {
            admin_change(&api, resource, move |store| remove(store, &name)).await?;
            no_content()
        })
    }
}

fn ok<T: Serialize>(value: T) -> Res {
    Ok(Json(value).into_response())
}

fn created<T: Serialize>(value: T) -> Res {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

fn no_content() -> Res {
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Health

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    member: String,
    uptime_secs: u64,
    store_seq: u64,
    services: Vec<super::Service>,
    counts: Counts,
    /// SHA-256 of the HTTPS certificate, to compare with what the browser shows.
    tls_fingerprint: Option<String>,
    /// Retried faults since start by name (`crate::faults`): the services went on, but a
    /// count above 0 is worth a look at the log.
    faults: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct Counts {
    nodes: usize,
    groups: usize,
    networks: usize,
    images: usize,
    leases_active: usize,
}

pub async fn health(State(api): State<Arc<Api>>) -> Res {
    let services = api.services.borrow().clone();
    let uptime_secs = api.started.elapsed().as_secs();
    let tls_fingerprint = api.tls_fingerprint.clone();
    let faults = crate::faults::global()
        .snapshot()
        .pairs()
        .into_iter()
        .collect();
    let health = api
        .blocking(move |store| {
            let now = clock::unix_secs();
            Ok(store.read(|r| {
                Ok::<_, crate::store::StoreError>(Health {
                    status: "ok",
                    version: env!("CARGO_PKG_VERSION"),
                    member: format!("{:016x}", store.member()),
                    uptime_secs,
                    store_seq: r.last_seq()?,
                    services,
                    counts: Counts {
                        nodes: r.all::<Node>()?.len(),
                        groups: r.all::<Group>()?.len(),
                        networks: r.all::<Network>()?.len(),
                        images: r.all::<Image>()?.len(),
                        leases_active: r.all::<Lease>()?.iter().filter(|l| l.holds(now)).count(),
                    },
                    tls_fingerprint,
                    faults,
                })
            })?)
        })
        .await?;
    ok(health)
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// A node as the API shows it: the record plus its current lease and boot state.
#[derive(Serialize)]
struct NodeView {
    #[serde(flatten)]
    node: Node,
    lease: Option<LeaseView>,
    /// From the boot events: unknown, booting, up or failed.
    state: NodeState,
    /// The newest boot event, if any.
    last_event: Option<BootEvent>,
    /// The chassis power as `drover serve`'s poller last saw it: `on`, `off`, `unknown` (the
    /// BMC did not answer), or absent (no BMC settings, or not polled yet).
    power: Option<&'static str>,
}

#[derive(Serialize)]
struct LeaseView {
    ip: Ipv4Addr,
    state: &'static str,
    expires: u64,
}

pub(super) fn lease_state(l: &Lease, now: u64) -> &'static str {
    if !l.holds(now) {
        return "expired";
    }
    match l.state {
        LeaseState::Offered => "offered",
        LeaseState::Bound => "bound",
        LeaseState::Released => "released",
        LeaseState::Declined => "declined",
    }
}

fn node_views(store: &Store, nodes: Vec<Node>) -> Result<Vec<NodeView>, ApiError> {
    let now = clock::unix_secs();
    let now_ms = clock::unix_ms();
    let (leases, mut boots, power) = store.read(|r| {
        let boots: HashMap<String, Vec<BootEvent>> = r
            .all::<BootLog>()?
            .into_iter()
            .map(|b| (b.name, b.events))
            .collect();
        let power: HashMap<String, Option<bool>> = r
            .all::<crate::store::model::PowerState>()?
            .into_iter()
            .map(|p| (p.node, p.on))
            .collect();
        Ok::<_, ApiError>((r.all::<Lease>()?, boots, power))
    })?;
    let mut by_mac: HashMap<Mac, &Lease> = HashMap::new();
    for l in &leases {
        // Prefer the binding that lasts longest when a MAC has several.
        let keep = by_mac.get(&l.mac).is_none_or(|old| old.expires < l.expires);
        if keep {
            by_mac.insert(l.mac, l);
        }
    }
    Ok(nodes
        .into_iter()
        .map(|node| {
            let lease = by_mac.get(&node.mac).map(|l| LeaseView {
                ip: l.ip,
                state: lease_state(l, now),
                expires: l.expires,
            });
            let events = boots.remove(&node.name).unwrap_or_default();
            NodeView {
                state: timeline::state(&events, now_ms),
                last_event: events.last().cloned(),
                power: power.get(&node.name).map(|on| match on {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "unknown",
                }),
                node,
                lease,
            }
        })
        .collect())
}

pub async fn list_nodes(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    let text = q.get("q").map(|s| s.to_ascii_lowercase());
    let group = q.get("group");
    let image = q.get("image");
    q.finish()?;
    let listing = api
        .blocking(move |store| {
            let nodes: Vec<Node> = store
                .read(|r| r.all::<Node>())?
                .into_iter()
                .filter(|n| {
                    text.as_deref().is_none_or(|t| {
                        n.name.to_ascii_lowercase().contains(t)
                            || n.mac.to_string().contains(t)
                            || n.ip.is_some_and(|ip| ip.to_string().contains(t))
                    }) && group
                        .as_deref()
                        .is_none_or(|g| n.group.as_deref() == Some(g))
                        && image
                            .as_deref()
                            .is_none_or(|i| n.image.as_deref() == Some(i))
                })
                .collect();
            let total = nodes.len();
            let nodes: Vec<Node> = nodes
                .into_iter()
                .skip(page.offset)
                .take(page.limit)
                .collect();
            let listing = Listing {
                items: node_views(store, nodes)?,
                total,
                offset: page.offset,
                limit: page.limit,
            };
            Ok(listing)
        })
        .await?;
    ok(listing)
}

fn node_from(f: &mut Fields) -> Result<Node, ApiError> {
    Ok(Node {
        name: f.required("name")?,
        mac: f.required("mac")?,
        ip: f.optional("ip")?,
        image: f.optional("image")?,
        group: f.optional("group")?,
        aliases: f.optional("aliases")?.unwrap_or_default(),
        root: f.optional("root")?,
        image_version: f.optional("image_version")?,
        swarm: f.optional("swarm")?,
    })
}

pub async fn add_node(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let node = node_from(&mut f)?;
    f.finish()?;
    let added = node.clone();
    admin_change(&api, "node", move |store| {
        admin::add_nodes(store, std::slice::from_ref(&node))
    })
    .await?;
    created(added)
}

/// `POST /nodes/import`: a CSV body (`text/csv`, header `name,mac,ip,image,group`) or JSON
/// `{"csv": TEXT}`; all rows or none.
pub async fn import_nodes(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/csv"));
    let text = if is_csv {
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad("csv", "csv: not UTF-8"))?
    } else {
        let mut f = Fields::parse(&headers, &body)?;
        let text: String = f.required("csv")?;
        f.finish()?;
        text
    };
    let imported = api
        .blocking(move |store| {
            let nodes = admin::parse_node_csv(&text).map_err(|e| ApiError::admin("node", e))?;
            admin::add_nodes(store, &nodes).map_err(|e| ApiError::admin("node", e))?;
            Ok(nodes.len())
        })
        .await?;
    ok(serde_json::json!({ "imported": imported }))
}

fn unknown(kind: &str, name: &str) -> ApiError {
    ApiError {
        field: Some("name".into()),
        ..ApiError::not_found(format!("unknown {kind} {name:?}"))
    }
}

/// One node: its list view plus what `drover node show` tells (boot image, BMC, power).
#[derive(Serialize)]
struct NodeShow {
    #[serde(flatten)]
    view: NodeView,
    #[serde(flatten)]
    detail: admin::NodeDetail,
}

pub async fn get_node(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let view = api
        .blocking(move |store| {
            let node = store
                .read(|r| r.get::<Node>(&name))?
                .ok_or_else(|| unknown("node", &name))?;
            let detail = admin::node_detail(store, &node)?;
            let view = node_views(store, vec![node])?
                .pop()
                .ok_or_else(|| unknown("node", &name))?;
            Ok(NodeShow { view, detail })
        })
        .await?;
    ok(view)
}

/// `GET /nodes/{name}/events`: the node's boot timeline.
pub async fn node_events(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let out = api
        .blocking(move |store| {
            let (node, log) = store
                .read(|r| Ok::<_, ApiError>((r.get::<Node>(&name)?, r.get::<BootLog>(&name)?)))?;
            node.ok_or_else(|| unknown("node", &name))?;
            let events = log.map(|l| l.events).unwrap_or_default();
            Ok(serde_json::json!({
                "node": name,
                "state": timeline::state(&events, clock::unix_ms()),
                "last_boot": timeline::last_boot(&events),
                "events": events,
            }))
        })
        .await?;
    ok(out)
}

pub async fn set_node(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let change = NodeChange {
        mac: f.optional("mac")?,
        ip: f.change("ip")?,
        image: f.change("image")?,
        group: f.change("group")?,
        aliases: f
            .change::<Vec<String>>("aliases")?
            .map(Option::unwrap_or_default),
        root: f.change("root")?,
        image_version: f.change("image_version")?,
        swarm: f.change("swarm")?,
        service: f.optional("service")?,
    };
    f.finish()?;
    let node = admin_change(&api, "node", move |store| {
        admin::set_node(store, &name, &change)
    })
    .await?;
    ok(node)
}

// ---------------------------------------------------------------------------------------------
// Groups

pub async fn list_groups(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api.blocking(|store| Ok(admin::groups(store)?)).await?;
    ok(page.of(all))
}

pub async fn get_group(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let view = api
        .blocking(move |store| {
            admin::groups(store)?
                .into_iter()
                .find(|g| g.name == name)
                .ok_or_else(|| unknown("group", &name))
        })
        .await?;
    ok(view)
}

pub async fn put_group(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let group = Group {
        name,
        image: f.optional("image")?,
        image_version: f.optional("image_version")?,
        swarm: f.optional("swarm")?,
    };
    f.finish()?;
    let out = group.clone();
    admin_change(&api, "group", move |store| admin::put_group(store, &group)).await?;
    ok(out)
}

// ---------------------------------------------------------------------------------------------
// Networks

/// A dynamic range as JSON: `"FIRST-LAST"`.
fn parse_range(f: &mut Fields) -> Result<Option<Option<(Ipv4Addr, Ipv4Addr)>>, ApiError> {
    let Some(range) = f.change::<String>("range")? else {
        return Ok(None);
    };
    let Some(text) = range else {
        return Ok(Some(None));
    };
    let bad = || {
        ApiError::bad(
            "range",
            format!("range: {text:?} is not FIRST-LAST, like 10.0.0.100-10.0.0.200"),
        )
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
    let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
    Ok(Some(Some((a, b))))
}

#[derive(Serialize)]
struct NetworkView {
    name: String,
    subnet: Ipv4Net,
    range: Option<String>,
    gateway: Option<Ipv4Addr>,
    domain: Option<String>,
}

impl From<Network> for NetworkView {
    fn from(n: Network) -> Self {
        NetworkView {
            name: n.name,
            subnet: n.subnet,
            range: n.range.map(|(a, b)| format!("{a}-{b}")),
            gateway: n.gateway,
            domain: n.domain,
        }
    }
}

pub async fn list_networks(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(|store| Ok(store.read(|r| r.all::<Network>())?))
        .await?;
    ok(page.of(all.into_iter().map(NetworkView::from).collect()))
}

pub async fn get_network(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let net = api
        .blocking(move |store| {
            store
                .read(|r| r.get::<Network>(&name))?
                .ok_or_else(|| unknown("network", &name))
        })
        .await?;
    ok(NetworkView::from(net))
}

pub async fn add_network(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let net = Network {
        name: f.required("name")?,
        subnet: f.required("subnet")?,
        range: parse_range(&mut f)?.flatten(),
        gateway: f.optional("gateway")?,
        domain: f.optional("domain")?,
    };
    f.finish()?;
    let out = net.clone();
    admin_change(&api, "network", move |store| {
        admin::add_network(store, &net)
    })
    .await?;
    created(NetworkView::from(out))
}

pub async fn set_network(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let change = NetworkChange {
        subnet: f.optional("subnet")?,
        range: parse_range(&mut f)?,
        gateway: f.change("gateway")?,
        domain: f.change("domain")?,
    };
    f.finish()?;
    let net = admin_change(&api, "network", move |store| {
        admin::set_network(store, &name, &change)
    })
    .await?;
    ok(NetworkView::from(net))
}

// ---------------------------------------------------------------------------------------------
// Shared NFS exports

pub async fn list_exports(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(|store| Ok(store.read(|r| r.all::<crate::store::model::Export>())?))
        .await?;
    ok(page.of(all))
}

pub async fn get_export(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let export = api
        .blocking(move |store| {
            store
                .read(|r| r.get::<crate::store::model::Export>(&name))?
                .ok_or_else(|| unknown("export", &name))
        })
        .await?;
    ok(export)
}

pub async fn add_export(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    use crate::store::model::{Export, NOBODY};
    let (name, path): (String, String) = (f.required("name")?, f.required("path")?);
    let export = Export {
        rw: f.optional("rw")?.unwrap_or(false),
        ro_clients: f.optional("ro_clients")?.unwrap_or_default(),
        squash: f.optional("squash")?.unwrap_or_default(),
        anon_uid: f.optional("anon_uid")?.unwrap_or(NOBODY),
        anon_gid: f.optional("anon_gid")?.unwrap_or(NOBODY),
        ..Export::new(&name, &path, f.required("clients")?)
    };
    f.finish()?;
    let stored = admin_change(&api, "export", move |store| {
        admin::add_export(store, &export)
    })
    .await?;
    created(stored)
}

// ---------------------------------------------------------------------------------------------
// Images

#[derive(Serialize)]
struct ImageView {
    name: String,
    /// "ram-root", "nfs-root", "kernel+initrd" or "kernel".
    boot: &'static str,
    cmdline: String,
    kernel: ImageFile,
    initrd: Option<ImageFile>,
    rootfs: Option<ImageFile>,
    initramfs: Option<ImageFile>,
    /// How nodes get the root filesystem: "ram" or "nfs" (a node may override it).
    root: RootMode,
    /// Paths each node keeps across reboots when its root is NFS.
    persistent: Vec<String>,
    /// Whether nodes fetch the RAM root from each other too.
    swarm: bool,
    /// Nodes that name this image.
    nodes: usize,
    /// The newest version (`GET /images/{name}/history` lists them all).
    version: u32,
}

fn image_view(i: Image, nodes: &[Node]) -> ImageView {
    let boot = i.boot_kind();
    let users = nodes
        .iter()
        .filter(|n| n.image.as_deref() == Some(i.name.as_str()))
        .count();
    ImageView {
        version: i.latest_version(),
        name: i.name,
        boot,
        cmdline: i.cmdline,
        kernel: i.kernel,
        initrd: i.initrd,
        rootfs: i.rootfs,
        initramfs: i.initramfs,
        root: i.root,
        persistent: i.persistent,
        swarm: i.swarm,
        nodes: users,
    }
}

pub async fn list_images(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(|store| {
            let (images, nodes) =
                store.read(|r| Ok::<_, ApiError>((r.all::<Image>()?, r.all::<Node>()?)))?;
            Ok(images
                .into_iter()
                .map(|i| image_view(i, &nodes))
                .collect::<Vec<_>>())
        })
        .await?;
    ok(page.of(all))
}

pub async fn get_image(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let view = api
        .blocking(move |store| {
            let (image, nodes) =
                store.read(|r| Ok::<_, ApiError>((r.get::<Image>(&name)?, r.all::<Node>()?)))?;
            let image = image.ok_or_else(|| unknown("image", &name))?;
            Ok(image_view(image, &nodes))
        })
        .await?;
    ok(view)
}

pub async fn set_image(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let change = admin::ImageChange {
        cmdline: f.optional("cmdline")?,
        root: f.optional("root")?,
        persistent: f.optional("persistent")?,
        swarm: f.optional("swarm")?,
    };
    f.finish()?;
    let view = api
        .blocking(move |store| {
            let image =
                admin::set_image(store, &name, &change).map_err(|e| ApiError::admin("image", e))?;
            let nodes = store.read(|r| r.all::<Node>())?;
            Ok(image_view(image, &nodes))
        })
        .await?;
    ok(view)
}

/// `GET /images/{name}/history`: every version, oldest first.
pub async fn image_history(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let blobs = api.blobs();
    let history = api
        .blocking(move |store| {
            let (image, nodes, groups) = store.read(|r| {
                Ok::<_, ApiError>((r.get::<Image>(&name)?, r.all::<Node>()?, r.all::<Group>()?))
            })?;
            let image = image.ok_or_else(|| unknown("image", &name))?;
            let versions = image.history();
            let usage = blobs
                .version_usage(&versions)
                .map_err(|e| ApiError::internal("image store", e))?;
            let mut booting = booting_versions(&image, &nodes, &groups);
            let entries = crate::image::usage::with_usage(versions, usage);
            Ok(entries
                .into_iter()
                .map(|entry| VersionView {
                    nodes: booting.remove(&entry.version.number).unwrap_or_default(),
                    entry,
                })
                .collect::<Vec<_>>())
        })
        .await?;
    ok(history)
}

/// One entry of `GET /images/{name}/history`: the version, its figures and the nodes that
/// boot it.
#[derive(Serialize)]
struct VersionView {
    #[serde(flatten)]
    entry: crate::image::usage::HistoryEntry,
    nodes: Vec<String>,
}

/// The nodes that boot `image`, by version, as `View::boot_image_of` picks it: the node's
/// own image and pin, else its group's; the latest when nothing pins.
fn booting_versions(
    image: &Image,
    nodes: &[Node],
    groups: &[Group],
) -> std::collections::BTreeMap<u32, Vec<String>> {
    let mut by_version: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for node in nodes {
        let group = node
            .group
            .as_deref()
            .and_then(|g| groups.iter().find(|x| x.name == g));
        let (name, pin) = match &node.image {
            Some(i) => (Some(i.as_str()), node.image_version),
            None => (
                group.and_then(|g| g.image.as_deref()),
                node.image_version.or(group.and_then(|g| g.image_version)),
            ),
        };
        if name == Some(image.name.as_str()) {
            let version = pin.unwrap_or_else(|| image.latest_version());
            by_version
                .entry(version)
                .or_default()
                .push(node.name.clone());
        }
    }
    by_version
}

/// `GET /image-store`: the blob store's totals (blobs that images name, their bytes, the
/// bytes on disk).
pub async fn image_store(State(api): State<Arc<Api>>) -> Res {
    let blobs = api.blobs();
    let totals = api
        .blocking(move |store| {
            let images = store.read(|r| r.all::<Image>())?;
            blobs
                .totals(&images)
                .map_err(|e| ApiError::internal("image store", e))
        })
        .await?;
    ok(totals)
}

/// `POST /images/{name}/rollback` `{"version": N}`: version N's files become the latest
/// version again, recorded as made by the caller.
pub async fn rollback_image(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    axum::Extension(principal): axum::Extension<super::Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let version: u32 = f.required("version")?;
    f.finish()?;
    let by = principal.who();
    let view = api
        .blocking(move |store| {
            let image = admin::rollback_image(store, &name, version, &by)
                .map_err(|e| ApiError::admin("image", e))?;
            let nodes = store.read(|r| r.all::<Node>())?;
            Ok(image_view(image, &nodes))
        })
        .await?;
    ok(view)
}

// ---------------------------------------------------------------------------------------------
// Leases

#[derive(Serialize)]
struct LeaseRow {
    #[serde(flatten)]
    lease: Lease,
    /// The lease's state now: `expired` once it has run out.
    status: &'static str,
    /// The node with this MAC, if any.
    node: Option<String>,
}

/// Values of the `state` filter of `GET /leases`.
const LEASE_STATES: &[&str] = &[
    "offered", "bound", "released", "declined", "expired", "active",
];

pub async fn list_leases(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    let state = q.get("state");
    if let Some(s) = &state {
        if !LEASE_STATES.contains(&s.as_str()) {
            return Err(ApiError::bad(
                "state",
                format!("state: {s:?} is not one of {}", LEASE_STATES.join(", ")),
            ));
        }
    }
    let mac = match q.get("mac") {
        Some(m) => Some(
            m.parse::<Mac>()
                .map_err(|e| ApiError::bad("mac", format!("mac: {e}")))?,
        ),
        None => None,
    };
    let network = q.get("network");
    q.finish()?;
    let all = api
        .blocking(move |store| {
            let now = clock::unix_secs();
            let (leases, nodes) =
                store.read(|r| Ok::<_, ApiError>((r.all::<Lease>()?, r.all::<Node>()?)))?;
            let by_mac: HashMap<Mac, String> = nodes.into_iter().map(|n| (n.mac, n.name)).collect();
            Ok(leases
                .into_iter()
                .filter(|l| {
                    let status = lease_state(l, now);
                    state
                        .as_deref()
                        .is_none_or(|s| s == status || (s == "active" && l.holds(now)))
                        && mac.is_none_or(|m| l.mac == m)
                        && network.as_deref().is_none_or(|n| l.network == n)
                })
                .map(|l| LeaseRow {
                    status: lease_state(&l, now),
                    node: by_mac.get(&l.mac).cloned(),
                    lease: l,
                })
                .collect::<Vec<_>>())
        })
        .await?;
    ok(page.of(all))
}

// ---------------------------------------------------------------------------------------------
// Settings

pub async fn list_settings(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(|store| Ok(store.read(|r| r.all::<Setting>())?))
        .await?;
    // The node key's private half stays in the pool (crate::exec::key).
    let all: Vec<Setting> = all.into_iter().map(crate::exec::key::redact).collect();
    ok(page.of(all))
}

pub async fn get_setting(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let s = api
        .blocking(move |store| {
            store
                .read(|r| r.get::<Setting>(&name))?
                .ok_or_else(|| unknown("setting", &name))
        })
        .await?;
    ok(crate::exec::key::redact(s))
}

pub async fn put_setting(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let value: serde_json::Value = f.required("value")?;
    f.finish()?;
    let out = Setting {
        name: name.clone(),
        value: value.clone(),
    };
    admin_change(&api, "setting", move |store| {
        admin::set_setting(store, &name, &value)
    })
    .await?;
    ok(out)
}

// ---------------------------------------------------------------------------------------------
// Users

/// An `auth` error as the API answers it: the admin's mapping, or 400 for a refused password
/// or role change.
fn auth_error(kind: &'static str, e: auth::AuthError) -> ApiError {
    match e {
        auth::AuthError::Admin(e) => ApiError::admin(kind, e),
        e @ (auth::AuthError::TooShort | auth::AuthError::TooLong) => {
            ApiError::new(StatusCode::BAD_REQUEST, Some("password"), e.to_string())
        }
        e @ auth::AuthError::LastAdmin { .. } => {
            ApiError::new(StatusCode::CONFLICT, Some("role"), e.to_string())
        }
        other => ApiError::internal(kind, other),
    }
}

/// `GET /audit?since=UNIX_SECS`: the audit log, oldest first.
pub async fn list_audit(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let since = match q.get("since") {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("since"),
                "since must be unix seconds",
            )
        })?,
    };
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(move |store| Ok(crate::audit::since(store, since)?))
        .await?;
    ok(page.of(all))
}

#[derive(Serialize)]
struct UserView {
    name: String,
    role: Role,
}

/// A paged list of every row `load` reads, each shown as `view` makes it (no filters).
async fn paged<T: Send + 'static, V: Serialize>(
    api: &Arc<Api>,
    q: Vec<(String, String)>,
    load: fn(&Store) -> Result<Vec<T>, crate::store::StoreError>,
    view: fn(T) -> V,
) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api.blocking(move |store| Ok(load(store)?)).await?;
    ok(page.of(all.into_iter().map(view).collect()))
}

pub async fn list_users(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    paged(&api, q, auth::users, |u| UserView {
        name: u.name,
        role: u.role,
    })
    .await
}

pub async fn add_user(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let name: String = f.required("name")?;
    let password: String = f.required("password")?;
    let role: Role = f.required("role")?;
    f.finish()?;
    let user = name.clone();
    api.blocking(move |store| {
        auth::add_user(store, &user, &password, role).map_err(|e| auth_error("user", e))
    })
    .await?;
    created(UserView { name, role })
}

pub async fn set_user(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let role: Role = f.required("role")?;
    f.finish()?;
    let user = name.clone();
    api.blocking(move |store| {
        auth::set_role(store, &user, role).map_err(|e| auth_error("user", e))
    })
    .await?;
    ok(UserView { name, role })
}

// ---------------------------------------------------------------------------------------------
// API tokens

#[derive(Serialize)]
struct TokenView {
    name: String,
    created: u64,
    role: Role,
}

pub async fn list_tokens(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    paged(&api, q, auth::tokens, |t| TokenView {
        name: t.name,
        created: t.created,
        role: t.role,
    })
    .await
}

pub async fn add_token(
    State(api): State<Arc<Api>>,
    axum::Extension(by): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let name: String = f.required("name")?;
    let role: Role = f.optional("role")?.unwrap_or_default();
    f.finish()?;
    let who = by.who();
    let token_name = name.clone();
    let token = api
        .blocking(move |store| {
            auth::create_token(store, &token_name, role, clock::unix_secs())
                .map_err(|e| auth_error("token", e))
        })
        .await?;
    tracing::info!(token = %name, by = %who, "API token created");
    created(serde_json::json!({ "name": name, "token": token }))
}

// ---------------------------------------------------------------------------------------------
// Power

/// One node's result of a power request.
#[derive(Serialize)]
struct PowerResult {
    node: String,
    bmc: String,
    ok: bool,
    /// What was done or read (`on`, `off`, `power on sent`, `next boot: pxe`).
    text: Option<String>,
    /// The power state, when the action read it.
    power: Option<bool>,
    /// Why it failed: timeout, authentication, unreachable, privilege, unsupported,
    /// only-v1.5, refused, no-bmc.
    class: Option<&'static str>,
    reason: Option<String>,
}

/// `POST /power` `{"action": "on|off|soft|cycle|reset|status|bootdev", "device": "pxe|disk",
/// "targets": ["node", "group", "node[001-064]"]}`: what `drover power` does, with the
/// server's `[power]` settings (session cap, pacing), in the BMC sessions the server keeps
/// open (shared with the power poller). Answers 200 with a result per node, and `failed` =
/// how many failed.
pub async fn power(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    use crate::ipmi::core::BootDevice;
    use crate::ipmi::power::{self, Action, TargetError};
    let mut f = Fields::parse(&headers, &body)?;
    let action: String = f.required("action")?;
    let device: Option<String> = f.optional("device")?;
    let targets: Vec<String> = f.required("targets")?;
    f.finish()?;
    let action = match (action.as_str(), device.as_deref()) {
        ("bootdev", Some("pxe")) => Action::Bootdev(BootDevice::Pxe),
        ("bootdev", Some("disk")) => Action::Bootdev(BootDevice::Disk),
        ("bootdev", _) => return Err(ApiError::bad("device", "device: pxe or disk")),
        (_, Some(_)) => {
            return Err(ApiError::bad("device", "device: only with action bootdev"));
        }
        ("on", None) => Action::On,
        ("off", None) => Action::Off,
        ("soft", None) => Action::Soft,
        ("cycle", None) => Action::Cycle,
        ("reset", None) => Action::Reset,
        ("status", None) => Action::Status,
        _ => {
            return Err(ApiError::bad(
                "action",
                "action: on, off, soft, cycle, reset, status or bootdev",
            ))
        }
    };
    let fan = api.power.clone();
    let outcomes = api
        .blocking(move |store| {
            let jobs = store
                .read(|r| power::resolve(r, &targets))
                .map_err(|e| match e {
                    TargetError::Store(e) => ApiError::from(e),
                    other => ApiError::bad("targets", format!("targets: {other}")),
                })?;
            let outcomes = power::run_all(&jobs, action, &fan);
            if outcomes.iter().any(|o| o.learned_pin.is_some()) {
                store.write(|w| power::remember_pins(w, &outcomes))?;
            }
            Ok(outcomes)
        })
        .await?;
    let results: Vec<PowerResult> = outcomes
        .into_iter()
        .map(|o| match o.result {
            Ok(reply) => PowerResult {
                node: o.node,
                bmc: o.bmc,
                ok: true,
                text: Some(reply.text),
                power: reply.power,
                class: None,
                reason: None,
            },
            Err(failure) => PowerResult {
                node: o.node,
                bmc: o.bmc,
                ok: false,
                text: None,
                power: None,
                class: Some(failure.class),
                reason: Some(failure.reason),
            },
        })
        .collect();
    let failed = results.iter().filter(|r| !r.ok).count();
    ok(serde_json::json!({ "results": results, "failed": failed }))
}
