//! The DHCP server through the real binary, against busybox `udhcpc` in network namespaces.
//!
//! Layout per test: a server namespace with `dsrv0` (198.18.0.1/24) running
//! `drover --state-dir DIR serve --interface dsrv0`, and a client namespace with its veth peer
//! `dcli0`, whose MAC is set to play different clients. `udhcpc -q` runs a script that dumps
//! the environment it gets on `bound` (ip, subnet, router, siaddr, boot_file, hostname, lease,
//! ...), which is what the assertions read.
//!
//! The malformed-packet battery and the relay agent need a plain UDP socket inside the client
//! namespace: the test re-runs this test binary there (`ip netns exec NS <self> --ignored
//! --exact namespace_helper`), with the job in an environment variable.
//!
//! Needs root, `ip` (iproute2) and `udhcpc` (Debian package `udhcpc`); fails without them.

mod common;

use common::{require_cmd, require_root, run_ok, Drover, Netns};
use drover::dhcp::wire::{self, MessageType, Request};
use drover::store::model::Mac;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER_IP: &str = "198.18.0.1";
const N1_MAC: &str = "52:54:00:00:00:01";

/// A server namespace running drover, a client namespace, a veth between them.
struct Lab {
    drover: Drover,
    server: Netns,
    client: Netns,
    script: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        require_root();
        require_cmd("ip", "iproute2");
        require_cmd("udhcpc", "udhcpc");
        let server = Netns::new(&format!("{tag}s"));
        let client = Netns::new(&format!("{tag}c"));
        server.add_veth("dsrv0", &client, "dcli0");
        server.add_addr("dsrv0", "198.18.0.1/24");
        let mut drover = Drover::new();
        drover.env("DROVER_LOG", "drover=debug");
        drover.cli_ok(&[
            "network",
            "add",
            "lab",
            "--subnet",
            "198.18.0.0/24",
            "--range",
            "198.18.0.100-198.18.0.199",
            "--gateway",
            "198.18.0.254",
            "--domain",
            "cluster.test",
        ]);
        drover.cli_ok(&["node", "add", "n1", "--mac", N1_MAC, "--ip", "198.18.0.10"]);
        let script = drover.scratch().join("udhcpc.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = bound ] && env > \"$DHCP_DUMP\"\nexit 0\n",
        )
        .unwrap();
        run_ok(Command::new("chmod").arg("755").arg(&script));
        let mut lab = Lab {
            drover,
            server,
            client,
            script,
        };
        lab.start();
        lab
    }

    fn start(&mut self) {
        self.drover
            .start(Some(&self.server), &["serve", "--interface", "dsrv0"]);
        self.drover
            .wait_log("DHCP server listening", Duration::from_secs(20));
    }

    fn restart(&mut self) {
        self.drover.stop();
        self.start();
    }

    fn set_client_mac(&self, mac: &str) {
        self.client.ip(&["link", "set", "dcli0", "down"]);
        self.client.ip(&["link", "set", "dcli0", "address", mac]);
        self.client.ip(&["link", "set", "dcli0", "up"]);
    }

    /// Runs `udhcpc` as client `mac` with extra arguments; returns the environment its
    /// script saw on `bound`. Panics (with udhcpc's output and drover's log) without a lease.
    fn udhcpc(&self, mac: &str, extra: &[&str]) -> HashMap<String, String> {
        self.set_client_mac(mac);
        let dump = self
            .drover
            .scratch()
            .join(format!("dump-{}", mac.replace(':', "")));
        let _ = std::fs::remove_file(&dump);
        let out = self
            .client
            .cmd("udhcpc")
            .args([
                "-i", "dcli0", "-n", "-q", "-f", "-t", "6", "-T", "1", "-A", "1", "-s",
            ])
            .arg(&self.script)
            .args(extra)
            .env("DHCP_DUMP", &dump)
            .output()
            .expect("run udhcpc");
        let env = std::fs::read_to_string(&dump).unwrap_or_else(|_| {
            panic!(
                "udhcpc {mac} {extra:?} got no lease ({}):\n{}{}\ndrover log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.drover.log_tail(40)
            )
        });
        env.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn get<'a>(env: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str)
}

#[test]
fn reserved_and_unknown_clients() {
    let lab = Lab::new("dhcp1");

    // A reserved node gets its address and every option.
    let env = lab.udhcpc(N1_MAC, &[]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.10"), "{env:?}");
    assert_eq!(get(&env, "subnet"), Some("255.255.255.0"));
    assert_eq!(get(&env, "router"), Some("198.18.0.254"));
    assert_eq!(get(&env, "broadcast"), Some("198.18.0.255"));
    assert_eq!(get(&env, "hostname"), Some("n1"));
    assert_eq!(get(&env, "domain"), Some("cluster.test"));
    // drover's own DNS and NTP (options 6, 42) and the search list (119).
    assert_eq!(get(&env, "dns"), Some(SERVER_IP), "{env:?}");
    assert_eq!(get(&env, "ntpsrv"), Some(SERVER_IP), "{env:?}");
    assert_eq!(get(&env, "search"), Some("cluster.test"), "{env:?}");
    assert_eq!(get(&env, "lease"), Some("3600"));
    assert_eq!(get(&env, "serverid"), Some(SERVER_IP));
    assert_eq!(get(&env, "boot_file"), None, "not a PXE client: {env:?}");

    // x86-64 UEFI firmware (option 93 = 7): the UEFI iPXE binary from us.
    let env = lab.udhcpc(N1_MAC, &["-x", "0x5d:0007"]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.10"));
    assert_eq!(get(&env, "boot_file"), Some("ipxe.efi"), "{env:?}");
    assert_eq!(get(&env, "siaddr"), Some(SERVER_IP));

    // BIOS (arch 0) with the PXE vendor class.
    let env = lab.udhcpc(
        N1_MAC,
        &["-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001"],
    );
    assert_eq!(get(&env, "boot_file"), Some("undionly.kpxe"), "{env:?}");
    assert_eq!(get(&env, "siaddr"), Some(SERVER_IP));

    // iPXE (user class "iPXE"): the HTTP boot URL.
    let env = lab.udhcpc(N1_MAC, &["-x", "0x4d:69505845", "-x", "0x5d:0007"]);
    assert_eq!(
        get(&env, "boot_file"),
        Some("http://198.18.0.1/boot/52:54:00:00:00:01"),
        "{env:?}"
    );

    // An unknown MAC: the lowest address of the range, and the iPXE URL too.
    let env = lab.udhcpc("52:54:00:00:00:20", &["-x", "0x4d:69505845"]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.100"), "{env:?}");
    assert_eq!(get(&env, "hostname"), None);
    assert_eq!(
        get(&env, "boot_file"),
        Some("http://198.18.0.1/boot/52:54:00:00:00:20")
    );
    // A second unknown MAC: the next one.
    let env = lab.udhcpc("52:54:00:00:00:21", &[]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.101"), "{env:?}");
}

#[test]
fn leases_are_durable_and_survive_a_restart() {
    let mut lab = Lab::new("dhcp2");
    let env = lab.udhcpc("52:54:00:00:00:30", &[]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.100"), "{env:?}");
    let env = lab.udhcpc(N1_MAC, &[]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.10"));

    let list = lab.drover.cli_ok(&["lease", "list"]);
    let line = |ip: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(ip))
            .unwrap_or_else(|| panic!("no lease for {ip} in:\n{list}"))
            .to_string()
    };
    assert!(line("198.18.0.100").contains("52:54:00:00:00:30"), "{list}");
    assert!(line("198.18.0.100").contains("bound"), "{list}");
    assert!(line("198.18.0.10").contains(N1_MAC), "{list}");

    lab.restart();
    // Another client must not get the address bound before the restart ...
    let env = lab.udhcpc("52:54:00:00:00:31", &[]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.101"), "{env:?}");
    // ... and its owner gets it again, asking for it or not.
    let env = lab.udhcpc("52:54:00:00:00:30", &[]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.100"), "{env:?}");
    let env = lab.udhcpc("52:54:00:00:00:30", &["-r", "198.18.0.100"]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.100"), "{env:?}");
    // A client asking for someone else's address gets a free one.
    let env = lab.udhcpc("52:54:00:00:00:32", &["-r", "198.18.0.100"]);
    assert_eq!(get(&env, "ip"), Some("198.18.0.102"), "{env:?}");
}

#[test]
fn malformed_packets_do_not_crash_the_server() {
    let mut lab = Lab::new("dhcp3");
    lab.client.add_addr("dcli0", "198.18.0.2/24");
    run_helper(&lab, "battery");
    assert!(
        lab.drover.running(),
        "drover died:\n{}",
        lab.drover.log_tail(40)
    );
    // And a real client still gets served.
    let env = lab.udhcpc("52:54:00:00:00:40", &[]);
    let ip: Ipv4Addr = get(&env, "ip").unwrap_or("-").parse().expect("an address");
    assert!((100..200).contains(&ip.octets()[3]), "{env:?}");
    let log = lab.drover.log();
    assert!(!log.contains("panicked"), "{}", lab.drover.log_tail(40));
    assert!(
        log.contains("dropping DHCP datagram"),
        "malformed packets were not logged"
    );
}

#[test]
fn relayed_requests() {
    let lab = Lab::new("dhcp4");
    lab.drover.cli_ok(&[
        "network",
        "add",
        "rack2",
        "--subnet",
        "198.18.8.0/24",
        "--range",
        "198.18.8.100-198.18.8.199",
        "--gateway",
        "198.18.8.1",
    ]);
    // The client namespace plays the relay agent: 198.18.0.2 towards the server, 198.18.8.1
    // (giaddr) on the client side; the server routes replies to giaddr through it.
    lab.client.add_addr("dcli0", "198.18.0.2/24");
    lab.client.add_addr("dcli0", "198.18.8.1/24");
    lab.server
        .ip(&["route", "add", "198.18.8.0/24", "via", "198.18.0.2"]);
    // The running server's view picks up the new network from the store's change feed.
    std::thread::sleep(Duration::from_millis(1500));
    run_helper(&lab, "relay");
    let list = lab.drover.cli_ok(&["lease", "list"]);
    let line = list
        .lines()
        .find(|l| l.starts_with("198.18.8.100"))
        .unwrap_or_else(|| panic!("no relayed lease in:\n{list}"));
    assert!(
        line.contains("52:54:00:00:00:60") && line.contains("rack2"),
        "{list}"
    );
    assert!(line.contains("198.18.8.1"), "relay not recorded: {list}");
}

#[test]
fn a_request_flood_does_not_starve_a_dora() {
    let lab = Lab::new("dhcp5");
    lab.client.add_addr("dcli0", "198.18.0.2/24");
    // The flood runs in the background from the same namespace: 50 clients renewing their
    // addresses as fast as the pacing allows, each renewal an fsync'd commit on old servers.
    let flood = helper(&lab, "flood")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the flood");
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let env = lab.udhcpc("52:54:00:00:00:70", &[]);
    let took = started.elapsed();
    let ip: Ipv4Addr = get(&env, "ip").unwrap_or("-").parse().expect("an address");
    assert!((100..150).contains(&ip.octets()[3]), "{env:?}");
    assert!(
        took < Duration::from_secs(4),
        "DORA took {took:?} under the flood"
    );
    let out = flood.wait_with_output().expect("flood finished");
    let out = String::from_utf8_lossy(&out.stdout);
    eprintln!("DORA took {took:?}; {out}");
    assert!(out.contains("flood done"), "flood helper failed:\n{out}");
    // The flood was served too, with its repeats coalesced rather than dropped at the door.
    let acks: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("flood acks "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(acks >= 50, "the flood got only {acks} ACKs:\n{out}");
}

/// This test binary, to run [`namespace_helper`] with `job` inside the client namespace.
fn helper(lab: &Lab, job: &str) -> Command {
    let me = std::env::current_exe().expect("test binary path");
    let mut cmd = lab.client.cmd(&me);
    cmd.args([
        "--ignored",
        "--exact",
        "namespace_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("DROVER_DHCP_HELPER", format!("{job}:dcli0"));
    cmd
}

fn run_helper(lab: &Lab, job: &str) {
    let out = helper(lab, job).output().expect("run the helper");
    assert!(
        out.status.success(),
        "helper {job} failed:\n{}{}\ndrover log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        lab.drover.log_tail(40)
    );
}

/// Runs inside the client namespace, started by [`run_helper`]: `battery` sends malformed
/// datagrams, then checks that a valid DISCOVER is still answered; `relay` plays a relay
/// agent through a full DORA. Does nothing when run directly.
#[test]
#[ignore = "helper, run by the other tests inside a namespace"]
fn namespace_helper() {
    let Ok(job) = std::env::var("DROVER_DHCP_HELPER") else {
        return;
    };
    match job.split_once(':') {
        Some(("battery", iface)) => send_battery(iface),
        Some(("relay", iface)) => play_relay(iface),
        Some(("flood", iface)) => request_flood(iface),
        _ => panic!("unknown helper job {job:?}"),
    }
}

fn udp_socket(iface: &str, port: u16) -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_broadcast(true).unwrap();
    socket.bind_device(Some(iface.as_bytes())).unwrap();
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .unwrap();
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

/// Sends `req` to `to` until a reply with its xid arrives (10 s at most); returns the reply's
/// bytes.
fn exchange(socket: &UdpSocket, req: &Request, to: SocketAddrV4) -> Vec<u8> {
    let bytes = req.to_bytes();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        socket.send_to(&bytes, to).expect("send");
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if n >= wire::HEADER_LEN && buf[0] == 2 && buf[4..8] == req.xid.to_be_bytes() {
                return buf[..n].to_vec();
            }
        }
    }
    panic!("no reply to xid {:#x}", req.xid);
}

fn play_relay(iface: &str) {
    use dhcproto::v4::{DhcpOption, Message, MessageType as M, OptionCode};
    use dhcproto::Decodable;
    let socket = udp_socket(iface, 67);
    let server = SocketAddrV4::new(SERVER_IP.parse().unwrap(), 67);
    let giaddr = Ipv4Addr::new(198, 18, 8, 1);
    let agent = vec![1, 5, b'p', b'o', b'r', b't', b'7'];
    let mut req = discover(0x7e1a_0001, "52:54:00:00:00:60");
    req.giaddr = giaddr;
    req.hops = 1;
    req.relay_info = Some(agent.clone());
    let bytes = exchange(&socket, &req, server);
    let offer = Message::from_bytes(&bytes).expect("OFFER decodes");
    assert_eq!(offer.opts().msg_type(), Some(M::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 8, 100));
    assert_eq!(offer.giaddr(), giaddr);
    assert_eq!(
        offer.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![giaddr]))
    );
    // Option 82 comes back verbatim, as the last option.
    let raw = wire::scan_options(&bytes[wire::HEADER_LEN..]).unwrap();
    let last = raw.last().unwrap();
    assert_eq!((last.code, &last.data), (82, &agent), "{raw:?}");

    let mut request = req.clone();
    request.xid = 0x7e1a_0002;
    request.msg_type = MessageType::Request;
    request.requested_ip = Some(offer.yiaddr());
    request.server_id = Some(SERVER_IP.parse().unwrap());
    let ack = Message::from_bytes(&exchange(&socket, &request, server)).expect("ACK decodes");
    assert_eq!(ack.opts().msg_type(), Some(M::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::new(198, 18, 8, 100));
    println!("relayed DORA done");
}

fn send_battery(iface: &str) {
    let socket = udp_socket(iface, 68);
    let server = SocketAddrV4::new(SERVER_IP.parse().unwrap(), 67);
    let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);

    let good = discover(0x5eed, "52:54:00:00:00:50").to_bytes();
    let header = &good[..wire::HEADER_LEN];
    let with = |opts: &[u8]| {
        let mut b = header.to_vec();
        b.extend_from_slice(opts);
        b
    };
    let mut battery: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![0; 239],
        vec![0; 240],
        vec![0xff; 600],
        vec![1; 5000],
        with(&[]),
        with(&[53]),
        with(&[53, 1]),
        with(&[53, 1, 1, 12, 200, b'x']),
        with(&[53, 1, 1, 80, 1, 0, 255]),
        with(&[53, 1, 1, 81, 1, 0, 255]),
        with(&[53, 1, 1, 94, 2, 0, 0, 255]),
        with(&[53, 1, 1, 151, 0, 255]),
        with(&[53, 1, 1, 152, 3, 0, 0, 0, 255]),
        with(&[53, 1, 1, 12, 2, 0xff, 0xfe, 255]),
        with(&[53, 1, 1, 93, 3, 0, 0, 7, 255]),
        with(&[53, 1, 1, 82, 3, 1, 5, 0, 255]),
        with(&[53, 1, 2, 255]),
        with(&[53, 1, 99, 255]),
        with(&[53, 1, 3, 50, 4, 198, 18, 0, 150, 255]),
        with(&[53, 1, 3, 54, 4, 9, 9, 9, 9, 50, 4, 198, 18, 0, 150, 255]),
        with(&[53, 1, 4, 255]),
        with(&[53, 1, 7, 255]),
        with(&[53, 1, 8, 255]),
    ];
    for (i, (op, htype, hlen)) in [
        (2u8, 1u8, 6u8),
        (1, 6, 6),
        (1, 1, 16),
        (1, 1, 255),
        (1, 1, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = good.clone();
        b[0] = op;
        b[1] = htype;
        b[2] = hlen;
        b[4] = i as u8;
        battery.push(b);
    }
    let mut bad_cookie = good.clone();
    bad_cookie[236] = 0;
    battery.push(bad_cookie);
    // Seeded random junk and random corruptions of a valid DISCOVER.
    let mut seed: u64 = 0x243f6a8885a308d3;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let len = (next() % 700) as usize;
        battery.push((0..len).map(|_| next() as u8).collect());
        let mut b = good.clone();
        for _ in 0..(next() % 8 + 1) {
            let i = wire::HEADER_LEN + (next() as usize) % (b.len() - wire::HEADER_LEN);
            b[i] = next() as u8;
        }
        // Keep the corrupted ones from being valid requests for real clients' addresses.
        b[28..34].copy_from_slice(&[0x52, 0x54, 0, 0, 0xee, 0xee]);
        battery.push(b);
    }
    for (i, b) in battery.iter().enumerate() {
        let to = if i % 2 == 0 { server } else { bcast };
        socket.send_to(b, to).expect("send");
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // The server still answers a valid DISCOVER.
    let offer = exchange(&socket, &discover(0x5eed_0001, "52:54:00:00:00:51"), bcast);
    let offer = wire::scan_options(&offer[wire::HEADER_LEN..]).unwrap();
    assert!(
        offer.iter().any(|o| o.code == 53 && o.data == [2]),
        "not an OFFER: {offer:?}"
    );
    println!("got an OFFER after the battery");
}

/// 50 clients send INIT-REBOOT REQUESTs for their own addresses (198.18.0.150-199), about
/// 10,000 a second for 8 s, and count the ACKs that come back.
fn request_flood(iface: &str) {
    let socket = udp_socket(iface, 68);
    socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let requests: Vec<Vec<u8>> = (0..50u8)
        .map(|i| {
            let mut req = discover(
                0xf100_0000 + u32::from(i),
                &format!("52:54:00:ff:00:{i:02x}"),
            );
            req.msg_type = MessageType::Request;
            req.requested_ip = Some(Ipv4Addr::new(198, 18, 0, 150 + i));
            req.to_bytes()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut sent, mut acks) = (0u64, 0u64);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        for req in &requests {
            // The link goes down for a moment while udhcpc's MAC is set.
            sent += u64::from(socket.send_to(req, bcast).is_ok());
        }
        // 50 every ~5 ms, reading replies in between.
        let until = Instant::now() + Duration::from_millis(5);
        while Instant::now() < until {
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                let ack = wire::scan_options(&buf[wire::HEADER_LEN.min(n)..n])
                    .is_ok_and(|o| o.iter().any(|o| o.code == 53 && o.data == [5]));
                acks += u64::from(n > wire::HEADER_LEN && buf[0] == 2 && ack);
            }
        }
    }
    println!("flood sent {sent}");
    println!("flood acks {acks}");
    println!("flood done");
}

fn discover(xid: u32, mac: &str) -> Request {
    let mac: Mac = mac.parse().unwrap();
    Request {
        msg_type: MessageType::Discover,
        xid,
        secs: 0,
        hops: 0,
        broadcast: true,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr: mac,
        requested_ip: None,
        server_id: None,
        client_id: None,
        hostname: None,
        params: vec![1, 3, 6],
        max_size: None,
        arch: Vec::new(),
        user_class: None,
        ipxe_encap: None,
        vendor_class: None,
        uuid: None,
        relay_info: None,
    }
}
