//! Store replication on the pool port: anti-entropy exchanges over one [`Conn`] per
//! exchange, and the listener that answers them (and layer shipments, for `layers`).
//!
//! An exchange ([`exchange`]) is one connection that the asker drives through three steps:
//! 1. [`pull`]: it sends its [`Digest`], the peer answers with the batches the asker lacks
//!    (at most [`sync::MAX_ROWS`] rows), the asker merges them;
//! 2. [`swap_summaries`]: member summaries (`summary`) ride along: the asker sends its table,
//!    the peer answers with its own, each side merging the other's ([`Summaries`], shared by
//!    the pool task and this listener);
//! 3. [`fetch_missing_blobs`]: the asker fetches the blobs that its image records name and it
//!    does not have: a blob's manifest, then only the chunks it lacks (each checked against
//!    its hash), or a blob the peer stores whole in [`BLOB_CHUNK`] pieces; a blob is kept
//!    only if its BLAKE3 hash is the one the record names (content addressing makes the
//!    peer's word irrelevant).
//!
//! Each member starts one exchange with a random live member every [`SYNC_EVERY`], so a write
//! reaches every member of a pool of N in O(log N) rounds, and a member that was down or cut
//! off catches up from whoever it asks first. Each request and answer is capped at
//! `conn::EXCHANGE_TIMEOUT`.
//!
//! The listener holds nothing for a peer that has not proved it holds the cluster key: an
//! accepted connection gets only a handshake slot ([`MAX_HANDSHAKES`] in all,
//! [`MAX_HANDSHAKES_PER_ADDRESS`] per address, refused at once beyond) for at most
//! `conn::HANDSHAKE_TIMEOUT`, reading fixed-size messages; only then does it wait for one of
//! the `MAX_SERVING` serving slots and may it send large frames. Silent or foreign
//! connections cannot hold the slots members need.
//!
//! Not here: the merge rules (`store::replicate`), the frames (`frame`, `conn`), the
//! handshake and encryption (`seal`), applying layer shipments (`layers::Receiver`).

use super::conn::{unexpected, within, Conn, ConnError, EXCHANGE_TIMEOUT, HANDSHAKE_TIMEOUT};
use super::frame::{BlobRequest, Frame};
use super::key::{ClusterKey, KeyError, Keyring, Rekey};
use super::layers::Receiver;
use super::seal::SealError;
use super::summary::{Relayed, Summary, Table};
use super::sync::{self, Digest};
use crate::image::chunk::Manifest;
use crate::image::{Blobs, ImageError};
use crate::net::limit::Caps;
use crate::store::model::{BlobId, Image};
use crate::store::{Store, StoreError};
use std::io::{self, Read, Seek};
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a member starts an exchange with a peer.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Authenticated connections answered at once; more wait for a slot.
const MAX_SERVING: usize = 16;
/// Connections in their handshake at once, and from one address (a member makes one or two:
/// an exchange and a layer link).
pub const MAX_HANDSHAKES: usize = 256;
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 16;
/// Bytes of a blob sent per request.
pub const BLOB_CHUNK: u32 = 4 << 20;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("image files: {0}")]
    Io(#[from] io::Error),
    #[error("image files: {0}")]
    Image(#[from] ImageError),
    #[error("blob {id} ends at {offset} of {size} bytes")]
    ShortBlob { id: BlobId, offset: u64, size: u64 },
    #[error("the peer sent a blob that does not hash to {0}")]
    WrongHash(BlobId),
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// What one store pull did.
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

/// Runs a blocking operation off the async workers.
async fn blocking<R: Send + 'static, E>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, ExchangeError>
where
    E: Send + 'static,
    ExchangeError: From<E>,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// What the listener answers with and where.
pub struct Listener {
    pub store: Arc<Store>,
    /// The state directory: image files, and where a rekey offered by a peer is kept.
    pub state_dir: std::path::PathBuf,
    pub layers: Arc<Receiver>,
    /// The keys a connecting peer may use, kept current by the pool task.
    pub keys: watch::Receiver<Arc<[ClusterKey]>>,
    pub summaries: Summaries,
}

/// Answers connections on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, with: Listener, shutdown: CancellationToken) {
    let Listener {
        store,
        state_dir,
        layers,
        keys: keyring,
        summaries,
    } = with;
    let blobs = Blobs::new(&state_dir);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
    let handshakes = Caps::new(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS);
    loop {
        let (stream, peer) = tokio::select! {
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
        let handshake = match handshakes.take(peer.ip()) {
            Ok(h) => h,
            Err(cap) => {
                tracing::debug!(%peer, ?cap, "pool: too many connections in handshake");
                continue;
            }
        };
        let (slots, keys) = (slots.clone(), keyring.borrow().clone());
        let answerer = Answerer {
            store: store.clone(),
            state_dir: state_dir.clone(),
            blobs: blobs.clone(),
            layers: layers.clone(),
            summaries: summaries.clone(),
        };
        tokio::spawn(async move {
            let mut conn = match within(HANDSHAKE_TIMEOUT, Conn::accept(stream, &keys)).await {
                Ok(c) => c,
                // A key holder of another version is a member to upgrade: say so.
                Err(ConnError::Seal(e @ SealError::Version { .. })) => {
                    tracing::warn!(%peer, error = %e, "pool: handshake refused");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "pool: handshake refused");
                    return;
                }
            };
            drop(handshake);
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            // One request after another until the asker closes the connection.
            loop {
                let r = within(EXCHANGE_TIMEOUT, async {
                    let request = conn.recv().await?;
                    let answer = answerer.answer(request).await?;
                    conn.send(&answer).await
                })
                .await;
                match r {
                    Ok(()) => {}
                    Err(ConnError::Closed) => break,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "pool: request refused");
                        break;
                    }
                }
            }
        });
    }
}

/// What the listener answers with.
struct Answerer {
    store: Arc<Store>,
    state_dir: std::path::PathBuf,
    blobs: Blobs,
    layers: Arc<Receiver>,
    summaries: Summaries,
}

impl Answerer {
    async fn answer(&self, request: Frame) -> Result<Frame, ConnError> {
        match request {
            Frame::Sync(digest) => {
                let store = self.store.clone();
                let batches = tokio::task::spawn_blocking(move || {
                    sync::answer(&store, &digest, sync::MAX_ROWS)
                })
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
                Ok(Frame::Batches(batches))
            }
            Frame::Summaries(theirs) => {
                self.summaries.merge(theirs);
                Ok(Frame::Summaries(self.summaries.relay()))
            }
            Frame::Blob(request) => {
                let blobs = self.blobs.clone();
                let piece = tokio::task::spawn_blocking(move || answer_blob(&blobs, &request))
                    .await
                    .map_err(io::Error::other)??;
                Ok(Frame::Chunk(piece))
            }
            Frame::Layer(shipment) => {
                let layers = self.layers.clone();
                let ack = tokio::task::spawn_blocking(move || layers.answer(&shipment))
                    .await
                    .map_err(io::Error::other)?;
                Ok(Frame::LayerAck(ack))
            }
            Frame::Rekey(rekey) => {
                let dir = self.state_dir.clone();
                tokio::task::spawn_blocking(move || take_rekey(&dir, &rekey))
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?;
                Ok(Frame::RekeyAck)
            }
            other => Err(unexpected("a request", &other)),
        }
    }
}

/// Keeps a rekey a peer offered, unless this member has it (or a later one) already.
fn take_rekey(state_dir: &std::path::Path, rekey: &Rekey) -> Result<(), KeyError> {
    let Some(ring) = Keyring::load_state(state_dir)? else {
        return Ok(());
    };
    let known = ring.current == rekey.next
        || ring
            .rekey
            .as_ref()
            .is_some_and(|r| r.retire_ms >= rekey.retire_ms);
    if !known {
        rekey.save(state_dir)?;
        tracing::info!("pool: a member passed on a new cluster key; switching to it");
    }
    Ok(())
}

/// Passes a rekey in progress to `peer`, over a connection made with `key`.
pub async fn offer_rekey(
    peer: SocketAddrV4,
    key: &ClusterKey,
    rekey: Rekey,
) -> Result<(), ExchangeError> {
    let mut conn = Conn::connect(peer, key, EXCHANGE_TIMEOUT).await?;
    match conn.ask(&Frame::Rekey(rekey), EXCHANGE_TIMEOUT).await? {
        Frame::RekeyAck => Ok(()),
        other => Err(unexpected("rekey ack", &other).into()),
    }
}

/// One exchange with `peer` on one connection: the store pull, whose outcome goes to
/// `report` at once (`None`: it failed, and the exchange ends), then the summaries, then the
/// image files this member lacks.
pub async fn exchange(
    peer: SocketAddrV4,
    store: Arc<Store>,
    blobs: Blobs,
    key: ClusterKey,
    summaries: Summaries,
    report: impl FnOnce(Option<Pulled>),
) {
    let pulled = async {
        let mut conn = Conn::connect(peer, &key, EXCHANGE_TIMEOUT).await?;
        let p = pull(&mut conn, &store).await?;
        Ok::<_, ExchangeError>((conn, p))
    }
    .await;
    let mut conn = match pulled {
        Ok((conn, p)) => {
            if p.merged > 0 {
                tracing::debug!(%peer, rows = p.merged, "pool: merged rows");
            }
            report(Some(p));
            conn
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "pool: exchange failed");
            report(None);
            return;
        }
    };
    if let Err(e) = swap_summaries(&mut conn, &summaries).await {
        tracing::debug!(%peer, error = %e, "pool: summary exchange failed");
        return;
    }
    match fetch_missing_blobs(&mut conn, &store, &blobs).await {
        Ok(f) if f.blobs == 0 => {}
        Ok(f) => tracing::info!(%peer, blobs = f.blobs, bytes = f.bytes, reused = f.reused,
            "pool: fetched image files"),
        Err(e) => tracing::warn!(%peer, error = %e, "pool: fetching image files failed"),
    }
}

/// Asks the peer on `conn` for what this store lacks and merges it (step 1).
pub async fn pull(conn: &mut Conn, store: &Arc<Store>) -> Result<Pulled, ExchangeError> {
    let s = store.clone();
    let digest: Digest = blocking(move || sync::digest(&s)).await?;
    let batches = match conn.ask(&Frame::Sync(digest), EXCHANGE_TIMEOUT).await? {
        Frame::Batches(b) => b,
        other => return Err(unexpected("batches", &other).into()),
    };
    let carried = batches.iter().map(|b| b.rows.len() as u64).sum();
    let s = store.clone();
    let merged = blocking(move || sync::apply(&s, &batches)).await? as u64;
    Ok(Pulled { carried, merged })
}

/// Sends the peer on `conn` this member's summaries and merges its answer (step 2); returns
/// the entries that changed here.
pub async fn swap_summaries(
    conn: &mut Conn,
    summaries: &Summaries,
) -> Result<usize, ExchangeError> {
    let request = Frame::Summaries(summaries.relay());
    match conn.ask(&request, EXCHANGE_TIMEOUT).await? {
        Frame::Summaries(theirs) => Ok(summaries.merge(theirs)),
        other => Err(unexpected("summaries", &other).into()),
    }
}

/// How a [`BlobRequest`] names what it wants: a blob's bytes (`HEX`, as members before
/// chunking ask), the manifest of a chunked blob (`manifest/HEX`; an empty answer when the
/// blob is stored whole here) or one chunk (`chunk/HEX`). Names ride in the request's id so
/// that the frames stay as they are.
const MANIFEST_PREFIX: &str = "manifest/";
const CHUNK_PREFIX: &str = "chunk/";

/// Answers a [`BlobRequest`] from the blob store (blocking).
fn answer_blob(blobs: &Blobs, request: &BlobRequest) -> io::Result<Vec<u8>> {
    let BlobRequest { id, offset, len } = request;
    let len = u64::from((*len).min(BLOB_CHUNK));
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no blob, manifest or chunk {id:?} here"),
        )
    };
    let slice = |bytes: Vec<u8>| {
        let start = usize::try_from(*offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len as usize).min(bytes.len());
        bytes[start..end].to_vec()
    };
    if let Some(hex) = id.strip_prefix(MANIFEST_PREFIX) {
        return Ok(blobs
            .manifest_bytes(hex)
            .map_err(io::Error::other)?
            .map(slice)
            .unwrap_or_default());
    }
    if let Some(hex) = id.strip_prefix(CHUNK_PREFIX) {
        let chunk = crate::image::chunk::parse_hex(hex).ok_or_else(not_found)?;
        return blobs.read_chunk(&chunk).map(slice);
    }
    let mut reader = blobs.open(id).map_err(|_| not_found())?;
    reader.seek(io::SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    reader.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The blobs the store's images name that `blobs` does not have.
pub fn missing_blobs(store: &Store, blobs: &Blobs) -> Result<Vec<(BlobId, u64)>, StoreError> {
    let images = store.read(|r| r.all::<Image>())?;
    let mut out: Vec<(BlobId, u64)> = images
        .iter()
        .flat_map(Image::all_files)
        .filter(|f| Blobs::valid_id(&f.blob) && !blobs.contains(&f.blob))
        .map(|f| (f.blob.clone(), f.size))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// What [`fetch_missing_blobs`] brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Blobs now stored.
    pub blobs: usize,
    /// Bytes received: manifests, the chunks this member lacked, whole blobs from members
    /// that store them whole.
    pub bytes: u64,
    /// Bytes of the fetched blobs' chunks that were here already.
    pub reused: u64,
}

/// Fetches every missing blob from the peer on `conn` (step 3). A chunked blob comes as
/// its manifest, then each chunk this member lacks (checked against its hash as it is
/// stored), then the whole is checked against the blob id before the manifest is written;
/// a blob the peer stores whole comes whole, as before chunking.
pub async fn fetch_missing_blobs(
    conn: &mut Conn,
    store: &Arc<Store>,
    blobs: &Blobs,
) -> Result<Fetched, ExchangeError> {
    let (s, b) = (store.clone(), blobs.clone());
    let missing = blocking(move || missing_blobs(&s, &b)).await?;
    let mut fetched = Fetched::default();
    for (id, size) in missing {
        let manifest = fetch_bytes(conn, &format!("{MANIFEST_PREFIX}{id}"), None).await?;
        fetched.bytes += manifest.len() as u64;
        if manifest.is_empty() {
            fetch_whole(conn, blobs, &id, size).await?;
            fetched.bytes += size;
        } else {
            let m = Manifest::decode(&manifest).map_err(|source| ImageError::Manifest {
                id: id.clone(),
                source,
            })?;
            if m.size != size {
                return Err(ExchangeError::ShortBlob {
                    id,
                    offset: m.size,
                    size,
                });
            }
            let mut asked = std::collections::HashSet::new();
            for c in &m.chunks {
                let have = {
                    let b = blobs.clone();
                    let cid = c.id;
                    blocking(move || Ok::<_, ExchangeError>(b.has_chunk(&cid))).await?
                };
                if have || !asked.insert(c.id) {
                    fetched.reused += u64::from(c.len);
                    continue;
                }
                let name = format!("{CHUNK_PREFIX}{}", crate::image::chunk::hex(&c.id));
                let bytes = fetch_bytes(conn, &name, Some(c.len)).await?;
                fetched.bytes += bytes.len() as u64;
                let (b, cid) = (blobs.clone(), c.id);
                blocking(move || b.put_chunk(&cid, &bytes)).await?;
            }
            let (b, i) = (blobs.clone(), id.clone());
            if !blocking(move || b.adopt_manifest(&i, &m)).await? {
                return Err(ExchangeError::WrongHash(id));
            }
        }
        fetched.blobs += 1;
    }
    Ok(fetched)
}

/// All of the object `name` (a manifest, whose length its header gives, or a chunk of
/// `len` bytes). An empty answer means the peer has no such manifest.
async fn fetch_bytes(
    conn: &mut Conn,
    name: &str,
    len: Option<u32>,
) -> Result<Vec<u8>, ExchangeError> {
    let mut out = Vec::new();
    loop {
        let request = Frame::Blob(BlobRequest {
            id: name.to_string(),
            offset: out.len() as u64,
            len: BLOB_CHUNK,
        });
        let piece = match conn.ask(&request, EXCHANGE_TIMEOUT).await? {
            Frame::Chunk(c) => c,
            other => return Err(unexpected("chunk", &other).into()),
        };
        if piece.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&piece);
        let want = match len {
            Some(l) => u64::from(l),
            // A manifest's header says how long it is; decoding checks the rest.
            None => match Manifest::decode_header(&out) {
                Ok((_, count)) => Manifest::encoded_len_of(count) as u64,
                Err(_) => return Ok(out),
            },
        };
        if out.len() as u64 >= want {
            return Ok(out);
        }
    }
}

/// Fetches blob `id` (`size` bytes), stored whole by the peer, into the store.
async fn fetch_whole(
    conn: &mut Conn,
    blobs: &Blobs,
    id: &BlobId,
    size: u64,
) -> Result<(), ExchangeError> {
    tokio::fs::create_dir_all(blobs.dir()).await?;
    let part = blobs.dir().join(format!(".fetch-{id}"));
    let got = fetch_blob(conn, id, size, &part).await;
    if let Err(e) = got {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    // Import verifies: the blob lands under the hash of what arrived.
    let (b, p) = (blobs.clone(), part.clone());
    let imported = blocking(move || b.import_file(&p)).await;
    let _ = tokio::fs::remove_file(&part).await;
    // A wrong blob stays, named by its own hash: unreferenced, like any other.
    if imported?.blob != *id {
        return Err(ExchangeError::WrongHash(id.clone()));
    }
    Ok(())
}

/// Fetches blob `id` (`size` bytes) into the file `part`.
async fn fetch_blob(
    conn: &mut Conn,
    id: &BlobId,
    size: u64,
    part: &std::path::Path,
) -> Result<(), ExchangeError> {
    let mut file = tokio::fs::File::create(part).await?;
    let mut offset = 0u64;
    while offset < size {
        let request = Frame::Blob(BlobRequest {
            id: id.clone(),
            offset,
            len: BLOB_CHUNK,
        });
        let chunk = match conn.ask(&request, EXCHANGE_TIMEOUT).await? {
            Frame::Chunk(c) => c,
            other => return Err(unexpected("chunk", &other).into()),
        };
        if chunk.is_empty() {
            return Err(ExchangeError::ShortBlob {
                id: id.clone(),
                offset,
                size,
            });
        }
        file.write_all(&chunk).await?;
        offset += chunk.len() as u64;
    }
    file.flush().await?;
    Ok(file.sync_all().await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::chunk::noise;
    use crate::pool::seal::{ClientHandshake, REPLY_LEN, WIRE_VERSION};
    use crate::store::model::{Mac, Node};
    use std::net::Ipv4Addr;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    fn summary(id: u64) -> Summary {
        Summary {
            id,
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7946),
            epoch: 1,
            seq: 1,
            version: "test".into(),
            uptime_secs: 0,
            dhcp: None,
            services: Vec::new(),
            nfs_clients: None,
            holds_service_address: false,
            nfs_known: None,
            blobs: 0,
            blob_bytes: 0,
            newest_own: None,
            has: Default::default(),
            feed_floor: 0,
            drained: None,
        }
    }

    #[tokio::test]
    async fn one_connection_carries_the_pull_the_summaries_and_the_blobs() {
        let dir = std::env::temp_dir().join(format!("drover-repl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
        let (a, b) = (
            Arc::new(Store::open(&a_dir).unwrap()),
            Arc::new(Store::open(&b_dir).unwrap()),
        );
        a.write(|w| {
            w.put(&Node {
                name: "n1".into(),
                mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
                ip: None,
                image: None,
                group: None,
                aliases: Vec::new(),
                root: None,
                image_version: None,
                swarm: None,
            })
        })
        .unwrap();
        let key = ClusterKey::from_bytes([3; 32]);
        let (a_sums, b_sums) = (Summaries::new(a.member()), Summaries::new(b.member()));
        a_sums.publish(summary(a.member()));
        let (addr, shutdown, _keys) = listen(&a, &a_dir, &key, a_sums.clone()).await;

        let mut conn = Conn::connect(addr, &key, EXCHANGE_TIMEOUT).await.unwrap();
        let pulled = pull(&mut conn, &b).await.unwrap();
        assert!(pulled.merged >= 1 && pulled.carried >= pulled.merged);
        assert_eq!(swap_summaries(&mut conn, &b_sums).await.unwrap(), 1);
        assert!(b_sums.get(a.member()).is_some());
        assert_eq!(
            fetch_missing_blobs(&mut conn, &b, &Blobs::new(&b_dir))
                .await
                .unwrap(),
            Fetched::default()
        );
        // Answers are not requests: the listener hangs up.
        let r = conn.ask(&Frame::Chunk(Vec::new()), EXCHANGE_TIMEOUT).await;
        assert!(
            matches!(r, Err(ConnError::Closed | ConnError::Io(_))),
            "{r:?}"
        );

        // Nor does it let in a peer with another key.
        let other = ClusterKey::from_bytes([4; 32]);
        let r = Conn::connect(addr, &other, EXCHANGE_TIMEOUT).await;
        assert!(
            matches!(r, Err(ConnError::Io(_) | ConnError::Seal(_))),
            "{:?}",
            r.err()
        );

        // A member of a newer build is refused, and learns why, with both versions.
        let newer = WIRE_VERSION + 1;
        let client = ClientHandshake::start_version(&key, [7; 32], newer);
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(client.hello()).await.unwrap();
        let mut reply = [0u8; REPLY_LEN];
        raw.read_exact(&mut reply).await.unwrap();
        let refused = client.finish(&reply).err();
        assert!(
            matches!(refused, Some(SealError::Version { peer, ours, .. })
                if peer == WIRE_VERSION && ours == newer),
            "{refused:?}"
        );

        silent_peers_and_junk_hold_nothing(addr, &key, &b).await;
        a_replayed_session_is_refused(addr, &key, &b).await;
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Serves `store` (state in `dir`) on a loopback port with `key`; the address, the token
    /// that stops it, and the key channel's sender (kept alive by the caller).
    async fn listen(
        store: &Arc<Store>,
        dir: &std::path::Path,
        key: &ClusterKey,
        summaries: Summaries,
    ) -> (
        SocketAddrV4,
        CancellationToken,
        watch::Sender<Arc<[ClusterKey]>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            panic!("IPv4 loopback");
        };
        let shutdown = CancellationToken::new();
        let (sender, keys) = watch::channel(Arc::from(vec![key.clone()]));
        tokio::spawn(serve(
            listener,
            Listener {
                store: store.clone(),
                state_dir: dir.to_path_buf(),
                layers: Arc::new(Receiver::new(dir, store.member())),
                keys,
                summaries,
            },
            shutdown.clone(),
        ));
        (addr, shutdown, sender)
    }

    /// Reads until the peer closes (or 5 s pass); what it sent.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "the listener did not close the connection");
        got
    }

    async fn silent_peers_and_junk_hold_nothing(
        addr: SocketAddrV4,
        key: &ClusterKey,
        b: &Arc<Store>,
    ) {
        // More silent connections than there are serving slots, from another address.
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKES_PER_ADDRESS + 8 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            silent.push(socket.connect(addr.into()).await.unwrap());
        }
        // A member still gets its exchange answered meanwhile.
        let mut conn = Conn::connect(addr, key, EXCHANGE_TIMEOUT).await.unwrap();
        pull(&mut conn, b).await.unwrap();
        // The silent ones past the per-address cap were closed at once, the others at the
        // handshake deadline, without an answer.
        for s in &mut silent {
            assert!(read_to_close(s).await.is_empty());
        }
        // A length prefix claiming a 32 MiB frame, as a peer of the old wire format would
        // send: it is no hello, and the listener hangs up without reading more.
        let mut junk = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut hello = vec![0u8; crate::pool::seal::HELLO_LEN];
        hello[..4].copy_from_slice(&(32u32 << 20).to_be_bytes());
        junk.write_all(&hello).await.unwrap();
        assert!(read_to_close(&mut junk).await.is_empty());
    }

    async fn a_replayed_session_is_refused(addr: SocketAddrV4, key: &ClusterKey, b: &Arc<Store>) {
        // A proxy records what a member sends in one exchange.
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let std::net::SocketAddr::V4(via) = proxy.local_addr().unwrap() else {
            panic!("IPv4 loopback");
        };
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        tokio::spawn(async move {
            let (mut client, _) = proxy.accept().await.unwrap();
            let mut server = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut cr, mut cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let up = async {
                let mut buf = [0u8; 4096];
                loop {
                    let n = cr.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            };
            let down = tokio::io::copy(&mut sr, &mut cw);
            let _ = tokio::join!(up, down);
        });
        let mut conn = Conn::connect(via, key, EXCHANGE_TIMEOUT).await.unwrap();
        pull(&mut conn, b).await.unwrap();
        drop(conn);
        let wait =
            common_wait(|| recorded.lock().unwrap().len() > crate::pool::seal::HELLO_LEN + 32);
        assert!(wait.await, "nothing recorded");
        // The replay's handshake (its frames never get read): the listener's fresh reply,
        // then the door. Only the handshake is sent, so that the close is a FIN whatever the
        // timing (unread bytes would make it a reset that may discard the reply).
        let handshake = crate::pool::seal::HELLO_LEN + crate::pool::seal::FINISH_LEN;
        let bytes = recorded.lock().unwrap()[..handshake].to_vec();
        let mut replay = tokio::net::TcpStream::connect(addr).await.unwrap();
        replay.write_all(&bytes).await.unwrap();
        let got = read_to_close(&mut replay).await;
        assert_eq!(got.len(), crate::pool::seal::REPLY_LEN);
    }

    async fn common_wait(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..50 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn image_of(files: &[crate::store::model::ImageFile]) -> Image {
        use crate::store::model::{ImageFiles, ImageVersion};
        let versions: Vec<ImageVersion> = files
            .iter()
            .enumerate()
            .map(|(i, f)| ImageVersion {
                number: i as u32 + 1,
                created_ms: 1,
                by: "test".into(),
                what: "add".into(),
                files: ImageFiles {
                    kernel: f.clone(),
                    initrd: None,
                    rootfs: None,
                    initramfs: None,
                },
                recipe: None,
            })
            .collect();
        Image {
            name: "img".into(),
            kernel: files[files.len() - 1].clone(),
            initrd: None,
            cmdline: String::new(),
            rootfs: None,
            initramfs: None,
            root: Default::default(),
            persistent: Vec::new(),
            versions,
            swarm: true,
        }
    }

    #[tokio::test]
    async fn a_member_fetches_only_the_chunks_it_lacks() {
        let dir = std::env::temp_dir().join(format!("drover-repl-chunks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
        let (a, b) = (
            Arc::new(Store::open(&a_dir).unwrap()),
            Arc::new(Store::open(&b_dir).unwrap()),
        );
        let (a_blobs, b_blobs) = (Blobs::new(&a_dir), Blobs::new(&b_dir));
        let v1 = noise(7, 2 << 20);
        let mut v2 = v1.clone();
        v2.splice(1 << 20..1 << 20, noise(8, 30_000));
        let put = |blobs: &Blobs, data: &[u8]| {
            blobs
                .import_with(|w| std::io::Write::write_all(w, data).map_err(ImageError::from))
                .unwrap()
        };
        let (f1, f2) = (put(&a_blobs, &v1), put(&a_blobs, &v2));
        // A blob stored whole, as by a member from before chunking.
        let old = noise(9, 100_000);
        let old_id = blake3::hash(&old).to_hex().to_string();
        std::fs::write(a_blobs.dir().join(&old_id), &old).unwrap();
        let f3 = crate::store::model::ImageFile {
            blob: old_id.clone(),
            size: old.len() as u64,
        };
        let image = image_of(&[f1.clone(), f2.clone(), f3]);
        a.write(|w| w.put(&image)).unwrap();
        // B has version 1 already.
        assert_eq!(put(&b_blobs, &v1), f1);

        let key = ClusterKey::from_bytes([5; 32]);
        let (addr, shutdown, _keys) = listen(&a, &a_dir, &key, Summaries::new(a.member())).await;
        let mut conn = Conn::connect(addr, &key, EXCHANGE_TIMEOUT).await.unwrap();
        pull(&mut conn, &b).await.unwrap();
        let fetched = fetch_missing_blobs(&mut conn, &b, &b_blobs).await.unwrap();
        assert_eq!(fetched.blobs, 2, "{fetched:?}");
        // Version 2's new chunks, its manifest and the whole old blob crossed; not version 2.
        let new_in_v2: u64 = b_blobs
            .chunk_list(&f2.blob)
            .unwrap()
            .iter()
            .filter(|(id, _)| {
                !b_blobs
                    .chunk_list(&f1.blob)
                    .unwrap()
                    .iter()
                    .any(|c| c.0 == *id)
            })
            .map(|c| c.1)
            .sum();
        assert!(
            new_in_v2 > 0 && new_in_v2 < v2.len() as u64 / 2,
            "{new_in_v2}"
        );
        let manifest_len = b_blobs.manifest_bytes(&f2.blob).unwrap().unwrap().len() as u64;
        assert_eq!(fetched.bytes, new_in_v2 + manifest_len + old.len() as u64);
        assert_eq!(fetched.reused, v2.len() as u64 - new_in_v2);
        let read = |id: &str| {
            let mut out = Vec::new();
            b_blobs.open(id).unwrap().read_to_end(&mut out).unwrap();
            out
        };
        assert_eq!(read(&f2.blob), v2);
        assert_eq!(read(&old_id), old);
        // Nothing left to fetch.
        let again = fetch_missing_blobs(&mut conn, &b, &b_blobs).await.unwrap();
        assert_eq!(again, Fetched::default());
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
