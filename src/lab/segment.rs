//! The lab segment: the tokio shell around [`super::switch::Switch`].
//!
//! One hub task owns the switch. Every port has a bounded queue of frames going out to it;
//! frames coming in from all ports share one bounded inbox. A port is either a QEMU VM
//! connected to the segment's unix stream socket (`-netdev stream,server=off,addr.type=unix`:
//! each frame is a 4-byte big-endian length, then the frame), with a reader and a writer task
//! per connection, or an in-process [`Attachment`] (drover's own smoltcp interface).
//!
//! Congestion is handled like a real switch's: a frame for a port whose queue is full is
//! dropped and counted, never waited for, so one slow VM cannot stall the segment. A
//! connection that sends a length over [`switch::MAX_FRAME`] is closed (its framing is lost).
//!
//! A segment can also join another one over that socket ([`Segment::uplink`]): two
//! switches in cascade, as a lab's pool members (separate processes) join the lab's segment.
//!
//! Per port, the hub can announce the switch over LLDP and impair a node's link (drop or
//! delay its frames, [`Segment::impair`]); the decisions are `super::link`'s.
//!
//! VMs with QEMU's `-netdev dgram` send each frame as one unix datagram to the segment's
//! datagram socket instead ([`Segment::listen_dgram`]): a port per VM socket.
//!
//! Not here: the forwarding decision (`switch`) and IP (`super::stack`).

use super::link::{self, DelayLine, Fate, Impairment};
use super::switch::{self, Forward, Mac, PortId, Switch};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Frames waiting for the hub, from all ports.
const INBOX: usize = 1024;
/// Frames waiting to go out of one port.
const PORT_QUEUE: usize = 512;
/// VM connections at most (each is a port with two tasks).
pub const MAX_PORTS: usize = 64;

crate::counters::counter_set! {
    /// What the segment did with frames.
    pub struct Stats, snapshot StatsSnapshot {
        received,
        forwarded,
        flooded,
        /// Runts, giants, hairpins, frames from ports that left.
        dropped,
        /// Frames for a port whose queue was full.
        congested,
        /// Connections closed for a bad length prefix.
        bad_framing,
        /// Frames lost on an impaired link (`lab link --drop`).
        impaired_drops,
        /// Frames held back on an impaired link (`lab link --delay`).
        delayed,
        /// LLDP frames the switch sent on its ports.
        lldp_sent,
    }
}

/// A frame, and the port it came in on.
type Inbound = (PortId, Vec<u8>);

enum Control {
    Join(mpsc::Sender<Vec<u8>>, oneshot::Sender<PortId>),
    Leave(PortId),
    /// The link of the node with this Ethernet address misbehaves from now on (a healthy
    /// impairment clears it).
    Impair(Mac, Impairment),
}

/// A handle on a running segment; clone it freely.
#[derive(Clone)]
pub struct Segment {
    inbox: mpsc::Sender<Inbound>,
    control: mpsc::Sender<Control>,
    pub stats: Arc<Stats>,
}

/// An in-process port: frames to the segment go through `tx`, frames from it come out of
/// `rx`.
pub struct Attachment {
    pub port: PortId,
    pub tx: Sender,
    pub rx: mpsc::Receiver<Vec<u8>>,
}

/// Where a port sends frames into the segment.
#[derive(Clone)]
pub struct Sender {
    port: PortId,
    inbox: mpsc::Sender<Inbound>,
}

impl Sender {
    /// Queues `frame` for the hub without waiting; false when the inbox is full (the frame
    /// is lost, as on a congested wire).
    pub fn try_send(&self, frame: Vec<u8>) -> bool {
        self.inbox.try_send((self.port, frame)).is_ok()
    }

    /// Queues `frame`, waiting for room.
    async fn send(&self, frame: Vec<u8>) -> bool {
        self.inbox.send((self.port, frame)).await.is_ok()
    }
}

impl Segment {
    /// Starts the hub; it runs until `shutdown`.
    pub fn start(shutdown: CancellationToken) -> Segment {
        Segment::start_with(None, shutdown)
    }

    /// [`Segment::start`], and with `lldp` every port hears the switch announce itself
    /// (chassis `lldp`, the port's number: [`link::lldp_frame`]) when it joins and every
    /// [`link::LLDP_INTERVAL`].
    pub fn start_with(lldp: Option<String>, shutdown: CancellationToken) -> Segment {
        let (inbox, inbound) = mpsc::channel(INBOX);
        let (control, controls) = mpsc::channel(8);
        let stats = Arc::new(Stats::default());
        let hub = Hub {
            switch: Switch::new(),
            queues: HashMap::new(),
            links: Vec::new(),
            delayed: DelayLine::default(),
            lldp,
            stats: stats.clone(),
            origin: Instant::now(),
        };
        tokio::spawn(hub.run(inbound, controls, shutdown));
        Segment {
            inbox,
            control,
            stats,
        }
    }

    /// A new port for an in-process user of the segment.
    pub async fn attach(&self) -> io::Result<Attachment> {
        let (out_tx, rx) = mpsc::channel(PORT_QUEUE);
        let (reply, port) = oneshot::channel();
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the lab segment stopped");
        self.control
            .send(Control::Join(out_tx, reply))
            .await
            .map_err(|_| gone())?;
        let port = port.await.map_err(|_| gone())?;
        let tx = Sender {
            port,
            inbox: self.inbox.clone(),
        };
        Ok(Attachment { port, tx, rx })
    }

    /// Impairs the link of the node with Ethernet address `mac` (a healthy `impairment`
    /// clears it).
    pub async fn impair(&self, mac: Mac, impairment: Impairment) -> io::Result<()> {
        self.control
            .send(Control::Impair(mac, impairment))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the lab segment stopped"))
    }

    /// Takes VM connections on the unix stream socket `path` until `shutdown`.
    pub async fn listen(&self, path: &Path, shutdown: CancellationToken) -> io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let connections = Arc::new(tokio::sync::Semaphore::new(MAX_PORTS));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("lab segment: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!("lab segment: {MAX_PORTS} ports in use, connection refused");
                continue;
            };
            let port = self.attach().await?;
            let (segment, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move {
                let id = port.port;
                tracing::debug!(port = id, "lab segment: a VM joined");
                segment.serve_stream(stream, port, shutdown).await;
                let _ = segment.control.send(Control::Leave(id)).await;
                drop(permit);
                tracing::debug!(port = id, "lab segment: a VM left");
            });
        }
    }

    /// Joins this segment to the one listening on `path` (another process's: a pool member
    /// of the lab runs its own), as a VM would: one port here carries the frames of that
    /// connection, until either side ends or `shutdown`.
    pub async fn uplink(&self, path: &Path, shutdown: CancellationToken) -> io::Result<()> {
        let stream = tokio::net::UnixStream::connect(path).await?;
        let port = self.attach().await?;
        let id = port.port;
        self.serve_stream(stream, port, shutdown).await;
        let _ = self.control.send(Control::Leave(id)).await;
        Ok(())
    }

    /// Takes VMs' frames as unix datagrams on `path` (QEMU's `-netdev dgram`), one port per
    /// sender's socket path, until `shutdown`. A sender without a path cannot be answered
    /// and is ignored; a port whose VM's socket went away is made anew when it sends again.
    pub async fn listen_dgram(&self, path: &Path, shutdown: CancellationToken) -> io::Result<()> {
        let _ = std::fs::remove_file(path);
        let socket = Arc::new(tokio::net::UnixDatagram::bind(path)?);
        let mut ports: HashMap<std::path::PathBuf, (Sender, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        // One byte more than a frame may have, so that a giant is seen as one.
        let mut buf = vec![0u8; switch::MAX_FRAME + 1];
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = socket.recv_from(&mut buf) => r,
            };
            let (len, from) = match received {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("lab segment: datagram receive failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(peer) = from.as_pathname().map(Path::to_path_buf) else {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if len > switch::MAX_FRAME {
                self.stats.bad_framing.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let live = ports.get(&peer).is_some_and(|(_, w)| !w.is_finished());
            if !live {
                ports.retain(|_, (_, w)| !w.is_finished());
                if ports.len() >= MAX_PORTS {
                    tracing::warn!("lab segment: {MAX_PORTS} datagram ports in use, frame dropped");
                    continue;
                }
                let Attachment { port, tx, mut rx } = self.attach().await?;
                let (socket, to, control) = (socket.clone(), peer.clone(), self.control.clone());
                let writer = tokio::spawn(async move {
                    while let Some(frame) = rx.recv().await {
                        // The VM's socket is gone (it stopped): the port goes too.
                        if socket.send_to(&frame, &to).await.is_err() {
                            break;
                        }
                    }
                    let _ = control.send(Control::Leave(port)).await;
                });
                ports.insert(peer.clone(), (tx, writer));
            }
            if let Some((tx, _)) = ports.get(&peer) {
                tx.send(buf[..len].to_vec()).await;
            }
        }
        for (_, (_, writer)) in ports {
            writer.abort();
        }
        Ok(())
    }

    /// Carries frames between one QEMU stream connection and its port until either side
    /// ends.
    async fn serve_stream(
        &self,
        stream: tokio::net::UnixStream,
        port: Attachment,
        shutdown: CancellationToken,
    ) {
        let (mut read, mut write) = stream.into_split();
        let Attachment { tx, mut rx, .. } = port;
        let writer = async move {
            while let Some(frame) = rx.recv().await {
                // The length fits: the switch forwards at most MAX_FRAME bytes.
                let len = (frame.len() as u32).to_be_bytes();
                if write.write_all(&len).await.is_err() || write.write_all(&frame).await.is_err() {
                    return;
                }
            }
        };
        let stats = self.stats.clone();
        let reader = async move {
            loop {
                let mut len = [0u8; 4];
                if read.read_exact(&mut len).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes(len) as usize;
                if len > switch::MAX_FRAME {
                    stats.bad_framing.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(len, "lab segment: frame length out of range, closing");
                    return;
                }
                let mut frame = vec![0u8; len];
                if read.read_exact(&mut frame).await.is_err() || !tx.send(frame).await {
                    return;
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = writer => {}
            _ = reader => {}
        }
    }
}

/// The hub's state: the switch, each port's queue, the impaired links and the frames they
/// hold back.
struct Hub {
    switch: Switch,
    queues: HashMap<PortId, mpsc::Sender<Vec<u8>>>,
    links: Vec<(Mac, Impairment)>,
    delayed: DelayLine,
    lldp: Option<String>,
    stats: Arc<Stats>,
    origin: Instant,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Hub {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut controls: mpsc::Receiver<Control>,
        shutdown: CancellationToken,
    ) {
        // Ports are announced when they join, then every interval.
        let mut announce = tokio::time::interval_at(
            tokio::time::Instant::now() + link::LLDP_INTERVAL,
            link::LLDP_INTERVAL,
        );
        loop {
            let due = self
                .delayed
                .next_due()
                .map(|d| tokio::time::Instant::from_std(self.origin + d));
            // Biased, controls before frames: a change (a join, an impairment) sent before a
            // frame was queued applies to that frame, as `impair` promises.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                Some(c) = controls.recv() => self.control(c),
                _ = announce.tick(), if self.lldp.is_some() => {
                    let ports: Vec<PortId> = self.switch.ports().collect();
                    for port in ports {
                        self.announce(port);
                    }
                }
                // Awaited only while frames are held back (the `if` guard).
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)),
                    if due.is_some() => {
                    let now = self.origin.elapsed();
                    while let Some((to, frame)) = self.delayed.pop_due(now) {
                        self.deliver(to, frame);
                    }
                }
                // Last: the timers above are ready only when due, so frames still flow, and a
                // flood of frames cannot hold back LLDP or delayed frames.
                Some((from, frame)) = inbound.recv() => self.frame(from, frame),
            }
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Join(queue, reply) => {
                let port = self.switch.add_port();
                self.queues.insert(port, queue);
                let _ = reply.send(port);
                self.announce(port);
            }
            Control::Leave(port) => {
                self.switch.remove_port(port);
                self.queues.remove(&port);
            }
            Control::Impair(mac, impairment) => {
                self.links.retain(|(m, _)| *m != mac);
                if !impairment.is_none() {
                    self.links.push((mac, impairment));
                }
            }
        }
    }

    /// Sends the switch's LLDP frame to `port` (when the lab has a name for it).
    fn announce(&mut self, port: PortId) {
        if let Some(lab) = &self.lldp {
            let frame = link::lldp_frame(lab, port);
            if self
                .queues
                .get(&port)
                .is_some_and(|q| q.try_send(frame).is_ok())
            {
                count(&self.stats.lldp_sent);
            }
        }
    }

    fn deliver(&self, to: PortId, frame: Vec<u8>) {
        let ok = self
            .queues
            .get(&to)
            .is_some_and(|q| q.try_send(frame).is_ok());
        count(if ok {
            &self.stats.forwarded
        } else {
            &self.stats.congested
        });
    }

    fn frame(&mut self, from: PortId, frame: Vec<u8>) {
        let stats = self.stats.clone();
        count(&stats.received);
        let now = self.origin.elapsed();
        let to: Vec<PortId> = match self.switch.forward(now, from, &frame) {
            Forward::To(to) => vec![to],
            Forward::Flood => {
                count(&stats.flooded);
                self.switch.ports().filter(|p| *p != from).collect()
            }
            Forward::Drop(reason) => {
                tracing::trace!(port = from, "lab segment: {}", reason.name());
                count(&stats.dropped);
                return;
            }
        };
        let impairment = link::impairment_of(&frame, &self.links);
        let fate = if impairment.is_none() {
            Fate::Deliver
        } else {
            impairment.fate((rand::random::<u32>() % 100) as u8)
        };
        match fate {
            Fate::Deliver => {
                for port in to {
                    self.deliver(port, frame.clone());
                }
            }
            Fate::Drop => count(&stats.impaired_drops),
            Fate::After(delay) => {
                for port in to {
                    if self.delayed.push(now + delay, port, frame.clone()) {
                        count(&stats.delayed);
                    } else {
                        count(&stats.congested);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(dst: u8, src: u8) -> Vec<u8> {
        let mut f = vec![
            0x52, 0x54, 0, 0, 0, dst, 0x52, 0x54, 0, 0, 0, src, 0x08, 0x00,
        ];
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    async fn next(rx: &mut mpsc::Receiver<Vec<u8>>) -> Option<Vec<u8>> {
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// A segment listening in a fresh directory, with one in-process port: its shutdown,
    /// the segment, the port, the directory and the socket's path.
    async fn listening(
        name: &str,
    ) -> (
        CancellationToken,
        Segment,
        Attachment,
        std::path::PathBuf,
        std::path::PathBuf,
    ) {
        let shutdown = CancellationToken::new();
        let segment = Segment::start(shutdown.clone());
        let port = segment.attach().await.unwrap();
        let dir = std::env::temp_dir().join(format!("drover-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment.sock");
        let (listening, p, token) = (segment.clone(), path.clone(), shutdown.clone());
        tokio::spawn(async move { listening.listen(&p, token).await });
        (shutdown, segment, port, dir, path)
    }

    #[tokio::test]
    async fn floods_then_switches_between_ports() {
        let shutdown = CancellationToken::new();
        let segment = Segment::start(shutdown.clone());
        let mut a = segment.attach().await.unwrap();
        let mut b = segment.attach().await.unwrap();
        let mut c = segment.attach().await.unwrap();
        // Unknown destination: everyone but the sender gets it.
        assert!(a.tx.try_send(frame(2, 1)));
        assert_eq!(next(&mut b.rx).await, Some(frame(2, 1)));
        assert_eq!(next(&mut c.rx).await, Some(frame(2, 1)));
        assert_eq!(next(&mut a.rx).await, None);
        // 1 was learned on a: the answer goes to a only.
        assert!(b.tx.try_send(frame(1, 2)));
        assert_eq!(next(&mut a.rx).await, Some(frame(1, 2)));
        assert_eq!(next(&mut c.rx).await, None);
        let s = segment.stats.snapshot();
        assert_eq!((s.received, s.flooded, s.forwarded), (2, 1, 3));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_qemu_stream_port_is_framed_by_length() {
        let (shutdown, segment, mut inside, dir, path) = listening("segment").await;
        let mut vm = loop {
            match tokio::net::UnixStream::connect(&path).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        // What QEMU sends: a 4-byte big-endian length, then the frame.
        let f = frame(0xff, 7);
        vm.write_all(&(f.len() as u32).to_be_bytes()).await.unwrap();
        vm.write_all(&f).await.unwrap();
        assert_eq!(next(&mut inside.rx).await, Some(f));
        // And what it receives.
        let back = frame(7, 9);
        assert!(inside.tx.try_send(back.clone()));
        let mut len = [0u8; 4];
        vm.read_exact(&mut len).await.unwrap();
        let mut got = vec![0u8; u32::from_be_bytes(len) as usize];
        vm.read_exact(&mut got).await.unwrap();
        assert_eq!(got, back);
        // A length beyond any frame ends the connection.
        vm.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert_eq!(vm.read(&mut len).await.unwrap_or(0), 0);
        assert_eq!(segment.stats.snapshot().bad_framing, 1);
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn ports_hear_lldp_and_impaired_links_drop_or_delay() {
        let shutdown = CancellationToken::new();
        let segment = Segment::start_with(Some("mylab".into()), shutdown.clone());
        let mut a = segment.attach().await.unwrap();
        let mut b = segment.attach().await.unwrap();
        // Each port hears the switch when it joins, with its own port number.
        for port in [&mut a, &mut b] {
            let hello = next(&mut port.rx).await.expect("an LLDP frame on joining");
            let n = crate::discover::lldp::decode_frame(&hello).unwrap();
            assert_eq!(
                (n.chassis_id.as_str(), n.port_id),
                ("mylab", port.port.to_string())
            );
        }
        let node = [0x52, 0x54, 0, 0, 0, 1];
        let dead = Impairment {
            drop_percent: 100,
            delay_ms: 0,
        };
        segment.impair(node, dead).await.unwrap();
        assert!(a.tx.try_send(frame(2, 1)));
        assert_eq!(next(&mut b.rx).await, None, "a dead link lost the frame");
        let slow = Impairment {
            drop_percent: 0,
            delay_ms: 20,
        };
        segment.impair(node, slow).await.unwrap();
        assert!(a.tx.try_send(frame(2, 1)));
        assert_eq!(next(&mut b.rx).await, Some(frame(2, 1)));
        segment.impair(node, Impairment::default()).await.unwrap();
        assert!(a.tx.try_send(frame(2, 1)));
        assert_eq!(next(&mut b.rx).await, Some(frame(2, 1)));
        let s = segment.stats.snapshot();
        assert_eq!((s.impaired_drops, s.delayed, s.lldp_sent), (1, 1, 2));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_qemu_dgram_port_sends_one_frame_per_datagram() {
        let shutdown = CancellationToken::new();
        let segment = Segment::start(shutdown.clone());
        let mut inside = segment.attach().await.unwrap();
        let dir = std::env::temp_dir().join(format!("drover-dgram-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment.dgram");
        let (listening, p, token) = (segment.clone(), path.clone(), shutdown.clone());
        tokio::spawn(async move { listening.listen_dgram(&p, token).await });
        let vm_path = dir.join("n1.dgram");
        let _ = std::fs::remove_file(&vm_path);
        // What QEMU's `-netdev dgram` does: a socket of its own, one frame per datagram.
        let vm = tokio::net::UnixDatagram::bind(&vm_path).unwrap();
        let f = frame(0xff, 7);
        let mut crossed = None;
        for _ in 0..100 {
            // The segment's socket may not be bound yet.
            if vm.send_to(&f, &path).await.is_ok() {
                crossed = next(&mut inside.rx).await;
                if crossed.is_some() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(crossed, Some(f));
        let back = frame(7, 9);
        assert!(inside.tx.try_send(back.clone()));
        let mut got = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), vm.recv(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..n], back.as_slice());
        // A giant is dropped, not forwarded.
        vm.send_to(&vec![0u8; switch::MAX_FRAME + 1], &path)
            .await
            .unwrap();
        assert_eq!(next(&mut inside.rx).await, None);
        assert_eq!(segment.stats.snapshot().bad_framing, 1);
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_uplinked_segment_reaches_the_other_segments_ports() {
        let (shutdown, _main, mut there, dir, path) = listening("uplink").await;
        let member = Segment::start(shutdown.clone());
        let mut here = member.attach().await.unwrap();
        let (uplinked, p, token) = (member.clone(), path.clone(), shutdown.clone());
        tokio::spawn(async move {
            // The listener may not be bound yet: retry until it is.
            while uplinked.uplink(&p, token.clone()).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        // A broadcast from the member's side crosses the uplink...
        let f = frame(0xff, 3);
        let mut crossed = None;
        for _ in 0..100 {
            assert!(here.tx.try_send(f.clone()));
            crossed = next(&mut there.rx).await;
            if crossed.is_some() {
                break;
            }
        }
        assert_eq!(crossed, Some(f));
        // ...and the answer finds its way back through both switches.
        let back = frame(3, 4);
        assert!(there.tx.try_send(back.clone()));
        assert_eq!(next(&mut here.rx).await, Some(back));
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
