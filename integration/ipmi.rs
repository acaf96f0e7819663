//! IPMI power control through the real binary against OpenIPMI's `ipmi_sim` serving LAN BMCs
//! on 127.0.0.1: status/on/off/cycle/reset/soft and bootdev round trips, group credentials,
//! wrong password and unknown user, an unreachable and a silent BMC, 32 BMCs at once,
//! `ipmitool -I lanplus` giving the same answers as drover, and `drover serve` reusing one
//! session per BMC across polls (re-established after a BMC restart, closed at shutdown).
//!
//! Needs `ipmi_sim` (package `openipmi`) and `ipmitool`; without them the tests fail naming
//! the package. No root needed.

mod common;

/// drover's test BMC (`src/ipmi/fake_bmc.rs`), compiled here by path: it names drover's
/// modules as `crate::ipmi::...`, which this alias provides.
mod ipmi {
    pub use drover::ipmi::*;
}
#[path = "../src/ipmi/fake_bmc.rs"]
mod fake_bmc;

use common::bmc::{add_node_with_bmc, free_udp_port, power_cell as cell, BmcSim, PASSWORD, USER};
use common::{require_cmd, Drover};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Adds node `name` with BMC `addr` and the simulator's credentials.
fn add_node(d: &Drover, name: &str, mac: &str, addr: &str) {
    add_node_with_bmc(d, (name, mac), addr, (USER, PASSWORD), &[]);
}

/// `drover node set NODE --bmc-password-file F` with a file holding `password`.
fn set_password(d: &Drover, node: &str, password: &str) {
    let f = d.scratch().join(format!("pw-{node}-{password}"));
    std::fs::write(&f, password).unwrap();
    d.cli_ok(&[
        "node",
        "set",
        node,
        "--bmc-password-file",
        f.to_str().unwrap(),
    ]);
}

/// A config with short timeouts so failure tests end quickly.
fn fast_config(d: &Drover) -> String {
    let p = d.scratch().join("fast.toml");
    std::fs::write(&p, "[power]\ntimeout-ms = 200\nretries = 1\n").unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn power_and_bootdev_round_trips() {
    let sim = BmcSim::start("ipmi-rt");
    let d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:01:01", &sim.address());
    let status = |d: &Drover| cell(&d.cli_ok(&["power", "status", "n1"]), "n1", 3);
    assert_eq!(status(&d), "off");
    let out = d.cli_ok(&["power", "on", "n1"]);
    assert_eq!(cell(&out, "n1", 2), "ok", "{out}");
    assert_eq!(sim.power(), "1");
    assert_eq!(status(&d), "on");
    d.cli_ok(&["power", "off", "n1"]);
    assert_eq!(sim.power(), "0");
    assert_eq!(status(&d), "off");
    d.cli_ok(&["power", "on", "n1"]);
    d.cli_ok(&["power", "cycle", "n1"]);
    d.cli_ok(&["power", "reset", "n1"]);
    d.cli_ok(&["power", "soft", "n1"]);
    let events = std::fs::read_to_string(sim.dir.join("events")).unwrap_or_default();
    assert_eq!(events.lines().collect::<Vec<_>>(), ["reset", "shutdown"]);
    let out = d.cli_ok(&["power", "bootdev", "pxe", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "next boot: pxe", "{out}");
    assert_eq!(sim.boot(), "pxe");
    let out = d.cli_ok(&["power", "bootdev", "disk", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "next boot: disk", "{out}");
    // ipmi_sim's chassis program calls a hard-disk boot "default".
    assert_eq!(sim.boot(), "default");
    // The password is in no output.
    let show = d.cli_ok(&["node", "show", "n1"]) + &d.cli_ok(&["node", "list"]);
    assert!(!show.contains(PASSWORD), "{show}");
    assert!(show.contains(&sim.address()), "{show}");
}

#[test]
fn group_credentials_and_targets() {
    let sim = BmcSim::start("ipmi-grp");
    let d = Drover::new();
    let pw = d.scratch().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    d.cli_ok(&[
        "node",
        "add",
        "g01",
        "--mac",
        "52:54:00:00:02:01",
        "--group",
        "rack",
    ]);
    d.cli_ok(&[
        "node",
        "add",
        "g02",
        "--mac",
        "52:54:00:00:02:02",
        "--group",
        "rack",
    ]);
    d.cli_ok(&[
        "group",
        "set",
        "rack",
        "--bmc-user",
        USER,
        "--bmc-password-file",
        pw.to_str().unwrap(),
    ]);
    // The node's address plus the group's credentials; g02 has no address of its own.
    d.cli_ok(&["node", "set", "g01", "--bmc", &sim.address()]);
    let out = d.cli(&["power", "status", "rack"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "g02 has no BMC address:\n{table}");
    assert_eq!(cell(&table, "g01", 3), "off");
    assert_eq!(cell(&table, "g02", 2), "no-bmc");
    let list = d.cli_ok(&["group", "list"]);
    assert!(list.contains("rack") && !list.contains(PASSWORD), "{list}");
    // A range naming a missing node is an error before anything runs.
    let out = d.cli(&["power", "on", "g[01-03]"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("g03"));
    assert_eq!(sim.power(), "0");
    d.cli_ok(&["power", "on", "g[01-01]"]);
    assert_eq!(sim.power(), "1");
}

#[test]
fn wrong_password_and_unknown_user_are_authentication_failures() {
    let sim = BmcSim::start("ipmi-auth");
    let d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:03:01", &sim.address());
    set_password(&d, "n1", "not-the-password");
    let out = d.cli(&["power", "on", "n1"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert_eq!(cell(&table, "n1", 2), "authentication", "{table}");
    assert!(!table.contains("not-the-password"));
    assert_eq!(sim.power(), "0");
    d.cli_ok(&["node", "set", "n1", "--bmc-user", "nobody"]);
    set_password(&d, "n1", PASSWORD);
    let out = d.cli(&["power", "status", "n1"]);
    assert!(!out.status.success());
    assert_eq!(
        cell(&String::from_utf8_lossy(&out.stdout), "n1", 2),
        "authentication"
    );
}

#[test]
fn unreachable_and_silent_bmcs() {
    let d = Drover::new();
    let config = fast_config(&d);
    // Nothing listens: the kernel answers with ICMP port unreachable.
    add_node(
        &d,
        "gone",
        "52:54:00:00:04:01",
        &format!("127.0.0.1:{}", free_udp_port()),
    );
    // Something listens and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    add_node(&d, "mute", "52:54:00:00:04:02", &addr);
    let out = d.cli(&["power", "status", "gone", "mute", "--config", &config]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert_eq!(cell(&table, "gone", 2), "unreachable", "{table}");
    assert_eq!(cell(&table, "mute", 2), "timeout", "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 2 nodes failed"));
}

#[test]
fn thirty_two_bmcs_at_once() {
    const N: usize = 32;
    let sims: Vec<BmcSim> = (0..N)
        .map(|i| BmcSim::start(&format!("ipmi-32-{i}")))
        .collect();
    let d = Drover::new();
    std::fs::write(d.scratch().join("pw.txt"), PASSWORD).unwrap();
    let mut csv = String::from("name,mac,bmc,bmc_user,bmc_password_file\n");
    for (i, sim) in sims.iter().enumerate() {
        csv += &format!(
            "n{:02},52:54:00:00:05:{:02x},{},{USER},pw.txt\n",
            i + 1,
            i + 1,
            sim.address()
        );
    }
    let csv_path = d.scratch().join("rack.csv");
    std::fs::write(&csv_path, csv).unwrap();
    d.cli_ok(&["node", "import", csv_path.to_str().unwrap()]);
    let out = d.cli_ok(&["power", "on", "n[01-32]", "--parallel", "32", "--rate", "0"]);
    for i in 1..=N {
        assert_eq!(cell(&out, &format!("n{i:02}"), 2), "ok", "{out}");
    }
    assert!(sims.iter().all(|s| s.power() == "1"));
    let out = d.cli_ok(&["power", "status", "n[01-32]"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" on")).count(),
        N,
        "{out}"
    );
    // Paced power-on still reaches every node.
    d.cli_ok(&["power", "off", "n[01-32]"]);
    d.cli_ok(&["power", "on", "n[01-08]", "--rate", "50"]);
    assert_eq!(sims.iter().filter(|s| s.power() == "1").count(), 8);
}

#[test]
fn ipmitool_gives_the_same_answers() {
    let sim = BmcSim::start("ipmi-ref");
    let d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:06:01", &sim.address());
    for action in ["on", "off"] {
        d.cli_ok(&["power", action, "n1"]);
        let ours = cell(&d.cli_ok(&["power", "status", "n1"]), "n1", 3);
        let theirs = sim.ipmitool(&["chassis", "power", "status"]);
        assert_eq!(theirs.trim(), format!("Chassis Power is {ours}"));
    }
    // ipmitool switches power; drover sees it.
    sim.ipmitool(&["chassis", "power", "on"]);
    assert_eq!(cell(&d.cli_ok(&["power", "status", "n1"]), "n1", 3), "on");
    // drover sets the boot device; ipmitool reads it back.
    for (dev, theirs) in [
        ("pxe", "Force PXE"),
        ("disk", "Force Boot from default Hard-Drive"),
    ] {
        d.cli_ok(&["power", "bootdev", dev, "n1"]);
        let param = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
        assert!(
            param.contains(&format!("Boot Device Selector : {theirs}")),
            "{param}"
        );
    }
    // ipmitool sets it; drover reads it back.
    sim.ipmitool(&["chassis", "bootdev", "pxe"]);
    let out = d.cli_ok(&["power", "bootdev", "pxe", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "next boot: pxe");
}

#[test]
fn serve_polls_power_state_into_the_store() {
    let sim = BmcSim::start("ipmi-poll");
    let mut d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:07:01", &sim.address());
    // Only the HTTP listener (on a free port) and the poller: no DHCP/TFTP/RA, no root.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    drop(http);
    let config = d.scratch().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "interfaces = [\"lo\"]\n{}",
            common::config_only(
                &["http"],
                &format!("[http]\nport = {port}\n[power]\npoll-interval = 1\n")
            )
        ),
    )
    .unwrap();
    d.start(None, &["serve", "--config", config.to_str().unwrap()]);
    d.wait_log("drover: ready", std::time::Duration::from_secs(30));
    let shows = |d: &Drover, want: &str| {
        common::wait_until(std::time::Duration::from_secs(20), || {
            d.cli_ok(&["node", "show", "n1"]).contains(want)
        })
    };
    assert!(
        shows(&d, "power: off"),
        "{}",
        d.cli_ok(&["node", "show", "n1"])
    );
    std::fs::write(sim.dir.join("power"), "1").unwrap();
    assert!(
        shows(&d, "power: on"),
        "{}",
        d.cli_ok(&["node", "show", "n1"])
    );
    // A BMC that stops answering becomes "unknown" with the reason.
    drop(sim);
    assert!(
        shows(&d, "power: unknown (unreachable"),
        "{}",
        d.cli_ok(&["node", "show", "n1"])
    );
    assert!(d.running(), "the server must survive a dead BMC");
}

/// A UDP relay from a port of 127.0.0.1 to a BMC simulator, counting what drover sends:
/// RMCP+ Open Session requests (one per login) and session messages (one per command). The
/// simulator behind it can be swapped, so a BMC restart keeps the address drover knows.
struct Relay {
    port: u16,
    backend: Arc<AtomicU16>,
    opens: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(backend: u16) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tick = Some(std::time::Duration::from_millis(20));
        front.set_read_timeout(tick).unwrap();
        back.set_read_timeout(tick).unwrap();
        let port = front.local_addr().unwrap().port();
        let backend = Arc::new(AtomicU16::new(backend));
        let (opens, messages) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::default();
        let up = {
            let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (backend, opens, messages, stop, client) = (
                backend.clone(),
                opens.clone(),
                messages.clone(),
                stop.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(peer);
                    // RMCP header, auth type 06h (RMCP+), payload type (low 6 bits).
                    if n > 5 && buf[4] == 0x06 {
                        match buf[5] & 0x3f {
                            0x10 => opens.fetch_add(1, Ordering::Relaxed),
                            0x00 => messages.fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                    }
                    let to = ("127.0.0.1", backend.load(Ordering::Relaxed));
                    let _ = back.send_to(&buf[..n], to);
                }
            })
        };
        let down = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back.recv(&mut buf) else {
                        continue;
                    };
                    if let Some(peer) = *client.lock().unwrap() {
                        let _ = front.send_to(&buf[..n], peer);
                    }
                }
            })
        };
        Relay {
            port,
            backend,
            opens,
            messages,
            stop,
            threads: vec![up, down],
        }
    }

    fn opens(&self) -> usize {
        self.opens.load(Ordering::Relaxed)
    }

    fn messages(&self) -> usize {
        self.messages.load(Ordering::Relaxed)
    }

    /// Waits until drover has sent `more` further session messages (about one per poll).
    fn wait_messages(&self, more: usize) -> bool {
        let want = self.messages() + more;
        common::wait_until(std::time::Duration::from_secs(30), || {
            self.messages() >= want
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `active sessions` of `ipmitool session info active` (ipmitool's own session included).
fn active_sessions(sim: &BmcSim) -> u32 {
    let out = sim.ipmitool(&["session", "info", "active"]);
    out.lines()
        .find(|l| l.trim_start().starts_with("active sessions"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no active session count in:\n{out}"))
}

/// `drover serve` keeps one session per BMC across polls: many polls, one Open Session;
/// after the BMC restarts (and so forgot the session) the poller logs in again and goes on
/// reusing the new session; shutdown closes it (the simulator's session count, read with
/// ipmitool, drops by one).
#[test]
fn serve_reuses_one_session_per_bmc_and_closes_it_at_shutdown() {
    let sim = BmcSim::start("ipmi-reuse");
    let relay = Relay::start(sim.port);
    let mut d = Drover::new();
    add_node(
        &d,
        "n1",
        "52:54:00:00:07:11",
        &format!("127.0.0.1:{}", relay.port),
    );
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    drop(http);
    let config = d.scratch().join("serve.toml");
    // session-idle 25 s: below ipmi_sim's 30 s inactivity timeout, above the poll interval.
    std::fs::write(
        &config,
        format!(
            "interfaces = [\"lo\"]\n{}",
            common::config_only(
                &["http"],
                &format!(
                    "[http]\nport = {port}\n[power]\npoll-interval = 1\nsession-idle = 25\n\
                     timeout-ms = 300\nretries = 1\n"
                )
            )
        ),
    )
    .unwrap();
    d.env("DROVER_LOG", "drover=debug");
    d.start(None, &["serve", "--config", config.to_str().unwrap()]);
    d.wait_log("drover: ready", std::time::Duration::from_secs(30));
    let shows = |d: &Drover, want: &str| {
        common::wait_until(std::time::Duration::from_secs(30), || {
            d.cli_ok(&["node", "show", "n1"]).contains(want)
        })
    };
    assert!(shows(&d, "power: off"), "{}", d.log_tail(20));
    assert!(relay.wait_messages(5), "polls stopped: {}", d.log_tail(20));
    assert_eq!(relay.opens(), 1, "five more polls, still one login");
    assert_eq!(active_sessions(&sim), 2, "drover's session and ipmitool's");

    // A BMC restart: the new simulator knows no session; the poller logs in again.
    drop(sim);
    let sim = BmcSim::start("ipmi-reuse2");
    std::fs::write(sim.dir.join("power"), "1").unwrap();
    relay.backend.store(sim.port, Ordering::Relaxed);
    assert!(shows(&d, "power: on"), "{}", d.log_tail(20));
    let opens = relay.opens();
    assert!(opens >= 2, "no new login after the restart");
    assert!(relay.wait_messages(5), "polls stopped: {}", d.log_tail(20));
    assert_eq!(relay.opens(), opens, "the new session is reused");
    assert_eq!(active_sessions(&sim), 2, "drover's session and ipmitool's");

    // SIGTERM: drover closes its session before it exits.
    d.stop();
    assert_eq!(
        active_sessions(&sim),
        1,
        "only ipmitool's own session is left"
    );
    assert!(
        !d.log().contains(PASSWORD),
        "the BMC password is in the log"
    );
}

#[test]
fn ipmi15_sessions_match_ipmitool_lan() {
    let sim = BmcSim::start("ipmi-v15");
    let d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:08:01", &sim.address());
    let config = d.scratch().join("v15.toml");
    std::fs::write(
        &config,
        "[power]\nipmi-version = \"1.5\"\ntimeout-ms = 300\nretries = 1\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    for action in ["on", "off"] {
        d.cli_ok(&["power", action, "n1", "--config", c]);
        let ours = cell(
            &d.cli_ok(&["power", "status", "n1", "--config", c]),
            "n1",
            3,
        );
        let theirs = sim.ipmitool_v15(&["chassis", "power", "status"]);
        assert_eq!(theirs.trim(), format!("Chassis Power is {ours}"));
    }
    let out = d.cli_ok(&["power", "bootdev", "pxe", "n1", "--config", c]);
    assert_eq!(cell(&out, "n1", 3), "next boot: pxe");
    let param = sim.ipmitool_v15(&["chassis", "bootparam", "get", "5"]);
    assert!(
        param.contains("Boot Device Selector : Force PXE"),
        "{param}"
    );
    // A wrong password: the BMC ignores Activate Session; drover names the likely cause.
    set_password(&d, "n1", "wrong");
    let out = d.cli(&["power", "status", "n1", "--config", c]);
    assert!(!out.status.success());
    assert_eq!(
        cell(&String::from_utf8_lossy(&out.stdout), "n1", 2),
        "authentication"
    );
}

/// The test BMC on a UDP socket of 127.0.0.1, answering until dropped.
struct UdpFakeBmc {
    port: u16,
    bmc: Arc<Mutex<fake_bmc::FakeBmc>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpFakeBmc {
    fn start(suite: drover::ipmi::crypto::Suite) -> UdpFakeBmc {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let bmc = Arc::new(Mutex::new(fake_bmc::FakeBmc::new(suite)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bmc, stop) = (bmc.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let reply = bmc.lock().unwrap().answer(&buf[..n]);
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })
        };
        UdpFakeBmc {
            port,
            bmc,
            stop,
            thread: Some(thread),
        }
    }

    /// `ipmitool -I lanplus -C 17 ... ARGS` stdout.
    fn ipmitool(&self, args: &[&str]) -> String {
        let bin = require_cmd("ipmitool", "ipmitool");
        let port = self.port.to_string();
        let out = Command::new(bin)
            .args(["-I", "lanplus", "-C", "17", "-H", "127.0.0.1", "-p", &port])
            .args(["-U", "admin", "-P", "secret"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ipmitool -C 17 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for UdpFakeBmc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Cipher suite 17 (HMAC-SHA256, AES-CBC-128): ipmi_sim refuses it, so ipmitool logs in to
/// drover's test BMC instead. That proves the test BMC's suite-17 RAKP, keys and integrity
/// against the reference client; drover then talks to the same BMC with suite 17 only.
#[test]
fn cipher_suite_17_matches_ipmitool() {
    let bmc = UdpFakeBmc::start(drover::ipmi::crypto::Suite::Sha256);
    assert_eq!(
        bmc.ipmitool(&["chassis", "power", "status"]).trim(),
        "Chassis Power is off"
    );
    bmc.ipmitool(&["chassis", "power", "on"]);
    assert!(bmc.bmc.lock().unwrap().power);
    let d = Drover::new();
    d.cli_ok(&["node", "add", "n1", "--mac", "52:54:00:00:09:01"]);
    d.cli_ok(&[
        "node",
        "set",
        "n1",
        "--bmc",
        &format!("127.0.0.1:{}", bmc.port),
        "--bmc-user",
        "admin",
    ]);
    set_password(&d, "n1", "secret");
    let config = d.scratch().join("s17.toml");
    std::fs::write(
        &config,
        "[power]\ncipher-suites = [17]\nipmi-version = \"2.0\"\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    assert_eq!(
        cell(
            &d.cli_ok(&["power", "status", "n1", "--config", c]),
            "n1",
            3
        ),
        "on"
    );
    d.cli_ok(&["power", "off", "n1", "--config", c]);
    assert_eq!(
        bmc.ipmitool(&["chassis", "power", "status"]).trim(),
        "Chassis Power is off"
    );
}

/// The API's `POST /api/v1/power` drives the same BMC: on, status, next boot device, and a
/// node without BMC settings reported per node (the request as a whole succeeds). All
/// requests run in one BMC session that the server keeps open.
#[test]
fn the_api_powers_nodes_through_their_bmcs() {
    let sim = BmcSim::start("api-power");
    let relay = Relay::start(sim.port);
    let s = common::api::ApiServer::start();
    add_node(
        &s.d,
        "n1",
        "52:54:00:00:07:01",
        &format!("127.0.0.1:{}", relay.port),
    );
    s.d.cli_ok(&["node", "add", "n2", "--mac", "52:54:00:00:07:02"]);
    let bearer = format!("Bearer {}", s.token("power"));
    let post = |body: &str| {
        let r = s.request(
            "POST",
            "/api/v1/power",
            &[
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let v = post(r#"{"action":"on","targets":["n1"]}"#);
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["results"][0]["ok"], true, "{v}");
    assert_eq!(sim.power(), "1");
    let v = post(r#"{"action":"status","targets":["n1","n2"]}"#);
    assert_eq!(v["results"][0]["power"], true, "{v}");
    assert_eq!(v["results"][1]["ok"], false, "{v}");
    assert_eq!(v["results"][1]["class"], "no-bmc", "{v}");
    assert_eq!(v["failed"], 1);
    let v = post(r#"{"action":"bootdev","device":"pxe","targets":["n1"]}"#);
    assert!(
        v["results"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("pxe"),
        "{v}"
    );
    assert_eq!(sim.boot(), "pxe");
    let v = post(r#"{"action":"off","targets":["n1"]}"#);
    assert_eq!(v["results"][0]["ok"], true, "{v}");
    assert_eq!(sim.power(), "0");
    assert_eq!(relay.opens(), 1, "four requests, one BMC session");
}

/// A forged Get Channel Authentication Capabilities reply (no IPMI v2.0, straight password
/// only) does not talk `drover power` with the default `ipmi-version = "auto"` down to IPMI
/// v1.5: no v1.5 login starts (the password would follow in clear), and the result names the
/// cause and the setting.
#[test]
fn a_spoofed_capabilities_reply_does_not_downgrade() {
    let bmc = UdpFakeBmc::start(drover::ipmi::crypto::Suite::Sha1);
    bmc.bmc.lock().unwrap().spoofed_caps = true;
    let d = Drover::new();
    add_node(
        &d,
        "n1",
        "52:54:00:00:09:02",
        &format!("127.0.0.1:{}", bmc.port),
    );
    set_password(&d, "n1", "secret");
    let out = d.cli(&["power", "status", "n1", "--config", &fast_config(&d)]);
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(cell(&table, "n1", 2), "only-v1.5", "{table}");
    assert!(
        cell(&table, "n1", 3).contains("set power.ipmi-version = \"1.5\""),
        "{table}"
    );
    assert_eq!(bmc.bmc.lock().unwrap().v15_challenges, 0);
}

/// A BMC that offers only suites below the configured minimum (here: only suite 3, with
/// `power.cipher-suites = [17]`) answers Open Session with its own, weaker algorithms;
/// drover refuses them and says so in the result (`cipher-suite`) instead of logging in.
/// With suite 3 allowed the same BMC works, so the refusal is the setting's doing. ipmi_sim
/// cannot play this: it has no setting for its suites and ignores a suite-17 request
/// instead of answering it (a silence, which alone reads as a timeout).
#[test]
fn a_bmc_below_the_minimum_cipher_suite_is_refused_and_said_so() {
    let bmc = UdpFakeBmc::start(drover::ipmi::crypto::Suite::Sha1);
    let d = Drover::new();
    add_node(
        &d,
        "n1",
        "52:54:00:00:09:03",
        &format!("127.0.0.1:{}", bmc.port),
    );
    set_password(&d, "n1", "secret");
    let strict = d.scratch().join("strict.toml");
    std::fs::write(
        &strict,
        "[power]\ncipher-suites = [17]\nipmi-version = \"2.0\"\ntimeout-ms = 200\nretries = 1\n",
    )
    .unwrap();
    let out = d.cli(&[
        "power",
        "status",
        "n1",
        "--config",
        strict.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(cell(&table, "n1", 2), "cipher-suite", "{table}");
    assert!(
        cell(&table, "n1", 3).contains("cipher suites 17"),
        "{table}"
    );
    assert!(!bmc.bmc.lock().unwrap().power);
    let table = d.cli_ok(&["power", "status", "n1", "--config", &fast_config(&d)]);
    assert_eq!(cell(&table, "n1", 3), "off", "{table}");
}

/// ipmi_sim commands for a threshold temperature sensor `num` named `name` reading `value`
/// degrees C (M = 1): upper non-critical 70, critical 80, non-recoverable 90, scanning on.
fn temperature_sensor(num: u8, name: &str, value: u8) -> String {
    let mut sdr: Vec<u8> = vec![
        0x00, 0x00, 0x51, 0x01, 0x00, 0x20, 0x00, num, 0x03, 0x01, 0x7f, 0x68, 0x01, 0x01,
    ];
    sdr.extend([0x80, 0x7a, 0x80, 0x7a, 0x3f, 0x3f]);
    // Units: unsigned, degrees C; linear, M = 1, B = 0, exponents 0.
    sdr.extend([0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]);
    sdr.extend([
        0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 90, 80, 70, 0, 0, 0, 0, 0, 0, 0,
    ]);
    sdr.push(0xc0 | name.len() as u8);
    sdr.extend(name.bytes());
    sdr[4] = (sdr.len() - 5) as u8;
    let bytes: Vec<String> = sdr.iter().map(|b| format!("{b:#04x}")).collect();
    format!(
        "sensor_add 0x20 0 {num} 0x01 0x01\n\
         sensor_set_threshold 0x20 0 {num} settable 111000 90 80 70 0 0 0\n\
         sensor_set_event_support 0x20 0 {num} enable scanning per-state \
         000000000000000 000000000000000 000000000000000 000000000000000\n\
         sensor_set_value 0x20 0 {num} {value} 0\n\
         main_sdr_add 0x20 {}\n",
        bytes.join(" ")
    )
}

/// A SEL entry: temperature sensor `num`, upper critical going high, asserted or not.
fn sel_entry(num: u8, deassert: bool) -> String {
    let dir = if deassert { 0x81 } else { 0x01 };
    format!("sel_add 0x20 0x02 0 0 0 0 0x20 0 0x04 0x01 {num} {dir:#04x} 0x59 85 80\n")
}

#[test]
fn sensors_and_the_event_log_match_ipmitool() {
    let emu = temperature_sensor(1, "CPU Temp", 45)
        + &temperature_sensor(2, "Inlet Temp", 82)
        + "sel_enable 0x20 1000 0x0a\n"
        + &sel_entry(2, false)
        + &sel_entry(2, true);
    let sim = BmcSim::start_with("ipmi-sensors", &emu, "");
    let d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:0a:01", &sim.address());
    let json: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["bmc", "sensors", "n1", "--json"])).unwrap();
    let sensors = json[0]["sensors"].as_array().expect("a sensors array");
    let row = |name: &str| {
        sensors
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))
    };
    assert_eq!(sensors.len(), 2, "{json}");
    assert_eq!(row("CPU Temp")["reading"], "45");
    assert_eq!(row("CPU Temp")["unit"], "degrees C");
    assert_eq!(row("CPU Temp")["status"], "ok");
    assert_eq!(row("Inlet Temp")["reading"], "82");
    assert_eq!(row("Inlet Temp")["status"], "upper-critical");
    // ipmitool reads the same values from the same BMC.
    let reference = sim.ipmitool(&["sdr", "list"]);
    for (name, value) in [("CPU Temp", "45"), ("Inlet Temp", "82")] {
        let line = reference
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("ipmitool shows no {name}:\n{reference}"));
        assert!(line.contains(&format!("| {value} degrees C")), "{line}");
    }
    let table = d.cli_ok(&["bmc", "sensors", "n1"]);
    assert!(table
        .lines()
        .any(|l| l.starts_with("n1") && l.contains("upper-critical")));

    let json: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["bmc", "sel", "n1", "--json"])).unwrap();
    let entries = json[0]["entries"].as_array().expect("an entries array");
    let events: Vec<&str> = entries.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        events,
        [
            "upper critical going high asserted",
            "upper critical going high deasserted"
        ],
        "{json}"
    );
    assert!(entries.iter().all(|e| e["sensor"] == "temperature #2"));
    let reference = sim.ipmitool(&["sel", "list"]);
    assert_eq!(reference.lines().count(), entries.len(), "{reference}");

    // A node without a BMC is a failed row and a non-zero exit; the other is still read.
    d.cli_ok(&["node", "add", "bare", "--mac", "52:54:00:00:0a:02"]);
    let out = d.cli(&["bmc", "sel", "n1", "bare"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(table.contains("failed: no-bmc"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("n1")).count(),
        2,
        "{table}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 nodes failed"));
}

/// `bmc sensors|sel --server` (the API reads the BMCs) print what the local commands print,
/// for a viewer too; a node without a BMC is a failed item and a non-zero exit.
#[test]
fn bmc_reads_through_the_api_match_the_local_ones() {
    let emu = temperature_sensor(1, "CPU Temp", 45)
        + "sel_enable 0x20 1000 0x0a\n"
        + &sel_entry(1, false);
    let sim = BmcSim::start_with("ipmi-api-sensors", &emu, "");
    let s = common::api::ApiServer::start();
    add_node(&s.d, "n1", "52:54:00:00:0a:11", &sim.address());
    s.d.cli_ok(&["node", "add", "bare", "--mac", "52:54:00:00:0a:12"]);
    let viewer =
        s.d.cli_ok(&["token", "create", "--name", "ro", "--role", "viewer"]);
    let viewer = viewer.split_whitespace().last().unwrap().to_string();
    let url = s.url();
    for what in ["sensors", "sel"] {
        let local = s.d.cli_ok(&["bmc", what, "n1", "--json"]);
        let remote = s.d.cli_ok(&[
            "--server", &url, "--token", &viewer, "bmc", what, "n1", "--json",
        ]);
        let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        assert_eq!(parse(&local), parse(&remote), "{what}");
        assert_eq!(parse(&remote)[0]["ok"], true, "{remote}");
    }
    let out = s.d.cli(&[
        "--server", &url, "--token", &viewer, "bmc", "sensors", "n1", "bare",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(table.contains("failed: no-bmc"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n1") && l.contains("CPU Temp")),
        "{table}"
    );
}

/// `ipmi_sim` whose SOL is wired to a TCP "serial port" that the test holds (ipmi_sim
/// connects to it, `sol "tcp:..."`, when it starts); returns the BMC and the port.
fn sol_bmc(tag: &str) -> (BmcSim, std::net::TcpStream) {
    let serial = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let serial_port = serial.local_addr().unwrap().port();
    let lan = format!("  sol \"tcp:127.0.0.1:{serial_port}\" 115200\n");
    let sim = BmcSim::start_with(tag, "", &lan);
    let (port, _) = serial
        .accept()
        .expect("ipmi_sim connects to the serial port");
    port.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (sim, port)
}

/// A running `drover console`, its standard output and error gathered as they come.
struct ConsoleRun {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl ConsoleRun {
    fn start(mut cmd: Command) -> ConsoleRun {
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let gather = |mut from: Box<dyn std::io::Read + Send>| {
            let sink = Arc::new(Mutex::new(Vec::<u8>::new()));
            let into = sink.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    into.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            sink
        };
        let out = gather(Box::new(child.stdout.take().unwrap()));
        let err = gather(Box::new(child.stderr.take().unwrap()));
        let stdin = child.stdin.take().unwrap();
        ConsoleRun {
            child,
            stdin,
            out,
            err,
        }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn said(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn shows(&self, what: &str) -> bool {
        common::wait_until(Duration::from_secs(20), || self.shown().contains(what))
    }

    fn says(&self, what: &str) -> bool {
        common::wait_until(Duration::from_secs(20), || self.said().contains(what))
    }

    fn type_in(&mut self, keys: &[u8]) {
        std::io::Write::write_all(&mut self.stdin, keys).unwrap();
    }

    /// Types the escape; returns the exit status and standard error.
    fn leave(mut self) -> (std::process::ExitStatus, String) {
        self.type_in(b"~.");
        let status = self.child.wait().unwrap();
        // The gathering threads end with the pipes.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.said())
    }
}

/// Writes `line` (with a counter) to the serial port until `console` shows it: what the port
/// says before the console is active is not kept (a serial line), so the "firmware" repeats
/// its banner.
fn banner_until_shown(port: &mut std::net::TcpStream, console: &ConsoleRun, line: &str) {
    let mut n = 0;
    let shown = common::wait_until(Duration::from_secs(20), || {
        n += 1;
        let _ = std::io::Write::write_all(port, format!("{line} ({n})\r\n").as_bytes());
        std::thread::sleep(Duration::from_millis(200));
        console.shown().contains(line)
    });
    assert!(
        shown,
        "the console never showed {line:?}: {:?}; it said {}",
        console.shown(),
        console.said()
    );
}

/// Reads the serial port until `what` came; returns all that came.
fn serial_reads(port: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&got).contains(what) {
        let n = std::io::Read::read(port, &mut buf).expect("typed keys on the serial port");
        assert!(n > 0, "ipmi_sim closed the serial port");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn console_relays_the_serial_port_over_sol() {
    let (sim, mut port) = sol_bmc("ipmi-sol");
    let d = Drover::new();
    add_node(&d, "n1", "52:54:00:00:0b:01", &sim.address());
    let mut cmd = Command::new(d.bin());
    cmd.arg("--state-dir")
        .arg(d.state_dir())
        .args(["console", "n1"]);
    let mut console = ConsoleRun::start(cmd);
    banner_until_shown(&mut port, &console, "Booting node n1");
    // Keystrokes reach the serial port.
    console.type_in(b"root\r");
    let got = serial_reads(&mut port, "root");
    // The escape ends the console, which deactivates SOL and closes the session.
    let (status, err) = console.leave();
    assert!(status.success(), "drover console failed: {err}");
    assert!(err.contains("console of n1 closed"), "{err}");
    assert!(!got.contains(&b'~'), "the escape went to the node: {got:?}");
}

/// `drover console --server` through the server's hub: one SOL session shared by a writer
/// and a reader, a forced takeover that tells the old writer, a viewer refused the takeover,
/// and the console log afterwards (through the API and on the appliance).
#[test]
fn the_server_shares_one_console_with_one_writer() {
    let (sim, mut port) = sol_bmc("ipmi-hub");
    let s = common::api::ApiServer::start();
    add_node(&s.d, "n1", "52:54:00:00:0b:02", &sim.address());
    let token = s.token("ops");
    let viewer =
        s.d.cli_ok(&["token", "create", "--name", "ro", "--role", "viewer"]);
    let viewer = viewer.split_whitespace().last().unwrap().to_string();
    let url = s.url();
    let remote = |token: &str, extra: &[&str]| {
        let mut cmd = Command::new(s.d.bin());
        cmd.args(["--server", &url, "--token", token, "console", "n1"])
            .args(extra);
        cmd
    };
    let mut writer = ConsoleRun::start(remote(&token, &[]));
    banner_until_shown(&mut port, &writer, "Booting node n1");
    assert!(
        writer.says("you write to this console"),
        "{}",
        writer.said()
    );
    // A reader joins the open console: it gets the screen so far, then what follows.
    let mut reader = ConsoleRun::start(remote(&token, &["--read-only"]));
    assert!(reader.shows("Booting node n1"), "{}", reader.said());
    std::io::Write::write_all(&mut port, b"n1 login: ").unwrap();
    assert!(reader.shows("n1 login: ") && writer.shows("n1 login: "));
    writer.type_in(b"root\r");
    serial_reads(&mut port, "root");
    reader.type_in(b"reboot\r");
    assert!(reader.says("another client writes"), "{}", reader.said());
    // A viewer cannot take the seat over; an operator can, and the old writer is told.
    let refused = Command::new(s.d.bin())
        .args([
            "--server", &url, "--token", &viewer, "console", "n1", "--force",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("operator"),
        "{why}"
    );
    let mut forcer = ConsoleRun::start(remote(&token, &["--force"]));
    assert!(forcer.says("you write"), "{}", forcer.said());
    assert!(writer.says("took over"), "{}", writer.said());
    forcer.type_in(b"uptime\r");
    let got = serial_reads(&mut port, "uptime");
    assert!(!String::from_utf8_lossy(&got).contains("reboot"), "{got:?}");
    for console in [writer, reader, forcer] {
        let (status, err) = console.leave();
        assert!(status.success(), "drover console failed: {err}");
    }
    // The log holds what the console showed, through the API and on the appliance.
    let log = Command::new(s.d.bin())
        .args([
            "--server", &url, "--token", &viewer, "console", "n1", "--log",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert!(
        text.contains("Booting node n1") && text.contains("n1 login: "),
        "{text}"
    );
    let local = s.d.cli_ok(&["console", "n1", "--log", "--all"]);
    assert!(
        local.contains("n1 login: ") && local.contains("---- n1: boot"),
        "{local}"
    );
}
