//! The pool's floating service address through the real binary: three `drover serve`
//! members with `[pool] service-address`, each in its own network namespace on one bridge,
//! and a client namespace on the same bridge.
//!
//! Asserted: exactly one member holds the address (`ip -n NS addr`), with a lifetime (the
//! kernel shows `valid_lft`), and `drover pool status` on every member names it; a client
//! reaches NFS's port on the address. The holder is killed with SIGKILL: the address leaves
//! its namespace by itself (its lifetime runs out: nothing deletes it), exactly one survivor
//! takes it, the client's neighbour entry for the address moves to the new holder's MAC while
//! the client sends nothing (only the gratuitous ARP can have moved it), and a TCP connection
//! from the client to the address's port 2049 succeeds again. The killed member restarts and
//! leaves the address with its new holder (20 s after it sees the pool again, longer than a
//! takeover's 12 s wait). Waits are bounded, with the measured times printed; nothing is
//! asserted on time.
//!
//! Needs root (network namespaces); fails with a clear message without.

mod common;

use common::{wait_until, Member, Netns};
use std::time::{Duration, Instant};

const SERVICE_ADDRESS: &str = "198.18.0.100";
const CLIENT: &str = "198.18.0.50";

fn member(hub: &Netns, i: usize) -> Member {
    Member::on_bridge(hub, "br0", "vip", "v", i, &format!("198.18.0.{}", i + 1))
}

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Member {
    /// The service address's line in `ip addr`, if the member's interface has it.
    fn address_line(&self) -> Option<String> {
        text(self.ns.ip(&["-4", "addr", "show", "dev", "eth0"]))
            .split("\n    inet ")
            .find(|l| l.starts_with(&format!("{SERVICE_ADDRESS}/")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    fn holds(&self) -> bool {
        self.address_line().is_some()
    }

    fn mac(&self) -> String {
        let out = text(self.ns.ip(&["link", "show", "dev", "eth0"]));
        out.split("link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("eth0 has a MAC")
            .to_string()
    }

    fn status(&self) -> String {
        let out = self.drover.cli(&["pool", "status"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Who holds the address now, among `members` that are up.
fn holders(m: &[Member], up: &[usize]) -> Vec<usize> {
    up.iter().copied().filter(|&i| m[i].holds()).collect()
}

fn report(m: &[Member]) -> String {
    m.iter()
        .map(|x| {
            format!(
                "--- {} ({:?})\n{}\nlog:\n{}",
                x.ip,
                x.address_line(),
                x.status(),
                x.drover.log_tail(15)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The client's neighbour entry (MAC) for the service address.
fn neighbour(client: &Netns) -> Option<String> {
    let out = text(client.ip(&["neigh", "show", SERVICE_ADDRESS, "dev", "eth0"]));
    out.split("lladdr ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

/// A TCP connection from the client to the service address's NFS port.
fn connects(client: &Netns) -> bool {
    client
        .cmd("timeout")
        .args([
            "5",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{SERVICE_ADDRESS}/2049"),
        ])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_service_address_moves_to_a_survivor_when_its_holder_dies() {
    common::require_cmd("bash", "bash");
    common::require_cmd("timeout", "coreutils");
    let hub = Netns::new("vip-hub");
    hub.add_bridge("br0", "198.18.0.254/24");
    let client = Netns::new("vip-client");
    hub.add_veth_to_bridge("vc", "br0", &client, "eth0");
    client.add_addr("eth0", &format!("{CLIENT}/24"));
    let mut m: Vec<Member> = (0..3).map(|i| member(&hub, i)).collect();

    m[0].drover.cli_ok(&["pool", "init"]);
    let key = m[0].drover.state_dir().join("cluster.key");
    for b in [1, 2] {
        m[b].drover.cli_ok(&[
            "pool",
            "join",
            "198.18.0.1",
            "--key-file",
            key.to_str().unwrap(),
        ]);
    }
    let config = common::config_only(
        &[],
        &format!("[pool]\nservice-address = \"{SERVICE_ADDRESS}\"\n[nfs]\nenabled = true\n"),
    );
    for x in m.iter_mut() {
        x.drover.serve_with(Some(&x.ns), "eth0", &config);
    }
    let t0 = Instant::now();
    let all = [0, 1, 2];
    let one = wait_until(Duration::from_secs(90), || holders(&m, &all).len() == 1);
    assert!(
        one,
        "no single member took {SERVICE_ADDRESS}:\n{}",
        report(&m)
    );
    let first = holders(&m, &all)[0];
    eprintln!(
        "{} took the service address {:?} after start",
        m[first].ip,
        t0.elapsed()
    );
    let line = m[first].address_line().unwrap_or_default();
    assert!(
        line.contains("/24") && line.contains("valid_lft") && !line.contains("forever"),
        "the address goes on with the subnet's prefix and a lifetime: {line}"
    );
    // Every member names the holder, and the joiners' roster rows settle (until then the
    // roster is the founder alone, and its death would leave no majority).
    let holder_line = format!("held by {}", m[first].ip);
    let named = wait_until(Duration::from_secs(90), || {
        m.iter().all(|x| {
            let s = x.status();
            s.contains(&holder_line) && s.contains("3 member(s) on the roster")
        })
    });
    assert!(
        named,
        "pool status does not name the holder:\n{}",
        report(&m)
    );
    assert!(m[first].status().contains("(this member)"));
    assert!(
        holders(&m, &all) == [first],
        "still exactly one holder:\n{}",
        report(&m)
    );

    assert!(
        connects(&client),
        "the client cannot connect to {SERVICE_ADDRESS}:2049:\n{}",
        report(&m)
    );
    let before = neighbour(&client);
    assert_eq!(
        before.as_deref(),
        Some(m[first].mac().as_str()),
        "the client's neighbour entry points at the holder"
    );

    // SIGKILL: nothing gets to delete the address.
    m[first].drover.crash();
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(30), || !m[first].holds());
    assert!(
        gone,
        "the dead holder's address did not run out: {:?}",
        m[first].address_line()
    );
    eprintln!(
        "the dead holder's address ran out {:?} after the kill",
        killed.elapsed()
    );
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != first).collect();
    let moved = wait_until(Duration::from_secs(90), || {
        holders(&m, &survivors).len() == 1
    });
    assert!(moved, "no survivor took the address:\n{}", report(&m));
    let next = holders(&m, &survivors)[0];
    eprintln!(
        "{} took the address {:?} after the kill",
        m[next].ip,
        killed.elapsed()
    );
    let new_mac = m[next].mac();
    // The client has sent nothing since: only the new holder's gratuitous ARP moves its entry.
    let learned = wait_until(Duration::from_secs(20), || {
        neighbour(&client).as_deref() == Some(new_mac.as_str())
    });
    assert!(
        learned,
        "the client's neighbour entry did not move to {new_mac} (gratuitous ARP): {:?}",
        neighbour(&client)
    );
    eprintln!(
        "the client's neighbour entry moved to the new holder {:?} after the kill",
        killed.elapsed()
    );
    assert!(
        connects(&client),
        "the client cannot connect to {SERVICE_ADDRESS}:2049 after the move:\n{}",
        report(&m)
    );
    assert!(
        !m[first].holds() && holders(&m, &survivors) == [next],
        "exactly one holder after the move:\n{}",
        report(&m)
    );
    let line = format!("held by {}", m[next].ip);
    let named = wait_until(Duration::from_secs(20), || m[next].status().contains(&line));
    assert!(
        named,
        "pool status does not name the new holder:\n{}",
        report(&m)
    );
    // Each survivor counts the takeovers it made (`/metrics` shows this count): one by the
    // new holder, none by the other.
    let takeovers = |i: usize| {
        let out = m[i].drover.cli(&["pool", "status", "--json"]);
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("pool status --json prints JSON");
        status["service_address"]["takeovers"].as_u64()
    };
    let other = survivors.iter().copied().find(|&i| i != next).unwrap();
    assert_eq!(
        (takeovers(next), takeovers(other)),
        (Some(1), Some(0)),
        "takeovers counted by the new holder and the other survivor:\n{}",
        report(&m)
    );
    // The new holder lists the address among what it serves, and its summary reaches the
    // other survivor (`pool status` shows floating services as NAME@ADDRESS).
    let said = format!("@{SERVICE_ADDRESS}");
    let summarised = wait_until(Duration::from_secs(20), || {
        m[other]
            .status()
            .lines()
            .any(|l| l.starts_with(&format!("{}:", m[next].ip)) && l.contains(&said))
    });
    assert!(
        summarised,
        "the holder's summary does not list the service address:\n{}",
        report(&m)
    );

    // The old holder comes back: once it sees the pool again it names the new holder, and
    // leaves the address there for longer than a takeover would take.
    let x = &mut m[first];
    x.drover.serve_with(Some(&x.ns), "eth0", &config);
    let back = wait_until(Duration::from_secs(60), || {
        m[first].status().contains(&line)
    });
    assert!(
        back,
        "the restarted member does not name the holder:\n{}",
        report(&m)
    );
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        holders(&m, &all) == [next],
        "a restarted member took the address back:\n{}",
        report(&m)
    );
}
