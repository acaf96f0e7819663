//! What the lab switch does per port besides forwarding, sans IO: the LLDP frame each port
//! announces itself with, and impaired links (frames dropped or delayed) for failover tests.
//!
//! - [`lldp_frame`]: an 802.1AB frame whose chassis id and system name are the lab's name
//!   and whose port id is the port's number, as a managed switch would send it; the
//!   discovery agent reads it (`crate::discover::lldp`) like any other.
//! - [`Impairment`]: a node's link loses a share of its frames and delays the rest; the
//!   caller rolls the dice ([`Impairment::fate`] takes the roll), so the decision is
//!   deterministic under test.
//! - [`DelayLine`]: delayed frames in due order, bounded; time is an argument.
//!
//! Not here: the hub that applies them (`super::segment`), and which node a port belongs to
//! (the shell knows nodes by their Ethernet address).

use super::switch::{Mac, PortId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// How often every port announces itself (802.1AB's default msgTxInterval).
pub const LLDP_INTERVAL: Duration = Duration::from_secs(30);
/// Frames waiting in a [`DelayLine`] at most; more are dropped, as a full queue would.
pub const MAX_DELAYED: usize = 4096;
/// The longest delay a link takes (longer ones are capped to it).
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// The LLDP frame port `port` of the lab `lab` sends: chassis id and system name `lab`, port
/// id the port's number, from a locally administered address of the port.
pub fn lldp_frame(lab: &str, port: PortId) -> Vec<u8> {
    let [_, _, hi, lo] = port.to_be_bytes();
    let source = [0x02, 0xd7, 0x0e, 0xfe, hi, lo];
    crate::discover::lldp::encode_frame(source, lab, &port.to_string(), lab)
}

/// How a node's link misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Impairment {
    /// Frames lost, in percent (0-100).
    pub drop_percent: u8,
    /// Delay of every frame that is not lost.
    pub delay_ms: u32,
}

/// What happens to one frame on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    After(Duration),
}

impl Impairment {
    /// Whether the link behaves like a healthy one.
    pub fn is_none(&self) -> bool {
        self.drop_percent == 0 && self.delay_ms == 0
    }

    /// The fate of one frame, given `roll`, uniformly random in `0..100`.
    pub fn fate(&self, roll: u8) -> Fate {
        if roll < self.drop_percent {
            return Fate::Drop;
        }
        match self.delay_ms {
            0 => Fate::Deliver,
            ms => Fate::After(Duration::from_millis(u64::from(ms)).min(MAX_DELAY)),
        }
    }
}

/// The impairment a frame meets: its source's link on the way in, else its destination's
/// on the way out (a broadcast only meets its source's).
pub fn impairment_of(frame: &[u8], links: &[(Mac, Impairment)]) -> Impairment {
    let find = |at: usize| {
        let mac = frame.get(at..at + 6)?;
        links
            .iter()
            .find(|(m, i)| m.as_slice() == mac && !i.is_none())
            .map(|(_, i)| *i)
    };
    find(6).or_else(|| find(0)).unwrap_or_default()
}

/// A held-back frame: when it is due, its arrival number (ties leave in arrival order), its
/// port, the frame.
type Held = (Duration, u64, PortId, Vec<u8>);

/// Frames held back until they are due, in due order (ties in arrival order).
#[derive(Debug, Default)]
pub struct DelayLine {
    heap: BinaryHeap<Reverse<Held>>,
    seq: u64,
}

impl DelayLine {
    /// Holds `frame` for `port` until `due`; false (the frame is lost) when full.
    pub fn push(&mut self, due: Duration, port: PortId, frame: Vec<u8>) -> bool {
        if self.heap.len() >= MAX_DELAYED {
            return false;
        }
        self.seq += 1;
        self.heap.push(Reverse((due, self.seq, port, frame)));
        true
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((due, ..))| *due)
    }

    /// The next frame due by `now`, with its port.
    pub fn pop_due(&mut self, now: Duration) -> Option<(PortId, Vec<u8>)> {
        if self.next_due()? > now {
            return None;
        }
        self.heap
            .pop()
            .map(|Reverse((_, _, port, frame))| (port, frame))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: Mac = [0x52, 0x54, 0, 0x1a, 0xb0, 1];
    const OTHER: Mac = [0x52, 0x54, 0, 0x1a, 0xb0, 2];

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = [dst, src].concat();
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    #[test]
    fn lldp_names_the_lab_and_the_port() {
        let n = crate::discover::lldp::decode_frame(&lldp_frame("rack-lab", 7)).unwrap();
        assert_eq!(n.chassis_id, "rack-lab");
        assert_eq!(n.port_id, "7");
        assert_eq!(n.system_name.as_deref(), Some("rack-lab"));
        assert_eq!(n.ttl, 120);
        // Each port has its own source address.
        assert_ne!(lldp_frame("l", 1)[6..12], lldp_frame("l", 2)[6..12]);
    }

    #[test]
    fn fate_follows_the_roll() {
        let lossy = Impairment {
            drop_percent: 30,
            delay_ms: 0,
        };
        assert_eq!(lossy.fate(0), Fate::Drop);
        assert_eq!(lossy.fate(29), Fate::Drop);
        assert_eq!(lossy.fate(30), Fate::Deliver);
        let slow = Impairment {
            drop_percent: 0,
            delay_ms: 250,
        };
        assert_eq!(slow.fate(0), Fate::After(Duration::from_millis(250)));
        let dead = Impairment {
            drop_percent: 100,
            delay_ms: 5,
        };
        assert!((0..100).all(|r| dead.fate(r) == Fate::Drop));
        let huge = Impairment {
            drop_percent: 0,
            delay_ms: u32::MAX,
        };
        assert_eq!(huge.fate(99), Fate::After(MAX_DELAY));
    }

    #[test]
    fn a_link_impairs_frames_from_and_to_its_node() {
        let slow = Impairment {
            drop_percent: 0,
            delay_ms: 100,
        };
        let links = [(NODE, slow)];
        assert_eq!(impairment_of(&frame(OTHER, NODE), &links), slow);
        assert_eq!(impairment_of(&frame(NODE, OTHER), &links), slow);
        assert!(impairment_of(&frame([0xff; 6], OTHER), &links).is_none());
        assert!(impairment_of(&[0u8; 3], &links).is_none());
    }

    #[test]
    fn delayed_frames_leave_in_due_order_and_the_line_is_bounded() {
        let mut line = DelayLine::default();
        let ms = Duration::from_millis;
        assert!(line.push(ms(30), 1, vec![1]));
        assert!(line.push(ms(10), 2, vec![2]));
        assert!(line.push(ms(10), 3, vec![3]));
        assert_eq!(line.next_due(), Some(ms(10)));
        assert_eq!(line.pop_due(ms(5)), None);
        assert_eq!(line.pop_due(ms(10)), Some((2, vec![2])));
        assert_eq!(line.pop_due(ms(10)), Some((3, vec![3])));
        assert_eq!(line.pop_due(ms(20)), None);
        assert_eq!(line.pop_due(ms(40)), Some((1, vec![1])));
        assert!(line.is_empty());
        for i in 0..MAX_DELAYED {
            assert!(line.push(ms(1), 0, vec![i as u8]));
        }
        assert!(!line.push(ms(1), 0, vec![0]));
        assert_eq!(line.len(), MAX_DELAYED);
    }
}
