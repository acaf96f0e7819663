//! Discovery in the lab: an unknown VM boots drover's agent in discovery mode (the ramroot
//! image is the discovery image), reports its inventory with the LLDP neighbour a switch
//! announces on the bridge (this test binary plays the switch: `lab-sw1`, port `swp3`), is
//! adopted by a port rule as `dn03` and reboots; booted again it comes up as `dn03` in its
//! image. A second VM with another MAC on the same port then takes over `dn03` (board
//! replacement: the node's MAC changes, the old board stays in the history).
//!
//! Needs root and what `scripts/setup` installs and builds (`scripts/lab-assets`); fails
//! with the command to run otherwise. Two VMs at most, one at a time.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use harness::*;
use std::time::Duration;

/// A boot under TCG takes ~25 s alone; discovery adds the agent's report and one poll.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const FIRST: &str = "52:54:00:00:0d:31";
const SECOND: &str = "52:54:00:00:0d:32";
const RULE: &str = "lab-sw1 port 1-8 -> dn[01-08]";

/// Plays the switch: LLDP out of `br0` every second until killed.
#[test]
#[ignore = "helper, run by the test below inside the lab namespace"]
fn lldp_sender() {
    let Ok(iface) = std::env::var("DROVER_LLDP_SENDER") else {
        return;
    };
    let index = ::drover::net::sys::interface_index(&iface).expect("the bridge exists");
    let frame = ::drover::discover::lldp::encode_frame(
        [0x02, 0, 0, 0, 0x5e, 0x01],
        "lab-sw1-chassis",
        "swp3",
        "lab-sw1",
    );
    loop {
        ::drover::net::sys::send_frame(index, &frame).expect("send an LLDP frame");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Boots `mac` unknown; waits until its agent is adopted and reboots (QEMU exits: the lab
/// runs VMs with -no-reboot).
fn discover(d: &DroverLab, name: &str, mac: &str) {
    let mut vm = d.boot(name, Firmware::Bios, mac);
    vm.wait_serial("LLDP on ", BOOT_TIMEOUT);
    let lldp = vm.wait_line("LLDP on ", Duration::from_secs(5));
    assert!(lldp.contains("lab-sw1 port swp3"), "{lldp}");
    vm.wait_serial("discovery: adopted as node dn03", Duration::from_secs(60));
    vm.wait_exit(Duration::from_secs(30));
}

#[test]
fn an_unknown_vm_is_discovered_adopted_by_port_and_replaced() {
    let mut d = DroverLab::new("dscq");
    d.add_ramroot_image();
    d.drover.cli_ok(&["node", "discovery-image", "ramroot"]);
    d.drover
        .cli_ok(&["rule", "add", RULE, "--image", "ramroot"]);
    // LAB.md: a Linux bridge forwards LLDP only with this mask (for frames between ports).
    d.lab.ns.ip(&[
        "link",
        "set",
        lab::BRIDGE,
        "type",
        "bridge",
        "group_fwd_mask",
        "0x4000",
    ]);
    let me = std::env::current_exe().expect("test binary path");
    let mut sender = d.lab.ns.cmd(&me);
    sender
        .args(["--ignored", "--exact", "lldp_sender", "--nocapture"])
        .env("DROVER_LLDP_SENDER", lab::BRIDGE);
    let sender = d.lab.ns.spawn(sender);
    d.serve();

    discover(&d, "first", FIRST);
    let all = d.drover.cli_ok(&["node", "discovered", "--all"]);
    let row = all
        .lines()
        .find(|l| l.starts_with(FIRST))
        .unwrap_or_else(|| panic!("{FIRST} not listed:\n{all}"));
    assert!(
        row.contains("QEMU") && row.contains("eth0=lab-sw1/swp3"),
        "{row}"
    );
    assert!(row.ends_with("dn03"), "{row}");

    // The same board boots again, now as dn03 in its image.
    let mut vm = d.boot("first-again", Firmware::Bios, FIRST);
    vm.wait_serial("DROVER-RAMROOT-OK", BOOT_TIMEOUT);
    let ok = vm.wait_line("DROVER-RAMROOT-OK", Duration::from_secs(5));
    assert_eq!(field(&ok, "node"), Some("dn03"), "{ok}");
    vm.kill();

    // A new board on the same port takes the name over.
    discover(&d, "second", SECOND);
    let node = d.drover.cli_ok(&["node", "show", "dn03"]);
    assert!(node.contains(SECOND) && !node.contains(FIRST), "{node}");
    let all = d.drover.cli_ok(&["node", "discovered", "--all"]);
    assert!(all.contains(&format!("dn03 (replaced {FIRST})")), "{all}");
    d.lab.ns.kill(sender);
}
