//! Gratuitous ARP (RFC 826 packets, announced as RFC 5227 §3 describes): the ARP payloads a
//! member broadcasts when it takes the floating service address, so that the segment's
//! neighbour caches point the address at its MAC at once instead of at the dead holder's.
//! Bytes only: `sys::send_arp` broadcasts them through a packet socket, which adds the
//! Ethernet header.
//!
//! Both forms go out, as hosts differ in which they heed: a request (sender and target
//! address both the service address, target MAC zero) and a reply (target MAC equal to the
//! sender's, which is what Linux requires to treat a reply as gratuitous).
//!
//! Not here: answering ARP (the kernel does, for any address on the interface), IPv6.

use crate::store::model::Mac;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP payload.
pub const LEN: usize = 28;

/// The ARP payload announcing that `ip` is at `mac`: a request, or the reply form.
pub fn gratuitous(mac: Mac, ip: Ipv4Addr, reply: bool) -> [u8; LEN] {
    let mut p = [0u8; LEN];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&(if reply { 2u16 } else { 1 }).to_be_bytes());
    p[8..14].copy_from_slice(&mac.0);
    p[14..18].copy_from_slice(&ip.octets());
    if reply {
        p[18..24].copy_from_slice(&mac.0);
    }
    p[24..28].copy_from_slice(&ip.octets());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_forms() {
        let mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let ip = Ipv4Addr::new(198, 18, 0, 100);
        // An RFC 5227 ARP Announcement: target MAC all zeroes.
        assert_eq!(
            gratuitous(mac, ip, false),
            [
                0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 198, 18, 0, 100, 0, 0, 0,
                0, 0, 0, 198, 18, 0, 100
            ]
        );
        let r = gratuitous(mac, ip, true);
        assert_eq!(&r[6..8], &[0, 2]);
        assert_eq!(
            r[8..14],
            r[18..24],
            "a gratuitous reply names the sender as target"
        );
        assert_eq!(r[14..18], r[24..28]);
    }
}
