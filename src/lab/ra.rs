//! The lab segment's IPv6 router advertisement as a whole Ethernet frame, sans IO.
//!
//! The same message as `crate::net::ra` sends on a served interface (no M/O flags, router
//! lifetime 0: iPXE stops waiting ~16 s for DHCPv6 and nobody routes through drover); here
//! there is no kernel to add the IPv6 header and checksum, so this module builds them, from
//! drover's link-local address on the segment (EUI-64 of its Ethernet address) to all nodes.
//! It also recognises router solicitations, which the lab answers (paced by
//! `crate::net::ra_pace`).
//!
//! Not here: sending (`super::serve`), anything else of IPv6 (the lab's stack is IPv4 only).

use crate::store::model::Mac;
use std::net::Ipv6Addr;

const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const NEXT_HEADER_ICMPV6: u8 = 58;
const ETHERNET_HEADER: usize = 14;
const IPV6_HEADER: usize = 40;
/// IPv6 all-nodes multicast, and its Ethernet group address (RFC 2464 §7).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The link-local address of `mac` (modified EUI-64, RFC 4291 appendix A).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    let m = mac.0;
    let eui = [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
    let mut octets = [0u8; 16];
    octets[0] = 0xfe;
    octets[1] = 0x80;
    octets[8..].copy_from_slice(&eui);
    Ipv6Addr::from(octets)
}

/// The RA frame from `mac` to all nodes on the segment.
pub fn advertisement_frame(mac: Mac) -> Vec<u8> {
    let mut icmp = crate::net::ra::advertisement(Some(mac));
    let src = link_local(mac);
    let sum = checksum(&src, &ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame = Vec::with_capacity(ETHERNET_HEADER + IPV6_HEADER + icmp.len());
    frame.extend_from_slice(&ALL_NODES_MAC);
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&ETHERTYPE_IPV6);
    // Version 6, no traffic class or flow label.
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    // The message is a few dozen bytes: its length fits.
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    // Hop limit 255: RFC 4861 §6.1.2 has hosts drop RAs with any other.
    frame.extend_from_slice(&[NEXT_HEADER_ICMPV6, 255]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&ALL_NODES.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// Whether `frame` is an IPv6 router solicitation (ICMPv6 right after the IPv6 header).
pub fn is_solicitation(frame: &[u8]) -> bool {
    frame.len() > ETHERNET_HEADER + IPV6_HEADER
        && frame[12..14] == ETHERTYPE_IPV6
        && frame[ETHERNET_HEADER + 6] == NEXT_HEADER_ICMPV6
        && crate::net::ra::is_solicitation(&frame[ETHERNET_HEADER + IPV6_HEADER..])
}

/// The ICMPv6 checksum (RFC 4443 §2.3) over the pseudo-header and `message` (whose own
/// checksum field is zero).
fn checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = Mac([0x02, 0xd7, 0x0e, 0x00, 0x00, 0x01]);

    #[test]
    fn link_local_is_modified_eui64() {
        let want: Ipv6Addr = "fe80::d7:eff:fe00:1".parse().unwrap();
        assert_eq!(link_local(MAC), want);
    }

    #[test]
    fn the_frame_checks_out() {
        let f = advertisement_frame(MAC);
        assert_eq!(&f[..6], &ALL_NODES_MAC);
        assert_eq!(&f[6..12], &MAC.0);
        let ip = &f[ETHERNET_HEADER..];
        let payload = u16::from_be_bytes([ip[4], ip[5]]) as usize;
        assert_eq!(payload, f.len() - ETHERNET_HEADER - IPV6_HEADER);
        assert_eq!((ip[6], ip[7]), (NEXT_HEADER_ICMPV6, 255));
        let icmp = &ip[IPV6_HEADER..];
        assert_eq!(icmp[0], 134, "a router advertisement");
        // Summing the message with its checksum in place gives 0 (all ones, complemented).
        assert_eq!(checksum(&link_local(MAC), &ALL_NODES, icmp), 0);
        assert!(!is_solicitation(&f));
    }

    #[test]
    fn recognises_a_solicitation() {
        let mut f = advertisement_frame(MAC);
        f[ETHERNET_HEADER + IPV6_HEADER] = 133;
        assert!(is_solicitation(&f));
        assert!(!is_solicitation(&f[..ETHERNET_HEADER + IPV6_HEADER]));
        f[12] = 0x08;
        assert!(!is_solicitation(&f));
    }
}
