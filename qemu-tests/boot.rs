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

/// The boot-time half of issue 19's lab bench (`bench/lab.sh` runs it): one BIOS VM boots
/// the marker image, from nothing to its marker, through `drover lab run` (smoltcp on a
/// user-space switch, run as `nobody`) and through `drover serve` on kernel sockets in a
/// namespace (bridge + tap), in alternating order for `DROVER_BENCH_ROUNDS` rounds (default
/// 3). Each time is the whole wall time: state directory, image, server start, QEMU, boot.
/// Prints every run and a markdown table of the medians with their ratio.
#[test]
#[ignore = "bench: run it through bench/lab.sh"]
fn bench_lab_against_kernel_sockets() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;
    let rounds = harness::bench::rounds(3);
    let assets = repo_root().join("lab");
    let (mut lab, mut kernel) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for smoltcp in order {
            let started = Instant::now();
            if smoltcp {
                let tmp = TempDir::new("bench-lab");
                let dir = tmp.join("lab");
                std::fs::create_dir_all(&dir).unwrap();
                for d in [tmp.path(), dir.as_path()] {
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
                }
                let mut cmd = std::process::Command::new(require_cmd("runuser", "util-linux"));
                cmd.args(["-u", "nobody", "--"])
                    .arg(drover_bin())
                    .args(["lab", "run", "--dir"])
                    .arg(&dir)
                    .arg("--assets")
                    .arg(&assets)
                    .args(["--image", "marker", "--expect", "DROVER-BOOT-OK node=n1"])
                    .args(["--timeout", "240"])
                    .stdin(std::process::Stdio::null());
                let out = cmd.output().expect("run drover lab run");
                assert!(
                    out.status.success(),
                    "lab run failed: {}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                lab.push(started.elapsed().as_secs_f64());
            } else {
                let mut d = DroverLab::new("bench-kernel");
                d.add_marker_image();
                d.add_node("n1", MAC, IP, "marker");
                d.serve();
                let mut vm = d.boot("n1", Firmware::Bios, MAC);
                vm.wait_serial("DROVER-BOOT-OK", BOOT_TIMEOUT);
                kernel.push(started.elapsed().as_secs_f64());
            }
            eprintln!(
                "LABBENCH round={round} {} {:.1} s",
                if smoltcp { "lab" } else { "kernel" },
                started.elapsed().as_secs_f64()
            );
        }
    }
    let (l, k) = (
        harness::bench::median(lab.clone()),
        harness::bench::median(kernel.clone()),
    );
    println!("| path | boots | median s to marker (each) | kernel / lab |");
    println!("|---|---|---|---|");
    println!(
        "| `drover lab run` (smoltcp, no root) | {rounds} | {l:.1} ({lab:.1?}) | {:.2} |",
        k / l
    );
    println!(
        "| `drover serve` (kernel sockets, namespace) | {rounds} | {k:.1} ({kernel:.1?}) | 1.00 |"
    );
}
