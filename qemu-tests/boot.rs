//! Lab tests: real QEMU VMs network-boot end to end, first through the reference server
//! (dnsmasq + a plain HTTP server, proving the harness and the lab assets), then through
//! drover: BIOS (SeaBIOS + the NIC's iPXE ROM) and UEFI (OVMF) to an initramfs marker, and a
//! RAM root loaded by drover's agent, whose boot timeline ends "up".
//!
//! Needs root and what `scripts/setup` installs and builds (`scripts/lab-assets`); without
//! them the tests fail with the command to run. Each boot prints a phase table to stderr.
//! `DROVER_QEMU_ACCEL=kvm` switches QEMU from TCG to KVM; `DROVER_KEEP_TEMP=1` keeps the
//! serial and server logs; `DROVER_LOG` sets drover's log filter (default `info`).

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::time::Duration;

/// Boot budget under TCG: a boot takes ~25 s alone (LAB.md: 11-21 s plus the kernel's own
/// start); the margin covers a loaded 2-core machine running two VMs at once.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

const MAC: &str = "52:54:00:00:00:11";
const IP: &str = "198.18.0.11";

/// Asserts that the marker line names `node`.
fn assert_marker(vm: &mut Vm, marker: &str, node: &str) {
    let line = vm.wait_line(marker, Duration::from_secs(30));
    assert_eq!(
        field(&line, "node"),
        Some(node),
        "{marker} names the wrong node: {line:?}"
    );
}

#[test]
fn netns_helpers_work() {
    let a = Netns::new("smoke");
    a.add_bridge("br0", "198.18.0.1/24");
    a.add_tap("tap0", "br0");
    let b = Netns::new("smoke-b");
    a.add_veth_to_bridge("vb", "br0", &b, "eth0");
    b.add_addr("eth0", "198.18.0.2/24");
    run_ok(b.cmd("busybox").args(["ping", "-c1", "-W2", "198.18.0.1"]));
    let log = TempDir::new("smoke");
    let mut sleep = b.cmd("sleep");
    sleep.arg("100");
    let pid = b.spawn_logged(sleep, &log.join("s.log"));
    assert!(b.running(pid));
    // `ip netns exec` enters the namespace just after the fork.
    assert!(wait_until(Duration::from_secs(5), || b.pids() == vec![pid]));
    b.kill(pid);
    assert!(!pid_alive(pid));
}

fn reference_boot(tag: &str, firmware: Firmware) {
    let assets = Assets::require();
    let lab = Lab::new(tag);
    let reference = Reference::start(&lab, &assets, "ref1");
    let mut vm = lab.vm("ref1", firmware, "52:54:00:00:00:21");
    reference.show_logs(&mut vm);
    vm.wait_serial("DROVER-BOOT-OK", BOOT_TIMEOUT);
    assert_marker(&mut vm, "DROVER-BOOT-OK", "ref1");
    vm.print_phases();
}

/// The harness and the marker image boot a BIOS VM through dnsmasq, without drover.
#[test]
fn reference_dnsmasq_bios_boot() {
    reference_boot("ref-bios", Firmware::Bios);
}

/// The same with OVMF: the harness's UEFI path works without drover.
#[test]
fn reference_dnsmasq_uefi_boot() {
    reference_boot("ref-uefi", Firmware::Uefi);
}

fn drover_marker_boot(tag: &str, firmware: Firmware) {
    let mut d = DroverLab::new(tag);
    d.add_marker_image();
    d.add_node("n1", MAC, IP, "marker");
    d.serve();
    let mut vm = d.boot("n1", firmware, MAC);
    vm.wait_serial("DROVER-BOOT-OK", BOOT_TIMEOUT);
    assert_marker(&mut vm, "DROVER-BOOT-OK", "n1");
    // The marker's /init prints the kernel command line right after the marker.
    let cmdline = vm.wait_line("cmdline:", Duration::from_secs(30));
    assert!(
        cmdline.contains("console=ttyS0") && cmdline.contains("drover.node=n1"),
        "kernel command line lacks the image's cmdline or drover.node: {cmdline:?}"
    );
    vm.print_phases();
}

/// SeaBIOS + the NIC's iPXE ROM boot the marker image through drover.
#[test]
fn bios_boot() {
    drover_marker_boot("bios", Firmware::Bios);
}

/// OVMF + the NIC's EFI iPXE ROM boot the marker image through drover.
#[test]
fn uefi_boot() {
    drover_marker_boot("uefi", Firmware::Uefi);
}

/// drover's agent loads the ramroot image into RAM, writes the node's settings and switches
/// into the image's /sbin/init.
#[test]
fn ramroot_boot() {
    let mut d = DroverLab::new("ramroot");
    d.add_ramroot_image();
    d.add_node("n1", MAC, IP, "ramroot");
    d.serve();
    let mut vm = d.boot("n1", Firmware::Bios, MAC);
    vm.wait_serial("DROVER-RAMROOT-OK", BOOT_TIMEOUT);
    vm.wait_serial("DROVER-RAMROOT-END", Duration::from_secs(30));
    assert_marker(&mut vm, "DROVER-RAMROOT-OK", "n1");
    let serial = harness::vm::clean_text(&vm.serial());
    let env = serial
        .split("--- /etc/drover/node.env")
        .nth(1)
        .and_then(|s| s.split("--- end").next())
        .unwrap_or_else(|| panic!("no node.env on the console:\n{}", tail(&serial, 30)));
    assert!(
        env.lines().any(|l| l.trim() == format!("DROVER_IP={IP}")),
        "node.env lacks DROVER_IP={IP}:\n{env}"
    );
    // DHCP options 6 and 42 reached the node through iPXE's script: drover is its name and
    // time server, and the name resolves through drover's DNS from inside the node.
    let server = harness::lab::SERVER_IP;
    for key in ["DROVER_DNS", "DROVER_NTP"] {
        assert!(
            env.lines().any(|l| l.trim() == format!("{key}={server}")),
            "node.env lacks {key}={server}:\n{env}"
        );
    }
    let dns = vm
        .line_with("DROVER-DNS")
        .unwrap_or_else(|| panic!("no DROVER-DNS line:\n{}", tail(&serial, 30)));
    assert!(
        dns.contains("n1.") && dns.contains(IP),
        "the node did not resolve its own name through drover: {dns:?}"
    );
    eprintln!("{dns}");
    // The boot timeline moved to "up": drover saw each fetch, the agent reported each step.
    let mut events = String::new();
    let up = wait_until(Duration::from_secs(10), || {
        events = d.drover.cli_ok(&["node", "events", "n1"]);
        events.starts_with("n1: up")
    });
    assert!(up, "the timeline of n1 is not up:\n{events}");
    for stage in [
        "dhcp", "script", "kernel", "initrd", "rootfs", "agent", "root", "ready",
    ] {
        assert!(
            events.contains(&format!(" {stage} ")),
            "no {stage} event:\n{events}"
        );
    }
    eprintln!("{events}");
    vm.print_phases();
}
