//! One connection on the pool port, carrying [`Frame`]s: the asker connects and sends
//! requests one after another, the answerer answers each before reading the next. Store
//! exchanges (`replication`) and layer shipments (`layers`) use this one type; each frame
//! is length-prefixed, sealed with the cluster key and capped at `frame::MAX_FRAME`.
//!
//! Not here: the bytes of a frame (`frame`), what a request means (`replication`, `layers`).

use super::frame::{Frame, FrameError, MAX_FRAME};
use super::key::ClusterKey;
use std::future::Future;
use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one request and its answer may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u32),
    #[error("the peer closed the connection")]
    Closed,
    #[error("timed out")]
    TimedOut,
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
}

/// A connection to or from another member.
pub struct Conn {
    stream: TcpStream,
    key: ClusterKey,
}

impl Conn {
    /// Connects to `peer`'s pool port within `timeout`.
    pub async fn connect(
        peer: SocketAddrV4,
        key: &ClusterKey,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let stream = within(timeout, async { Ok(TcpStream::connect(peer).await?) }).await?;
        Ok(Conn::new(stream, key))
    }

    /// A connection from `accept` or `connect`.
    pub fn new(stream: TcpStream, key: &ClusterKey) -> Conn {
        // Requests are answered at once (layer acks hold up NFS clients): no Nagle or
        // delayed-ACK stall. A failure leaves a slower but working connection.
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            key: key.clone(),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), ConnError> {
        let sealed = frame.seal(&self.key)?;
        // `seal` refuses anything over MAX_FRAME, which fits in a u32.
        let len = sealed.len() as u32;
        self.stream.write_all(&len.to_be_bytes()).await?;
        self.stream.write_all(&sealed).await?;
        Ok(self.stream.flush().await?)
    }

    /// The next frame; [`ConnError::Closed`] when the peer closed before one began.
    pub async fn recv(&mut self) -> Result<Frame, ConnError> {
        let len = match self.stream.read_u32().await {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ConnError::Closed),
            Err(e) => return Err(e.into()),
        };
        if len > MAX_FRAME {
            return Err(ConnError::TooLarge(len));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await?;
        Ok(Frame::open(&self.key, &buf)?)
    }

    /// Sends a request and reads its answer, within `timeout`.
    pub async fn ask(&mut self, request: &Frame, timeout: Duration) -> Result<Frame, ConnError> {
        within(timeout, async {
            self.send(request).await?;
            self.recv().await
        })
        .await
    }
}

/// `f` unless it takes longer than `timeout`.
pub async fn within<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Err(ConnError::TimedOut))
}

/// The error for an answer of the wrong kind.
pub fn unexpected(expected: &'static str, got: &Frame) -> ConnError {
    ConnError::Unexpected {
        expected,
        got: got.name(),
    }
}
