//! A pool of two through the real binary: two `drover serve` members with `[pool]
//! service-address`, each in its own network namespace on one bridge.
//!
//! Asserted: one member holds the address; `drover pool mark-dead` of the holder is refused
//! on the other while the holder is alive. The holder is killed with SIGKILL: its address runs
//! out, and the survivor, alone and so no majority of two, does not take it (checked after
//! waiting well past a takeover's wait). `pool mark-dead` of the dead member on the survivor
//! is accepted and audited; the survivor then takes the address. The killed member restarts
//! and leaves the address with the survivor (sticky). Waits are bounded, with the measured
//! times printed; nothing is asserted on time.
//!
//! With a witness (`drover witness`, a vote-only member in a third namespace), the pool of two
//! fails over by itself: the holder is killed, and the survivor, a majority with the witness,
//! takes the address and sees a majority for the DHCP shares (the dead member's clients)
//! with no mark-dead; the witness is then killed too, and the survivor, alone of three
//! voters, gives the address up.
//!
//! Needs root (network namespaces); fails with a clear message without.

mod common;

use common::{wait_until, Member, Netns};
use std::time::{Duration, Instant};

const SERVICE_ADDRESS: &str = "198.18.0.100";

fn member(hub: &Netns, i: usize) -> Member {
    Member::on_bridge(hub, "br0", "fo2-", "f", i, &format!("198.18.0.{}", i + 1))
}

fn holds(m: &Member) -> bool {
    m.has_address(SERVICE_ADDRESS)
}

fn status(m: &Member) -> serde_json::Value {
    let out = m.drover.cli(&["pool", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The member's id as `pool status` shows it, from its own status.
fn id_of(m: &Member) -> String {
    let id = status(m)["me"]["id"].as_u64().expect("a pool status");
    format!("{id:016x}")
}

/// How `other` sees the member at `ip` (alive, suspect, down, ...).
fn state_of(other: &Member, ip: &str) -> Option<String> {
    status(other)["members"]
        .as_array()?
        .iter()
        .filter(|r| {
            r["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("{ip}:")))
        })
        .max_by_key(|r| r["epoch"].as_u64())
        .and_then(|r| r["state"].as_str().map(str::to_string))
}

fn report(m: &[Member]) -> String {
    m.iter()
        .map(|x| x.pool_report(&format!("holds: {}", holds(x))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two members on a bridge in `hub`, in one pool, serving; and their configuration.
fn pool_of_two(hub: &Netns) -> (Vec<Member>, String) {
    hub.add_bridge("br0", "198.18.0.254/24");
    let mut m: Vec<Member> = (0..2).map(|i| member(hub, i)).collect();
    let config = common::config_only(
        &[],
        &format!("[pool]\nservice-address = \"{SERVICE_ADDRESS}\"\n[nfs]\nenabled = true\n"),
    );
    Member::form_pool(&mut m, &config);
    (m, config)
}

#[test]
fn a_pool_of_two_fails_over_after_mark_dead() {
    let hub = Netns::new("fo2-hub");
    let (mut m, config) = pool_of_two(&hub);
    // Both rows settled: until then the roster is the founder alone.
    let formed = wait_until(Duration::from_secs(120), || {
        m.iter().all(|x| {
            let out = x.drover.cli(&["pool", "status"]);
            String::from_utf8_lossy(&out.stdout).contains("2 member(s) on the roster")
        }) && m.iter().filter(|x| holds(x)).count() == 1
    });
    assert!(formed, "the pool of two did not form:\n{}", report(&m));
    let first = if holds(&m[0]) { 0 } else { 1 };
    let other = 1 - first;
    let dead_id = id_of(&m[first]);

    // Refused while the holder is alive.
    let out = m[other].drover.cli(&["pool", "mark-dead", &dead_id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("only a member that is down"),
        "mark-dead of a live member was not refused: {err}"
    );

    m[first].drover.crash();
    let killed = Instant::now();
    let first_ip = m[first].ip.clone();
    let down = wait_until(Duration::from_secs(30), || {
        !holds(&m[first]) && state_of(&m[other], &first_ip).as_deref() == Some("down")
    });
    assert!(
        down,
        "the holder's address did not run out, or the survivor does not see it down:\n{}",
        report(&m)
    );
    eprintln!(
        "the survivor saw the holder down {:?} after the kill",
        killed.elapsed()
    );
    // Alone, the survivor is no majority: it must not take the address however long it
    // waits (a takeover would come 5.25 s after it was chosen).
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        !holds(&m[other]),
        "the survivor of two took the address without mark-dead:\n{}",
        report(&m)
    );

    let said = m[other].drover.cli_ok(&["pool", "mark-dead", &dead_id]);
    assert!(said.contains("marked dead"), "{said}");
    let marked = Instant::now();
    let taken = wait_until(Duration::from_secs(30), || holds(&m[other]));
    assert!(
        taken,
        "the survivor did not take the address after mark-dead:\n{}",
        report(&m)
    );
    eprintln!(
        "the survivor took the address {:?} after mark-dead",
        marked.elapsed()
    );
    let audit = m[other].drover.cli_ok(&["audit"]);
    assert!(
        audit.contains("pool mark-dead"),
        "mark-dead is not in the audit log:\n{audit}"
    );

    // The dead member restarts: it counts again, and leaves the address where it is.
    let x = &mut m[first];
    x.drover.serve_with(Some(&x.ns), "eth0", &config);
    let back = wait_until(Duration::from_secs(60), || {
        state_of(&m[other], &first_ip).as_deref() == Some("alive")
    });
    assert!(back, "the restarted member did not rejoin:\n{}", report(&m));
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        holds(&m[other]) && !holds(&m[first]),
        "the address did not stay with the survivor:\n{}",
        report(&m)
    );
}

#[test]
fn a_pool_of_two_with_a_witness_fails_over_by_itself() {
    let hub = Netns::new("fw2-hub");
    let (mut m, _) = pool_of_two(&hub);
    let mut w = member(&hub, 2);
    let key = m[0].drover.state_dir().join("cluster.key");
    let key = key.to_str().expect("a UTF-8 temp path").to_string();
    w.drover.start(
        Some(&w.ns),
        &[
            "witness",
            "--listen",
            &w.ip,
            "--seed",
            &m[0].ip,
            "--seed",
            &m[1].ip,
            "--key-file",
            &key,
        ],
    );
    w.drover
        .wait_log("witness: started", Duration::from_secs(20));
    let witness_ip = w.ip.clone();
    let formed = wait_until(Duration::from_secs(120), || {
        m.iter().all(|x| {
            let out = x.drover.cli(&["pool", "status"]);
            String::from_utf8_lossy(&out.stdout).contains("2 member(s) on the roster")
                && state_of(x, &witness_ip).as_deref() == Some("alive")
        }) && m.iter().filter(|x| holds(x)).count() == 1
    });
    assert!(
        formed,
        "the pool of two and its witness did not form:\n{}",
        report(&m)
    );
    // The members wrote the witness's roster row when they first saw it; it counts once it
    // settled (`PoolMember::SETTLE_MS`, 30 s), which this status does not show.
    std::thread::sleep(Duration::from_secs(35));
    let first = if holds(&m[0]) { 0 } else { 1 };
    let other = 1 - first;

    m[first].drover.crash();
    let killed = Instant::now();
    let taken = wait_until(Duration::from_secs(60), || {
        holds(&m[other]) && !holds(&m[first])
    });
    assert!(
        taken,
        "the survivor beside a witness did not take the address by itself:\n{}\nwitness log:\n{}",
        report(&m),
        w.drover.log_tail(15)
    );
    eprintln!(
        "the survivor took the address {:?} after the kill, with no mark-dead",
        killed.elapsed()
    );
    assert_eq!(
        status(&m[other])["majority"].as_bool(),
        Some(true),
        "the survivor beside the witness sees no majority for the DHCP shares:\n{}",
        report(&m)
    );
    let audit = m[other].drover.cli_ok(&["audit"]);
    assert!(
        !audit.contains("mark-dead"),
        "nobody marked anything dead:\n{audit}"
    );

    // Without the witness the survivor is one voter of three: it lets the address go.
    w.drover.crash();
    let gone = wait_until(Duration::from_secs(30), || !holds(&m[other]));
    assert!(
        gone,
        "the survivor kept the address without the witness:\n{}",
        report(&m)
    );
    assert_eq!(status(&m[other])["majority"].as_bool(), Some(false));
}
