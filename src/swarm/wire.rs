//! The messages of the swarm (sans-IO): the agent's announce and report bodies to a member,
//! the member's answer, and the one request a node's seeder understands.
//!
//! - `POST /boot/{mac}/swarm` with [`Announce`] `{"blob": HEX, "port": N}`: the node holds
//!   (or is fetching) blob HEX and serves its chunks on port N; the answer is [`PeerList`]
//!   `{"peers": ["IP:PORT", ...]}`.
//! - `POST /boot/{mac}/swarm/report` with [`Report`]: the bytes the node got from members and
//!   from peers for one blob; answered 204.
//! - A seeder accepts `GET /chunks/{64 hex} HTTP/1.x` and nothing else ([`parse_request`]).
//!
//! Not here: the member's routes and checks (`crate::http::serve`), the agent's client.

use crate::image::chunk::{self, ChunkId};
use std::net::SocketAddrV4;

/// The header that names the blob a manifest describes (lower case, as `HeaderName` wants).
pub const BLOB_HEADER: &str = "x-drover-blob";
/// Largest announce or report body a member accepts.
pub const MAX_BODY: usize = 512;
/// Largest peer list body the agent accepts (8 peers fit many times over).
pub const MAX_PEER_LIST: u64 = 4096;
/// Largest request head a seeder reads.
pub const MAX_REQUEST: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// The rootfs blob id (64 hex digits).
    pub blob: String,
    /// The port of the node's seeder.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerList {
    pub peers: Vec<SocketAddrV4>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Bytes of verified chunks from pool members.
    pub members: u64,
    /// Bytes of verified chunks from peer nodes.
    pub peers: u64,
    /// Chunks that a peer sent wrong (banned peers) or did not deliver.
    #[serde(default)]
    pub retries: u64,
}

/// Why a body is refused (the member answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("bad body: {0}")]
    Json(String),
    #[error("blob is not 64 hex digits")]
    Blob,
    #[error("port 0")]
    Port,
}

impl Announce {
    /// Decodes and checks an announce body.
    pub fn parse(body: &[u8]) -> Result<Announce, BodyError> {
        let a: Announce = decode(body)?;
        if chunk::parse_hex(&a.blob).is_none() {
            return Err(BodyError::Blob);
        }
        if a.port == 0 {
            return Err(BodyError::Port);
        }
        Ok(a)
    }
}

impl Report {
    pub fn parse(body: &[u8]) -> Result<Report, BodyError> {
        decode(body)
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    if body.len() > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))
}

/// What a seeder makes of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The head is not complete yet.
    Incomplete,
    /// A request for this chunk.
    Chunk(ChunkId),
    /// Anything else: answered 400 and closed.
    Bad,
}

/// Parses a seeder's request head: `GET /chunks/{hash} HTTP/1.x`, headers ignored.
pub fn parse_request(buf: &[u8]) -> Request {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_REQUEST {
            Request::Bad
        } else {
            Request::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Request::Bad;
    };
    let line = head.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(path), Some("HTTP/1.1" | "HTTP/1.0"), None) => path
            .strip_prefix("/chunks/")
            .and_then(chunk::parse_hex)
            .map_or(Request::Bad, Request::Chunk),
        _ => Request::Bad,
    }
}

/// A seeder's response head.
pub fn response_head(status: u16, reason: &str, length: u64) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_and_report_bodies() {
        let blob = chunk::hex(&[7; 32]);
        let body = format!("{{\"blob\":\"{blob}\",\"port\":7171}}");
        assert_eq!(
            Announce::parse(body.as_bytes()),
            Ok(Announce { blob, port: 7171 })
        );
        assert_eq!(
            Announce::parse(br#"{"blob":"ab","port":1}"#),
            Err(BodyError::Blob)
        );
        let zero = format!("{{\"blob\":\"{}\",\"port\":0}}", chunk::hex(&[1; 32]));
        assert_eq!(Announce::parse(zero.as_bytes()), Err(BodyError::Port));
        assert!(matches!(
            Announce::parse(br#"{"blob":"x","port":1,"more":1}"#),
            Err(BodyError::Json(_))
        ));
        assert_eq!(
            Announce::parse(&[b' '; MAX_BODY + 1]),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            Report::parse(br#"{"members":5,"peers":7}"#),
            Ok(Report {
                members: 5,
                peers: 7,
                retries: 0
            })
        );
        let list: PeerList = serde_json::from_str(r#"{"peers":["10.0.0.2:7171"]}"#).unwrap();
        assert_eq!(list.peers[0].port(), 7171);
    }

    #[test]
    fn seeder_requests() {
        let id = [9; 32];
        let good = format!(
            "GET /chunks/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            chunk::hex(&id)
        );
        assert_eq!(parse_request(good.as_bytes()), Request::Chunk(id));
        assert_eq!(
            parse_request(&good.as_bytes()[..good.len() - 2]),
            Request::Incomplete
        );
        for bad in [
            "POST /chunks/00 HTTP/1.1\r\n\r\n",
            "GET /images/x/rootfs.tar HTTP/1.1\r\n\r\n",
            "GET /chunks/zz HTTP/1.1\r\n\r\n",
            "GET /chunks/../../etc/passwd HTTP/1.1\r\n\r\n",
            "GET  HTTP/1.1\r\n\r\n",
            "\u{1}\r\n\r\n",
        ] {
            assert_eq!(parse_request(bad.as_bytes()), Request::Bad, "{bad:?}");
        }
        assert_eq!(parse_request(&[b'a'; MAX_REQUEST + 1]), Request::Bad);
        assert_eq!(
            parse_request(&[0xff, b'\r', b'\n', b'\r', b'\n']),
            Request::Bad
        );
        assert!(
            response_head(200, "OK", 5).ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n")
        );
    }
}
