//! Lab test: IPMI power control drives a real QEMU VM. OpenIPMI's `ipmi_sim` is the node's
//! BMC; its `chassis_control` program starts QEMU (daemonized, in the lab namespace) on power
//! on, stops it on power off, and boots it from the network only when the next boot device
//! is PXE. `drover power bootdev pxe n1` + `drover power on n1` must boot the VM through drover
//! to its marker (the marker image then powers the VM off by itself); after `drover power
//! bootdev disk n1` + `power on`, the VM sits in its firmware and `drover power off n1` must
//! stop it.
//!
//! Needs root, the lab assets and `openipmi` (see `boot.rs`); without them it fails naming
//! what to install.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::bmc::{BmcSim, PASSWORD, USER};
use common::*;
use harness::vm::{qemu_command, Slot, VmSpec};
use harness::*;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const MAC: &str = "52:54:00:00:00:31";
const IP: &str = "198.18.0.31";

/// Quotes one argument for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The chassis program: QEMU's command line with `-display none -daemonize -pidfile` instead
/// of `-nographic`, and `-boot n` only when the boot device is PXE.
fn chassis_script(dir: &std::path::Path, argv: &[String]) -> String {
    let mut args = Vec::new();
    let mut it = argv.iter().peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-nographic" => args.push("-display none".to_string()),
            "-boot" => {
                it.next();
                args.push("-boot \"$bootarg\"".to_string());
            }
            _ => args.push(sh_quote(a)),
        }
    }
    let d = sh_quote(&dir.display().to_string());
    format!(
        r#"#!/bin/sh
dir={d}
echo "$*" >> "$dir/calls.log"
alive() {{ [ -f "$dir/qemu.pid" ] && kill -0 "$(cat "$dir/qemu.pid")" 2>/dev/null; }}
case "$1 $2" in
  "get power") if alive; then echo power:1; else echo power:0; fi;;
  "get boot") echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
  "set boot") echo "$3" > "$dir/boot";;
  "set power")
    if [ "$3" = 1 ]; then
      if ! alive; then
        bootarg=c
        [ "$(cat "$dir/boot" 2>/dev/null)" = pxe ] && bootarg=n
        {} -daemonize -pidfile "$dir/qemu.pid" >> "$dir/qemu.log" 2>&1
      fi
    else
      alive && kill "$(cat "$dir/qemu.pid")"
    fi;;
esac
exit 0
"#,
        args.join(" ")
    )
}

fn qemu_pid(dir: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("qemu.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[test]
fn ipmi_power_on_boots_a_vm_through_drover_and_power_off_stops_it() {
    require_root();
    let mut d = DroverLab::new("ipmi");
    d.add_marker_image();
    d.add_node("n1", MAC, IP, "marker");
    d.serve();
    let _slot = Slot::acquire();
    d.lab.ns.add_tap("tap0", BRIDGE);
    let bmc_dir = d.lab.dir.join("bmc");
    std::fs::create_dir_all(&bmc_dir).unwrap();
    let serial = bmc_dir.join("n1.serial.log");
    let spec = VmSpec {
        name: "n1",
        firmware: Firmware::Bios,
        mac: MAC,
        tap: "tap0",
        memory_mib: 256,
    };
    let cmd = qemu_command(d.lab.ns.name(), d.lab.dir.path(), &spec, &serial);
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let sim = BmcSim::start_in(&bmc_dir, &chassis_script(&bmc_dir, &argv));
    let pw = d.lab.dir.join("bmc.pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    d.drover.cli_ok(&[
        "node",
        "set",
        "n1",
        "--bmc",
        &sim.address(),
        "--bmc-user",
        USER,
        "--bmc-password-file",
        pw.to_str().unwrap(),
    ]);
    let status = |d: &DroverLab| {
        let out = d.drover.cli_ok(&["power", "status", "n1"]);
        out.lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status(&d), "off");
    d.drover.cli_ok(&["power", "bootdev", "pxe", "n1"]);
    d.drover.cli_ok(&["power", "on", "n1"]);
    // QEMU runs from the moment the chassis program returns; the boot takes seconds. Read
    // its pid now: QEMU removes the pid file when the guest powers itself off.
    let pid = qemu_pid(&bmc_dir).expect("QEMU wrote its pid file");
    assert_eq!(status(&d), "on");
    let booted = wait_until(BOOT_TIMEOUT, || {
        read_lossy(&serial)
            .lines()
            .any(|l| l.contains("DROVER-BOOT-OK") && l.contains("node=n1"))
    });
    if !booted {
        signal(pid, "KILL");
        panic!(
            "the VM did not reach its marker within {BOOT_TIMEOUT:?}\nserial:\n{}\nqemu:\n{}\nchassis calls:\n{}\ndrover:\n{}",
            tail(&read_lossy(&serial), 40),
            tail(&read_lossy(&bmc_dir.join("qemu.log")), 20),
            read_lossy(&bmc_dir.join("calls.log")),
            d.drover.log_tail(40)
        );
    }
    // The marker image powers the VM off by itself; the BMC then reports off.
    assert!(wait_until(Duration::from_secs(30), || !pid_alive(pid)));
    assert_eq!(status(&d), "off");
    // Boot from disk (there is none: the VM sits in the firmware), then power it off.
    d.drover.cli_ok(&["power", "bootdev", "disk", "n1"]);
    d.drover.cli_ok(&["power", "on", "n1"]);
    assert_eq!(status(&d), "on");
    let pid = qemu_pid(&bmc_dir).expect("QEMU wrote its pid file");
    assert!(pid_alive(pid));
    d.drover.cli_ok(&["power", "off", "n1"]);
    assert!(
        wait_until(Duration::from_secs(20), || !pid_alive(pid)),
        "QEMU still runs after power off"
    );
    assert_eq!(status(&d), "off");
    let calls = read_lossy(&bmc_dir.join("calls.log"));
    assert!(
        calls.contains("set boot pxe") && calls.contains("set power 0"),
        "{calls}"
    );
}
