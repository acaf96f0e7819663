//! The few rtnetlink messages drover sends (RFC 3549; `linux/rtnetlink.h`,
//! `linux/if_addr.h`): add or refresh an IPv4 address with a lifetime (RTM_NEWADDR with
//! IFA_CACHEINFO), delete it (RTM_DELADDR), and read the kernel's acknowledgement
//! (NLMSG_ERROR). Bytes only: `sys::netlink_request` sends them.
//!
//! Not here: dumps, multipart replies, routes, links, IPv6.

use std::net::Ipv4Addr;

const NLMSG_ERROR: u16 = 2;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const AF_INET: u8 = 2;
const RT_SCOPE_UNIVERSE: u8 = 0;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_CACHEINFO: u16 = 6;
/// `struct nlmsghdr` + `struct ifaddrmsg`.
const HEADER_LEN: usize = 16 + 8;

/// An IPv4 address on an interface, as RTM_NEWADDR / RTM_DELADDR name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddress {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// RTM_NEWADDR that adds `a`, or replaces its lifetimes if it is there: valid and preferred
/// for `lifetime_secs`, after which the kernel deletes it by itself.
pub fn new_address(seq: u32, a: IfAddress, lifetime_secs: u32) -> Vec<u8> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut m = header(RTM_NEWADDR, flags, seq, a);
    attr(&mut m, IFA_LOCAL, &a.addr.octets());
    attr(&mut m, IFA_ADDRESS, &a.addr.octets());
    // struct ifa_cacheinfo: ifa_prefered, ifa_valid, cstamp, tstamp (the last two are the
    // kernel's to fill).
    let mut cache = [0u8; 16];
    cache[0..4].copy_from_slice(&lifetime_secs.to_ne_bytes());
    cache[4..8].copy_from_slice(&lifetime_secs.to_ne_bytes());
    attr(&mut m, IFA_CACHEINFO, &cache);
    finish(m)
}

/// RTM_DELADDR for `a`.
pub fn delete_address(seq: u32, a: IfAddress) -> Vec<u8> {
    let mut m = header(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, a);
    attr(&mut m, IFA_LOCAL, &a.addr.octets());
    attr(&mut m, IFA_ADDRESS, &a.addr.octets());
    finish(m)
}

/// What the kernel answered to request `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Ok,
    /// A positive errno.
    Error(i32),
    /// Not an acknowledgement of `seq` (a stray message, or too short to read).
    Other,
}

/// Reads the first message of `reply` as the acknowledgement of `seq`.
pub fn parse_ack(reply: &[u8], seq: u32) -> Ack {
    // nlmsghdr (16) + the error code (4); the echoed request follows and is not needed.
    let Some(head) = reply.get(..20) else {
        return Ack::Other;
    };
    let u16_at = |i: usize| u16::from_ne_bytes([head[i], head[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if u16_at(4) != NLMSG_ERROR || u32_at(8) != seq {
        return Ack::Other;
    }
    match u32_at(16) as i32 {
        0 => Ack::Ok,
        e => Ack::Error(e.saturating_neg()),
    }
}

fn header(kind: u16, flags: u16, seq: u32, a: IfAddress) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's is 0
    m.extend_from_slice(&[AF_INET, a.prefix, 0, RT_SCOPE_UNIVERSE]);
    m.extend_from_slice(&a.index.to_ne_bytes());
    debug_assert_eq!(m.len(), HEADER_LEN);
    m
}

/// Appends one `struct rtattr` with its payload, padded to 4 bytes.
fn attr(m: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    // Payloads here are at most 16 bytes.
    let len = (4 + payload.len()) as u16;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(payload);
    while m.len() % 4 != 0 {
        m.push(0);
    }
}

fn finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = (m.len() as u32).to_ne_bytes();
    m[..4].copy_from_slice(&len);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IfAddress = IfAddress {
        index: 3,
        addr: Ipv4Addr::new(198, 18, 0, 100),
        prefix: 24,
    };

    #[test]
    fn new_address_matches_what_ip_sends() {
        // `ip -4 addr replace 198.18.0.100/24 dev IF3 valid_lft 5 preferred_lft 5` sends the
        // same message but for the sequence number (iproute2 6.1, seen with strace on
        // x86-64).
        let m = new_address(7, A, 5);
        let mut want = vec![
            60, 0, 0, 0, // length
            20, 0, // RTM_NEWADDR
            0x05, 0x05, // REQUEST | ACK | REPLACE | CREATE
            7, 0, 0, 0, 0, 0, 0, 0, // seq, port id
            2, 24, 0, 0, 3, 0, 0, 0, // AF_INET, /24, flags, scope, index
            8, 0, 2, 0, 198, 18, 0, 100, // IFA_LOCAL
            8, 0, 1, 0, 198, 18, 0, 100, // IFA_ADDRESS
            20, 0, 6, 0, // IFA_CACHEINFO
        ];
        want.extend_from_slice(&[5, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        if cfg!(target_endian = "little") {
            assert_eq!(m, want);
        }
        assert_eq!(m.len() % 4, 0);
        let d = delete_address(8, A);
        assert_eq!(d.len(), 40);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_DELADDR);
    }

    #[test]
    fn acks_and_errors() {
        let mut reply = vec![0u8; 36];
        reply[0..4].copy_from_slice(&36u32.to_ne_bytes());
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        reply[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(parse_ack(&reply, 9), Ack::Ok);
        assert_eq!(parse_ack(&reply, 10), Ack::Other);
        reply[16..20].copy_from_slice(&(-99i32).to_ne_bytes());
        assert_eq!(parse_ack(&reply, 9), Ack::Error(99));
        reply[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(parse_ack(&reply, 9), Ack::Error(i32::MAX));
        assert_eq!(parse_ack(&reply[..19], 9), Ack::Other);
        assert_eq!(parse_ack(&[], 9), Ack::Other);
    }
}
