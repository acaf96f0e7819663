//! drover's own address on the lab segment: a smoltcp interface attached to a
//! [`super::segment::Segment`] port, and tokio-facing sockets over it, so that the services'
//! existing shells run unchanged: [`UdpSocket`] implements [`crate::net::datagram::Datagram`]
//! (the DHCP, DNS and NTP shells' socket), [`Stack`] implements
//! [`crate::net::datagram::Dial`] (TFTP's per-transfer sockets), and [`TcpStream`] is an `AsyncRead + AsyncWrite` stream with
//! the peer's real address (what hyper serves in `crate::http::listen`).
//!
//! Data flow: one driver task owns the polling. Frames from the segment are queued into the
//! device and `Interface::poll` runs them through smoltcp into the sockets' buffers; a socket
//! operation from another task (under the one mutex, never across an `.await`) wakes the
//! driver to transmit; smoltcp's wakers wake the tasks waiting on a socket; the driver also
//! wakes at smoltcp's own next deadline (retransmissions, delayed ACKs). A listener keeps
//! [`BACKLOG`] sockets listening and hands out the ones that left the listening state.
//!
//! Not here: IP configuration beyond one address (no gateway, no DHCP client: drover is the
//! segment's server), IPv6, and the protocols themselves (their own modules).

use super::segment::{Attachment, Sender};
use crate::net::datagram::{Connected, Datagram, Dial};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Listening sockets kept per TCP listener: connections that can be in their handshake at
/// once.
pub const BACKLOG: usize = 16;
/// TCP buffers per connection: a large send buffer keeps image downloads streaming.
const TCP_RX: usize = 64 * 1024;
const TCP_TX: usize = 256 * 1024;
/// UDP buffers per socket: datagrams and bytes.
const UDP_PACKETS: usize = 64;
const UDP_BYTES: usize = 64 * 1024;
/// Frames queued into smoltcp between two polls.
const RX_QUEUE: usize = 1024;
/// The longest the driver sleeps when smoltcp has no deadline.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long a closed connection may linger (FIN handshake) before it is aborted.
const CLOSE_LINGER: Duration = Duration::from_secs(30);
/// Ports for sockets opened with [`Dial`] (RFC 6335's dynamic range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Errors setting up the stack.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("smoltcp cannot {what} port {port}")]
    Bind { what: &'static str, port: u16 },
}

/// The device: frames in from the segment, frames out to it.
struct Link {
    rx: VecDeque<Vec<u8>>,
    tx: Sender,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a Sender);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        // A full inbox loses the frame, as a congested wire would; TCP retransmits.
        self.0.try_send(frame);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

struct Inner {
    iface: Interface,
    sockets: SocketSet<'static>,
    link: Link,
    /// Connections dropped by their users, with when: removed once closed (or lingering too
    /// long).
    closing: Vec<(SocketHandle, Instant)>,
    /// The next ephemeral port to try.
    next_port: u16,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver: a socket has something to send, or buffer room to announce.
    poll: Notify,
    /// Wakes listeners after a poll that changed sockets' states.
    changed: Notify,
    origin: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // With panic = "abort" a holder cannot have panicked; the state stays usable anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.origin.elapsed().as_micros() as i64)
    }
}

/// drover's interface on the segment; clone it to open sockets from several tasks.
#[derive(Clone)]
pub struct Stack {
    shared: Arc<Shared>,
    addr: Ipv4Addr,
}

impl Stack {
    /// An interface with `mac` and `addr/prefix` on `port`, driven until `shutdown`.
    pub fn start(
        port: Attachment,
        mac: [u8; 6],
        addr: Ipv4Addr,
        prefix: u8,
        seed: u64,
        shutdown: CancellationToken,
    ) -> Stack {
        let Attachment { tx, rx, .. } = port;
        let mut link = Link {
            rx: VecDeque::new(),
            tx,
        };
        let origin = Instant::now();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut link, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            // One address on a fresh interface: the list has room for it.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
        });
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                iface,
                sockets: SocketSet::new(Vec::new()),
                link,
                closing: Vec::new(),
                next_port: *EPHEMERAL.start(),
            }),
            poll: Notify::new(),
            changed: Notify::new(),
            origin,
        });
        tokio::spawn(drive(shared.clone(), rx, shutdown));
        Stack { shared, addr }
    }

    /// The interface's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// A UDP socket on `port` (any local address: it receives broadcasts too).
    pub fn udp_bind(&self, port: u16) -> Result<UdpSocket, StackError> {
        let socket = udp_socket(port)?;
        let handle = self.shared.lock().sockets.add(socket);
        Ok(UdpSocket {
            shared: self.shared.clone(),
            handle,
        })
    }

    /// A UDP socket on an ephemeral port no other UDP socket of the stack holds.
    pub fn udp_bind_ephemeral(&self) -> Result<UdpSocket, StackError> {
        let mut inner = self.shared.lock();
        for _ in EPHEMERAL {
            let port = inner.next_port;
            inner.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            if udp_port_taken(&inner.sockets, port) {
                continue;
            }
            let handle = inner.sockets.add(udp_socket(port)?);
            return Ok(UdpSocket {
                shared: self.shared.clone(),
                handle,
            });
        }
        Err(StackError::Bind {
            what: "find a free ephemeral UDP",
            port: *EPHEMERAL.end(),
        })
    }

    /// A TCP listener on `port`.
    pub fn tcp_listen(&self, port: u16) -> Result<TcpListener, StackError> {
        let mut inner = self.shared.lock();
        let mut backlog = Vec::with_capacity(BACKLOG);
        for _ in 0..BACKLOG {
            backlog.push(listening(&mut inner.sockets, port)?);
        }
        drop(inner);
        Ok(TcpListener {
            shared: self.shared.clone(),
            port,
            backlog: Mutex::new(backlog),
        })
    }
}

fn udp_socket(port: u16) -> Result<udp::Socket<'static>, StackError> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BYTES],
        )
    };
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(port).map_err(|_| StackError::Bind {
        what: "bind UDP",
        port,
    })?;
    Ok(socket)
}

fn udp_port_taken(sockets: &SocketSet<'static>, port: u16) -> bool {
    sockets.iter().any(|(_, socket)| match socket {
        smoltcp::socket::Socket::Udp(udp) => udp.endpoint().port == port,
        _ => false,
    })
}

fn listening(sockets: &mut SocketSet<'static>, port: u16) -> Result<SocketHandle, StackError> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; TCP_RX]),
        tcp::SocketBuffer::new(vec![0u8; TCP_TX]),
    );
    socket.set_nagle_enabled(false);
    socket.listen(port).map_err(|_| StackError::Bind {
        what: "listen on TCP",
        port,
    })?;
    Ok(sockets.add(socket))
}

/// The driver: polls smoltcp whenever a frame arrives, a socket asks, or smoltcp's next
/// deadline comes.
async fn drive(
    shared: Arc<Shared>,
    mut frames: tokio::sync::mpsc::Receiver<Vec<u8>>,
    shutdown: CancellationToken,
) {
    loop {
        let delay = {
            let mut guard = shared.lock();
            let inner = &mut *guard;
            while inner.link.rx.len() < RX_QUEUE {
                match frames.try_recv() {
                    Ok(f) => inner.link.rx.push_back(f),
                    Err(_) => break,
                }
            }
            let now = shared.now();
            let result = inner.iface.poll(now, &mut inner.link, &mut inner.sockets);
            reap(inner);
            if result == smoltcp::iface::PollResult::SocketStateChanged {
                shared.changed.notify_waiters();
            }
            if !inner.link.rx.is_empty() {
                Some(Duration::ZERO)
            } else {
                inner
                    .iface
                    .poll_delay(now, &inner.sockets)
                    .map(|d| Duration::from_micros(d.total_micros()))
            }
        };
        if delay == Some(Duration::ZERO) {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            f = frames.recv() => match f {
                Some(f) => shared.lock().link.rx.push_back(f),
                None => return,
            },
            _ = shared.poll.notified() => {}
            _ = tokio::time::sleep(delay.unwrap_or(IDLE_POLL)) => {}
        }
    }
}

/// Removes the connections their users dropped, once closed or after [`CLOSE_LINGER`].
fn reap(inner: &mut Inner) {
    let Inner {
        sockets, closing, ..
    } = inner;
    closing.retain(|(handle, since)| {
        let socket = sockets.get_mut::<tcp::Socket>(*handle);
        let done = matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
        if done || since.elapsed() > CLOSE_LINGER {
            socket.abort();
            sockets.remove(*handle);
            return false;
        }
        true
    });
}

fn to_std(endpoint: IpEndpoint) -> SocketAddr {
    let IpAddress::Ipv4(ip) = endpoint.addr;
    SocketAddr::from((ip, endpoint.port))
}

/// A UDP socket on the lab interface.
pub struct UdpSocket {
    shared: Arc<Shared>,
    handle: SocketHandle,
}

impl Datagram for UdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let socket = inner.sockets.get_mut::<udp::Socket>(self.handle);
            match socket.recv_slice(buf) {
                Ok((n, meta)) => Poll::Ready(Ok((n, to_std(meta.endpoint)))),
                // Larger than the caller's buffer: dropped by smoltcp, as the kernel would
                // truncate; the shells size buffers one past their protocol maximum.
                Err(udp::RecvError::Truncated) => {
                    Poll::Ready(Ok((buf.len(), SocketAddr::from(([0, 0, 0, 0], 0)))))
                }
                Err(udp::RecvError::Exhausted) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let SocketAddr::V4(to) = to else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 on the lab",
            ));
        };
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
        let sent = poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let socket = inner.sockets.get_mut::<udp::Socket>(self.handle);
            match socket.send_slice(buf, endpoint) {
                Ok(()) => Poll::Ready(Ok(buf.len())),
                Err(udp::SendError::BufferFull) => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(udp::SendError::Unaddressable) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot send to {to} on the lab"),
                ))),
            }
        })
        .await;
        self.shared.poll.notify_one();
        sent
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.shared.lock().sockets.remove(self.handle);
    }
}

/// A UDP socket on the lab interface that talks with one peer (see [`Dial`]).
pub struct UdpConnected {
    socket: UdpSocket,
    peer: SocketAddr,
}

impl Connected for UdpConnected {
    async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.socket.send_to(buf, self.peer).await
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            // What the kernel does for a connected socket: others' datagrams never arrive.
            if from == self.peer {
                return Ok(n);
            }
        }
    }
}

impl Dial for Stack {
    type Socket = UdpConnected;

    async fn dial(&self, peer: SocketAddr) -> io::Result<UdpConnected> {
        let socket = self
            .udp_bind_ephemeral()
            .map_err(|e| io::Error::new(io::ErrorKind::AddrInUse, e.to_string()))?;
        Ok(UdpConnected { socket, peer })
    }
}

/// A TCP listener on the lab interface.
pub struct TcpListener {
    shared: Arc<Shared>,
    port: u16,
    backlog: Mutex<Vec<SocketHandle>>,
}

impl TcpListener {
    /// The next connection and its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(accepted) = self.take_established()? {
                return Ok(accepted);
            }
            changed.await;
        }
    }

    /// A connection out of the backlog, replaced by a fresh listening socket.
    fn take_established(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        let mut inner = self.shared.lock();
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        for slot in backlog.iter_mut() {
            let socket = inner.sockets.get_mut::<tcp::Socket>(*slot);
            match socket.state() {
                tcp::State::Listen | tcp::State::SynReceived => continue,
                tcp::State::Closed => {
                    // A handshake that failed: listen again on the same socket.
                    let _ = socket.listen(self.port);
                    continue;
                }
                _ => {}
            }
            let peer = socket.remote_endpoint().map(to_std);
            let fresh = listening(&mut inner.sockets, self.port)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let handle = std::mem::replace(slot, fresh);
            let stream = TcpStream {
                shared: self.shared.clone(),
                handle,
            };
            let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            return Ok(Some((stream, peer)));
        }
        Ok(None)
    }
}

impl crate::http::listen::Accept for TcpListener {
    type Stream = TcpStream;

    fn accept(
        &self,
    ) -> impl std::future::Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// One TCP connection on the lab interface.
pub struct TcpStream {
    shared: Arc<Shared>,
    handle: SocketHandle,
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let socket = inner.sockets.get_mut::<tcp::Socket>(self.handle);
        if socket.can_recv() {
            let n = match socket.recv_slice(buf.initialize_unfilled()) {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(io::Error::other(e.to_string()))),
            };
            buf.advance(n);
            drop(inner);
            // Room in the receive window: the driver announces it.
            self.shared.poll.notify_one();
            return Poll::Ready(Ok(()));
        }
        if !socket.may_recv() {
            // The peer closed (or the connection is gone): end of stream.
            return Poll::Ready(Ok(()));
        }
        socket.register_recv_waker(cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.shared.lock();
        let socket = inner.sockets.get_mut::<tcp::Socket>(self.handle);
        if !socket.may_send() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = if socket.can_send() {
            socket.send_slice(buf).unwrap_or(0)
        } else {
            0
        };
        if n == 0 {
            socket.register_send_waker(cx.waker());
            return Poll::Pending;
        }
        drop(inner);
        self.shared.poll.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in smoltcp's send buffer and the driver was told: they go out
        // as the window allows.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared
            .lock()
            .sockets
            .get_mut::<tcp::Socket>(self.handle)
            .close();
        self.shared.poll.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.sockets.get_mut::<tcp::Socket>(self.handle).close();
        inner.closing.push((self.handle, Instant::now()));
        drop(inner);
        self.shared.poll.notify_one();
    }
}
