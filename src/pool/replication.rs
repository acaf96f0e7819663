//! The network side of store replication: anti-entropy exchanges over TCP on the pool port.
//!
//! An exchange is one connection: the asker sends its [`Digest`], the peer answers with the
//! batches the asker lacks (at most [`sync::MAX_ROWS`] rows), the asker merges them and
//! closes. Every frame is `u32 length (big-endian) || tag || JSON`, sealed with the cluster key
//! and refused unless the tag verifies; frames are capped at [`MAX_FRAME`] and a whole
//! exchange at [`EXCHANGE_TIMEOUT`]. Each member asks one random live member every
//! [`SYNC_EVERY`], so a write reaches every member of a pool of N in O(log N) rounds, and a
//! member that was down or cut off catches up from whoever it asks first.
//!
//! Not here: the merge rules (`store::replicate`), encryption (frames are authenticated, not
//! secret), image blobs.

use super::key::ClusterKey;
use super::sync::{self, Digest};
use crate::store::replicate::Batch;
use crate::store::Store;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How often a member asks a peer for what it lacks.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Largest frame accepted.
pub const MAX_FRAME: u32 = 32 << 20;
/// Longest a whole exchange may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Exchanges served at once; more connections wait in the listen queue.
const MAX_SERVING: usize = 16;

async fn write_frame(stream: &mut TcpStream, key: &ClusterKey, payload: &[u8]) -> io::Result<()> {
    let sealed = key.seal(payload);
    let len = u32::try_from(sealed.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&sealed).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut TcpStream, key: &ClusterKey) -> io::Result<Vec<u8>> {
    let len = stream.read_u32().await?;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    key.open(&buf).map(<[u8]>::to_vec).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "frame not signed with the cluster key",
        )
    })
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Runs a blocking store operation off the async workers.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, crate::store::StoreError> + Send + 'static,
) -> io::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)
}

/// Answers exchanges on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    key: ClusterKey,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "pool: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let r = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
                let digest: Digest = serde_json::from_slice(&read_frame(&mut stream, &key).await?)
                    .map_err(invalid)?;
                let batches =
                    blocking(move || sync::answer(&store, &digest, sync::MAX_ROWS)).await?;
                let body = serde_json::to_vec(&batches).map_err(invalid)?;
                write_frame(&mut stream, &key, &body).await
            })
            .await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "pool: exchange refused"),
                Err(_) => tracing::debug!(%peer, "pool: exchange timed out"),
            }
        });
    }
}

/// Asks `peer` for what this store lacks and merges it; returns the rows that changed.
pub async fn pull(peer: SocketAddrV4, store: Arc<Store>, key: &ClusterKey) -> io::Result<usize> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut stream = TcpStream::connect(peer).await?;
        let s = store.clone();
        let digest = blocking(move || sync::digest(&s)).await?;
        write_frame(
            &mut stream,
            key,
            &serde_json::to_vec(&digest).map_err(invalid)?,
        )
        .await?;
        let batches: Vec<Batch> =
            serde_json::from_slice(&read_frame(&mut stream, key).await?).map_err(invalid)?;
        blocking(move || sync::apply(&store, &batches)).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "exchange timed out"))?
}
