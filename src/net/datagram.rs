//! Datagram socket interfaces for the UDP shells, so the same shell runs on a kernel socket
//! and on the lab's smoltcp network (`crate::lab::stack`).
//!
//! - [`Datagram`]: a bound socket that receives from and sends to any address (every UDP
//!   server's listening socket).
//! - [`Dial`] and [`Connected`]: a fresh socket on an ephemeral port that talks with one
//!   peer only (TFTP's per-transfer TID, RFC 1350 §4). On a kernel socket the kernel drops
//!   datagrams from other addresses (`connect`); the lab's socket drops them itself.
//!
//! Not here: binding the listening sockets (each caller binds its own kind), batching
//! (recvmmsg shells keep their kernel sockets and have a one-datagram path for the lab).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A bound datagram socket: receive with the sender's address, send to an address.
pub trait Datagram: Send + Sync + 'static {
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    fn send_to(&self, buf: &[u8], to: SocketAddr)
        -> impl Future<Output = io::Result<usize>> + Send;
}

impl Datagram for tokio::net::UdpSocket {
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        tokio::net::UdpSocket::recv_from(self, buf)
    }

    fn send_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }
}

/// A datagram socket that exchanges datagrams with one peer only.
pub trait Connected: Send + Sync + 'static {
    fn send(&self, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// The next datagram from the peer (datagrams from anyone else never show up here).
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Connected for tokio::net::UdpSocket {
    fn send(&self, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::send(self, buf)
    }

    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::recv(self, buf)
    }
}

/// Opens [`Connected`] sockets on fresh ephemeral ports.
pub trait Dial: Send + Sync + 'static {
    type Socket: Connected;

    fn dial(&self, peer: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send;
}

/// [`Dial`] on kernel sockets bound to one local address (the one the client asked, so
/// replies leave from it).
#[derive(Debug, Clone, Copy)]
pub struct KernelDial {
    pub local_ip: IpAddr,
}

impl Dial for KernelDial {
    type Socket = tokio::net::UdpSocket;

    async fn dial(&self, peer: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
        let socket = tokio::net::UdpSocket::bind((self.local_ip, 0)).await?;
        socket.connect(peer).await?;
        Ok(socket)
    }
}
