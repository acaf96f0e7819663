//! The blocking shell of Redfish: HTTPS requests to one BMC (rustls with the fingerprint
//! pinning verifier of `crate::tls`, the response head read by the agent's sans-IO parser),
//! a session around the requests, and [`run`], which does one [`Op`] on the BMC's first
//! ComputerSystem. Run it on a thread of its own (the CLI's power workers).
//!
//! Authentication: a session (`POST` to the SessionService with the user and password, then
//! `X-Auth-Token` on every request, `DELETE` of the session at the end). A service without a
//! SessionService (404 or 405 to the POST; sushy-tools' emulator is one) is spoken to with
//! HTTP Basic authentication on every request instead. The session POST carries the Basic
//! header too, so a BMC that guards every path behind Basic tells a wrong password (401)
//! apart from a missing SessionService (404).
//!
//! Trust: the BMC's leaf certificate is pinned by its SHA-256 fingerprint. The first run
//! against a BMC (no pin given) trusts what it sees and hands the fingerprint back in
//! [`Done::fingerprint`] for the caller to keep; every later run passes the kept pin and a
//! changed certificate is refused with [`RedfishError::Certificate`] before any password is
//! sent. Every request of one run is pinned to the first handshake's certificate.
//!
//! Not here: keep-alive (every request is `Connection: close`), chunked replies, redirects,
//! sessions kept across runs, CA validation (a BMC's certificate is self-signed in practice).

use super::core::{self, Op, ReplyError};
use super::health;
use crate::agent::http::{parse_head, Head, HttpError};
use crate::ipmi::sdr::{SelEntry, SensorValue};
use crate::ipmi::BmcAccess;
use crate::tls::{client_config, format_fingerprint, Pinned, TlsError};
use rustls::pki_types::ServerName;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// The usual HTTPS port, used when a BMC record has no port.
pub const DEFAULT_PORT: u16 = 443;
/// Largest reply read (a ComputerSystem is a few kB).
const MAX_REPLY: u64 = 4 << 20;

/// Why a Redfish action failed. The `Display` text is the reason in the result table.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("talking to the BMC: {0}")]
    Io(String),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(
        "the BMC's certificate has fingerprint {seen}, not the pinned {pinned}; if it was \
         replaced on purpose, clear the pin (drover node set NODE --bmc-forget-cert)"
    )]
    Certificate { seen: String, pinned: String },
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error("{method} {path}: {status}: {message}")]
    Refused {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("malformed HTTP reply: {0}")]
    Http(#[from] HttpError),
    #[error("{path}: {source}")]
    Reply { path: String, source: ReplyError },
}

impl RedfishError {
    /// A one-word class of the failure, the same words IPMI's failures use where they mean
    /// the same thing.
    pub fn class(&self) -> &'static str {
        match self {
            RedfishError::Unreachable(_) => "unreachable",
            RedfishError::Timeout(_) => "timeout",
            RedfishError::Io(_) | RedfishError::Tls(_) => "io",
            RedfishError::Certificate { .. } => "certificate",
            RedfishError::Authentication(_) => "authentication",
            RedfishError::Refused { .. } => "refused",
            RedfishError::Http(_) | RedfishError::Reply { .. } => "protocol",
        }
    }
}

/// A successful action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// What to show: `on`/`off` for a status, else what was sent.
    pub text: String,
    /// The power state, when it was read (status).
    pub power: Option<bool>,
    /// The fingerprint of the BMC's certificate (to keep on first use).
    pub fingerprint: [u8; 32],
}

/// A reply: its head and body.
struct Reply {
    head: Head,
    body: Vec<u8>,
}

/// How requests authenticate.
enum Auth {
    None,
    Basic(String),
    Token(String),
}

/// One BMC, reached over HTTPS with one pinned certificate.
struct Bmc<'a> {
    access: &'a BmcAccess,
    timeout: Duration,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    pin: Arc<Pinned>,
    expected: Option<[u8; 32]>,
}

impl Bmc<'_> {
    fn io(&self, e: std::io::Error) -> RedfishError {
        match e.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => RedfishError::Timeout(self.timeout),
            _ => RedfishError::Io(e.to_string()),
        }
    }

    fn connect(
        &self,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, RedfishError> {
        let addr = (self.access.host.as_str(), self.access.port)
            .to_socket_addrs()
            .map_err(|e| RedfishError::Unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| RedfishError::Unreachable("no address".into()))?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| {
            if e.kind() == ErrorKind::TimedOut {
                RedfishError::Timeout(self.timeout)
            } else {
                RedfishError::Unreachable(e.to_string())
            }
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.io(e))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| RedfishError::Tls(e.into()))?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        // The handshake before any byte of the request, so that a refused certificate is
        // told as such and no credentials reach the wrong server.
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(match (self.expected, self.pin.seen()) {
                    (Some(want), Some(got)) if want != got => RedfishError::Certificate {
                        seen: format_fingerprint(&got),
                        pinned: format_fingerprint(&want),
                    },
                    _ => self.io(e),
                });
            }
        }
        Ok(tls)
    }

    fn request(
        &self,
        method: &'static str,
        path: &str,
        auth: &Auth,
        body: Option<&str>,
    ) -> Result<Reply, RedfishError> {
        let mut stream = self.connect()?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drover\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.access.address()
        );
        match auth {
            Auth::None => {}
            Auth::Basic(b) => req.push_str(&format!("Authorization: Basic {b}\r\n")),
            Auth::Token(t) => req.push_str(&format!("X-Auth-Token: {t}\r\n")),
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        stream.write_all(req.as_bytes()).map_err(|e| self.io(e))?;
        let mut buf = Vec::new();
        // A BMC may close without TLS close_notify after a `Connection: close` reply; what
        // arrived is then judged by its Content-Length below.
        if let Err(e) = (&mut stream).take(MAX_REPLY).read_to_end(&mut buf) {
            if e.kind() != ErrorKind::UnexpectedEof {
                return Err(self.io(e));
            }
        }
        let (head, start) = parse_head(&buf)?.ok_or(HttpError::ClosedInHead)?;
        if let Some(te) = &head.transfer_encoding {
            return Err(HttpError::TransferEncoding(te.clone()).into());
        }
        let mut body = buf.split_off(start);
        if let Some(n) = head.content_length {
            if (body.len() as u64) < n {
                return Err(HttpError::Malformed("reply shorter than its Content-Length").into());
            }
            body.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Ok(Reply { head, body })
    }

    /// A request whose reply must be 2xx; 401 and 403 are authentication failures.
    fn expect(
        &self,
        method: &'static str,
        path: &str,
        auth: &Auth,
        body: Option<&str>,
    ) -> Result<Vec<u8>, RedfishError> {
        let reply = self.request(method, path, auth, body)?;
        check(method, path, reply).map(|r| r.body)
    }
}

fn check(method: &'static str, path: &str, reply: Reply) -> Result<Reply, RedfishError> {
    let status = reply.head.status;
    if (200..300).contains(&status) {
        return Ok(reply);
    }
    let message = core::error_message(&reply.body).unwrap_or_else(|| reply.head.reason.clone());
    Err(match status {
        401 | 403 => RedfishError::Authentication(format!("{status}: {message}")),
        _ => RedfishError::Refused {
            method,
            path: path.to_string(),
            status,
            message,
        },
    })
}

fn parsed<T>(path: &str, r: Result<T, ReplyError>) -> Result<T, RedfishError> {
    r.map_err(|source| RedfishError::Reply {
        path: path.to_string(),
        source,
    })
}

/// Whether the BMC answers Redfish's service root (for `--bmc-protocol auto`), and the
/// fingerprint of its certificate.
pub fn probe(
    access: &BmcAccess,
    pin: Option<[u8; 32]>,
    timeout: Duration,
) -> Result<[u8; 32], RedfishError> {
    let bmc = open(access, pin, timeout)?;
    let root = bmc.expect("GET", core::SERVICE_ROOT, &Auth::None, None)?;
    parsed(core::SERVICE_ROOT, core::systems_link(&root))?;
    fingerprint(&bmc)
}

fn open(
    access: &BmcAccess,
    pin: Option<[u8; 32]>,
    timeout: Duration,
) -> Result<Bmc<'_>, RedfishError> {
    let verifier = Pinned::new(pin);
    let name = ServerName::try_from(access.host.clone())
        .map_err(|_| RedfishError::Unreachable(format!("{:?} is not a host name", access.host)))?;
    Ok(Bmc {
        access,
        timeout,
        config: client_config(verifier.clone())?,
        name,
        pin: verifier,
        expected: pin,
    })
}

fn fingerprint(bmc: &Bmc<'_>) -> Result<[u8; 32], RedfishError> {
    bmc.pin
        .seen()
        .ok_or_else(|| RedfishError::Io("no certificate in the handshake".into()))
}

/// Does `op` on the first ComputerSystem of the BMC at `access`, trusting the certificate
/// with fingerprint `pin` (or, `None`, the one it presents: see the module docs).
pub fn run(
    access: &BmcAccess,
    pin: Option<[u8; 32]>,
    op: Op,
    timeout: Duration,
) -> Result<Done, RedfishError> {
    let ((text, power), seen) = with_session(access, pin, timeout, |bmc, auth, root| {
        let systems = parsed(core::SERVICE_ROOT, core::systems_link(root))?;
        act(bmc, auth, &systems, op)
    })?;
    Ok(Done {
        text,
        power,
        fingerprint: seen,
    })
}

/// The sensors of the BMC's first chassis (`Thermal`, and `Power` where it has one).
pub fn sensors(
    access: &BmcAccess,
    pin: Option<[u8; 32]>,
    timeout: Duration,
) -> Result<Vec<SensorValue>, RedfishError> {
    let (rows, _) = with_session(access, pin, timeout, |bmc, auth, root| {
        let chassis = parsed(core::SERVICE_ROOT, health::link(root, "Chassis"))?;
        let first = first_of(bmc, auth, &chassis)?;
        let body = bmc.expect("GET", &first, auth, None)?;
        let mut rows = Vec::new();
        if let Some(path) = parsed(&first, health::maybe_link(&body, "Thermal"))? {
            let thermal = bmc.expect("GET", &path, auth, None)?;
            rows.extend(parsed(&path, health::thermal(&thermal))?);
        }
        if let Some(path) = parsed(&first, health::maybe_link(&body, "Power"))? {
            let power = bmc.expect("GET", &path, auth, None)?;
            rows.extend(parsed(&path, health::power(&power))?);
        }
        Ok(rows)
    })?;
    Ok(rows)
}

/// The entries of the first manager's event log (its `SEL` log service, else its first).
pub fn sel(
    access: &BmcAccess,
    pin: Option<[u8; 32]>,
    timeout: Duration,
) -> Result<Vec<SelEntry>, RedfishError> {
    let (entries, _) = with_session(access, pin, timeout, |bmc, auth, root| {
        let managers = parsed(core::SERVICE_ROOT, health::link(root, "Managers"))?;
        let first = first_of(bmc, auth, &managers)?;
        let manager = bmc.expect("GET", &first, auth, None)?;
        let services = parsed(&first, health::link(&manager, "LogServices"))?;
        let list = bmc.expect("GET", &services, auth, None)?;
        let service = parsed(&services, health::sel_service(&list))?;
        let body = bmc.expect("GET", &service, auth, None)?;
        let path = parsed(&service, health::link(&body, "Entries"))?;
        let body = bmc.expect("GET", &path, auth, None)?;
        parsed(&path, health::entries(&body))
    })?;
    Ok(entries)
}

/// The first member of the collection at `path`.
fn first_of(bmc: &Bmc<'_>, auth: &Auth, path: &str) -> Result<String, RedfishError> {
    let collection = bmc.expect("GET", path, auth, None)?;
    parsed(path, core::first_member(&collection))
}

/// Runs `f` with the service root in one authenticated session (logged out afterwards), and
/// returns its result and the fingerprint the run trusted.
fn with_session<T>(
    access: &BmcAccess,
    pin: Option<[u8; 32]>,
    timeout: Duration,
    f: impl FnOnce(&Bmc<'_>, &Auth, &[u8]) -> Result<T, RedfishError>,
) -> Result<(T, [u8; 32]), RedfishError> {
    let first = open(access, pin, timeout)?;
    let root = first.expect("GET", core::SERVICE_ROOT, &Auth::None, None)?;
    // Every later request trusts only the certificate of this first handshake.
    let seen = fingerprint(&first)?;
    let bmc = open(access, Some(seen), timeout)?;
    let basic = core::basic_credentials(&access.user, access.password.expose());
    let login = core::session_body(&access.user, access.password.expose());
    let reply = bmc.request(
        "POST",
        core::SESSIONS,
        &Auth::Basic(basic.clone()),
        Some(&login),
    )?;
    let (auth, session) = match reply.head.status {
        404 | 405 => (Auth::Basic(basic), None),
        _ => {
            let reply = check("POST", core::SESSIONS, reply)?;
            let token = reply
                .head
                .header("X-Auth-Token")
                .ok_or(RedfishError::Reply {
                    path: core::SESSIONS.into(),
                    source: ReplyError::Missing("X-Auth-Token header"),
                })?
                .to_string();
            let path = core::session_path(reply.head.header("Location"), &reply.body);
            (Auth::Token(token), path)
        }
    };
    let result = f(&bmc, &auth, &root);
    if let Some(path) = session {
        // A session not deleted times out on the BMC by itself; the action's result
        // matters more than the logout's.
        if let Err(e) = bmc.expect("DELETE", &path, &auth, None) {
            tracing::debug!(bmc = %access.address(), error = %e, "Redfish logout failed");
        }
    }
    result.map(|t| (t, seen))
}

/// The action itself, once authenticated: `(text, power state if read)`.
fn act(
    bmc: &Bmc<'_>,
    auth: &Auth,
    systems: &str,
    op: Op,
) -> Result<(String, Option<bool>), RedfishError> {
    let collection = bmc.expect("GET", systems, auth, None)?;
    let path = parsed(systems, core::first_member(&collection))?;
    let body = bmc.expect("GET", &path, auth, None)?;
    let system = parsed(&path, core::parse_system(&body))?;
    if let Op::Boot(target) = op {
        bmc.expect("PATCH", &path, auth, Some(&core::boot_body(target)))?;
        return Ok((format!("next boot: {}", target.as_str()), None));
    }
    match parsed(&path, core::reset_type(op, &system))? {
        None => Ok((
            if system.power { "on" } else { "off" }.into(),
            Some(system.power),
        )),
        Some(kind) => {
            let target = system.reset_target;
            bmc.expect("POST", &target, auth, Some(&core::reset_body(kind)))?;
            Ok((format!("{kind} sent"), None))
        }
    }
}
