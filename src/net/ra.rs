//! IPv6 router advertisements on the boot segment, for boot speed only.
//!
//! iPXE waits up to ~16 s on every DHCP for an IPv6 router advertisement before it goes on
//! (measured, see LAB.md). drover announces itself with an RA that carries no M/O flags and
//! a router lifetime of 0: iPXE learns at once that there is no DHCPv6 to wait for, and no
//! host takes drover as its default IPv6 router. It sends one every `interval` seconds and
//! answers router solicitations as RFC 4861 §6.2.6 allows ([`super::ra_pace`]: at once, or
//! merged into one answer 3 s after the previous advertisement), so a solicitation flood
//! cannot make it flood the segment. A receive error is counted (`crate::faults`) and
//! retried after a backoff; it does not end the task.
//!
//! Not here: prefixes, SLAAC, DHCPv6 — drover does not route or address IPv6.

use super::ra_pace::Answers;
use crate::store::model::Mac;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The RA message (ICMPv6 body; the kernel fills in the checksum on raw ICMPv6 sockets).
pub fn advertisement(mac: Option<Mac>) -> Vec<u8> {
    let mut p = vec![
        ICMPV6_ROUTER_ADVERTISEMENT,
        0, // code
        0,
        0,  // checksum (kernel)
        64, // current hop limit
        0,  // flags: no M (managed), no O (other config)
        0,
        0, // router lifetime 0: not a default router
        0,
        0,
        0,
        0, // reachable time: unspecified
        0,
        0,
        0,
        0, // retrans timer: unspecified
    ];
    if let Some(mac) = mac {
        // Source link-layer address option (type 1, length 1 unit of 8 bytes).
        p.extend_from_slice(&[1, 1]);
        p.extend_from_slice(&mac.0);
    }
    p
}

/// True when `packet` (an ICMPv6 message) is a router solicitation.
pub fn is_solicitation(packet: &[u8]) -> bool {
    packet.first() == Some(&ICMPV6_ROUTER_SOLICITATION) && packet.get(1) == Some(&0)
}

/// Sends advertisements on interface `iface` until `shutdown`.
pub async fn run(
    iface: crate::net::Interface,
    interval: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.bind_device(Some(iface.name.as_bytes()))?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_if_v6(iface.index)?;
    socket.set_multicast_loop_v6(false)?;
    // Solicitations go to all-routers, which the kernel joins only when forwarding is on.
    socket.join_multicast_v6(&ALL_ROUTERS, iface.index)?;
    socket.set_nonblocking(true)?;
    // tokio's UdpSocket is a thin wrapper over a datagram fd: it drives this raw ICMPv6
    // socket just as well (sendto/recvfrom), without unsafe fd registration.
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    let ra = advertisement(iface.mac);
    let dest = SocketAddrV6::new(ALL_NODES, 0, 0, iface.index);
    let mut ticker = tokio::time::interval(interval);
    // After a receive backoff, one advertisement, not a burst of the missed ones.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = [0u8; 1500];
    let mut failing = false;
    let mut receiving = crate::faults::Backoff::default();
    let mut answers = Answers::default();
    loop {
        let answer_due = answers.due().map(tokio::time::Instant::from_std);
        let send = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => true,
            // `due` is only awaited when it is set (the `if` guard).
            _ = tokio::time::sleep_until(answer_due.unwrap_or_else(tokio::time::Instant::now)),
                if answer_due.is_some() => true,
            got = socket.recv(&mut buf) => match got {
                Ok(n) => {
                    if receiving.succeeded() > 0 {
                        tracing::info!(iface = %iface.name, "receiving router solicitations again");
                    }
                    if is_solicitation(&buf[..n]) {
                        answers.solicited(Instant::now());
                    }
                    false
                }
                // Counted and retried after a backoff (the periodic advertisements go on
                // meanwhile): a socket fault degrades boot speed, it does not stop the server.
                Err(e) => {
                    crate::faults::global().ra_receive_errors.fetch_add(1, Ordering::Relaxed);
                    let wait = receiving.failed();
                    tracing::warn!(iface = %iface.name, error = %e, retry_in_ms = wait.as_millis() as u64,
                        "router solicitation receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    false
                }
            },
        };
        if send {
            answers.sent(Instant::now());
            match socket.send_to(&ra, dest).await {
                Ok(_) if failing => {
                    tracing::info!(iface = %iface.name, "sending IPv6 router advertisements");
                    failing = false;
                }
                Ok(_) => {}
                // No usable IPv6 link-local address yet (tentative right after the link came
                // up) or none at all: boots are slower, not broken. Said once per outage.
                Err(e) if !failing => {
                    tracing::warn!(iface = %iface.name, error = %e, "cannot send IPv6 router advertisements yet; iPXE waits ~16 s for one on each boot until they go out");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertisement_has_no_flags_and_zero_lifetime() {
        let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
        let p = advertisement(Some(mac));
        assert_eq!(p.len(), 24);
        assert_eq!(p[0], 134);
        assert_eq!(p[5], 0, "M and O flags clear");
        assert_eq!(&p[6..8], &[0, 0], "router lifetime 0");
        assert_eq!(&p[16..18], &[1, 1]);
        assert_eq!(&p[18..], &mac.0);
        assert!(is_solicitation(&[133, 0, 0, 0]));
        assert!(!is_solicitation(&[134, 0]));
        assert!(!is_solicitation(&[]));
    }
}
