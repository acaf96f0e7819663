//! The node's seeder: serves the chunks this node holds to its peers over HTTP
//! (`GET /chunks/{hash}` on [`SEED_PORT`]), while it boots and for a while after.
//!
//! Choice: a forked child process of the agent, started once before the RAM-root download
//! (the agent is still single-threaded then). The chunks live in [`SWARM_DIR`] under `/run`,
//! a tmpfs that the agent moves into the new root at `switch_root`, so they survive the
//! switch without a copy; the child changes into that directory first and names every file
//! relative to it, which keeps working after the mount moves. After `switch_root` the child
//! is a child of the image's init, which reaps it.
//!
//! Bounds: at most [`MAX_UPLOADS`] connections at once (more get 503 and are closed), all
//! uploads together paced to [`UPLOAD_RATE`] by one token bucket, every read and write under
//! [`IO_TIMEOUT`]. The child deletes the chunks and exits [`SEED_LIFETIME`] after it started,
//! or as soon as the kernel's `MemAvailable` drops below [`MIN_AVAILABLE`] (the chunks are a
//! second copy of the image in RAM: the node's own work comes first). Each chunk is checked
//! against its name before it is sent, like a member does.
//!
//! Not here: what is fetched (`super::swarm`), the tracker (`crate::swarm`).

use crate::image::reader::read_chunk;
use crate::net::sys;
use crate::swarm::schedule::Bucket;
use crate::swarm::wire::{self, Request};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The port a node's seeder listens on.
pub const SEED_PORT: u16 = 7171;
/// Where the agent keeps the chunks it fetched (the blob store's layout: `xx/HASH`).
pub const SWARM_DIR: &str = "/run/drover-swarm";
/// Connections served at once.
pub const MAX_UPLOADS: usize = 4;
/// Upload rate of all connections together, bytes per second (100 Mbit/s): a node's own
/// boot and work keep most of its link.
pub const UPLOAD_RATE: u64 = 12_500_000;
/// Bytes the bucket may send at once after a pause.
const BURST: u64 = 1 << 20;
/// How long the seeder lives.
pub const SEED_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Below this much available memory the seeder gives its chunks back.
pub const MIN_AVAILABLE: u64 = 32 << 20;
/// Read and write timeout per connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the lifetime and memory are checked.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Bytes written per bucket take.
const PIECE: u64 = 64 * 1024;

/// Binds the seeder's port and forks the seeder; returns its pid. Call it while the agent has
/// no other thread.
pub fn start(dir: &Path, port: u16) -> io::Result<u32> {
    std::fs::create_dir_all(dir)?;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    // Opened now: after switch_root the child's /proc is gone, but an open seq file can be
    // read again from the start.
    let meminfo = File::open("/proc/meminfo").ok();
    match sys::fork()? {
        Some(pid) => Ok(pid),
        None => child(dir, listener, meminfo),
    }
}

struct Seeder {
    bucket: Mutex<Bucket>,
    start: Instant,
    active: AtomicUsize,
    served: AtomicU64,
}

fn child(dir: &Path, listener: TcpListener, meminfo: Option<File>) -> ! {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("drover-seed: BUG: {info}");
        std::process::exit(1);
    }));
    if let Err(e) = std::env::set_current_dir(dir) {
        eprintln!("drover-seed: {}: {e}; not seeding", dir.display());
        std::process::exit(1);
    }
    let seeder = Arc::new(Seeder::new());
    let watch = seeder.clone();
    std::thread::spawn(move || watchdog(&watch, meminfo));
    accept_loop(&listener, &seeder, Path::new("."));
    std::process::exit(0)
}

impl Seeder {
    fn new() -> Seeder {
        Seeder {
            bucket: Mutex::new(Bucket::new(UPLOAD_RATE, BURST, Duration::ZERO)),
            start: Instant::now(),
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
        }
    }
}

/// Serves chunks under `dir` to every connection, a thread each, at most [`MAX_UPLOADS`].
fn accept_loop(listener: &TcpListener, seeder: &Arc<Seeder>, dir: &Path) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            // Out of file descriptors or memory: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if seeder.active.fetch_add(1, Relaxed) >= MAX_UPLOADS {
            seeder.active.fetch_sub(1, Relaxed);
            refuse(stream, 503, "Busy");
            continue;
        }
        let (s, dir) = (seeder.clone(), dir.to_path_buf());
        let spawned = std::thread::Builder::new().spawn(move || {
            serve(stream, &s, &dir);
            s.active.fetch_sub(1, Relaxed);
        });
        if spawned.is_err() {
            seeder.active.fetch_sub(1, Relaxed);
        }
    }
}

/// A seeder of the chunks under `dir` on a loopback port, in a thread of the test process.
#[cfg(test)]
pub(crate) fn serve_in_thread(dir: &Path) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound");
    let dir = dir.to_path_buf();
    std::thread::spawn(move || accept_loop(&listener, &Arc::new(Seeder::new()), &dir));
    addr
}

fn refuse(mut stream: TcpStream, status: u16, reason: &str) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.write_all(wire::response_head(status, reason, 0).as_bytes());
}

fn serve(mut stream: TcpStream, seeder: &Seeder, dir: &Path) {
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = Vec::with_capacity(512);
    let mut piece = [0u8; 512];
    let id = loop {
        match stream.read(&mut piece) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
        match wire::parse_request(&buf) {
            Request::Incomplete => {}
            Request::Bad => return refuse(stream, 400, "Bad Request"),
            Request::Chunk(id) => break id,
        }
    };
    let bytes = match read_chunk(dir, &id, None) {
        Ok(b) => b,
        // Not fetched yet, or (InvalidData) damaged: either way this node does not have it.
        Err(_) => return refuse(stream, 404, "Not Found"),
    };
    let len = bytes.len() as u64;
    if stream
        .write_all(wire::response_head(200, "OK", len).as_bytes())
        .is_err()
    {
        return;
    }
    let mut sent = 0u64;
    while sent < len {
        let now = seeder.start.elapsed();
        let take = match seeder.bucket.lock() {
            Ok(mut b) => b.take(now, (len - sent).min(PIECE)),
            // Another upload panicked holding the bucket: stop serving.
            Err(_) => return,
        };
        match take {
            Ok(n) => {
                // `sent + n <= len`, which came from `bytes.len()`.
                let range = sent as usize..(sent + n) as usize;
                if stream.write_all(&bytes[range]).is_err() {
                    return;
                }
                sent += n;
                seeder.served.fetch_add(n, Relaxed);
            }
            Err(wait) => std::thread::sleep(wait),
        }
    }
}

fn watchdog(seeder: &Seeder, mut meminfo: Option<File>) {
    loop {
        std::thread::sleep(WATCH_EVERY);
        let why = if seeder.start.elapsed() >= SEED_LIFETIME {
            "its time is up".to_string()
        } else if let Some(avail) = meminfo.as_mut().and_then(mem_available) {
            if avail >= MIN_AVAILABLE {
                continue;
            }
            format!("memory is needed ({} MiB available)", avail >> 20)
        } else {
            continue;
        };
        let freed = remove_chunks(Path::new("."));
        eprintln!(
            "drover-seed: served {:.1} MiB to peers; freed {:.1} MiB of chunks and exiting: {why}",
            seeder.served.load(Relaxed) as f64 / (1 << 20) as f64,
            freed as f64 / (1 << 20) as f64
        );
        std::process::exit(0);
    }
}

/// `MemAvailable` in bytes, read again from the start of the open file.
fn mem_available(f: &mut File) -> Option<u64> {
    f.rewind().ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    parse_mem_available(&text)
}

/// `MemAvailable:  123456 kB` from `/proc/meminfo` text, in bytes.
fn parse_mem_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Deletes the chunk files under `dir` (two levels: `xx/HASH`); returns the bytes freed.
pub fn remove_chunks(dir: &Path) -> u64 {
    let mut freed = 0;
    let Ok(subdirs) = std::fs::read_dir(dir) else {
        return 0;
    };
    for sub in subdirs.flatten() {
        let Ok(files) = std::fs::read_dir(sub.path()) else {
            continue;
        };
        for f in files.flatten() {
            let len = f.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(f.path()).is_ok() {
                freed += len;
            }
        }
        let _ = std::fs::remove_dir(sub.path());
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2 << 20));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots\n"), None);
    }
}
