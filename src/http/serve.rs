//! The axum shell of the HTTP server: the boot-path routes, file streaming, and the store view
//! they read; the admin API and page (`crate::api`) are merged into the same router.
//!
//! Scripts list the other live pool members after this server (`Shared::peers`, kept
//! current by the pool task), so a node falls back to them for every fetch.
//!
//! Discovery (with the API on): an unknown MAC boots the discovery image when one is set and
//! reports its inventory (`super::discover`).
//!
//! Boot events (with the API on): a node's iPXE script (node by MAC in the URL), firmware,
//! kernel, initrd and root tarball downloaded from the start (node by client address: its
//! reservation or lease) and the agent's posts go to the API's
//! [`crate::timeline::Recorder`], which never waits for the store.
//!
//! Requests never buffer whole files: an image file is opened through the blob store's
//! reader (`crate::image::BlobReader`, chunked or whole), seeked to the requested range and
//! streamed a piece at a time from the blocking pool. `/chunks/{hash}` serves one stored chunk
//! by its hash. The store is read through snapshots of the server's [`SharedView`].

use super::{ipxe, range};
use crate::image::{BlobReader, Blobs};
use crate::logsafe::Escaped;
use crate::pool::peers::Peers;
use crate::store::model::{BlobId, BootStage, ImageFile, Mac, Node};
use crate::store::SharedView;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Seconds an unknown machine waits before asking for its script again.
const DISCOVERY_RETRY_SECS: u32 = 10;
/// Read size when streaming files.
const STREAM_CHUNK: usize = 256 * 1024;
/// Pieces read ahead of a client, per download.
const STREAM_QUEUE: usize = 2;

/// What the handlers share.
#[derive(Clone)]
pub struct Shared {
    pub view: Arc<SharedView>,
    pub blobs: Blobs,
    /// The port the server listens on, for URLs when the Host header is missing.
    pub port: u16,
    /// The port of drover's NFSv4 server, for the scripts of nodes with an NFS root.
    pub nfs_port: u16,
    /// The pool's floating service address, which nodes mount their NFS root from when set
    /// (else from the address they reached this member at).
    pub nfs_host: Option<std::net::Ipv4Addr>,
    /// The admin API and web page; `None` serves the boot path only.
    pub api: Option<Arc<crate::api::Api>>,
    /// The other live pool members: scripts list them after this server. They are assumed
    /// to serve HTTP on the same port as this one.
    pub peers: watch::Receiver<Arc<Peers>>,
    /// Whether this member serves DNS and NTP (then DHCP announces it and its peers as name
    /// and time servers, and so do the scripts).
    pub dns: bool,
    pub ntp: bool,
}

impl Shared {
    /// The servers a script points at: `first` (as the client reached us), then each other
    /// live member; and the name and time servers after the first one.
    fn servers(&self, first: &str) -> (Vec<String>, ipxe::Also) {
        let others = self.peers.borrow().others.clone();
        let mut servers = vec![first.to_string()];
        for a in &others {
            let url = match self.port {
                80 => format!("http://{a}"),
                port => format!("http://{a}:{port}"),
            };
            if !servers.contains(&url) {
                servers.push(url);
            }
        }
        let listed = |on: bool| if on { others.clone() } else { Vec::new() };
        let also = ipxe::Also {
            dns: listed(self.dns),
            ntp: listed(self.ntp),
        };
        (servers, also)
    }
}

/// The boot-path routes (unauthenticated, as iPXE needs), plus the API and page when
/// `shared.api` is set.
pub fn router(shared: Shared) -> Router {
    let api = shared.api.clone();
    let boot = boot_router(shared);
    match api {
        Some(api) => {
            boot.merge(crate::api::router(api.clone()))
                .layer(axum::middleware::from_fn_with_state(
                    api,
                    crate::api::metrics::count,
                ))
        }
        None => boot,
    }
}

fn boot_router(shared: Shared) -> Router {
    Router::new()
        .route("/boot/{mac}", get(boot_script))
        .route("/boot/{mac}/events", axum::routing::post(agent_event))
        .route("/boot/{mac}/inventory", axum::routing::post(inventory))
        .route("/boot/{mac}/standing", get(per_mac::<STANDING>))
        .route("/boot/{mac}/host-key", get(per_mac::<HOST_KEY>))
        .route("/boot/{mac}/service", get(per_mac::<SERVICE_MODE>))
        .route("/boot/{mac}/files", get(per_mac::<FILES>))
        .route(crate::service::TOOLS_PATH, get(super::service::tools))
        .route("/boot/{mac}/swarm", axum::routing::post(swarm_announce))
        .route(
            "/boot/{mac}/swarm/report",
            axum::routing::post(swarm_report),
        )
        .route("/images/{name}/{file}", get(image_file))
        .route("/chunks/{hash}", get(chunk))
        .route("/firmware/{name}", get(firmware))
        .route(crate::exec::key::HTTP_PATH, get(node_key))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(shared)
}

/// The plain-HTTP router under `[http] api-https-only`: the boot path, and a 403 that names
/// the HTTPS port for everything else (the API and page).
fn boot_only_router(shared: Shared, https_port: u16) -> Router {
    let refusal = format!(
        "the page and API are served over HTTPS only (port {https_port}); plain HTTP carries \
         the boot path\n"
    );
    boot_router(shared).fallback(move || async move { text(StatusCode::FORBIDDEN, refusal) })
}

/// The HTTPS side of the server.
pub struct Https {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub port: u16,
    /// Refuse the API and page on the plain listeners.
    pub api_only: bool,
}

/// Whether a listener speaks plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Plain,
    Tls,
}

/// The routers, the TLS acceptor and the shared caps of one HTTP server, whose listeners are
/// added as addresses come (`crate::serve`: the admin address at start, each interface's as
/// a unit that follows the appliance settings). Under `limits` (see [`super::listen`]).
#[derive(Clone)]
pub struct Server {
    front: super::listen::Front,
    plain: Router,
    tls: Option<(tokio_rustls::TlsAcceptor, Router)>,
    pub port: u16,
    pub https_port: Option<u16>,
}

impl Server {
    pub fn new(
        https: Option<Https>,
        shared: Shared,
        limits: super::listen::Limits,
        stats: Arc<super::listen::Stats>,
        shutdown: CancellationToken,
    ) -> Server {
        let port = shared.port;
        let full = router(shared.clone());
        let plain = match &https {
            Some(h) if h.api_only => boot_only_router(shared, h.port),
            _ => full.clone(),
        };
        let https_port = https.as_ref().map(|h| h.port);
        let tls = https.map(|h| (h.acceptor, full.layer(axum::Extension(crate::api::OverTls))));
        Server {
            front: super::listen::Front::new(limits, stats, shutdown),
            plain,
            tls,
            port,
            https_port,
        }
    }

    /// What `listener` serves: the boot path (and the API and page unless HTTPS only) in
    /// plain HTTP, everything over TLS. `None` for TLS on a server without HTTPS.
    pub fn endpoint(
        &self,
        listener: tokio::net::TcpListener,
        scheme: Scheme,
    ) -> Option<super::listen::Endpoint> {
        let (app, tls) = match scheme {
            Scheme::Plain => (self.plain.clone(), None),
            Scheme::Tls => {
                let (acceptor, app) = self.tls.as_ref()?;
                (app.clone(), Some(acceptor.clone()))
            }
        };
        Some(super::listen::Endpoint { listener, app, tls })
    }

    /// Serves `endpoints` until `stop` fires or the server shuts down; then waits for `stop`,
    /// so that a server with no endpoint of its own (yet) runs as long as it is asked to.
    pub async fn run(
        self,
        endpoints: Vec<super::listen::Endpoint>,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        self.front.serve(endpoints, stop.clone()).await;
        stop.cancelled().await;
        Ok(())
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// `http://host[:port]` as the client reached us: the servers a script points back to.
fn origin(headers: &HeaderMap, port: u16) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() && !host.contains(['/', ' ', '@']) => {
            format!("http://{host}")
        }
        _ if port == 80 => "http://${next-server}".to_string(),
        _ => format!("http://${{next-server}}:{port}"),
    }
}

async fn boot_script(
    State(s): State<Shared>,
    Path(mac): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (servers, also) = s.servers(&origin(&headers, s.port));
    let Ok(mac) = mac.parse::<Mac>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("#!ipxe\necho drover: {mac:?} is not a MAC address\n"),
        );
    };
    let known = s.view.snapshot().node_by_mac(mac).is_some();
    if let (false, Some(api)) = (known, &s.api) {
        if let Some(script) = super::discover::unknown_script(api, mac, &servers).await {
            return text(StatusCode::OK, script);
        }
    }
    let service = match (&s.api, s.view.snapshot().node_by_mac(mac)) {
        (Some(api), Some(node)) => service_mode(api, &node.name).await,
        _ => false,
    };
    let mut boot_event = None;
    let script = {
        let view = s.view.snapshot();
        match view.node_by_mac(mac) {
            None => {
                tracing::info!(%mac, "boot script requested by an unknown machine");
                ipxe::waiting_script(
                    &format!(
                        "this machine ({mac}) is not a known node; add it with: drover node add NAME --mac {mac} --image IMAGE"
                    ),
                    &servers,
                    DISCOVERY_RETRY_SECS,
                )
            }
            Some(node) => match view.boot_image_of(node) {
                Some((image, pin)) => {
                    let shown = ipxe::image_path_name(&image.name, pin);
                    tracing::info!(node = %node.name, image = %shown, "boot script");
                    boot_event = Some((node.name.clone(), format!("image {shown}")));
                    // A node without its own swarm setting follows its group's (the script
                    // falls back to the image's).
                    let group_swarm = || {
                        let group = view.groups.get(node.group.as_deref()?)?;
                        group.swarm
                    };
                    let node = &Node {
                        swarm: node.swarm.or_else(group_swarm),
                        ..node.clone()
                    };
                    let place = ipxe::Place {
                        servers: &servers,
                        also: &also,
                        nfs_port: s.nfs_port,
                        nfs_host: s.nfs_host,
                    };
                    if service {
                        boot_event = Some((node.name.clone(), format!("image {shown}, service mode")));
                        ipxe::service_script(node, &image, pin, &place)
                    } else {
                        ipxe::boot_script(node, &image, pin, &servers, &also, s.nfs_port, s.nfs_host)
                    }
                }
                None => ipxe::waiting_script(
                    &format!(
                        "node {} has no image (or its image was removed); set one with: drover node set {} --image IMAGE",
                        node.name, node.name
                    ),
                    &servers,
                    DISCOVERY_RETRY_SECS,
                ),
            },
        }
    };
    if let (Some(api), Some((node, detail))) = (&s.api, boot_event) {
        api.boot_events
            .record(node, BootStage::Script, "http", detail);
    }
    text(StatusCode::OK, script)
}

async fn image_file(
    State(s): State<Shared>,
    Path((name, file)): Path<(String, String)>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A download from the start is a boot step of the node at the client's address; so is
    // the manifest, which starts the swarm download of the root tarball.
    let from_start = range.is_none_or(|r| r.trim().starts_with("bytes=0-"));
    let manifest = file == MANIFEST_FILE;
    let found = find_image_file(&s, &name, if manifest { "rootfs.tar" } else { &file });
    let stage = match file.as_str() {
        "kernel" => Some(BootStage::Kernel),
        "initrd" | "initramfs" => Some(BootStage::Initrd),
        "rootfs.tar" | MANIFEST_FILE => Some(BootStage::Rootfs),
        _ => None,
    };
    if let (Some(api), Some(ip), Some(stage), true) = (
        &s.api,
        client_v4(&extensions),
        stage,
        found.is_some() && from_start,
    ) {
        api.boot_events
            .record_addr(ip, stage, "http", format!("{name}/{file}"));
    }
    if manifest {
        return rootfs_manifest(&s, &name).await;
    }
    let Some(found) = found else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no file {file:?} in image {name:?}\n"),
        );
    };
    send_blob(s.blobs.clone(), found.blob, range).await
}

/// The file name under `/images/{name}/` of the root tarball's manifest.
const MANIFEST_FILE: &str = "rootfs.manifest";

/// File `file` of image `name` (`NAME@N`: version N, for nodes pinned to it).
fn find_image_file(s: &Shared, name: &str, file: &str) -> Option<ImageFile> {
    let (image, pin) = ipxe::parse_image_path_name(name)?;
    let view = s.view.snapshot();
    let img = view.images.get(image)?;
    let files = match pin {
        Some(n) => img.version_files(n)?,
        None => img.files(),
    };
    match file {
        "kernel" => Some(files.kernel),
        "initrd" => files.initrd,
        "initramfs" => files.initramfs,
        "rootfs.tar" => files.rootfs,
        _ => None,
    }
}

/// `GET /images/{name}/rootfs.manifest`: the manifest of the image's root tarball as stored
/// (`image::chunk::Manifest` encoding), with the tarball's blob id in `X-Drover-Blob`, for
/// the agent's swarm download (`crate::swarm`). 404 when the tarball is stored whole (a
/// store from before chunking): the agent then downloads the tarball itself. Unauthenticated
/// like the tarball it describes.
async fn rootfs_manifest(s: &Shared, name: &str) -> Response {
    let Some(found) = find_image_file(s, name, "rootfs.tar") else {
        return text(
            StatusCode::NOT_FOUND,
            format!("image {name:?} has no root tarball\n"),
        );
    };
    let blobs = s.blobs.clone();
    let id = found.blob.clone();
    match tokio::task::spawn_blocking(move || blobs.manifest_bytes(&id)).await {
        Ok(Ok(Some(bytes))) => match HeaderValue::from_str(&found.blob) {
            Ok(blob) => (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (
                        header::HeaderName::from_static(crate::swarm::wire::BLOB_HEADER),
                        blob,
                    ),
                ],
                bytes,
            )
                .into_response(),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "bad blob id\n".into()),
        },
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            "the root tarball is stored whole: fetch rootfs.tar\n".into(),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read a manifest");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "manifest unreadable\n".into(),
            )
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// The node behind a swarm request: the API, and the node's name if the request comes from
/// its reserved or leased address; else the refusal to send (counted).
async fn swarm_caller(
    s: &Shared,
    mac: &str,
    extensions: &axum::http::Extensions,
) -> Result<(Arc<crate::api::Api>, std::net::Ipv4Addr), Response> {
    let Some(api) = s.api.clone() else {
        return Err(text(StatusCode::NOT_FOUND, "the swarm is off\n".into()));
    };
    let Ok(mac) = mac.parse::<Mac>() else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("{mac:?} is not a MAC address\n"),
        ));
    };
    let from = client_v4(extensions);
    match api.node_for_event(mac, from).await {
        Err(e) => Err(e.into_response()),
        Ok(None) => Err(text(
            StatusCode::NOT_FOUND,
            format!("no node has MAC {mac}\n"),
        )),
        Ok(Some((node, allowed))) => match (allowed, from) {
            (true, Some(ip)) => Ok((api, ip)),
            _ => {
                api.swarm.refuse();
                Err(text(
                    StatusCode::FORBIDDEN,
                    format!("swarm requests of {node} come from its own address\n"),
                ))
            }
        },
    }
}

/// `POST /boot/{mac}/swarm` ([`crate::swarm::wire::Announce`]): the node at its own address
/// holds the blob and seeds on the port; answers the other holders with a current
/// reservation or lease ([`crate::swarm::wire::PeerList`]).
async fn swarm_announce(
    State(s): State<Shared>,
    Path(mac): Path<String>,
    extensions: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    let announce = match crate::swarm::wire::Announce::parse(&body) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let (api, ip) = match swarm_caller(&s, &mac, &extensions).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let view = s.view.snapshot();
    let now = crate::clock::unix_secs();
    let current = |ip: std::net::Ipv4Addr| {
        view.node_by_ip(ip).is_some()
            || view
                .leases
                .get(&ip)
                .is_some_and(|l| l.holds(now) && view.node_by_mac(l.mac).is_some())
    };
    let peers = api.swarm.announce(
        now,
        &announce.blob,
        std::net::SocketAddrV4::new(ip, announce.port),
        rand_core::RngCore::next_u64(&mut rand_core::OsRng),
        current,
    );
    let body = crate::swarm::wire::PeerList { peers };
    match serde_json::to_string(&body) {
        Ok(json) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `POST /boot/{mac}/swarm/report` ([`crate::swarm::wire::Report`]): the node's bytes per
/// source, added to `drover_swarm_*`.
async fn swarm_report(
    State(s): State<Shared>,
    Path(mac): Path<String>,
    extensions: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    let report = match crate::swarm::wire::Report::parse(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    match swarm_caller(&s, &mac, &extensions).await {
        Ok((api, _)) => {
            api.swarm.report(report);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal,
    }
}

/// Largest agent event body.
const MAX_EVENT_BODY: usize = 1024;

/// The body of an agent's boot event, checked before anything is looked up.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentEvent {
    pub(crate) stage: BootStage,
    #[serde(default)]
    pub(crate) detail: String,
}

impl AgentEvent {
    /// Decodes an event body (the fuzz target `agent_event` calls this too); the error is the
    /// answer to send.
    pub(crate) fn parse(body: &[u8]) -> Result<AgentEvent, (StatusCode, String)> {
        if body.len() > MAX_EVENT_BODY {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "event too large\n".into()));
        }
        let event: AgentEvent = serde_json::from_slice(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad event: {e}\n")))?;
        if !matches!(
            event.stage,
            BootStage::Agent | BootStage::Root | BootStage::Ready | BootStage::Failed
        ) {
            return Err((
                StatusCode::BAD_REQUEST,
                "stage must be agent, root, ready or failed\n".into(),
            ));
        }
        Ok(event)
    }
}

/// `POST /boot/{mac}/events` from drover's agent: `{"stage": "agent"|"root"|"ready"|"failed",
/// "detail": TEXT}`. Unauthenticated like the rest of the boot path (the agent has no
/// credentials), but accepted only from the node's reserved address or the address its MAC
/// holds the lease on (else 403, counted); it only appends to a known node's capped timeline.
async fn agent_event(
    State(s): State<Shared>,
    Path(mac): Path<String>,
    extensions: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    let Some(api) = &s.api else {
        return text(StatusCode::NOT_FOUND, "boot events are off\n".into());
    };
    let Ok(mac) = mac.parse::<Mac>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{mac:?} is not a MAC address\n"),
        );
    };
    let event = match AgentEvent::parse(&body) {
        Ok(e) => e,
        Err((status, message)) => return text(status, message),
    };
    // From the store rather than the view: a node added (or a lease bound) a moment ago is
    // known at once.
    let from = client_v4(&extensions);
    let node = match api.node_for_event(mac, from).await {
        Ok(node) => node,
        Err(e) => return e.into_response(),
    };
    let Some((node, allowed)) = node else {
        return text(StatusCode::NOT_FOUND, format!("no node has MAC {mac}\n"));
    };
    if !allowed {
        api.boot_events.refuse();
        tracing::warn!(node = %node, from = ?from, stage = event.stage.name(),
            "boot event refused: not from the node's reserved or leased address");
        return text(
            StatusCode::FORBIDDEN,
            format!("boot events of {node} come from its own address\n"),
        );
    }
    tracing::info!(node = %node, stage = event.stage.name(), detail = %Escaped(&event.detail),
        "boot event");
    api.boot_events
        .record(node, event.stage, "agent", event.detail);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /boot/{mac}/inventory` (see [`super::discover`]).
async fn inventory(
    State(s): State<Shared>,
    Path(mac): Path<String>,
    extensions: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    match discovery_of(&s, &mac) {
        Ok((api, mac)) => {
            super::discover::post_inventory(api, mac, client_v4(&extensions), &body).await
        }
        Err((status, why)) => text(status, why),
    }
}

/// The per-MAC GET endpoints of the boot path, as [`per_mac`]'s parameter.
const STANDING: u8 = 0;
const HOST_KEY: u8 = 1;
const SERVICE_MODE: u8 = 2;
const FILES: u8 = 3;

/// `GET /boot/{mac}/standing` (see [`super::discover`]), `GET /boot/{mac}/host-key` and
/// `GET /boot/{mac}/service` (see [`super::service`]) and `GET /boot/{mac}/files` (see
/// [`super::files`]): one handler, the endpoint chosen by `WHAT`, since all take the same MAC
/// and client address.
async fn per_mac<const WHAT: u8>(
    State(s): State<Shared>,
    Path(mac): Path<String>,
    extensions: axum::http::Extensions,
) -> Response {
    let (api, mac) = match discovery_of(&s, &mac) {
        Ok(found) => found,
        Err((status, why)) => return text(status, why),
    };
    let from = client_v4(&extensions);
    match WHAT {
        STANDING => super::discover::standing(api, mac, from).await,
        HOST_KEY => super::service::host_key(api, mac, from).await,
        FILES => super::files::files(api, mac, from).await,
        _ => super::service::mode(api, mac, from).await,
    }
}

/// Whether `node` is in service mode; a store that cannot be read says no (logged): the
/// node then boots its image, as it would have without service mode.
async fn service_mode(api: &Arc<crate::api::Api>, node: &str) -> bool {
    let (store, name) = (api.store.clone(), node.to_string());
    let read =
        tokio::task::spawn_blocking(move || store.read(|r| crate::service::is_on(r, &name))).await;
    match read {
        Ok(Ok(on)) => on,
        Ok(Err(e)) => {
            tracing::error!(error = %e, node = %Escaped(node), "cannot read the service mode");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "service mode lookup failed");
            false
        }
    }
}

/// The API (discovery needs its store) and the MAC of a discovery request, or the refusal.
fn discovery_of(
    s: &Shared,
    mac: &str,
) -> Result<(Arc<crate::api::Api>, Mac), (StatusCode, String)> {
    let Some(api) = s.api.clone() else {
        return Err((StatusCode::NOT_FOUND, "discovery is off\n".into()));
    };
    match mac.parse::<Mac>() {
        Ok(mac) => Ok((api, mac)),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            format!("{mac:?} is not a MAC address\n"),
        )),
    }
}

async fn send_blob(blobs: Blobs, id: BlobId, range: Option<&str>) -> Response {
    let opened = tokio::task::spawn_blocking(move || blobs.open(&id)).await;
    let reader = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot open image file");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "image file missing on this server\n".into(),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let len = reader.len();
    let octets = HeaderValue::from_static("application/octet-stream");
    match range::plan(range, len) {
        range::Plan::Whole => {
            let body = blob_body(reader, 0, len);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, octets),
                    (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
                    (header::CONTENT_LENGTH, HeaderValue::from(len)),
                ],
                body,
            )
                .into_response()
        }
        range::Plan::Partial { start, end } => {
            let count = end - start + 1;
            let body = blob_body(reader, start, count);
            let content_range = format!("bytes {start}-{end}/{len}");
            (
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::CONTENT_TYPE, octets),
                    (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
                    (header::CONTENT_LENGTH, HeaderValue::from(count)),
                    (
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&content_range)
                            .unwrap_or(HeaderValue::from_static("bytes */0")),
                    ),
                ],
                body,
            )
                .into_response()
        }
        range::Plan::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            )],
        )
            .into_response(),
    }
}

/// Streams `count` bytes of `reader` from `start`. The blob is read on the blocking pool one
/// piece at a time; at most [`STREAM_QUEUE`] pieces wait for a slow client. An error (a
/// corrupt chunk) ends the body early, which the client sees as a short download.
fn blob_body(mut reader: BlobReader, start: u64, count: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(STREAM_QUEUE);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = reader.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = count;
        while left > 0 {
            let mut buf = vec![0; STREAM_CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX))];
            let piece = match reader.read(&mut buf) {
                Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = piece.is_err();
            if let Err(e) = &piece {
                tracing::error!(error = %e, "reading an image file");
            }
            // The client went away: stop reading.
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }))
}

/// `/chunks/{hash}`: one chunk of the content store by its BLAKE3 hash, checked before it is
/// sent. Unauthenticated like image files (a chunk is a piece of one); nodes will fetch
/// chunks from each other by these names.
async fn chunk(State(s): State<Shared>, Path(hash): Path<String>) -> Response {
    let Some(id) = crate::image::chunk::parse_hex(&hash) else {
        return text(StatusCode::NOT_FOUND, "not a chunk name\n".into());
    };
    let blobs = s.blobs.clone();
    match tokio::task::spawn_blocking(move || blobs.read_chunk(&id)).await {
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            text(StatusCode::NOT_FOUND, "no such chunk\n".into())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read a chunk");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "chunk unreadable\n".into(),
            )
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// The IPv4 address of the client, when the server runs with connection info.
fn client_v4(extensions: &axum::http::Extensions) -> Option<std::net::Ipv4Addr> {
    match extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip()
    {
        std::net::IpAddr::V4(ip) => Some(ip),
        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    }
}

/// `/firmware/{name}`: an embedded iPXE binary; a node that fetches one from the start is
/// chaining into iPXE (a boot event of the node at the client's address).
/// The node key's public half (`crate::exec::key`); 404 until `drover exec` has made one.
async fn node_key(State(s): State<Shared>) -> Response {
    let Some(api) = s.api.clone() else {
        return text(StatusCode::NOT_FOUND, "no store on this server\n".into());
    };
    let read = tokio::task::spawn_blocking(move || crate::exec::key::stored(&api.store)).await;
    match read {
        Ok(Ok(Some(key))) => text(StatusCode::OK, format!("{}\n", key.public)),
        Ok(Ok(None)) => text(StatusCode::NOT_FOUND, "no node key yet\n".into()),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn firmware(
    State(s): State<Shared>,
    Path(name): Path<String>,
    extensions: axum::http::Extensions,
) -> Response {
    let Some(bytes) = crate::firmware::get(&name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no firmware file {name:?}\n"),
        );
    };
    // Served whole every time (Range is ignored), so every fetch is a boot step.
    if let (Some(api), Some(ip)) = (&s.api, client_v4(&extensions)) {
        api.boot_events
            .record_addr(ip, BootStage::Firmware, "http", name.clone());
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        Body::from(bytes.into_owned()),
    )
        .into_response()
}
