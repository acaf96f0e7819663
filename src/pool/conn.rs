//! One connection on the pool port, carrying [`Frame`]s: the asker connects and sends
//! requests one after another, the answerer answers each before reading the next. Store
//! exchanges (`replication`) and layer shipments (`layers`) use this one type.
//!
//! A connection opens with the handshake of `seal` (fixed-size messages read into stack
//! arrays, fresh randomness from the OS on both sides), so nothing larger than
//! `seal::HELLO_LEN` is read from a peer before it proved it holds the cluster key. Then
//! each frame is `u32 length (big-endian) || sealed frame`, capped at `frame::MAX_FRAME`,
//! the length authenticated with the frame.
//!
//! Not here: the bytes of a frame (`frame`), the cryptography (`seal`), what a request means
//! (`replication`, `layers`), how many connections are answered (`replication::serve`).

use super::frame::{Frame, FrameError, MAX_FRAME};
use super::key::{random_bytes, ClusterKey};
use super::seal::{
    ClientHandshake, SealError, ServerHandshake, Session, AEAD_TAG_LEN, FINISH_LEN, HELLO_LEN,
    REPLY_LEN,
};
use std::future::Future;
use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one request and its answer may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connecting peer may take to prove it holds the key.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Seal(#[from] SealError),
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

/// A connection to or from another member, after its handshake.
pub struct Conn {
    stream: TcpStream,
    session: Session,
}

impl Conn {
    /// Connects to `peer`'s pool port and makes the handshake with `key`, within `timeout`.
    pub async fn connect(
        peer: SocketAddrV4,
        key: &ClusterKey,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        within(timeout, async {
            let mut stream = TcpStream::connect(peer).await?;
            nodelay(&stream);
            let client = ClientHandshake::start(key, random_bytes()?);
            stream.write_all(client.hello()).await?;
            let mut reply = [0u8; REPLY_LEN];
            stream.read_exact(&mut reply).await?;
            let (finish, session) = client.finish(&reply)?;
            stream.write_all(&finish).await?;
            Ok(Conn { stream, session })
        })
        .await
    }

    /// Answers the handshake of an accepted connection with one of `keys`. The caller bounds
    /// the time (`HANDSHAKE_TIMEOUT`): the peer is not known to be a member yet.
    pub async fn accept(mut stream: TcpStream, keys: &[ClusterKey]) -> Result<Conn, ConnError> {
        nodelay(&stream);
        let mut hello = [0u8; HELLO_LEN];
        stream.read_exact(&mut hello).await?;
        let server = match ServerHandshake::accept(keys, &hello, random_bytes()?) {
            Ok(server) => server,
            Err(refused) => {
                if let Some(refusal) = refused.refusal {
                    // Best effort: the refusal tells the member why; the error stands anyway.
                    let _ = stream.write_all(&refusal).await;
                }
                return Err(refused.error.into());
            }
        };
        stream.write_all(server.reply()).await?;
        let mut finish = [0u8; FINISH_LEN];
        stream.read_exact(&mut finish).await?;
        let session = server.confirm(&finish)?;
        Ok(Conn { stream, session })
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), ConnError> {
        let mut sealed = frame.encode()?;
        // `encode` refuses anything that would be over MAX_FRAME sealed, which fits in a u32.
        let len = ((sealed.len() + AEAD_TAG_LEN) as u32).to_be_bytes();
        self.session.seal(&len, &mut sealed)?;
        self.stream.write_all(&len).await?;
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
        // Only a peer that made the handshake gets here, so a large frame is a member's.
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await?;
        self.session.open(&len.to_be_bytes(), &mut buf)?;
        Ok(Frame::decode(&buf)?)
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

/// Requests are answered at once (layer acks hold up NFS clients): no Nagle or delayed-ACK
/// stall. A failure leaves a slower but working connection.
fn nodelay(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
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
