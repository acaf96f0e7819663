//! Codec tests: packets captured from real clients (see each constant), decoded, checked
//! field by field, re-encoded and decoded again; replies encoded and read back with dhcproto;
//! and a battery of malformed inputs that must be typed errors, never panics.

use super::*;
use dhcproto::v4::Message;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Captured: busybox 1.35 udhcpc, `udhcpc -i dcc0`, MAC 52:54:00:12:34:56.
pub(crate) const UDHCPC_DISCOVER: &str = concat!(
    "01010600da51ea3a000000000000000000000000000000000000000052540012345600000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000638253633501013902024037070103060c0f1c2a3c0c756468637020",
    "312e33352e303d0701525400123456ff0000000000000000000000000000000000000000",
);

/// Captured: busybox 1.35 udhcpc with `-x 0x5d:0007 -r 198.18.0.77 -x hostname:node7`.
pub(crate) const UDHCPC_DISCOVER_ARCH7: &str = concat!(
    "01010600538ea630000000000000000000000000000000000000000052540012345600000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000638253633501013204c612004d3902024037070103060c0f1c2a0c05",
    "6e6f6465373c0c756468637020312e33352e303d07015254001234565d020007ff000000",
);

/// Captured: iPXE (Debian ipxe-qemu 1.0.0+git-20190125, efi-e1000.rom) under SeaBIOS, QEMU 7.2.
pub(crate) const IPXE_BIOS_DISCOVER: &str = concat!(
    "01010600defb5e740004000000000000000000000000000000000000525400aabbcc00000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000063825363350101390205c05d0200005e030102013c20505845436c69",
    "656e743a417263683a30303030303a554e44493a3030323030314d04695058453717010306070c0f111a2b3c",
    "4243778081828384858687afcbaf30b105018086100eeb030100001701012201011301011101012701011901",
    "012901011001022101011501011801011201013d0701525400aabbcc61110000000000000000000000000000",
    "000000ff",
);

/// Captured: iPXE EFI ROM (virtio-net) under OVMF 2022.11, QEMU 7.2 q35.
pub(crate) const IPXE_UEFI_DISCOVER: &str = concat!(
    "01010600970bed690004000000000000000000000000000000000000525400aabbcd00000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000063825363350101390205c05d0200075e0301030a3c20505845436c69",
    "656e743a417263683a30303030373a554e44493a3030333031304d04695058453717010306070c0f111a2b3c",
    "4243778081828384858687afcbaf24b105011af41000eb030100001701012401011301011101012701012901",
    "011501011201013d0701525400aabbcd61110000000000000000000000000000000000ff",
);

/// Captured: OVMF 2022.11 native UEFI PXE (after the iPXE ROM gave up), broadcast flag set.
pub(crate) const OVMF_PXE_DISCOVER: &str = concat!(
    "010106004a0aef580000800000000000000000000000000000000000525400aabbcd00000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000063825363350101390205c037230102030405060c0d0f111216171c28",
    "292a2b3233363a3b3c4243618081828384858687611100000000000000000000000000000000005e03010301",
    "5d0200073c20505845436c69656e743a417263683a30303030373a554e44493a303033303031ff",
);

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

/// Decode, re-encode, decode again: the typed request must survive unchanged.
fn round_trip(bytes: &[u8]) -> Request {
    let req = decode(bytes).expect("capture decodes");
    let again = decode(&req.to_bytes()).expect("re-encoded request decodes");
    assert_eq!(req, again);
    // The fixed header survives byte for byte (op .. giaddr, chaddr).
    let re = req.to_bytes();
    assert_eq!(bytes[..8], re[..8]);
    assert_eq!(bytes[10..44], re[10..44]);
    req
}

#[test]
fn udhcpc_discover() {
    let req = round_trip(&hex(UDHCPC_DISCOVER));
    assert_eq!(req.msg_type, MessageType::Discover);
    assert_eq!(req.xid, 0xda51ea3a);
    assert_eq!(req.chaddr, mac("52:54:00:12:34:56"));
    assert!(!req.broadcast);
    assert_eq!(req.max_size, Some(576));
    assert_eq!(req.params, vec![1, 3, 6, 12, 15, 28, 42]);
    assert_eq!(req.vendor_class.as_deref(), Some(&b"udhcp 1.35.0"[..]));
    assert_eq!(req.client_id, Some(hex("01525400123456")));
    assert!(!req.is_pxe());
    assert!(!req.is_ipxe());
    assert_eq!(req.giaddr, Ipv4Addr::UNSPECIFIED);
}

#[test]
fn udhcpc_discover_with_arch_and_requested_ip() {
    let req = round_trip(&hex(UDHCPC_DISCOVER_ARCH7));
    assert_eq!(req.requested_ip, Some(Ipv4Addr::new(198, 18, 0, 77)));
    assert_eq!(req.hostname.as_deref(), Some("node7"));
    assert_eq!(req.arch, vec![7]);
    assert!(req.is_pxe());
    assert!(!req.is_ipxe());
}

#[test]
fn ipxe_bios_discover() {
    let req = round_trip(&hex(IPXE_BIOS_DISCOVER));
    assert_eq!(req.chaddr, mac("52:54:00:aa:bb:cc"));
    assert_eq!(req.arch, vec![0]);
    assert_eq!(req.user_class.as_deref(), Some(&b"iPXE"[..]));
    assert!(req.ipxe_encap.is_some());
    assert!(req.is_pxe() && req.is_ipxe());
    assert_eq!(req.max_size, Some(1472));
    assert_eq!(
        req.vendor_class.as_deref(),
        Some(&b"PXEClient:Arch:00000:UNDI:002001"[..])
    );
    assert_eq!(req.uuid.as_ref().map(Vec::len), Some(17));
    assert_eq!(req.secs, 4);
    assert!(req.params.contains(&175));
}

#[test]
fn ipxe_uefi_discover() {
    let req = round_trip(&hex(IPXE_UEFI_DISCOVER));
    assert_eq!(req.arch, vec![7]);
    assert!(req.is_ipxe());
    assert_eq!(req.chaddr, mac("52:54:00:aa:bb:cd"));
}

#[test]
fn ovmf_pxe_discover() {
    let req = round_trip(&hex(OVMF_PXE_DISCOVER));
    assert_eq!(req.arch, vec![7]);
    assert!(req.broadcast);
    assert!(req.is_pxe());
    assert!(!req.is_ipxe());
    assert_eq!(req.client_id, None);
}

#[test]
fn user_class_forms() {
    assert!(user_class_has_ipxe(b"iPXE"));
    assert!(user_class_has_ipxe(b"\x03foo\x04iPXE"));
    assert!(!user_class_has_ipxe(b"\x09iPXE"));
    assert!(!user_class_has_ipxe(b"gPXE"));
    assert!(!user_class_has_ipxe(b""));
}

#[test]
fn arch_list_and_relay_info_kept() {
    let mut req = decode(&hex(UDHCPC_DISCOVER)).unwrap();
    req.arch = vec![7, 9, 0];
    req.giaddr = Ipv4Addr::new(198, 18, 5, 1);
    req.relay_info = Some(vec![1, 3, b'e', b't', b'h', 2, 2, 0xaa, 0xbb]);
    let back = decode(&req.to_bytes()).unwrap();
    assert_eq!(back, req);
}

fn sample_reply() -> Reply {
    Reply {
        kind: ReplyKind::Offer,
        xid: 0x01020304,
        broadcast: true,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::new(198, 18, 0, 130),
        siaddr: Ipv4Addr::new(198, 18, 0, 1),
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr: mac("52:54:00:aa:bb:cc"),
        server_id: Ipv4Addr::new(198, 18, 0, 1),
        lease_time: Some(3600),
        renewal: Some(1800),
        rebinding: Some(3150),
        subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        router: Some(Ipv4Addr::new(198, 18, 0, 254)),
        broadcast_addr: Some(Ipv4Addr::new(198, 18, 0, 255)),
        hostname: Some("node1".into()),
        domain: Some("cluster.test".into()),
        search: vec!["cluster.test".into()],
        dns_servers: vec![Ipv4Addr::new(198, 18, 0, 1)],
        ntp_servers: vec![Ipv4Addr::new(198, 18, 0, 1)],
        boot_file: Some("http://198.18.0.1/boot/52:54:00:aa:bb:cc".into()),
        boot_file_option: true,
        pxe_class: true,
        ipxe_no_pxedhcp: true,
        client_id: Some(vec![1, 0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]),
        relay_info: Some(vec![1, 2, 0xde, 0xad]),
        message: None,
        client_max_size: None,
    }
}

#[test]
fn reply_encodes_and_reads_back() {
    let reply = sample_reply();
    let mut out = Vec::new();
    encode(&reply, &mut out).unwrap();
    assert!(out.len() >= MIN_REPLY && out.len() <= DEFAULT_MAX_REPLY);
    let msg = Message::from_bytes(&out).unwrap();
    assert_eq!(msg.opcode(), v4::Opcode::BootReply);
    assert_eq!(msg.xid(), 0x01020304);
    assert!(msg.flags().broadcast());
    assert_eq!(msg.yiaddr(), reply.yiaddr);
    assert_eq!(msg.siaddr(), reply.siaddr);
    assert_eq!(msg.chaddr(), &reply.chaddr.0);
    let file = msg.fname().unwrap();
    assert_eq!(
        &file[..file.len() - 1],
        reply.boot_file.as_ref().unwrap().as_bytes()
    );
    let o = msg.opts();
    assert_eq!(o.msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(reply.server_id))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(
        o.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    assert_eq!(
        o.get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("node1".into()))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("cluster.test".into()))
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            198, 18, 0, 1
        )]))
    );
    assert_eq!(
        o.get(OptionCode::NtpServers),
        Some(&DhcpOption::NtpServers(vec![Ipv4Addr::new(198, 18, 0, 1)]))
    );
    assert_eq!(
        o.get(OptionCode::DomainSearch),
        Some(&DhcpOption::DomainSearch(vec!["cluster.test."
            .parse()
            .unwrap()]))
    );
    assert_eq!(
        o.get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    assert!(o.get(OptionCode::BootfileName).is_some());
    // Option 175 carries sub-option 176 = 1, and option 82 is the last option, verbatim.
    let raw = scan_options(&out[HEADER_LEN..]).unwrap();
    let encap = raw.iter().find(|o| o.code == OPT_IPXE_ENCAP).unwrap();
    assert_eq!(encap.data, vec![IPXE_NO_PXEDHCP, 1, 1]);
    assert_eq!(raw.last().unwrap().code, OPT_RELAY_AGENT);
    assert_eq!(raw.last().unwrap().data, vec![1, 2, 0xde, 0xad]);
}

#[test]
fn reply_sheds_optional_options_to_fit() {
    let mut reply = sample_reply();
    reply.domain = Some("d".repeat(200));
    reply.hostname = Some("h".repeat(200));
    let mut out = Vec::new();
    encode(&reply, &mut out).unwrap();
    assert!(out.len() <= DEFAULT_MAX_REPLY, "{}", out.len());
    let msg = Message::from_bytes(&out).unwrap();
    assert!(msg.opts().get(OptionCode::DomainName).is_none());
    assert!(msg.opts().get(OptionCode::ServerIdentifier).is_some());
    // With a larger client limit everything fits.
    reply.client_max_size = Some(1500);
    encode(&reply, &mut out).unwrap();
    let msg = Message::from_bytes(&out).unwrap();
    assert!(msg.opts().get(OptionCode::DomainName).is_some());
    // Essentials that cannot fit: a typed error.
    reply.client_max_size = None;
    reply.relay_info = Some(vec![1; 600]);
    assert!(matches!(
        encode(&reply, &mut out),
        Err(EncodeError::TooLarge { .. })
    ));
}

#[test]
fn long_boot_file_goes_to_option_67() {
    let mut reply = sample_reply();
    reply.boot_file = Some(format!("http://198.18.0.1/{}", "x".repeat(150)));
    reply.boot_file_option = false;
    reply.client_max_size = Some(1500);
    let mut out = Vec::new();
    encode(&reply, &mut out).unwrap();
    let msg = Message::from_bytes(&out).unwrap();
    assert!(msg.fname().is_none());
    assert!(msg.opts().get(OptionCode::BootfileName).is_some());
}

#[test]
fn malformed_inputs_are_typed_errors() {
    let good = hex(IPXE_BIOS_DISCOVER);
    assert_eq!(decode(&[]), Err(WireError::Truncated(0)));
    assert_eq!(decode(&good[..239]), Err(WireError::Truncated(239)));
    assert!(matches!(
        decode(&vec![1u8; 5000]),
        Err(WireError::TooLong(5000))
    ));
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(decode(&b), Err(WireError::NotRequest(2)));
    let mut b = good.clone();
    b[2] = 17;
    assert!(matches!(
        decode(&b),
        Err(WireError::UnsupportedHardware { hlen: 17, .. })
    ));
    let mut b = good.clone();
    b[1] = 6;
    assert!(matches!(
        decode(&b),
        Err(WireError::UnsupportedHardware { htype: 6, .. })
    ));
    let mut b = good.clone();
    b[237] = 0;
    assert_eq!(decode(&b), Err(WireError::BadCookie));
    // Header + cookie only: no message type.
    assert_eq!(decode(&good[..240]), Err(WireError::NoMessageType));
    // An option running past the end.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 12, 40, b'a']);
    assert_eq!(decode(&b), Err(WireError::OptionOverrun { code: 12 }));
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53]);
    assert_eq!(decode(&b), Err(WireError::OptionOverrun { code: 53 }));
    // Wrong lengths of fixed-size options we read.
    for (code, len) in [(50u8, 3usize), (54, 5), (53, 2), (57, 1), (93, 3), (93, 0)] {
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1, code, len as u8]);
        b.extend(std::iter::repeat_n(0x41, len));
        b.push(255);
        let mut want = Err(WireError::BadOptionLength { code, len });
        if code == 53 {
            // 53 appears twice and is concatenated: length 1 + 2.
            want = Err(WireError::BadOptionLength { code, len: len + 1 });
        }
        assert_eq!(decode(&b), want, "option {code}");
    }
    // Lengths dhcproto would assert on, in options we do not read: ignored.
    for (code, len) in [(80u8, 1usize), (94, 2), (81, 1), (151, 0), (152, 3)] {
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1, code, len as u8]);
        b.extend(std::iter::repeat_n(0x41, len));
        b.push(255);
        assert_eq!(
            decode(&b).unwrap().msg_type,
            MessageType::Discover,
            "option {code}"
        );
    }
    // A hostname that is not UTF-8 is ignored; the rest of the request still counts.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 12, 2, 0xff, 0xfe, 50, 4, 198, 18, 0, 9, 255]);
    let req = decode(&b).unwrap();
    assert_eq!(req.hostname, None);
    assert_eq!(req.requested_ip, Some(Ipv4Addr::new(198, 18, 0, 9)));
    // An FQDN (81) in ASCII form, which dhcproto cannot decode, costs nothing.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[
        53, 1, 3, 81, 7, 0, 0, 0, b'h', b'o', b's', b't', 12, 2, b'h', b'1', 255,
    ]);
    let req = decode(&b).unwrap();
    assert_eq!(req.hostname.as_deref(), Some("h1"));
    // Server message types.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 2, 255]);
    assert_eq!(decode(&b), Err(WireError::UnsupportedMessageType(2)));
    // Missing End is tolerated.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1]);
    assert_eq!(decode(&b).unwrap().msg_type, MessageType::Discover);
}

/// A cheap deterministic fuzz: truncations and byte flips of every capture never panic.
#[test]
fn mutations_never_panic() {
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for cap in [
        UDHCPC_DISCOVER,
        UDHCPC_DISCOVER_ARCH7,
        IPXE_BIOS_DISCOVER,
        IPXE_UEFI_DISCOVER,
        OVMF_PXE_DISCOVER,
    ] {
        let good = hex(cap);
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..(next() % 6 + 1) {
                let i = HEADER_LEN + (next() as usize) % (b.len() - HEADER_LEN);
                b[i] = next() as u8;
            }
            if let Ok(req) = decode(&b) {
                // Whatever decodes must re-encode and decode to the same thing.
                assert_eq!(decode(&req.to_bytes()).as_ref(), Ok(&req));
            }
        }
    }
}
