//! The authenticated HTTP API under `/api/v1` and the embedded web page that uses it.
//!
//! Data flow: a request passes `authenticate` (a session cookie, or `Authorization: Bearer`
//! with an API token), then a handler in `resources` checks its input field by field
//! ([`input`]) and calls the same `crate::admin` functions as the CLI, in `spawn_blocking`
//! (LMDB commits fsync). Reads come from the store, so a client reads its own writes.
//! `events` streams the store's change feed to the page as server-sent events.
//!
//! Security: everything here needs a login except `POST /api/v1/login` and the page's static
//! files (the same HTML/JS/CSS in every drover; they hold no data). Cookies are `HttpOnly`
//! and `SameSite=Strict`, and `Secure` when the login came over HTTPS ([`OverTls`]); a request authenticated by cookie that changes anything must also
//! carry the session's CSRF token in `X-CSRF-Token`, which another site cannot read or set.
//! Bodies must be `application/json` (or `text/csv` for the import). Failed logins are
//! limited per client address ([`crate::auth::LoginLimiter`]).
//!
//! Roles: each route of [`routes`] names the least [`Role`] it needs (reads: viewer; power:
//! operator; every other change: admin), and `require_role` refuses the rest with 403 and a
//! body naming both roles. The caller's role is read from the store on each request, so a
//! changed role counts at once. The OpenAPI document carries the same role per operation
//! (`x-drover-role`), checked by a test.
//!
//! Not here: power control (IPMI is another module's work and has no endpoint yet), the
//! agent's boot-event endpoint (`POST /boot/{mac}/events`, on the unauthenticated boot path
//! in `crate::http`), image upload (images are added with the CLI), TLS (`crate::http::listen`
//! and `crate::tls`).

mod bmc;
mod config;
mod console;
pub mod discovered;
pub mod error;
mod events;
mod files;
pub mod input;
pub mod metrics;
mod pool;
mod resources;
pub mod web;

use crate::auth::{self, LoginLimiter, Sessions};
use crate::logsafe::Escaped;
use crate::store::model::Role;
use crate::store::Store;
use crate::timeline::Recorder;
use axum::extract::{ConnectInfo, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use error::ApiError;
use input::Fields;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Path prefix of the API.
pub const PREFIX: &str = "/api/v1";
/// Name of the session cookie.
pub const COOKIE: &str = "drover_session";
/// Header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest request body (the CSV import of a few thousand nodes fits).
pub const MAX_BODY: usize = 4 << 20;
/// Event streams open at once.
pub const MAX_EVENT_STREAMS: usize = 64;
/// Password verifications (argon2, ~19 MiB each) running at once, for all clients.
pub const MAX_VERIFICATIONS: usize = 2;

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// A response extension a handler adds to say what its change was, beyond its method and
/// path (the changed settings' keys and values): the audit log appends it.
#[derive(Debug, Clone)]
pub struct AuditDetail(pub String);

/// A request extension that `crate::http` puts on requests that came over HTTPS: the login
/// then marks its session cookie `Secure`, so a browser never sends it over plain HTTP.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// What a service of this server is doing, for `/api/v1/health` and the page.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub enabled: bool,
    /// Where it listens, or why it is off.
    pub detail: String,
}

/// What the API handlers share.
pub struct Api {
    pub store: Arc<Store>,
    /// What each service does; the server updates it when appliance settings change.
    services: tokio::sync::watch::Receiver<Vec<Service>>,
    sessions: Mutex<Sessions>,
    limiter: Mutex<LoginLimiter>,
    /// Password verifications running at once ([`MAX_VERIFICATIONS`]).
    verifications: Semaphore,
    event_streams: Arc<Semaphore>,
    /// Where the boot path reports boot events (also counted by `/metrics`).
    pub boot_events: Recorder,
    /// The swarm tracker and its counters (`crate::swarm`), in memory only.
    pub swarm: crate::swarm::Swarm,
    metrics: metrics::Metrics,
    /// Session cap, pacing and protocol choices for `POST /power` (from `[power]`).
    pub power: crate::ipmi::power::FanOut,
    /// Node consoles shared between WebSocket clients (`crate::ipmi::hub`).
    pub hub: Arc<crate::ipmi::hub::Hub>,
    shutdown: CancellationToken,
    started: Instant,
    /// The state directory (the pool status file).
    state_dir: std::path::PathBuf,
    /// The HTTPS certificate's fingerprint, when HTTPS is on (shown on the page).
    tls_fingerprint: Option<String>,
    /// The settings that take effect at a restart as this server started with them, so that
    /// `GET /config` can say which saved ones wait for a restart.
    restart_values: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Api {
    /// Makes the API state; at first start this creates the `admin` user (see
    /// [`auth::ensure_admin`]).
    pub fn new(
        store: Arc<Store>,
        state_dir: &Path,
        services: tokio::sync::watch::Receiver<Vec<Service>>,
        power: crate::ipmi::power::FanOut,
        boot_events: Recorder,
        tls_fingerprint: Option<String>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Api>, auth::AuthError> {
        // A member that joined a pool gets its users from the pool: creating its own admin
        // would race the pool's (last writer wins) and leave a password file that no longer
        // works.
        let joined = crate::pool::serve::seeds_file(state_dir).exists();
        if joined
            && store
                .read(|r| r.all::<crate::store::model::User>())?
                .is_empty()
        {
            tracing::info!("no users yet: they replicate from the pool this member joined");
        } else if let Some(path) = auth::ensure_admin(&store, state_dir)? {
            tracing::warn!(
                file = %path.display(),
                "created user admin with a random password (in that file); change it with `drover admin passwd`"
            );
        }
        // Unreadable settings show a problem on the page anyway; then nothing is called pending.
        let restart_values = crate::overrides::show(&store, state_dir)
            .map(|shown| crate::overrides::restart_values(&shown))
            .unwrap_or_default();
        let hub = crate::ipmi::hub::Hub::new(store.clone(), power.dial.clone(), state_dir.into());
        Ok(Arc::new(Api {
            restart_values,
            hub,
            store,
            services,
            sessions: Mutex::new(Sessions::default()),
            limiter: Mutex::new(LoginLimiter::default()),
            verifications: Semaphore::new(MAX_VERIFICATIONS),
            event_streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            boot_events,
            swarm: crate::swarm::Swarm::default(),
            metrics: metrics::Metrics::default(),
            power,
            shutdown,
            started: Instant::now(),
            state_dir: state_dir.to_path_buf(),
            tls_fingerprint,
        }))
    }

    /// The name of the node with `mac`, read from the store, and whether a caller at `from`
    /// may report its boot events (see [`crate::timeline::may_report`]).
    pub async fn node_for_event(
        self: &Arc<Self>,
        mac: crate::store::model::Mac,
        from: Option<std::net::Ipv4Addr>,
    ) -> Result<Option<(String, bool)>, ApiError> {
        self.blocking(move |store| {
            let found = store.read(|r| -> Result<_, crate::store::StoreError> {
                let Some(node) = r.node_by_mac(mac)? else {
                    return Ok(None);
                };
                // The lease on the caller's address, if any: its holder is the node there.
                let lease = match from {
                    Some(ip) => r.get::<crate::store::model::Lease>(&ip.to_string())?,
                    None => None,
                };
                let allowed = from.is_some_and(|ip| {
                    crate::timeline::may_report(
                        &node,
                        lease.as_ref(),
                        ip,
                        crate::clock::unix_secs(),
                    )
                });
                Ok(Some((node.name, allowed)))
            })?;
            Ok(found)
        })
        .await
    }

    /// Whether `principal` may still act: its session has not ended (logout, idle timeout),
    /// its token has not been revoked. Reads the store: call it on the blocking pool.
    fn still_valid(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Session { id, .. } => lock(&self.sessions).is_live(id, Instant::now()),
            Principal::Token { name, .. } => self
                .store
                .read(|r| r.get::<crate::store::model::ApiToken>(name))
                .is_ok_and(|t| t.is_some()),
        }
    }

    /// Runs `f` with the store on the blocking pool (LMDB reads and fsynced commits).
    /// The blob store of this server's state directory.
    fn blobs(&self) -> crate::image::Blobs {
        crate::image::Blobs::new(&self.state_dir)
    }

    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let api = self.clone();
        tokio::task::spawn_blocking(move || f(&api.store))
            .await
            .map_err(|e| ApiError::internal("worker", e))?
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks aborts the process (panic = "abort"), so a poisoned
    // lock cannot be observed; take the data anyway rather than propagate.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who made a request. `Debug` leaves the CSRF token out.
#[derive(Clone)]
pub enum Principal {
    /// A browser session of this user; `id` is the cookie value.
    Session {
        user: String,
        csrf: String,
        id: String,
        role: Role,
    },
    /// A script with this API token.
    Token { name: String, role: Role },
}

impl Principal {
    pub fn role(&self) -> Role {
        match self {
            Principal::Session { role, .. } | Principal::Token { role, .. } => *role,
        }
    }

    /// `user NAME` or `token NAME`, for logs and the audit log.
    pub fn who(&self) -> String {
        match self {
            Principal::Session { user, .. } => format!("user {user}"),
            Principal::Token { name, .. } => format!("token {name}"),
        }
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Session { user, .. } => write!(f, "session of {user}"),
            Principal::Token { name, .. } => write!(f, "token {name}"),
        }
    }
}

/// One API operation: method, path under [`PREFIX`], whether it needs a login, the least role
/// it needs, the handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub public: bool,
    pub role: Role,
    handler: MethodRouter<Arc<Api>>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<Api>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    // Reads are for everyone logged in; changes for admins unless the table says otherwise.
    let role = match method {
        Method::GET | Method::HEAD => Role::Viewer,
        _ => Role::Admin,
    };
    Route {
        method,
        path,
        public: false,
        role,
        handler: on(filter, handler),
    }
}

/// `route` needing `role` instead of its method's default.
fn with_role(role: Role, route: Route) -> Route {
    Route { role, ..route }
}

/// Every API operation. The router is built from this table, and a test checks it against
/// the OpenAPI document, so the document cannot drift from what is served.
pub fn routes() -> Vec<Route> {
    use resources as r;
    let (get, post, patch, put, delete) = (
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
    );
    vec![
        Route {
            public: true,
            ..route(post.clone(), "/login", login)
        },
        with_role(Role::Viewer, route(post.clone(), "/logout", logout)),
        route(get.clone(), "/session", session),
        route(get.clone(), "/openapi.json", openapi),
        route(get.clone(), "/health", r::health),
        route(get.clone(), "/pool", pool::status),
        with_role(
            Role::Admin,
            route(
                post.clone(),
                "/pool/members/{id}/mark-dead",
                pool::mark_dead,
            ),
        ),
        with_role(
            Role::Admin,
            route(post.clone(), "/pool/members/{id}/drain", pool::drain),
        ),
        with_role(
            Role::Admin,
            route(post.clone(), "/pool/members/{id}/undrain", pool::undrain),
        ),
        route(get.clone(), "/events", events::stream),
        route(get.clone(), "/nodes", r::list_nodes),
        route(post.clone(), "/nodes", r::add_node),
        route(post.clone(), "/nodes/import", r::import_nodes),
        route(get.clone(), "/nodes/{name}", r::get_node),
        route(get.clone(), "/nodes/{name}/events", r::node_events),
        route(get.clone(), "/nodes/{name}/console", console::attach),
        route(get.clone(), "/nodes/{name}/console/log", console::log),
        route(patch.clone(), "/nodes/{name}", r::set_node),
        route(
            delete.clone(),
            "/nodes/{name}",
            r::remover("node", crate::admin::remove_node),
        ),
        route(get.clone(), "/groups", r::list_groups),
        route(get.clone(), "/groups/{name}", r::get_group),
        route(put.clone(), "/groups/{name}", r::put_group),
        route(
            delete.clone(),
            "/groups/{name}",
            r::remover("group", crate::admin::remove_group),
        ),
        route(get.clone(), "/networks", r::list_networks),
        route(post.clone(), "/networks", r::add_network),
        route(get.clone(), "/networks/{name}", r::get_network),
        route(patch.clone(), "/networks/{name}", r::set_network),
        route(
            delete.clone(),
            "/networks/{name}",
            r::remover("network", crate::admin::remove_network),
        ),
        route(get.clone(), "/exports", r::list_exports),
        route(post.clone(), "/exports", r::add_export),
        route(get.clone(), "/exports/{name}", r::get_export),
        route(
            delete.clone(),
            "/exports/{name}",
            r::remover("export", crate::admin::remove_export),
        ),
        route(get.clone(), "/images", r::list_images),
        route(get.clone(), "/images/{name}", r::get_image),
        route(patch.clone(), "/images/{name}", r::set_image),
        route(get.clone(), "/images/{name}/history", r::image_history),
        route(get.clone(), "/image-store", r::image_store),
        route(post.clone(), "/images/{name}/rollback", r::rollback_image),
        route(
            delete.clone(),
            "/images/{name}",
            r::remover("image", crate::admin::remove_image),
        ),
        route(get.clone(), "/discovered", discovered::list),
        route(post.clone(), "/discovered/{name}/adopt", discovered::adopt),
        route(get.clone(), "/rules", discovered::list_rules),
        route(post.clone(), "/rules", discovered::add_rule),
        route(
            delete.clone(),
            "/rules/{name}",
            r::remover("rule", crate::discover::adopt::remove_rule),
        ),
        route(get.clone(), "/files", files::list),
        route(get.clone(), "/files/{name}", files::get),
        route(post.clone(), "/files/{name}", files::add_file),
        route(delete.clone(), "/files/{name}", files::remove),
        route(
            post.clone(),
            "/files/{name}/assign",
            files::assignment::<true>,
        ),
        route(
            post.clone(),
            "/files/{name}/unassign",
            files::assignment::<false>,
        ),
        route(get.clone(), "/leases", r::list_leases),
        with_role(Role::Operator, route(post.clone(), "/power", r::power)),
        route(get.clone(), "/bmc/sensors", bmc::sensors),
        route(get.clone(), "/bmc/sel", bmc::sel),
        route(get.clone(), "/config", config::show),
        route(post.clone(), "/config", config::change),
        route(get.clone(), "/settings", r::list_settings),
        route(get.clone(), "/settings/{name}", r::get_setting),
        route(put.clone(), "/settings/{name}", r::put_setting),
        route(
            delete.clone(),
            "/settings/{name}",
            r::remover("setting", crate::admin::remove_setting),
        ),
        with_role(Role::Admin, route(get.clone(), "/users", r::list_users)),
        with_role(Role::Admin, route(get.clone(), "/audit", r::list_audit)),
        route(post.clone(), "/users", r::add_user),
        route(patch.clone(), "/users/{name}", r::set_user),
        with_role(Role::Admin, route(get.clone(), "/tokens", r::list_tokens)),
        route(post.clone(), "/tokens", r::add_token),
        route(
            delete,
            "/tokens/{name}",
            r::remover("token", crate::auth::remove_token),
        ),
    ]
}

/// The API and the page, to merge into the HTTP server's router.
pub fn router(api: Arc<Api>) -> Router {
    let mut public: BTreeMap<&str, MethodRouter<Arc<Api>>> = BTreeMap::new();
    let mut private: BTreeMap<&str, MethodRouter<Arc<Api>>> = BTreeMap::new();
    for r in routes() {
        let table = if r.public { &mut public } else { &mut private };
        // The role check sits inside `require_login` (which finds the caller) and applies to
        // this method of the path alone.
        let handler = match r.public {
            true => r.handler,
            false => r.handler.route_layer(axum::middleware::from_fn_with_state(
                (api.clone(), r.role, r.method.clone(), r.path),
                require_role,
            )),
        };
        let merged = match table.remove(r.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        table.insert(r.path, merged);
    }
    let mut api_router = Router::new();
    for (path, handler) in private {
        api_router = api_router.route(path, handler);
    }
    api_router = api_router.route_layer(axum::middleware::from_fn_with_state(
        api.clone(),
        require_login,
    ));
    for (path, handler) in public {
        api_router = api_router.route(path, handler);
    }
    let api_router = api_router
        .fallback(|| async { ApiError::not_found("no such API endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api.clone());
    let metrics = Router::new()
        .route("/metrics", axum::routing::get(metrics::scrape))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_login,
        ))
        .with_state(api);
    Router::new()
        .nest(PREFIX, api_router)
        .merge(metrics)
        .merge(web::router())
}

/// Finds who sent `headers`: a bearer token, or a live session cookie.
fn authenticate(api: &Api, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer TOKEN`"))?;
        return match auth::token_owner(&api.store, token)? {
            Some((name, role)) => Ok(Principal::Token { name, role }),
            None => Err(ApiError::unauthorized("unknown API token")),
        };
    }
    let id = session_cookie(headers)
        .ok_or_else(|| ApiError::unauthorized("log in first (POST /api/v1/login)"))?;
    let Some(s) = lock(&api.sessions).touch(&id, Instant::now()) else {
        return Err(ApiError::unauthorized(
            "the session has ended; log in again",
        ));
    };
    // Read now, not kept in the session: a changed role counts at the next request, and a
    // removed user's session stops working.
    let Some(role) = auth::user_role(&api.store, &s.user)? else {
        lock(&api.sessions).remove(&id);
        return Err(ApiError::unauthorized("this user no longer exists"));
    };
    Ok(Principal::Session {
        user: s.user,
        csrf: s.csrf,
        id,
        role,
    })
}

/// Middleware of each non-public route (inside `require_login`): refuses callers whose role is
/// below the route's, and records each accepted change in the audit log (`crate::audit`).
async fn require_role(
    State((api, needed, method, path)): State<(Arc<Api>, Role, Method, &'static str)>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return Err(ApiError::unauthorized("log in first (POST /api/v1/login)"));
    };
    let role = principal.role();
    if role < needed {
        return Err(ApiError::forbidden(&format!(
            "{} has role {role}; {method} {PREFIX}{path} needs {needed}",
            principal.who()
        )));
    }
    let change = !matches!(method, Method::GET | Method::HEAD);
    let audit = change.then(|| {
        let from = client_ip(req.extensions()).to_string();
        let what = format!("{method} {PREFIX}{}", req.uri().path());
        (principal.who(), from, what)
    });
    let resp = next.run(req).await;
    if let (Some((who, from, mut what)), true) = (audit, resp.status().is_success()) {
        if let Some(AuditDetail(detail)) = resp.extensions().get::<AuditDetail>() {
            what = format!("{what} {detail}");
        }
        let now = crate::clock::unix_ms();
        // The change is committed; a failed audit write is logged, not turned into an error
        // the client would take for a failed change.
        let written = api
            .blocking(move |store| Ok(crate::audit::record(store, now, &who, &from, &what)?))
            .await;
        if let Err(e) = written {
            tracing::error!("cannot write the audit log: {e:?}");
        }
    }
    Ok(resp)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Middleware of every non-public route: authenticates, and for cookie sessions requires the
/// CSRF header on anything but GET/HEAD.
async fn require_login(
    State(api): State<Arc<Api>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = authenticate(&api, req.headers())?;
    if let Principal::Session { csrf, .. } = &principal {
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !safe && !auth::same_secret(sent, csrf) {
            return Err(ApiError::forbidden(
                "missing or wrong X-CSRF-Token header (cross-site request refused)",
            ));
        }
    }
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

fn client_ip(req_ext: &axum::http::Extensions) -> std::net::IpAddr {
    req_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[derive(Serialize)]
struct SessionInfo {
    user: String,
    /// Send back in `X-CSRF-Token` on state-changing requests.
    csrf: Option<String>,
    via: &'static str,
    /// What the page may offer (it hides what the role cannot do; the API enforces it).
    role: Role,
}

async fn login(State(api): State<Arc<Api>>, req: Request) -> Result<Response, ApiError> {
    let client = client_ip(req.extensions());
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, None, e.to_string()))?;
    let mut f = Fields::parse(&parts.headers, &body)?;
    let user: String = f.required("user")?;
    let password: String = f.required("password")?;
    f.finish()?;
    // Charged now, refunded on success: see `LoginLimiter`.
    let reserved = lock(&api.limiter).reserve(client, Instant::now());
    if let Err(wait) = reserved {
        api.metrics.login(metrics::Login::Limited);
        let secs = wait.as_secs().max(1);
        return Err(ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                format!("too many failed logins from {client}; try again in {secs} s"),
            )
        });
    }
    let name = user.clone();
    // Each verification takes ~19 MiB and a blocking-pool thread for a while: a few at a
    // time, whoever asks (the semaphore is never closed).
    let _permit = api
        .verifications
        .acquire()
        .await
        .map_err(|e| ApiError::internal("verification", e))?;
    let ok = api
        .blocking(move |store| Ok(auth::verify_password(store, &name, &password)?))
        .await?;
    if !ok {
        api.metrics.login(metrics::Login::Failed);
        // Escaped: the name is the client's, and a newline in it would forge log lines.
        tracing::warn!(%client, user = %Escaped(&user), "failed login");
        return Err(ApiError::unauthorized("wrong user or password"));
    }
    api.metrics.login(metrics::Login::Ok);
    lock(&api.limiter).succeeded(client);
    let name = user.clone();
    let role = api
        .blocking(move |store| Ok(auth::user_role(store, &name)?))
        .await?
        .unwrap_or_default();
    let (id, session) = lock(&api.sessions).create(&user, Instant::now());
    tracing::info!(%client, user = %Escaped(&user), %role, "login");
    let secure = match parts.extensions.get::<OverTls>() {
        Some(_) => "; Secure",
        None => "",
    };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut resp = Json(SessionInfo {
        user,
        csrf: Some(session.csrf),
        via: "session",
        role,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        lock(&api.sessions).remove(&id);
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn session(axum::Extension(p): axum::Extension<Principal>) -> Json<SessionInfo> {
    Json(match p {
        Principal::Session {
            user, csrf, role, ..
        } => SessionInfo {
            user,
            csrf: Some(csrf),
            via: "session",
            role,
        },
        Principal::Token { name, role } => SessionInfo {
            user: name,
            csrf: None,
            via: "token",
            role,
        },
    })
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The OpenAPI document lists exactly the routes the router serves.
    #[test]
    fn openapi_document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut documented = BTreeSet::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, ops) in paths {
            let path = path
                .strip_prefix(PREFIX)
                .unwrap_or_else(|| panic!("{path} is not under {PREFIX}"));
            for (method, op) in ops.as_object().expect("operations") {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    op["responses"].is_object(),
                    "{method} {path}: no responses documented"
                );
                let public = op["security"].as_array().is_some_and(|s| s.is_empty());
                let role = op["x-drover-role"].as_str().unwrap_or("").to_string();
                assert!(
                    public || !role.is_empty(),
                    "{method} {path}: no x-drover-role"
                );
                documented.insert((method.to_uppercase(), path.to_string(), public, role));
            }
        }
        let served: BTreeSet<_> = routes()
            .iter()
            .map(|r| {
                let role = if r.public { "" } else { r.role.name() };
                (
                    r.method.to_string(),
                    r.path.to_string(),
                    r.public,
                    role.to_string(),
                )
            })
            .collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "served but not documented (method, path, public, role): {missing:?}\n\
             documented but not served: {extra:?}"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; drover_session=abc; c=d"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
