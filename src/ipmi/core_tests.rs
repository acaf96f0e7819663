//! Session scenarios on virtual time against a fake BMC built from the same codec and
//! crypto (the interop proof is `integration/ipmi.rs` against ipmi_sim and ipmitool).

use super::*;
use crate::ipmi::crypto::Suite;
use crate::ipmi::fake_bmc::FakeBmc;

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
                Event::Sol(_) => {}
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
fn ipmi15_session_with_md5() {
    let mut bmc = FakeBmc::new(Suite::Sha1);
    bmc.v15_only = true;
    // Datagrams: caps (v2.0 bit, refused), caps, challenge, activate, privilege, control.
    // Lose the first Chassis Control: its retransmission carries the next sequence number.
    let ev = drive_version(
        &mut bmc,
        b"admin",
        b"secret",
        &[Command::ChassisControl(Control::On), Command::ChassisStatus],
        &[5],
        LanVersion::V15,
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
    let status = [Command::ChassisStatus];
    let ev = drive_version(&mut bmc, b"admin", b"wrong", &status, &[], LanVersion::V15);
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

#[test]
fn auto_never_falls_back_to_ipmi15() {
    // A v1.5-only BMC, and a forged capabilities reply offering only a clear-text password:
    // `auto` reports it and sends no v1.5 login.
    for spoofed in [false, true] {
        let mut bmc = FakeBmc::new(Suite::Sha1);
        bmc.v15_only = !spoofed;
        bmc.spoofed_caps = spoofed;
        let status = [Command::ChassisStatus];
        let ev = drive(&mut bmc, b"admin", b"secret", &status, &[]);
        assert_eq!(
            ev,
            [Event::Failed(SessionError::OnlyV15)],
            "spoofed: {spoofed}"
        );
        assert_eq!(bmc.v15_challenges, 0, "spoofed: {spoofed}");
    }
}

/// A BMC that answers Open Session for suite 17 with the algorithms of another suite (here
/// 3, as one that offers only weaker suites would) is refused: no RAKP message is sent, so
/// no key exchange happens on terms drover did not ask for.
#[test]
fn open_session_answered_with_other_algorithms_is_refused() {
    let mut bmc = FakeBmc::new(Suite::Sha1);
    let now = Instant::now();
    let mut s = Session::new(
        now,
        &Login {
            suite: Suite::Sha256,
            version: LanVersion::V20,
            user: b"admin",
            password: b"secret",
        },
        LIMITS,
        Counter(0),
    );
    let mut failed = None;
    for _ in 0..10 {
        while let Some(d) = s.poll_transmit() {
            if let Some(reply) = bmc.answer(&d) {
                s.handle_input(now, &reply);
            }
        }
        if let Some(Event::Failed(e)) = s.poll_event() {
            failed = Some(e);
            break;
        }
    }
    assert_eq!(failed, Some(SessionError::CipherSuite(17, 0)));
    assert_eq!(
        bmc.console_random, [0; 16],
        "no RAKP message 1 reached the BMC"
    );
}
