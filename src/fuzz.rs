//! Fuzz entry points: one function per decoder that takes hostile bytes, each a
//! [`Target`] in [`TARGETS`]. A target feeds its input to the real decoder exactly as the
//! shell does (and, where it is cheap, to the sans-IO core behind it, or re-encodes what was
//! decoded and checks that it reads back the same); the only failure is a panic.
//!
//! Three callers: the AFL++ harness in `fuzz/` (a separate package, built with the `fuzz`
//! feature), the unit test below that replays every file of `fuzz/seeds/<target>/` and
//! `fuzz/regressions/<target>/` on every `cargo test` (so a crash once found stays fixed), and
//! `write_seeds`, an ignored test that writes the seeds from the project's own encoders.
//!
//! Authenticated inputs (pool frames, SWIM datagrams) are sealed here with a fixed cluster
//! key before the decoder sees them: a fuzzer cannot forge a MAC, and the code behind the MAC
//! check is what a member (or a stolen key) can reach. Stateful targets (NFS, IPMI) read their
//! input as a sequence of messages against one server or session on virtual time.
//!
//! Not here: the AFL++ glue (`fuzz/src/main.rs`), sockets, timers or stores (every target is
//! in memory); not compiled into the `drover` binary (only under `test` or the `fuzz`
//! feature). It is not a sans-IO module in the `integration/sans_io.rs` sense: the two
//! stateful targets read `Instant::now()` once as the origin of their virtual time.

use crate::admin::{self, AdminError};
use crate::api::input::Fields;
use crate::config::Config;
use crate::dhcp;
use crate::discover::lldp;
use crate::dns;
use crate::http::serve::AgentEvent;
use crate::ipmi::core::{self as ipmi_core, Login, Random, Session};
use crate::ipmi::crypto::Suite;
use crate::ipmi::wire as ipmi_wire;
use crate::ipmi::{sdr, sol};
use crate::nfs::core::{Server, Settings};
use crate::nfs::memvfs::MemVfs;
use crate::nfs::replica::wire::{Ack, Shipment};
use crate::nfs::rpc;
use crate::nfs::state::Limits as NfsLimits;
use crate::nfs::wire::{decode_compound, MAX_OPS};
use crate::ntp;
use crate::pool::frame::Frame;
use crate::pool::key::ClusterKey;
use crate::pool::membership::{self, MemberId, Membership};
use crate::pool::seal::{ClientHandshake, DatagramKey, ServerHandshake, HELLO_LEN};
use crate::redfish;
use crate::store::model::{Ipv4Net, Mac, Network};
use crate::tftp;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A named fuzz target.
pub struct Target {
    /// The name of its seed and regression folders and of the harness's argument.
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `bench/fuzz.sh` and CI run them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "dhcp",
        run: dhcp_packet,
    },
    Target {
        name: "dns",
        run: dns_packet,
    },
    Target {
        name: "ntp",
        run: ntp_packet,
    },
    Target {
        name: "tftp",
        run: tftp_packet,
    },
    Target {
        name: "nfs",
        run: nfs_records,
    },
    Target {
        name: "layer",
        run: layer_shipment,
    },
    Target {
        name: "ipmi",
        run: ipmi_replies,
    },
    Target {
        name: "pool_frame",
        run: pool_frame,
    },
    Target {
        name: "swim",
        run: swim_datagram,
    },
    Target {
        name: "agent_event",
        run: agent_event,
    },
    Target {
        name: "csv",
        run: node_csv,
    },
    Target {
        name: "config",
        run: config_toml,
    },
    Target {
        name: "bmc",
        run: bmc_data,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The key every sealed input is sealed with (any fixed key will do).
const KEY: [u8; 32] = [0x5a; 32];
/// The client address of requests that need one (a documentation address, RFC 5737).
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// A DHCP datagram as received on port 67, through the server core; and the same bytes as a
/// client's exchange (see [`dhcp_exchange`]).
fn dhcp_packet(data: &[u8]) {
    dhcp_exchange(std::iter::once(data));
    dhcp_exchange(framed(data));
}

/// Requests handled one after the other by the DHCP core of a lone member serving the
/// interface's own subnet (no store networks or nodes), offers remembered between them as
/// the shell does, every reply encoded. Returns the actions (the tests check a seed's DORA).
fn dhcp_exchange<'a>(requests: impl Iterator<Item = &'a [u8]>) -> Vec<dhcp::core::Action> {
    let subnet = Ipv4Net::containing(Ipv4Addr::new(192, 0, 2, 1), 24)
        .unwrap_or_else(|| unreachable!("a /24 is a prefix"));
    let mut ctx = dhcp::core::Context::new(
        "fuzz0",
        Ipv4Addr::new(192, 0, 2, 1),
        subnet,
        "http://192.0.2.1".into(),
    );
    ctx.services.dns = true;
    ctx.services.ntp = true;
    ctx.peers = vec![Ipv4Addr::new(192, 0, 2, 2)];
    let share = dhcp::share::Share::solo(1);
    let view = crate::store::View::default();
    let mut offers = dhcp::core::Offers::default();
    let mut now = 1_700_000_000;
    let mut actions = Vec::new();
    for bytes in requests {
        now += 1;
        let Ok(request) = dhcp::wire::decode(bytes) else {
            continue;
        };
        let action = dhcp::core::handle(now, &request, &ctx, &share, &view, &offers);
        let mut out = Vec::new();
        match &action {
            dhcp::core::Action::Hold(offer, reply, _) => {
                offers.insert(now, offer.clone());
                let _ = dhcp::wire::encode(reply, &mut out);
            }
            dhcp::core::Action::Reply(reply, _)
            | dhcp::core::Action::CommitThenReply(_, reply, _) => {
                let _ = dhcp::wire::encode(reply, &mut out);
            }
            dhcp::core::Action::Drop(_) | dhcp::core::Action::Commit(_) => {}
        }
        actions.push(action);
    }
    actions
}

/// Zones of two networks with a few hosts (built once per process: building is not what the
/// target is about).
fn dns_zones() -> &'static dns::core::Zones {
    static ZONES: std::sync::OnceLock<dns::core::Zones> = std::sync::OnceLock::new();
    ZONES.get_or_init(|| {
        let net = |name: &str, subnet: [u8; 4], prefix: u8, domain: Option<&str>| Network {
            name: name.into(),
            // The prefixes below are at most 32, so there always is one.
            subnet: Ipv4Net::containing(Ipv4Addr::from(subnet), prefix)
                .unwrap_or_else(|| unreachable!("prefix at most 32")),
            range: None,
            gateway: None,
            domain: domain.map(String::from),
        };
        let host = |name: &str, ip: [u8; 4], aliases: &[&str]| dns::core::Host {
            name: name.into(),
            ip: Ipv4Addr::from(ip),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        };
        let networks = [
            net("lab", [192, 0, 2, 0], 24, Some("lab.test")),
            net("big", [198, 18, 0, 0], 20, None),
        ];
        let hosts = [
            host("node1", [192, 0, 2, 10], &["web", "www"]),
            host("node2", [198, 18, 3, 7], &[]),
        ];
        let members = [dns::core::Member {
            id: 2,
            ip: Ipv4Addr::new(192, 0, 2, 2),
        }];
        let ident = dns::core::Identity {
            addrs: vec![Ipv4Addr::new(192, 0, 2, 1)],
            member: 2,
            ..dns::core::Identity::default()
        };
        dns::core::Zones::from_parts(42, &networks, &hosts, &members, &ident)
    })
}

/// A DNS query as received, answered by the authoritative core from [`dns_zones`] (over TCP
/// from an address allowed to transfer, so AXFR is reachable too) and encoded as the shell
/// does; and the same bytes as an upstream's answer to a forwarded query (whose question
/// they must repeat).
fn dns_packet(data: &[u8]) {
    let Ok(request) = dns::wire::decode(data) else {
        return;
    };
    if let Some(q) = &request.question {
        let _ = dns::wire::decode_response(data, request.header.id, q);
    }
    let policy = dns::core::AccessPolicy {
        forwarding: true,
        forward_from: Vec::new(),
        axfr_allow: vec![IpAddr::V4(PEER)],
    };
    let (client, transport) = if data.len() % 2 == 0 {
        (IpAddr::V4(PEER), dns::core::Transport::Tcp)
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            dns::core::Transport::Udp,
        )
    };
    let mut out = Vec::new();
    match dns::core::handle(&request, dns_zones(), client, transport, &policy) {
        dns::core::Action::Reply(m) | dns::core::Action::Refuse(m) => {
            let limit = match transport {
                dns::core::Transport::Udp => usize::from(request.udp_limit()),
                dns::core::Transport::Tcp => dns::wire::MAX_TCP_SIZE,
            };
            let _ = dns::wire::encode(&m, limit, &mut out);
        }
        dns::core::Action::Transfer(m) => {
            let _ = dns::wire::encode_transfer(&m);
        }
        dns::core::Action::Forward(q) => {
            let _ = dns::wire::encode_query(request.header.id, &q, &mut out);
        }
    }
}

/// An NTP request through the server core (parse, rate limiter, reply), and a decoded
/// packet re-emitted must read back the same.
fn ntp_packet(data: &[u8]) {
    if let Ok(p) = ntp::wire::Packet::parse(data) {
        let fields = p.extension_fields().count();
        let mut out = vec![0; p.buffer_len()];
        let n = p.emit(&mut out);
        let again = ntp::wire::Packet::parse(&out[..n]);
        assert_eq!(again, Ok(p), "NTP packet does not survive emit + parse");
        assert_eq!(p.extension_fields().count(), fields);
    }
    let clock = ntp::core::ClockState::unsynchronized(-20);
    // A small client table: the default one (65,536 entries) would cost more to allocate on
    // every run than the request costs to answer.
    let limits = ntp::core::RateLimits {
        max_clients: 16,
        ..ntp::core::RateLimits::DEFAULT
    };
    let mut limiter = ntp::core::RateLimiter::new(limits, 1);
    let now = ntp::wire::NtpTimestamp::from_unix(1_700_000_000, 0);
    let client = SocketAddr::new(IpAddr::V4(PEER), 123);
    if let ntp::core::Action::Reply(reply) =
        ntp::core::handle(now, data, &clock, &mut limiter, client)
    {
        let mut out = [0; ntp::core::MAX_REPLY];
        let n = reply.emit(now, &mut out);
        assert!(
            n <= data.len(),
            "an NTP reply is never larger than its request"
        );
    }
}

/// A TFTP packet, decoded and re-emitted (it must read back the same); and the same bytes
/// as a client's side of a transfer (see [`tftp_transfer`]).
fn tftp_packet(data: &[u8]) {
    if let Ok(p) = tftp::wire::Packet::parse(data) {
        let mut out = vec![0; p.buffer_len()];
        let n = p
            .emit(&mut out)
            .unwrap_or_else(|e| panic!("emit of {p:?}: {e}"));
        assert_eq!(n, out.len(), "emit writes buffer_len() bytes");
        assert_eq!(tftp::wire::Packet::parse(&out), Ok(p));
    }
    let _ = tftp_transfer(data);
}

/// Splits `data` into messages, each a `u16` big-endian length and that many bytes (the
/// last one cut short at the end of the input).
fn framed(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, after) = data.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len)).min(after.len());
        let (message, rest) = after.split_at(len);
        data = rest;
        Some(message)
    })
}

/// Client packets (framed as [`framed`] reads them): a read request through the listener's
/// dispatch, then the rest to the transfer session that serves a 3000-byte file, with its
/// transmissions and timeouts on virtual time. Returns how the transfer ended, if it started
/// (the tests check that the seed's download completes).
fn tftp_transfer(data: &[u8]) -> Option<tftp::core::Outcome> {
    const FILE: [u8; 3000] = [0x42; 3000];
    let mut packets = framed(data);
    let first = tftp::wire::Packet::parse(packets.next()?).ok()?;
    let serve = matches!(
        tftp::core::dispatch(&first),
        tftp::core::Action::Serve { .. }
    );
    let tftp::wire::Packet::Rrq(request) = &first else {
        return None;
    };
    if !serve {
        return None;
    }
    let limits = tftp::core::SessionLimits {
        max_blksize: 1468,
        max_windowsize: 8,
        timeout: Duration::from_secs(1),
        retries: 3,
    };
    let mut t = tftp::core::Transfer::new(request, Some(FILE.len() as u64), &limits);
    let mut read = 0;
    let mut now = Duration::ZERO;
    let mut buf = [0; 4 + 1468];
    let mut step = |t: &mut tftp::core::Transfer, now: Duration| {
        while let Some(want) = t.poll_read() {
            let end = (read + want).min(FILE.len());
            t.supply(&FILE[read..end]);
            read = end;
        }
        while t.poll_transmit(now, &mut buf).is_some() {}
    };
    step(&mut t, now);
    for packet in packets {
        now += Duration::from_millis(10);
        if let Ok(p) = tftp::wire::Packet::parse(packet) {
            t.handle_input(now, &p);
        }
        step(&mut t, now);
    }
    // Let the retransmissions run out.
    for _ in 0..8 {
        let Some(at) = t.poll_timeout() else { break };
        now = now.max(at);
        t.handle_timeout(now);
        step(&mut t, now);
    }
    t.outcome().cloned()
}

/// A TCP stream of RPC records (record marking, RFC 5531 §11) answered one by one by one
/// NFSv4 server core over the in-memory Vfs, so later calls see the state earlier ones made.
fn nfs_records(data: &[u8]) {
    nfs_replies(data);
}

/// [`nfs_records`], returning the replies (the tests check that the seeds' calls succeed).
fn nfs_replies(data: &[u8]) -> Vec<Vec<u8>> {
    let mut replies = Vec::new();
    let start = Instant::now();
    let server = Server::new(
        Arc::new(MemVfs::new()),
        Settings {
            limits: NfsLimits::default(),
            boot: 1,
            grace_until: None,
            reclaimers: None,
            server_owner: b"fuzz".to_vec(),
            delegations: true,
        },
    );
    let mut rest = data;
    let mut record = Vec::new();
    for i in 0u64.. {
        let Some((mark, after)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let (last, len) = rpc::fragment_header(*mark);
        let take = len.min(after.len());
        record.extend_from_slice(&after[..take]);
        rest = &after[take..];
        if !last {
            continue;
        }
        let call = std::mem::take(&mut record);
        if let Ok(c) = rpc::parse_call(call.clone()) {
            let _ = decode_compound(c.args(), MAX_OPS);
        }
        let now = start + Duration::from_millis(100 * i);
        let peer = crate::nfs::core::Peer {
            addr: IpAddr::V4(PEER),
            conn: 1,
        };
        let outcome = server.handle_call(now, peer, rpc::parse_call(call));
        replies.extend(outcome.reply);
        // Callbacks answer in turn, so that granted delegations meet recalls and returns.
        while let Some(job) = server.poll_callback() {
            server.callback_done(&job, crate::nfs::core::CbResult::Ok);
        }
        server.handle_timeout(now);
    }
    replies
}

/// A layer shipment or its ack as the pool port carries them; a decoded one re-encoded must
/// read back the same.
fn layer_shipment(data: &[u8]) {
    if let Ok(s) = Shipment::decode(data) {
        assert_eq!(Shipment::decode(&s.encode()).ok(), Some(s));
    }
    if let Ok(a) = Ack::decode(data) {
        assert_eq!(Ack::decode(&a.encode()).ok(), Some(a));
    }
}

/// Random bytes for the IPMI session that are the same on every run, so replies recorded in
/// the seeds (MACs included) match again.
struct Fixed(u8);

impl Random for Fixed {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

/// IPMI replies (each a `u16` big-endian length and the datagram) to a console session with
/// its first bytes choosing suite and LAN version, fed after each of its transmissions; the
/// frame parsers also see each reply on its own.
fn ipmi_replies(data: &[u8]) {
    ipmi_session(data);
}

/// [`ipmi_replies`], returning the session's events (the tests check that the seeds reach
/// an answered command).
fn ipmi_session(data: &[u8]) -> Vec<ipmi_core::Event> {
    let mut events = Vec::new();
    let Some((&mode, rest)) = data.split_first() else {
        return events;
    };
    let login = Login {
        user: b"admin",
        password: b"secret",
        suite: if mode & 1 == 0 {
            Suite::Sha1
        } else {
            Suite::Sha256
        },
        version: match (mode >> 1) % 3 {
            0 => ipmi_core::LanVersion::Auto,
            1 => ipmi_core::LanVersion::V20,
            _ => ipmi_core::LanVersion::V15,
        },
    };
    let limits = ipmi_core::Limits {
        timeout: Duration::from_secs(1),
        retries: 2,
    };
    let mut now = Instant::now();
    let mut session = Session::new(now, &login, limits, Fixed(0));
    for reply in framed(rest) {
        for auth in [0, 12, 16] {
            let _ = ipmi_wire::parse(reply, auth);
        }
        let _ = ipmi_wire::Response::parse(reply);
        let _ = ipmi_wire::OpenSessionResponse::parse(reply);
        let _ = ipmi_wire::Rakp2::parse(reply);
        let _ = ipmi_wire::Rakp4::parse(reply);
        while session.poll_transmit().is_some() {}
        now += Duration::from_millis(10);
        session.handle_input(now, reply);
        let seen = events.len();
        events.extend(std::iter::from_fn(|| session.poll_event()));
        // A command once the session is up, so its answer is decoded too.
        if events[seen..].contains(&ipmi_core::Event::Established) {
            session.request(now, ipmi_core::Command::ChassisStatus);
        }
    }
    // A timeout after whatever state the replies left.
    if let Some(t) = session.poll_timeout() {
        session.handle_timeout(t);
    }
    events.extend(std::iter::from_fn(|| session.poll_event()));
    events
}

/// A pool-port connection: the bytes as a stranger's hello (refused by its MAC), as a
/// stranger's sealed frame after a handshake (refused by the AEAD), and as the opened
/// `kind || body` of a member's frame (what `Frame::decode` reads after the AEAD).
fn pool_frame(data: &[u8]) {
    let key = ClusterKey::from_bytes(KEY);
    if let Ok(hello) = <&[u8; HELLO_LEN]>::try_from(data.get(..HELLO_LEN).unwrap_or(&[])) {
        assert!(ServerHandshake::accept(std::slice::from_ref(&key), hello, [2; 32]).is_err());
    }
    let client = ClientHandshake::start(&key, [1; 32]);
    let server = ServerHandshake::accept(std::slice::from_ref(&key), client.hello(), [2; 32])
        .expect("a hello made with the same key is accepted");
    let (finish, _) = client
        .finish(server.reply())
        .expect("the reply to our own hello");
    let mut session = server
        .confirm(&finish)
        .expect("the finish of our own handshake");
    let len = (data.len() as u32).to_be_bytes();
    assert!(session.open(&len, &mut data.to_vec()).is_err());
    let _ = Frame::decode(data);
}

/// A SWIM datagram sealed with the cluster key, to a member that knows one other member.
fn swim_datagram(data: &[u8]) {
    let me = MemberId {
        addr: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 7946),
        id: 1,
        epoch: 1,
        witness: false,
    };
    let key = ClusterKey::from_bytes(KEY);
    let mut m = Membership::new(me, &key, membership::config(3), 1, [3; 32]);
    let _ = m.announce(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 7946));
    if let Ok(sealed) = DatagramKey::new(&key).seal([4; 24], data) {
        let _ = m.handle_datagram(&sealed);
    }
}

/// An agent's boot event body, and the same bytes as an API JSON body read as a node's
/// fields (every field type the node resource takes).
fn agent_event(data: &[u8]) {
    let _ = AgentEvent::parse(data);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    if let Ok(mut f) = Fields::parse(&headers, data) {
        let _ = f.required::<String>("name");
        let _ = f.optional::<Mac>("mac");
        let _ = f.optional::<Ipv4Addr>("ip");
        let _ = f.change::<Vec<String>>("aliases");
        let _ = f.optional::<u32>("version");
        let _ = f.finish();
    }
}

/// A node CSV file (`drover node import`), with and without BMC columns.
fn node_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = admin::parse_node_csv(text);
    let no_files = |p: &str| -> Result<_, AdminError> { Err(AdminError::BadName(p.into())) };
    let _ = admin::parse_node_csv_bmc(text, &no_files);
}

/// A start-up configuration file.
fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, "fuzz.toml");
    }
}

#[cfg(test)]
mod tests;

/// What drover decodes from BMCs and switches besides an IPMI session's own replies; the first
/// byte picks which: 0, the data of SDR, sensor-reading and SEL replies (`ipmi::sdr`, for
/// `bmc sensors|sel`), as [`framed`] parts, a record's reading in the part after it; 1, SOL
/// packets through a console (`ipmi::sol`, `drover console`) on virtual time, each part also
/// typed in as keys; 2, an LLDP frame (`discover::lldp`, the agent's neighbour); 3, a Redfish
/// JSON body through every reader of `redfish::health` and `redfish::core`.
fn bmc_data(data: &[u8]) {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            let mut parts = framed(rest);
            while let Some(part) = parts.next() {
                let _ = sdr::parse_reservation(part);
                let _ = sdr::parse_sdr_part(part);
                let _ = sdr::record_len(part);
                let _ = sdr::parse_sel_count(part);
                let _ = sdr::parse_sel_entry(part);
                if let Ok(Some(record)) = sdr::parse_record(part) {
                    let reading = parts.next().and_then(|r| sdr::parse_reading(r).ok());
                    let _ = sdr::sensor_value(&record, reading);
                }
            }
        }
        1 => {
            let origin = Instant::now();
            let mut console = sol::Console::new();
            for (i, packet) in framed(rest).enumerate() {
                let now = origin + Duration::from_millis(100) * i as u32;
                let _ = console.handle_packet(now, packet);
                let _ = console.type_in(now, packet);
                let _ = console.handle_timeout(now + Duration::from_secs(1));
                while console.poll_transmit().is_some() {}
            }
        }
        2 => {
            let _ = lldp::decode_frame(rest);
            let _ = lldp::decode(rest);
        }
        _ => {
            let _ = redfish::health::thermal(rest);
            let _ = redfish::health::power(rest);
            let _ = redfish::health::entries(rest);
            let _ = redfish::health::sel_service(rest);
            let _ = redfish::core::systems_link(rest);
            let _ = redfish::core::first_member(rest);
            let _ = redfish::core::parse_system(rest);
            let _ = redfish::core::session_path(None, rest);
            let _ = redfish::core::error_message(rest);
        }
    }
}
