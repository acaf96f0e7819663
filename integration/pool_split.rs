//! Real partitions of a pool under DHCP load: three `drover serve` members serving DHCP and
//! a floating service address, each in its own namespace on one bridge, and perfdhcp in a
//! client namespace on the same bridge offering new exchanges and renewals throughout.
//!
//! First a drain (`drover pool drain`) of the member that holds the service address: once
//! every member shows it drained, it ACKs nothing more, the others ACK clients it used to
//! answer, and another member holds the address; after `pool undrain` it ACKs again and the
//! address stays where it went.
//!
//! Then four cuts, one after the other, each healed before the next: two splits, cut by
//! taking a member's link to the bridge down (`ip link set down` on the bridge's side of its
//! veth) and healed by bringing it up: A|BC (the first member cut off alone) and AB|C (the
//! third); a chain A–B–C, where A and C drop each other's packets (nftables in their
//! namespaces) and both see B; and asymmetric loss, where C drops A's packets and A gets
//! C's. Asserted, during and after each:
//! no address is ever bound to two clients at once, judged from snapshots of every member's
//! leases taken together every second (leases are keyed by address and merge last-writer-
//! wins, so a duplicate would not survive the heal: it must be caught while the sides
//! disagree); at most one member holds the service address at any snapshot, and after each
//! heal exactly one does. perfdhcp must have got ACKs (the test exercised something).
//!
//! Needs root (network namespaces), perfdhcp (Debian package `kea-admin`) and nft
//! (`nftables`), both in `scripts/setup`; fails with a clear message without.

mod common;

use common::pool::{active_leases, Findings};
use common::{wait_until, Member, Netns};
use std::time::Duration;

const SERVICE_ADDRESS: &str = "198.18.0.10";
const CLIENT: &str = "198.18.0.250";

/// Member `i` at 198.18.0.(i+1); the bridge's side of its link is `s{i}`.
fn member(hub: &Netns, i: usize) -> Member {
    let ip = format!("198.18.0.{}", i + 1);
    Member::on_bridge(hub, "br0", "split", "s", i, &ip)
}

/// Makes member `m` drop every packet it receives from `from` (an address), with nftables in
/// its namespace; [`heal_filter`] undoes it.
fn drop_from(m: &Member, from: &str) {
    let chain = "add chain inet cut input { type filter hook input priority 0 ; }";
    let rule = format!("add rule inet cut input ip saddr {from} drop");
    for script in ["add table inet cut", chain, &rule] {
        common::run_ok(m.ns.cmd("nft").arg(script));
    }
}

fn heal_filter(m: &Member) {
    common::run_ok(m.ns.cmd("nft").arg("delete table inet cut"));
}

/// A cut between the members, and how it is healed.
enum Cut {
    /// Member `i`'s link to the bridge goes down.
    Link(usize),
    /// Each pair `(i, j)`: member `i` drops what member `j` sends.
    Filter(&'static [(usize, usize)]),
}

impl Cut {
    fn apply(&self, hub: &Netns, m: &[Member], up: bool) {
        match self {
            Cut::Link(i) => {
                let state = if up { "up" } else { "down" };
                hub.ip(&["link", "set", &format!("s{i}"), state]);
            }
            Cut::Filter(pairs) => {
                for &(i, j) in pairs.iter() {
                    if up {
                        heal_filter(&m[i]);
                    } else {
                        drop_from(&m[i], &m[j].ip);
                    }
                }
            }
        }
    }
}

fn holds(m: &Member) -> bool {
    m.has_address(SERVICE_ADDRESS)
}

fn report(m: &[Member]) -> String {
    let leases = |x: &Member| active_leases(x).len();
    m.iter()
        .map(|x| x.pool_report(&format!("holds: {}, {} leases", holds(x), leases(x))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The MACs a member's log says it ACKed, in order.
fn acked(m: &Member) -> Vec<String> {
    m.drover
        .log()
        .lines()
        .filter(|l| l.contains("DHCPACK"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mac=")))
        .map(str::to_string)
        .collect()
}

/// What member `m` says of member `id`'s drain (`draining`, `drained`), from its status.
fn drain_of(m: &Member, id: &str) -> Option<String> {
    let out = m.drover.cli(&["pool", "status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let hex = |v: &serde_json::Value| v["id"].as_u64().map(|n| format!("{n:016x}"));
    std::iter::once(&s["me"])
        .chain(s["members"].as_array().into_iter().flatten())
        .find(|row| hex(row).as_deref() == Some(id))
        .and_then(|row| row["drain"].as_str().map(str::to_string))
}

/// Drains the holder of the service address during the load and undrains it (see the module
/// docs), snapshotting throughout.
fn drain_and_undrain_the_holder(m: &[Member], found: &mut Findings) {
    let b = m
        .iter()
        .position(holds)
        .expect("one member holds the address");
    let out = m[b].drover.cli(&["pool", "status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let id = format!("{:016x}", s["me"]["id"].as_u64().expect("its id"));
    let theirs: Vec<String> = acked(&m[b]);
    assert!(
        !theirs.is_empty(),
        "the holder ACKed nobody before the drain"
    );
    let others: Vec<usize> = (0..m.len()).filter(|&i| i != b).collect();
    let before: Vec<usize> = m.iter().map(|x| acked(x).len()).collect();
    // Drained on another member: the setting replicates.
    m[others[0]].drover.cli_ok(&["pool", "drain", &id]);
    let mut all_see = false;
    for _ in 0..30 {
        found.watch(m, 1);
        if m.iter()
            .all(|x| drain_of(x, &id).as_deref() == Some("drained"))
        {
            all_see = true;
            break;
        }
    }
    assert!(
        all_see,
        "not every member shows {id} drained:\n{}",
        report(m)
    );
    let stopped = acked(&m[b]).len();
    found.watch(m, 20);
    assert_eq!(
        acked(&m[b]).len(),
        stopped,
        "the drained member ACKed after it said it was drained"
    );
    let moved = others.iter().any(|&i| {
        acked(&m[i])[before[i]..]
            .iter()
            .any(|mac| theirs.contains(mac))
    });
    assert!(
        moved,
        "no client of the drained member was ACKed by another"
    );
    assert!(!holds(&m[b]), "the drained member holds the address");
    let holder = m.iter().position(holds);
    assert!(
        holder.is_some(),
        "nobody took the address over:\n{}",
        report(m)
    );

    m[others[1]].drover.cli_ok(&["pool", "undrain", &id]);
    let back = wait_until(Duration::from_secs(40), || {
        found.watch(m, 1);
        m.iter().all(|x| drain_of(x, &id).is_none()) && acked(&m[b]).len() > stopped
    });
    assert!(
        back,
        "the undrained member does not serve again:\n{}",
        report(m)
    );
    assert_eq!(
        m.iter().position(holds),
        holder,
        "the address stays (sticky)"
    );
}

#[test]
fn splits_under_dhcp_load_never_bind_an_address_twice() {
    common::require_cmd("perfdhcp", "kea-admin");
    common::require_cmd("nft", "nftables");
    let hub = Netns::new("split-hub");
    hub.add_bridge("br0", "198.18.0.254/24");
    let mut m: Vec<Member> = (0..3).map(|i| member(&hub, i)).collect();
    // perfdhcp needs an address of its own on the segment.
    let client = Netns::new("split-client");
    hub.add_veth_to_bridge("sc", "br0", &client, "eth0");
    client.add_addr("eth0", &format!("{CLIENT}/24"));
    let config = common::config_only(
        &["dhcp"],
        &format!("[pool]\nservice-address = \"{SERVICE_ADDRESS}\"\n"),
    );
    Member::form_pool(&mut m, &config);
    // DHCP serves the network each member makes of its interface (`eth0`, 198.18.0.0/24,
    // dynamic range .128-.253): the same on all of them.
    // Every row settled and every member owning its share (joiners hand out addresses 45 s
    // after they joined).
    let formed = wait_until(Duration::from_secs(150), || {
        m.iter().all(|x| {
            let out = x.drover.cli(&["pool", "status", "--json"]);
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            s["roster"].as_array().is_some_and(|r| r.len() == 3)
                && s["me"]["summary"]["dhcp"]["addresses"]
                    .as_u64()
                    .is_some_and(|n| n > 0)
        }) && m.iter().filter(|x| holds(x)).count() == 1
    });
    assert!(formed, "the pool of three did not form:\n{}", report(&m));

    let log = m[0].drover.scratch().join("perfdhcp.log");
    // For the whole test.
    let pid = common::pool::perfdhcp(&client, &log, 200);
    let mut found = Findings::new(SERVICE_ADDRESS);
    found.watch(&m, 10);
    drain_and_undrain_the_holder(&m, &mut found);
    // Each cut lasts past the takeovers it provokes (a member's clients after 10 s out of
    // sight, the service address a derived 6.25 s after the holder is noticed gone), each heal
    // past the catch-up of the returning side (10 s and a pull).
    let cuts = [
        (Cut::Link(0), "A|BC"),
        (Cut::Link(2), "AB|C"),
        (Cut::Filter(&[(0, 2), (2, 0)]), "chain A-B-C"),
        (Cut::Filter(&[(2, 0)]), "asymmetric A->C lost"),
    ];
    for (cut, name) in cuts {
        cut.apply(&hub, &m, false);
        eprintln!("cut {name}");
        found.watch(&m, 25);
        cut.apply(&hub, &m, true);
        found.watch(&m, 20);
        let one = wait_until(Duration::from_secs(30), || {
            m.iter().filter(|x| holds(x)).count() == 1
        });
        assert!(
            one,
            "after healing {name}, not exactly one holder:\n{}",
            report(&m)
        );
    }
    client.kill(pid);
    found.conclude(&m, &log, || report(&m));
}
