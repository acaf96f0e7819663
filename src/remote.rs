//! The CLI's client for a remote drover: `drover --server URL --token TOKEN node list` and the
//! other admin commands that have an API counterpart go through `/api/v1` instead of the local
//! store.
//!
//! One blocking HTTP/1.1 request per call (`Connection: close`), bearer token, JSON or CSV
//! body; the response head is parsed by the agent's sans-IO parser; a non-2xx answer becomes a
//! [`RemoteError::Api`] carrying the API's message (which names the bad field).
//!
//! Not here: TLS (put the API behind a TLS proxy and reach it over a management network),
//! redirects, chunked responses (the API sends lengths), the commands without an API
//! counterpart (image add, dns check, pool, serve: they need the appliance's own files).

use crate::agent::http::{parse_head, HttpError};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect, read and write timeout of a request.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted.
const MAX_RESPONSE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0:?} is not a server URL: expected http://HOST[:PORT]")]
    BadUrl(String),
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
}

impl Remote {
    pub fn new(url: &str, token: &str) -> Result<Remote, RemoteError> {
        let bad = || RemoteError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|source| RemoteError::Connect {
                server: url.to_string(),
                source,
            })?
            .next()
            .ok_or_else(bad)?;
        Ok(Remote {
            url: url.trim_end_matches('/').to_string(),
            host: host.to_string(),
            addr,
            token: token.to_string(),
        })
    }

    /// `METHOD /api/v1PATH` with an optional `(content type, body)`; the JSON answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Value, RemoteError> {
        let io = |source| RemoteError::Io {
            server: self.url.clone(),
            source,
        };
        let mut stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).map_err(|source| {
            RemoteError::Connect {
                server: self.url.clone(),
                source,
            }
        })?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Remote::new("http://127.0.0.1:8080/", "t").unwrap();
        assert_eq!(r.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r.host, "127.0.0.1:8080");
        let r = Remote::new("http://127.0.0.1", "t").unwrap();
        assert_eq!(r.addr.port(), 80);
        for bad in ["127.0.0.1", "https://x", "http://", "http://a/b"] {
            assert!(Remote::new(bad, "t").is_err(), "{bad}");
        }
    }
}
