//! NTP packets: bytes <-> [`Packet`] (RFC 5905 §7.3, RFC 4330 for SNTP, RFC 7822 for the
//! extension field / MAC trailer), and the NTP time formats.
//!
//! Data flow: [`Packet::parse`] checks the 48-byte header length once, reads the header into a
//! [`Header`] and walks the trailer with bounded reads: NTPv4 extension fields (each at least
//! 16 bytes, a multiple of 4, inside the datagram; the last one at least 28 bytes when no MAC
//! follows, RFC 7822 §7.5), then an optional MAC (4-byte key id + a 16- or 20-byte digest in
//! NTPv4, up to 64 bytes in older versions) or a 4-byte crypto-NAK. After that no accessor can panic. [`Packet::emit`] writes exactly
//! [`Packet::buffer_len`] bytes, so a parsed packet re-emits byte for byte.
//!
//! Versions 1 to 4 parse; 0 and 5..=7 are rejected. Versions 1 to 3 carry no extension
//! fields, so anything after their header must be a MAC.
//!
//! Timestamps: [`NtpTimestamp`] is the 64-bit on-wire format (32 bits of seconds since
//! 1900-01-01 in the current era, 32 bits of fraction). The era is not on the wire; the
//! conversion to Unix time ([`NtpTimestamp::to_unix`]) picks the era closest to a pivot time
//! the caller knows, so the 2036 rollover is handled. [`NtpShort`] is the 32-bit 16.16 format
//! of root delay and dispersion.
//!
//! Not here: what to answer (that is `core`), MAC verification or NTS (extension fields and
//! MACs are carried, never interpreted), the control (mode 6) and private (mode 7) payload
//! formats.

use std::fmt;

/// Length of the fixed NTP header.
pub const HEADER_LEN: usize = 48;
/// Largest datagram the parser accepts. NTS requests with several cookies stay well below
/// this; anything longer is not a request drover answers.
pub const MAX_PACKET: usize = 1280;
/// Smallest extension field (RFC 7822 §3).
pub const MIN_EXTENSION_LEN: usize = 16;
/// Smallest last extension field when no MAC follows (RFC 7822 §7.5), which keeps it distinct
/// from a 20- or 24-byte MAC.
pub const MIN_LAST_EXTENSION_LEN: usize = 28;
/// Length of a crypto-NAK: a key id of zero and no digest (RFC 5905 §7.4).
pub const CRYPTO_NAK_LEN: usize = 4;
/// MAC: 4-byte key id plus a 16-byte (MD5, AES-CMAC) to 64-byte (SHA-512) digest.
pub const MIN_MAC_LEN: usize = 4 + 16;
pub const MAX_MAC_LEN: usize = 4 + 64;
/// Longest MAC in an NTPv4 packet: 20 or 24 bytes (RFC 7822 §7.5); anything longer would be
/// ambiguous with extension fields (chrony applies the same limit).
pub const MAX_V4_MAC_LEN: usize = 4 + 20;

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const UNIX_EPOCH_NTP_SECONDS: i64 = 2_208_988_800;
const ERA_SECONDS: i64 = 1 << 32;

/// Why a datagram is not an NTP packet we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than the 48-byte NTP header ({0} bytes)")]
    Truncated(usize),
    #[error("longer than {MAX_PACKET} bytes ({0} bytes)")]
    TooLong(usize),
    #[error("unsupported NTP version {0}")]
    UnsupportedVersion(u8),
    #[error("malformed extension field at byte {0}")]
    BadExtensionField(usize),
    #[error("{0} trailing bytes are neither extension fields nor a MAC")]
    BadTrailer(usize),
}

/// A timestamp in the 64-bit NTP format: seconds since 1900 (mod 2^32) and a binary fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// Zero means "unknown" on the wire (e.g. a reference time never set).
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    pub const fn from_bits(bits: u64) -> Self {
        NtpTimestamp(bits)
    }

    pub const fn to_bits(self) -> u64 {
        self.0
    }

    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The timestamp of a Unix time (seconds may be negative, `nanos` < 10^9). The era is
    /// dropped, as on the wire: 2036-02-07T06:28:16Z is seconds 0 of era 1.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        let ntp_secs = secs.wrapping_add(UNIX_EPOCH_NTP_SECONDS) as u64 & 0xffff_ffff;
        // nanos * 2^32 / 10^9, rounded down; `nanos` below 10^9 keeps it below 2^32.
        let frac = ((u64::from(nanos.min(999_999_999)) << 32) / 1_000_000_000) & 0xffff_ffff;
        NtpTimestamp((ntp_secs << 32) | frac)
    }

    /// The Unix time (seconds, nanoseconds) of this timestamp in the era that puts it closest
    /// to `pivot_unix_secs` (within ±68 years), e.g. the local clock when a reply arrives.
    pub fn to_unix(self, pivot_unix_secs: i64) -> (i64, u32) {
        let pivot_ntp = pivot_unix_secs.saturating_add(UNIX_EPOCH_NTP_SECONDS);
        // Signed distance from the pivot's position in its era, in (-2^31, 2^31].
        let offset_in_era = i64::from(self.seconds()) - pivot_ntp.rem_euclid(ERA_SECONDS);
        let delta = if offset_in_era > ERA_SECONDS / 2 {
            offset_in_era - ERA_SECONDS
        } else if offset_in_era <= -ERA_SECONDS / 2 {
            offset_in_era + ERA_SECONDS
        } else {
            offset_in_era
        };
        let secs = pivot_ntp.saturating_add(delta) - UNIX_EPOCH_NTP_SECONDS;
        let nanos = ((u64::from(self.fraction()) * 1_000_000_000) >> 32) as u32;
        (secs, nanos)
    }

    /// `self - earlier` in units of 2^-32 s, as a signed difference (serial arithmetic, valid
    /// while the two are within 68 years of each other, across an era boundary too).
    pub const fn wrapping_diff(self, earlier: NtpTimestamp) -> i64 {
        self.0.wrapping_sub(earlier.0) as i64
    }

    /// `self + units` (2^-32 s), wrapping into the next era.
    pub const fn wrapping_add(self, units: u64) -> NtpTimestamp {
        NtpTimestamp(self.0.wrapping_add(units))
    }
}

impl fmt::Display for NtpTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}.{:08x}", self.seconds(), self.fraction())
    }
}

/// The 32-bit NTP short format (16 bits of seconds, 16 bits of fraction): root delay and root
/// dispersion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpShort(u32);

impl NtpShort {
    pub const ZERO: NtpShort = NtpShort(0);
    pub const MAX: NtpShort = NtpShort(u32::MAX);

    pub const fn from_bits(bits: u32) -> Self {
        NtpShort(bits)
    }

    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// Microseconds, rounded up (an error bound must not shrink), saturating at ~65536 s.
    pub fn from_micros(micros: u64) -> Self {
        let units = (u128::from(micros) << 16).div_ceil(1_000_000);
        NtpShort(u32::try_from(units).unwrap_or(u32::MAX))
    }

    /// Microseconds, rounded down.
    pub fn to_micros(self) -> u64 {
        (u64::from(self.0) * 1_000_000) >> 16
    }
}

/// The leap indicator (2 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leap {
    NoWarning,
    /// The last minute of the day has 61 seconds.
    Insert,
    /// The last minute of the day has 59 seconds.
    Delete,
    /// Clock unsynchronised (also the leap of a kiss-o'-death).
    Unsynchronized,
}

impl Leap {
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Leap::NoWarning,
            1 => Leap::Insert,
            2 => Leap::Delete,
            _ => Leap::Unsynchronized,
        }
    }

    pub const fn to_bits(self) -> u8 {
        match self {
            Leap::NoWarning => 0,
            Leap::Insert => 1,
            Leap::Delete => 2,
            Leap::Unsynchronized => 3,
        }
    }
}

/// The association mode (3 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 0: reserved; NTPv1 had no mode field and sent 0 here.
    Reserved,
    SymmetricActive,
    SymmetricPassive,
    Client,
    Server,
    Broadcast,
    /// 6: NTP control messages (ntpq).
    Control,
    /// 7: private, implementation-specific (ntpdc; the classic monlist amplifier).
    Private,
}

impl Mode {
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }

    pub const fn to_bits(self) -> u8 {
        match self {
            Mode::Reserved => 0,
            Mode::SymmetricActive => 1,
            Mode::SymmetricPassive => 2,
            Mode::Client => 3,
            Mode::Server => 4,
            Mode::Broadcast => 5,
            Mode::Control => 6,
            Mode::Private => 7,
        }
    }
}

/// The 32-bit reference ID: four ASCII characters at stratum 0 (kiss codes) and 1 (reference
/// clocks), otherwise the upstream server's IPv4 address (or a hash of its IPv6 address).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReferenceId(pub [u8; 4]);

impl ReferenceId {
    /// Kiss code: the client sends too often.
    pub const RATE: ReferenceId = ReferenceId(*b"RATE");
    /// Kiss code: not yet synchronised.
    pub const INIT: ReferenceId = ReferenceId(*b"INIT");
    /// Kiss code: the clock was stepped and has not resynchronised.
    pub const STEP: ReferenceId = ReferenceId(*b"STEP");
    /// An undisciplined local clock declared as the reference.
    pub const LOCL: ReferenceId = ReferenceId(*b"LOCL");
}

impl fmt::Debug for ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self
            .0
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0)
        {
            let text: String = self
                .0
                .iter()
                .filter(|b| **b != 0)
                .map(|b| *b as char)
                .collect();
            write!(f, "ReferenceId({text:?})")
        } else {
            let [a, b, c, d] = self.0;
            write!(f, "ReferenceId({a}.{b}.{c}.{d})")
        }
    }
}

/// The fixed 48-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub leap: Leap,
    /// 1..=4 in a parsed packet.
    pub version: u8,
    pub mode: Mode,
    pub stratum: u8,
    /// log2 of the poll interval in seconds.
    pub poll: i8,
    /// log2 of the clock precision in seconds.
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: ReferenceId,
    pub reference_ts: NtpTimestamp,
    pub origin_ts: NtpTimestamp,
    pub receive_ts: NtpTimestamp,
    pub transmit_ts: NtpTimestamp,
}

impl Header {
    /// Reads the header from the first 48 bytes; `None` when there are fewer.
    fn read(b: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let ts_at =
            |i: usize| NtpTimestamp((u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4)));
        Some(Header {
            leap: Leap::from_bits(b[0] >> 6),
            version: (b[0] >> 3) & 7,
            mode: Mode::from_bits(b[0]),
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: NtpShort(u32_at(4)),
            root_dispersion: NtpShort(u32_at(8)),
            reference_id: ReferenceId([b[12], b[13], b[14], b[15]]),
            reference_ts: ts_at(16),
            origin_ts: ts_at(24),
            receive_ts: ts_at(32),
            transmit_ts: ts_at(40),
        })
    }

    /// Writes the header into exactly 48 bytes.
    fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = (self.leap.to_bits() << 6) | ((self.version & 7) << 3) | self.mode.to_bits();
        out[1] = self.stratum;
        out[2] = self.poll as u8;
        out[3] = self.precision as u8;
        out[4..8].copy_from_slice(&self.root_delay.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.root_dispersion.0.to_be_bytes());
        out[12..16].copy_from_slice(&self.reference_id.0);
        out[16..24].copy_from_slice(&self.reference_ts.0.to_be_bytes());
        out[24..32].copy_from_slice(&self.origin_ts.0.to_be_bytes());
        out[32..40].copy_from_slice(&self.receive_ts.0.to_be_bytes());
        out[40..48].copy_from_slice(&self.transmit_ts.0.to_be_bytes());
    }
}

/// What follows the header after the extension fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    None,
    /// A key id of zero and no digest: "authentication failed" (RFC 5905 §7.4).
    CryptoNak,
    /// A symmetric-key MAC; carried, never verified.
    Mac {
        key_id: u32,
        digest: &'a [u8],
    },
}

impl Auth<'_> {
    fn len(&self) -> usize {
        match self {
            Auth::None => 0,
            Auth::CryptoNak => CRYPTO_NAK_LEN,
            Auth::Mac { digest, .. } => 4 + digest.len(),
        }
    }
}

/// One NTPv4 extension field (RFC 7822): type, and body including any padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionField<'a> {
    pub field_type: u16,
    pub body: &'a [u8],
}

/// A parsed NTP packet, borrowing the datagram for its trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// The validated extension-field region (a sequence of whole fields; empty for v1-v3).
    extensions: &'a [u8],
    pub auth: Auth<'a>,
}

impl<'a> Packet<'a> {
    /// A packet with only a header.
    pub fn new(header: Header) -> Packet<'static> {
        Packet {
            header,
            extensions: &[],
            auth: Auth::None,
        }
    }

    /// Parses a datagram. Rejects versions other than 1..=4, short or over-long datagrams and
    /// trailers that are neither well-formed extension fields nor a MAC.
    pub fn parse(data: &'a [u8]) -> Result<Packet<'a>, WireError> {
        if data.len() > MAX_PACKET {
            return Err(WireError::TooLong(data.len()));
        }
        let header = Header::read(data).ok_or(WireError::Truncated(data.len()))?;
        if !(1..=4).contains(&header.version) {
            return Err(WireError::UnsupportedVersion(header.version));
        }
        // `data` has at least HEADER_LEN bytes here.
        let trailer = &data[HEADER_LEN..];
        let ext_len = if header.version == 4 {
            extension_region_len(trailer)?
        } else {
            0
        };
        let (extensions, rest) = trailer.split_at(ext_len);
        let max_mac = if header.version == 4 {
            MAX_V4_MAC_LEN
        } else {
            MAX_MAC_LEN
        };
        let auth = match rest.len() {
            0 => Auth::None,
            CRYPTO_NAK_LEN if rest == [0; CRYPTO_NAK_LEN] => Auth::CryptoNak,
            _ if is_auth(rest, max_mac) => {
                let (key, digest) = rest.split_at(4);
                Auth::Mac {
                    key_id: u32::from_be_bytes([key[0], key[1], key[2], key[3]]),
                    digest,
                }
            }
            n => return Err(WireError::BadTrailer(n)),
        };
        Ok(Packet {
            header,
            extensions,
            auth,
        })
    }

    /// The extension fields, in order.
    pub fn extension_fields(&self) -> ExtensionFields<'a> {
        ExtensionFields {
            rest: self.extensions,
        }
    }

    /// Bytes [`Packet::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.extensions.len() + self.auth.len()
    }

    /// Writes the packet into `out` and returns [`Packet::buffer_len`]. `out` shorter than that
    /// is a programmer error.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let len = self.buffer_len();
        assert!(out.len() >= len, "NTP emit buffer too short");
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        // `head` is exactly HEADER_LEN bytes long.
        let head: &mut [u8; HEADER_LEN] = head.try_into().expect("split at HEADER_LEN");
        self.header.write(head);
        let (ext, rest) = rest.split_at_mut(self.extensions.len());
        ext.copy_from_slice(self.extensions);
        match self.auth {
            Auth::None => {}
            Auth::CryptoNak => rest[..CRYPTO_NAK_LEN].fill(0),
            Auth::Mac { key_id, digest } => {
                rest[..4].copy_from_slice(&key_id.to_be_bytes());
                rest[4..4 + digest.len()].copy_from_slice(digest);
            }
        }
        len
    }
}

/// Length of the extension fields at the start of `trailer` (RFC 7822), so that what follows
/// is empty or a MAC / crypto-NAK. Fields are preferred over a MAC where both readings work
/// (as chrony does), except that a last field without MAC must be at least 28 bytes, which
/// makes 20- and 24-byte trailers always MACs; an NTPv4 MAC is never longer than 24 bytes.
fn extension_region_len(trailer: &[u8]) -> Result<usize, WireError> {
    // Walk the chain of well-formed fields and keep the last boundary after which the rest is
    // acceptable: the longest valid reading. Each field is at least 16 bytes, so this takes at
    // most MAX_PACKET / 16 steps.
    let mut at = 0;
    let mut best = None;
    loop {
        let tail = &trailer[at..];
        if tail.is_empty() || is_auth(tail, MAX_V4_MAC_LEN) {
            best = Some(at);
        }
        match field_len(tail) {
            Some(len) => at += len,
            None => break,
        }
    }
    if let Some(end) = best {
        return Ok(end);
    }
    // Nothing fits: blame the first byte the chain could not read.
    if trailer.len() - at >= MIN_EXTENSION_LEN {
        Err(WireError::BadExtensionField(HEADER_LEN + at))
    } else {
        Err(WireError::BadTrailer(trailer.len() - at))
    }
}

/// The length of the well-formed extension field at the start of `rest`, if there is one.
fn field_len(rest: &[u8]) -> Option<usize> {
    let head = rest.get(..4)?;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let fits = len >= MIN_EXTENSION_LEN && len % 4 == 0 && len <= rest.len();
    let last_ok = len < rest.len() || len >= MIN_LAST_EXTENSION_LEN;
    (fits && last_ok).then_some(len)
}

/// `tail` is a crypto-NAK or has the length of a MAC of at most `max_mac` bytes.
fn is_auth(tail: &[u8], max_mac: usize) -> bool {
    tail == [0; CRYPTO_NAK_LEN]
        || (MIN_MAC_LEN..=max_mac).contains(&tail.len()) && tail.len() % 4 == 0
}

/// Iterator over a validated extension-field region.
#[derive(Debug, Clone)]
pub struct ExtensionFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionFields<'a> {
    type Item = ExtensionField<'a>;

    fn next(&mut self) -> Option<ExtensionField<'a>> {
        // The region was validated by `extension_region_len`; `get` keeps this panic-free
        // anyway.
        let head = self.rest.get(..4)?;
        let field_type = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let body = self.rest.get(4..len)?;
        self.rest = self.rest.get(len..)?;
        Some(ExtensionField { field_type, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Captured on loopback with a UDP listener (Debian 12).
    /// chronyd 4.3 (`server 127.0.0.1 port N iburst`): v4, precision 0x20 and a random
    /// transmit timestamp (chrony hides its clock in requests).
    const CHRONY_V4: &str = "2300062000000000000000000000000000000000000000000000000000000000\
                             0000000000000000ee02fc2b89b21132";
    /// chronyd 4.3 with `version 3`.
    const CHRONY_V3: &str = "1b00062000000000000000000000000000000000000000000000000000000000\
                             000000000000000016dccc245e7c808c";
    /// chronyd 4.3 with `extfield F323`: one 28-byte experimental extension field.
    const CHRONY_EXTFIELD: &str = "23000620000000000000000000000000000000000000000000000000\
                                   000000000000000000000000ee02fc2b89b21132f323001cf5bedd9a\
                                   0000000000000000000000000000000000000000";
    /// ntpsec's `ntpdate -q` / `sntp` (ntpdig): LI 3, v4, everything zero but the transmit
    /// time, which is the real clock.
    const NTPDIG: &str = "e300000000000000000000000000000000000000000000000000000000000000\
                          0000000000000000eeace8be2b091000";

    fn roundtrip(bytes: &[u8]) -> Packet<'_> {
        let p = Packet::parse(bytes).unwrap();
        let mut out = vec![0; p.buffer_len()];
        assert_eq!(p.emit(&mut out), bytes.len());
        assert_eq!(out, bytes);
        p
    }

    #[test]
    fn chrony_v4_request() {
        let b = hex(CHRONY_V4);
        let p = roundtrip(&b);
        let h = p.header;
        assert_eq!(
            (h.leap, h.version, h.mode, h.stratum, h.poll, h.precision),
            (Leap::NoWarning, 4, Mode::Client, 0, 6, 32)
        );
        assert_eq!(h.transmit_ts, NtpTimestamp::from_bits(0xee02fc2b89b21132));
        assert!(h.origin_ts.is_zero() && h.receive_ts.is_zero() && h.reference_ts.is_zero());
        assert_eq!(p.auth, Auth::None);
        assert_eq!(p.extension_fields().count(), 0);
    }

    #[test]
    fn chrony_v3_request() {
        let b = hex(CHRONY_V3);
        let p = roundtrip(&b);
        assert_eq!((p.header.version, p.header.mode), (3, Mode::Client));
    }

    #[test]
    fn chrony_extension_field_request() {
        let b = hex(CHRONY_EXTFIELD);
        assert_eq!(b.len(), 76);
        let p = roundtrip(&b);
        let fields: Vec<_> = p.extension_fields().collect();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].field_type, 0xf323);
        assert_eq!(fields[0].body.len(), 24);
        assert_eq!(&fields[0].body[..4], &[0xf5, 0xbe, 0xdd, 0x9a]);
        assert_eq!(p.auth, Auth::None);
    }

    #[test]
    fn ntpdig_request() {
        let b = hex(NTPDIG);
        let p = roundtrip(&b);
        assert_eq!(p.header.leap, Leap::Unsynchronized);
        assert_eq!(p.header.mode, Mode::Client);
        // 0xeeace8be = 2026-11-22T04:06 (captured then); the era comes from the pivot.
        let (secs, _) = p.header.transmit_ts.to_unix(1_790_000_000);
        assert_eq!(secs, 0xeeace8be_i64 - UNIX_EPOCH_NTP_SECONDS);
    }

    #[test]
    fn mac_and_crypto_nak_trailers() {
        let mut b = hex(CHRONY_V3);
        b.extend_from_slice(&[0, 0, 0, 7]);
        b.extend_from_slice(&[0xaa; 16]);
        let p = roundtrip(&b);
        assert_eq!(
            p.auth,
            Auth::Mac {
                key_id: 7,
                digest: &[0xaa; 16]
            }
        );
        let mut b = hex(CHRONY_V4);
        b.extend_from_slice(&[0; 4]);
        assert_eq!(roundtrip(&b).auth, Auth::CryptoNak);
        // Older versions may carry longer digests (SHA-256 here); NTPv4 may not.
        let mut b = hex(CHRONY_V3);
        b.extend_from_slice(&[0, 0, 0, 3]);
        b.extend_from_slice(&[0xcc; 32]);
        assert!(
            matches!(roundtrip(&b).auth, Auth::Mac { key_id: 3, digest } if digest.len() == 32)
        );
        let mut b = hex(CHRONY_V4);
        b.extend_from_slice(&[0, 0, 0, 3]);
        b.extend_from_slice(&[0xcc; 32]);
        assert_eq!(Packet::parse(&b), Err(WireError::BadExtensionField(48)));
        // v4: 20- and 24-byte trailers are MACs even when they look like a field header.
        for n in [20, 24] {
            let mut b = hex(CHRONY_V4);
            b.extend_from_slice(&[0, 1, 0, n as u8]);
            b.extend(std::iter::repeat_n(0x55, n - 4));
            let p = roundtrip(&b);
            assert!(matches!(p.auth, Auth::Mac { key_id, .. } if key_id == 0x0001_0000 | n as u32));
            assert_eq!(p.extension_fields().count(), 0);
        }
        // An extension field followed by a SHA-1 MAC.
        let mut b = hex(CHRONY_V4);
        b.extend_from_slice(&[0x01, 0x04, 0, 16]);
        b.extend_from_slice(&[1; 12]);
        b.extend_from_slice(&[0, 0, 0, 9]);
        b.extend_from_slice(&[2; 20]);
        let p = roundtrip(&b);
        assert_eq!(p.extension_fields().count(), 1);
        assert!(matches!(p.auth, Auth::Mac { key_id: 9, digest } if digest.len() == 20));
    }

    #[test]
    fn rejects_malformed() {
        let good = hex(CHRONY_V4);
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::parse(&good[..n]), Err(WireError::Truncated(n)));
        }
        for v in [0u8, 5, 6, 7] {
            let mut b = good.clone();
            b[0] = (b[0] & !0x38) | (v << 3);
            assert_eq!(Packet::parse(&b), Err(WireError::UnsupportedVersion(v)));
        }
        // Extension field whose length points past the end.
        let mut b = good.clone();
        b.extend_from_slice(&[0xf3, 0x23, 0xff, 0xfc]);
        b.extend_from_slice(&[0; 28]);
        assert_eq!(Packet::parse(&b), Err(WireError::BadExtensionField(48)));
        // Length not a multiple of 4, and shorter than a field.
        let mut b = good.clone();
        b.extend_from_slice(&[0xf3, 0x23, 0x00, 0x1e]);
        b.extend_from_slice(&[0; 28]);
        assert!(Packet::parse(&b).is_err());
        // A 16-byte last field without MAC (must be >= 28).
        let mut b = good.clone();
        b.extend_from_slice(&[0xf3, 0x23, 0x00, 0x10]);
        b.extend_from_slice(&[0; 12]);
        assert!(Packet::parse(&b).is_err());
        // Odd trailers.
        for n in [1, 2, 3, 5, 17, 19, 21] {
            let mut b = good.clone();
            b.extend(std::iter::repeat_n(0, n));
            assert!(Packet::parse(&b).is_err(), "{n} trailing bytes");
        }
        // v3 with a trailer that is not a MAC.
        let mut b = hex(CHRONY_V3);
        b.extend_from_slice(&[0; 72]);
        assert_eq!(Packet::parse(&b), Err(WireError::BadTrailer(72)));
        assert_eq!(
            Packet::parse(&vec![0x23; MAX_PACKET + 1]),
            Err(WireError::TooLong(MAX_PACKET + 1))
        );
    }

    /// Every prefix and every single-byte mutation of the captures parses or fails cleanly,
    /// and whatever parses re-emits identically (a poor man's fuzz target).
    #[test]
    fn mutations_never_panic_and_roundtrip() {
        for capture in [CHRONY_V4, CHRONY_V3, CHRONY_EXTFIELD, NTPDIG] {
            let base = hex(capture);
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            for i in 0..base.len() {
                for _ in 0..16 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut b = base.clone();
                    b[i] = seed as u8;
                    let cut = (seed >> 8) as usize % (b.len() + 1);
                    for data in [&b[..], &b[..cut]] {
                        if let Ok(p) = Packet::parse(data) {
                            let mut out = vec![0; p.buffer_len()];
                            p.emit(&mut out);
                            assert_eq!(out, data);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn timestamp_conversions() {
        // Unix epoch.
        let t = NtpTimestamp::from_unix(0, 0);
        assert_eq!(t.seconds() as i64, UNIX_EPOCH_NTP_SECONDS);
        assert_eq!(t.to_unix(0), (0, 0));
        // Half a second is 2^31.
        assert_eq!(NtpTimestamp::from_unix(0, 500_000_000).fraction(), 1 << 31);
        // Era rollover: 2036-02-07T06:28:16Z is seconds 0 of era 1.
        let rollover = ERA_SECONDS - UNIX_EPOCH_NTP_SECONDS;
        let t = NtpTimestamp::from_unix(rollover, 0);
        assert_eq!(t.seconds(), 0);
        assert_eq!(t.to_unix(rollover - 1000), (rollover, 0));
        assert_eq!(t.to_unix(rollover + 1000), (rollover, 0));
        let before = NtpTimestamp::from_unix(rollover - 1, 250_000_000);
        assert_eq!(before.seconds(), u32::MAX);
        assert_eq!(before.to_unix(rollover + 10), (rollover - 1, 250_000_000));
        assert_eq!(t.wrapping_diff(before), 3 << 30);
        assert_eq!(before.wrapping_diff(t), -(3 << 30));
        // Round trips keep nanoseconds within one unit of 2^-32 s.
        for (s, n) in [
            (1_790_000_000, 123_456_789),
            (-1_000_000, 999_999_999),
            (5_000_000_000, 1),
        ] {
            let (s2, n2) = NtpTimestamp::from_unix(s, n).to_unix(s);
            assert_eq!(s2, s);
            assert!(n.abs_diff(n2) <= 1, "{n} -> {n2}");
        }
    }

    #[test]
    fn short_format() {
        assert_eq!(NtpShort::from_micros(1_000_000).to_bits(), 1 << 16);
        assert_eq!(NtpShort::from_micros(1).to_bits(), 1);
        assert_eq!(NtpShort::from_micros(0), NtpShort::ZERO);
        assert_eq!(NtpShort::from_micros(u64::MAX), NtpShort::MAX);
        assert_eq!(NtpShort::from_bits(1 << 15).to_micros(), 500_000);
    }
}
