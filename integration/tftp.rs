//! TFTP against real clients (curl, tftp-hpa's `tftp`, `atftp`) on 127.0.0.1.
//!
//! Interop tests run twice: against the real binary (`drover --state-dir DIR serve --interface
//! lo --config FILE` with only TFTP enabled, roots = embedded firmware + `DIR/tftp/`) and
//! against `drover::tftp::serve::run_with_stats` on its own tokio runtime, where the counters
//! are checked too. Tests that need special limits (busy, retransmission) use the library
//! only. Each server gets a free port of 127.0.0.1 and a fresh temporary directory; clients
//! write to files that are compared with the source bytes.
//!
//! A missing client binary fails the test with the Debian package to install: `curl`,
//! `tftp-hpa`, `atftp`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover::tftp::serve::{run_with_stats, Limits, Roots, Stats, StatsSnapshot};
use tokio_util::sync::CancellationToken;

/// A TFTP server under test: the real binary, or the library on its own runtime.
struct Server {
    addr: SocketAddr,
    base: PathBuf,
    root: PathBuf,
    backend: Backend,
}

enum Backend {
    /// `drover --state-dir BASE/state serve --interface lo --config BASE/drover.toml`, with
    /// only TFTP enabled; its root is `BASE/state/tftp`.
    Binary { child: Child },
    /// `drover::tftp::serve::run_with_stats`, for tests that need the counters or limits.
    Library {
        stats: Arc<Stats>,
        shutdown: CancellationToken,
        done: Option<std::sync::mpsc::Receiver<std::io::Result<()>>>,
        runtime: Option<tokio::runtime::Runtime>,
    },
}

fn fresh_base(name: &str) -> PathBuf {
    let base =
        std::env::temp_dir().join(format!("drover-itest-tftp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    base
}

impl Server {
    /// The real `drover serve` on 127.0.0.1 (interface `lo`) and a free port.
    fn start(name: &str) -> Self {
        let base = fresh_base(&format!("{name}-bin"));
        // Find a free port; the small race with other processes is acceptable in tests.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = base.join("drover.toml");
        std::fs::write(
            &config,
            common::config_only(&["tftp"], &format!("[tftp]\nport = {port}\n")),
        )
        .unwrap();
        let log = std::fs::File::create(base.join("drover.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .arg("--state-dir")
            .arg(base.join("state"))
            .args(["serve", "--interface", "lo", "--config"])
            .arg(&config)
            .env("RUST_LOG", "drover=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start the drover binary");
        let mut server = Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            root: base.join("state").join("tftp"),
            base,
            backend: Backend::Binary { child },
        };
        server.wait_ready();
        server
    }

    /// The library server with `limits` and its own counters.
    fn library(name: &str, limits: Limits) -> Self {
        let base = fresh_base(&format!("{name}-lib"));
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
            base,
            root,
            backend: Backend::Library {
                stats,
                shutdown,
                done: Some(rx),
                runtime: Some(runtime),
            },
        }
    }

    /// The binary and the library with default limits: interop tests run against both.
    fn both(name: &str) -> [Server; 2] {
        [
            Server::start(name),
            Server::library(name, Limits::default()),
        ]
    }

    fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Binary { .. } => "binary",
            Backend::Library { .. } => "library",
        }
    }

    /// Polls with a request for a missing file until the server answers.
    fn wait_ready(&mut self) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            sock.send_to(b"\x00\x01readiness-probe\x00octet\x00", self.addr)
                .unwrap();
            if sock.recv_from(&mut buf).is_ok() {
                return;
            }
            if let Backend::Binary { child } = &mut self.backend {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("drover serve exited with {status}:\n{}", self.log());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "drover serve did not answer TFTP within 20 s:\n{}",
                self.log()
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("drover.log")).unwrap_or_default()
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn out(&self, name: &str) -> PathBuf {
        self.base.join(format!("out-{name}"))
    }

    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.root.join(name), data).unwrap();
    }

    /// The counters (library backend only) once every request has ended: clients exit right
    /// after their final ACK, before the server has counted it. Gives up waiting after 5 s.
    fn stats(&self) -> Option<StatsSnapshot> {
        let Backend::Library { stats, .. } = &self.backend else {
            return None;
        };
        let start = Instant::now();
        loop {
            let s = stats.snapshot();
            let ended = s.transfers_completed
                + s.transfers_failed
                + s.not_found
                + s.refused
                + s.write_requests
                + s.busy
                + s.busy_per_client;
            if ended == s.requests || start.elapsed() > Duration::from_secs(5) {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Counters of a library server (for the tests that only run there).
    fn lib_stats(&self) -> StatsSnapshot {
        self.stats().expect("a library server")
    }

    /// Stops the server (SIGTERM to the binary, the token for the library) and waits.
    fn stop(&mut self) {
        match &mut self.backend {
            Backend::Binary { child } => {
                if child.try_wait().unwrap().is_none() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                    let start = Instant::now();
                    while child.try_wait().unwrap().is_none() {
                        if start.elapsed() > Duration::from_secs(10) {
                            let _ = child.kill();
                            let _ = child.wait();
                            panic!("drover serve ignored SIGTERM for 10 s");
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            Backend::Library {
                shutdown,
                done,
                runtime,
                ..
            } => {
                shutdown.cancel();
                if let Some(rx) = done.take() {
                    let result = rx
                        .recv_timeout(Duration::from_secs(10))
                        .expect("tftp::serve::run did not return within 10 s of shutdown");
                    result.expect("tftp::serve::run returned an error");
                }
                if let Some(rt) = runtime.take() {
                    rt.shutdown_timeout(Duration::from_secs(5));
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        } else if let Backend::Binary { child } = &mut self.backend {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
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
    for server in Server::both("curl") {
        let sizes = [
            ("odd.bin", 3 * 1024 * 1024 + 123),
            ("exact.bin", 1468 * 2048),
        ];
        for (name, len) in sizes {
            let data = pattern(len, len as u64);
            server.write(name, &data);
            let out = server.out(name);
            assert_ok(&curl(&server, name, &out, Some(1468)), "curl");
            assert_same_file(&out, &data, &format!("{name} from {}", server.kind()));
        }
        if let Some(s) = server.stats() {
            assert_eq!(s.transfers_completed, 2, "{s:?}");
            assert_eq!(s.bytes_sent, (3 * 1024 * 1024 + 123 + 1468 * 2048) as u64);
        }
    }
}

#[test]
fn atftp_windowsize_and_tsize() {
    for server in Server::both("atftp") {
        atftp_against(&server);
    }
}

fn atftp_against(server: &Server) {
    for (name, len) in [
        ("odd.bin", 5 * 1024 * 1024 + 77),
        ("exact.bin", 1428 * 1000),
    ] {
        let data = pattern(len, len as u64);
        server.write(name, &data);
        let out = server.out(name);
        let result = atftp(
            server,
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
    if let Some(s) = server.stats() {
        assert_eq!(s.transfers_completed, 3, "{s:?}");
    }
}

#[test]
fn tftp_hpa_plain_512_byte_blocks() {
    for server in Server::both("hpa") {
        for (name, len) in [("odd.bin", 2 * 1024 * 1024 + 1), ("exact.bin", 512 * 4000)] {
            let data = pattern(len, len as u64);
            server.write(name, &data);
            let out = server.out(name);
            assert_ok(&tftp_hpa(&server, "binary", name, &out), "tftp");
            assert_same_file(&out, &data, &format!("{name} from {}", server.kind()));
        }
        if let Some(s) = server.stats() {
            assert_eq!(s.transfers_completed, 2, "{s:?}");
        }
    }
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
    for server in Server::both("firmware") {
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
    for server in Server::both("escape") {
        escapes_against(&server);
    }
}

fn escapes_against(server: &Server) {
    let secret = b"TOP-SECRET-OUTSIDE-THE-ROOT".to_vec();
    let outside = server.base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), &secret).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), server.root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&outside, server.root.join("outdir")).unwrap();
    server.write("inside", b"fine");

    let absolute = outside.join("secret").display().to_string();
    // From the root up to `base`, where `outside` lives: these names really reach the secret.
    let up = "../".repeat(
        server
            .root
            .strip_prefix(&server.base)
            .unwrap()
            .components()
            .count(),
    );
    let requests = [
        format!("{up}outside/secret"),
        format!("/{up}outside/secret"),
        format!("inside/../{up}outside/secret"),
        "escape".to_owned(),
        "outdir/secret".to_owned(),
        absolute,
        format!("{up}outside/secret").replace('/', "\\"),
    ];
    for (i, remote) in requests.iter().enumerate() {
        let remote = remote.as_str();
        let out = server.out(&format!("hpa{i}"));
        let result = tftp_hpa(server, "binary", remote, &out);
        assert!(
            client_text(&result).contains("Error code"),
            "tftp-hpa {remote}: no TFTP error: {}",
            client_text(&result)
        );
        assert_no_secret(&out, &secret, remote);

        let out = server.out(&format!("atftp{i}"));
        let result = atftp(server, remote, &out, &[]);
        assert!(!result.status.success(), "atftp {remote} succeeded");
        assert_no_secret(&out, &secret, remote);
    }
    let out = server.out("curl");
    let result = curl(server, "escape", &out, None);
    assert!(!result.status.success(), "curl escape succeeded");
    assert_no_secret(&out, &secret, "curl escape");

    if let Some(s) = server.stats() {
        // The absolute path loses its leading '/' and is then simply not found in the root.
        assert_eq!(s.not_found, 2, "{s:?}");
        assert_eq!(s.refused as usize, 2 * requests.len() - 2 + 1, "{s:?}");
        assert_eq!(s.transfers_started, 0, "{s:?}");
    }

    // The root itself still serves.
    let out = server.out("inside");
    assert_ok(&curl(server, "inside", &out, None), "curl inside");
    assert_same_file(&out, b"fine", "inside");
}

#[test]
fn missing_file_is_an_error() {
    for server in Server::both("missing") {
        missing_against(&server);
    }
}

fn missing_against(server: &Server) {
    let out = server.out("missing");
    let result = curl(server, "no-such-file", &out, Some(1468));
    assert!(!result.status.success(), "curl succeeded on a missing file");
    // curl 7.88 prints a confused getpeername() message here, but its exit status is
    // CURLE_TFTP_NOTFOUND.
    assert_eq!(result.status.code(), Some(68), "{}", client_text(&result));
    let result = tftp_hpa(server, "binary", "no-such-file", &server.out("hpa"));
    assert!(
        client_text(&result).contains("Error code 1"),
        "{}",
        client_text(&result)
    );
    if let Some(s) = server.stats() {
        assert_eq!(s.not_found, 2, "{s:?}");
    }
}

#[test]
fn write_requests_are_refused() {
    require("tftp", "tftp-hpa");
    for server in Server::both("wrq") {
        wrq_against(&server);
    }
}

fn wrq_against(server: &Server) {
    let local = server.base.join("upload");
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
    if let Some(s) = server.stats() {
        assert_eq!(s.write_requests, 1, "{s:?}");
    }
}

#[test]
fn busy_server_answers_error_0() {
    let limits = Limits {
        max_transfers: 0,
        ..Limits::default()
    };
    let server = Server::library("busy", limits);
    server.write("f", b"x");
    let result = curl(&server, "f", &server.out("f"), None);
    assert!(!result.status.success());
    assert_eq!(server.lib_stats().busy, 1);
}

/// Sends an RRQ for `name` from a fresh socket on `source`; returns the socket.
fn send_rrq(server: &Server, source: &str, name: &str) -> std::net::UdpSocket {
    let sock = std::net::UdpSocket::bind((source, 0)).unwrap();
    let mut rrq = b"\x00\x01".to_vec();
    rrq.extend_from_slice(name.as_bytes());
    rrq.extend_from_slice(b"\x00octet\x00");
    sock.send_to(&rrq, server.addr).unwrap();
    sock
}

#[test]
fn one_address_cannot_hold_every_transfer() {
    // 127.0.0.1 starts as many transfers as the server has slots and never ACKs (each is held
    // for the retransmission timeouts); 127.0.0.2 must still get its first block at once.
    for server in Server::both("per-client") {
        server.write("f", &pattern(10_000, 3));
        let total = Limits::default().max_transfers;
        let per_client = Limits::default().max_transfers_per_client;
        let hogs: Vec<_> = (0..total)
            .map(|_| send_rrq(&server, "127.0.0.1", "f"))
            .collect();
        let mut buf = [0u8; 1024];
        let mut busy = 0;
        for sock in &hogs {
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (n, _) = sock.recv_from(&mut buf).expect("no reply to a hog's RRQ");
            busy += usize::from(buf[..n].starts_with(b"\x00\x05\x00\x00"));
        }
        assert_eq!(busy, total - per_client, "{}: busy replies", server.kind());
        let start = Instant::now();
        let other = send_rrq(&server, "127.0.0.2", "f");
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (n, _) = other.recv_from(&mut buf).expect("no reply to 127.0.0.2");
        assert_eq!(
            &buf[..4.min(n)],
            b"\x00\x03\x00\x01",
            "{}: not DATA 1",
            server.kind()
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{}",
            server.kind()
        );
        if let Backend::Library { stats, .. } = &server.backend {
            let s = stats.snapshot();
            assert_eq!(s.busy_per_client as usize, total - per_client, "{s:?}");
            assert_eq!(s.busy, 0, "{s:?}");
        }
    }
}

#[test]
fn malformed_datagrams_are_dropped_and_server_lives() {
    let server = Server::library("malformed", Limits::default());
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
    let s = server.lib_stats();
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
    eprintln!("33 MiB at 512-byte blocks: {:?}", start.elapsed());
}

/// A hand-driven client: sends an RRQ, returns the socket and the first reply with its source.
fn raw_rrq(server: &Server, name: &str) -> (std::net::UdpSocket, Vec<u8>, SocketAddr) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = b"\x00\x01".to_vec();
    rrq.extend_from_slice(name.as_bytes());
    rrq.extend_from_slice(b"\x00octet\x00");
    sock.send_to(&rrq, server.addr).unwrap();
    let mut buf = [0u8; 1024];
    let (n, from) = sock.recv_from(&mut buf).expect("no reply to RRQ");
    (sock, buf[..n].to_vec(), from)
}

#[test]
fn lost_ack_is_retransmitted_then_given_up() {
    let limits = Limits {
        timeout: Duration::from_millis(100),
        retries: 2,
        ..Limits::default()
    };
    let server = Server::library("retransmit", limits);
    server.write("f", &pattern(2000, 1));
    let (sock, first, tid) = raw_rrq(&server, "f");
    assert_eq!(&first[..4], b"\x00\x03\x00\x01");
    assert_ne!(
        tid, server.addr,
        "DATA must come from a fresh transfer port"
    );
    // Never ACK: the same block comes again, `retries` times, then the transfer ends.
    let mut buf = [0u8; 1024];
    for _ in 0..2 {
        let (n, from) = sock.recv_from(&mut buf).expect("no retransmission");
        assert_eq!((from, &buf[..n]), (tid, &first[..]));
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "more than `retries` retransmissions"
    );
    let s = server.lib_stats();
    assert_eq!((s.timeouts, s.transfers_failed), (1, 1), "{s:?}");
}

#[test]
fn shutdown_ends_listener_and_transfers() {
    // Token for the library, SIGTERM for the binary: both end the transfer politely.
    for mut server in Server::both("shutdown") {
        server.write("f", &pattern(100_000, 2));
        let (sock, first, tid) = raw_rrq(&server, "f");
        assert_eq!(&first[..4], b"\x00\x03\x00\x01");
        let start = Instant::now();
        server.stop();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let mut buf = [0u8; 1024];
        loop {
            let (n, from) = sock.recv_from(&mut buf).expect("no ERROR on shutdown");
            assert_eq!(from, tid);
            if buf[..2] == [0, 5] {
                assert_eq!(&buf[2..n], b"\x00\x00server shutting down\x00");
                break;
            }
        }
        if let Backend::Binary { child } = &mut server.backend {
            let status = child.wait().unwrap();
            assert!(status.success(), "drover serve exited with {status}");
        }
    }
}

/// A UDP relay between one client and the server that drops every `data_every`-th DATA
/// (server to client) and every `ack_every`-th ACK (client to server), sparing the first
/// packets so the transfer gets going. Loopback has no loss and the host has no `netem`.
struct LossyRelay {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LossyRelay {
    fn start(server: SocketAddr, data_every: u32, ack_every: u32) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Mutex;
        let front = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let back = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // (client address, server transfer TID), learned from traffic.
        let peers = Arc::new(Mutex::new((None::<SocketAddr>, None::<SocketAddr>)));
        let to_server = {
            let (front, back, stop, peers) =
                (front.clone(), back.clone(), stop.clone(), peers.clone());
            std::thread::spawn(move || {
                let (mut buf, mut acks) = ([0u8; 70_000], 0u32);
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    let mut p = peers.lock().unwrap();
                    p.0 = Some(from);
                    let target = if buf[..2] == [0, 1] {
                        Some(server)
                    } else {
                        p.1
                    };
                    if buf[..2] == [0, 4] {
                        acks += 1;
                        if acks > 3 && acks % ack_every == 0 {
                            continue;
                        }
                    }
                    if let Some(target) = target {
                        let _ = back.send_to(&buf[..n], target);
                    }
                }
            })
        };
        let to_client = {
            let (stop, peers) = (stop.clone(), peers.clone());
            std::thread::spawn(move || {
                let (mut buf, mut data) = ([0u8; 70_000], 0u32);
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = back.recv_from(&mut buf) else {
                        continue;
                    };
                    let mut p = peers.lock().unwrap();
                    p.1 = Some(from);
                    if buf[..2] == [0, 3] {
                        data += 1;
                        if data > 3 && data % data_every == 0 {
                            continue;
                        }
                    }
                    if let Some(client) = p.0 {
                        let _ = front.send_to(&buf[..n], client);
                    }
                }
            })
        };
        LossyRelay {
            addr,
            stop,
            threads: vec![to_server, to_client],
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn transfers_survive_packet_loss() {
    let limits = Limits {
        timeout: Duration::from_millis(50),
        retries: 20,
        ..Limits::default()
    };
    let server = Server::library("loss", limits);
    let data = pattern(700_000, 11);
    server.write("f.bin", &data);

    // atftp with a window of 8: lost DATA shows up as a gap, lost ACKs as a timeout.
    require("atftp", "atftp");
    let relay = LossyRelay::start(server.addr, 23, 7);
    let out = server.out("atftp");
    let mut cmd = Command::new("atftp");
    cmd.args(["--get", "-r", "f.bin", "-l"])
        .arg(&out)
        .args(["--option", "blksize 1428", "--option", "windowsize 8"])
        .args(["127.0.0.1", &relay.addr.port().to_string()]);
    assert_ok(&run_client(&mut cmd, LIMIT), "atftp through a lossy relay");
    assert_same_file(&out, &data, "atftp through a lossy relay");
    drop(relay);

    // tftp-hpa in lock-step.
    let relay = LossyRelay::start(server.addr, 31, 37);
    let out = server.out("hpa");
    require("tftp", "tftp-hpa");
    let mut cmd = Command::new("tftp");
    cmd.args(["-m", "binary", "127.0.0.1", &relay.addr.port().to_string()])
        .args(["-c", "get", "f.bin"])
        .arg(&out);
    let result = run_client(&mut cmd, LIMIT);
    assert!(
        !client_text(&result).contains("Error"),
        "{}",
        client_text(&result)
    );
    assert_same_file(&out, &data, "tftp-hpa through a lossy relay");
    drop(relay);

    let s = server.lib_stats();
    assert_eq!(s.transfers_completed, 2, "{s:?}");
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
