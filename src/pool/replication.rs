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
//!    does not have, in [`BLOB_CHUNK`] pieces; a blob is kept only if its BLAKE3 hash is the
//!    one the record names (content addressing makes the peer's word irrelevant).
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
use super::summary::{Relayed, Summary, Table};
use super::sync::{self, Digest};
use crate::image::{Blobs, ImageError};
use crate::net::limit::Caps;
use crate::store::model::{BlobId, Image};
use crate::store::{Store, StoreError};
use std::io;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
            Frame::Blob(BlobRequest { id, offset, len }) => {
                let path = self.blobs.path(&id).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{id:?} is not a blob id"),
                    )
                })?;
                let mut file = tokio::fs::File::open(&path).await?;
                tokio::io::AsyncSeekExt::seek(&mut file, io::SeekFrom::Start(offset)).await?;
                let mut buf = Vec::new();
                file.take(u64::from(len.min(BLOB_CHUNK)))
                    .read_to_end(&mut buf)
                    .await?;
                Ok(Frame::Chunk(buf))
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
        Ok(0) => {}
        Ok(n) => tracing::info!(%peer, blobs = n, "pool: fetched image files"),
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

/// The blobs the store's images name that `blobs` does not have.
pub fn missing_blobs(store: &Store, blobs: &Blobs) -> Result<Vec<(BlobId, u64)>, StoreError> {
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

/// Fetches every missing blob from the peer on `conn` (step 3); returns how many were
/// stored.
pub async fn fetch_missing_blobs(
    conn: &mut Conn,
    store: &Arc<Store>,
    blobs: &Blobs,
) -> Result<usize, ExchangeError> {
    let (s, b) = (store.clone(), blobs.clone());
    let missing = blocking(move || missing_blobs(&s, &b)).await?;
    let mut fetched = 0;
    for (id, size) in missing {
        let Some(final_path) = blobs.path(&id) else {
            continue;
        };
        if let Some(dir) = final_path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let part = final_path.with_file_name(format!(".fetch-{id}"));
        let got = fetch_blob(conn, &id, size, &part).await;
        if let Err(e) = got {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        // Import verifies: the blob lands under the hash of what arrived.
        let (b, p) = (blobs.clone(), part.clone());
        let imported = blocking(move || b.import_file(&p)).await;
        let _ = tokio::fs::remove_file(&part).await;
        let imported = imported?;
        if imported.blob != id {
            if let Some(wrong) = blobs.path(&imported.blob) {
                let _ = tokio::fs::remove_file(wrong).await;
            }
            return Err(ExchangeError::WrongHash(id));
        }
        fetched += 1;
    }
    Ok(fetched)
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
    use crate::store::model::{Mac, Node};
    use std::net::Ipv4Addr;

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
            blobs: 0,
            blob_bytes: 0,
            newest_own: None,
            has: Default::default(),
            feed_floor: 0,
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
            })
        })
        .unwrap();
        let key = ClusterKey::from_bytes([3; 32]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            panic!("IPv4 loopback");
        };
        let (a_sums, b_sums) = (Summaries::new(a.member()), Summaries::new(b.member()));
        a_sums.publish(summary(a.member()));
        let shutdown = CancellationToken::new();
        let (_keys, keys) = watch::channel(Arc::from(vec![key.clone()]));
        tokio::spawn(serve(
            listener,
            Listener {
                store: a.clone(),
                state_dir: a_dir.clone(),
                layers: Arc::new(Receiver::new(&a_dir, a.member())),
                keys,
                summaries: a_sums.clone(),
            },
            shutdown.clone(),
        ));

        let mut conn = Conn::connect(addr, &key, EXCHANGE_TIMEOUT).await.unwrap();
        let pulled = pull(&mut conn, &b).await.unwrap();
        assert!(pulled.merged >= 1 && pulled.carried >= pulled.merged);
        assert_eq!(swap_summaries(&mut conn, &b_sums).await.unwrap(), 1);
        assert!(b_sums.get(a.member()).is_some());
        assert_eq!(
            fetch_missing_blobs(&mut conn, &b, &Blobs::new(&b_dir))
                .await
                .unwrap(),
            0
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

        silent_peers_and_junk_hold_nothing(addr, &key, &b).await;
        a_replayed_session_is_refused(addr, &key, &b).await;
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
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
}
