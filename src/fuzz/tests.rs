//! Replays the committed seeds and regression inputs through every target (no AFL needed),
//! and writes the seeds from the project's own encoders (`write_seeds`, ignored: run it by
//! hand after a format change, then commit `fuzz/seeds/`).

use super::*;
use crate::ipmi::fake_bmc::FakeBmc;
use crate::nfs::wire::opnum;
use crate::nfs::xdr::Writer;
use crate::pool::sync::Digest;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the folder is missing.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .map(|e| e.expect("readable folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn seeds_and_regressions_replay_without_panic() {
    for t in TARGETS {
        let seeds = inputs("seeds", t.name);
        assert!(!seeds.is_empty(), "fuzz/seeds/{} has no seeds", t.name);
        for path in seeds.iter().chain(&inputs("regressions", t.name)) {
            let data = std::fs::read(path).expect("readable input");
            // A panic here names neither the target nor the file otherwise.
            eprintln!("replaying {}", path.display());
            (t.run)(&data);
        }
    }
}

#[test]
fn every_input_folder_names_a_target() {
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for e in dir {
            let name = e.expect("readable folder").file_name();
            let name = name.to_string_lossy();
            assert!(target(&name).is_some(), "fuzz/{kind}/{name} is no target");
        }
    }
}

#[test]
fn targets_have_unique_names() {
    let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), TARGETS.len());
}

#[test]
fn ipmi_seeds_reach_an_answered_command() {
    for path in inputs("seeds", "ipmi") {
        let events = ipmi_session(&std::fs::read(&path).expect("readable seed"));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ipmi_core::Event::Answer(_))),
            "{}: {events:?}",
            path.display()
        );
    }
}

#[test]
fn nfs_seeds_make_successful_calls() {
    use crate::nfs::xdr::Reader;
    for path in inputs("seeds", "nfs") {
        let replies = nfs_replies(&std::fs::read(&path).expect("readable seed"));
        assert!(!replies.is_empty(), "{}: no reply", path.display());
        for reply in replies {
            let mut r = Reader::new(&reply);
            let _xid = r.u32();
            // REPLY, MSG_ACCEPTED, a verifier, SUCCESS, then the COMPOUND's status NFS4_OK.
            assert_eq!(r.u32(), Ok(1));
            assert_eq!(r.u32(), Ok(0));
            let _verifier = (r.u32(), r.opaque(400));
            assert_eq!(r.u32(), Ok(0));
            assert_eq!(r.u32(), Ok(0), "{}: COMPOUND status", path.display());
        }
    }
}

#[test]
fn tftp_transfer_seed_downloads_the_whole_file() {
    let seed = std::fs::read(fuzz_dir().join("seeds/tftp/transfer")).expect("readable seed");
    assert_eq!(
        tftp_transfer(&seed),
        Some(tftp::core::Outcome::Complete {
            bytes: 3000,
            blocks: 3
        })
    );
}

/// A DHCP client message as firmware sends it, encoded by dhcproto.
fn dhcp_seed(msg_type: dhcproto::v4::MessageType, ipxe: bool, ip: Option<Ipv4Addr>) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Message, Opcode};
    use dhcproto::{Encodable, Encoder};
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(0x1234_5678)
        .set_chaddr(&mac);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(msg_type));
    opts.insert(DhcpOption::ClientIdentifier([&[1][..], &mac].concat()));
    opts.insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
    ));
    opts.insert(DhcpOption::ClientSystemArchitecture(
        dhcproto::v4::Architecture::from(7u16),
    ));
    if ipxe {
        opts.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    }
    if msg_type == dhcproto::v4::MessageType::Request {
        let ip = ip.unwrap_or(Ipv4Addr::new(192, 0, 2, 200));
        opts.insert(DhcpOption::RequestedIpAddress(ip));
        opts.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 1)));
    }
    let mut out = Vec::new();
    m.encode(&mut Encoder::new(&mut out)).expect("encodable");
    out
}

/// DISCOVER, then REQUEST of the address the core offers, framed as `dhcp_exchange` reads
/// them.
fn dhcp_dora_seed() -> Vec<u8> {
    use dhcproto::v4::MessageType;
    let discover = dhcp_seed(MessageType::Discover, false, None);
    let offered = match dhcp_exchange(std::iter::once(&discover[..])).as_slice() {
        [dhcp::core::Action::Hold(offer, ..)] => offer.ip,
        other => panic!("no offer: {other:?}"),
    };
    let request = dhcp_seed(MessageType::Request, false, Some(offered));
    let mut out = Vec::new();
    for p in [discover, request] {
        out.extend_from_slice(&u16::try_from(p.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&p);
    }
    out
}

#[test]
fn dhcp_dora_seed_is_acked() {
    let seed = std::fs::read(fuzz_dir().join("seeds/dhcp/dora")).expect("readable seed");
    let actions = dhcp_exchange(framed(&seed));
    assert!(
        matches!(
            actions.as_slice(),
            [
                dhcp::core::Action::Hold(..),
                dhcp::core::Action::CommitThenReply(..)
            ]
        ),
        "{actions:?}"
    );
}

fn dns_seed(name: &str, rtype: hickory_proto::rr::RecordType) -> Vec<u8> {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    let q = Query::query(Name::from_ascii(name).expect("a name"), rtype);
    let mut out = Vec::new();
    dns::wire::encode_query(0x4242, &q, &mut out).expect("encodable");
    out
}

fn ntp_seed(version: u8) -> Vec<u8> {
    use ntp::wire::{Header, Leap, Mode, NtpShort, NtpTimestamp, Packet, ReferenceId};
    let p = Packet::new(Header {
        leap: Leap::Unsynchronized,
        version,
        mode: Mode::Client,
        stratum: 0,
        poll: 6,
        precision: -20,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        reference_id: ReferenceId::INIT,
        reference_ts: NtpTimestamp::ZERO,
        origin_ts: NtpTimestamp::ZERO,
        receive_ts: NtpTimestamp::ZERO,
        transmit_ts: NtpTimestamp::from_unix(1_700_000_000, 5),
    });
    let mut out = vec![0; p.buffer_len()];
    let n = p.emit(&mut out);
    out.truncate(n);
    out
}

fn tftp_seed(p: &tftp::wire::Packet<'_>) -> Vec<u8> {
    let mut out = vec![0; p.buffer_len()];
    p.emit(&mut out).expect("emittable");
    out
}

/// One COMPOUND operation: its number and what writes its arguments.
type OpArgs<'a> = (u32, &'a dyn Fn(&mut Writer));

/// A whole download as `tftp_transfer` reads it: the request, then the client's ACKs of the
/// OACK (block 0) and of both 1468-byte blocks and the last one.
fn tftp_transfer_seed(rrq: &tftp::wire::Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let acks = (0..4).map(|block| tftp_seed(&tftp::wire::Packet::Ack { block }));
    for p in std::iter::once(tftp_seed(rrq)).chain(acks) {
        out.extend_from_slice(&u16::try_from(p.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&p);
    }
    out
}

/// An RPC call record (AUTH_SYS, uid 0) of NFSv4 COMPOUND `ops` with minor version 0, framed
/// as one last fragment.
fn nfs_call(xid: u32, ops: &[OpArgs<'_>]) -> Vec<u8> {
    let mut cred = Writer::new();
    cred.u32(0);
    cred.opaque(b"client");
    cred.u32(0);
    cred.u32(0);
    cred.u32(0);
    let mut w = Writer::new();
    for v in [
        xid,
        0,
        rpc::RPC_VERSION,
        rpc::NFS_PROGRAM,
        rpc::NFS_V4,
        rpc::PROC_COMPOUND,
    ] {
        w.u32(v);
    }
    w.u32(rpc::AUTH_SYS);
    w.opaque(&cred.buf);
    w.u32(0);
    w.u32(0);
    w.opaque(b"fuzz");
    w.u32(0);
    w.u32(ops.len() as u32);
    for (num, args) in ops {
        w.u32(*num);
        args(&mut w);
    }
    rpc::record(&w.buf)
}

fn nfs_seed() -> Vec<u8> {
    let none = |_: &mut Writer| {};
    let attrs = |w: &mut Writer| {
        w.u32(2);
        w.u32(0x0010_011a);
        w.u32(0x00b0_a23a);
    };
    let setclientid = |w: &mut Writer| {
        w.fixed(&[1; 8]);
        w.opaque(b"fuzz-client");
        w.u32(0x4000_0000);
        w.opaque(b"tcp");
        w.opaque(b"192.0.2.7.3.232");
        w.u32(1);
    };
    let access = |w: &mut Writer| w.u32(0x3f);
    let readdir = |w: &mut Writer| {
        w.u64(0);
        w.fixed(&[0; 8]);
        w.u32(4096);
        w.u32(32768);
        w.u32(1);
        w.u32(0x0010_0002);
    };
    let mut out = nfs_call(
        1,
        &[
            (opnum::PUTROOTFH, &none),
            (opnum::GETFH, &none),
            (opnum::GETATTR, &attrs),
            (opnum::ACCESS, &access),
            (opnum::READDIR, &readdir),
        ],
    );
    out.extend(nfs_call(2, &[(opnum::SETCLIENTID, &setclientid)]));
    out
}

/// The replies of the test BMC to a console session that asks the chassis status, each
/// framed as the `ipmi` target reads them, after the mode byte.
fn ipmi_seed(mode: u8) -> Vec<u8> {
    let suite = if mode & 1 == 0 {
        Suite::Sha1
    } else {
        Suite::Sha256
    };
    let mut bmc = FakeBmc::new(suite);
    let login = Login {
        user: b"admin",
        password: b"secret",
        suite,
        version: ipmi_core::LanVersion::V20,
    };
    let limits = ipmi_core::Limits {
        timeout: Duration::from_secs(1),
        retries: 2,
    };
    let mut now = Instant::now();
    let mut s = Session::new(now, &login, limits, Fixed(0));
    let mut out = vec![mode];
    for _ in 0..20 {
        let Some(sent) = s.poll_transmit() else {
            break;
        };
        let Some(reply) = bmc.answer(&sent) else {
            break;
        };
        out.extend_from_slice(&u16::try_from(reply.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&reply);
        now += Duration::from_millis(10);
        s.handle_input(now, &reply);
        // As the target does: a command once the session is up.
        if std::iter::from_fn(|| s.poll_event()).any(|e| e == ipmi_core::Event::Established) {
            s.request(now, ipmi_core::Command::ChassisStatus);
        }
    }
    out
}

/// What a member's `announce` sends, without its tag (the target seals its input).
fn swim_seed() -> Vec<u8> {
    let key = ClusterKey::from_bytes(KEY);
    let me = MemberId {
        addr: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 7946),
        id: 2,
        epoch: 1,
        witness: false,
    };
    let mut m = Membership::new(me, &key, membership::config(3), 2, [5; 32]);
    let effects = m.announce(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 7946));
    effects
        .into_iter()
        .find_map(|e| match e {
            membership::Effect::Send(_, sealed) => DatagramKey::new(&key).open(&sealed),
            _ => None,
        })
        .expect("an announce datagram")
}

/// Input of the `bmc` target: its `kind` byte, then `parts` as `framed` reads them.
fn bmc_seed(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut seed = vec![kind];
    for part in parts {
        seed.extend_from_slice(&(part.len() as u16).to_be_bytes());
        seed.extend_from_slice(part);
    }
    seed
}

/// A full sensor record (type 01h, offsets as IPMI 2.0 §43.1 counts them from the record's
/// first byte): "CPU", sensor 1, threshold temperature in degrees C, M = 1, unsigned.
fn sdr_record() -> Vec<u8> {
    let mut record = vec![0u8; 48];
    record[..4].copy_from_slice(&[0x01, 0x00, 0x51, 0x01]); // id 1, SDR 1.5, full sensor
    record[4] = 46; // bytes after the header
    record[5] = 0x20; // owner: the BMC
    record[7] = 0x01; // sensor number
    record[12] = 0x01; // sensor type: temperature
    record[13] = 0x01; // event/reading type: threshold
    record[21] = 0x01; // base unit: degrees C
    record[24] = 0x01; // M
    record[47] = 0xc3; // id string: 8-bit ASCII, 3 bytes
    record.extend_from_slice(b"CPU");
    record
}

#[test]
fn bmc_seed_record_is_a_sensor() {
    let record = crate::ipmi::sdr::parse_record(&sdr_record())
        .expect("decodes")
        .expect("a sensor record");
    assert_eq!((record.name.as_str(), record.number), ("CPU", 1));
}

/// A frame as it reads once opened (`kind || body`).
fn frame_seed(f: &Frame) -> Vec<u8> {
    f.encode().expect("small frame")
}

#[test]
#[ignore = "writes fuzz/seeds/: run by hand after a format change"]
fn write_seeds() {
    use crate::nfs::replica::tests::{all_ops, ship};
    use crate::nfs::replica::wire::Body;
    use dhcproto::v4::MessageType;
    use hickory_proto::rr::RecordType;
    use tftp::wire::{Mode, Packet, Request, TftpOption};
    let rrq = Packet::Rrq(Request {
        filename: "undionly.kpxe",
        mode: Mode::Octet,
        options: vec![
            TftpOption {
                name: "tsize",
                value: "0",
            },
            TftpOption {
                name: "blksize",
                value: "1468",
            },
            TftpOption {
                name: "windowsize",
                value: "4",
            },
        ],
    });
    let csv = "name,mac,ip,image,group,aliases,bmc,bmc_user\n\
               n1,52:54:00:12:34:56,10.0.0.10,debian,compute,a1;a2,10.0.1.10,admin\n\
               n2,52:54:00:12:34:57,,,,,,\n";
    let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "dhcp",
            "discover",
            dhcp_seed(MessageType::Discover, false, None),
        ),
        (
            "dhcp",
            "ipxe-request",
            dhcp_seed(MessageType::Request, true, None),
        ),
        ("dhcp", "dora", dhcp_dora_seed()),
        ("dns", "a", dns_seed("node1.lab.test.", RecordType::A)),
        (
            "dns",
            "ptr",
            dns_seed("10.0.0.10.in-addr.arpa.", RecordType::PTR),
        ),
        ("ntp", "v4", ntp_seed(4)),
        ("ntp", "v3", ntp_seed(3)),
        ("tftp", "rrq", tftp_seed(&rrq)),
        ("tftp", "ack", tftp_seed(&Packet::Ack { block: 1 })),
        ("tftp", "transfer", tftp_transfer_seed(&rrq)),
        ("nfs", "browse", nfs_seed()),
        ("layer", "ops", ship(Body::Ops(all_ops())).encode()),
        ("layer", "ack", Ack::Done.encode()),
        ("ipmi", "sha1", ipmi_seed(2)),
        ("ipmi", "sha256", ipmi_seed(3)),
        (
            "pool_frame",
            "sync",
            frame_seed(&Frame::Sync(Digest::default())),
        ),
        (
            "pool_frame",
            "layer-ack",
            frame_seed(&Frame::LayerAck(Ack::Done)),
        ),
        ("swim", "announce", swim_seed()),
        (
            "agent_event",
            "ready",
            br#"{"stage":"ready","detail":"up 3 s"}"#.to_vec(),
        ),
        (
            "agent_event",
            "node",
            br#"{"name":"n1","mac":"52:54:00:12:34:56","ip":"10.0.0.10","aliases":["a"]}"#.to_vec(),
        ),
        ("csv", "nodes", csv.as_bytes().to_vec()),
        (
            "config",
            "default",
            crate::config::DEFAULT_TOML.as_bytes().to_vec(),
        ),
        ("bmc", "sdr", bmc_seed(0, &[&sdr_record(), &[0x2d, 0xc0, 0x00]])),
        (
            "bmc",
            "sol",
            bmc_seed(1, &[b"\x01\x00\x00\x00login: ", &[0x00, 0x01, 0x04, 0x00]]),
        ),
        (
            "bmc",
            "lldp",
            [
                &[2u8][..],
                &crate::discover::lldp::encode_frame([2, 0, 0, 0, 0, 1], "sw1", "7", "rack1-sw1"),
            ]
            .concat(),
        ),
        (
            "bmc",
            "redfish",
            [
                &[3u8][..],
                br#"{"Temperatures":[{"Name":"CPU","ReadingCelsius":41,"Status":{"Health":"OK"}}]}"#,
            ]
            .concat(),
        ),
    ];
    for (target, name, bytes) in seeds {
        assert!(super::target(target).is_some(), "{target} is no target");
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).expect("seed folder");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}
