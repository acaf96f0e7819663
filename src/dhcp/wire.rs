//! DHCPv4 bytes <-> typed messages, on top of `dhcproto`.
//!
//! Data flow: [`decode`] turns one received datagram into a [`Request`] holding exactly what
//! the core needs; [`encode`] turns the core's [`Reply`] into the bytes the shell sends.
//!
//! Decoding follows smoltcp's contract: lengths are checked once up front (fixed header, magic
//! cookie, hardware type), then the options area is walked with a bounded reader
//! ([`scan_options`]) that proves every option fits inside the datagram and concatenates
//! split options (RFC 3396). Only then does `dhcproto` see anything: the fixed header, and
//! each option we read, one at a time on its own slice. Why not `Message::decode` on the whole
//! datagram: `dhcproto` 0.15 stops silently at the first option it cannot decode (a non-UTF-8
//! hostname, an ASCII-form FQDN) and loses every option after it, it has `debug_assert!`s and
//! unchecked subtractions on some option lengths (80, 81, 94, 151-155) that hostile input
//! would trip, and it keeps only the first entry of option 93. So: options we do not read
//! are never decoded, an undecodable optional value (e.g. hostname) is ignored, an
//! undecodable essential one (53, 50, 54) is a typed error, and option 93 (a list), option 82
//! (kept raw, as RFC 3046 wants it echoed verbatim) and option 175 come from the walk.
//!
//! Encoding builds a `dhcproto` message, appends option 82 raw as the last option (RFC 3046
//! §2.1), pads to the BOOTP minimum of 300 bytes, and honours the client's maximum message
//! size (option 57) by leaving out optional options until the reply fits.
//!
//! Not here: option overload (option 52: options in `sname`/`file`) is ignored; only
//! Ethernet (htype 1, hlen 6) is accepted; no DHCPv6; no protocol decisions (see `core`).

use crate::store::model::Mac;
use dhcproto::v4::{self, DhcpOption, Encodable, Encoder, OptionCode, UnknownOption};
use dhcproto::Decodable;
use std::net::Ipv4Addr;

/// Fixed BOOTP header (236 bytes) plus the magic cookie.
pub const HEADER_LEN: usize = 240;
/// Largest datagram we accept; anything longer is truncated by the receive buffer and
/// rejected. Jumbo-frame DHCP does not exist in practice.
pub const MAX_DATAGRAM: usize = 4096;
/// Replies are padded to this size: old BOOTP relays and some PXE ROMs drop shorter ones.
pub const MIN_REPLY: usize = 300;
/// What every client must accept (RFC 2131 §2: 576-byte IP datagrams) minus IP and UDP
/// headers.
pub const DEFAULT_MAX_REPLY: usize = 576 - 28;
/// We never build a reply larger than one unfragmented Ethernet datagram.
pub const CEILING_MAX_REPLY: usize = 1500 - 28;
/// Magic cookie (RFC 2131 §3).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];

const OP_BOOTREQUEST: u8 = 1;
const HTYPE_ETHERNET: u8 = 1;

/// Option 175: iPXE's encapsulated options; sub-option 176 is `no-pxedhcp`.
pub const OPT_IPXE_ENCAP: u8 = 175;
pub const IPXE_NO_PXEDHCP: u8 = 176;
/// Option 82, relay agent information (RFC 3046).
pub const OPT_RELAY_AGENT: u8 = 82;
/// Option 93, client system architecture (RFC 4578), a list of u16.
pub const OPT_CLIENT_ARCH: u8 = 93;

/// Why a datagram was not turned into a [`Request`]. Every variant is a drop reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram of {0} bytes is shorter than the 240-byte DHCP header")]
    Truncated(usize),
    #[error("datagram of {0} bytes is longer than we accept")]
    TooLong(usize),
    #[error("no DHCP magic cookie (plain BOOTP is not supported)")]
    BadCookie,
    #[error("op {0} is not BOOTREQUEST")]
    NotRequest(u8),
    #[error("hardware type {htype} / length {hlen} is not Ethernet")]
    UnsupportedHardware { htype: u8, hlen: u8 },
    #[error("option {code} runs past the end of the datagram")]
    OptionOverrun { code: u8 },
    #[error("option {code} has invalid length {len}")]
    BadOptionLength { code: u8, len: usize },
    #[error("option {code} could not be decoded")]
    UndecodableOption { code: u8 },
    #[error("header: {0}")]
    Header(String),
    #[error("no DHCP message type (option 53)")]
    NoMessageType,
    #[error("message type {0} is not one a server accepts")]
    UnsupportedMessageType(u8),
}

crate::labels::labels! {
    /// The kind of a [`WireError`], with its stable name for counters and logs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum WireReason {
        Truncated = "truncated",
        TooLong = "too_long",
        BadCookie = "bad_cookie",
        NotRequest = "not_request",
        UnsupportedHardware = "unsupported_hardware",
        OptionOverrun = "option_overrun",
        BadOptionLength = "bad_option_length",
        UndecodableOption = "undecodable_option",
        Header = "bad_header",
        NoMessageType = "no_message_type",
        UnsupportedMessageType = "unsupported_message_type",
    }
}

impl WireError {
    /// What kind of error this is, for counters and logs.
    pub fn reason(&self) -> WireReason {
        match self {
            WireError::Truncated(_) => WireReason::Truncated,
            WireError::TooLong(_) => WireReason::TooLong,
            WireError::BadCookie => WireReason::BadCookie,
            WireError::NotRequest(_) => WireReason::NotRequest,
            WireError::UnsupportedHardware { .. } => WireReason::UnsupportedHardware,
            WireError::OptionOverrun { .. } => WireReason::OptionOverrun,
            WireError::BadOptionLength { .. } => WireReason::BadOptionLength,
            WireError::UndecodableOption { .. } => WireReason::UndecodableOption,
            WireError::Header(_) => WireReason::Header,
            WireError::NoMessageType => WireReason::NoMessageType,
            WireError::UnsupportedMessageType(_) => WireReason::UnsupportedMessageType,
        }
    }
}

/// Client-to-server message types (RFC 2131 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover,
    Request,
    Decline,
    Release,
    Inform,
}

impl MessageType {
    fn to_dhcproto(self) -> v4::MessageType {
        match self {
            MessageType::Discover => v4::MessageType::Discover,
            MessageType::Request => v4::MessageType::Request,
            MessageType::Decline => v4::MessageType::Decline,
            MessageType::Release => v4::MessageType::Release,
            MessageType::Inform => v4::MessageType::Inform,
        }
    }
}

/// One decoded client message: what the core needs, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub msg_type: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub hops: u8,
    /// The broadcast bit of `flags`.
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: Mac,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61, raw.
    pub client_id: Option<Vec<u8>>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 55, option codes in the client's order.
    pub params: Vec<u8>,
    /// Option 57.
    pub max_size: Option<u16>,
    /// Option 93 (RFC 4578), every architecture type the client listed.
    pub arch: Vec<u16>,
    /// Option 77, raw (iPXE sends the bare string "iPXE"; RFC 3004 clients length-prefix).
    pub user_class: Option<Vec<u8>>,
    /// Option 175, raw: iPXE's own encapsulated options (its presence marks iPXE).
    pub ipxe_encap: Option<Vec<u8>>,
    /// Option 60, e.g. `PXEClient:Arch:00000:UNDI:002001`.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 97, client machine UUID (type byte + 16 bytes).
    pub uuid: Option<Vec<u8>>,
    /// Option 82, raw contents (sub-options), to store and echo.
    pub relay_info: Option<Vec<u8>>,
}

impl Request {
    /// A PXE client: vendor class `PXEClient...` or an architecture option.
    pub fn is_pxe(&self) -> bool {
        !self.arch.is_empty()
            || self
                .vendor_class
                .as_deref()
                .is_some_and(|v| v.starts_with(b"PXEClient"))
    }

    /// iPXE itself (not the firmware's PXE): user class "iPXE" or option 175.
    pub fn is_ipxe(&self) -> bool {
        self.ipxe_encap.is_some() || self.user_class.as_deref().is_some_and(user_class_has_ipxe)
    }

    /// Encodes this request as a client would send it. Used by tests and by tools that play
    /// a client; the server itself never sends requests.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut msg = v4::Message::new_with_id(
            self.xid,
            self.ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            self.giaddr,
            &self.chaddr.0,
        );
        msg.set_opcode(v4::Opcode::BootRequest)
            .set_secs(self.secs)
            .set_hops(self.hops);
        if self.broadcast {
            msg.set_flags(v4::Flags::default().set_broadcast());
        }
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(self.msg_type.to_dhcproto()));
        if let Some(ip) = self.requested_ip {
            opts.insert(DhcpOption::RequestedIpAddress(ip));
        }
        if let Some(ip) = self.server_id {
            opts.insert(DhcpOption::ServerIdentifier(ip));
        }
        if let Some(id) = &self.client_id {
            opts.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if let Some(h) = &self.hostname {
            opts.insert(DhcpOption::Hostname(h.clone()));
        }
        if !self.params.is_empty() {
            let codes = self.params.iter().map(|&c| OptionCode::from(c)).collect();
            opts.insert(DhcpOption::ParameterRequestList(codes));
        }
        if let Some(m) = self.max_size {
            opts.insert(DhcpOption::MaxMessageSize(m));
        }
        if !self.arch.is_empty() {
            let data = self.arch.iter().flat_map(|a| a.to_be_bytes()).collect();
            opts.insert(unknown(OPT_CLIENT_ARCH, data));
        }
        if let Some(u) = &self.user_class {
            opts.insert(DhcpOption::UserClass(u.clone()));
        }
        if let Some(v) = &self.vendor_class {
            opts.insert(DhcpOption::ClassIdentifier(v.clone()));
        }
        if let Some(u) = &self.uuid {
            opts.insert(DhcpOption::ClientMachineIdentifier(u.clone()));
        }
        let mut out = Vec::with_capacity(MIN_REPLY);
        // Encoding into a Vec cannot fail for lack of space; the only errors dhcproto reports
        // are for values it cannot represent, which our typed fields never hold.
        if msg.encode(&mut Encoder::new(&mut out)).is_err() {
            out.clear();
        }
        let mut raw = Vec::new();
        if let Some(e) = &self.ipxe_encap {
            raw.push((OPT_IPXE_ENCAP, e.as_slice()));
        }
        if let Some(r) = &self.relay_info {
            raw.push((OPT_RELAY_AGENT, r.as_slice()));
        }
        finish(&mut out, &raw);
        out
    }
}

fn unknown(code: u8, data: Vec<u8>) -> DhcpOption {
    DhcpOption::Unknown(UnknownOption::new(OptionCode::from(code), data))
}

/// True when option 77 names iPXE: either the bare string (what iPXE sends) or one entry of
/// an RFC 3004 list of length-prefixed classes.
pub fn user_class_has_ipxe(uc: &[u8]) -> bool {
    if uc == b"iPXE" {
        return true;
    }
    let mut rest = uc;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len > tail.len() {
            return false;
        }
        let (class, after) = tail.split_at(len);
        if class == b"iPXE" {
            return true;
        }
        rest = after;
    }
    false
}

/// One option found by [`scan_options`]: its code and its data (all instances of the code
/// concatenated, RFC 3396).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    pub code: u8,
    pub data: Vec<u8>,
}

/// Walks the options area (after the magic cookie) with a bounded reader: every option's
/// length is checked against what is left before it is read. Stops at End (255); a missing
/// End is tolerated (some clients end the datagram right after the last option).
pub fn scan_options(area: &[u8]) -> Result<Vec<RawOption>, WireError> {
    let mut out: Vec<RawOption> = Vec::new();
    let mut rest = area;
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            0 => {
                rest = tail;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some((&len, tail)) = tail.split_first() else {
            return Err(WireError::OptionOverrun { code });
        };
        let len = usize::from(len);
        if len > tail.len() {
            return Err(WireError::OptionOverrun { code });
        }
        let (data, after) = tail.split_at(len);
        rest = after;
        match out.iter_mut().find(|o| o.code == code) {
            Some(o) => o.data.extend_from_slice(data),
            None => out.push(RawOption {
                code,
                data: data.to_vec(),
            }),
        }
    }
    for o in &out {
        check_length(o.code, o.data.len())?;
    }
    Ok(out)
}

/// Length rules for the options we read as fixed-size values.
fn check_length(code: u8, len: usize) -> Result<(), WireError> {
    let ok = match code {
        50 | 54 => len == 4,
        53 => len == 1,
        57 => len == 2,
        OPT_CLIENT_ARCH => len >= 2 && len % 2 == 0,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::BadOptionLength { code, len })
    }
}

/// Decodes one datagram received on the server port.
pub fn decode(buf: &[u8]) -> Result<Request, WireError> {
    if buf.len() < HEADER_LEN {
        return Err(WireError::Truncated(buf.len()));
    }
    if buf.len() > MAX_DATAGRAM {
        return Err(WireError::TooLong(buf.len()));
    }
    // Indexing below is within HEADER_LEN, checked above.
    if buf[0] != OP_BOOTREQUEST {
        return Err(WireError::NotRequest(buf[0]));
    }
    if buf[1] != HTYPE_ETHERNET || buf[2] != 6 {
        return Err(WireError::UnsupportedHardware {
            htype: buf[1],
            hlen: buf[2],
        });
    }
    if buf[236..240] != MAGIC {
        return Err(WireError::BadCookie);
    }
    let raw = scan_options(&buf[HEADER_LEN..])?;
    // The fixed header through dhcproto: with no options after the cookie its option loop
    // ends at once, and hlen == 6 keeps `chaddr()` in bounds.
    let msg = v4::Message::from_bytes(&buf[..HEADER_LEN])
        .map_err(|e| WireError::Header(e.to_string()))?;
    // The options we read, each through dhcproto on its own bounded slice, so that one bad
    // option (a hostname that is not UTF-8, an FQDN in ASCII form) costs only itself.
    let mut opts = Vec::new();
    for o in raw.iter().filter(|o| READ_OPTIONS.contains(&o.code)) {
        match decode_option(o) {
            Ok(opt) => opts.push(opt),
            Err(()) if ESSENTIAL_OPTIONS.contains(&o.code) => {
                return Err(WireError::UndecodableOption { code: o.code })
            }
            Err(()) => {}
        }
    }
    let raw_of = |code: u8| raw.iter().find(|o| o.code == code).map(|o| o.data.clone());

    let msg_type = opts.iter().find_map(|o| match o {
        DhcpOption::MessageType(t) => Some(*t),
        _ => None,
    });
    let msg_type = match msg_type {
        None => return Err(WireError::NoMessageType),
        Some(v4::MessageType::Discover) => MessageType::Discover,
        Some(v4::MessageType::Request) => MessageType::Request,
        Some(v4::MessageType::Decline) => MessageType::Decline,
        Some(v4::MessageType::Release) => MessageType::Release,
        Some(v4::MessageType::Inform) => MessageType::Inform,
        Some(other) => return Err(WireError::UnsupportedMessageType(u8::from(other))),
    };
    let mut mac = [0u8; 6];
    // hlen == 6 was checked above, so chaddr() is exactly six bytes.
    mac.copy_from_slice(msg.chaddr());

    let mut req = Request {
        msg_type,
        xid: msg.xid(),
        secs: msg.secs(),
        hops: msg.hops(),
        broadcast: msg.flags().broadcast(),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        chaddr: Mac(mac),
        requested_ip: None,
        server_id: None,
        client_id: None,
        hostname: None,
        params: Vec::new(),
        max_size: None,
        arch: Vec::new(),
        user_class: None,
        ipxe_encap: raw_of(OPT_IPXE_ENCAP),
        vendor_class: None,
        uuid: None,
        relay_info: raw_of(OPT_RELAY_AGENT),
    };
    if let Some(a) = raw_of(OPT_CLIENT_ARCH) {
        req.arch = a
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
    }
    for opt in &opts {
        match opt {
            DhcpOption::RequestedIpAddress(ip) => req.requested_ip = Some(*ip),
            DhcpOption::ServerIdentifier(ip) => req.server_id = Some(*ip),
            // Empty values count as absent (dhcproto does not emit empty options either).
            DhcpOption::ClientIdentifier(id) => req.client_id = non_empty(id),
            DhcpOption::Hostname(h) => req.hostname = (!h.is_empty()).then(|| h.clone()),
            DhcpOption::ParameterRequestList(p) => {
                req.params = p.iter().map(|&c| u8::from(c)).collect();
            }
            DhcpOption::MaxMessageSize(m) => req.max_size = Some(*m),
            DhcpOption::UserClass(u) => req.user_class = non_empty(u),
            DhcpOption::ClassIdentifier(v) => req.vendor_class = non_empty(v),
            DhcpOption::ClientMachineIdentifier(u) => req.uuid = non_empty(u),
            _ => {}
        }
    }
    Ok(req)
}

/// Options [`decode`] reads through dhcproto (93, 82 and 175 come raw from the walk).
const READ_OPTIONS: [u8; 10] = [12, 50, 53, 54, 55, 57, 60, 61, 77, 97];
/// Options without which a request cannot be handled correctly: undecodable means rejected.
const ESSENTIAL_OPTIONS: [u8; 3] = [50, 53, 54];

/// Decodes one scanned option with dhcproto, re-chunked as on the wire (RFC 3396).
fn decode_option(o: &RawOption) -> Result<DhcpOption, ()> {
    let mut tlv = Vec::with_capacity(o.data.len() + 2 * (o.data.len() / 255 + 1));
    if o.data.is_empty() {
        tlv.extend_from_slice(&[o.code, 0]);
    }
    for chunk in o.data.chunks(255) {
        tlv.push(o.code);
        // chunks(255) yields at most 255 bytes
        tlv.push(chunk.len() as u8);
        tlv.extend_from_slice(chunk);
    }
    DhcpOption::decode(&mut dhcproto::Decoder::new(&tlv)).map_err(|_| ())
}

fn non_empty(v: &[u8]) -> Option<Vec<u8>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// Server-to-client message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    Offer,
    Ack,
    Nak,
}

/// A reply, typed. The core fills it; [`encode`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub xid: u32,
    /// Copied from the request (RFC 2131 §4.1: relays use it to decide how to deliver).
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP) for PXE clients.
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: Mac,
    /// Option 54.
    pub server_id: Ipv4Addr,
    /// Options 51, 58, 59.
    pub lease_time: Option<u32>,
    pub renewal: Option<u32>,
    pub rebinding: Option<u32>,
    /// Options 1, 3, 28.
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub broadcast_addr: Option<Ipv4Addr>,
    /// Options 12, 15.
    pub hostname: Option<String>,
    pub domain: Option<String>,
    /// Option 119 (RFC 3397): the search list; names that are not valid domains are left out.
    pub search: Vec<String>,
    /// Option 6: name servers.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 42: NTP servers.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Boot file: the `file` header field when it fits (127 bytes + NUL), and option 67
    /// when `boot_file_option` is set or it does not fit.
    pub boot_file: Option<String>,
    pub boot_file_option: bool,
    /// Option 60 = "PXEClient". The core leaves it off by default: see
    /// `core::Context::pxe_vendor_class` for what it does to UEFI firmware.
    pub pxe_class: bool,
    /// Option 175 with sub-option 176 = 1 (iPXE: do not wait for ProxyDHCP).
    pub ipxe_no_pxedhcp: bool,
    /// Option 61, echoed (RFC 6842).
    pub client_id: Option<Vec<u8>>,
    /// Option 82, echoed raw as the last option (RFC 3046).
    pub relay_info: Option<Vec<u8>>,
    /// Option 56, for NAKs.
    pub message: Option<String>,
    /// The client's option 57, if it sent one.
    pub client_max_size: Option<u16>,
}

impl Reply {
    /// Most bytes the encoded reply may take: option 57 (an IP datagram size, RFC 2132
    /// §9.10, minimum 576) minus IP and UDP headers, capped at one Ethernet datagram.
    pub fn size_limit(&self) -> usize {
        match self.client_max_size {
            Some(m) if usize::from(m) >= 576 => (usize::from(m) - 28).min(CEILING_MAX_REPLY),
            _ => DEFAULT_MAX_REPLY,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("reply needs {needed} bytes, the client accepts {limit}")]
    TooLarge { needed: usize, limit: usize },
    #[error("dhcproto could not encode the reply: {0}")]
    Codec(String),
}

/// Optional options, in the order they are left out when a reply does not fit.
#[derive(Clone, Copy)]
enum Optional {
    Search,
    Domain,
    Ntp,
    Hostname,
    BroadcastAddr,
    Times,
    Dns,
    BootFileOption,
}

const SHED_ORDER: [Optional; 8] = [
    Optional::Search,
    Optional::Domain,
    Optional::Ntp,
    Optional::Hostname,
    Optional::BroadcastAddr,
    Optional::Times,
    Optional::Dns,
    Optional::BootFileOption,
];

/// Encodes `reply` into `out` (cleared first). Leaves out optional options, least important
/// first, until the reply fits the client's limit.
pub fn encode(reply: &Reply, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let limit = reply.size_limit();
    let mut shed = 0;
    loop {
        out.clear();
        encode_with(reply, &SHED_ORDER[..shed], out)?;
        if out.len() <= limit {
            return Ok(());
        }
        if shed == SHED_ORDER.len() {
            return Err(EncodeError::TooLarge {
                needed: out.len(),
                limit,
            });
        }
        shed += 1;
    }
}

fn encode_with(reply: &Reply, shed: &[Optional], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let without = |o: Optional| shed.iter().any(|s| *s as u8 == o as u8);
    let mut msg = v4::Message::new_with_id(
        reply.xid,
        reply.ciaddr,
        reply.yiaddr,
        reply.siaddr,
        reply.giaddr,
        &reply.chaddr.0,
    );
    msg.set_opcode(v4::Opcode::BootReply);
    if reply.broadcast {
        msg.set_flags(v4::Flags::default().set_broadcast());
    }
    let file_fits = reply.boot_file.as_ref().is_some_and(|f| f.len() < 128);
    if let Some(f) = &reply.boot_file {
        if file_fits {
            msg.set_fname_str(f);
        }
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(match reply.kind {
        ReplyKind::Offer => v4::MessageType::Offer,
        ReplyKind::Ack => v4::MessageType::Ack,
        ReplyKind::Nak => v4::MessageType::Nak,
    }));
    opts.insert(DhcpOption::ServerIdentifier(reply.server_id));
    if let Some(t) = reply.lease_time {
        opts.insert(DhcpOption::AddressLeaseTime(t));
    }
    if !without(Optional::Times) {
        if let Some(t) = reply.renewal {
            opts.insert(DhcpOption::Renewal(t));
        }
        if let Some(t) = reply.rebinding {
            opts.insert(DhcpOption::Rebinding(t));
        }
    }
    if let Some(m) = reply.subnet_mask {
        opts.insert(DhcpOption::SubnetMask(m));
    }
    if let Some(r) = reply.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    if let Some(b) = reply
        .broadcast_addr
        .filter(|_| !without(Optional::BroadcastAddr))
    {
        opts.insert(DhcpOption::BroadcastAddr(b));
    }
    if let Some(h) = reply
        .hostname
        .as_ref()
        .filter(|_| !without(Optional::Hostname))
    {
        opts.insert(DhcpOption::Hostname(h.clone()));
    }
    if let Some(d) = reply.domain.as_ref().filter(|_| !without(Optional::Domain)) {
        opts.insert(DhcpOption::DomainName(d.clone()));
    }
    if !reply.dns_servers.is_empty() && !without(Optional::Dns) {
        opts.insert(DhcpOption::DomainNameServer(reply.dns_servers.clone()));
    }
    if !reply.ntp_servers.is_empty() && !without(Optional::Ntp) {
        opts.insert(DhcpOption::NtpServers(reply.ntp_servers.clone()));
    }
    let search: Vec<dhcproto::Name> = reply
        .search
        .iter()
        .filter_map(|d| dhcproto::Name::from_ascii(d.trim_end_matches('.')).ok())
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .collect();
    if !search.is_empty() && !without(Optional::Search) {
        opts.insert(DhcpOption::DomainSearch(search));
    }
    if let Some(f) = &reply.boot_file {
        if !file_fits || (reply.boot_file_option && !without(Optional::BootFileOption)) {
            opts.insert(DhcpOption::BootfileName(f.as_bytes().to_vec()));
        }
    }
    if reply.pxe_class {
        opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    }
    if reply.ipxe_no_pxedhcp {
        opts.insert(unknown(OPT_IPXE_ENCAP, vec![IPXE_NO_PXEDHCP, 1, 1]));
    }
    if let Some(id) = &reply.client_id {
        opts.insert(DhcpOption::ClientIdentifier(id.clone()));
    }
    if let Some(m) = &reply.message {
        opts.insert(DhcpOption::Message(m.clone()));
    }
    msg.encode(&mut Encoder::new(out))
        .map_err(|e| EncodeError::Codec(e.to_string()))?;
    let raw: Vec<(u8, &[u8])> = reply
        .relay_info
        .as_deref()
        .map(|r| (OPT_RELAY_AGENT, r))
        .into_iter()
        .collect();
    finish(out, &raw);
    Ok(())
}

/// Appends `raw` options verbatim before End (option 82 must be last, RFC 3046 §2.1) and
/// pads to [`MIN_REPLY`].
fn finish(out: &mut Vec<u8>, raw: &[(u8, &[u8])]) {
    if !raw.is_empty() {
        // dhcproto always ends a non-empty option list with End (255); every message we
        // encode has at least option 53.
        if out.last() == Some(&255) {
            out.pop();
        }
        for (code, data) in raw {
            if data.is_empty() {
                out.extend_from_slice(&[*code, 0]);
            }
            for chunk in data.chunks(255) {
                out.push(*code);
                // chunks(255) yields at most 255 bytes
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        out.push(255);
    }
    if out.len() < MIN_REPLY {
        out.resize(MIN_REPLY, 0);
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
pub(crate) mod tests;
