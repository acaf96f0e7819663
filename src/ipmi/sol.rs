//! Serial-over-LAN (IPMI v2.0 section 15) above an RMCP+ session, sans-IO: the Activate and
//! Deactivate Payload requests, and [`Console`], which turns SOL packets from the BMC into
//! serial output plus acknowledgements, and keystrokes into packets that it sends again
//! until the BMC acknowledges them. Time is an argument.
//!
//! Packet: sequence number (1-15, 0 = acknowledgement only), acknowledged sequence number,
//! accepted character count, operation/status, then characters. A packet repeated by the BMC
//! (same sequence number as the last one) is acknowledged again and not shown twice.
//!
//! Not here: break, flow control (CTS/DCD), the BMC's NACKs (a refused packet is sent again
//! as a whole after [`RETRY`]), bit rates, the SOL configuration parameters.

use super::core::RawRequest;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const NETFN_APP: u8 = 0x06;
const CMD_ACTIVATE_PAYLOAD: u8 = 0x48;
const CMD_DEACTIVATE_PAYLOAD: u8 = 0x49;
const PAYLOAD_SOL: u8 = 0x01;
/// Completion code of Activate Payload: the payload is active in another session already.
pub const CC_ALREADY_ACTIVE: u8 = 0x80;
/// Wait for an acknowledgement before sending a packet again.
pub const RETRY: Duration = Duration::from_millis(500);
/// Sends of one packet before the console gives up on the BMC.
pub const MAX_SENDS: u32 = 8;
/// Characters per packet sent (BMCs take at least this much; ipmi_sim takes 255).
pub const MAX_CHARS: usize = 64;
/// Keystrokes held while the BMC has not acknowledged, before more are refused.
pub const MAX_PENDING: usize = 4096;

/// Activate Payload for SOL instance 1, encrypted and authenticated, serial alerts deferred.
pub fn activate() -> RawRequest {
    let data = [PAYLOAD_SOL, 1, 0xc6, 0, 0, 0];
    // Invariant: six data bytes, under RawRequest::MAX_DATA.
    RawRequest::new(NETFN_APP, CMD_ACTIVATE_PAYLOAD, "Activate Payload", &data)
        .expect("six data bytes")
}

pub fn deactivate() -> RawRequest {
    let data = [PAYLOAD_SOL, 1, 0, 0, 0, 0];
    // Invariant: six data bytes, under RawRequest::MAX_DATA.
    RawRequest::new(
        NETFN_APP,
        CMD_DEACTIVATE_PAYLOAD,
        "Deactivate Payload",
        &data,
    )
    .expect("six data bytes")
}

/// Why the console stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolError {
    #[error("the BMC did not acknowledge console input after {MAX_SENDS} sends")]
    Unacknowledged,
    #[error("more than {MAX_PENDING} keystrokes wait for the BMC")]
    Backlog,
}

/// A packet on its way out, until acknowledged.
#[derive(Debug)]
struct InFlight {
    seq: u8,
    chars: Vec<u8>,
    sends: u32,
    due: Instant,
}

/// One SOL conversation.
#[derive(Debug, Default)]
pub struct Console {
    /// The BMC's last sequence number shown (0: none yet).
    last_in: u8,
    next_seq: u8,
    pending: VecDeque<u8>,
    in_flight: Option<InFlight>,
    transmit: VecDeque<Vec<u8>>,
}

impl Console {
    pub fn new() -> Console {
        Console {
            next_seq: 1,
            ..Console::default()
        }
    }

    /// Takes one SOL packet from the BMC; returns the serial output it carries (empty for a
    /// repeat or a bare acknowledgement).
    pub fn handle_packet(&mut self, now: Instant, p: &[u8]) -> Vec<u8> {
        let [seq, ack, _accepted, _status, chars @ ..] = p else {
            return Vec::new();
        };
        let seq = seq & 0x0f;
        if let Some(f) = &self.in_flight {
            if *ack & 0x0f == f.seq && f.seq != 0 {
                self.in_flight = None;
                self.send_next(now);
            }
        }
        if seq == 0 || chars.is_empty() {
            return Vec::new();
        }
        // Acknowledge every character of it (repeats too: our last acknowledgement was lost).
        self.transmit
            .push_back(vec![0, seq, chars.len().min(255) as u8, 0]);
        if seq == self.last_in {
            return Vec::new();
        }
        self.last_in = seq;
        chars.to_vec()
    }

    /// Queues keystrokes for the node's serial port.
    pub fn type_in(&mut self, now: Instant, keys: &[u8]) -> Result<(), SolError> {
        if self.pending.len() + keys.len() > MAX_PENDING {
            return Err(SolError::Backlog);
        }
        self.pending.extend(keys);
        if self.in_flight.is_none() {
            self.send_next(now);
        }
        Ok(())
    }

    fn send_next(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len().min(MAX_CHARS);
        let chars: Vec<u8> = self.pending.drain(..n).collect();
        let seq = self.next_seq;
        self.next_seq = if seq >= 15 { 1 } else { seq + 1 };
        let mut packet = vec![seq, 0, 0, 0];
        packet.extend_from_slice(&chars);
        self.transmit.push_back(packet);
        self.in_flight = Some(InFlight {
            seq,
            chars,
            sends: 1,
            due: now + RETRY,
        });
    }

    /// Sends the unacknowledged packet again when its time has come.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SolError> {
        let Some(f) = &mut self.in_flight else {
            return Ok(());
        };
        if now < f.due {
            return Ok(());
        }
        if f.sends >= MAX_SENDS {
            return Err(SolError::Unacknowledged);
        }
        f.sends += 1;
        f.due = now + RETRY;
        let mut packet = vec![f.seq, 0, 0, 0];
        packet.extend_from_slice(&f.chars);
        self.transmit.push_back(packet);
        Ok(())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|f| f.due)
    }

    /// The next SOL packet to seal and send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_shown_once_and_acknowledged() {
        let now = Instant::now();
        let mut c = Console::new();
        assert_eq!(c.handle_packet(now, &[3, 0, 0, 0, b'h', b'i']), b"hi");
        assert_eq!(c.poll_transmit(), Some(vec![0, 3, 2, 0]));
        // The BMC repeats it: acknowledged again, not shown again.
        assert!(c.handle_packet(now, &[3, 0, 0, 0, b'h', b'i']).is_empty());
        assert_eq!(c.poll_transmit(), Some(vec![0, 3, 2, 0]));
        assert_eq!(c.handle_packet(now, &[4, 0, 0, 0, b'!']), b"!");
        assert!(c.handle_packet(now, &[1, 2]).is_empty());
    }

    #[test]
    fn input_is_sent_until_acknowledged() {
        let t0 = Instant::now();
        let mut c = Console::new();
        c.type_in(t0, b"ls\r").unwrap();
        assert_eq!(c.poll_transmit(), Some(vec![1, 0, 0, 0, b'l', b's', b'\r']));
        c.type_in(t0, b"x").unwrap();
        assert_eq!(c.poll_transmit(), None, "one packet in flight at a time");
        c.handle_timeout(t0 + RETRY).unwrap();
        assert_eq!(c.poll_transmit(), Some(vec![1, 0, 0, 0, b'l', b's', b'\r']));
        // The acknowledgement lets the next packet go.
        assert!(c.handle_packet(t0, &[0, 1, 3, 0]).is_empty());
        assert_eq!(c.poll_transmit(), Some(vec![2, 0, 0, 0, b'x']));
        let mut t = t0;
        let mut result = Ok(());
        for _ in 0..MAX_SENDS {
            t += RETRY;
            result = c.handle_timeout(t);
        }
        assert_eq!(result, Err(SolError::Unacknowledged));
        assert_eq!(
            Console::new().type_in(t0, &[0; MAX_PENDING + 1]),
            Err(SolError::Backlog)
        );
    }
}
