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
//! Image files travel the same way: after an exchange, a member fetches the blobs that its
//! image records name and it does not have ([`fetch_missing_blobs`]) from the peer it just
//! pulled from, in [`BLOB_CHUNK`] pieces over one connection; a blob is kept only if its
//! BLAKE3 hash is the one the record names (content addressing makes the peer's word
//! irrelevant).
//!
//! Member summaries (`summary`) ride along: after each store exchange the asker sends its
//! table of summaries ([`exchange_summaries`]) and the peer answers with its own, each side
//! merging the other's ([`Summaries`], shared by the pool task and this listener).
//!
//! A connection carries requests ([`Request`], one frame each) until the asker closes it.
//! A frame whose payload starts with a NUL byte (never JSON) is a shipment of a node's NFS
//! layer instead, answered with its ack by `layers::Receiver`.
//!
//! Not here: the merge rules (`store::replicate`), encryption (frames are authenticated, not
//! secret).

use super::key::ClusterKey;
use super::layers::Receiver;
use super::summary::{Relayed, Summary, Table};
use super::sync::{self, Digest};
use crate::image::Blobs;
use crate::store::model::{BlobId, Image};
use crate::store::replicate::Batch;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
/// Bytes of a blob sent per request.
pub const BLOB_CHUNK: u32 = 4 << 20;

/// One request on a replication connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Answered with the batches the digest lacks (JSON).
    Sync(Digest),
    /// Answered with up to `len` bytes of blob `id` from `offset` (raw); the connection is
    /// closed when the blob is not here.
    Blob { id: BlobId, offset: u64, len: u32 },
    /// The asker's member summaries; answered with the answerer's (JSON), after merging.
    Summaries(Vec<Relayed>),
}

/// What one store exchange did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Rows the peer sent.
    pub carried: u64,
    /// Of those, rows that changed this store.
    pub merged: u64,
}

/// This member's table of summaries, shared by the pool task and the listener, with the
/// monotonic clock their ages run on.
#[derive(Clone)]
pub struct Summaries {
    me: u64,
    table: Arc<Mutex<Table>>,
    start: Instant,
}

impl Summaries {
    pub fn new(me: u64) -> Summaries {
        Summaries {
            me,
            table: Arc::default(),
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock aborts the process (panic = "abort").
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces this member's own summary.
    pub fn publish(&self, summary: Summary) {
        let now = self.now_ms();
        self.lock().publish(summary, now);
    }

    pub fn relay(&self) -> Vec<Relayed> {
        let now = self.now_ms();
        self.lock().relay(now)
    }

    /// Merges a peer's table; returns the entries that changed.
    pub fn merge(&self, incoming: Vec<Relayed>) -> usize {
        let now = self.now_ms();
        self.lock().merge(self.me, incoming, now)
    }

    /// Member `id`'s summary and its age now (ms).
    pub fn get(&self, id: u64) -> Option<(Summary, u64)> {
        let now = self.now_ms();
        self.lock().get(id, now).map(|(s, age)| (s.clone(), age))
    }
}

pub(super) async fn write_frame(
    stream: &mut TcpStream,
    key: &ClusterKey,
    payload: &[u8],
) -> io::Result<()> {
    let sealed = key.seal(payload);
    let len = u32::try_from(sealed.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&sealed).await?;
    stream.flush().await
}

pub(super) async fn read_frame(stream: &mut TcpStream, key: &ClusterKey) -> io::Result<Vec<u8>> {
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
    blobs: Blobs,
    layers: Arc<Receiver>,
    key: ClusterKey,
    summaries: Summaries,
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
        // Layer acks are small and awaited by a waiting NFS client: send them at once.
        let _ = stream.set_nodelay(true);
        let (store, key, blobs, summaries) =
            (store.clone(), key.clone(), blobs.clone(), summaries.clone());
        let layers = layers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // One request after another until the asker closes the connection.
            loop {
                let r = tokio::time::timeout(
                    EXCHANGE_TIMEOUT,
                    answer(&mut stream, &store, &blobs, &layers, &key, &summaries),
                )
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "pool: request refused");
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "pool: request timed out");
                        break;
                    }
                }
            }
        });
    }
}

/// Reads one request and answers it.
async fn answer(
    stream: &mut TcpStream,
    store: &Arc<Store>,
    blobs: &Blobs,
    layers: &Arc<Receiver>,
    key: &ClusterKey,
    summaries: &Summaries,
) -> io::Result<()> {
    let payload = read_frame(stream, key).await?;
    if payload.first() == Some(&0) {
        let layers = layers.clone();
        let ack = tokio::task::spawn_blocking(move || layers.answer(&payload))
            .await
            .map_err(io::Error::other)?;
        return write_frame(stream, key, &ack.encode()).await;
    }
    let request: Request = serde_json::from_slice(&payload).map_err(invalid)?;
    match request {
        Request::Sync(digest) => {
            let store = store.clone();
            let batches = blocking(move || sync::answer(&store, &digest, sync::MAX_ROWS)).await?;
            let body = serde_json::to_vec(&batches).map_err(invalid)?;
            write_frame(stream, key, &body).await
        }
        Request::Blob { id, offset, len } => {
            let path = blobs
                .path(&id)
                .ok_or_else(|| invalid(format!("{id:?} is not a blob id")))?;
            let mut file = tokio::fs::File::open(&path).await?;
            tokio::io::AsyncSeekExt::seek(&mut file, io::SeekFrom::Start(offset)).await?;
            let mut buf = Vec::new();
            file.take(u64::from(len.min(BLOB_CHUNK)))
                .read_to_end(&mut buf)
                .await?;
            write_frame(stream, key, &buf).await
        }
        Request::Summaries(theirs) => {
            summaries.merge(theirs);
            let body = serde_json::to_vec(&summaries.relay()).map_err(invalid)?;
            write_frame(stream, key, &body).await
        }
    }
}

async fn request(
    stream: &mut TcpStream,
    key: &ClusterKey,
    request: &Request,
) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(request).map_err(invalid)?;
    write_frame(stream, key, &body).await?;
    read_frame(stream, key).await
}

/// Asks `peer` for what this store lacks and merges it.
pub async fn pull(peer: SocketAddrV4, store: Arc<Store>, key: &ClusterKey) -> io::Result<Pulled> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut stream = TcpStream::connect(peer).await?;
        let s = store.clone();
        let digest = blocking(move || sync::digest(&s)).await?;
        let reply = request(&mut stream, key, &Request::Sync(digest)).await?;
        let batches: Vec<Batch> = serde_json::from_slice(&reply).map_err(invalid)?;
        let carried = batches.iter().map(|b| b.rows.len() as u64).sum();
        let merged = blocking(move || sync::apply(&store, &batches)).await? as u64;
        Ok(Pulled { carried, merged })
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "exchange timed out"))?
}

/// Sends `peer` this member's summaries and merges its answer; returns the entries that
/// changed here.
pub async fn exchange_summaries(
    peer: SocketAddrV4,
    key: &ClusterKey,
    summaries: &Summaries,
) -> io::Result<usize> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut stream = TcpStream::connect(peer).await?;
        let reply = request(&mut stream, key, &Request::Summaries(summaries.relay())).await?;
        let theirs: Vec<Relayed> = serde_json::from_slice(&reply).map_err(invalid)?;
        Ok(summaries.merge(theirs))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "summary exchange timed out"))?
}

/// The blobs the store's images name that `blobs` does not have.
pub fn missing_blobs(
    store: &Store,
    blobs: &Blobs,
) -> Result<Vec<(BlobId, u64)>, crate::store::StoreError> {
    let images = store.read(|r| r.all::<Image>())?;
    let mut out: Vec<(BlobId, u64)> = images
        .iter()
        .flat_map(Image::all_files)
        .filter(|f| blobs.path(&f.blob).is_some_and(|p| !p.exists()))
        .map(|f| (f.blob.clone(), f.size))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Fetches every missing blob from `peer`; returns how many were stored.
pub async fn fetch_missing_blobs(
    peer: SocketAddrV4,
    store: Arc<Store>,
    blobs: Blobs,
    key: &ClusterKey,
) -> io::Result<usize> {
    let (s, b) = (store.clone(), blobs.clone());
    let missing = blocking(move || missing_blobs(&s, &b)).await?;
    if missing.is_empty() {
        return Ok(0);
    }
    let mut stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(peer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut fetched = 0;
    for (id, size) in missing {
        let Some(final_path) = blobs.path(&id) else {
            continue;
        };
        if let Some(dir) = final_path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let part = final_path.with_file_name(format!(".fetch-{id}"));
        let got = fetch_blob(&mut stream, key, &id, size, &part).await;
        if let Err(e) = got {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        // Import verifies: the blob lands under the hash of what arrived.
        let (b, p) = (blobs.clone(), part.clone());
        let imported = tokio::task::spawn_blocking(move || b.import_file(&p))
            .await
            .map_err(io::Error::other)?;
        let _ = tokio::fs::remove_file(&part).await;
        match imported {
            Ok(f) if f.blob == id => fetched += 1,
            Ok(f) => {
                if let Some(wrong) = blobs.path(&f.blob) {
                    let _ = tokio::fs::remove_file(wrong).await;
                }
                return Err(invalid(format!(
                    "{peer} sent a blob that does not hash to {id}"
                )));
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    Ok(fetched)
}

/// Fetches blob `id` (`size` bytes) into the file `part`.
async fn fetch_blob(
    stream: &mut TcpStream,
    key: &ClusterKey,
    id: &BlobId,
    size: u64,
    part: &std::path::Path,
) -> io::Result<()> {
    let mut file = tokio::fs::File::create(part).await?;
    let mut offset = 0u64;
    while offset < size {
        let chunk = tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            request(
                stream,
                key,
                &Request::Blob {
                    id: id.clone(),
                    offset,
                    len: BLOB_CHUNK,
                },
            ),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "blob chunk timed out"))??;
        if chunk.is_empty() {
            return Err(invalid(format!("{id} ends at {offset} of {size} bytes")));
        }
        file.write_all(&chunk).await?;
        offset += chunk.len() as u64;
    }
    file.flush().await?;
    file.sync_all().await
}
