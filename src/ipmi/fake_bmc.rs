//! A minimal BMC built from drover's own codec and crypto, for tests only (compiled into the
//! unit tests, and into `integration/ipmi.rs` by path, where `ipmitool` logs in to it with
//! cipher suite 17, which ipmi_sim refuses). One user `admin` / `secret`; chassis power and
//! boot device in memory; RMCP+ (suites 3 and 17) and IPMI v1.5 with MD5. Sessions are
//! trusted to be one at a time; nothing here is hardened.

#![allow(dead_code)]

use crate::ipmi::crypto::{v15_auth_code, Exchange, SessionKeys, Suite};
use crate::ipmi::wire::{self, Frame, PayloadType, Request, Response};

/// The BMC side: one user, power state, boot device.
pub struct FakeBmc {
    pub suite: Suite,
    pub user: &'static [u8],
    pub password: &'static [u8],
    pub power: bool,
    pub boot: u8,
    pub bmc_sid: u32,
    pub console_sid: u32,
    pub console_random: [u8; 16],
    pub role: u8,
    pub keys: Option<SessionKeys>,
    pub privilege_raised: bool,
    /// The user may not go above USER: Set Session Privilege Level answers 81h.
    pub user_only: bool,
    pub closed: bool,
    /// An old BMC: IPMI v1.5 with MD5 only, rejecting the v2.0 bit of Get Channel
    /// Authentication Capabilities.
    pub v15_only: bool,
    /// Answers Get Channel Authentication Capabilities as a forger on the path would, for a
    /// downgrade: no IPMI v2.0, straight password authentication only.
    pub spoofed_caps: bool,
    /// IPMI v1.5 Get Session Challenge requests received (a login is under way).
    pub v15_challenges: u32,
    /// IPMI v1.5: the sequence number expected on the console's next message.
    pub v15_expect: u32,
    /// RMCP+: the session sequence number of the BMC's last message.
    pub out_seq: u32,
}

impl FakeBmc {
    pub fn new(suite: Suite) -> FakeBmc {
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
            spoofed_caps: false,
            v15_challenges: 0,
            v15_expect: 0,
            out_seq: 0,
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

    /// The answer to one datagram from the console, if any.
    pub fn answer(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
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
                    self.out_seq += 1;
                    Some(wire::emit_v20(
                        PayloadType::Ipmi,
                        true,
                        self.console_sid,
                        self.out_seq,
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
                let data = if self.spoofed_caps {
                    vec![0x01, 1 << wire::AUTH_PASSWORD, 0x04, 0x00, 0, 0, 0, 0]
                } else if self.v15_only {
                    vec![0x01, 0x04, 0x04, 0x00, 0, 0, 0, 0]
                } else {
                    vec![0x01, 0x80 | 0x14, 0x04, 0x03, 0, 0, 0, 0]
                };
                Some(reply(self, 0, 0, 0, data))
            }
            (0x06, 0x39) => {
                self.v15_challenges += 1;
                if self.spoofed_caps {
                    return None; // the forger would take the password from here
                }
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
            // Session-less requests this BMC does not know (Get Channel Cipher Suites, ...).
            _ if session_id == 0 => Some(reply(self, 0, 0, 0xc1, vec![])),
            _ => {
                if session_id != self.bmc_sid {
                    return None;
                }
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
