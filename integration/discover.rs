//! Discovery and identity by location through the real binary: a relay agent (this test
//! binary in the client namespace) gets a machine an address with DHCP option 82, the machine
//! posts its inventory with `curl` from that address, and a naming rule on the relay's
//! remote-id and circuit-id adopts it; another machine waits, is listed by
//! `drover node discovered` (locally and with `--server`) and is adopted by hand; a report
//! from an address that is not the MAC's lease is refused.
//!
//! Layout: a server namespace with `dvsv0` (198.18.0.1/24) running `drover serve --interface
//! dvsv0`; a client namespace with the veth peer `dvcl0` playing the relay (198.18.0.2
//! towards the server, 198.18.8.1 = giaddr) and the machines at the addresses they lease in
//! 198.18.8.0/24.
//!
//! Needs root, `ip` (iproute2) and `curl`; fails without them.

mod common;

use common::{require_cmd, require_root, run_ok, Drover, Netns};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const RULED: &str = "52:54:00:00:0d:01";
const WAITING: &str = "52:54:00:00:0d:02";
/// Option 82: circuit-id "Ethernet1/7", remote-id "rack2-sw1".
const AGENT_INFO: &[u8] = b"\x01\x0bEthernet1/7\x02\x09rack2-sw1";

struct Lab {
    drover: Drover,
    server: Netns,
    client: Netns,
    curl: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        require_cmd("ip", "iproute2");
        let curl = require_cmd("curl", "curl");
        let server = Netns::new("dvss");
        let client = Netns::new("dvsc");
        server.add_veth("dvsv0", &client, "dvcl0");
        server.add_addr("dvsv0", "198.18.0.1/24");
        client.add_addr("dvcl0", "198.18.0.2/24");
        client.add_addr("dvcl0", "198.18.8.1/24");
        server.ip(&["route", "add", "198.18.8.0/24", "via", "198.18.0.2"]);
        let mut drover = Drover::new();
        for (name, subnet, range) in [
            ("lab", "198.18.0.0/24", "198.18.0.100-198.18.0.199"),
            ("rack2", "198.18.8.0/24", "198.18.8.100-198.18.8.199"),
        ] {
            drover.cli_ok(&["network", "add", name, "--subnet", subnet, "--range", range]);
        }
        drover.start(Some(&server), &["serve", "--interface", "dvsv0"]);
        drover.wait_log("drover: ready", Duration::from_secs(20));
        Lab {
            drover,
            server,
            client,
            curl,
        }
    }

    /// Plays the relay for `mac` (option 82 when `agent_info`); returns the leased address,
    /// which is then added to the client side so the machine can talk from it.
    fn relayed_lease(&self, mac: &str, agent_info: Option<&[u8]>) -> String {
        let me = std::env::current_exe().expect("test binary path");
        let job = format!("{mac}/{}", agent_info.map(hex).unwrap_or_default());
        let out = self
            .client
            .cmd(&me)
            .args(["--ignored", "--exact", "relay_helper", "--nocapture"])
            .env("DROVER_DISCOVER_RELAY", job)
            .output()
            .expect("run the relay helper");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ip = stdout
            .lines()
            .find_map(|l| l.strip_prefix("leased "))
            .unwrap_or_else(|| {
                panic!(
                    "relay helper for {mac} failed:\n{stdout}{}\ndrover log:\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.drover.log_tail(40)
                )
            })
            .trim()
            .to_string();
        self.client.add_addr("dvcl0", &format!("{ip}/24"));
        ip
    }

    /// `curl` from address `from` in the client namespace; returns (HTTP status, body).
    fn curl(&self, from: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = self.client.cmd(&self.curl);
        cmd.args(["-sS", "--max-time", "10", "--interface", from, "-X", method])
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        let out = run_ok(cmd.arg(format!("http://198.18.0.1{path}")));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The drover CLI through the API (`--server`, a token) from the server namespace.
    fn remote(&self, token: &str, args: &[&str]) -> String {
        let elsewhere = Drover::new();
        let mut cmd = self.server.cmd(elsewhere.bin());
        cmd.arg("--state-dir")
            .arg(elsewhere.state_dir())
            .args(["--server", "http://198.18.0.1", "--token", token])
            .args(args);
        String::from_utf8_lossy(&run_ok(&mut cmd).stdout).into_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An inventory as the agent posts it: one NIC (`mac`), a disk, DMI identity.
fn inventory(mac: &str, serial: &str) -> String {
    serde_json::json!({
        "cpu_model": "QEMU Virtual CPU version 2.5+",
        "cpus": 2,
        "memory_kib": 2_030_852,
        "disks": [{ "name": "vda", "size_bytes": 8_589_934_592_u64, "serial": "disk-0001" }],
        "nics": [{ "name": "eth0", "mac": mac, "speed_mbps": 1000 }],
        "dmi": { "vendor": "QEMU", "product": "Standard PC", "serial": serial },
    })
    .to_string()
}

#[test]
fn relayed_machines_are_discovered_named_by_option_82_and_adopted() {
    let lab = Lab::new();
    let added = lab.drover.cli_ok(&[
        "rule",
        "add",
        "rack2-sw1 port 1-8 -> r2n[01-08]",
        "--group",
        "rack2",
    ]);
    assert!(
        added.contains("added rule rack2-sw1 port 1-8 -> r2n[01-08]"),
        "{added}"
    );
    let bad = lab
        .drover
        .cli(&["rule", "add", "rack2-sw1 port 8-1 -> x[1-8]"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a port number or range"));

    // The ruled machine: leased through the relay with option 82, then reports.
    let ip = lab.relayed_lease(RULED, Some(AGENT_INFO));
    assert!(ip.starts_with("198.18.8."), "{ip}");
    let path = format!("/boot/{RULED}/inventory");
    // Not from its lease: refused, nothing recorded.
    let (status, _) = lab.curl("198.18.0.2", "POST", &path, Some(&inventory(RULED, "SN-1")));
    assert_eq!(status, 403);
    let (status, body) = lab.curl(&ip, "POST", &path, Some(&inventory(RULED, "SN-1")));
    assert_eq!(status, 200, "{body}\n{}", lab.drover.log_tail(30));
    assert_eq!(body, r#"{"state":"adopted","node":"r2n07"}"#);
    let node = lab.drover.cli_ok(&["node", "show", "r2n07"]);
    assert!(node.contains(RULED) && node.contains("rack2"), "{node}");
    // Malformed inventories are refused with a reason.
    let (status, body) = lab.curl(&ip, "POST", &path, Some(r#"{"cpus": "many"}"#));
    assert_eq!(status, 400, "{body}");

    // A machine without option 82 waits, with a serial that the first one has too.
    let ip2 = lab.relayed_lease(WAITING, None);
    let path2 = format!("/boot/{WAITING}/inventory");
    let (status, body) = lab.curl(&ip2, "POST", &path2, Some(&inventory(WAITING, "SN-1")));
    assert_eq!((status, body.as_str()), (200, r#"{"state":"waiting"}"#));
    let list = lab.drover.cli_ok(&["node", "discovered"]);
    let row = list
        .lines()
        .find(|l| l.starts_with(WAITING))
        .unwrap_or_else(|| panic!("{WAITING} not listed:\n{list}"));
    for field in [
        ip2.as_str(),
        "QEMU",
        "SN-1",
        "vda:8G:disk-0001",
        "eth0:",
        "1983M",
    ] {
        assert!(row.contains(field), "{field:?} missing from {row:?}");
    }
    assert!(
        !list.lines().any(|l| l.starts_with(RULED)),
        "an adopted machine is still listed:\n{list}"
    );
    // The adopted machine's board and the waiting one share a serial: reported, not merged.
    let dup = format!("duplicate DMI serial SN-1: {RULED}, {WAITING}");
    assert!(list.contains(&dup), "{list}");
    let all = lab.drover.cli_ok(&["node", "discovered", "--all"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with(RULED) && l.ends_with("r2n07")),
        "{all}"
    );

    // Through the API, the same list and the adoption by hand.
    let created = lab.drover.cli_ok(&["token", "create", "--name", "t"]);
    let token = created.split_whitespace().last().expect("a token");
    assert_eq!(lab.remote(token, &["node", "discovered"]), list);
    let out = lab.remote(
        token,
        &["node", "adopt", WAITING, "login1", "--group", "logins"],
    );
    assert!(out.contains("adopted"), "{out}");
    let (status, body) = lab.curl(&ip2, "GET", &format!("/boot/{WAITING}/standing"), None);
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"state":"adopted","node":"login1"}"#)
    );
    let rules = lab.remote(token, &["rule", "list"]);
    assert!(
        rules.contains("rack2-sw1 port 1-8 -> r2n[01-08]  rack2"),
        "{rules}"
    );
    lab.remote(token, &["rule", "rm", "rack2-sw1 port 1-8 -> r2n[01-08]"]);
    assert!(!lab.drover.cli_ok(&["rule", "list"]).contains("rack2-sw1"));
}

/// Runs in the client namespace: a relay agent's DISCOVER and REQUEST for the job's MAC (with
/// the job's option 82, hex), printing `leased IP`. Does nothing when run directly.
#[test]
#[ignore = "helper, run by the test above inside a namespace"]
fn relay_helper() {
    let Ok(job) = std::env::var("DROVER_DISCOVER_RELAY") else {
        return;
    };
    let (mac, info) = job.split_once('/').expect("MAC/HEX");
    let info: Vec<u8> = (0..info.len() / 2)
        .map(|i| u8::from_str_radix(&info[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    // Replies go to giaddr (198.18.8.1), on the same interface as 198.18.0.2.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind_device(Some(b"dvcl0")).unwrap();
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67).into())
        .unwrap();
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let server = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 67);
    let chaddr: drover::store::model::Mac = mac.parse().expect("a MAC");
    let xid = u32::from_be_bytes([0x0d, 0x15, chaddr.0[4], chaddr.0[5]]);
    let offered = reply_to(&socket, &packet(1, xid, chaddr.0, &info, None), xid, server);
    let request = packet(3, xid + 1, chaddr.0, &info, Some((offered, *server.ip())));
    let acked = reply_to(&socket, &request, xid + 1, server);
    assert_eq!(acked, offered);
    println!("leased {acked}");
}

/// A relayed DHCP message of type `kind` (1 DISCOVER, 3 REQUEST) from giaddr 198.18.8.1,
/// with option 82 when `info` is not empty, and options 50 and 54 for a REQUEST.
fn packet(
    kind: u8,
    xid: u32,
    chaddr: [u8; 6],
    info: &[u8],
    requested: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    // BOOTREQUEST, Ethernet, 6-byte addresses, one relay hop.
    let mut p = vec![1, 1, 6, 1];
    p.extend_from_slice(&xid.to_be_bytes());
    p.resize(24, 0);
    p.extend_from_slice(&[198, 18, 8, 1]);
    p.extend_from_slice(&chaddr);
    p.resize(236, 0);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    if let Some((ip, server)) = requested {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&ip.octets());
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&server.octets());
    }
    if !info.is_empty() {
        p.extend_from_slice(&[82, info.len() as u8]);
        p.extend_from_slice(info);
    }
    p.push(255);
    p
}

/// Sends `packet` until a reply with `xid` comes; returns its yiaddr.
fn reply_to(socket: &UdpSocket, packet: &[u8], xid: u32, to: SocketAddrV4) -> Ipv4Addr {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        socket.send_to(packet, to).expect("send");
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            if n >= 20 && buf[0] == 2 && buf[4..8] == xid.to_be_bytes() {
                return Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
            }
        }
    }
    panic!("no reply to xid {xid:#x}");
}
