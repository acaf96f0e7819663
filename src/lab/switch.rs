//! The lab's L2 switch, sans IO: MAC learning and the forwarding decision for one frame.
//!
//! A frame comes in on a port; [`Switch::forward`] learns its source address on that port
//! and says where it goes: to the one port its destination was learned on, to every other
//! port (broadcast, multicast, or a destination not learned yet), or nowhere (a runt, a
//! frame to the port it came from). Learned addresses age out after [`AGEING`], and a port
//! that leaves takes its addresses with it. Time is an argument (a `Duration` since any
//! fixed origin), so the table is testable on virtual time.
//!
//! Not here: sockets, queues and framing (`super::segment`), VLANs, spanning tree (a lab
//! segment is one switch, so it has no loops), and per-port faults. Those (drop or delay
//! per port, for failover tests) belong in the shell, between this decision and a port's
//! queue, so that the decision stays the same with and without them.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A port's number, unique for the switch's lifetime (never reused).
pub type PortId = u32;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// Ethernet header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;
/// The largest frame forwarded: 1500 bytes of payload, the header and an 802.1Q tag
/// (QEMU's socket netdevs carry frames without the FCS).
pub const MAX_FRAME: usize = 1518;
/// How long a learned address stays without a frame from it (802.1D's default).
pub const AGEING: Duration = Duration::from_secs(300);
/// Learned addresses at most; beyond it, new addresses are not learned (their frames are
/// flooded, as for any unknown destination), so a port that sends from random addresses
/// cannot grow the table without bound.
pub const MAX_ENTRIES: usize = 4096;

/// Where one frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// To this one port.
    To(PortId),
    /// To every port but the one it came from.
    Flood,
    /// Nowhere.
    Drop(DropReason),
}

crate::labels::labels! {
    /// Why a frame was not forwarded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DropReason {
        /// Shorter than an Ethernet header.
        Runt = "runt",
        /// Longer than [`MAX_FRAME`].
        Giant = "giant",
        /// From a port the switch does not have (it left while the frame was queued).
        UnknownPort = "unknown_port",
        /// Its destination was learned on the port it came from.
        SamePort = "same_port",
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    seen: Duration,
}

/// The ports and the address table.
#[derive(Debug, Default)]
pub struct Switch {
    ports: BTreeSet<PortId>,
    table: HashMap<Mac, Entry>,
    next_port: PortId,
}

impl Switch {
    pub fn new() -> Switch {
        Switch::default()
    }

    /// A new port.
    pub fn add_port(&mut self) -> PortId {
        let id = self.next_port;
        self.next_port += 1;
        self.ports.insert(id);
        id
    }

    /// Removes `port` and forgets what was learned on it.
    pub fn remove_port(&mut self, port: PortId) {
        self.ports.remove(&port);
        self.table.retain(|_, e| e.port != port);
    }

    /// The ports, in order.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.iter().copied()
    }

    /// The port `mac` was last seen on, if it has not aged out by `now`.
    pub fn lookup(&self, mac: &Mac, now: Duration) -> Option<PortId> {
        let e = self.table.get(mac)?;
        (now.saturating_sub(e.seen) < AGEING).then_some(e.port)
    }

    /// Learns the source of `frame` (from `port` at `now`) and decides where it goes.
    pub fn forward(&mut self, now: Duration, port: PortId, frame: &[u8]) -> Forward {
        if frame.len() < HEADER_LEN {
            return Forward::Drop(DropReason::Runt);
        }
        if frame.len() > MAX_FRAME {
            return Forward::Drop(DropReason::Giant);
        }
        if !self.ports.contains(&port) {
            return Forward::Drop(DropReason::UnknownPort);
        }
        let (dst, src) = (mac_at(frame, 0), mac_at(frame, 6));
        self.learn(now, port, src);
        if is_group(&dst) {
            return Forward::Flood;
        }
        match self.lookup(&dst, now) {
            Some(p) if p == port => Forward::Drop(DropReason::SamePort),
            Some(p) => Forward::To(p),
            None => Forward::Flood,
        }
    }

    fn learn(&mut self, now: Duration, port: PortId, src: Mac) {
        // A group address never sends; learning it would misdirect frames to the group.
        if is_group(&src) {
            return;
        }
        if self.table.len() >= MAX_ENTRIES && !self.table.contains_key(&src) {
            self.table
                .retain(|_, e| now.saturating_sub(e.seen) < AGEING);
            if self.table.len() >= MAX_ENTRIES {
                return;
            }
        }
        self.table.insert(src, Entry { port, seen: now });
    }
}

/// The six bytes at `at`; the caller checked the frame holds a header.
fn mac_at(frame: &[u8], at: usize) -> Mac {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[at..at + 6]);
    mac
}

/// Broadcast and multicast addresses have the group bit (the lowest bit of the first byte).
fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x52, 0x54, 0, 0, 0, 0xa];
    const B: Mac = [0x52, 0x54, 0, 0, 0, 0xb];
    const BROADCAST: Mac = [0xff; 6];

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn floods_unknown_then_forwards_learned() {
        let mut sw = Switch::new();
        let (p1, p2, _p3) = (sw.add_port(), sw.add_port(), sw.add_port());
        assert_eq!(sw.forward(secs(0), p1, &frame(B, A)), Forward::Flood);
        // B answers: A was learned on p1.
        assert_eq!(sw.forward(secs(1), p2, &frame(A, B)), Forward::To(p1));
        assert_eq!(sw.forward(secs(2), p1, &frame(B, A)), Forward::To(p2));
        assert_eq!(
            sw.forward(secs(2), p1, &frame(BROADCAST, A)),
            Forward::Flood
        );
    }

    #[test]
    fn a_moved_address_follows_its_new_port() {
        let mut sw = Switch::new();
        let (p1, p2, p3) = (sw.add_port(), sw.add_port(), sw.add_port());
        sw.forward(secs(0), p1, &frame(BROADCAST, A));
        sw.forward(secs(1), p3, &frame(BROADCAST, A));
        assert_eq!(sw.forward(secs(2), p2, &frame(A, B)), Forward::To(p3));
    }

    #[test]
    fn entries_age_out_and_leave_with_their_port() {
        let mut sw = Switch::new();
        let (p1, p2) = (sw.add_port(), sw.add_port());
        sw.forward(secs(0), p1, &frame(BROADCAST, A));
        assert_eq!(sw.lookup(&A, secs(299)), Some(p1));
        assert_eq!(sw.forward(secs(300), p2, &frame(A, B)), Forward::Flood);
        sw.forward(secs(301), p1, &frame(BROADCAST, A));
        sw.remove_port(p1);
        assert_eq!(sw.lookup(&A, secs(302)), None);
        assert_eq!(
            sw.forward(secs(302), p1, &frame(B, A)),
            Forward::Drop(DropReason::UnknownPort)
        );
        assert_eq!(sw.ports().collect::<Vec<_>>(), vec![p2]);
    }

    #[test]
    fn refuses_bad_frames_and_hairpins() {
        let mut sw = Switch::new();
        let (p1, _p2) = (sw.add_port(), sw.add_port());
        let runt = &frame(B, A)[..HEADER_LEN - 1];
        assert_eq!(
            sw.forward(secs(0), p1, runt),
            Forward::Drop(DropReason::Runt)
        );
        let giant = vec![0u8; MAX_FRAME + 1];
        assert_eq!(
            sw.forward(secs(0), p1, &giant),
            Forward::Drop(DropReason::Giant)
        );
        sw.forward(secs(0), p1, &frame(BROADCAST, B));
        assert_eq!(
            sw.forward(secs(1), p1, &frame(B, A)),
            Forward::Drop(DropReason::SamePort)
        );
    }

    #[test]
    fn group_sources_are_not_learned_and_the_table_is_bounded() {
        let mut sw = Switch::new();
        let (p1, p2) = (sw.add_port(), sw.add_port());
        sw.forward(secs(0), p1, &frame(B, BROADCAST));
        assert_eq!(sw.lookup(&BROADCAST, secs(0)), None);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let b = i.to_be_bytes();
            let src = [0x02, 0, b[0], b[1], b[2], b[3]];
            sw.forward(secs(1), p1, &frame(BROADCAST, src));
        }
        assert_eq!(sw.table.len(), MAX_ENTRIES);
        // Once the old ones aged out, a new address is learned again.
        sw.forward(secs(400), p2, &frame(BROADCAST, A));
        assert_eq!(sw.lookup(&A, secs(400)), Some(p2));
    }
}
