//! HTTP connections: one accept loop per listening address, connection caps, and the
//! timeout that closes slow and idle clients. Each accepted connection is served by hyper's
//! HTTP/1 server with the axum router as its service (the client address is put into every
//! request as axum's `ConnectInfo`, which the API's login limiter and the boot path read).
//!
//! Limits ([`Limits`], held in [`crate::net::limit::Caps`]): at most `max_connections` at
//! once and `max_per_address` from one client address; a connection beyond either is closed
//! at once and counted. A request head
//! must be complete within `header_timeout` of the connection becoming ready for it (hyper's
//! header-read timer starts when it waits for a head): that closes connections that never
//! finish their headers (slowloris) and keep-alive connections idle for that long.
//!
//! TLS: an [`Endpoint`] with an acceptor runs the TLS handshake first (bounded by the same
//! `header_timeout`), then serves HTTP/1 inside it; the caps count TLS and plain connections
//! together. Each endpoint has its own router, so the plain one can leave the API out
//! (`[http] api-https-only`).
//!
//! Connections come from anything that implements [`Accept`]: a kernel TCP listener, or the
//! lab's smoltcp listener (`crate::lab::stack`), served the same way.
//!
//! Not here: a timeout on slow request bodies or on clients that stop reading a response
//! (a download to a slow node is legitimate; the caps bound what such clients can hold), and
//! the certificates (`crate::tls`).

use crate::net::limit::{Caps, Refused, Slot};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long an accept loop backs off after an error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long open connections get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Connection limits of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_timeout: Duration,
}

impl Default for Limits {
    /// Sized for a boot storm: thousands of nodes each fetch with one or two connections at
    /// a time, and a node behind one address never needs dozens.
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_per_address: 32,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Connections refused by the caps.
#[derive(Debug, Default)]
pub struct Stats {
    pub refused_total: AtomicU64,
    pub refused_per_address: AtomicU64,
}

impl crate::counters::Counters for Stats {
    fn counters(&self) -> Vec<(String, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("refused_total".into(), get(&self.refused_total)),
            ("refused_per_address".into(), get(&self.refused_per_address)),
        ]
    }
}

/// A source of connections and their peers' addresses: a kernel TCP listener, or the lab's
/// smoltcp listener (`crate::lab::stack::TcpListener`).
pub trait Accept: Send + Sync + 'static {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// A listening socket, what it serves, and whether it speaks TLS.
pub struct Endpoint<L = TcpListener> {
    pub listener: L,
    pub app: Router,
    pub tls: Option<TlsAcceptor>,
}

/// The caps and counters that every endpoint of one server shares, and the server's
/// shutdown: endpoints may come and go while it runs (an interface added to the appliance
/// gets its listeners without touching the others'), and their connections count against
/// the same caps.
#[derive(Clone)]
pub struct Front {
    slots: Arc<Slots>,
    shutdown: CancellationToken,
}

impl Front {
    pub fn new(limits: Limits, stats: Arc<Stats>, shutdown: CancellationToken) -> Front {
        let caps = Caps::new(limits.max_connections, limits.max_per_address);
        let slots = Arc::new(Slots {
            limits,
            stats,
            caps,
        });
        Front { slots, shutdown }
    }

    /// Accepts on `endpoints` until `stop` (or the server's shutdown) fires. Connections
    /// already accepted are not ended by `stop`: they finish, or end with the server.
    pub async fn serve<L: Accept>(&self, endpoints: Vec<Endpoint<L>>, stop: CancellationToken) {
        let mut loops = JoinSet::new();
        for endpoint in endpoints {
            loops.spawn(accept_loop(endpoint, self.clone(), stop.clone()));
        }
        while loops.join_next().await.is_some() {}
    }
}

/// Serves every endpoint until `shutdown` fires.
pub async fn serve<L: Accept>(
    endpoints: Vec<Endpoint<L>>,
    limits: Limits,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let front = Front::new(limits, stats, shutdown.clone());
    front.serve(endpoints, shutdown).await;
    Ok(())
}

async fn accept_loop<L: Accept>(endpoint: Endpoint<L>, front: Front, stop: CancellationToken) {
    let Front { slots, shutdown } = front;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            _ = shutdown.cancelled() => return,
            r = endpoint.listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Over a cap: dropping the stream closes it.
        let Some(slot) = slots.take(peer.ip()) else {
            continue;
        };
        let header_timeout = slots.limits.header_timeout;
        let (app, tls, shutdown) = (endpoint.app.clone(), endpoint.tls.clone(), shutdown.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return connection(stream, peer, app, header_timeout, slot, shutdown).await;
            };
            // The handshake is bounded like a request head: a client that stalls in it
            // holds a slot for no longer.
            match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    connection(stream, peer, app, header_timeout, slot, shutdown).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    _slot: Slot,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tower = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        hyper::service::Service::call(&tower, req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        // WebSockets (node consoles, `crate::api`): the handler's task takes the stream over.
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
}

/// The caps and where refusals are counted.
struct Slots {
    limits: Limits,
    stats: Arc<Stats>,
    caps: Arc<Caps>,
}

impl Slots {
    /// A slot for a connection from `ip`, or `None` (counted) over a cap.
    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let refused = match self.caps.take(ip) {
            Ok(slot) => return Some(slot),
            Err(Refused::Total) => &self.stats.refused_total,
            Err(Refused::PerAddress) => &self.stats.refused_per_address,
        };
        refused.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refusals_per_cap() {
        let slots = Slots {
            limits: Limits::default(),
            stats: Arc::default(),
            caps: Caps::new(3, 2),
        };
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "a third from one address");
        let b1 = slots.take(b).unwrap();
        assert!(slots.take(b).is_none(), "over the total");
        drop(a1);
        assert!(slots.take(a).is_some(), "a slot given back is free again");
        drop(b1);
        assert_eq!(slots.stats.refused_per_address.load(Ordering::Relaxed), 1);
        assert_eq!(slots.stats.refused_total.load(Ordering::Relaxed), 1);
    }
}
