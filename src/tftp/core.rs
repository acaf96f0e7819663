//! TFTP protocol logic without I/O: request dispatch, path rules, option negotiation and the
//! per-transfer session state machine.
//!
//! Two kinds of core live here, as the house style prescribes:
//! - a request/response core for the listening port: [`dispatch`] turns one parsed packet into
//!   an [`Action`] (serve a cleaned path, answer with a TFTP error, or drop);
//! - a session core, [`Transfer`], in the quinn/smoltcp style: the shell feeds it packets with
//!   [`Transfer::handle_input`] and timer expiries with [`Transfer::handle_timeout`], asks
//!   [`Transfer::poll_timeout`] when to wake up, drains datagrams with
//!   [`Transfer::poll_transmit`], and feeds file bytes on demand: [`Transfer::poll_read`] says
//!   "give me the next N bytes of the stream", [`Transfer::supply`] hands them over (fewer
//!   than N means end of file). The core buffers at most one window of blocks, so the shell
//!   reads the file sequentially, never twice, and never holds the whole file.
//!
//! Time is a [`Duration`] since an epoch the shell picks (its own `Instant` at start); this
//! file never reads a clock, so tests run on virtual time.
//!
//! Transfer rules: RFC 1350 lock-step (windowsize 1) or RFC 7440 windows; the timer restarts
//! with every datagram sent; on timeout the whole outstanding window is resent from the first
//! unacknowledged block; an ACK inside the window acknowledges up to that block and, if data
//! after it was already sent, the window restarts after it (the client saw a gap). A repeated
//! ACK of the same block restarts the window once (windowsize > 1), and is ignored in
//! lock-step mode so the Sorcerer's Apprentice bug (RFC 1123 4.2.3.1) cannot double traffic.
//! Block numbers are 16 bits on the wire and roll over from 65535 to 0, as tftp-hpa, curl,
//! atftp and iPXE expect; internally blocks are counted in `u64`.
//!
//! Not here: write requests (always refused), the multicast option (RFC 2090, ignored like any
//! unknown option), netascii *decoding* (we only send), file access and sockets (`serve`).

use std::collections::VecDeque;
use std::time::Duration;

use super::wire::{
    ErrorCode, Mode, Packet, Request, TftpOption, DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE,
};

/// Longest request path we accept, in bytes (a bound; PXE paths are short).
pub const MAX_PATH: usize = 1024;
/// Largest client `timeout` (seconds) we accept. RFC 2349 allows 255, but a silent client
/// would then hold a transfer slot for `255 * (retries + 1)` seconds; larger requests are
/// ignored (left out of the OACK, as RFC 2347 permits) and our own timeout applies.
pub const MAX_CLIENT_TIMEOUT: u64 = 30;

/// Why [`dispatch`] dropped a packet without answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// DATA, ACK, ERROR or OACK sent to the listening port: no transfer owns it, and answering
    /// unsolicited packets only helps reflection attacks.
    NotARequest,
}

/// Why a requested path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("empty path")]
    Empty,
    #[error("absolute path")]
    Absolute,
    #[error("'..' component")]
    ParentComponent,
    #[error("backslash in path")]
    Backslash,
    #[error("control character in path")]
    ControlChar,
    #[error("path longer than {MAX_PATH} bytes")]
    TooLong,
}

/// What the listening-port shell does with one parsed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    /// Answer with this error from the listening socket and forget the peer.
    Reply {
        code: ErrorCode,
        message: &'static str,
        why: Refused,
    },
    /// Start a transfer of `path` (relative, cleaned by [`clean_path`]).
    Serve {
        path: String,
    },
}

/// Why a request was answered with an error instead of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    WriteRequest,
    Path(PathRefusal),
}

/// Decides what to do with a packet that arrived on the listening port.
pub fn dispatch(packet: &Packet<'_>) -> Action {
    match packet {
        Packet::Rrq(req) => match clean_path(req.filename) {
            Ok(path) => Action::Serve { path },
            Err(why) => Action::Reply {
                code: ErrorCode::AccessViolation,
                message: "access violation",
                why: Refused::Path(why),
            },
        },
        Packet::Wrq(_) => Action::Reply {
            code: ErrorCode::AccessViolation,
            message: "read-only server",
            why: Refused::WriteRequest,
        },
        _ => Action::Drop(DropReason::NotARequest),
    }
}

/// Turns a requested file name into a relative path made only of normal components.
///
/// One leading `/` is stripped (PXE ROMs and pxelinux send `/file`); after that an absolute path
/// (`//etc/passwd`), any `..`, backslashes (Windows-style separators some clients send) and
/// control characters are refused. Empty and `.` components are dropped. The result can still
/// name a symlink; the shell checks where the opened file really lives.
pub fn clean_path(name: &str) -> Result<String, PathRefusal> {
    if name.len() > MAX_PATH {
        return Err(PathRefusal::TooLong);
    }
    if name.contains('\\') {
        return Err(PathRefusal::Backslash);
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(PathRefusal::ControlChar);
    }
    let rel = name.strip_prefix('/').unwrap_or(name);
    if rel.starts_with('/') {
        return Err(PathRefusal::Absolute);
    }
    let mut parts = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathRefusal::ParentComponent),
            normal => parts.push(normal),
        }
    }
    if parts.is_empty() {
        return Err(PathRefusal::Empty);
    }
    Ok(parts.join("/"))
}

/// Netascii encoding (RFC 764 via RFC 1350): LF becomes CR LF, a bare CR becomes CR NUL.
/// Appends the encoding of `input` to `out`; stateless, so it can run on any chunking.
pub fn netascii_encode(input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            other => out.push(other),
        }
    }
}

/// Server-side limits for one transfer (the shell derives them from its `Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest `blksize` granted; larger requests are clamped (RFC 2348 allows that).
    pub max_blksize: u16,
    /// Largest `windowsize` granted; larger requests are clamped.
    pub max_windowsize: u16,
    /// Retransmission timeout unless the client negotiates `timeout`.
    pub timeout: Duration,
    /// Retransmissions of the same datagram before the transfer is abandoned.
    pub retries: u32,
}

/// The parameters a transfer runs with after option negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    /// Options to acknowledge in an OACK, in the client's order; empty means no OACK
    /// (RFC 2347: a server that accepts no option answers like an RFC 1350 server).
    pub oack: Vec<(&'static str, String)>,
}

/// RFC 2347/2348/2349/7440 negotiation. Unknown options, malformed values and duplicates are
/// ignored, which RFC 2347 allows (the option is simply absent from the OACK). `tsize` is
/// answered only when the shell knows the transfer size (not for netascii).
pub fn negotiate(
    options: &[TftpOption<'_>],
    transfer_size: Option<u64>,
    limits: &SessionLimits,
) -> Negotiated {
    let max_blksize = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
    let max_windowsize = limits.max_windowsize.max(1);
    let mut n = Negotiated {
        // Without the option, RFC 1350's 512 bytes hold whatever our maximum is.
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.timeout,
        oack: Vec::new(),
    };
    for opt in options {
        let Some(name) = ["blksize", "tsize", "timeout", "windowsize"]
            .into_iter()
            .find(|known| opt.name.eq_ignore_ascii_case(known))
        else {
            continue;
        };
        if n.oack.iter().any(|(seen, _)| *seen == name) {
            continue;
        }
        let Ok(value) = opt.value.parse::<u64>() else {
            continue;
        };
        let granted = match name {
            "blksize" if value >= u64::from(MIN_BLKSIZE) => {
                n.blksize = value.min(u64::from(max_blksize)) as u16;
                u64::from(n.blksize)
            }
            "windowsize" if (1..=65535).contains(&value) => {
                n.windowsize = value.min(u64::from(max_windowsize)) as u16;
                u64::from(n.windowsize)
            }
            "timeout" if (1..=MAX_CLIENT_TIMEOUT).contains(&value) => {
                n.timeout = Duration::from_secs(value);
                value
            }
            "tsize" => match transfer_size {
                Some(size) => size,
                None => continue,
            },
            _ => continue,
        };
        n.oack.push((name, granted.to_string()));
    }
    n
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client acknowledged the last block.
    Complete { bytes: u64, blocks: u64 },
    /// The client sent an ERROR packet (e.g. code 8 to refuse our OACK, or it gave up).
    PeerError { code: ErrorCode, message: String },
    /// `retries` retransmissions went unanswered.
    TimedOut,
    /// The shell aborted it (I/O error, shutdown); an ERROR was sent to the client.
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// OACK sent (or to send), waiting for ACK 0.
    Oack {
        send: bool,
    },
    Data,
    /// An ERROR is queued; after it goes out the transfer is over.
    Failing {
        code: ErrorCode,
        message: String,
        then: Outcome,
    },
    Done(Outcome),
}

/// One read transfer, from the first reply to the final ACK.
#[derive(Debug)]
pub struct Transfer {
    blksize: usize,
    windowsize: u64,
    timeout: Duration,
    max_retries: u32,
    oack: Vec<(&'static str, String)>,
    phase: Phase,
    /// Buffered blocks `base, base + 1, ...` (absolute numbers, first block is 1).
    blocks: VecDeque<Vec<u8>>,
    /// First block not yet acknowledged.
    base: u64,
    /// Next block to (re)send.
    next_send: u64,
    /// One past the highest block ever sent.
    high_sent: u64,
    /// Number of the final (short) block, once it is buffered.
    last_block: Option<u64>,
    /// A `poll_read` request is outstanding.
    reading: bool,
    bytes_acked: u64,
    deadline: Option<Duration>,
    retries: u32,
    /// The duplicate ACK (absolute block) we already restarted the window for.
    rewound_for: Option<u64>,
}

impl Transfer {
    /// Starts a transfer for `request`. `transfer_size` is the exact number of bytes that will
    /// be sent (file size for octet mode), if known; it answers `tsize`.
    pub fn new(request: &Request<'_>, transfer_size: Option<u64>, limits: &SessionLimits) -> Self {
        let size = match request.mode {
            Mode::Octet => transfer_size,
            Mode::Netascii => None,
        };
        let n = negotiate(&request.options, size, limits);
        Self::with_negotiated(n, limits.retries)
    }

    /// Starts a transfer with parameters already negotiated.
    pub fn with_negotiated(n: Negotiated, retries: u32) -> Self {
        assert!(n.blksize >= MIN_BLKSIZE && n.windowsize >= 1);
        let phase = if n.oack.is_empty() {
            Phase::Data
        } else {
            Phase::Oack { send: true }
        };
        Transfer {
            blksize: usize::from(n.blksize),
            windowsize: u64::from(n.windowsize),
            timeout: n.timeout,
            max_retries: retries,
            oack: n.oack,
            phase,
            blocks: VecDeque::new(),
            base: 1,
            next_send: 1,
            high_sent: 1,
            last_block: None,
            reading: false,
            bytes_acked: 0,
            deadline: None,
            retries: 0,
            rewound_for: None,
        }
    }

    pub fn blksize(&self) -> u16 {
        self.blksize as u16
    }

    pub fn windowsize(&self) -> u16 {
        self.windowsize as u16
    }

    /// The outcome, once the transfer is over; the shell then drops it.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// How many bytes the core wants next from the data stream, if any. Answer with
    /// [`Transfer::supply`]; fewer bytes than asked means end of data.
    pub fn poll_read(&mut self) -> Option<usize> {
        let live = matches!(self.phase, Phase::Oack { .. } | Phase::Data);
        if !live
            || self.reading
            || self.last_block.is_some()
            || self.blocks.len() as u64 >= self.windowsize
        {
            return None;
        }
        self.reading = true;
        Some(self.blksize)
    }

    /// The bytes for the last [`Transfer::poll_read`].
    pub fn supply(&mut self, data: &[u8]) {
        assert!(self.reading, "supply without poll_read");
        assert!(data.len() <= self.blksize, "supply longer than requested");
        self.reading = false;
        if data.len() < self.blksize {
            self.last_block = Some(self.base + self.blocks.len() as u64);
        }
        self.blocks.push_back(data.to_vec());
    }

    /// Ends the transfer by sending `code`/`message` to the client (e.g. a read error).
    pub fn abort(&mut self, code: ErrorCode, message: &str) {
        if !matches!(self.phase, Phase::Done(_)) {
            self.phase = Phase::Failing {
                code,
                message: message.to_owned(),
                then: Outcome::Aborted,
            };
        }
    }

    /// When [`Transfer::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.phase {
            Phase::Oack { .. } | Phase::Data => self.deadline,
            Phase::Failing { .. } | Phase::Done(_) => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        self.deadline = None;
        self.retries += 1;
        if self.retries > self.max_retries {
            self.phase = Phase::Done(Outcome::TimedOut);
            return;
        }
        match &mut self.phase {
            Phase::Oack { send } => *send = true,
            Phase::Data => self.next_send = self.base,
            Phase::Failing { .. } | Phase::Done(_) => {}
        }
    }

    /// A packet from the client's TID (the shell checks the source address and port).
    pub fn handle_input(&mut self, _now: Duration, packet: &Packet<'_>) {
        match (packet, &self.phase) {
            (Packet::Error { code, message }, Phase::Oack { .. } | Phase::Data) => {
                self.phase = Phase::Done(Outcome::PeerError {
                    code: *code,
                    message: (*message).to_owned(),
                });
            }
            (Packet::Ack { block: 0 }, Phase::Oack { .. }) => {
                self.phase = Phase::Data;
                self.retries = 0;
                self.deadline = None;
            }
            (Packet::Ack { block }, Phase::Data) => self.on_ack(*block),
            // Anything else on the transfer TID (a repeated RRQ, stray DATA) is ignored; the
            // timer drives recovery.
            _ => {}
        }
    }

    fn on_ack(&mut self, wire_block: u16) {
        let acked_before = self.base - 1;
        // Distance from the last acknowledged block, modulo the 16-bit wire counter. The
        // outstanding window is at most 65535 blocks, so this is unambiguous.
        let ahead = u64::from(wire_block.wrapping_sub(acked_before as u16));
        let outstanding = self.high_sent - self.base;
        if ahead == 0 {
            // Duplicate ACK: the client did not get `base`. In lock-step mode the timer
            // recovers (Sorcerer's Apprentice); with windows, restart once per stall.
            if self.windowsize > 1 && self.rewound_for != Some(acked_before) && outstanding > 0 {
                self.rewound_for = Some(acked_before);
                self.next_send = self.base;
            }
            return;
        }
        if ahead > outstanding {
            return; // ACK of a block never sent: ignore.
        }
        let acked = acked_before + ahead;
        for _ in 0..ahead {
            if let Some(block) = self.blocks.pop_front() {
                self.bytes_acked += block.len() as u64;
            }
        }
        self.base = acked + 1;
        self.retries = 0;
        self.rewound_for = None;
        if self.last_block == Some(acked) {
            self.phase = Phase::Done(Outcome::Complete {
                bytes: self.bytes_acked,
                blocks: acked,
            });
            return;
        }
        if self.next_send < self.base || (self.next_send > self.base && self.windowsize > 1) {
            // Either we were behind, or the client acknowledged part of what we sent: it saw a
            // gap (RFC 7440 section 4), so the window restarts after its ACK.
            self.next_send = self.base;
        }
        if self.next_send == self.base {
            self.deadline = None;
        }
    }

    /// The next datagram to send, written into `buf` (at least 4 + blksize bytes, or the
    /// OACK's length). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Duration, buf: &mut [u8]) -> Option<usize> {
        let len = match &self.phase {
            Phase::Oack { send: true } => {
                let options: Vec<TftpOption<'_>> = self
                    .oack
                    .iter()
                    .map(|(name, value)| TftpOption { name, value })
                    .collect();
                let len = emit(&Packet::Oack { options }, buf);
                self.phase = Phase::Oack { send: false };
                len
            }
            Phase::Data => {
                let buffered_end = self.base + self.blocks.len() as u64;
                let window_end = self.base + self.windowsize;
                if self.next_send >= buffered_end || self.next_send >= window_end {
                    return None;
                }
                let index = (self.next_send - self.base) as usize;
                let data = self.blocks.get(index)?;
                let len = emit(
                    &Packet::Data {
                        block: self.next_send as u16,
                        data,
                    },
                    buf,
                );
                self.next_send += 1;
                self.high_sent = self.high_sent.max(self.next_send);
                len
            }
            Phase::Failing {
                code,
                message,
                then,
            } => {
                let len = emit(
                    &Packet::Error {
                        code: *code,
                        message,
                    },
                    buf,
                );
                self.phase = Phase::Done(then.clone());
                len
            }
            Phase::Oack { send: false } | Phase::Done(_) => return None,
        };
        self.deadline = Some(now + self.timeout);
        Some(len)
    }
}

/// Emits a packet the core built itself; its size is bounded by the negotiated blksize, the
/// shell's buffer is sized for the largest packet, and messages contain no NUL.
fn emit(packet: &Packet<'_>, buf: &mut [u8]) -> usize {
    match packet.emit(buf) {
        Ok(len) => len,
        Err(e) => panic!("tftp core built an unemittable packet: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tftp::wire::MAX_PACKET;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_blksize: 1468,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            retries: 3,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A client-less harness: the file is `data`, `now` is virtual.
    struct Harness {
        t: Transfer,
        data: Vec<u8>,
        pos: usize,
        now: Duration,
        buf: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Sent {
        Oack(Vec<(String, String)>),
        Data(u16, usize),
        Error(ErrorCode),
    }

    impl Harness {
        fn new(options: &[(&str, &str)], data: Vec<u8>) -> Self {
            let options = options
                .iter()
                .map(|(name, value)| TftpOption { name, value })
                .collect();
            let req = Request {
                filename: "f",
                mode: Mode::Octet,
                options,
            };
            let t = Transfer::new(&req, Some(data.len() as u64), &limits());
            Harness {
                t,
                data,
                pos: 0,
                now: Duration::ZERO,
                buf: vec![0; MAX_PACKET],
            }
        }

        /// Feeds data and collects everything the core sends now.
        fn drain(&mut self) -> Vec<Sent> {
            let mut out = Vec::new();
            loop {
                while let Some(n) = self.t.poll_read() {
                    let end = (self.pos + n).min(self.data.len());
                    self.t.supply(&self.data[self.pos..end]);
                    self.pos = end;
                }
                let Some(len) = self.t.poll_transmit(self.now, &mut self.buf) else {
                    return out;
                };
                out.push(match Packet::parse(&self.buf[..len]).unwrap() {
                    Packet::Oack { options } => Sent::Oack(
                        options
                            .iter()
                            .map(|o| (o.name.to_owned(), o.value.to_owned()))
                            .collect(),
                    ),
                    Packet::Data { block, data } => Sent::Data(block, data.len()),
                    Packet::Error { code, .. } => Sent::Error(code),
                    other => panic!("core sent {other:?}"),
                });
            }
        }

        fn ack(&mut self, block: u16) -> Vec<Sent> {
            self.t.handle_input(self.now, &Packet::Ack { block });
            self.drain()
        }

        fn advance_to_timeout(&mut self) -> Vec<Sent> {
            self.now = self.t.poll_timeout().expect("a timer is armed");
            self.t.handle_timeout(self.now);
            self.drain()
        }
    }

    fn oack(pairs: &[(&str, &str)]) -> Sent {
        Sent::Oack(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn lockstep_without_options() {
        let mut h = Harness::new(&[], vec![7; 1000]);
        assert_eq!(h.drain(), vec![Sent::Data(1, 512)]);
        assert_eq!(h.ack(1), vec![Sent::Data(2, 488)]);
        assert_eq!(h.ack(2), vec![]);
        assert_eq!(
            h.t.outcome(),
            Some(&Outcome::Complete {
                bytes: 1000,
                blocks: 2
            })
        );
    }

    #[test]
    fn exact_multiple_ends_with_empty_block() {
        let mut h = Harness::new(&[], vec![1; 1024]);
        assert_eq!(h.drain(), vec![Sent::Data(1, 512)]);
        assert_eq!(h.ack(1), vec![Sent::Data(2, 512)]);
        assert_eq!(h.ack(2), vec![Sent::Data(3, 0)]);
        h.ack(3);
        assert!(matches!(
            h.t.outcome(),
            Some(Outcome::Complete { bytes: 1024, .. })
        ));
        // An empty file is one empty block.
        let mut h = Harness::new(&[], vec![]);
        assert_eq!(h.drain(), vec![Sent::Data(1, 0)]);
        h.ack(1);
        assert!(h.t.outcome().is_some());
    }

    #[test]
    fn negotiation_reports_tsize_clamps_blksize_ignores_unknown() {
        let mut h = Harness::new(
            &[
                ("TSIZE", "0"),
                ("blksize", "65464"),
                ("multicast", ""),
                ("windowsize", "1000"),
                ("timeout", "3"),
                ("rollover", "0"),
                ("blksize", "9000"),
            ],
            vec![0; 5000],
        );
        assert_eq!(
            h.drain(),
            vec![oack(&[
                ("tsize", "5000"),
                ("blksize", "1468"),
                ("windowsize", "64"),
                ("timeout", "3"),
            ])]
        );
        assert_eq!(h.t.blksize(), 1468);
        assert_eq!(h.t.poll_timeout(), Some(Duration::from_secs(3)));
        let sent = h.ack(0);
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[3], Sent::Data(4, 5000 - 3 * 1468));
    }

    #[test]
    fn invalid_option_values_are_not_acknowledged() {
        let n = negotiate(
            &[
                TftpOption {
                    name: "blksize",
                    value: "7",
                },
                TftpOption {
                    name: "windowsize",
                    value: "0",
                },
                TftpOption {
                    name: "timeout",
                    value: "31",
                },
                TftpOption {
                    name: "tsize",
                    value: "x",
                },
            ],
            Some(10),
            &limits(),
        );
        assert!(n.oack.is_empty());
        assert_eq!((n.blksize, n.windowsize), (512, 1));
        // Unknown size (netascii): no tsize in the OACK, so no OACK at all here.
        let n = negotiate(
            &[TftpOption {
                name: "tsize",
                value: "0",
            }],
            None,
            &limits(),
        );
        assert!(n.oack.is_empty());
    }

    #[test]
    fn small_maximum_applies_to_negotiated_blksize_only() {
        let small = SessionLimits {
            max_blksize: 100,
            ..limits()
        };
        // RFC 1350 clients always get 512-byte blocks.
        assert_eq!(negotiate(&[], Some(10), &small).blksize, 512);
        let n = negotiate(
            &[TftpOption {
                name: "blksize",
                value: "1468",
            }],
            Some(10),
            &small,
        );
        assert_eq!(n.blksize, 100);
        assert_eq!(n.oack, vec![("blksize", "100".to_owned())]);
    }

    #[test]
    fn oack_retransmitted_then_refused_by_client() {
        let mut h = Harness::new(&[("blksize", "1024")], vec![0; 10]);
        assert_eq!(h.drain(), vec![oack(&[("blksize", "1024")])]);
        assert_eq!(h.advance_to_timeout(), vec![oack(&[("blksize", "1024")])]);
        h.t.handle_input(
            h.now,
            &Packet::Error {
                code: ErrorCode::OptionRefused,
                message: "no",
            },
        );
        assert_eq!(
            h.t.outcome(),
            Some(&Outcome::PeerError {
                code: ErrorCode::OptionRefused,
                message: "no".into()
            })
        );
        assert_eq!(h.drain(), vec![]);
        assert_eq!(h.t.poll_timeout(), None);
    }

    #[test]
    fn client_error_mid_transfer_ends_session() {
        let mut h = Harness::new(&[], vec![0; 2000]);
        h.drain();
        h.ack(1);
        h.t.handle_input(
            h.now,
            &Packet::Error {
                code: ErrorCode::DiskFull,
                message: "full",
            },
        );
        assert!(matches!(h.t.outcome(), Some(Outcome::PeerError { .. })));
        assert_eq!(h.drain(), vec![]);
    }

    #[test]
    fn lost_ack_retransmits_until_retry_limit() {
        let mut h = Harness::new(&[], vec![0; 2000]);
        assert_eq!(h.drain(), vec![Sent::Data(1, 512)]);
        assert_eq!(h.t.poll_timeout(), Some(ms(1000)));
        for i in 1..=3 {
            assert_eq!(h.advance_to_timeout(), vec![Sent::Data(1, 512)]);
            assert_eq!(h.now, ms(1000 * i));
        }
        // An ACK resets the retry budget.
        assert_eq!(h.ack(1), vec![Sent::Data(2, 512)]);
        for _ in 0..3 {
            assert_eq!(h.advance_to_timeout(), vec![Sent::Data(2, 512)]);
        }
        assert_eq!(h.advance_to_timeout(), vec![]);
        assert_eq!(h.t.outcome(), Some(&Outcome::TimedOut));
    }

    #[test]
    fn early_timeout_call_does_nothing() {
        let mut h = Harness::new(&[], vec![0; 2000]);
        h.drain();
        h.t.handle_timeout(ms(999));
        assert_eq!(h.drain(), vec![]);
        assert_eq!(h.t.poll_timeout(), Some(ms(1000)));
    }

    #[test]
    fn lockstep_duplicate_ack_is_ignored() {
        // Sorcerer's Apprentice: a delayed duplicate ACK must not resend the next block.
        let mut h = Harness::new(&[], vec![0; 2000]);
        h.drain();
        assert_eq!(h.ack(1), vec![Sent::Data(2, 512)]);
        assert_eq!(h.ack(1), vec![]);
        assert_eq!(h.ack(2), vec![Sent::Data(3, 512)]);
    }

    #[test]
    fn window_sent_whole_and_acked_at_end() {
        let mut h = Harness::new(&[("windowsize", "4"), ("blksize", "100")], vec![0; 1050]);
        h.drain();
        let sent = h.ack(0);
        assert_eq!(
            sent,
            (1..=4).map(|b| Sent::Data(b, 100)).collect::<Vec<_>>()
        );
        let sent = h.ack(4);
        assert_eq!(
            sent,
            (5..=8).map(|b| Sent::Data(b, 100)).collect::<Vec<_>>()
        );
        let sent = h.ack(8);
        assert_eq!(
            sent,
            vec![Sent::Data(9, 100), Sent::Data(10, 100), Sent::Data(11, 50)]
        );
        h.ack(11);
        assert!(matches!(
            h.t.outcome(),
            Some(Outcome::Complete {
                bytes: 1050,
                blocks: 11
            })
        ));
    }

    #[test]
    fn window_gap_ack_restarts_after_it() {
        let mut h = Harness::new(&[("windowsize", "4"), ("blksize", "100")], vec![0; 2000]);
        h.drain();
        h.ack(0); // blocks 1..=4 out; client lost 3.
        assert_eq!(
            h.ack(2),
            (3..=6).map(|b| Sent::Data(b, 100)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn window_duplicate_ack_restarts_once() {
        let mut h = Harness::new(&[("windowsize", "4"), ("blksize", "100")], vec![0; 2000]);
        h.drain();
        h.ack(0);
        assert_eq!(h.ack(4).len(), 4); // 5..=8 out; 5 lost: client re-ACKs 4.
        assert_eq!(
            h.ack(4),
            (5..=8).map(|b| Sent::Data(b, 100)).collect::<Vec<_>>()
        );
        // The same duplicate again (e.g. delayed) does not trigger a second resend.
        assert_eq!(h.ack(4), vec![]);
        // Timeout resends the window from the first unacknowledged block.
        assert_eq!(
            h.advance_to_timeout(),
            (5..=8).map(|b| Sent::Data(b, 100)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn window_timeout_resends_from_acked_plus_one() {
        let mut h = Harness::new(&[("windowsize", "3"), ("blksize", "8")], vec![0; 100]);
        h.drain();
        assert_eq!(h.ack(0).len(), 3);
        assert_eq!(
            h.advance_to_timeout(),
            vec![Sent::Data(1, 8), Sent::Data(2, 8), Sent::Data(3, 8)]
        );
    }

    #[test]
    fn ack_for_unsent_block_is_ignored() {
        let mut h = Harness::new(&[], vec![0; 2000]);
        h.drain();
        assert_eq!(h.ack(9), vec![]);
        assert_eq!(h.ack(1), vec![Sent::Data(2, 512)]);
    }

    #[test]
    fn block_numbers_wrap_after_65535() {
        let blksize = 8usize;
        let blocks = 65536 + 10; // block 65536 goes out as 0
        let len = blksize * blocks + 3;
        let mut h = Harness::new(&[("blksize", "8"), ("windowsize", "16")], vec![5; len]);
        h.drain();
        let mut sent = h.ack(0);
        let mut total = 0u64;
        let mut seen_zero = false;
        while h.t.outcome().is_none() {
            let Some(Sent::Data(last, _)) = sent.last() else {
                panic!("nothing sent: {sent:?}");
            };
            let last = *last;
            for s in &sent {
                if let Sent::Data(block, n) = s {
                    total += *n as u64;
                    seen_zero |= *block == 0;
                }
            }
            sent = h.ack(last);
        }
        assert!(seen_zero);
        assert_eq!(total, len as u64);
        assert_eq!(
            h.t.outcome(),
            Some(&Outcome::Complete {
                bytes: len as u64,
                blocks: blocks as u64 + 1
            })
        );
    }

    #[test]
    fn duplicate_ack_across_wrap_is_recognised() {
        // Lock-step across the rollover: ACK 65535, then a delayed duplicate 65535 after 0.
        let mut h = Harness::new(&[("blksize", "8")], vec![1; 8 * 65540]);
        h.drain();
        let mut block = 0u16;
        for _ in 0..65535 {
            block = block.wrapping_add(1);
            h.ack(block);
        }
        assert_eq!(block, 65535);
        let sent = h.ack(0);
        assert_eq!(sent, vec![Sent::Data(1, 8)]);
        assert_eq!(h.ack(65535), vec![]); // stale, ignored
        assert_eq!(h.ack(1), vec![Sent::Data(2, 8)]);
    }

    #[test]
    fn abort_sends_error_once() {
        let mut h = Harness::new(&[], vec![0; 2000]);
        h.drain();
        h.t.abort(ErrorCode::NotDefined, "read error");
        assert_eq!(h.drain(), vec![Sent::Error(ErrorCode::NotDefined)]);
        assert_eq!(h.t.outcome(), Some(&Outcome::Aborted));
        assert_eq!(h.drain(), vec![]);
    }

    /// Stateful fuzz on virtual time: random options, ACKs (plausible and bogus), timeouts and
    /// errors never panic, every DATA block is in order within one window of the oldest
    /// unacknowledged block, and every transfer ends.
    #[test]
    fn random_sessions_never_panic_and_end() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let blksize = (8 + next() % 64).to_string();
            let window = (1 + next() % 8).to_string();
            let len = (next() % 3000) as usize;
            let mut h = Harness::new(
                &[("blksize", &blksize), ("windowsize", &window)],
                vec![9; len],
            );
            let mut highest: u16 = 0;
            for step in 0..20_000 {
                // The core's own record of the last acknowledged block (bogus ACKs that land
                // inside the window legitimately advance it).
                let last_acked = (h.t.base - 1) as u16;
                for sent in h.drain() {
                    if let Sent::Data(block, _) = sent {
                        let ahead = block.wrapping_sub(last_acked);
                        assert!(ahead >= 1 && u64::from(ahead) <= h.t.windowsize as u64);
                        if block.wrapping_sub(highest) < 0x8000 {
                            highest = block;
                        }
                    }
                }
                if h.t.outcome().is_some() {
                    break;
                }
                match next() % 10 {
                    0 => {
                        let _ = h.advance_to_timeout();
                    }
                    1 => {
                        let _ = h.ack(next() as u16);
                    }
                    2 if step > 19_000 => {
                        h.t.handle_input(
                            h.now,
                            &Packet::Error {
                                code: ErrorCode::NotDefined,
                                message: "bye",
                            },
                        );
                    }
                    3 => {
                        let _ = h.ack(last_acked);
                    }
                    _ => {
                        // A well-behaved client acknowledges what it got, in order.
                        let span = highest.wrapping_sub(last_acked);
                        if span > 0 && span < 0x8000 {
                            let ack =
                                last_acked.wrapping_add(1 + (next() % u64::from(span)) as u16);
                            h.t.handle_input(h.now, &Packet::Ack { block: ack });
                        } else if matches!(h.t.phase, Phase::Oack { .. }) {
                            h.t.handle_input(h.now, &Packet::Ack { block: 0 });
                        }
                    }
                }
            }
            assert!(h.t.outcome().is_some(), "transfer did not end");
        }
    }

    #[test]
    fn path_rules() {
        assert_eq!(clean_path("/undionly.kpxe").as_deref(), Ok("undionly.kpxe"));
        assert_eq!(clean_path("a/./b//c").as_deref(), Ok("a/b/c"));
        assert_eq!(clean_path("//etc/passwd"), Err(PathRefusal::Absolute));
        assert_eq!(clean_path("../x"), Err(PathRefusal::ParentComponent));
        assert_eq!(clean_path("a/../../x"), Err(PathRefusal::ParentComponent));
        assert_eq!(clean_path("/.."), Err(PathRefusal::ParentComponent));
        assert_eq!(clean_path("a\\..\\x"), Err(PathRefusal::Backslash));
        assert_eq!(clean_path("a\u{7}"), Err(PathRefusal::ControlChar));
        assert_eq!(clean_path("/"), Err(PathRefusal::Empty));
        assert_eq!(clean_path("./."), Err(PathRefusal::Empty));
        assert_eq!(
            clean_path(&"a".repeat(MAX_PATH + 1)),
            Err(PathRefusal::TooLong)
        );
    }

    #[test]
    fn dispatch_decisions() {
        let rrq = Packet::Rrq(Request {
            filename: "/ipxe.efi",
            mode: Mode::Octet,
            options: vec![],
        });
        assert_eq!(
            dispatch(&rrq),
            Action::Serve {
                path: "ipxe.efi".into()
            }
        );
        let wrq = Packet::Wrq(Request {
            filename: "x",
            mode: Mode::Octet,
            options: vec![],
        });
        assert!(matches!(
            dispatch(&wrq),
            Action::Reply {
                code: ErrorCode::AccessViolation,
                why: Refused::WriteRequest,
                ..
            }
        ));
        let bad = Packet::Rrq(Request {
            filename: "../etc/passwd",
            mode: Mode::Octet,
            options: vec![],
        });
        assert!(matches!(
            dispatch(&bad),
            Action::Reply {
                code: ErrorCode::AccessViolation,
                ..
            }
        ));
        assert_eq!(
            dispatch(&Packet::Ack { block: 1 }),
            Action::Drop(DropReason::NotARequest)
        );
    }

    #[test]
    fn netascii() {
        let mut out = Vec::new();
        netascii_encode(b"a\nb\rc", &mut out);
        assert_eq!(out, b"a\r\nb\r\0c");
    }
}
