//! One session with a BMC as a sans-IO state machine: Get Channel Authentication
//! Capabilities, then either RMCP+ (Open Session, RAKP 1-4) or, only when configured
//! ([`LanVersion::V15`], never because of the unauthenticated capabilities reply), IPMI v1.5
//! (Get Session Challenge, Activate Session with MD5 or password authentication); then
//! Set Session Privilege Level (raise to ADMINISTRATOR), commands one at a time, and Close
//! Session.
//!
//! The shell feeds it datagrams ([`Session::handle_input`]) and timer expiries
//! ([`Session::handle_timeout`]) with the current time, sends what
//! [`Session::poll_transmit`] returns, sleeps until [`Session::poll_timeout`] and reads
//! [`Session::poll_event`]. Randomness (session id, RAKP random number, AES IVs) comes from a
//! [`Random`] the shell provides. Lost datagrams are retransmitted after
//! [`Limits::timeout`], at most [`Limits::retries`] times; session messages are re-sealed
//! with a fresh session sequence number but keep their IPMI sequence number, so a late
//! answer to the first copy still matches.

use super::crypto::{Exchange, SessionKeys, Suite};
use super::wire::{self, Frame, PayloadType, Request, Response};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where the session core gets random bytes.
pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);
}

/// Privilege level ADMINISTRATOR (chassis control needs at least OPERATOR).
const PRIV_ADMIN: u8 = 0x04;
/// RAKP role byte bit: look the user up by name only (not by name and privilege).
const ROLE_NAME_ONLY: u8 = 0x10;
const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;
const CMD_GET_CHANNEL_AUTH_CAPS: u8 = 0x38;
const CMD_GET_SESSION_CHALLENGE: u8 = 0x39;
const CMD_ACTIVATE_SESSION: u8 = 0x3a;
const CMD_SET_SESSION_PRIVILEGE: u8 = 0x3b;
const CMD_CLOSE_SESSION: u8 = 0x3c;
const CMD_CHASSIS_STATUS: u8 = 0x01;
const CMD_CHASSIS_CONTROL: u8 = 0x02;
const CMD_SET_BOOT_OPTIONS: u8 = 0x08;
const CMD_GET_BOOT_OPTIONS: u8 = 0x09;
/// The stage name in [`SessionError::Timeout`] of an unanswered Open Session request.
pub const OPEN_SESSION: &str = "RMCP+ Open Session";
/// Boot option parameter 5: boot flags.
const BOOT_FLAGS: u8 = 0x05;

/// Retransmission limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wait for an answer before sending again.
    pub timeout: Duration,
    /// Retransmissions of one message before the session fails with a timeout.
    pub retries: u32,
}

/// The chassis control operations (IPMI v2.0 table 28-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Off,
    On,
    Cycle,
    Reset,
    /// ACPI soft shutdown (the OS shuts down).
    Soft,
}

impl Control {
    fn code(self) -> u8 {
        match self {
            Control::Off => 0x00,
            Control::On => 0x01,
            Control::Cycle => 0x02,
            Control::Reset => 0x03,
            Control::Soft => 0x05,
        }
    }
}

/// Boot devices for the next boot (boot flags device selector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    /// No override: the firmware's own order.
    Default,
    Pxe,
    Disk,
    /// A selector value drover does not name.
    Other(u8),
}

impl BootDevice {
    fn selector(self) -> u8 {
        match self {
            BootDevice::Default => 0x00,
            BootDevice::Pxe => 0x01,
            BootDevice::Disk => 0x02,
            BootDevice::Other(v) => v & 0x0f,
        }
    }

    fn from_selector(v: u8) -> BootDevice {
        match v {
            0x00 => BootDevice::Default,
            0x01 => BootDevice::Pxe,
            0x02 => BootDevice::Disk,
            other => BootDevice::Other(other),
        }
    }
}

impl std::fmt::Display for BootDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootDevice::Default => f.write_str("default"),
            BootDevice::Pxe => f.write_str("pxe"),
            BootDevice::Disk => f.write_str("disk"),
            BootDevice::Other(v) => write!(f, "selector {v:#x}"),
        }
    }
}

/// A command to run in an established session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    ChassisStatus,
    ChassisControl(Control),
    /// Set the boot device for the next boot only (legacy BIOS boot type).
    SetBootDevice(BootDevice),
    GetBootDevice,
    /// Any other request (SDR, sensor, SEL reads): its answer is [`Answer::Raw`] with the
    /// completion code, which the caller judges (a sensor that cannot be read is not a
    /// failed session).
    Raw(RawRequest),
}

/// A request given by its numbers, with up to [`RawRequest::MAX_DATA`] data bytes (the reads
/// drover makes need six).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRequest {
    pub netfn: u8,
    pub cmd: u8,
    /// The command's name in errors.
    pub name: &'static str,
    data: [u8; RawRequest::MAX_DATA],
    len: u8,
}

impl RawRequest {
    pub const MAX_DATA: usize = 8;

    /// `None` when `data` is longer than [`RawRequest::MAX_DATA`].
    pub fn new(netfn: u8, cmd: u8, name: &'static str, data: &[u8]) -> Option<RawRequest> {
        let mut buf = [0u8; RawRequest::MAX_DATA];
        buf.get_mut(..data.len())?.copy_from_slice(data);
        Some(RawRequest {
            netfn,
            cmd,
            name,
            data: buf,
            len: data.len() as u8,
        })
    }

    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

impl Command {
    fn request(self, seq: u8) -> Request {
        let (netfn, cmd, data) = match self {
            Command::ChassisStatus => (NETFN_CHASSIS, CMD_CHASSIS_STATUS, vec![]),
            Command::ChassisControl(c) => (NETFN_CHASSIS, CMD_CHASSIS_CONTROL, vec![c.code()]),
            // Byte 1: valid, next boot only, legacy; byte 2: device selector in bits 5:2.
            Command::SetBootDevice(d) => (
                NETFN_CHASSIS,
                CMD_SET_BOOT_OPTIONS,
                vec![BOOT_FLAGS, 0x80, d.selector() << 2, 0, 0, 0],
            ),
            Command::GetBootDevice => (NETFN_CHASSIS, CMD_GET_BOOT_OPTIONS, vec![BOOT_FLAGS, 0, 0]),
            Command::Raw(r) => (r.netfn, r.cmd, r.data().to_vec()),
        };
        Request {
            netfn,
            cmd,
            seq,
            data,
        }
    }

    fn answer(self, data: &[u8]) -> Result<Answer, SessionError> {
        match self {
            Command::ChassisStatus => data
                .first()
                .map(|b| Answer::Power(b & 0x01 != 0))
                .ok_or(SessionError::Protocol("short chassis status")),
            Command::GetBootDevice => data
                .get(3)
                .map(|b| Answer::BootDevice(BootDevice::from_selector((b >> 2) & 0x0f)))
                .ok_or(SessionError::Protocol("short boot options")),
            Command::ChassisControl(_) | Command::SetBootDevice(_) => Ok(Answer::Done),
            Command::Raw(_) => Ok(Answer::Raw {
                cc: 0,
                data: data.to_vec(),
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Command::ChassisStatus => "Get Chassis Status",
            Command::ChassisControl(_) => "Chassis Control",
            Command::SetBootDevice(_) => "Set System Boot Options",
            Command::GetBootDevice => "Get System Boot Options",
            Command::Raw(r) => r.name,
        }
    }
}

/// What a command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Chassis power: `true` = on.
    Power(bool),
    BootDevice(BootDevice),
    Done,
    /// The answer to [`Command::Raw`]: completion code and data.
    Raw {
        cc: u8,
        data: Vec<u8>,
    },
}

/// Why a session failed. Each maps to one reason in the admin's result table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("timeout: no answer to {0}")]
    Timeout(&'static str),
    #[error("authentication failed: wrong user name or password")]
    Authentication,
    #[error("BMC offers no cipher suite {0} (RMCP+ status {1:#04x})")]
    CipherSuite(u8, u8),
    #[error("BMC offers neither RMCP+ nor IPMI v1.5 with MD5 or password authentication")]
    NoCommonAuth,
    #[error("BMC does not offer IPMI v2.0 (RMCP+); power.ipmi-version allows only 2.0")]
    NoIpmi20,
    #[error("BMC offers only IPMI v1.5; set power.ipmi-version = \"1.5\" to allow it")]
    OnlyV15,
    #[error(
        "authentication failed: no answer to IPMI v1.5 Activate Session (BMCs ignore a wrong \
         password)"
    )]
    AuthenticationV15,
    #[error("privilege: the user may not act as administrator ({0})")]
    Privilege(&'static str),
    #[error("BMC refused the session (RMCP+ status {0:#04x})")]
    Refused(u8),
    #[error("BMC answered {cmd} with completion code {cc:#04x} ({meaning})")]
    Completion {
        cmd: &'static str,
        cc: u8,
        meaning: &'static str,
    },
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// What the session tells the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session is up at ADMINISTRATOR privilege; commands may be sent.
    Established,
    Answer(Answer),
    /// A Serial-over-LAN packet from the BMC, checked and decrypted (`super::sol` reads it).
    Sol(Vec<u8>),
    /// The session is over (failed, or closed after [`Session::close`]).
    Failed(SessionError),
    Closed,
}

/// Which IPMI LAN protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanVersion {
    /// RMCP+; a BMC that says it offers only IPMI v1.5 fails with [`SessionError::OnlyV15`].
    /// The capabilities reply is unauthenticated, so it never chooses v1.5 (password in clear
    /// or MD5): only [`LanVersion::V15`] does.
    Auto,
    /// RMCP+ only.
    V20,
    /// IPMI v1.5 only (MD5, else straight password).
    V15,
}

/// Who we log in as.
pub struct Login<'a> {
    pub user: &'a [u8],
    pub password: &'a [u8],
    pub suite: Suite,
    pub version: LanVersion,
}

/// The protocol of the session once chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    V20,
    /// IPMI v1.5 with this authentication type.
    V15(u8),
}

#[derive(Debug)]
enum Stage {
    /// `retried`: asked again without the IPMI v2.0 bit, which v1.5-only BMCs reject.
    AuthCaps {
        retried: bool,
    },
    /// IPMI v1.5 Get Session Challenge.
    Challenge,
    /// IPMI v1.5 Activate Session.
    Activate,
    OpenSession,
    Rakp1,
    Rakp3 {
        sik: Vec<u8>,
    },
    Privilege,
    Ready,
    Command(Command),
    Closing,
    Done,
}

/// What a retransmission repeats.
#[derive(Debug)]
enum Outstanding {
    /// Pre-session datagram: sent again byte for byte.
    Raw(Vec<u8>),
    /// Session request: re-sealed with a new session sequence number.
    Sealed(Request),
}

pub struct Session<R: Random> {
    rng: R,
    limits: Limits,
    suite: Suite,
    version: LanVersion,
    proto: Proto,
    user: Vec<u8>,
    password: Vec<u8>,
    stage: Stage,
    console_sid: u32,
    bmc_sid: u32,
    console_random: [u8; 16],
    bmc_random: [u8; 16],
    bmc_guid: [u8; 16],
    keys: Option<SessionKeys>,
    out_seq: u32,
    rq_seq: u8,
    outstanding: Option<Outstanding>,
    /// The request an IPMI v1.5 answer must match (also kept for RMCP+, unused there).
    outstanding_v15: Option<Request>,
    tries: u32,
    deadline: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl<R: Random> std::fmt::Debug for Session<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No user name, password or keys in logs.
        f.debug_struct("Session")
            .field("stage", &self.stage)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl<R: Random> Session<R> {
    /// Starts logging in: the first datagram is ready in [`Session::poll_transmit`].
    pub fn new(now: Instant, login: &Login<'_>, limits: Limits, mut rng: R) -> Session<R> {
        let mut sid = [0u8; 4];
        let mut console_sid = 0;
        while console_sid == 0 {
            rng.fill(&mut sid);
            console_sid = u32::from_le_bytes(sid);
        }
        let mut console_random = [0u8; 16];
        rng.fill(&mut console_random);
        let mut s = Session {
            rng,
            limits,
            suite: login.suite,
            version: login.version,
            proto: Proto::V20,
            user: login.user[..login.user.len().min(16)].to_vec(),
            password: login.password[..login.password.len().min(20)].to_vec(),
            stage: Stage::AuthCaps { retried: false },
            console_sid,
            bmc_sid: 0,
            console_random,
            bmc_random: [0; 16],
            bmc_guid: [0; 16],
            keys: None,
            out_seq: 0,
            rq_seq: 0,
            outstanding: None,
            outstanding_v15: None,
            tries: 0,
            deadline: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.send_auth_caps(now, true);
        s
    }

    fn send_auth_caps(&mut self, now: Instant, ask_v20: bool) {
        let caps = Request {
            netfn: NETFN_APP,
            cmd: CMD_GET_CHANNEL_AUTH_CAPS,
            seq: 0,
            // Channel 0Eh ("this one"), bit 7 asking for IPMI v2.0 data.
            data: vec![if ask_v20 { 0x8e } else { 0x0e }, PRIV_ADMIN],
        };
        self.send_raw(now, wire::emit_v15(&caps.emit()));
    }

    /// Whether commands may be sent now.
    pub fn is_ready(&self) -> bool {
        matches!(self.stage, Stage::Ready)
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// Whether [`Session::poll_transmit`] has a datagram.
    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Sends `cmd`; its answer arrives as [`Event::Answer`]. Ignored unless the session is
    /// ready (the shell sends one command at a time).
    pub fn request(&mut self, now: Instant, cmd: Command) {
        if !self.is_ready() {
            return;
        }
        self.stage = Stage::Command(cmd);
        let req = cmd.request(self.next_rq_seq());
        self.send_sealed(now, req);
    }

    /// Ends the session with Close Session; [`Event::Closed`] follows (also when the BMC
    /// does not answer: it drops idle sessions by itself).
    pub fn close(&mut self, now: Instant) {
        if !self.is_ready() {
            if !matches!(self.stage, Stage::Done) {
                self.finish(Event::Closed);
            }
            return;
        }
        self.stage = Stage::Closing;
        let req = Request {
            netfn: NETFN_APP,
            cmd: CMD_CLOSE_SESSION,
            seq: self.next_rq_seq(),
            data: self.bmc_sid.to_le_bytes().to_vec(),
        };
        self.send_sealed(now, req);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.tries >= self.limits.retries {
            if matches!(self.stage, Stage::Closing) {
                self.finish(Event::Closed);
            } else if matches!(self.stage, Stage::Activate) {
                self.finish(Event::Failed(SessionError::AuthenticationV15));
            } else {
                let what = self.stage_name();
                self.finish(Event::Failed(SessionError::Timeout(what)));
            }
            return;
        }
        self.tries += 1;
        match self.outstanding.take() {
            Some(Outstanding::Raw(bytes)) => {
                self.transmit.push_back(bytes.clone());
                self.outstanding = Some(Outstanding::Raw(bytes));
            }
            Some(Outstanding::Sealed(req)) => {
                let bytes = self.seal(&req);
                self.transmit.push_back(bytes);
                self.outstanding = Some(Outstanding::Sealed(req));
            }
            None => {}
        }
        self.deadline = Some(now + self.limits.timeout);
    }

    /// Takes one received datagram. Datagrams that do not belong to this session or answer
    /// an older request are dropped silently (they are late duplicates or noise).
    pub fn handle_input(&mut self, now: Instant, datagram: &[u8]) {
        let auth_len = self.keys.as_ref().map_or(0, |k| k.suite.icv_len());
        let Ok(frame) = wire::parse(datagram, auth_len) else {
            return;
        };
        match (&self.stage, &frame) {
            (&Stage::AuthCaps { retried }, Frame::V15 { message, .. }) => {
                let Ok(resp) = Response::parse(message) else {
                    return;
                };
                if resp.cmd != CMD_GET_CHANNEL_AUTH_CAPS {
                    return;
                }
                if resp.cc != 0 || resp.data.len() < 4 {
                    if retried {
                        return self.fail(completion(
                            "Get Channel Authentication Capabilities",
                            resp.cc,
                        ));
                    }
                    // BMCs without v2.0 reject the v2.0 bit in the request: ask again.
                    self.stage = Stage::AuthCaps { retried: true };
                    return self.send_auth_caps(now, false);
                }
                let v20 = resp.data[1] & 0x80 != 0 && resp.data[3] & 0x02 != 0;
                let v15_auth = if resp.data[1] & (1 << wire::AUTH_MD5) != 0 {
                    Some(wire::AUTH_MD5)
                } else if resp.data[1] & (1 << wire::AUTH_PASSWORD) != 0 {
                    Some(wire::AUTH_PASSWORD)
                } else {
                    None
                };
                match (self.version, v20, v15_auth) {
                    (LanVersion::Auto | LanVersion::V20, true, _) => self.open_session(now),
                    (LanVersion::V20, false, _) => self.fail(SessionError::NoIpmi20),
                    // Anyone on the path can forge this reply: it must not talk drover down
                    // to a protocol that gives the password away.
                    (LanVersion::Auto, false, Some(_)) => self.fail(SessionError::OnlyV15),
                    (LanVersion::V15, _, Some(auth)) => {
                        self.proto = Proto::V15(auth);
                        self.get_challenge(now, auth);
                    }
                    (_, _, None) => self.fail(SessionError::NoCommonAuth),
                }
            }
            (
                Stage::Challenge
                | Stage::Activate
                | Stage::Privilege
                | Stage::Command(_)
                | Stage::Closing,
                Frame::V15 { .. },
            ) if matches!(self.proto, Proto::V15(_)) => {
                let Some(resp) = self.open_v15(&frame) else {
                    return;
                };
                self.on_v15_response(now, resp);
            }
            (_, Frame::V20(f)) => self.handle_v20(now, f.clone()),
            _ => {}
        }
    }

    fn get_challenge(&mut self, now: Instant, auth: u8) {
        self.stage = Stage::Challenge;
        let mut data = vec![auth];
        let mut name = [0u8; 16];
        name[..self.user.len()].copy_from_slice(&self.user);
        data.extend_from_slice(&name);
        let req = Request {
            netfn: NETFN_APP,
            cmd: CMD_GET_SESSION_CHALLENGE,
            seq: self.next_rq_seq(),
            data,
        };
        self.outstanding_v15 = Some(req.clone());
        self.send_raw(now, wire::emit_v15(&req.emit()));
    }

    /// Checks an IPMI v1.5 datagram: the session (once there is one), the MD5 code when the
    /// BMC sent one, and that it answers the outstanding request.
    fn open_v15(&self, frame: &Frame<'_>) -> Option<Response> {
        let Frame::V15 {
            auth_type,
            seq,
            session_id,
            auth_code,
            message,
        } = *frame
        else {
            return None;
        };
        if !matches!(self.stage, Stage::Challenge) && session_id != self.bmc_sid {
            return None;
        }
        if let Some(code) = auth_code {
            let expect =
                super::crypto::v15_auth_code(auth_type, &self.password, session_id, message, seq);
            if !ct_eq(&expect, code) {
                return None;
            }
        }
        let resp = Response::parse(message).ok()?;
        let req = self.outstanding_v15.as_ref()?;
        (resp.seq == req.seq & 0x3f && resp.cmd == req.cmd).then_some(resp)
    }

    fn on_v15_response(&mut self, now: Instant, resp: Response) {
        self.outstanding = None;
        self.outstanding_v15 = None;
        self.deadline = None;
        self.tries = 0;
        let Proto::V15(auth) = self.proto else {
            return;
        };
        match self.stage {
            Stage::Challenge => {
                if matches!(resp.cc, 0x81..=0x83) {
                    return self.fail(SessionError::Authentication);
                }
                if resp.cc != 0 || resp.data.len() < 20 {
                    return self.fail(completion("Get Session Challenge", resp.cc));
                }
                // The temporary session id until Activate Session answers.
                self.bmc_sid =
                    u32::from_le_bytes([resp.data[0], resp.data[1], resp.data[2], resp.data[3]]);
                let mut data = vec![auth, PRIV_ADMIN];
                data.extend_from_slice(&resp.data[4..20]);
                let mut first = [0u8; 4];
                while u32::from_le_bytes(first) == 0 {
                    self.rng.fill(&mut first);
                }
                data.extend_from_slice(&first);
                // The BMC answers with this number in its session headers; ours are set by
                // the Activate Session answer.
                self.stage = Stage::Activate;
                let req = Request {
                    netfn: NETFN_APP,
                    cmd: CMD_ACTIVATE_SESSION,
                    seq: self.next_rq_seq(),
                    data,
                };
                let msg = req.emit();
                let code =
                    super::crypto::v15_auth_code(auth, &self.password, self.bmc_sid, &msg, 0);
                self.outstanding_v15 = Some(req);
                self.send_raw(
                    now,
                    wire::emit_v15_session(auth, 0, self.bmc_sid, Some(&code), &msg),
                );
            }
            Stage::Activate => {
                if resp.cc == 0x86 {
                    return self.fail(SessionError::Privilege(
                        "ADMINISTRATOR exceeds the user's limit",
                    ));
                }
                if resp.cc != 0 || resp.data.len() < 10 {
                    return self.fail(completion("Activate Session", resp.cc));
                }
                self.proto = Proto::V15(if resp.data[0] & 0x0f == wire::AUTH_NONE {
                    wire::AUTH_NONE
                } else {
                    auth
                });
                self.bmc_sid =
                    u32::from_le_bytes([resp.data[1], resp.data[2], resp.data[3], resp.data[4]]);
                // Our first session message carries the BMC's "initial inbound sequence
                // number" (what ipmitool -I lan does; `seal` adds the 1).
                let first =
                    u32::from_le_bytes([resp.data[5], resp.data[6], resp.data[7], resp.data[8]]);
                self.out_seq = first.wrapping_sub(1);
                self.raise_privilege(now);
            }
            _ => self.on_response(resp),
        }
    }

    fn handle_v20(&mut self, now: Instant, f: wire::V20Frame<'_>) {
        match (&self.stage, f.payload_type) {
            (Stage::OpenSession, PayloadType::OpenSessionResponse) => {
                let Ok(r) = wire::OpenSessionResponse::parse(f.payload) else {
                    return;
                };
                if r.console_session_id != self.console_sid {
                    return;
                }
                if r.status != 0 {
                    return self.fail(open_status_error(self.suite, r.status));
                }
                if r.algorithms != self.suite.algorithms() || r.bmc_session_id == 0 {
                    return self.fail(SessionError::CipherSuite(self.suite.id(), 0));
                }
                self.bmc_sid = r.bmc_session_id;
                self.stage = Stage::Rakp1;
                let rakp1 = wire::Rakp1 {
                    tag: 1,
                    bmc_session_id: self.bmc_sid,
                    console_random: self.console_random,
                    role: PRIV_ADMIN | ROLE_NAME_ONLY,
                    user: &self.user,
                };
                let bytes = wire::emit_v20_plain(PayloadType::Rakp1, &rakp1.emit());
                self.send_raw(now, bytes);
            }
            (Stage::Rakp1, PayloadType::Rakp2) => {
                let Ok(r) = wire::Rakp2::parse(f.payload) else {
                    return;
                };
                if r.console_session_id != self.console_sid {
                    return;
                }
                if r.status != 0 {
                    return self.fail(rakp_status_error(r.status));
                }
                self.bmc_random = r.bmc_random;
                self.bmc_guid = r.bmc_guid;
                let ex = self.exchange();
                let expect = ex.rakp2_code(self.suite, &self.password);
                if !ct_eq(&expect, r.auth_code) {
                    // Tell the BMC, so it frees the session slot now.
                    let rakp3 = wire::emit_rakp3(2, 0x02, self.bmc_sid, &[]);
                    let bytes = wire::emit_v20_plain(PayloadType::Rakp3, &rakp3);
                    self.transmit.push_back(bytes);
                    return self.fail(SessionError::Authentication);
                }
                let code = ex.rakp3_code(self.suite, &self.password);
                let sik = ex.sik(self.suite, &self.password);
                self.stage = Stage::Rakp3 { sik };
                let rakp3 = wire::emit_rakp3(2, 0, self.bmc_sid, &code);
                let bytes = wire::emit_v20_plain(PayloadType::Rakp3, &rakp3);
                self.send_raw(now, bytes);
            }
            (Stage::Rakp3 { sik }, PayloadType::Rakp4) => {
                let Ok(r) = wire::Rakp4::parse(f.payload) else {
                    return;
                };
                if r.console_session_id != self.console_sid {
                    return;
                }
                if r.status != 0 {
                    return self.fail(rakp_status_error(r.status));
                }
                let sik = sik.clone();
                if !ct_eq(&self.exchange().rakp4_icv(self.suite, &sik), r.icv) {
                    return self.fail(SessionError::Protocol("RAKP 4 integrity check failed"));
                }
                self.keys = Some(SessionKeys::derive(self.suite, &sik));
                self.raise_privilege(now);
            }
            (Stage::Ready | Stage::Command(_), PayloadType::Sol) => {
                if let Some(plain) = self.open_payload(&f) {
                    self.events.push_back(Event::Sol(plain));
                }
            }
            (Stage::Privilege | Stage::Command(_) | Stage::Closing, PayloadType::Ipmi) => {
                let Some(resp) = self.open(&f) else {
                    return;
                };
                let Some(Outstanding::Sealed(req)) = &self.outstanding else {
                    return;
                };
                if resp.seq != req.seq & 0x3f || resp.cmd != req.cmd {
                    return;
                }
                self.outstanding = None;
                self.deadline = None;
                self.tries = 0;
                self.on_response(resp);
            }
            _ => {}
        }
    }

    fn on_response(&mut self, resp: Response) {
        match std::mem::replace(&mut self.stage, Stage::Ready) {
            Stage::Privilege => match resp.cc {
                0 => self.events.push_back(Event::Established),
                0x80..=0x82 => self.fail(SessionError::Privilege(
                    "Set Session Privilege Level to ADMINISTRATOR was refused",
                )),
                cc => self.fail(completion("Set Session Privilege Level", cc)),
            },
            Stage::Command(cmd) => {
                if resp.cc == 0xd4 {
                    return self.fail(SessionError::Privilege("insufficient privilege"));
                }
                if let (Command::Raw(_), 1..) = (cmd, resp.cc) {
                    let data = resp.data;
                    let cc = resp.cc;
                    return self
                        .events
                        .push_back(Event::Answer(Answer::Raw { cc, data }));
                }
                if resp.cc != 0 {
                    return self.fail(completion(cmd.name(), resp.cc));
                }
                match cmd.answer(&resp.data) {
                    Ok(a) => self.events.push_back(Event::Answer(a)),
                    Err(e) => self.fail(e),
                }
            }
            Stage::Closing => self.finish(Event::Closed),
            other => self.stage = other,
        }
    }

    /// Checks and decrypts an incoming session message.
    fn open(&self, f: &wire::V20Frame<'_>) -> Option<Response> {
        Response::parse(&self.open_payload(f)?).ok()
    }

    /// Checks and decrypts an incoming session payload.
    fn open_payload(&self, f: &wire::V20Frame<'_>) -> Option<Vec<u8>> {
        let keys = self.keys.as_ref()?;
        if f.session_id != self.console_sid || !f.authenticated {
            return None;
        }
        keys.verify(f.integrity_data, f.auth_code).ok()?;
        if f.encrypted {
            keys.decrypt(f.payload).ok()
        } else {
            Some(f.payload.to_vec())
        }
    }

    /// Sends one Serial-over-LAN packet, sealed like a request. Not retransmitted here: the
    /// SOL layer (`super::sol`) retransmits until the BMC acknowledges. Ignored outside an
    /// RMCP+ session.
    pub fn send_sol(&mut self, packet: &[u8]) {
        if !matches!(self.proto, Proto::V20) || !matches!(self.stage, Stage::Ready) {
            return;
        }
        let bytes = self.seal_payload(PayloadType::Sol, packet);
        self.transmit.push_back(bytes);
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            console_session_id: self.console_sid,
            bmc_session_id: self.bmc_sid,
            console_random: &self.console_random,
            bmc_random: &self.bmc_random,
            bmc_guid: &self.bmc_guid,
            role: PRIV_ADMIN | ROLE_NAME_ONLY,
            user: &self.user,
        }
    }

    fn open_session(&mut self, now: Instant) {
        self.stage = Stage::OpenSession;
        let req = wire::OpenSessionRequest {
            tag: 0,
            max_privilege: PRIV_ADMIN,
            console_session_id: self.console_sid,
            algorithms: self.suite.algorithms(),
        };
        let bytes = wire::emit_v20_plain(PayloadType::OpenSessionRequest, &req.emit());
        self.send_raw(now, bytes);
    }

    /// The session is up at USER privilege: ask for ADMINISTRATOR.
    fn raise_privilege(&mut self, now: Instant) {
        self.stage = Stage::Privilege;
        let req = Request {
            netfn: NETFN_APP,
            cmd: CMD_SET_SESSION_PRIVILEGE,
            seq: self.next_rq_seq(),
            data: vec![PRIV_ADMIN],
        };
        self.send_sealed(now, req);
    }

    fn next_rq_seq(&mut self) -> u8 {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        self.rq_seq
    }

    fn send_raw(&mut self, now: Instant, bytes: Vec<u8>) {
        self.transmit.push_back(bytes.clone());
        self.outstanding = Some(Outstanding::Raw(bytes));
        self.tries = 0;
        self.deadline = Some(now + self.limits.timeout);
    }

    fn send_sealed(&mut self, now: Instant, req: Request) {
        self.outstanding_v15 = Some(req.clone());
        let bytes = self.seal(&req);
        self.transmit.push_back(bytes);
        self.outstanding = Some(Outstanding::Sealed(req));
        self.tries = 0;
        self.deadline = Some(now + self.limits.timeout);
    }

    /// Encrypts and signs a request with the next session sequence number.
    fn seal(&mut self, req: &Request) -> Vec<u8> {
        if let Proto::V15(auth) = self.proto {
            self.out_seq = self.out_seq.wrapping_add(1).max(1);
            let msg = req.emit();
            let code = (auth != wire::AUTH_NONE).then(|| {
                super::crypto::v15_auth_code(auth, &self.password, self.bmc_sid, &msg, self.out_seq)
            });
            return wire::emit_v15_session(auth, self.out_seq, self.bmc_sid, code.as_ref(), &msg);
        }
        self.seal_payload(PayloadType::Ipmi, &req.emit())
    }

    /// Encrypts and signs an RMCP+ payload with the next session sequence number.
    fn seal_payload(&mut self, payload_type: PayloadType, plain: &[u8]) -> Vec<u8> {
        // The keys exist in every stage that sends sealed requests (set before Privilege).
        let Some(keys) = self.keys.clone() else {
            return Vec::new();
        };
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        let mut iv = [0u8; 16];
        self.rng.fill(&mut iv);
        let sealed = keys.encrypt(iv, plain);
        wire::emit_v20(
            payload_type,
            true,
            self.bmc_sid,
            self.out_seq,
            &sealed,
            keys.suite.icv_len(),
            |covered| keys.sign(covered),
        )
    }

    fn stage_name(&self) -> &'static str {
        match self.stage {
            Stage::AuthCaps { .. } => "Get Channel Authentication Capabilities",
            Stage::Challenge => "Get Session Challenge",
            Stage::Activate => "Activate Session",
            Stage::OpenSession => OPEN_SESSION,
            Stage::Rakp1 => "RAKP 1",
            Stage::Rakp3 { .. } => "RAKP 3",
            Stage::Privilege => "Set Session Privilege Level",
            Stage::Command(c) => c.name(),
            Stage::Ready | Stage::Done => "nothing",
            Stage::Closing => "Close Session",
        }
    }

    fn fail(&mut self, e: SessionError) {
        self.finish(Event::Failed(e));
    }

    fn finish(&mut self, event: Event) {
        self.stage = Stage::Done;
        self.outstanding = None;
        self.deadline = None;
        self.events.push_back(event);
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RMCP+ status codes of Open Session (IPMI v2.0 table 13-15).
fn open_status_error(suite: Suite, status: u8) -> SessionError {
    match status {
        0x04..=0x07 | 0x10 | 0x11 => SessionError::CipherSuite(suite.id(), status),
        _ => rakp_status_error(status),
    }
}

fn rakp_status_error(status: u8) -> SessionError {
    match status {
        0x0d | 0x0f | 0x02 => SessionError::Authentication,
        0x09 => SessionError::Privilege("role not allowed for this user"),
        other => SessionError::Refused(other),
    }
}

fn completion(cmd: &'static str, cc: u8) -> SessionError {
    let meaning = match cc {
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc3 => "timeout in the BMC",
        0xc9 => "parameter out of range",
        0xcc => "invalid data field",
        0xd4 => "insufficient privilege",
        0xd5 => "not supported in present state",
        0xd6 => "sub-function disabled or unavailable",
        0x80 => "parameter not supported",
        0x81 => "set in progress",
        _ => "unspecified",
    };
    SessionError::Completion { cmd, cc, meaning }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
