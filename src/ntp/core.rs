//! The NTP server logic, sans IO: one request datagram, the receive time, the host clock's
//! state and the per-client rate limiter in; an [`Action`] out.
//!
//! Data flow: the shell stamps a datagram on arrival and calls [`handle`]. It parses the packet
//! ([`Packet::parse`]), drops what drover does not serve (see [`DropReason`]), asks the
//! [`RateLimiter`] about the client and returns either a drop or a [`Reply`]: a server-mode
//! (4) header built from the request and the [`ClockState`], or a kiss-o'-death RATE. The shell
//! then calls [`Reply::emit`] with a second clock reading taken right before sending, which
//! becomes the transmit timestamp. [`ClockTracker`] turns what the kernel says about the host
//! clock ([`HostClock`], read with adjtimex by the shell every few seconds) into the
//! [`ClockState`] announced in replies.
//!
//! What is announced, and why:
//! - host clock synchronised (by whatever daemon disciplines it): its leap warning, stratum
//!   [`SYNCED_STRATUM`], reference ID [`HOST_REFID`], root dispersion = the kernel's maximum
//!   error (the daemon's root distance plus 500 ppm of growth since its last update);
//! - unsynchronised, `local_reference` off: leap 3, stratum 16, reference ID `INIT` (never
//!   synchronised since drover started) or `STEP` (was synchronised, lost it: the kernel
//!   clears synchronisation when the clock is stepped);
//! - unsynchronised, `local_reference` on (isolated clusters, chrony's `local`): leap 0,
//!   stratum [`LOCAL_STRATUM`], reference ID `LOCL`. A synchronised host clock always wins over
//!   the local reference, as in chrony.
//!
//! Rate limiting: a GCRA token bucket per client address (IPv6 per /64) in a fixed-size,
//! set-associative table: bounded memory, O(1) per packet, the most idle entry of a set is
//! evicted (an evicted client starts again with a full bucket: table pressure never makes a
//! client look abusive). The allowance is per address and sized for an address's share of
//! a cluster's load, never a global budget: many addresses at a modest rate each are all
//! answered however large their sum. Within [`RateLimits::burst`] a client is answered; the
//! next [`RateLimits::kod_burst`] requests get a KoD RATE; beyond that requests are dropped,
//! so a flooding client gets at most one KoD per [`RateLimits::interval`]. No reply is ever longer
//! than its request: the server cannot amplify.
//!
//! Not here: any NTP client or upstream synchronisation (drover serves the host clock, it does
//! not discipline it), NTS, symmetric and broadcast modes, control (6) and private (7) modes,
//! autokey and symmetric-key MAC authentication (a request carrying a MAC gets a crypto-NAK
//! trailer, RFC 5905 §7.4; extension fields are ignored).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::wire::{
    Auth, Header, Leap, Mode, NtpShort, NtpTimestamp, Packet, ReferenceId, WireError,
    CRYPTO_NAK_LEN, HEADER_LEN,
};

/// Stratum announced while the host clock is synchronised. adjtimex does not tell the
/// upstream's stratum, so this is a fixed, documented guess: a host synchronised to a public
/// stratum-2 server is stratum 3. Clients use it for selection and loop avoidance only, and all
/// drover members announce the same.
pub const SYNCED_STRATUM: u8 = 3;
/// Reference ID while the host clock is synchronised: the upstream is unknown (adjtimex does
/// not name it). As an address it reads 72.79.83.84, which is no cluster address, so clients'
/// loop detection (reference ID == own address) cannot misfire.
pub const HOST_REFID: ReferenceId = ReferenceId(*b"HOST");
/// Stratum of the local reference. chrony's `local` defaults to 10: far enough from a real
/// reference that a node with a real upstream prefers that, and well inside what clients accept
/// (< 16). A free-running clock should not pose as a stratum-1 primary server.
pub const LOCAL_STRATUM: u8 = 10;
/// Root dispersion of the local reference: the admin declares this clock to be the truth, so
/// only the reading error remains; 1 ms keeps clients' root-distance limits far away.
pub const LOCAL_ROOT_DISPERSION_US: u64 = 1_000;
/// Unsynchronised stratum (RFC 5905: 16 means unsynchronised).
pub const UNSYNC_STRATUM: u8 = 16;
/// Poll exponent a kiss-o'-death RATE asks for, at least (64 s, the usual minpoll).
pub const KOD_MIN_POLL: i8 = 6;

/// What the kernel says about the host clock (the shell reads it with adjtimex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostClock {
    pub synchronized: bool,
    /// Pending leap second (NoWarning, Insert or Delete).
    pub leap: Leap,
    /// The kernel's maximum error (microseconds).
    pub max_error_us: u64,
    /// The kernel's estimated error (microseconds).
    pub est_error_us: u64,
}

/// The server's announced clock: the fields of every time reply that do not depend on the
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    pub leap: Leap,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: ReferenceId,
    pub reference_ts: NtpTimestamp,
}

impl ClockState {
    /// Unsynchronised and never synchronised: what to announce before the first clock read.
    pub fn unsynchronized(precision: i8) -> ClockState {
        ClockState {
            leap: Leap::Unsynchronized,
            stratum: UNSYNC_STRATUM,
            precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::MAX,
            reference_id: ReferenceId::INIT,
            reference_ts: NtpTimestamp::ZERO,
        }
    }

    /// Whether clients will accept this clock as a time source.
    pub fn is_synchronized(&self) -> bool {
        self.leap != Leap::Unsynchronized && self.stratum < UNSYNC_STRATUM
    }
}

/// Turns successive [`HostClock`] readings into the announced [`ClockState`], remembering
/// whether the host clock was ever synchronised (for `INIT` vs `STEP`) and when it last was.
#[derive(Debug, Clone)]
pub struct ClockTracker {
    local_reference: bool,
    precision: i8,
    last_sync: Option<NtpTimestamp>,
}

impl ClockTracker {
    pub fn new(local_reference: bool, precision: i8) -> Self {
        ClockTracker {
            local_reference,
            precision,
            last_sync: None,
        }
    }

    /// The state to announce from `now` on, given the host clock read at `now`.
    ///
    /// The reference timestamp is the last time the kernel reported the clock synchronised
    /// (adjtimex does not say when the daemon last corrected it; the shell reads it every few
    /// seconds, so this is at most that late).
    pub fn update(&mut self, now: NtpTimestamp, host: &HostClock) -> ClockState {
        let precision = self.precision;
        if host.synchronized {
            self.last_sync = Some(now);
            let leap = match host.leap {
                Leap::Unsynchronized => Leap::NoWarning,
                leap => leap,
            };
            return ClockState {
                leap,
                stratum: SYNCED_STRATUM,
                precision,
                root_delay: NtpShort::ZERO,
                root_dispersion: NtpShort::from_micros(host.max_error_us),
                reference_id: HOST_REFID,
                reference_ts: now,
            };
        }
        if self.local_reference {
            return ClockState {
                leap: Leap::NoWarning,
                stratum: LOCAL_STRATUM,
                precision,
                root_delay: NtpShort::ZERO,
                root_dispersion: NtpShort::from_micros(LOCAL_ROOT_DISPERSION_US),
                reference_id: ReferenceId::LOCL,
                reference_ts: now,
            };
        }
        ClockState {
            leap: Leap::Unsynchronized,
            stratum: UNSYNC_STRATUM,
            precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::from_micros(host.max_error_us),
            reference_id: match self.last_sync {
                None => ReferenceId::INIT,
                Some(_) => ReferenceId::STEP,
            },
            reference_ts: self.last_sync.unwrap_or(NtpTimestamp::ZERO),
        }
    }
}

/// log2 of a clock's precision in seconds, rounded up, from its resolution or reading cost in
/// nanoseconds (1 ns gives -29).
pub fn precision_from_nanos(nanos: u64) -> i8 {
    let nanos = nanos.max(1);
    // Smallest p with 2^p s >= nanos ns, i.e. 2^-p <= 10^9 / nanos.
    let per_second = 1_000_000_000 / nanos;
    if per_second == 0 {
        // Coarser than a second: 2^p >= nanos / 10^9.
        let secs = nanos.div_ceil(1_000_000_000);
        return (u64::BITS - (secs - 1).leading_zeros()) as i8;
    }
    -((u64::BITS - 1 - per_second.leading_zeros()) as i8)
}

/// Why a datagram gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// The source cannot be a client (port 0, unspecified, broadcast or multicast address):
    /// only a spoofed packet looks like this.
    #[error("impossible source address")]
    BadSource,
    #[error("malformed: {0}")]
    Malformed(WireError),
    /// Not a client request: control (6), private (7), broadcast, server, symmetric, reserved.
    #[error("mode {0:?} is not served")]
    Mode(Mode),
    /// Far over the rate limit: not even a kiss-o'-death.
    #[error("rate limited")]
    RateLimited,
    /// The reply would be longer than the request (cannot happen with the replies drover
    /// builds; checked so that it stays true).
    #[error("reply would be longer than the request")]
    WouldAmplify,
}

/// What the shell does with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    Reply(Reply),
}

/// A reply waiting for its transmit timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    header: Header,
    kind: ReplyKind,
    crypto_nak: bool,
}

/// The kind of reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Time,
    /// Kiss-o'-death RATE.
    RateKiss,
}

/// Longest reply: header + crypto-NAK.
pub const MAX_REPLY: usize = HEADER_LEN + CRYPTO_NAK_LEN;

impl Reply {
    pub fn kind(&self) -> ReplyKind {
        self.kind
    }

    /// The header as it will be sent, except for the transmit timestamp of a time reply.
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + if self.crypto_nak { CRYPTO_NAK_LEN } else { 0 }
    }

    /// Writes the reply with `transmit` (the clock read right before sending) as its transmit
    /// timestamp; a kiss-o'-death keeps the client's own timestamp there and ignores it.
    /// Returns the number of bytes written.
    pub fn emit(&self, transmit: NtpTimestamp, out: &mut [u8; MAX_REPLY]) -> usize {
        let mut header = self.header;
        if self.kind == ReplyKind::Time {
            header.transmit_ts = transmit;
        }
        let mut packet = Packet::new(header);
        if self.crypto_nak {
            packet.auth = Auth::CryptoNak;
        }
        packet.emit(out)
    }
}

/// Handles one datagram from `client`, received at `now`.
pub fn handle(
    now: NtpTimestamp,
    request: &[u8],
    clock: &ClockState,
    limiter: &mut RateLimiter,
    client: SocketAddr,
) -> Action {
    if !plausible_source(client) {
        return Action::Drop(DropReason::BadSource);
    }
    let packet = match Packet::parse(request) {
        Ok(p) => p,
        Err(e) => return Action::Drop(DropReason::Malformed(e)),
    };
    let req = packet.header;
    // NTPv1 had no mode field and sent zeros there (RFC 1059); such a request is a client's.
    let is_client = req.mode == Mode::Client || (req.version == 1 && req.mode == Mode::Reserved);
    if !is_client {
        return Action::Drop(DropReason::Mode(req.mode));
    }
    let verdict = limiter.check(now, client.ip());
    let reply = match verdict {
        Verdict::Drop => return Action::Drop(DropReason::RateLimited),
        Verdict::Kiss => Reply {
            // RFC 5905 §7.4; the timestamps echo the client's transmit time (as ntpd does):
            // the client's origin check passes and no time is given away.
            header: Header {
                leap: Leap::Unsynchronized,
                version: req.version,
                mode: Mode::Server,
                stratum: 0,
                poll: req.poll.max(KOD_MIN_POLL),
                precision: clock.precision,
                root_delay: NtpShort::ZERO,
                root_dispersion: NtpShort::ZERO,
                reference_id: ReferenceId::RATE,
                reference_ts: NtpTimestamp::ZERO,
                origin_ts: req.transmit_ts,
                receive_ts: req.transmit_ts,
                transmit_ts: req.transmit_ts,
            },
            kind: ReplyKind::RateKiss,
            crypto_nak: false,
        },
        Verdict::Allow => Reply {
            header: Header {
                leap: clock.leap,
                version: req.version,
                mode: Mode::Server,
                stratum: clock.stratum,
                poll: req.poll,
                precision: clock.precision,
                root_delay: clock.root_delay,
                root_dispersion: clock.root_dispersion,
                reference_id: clock.reference_id,
                reference_ts: clock.reference_ts,
                origin_ts: req.transmit_ts,
                receive_ts: now,
                transmit_ts: NtpTimestamp::ZERO,
            },
            kind: ReplyKind::Time,
            // A client that signed its request expects a signed answer; we have no keys, so
            // we say so (RFC 5905 §7.4) instead of sending what it would drop as forged.
            crypto_nak: matches!(packet.auth, Auth::Mac { .. }),
        },
    };
    if reply.buffer_len() > request.len() {
        return Action::Drop(DropReason::WouldAmplify);
    }
    Action::Reply(reply)
}

fn plausible_source(client: SocketAddr) -> bool {
    if client.port() == 0 {
        return false;
    }
    match client.ip().to_canonical() {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// Rate-limit parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Average spacing of requests a client address may keep up forever. One address is not
    /// one client: a rack behind NAT, or a benchmark spreading a cluster's load over a /16,
    /// sends far more than one ntpd (iburst 2 s apart, then 64 s or more). 250 ms (4/s)
    /// carries 150,000 requests/s from 65,534 addresses (2.3/s each) indefinitely and 1,000
    /// nodes polling every 64 s behind one address, while a flooding address still hits its
    /// limit within seconds.
    pub interval: Duration,
    /// Requests a client may send at once.
    pub burst: u32,
    /// Requests beyond `burst` that get a kiss-o'-death RATE; further ones are dropped.
    pub kod_burst: u32,
    /// Clients tracked at once (rounded up to a power of two, at least [`WAYS`]).
    pub max_clients: usize,
}

impl RateLimits {
    pub const DEFAULT: RateLimits = RateLimits {
        interval: Duration::from_millis(250),
        burst: 32,
        kod_burst: 4,
        max_clients: 65_536,
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::DEFAULT
    }
}

/// Entries per set of the client table: a new client evicts the most idle of its set.
pub const WAYS: usize = 4;

/// The rate limiter's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Kiss,
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: IpAddr,
    /// GCRA theoretical arrival time (NTP units of 2^-32 s).
    tat: NtpTimestamp,
}

/// Per-client GCRA token buckets in a bounded, set-associative table.
///
/// Time is the NTP receive timestamp: the wall clock. A step backwards would make every
/// client look like it is far ahead of its allowance, so an entry further ahead than any
/// client can legitimately be is treated as fresh.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    slots: Vec<Option<Slot>>,
    sets_mask: usize,
    seed: u64,
    /// 2^-32 s per token.
    interval: u64,
    /// Allowed `tat - now` for an answer, and for a kiss.
    answer_window: u64,
    kiss_window: u64,
    evictions: u64,
}

impl RateLimiter {
    /// `seed` keys the table's hash (pass a random value so that a remote sender cannot aim
    /// addresses at one set).
    pub fn new(limits: RateLimits, seed: u64) -> Self {
        let sets = (limits.max_clients.max(WAYS) / WAYS).next_power_of_two();
        let interval = duration_to_ntp(limits.interval).max(1);
        let answer_window = interval.saturating_mul(u64::from(limits.burst.saturating_sub(1)));
        let kiss_window =
            answer_window.saturating_add(interval.saturating_mul(u64::from(limits.kod_burst)));
        RateLimiter {
            slots: vec![None; sets * WAYS],
            sets_mask: sets - 1,
            seed,
            interval,
            answer_window,
            kiss_window,
            evictions: 0,
        }
    }

    /// Entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Clients evicted while they still had a rate-limit debt (table pressure).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Records a request from `ip` at `now` and says how to treat it.
    pub fn check(&mut self, now: NtpTimestamp, ip: IpAddr) -> Verdict {
        let key = client_key(ip);
        let (interval, answer_window, kiss_window) =
            (self.interval, self.answer_window, self.kiss_window);
        let slot = self.slot_for(key, now);
        // The slot belongs to `key` now.
        let tat = slot.tat;
        let ahead = tat.wrapping_diff(now);
        let (start, ahead) = if ahead <= 0 || ahead as u64 > kiss_window + interval {
            // Idle (bucket full), or ahead further than possible: the wall clock went back.
            (now, 0)
        } else {
            (tat, ahead as u64)
        };
        let verdict = if ahead <= answer_window {
            Verdict::Allow
        } else if ahead <= kiss_window {
            Verdict::Kiss
        } else {
            Verdict::Drop
        };
        slot.tat = match verdict {
            Verdict::Allow | Verdict::Kiss => start.wrapping_add(interval),
            Verdict::Drop => start,
        };
        verdict
    }

    /// The slot of `key`, claiming one of its set (empty, or the most idle) if it has none.
    fn slot_for(&mut self, key: IpAddr, now: NtpTimestamp) -> &mut Slot {
        let mut h = std::hash::DefaultHasher::new();
        self.seed.hash(&mut h);
        key.hash(&mut h);
        let set = (h.finish() as usize) & self.sets_mask;
        let ways = &mut self.slots[set * WAYS..(set + 1) * WAYS];
        let found = ways.iter().position(|s| s.is_some_and(|s| s.key == key));
        let index = found.unwrap_or_else(|| {
            // An empty way, else the one whose allowance is furthest behind `now`.
            ways.iter().position(Option::is_none).unwrap_or_else(|| {
                (0..WAYS)
                    .min_by_key(|&i| ways[i].map_or(i64::MIN, |s| s.tat.wrapping_diff(now)))
                    .unwrap_or(0)
            })
        });
        let entry = &mut ways[index];
        if found.is_none() {
            if entry.is_some_and(|s| s.tat.wrapping_diff(now) > 0) {
                self.evictions += 1;
            }
            return entry.insert(Slot { key, tat: now });
        }
        // `found`: the entry is `key`'s and is returned as it is.
        entry.get_or_insert(Slot { key, tat: now })
    }
}

/// IPv4 (and IPv4-mapped IPv6) per address; IPv6 per /64, the unit one host usually gets.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => {
            let bits = u128::from(a) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// A duration in NTP units (2^-32 s), saturating.
fn duration_to_ntp(d: Duration) -> u64 {
    let units =
        (u128::from(d.as_secs()) << 32) + ((u128::from(d.subsec_nanos()) << 32) / 1_000_000_000);
    u64::try_from(units).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1 << 32;

    fn t(secs: f64) -> NtpTimestamp {
        // Virtual time near 2026, so wrapping arithmetic is exercised with real magnitudes.
        NtpTimestamp::from_unix(1_790_000_000, 0).wrapping_add((secs * SECOND as f64) as u64)
    }

    fn client() -> SocketAddr {
        "192.0.2.10:40123".parse().unwrap()
    }

    fn request(version: u8, mode: u8, transmit: u64) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[0] = (version << 3) | mode;
        b[2] = 6;
        b[3] = 0x20;
        b[40..48].copy_from_slice(&transmit.to_be_bytes());
        b
    }

    fn synced_clock() -> ClockState {
        ClockTracker::new(false, -20).update(
            t(0.0),
            &HostClock {
                synchronized: true,
                leap: Leap::NoWarning,
                max_error_us: 15_000,
                est_error_us: 100,
            },
        )
    }

    fn limiter() -> RateLimiter {
        RateLimiter::new(RateLimits::DEFAULT, 7)
    }

    fn reply(action: Action) -> Reply {
        match action {
            Action::Reply(r) => r,
            Action::Drop(why) => panic!("dropped: {why}"),
        }
    }

    #[test]
    fn answers_client_requests_of_every_version() {
        let clock = synced_clock();
        let mut rl = limiter();
        for version in 1..=4u8 {
            let req = request(version, 3, 0x1122_3344_5566_7788);
            let r = reply(handle(t(1.0), &req, &clock, &mut rl, client()));
            let mut out = [0; MAX_REPLY];
            let n = r.emit(t(1.001), &mut out);
            assert_eq!(n, 48);
            let p = Packet::parse(&out[..n]).unwrap();
            let h = p.header;
            assert_eq!((h.version, h.mode), (version, Mode::Server));
            assert_eq!(h.origin_ts.to_bits(), 0x1122_3344_5566_7788);
            assert_eq!(h.receive_ts, t(1.0));
            assert_eq!(h.transmit_ts, t(1.001));
            assert_eq!(
                (h.leap, h.stratum, h.reference_id),
                (Leap::NoWarning, 3, HOST_REFID)
            );
            assert_eq!(h.poll, 6);
            assert_eq!(h.precision, -20);
            assert_eq!(h.root_dispersion, NtpShort::from_micros(15_000));
            assert_eq!(h.reference_ts, t(0.0));
        }
        // NTPv1 without a mode field.
        let r = reply(handle(t(2.0), &request(1, 0, 5), &clock, &mut rl, client()));
        assert_eq!(r.header().mode, Mode::Server);
        assert_eq!(r.header().version, 1);
    }

    #[test]
    fn drops_what_is_not_a_client_request() {
        let clock = synced_clock();
        let mut rl = limiter();
        for mode in [0u8, 1, 2, 4, 5, 6, 7] {
            let a = handle(t(1.0), &request(4, mode, 1), &clock, &mut rl, client());
            assert_eq!(a, Action::Drop(DropReason::Mode(Mode::from_bits(mode))));
        }
        let a = handle(t(1.0), &request(4, 3, 1)[..47], &clock, &mut rl, client());
        assert_eq!(
            a,
            Action::Drop(DropReason::Malformed(WireError::Truncated(47)))
        );
        let a = handle(t(1.0), &request(5, 3, 1), &clock, &mut rl, client());
        assert!(matches!(a, Action::Drop(DropReason::Malformed(_))));
        for src in [
            "192.0.2.1:0",
            "0.0.0.0:123",
            "255.255.255.255:123",
            "224.0.0.1:123",
            "[ff02::1]:5",
        ] {
            let a = handle(
                t(1.0),
                &request(4, 3, 1),
                &clock,
                &mut rl,
                src.parse().unwrap(),
            );
            assert_eq!(a, Action::Drop(DropReason::BadSource), "{src}");
        }
    }

    #[test]
    fn mac_gets_crypto_nak_and_extension_fields_are_ignored() {
        let clock = synced_clock();
        let mut rl = limiter();
        let mut req = request(4, 3, 9);
        req.extend_from_slice(&[0, 0, 0, 1]);
        req.extend_from_slice(&[0xab; 20]);
        let r = reply(handle(t(1.0), &req, &clock, &mut rl, client()));
        let mut out = [0; MAX_REPLY];
        let n = r.emit(t(1.0), &mut out);
        assert_eq!(n, 52);
        assert_eq!(Packet::parse(&out[..n]).unwrap().auth, Auth::CryptoNak);
        let mut req = request(4, 3, 9);
        req.extend_from_slice(&[0xf3, 0x23, 0, 28]);
        req.extend_from_slice(&[0; 24]);
        let r = reply(handle(t(2.0), &req, &clock, &mut rl, client()));
        assert_eq!(r.buffer_len(), 48);
    }

    #[test]
    fn never_longer_than_the_request() {
        let clock = synced_clock();
        let mut rl = limiter();
        let mut seed = 99u64;
        for i in 0..20_000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = 40 + (seed >> 58) as usize * 2;
            let mut b: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
            if let Some(x) = b.first_mut() {
                *x = (*x & !7) | 3;
            }
            let from = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 123));
            if let Action::Reply(r) = handle(t(i as f64), &b, &clock, &mut rl, from) {
                assert!(r.buffer_len() <= b.len());
            }
        }
    }

    #[test]
    fn unsynchronized_init_then_step() {
        let unsync = HostClock {
            synchronized: false,
            leap: Leap::NoWarning,
            max_error_us: 16_000_000,
            est_error_us: 16_000_000,
        };
        let sync = HostClock {
            synchronized: true,
            ..unsync
        };
        let mut tracker = ClockTracker::new(false, -25);
        let s = tracker.update(t(0.0), &unsync);
        assert_eq!(
            (s.leap, s.stratum, s.reference_id),
            (Leap::Unsynchronized, 16, ReferenceId::INIT)
        );
        assert_eq!(s.reference_ts, NtpTimestamp::ZERO);
        assert!(!s.is_synchronized());
        let s = tracker.update(t(10.0), &sync);
        assert!(s.is_synchronized());
        let s = tracker.update(t(20.0), &unsync);
        assert_eq!(
            (s.leap, s.stratum, s.reference_id),
            (Leap::Unsynchronized, 16, ReferenceId::STEP)
        );
        assert_eq!(s.reference_ts, t(10.0));

        // The answer to a request carries it.
        let mut rl = limiter();
        let r = reply(handle(t(21.0), &request(4, 3, 1), &s, &mut rl, client()));
        assert_eq!(r.header().leap, Leap::Unsynchronized);
        assert_eq!(r.header().stratum, 16);
        assert_eq!(r.header().reference_id, ReferenceId::STEP);
    }

    #[test]
    fn local_reference_only_when_unsynchronized() {
        let mut tracker = ClockTracker::new(true, -25);
        let unsync = HostClock {
            synchronized: false,
            leap: Leap::NoWarning,
            max_error_us: 16_000_000,
            est_error_us: 16_000_000,
        };
        let s = tracker.update(t(0.0), &unsync);
        assert_eq!(
            (s.leap, s.stratum, s.reference_id),
            (Leap::NoWarning, LOCAL_STRATUM, ReferenceId::LOCL)
        );
        assert_eq!(
            s.root_dispersion,
            NtpShort::from_micros(LOCAL_ROOT_DISPERSION_US)
        );
        assert_eq!(s.reference_ts, t(0.0));
        let s = tracker.update(
            t(5.0),
            &HostClock {
                synchronized: true,
                leap: Leap::Insert,
                max_error_us: 2_000,
                est_error_us: 10,
            },
        );
        assert_eq!(
            (s.leap, s.stratum, s.reference_id),
            (Leap::Insert, SYNCED_STRATUM, HOST_REFID)
        );
    }

    #[test]
    fn precision_values() {
        assert_eq!(precision_from_nanos(1), -29);
        assert_eq!(precision_from_nanos(0), -29);
        assert_eq!(precision_from_nanos(30), -24);
        assert_eq!(precision_from_nanos(29), -25);
        assert_eq!(precision_from_nanos(1_000), -19);
        assert_eq!(precision_from_nanos(1_000_000_000), 0);
        assert_eq!(precision_from_nanos(1_500_000_000), 1);
        assert_eq!(precision_from_nanos(4_000_000_000), 2);
    }

    #[test]
    fn burst_then_kiss_then_drop_then_recovery() {
        let clock = synced_clock();
        let mut rl = limiter();
        let l = RateLimits::DEFAULT;
        let mut verdicts = Vec::new();
        let sent = l.burst + l.kod_burst + 20;
        for i in 0..sent {
            let a = handle(
                t(100.0 + i as f64 * 0.001),
                &request(4, 3, u64::from(i)),
                &clock,
                &mut rl,
                client(),
            );
            verdicts.push(match a {
                Action::Reply(r) if r.kind() == ReplyKind::Time => 'A',
                Action::Reply(_) => 'K',
                Action::Drop(DropReason::RateLimited) => 'D',
                Action::Drop(other) => panic!("{other}"),
            });
        }
        let expected: String = std::iter::repeat_n('A', l.burst as usize)
            .chain(std::iter::repeat_n('K', l.kod_burst as usize))
            .chain(std::iter::repeat_n('D', 20))
            .collect();
        assert_eq!(verdicts.into_iter().collect::<String>(), expected);

        // The kiss: stratum 0, RATE, leap 3, no time given away, poll raised.
        let mut fresh = limiter();
        for i in 0..l.burst {
            handle(
                t(0.0),
                &request(4, 3, u64::from(i)),
                &clock,
                &mut fresh,
                client(),
            );
        }
        let mut req = request(4, 3, 0xdead_beef);
        req[2] = 3;
        let k = reply(handle(t(0.0), &req, &clock, &mut fresh, client()));
        assert_eq!(k.kind(), ReplyKind::RateKiss);
        let mut out = [0; MAX_REPLY];
        let n = k.emit(t(5.0), &mut out);
        let h = Packet::parse(&out[..n]).unwrap().header;
        assert_eq!(
            (h.leap, h.stratum, h.reference_id),
            (Leap::Unsynchronized, 0, ReferenceId::RATE)
        );
        assert_eq!(h.poll, KOD_MIN_POLL);
        assert_eq!(h.origin_ts.to_bits(), 0xdead_beef);
        assert_eq!(h.transmit_ts.to_bits(), 0xdead_beef);
        assert_eq!(h.receive_ts.to_bits(), 0xdead_beef);

        // A flooder gets at most one kiss per interval.
        let mut kisses = 0;
        for i in 0..10_000 {
            let now = t(100.04 + i as f64 * 0.01); // 100 requests/s for 100 s
            if let Action::Reply(_) = handle(now, &request(4, 3, 1), &clock, &mut rl, client()) {
                kisses += 1;
            }
        }
        let most = (100.0 / l.interval.as_secs_f64()) as u32;
        assert!(
            (most * 9 / 10..=most).contains(&kisses),
            "{kisses} kisses in 100 s"
        );

        // Other clients are unaffected.
        let other: SocketAddr = "192.0.2.11:123".parse().unwrap();
        assert!(
            matches!(handle(t(200.0), &request(4, 3, 1), &clock, &mut rl, other), Action::Reply(r) if r.kind() == ReplyKind::Time)
        );

        // After a quiet spell of burst * interval the flooder has its full burst back.
        let quiet = 200.0 + (l.burst + l.kod_burst + 1) as f64 * l.interval.as_secs_f64();
        for i in 0..l.burst {
            let a = handle(
                t(quiet + f64::from(i) * 0.001),
                &request(4, 3, 1),
                &clock,
                &mut rl,
                client(),
            );
            assert!(
                matches!(a, Action::Reply(r) if r.kind() == ReplyKind::Time),
                "request {i}"
            );
        }
    }

    #[test]
    fn steady_iburst_is_never_limited() {
        // ntpd's iburst: 8 requests 2 s apart, then 64 s polling; many times over.
        let clock = synced_clock();
        let mut rl = limiter();
        let mut now = 0.0;
        for _ in 0..20 {
            for _ in 0..8 {
                let a = handle(t(now), &request(4, 3, 1), &clock, &mut rl, client());
                assert!(
                    matches!(a, Action::Reply(r) if r.kind() == ReplyKind::Time),
                    "at {now}"
                );
                now += 2.0;
            }
            now += 64.0;
        }
    }

    #[test]
    fn wall_clock_step_back_does_not_lock_clients_out() {
        let clock = synced_clock();
        let mut rl = limiter();
        for _ in 0..10 {
            handle(t(1000.0), &request(4, 3, 1), &clock, &mut rl, client());
        }
        // The clock goes back an hour.
        let a = handle(t(-2600.0), &request(4, 3, 1), &clock, &mut rl, client());
        assert!(matches!(a, Action::Reply(r) if r.kind() == ReplyKind::Time));
    }

    #[test]
    fn table_is_bounded_and_evicts_idle_first() {
        let limits = RateLimits {
            max_clients: 64,
            ..RateLimits::DEFAULT
        };
        let mut rl = RateLimiter::new(limits, 1);
        assert_eq!(rl.capacity(), 64);
        // A flooder is over its limit...
        let flooder: IpAddr = "192.0.2.99".parse().unwrap();
        for _ in 0..100 {
            rl.check(t(0.0), flooder);
        }
        assert_eq!(rl.check(t(0.0), flooder), Verdict::Drop);
        // ...then 100,000 one-shot clients pass by, spread over time: they evict each other
        // (idle entries), memory stays fixed.
        for i in 0..100_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(rl.check(t(f64::from(i) * 0.000_001), ip), Verdict::Allow);
        }
        assert_eq!(rl.capacity(), 64);
        assert_eq!(rl.slots.len(), 64);
        // The flooder's set kept it: the one-shot entries were more idle. (0.1 s later it has
        // not yet earned back enough to leave the drop zone.)
        assert_eq!(rl.check(t(0.1), flooder), Verdict::Drop);
        // IPv6 clients share their /64.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let mut rl = limiter();
        for _ in 0..RateLimits::DEFAULT.burst {
            assert_eq!(rl.check(t(0.0), a), Verdict::Allow);
        }
        assert_eq!(rl.check(t(0.0), b), Verdict::Kiss);
        // IPv4-mapped IPv6 is the IPv4 client.
        let v4: IpAddr = "192.0.2.5".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.5".parse().unwrap();
        for _ in 0..RateLimits::DEFAULT.burst {
            rl.check(t(0.0), v4);
        }
        assert_eq!(rl.check(t(0.0), mapped), Verdict::Kiss);
    }

    /// The issue-22 load: 150,000 requests/s from 65,534 addresses, round robin, for 20 s, and
    /// one address flooding at 1,000/s among them.
    #[test]
    fn a_clusters_aggregate_load_is_not_abuse_but_one_flooder_is() {
        let mut rl = limiter();
        let (sources, rate, seconds) = (65_534u32, 150_000u32, 20u32);
        let flooder: IpAddr = "198.18.0.1".parse().unwrap();
        let (mut refused, mut flooder_verdicts) = (0u32, Vec::new());
        for i in 0..rate * seconds {
            let now = t(f64::from(i) / f64::from(rate));
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xc613_0001 + i % sources));
            if rl.check(now, ip) != Verdict::Allow {
                refused += 1;
            }
            if i % (rate / 1_000) == 0 {
                flooder_verdicts.push(rl.check(now, flooder));
            }
        }
        assert_eq!(refused, 0, "legitimate clients refused");
        let count = |v| flooder_verdicts.iter().filter(|&&x| x == v).count();
        let allowed = count(Verdict::Allow);
        let l = RateLimits::DEFAULT;
        let most = l.burst as usize + (f64::from(seconds) / l.interval.as_secs_f64()) as usize + 1;
        assert!(allowed <= most, "flooder answered {allowed} times");
        assert!(count(Verdict::Kiss) > 0, "the flooder was told to back off");
        assert!(count(Verdict::Drop) > flooder_verdicts.len() / 2);
    }
}
