//! DNS against real clients (`dig` from bind9-dnsutils, `kdig` from knot-dnsutils) on
//! loopback.
//!
//! One test runs the real binary: `drover serve` in a network namespace, nodes added with the
//! CLI, `dig` and `sntp` inside the namespace, `drover dns check` outside it. The others drive
//! the library, to reach corners a namespace makes slow (ports, upstreams, oversized names):
//! `drover::dns::serve::serve` on its own tokio runtime, on 127.0.0.1 and a free port (UDP and
//! TCP), over a `SharedView` loaded from a temporary store that the tests populate with
//! `drover::admin` (the same code the CLI uses). A thread refreshes the view every 250 ms as
//! `drover serve`'s refresher does, so store changes reach the server the same way.
//! Forwarding tests start their own upstream: `dnsmasq` on another loopback port answering
//! `example.test` with 192.0.2.7 (data only: no traffic leaves loopback).
//!
//! The store has network `lab` = 198.18.0.0/24, domain `lab.test`, gateway 198.18.0.254,
//! nodes node1 = 198.18.0.10 and node2 = 198.18.0.11; the appliance publishes 60 addresses
//! (198.18.0.100-159) so that `drover.lab.test` is too big for a 512-byte reply.
//! Forwarding is allowed from 127.0.0.1 only, so `dig -b 127.0.0.2` is an outside client.
//!
//! A missing client fails the test with the Debian package to install.

mod common;

use drover::dns::serve::{serve, Settings, Stats};
use drover::net::reuseport;
use drover::store::model::{Lease, LeaseState, Network, Node, RelayInfo};
use drover::store::{SharedView, Store};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const REFRESH: Duration = Duration::from_millis(250);

struct Server {
    port: u16,
    store: Arc<Store>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    stop_refresh: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: common::TempDir,
}

fn node(name: &str, mac: u8, ip: &str) -> Node {
    Node {
        name: name.into(),
        mac: drover::store::model::Mac([0x52, 0x54, 0, 0, 0, mac]),
        ip: Some(ip.parse().unwrap()),
        image: None,
        group: None,
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    }
}

/// Binds UDP and TCP on the same free port of 127.0.0.1.
fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp);
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// A UDP group of two sockets (SO_REUSEPORT, as `drover serve` binds one per core) and a TCP
/// listener on the same free port. Needs a tokio runtime entered.
fn bind_group_pair() -> (Vec<tokio::net::UdpSocket>, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = reuseport::bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let port = udp[0].local_addr().unwrap().port();
        if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp);
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

fn free_port() -> u16 {
    bind_pair().0.local_addr().unwrap().port()
}

impl Server {
    fn start(tag: &str, upstreams: Vec<SocketAddr>) -> Server {
        let dir = common::TempDir::new(&format!("dns-{tag}"));
        let store = Arc::new(Store::open(&dir.join("state")).unwrap());
        drover::admin::add_network(
            &store,
            &Network {
                name: "lab".into(),
                subnet: "198.18.0.0/24".parse().unwrap(),
                range: None,
                gateway: Some("198.18.0.254".parse().unwrap()),
                domain: Some("lab.test".into()),
            },
        )
        .unwrap();
        drover::admin::add_nodes(
            &store,
            &[
                node("node1", 1, "198.18.0.10"),
                node("node2", 2, "198.18.0.11"),
            ],
        )
        .unwrap();
        let view = Arc::new(SharedView::load(store.clone()).unwrap());

        let stop_refresh = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (view, stop) = (view.clone(), stop_refresh.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(REFRESH);
                    view.refresh().unwrap();
                }
            })
        };

        let settings = Settings {
            port: 0,
            upstreams,
            axfr_allow: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            forward_from: vec!["127.0.0.1/32".parse().unwrap()],
            addrs: (100..160).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect(),
            upstream_timeout: Duration::from_millis(500),
            ..Settings::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (udp, tcp) = {
            let _runtime = runtime.enter();
            bind_group_pair()
        };
        let port = tcp.local_addr().unwrap().port();
        tcp.set_nonblocking(true).unwrap();
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        {
            let (stats, shutdown) = (stats.clone(), shutdown.clone());
            runtime.spawn(async move {
                let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
                serve(udp, tcp, settings, view, shutdown, stats)
                    .await
                    .unwrap();
            });
        }
        Server {
            port,
            store,
            stats,
            shutdown,
            stop_refresh,
            refresher: Some(refresher),
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    /// `dig` against this server; returns stdout.
    fn dig(&self, args: &[&str]) -> String {
        common::require_cmd("dig", "bind9-dnsutils");
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+time=2",
                "+tries=1",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kdig(&self, args: &[&str]) -> String {
        common::require_cmd("kdig", "knot-dnsutils");
        let out = Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+time=2",
                "+retry=0",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn short(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["+short"];
        a.extend_from_slice(args);
        self.dig(&a).lines().map(str::to_string).collect()
    }

    fn seq(&self) -> u64 {
        self.store.last_seq().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.stop_refresh.store(true, Ordering::Relaxed);
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// `dnsmasq` on 127.0.0.1:port answering example.test (and nothing else: REFUSED).
struct Upstream {
    child: Child,
    addr: SocketAddr,
}

impl Upstream {
    fn start() -> Upstream {
        let bin = common::require_cmd("dnsmasq", "dnsmasq-base");
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--address=/example.test/192.0.2.7",
                "--address=/big.test/192.0.2.8",
                "--local-ttl=60",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // Ready when it answers over TCP.
        assert!(
            common::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(
                addr
            )
            .is_ok()),
            "dnsmasq did not start on {addr}"
        );
        Upstream { child, addr }
    }

    fn stop(&mut self) {
        common::stop_child(&mut self.child, Duration::from_secs(2));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("<no status>")
}

fn count(out: &str, section: &str) -> usize {
    out.split(&format!("{section}: "))
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn flags(out: &str) -> String {
    out.split("flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn authoritative_records_over_udp_and_tcp() {
    let s = Server::start("auth", vec![]);
    for tcp in ["+notcp", "+tcp"] {
        assert_eq!(
            s.short(&[tcp, "node1.lab.test", "A"]),
            ["198.18.0.10"],
            "{tcp}"
        );
        let full = s.dig(&[tcp, "node1.lab.test", "A"]);
        assert!(flags(&full).contains("aa"), "{tcp}: {full}");
        assert_eq!(status(&full), "NOERROR");
        assert_eq!(s.short(&[tcp, "-x", "198.18.0.10"]), ["node1.lab.test."]);
        assert_eq!(s.short(&[tcp, "-x", "198.18.0.254"]), ["gateway.lab.test."]);
        assert_eq!(s.short(&[tcp, "gateway.lab.test"]), ["198.18.0.254"]);
        assert_eq!(s.short(&[tcp, "lab.test", "NS"]), ["drover.lab.test."]);
        let soa = s.short(&[tcp, "lab.test", "SOA"]);
        let serial: u64 = soa[0].split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(serial, s.seq(), "serial is the store sequence: {soa:?}");
        assert_eq!(
            s.short(&[tcp, "0.18.198.in-addr.arpa", "SOA"]).len(),
            1,
            "reverse zone SOA"
        );
    }
    // kdig, over UDP and TCP.
    for tcp in ["+notcp", "+tcp"] {
        let out = s.kdig(&[tcp, "+short", "node2.lab.test", "A"]);
        assert_eq!(out.trim(), "198.18.0.11", "kdig {tcp}");
        let out = s.kdig(&[tcp, "+short", "-x", "198.18.0.11"]);
        assert_eq!(out.trim(), "node2.lab.test.", "kdig {tcp}");
    }
}

#[test]
fn nodata_and_nxdomain() {
    let s = Server::start("neg", vec![]);
    for tcp in ["+notcp", "+tcp"] {
        let out = s.dig(&[tcp, "node1.lab.test", "AAAA"]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert_eq!(count(&out, "ANSWER"), 0, "{out}");
        assert_eq!(count(&out, "AUTHORITY"), 1, "SOA for NODATA: {out}");
        let out = s.dig(&[tcp, "nope.lab.test", "A"]);
        assert_eq!(status(&out), "NXDOMAIN", "{out}");
        assert_eq!(count(&out, "AUTHORITY"), 1, "{out}");
        assert!(flags(&out).contains("aa"));
        let out = s.kdig(&[tcp, "-x", "198.18.0.77"]);
        assert!(out.contains("NXDOMAIN"), "{out}");
    }
}

#[test]
fn forwards_through_a_local_upstream_with_cache_and_servfail() {
    let mut up = Upstream::start();
    let s = Server::start("fwd", vec![up.addr]);
    for tcp in ["+notcp", "+tcp"] {
        let out = s.dig(&[tcp, "www.example.test", "A"]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert!(out.contains("192.0.2.7"), "{out}");
        assert!(flags(&out).contains("ra"), "{out}");
        assert!(!flags(&out).contains("aa"), "{out}");
    }
    assert!(s.stats.cache_hits.load(Ordering::Relaxed) >= 1);
    let out = s.kdig(&["+short", "big.test"]);
    assert_eq!(out.trim(), "192.0.2.8");
    // The upstream refuses other names: relayed as it said.
    let out = s.dig(&["other.invalid"]);
    assert_eq!(status(&out), "REFUSED", "{out}");

    up.stop();
    // Cached: still answered; new: SERVFAIL once the upstream is gone.
    assert_eq!(s.short(&["www.example.test"]), ["192.0.2.7"]);
    let out = s.dig(&["+time=3", "new.example.test"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    assert!(s.stats.servfail.load(Ordering::Relaxed) >= 1);
}

#[test]
fn outside_clients_are_refused_forwarding() {
    let up = Upstream::start();
    let s = Server::start("refuse", vec![up.addr]);
    let out = s.dig(&["-b", "127.0.0.2", "www.example.test"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
    assert_eq!(count(&out, "ANSWER"), 0);
    let out = s.dig(&["-b", "127.0.0.2", "+tcp", "www.example.test"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
    // Our own zones are still answered (authoritative), without recursion on offer.
    let out = s.dig(&["-b", "127.0.0.2", "node1.lab.test"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(!flags(&out).contains("ra"), "{out}");
    assert_eq!(s.stats.forwarded.load(Ordering::Relaxed), 0);
}

#[test]
fn truncation_and_tcp_fallback() {
    let s = Server::start("tc", vec![]);
    // 60 A records do not fit in 512 bytes: TC, no answers.
    let out = s.dig(&["+noedns", "+ignore", "drover.lab.test"]);
    assert!(flags(&out).contains("tc"), "{out}");
    assert_eq!(count(&out, "ANSWER"), 0, "{out}");
    assert!(s.stats.truncated.load(Ordering::Relaxed) >= 1);
    // dig retries over TCP by itself.
    let out = s.dig(&["+noedns", "drover.lab.test"]);
    assert_eq!(count(&out, "ANSWER"), 60, "{out}");
    // EDNS 1232 fits the answer over UDP.
    let out = s.dig(&["+bufsize=1232", "+ignore", "drover.lab.test"]);
    assert!(!flags(&out).contains("tc"), "{out}");
    assert_eq!(count(&out, "ANSWER"), 60, "{out}");
    // A client offering 4096 still gets at most 1232.
    let out = s.kdig(&["+bufsize=4096", "+ignore", "drover.lab.test"]);
    assert!(out.contains("EDNS") && out.contains("1232"), "{out}");
}

#[test]
fn zone_transfer_only_over_tcp_to_allowed() {
    let s = Server::start("axfr", vec![]);
    let out = s.dig(&["lab.test", "AXFR"]);
    let soas = out.lines().filter(|l| l.contains("\tSOA\t")).count();
    assert_eq!(soas, 2, "{out}");
    assert!(
        out.contains("node1.lab.test.") && out.contains("198.18.0.11"),
        "{out}"
    );
    let out = s.dig(&["-b", "127.0.0.2", "lab.test", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
    // dig always uses TCP for AXFR: ask over UDP by hand.
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("lab.test.").unwrap(),
        RecordType::AXFR,
    ));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client
        .send_to(&q.to_vec().unwrap(), ("127.0.0.1", s.port))
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = client.recv(&mut buf).unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
}

#[test]
fn a_node_added_with_admin_resolves_within_a_second() {
    let s = Server::start("add", vec![]);
    let before = s.seq();
    assert_eq!(s.short(&["node3.lab.test"]), Vec::<String>::new());
    let added = Instant::now();
    drover::admin::add_nodes(&s.store, &[node("node3", 3, "198.18.0.12")]).unwrap();
    loop {
        if s.short(&["node3.lab.test"]) == ["198.18.0.12"] {
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(1),
            "node3 not resolvable after {:?}",
            added.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = added.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(s.short(&["-x", "198.18.0.12"]), ["node3.lab.test."]);
    let soa = s.short(&["lab.test", "SOA"]);
    let serial: u64 = soa[0].split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        serial > before,
        "serial {serial} did not grow past {before}"
    );
    eprintln!("node3 resolvable {took:?} after add_nodes");

    // A node without a reservation is published at its bound lease.
    let mut dynamic = node("node4", 4, "198.18.0.1");
    dynamic.ip = None;
    drover::admin::add_nodes(&s.store, &[dynamic.clone()]).unwrap();
    let lease = Lease {
        ip: "198.18.0.50".parse().unwrap(),
        mac: dynamic.mac,
        client_id: None,
        hostname: Some("node4".into()),
        state: LeaseState::Bound,
        start: 0,
        expires: u64::MAX,
        network: "lab".into(),
        relay: RelayInfo::default(),
    };
    s.store
        .write::<_, drover::store::StoreError>(|w| w.put(&lease))
        .unwrap();
    assert!(
        common::wait_until(Duration::from_secs(1), || s.short(&["node4.lab.test"])
            == ["198.18.0.50"]),
        "node4 not published at its lease"
    );
}

/// A tiny deterministic generator for the malformed-packet battery.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next()).collect()
    }
}

#[test]
fn malformed_packets_no_crash_no_amplification() {
    let s = Server::start("garbage", vec![]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, s.port));
    let header = |flags: [u8; 2], counts: [u16; 4]| {
        let mut h = vec![0xab, 0xcd, flags[0], flags[1]];
        for c in counts {
            h.extend_from_slice(&c.to_be_bytes());
        }
        h
    };
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0; 11],
        header([1, 0], [0, 0, 0, 0]),
        header([1, 0], [2, 0, 0, 0]),
        header([1, 0], [0xffff, 0xffff, 0xffff, 0xffff]),
        header([0x81, 0x80], [1, 0, 0, 0]), // a response
    ];
    // A pointer loop, a label running off the end, a too-long label.
    let mut ptr_loop = header([1, 0], [1, 0, 0, 0]);
    ptr_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    cases.push(ptr_loop);
    let mut runs_off = header([1, 0], [1, 0, 0, 0]);
    runs_off.extend_from_slice(&[30, b'a', b'b']);
    cases.push(runs_off);
    let mut long_label = header([1, 0], [1, 0, 0, 0]);
    long_label.push(64);
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    cases.push(long_label);
    // A valid question followed by garbage additionals.
    let mut bad_opt = header([1, 0], [1, 0, 0, 1]);
    bad_opt.extend_from_slice(b"\x04node\x03lab\x04test\x00\x00\x01\x00\x01");
    bad_opt.extend_from_slice(&[0, 0, 41, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff]);
    cases.push(bad_opt);
    // Random bytes, with and without a plausible header.
    let mut rng = Lcg(7);
    for i in 0..300 {
        let len = 1 + usize::from(rng.next()) % 200;
        let mut b = rng.bytes(len);
        if i % 2 == 0 && b.len() >= 12 {
            b[2] &= 0x7f; // a query
            b[4] = 0;
            b[5] = 1;
        }
        cases.push(b);
    }
    let mut replies = 0;
    let mut buf = [0u8; 2048];
    for case in &cases {
        client.send_to(case, server).unwrap();
        while let Ok((n, _)) = client.recv_from(&mut buf) {
            replies += 1;
            assert!(
                n <= case.len(),
                "reply of {n} bytes to {} bytes of garbage: {case:02x?}",
                case.len()
            );
        }
    }
    // Garbage over TCP: a short frame, a huge length then EOF, random bytes.
    for junk in [vec![0, 3, 1, 2, 3], vec![0xff, 0xff, 1], Lcg(9).bytes(500)] {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(server).unwrap();
        t.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = t.write_all(&junk);
        let _ = t.shutdown(std::net::Shutdown::Write);
        let mut got = Vec::new();
        let _ = t.read_to_end(&mut got);
        assert!(
            got.len() <= junk.len(),
            "{} bytes back for {}",
            got.len(),
            junk.len()
        );
    }
    // Still alive and correct.
    assert_eq!(s.short(&["node1.lab.test"]), ["198.18.0.10"]);
    assert_eq!(s.short(&["+tcp", "node2.lab.test"]), ["198.18.0.11"]);
    let formerr = s.stats.formerr.load(Ordering::Relaxed);
    let dropped = s.stats.dropped.load(Ordering::Relaxed);
    assert!(
        formerr > 0 && dropped > 0,
        "formerr {formerr} dropped {dropped}"
    );
    eprintln!(
        "{} malformed datagrams: {replies} replies, {formerr} FORMERR, {dropped} dropped",
        cases.len()
    );
}

/// `drover serve` answers DNS and NTP on its interface; a node added with the CLI resolves
/// within about a second (the measured delay is printed; the test waits up to 10 s, it does
/// not assert on time); `drover dns check` says the same without the network.
#[test]
fn drover_serve_answers_names_and_time_for_cli_changes() {
    common::require_cmd("dig", "bind9-dnsutils");
    common::require_cmd("sntp", "sntp");
    let ns = common::Netns::new("dns-serve");
    ns.add_bridge("br0", "198.18.0.1/24");
    let mut d = common::Drover::new();
    d.cli_ok(&[
        "network",
        "add",
        "lab",
        "--subnet",
        "198.18.0.0/24",
        "--domain",
        "lab.test",
        "--gateway",
        "198.18.0.254",
    ]);
    d.cli_ok(&[
        "node",
        "add",
        "node1",
        "--mac",
        "52:54:00:00:00:01",
        "--ip",
        "198.18.0.10",
        "--alias",
        "login,head",
    ]);
    let config = d.serve_with(
        Some(&ns),
        "br0",
        &common::config_only(
            &["http", "dns", "ntp"],
            "[dns]\nupstreams = []\n[ntp]\nlocal-reference = true\n",
        ),
    );
    let dig = |args: &[&str]| -> String {
        let out = ns
            .cmd("dig")
            .args(["@198.18.0.1", "+time=2", "+tries=1", "+short"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        dig(&["node1.lab.test"]),
        "198.18.0.10",
        "{}",
        d.log_tail(20)
    );
    assert_eq!(dig(&["-x", "198.18.0.10"]), "node1.lab.test.");
    assert_eq!(dig(&["drover.lab.test"]), "198.18.0.1");
    assert_eq!(dig(&["+tcp", "gateway.lab.test"]), "198.18.0.254");
    // Aliases are CNAMEs, chased to the address over UDP and TCP.
    assert_eq!(dig(&["login.lab.test"]), "node1.lab.test.\n198.18.0.10");
    assert_eq!(dig(&["+tcp", "head.lab.test", "CNAME"]), "node1.lab.test.");
    assert_eq!(
        dig(&["lab.test", "SOA"]).split(' ').next(),
        Some("drover.lab.test.")
    );
    assert_eq!(dig(&["lab.test", "NS"]), "drover.lab.test.");
    assert_eq!(dig(&["node1.lab.test", "AAAA"]), "", "AAAA is NODATA");

    let t0 = Instant::now();
    d.cli_ok(&[
        "node",
        "add",
        "node2",
        "--mac",
        "52:54:00:00:00:02",
        "--ip",
        "198.18.0.11",
    ]);
    let seen = common::wait_until(Duration::from_secs(10), || {
        dig(&["node2.lab.test"]) == "198.18.0.11"
    });
    assert!(
        seen,
        "node2 never resolved; drover log:\n{}",
        d.log_tail(30)
    );
    eprintln!("node added with the CLI resolved after {:?}", t0.elapsed());
    // A name is a node's or an alias, never both; errors change nothing.
    for args in [
        &["node", "add", "login", "--mac", "52:54:00:00:00:03"][..],
        &["node", "set", "node2", "--alias", "head"][..],
        &["node", "set", "node2", "--alias", "node1"][..],
        &["node", "set", "node2", "--alias", "bad.name"][..],
    ] {
        let out = d.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("taken") || err.contains("invalid name"),
            "{args:?}: {err}"
        );
    }
    d.cli_ok(&["node", "set", "node2", "--alias", "web"]);
    assert!(
        common::wait_until(Duration::from_secs(10), || dig(&["web.lab.test"])
            == "node2.lab.test.\n198.18.0.11"),
        "alias web never resolved"
    );
    d.cli_ok(&["node", "rm", "node2"]);
    assert!(
        common::wait_until(Duration::from_secs(10), || dig(&["node2.lab.test"])
            .is_empty()),
        "node2 still resolves after `node rm`"
    );

    // NTP on the same interface: local-reference makes the unsynchronised lab clock usable.
    let out = ns
        .cmd("sntp")
        .args(["-t", "2", "198.18.0.1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sntp failed: {text}\n{}",
        d.log_tail(20)
    );
    let offset: f64 = text
        .split_whitespace()
        .find_map(|w| {
            w.trim_start_matches('+')
                .parse::<f64>()
                .ok()
                .filter(|_| w.contains('.'))
        })
        .unwrap_or_else(|| panic!("no offset in sntp output: {text}"));
    assert!(
        offset.abs() < 1.0,
        "offset {offset} s from the host's own clock: {text}"
    );

    // The servers' counters are in /metrics (behind a token).
    common::require_cmd("curl", "curl");
    let token = d.cli_ok(&["token", "create", "--name", "metrics"]);
    let token = token.split_whitespace().last().unwrap().to_string();
    let out = ns
        .cmd("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}")])
        .arg("http://198.18.0.1/metrics")
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout).to_string();
    let counter = |service: &str, event: &str| -> u64 {
        let prefix = format!(
            "drover_service_events_total{{service=\"{service}\",iface=\"br0\",event=\"{event}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}in /metrics:\n{metrics}"))
    };
    assert!(counter("dns", "udp_queries") >= 8, "{metrics}");
    assert!(counter("dns", "tcp_queries") >= 2);
    assert!(counter("ntp", "replies") >= 1);

    // The admin's view of the same answers, without the network.
    let check = d.cli_ok(&["dns", "check", "node1.lab.test"]);
    assert!(
        check.contains("198.18.0.10") && check.contains("zone lab.test."),
        "{check}"
    );
    let check = d.cli_ok(&["dns", "check", "198.18.0.10"]);
    assert!(check.contains("node1.lab.test."), "{check}");
    let check = d.cli_ok(&[
        "dns",
        "check",
        "--config",
        config.to_str().unwrap(),
        "example.com",
    ]);
    assert!(
        check.contains("REFUSED") || check.contains("refused"),
        "{check}"
    );
    let out = d.cli(&["dns", "check", "bad..name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a domain name"));
}

/// `drover serve` on `lo`: 127.0.0.1 opens as many idle TCP connections as the server has
/// slots (`dns.max-tcp`, default 128) and keeps them; a query over TCP from 127.0.0.2 is still
/// answered at once (only `dns.max-tcp-per-client` of the idle ones were kept).
#[test]
fn one_address_cannot_hold_every_tcp_slot() {
    common::require_cmd("dig", "bind9-dnsutils");
    let port = free_port();
    let mut d = common::Drover::new();
    d.serve_with(
        None,
        "lo",
        &common::config_only(&["dns"], &format!("[dns]\nport = {port}\nupstreams = []\n")),
    );
    let hogs: Vec<_> = (0..128)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let start = Instant::now();
    let out = Command::new("dig")
        .args(["-b", "127.0.0.2", "@127.0.0.1", "-p", &port.to_string()])
        .args(["+tcp", "+time=2", "+tries=1", "drover.cluster"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.contains("status: "),
        "no answer: {out}\n{}",
        d.log_tail(20)
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    drop(hogs);
}
