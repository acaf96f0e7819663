//! TFTP against real clients (curl, tftp-hpa's `tftp`, `atftp`) on 127.0.0.1.
//!
//! Each test starts `drover::tftp::serve::run_with_stats` on its own tokio runtime, on a free
//! port of 127.0.0.1, with a fresh temporary root, runs a client binary and compares the bytes
//! it wrote with the source. The server is driven as a library until `drover serve` wires TFTP
//! in; then these tests should spawn the binary instead.
//!
//! A missing client binary fails the test with the Debian package to install: `curl`,
//! `tftp-hpa`, `atftp`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover::tftp::serve::{run_with_stats, Limits, Roots, Stats, StatsSnapshot};
use tokio_util::sync::CancellationToken;

/// A server on its own runtime; stopped (and checked to stop) on drop.
struct Server {
    addr: SocketAddr,
    root: PathBuf,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    done: Option<std::sync::mpsc::Receiver<std::io::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(name: &str) -> Self {
        Self::with_limits(name, Limits::default())
    }

    fn with_limits(name: &str, limits: Limits) -> Self {
        let base =
            std::env::temp_dir().join(format!("drover-itest-tftp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std_socket.set_nonblocking(true).unwrap();
        let addr = std_socket.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let roots = Arc::new(Roots {
            dirs: vec![root.clone()],
        });
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let _guard = runtime.enter();
            let socket = tokio::net::UdpSocket::from_std(std_socket).unwrap();
            let (stats, shutdown) = (stats.clone(), shutdown.clone());
            runtime.spawn(async move {
                let result = run_with_stats(socket, roots, limits, stats, shutdown).await;
                let _ = tx.send(result);
            });
        }
        Server {
            addr,
            root,
            stats,
            shutdown,
            done: Some(rx),
            runtime: Some(runtime),
        }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The temporary directory around the root (for files that must stay outside).
    fn base(&self) -> PathBuf {
        self.root.parent().unwrap().to_path_buf()
    }

    fn out(&self, name: &str) -> PathBuf {
        self.base().join(format!("out-{name}"))
    }

    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.root.join(name), data).unwrap();
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Cancels the token and waits for `run` to return.
    fn stop(&mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        let rx = self.done.take().expect("stopped once");
        let result = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("tftp::serve::run did not return within 10 s of shutdown");
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.done.is_some() {
            let _ = self.stop();
        }
        let _ = std::fs::remove_dir_all(self.base());
    }
}

/// Deterministic, non-repeating-looking test data.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn require(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "client `{bin}` not found in PATH: install the Debian package `{package}` \
         (apt-get install {package})"
    );
}

/// Runs a client, killing it after `limit`.
fn run_client(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain the pipes while waiting, or a chatty client blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap();
            panic!(
                "{cmd:?} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

fn curl(server: &Server, remote: &str, local: &Path, blksize: Option<u16>) -> Output {
    require("curl", "curl");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--path-as-is", "-o"]).arg(local);
    if let Some(b) = blksize {
        cmd.args(["--tftp-blksize", &b.to_string()]);
    }
    cmd.arg(format!("tftp://{}/{remote}", server.addr));
    run_client(&mut cmd, LIMIT)
}

fn tftp_hpa(server: &Server, mode: &str, remote: &str, local: &Path) -> Output {
    require("tftp", "tftp-hpa");
    let mut cmd = Command::new("tftp");
    cmd.args(["-m", mode, "127.0.0.1", &server.port(), "-c", "get", remote])
        .arg(local);
    run_client(&mut cmd, Duration::from_secs(120))
}

fn atftp(server: &Server, remote: &str, local: &Path, options: &[&str]) -> Output {
    require("atftp", "atftp");
    let mut cmd = Command::new("atftp");
    cmd.args(["--get", "-r", remote, "-l"]).arg(local);
    for o in options {
        cmd.args(["--option", o]);
    }
    cmd.args(["127.0.0.1", &server.port()]);
    run_client(&mut cmd, LIMIT)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// tftp-hpa exits 0 even when the transfer fails; it reports the TFTP error on stdout/stderr.
fn client_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_same_file(got: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(got).unwrap_or_else(|e| panic!("{what}: no output file: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    assert!(got == want, "{what}: contents differ");
}

#[test]
fn curl_blksize_1468() {
    let server = Server::start("curl");
    for (name, len) in [
        ("odd.bin", 3 * 1024 * 1024 + 123),
        ("exact.bin", 1468 * 2048),
    ] {
        let data = pattern(len, len as u64);
        server.write(name, &data);
        let out = server.out(name);
        assert_ok(&curl(&server, name, &out, Some(1468)), "curl");
        assert_same_file(&out, &data, name);
    }
    let s = server.stats();
    assert_eq!(s.transfers_completed, 2, "{s:?}");
    assert_eq!(s.bytes_sent, (3 * 1024 * 1024 + 123 + 1468 * 2048) as u64);
}

#[test]
fn atftp_windowsize_and_tsize() {
    let server = Server::start("atftp");
    for (name, len) in [
        ("odd.bin", 5 * 1024 * 1024 + 77),
        ("exact.bin", 1428 * 1000),
    ] {
        let data = pattern(len, len as u64);
        server.write(name, &data);
        let out = server.out(name);
        let result = atftp(
            &server,
            name,
            &out,
            &["blksize 1428", "windowsize 8", "tsize"],
        );
        assert_ok(&result, "atftp");
        assert_same_file(&out, &data, name);
    }
    // The OACK really granted the window (atftp's trace shows the negotiation).
    require("atftp", "atftp");
    let data = pattern(100_000, 3);
    server.write("small.bin", &data);
    let out = server.out("small.bin");
    let mut cmd = Command::new("atftp");
    cmd.args(["--trace", "--get", "-r", "small.bin", "-l"])
        .arg(&out)
        .args([
            "--option",
            "blksize 1428",
            "--option",
            "windowsize 8",
            "--option",
            "tsize",
        ])
        .args(["127.0.0.1", &server.port()]);
    let result = run_client(&mut cmd, LIMIT);
    assert_ok(&result, "atftp --trace");
    let text = client_text(&result);
    assert!(
        // atftp prints backspaces inside this line, so match its parts.
        text.contains("received OACK <tsize: 100000, windowsize: 8, blksize: 1428,"),
        "{text}"
    );
    assert!(text.contains("sent ACK <block: 8>"), "{text}");
    assert_same_file(&out, &data, "small.bin");
    assert_eq!(server.stats().transfers_completed, 3);
}

#[test]
fn tftp_hpa_plain_512_byte_blocks() {
    let server = Server::start("hpa");
    for (name, len) in [("odd.bin", 2 * 1024 * 1024 + 1), ("exact.bin", 512 * 4000)] {
        let data = pattern(len, len as u64);
        server.write(name, &data);
        let out = server.out(name);
        assert_ok(&tftp_hpa(&server, "binary", name, &out), "tftp");
        assert_same_file(&out, &data, name);
    }
    assert_eq!(server.stats().transfers_completed, 2);
}

#[test]
fn tftp_hpa_netascii_round_trips_text() {
    let server = Server::start("netascii");
    let text: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i}\twith a bare \r in it\n").into_bytes())
        .collect();
    server.write("text.txt", &text);
    let out = server.out("text.txt");
    assert_ok(
        &tftp_hpa(&server, "netascii", "text.txt", &out),
        "tftp netascii",
    );
    assert_same_file(&out, &text, "netascii text");
}

#[test]
fn embedded_firmware_undionly() {
    let want = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/firmware/ipxe/undionly.kpxe"
    ))
    .expect("firmware/ipxe/undionly.kpxe (run firmware/fetch)");
    let server = Server::start("firmware");
    let out = server.out("curl");
    assert_ok(&curl(&server, "undionly.kpxe", &out, Some(1468)), "curl");
    assert_same_file(&out, &want, "undionly.kpxe via curl");
    // PXE ROMs often send a leading slash.
    let out = server.out("hpa");
    let result = tftp_hpa(&server, "binary", "/undionly.kpxe", &out);
    assert!(
        !client_text(&result).contains("Error"),
        "{}",
        client_text(&result)
    );
    assert_same_file(&out, &want, "/undionly.kpxe via tftp-hpa");
}

/// Nothing of the outside file may arrive, whatever the client reports.
fn assert_no_secret(out: &Path, secret: &[u8], what: &str) {
    if let Ok(got) = std::fs::read(out) {
        assert!(
            !got.windows(secret.len()).any(|w| w == secret) && got.is_empty(),
            "{what}: bytes arrived: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[test]
fn escapes_are_refused() {
    let server = Server::start("escape");
    let secret = b"TOP-SECRET-OUTSIDE-THE-ROOT".to_vec();
    let outside = server.base().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), &secret).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), server.root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&outside, server.root.join("outdir")).unwrap();
    server.write("inside", b"fine");

    let absolute = outside.join("secret").display().to_string();
    let requests = [
        "../outside/secret",
        "/../outside/secret",
        "inside/../../outside/secret",
        "escape",
        "outdir/secret",
        absolute.as_str(),
        "..\\outside\\secret",
    ];
    for (i, remote) in requests.iter().enumerate() {
        let out = server.out(&format!("hpa{i}"));
        let result = tftp_hpa(&server, "binary", remote, &out);
        assert!(
            client_text(&result).contains("Error code"),
            "tftp-hpa {remote}: no TFTP error: {}",
            client_text(&result)
        );
        assert_no_secret(&out, &secret, remote);

        let out = server.out(&format!("atftp{i}"));
        let result = atftp(&server, remote, &out, &[]);
        assert!(!result.status.success(), "atftp {remote} succeeded");
        assert_no_secret(&out, &secret, remote);
    }
    let out = server.out("curl");
    let result = curl(&server, "escape", &out, None);
    assert!(!result.status.success(), "curl escape succeeded");
    assert_no_secret(&out, &secret, "curl escape");

    let s = server.stats();
    // The absolute path is stripped of its leading '/' and then simply not found in the root.
    assert_eq!(s.not_found, 2, "{s:?}");
    assert_eq!(s.refused as usize, 2 * requests.len() - 2 + 1, "{s:?}");
    assert_eq!(s.transfers_started, 0, "{s:?}");

    // The root itself still serves.
    let out = server.out("inside");
    assert_ok(&curl(&server, "inside", &out, None), "curl inside");
    assert_same_file(&out, b"fine", "inside");
}

#[test]
fn missing_file_is_an_error() {
    let server = Server::start("missing");
    let out = server.out("missing");
    let result = curl(&server, "no-such-file", &out, Some(1468));
    assert!(!result.status.success(), "curl succeeded on a missing file");
    // curl 7.88 prints a confused getpeername() message here, but its exit status is
    // CURLE_TFTP_NOTFOUND.
    assert_eq!(result.status.code(), Some(68), "{}", client_text(&result));
    let result = tftp_hpa(&server, "binary", "no-such-file", &server.out("hpa"));
    assert!(
        client_text(&result).contains("Error code 1"),
        "{}",
        client_text(&result)
    );
    assert_eq!(server.stats().not_found, 2);
}

#[test]
fn write_requests_are_refused() {
    require("tftp", "tftp-hpa");
    let server = Server::start("wrq");
    let local = server.base().join("upload");
    std::fs::write(&local, b"data").unwrap();
    let mut cmd = Command::new("tftp");
    cmd.args(["-m", "binary", "127.0.0.1", &server.port(), "-c", "put"])
        .arg(&local)
        .arg("upload");
    let result = run_client(&mut cmd, LIMIT);
    assert!(
        client_text(&result).contains("Error code 2"),
        "{}",
        client_text(&result)
    );
    assert!(!server.root.join("upload").exists());
    assert_eq!(server.stats().write_requests, 1);
}

#[test]
fn busy_server_answers_error_0() {
    let limits = Limits {
        max_transfers: 0,
        ..Limits::default()
    };
    let server = Server::with_limits("busy", limits);
    server.write("f", b"x");
    let result = curl(&server, "f", &server.out("f"), None);
    assert!(!result.status.success());
    assert_eq!(server.stats().busy, 1);
}

#[test]
fn malformed_datagrams_are_dropped_and_server_lives() {
    let server = Server::start("malformed");
    server.write("f", b"still here");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage: [&[u8]; 6] = [
        b"",
        b"\x00",
        b"\x00\x01no-terminator",
        b"\x00\x09abc",
        b"\x00\x01f\x00mail\x00",
        b"\x00\x04\x00\x01", // an ACK to the listening port
    ];
    for g in garbage {
        sock.send_to(g, server.addr).unwrap();
    }
    let out = server.out("f");
    assert_ok(&curl(&server, "f", &out, None), "curl after garbage");
    assert_same_file(&out, b"still here", "f");
    let s = server.stats();
    assert_eq!(s.malformed, 5, "{s:?}");
    assert_eq!(s.dropped, 1, "{s:?}");
}

#[test]
fn block_number_wraps_past_65535() {
    // 33 MiB at 512-byte blocks: 67,584 full blocks, numbers roll over 65535 -> 0 once.
    let server = Server::start("wrap");
    let len = 33 * 1024 * 1024 + 100;
    let data = pattern(len, 7);
    server.write("big.bin", &data);
    let out = server.out("big.bin");
    let start = Instant::now();
    let result = tftp_hpa(&server, "binary", "big.bin", &out);
    assert!(
        !client_text(&result).contains("Error"),
        "{}",
        client_text(&result)
    );
    assert_same_file(&out, &data, "big.bin via tftp-hpa");
    let s = server.stats();
    assert_eq!(s.transfers_completed, 1, "{s:?}");
    eprintln!("33 MiB at 512-byte blocks: {:?}", start.elapsed());
}

#[test]
fn shutdown_ends_listener_and_transfers() {
    let mut server = Server::start("shutdown");
    server.stop().expect("run returned an error");
}

/// House rule: protocol cores never import tokio, heed or sockets and never read the clock.
#[test]
fn tftp_wire_and_core_are_sans_io() {
    for file in ["src/tftp/wire.rs", "src/tftp/core.rs"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            // Built outside the repository layout; nothing to check.
            continue;
        };
        for banned in [
            "tokio::",
            "heed::",
            "Instant::now",
            "SystemTime::now",
            "std::net::UdpSocket",
            "std::net::TcpStream",
            "std::net::TcpListener",
        ] {
            assert!(!text.contains(banned), "{file} uses {banned}");
        }
    }
}
