//! The agent's swarm download of a RAM root: the manifest from a member, peers from the
//! members' trackers, chunks from peers and members at once, each checked, the tar unpacked
//! in order as the chunks arrive.
//!
//! Data flow: [`manifest`] asks each member in turn for `/images/{image}/rootfs.manifest`
//! (the blob id comes in `X-Drover-Blob`); [`announce`] tells every member that this node
//! holds the blob and seeds it, and collects the peers they name; [`download`] runs
//! [`Limits::parallel`] fetch threads over one [`Schedule`] (peers first, members last
//! resort, see `crate::swarm::schedule`), each writing a verified chunk into the chunk
//! directory (temp file, then rename: a chunk file that exists is whole and checked, so the
//! seeder serves it at once), while the calling thread feeds the chunks in order to
//! `image::unpack`, the one tar unpacker. A chunk that a peer sends wrong, late or not at all
//! is fetched again elsewhere; when no source is left for a chunk the download fails and the
//! caller falls back to the plain download from members.
//!
//! Not here: serving chunks to peers (`super::seed`), the choice of sources (`crate::swarm`).

use super::cmdline::ServerUrl;
use super::{http, RootSink};
use crate::image::chunk::{self, ChunkRef, Manifest};
use crate::image::{reader, unpack};
use crate::swarm::schedule::{Failure, Limits, Next, Schedule, Source};
use crate::swarm::wire;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Fetches at once, and per source.
pub const LIMITS: Limits = Limits {
    parallel: 6,
    per_peer: 2,
    per_member: 4,
};
/// Peers are asked with less patience than members: another source is always there.
const PEER_CONNECT: Duration = Duration::from_secs(2);
const PEER_READ: Duration = Duration::from_secs(5);
/// How long an announce may take per member.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("no member served the manifest: {0}")]
    NoManifest(String),
    #[error("no source left for chunk {chunk} of {count}")]
    Stuck { chunk: usize, count: usize },
    #[error("writing a chunk into {dir}: {source}")]
    Local { dir: String, source: io::Error },
    #[error("unpacking: {0}")]
    Unpack(io::Error),
}

/// The root tarball as a manifest, and which blob it is.
pub struct Plan {
    pub blob: String,
    pub manifest: Manifest,
    /// The member that answered: the node's server from now on (boot events, node files).
    pub server: ServerUrl,
}

/// What a download did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub stats: unpack::Stats,
    /// Bytes of verified chunks per kind of source.
    pub from_members: u64,
    pub from_peers: u64,
    /// Fetches that failed and were tried again elsewhere.
    pub retries: u64,
    /// Peers the download could use at the start, and at the end (not banned).
    pub peers: usize,
    pub peers_left: usize,
}

/// The manifest of `image`'s root tarball from the first member that serves it.
pub fn manifest(servers: &[ServerUrl], image: &str) -> Result<Plan, SwarmError> {
    let mut why = Vec::new();
    for server in servers {
        let path = format!("{}/images/{image}/rootfs.manifest", server.prefix);
        match fetch_manifest(server, &path) {
            Ok(plan) => return Ok(plan),
            Err(e) => why.push(format!("{server}: {e}")),
        }
    }
    Err(SwarmError::NoManifest(why.join("; ")))
}

fn fetch_manifest(server: &ServerUrl, path: &str) -> Result<Plan, String> {
    let (head, mut body) = http::get_full(server, path, http::CONNECT_TIMEOUT, http::READ_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let max = Manifest::encoded_len_of(chunk::MAX_CHUNKS) as u64;
    if body.length() > max {
        return Err(format!("a manifest of {} bytes", body.length()));
    }
    let blob = head
        .header(wire::BLOB_HEADER)
        .filter(|b| chunk::parse_hex(b).is_some())
        .ok_or("no blob id with the manifest")?
        .to_string();
    let mut bytes = Vec::new();
    body.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let manifest = Manifest::decode(&bytes).map_err(|e| e.to_string())?;
    Ok(Plan {
        blob,
        manifest,
        server: server.clone(),
    })
}

/// Announces to every member that this node holds `blob` and seeds it on `port`; returns the
/// peers they name, without duplicates. A member that does not answer names none.
pub fn announce(
    servers: &[ServerUrl],
    mac: &str,
    blob: &str,
    port: u16,
) -> (Vec<SocketAddrV4>, Vec<String>) {
    let body = serde_json::json!({ "blob": blob, "port": port }).to_string();
    let mut peers = Vec::new();
    let mut errors = Vec::new();
    for server in servers {
        let path = format!("{}/boot/{mac}/swarm", server.prefix);
        let answer =
            http::post_json_body(server, &path, &body, ANNOUNCE_TIMEOUT, wire::MAX_PEER_LIST)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<wire::PeerList>(&b).map_err(|e| e.to_string())
                });
        match answer {
            Ok(list) => {
                for p in list.peers {
                    if !peers.contains(&p) {
                        peers.push(p);
                    }
                }
            }
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    (peers, errors)
}

/// Sends the download's figures to the first member that takes them.
pub fn report(servers: &[ServerUrl], mac: &str, o: &Outcome) -> Result<(), String> {
    let body = serde_json::to_string(&wire::Report {
        members: o.from_members,
        peers: o.from_peers,
        retries: o.retries,
    })
    .map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    for server in servers {
        let path = format!("{}/boot/{mac}/swarm/report", server.prefix);
        match http::post_json(server, &path, &body, ANNOUNCE_TIMEOUT) {
            Ok(204) => return Ok(()),
            Ok(status) => errors.push(format!("{server}: answered {status}")),
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    Err(errors.join("; "))
}

struct State {
    schedule: Schedule,
    outcome: Outcome,
    /// Why the download cannot go on; every thread stops when it is set.
    abort: Option<SwarmError>,
    /// The unpacker finished (or failed): fetch threads stop.
    unpacked: bool,
}

struct Shared<'a> {
    state: Mutex<State>,
    changed: Condvar,
    manifest: &'a Manifest,
    members: &'a [ServerUrl],
    peers: Vec<ServerUrl>,
    dir: &'a Path,
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A fetch thread that panicked aborts the process (panic = "abort"): no poisoning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fetches the chunks of `manifest` into `dir` from `peers` and `members` and unpacks the
/// tar into `sink` as they arrive.
pub(super) fn download(
    members: &[ServerUrl],
    peers: &[SocketAddrV4],
    manifest: &Manifest,
    dir: &Path,
    sink: &mut dyn RootSink,
) -> Result<Outcome, SwarmError> {
    let peer_urls: Vec<ServerUrl> = peers
        .iter()
        .map(|p| ServerUrl {
            addr: std::net::SocketAddr::V4(*p),
            prefix: String::new(),
        })
        .collect();
    let shared = Shared {
        state: Mutex::new(State {
            schedule: Schedule::new(manifest.chunks.len(), peers.len(), members.len(), LIMITS),
            outcome: Outcome {
                peers: peers.len(),
                ..Outcome::default()
            },
            abort: None,
            unpacked: false,
        }),
        changed: Condvar::new(),
        manifest,
        members,
        peers: peer_urls,
        dir,
    };
    let unpacked = std::thread::scope(|scope| {
        for _ in 0..LIMITS.parallel {
            scope.spawn(|| fetch_loop(&shared));
        }
        let mut reader = InOrder {
            shared: &shared,
            next: 0,
            buf: Vec::new(),
            at: 0,
        };
        let result = sink.take(&mut reader).and_then(|stats| {
            // The tar's end padding: read it too, so that every chunk is here (and seeded).
            io::copy(&mut reader, &mut io::sink()).map(|_| stats)
        });
        let mut st = shared.lock();
        st.unpacked = true;
        shared.changed.notify_all();
        drop(st);
        result
    });
    let mut st = shared.lock();
    if let Some(e) = st.abort.take() {
        return Err(e);
    }
    let stats = unpacked.map_err(SwarmError::Unpack)?;
    st.outcome.stats = stats;
    st.outcome.peers_left = st.schedule.usable_peers();
    Ok(st.outcome.clone())
}

/// One fetch thread: takes assignments until the schedule is done or the download stops.
fn fetch_loop(shared: &Shared<'_>) {
    loop {
        let a = {
            let mut st = shared.lock();
            loop {
                if st.abort.is_some() || st.unpacked {
                    return;
                }
                match st.schedule.poll() {
                    Next::Fetch(a) => break a,
                    Next::Done => return,
                    Next::Wait => st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Next::Stuck(chunk) => {
                        st.abort = Some(SwarmError::Stuck {
                            chunk,
                            count: shared.manifest.chunks.len(),
                        });
                        shared.changed.notify_all();
                        return;
                    }
                }
            }
        };
        let c = shared.manifest.chunks[a.chunk];
        let server = match a.source {
            Source::Peer(i) => &shared.peers[i],
            Source::Member(i) => &shared.members[i],
        };
        let (connect, read) = match a.source {
            Source::Peer(_) => (PEER_CONNECT, PEER_READ),
            Source::Member(_) => (http::CONNECT_TIMEOUT, http::READ_TIMEOUT),
        };
        let result = fetch_chunk(server, &c, connect, read, shared.dir);
        let mut st = shared.lock();
        match result {
            Ok(()) => {
                st.schedule.done(a);
                match a.source {
                    Source::Peer(_) => st.outcome.from_peers += u64::from(c.len),
                    Source::Member(_) => st.outcome.from_members += u64::from(c.len),
                }
            }
            Err(ChunkError::Source(why)) => {
                st.schedule.failed(a, why);
                st.outcome.retries += 1;
            }
            Err(ChunkError::Local(source)) => {
                st.schedule.failed(a, Failure::Missing);
                st.abort.get_or_insert(SwarmError::Local {
                    dir: shared.dir.display().to_string(),
                    source,
                });
            }
        }
        shared.changed.notify_all();
    }
}

enum ChunkError {
    /// The source's fault: try another.
    Source(Failure),
    /// This node's: the chunk cannot be kept (tmpfs full).
    Local(io::Error),
}

/// Fetches one chunk from `server`, checks its length and hash, and stores it in `dir`.
fn fetch_chunk(
    server: &ServerUrl,
    c: &ChunkRef,
    connect: Duration,
    read: Duration,
    dir: &Path,
) -> Result<(), ChunkError> {
    let path = format!("{}/chunks/{}", server.prefix, chunk::hex(&c.id));
    let mut body = match http::get_with(server, &path, connect, read) {
        Ok(b) => b,
        Err(http::HttpError::Status { status: 404, .. }) => {
            return Err(ChunkError::Source(Failure::Missing))
        }
        Err(_) => return Err(ChunkError::Source(Failure::Unreachable)),
    };
    if body.length() != u64::from(c.len) {
        return Err(ChunkError::Source(Failure::Corrupt));
    }
    let mut bytes = Vec::with_capacity(c.len as usize);
    if body.read_to_end(&mut bytes).is_err() {
        return Err(ChunkError::Source(Failure::Unreachable));
    }
    if blake3::hash(&bytes).as_bytes() != &c.id {
        return Err(ChunkError::Source(Failure::Corrupt));
    }
    store_chunk(dir, &c.id, &bytes).map_err(ChunkError::Local)
}

/// Writes a verified chunk as `dir/xx/HASH` through a temp file, so that a reader never sees
/// part of one.
fn store_chunk(dir: &Path, id: &chunk::ChunkId, bytes: &[u8]) -> io::Result<()> {
    let path = reader::chunk_path(dir, id);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, &path)
}

/// The blob in order, each chunk read from the chunk directory once the schedule has it.
struct InOrder<'a, 'b> {
    shared: &'a Shared<'b>,
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl Read for InOrder<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            let Some(c) = self.shared.manifest.chunks.get(self.next) else {
                return Ok(0);
            };
            {
                let mut st = self.shared.lock();
                while !st.schedule.is_done(self.next) {
                    if st.abort.is_some() {
                        return Err(io::Error::other("the download stopped"));
                    }
                    st = self
                        .shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
            // Checked again on the way in: cheap next to unpacking, and the tmpfs copy is
            // what peers get.
            self.buf = reader::read_chunk(self.shared.dir, &c.id, Some(c.len))?;
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::chunk::noise;
    use std::net::TcpListener;
    use std::path::PathBuf;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("drover-swarm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Files by name, as `(name, bytes)`.
    type Files = Vec<(String, Vec<u8>)>;

    /// A tar of three files, its manifest and its chunks.
    fn image() -> (Files, Manifest, Vec<Vec<u8>>) {
        let files = vec![
            ("big".to_string(), noise(1, 600_000)),
            ("mid".to_string(), noise(2, 250_000)),
            ("small".to_string(), b"hello\n".to_vec()),
        ];
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let (mut rest, mut chunks, mut refs) = (&tar[..], Vec::new(), Vec::new());
        while !rest.is_empty() {
            let n = chunk::cut(rest);
            refs.push(ChunkRef {
                id: *blake3::hash(&rest[..n]).as_bytes(),
                len: n as u32,
            });
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        let manifest = Manifest {
            size: tar.len() as u64,
            chunks: refs,
        };
        (files, manifest, chunks)
    }

    /// A directory holding the chunks whose index `keep` accepts, served by a real seeder.
    fn holder(
        tag: &str,
        m: &Manifest,
        chunks: &[Vec<u8>],
        keep: impl Fn(usize) -> bool,
    ) -> SocketAddrV4 {
        let dir = tempdir(tag);
        for (i, (c, bytes)) in m.chunks.iter().zip(chunks).enumerate() {
            if keep(i) {
                store_chunk(&dir, &c.id, bytes).unwrap();
            }
        }
        match super::super::seed::serve_in_thread(&dir) {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        }
    }

    fn url(a: SocketAddrV4) -> ServerUrl {
        ServerUrl::parse(&format!("http://{a}")).unwrap()
    }

    /// A peer that answers every chunk request with bytes of the right length that are not
    /// the chunk.
    fn liar(m: &Manifest) -> SocketAddrV4 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lens: std::collections::HashMap<String, u32> = m
            .chunks
            .iter()
            .map(|c| (chunk::hex(&c.id), c.len))
            .collect();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).to_string();
                let hex = line.split('/').nth(2).unwrap_or("").get(..64).unwrap_or("");
                let len = lens.get(hex).copied().unwrap_or(1);
                let _ = s.write_all(wire::response_head(200, "OK", len.into()).as_bytes());
                let _ = s.write_all(&vec![0x55; len as usize]);
            }
        });
        match addr {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        }
    }

    /// An address where nothing listens: connections are refused.
    fn dead() -> SocketAddrV4 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        match l.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        }
    }

    /// A test root: the archive unpacked into a directory, as the agent does into /newroot.
    struct Dir<'a>(&'a Path);

    impl RootSink for Dir<'_> {
        fn name(&self) -> &str {
            "a test directory"
        }

        fn fresh(&mut self) -> io::Result<()> {
            Ok(())
        }

        fn take(&mut self, body: &mut dyn Read) -> io::Result<unpack::Stats> {
            unpack::unpack(body, self.0, true)
        }
    }

    fn assert_unpacked(root: &Path, files: &[(String, Vec<u8>)]) {
        for (name, data) in files {
            assert_eq!(&std::fs::read(root.join(name)).unwrap(), data, "{name}");
        }
    }

    #[test]
    fn peers_serve_liars_and_dead_peers_cost_retries_not_the_download() {
        let (files, m, chunks) = image();
        assert!(m.chunks.len() >= 6, "{} chunks", m.chunks.len());
        let member = holder("member", &m, &chunks, |_| true);
        // A peer that has half of the image: asked for the other half it answers 404.
        let half = holder("half", &m, &chunks, |i| i % 2 == 0);
        let peers = [liar(&m), half, dead()];
        let (dir, root) = (tempdir("dl-chunks"), tempdir("dl-root"));
        let o = download(&[url(member)], &peers, &m, &dir, &mut Dir(&root)).unwrap();
        assert_unpacked(&root, &files);
        assert_eq!(o.from_members + o.from_peers, m.size, "{o:?}");
        assert!(o.from_peers > 0, "the honest peer served part: {o:?}");
        assert!(
            o.from_members > 0,
            "the member served what no peer had: {o:?}"
        );
        assert!(
            o.retries >= 2,
            "the liar and the dead peer each cost a retry: {o:?}"
        );
        assert_eq!(o.peers, 3);
        assert!(o.peers_left <= 2, "the liar is banned: {o:?}");
        // Every chunk is kept, checked, for this node's own seeder.
        for c in &m.chunks {
            reader::read_chunk(&dir, &c.id, Some(c.len)).unwrap();
        }
    }

    #[test]
    fn members_alone_without_peers() {
        let (files, m, chunks) = image();
        let member = holder("solo-member", &m, &chunks, |_| true);
        let (dir, root) = (tempdir("solo-chunks"), tempdir("solo-root"));
        let o = download(&[url(dead()), url(member)], &[], &m, &dir, &mut Dir(&root)).unwrap();
        assert_unpacked(&root, &files);
        assert_eq!((o.from_members, o.from_peers), (m.size, 0));
    }

    #[test]
    fn a_chunk_nobody_has_fails_the_download_cleanly() {
        let (_, m, chunks) = image();
        let member = holder("gap-member", &m, &chunks, |i| i != 3);
        let peer = holder("gap-peer", &m, &chunks, |i| i < 3);
        let (dir, root) = (tempdir("gap-chunks"), tempdir("gap-root"));
        let err = download(&[url(member)], &[peer], &m, &dir, &mut Dir(&root)).unwrap_err();
        assert!(matches!(err, SwarmError::Stuck { chunk: 3, .. }), "{err}");
    }
}
