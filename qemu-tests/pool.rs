//! The boot path across pool members, with real VMs: three `drover serve` members, each in
//! its own network namespace with a veth to the lab bridge, form one pool (`pool init` on
//! the first, `pool join` on the others); the ramroot image and the nodes are added on the
//! first member only and reach the others by replication (the test polls for the image
//! files). Four VMs boot: three reserved nodes and one without a reservation (a dynamic
//! address from the answering member's share). The member that served the first VM's iPXE
//! script is killed with SIGKILL right after the first two VMs fetched their scripts, while
//! they are fetching their kernels, initramfs images and roots; the iPXE fallbacks and the agent's server list carry them on to the
//! survivors. The other two VMs boot after the death.
//!
//! Asserted: every VM reaches its marker; the VM whose member died took its root from a
//! survivor; the first VMs' scripts listed all three members, the later ones only the two
//! survivors (as servers, name and time servers); no address is leased to two clients in any
//! member's store (the dead member's included); `drover pool status` on both survivors shows
//! the dead member as down; the survivors' DNS (asked with `dig`) gives `drover` all three
//! members' addresses and names each member.
//!
//! Needs root and what `scripts/setup` installs and builds; without them it fails with the
//! command to run. At most two VMs run at once (`harness::vm::MAX_VMS`).

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::pool::{self, Member};
use harness::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Boot budget under TCG on a loaded 2-core machine (a boot takes ~25 s alone).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the pool may take to form, settle its roster (30 s for joiners) and replicate.
const POOL_TIMEOUT: Duration = Duration::from_secs(120);

/// The node's settings the ramroot image prints (`/etc/drover/node.env`), unquoted.
fn node_env(vm: &Vm) -> BTreeMap<String, String> {
    let serial = harness::vm::clean_text(&vm.serial());
    let env = serial
        .split("--- /etc/drover/node.env")
        .nth(1)
        .and_then(|s| s.split("--- end").next())
        .unwrap_or_else(|| {
            panic!(
                "no node.env on {}'s console:\n{}",
                vm.name,
                tail(&serial, 30)
            )
        });
    env.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            Some((k.to_string(), v.trim_matches(['\'', '"']).to_string()))
        })
        .collect()
}

/// The addresses in a `DROVER_SERVERS` (URLs) or `DROVER_DNS` (addresses) value.
fn hosts_of(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_start_matches("http://")
                .split([':', '/'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The host of the first script fetch (`http://HOST/boot/MAC`) on the VM's console.
fn first_fetch_host(vm: &Vm) -> String {
    let serial = harness::vm::clean_text(&vm.serial());
    let url = serial
        .lines()
        .filter(|l| l.contains("/boot/"))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .unwrap_or_else(|| panic!("{} fetched no script over HTTP", vm.name));
    hosts_of(url).pop().unwrap_or_default()
}

fn wait_marker(vm: &mut Vm, node: &str) -> BTreeMap<String, String> {
    vm.wait_serial("DROVER-RAMROOT-OK", BOOT_TIMEOUT);
    vm.wait_serial("DROVER-RAMROOT-END", Duration::from_secs(60));
    let line = vm.line_with("DROVER-RAMROOT-OK").unwrap_or_default();
    assert_eq!(field(&line, "node"), Some(node), "{line:?}");
    vm.print_phases();
    node_env(vm)
}

#[test]
fn vms_boot_through_a_pool_while_a_member_dies() {
    let assets = Assets::require();
    let lab = Lab::new("qpool");
    let mut m: Vec<Member> = (0..3).map(|i| pool::member(&lab, i)).collect();

    // Fleet data on the first member only; the others get it by replication.
    let a = &m[0].drover;
    a.cli_ok(&[
        "image",
        "add",
        "ramroot",
        "--kernel",
        pool::path(&assets.kernel),
        "--rootfs",
        pool::path(&assets.ramroot),
        "--cmdline",
        "console=ttyS0",
    ]);
    let nodes = [
        ("n1", "52:54:00:00:07:01", Some("198.18.0.11")),
        ("n2", "52:54:00:00:07:02", Some("198.18.0.12")),
        ("n3", "52:54:00:00:07:03", Some("198.18.0.13")),
        ("n4", "52:54:00:00:07:04", None),
    ];
    for (name, mac, ip) in nodes {
        let mut args = vec!["node", "add", name, "--mac", mac, "--image", "ramroot"];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        a.cli_ok(&args);
    }
    pool::form(&m);
    for x in m.iter_mut() {
        x.serve(None);
    }

    // The pool forms, every roster row settles (DHCP shares over three members), and the
    // image files and nodes are on every member.
    let t0 = Instant::now();
    assert!(
        pool::wait_replicated(&m, "n4", POOL_TIMEOUT),
        "the pool did not form or replicate:\n{}\nblobs {:?} / {:?} / {:?}",
        pool::statuses(&m),
        m[0].blobs(),
        m[1].blobs(),
        m[2].blobs()
    );
    eprintln!("pool formed and replicated in {:?}", t0.elapsed());
    let ips: Vec<String> = m.iter().map(|x| x.ip.clone()).collect();

    // First two VMs; the member that served n1's script dies right after serving it.
    let boot = |name: &str, mac: &str| {
        let mut vm = lab.vm(name, Firmware::Bios, mac);
        for x in &m {
            vm.show_on_failure(&format!("drover {} log", x.ip), x.drover.log_path());
        }
        vm
    };
    let mut v1 = boot("n1", nodes[0].1);
    let mut v2 = boot("n2", nodes[1].1);
    // Both scripts fetched (a script itself has no fallback: DHCP names one URL), so the
    // kill lands while kernels, initramfs images or root trees are being fetched.
    v1.wait_serial("drover: booting n1", BOOT_TIMEOUT);
    v2.wait_serial("drover: booting n2", BOOT_TIMEOUT);
    let dead_ip = first_fetch_host(&v1);
    let dead = m
        .iter()
        .position(|x| x.ip == dead_ip)
        .unwrap_or_else(|| panic!("n1's script came from {dead_ip:?}, not a member"));
    signal(m[dead].drover.pid().expect("running"), "KILL");
    let t_kill = Instant::now();
    eprintln!("killed member {dead_ip} (SIGKILL) right after it served n1's script");
    let survivors: Vec<String> = ips.iter().filter(|i| **i != dead_ip).cloned().collect();

    let e1 = wait_marker(&mut v1, "n1");
    let e2 = wait_marker(&mut v2, "n2");
    for e in [&e1, &e2] {
        let mut listed = hosts_of(&e["DROVER_SERVERS"]);
        listed.sort();
        assert_eq!(
            listed, ips,
            "scripts before the death list every member: {e:?}"
        );
    }
    assert_ne!(
        hosts_of(&e1["DROVER_SERVER"]).first(),
        Some(&dead_ip),
        "n1 took its root from the dead member"
    );
    eprintln!(
        "n1 and n2 up {:?} after the kill; n1 took its root from {}",
        t_kill.elapsed(),
        e1["DROVER_SERVER"]
    );
    drop(v1);
    drop(v2);

    // The survivors see the death.
    let down = wait_until(Duration::from_secs(30), || {
        m.iter()
            .filter(|x| x.ip != dead_ip)
            .all(|x| x.sees(&dead_ip).as_deref() == Some("down"))
    });
    assert!(
        down,
        "the survivors do not show {dead_ip} down:\n{}",
        m.iter()
            .filter(|x| x.ip != dead_ip)
            .map(|x| x.status())
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Two more VMs after the death, one without a reservation.
    let mut v3 = boot("n3", nodes[2].1);
    let mut v4 = boot("n4", nodes[3].1);
    let e3 = wait_marker(&mut v3, "n3");
    let e4 = wait_marker(&mut v4, "n4");
    for e in [&e3, &e4] {
        for key in ["DROVER_SERVERS", "DROVER_DNS", "DROVER_NTP"] {
            let mut listed = hosts_of(&e[key]);
            listed.sort();
            assert_eq!(
                listed, survivors,
                "{key} after the death lists the survivors: {e:?}"
            );
        }
    }
    let dynamic: std::net::Ipv4Addr = e4["DROVER_IP"].parse().expect("n4's address");
    assert!(
        dynamic.octets()[3] >= 128,
        "n4 got {dynamic}, not from the dynamic range"
    );

    // No address leased to two clients, in any store (the dead member's too).
    let mut addrs: Vec<&str> = [&e1, &e2, &e3, &e4]
        .iter()
        .map(|e| e["DROVER_IP"].as_str())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "two VMs share an address: {addrs:?}");
    let mut owner: BTreeMap<String, (String, String)> = BTreeMap::new();
    for x in &m {
        for (ip, mac) in x.leases() {
            if let Some((other_mac, at)) = owner.get(&ip) {
                assert_eq!(
                    other_mac, &mac,
                    "{ip} is leased to {other_mac} on {at} and to {mac} on {}",
                    x.ip
                );
            } else {
                owner.insert(ip, (mac, x.ip.clone()));
            }
        }
    }
    let n4_mac = nodes[3].1;
    assert!(
        owner
            .get(&dynamic.to_string())
            .is_some_and(|(mac, _)| mac == n4_mac),
        "no lease of {dynamic} to n4 in any store: {owner:?}"
    );
    eprintln!("leases across the three stores: {owner:?}");

    // The zone names every roster member (the dead one too), the same on each survivor:
    // `drover` has all three addresses, and each address points back to its member's name.
    let dig = |server: &str, args: &[&str]| -> Vec<String> {
        let out = run_ok(
            lab.ns
                .cmd("dig")
                .args(["+short", "+time=2", "+tries=2"])
                .arg(format!("@{server}"))
                .args(args),
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    require_cmd("dig", "bind9-dnsutils");
    for server in &survivors {
        assert_eq!(
            dig(server, &["drover.cluster", "A"]),
            ips,
            "drover.cluster on {server}"
        );
        for ip in &ips {
            let names = dig(server, &["-x", ip]);
            assert!(
                names.len() == 1 && names[0].starts_with("drover-"),
                "PTR of {ip} on {server}: {names:?}"
            );
            assert_eq!(
                dig(server, &[&names[0], "A"]),
                [ip.as_str()],
                "{}",
                names[0]
            );
        }
    }
}
