//! `drover agent simulate`: one node's network boot without the kernel parts, for the
//! boot-storm bench (`bench/storm.sh`) and its test (`integration/storm.rs`).
//!
//! Data flow, as the firmware and the agent would do it on a real node:
//!
//! 1. DHCP as iPXE asks (user class `iPXE`, option 175, architecture 0, the captured
//!    parameter list), so drover answers with the same address and boot URL as for iPXE:
//!    DISCOVER, OFFER, REQUEST, ACK, retransmitted with backoff; the address goes on the
//!    interface ([`crate::net::sys::set_ipv4`]), so what follows comes from the node's own
//!    address (drover takes boot events only from there);
//! 2. GET the boot file (`/boot/{mac}`), read it as iPXE would ([`super::script`]), GET its
//!    kernel and initrd (each alternative in turn), counting bytes and keeping none;
//! 3. parse the kernel command line with the agent's own [`super::cmdline::parse`], post the
//!    `agent` event, download the root image with the agent's own [`super::fetch_root`] into a
//!    sink that walks the archive and keeps nothing ([`Walk`]), post `root` and `ready`;
//! 4. print one JSON line with what was fetched and how long each step took.
//!
//! Not simulated: the first PXE stage (TFTP of the iPXE binary), NFS roots (mounting needs a
//! kernel client; refused with [`SimError::NfsRoot`]), the node's files and `switch_root`.
//! It runs as root in a namespace of its own with one interface: it changes that interface's
//! address.

use super::cmdline::{self, Mac, RootSource, ServerUrl};
use super::{http, script, Console, RootSink};
use crate::dhcp::wire::{MessageType, Request};
use crate::image::unpack;
use crate::net::sys;
use dhcproto::v4::{self, DhcpOption, OptionCode};
use dhcproto::{Decodable, Decoder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// DHCP retransmission: the first wait, doubled up to the last, for at most this many sends
/// of each message (iPXE's own schedule is similar: 1 s doubling, a few tries).
const DHCP_FIRST_WAIT: Duration = Duration::from_secs(1);
const DHCP_MAX_WAIT: Duration = Duration::from_secs(8);
const DHCP_SENDS: u32 = 8;
/// The parameter request list of iPXE (captured from Debian's 2019 ROM).
const IPXE_PARAMS: &[u8] = &[
    1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175,
    203,
];
/// iPXE's option 175 (its feature flags and build), captured with the list above.
const IPXE_ENCAP: &[u8] = &[
    0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, 0xeb, 0x03, 0x01, 0x00, 0x00, 0x17, 0x01, 0x01, 0x22,
    0x01, 0x01, 0x13, 0x01, 0x01, 0x11, 0x01, 0x01, 0x27, 0x01, 0x01, 0x19, 0x01, 0x01, 0x29, 0x01,
    0x01, 0x10, 0x01, 0x02, 0x21, 0x01, 0x01, 0x15, 0x01, 0x01, 0x18, 0x01, 0x01, 0x12, 0x01, 0x01,
];

/// Why a simulated boot stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("interface {0}: {1}")]
    Interface(String, io::Error),
    #[error("DHCP socket: {0}")]
    Socket(io::Error),
    #[error("no DHCP {0} after {DHCP_SENDS} sends")]
    NoAnswer(&'static str),
    #[error("DHCP server refused the request: {0}")]
    Nak(String),
    #[error("the DHCP answer has no boot file (is the MAC a known node?)")]
    NoBootFile,
    #[error("boot file URL {0:?}: {1}")]
    Url(String, &'static str),
    #[error("GET {0}: {1}")]
    Http(String, http::HttpError),
    #[error("reading {0}: {1}")]
    Read(String, io::Error),
    #[error("boot script: {0}")]
    Script(#[from] script::ScriptError),
    #[error("kernel command line: {0}")]
    Cmdline(#[from] cmdline::CmdlineError),
    #[error("the node has an NFS root ({0}): not simulated here (needs an NFSv4 client)")]
    NfsRoot(String),
    #[error("the node boots into discovery: not simulated")]
    Discovery,
}

/// What a simulated boot fetched and how long each step took (milliseconds since start).
#[derive(Debug, Serialize)]
pub struct Report {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub node: String,
    pub server: String,
    pub script_bytes: u64,
    pub kernel_bytes: u64,
    pub initrd_bytes: u64,
    pub image_bytes: u64,
    pub image_entries: u64,
    pub dhcp_ms: u64,
    pub files_ms: u64,
    pub image_ms: u64,
    pub ready_ms: u64,
}

/// One DHCP answer, the parts iPXE would use.
struct Lease {
    ip: Ipv4Addr,
    netmask: Ipv4Addr,
    gateway: Option<Ipv4Addr>,
    dns: Option<Ipv4Addr>,
    ntp: Option<Ipv4Addr>,
    domain: Option<String>,
    boot_file: Option<String>,
}

/// Boots one simulated node on `iface` as `mac` (the interface's own when `None`).
pub fn run(iface: &str, mac: Option<Mac>) -> Result<Report, SimError> {
    let start = Instant::now();
    let ms = |t: Instant| u64::try_from(t.duration_since(start).as_millis()).unwrap_or(u64::MAX);
    let mut con = Console::new();
    let mac = match mac {
        Some(m) => m,
        None => own_mac(iface)?,
    };
    for dev in ["lo", iface] {
        sys::interface_up(dev).map_err(|e| SimError::Interface(dev.into(), e))?;
    }
    let lease = dhcp(iface, mac, random_xid(&mac))?;
    sys::set_ipv4(iface, lease.ip, lease.netmask)
        .map_err(|e| SimError::Interface(iface.into(), e))?;
    let dhcp_ms = ms(Instant::now());
    con.say(format_args!("DHCP: {} in {dhcp_ms} ms", lease.ip));

    let url = lease.boot_file.clone().ok_or(SimError::NoBootFile)?;
    let text = fetch_text(&url)?;
    let settings = settings(&lease, mac);
    let boot = script::parse(&text, &settings)?;
    let kernel_bytes = fetch_first(&boot.kernel)?;
    let initrd_bytes = if boot.initrd.is_empty() {
        0
    } else {
        fetch_first(&boot.initrd)?
    };
    let files_ms = ms(Instant::now());

    let params = cmdline::parse(&boot.cmdline)?;
    if params.discover {
        return Err(SimError::Discovery);
    }
    if let RootSource::Nfs { .. } = params.root {
        return Err(SimError::NfsRoot(params.root.to_string()));
    }
    // `cmdline::parse` refuses a command line without servers.
    let first = params.servers[0].clone();
    super::report(&mut con, &first, &params, "agent", "simulated: network up");
    let mut walk = Walk::default();
    let fetched = super::fetch_root(&mut con, &params, &mut walk);
    let (server, image_bytes) = (fetched.server, fetched.bytes);
    let image_ms = ms(Instant::now());
    super::report(
        &mut con,
        &server,
        &params,
        "root",
        "simulated: image fetched",
    );
    super::report(&mut con, &server, &params, "ready", "simulated: ready");
    Ok(Report {
        mac: mac.to_string(),
        ip: lease.ip,
        node: params.node.clone(),
        server: server.to_string(),
        script_bytes: text.len() as u64,
        kernel_bytes,
        initrd_bytes,
        image_bytes,
        image_entries: walk.entries,
        dhcp_ms,
        files_ms,
        image_ms,
        ready_ms: ms(Instant::now()),
    })
}

/// The simulator's root: every entry of the archive is read through and dropped.
#[derive(Default)]
struct Walk {
    entries: u64,
}

impl RootSink for Walk {
    fn name(&self) -> &str {
        "the simulator's counting sink"
    }

    fn fresh(&mut self) -> io::Result<()> {
        self.entries = 0;
        Ok(())
    }

    fn take(&mut self, body: &mut dyn Read) -> io::Result<unpack::Stats> {
        let mut stats = unpack::Stats::default();
        for entry in tar::Archive::new(body).entries()? {
            let mut entry = entry?;
            stats.bytes += io::copy(&mut entry, &mut io::sink())?;
            stats.entries += 1;
        }
        self.entries = stats.entries;
        Ok(stats)
    }
}

fn own_mac(iface: &str) -> Result<Mac, SimError> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| SimError::Interface(iface.into(), e))?;
    Mac::parse(&text).ok_or_else(|| {
        SimError::Interface(
            iface.into(),
            io::Error::new(io::ErrorKind::InvalidData, "not an Ethernet MAC"),
        )
    })
}

/// A transaction id that differs between nodes and runs: the MAC mixed with the time.
fn random_xid(mac: &Mac) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let m = u32::from_be_bytes([mac.0[2], mac.0[3], mac.0[4], mac.0[5]]);
    m.rotate_left(7) ^ nanos ^ std::process::id()
}

/// iPXE's settings after this lease, as its scripts name them.
fn settings(lease: &Lease, mac: Mac) -> BTreeMap<&'static str, String> {
    let opt = |a: Option<Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
    BTreeMap::from([
        ("mac", mac.to_string()),
        ("ip", lease.ip.to_string()),
        ("netmask", lease.netmask.to_string()),
        ("gateway", opt(lease.gateway)),
        ("dns", opt(lease.dns)),
        ("42:ipv4", opt(lease.ntp)),
        ("domain", lease.domain.clone().unwrap_or_default()),
    ])
}

/// DISCOVER -> OFFER, REQUEST -> ACK on `iface`, from 0.0.0.0:68 to the broadcast address.
fn dhcp(iface: &str, mac: Mac, xid: u32) -> Result<Lease, SimError> {
    let socket = dhcp_socket(iface).map_err(SimError::Socket)?;
    let mut req = ipxe_discover(mac, xid);
    let offer = exchange(&socket, &req, v4::MessageType::Offer, "OFFER")?;
    req.msg_type = MessageType::Request;
    req.requested_ip = Some(offer.yiaddr());
    req.server_id = ipv4_opt(&offer, OptionCode::ServerIdentifier);
    let ack = exchange(&socket, &req, v4::MessageType::Ack, "ACK")?;
    let first = |code| match ack.opts().get(code) {
        Some(
            DhcpOption::Router(v) | DhcpOption::DomainNameServer(v) | DhcpOption::NtpServers(v),
        ) => v.first().copied(),
        _ => None,
    };
    let boot_file = match ack.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(b)) => Some(b.clone()),
        _ => ack.fname().map(<[u8]>::to_vec),
    }
    .map(|b| {
        String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .to_string()
    })
    .filter(|s| !s.is_empty());
    Ok(Lease {
        ip: ack.yiaddr(),
        netmask: match ack.opts().get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => *m,
            _ => Ipv4Addr::new(255, 255, 255, 0),
        },
        gateway: first(OptionCode::Router),
        dns: first(OptionCode::DomainNameServer),
        ntp: first(OptionCode::NtpServers),
        domain: match ack.opts().get(OptionCode::DomainName) {
            Some(DhcpOption::DomainName(d)) => Some(d.clone()),
            _ => None,
        },
        boot_file,
    })
}

/// A DISCOVER with the options iPXE sends (so drover gives its iPXE answer).
fn ipxe_discover(mac: Mac, xid: u32) -> Request {
    Request {
        msg_type: MessageType::Discover,
        xid,
        secs: 0,
        hops: 0,
        broadcast: false,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr: crate::store::model::Mac(mac.0),
        requested_ip: None,
        server_id: None,
        client_id: Some([&[1u8][..], &mac.0].concat()),
        hostname: None,
        params: IPXE_PARAMS.to_vec(),
        max_size: Some(1472),
        arch: vec![0],
        user_class: Some(b"iPXE".to_vec()),
        ipxe_encap: Some(IPXE_ENCAP.to_vec()),
        vendor_class: Some(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        uuid: None,
        relay_info: None,
    }
}

fn ipv4_opt(msg: &v4::Message, code: OptionCode) -> Option<Ipv4Addr> {
    match msg.opts().get(code) {
        Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    }
}

fn dhcp_socket(iface: &str) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Without an address or route, only a socket bound to the device may send to
    // 255.255.255.255.
    s.bind_device(Some(iface.as_bytes()))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())?;
    Ok(s.into())
}

/// Sends `req` until an answer of type `want` for it arrives, with backoff; a NAK ends it.
fn exchange(
    socket: &UdpSocket,
    req: &Request,
    want: v4::MessageType,
    what: &'static str,
) -> Result<v4::Message, SimError> {
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let bytes = req.to_bytes();
    let mut wait = DHCP_FIRST_WAIT;
    let mut buf = vec![0u8; crate::dhcp::wire::MAX_DATAGRAM];
    for _ in 0..DHCP_SENDS {
        socket.send_to(&bytes, to).map_err(SimError::Socket)?;
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(SimError::Socket)?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(SimError::Socket(e)),
            };
            // Other nodes' answers (broadcast) and garbage are skipped.
            let Ok(msg) = v4::Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            if msg.opcode() != v4::Opcode::BootReply
                || msg.xid() != req.xid
                || msg.chaddr().get(..6) != Some(&req.chaddr.0[..])
            {
                continue;
            }
            match msg.opts().msg_type() {
                Some(t) if t == want => return Ok(msg),
                Some(v4::MessageType::Nak) => {
                    let why = match msg.opts().get(OptionCode::Message) {
                        Some(DhcpOption::Message(m)) => m.clone(),
                        _ => String::new(),
                    };
                    return Err(SimError::Nak(why));
                }
                _ => {}
            }
        }
        wait = (wait * 2).min(DHCP_MAX_WAIT);
    }
    Err(SimError::NoAnswer(what))
}

/// Splits `http://host[:port]/path` into the server and the request target.
fn split_url(url: &str) -> Result<(ServerUrl, String), SimError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| SimError::Url(url.into(), "not http://"))?;
    let (authority, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let server = ServerUrl::parse(&format!("http://{authority}"))
        .map_err(|why| SimError::Url(url.into(), why))?;
    Ok((server, path.to_string()))
}

fn get(url: &str) -> Result<http::Body<std::net::TcpStream>, SimError> {
    let (server, path) = split_url(url)?;
    http::get(&server, &path).map_err(|e| SimError::Http(url.into(), e))
}

/// The boot script at `url`, bounded.
fn fetch_text(url: &str) -> Result<String, SimError> {
    let body = get(url)?;
    let mut text = String::new();
    body.take(script::MAX_SCRIPT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| SimError::Read(url.into(), e))?;
    Ok(text)
}

/// Downloads the first of `urls` that works (as iPXE's `||`), counting and dropping the
/// bytes; the last error when none does.
fn fetch_first(urls: &[String]) -> Result<u64, SimError> {
    let mut last = SimError::Script(script::ScriptError::NoUrl("kernel"));
    for url in urls {
        match get(url).and_then(|mut b| {
            io::copy(&mut b, &mut io::sink()).map_err(|e| SimError::Read(url.clone(), e))
        }) {
            Ok(n) => return Ok(n),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_boot_urls() {
        let (s, p) = split_url("http://198.18.0.1:8080/boot/52:54:00:00:00:01").unwrap();
        assert_eq!(s.addr.to_string(), "198.18.0.1:8080");
        assert_eq!(p, "/boot/52:54:00:00:00:01");
        assert!(matches!(
            split_url("tftp://198.18.0.1/x"),
            Err(SimError::Url(..))
        ));
        assert!(matches!(split_url("http://name/x"), Err(SimError::Url(..))));
    }

    /// The request looks like iPXE's to drover's own decoder.
    #[test]
    fn the_discover_is_taken_for_ipxe() {
        let mac = Mac([0x52, 0x54, 0, 0, 0, 9]);
        let req = ipxe_discover(mac, random_xid(&mac));
        let back = crate::dhcp::wire::decode(&req.to_bytes()).unwrap();
        assert!(back.is_ipxe() && back.is_pxe());
        assert_eq!(back.params, IPXE_PARAMS);
    }
}
