//! LLDP (IEEE 802.1AB) frame decoder: what a switch port says about itself, read by the
//! discovery agent on each NIC to tell drover where a new machine is plugged in.
//!
//! Pure: bytes in, a [`Neighbour`] out. Every TLV header and body is length-checked before it
//! is read, so no input panics. Only what naming rules use is kept: chassis id, port id,
//! port description, system name and the time to live; the mandatory TLVs (chassis id, port
//! id, TTL) must come first and in that order (802.1AB §8.2), else the frame is refused.
//!
//! Not here: the socket (the agent's `discover` shell listens on AF_PACKET for ethertype
//! 0x88cc), sending LLDP, or organisationally specific TLVs (skipped).

use std::fmt::Write;

/// The LLDP ethertype.
pub const ETHERTYPE: u16 = 0x88cc;

/// Longest string kept from one TLV (an LLDP TLV body is at most 511 bytes).
const MAX_TEXT: usize = 255;

/// What one switch port announced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Neighbour {
    /// Chassis id: a MAC address as `aa:bb:..`, else the text (or hex of binary ids).
    pub chassis_id: String,
    /// Port id, shown the same way.
    pub port_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_name: Option<String>,
    /// Seconds the information is valid for.
    pub ttl: u16,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LldpError {
    #[error("frame too short for an Ethernet header")]
    Short,
    #[error("ethertype {0:#06x} is not LLDP")]
    NotLldp(u16),
    #[error("TLV at offset {0} runs past the end of the frame")]
    Truncated(usize),
    #[error("mandatory TLV {0} missing or out of order")]
    Mandatory(&'static str),
    #[error("{0} TLV is malformed")]
    Malformed(&'static str),
}

/// Decodes a whole Ethernet frame (destination, source, ethertype, LLDPDU).
pub fn decode_frame(frame: &[u8]) -> Result<Neighbour, LldpError> {
    let Some((header, pdu)) = frame.split_at_checked(14) else {
        return Err(LldpError::Short);
    };
    let ethertype = u16::from_be_bytes([header[12], header[13]]);
    if ethertype != ETHERTYPE {
        return Err(LldpError::NotLldp(ethertype));
    }
    decode(pdu)
}

/// Decodes an LLDPDU (the TLVs after the ethertype).
pub fn decode(pdu: &[u8]) -> Result<Neighbour, LldpError> {
    let mut chassis_id = None;
    let mut port_id = None;
    let mut ttl = None;
    let mut port_description = None;
    let mut system_name = None;
    let mut at = 0;
    let mut index = 0;
    while at < pdu.len() {
        let Some(head) = pdu.get(at..at + 2) else {
            return Err(LldpError::Truncated(at));
        };
        let kind = head[0] >> 1;
        let len = usize::from(head[0] & 1) << 8 | usize::from(head[1]);
        let Some(body) = pdu.get(at + 2..at + 2 + len) else {
            return Err(LldpError::Truncated(at));
        };
        // Chassis id, port id and TTL are the first three TLVs, in that order.
        let expected = match index {
            0 => Some((1, "chassis id")),
            1 => Some((2, "port id")),
            2 => Some((3, "time to live")),
            _ => None,
        };
        if let Some((want, name)) = expected {
            if kind != want {
                return Err(LldpError::Mandatory(name));
            }
        }
        match kind {
            0 => break,
            1 => chassis_id = Some(id(body, 4, "chassis id")?),
            2 => port_id = Some(id(body, 3, "port id")?),
            3 => {
                let [a, b] = body else {
                    return Err(LldpError::Malformed("time to live"));
                };
                ttl = Some(u16::from_be_bytes([*a, *b]));
            }
            4 => port_description = Some(text(body)),
            5 => system_name = Some(text(body)),
            _ => {}
        }
        at += 2 + len;
        index += 1;
    }
    match (chassis_id, port_id, ttl) {
        (Some(chassis_id), Some(port_id), Some(ttl)) => Ok(Neighbour {
            chassis_id,
            port_id,
            port_description,
            system_name,
            ttl,
        }),
        (None, _, _) => Err(LldpError::Mandatory("chassis id")),
        (_, None, _) => Err(LldpError::Mandatory("port id")),
        (_, _, None) => Err(LldpError::Mandatory("time to live")),
    }
}

/// A chassis or port id: subtype byte, then the id; `mac_subtype` marks a MAC address
/// (4 for chassis ids, 3 for port ids).
fn id(body: &[u8], mac_subtype: u8, what: &'static str) -> Result<String, LldpError> {
    match body {
        [] | [_] => Err(LldpError::Malformed(what)),
        [subtype, rest @ ..] if *subtype == mac_subtype => match rest {
            [a, b, c, d, e, f] => Ok(format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")),
            _ => Err(LldpError::Malformed(what)),
        },
        [_, rest @ ..] => Ok(text(rest)),
    }
}

/// Printable ASCII as is (trailing NULs and spaces dropped), anything else as hex; at most
/// [`MAX_TEXT`] bytes.
fn text(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    let bytes = &bytes[..end.min(MAX_TEXT)];
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// Test and lab helper: an LLDP frame from `source` announcing `chassis` (a locally
/// assigned chassis id), `port` (an interface name) and `system_name`, with a TTL of 120 s.
pub fn encode_frame(source: [u8; 6], chassis: &str, port: &str, system_name: &str) -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
    f.extend_from_slice(&source);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    let mut tlv = |kind: u8, body: &[u8]| {
        let len = body.len().min(511);
        f.push(kind << 1 | u8::from(len > 255));
        f.push((len & 0xff) as u8);
        f.extend_from_slice(&body[..len]);
    };
    tlv(1, &[&[7u8][..], chassis.as_bytes()].concat());
    tlv(2, &[&[5u8][..], port.as_bytes()].concat());
    tlv(3, &120u16.to_be_bytes());
    tlv(5, system_name.as_bytes());
    tlv(0, &[]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LLDP frame as a managed switch sends it: chassis id by MAC (subtype 4), port id by
    /// interface name (subtype 5), TTL 120, port description, system name, an
    /// organisationally specific TLV (802.1 port VLAN id) and End.
    const SWITCH_FRAME: &[u8] = &[
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e, 0x88, 0xcc, 0x02,
        0x07, 0x04, 0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e, // chassis id
        0x04, 0x06, 0x05, b's', b'w', b'p', b'1', b'2', // port id "swp12"
        0x06, 0x02, 0x00, 0x78, // TTL 120
        0x08, 0x07, b'n', b'o', b'd', b'e', b' ', b'1', b'2', // port description
        0x0a, 0x09, b'r', b'a', b'c', b'k', b'1', b'-', b's', b'w', b'1', // system name
        0xfe, 0x06, 0x00, 0x80, 0xc2, 0x01, 0x00, 0x0a, // org specific: PVID 10
        0x00, 0x00,
    ];

    #[test]
    fn decodes_a_switch_frame() {
        let n = decode_frame(SWITCH_FRAME).unwrap();
        assert_eq!(n.chassis_id, "00:1b:21:3c:4d:5e");
        assert_eq!(n.port_id, "swp12");
        assert_eq!(n.port_description.as_deref(), Some("node 12"));
        assert_eq!(n.system_name.as_deref(), Some("rack1-sw1"));
        assert_eq!(n.ttl, 120);
    }

    #[test]
    fn encoded_frames_decode_to_what_was_encoded() {
        let f = encode_frame([2, 0, 0, 0, 0, 1], "sw-chassis", "Ethernet7", "rack2-sw3");
        let n = decode_frame(&f).unwrap();
        assert_eq!(n.chassis_id, "sw-chassis");
        assert_eq!(n.port_id, "Ethernet7");
        assert_eq!(n.system_name.as_deref(), Some("rack2-sw3"));
        assert_eq!(n.port_description, None);
    }

    #[test]
    fn refuses_other_ethertypes_and_short_frames() {
        let mut f = SWITCH_FRAME.to_vec();
        f[12] = 0x08;
        f[13] = 0x00;
        assert_eq!(decode_frame(&f), Err(LldpError::NotLldp(0x0800)));
        assert_eq!(decode_frame(&f[..10]), Err(LldpError::Short));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        // Cut at a TLV boundary after the TTL, the frame is whole without its End TLV.
        let boundaries = [35, 44, 55, 63];
        for end in 0..SWITCH_FRAME.len() {
            let r = decode_frame(&SWITCH_FRAME[..end]);
            assert_eq!(r.is_ok(), boundaries.contains(&end), "cut at {end}: {r:?}");
        }
    }

    #[test]
    fn mandatory_tlvs_must_come_first_in_order() {
        // Port id first.
        let pdu = [0x04, 0x03, 0x05, b'p', b'1', 0x02, 0x03, 0x07, b'c', b'1'];
        assert_eq!(decode(&pdu), Err(LldpError::Mandatory("chassis id")));
        // End before the TTL.
        let pdu = [
            0x02, 0x03, 0x07, b'c', b'1', 0x04, 0x03, 0x05, b'p', b'1', 0, 0,
        ];
        assert_eq!(decode(&pdu), Err(LldpError::Mandatory("time to live")));
    }

    #[test]
    fn malformed_ids_and_binary_text() {
        // A MAC chassis id of 5 bytes.
        let pdu = [0x02, 0x06, 0x04, 1, 2, 3, 4, 5];
        assert_eq!(decode(&pdu), Err(LldpError::Malformed("chassis id")));
        // A binary locally assigned id is shown as hex; a TTL of 3 bytes is refused.
        let pdu = [
            0x02, 0x03, 0x07, 0x01, 0xff, 0x04, 0x02, 0x05, b'x', 0x06, 0x03, 0, 1, 2,
        ];
        assert_eq!(decode(&pdu), Err(LldpError::Malformed("time to live")));
        assert_eq!(text(&[0x01, 0xff]), "01ff");
        assert_eq!(text(b"sw1\0\0"), "sw1");
    }
}
