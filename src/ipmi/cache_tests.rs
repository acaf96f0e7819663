//! The session cache against drover's test BMC on a UDP socket of 127.0.0.1, counting the
//! RMCP+ Open Session requests the BMC receives (the interop proof against ipmi_sim is in
//! `integration/ipmi.rs`).

use super::*;
use crate::ipmi::core::{LanVersion, Limits};
use crate::ipmi::crypto::Suite;
use crate::ipmi::fake_bmc::FakeBmc;
use crate::store::model::Secret;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The test BMC answering on its own thread until dropped.
struct Bmc {
    port: u16,
    state: Arc<Mutex<FakeBmc>>,
    opens: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bmc {
    fn start() -> Bmc {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(FakeBmc::new(Suite::Sha1)));
        let opens = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, opens, stop) = (state.clone(), opens.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    // RMCP header, then auth type 06h (RMCP+) and payload type 10h.
                    if n > 5 && buf[4] == 0x06 && buf[5] & 0x3f == 0x10 {
                        opens.fetch_add(1, Ordering::Relaxed);
                    }
                    let reply = state.lock().unwrap().answer(&buf[..n]);
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })
        };
        Bmc {
            port,
            state,
            opens,
            stop,
            thread: Some(thread),
        }
    }

    fn access(&self) -> BmcAccess {
        BmcAccess {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "admin".into(),
            password: Secret::new("secret".into()),
        }
    }

    fn opens(&self) -> usize {
        self.opens.load(Ordering::Relaxed)
    }

    fn closed(&self) -> bool {
        self.state.lock().unwrap().closed
    }

    /// A BMC restart: every session is forgotten, the chassis stays as it was.
    fn restart(&self) {
        let mut s = self.state.lock().unwrap();
        let power = s.power;
        *s = FakeBmc::new(Suite::Sha1);
        s.power = power;
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn dial() -> Dial {
    Dial {
        suites: vec![Suite::Sha1],
        version: LanVersion::V20,
        limits: Limits {
            timeout: Duration::from_millis(100),
            retries: 1,
        },
    }
}

const STATUS: &[Command] = &[Command::ChassisStatus];

fn power(cache: &SessionCache, bmc: &Bmc) -> bool {
    match cache.run(&bmc.access(), &dial(), STATUS).unwrap()[..] {
        [Answer::Power(on)] => on,
        ref other => panic!("unexpected answers {other:?}"),
    }
}

#[test]
fn repeated_requests_reuse_one_session_and_shutdown_closes_it() {
    let bmc = Bmc::start();
    let cache = SessionCache::new(4, Duration::from_secs(600));
    assert!(!power(&cache, &bmc));
    bmc.state.lock().unwrap().power = true;
    for _ in 0..5 {
        assert!(power(&cache, &bmc));
    }
    assert_eq!(bmc.opens(), 1, "six requests, one session");
    assert!(!bmc.closed());
    cache.close_all();
    assert!(bmc.closed(), "Close Session at shutdown");
    // After shutdown began, requests still work, in one-shot sessions.
    assert!(power(&cache, &bmc));
    assert_eq!(bmc.opens(), 2);
}

#[test]
fn a_session_the_bmc_dropped_is_opened_again_once() {
    let bmc = Bmc::start();
    let cache = SessionCache::new(4, Duration::from_secs(600));
    assert!(!power(&cache, &bmc));
    bmc.restart();
    bmc.state.lock().unwrap().power = true;
    // The old session times out; the request logs in again and succeeds.
    assert!(power(&cache, &bmc));
    assert_eq!(bmc.opens(), 2);
    // And the new session is the one reused from now on.
    assert!(power(&cache, &bmc));
    assert_eq!(bmc.opens(), 2);
}

#[test]
fn a_dead_bmc_fails_after_one_new_login() {
    let bmc = Bmc::start();
    let cache = SessionCache::new(4, Duration::from_secs(600));
    power(&cache, &bmc);
    let access = bmc.access();
    drop(bmc);
    let e = cache.run(&access, &dial(), STATUS).unwrap_err();
    assert!(
        matches!(e.class(), "timeout" | "unreachable"),
        "unexpected error {e}"
    );
}

#[test]
fn concurrent_users_of_one_bmc_take_turns_in_one_session() {
    let bmc = Bmc::start();
    let cache = SessionCache::new(4, Duration::from_secs(600));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..5 {
                    // Interleaved sequence numbers would fail the BMC's checks or ours.
                    assert!(!power(&cache, &bmc));
                }
            });
        }
    });
    assert_eq!(bmc.opens(), 1);
}

#[test]
fn eviction_idle_timeout_and_changed_settings_close_sessions() {
    let (a, b) = (Bmc::start(), Bmc::start());
    // Room for one session: using b evicts a's.
    let cache = SessionCache::new(1, Duration::from_secs(600));
    power(&cache, &a);
    power(&cache, &b);
    assert!(a.closed(), "the evicted session is closed");
    assert!(!b.closed());
    // b's settings changed (here: the node is gone): its session is closed.
    cache.retain(&[a.access()]);
    assert!(b.closed());

    // A session idle for session-idle is closed by the sweep; the next request opens one.
    let c = Bmc::start();
    let cache = SessionCache::new(4, Duration::from_nanos(1));
    power(&cache, &c);
    cache.close_idle();
    assert!(c.closed());
    power(&cache, &c);
    assert_eq!(c.opens(), 2);

    // session-idle 0: nothing is cached, every request has its own session.
    let d = Bmc::start();
    let cache = SessionCache::new(4, Duration::ZERO);
    power(&cache, &d);
    assert!(d.closed());
    power(&cache, &d);
    assert_eq!(d.opens(), 2);
}

#[test]
fn a_changed_password_is_another_session() {
    let bmc = Bmc::start();
    let cache = SessionCache::new(4, Duration::from_secs(600));
    power(&cache, &bmc);
    let mut wrong = bmc.access();
    wrong.password = Secret::new("not-it".into());
    // Had the cache reused the open session, this would have succeeded.
    let e = cache.run(&wrong, &dial(), STATUS).unwrap_err();
    assert_eq!(e.class(), "authentication");
    assert_eq!(bmc.opens(), 2, "a login of its own");
    assert!(
        !format!("{cache:?}").contains("secret"),
        "no passwords in debug output"
    );
}
