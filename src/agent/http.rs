//! A minimal HTTP/1.1 client for three jobs: stream `rootfs.tar` from a drover member (GET),
//! fetch the image's manifest and chunks from members and peers (GET, [`get_with`]), and
//! report boot events and swarm announces to a member (a small JSON POST, [`post_json`],
//! [`post_json_body`]).
//!
//! The response head parser ([`parse_head`]) is sans-IO: bytes in, a typed head (or "need
//! more bytes") out. [`get`] is the blocking shell: connect with a timeout, send the request,
//! read the head, and hand back a [`Body`] reader that yields exactly `Content-Length` bytes
//! and fails if the connection ends early, so the tar extractor never sees a truncated image
//! as a complete one.
//!
//! Not supported (refused with a clear error): TLS, redirects, chunked transfer encoding,
//! responses without `Content-Length`, keep-alive (every request says `Connection: close`).

use super::cmdline::ServerUrl;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest response head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// TCP connect timeout per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence on an open connection before the download is abandoned.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting: {0}")]
    Connect(io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("server answered {status} {reason}")]
    Status { status: u16, reason: String },
    #[error("response has no Content-Length")]
    NoContentLength,
    #[error("unsupported Transfer-Encoding {0:?} (only plain bodies with Content-Length)")]
    TransferEncoding(String),
    #[error("connection closed before the response head was complete")]
    ClosedInHead,
}

/// The parts of a response head the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub content_length: Option<u64>,
    pub transfer_encoding: Option<String>,
    /// Every header line as `(name, value)`, in order, for callers that need others
    /// (the Redfish client's `X-Auth-Token` and `Location`).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Ok(Some((head, n)))`: the head took `n` bytes; the body starts at `buf[n..]`.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HttpError::HeadTooLarge);
        }
        return Ok(None);
    };
    if end + 4 > MAX_HEAD_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("status line is not HTTP/1.x"));
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed("status code is not 3 digits"));
    }
    // Three ASCII digits always parse.
    let status: u16 = code
        .parse()
        .map_err(|_| HttpError::Malformed("status code"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut head = Head {
        status,
        reason,
        content_length: None,
        transfer_encoding: None,
        headers: Vec::new(),
    };
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without `:`"))?;
        if name.is_empty() || name.ends_with([' ', '\t']) {
            return Err(HttpError::Malformed("bad header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed("Content-Length is not a number"));
            }
            let n: u64 = value
                .parse()
                .map_err(|_| HttpError::Malformed("Content-Length too large"))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(HttpError::Malformed("conflicting Content-Length headers"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.transfer_encoding = Some(value.to_string());
        }
        head.headers.push((name.to_string(), value.to_string()));
    }
    Ok(Some((head, end + 4)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The GET request for `path` on `server`.
pub fn request(server: &ServerUrl, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drover-agent\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        server.host()
    )
}

/// The POST request carrying the JSON `body` to `path` on `server`.
pub fn post_request(server: &ServerUrl, path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drover-agent\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.host(),
        body.len()
    )
}

/// POSTs the JSON `body` to `path` on `server` and returns the answer's status. Every step
/// (connect, write, read) is bounded by `timeout`: boot events must never hold up a boot.
pub fn post_json(
    server: &ServerUrl,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<u16, HttpError> {
    post(server, path, body, timeout).map(|(head, _)| head.status)
}

/// POSTs the JSON `body` like [`post_json`] and returns the answer's body, which must be a
/// 200 with a length of at most `max` bytes.
pub fn post_json_body(
    server: &ServerUrl,
    path: &str,
    body: &str,
    timeout: Duration,
    max: u64,
) -> Result<Vec<u8>, HttpError> {
    let (head, mut answer) = post(server, path, body, timeout)?;
    let length = accept(&head)?;
    if length > max {
        return Err(HttpError::Malformed("answer body too long"));
    }
    let mut out = Vec::new();
    Body::new(std::mem::take(&mut answer.0), answer.1, length).read_to_end(&mut out)?;
    Ok(out)
}

/// Sends a POST and reads the answer's head: the head, the body bytes read with it, and the
/// stream for the rest.
fn post(
    server: &ServerUrl,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(Head, (Vec<u8>, TcpStream)), HttpError> {
    let mut stream =
        TcpStream::connect_timeout(&server.addr, timeout).map_err(HttpError::Connect)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(post_request(server, path, body).as_bytes())?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(HttpError::ClosedInHead);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((head, used)) = parse_head(&buf)? {
            let early = buf.split_off(used);
            return Ok((head, (early, stream)));
        }
    }
}

/// Checks that a head describes a body the agent can stream: 200, a length, no encoding.
pub fn accept(head: &Head) -> Result<u64, HttpError> {
    if head.status != 200 {
        return Err(HttpError::Status {
            status: head.status,
            reason: head.reason.clone(),
        });
    }
    if let Some(te) = &head.transfer_encoding {
        if !te.eq_ignore_ascii_case("identity") {
            return Err(HttpError::TransferEncoding(te.clone()));
        }
    }
    head.content_length.ok_or(HttpError::NoContentLength)
}

/// A response body of known length: bytes read with the head first, then the socket.
pub struct Body<R> {
    early: Vec<u8>,
    early_pos: usize,
    inner: R,
    remaining: u64,
    length: u64,
}

impl<R: Read> Body<R> {
    pub fn new(early: Vec<u8>, inner: R, length: u64) -> Self {
        Body {
            early,
            early_pos: 0,
            inner,
            remaining: length,
            length,
        }
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    /// Reads and drops the rest of the body (the tar's end padding), checking it all arrives.
    pub fn finish(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = if self.early_pos < self.early.len() {
            let n = max.min(self.early.len() - self.early_pos);
            buf[..n].copy_from_slice(&self.early[self.early_pos..self.early_pos + n]);
            self.early_pos += n;
            n
        } else {
            let n = self.inner.read(&mut buf[..max])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} of {} bytes",
                        self.length - self.remaining,
                        self.length
                    ),
                ));
            }
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// GETs `path` from `server` and returns the body once the head says 200 with a length.
pub fn get(server: &ServerUrl, path: &str) -> Result<Body<TcpStream>, HttpError> {
    get_with(server, path, CONNECT_TIMEOUT, READ_TIMEOUT)
}

/// [`get`] with its own connect and read timeouts (the swarm gives peers less patience than
/// members).
pub fn get_with(
    server: &ServerUrl,
    path: &str,
    connect: Duration,
    read: Duration,
) -> Result<Body<TcpStream>, HttpError> {
    get_full(server, path, connect, read).map(|(_, body)| body)
}

/// [`get_with`], also handing back the response head (for its other headers).
pub fn get_full(
    server: &ServerUrl,
    path: &str,
    connect: Duration,
    read: Duration,
) -> Result<(Head, Body<TcpStream>), HttpError> {
    let mut stream =
        TcpStream::connect_timeout(&server.addr, connect).map_err(HttpError::Connect)?;
    stream.set_read_timeout(Some(read))?;
    stream.set_write_timeout(Some(read))?;
    stream.set_nodelay(true)?;
    stream.write_all(request(server, path).as_bytes())?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(HttpError::ClosedInHead);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((head, used)) = parse_head(&buf)? {
            let length = accept(&head)?;
            let early = buf.split_off(used);
            return Ok((head, Body::new(early, stream, length)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What python3 -m http.server sends for a file.
    const PY_HEAD: &[u8] = b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\
Date: Sun, 22 Nov 2026 03:50:00 GMT\r\nContent-type: application/x-tar\r\n\
Content-Length: 10240\r\nLast-Modified: Sun, 22 Nov 2026 03:49:00 GMT\r\n\r\nBODY";

    #[test]
    fn parses_a_real_head() {
        let (head, n) = parse_head(PY_HEAD).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.reason, "OK");
        assert_eq!(head.content_length, Some(10240));
        assert_eq!(&PY_HEAD[n..], b"BODY");
        assert_eq!(accept(&head).unwrap(), 10240);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for cut in 0..PY_HEAD.len() - 4 {
            assert!(
                parse_head(&PY_HEAD[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            parse_head(&vec![b'a'; MAX_HEAD_BYTES + 1]),
            Err(HttpError::HeadTooLarge)
        ));
    }

    #[test]
    fn refuses_what_it_cannot_stream() {
        let h = |s: &str| parse_head(s.as_bytes()).unwrap().unwrap().0;
        let err = accept(&h("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")).unwrap_err();
        assert_eq!(err.to_string(), "server answered 404 Not Found");
        assert!(matches!(
            accept(&h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")),
            Err(HttpError::TransferEncoding(_))
        ));
        assert!(matches!(
            accept(&h("HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n")),
            Err(HttpError::NoContentLength)
        ));
        assert_eq!(
            accept(&h("HTTP/1.1 200 OK\r\ncontent-length:  7 \r\n\r\n")).unwrap(),
            7
        );
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad.as_bytes()), Err(HttpError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn body_yields_exactly_its_length_and_detects_truncation() {
        let mut body = Body::new(b"abc".to_vec(), &b"defghXYZ"[..], 8);
        let mut out = Vec::new();
        body.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdefgh");

        let mut body = Body::new(b"ab".to_vec(), &b"cd"[..], 10);
        let mut out = Vec::new();
        let err = body.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("after 4 of 10 bytes"), "{err}");
    }

    #[test]
    fn request_text() {
        let s = ServerUrl::parse("http://10.0.2.2:8080").unwrap();
        let r = request(&s, &s.rootfs_path("x"));
        assert!(r.starts_with("GET /images/x/rootfs.tar HTTP/1.1\r\nHost: 10.0.2.2:8080\r\n"));
        assert!(r.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn get_over_loopback() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).unwrap();
            assert!(req[..n].starts_with(b"GET /images/img/rootfs.tar HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        });
        let url = ServerUrl::parse(&format!("http://{addr}")).unwrap();
        let mut body = get(&url, &url.rootfs_path("img")).unwrap();
        let mut out = String::new();
        body.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        server.join().unwrap();
    }
}
