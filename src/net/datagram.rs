//! One datagram socket interface for the UDP shells, so the same shell runs on a kernel
//! socket and on the lab's smoltcp network (`crate::lab::stack::UdpSocket`).
//!
//! Not here: binding (each caller binds its own kind of socket), batching (recvmmsg shells
//! keep their kernel sockets).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

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
