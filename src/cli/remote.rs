//! The remote back end: `drover --server URL --token TOKEN node list` and every other command
//! that has an API endpoint go through `/api/v1` instead of the local store. The API's JSON
//! is read into the same types the local back end returns, so the printer cannot tell them
//! apart.
//!
//! One blocking HTTP/1.1 request per call (`Connection: close`), bearer token, JSON or CSV
//! body; the response head is parsed by the agent's sans-IO parser; a non-2xx answer becomes a
//! [`RemoteError::Api`] carrying the API's message (which names the bad field).
//!
//! `https://` URLs speak TLS (rustls) and trust the server by the SHA-256 fingerprint of its
//! certificate, from `--fingerprint`, the user's known-servers file, or trust on first use
//! (`super::trust`); no CA is consulted.
//!
//! Not here: redirects, chunked responses (the API sends lengths), the commands without an API
//! counterpart (`super::run` refuses them by name: they need the appliance's own files).

use super::args::{NodeSetArgs, PowerAction, PowerArgs};
use super::print::{PowerRow, TokenInfo, UserInfo};
use super::{trust, Backend};
use crate::admin::{self, GroupInfo, NodeDetail};
use crate::agent::http::{parse_head, HttpError};
use crate::discover::adopt::{DiscoveredList, RuleAdded, DISCOVERY_IMAGE};
use crate::discover::rule::NamingRule;
use crate::files::core::{Assignment, FileSet, SetFile};
use crate::image::usage::{HistoryEntry, StoreTotals};
use crate::store::model::{
    BootEvent, Export, Group, Image, Ipv4Net, Lease, Mac, Network, Node, Role,
};
use anyhow::{bail, Context};
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Connect, read and write timeout of a request.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted.
const MAX_RESPONSE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0:?} is not a server URL: expected http://HOST[:PORT] or https://HOST[:PORT]")]
    BadUrl(String),
    #[error(transparent)]
    Trust(#[from] super::trust::TrustError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error(
        "{server}: the certificate is not the trusted one ({source}); if it was renewed \
             on purpose, remove its line from {file} or pass --fingerprint"
    )]
    Untrusted {
        server: String,
        file: String,
        source: std::io::Error,
    },
    #[error("cannot reach {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("talking to {server}: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("{server} answered with a malformed response: {0}", server = .1)]
    Malformed(HttpError, String),
    #[error("{server}: {status}: {message}")]
    Api {
        server: String,
        status: u16,
        message: String,
    },
}

/// A remote drover and the token to act with.
pub struct Remote {
    url: String,
    host: String,
    addr: SocketAddr,
    token: String,
    /// For `https://`: the client configuration (trusting one fingerprint) and the name sent.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// A byte stream to the server: TCP, or TLS over TCP.
pub trait Conn: Read + Write {
    /// The TCP connection underneath (for its timeouts).
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A WebSocket to the server (`drover console --server`).
pub type Socket = tungstenite::WebSocket<Box<dyn Conn>>;

impl Remote {
    /// A remote at `url`; for `https://`, trusting the certificate with `fingerprint` (or
    /// the one known for this server, or the one it presents now: see `super::trust`).
    pub fn new(url: &str, token: &str, fingerprint: Option<&str>) -> Result<Remote, RemoteError> {
        let bad = || RemoteError::BadUrl(url.to_string());
        let (rest, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(bad()),
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        let (name, with_port) = match host.rsplit_once(':') {
            Some((name, p)) if p.parse::<u16>().is_ok() => (name, host.to_string()),
            _ => (host, format!("{host}:{}", if https { 443 } else { 80 })),
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|source| RemoteError::Connect {
                server: url.to_string(),
                source,
            })?
            .next()
            .ok_or_else(bad)?;
        let mut remote = Remote {
            url: url.trim_end_matches('/').to_string(),
            host: host.to_string(),
            addr,
            token: token.to_string(),
            tls: None,
        };
        if https {
            let server_name = ServerName::try_from(name.to_string()).map_err(|_| bad())?;
            remote.trust(&format!("https://{with_port}"), server_name, fingerprint)?;
        }
        Ok(remote)
    }

    /// Chooses the fingerprint to pin (see `super::trust`); on first use, learns it from a
    /// handshake and keeps it.
    fn trust(
        &mut self,
        key: &str,
        name: ServerName<'static>,
        fingerprint: Option<&str>,
    ) -> Result<(), RemoteError> {
        let pin = match fingerprint {
            Some(text) => Some(trust::parse_pin(text)?),
            None => trust::known(key)?,
        };
        let pinned = match pin {
            Some(fp) => fp,
            None => {
                let probe = crate::tls::Pinned::new(None);
                self.tls = Some((crate::tls::client_config(probe.clone())?, name.clone()));
                let mut conn = self.connect()?;
                conn.flush().map_err(|source| self.io(source))?;
                let fp = probe.seen().ok_or_else(|| {
                    self.io(std::io::Error::other("no certificate in the handshake"))
                })?;
                let file = trust::remember(key, &fp)?;
                eprintln!(
                    "trusting {key} on first use: certificate SHA-256 {} (kept in {}); compare \
                     it with `drover tls show` on the appliance",
                    crate::tls::format_fingerprint(&fp),
                    file.display()
                );
                fp
            }
        };
        let verifier = crate::tls::Pinned::new(Some(pinned));
        self.tls = Some((crate::tls::client_config(verifier)?, name));
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> RemoteError {
        RemoteError::Io {
            server: self.url.clone(),
            source,
        }
    }

    /// A connection to the server, TLS handshake done where the URL says `https://`.
    fn connect(&self) -> Result<Box<dyn Conn>, RemoteError> {
        let stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).map_err(|source| {
            RemoteError::Connect {
                server: self.url.clone(),
                source,
            }
        })?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(|source| self.io(source))?;
        let Some((config, name)) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let conn = rustls::ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| RemoteError::Tls(e.into()))?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        // The handshake now, so that a refused certificate is told as such.
        while tls.conn.is_handshaking() {
            if let Err(source) = tls.conn.complete_io(&mut tls.sock) {
                let refused = source.kind() == std::io::ErrorKind::InvalidData;
                return Err(match (refused, trust::known_servers_file()) {
                    (true, Ok(file)) => RemoteError::Untrusted {
                        server: self.url.clone(),
                        file: file.display().to_string(),
                        source,
                    },
                    _ => self.io(source),
                });
            }
        }
        Ok(Box::new(tls))
    }

    /// A WebSocket on `GET /api/v1PATH`, with the bearer token; reads on it then wait at
    /// most `read_wait` (a timed-out read is an `Io` error of kind `WouldBlock`/`TimedOut`,
    /// after which the socket goes on).
    pub fn websocket(&self, path: &str, read_wait: Duration) -> Result<Socket, RemoteError> {
        use tungstenite::client::IntoClientRequest;
        use tungstenite::handshake::HandshakeError;
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{}/api/v1{path}", self.host);
        let malformed = |what: String| RemoteError::Io {
            server: self.url.clone(),
            source: std::io::Error::other(what),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| malformed(format!("WebSocket request: {e}")))?;
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| malformed("the token is not a header value".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let conn = self.connect()?;
        let socket = match tungstenite::client::client(request, conn) {
            Ok((socket, _)) => socket,
            Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let body: Value = resp
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                let message = body
                    .get("error")
                    .and_then(Value::as_str)
                    .map_or_else(|| resp.status().to_string(), str::to_string);
                return Err(RemoteError::Api {
                    server: self.url.clone(),
                    status,
                    message,
                });
            }
            Err(HandshakeError::Failure(e)) => {
                return Err(malformed(format!("WebSocket handshake: {e}")))
            }
            // A blocking stream with a 30 s timeout: the handshake took longer.
            Err(HandshakeError::Interrupted(_)) => {
                return Err(malformed("WebSocket handshake timed out".into()))
            }
        };
        socket
            .get_ref()
            .tcp()
            .set_read_timeout(Some(read_wait))
            .map_err(|source| self.io(source))?;
        Ok(socket)
    }

    /// `METHOD /api/v1PATH` with an optional `(content type, body)`; the JSON answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Value, RemoteError> {
        let io = |source| self.io(source);
        let mut stream = self.connect()?;
        let mut req = format!(
            "{method} /api/v1{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drover-cli\r\n\
             Authorization: Bearer {}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.host, self.token
        );
        let payload = body.map_or(&[][..], |(_, b)| b);
        if let Some((kind, b)) = body {
            req.push_str(&format!(
                "Content-Type: {kind}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).map_err(io)?;
        stream.write_all(payload).map_err(io)?;
        let mut buf = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut buf)
            .map_err(io)?;
        let malformed = |e| RemoteError::Malformed(e, self.url.clone());
        let (head, start) = parse_head(&buf)
            .map_err(malformed)?
            .ok_or(malformed(HttpError::ClosedInHead))?;
        if head.transfer_encoding.is_some() {
            return Err(malformed(HttpError::TransferEncoding(
                head.transfer_encoding.unwrap_or_default(),
            )));
        }
        let body = &buf[start..];
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if !(200..300).contains(&head.status) {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| head.reason.clone(), str::to_string);
            return Err(RemoteError::Api {
                server: self.url.clone(),
                status: head.status,
                message,
            });
        }
        Ok(value)
    }

    /// Every item of a paged list endpoint (`{"items": [...], "total": N}`).
    pub fn list(&self, path: &str) -> Result<Vec<Value>, RemoteError> {
        let mut items = Vec::new();
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = self.call(
                "GET",
                &format!("{path}{sep}limit=1000&offset={}", items.len()),
                None,
            )?;
            let got: Vec<Value> = page
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = page.get("total").and_then(Value::as_u64).unwrap_or(0);
            let done = got.is_empty();
            items.extend(got);
            if done || items.len() as u64 >= total {
                return Ok(items);
            }
        }
    }
}

/// The API's answer as `T`, or an error naming what was malformed.
fn decode<T: DeserializeOwned>(what: &str, v: Value) -> anyhow::Result<T> {
    serde_json::from_value(v).with_context(|| format!("the server sent a malformed {what}"))
}

/// A path segment, percent-encoded beyond the unreserved characters.
fn segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A network as the API shows it: the range as `FIRST-LAST`.
#[derive(serde::Deserialize)]
struct NetworkView {
    name: String,
    subnet: Ipv4Net,
    range: Option<String>,
    gateway: Option<std::net::Ipv4Addr>,
    domain: Option<String>,
}

impl Remote {
    /// `POST /pool/members/ID/ACTION`, answered with the member's id.
    fn member_action(&self, id: &str, action: &str) -> anyhow::Result<u64> {
        let path = format!("/pool/members/{}/{action}", segment(id));
        let v = self.call("POST", &path, None)?;
        let id = v["id"].as_str().unwrap_or_default();
        u64::from_str_radix(id, 16).with_context(|| format!("the server answered id {id:?}"))
    }

    fn json_call(&self, method: &str, path: &str, body: &Value) -> Result<Value, RemoteError> {
        self.call(
            method,
            path,
            Some(("application/json", body.to_string().as_bytes())),
        )
    }

    fn list_of<T: DeserializeOwned>(&self, what: &str, path: &str) -> anyhow::Result<Vec<T>> {
        self.list(path)?
            .into_iter()
            .map(|v| decode(what, v))
            .collect()
    }

    fn delete(&self, kind: &str, name: &str) -> anyhow::Result<()> {
        self.call("DELETE", &format!("/{kind}/{}", segment(name)), None)?;
        Ok(())
    }
}

impl Backend for Remote {
    fn nodes(&self) -> anyhow::Result<Vec<Node>> {
        self.list_of("node", "/nodes")
    }

    fn node(&self, name: &str) -> anyhow::Result<(Node, NodeDetail)> {
        let v = self.call("GET", &format!("/nodes/{}", segment(name)), None)?;
        Ok((decode("node", v.clone())?, decode("node", v)?))
    }

    fn add_node(&self, node: &Node) -> anyhow::Result<()> {
        self.json_call("POST", "/nodes", &serde_json::to_value(node)?)?;
        Ok(())
    }

    fn set_node(&self, name: &str, change: &NodeSetArgs) -> anyhow::Result<Node> {
        if change.bmc.given() {
            bail!(
                "`drover node set --bmc...` has no API endpoint (BMC passwords do not cross                  it): it works only on the appliance itself; run it there without --server"
            );
        }
        let c = change.change();
        let mut body = serde_json::Map::new();
        if let Some(mac) = c.mac {
            body.insert("mac".into(), json!(mac));
        }
        if let Some(ip) = c.ip {
            body.insert("ip".into(), json!(ip));
        }
        if let Some(image) = c.image {
            body.insert("image".into(), json!(image));
        }
        if let Some(group) = c.group {
            body.insert("group".into(), json!(group));
        }
        if let Some(aliases) = c.aliases {
            body.insert("aliases".into(), json!(aliases));
        }
        if let Some(root) = c.root {
            body.insert("root".into(), json!(root));
        }
        if let Some(version) = c.image_version {
            body.insert("image_version".into(), json!(version));
        }
        if let Some(service) = c.service {
            body.insert("service".into(), json!(service));
        }
        let v = self.json_call(
            "PATCH",
            &format!("/nodes/{}", segment(name)),
            &Value::Object(body),
        )?;
        decode("node", v)
    }

    fn remove_node(&self, name: &str) -> anyhow::Result<()> {
        self.delete("nodes", name)
    }

    fn import_nodes(&self, file: &std::path::Path) -> anyhow::Result<usize> {
        let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let v = self.call("POST", "/nodes/import", Some(("text/csv", &text)))?;
        decode("import answer", v["imported"].clone())
    }

    fn node_events(&self, name: &str) -> anyhow::Result<Vec<BootEvent>> {
        let v = self.call("GET", &format!("/nodes/{}/events", segment(name)), None)?;
        decode("boot timeline", v["events"].clone())
    }

    fn groups(&self) -> anyhow::Result<Vec<GroupInfo>> {
        self.list_of("group", "/groups")
    }

    fn put_group(&self, group: &Group) -> anyhow::Result<()> {
        let mut body = serde_json::Map::new();
        if let Some(image) = &group.image {
            body.insert("image".into(), json!(image));
        }
        if let Some(version) = group.image_version {
            body.insert("image_version".into(), json!(version));
        }
        self.json_call(
            "PUT",
            &format!("/groups/{}", segment(&group.name)),
            &Value::Object(body),
        )?;
        Ok(())
    }

    fn remove_group(&self, name: &str) -> anyhow::Result<()> {
        self.delete("groups", name)
    }

    fn images(&self) -> anyhow::Result<Vec<Image>> {
        self.list_of("image", "/images")
    }

    fn set_image(&self, name: &str, change: &admin::ImageChange) -> anyhow::Result<Image> {
        let mut body = serde_json::Map::new();
        if let Some(c) = &change.cmdline {
            body.insert("cmdline".into(), json!(c));
        }
        if let Some(r) = change.root {
            body.insert("root".into(), json!(r));
        }
        if let Some(p) = &change.persistent {
            body.insert("persistent".into(), json!(p));
        }
        let v = self.json_call(
            "PATCH",
            &format!("/images/{}", segment(name)),
            &Value::Object(body),
        )?;
        decode("image", v)
    }

    fn image_history(&self, name: &str) -> anyhow::Result<Vec<HistoryEntry>> {
        let path = format!("/images/{}/history", segment(name));
        decode("image history", self.call("GET", &path, None)?)
    }

    fn image_store(&self) -> anyhow::Result<StoreTotals> {
        decode("image store", self.call("GET", "/image-store", None)?)
    }

    fn rollback_image(&self, name: &str, version: u32) -> anyhow::Result<u32> {
        let path = format!("/images/{}/rollback", segment(name));
        let v = self.json_call("POST", &path, &json!({ "version": version }))?;
        decode("image version", v["version"].clone())
    }

    fn remove_image(&self, name: &str) -> anyhow::Result<()> {
        self.delete("images", name)
    }

    fn networks(&self) -> anyhow::Result<Vec<Network>> {
        let views: Vec<NetworkView> = self.list_of("network", "/networks")?;
        views
            .into_iter()
            .map(|n| {
                let range = n
                    .range
                    .map(|r| super::args::parse_range(&r))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("the server sent a malformed network: {e}"))?;
                Ok(Network {
                    name: n.name,
                    subnet: n.subnet,
                    range,
                    gateway: n.gateway,
                    domain: n.domain,
                })
            })
            .collect()
    }

    fn add_network(&self, n: &Network) -> anyhow::Result<()> {
        let body = json!({"name": n.name, "subnet": n.subnet,
                          "range": n.range.map(|(a, b)| format!("{a}-{b}")),
                          "gateway": n.gateway, "domain": n.domain});
        self.json_call("POST", "/networks", &body)?;
        Ok(())
    }

    fn remove_network(&self, name: &str) -> anyhow::Result<()> {
        self.delete("networks", name)
    }

    fn leases(&self) -> anyhow::Result<Vec<Lease>> {
        self.list_of("lease", "/leases")
    }

    fn exports(&self) -> anyhow::Result<Vec<Export>> {
        self.list_of("export", "/exports")
    }

    fn add_export(&self, export: &Export) -> anyhow::Result<Export> {
        let v = self.json_call("POST", "/exports", &serde_json::to_value(export)?)?;
        decode("export", v)
    }

    fn remove_export(&self, name: &str) -> anyhow::Result<()> {
        self.delete("exports", name)
    }

    fn tokens(&self) -> anyhow::Result<Vec<TokenInfo>> {
        self.list_of("token", "/tokens")
    }

    fn create_token(&self, name: &str, role: Role) -> anyhow::Result<String> {
        let body = json!({ "name": name, "role": role });
        let v = self.json_call("POST", "/tokens", &body)?;
        decode("token", v["token"].clone())
    }

    fn users(&self) -> anyhow::Result<Vec<UserInfo>> {
        self.list_of("user", "/users")
    }

    fn audit(&self, since: u64) -> anyhow::Result<Vec<crate::store::model::AuditEntry>> {
        self.list_of("audit entry", &format!("/audit?since={since}"))
    }

    fn add_user(&self, name: &str, password: &str, role: Role) -> anyhow::Result<()> {
        let body = json!({ "name": name, "password": password, "role": role });
        self.json_call("POST", "/users", &body)?;
        Ok(())
    }

    fn set_role(&self, name: &str, role: Role) -> anyhow::Result<()> {
        let path = format!("/users/{}", segment(name));
        self.json_call("PATCH", &path, &json!({ "role": role }))?;
        Ok(())
    }

    fn remove_token(&self, name: &str) -> anyhow::Result<()> {
        self.delete("tokens", name)
    }

    fn power(&self, args: &PowerArgs) -> anyhow::Result<Vec<PowerRow>> {
        if args.config.is_some() || args.parallel.is_some() || args.rate.is_some() {
            bail!(
                "--config, --parallel and --rate apply to local runs only: through --server                  the server's [power] settings apply"
            );
        }
        let (action, device, targets) = match &args.action {
            PowerAction::On(t) => ("on", None, t),
            PowerAction::Off(t) => ("off", None, t),
            PowerAction::Soft(t) => ("soft", None, t),
            PowerAction::Cycle(t) => ("cycle", None, t),
            PowerAction::Reset(t) => ("reset", None, t),
            PowerAction::Status(t) => ("status", None, t),
            PowerAction::Bootdev { device, targets } => (
                "bootdev",
                Some(match device {
                    super::args::BootDev::Pxe => "pxe",
                    super::args::BootDev::Disk => "disk",
                }),
                targets,
            ),
        };
        let mut body = json!({"action": action, "targets": targets.targets});
        if let Some(d) = device {
            body["device"] = json!(d);
        }
        let v = self.json_call("POST", "/power", &body)?;
        #[derive(serde::Deserialize)]
        struct Result {
            node: String,
            bmc: String,
            ok: bool,
            text: Option<String>,
            class: Option<String>,
            reason: Option<String>,
        }
        let results: Vec<Result> = decode("power answer", v["results"].clone())?;
        Ok(results
            .into_iter()
            .map(|r| PowerRow {
                node: r.node,
                bmc: r.bmc,
                result: if r.ok {
                    "ok".into()
                } else {
                    r.class.unwrap_or_default()
                },
                detail: if r.ok {
                    r.text.unwrap_or_default()
                } else {
                    r.reason.unwrap_or_default()
                },
            })
            .collect())
    }

    fn pool_status(&self) -> anyhow::Result<crate::pool::status::Status> {
        decode("pool status", self.call("GET", "/pool", None)?)
    }

    fn mark_dead(&self, id: &str) -> anyhow::Result<u64> {
        self.member_action(id, "mark-dead")
    }

    fn drain(&self, id: &str, drained: bool) -> anyhow::Result<u64> {
        self.member_action(id, if drained { "drain" } else { "undrain" })
    }

    fn discovered(&self, all: bool) -> anyhow::Result<DiscoveredList> {
        let v = self.call("GET", &format!("/discovered?all={all}"), None)?;
        decode("discovered list", v)
    }

    fn adopt(
        &self,
        mac: Mac,
        name: &str,
        image: Option<&str>,
        group: Option<&str>,
    ) -> anyhow::Result<Node> {
        let body = json!({ "name": name, "image": image, "group": group });
        let v = self.json_call("POST", &format!("/discovered/{mac}/adopt"), &body)?;
        decode("node", v)
    }

    fn set_discovery_image(&self, image: Option<&str>) -> anyhow::Result<()> {
        let path = format!("/settings/{}", DISCOVERY_IMAGE);
        match image {
            Some(i) => {
                // Refuses an unknown image (404) before turning discovery on.
                self.call("GET", &format!("/images/{}", segment(i)), None)?;
                self.json_call("PUT", &path, &json!({ "value": i }))?;
            }
            None => match self.call("DELETE", &path, None) {
                Ok(_) => {}
                // Already off.
                Err(RemoteError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    fn rules(&self) -> anyhow::Result<Vec<NamingRule>> {
        self.list_of("rule", "/rules")
    }

    fn add_rule(&self, rule: &NamingRule) -> anyhow::Result<RuleAdded> {
        let v = self.json_call("POST", "/rules", &serde_json::to_value(rule)?)?;
        decode("rule", v)
    }

    fn remove_rule(&self, rule: &str) -> anyhow::Result<()> {
        self.delete("rules", rule)
    }

    fn file_sets(&self) -> anyhow::Result<Vec<FileSet>> {
        self.list_of("file set", "/files")
    }

    fn file_set(&self, name: &str) -> anyhow::Result<FileSet> {
        decode(
            "file set",
            self.call("GET", &format!("/files/{}", segment(name)), None)?,
        )
    }

    fn add_set_file(&self, set: &str, file: &SetFile) -> anyhow::Result<FileSet> {
        let path = format!("/files/{}", segment(set));
        decode(
            "file set",
            self.json_call("POST", &path, &serde_json::to_value(file)?)?,
        )
    }

    fn remove_set(&self, set: &str, path: Option<&str>) -> anyhow::Result<()> {
        let query = path.map_or(String::new(), |p| format!("?path={}", segment(p)));
        self.call("DELETE", &format!("/files/{}{query}", segment(set)), None)?;
        Ok(())
    }

    fn assign_set(&self, set: &str, to: &Assignment, on: bool) -> anyhow::Result<FileSet> {
        let verb = if on { "assign" } else { "unassign" };
        let path = format!("/files/{}/{verb}", segment(set));
        decode(
            "file set",
            self.json_call("POST", &path, &serde_json::to_value(to)?)?,
        )
    }

    fn config_show(&self) -> anyhow::Result<crate::overrides::Shown> {
        decode("settings", self.call("GET", "/config", None)?)
    }

    fn config_change(
        &self,
        changes: &[crate::overrides::Change],
    ) -> anyhow::Result<Vec<crate::overrides::Outcome>> {
        let v = self.json_call("POST", "/config", &json!({ "changes": changes }))?;
        decode("settings change", v["outcomes"].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Remote::new("http://127.0.0.1:8080/", "t", None).unwrap();
        assert_eq!(r.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r.host, "127.0.0.1:8080");
        let r = Remote::new("http://127.0.0.1", "t", None).unwrap();
        assert_eq!(r.addr.port(), 80);
        let pin = crate::tls::format_fingerprint(&[7; 32]);
        let r = Remote::new("https://127.0.0.1", "t", Some(&pin)).unwrap();
        assert_eq!(r.addr.port(), 443);
        assert!(r.tls.is_some());
        assert!(Remote::new("https://127.0.0.1", "t", Some("abc")).is_err());
        for bad in ["127.0.0.1", "ftp://x", "http://", "http://a/b"] {
            assert!(Remote::new(bad, "t", None).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("node-01.a_b~"), "node-01.a_b~");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
