//! NTP against real clients on loopback: `chronyd -Q` (package `chrony`), ntpsec's `sntp`
//! (package `sntp`), and a raw UDP client written here.
//!
//! Each test runs `drover::ntp::serve::run_with_stats` on its own tokio runtime, bound to a
//! free port of 127.0.0.1 (`sntp` only talks to port 123, so its server binds port 123 of a
//! random 127.0.0.0/8 address instead). The host clock is whatever this machine has: tests read
//! its synchronisation state with adjtimex and expect what drover must announce for it.
//!
//! A missing client binary fails the test with the Debian package to install.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use drover::net::sys;
use drover::ntp::core::{HOST_REFID, LOCAL_STRATUM, SYNCED_STRATUM};
use drover::ntp::serve::{host_clock, run_with_stats, Settings, Stats, StatsSnapshot};
use drover::ntp::wire::{Header, Leap, Mode, NtpTimestamp, Packet, ReferenceId};
use tokio_util::sync::CancellationToken;

/// The library server on its own runtime and thread.
struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start(local_reference: bool) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), local_reference)
    }

    fn start_on(bind: SocketAddr, local_reference: bool) -> Server {
        let socket = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let settings = Settings {
            port: addr.port(),
            local_reference,
        };
        let (s, t) = (stats.clone(), shutdown.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let socket = tokio::net::UdpSocket::from_std(socket)?;
                run_with_stats(socket, settings, s, t).await
            })
        });
        Server {
            addr,
            stats,
            shutdown,
            thread: Some(thread),
        }
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The counters once `ready` holds (the server counts a reply after sending it, so a
    /// client can see the reply first), or as they are after 2 s.
    fn stats_when(&self, ready: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let s = self.stats();
            if ready(&s) || std::time::Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server and checks that it ended cleanly (no panic, no error).
    fn stop(mut self) {
        self.shutdown.cancel();
        let r = self
            .thread
            .take()
            .unwrap()
            .join()
            .expect("server thread panicked");
        r.expect("server returned an error");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn host_synchronized() -> bool {
    host_clock(&sys::adjtimex_read().expect("adjtimex")).synchronized
}

fn realtime() -> NtpTimestamp {
    let (s, n) = sys::realtime();
    NtpTimestamp::from_unix(s, n)
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn request(version: u8, transmit: NtpTimestamp) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = (version << 3) | 3;
    b[2] = 6;
    b[3] = 0xec;
    b[40..48].copy_from_slice(&transmit.to_bits().to_be_bytes());
    b
}

/// Receives one datagram, or `None` after the socket's timeout.
fn recv(sock: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

/// One exchange: the reply header and the clock offset (seconds) it implies.
fn exchange(sock: &UdpSocket, server: SocketAddr, version: u8) -> (Header, f64) {
    let t1 = realtime();
    sock.send_to(&request(version, t1), server).unwrap();
    let reply = recv(sock).expect("no reply from the NTP server");
    let t4 = realtime();
    assert_eq!(reply.len(), 48, "reply length");
    let h = Packet::parse(&reply).expect("reply parses").header;
    assert_eq!(h.origin_ts, t1, "origin = our transmit timestamp");
    assert!(
        h.transmit_ts.wrapping_diff(h.receive_ts) >= 0,
        "receive <= transmit"
    );
    let secs = |d: i64| d as f64 / 4_294_967_296.0;
    let offset =
        (secs(h.receive_ts.wrapping_diff(t1)) + secs(h.transmit_ts.wrapping_diff(t4))) / 2.0;
    (h, offset)
}

fn need(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = PathBuf::from(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("`{binary}` not found: install the Debian package `{package}` (apt-get install -y {package})");
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drover-itest-ntp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `chronyd -Q` against `server` and returns (success, combined output).
fn chronyd_query(server: SocketAddr, name: &str) -> (bool, String) {
    let chronyd = need("chronyd", "chrony");
    let dir = temp_dir(name);
    // -Q: measure and print the offset, never touch the clock. -u root: chronyd would drop
    // to _chrony, which cannot write outside /run. pidfile and cmdport 0 keep it from
    // colliding with any other chronyd on the machine.
    let out = Command::new(chronyd)
        .args(["-Q", "-u", "root", "-f", "/dev/null", "-t", "30", "-L", "0"])
        .arg(format!("pidfile {}", dir.join("chronyd.pid").display()))
        .arg("cmdport 0")
        .arg(format!(
            "server {} port {} iburst maxsamples 4",
            server.ip(),
            server.port()
        ))
        .output()
        .expect("run chronyd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Shown with --nocapture (and for failed tests).
    println!("chronyd ({name}):\n{text}");
    (out.status.success(), text)
}

#[test]
fn chronyd_gets_time_with_a_sane_offset() {
    let server = Server::start(true);
    let (ok, text) = chronyd_query(server.addr, "chrony");
    // "System clock wrong by -0.000012 seconds (ignored)"
    let offset: f64 = text
        .lines()
        .find_map(|l| {
            let rest = l.split("System clock wrong by ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("chronyd reported no offset (exit ok: {ok}):\n{text}"));
    assert!(offset.abs() < 0.1, "offset {offset} s:\n{text}");
    let s = server.stats();
    assert!(s.replies >= 1, "{s:?}");
    assert_eq!(s.dropped_malformed + s.dropped_mode + s.kisses, 0, "{s:?}");
    server.stop();
}

#[test]
fn chronyd_refuses_an_unsynchronised_server() {
    if host_synchronized() {
        // This machine's clock is synchronised: drover announces it as such and chronyd must
        // accept it; the offset test covers that.
        let server = Server::start(false);
        let (_, text) = chronyd_query(server.addr, "chrony-sync");
        assert!(text.contains("System clock wrong by"), "{text}");
        server.stop();
        return;
    }
    let server = Server::start(false);
    let (_, text) = chronyd_query(server.addr, "chrony-unsync");
    assert!(
        !text.contains("System clock wrong by"),
        "chronyd used an unsynchronised server:\n{text}"
    );
    assert!(
        server.stats().replies >= 1,
        "chronyd was not answered at all"
    );
    server.stop();
}

#[test]
fn sntp_gets_time_on_port_123() {
    let sntp = need("sntp", "sntp");
    // sntp (ntpsec's ntpdig) only talks to port 123: use port 123 of a random loopback
    // address, which nothing else on the machine listens on.
    let mut server = None;
    for i in 0..20u32 {
        let n = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i * 7919);
        let ip = std::net::Ipv4Addr::new(
            127,
            100 + (n % 100) as u8,
            (n >> 8) as u8,
            1 + (n >> 16) as u8 % 250,
        );
        if UdpSocket::bind((ip, 123)).is_ok() {
            server = Some(Server::start_on(SocketAddr::from((ip, 123)), true));
            break;
        }
    }
    let server = server.expect("no free port 123 on 127.0.0.0/8 (are you root?)");
    let out = Command::new(sntp)
        .args(["-t", "2"])
        .arg(server.addr.ip().to_string())
        .output()
        .expect("run sntp");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("sntp:\n{text}");
    // "2026-11-22 04:30:00.123456 (+0000) +0.000047 +/- 0.000021 127.x.y.z s10 no-leap"
    let line = text
        .lines()
        .find(|l| l.contains(&server.addr.ip().to_string()) && l.contains("+/-"))
        .unwrap_or_else(|| panic!("sntp printed no measurement:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "+/-").unwrap();
    let offset: f64 = words[at - 1].parse().unwrap_or_else(|_| panic!("{line}"));
    assert!(offset.abs() < 0.1, "{line}");
    let expect_stratum = if host_synchronized() {
        SYNCED_STRATUM
    } else {
        LOCAL_STRATUM
    };
    assert!(line.contains(&format!(" s{expect_stratum} ")), "{line}");
    server.stop();
}

#[test]
fn raw_client_synchronised_and_unsynchronised() {
    let synced = host_synchronized();

    // local_reference = true: always a usable source.
    let server = Server::start(true);
    let sock = client();
    for version in [1, 2, 3, 4] {
        let (h, offset) = exchange(&sock, server.addr, version);
        assert_eq!((h.version, h.mode), (version, Mode::Server));
        assert!(offset.abs() < 0.1, "offset {offset}");
        assert_ne!(h.leap, Leap::Unsynchronized);
        assert!(!h.reference_ts.is_zero());
        if synced {
            assert_eq!((h.stratum, h.reference_id), (SYNCED_STRATUM, HOST_REFID));
        } else {
            assert_eq!(
                (h.leap, h.stratum, h.reference_id),
                (Leap::NoWarning, LOCAL_STRATUM, ReferenceId::LOCL)
            );
        }
        assert!(
            (-30..=-10).contains(&h.precision),
            "precision {}",
            h.precision
        );
    }
    assert_eq!(server.stats_when(|s| s.replies >= 4).replies, 4);
    server.stop();

    // local_reference = false: the host clock's own state.
    let server = Server::start(false);
    let (h, offset) = exchange(&sock, server.addr, 4);
    assert!(offset.abs() < 0.1, "offset {offset}");
    if synced {
        assert_eq!((h.stratum, h.reference_id), (SYNCED_STRATUM, HOST_REFID));
        assert_ne!(h.leap, Leap::Unsynchronized);
    } else {
        assert_eq!(
            (h.leap, h.stratum, h.reference_id),
            (Leap::Unsynchronized, 16, ReferenceId::INIT)
        );
        assert!(h.reference_ts.is_zero());
    }
    server.stop();
}

#[test]
fn kiss_of_death_after_a_burst() {
    let server = Server::start(true);
    let sock = client();
    let burst = drover::ntp::core::RateLimits::DEFAULT;
    let total = 60;
    for i in 0..total {
        sock.send_to(&request(4, NtpTimestamp::from_bits(1000 + i)), server.addr)
            .unwrap();
    }
    let mut time = 0;
    let mut kisses = Vec::new();
    while let Some(reply) = recv(&sock) {
        let h = Packet::parse(&reply).unwrap().header;
        if h.stratum == 0 {
            kisses.push(h);
        } else {
            time += 1;
        }
    }
    assert_eq!(time, burst.burst, "time replies");
    assert_eq!(kisses.len() as u32, burst.kod_burst, "kisses");
    for k in &kisses {
        assert_eq!(
            (k.leap, k.mode, k.reference_id),
            (Leap::Unsynchronized, Mode::Server, ReferenceId::RATE)
        );
        assert_eq!(k.transmit_ts, k.origin_ts, "a kiss gives no time away");
        assert!(k.poll >= 6);
    }
    let s = server.stats_when(|s| s.received == total);
    assert_eq!(s.received, total);
    assert_eq!(s.replies, u64::from(burst.burst));
    assert_eq!(s.kisses, u64::from(burst.kod_burst));
    assert_eq!(
        s.dropped_rate,
        total - u64::from(burst.burst + burst.kod_burst)
    );
    server.stop();
}

#[test]
fn malformed_battery_gets_no_reply_and_no_crash() {
    let server = Server::start(true);
    let sock = client();
    let good = request(4, NtpTimestamp::from_bits(42));
    let mut battery: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![0x23]),
        ("truncated header", good[..47].to_vec()),
        ("oversized datagram", {
            let mut b = good.to_vec();
            b.resize(4000, 0);
            b
        }),
        // ntpdc's monlist (mode 7, the classic amplification vector) and ntpq's readvar
        // (mode 6), as those tools send them.
        ("mode 7 monlist", vec![0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0]),
        ("mode 7 monlist padded", {
            let mut b = vec![0x17, 0x00, 0x03, 0x2a];
            b.resize(48, 0);
            b
        }),
        ("mode 6 readvar", {
            let mut b = vec![0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
            b.resize(48, 0);
            b
        }),
        ("huge extension length", {
            let mut b = good.to_vec();
            b.extend_from_slice(&[0xf3, 0x23, 0xff, 0xfc]);
            b.extend_from_slice(&[0; 28]);
            b
        }),
        ("extension length not a multiple of 4", {
            let mut b = good.to_vec();
            b.extend_from_slice(&[0xf3, 0x23, 0x00, 0x1d]);
            b.extend_from_slice(&[0; 28]);
            b
        }),
        ("extension length zero", {
            let mut b = good.to_vec();
            b.extend_from_slice(&[0xf3, 0x23, 0x00, 0x00]);
            b.extend_from_slice(&[0; 28]);
            b
        }),
        ("odd trailer", {
            let mut b = good.to_vec();
            b.extend_from_slice(&[1, 2, 3]);
            b
        }),
    ];
    for mode in [0u8, 1, 2, 4, 5, 6, 7] {
        let mut b = good.to_vec();
        b[0] = (4 << 3) | mode;
        battery.push(("wrong mode", b));
    }
    for version in [0u8, 5, 6, 7] {
        let mut b = good.to_vec();
        b[0] = (version << 3) | 3;
        battery.push(("unsupported version", b));
    }
    for (what, bytes) in &battery {
        sock.send_to(bytes, server.addr).unwrap();
        assert_eq!(recv(&sock), None, "{what}: got a reply");
    }
    let s = server.stats_when(|s| s.received == battery.len() as u64);
    assert_eq!(s.received, battery.len() as u64, "{s:?}");
    assert_eq!(s.replies + s.kisses, 0, "{s:?}");
    assert_eq!(
        s.dropped_malformed + s.dropped_mode,
        battery.len() as u64,
        "{s:?}"
    );
    // Still serving.
    let (h, _) = exchange(&sock, server.addr, 4);
    assert_eq!(h.mode, Mode::Server);
    server.stop();
}
