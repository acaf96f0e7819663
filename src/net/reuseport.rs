//! UDP sockets for one address, one per worker core, joined with SO_REUSEPORT: the kernel
//! spreads datagrams over them by a hash of the sender's address and port, so each worker's
//! receive loop runs on its own socket queue, and one sender always lands on the same socket.
//!
//! Used by the DNS and NTP shells. Before the group is bound, the address is bound once
//! without SO_REUSEPORT: a second drover (or anything else) already serving the address makes
//! that fail with "address in use", instead of silently joining the group and taking half the
//! traffic. The check is not atomic with the binds below it; it catches a running server,
//! not a race between two starting ones.
//!
//! Not here: steering by CPU (SO_INCOMING_CPU, a BPF program) or anything protocol-specific.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Receive loops worth running: one per core the process may use (at least one).
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `count` (at least one) non-blocking UDP sockets bound to `addr` with SO_REUSEPORT. Port 0
/// picks one free port for the whole group. Must be called inside a tokio runtime.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    // The exclusive probe: fails if the address is served already. Its port then is the
    // group's (the probe is closed before the group binds it).
    let probe = std::net::UdpSocket::bind(addr)?;
    let addr = probe.local_addr()?;
    drop(probe);
    (0..count.max(1))
        .map(|_| {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            UdpSocket::from_std(socket.into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn group_shares_one_port_and_refuses_a_served_address() {
        let group = bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert_eq!(group.len(), 2);
        let addr = group[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(group[1].local_addr().unwrap(), addr);
        // A second group on the same address is refused, not joined.
        let err = bind_udp_group(addr, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // Every datagram reaches one socket of the group.
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"x", addr).await.unwrap();
        let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::select! {
                r = group[0].recv_from(&mut a) => r,
                r = group[1].recv_from(&mut b) => r,
            }
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got, (1, client.local_addr().unwrap()));
    }
}
