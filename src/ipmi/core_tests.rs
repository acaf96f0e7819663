//! Session scenarios on virtual time against a fake BMC built from the same codec and
//! crypto (the interop proof is `integration/ipmi.rs` against ipmi_sim and ipmitool).

use super::*;
use crate::ipmi::crypto::{v15_auth_code, Exchange, SessionKeys, Suite};
use crate::ipmi::wire::{self, Frame, PayloadType, Request, Response};

/// A counter as randomness: reproducible runs.
struct Counter(u8);

impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(1),
    retries: 2,
};

/// The BMC side: one user, power state, boot device.
struct FakeBmc {
    suite: Suite,
    user: &'static [u8],
    password: &'static [u8],
    power: bool,
    boot: u8,
    bmc_sid: u32,
    console_sid: u32,
    console_random: [u8; 16],
    role: u8,
    keys: Option<SessionKeys>,
    privilege_raised: bool,
    /// The user may not go above USER: Set Session Privilege Level answers 81h.
    user_only: bool,
    closed: bool,
    /// An old BMC: IPMI v1.5 with MD5 only, rejecting the v2.0 bit of Get Channel
    /// Authentication Capabilities.
    v15_only: bool,
    /// IPMI v1.5: the sequence number expected on the console's next message.
    v15_expect: u32,
}

impl FakeBmc {
    fn new(suite: Suite) -> FakeBmc {
        FakeBmc {
            suite,
            user: b"admin",
            password: b"secret",
            power: false,
            boot: 0,
            bmc_sid: 0x0a0b0c0d,
            console_sid: 0,
            console_random: [0; 16],
            role: 0,
            keys: None,
            privilege_raised: false,
            user_only: false,
            closed: false,
            v15_only: false,
            v15_expect: 0,
        }
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            console_session_id: self.console_sid,
            bmc_session_id: self.bmc_sid,
            console_random: &self.console_random,
            bmc_random: &[9; 16],
            bmc_guid: &[7; 16],
            role: self.role,
            user: self.user,
        }
    }

    fn answer(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let auth = self.keys.as_ref().map_or(0, |k| k.suite.icv_len());
        match wire::parse(datagram, auth).ok()? {
            Frame::V15 {
                auth_type,
                seq,
                session_id,
                auth_code,
                message,
            } => self.answer_v15(auth_type, seq, session_id, auth_code, message),
            Frame::V20(f) => match f.payload_type {
                PayloadType::OpenSessionRequest => {
                    let p = f.payload;
                    self.console_sid = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                    let mut out = vec![p[0], 0, 4, 0];
                    out.extend_from_slice(&self.console_sid.to_le_bytes());
                    out.extend_from_slice(&self.bmc_sid.to_le_bytes());
                    let a = self.suite.algorithms();
                    for (k, alg) in [(0, a.auth), (1, a.integrity), (2, a.confidentiality)] {
                        out.extend_from_slice(&[k, 0, 0, 8, alg, 0, 0, 0]);
                    }
                    Some(wire::emit_v20_plain(PayloadType::OpenSessionResponse, &out))
                }
                PayloadType::Rakp1 => {
                    let p = f.payload;
                    self.console_random.copy_from_slice(&p[8..24]);
                    self.role = p[24];
                    assert_eq!(&p[28..], self.user);
                    let mut out = vec![p[0], 0, 0, 0];
                    out.extend_from_slice(&self.console_sid.to_le_bytes());
                    out.extend_from_slice(&[9; 16]);
                    out.extend_from_slice(&[7; 16]);
                    out.extend_from_slice(&self.exchange().rakp2_code(self.suite, self.password));
                    Some(wire::emit_v20_plain(PayloadType::Rakp2, &out))
                }
                PayloadType::Rakp3 => {
                    let p = f.payload;
                    if p[1] != 0 {
                        return None;
                    }
                    let ok = p[8..] == self.exchange().rakp3_code(self.suite, self.password)[..];
                    let sik = self.exchange().sik(self.suite, self.password);
                    let mut out = vec![p[0], if ok { 0 } else { 0x0f }, 0, 0];
                    out.extend_from_slice(&self.console_sid.to_le_bytes());
                    out.extend_from_slice(&self.exchange().rakp4_icv(self.suite, &sik));
                    self.keys = Some(SessionKeys::derive(self.suite, &sik));
                    Some(wire::emit_v20_plain(PayloadType::Rakp4, &out))
                }
                PayloadType::Ipmi => {
                    let keys = self.keys.clone()?;
                    keys.verify(f.integrity_data, f.auth_code).ok()?;
                    assert!(f.encrypted);
                    let msg = keys.decrypt(f.payload).ok()?;
                    let req = parse_request(&msg);
                    let (cc, data) = self.execute(&req);
                    let resp = Response {
                        netfn: req.netfn + 1,
                        cmd: req.cmd,
                        seq: req.seq,
                        cc,
                        data,
                    };
                    let sealed = keys.encrypt([3; 16], &resp.emit());
                    Some(wire::emit_v20(
                        PayloadType::Ipmi,
                        true,
                        self.console_sid,
                        1,
                        &sealed,
                        keys.suite.icv_len(),
                        |c| keys.sign(c),
                    ))
                }
                _ => None,
            },
            Frame::Other => None,
        }
    }

    fn answer_v15(
        &mut self,
        auth_type: u8,
        seq: u32,
        session_id: u32,
        auth_code: Option<&[u8]>,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        let req = parse_request(message);
        let reply = |bmc: &FakeBmc, sid: u32, seq: u32, cc: u8, data: Vec<u8>| {
            let resp = Response {
                netfn: req.netfn + 1,
                cmd: req.cmd,
                seq: req.seq,
                cc,
                data,
            };
            let msg = resp.emit();
            if sid == 0 {
                return wire::emit_v15(&msg);
            }
            let code = v15_auth_code(wire::AUTH_MD5, bmc.password, sid, &msg, seq);
            wire::emit_v15_session(wire::AUTH_MD5, seq, sid, Some(&code), &msg)
        };
        match (req.netfn, req.cmd) {
            (0x06, 0x38) => {
                if self.v15_only && req.data[0] & 0x80 != 0 {
                    return Some(reply(self, 0, 0, 0xcc, vec![]));
                }
                let data = if self.v15_only {
                    vec![0x01, 0x04, 0x04, 0x00, 0, 0, 0, 0]
                } else {
                    vec![0x01, 0x80 | 0x14, 0x04, 0x03, 0, 0, 0, 0]
                };
                Some(reply(self, 0, 0, 0, data))
            }
            (0x06, 0x39) => {
                assert_eq!(auth_type, wire::AUTH_NONE);
                assert_eq!(req.data[0], wire::AUTH_MD5);
                assert_eq!(&req.data[1..1 + self.user.len()], self.user);
                let mut data = 0x5555_0001u32.to_le_bytes().to_vec();
                data.extend_from_slice(&[0x42; 16]);
                Some(reply(self, 0, 0, 0, data))
            }
            (0x06, 0x3a) => {
                assert_eq!((session_id, seq), (0x5555_0001, 0));
                let expect = v15_auth_code(auth_type, self.password, session_id, message, 0);
                if auth_code != Some(&expect[..]) {
                    return None; // a v1.5 BMC ignores a wrong password
                }
                assert_eq!(req.data[2..18], [0x42; 16]);
                let first = [req.data[18], req.data[19], req.data[20], req.data[21]];
                self.v15_expect = 100;
                self.bmc_sid = 0x0707_0707;
                let mut data = vec![wire::AUTH_MD5];
                data.extend_from_slice(&self.bmc_sid.to_le_bytes());
                data.extend_from_slice(&self.v15_expect.to_le_bytes());
                data.push(4);
                Some(reply(self, session_id, u32::from_le_bytes(first), 0, data))
            }
            _ => {
                assert_eq!(session_id, self.bmc_sid);
                let expect = v15_auth_code(auth_type, self.password, session_id, message, seq);
                // The spec's sliding window: up to 8 ahead of the next expected number.
                if auth_code != Some(&expect[..])
                    || !(self.v15_expect..self.v15_expect + 8).contains(&seq)
                {
                    return None;
                }
                self.v15_expect = seq + 1;
                let (cc, data) = self.execute(&req);
                Some(reply(self, session_id, 7, cc, data))
            }
        }
    }

    fn execute(&mut self, req: &Request) -> (u8, Vec<u8>) {
        match (req.netfn, req.cmd) {
            (0x06, 0x3b) if self.user_only => (0x81, vec![]),
            (0x06, 0x3b) => {
                self.privilege_raised = true;
                (0, vec![req.data[0]])
            }
            (0x06, 0x3c) => {
                self.closed = true;
                (0, vec![])
            }
            (0x00, _) if !self.privilege_raised => (0xd4, vec![]),
            (0x00, 0x01) => (0, vec![u8::from(self.power), 0, 0, 0]),
            (0x00, 0x02) => {
                self.power = req.data[0] == 1;
                (0, vec![])
            }
            (0x00, 0x08) => {
                self.boot = req.data[2];
                (0, vec![])
            }
            (0x00, 0x09) => (0, vec![1, 5, 0x80, self.boot, 0, 0, 0]),
            _ => (0xc1, vec![]),
        }
    }
}

fn parse_request(m: &[u8]) -> Request {
    assert_eq!(wire::checksum(&m[..2]), m[2]);
    assert_eq!(wire::checksum(&m[3..m.len() - 1]), m[m.len() - 1]);
    Request {
        netfn: m[1] >> 2,
        cmd: m[5],
        seq: m[4] >> 2,
        data: m[6..m.len() - 1].to_vec(),
    }
}

/// Runs `cmds` through a session against `bmc`, dropping the datagrams whose index (counted
/// over everything the console sends) is in `drop`. Returns the events.
fn drive(
    bmc: &mut FakeBmc,
    user: &[u8],
    pw: &[u8],
    cmds: &[Command],
    drop: &[usize],
) -> Vec<Event> {
    drive_version(bmc, user, pw, cmds, drop, LanVersion::Auto)
}

fn drive_version(
    bmc: &mut FakeBmc,
    user: &[u8],
    pw: &[u8],
    cmds: &[Command],
    drop: &[usize],
    version: LanVersion,
) -> Vec<Event> {
    let mut now = Instant::now();
    let login = Login {
        user,
        password: pw,
        suite: bmc.suite,
        version,
    };
    let mut s = Session::new(now, &login, LIMITS, Counter(0));
    let mut pending = cmds.iter();
    let mut events = Vec::new();
    let mut sent = 0;
    for _ in 0..100 {
        while let Some(d) = s.poll_transmit() {
            sent += 1;
            if drop.contains(&(sent - 1)) {
                continue;
            }
            if let Some(reply) = bmc.answer(&d) {
                s.handle_input(now, &reply);
            }
        }
        while let Some(e) = s.poll_event() {
            match &e {
                Event::Established | Event::Answer(_) => match pending.next() {
                    Some(c) => s.request(now, *c),
                    None => s.close(now),
                },
                Event::Failed(_) | Event::Closed => {
                    events.push(e);
                    return events;
                }
            }
            events.push(e);
        }
        if !s.has_transmit() {
            now = s.poll_timeout().expect("a session waiting for nothing");
            s.handle_timeout(now);
        }
    }
    panic!("session did not finish: {events:?}");
}

#[test]
fn full_session_both_suites() {
    for suite in [Suite::Sha1, Suite::Sha256] {
        let mut bmc = FakeBmc::new(suite);
        let ev = drive(
            &mut bmc,
            b"admin",
            b"secret",
            &[
                Command::ChassisStatus,
                Command::ChassisControl(Control::On),
                Command::ChassisStatus,
                Command::SetBootDevice(BootDevice::Pxe),
                Command::GetBootDevice,
            ],
            &[],
        );
        assert_eq!(
            ev,
            [
                Event::Established,
                Event::Answer(Answer::Power(false)),
                Event::Answer(Answer::Done),
                Event::Answer(Answer::Power(true)),
                Event::Answer(Answer::Done),
                Event::Answer(Answer::BootDevice(BootDevice::Pxe)),
                Event::Closed,
            ],
            "{suite:?}"
        );
        assert!(bmc.privilege_raised && bmc.closed);
    }
}

#[test]
fn wrong_password_is_an_authentication_failure() {
    let mut bmc = FakeBmc::new(Suite::Sha1);
    let ev = drive(&mut bmc, b"admin", b"wrong", &[Command::ChassisStatus], &[]);
    assert_eq!(ev, [Event::Failed(SessionError::Authentication)]);
}

#[test]
fn refused_privilege_raise_fails_the_session() {
    let mut bmc = FakeBmc::new(Suite::Sha1);
    bmc.user_only = true;
    let ev = drive(
        &mut bmc,
        b"admin",
        b"secret",
        &[Command::ChassisStatus],
        &[],
    );
    assert!(
        matches!(ev.as_slice(), [Event::Failed(SessionError::Privilege(_))]),
        "{ev:?}"
    );
}

#[test]
fn lost_datagrams_are_retransmitted() {
    // Lose the first Open Session request and the first Chassis Status request.
    let mut bmc = FakeBmc::new(Suite::Sha1);
    let ev = drive(
        &mut bmc,
        b"admin",
        b"secret",
        &[Command::ChassisStatus],
        &[1, 5],
    );
    assert_eq!(ev[1], Event::Answer(Answer::Power(false)));
    assert_eq!(ev.last(), Some(&Event::Closed));
}

#[test]
fn silence_is_a_timeout_after_the_retries() {
    let mut now = Instant::now();
    let login = Login {
        user: b"admin",
        password: b"pw",
        suite: Suite::Sha1,
        version: LanVersion::Auto,
    };
    let mut s = Session::new(now, &login, LIMITS, Counter(0));
    let mut sent = 0;
    loop {
        while s.poll_transmit().is_some() {
            sent += 1;
        }
        if let Some(e) = s.poll_event() {
            assert_eq!(
                e,
                Event::Failed(SessionError::Timeout(
                    "Get Channel Authentication Capabilities"
                ))
            );
            break;
        }
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
    }
    assert_eq!(sent, 1 + LIMITS.retries as usize);
}

#[test]
fn garbage_is_dropped_without_panicking() {
    let now = Instant::now();
    let login = Login {
        user: b"admin",
        password: b"pw",
        suite: Suite::Sha1,
        version: LanVersion::Auto,
    };
    let mut s = Session::new(now, &login, LIMITS, Counter(0));
    let _ = s.poll_transmit();
    for n in 0..64u8 {
        let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0x06).collect();
        s.handle_input(now, &junk);
    }
    assert_eq!(s.poll_event(), None);
}

#[test]
fn ipmi15_fallback_with_md5() {
    let mut bmc = FakeBmc::new(Suite::Sha1);
    bmc.v15_only = true;
    // Datagrams: caps (v2.0 bit, refused), caps, challenge, activate, privilege, control.
    // Lose the first Chassis Control: its retransmission carries the next sequence number.
    let ev = drive(
        &mut bmc,
        b"admin",
        b"secret",
        &[Command::ChassisControl(Control::On), Command::ChassisStatus],
        &[5],
    );
    assert_eq!(
        ev,
        [
            Event::Established,
            Event::Answer(Answer::Done),
            Event::Answer(Answer::Power(true)),
            Event::Closed,
        ]
    );
    assert!(bmc.privilege_raised && bmc.closed);
}

#[test]
fn ipmi15_wrong_password_and_version_limits() {
    let mut bmc = FakeBmc::new(Suite::Sha1);
    bmc.v15_only = true;
    let ev = drive(&mut bmc, b"admin", b"wrong", &[Command::ChassisStatus], &[]);
    assert_eq!(ev, [Event::Failed(SessionError::AuthenticationV15)]);
    let ev = drive_version(
        &mut bmc,
        b"admin",
        b"secret",
        &[Command::ChassisStatus],
        &[],
        LanVersion::V20,
    );
    assert_eq!(ev, [Event::Failed(SessionError::NoIpmi20)]);
    // A BMC with both speaks v1.5 when asked to.
    let mut both = FakeBmc::new(Suite::Sha1);
    let ev = drive_version(
        &mut both,
        b"admin",
        b"secret",
        &[Command::ChassisStatus],
        &[],
        LanVersion::V15,
    );
    assert_eq!(ev[1], Event::Answer(Answer::Power(false)));
    assert!(both.keys.is_none(), "no RMCP+ handshake happened");
}
