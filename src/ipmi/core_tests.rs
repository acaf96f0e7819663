//! Session scenarios on virtual time against a fake BMC built from the same codec and
//! crypto (the interop proof is `integration/ipmi.rs` against ipmi_sim and ipmitool).

use super::*;
use crate::ipmi::crypto::{Exchange, SessionKeys, Suite};
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
            Frame::V15 { message, .. } => {
                assert_eq!(message[5], 0x38);
                let resp = Response {
                    netfn: 0x07,
                    cmd: 0x38,
                    seq: 0,
                    cc: 0,
                    data: vec![0x01, 0x80 | 0x14, 0x04, 0x03, 0, 0, 0, 0],
                };
                Some(wire::emit_v15(&resp.emit()))
            }
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
                    Some(plain(PayloadType::OpenSessionResponse, &out))
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
                    Some(plain(PayloadType::Rakp2, &out))
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
                    Some(plain(PayloadType::Rakp4, &out))
                }
                PayloadType::Ipmi => {
                    let keys = self.keys.clone()?;
                    keys.verify(f.integrity_data, f.auth_code).ok()?;
                    assert!(f.encrypted);
                    let msg = keys.decrypt(f.payload).ok()?;
                    let req = parse_request(&msg);
                    let (cc, data) = match (req.netfn, req.cmd) {
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
                    };
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
}

fn plain(ty: PayloadType, payload: &[u8]) -> Vec<u8> {
    wire::emit_v20(ty, false, 0, 0, payload, 0, |_| vec![])
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
    let mut now = Instant::now();
    let login = Login {
        user,
        password: pw,
        suite: bmc.suite,
        version: LanVersion::Auto,
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
