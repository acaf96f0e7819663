//! Lab test of swarm delivery (issue 20): four VMs boot one RAM-root image through drover,
//! and the later three, one after the other, get part of it from the first instead of from
//! drover: the agent's boot event and drover's `drover_swarm_bytes_total` counters say how
//! many bytes came from peers.
//!
//! The image is the lab's ramroot with a different `/sbin/init` (it prints the marker and
//! stays up, where the ramroot powers off: a node that is off seeds nothing) and 6 MiB of
//! incompressible bytes, so that the tarball has some 150 chunks.
//!
//! Needs root, QEMU and the lab assets (`scripts/setup`); fails with the command to run
//! otherwise. Run with a release binary (a debug initramfs is too big for the VMs).

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::time::Duration;

/// Boot budget per VM under TCG on a loaded 2-core host.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

const INIT: &str = "#!/bin/sh
mount -t proc proc /proc 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo
echo \"DROVER-SWARM-UP node=$(hostname)\"
while true; do sleep 3600; done
";

/// The lab's ramroot with a staying init and `var/noise`.
fn swarm_rootfs(assets: &Assets, dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&assets.ramroot)
            .arg(&root),
    );
    let init = root.join("sbin/init");
    let _ = std::fs::remove_file(&init);
    std::fs::write(&init, INIT).unwrap();
    run_ok(std::process::Command::new("chmod").arg("755").arg(&init));
    std::fs::write(root.join("var/noise"), noise(20, 6 << 20)).unwrap();
    root
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start:?} in /metrics:\n{text}"))
}

/// "X.Y MiB from peers" in a node's root event.
fn peer_mib(events: &str) -> f64 {
    events
        .split("MiB from peers")
        .next()
        .and_then(|s| s.rsplit(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no swarm figures in the events:\n{events}"))
}

#[test]
fn four_nodes_share_one_ramroot() {
    require_cmd("curl", "curl");
    let mut d = DroverLab::new("swarm");
    let root = swarm_rootfs(&d.assets, d.lab.dir.path());
    d.drover.cli_ok(&[
        "image",
        "add",
        "swarm",
        "--kernel",
        d.assets.kernel.to_str().unwrap(),
        "--rootfs",
        root.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0",
    ]);
    let nodes: Vec<(String, String, String)> = (1..=4)
        .map(|i| {
            (
                format!("s{i}"),
                format!("52:54:00:00:20:0{i}"),
                format!("198.18.0.{}", 20 + i),
            )
        })
        .collect();
    for (name, mac, ip) in &nodes {
        d.add_node(name, mac, ip, "swarm");
    }
    d.serve();
    let token = d.token("swarm-test");

    // The first node has no peer: everything from drover. It stays up and seeds.
    let (name, mac, _) = &nodes[0];
    let mut first = d.boot(name, Firmware::Bios, mac);
    first.wait_serial("DROVER-SWARM-UP", BOOT_TIMEOUT);
    // The three others one after the other: the harness runs two VMs at once on this
    // machine (`harness::vm::MAX_VMS`), and the first stays up to seed. Each stops after its
    // boot, its phases printed.
    for (name, mac, _) in &nodes[1..] {
        let mut vm = d.boot(name, Firmware::Bios, mac);
        vm.wait_serial("DROVER-SWARM-UP", BOOT_TIMEOUT);
        vm.print_phases();
    }
    let mut peers_total = 0.0;
    for (name, _, _) in &nodes {
        let mut events = String::new();
        let up = wait_until(Duration::from_secs(10), || {
            events = d.drover.cli_ok(&["node", "events", name]);
            events.starts_with(&format!("{name}: up"))
        });
        assert!(up, "{name} is not up:\n{events}");
        let mib = peer_mib(&events);
        eprintln!("{name}: {mib} MiB from peers");
        if name == "s1" {
            assert_eq!(mib, 0.0, "the first node had no peer:\n{events}");
        } else {
            peers_total += mib;
        }
    }
    assert!(peers_total > 0.0, "no node got anything from a peer");

    let text = d.metrics(&token);
    let from_peers = metric(&text, "drover_swarm_bytes_total{source=\"peers\"} ");
    let from_members = metric(&text, "drover_swarm_bytes_total{source=\"members\"} ");
    let reports = metric(&text, "drover_swarm_events_total{event=\"reports\"} ");
    eprintln!("drover_swarm_bytes_total: members {from_members}, peers {from_peers}");
    assert_eq!(reports, 4, "every node reported:\n{text}");
    assert!(from_peers > 0, "peers served no part of the image:\n{text}");
    // Every node got the whole tarball: together at least 4 times 6 MiB.
    assert!(
        from_peers + from_members >= 4 * (6 << 20),
        "members {from_members} + peers {from_peers}"
    );
    first.print_phases();
}
