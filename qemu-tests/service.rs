//! Service mode in the lab: three VMs whose nodes are in service mode boot drover's agent with
//! the service initrd and stay in the initramfs with sshd up and the ramroot image read-only
//! at /image; `drover exec` (run in the lab namespace, pinning host keys) reaches all three
//! and folds their identical output into one block; after `node set --no-service` one node
//! reboots on its own (QEMU exits: the lab runs VMs with -no-reboot) and, booted again,
//! starts its image up to the ramroot marker.
//!
//! Three VMs at once (the harness allows two): the test boots them one after the other and
//! each sits idle in service mode once up, so only one boots at any time; ~250 MiB of RAM
//! each. Needs root and what `scripts/setup` installs (openssh-server and busybox-static on
//! this host, copied into the service initrd); fails with the command to run otherwise.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use harness::*;
use std::time::Duration;

/// A boot under TCG takes ~25 s alone; the service initrd adds ~16 MiB to fetch and unpack.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const NODES: [(&str, &str, &str); 3] = [
    ("sv1", "52:54:00:00:5e:01", "198.18.0.51"),
    ("sv2", "52:54:00:00:5e:02", "198.18.0.52"),
    ("sv3", "52:54:00:00:5e:03", "198.18.0.53"),
];
const READY: &str = "service mode: ssh on";

/// `drover exec ARGS` inside the lab namespace: (stdout + stderr, success).
fn exec(d: &DroverLab, args: &[&str]) -> (String, bool) {
    let mut cmd = d.lab.ns.cmd(d.drover.bin());
    cmd.arg("--state-dir")
        .arg(d.drover.state_dir())
        .arg("exec")
        .args(["--strict-host-keys", "--connect-timeout", "10"])
        .args(args);
    let out = cmd.output().expect("run drover exec");
    (
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        out.status.success(),
    )
}

#[test]
fn nodes_in_service_mode_take_exec_and_leave_it() {
    common::require_cmd("sshd", "openssh-server");
    common::require_file(
        std::path::Path::new("/bin/busybox"),
        "install Debian's busybox-static (scripts/setup)",
    );
    vm::allow_vms(3);
    let mut d = DroverLab::new("svcq");
    d.add_ramroot_image();
    for (name, mac, ip) in NODES {
        d.add_node(name, mac, ip, "ramroot");
        d.drover.cli_ok(&["node", "set", name, "--service"]);
    }
    let show = d.drover.cli_ok(&["node", "show", "sv1"]);
    assert!(show.contains("mode:  service"), "{show}");
    d.serve();

    let mut vms = Vec::new();
    for (name, mac, _) in NODES {
        let mut vm = d.boot(name, Firmware::Bios, mac);
        vm.wait_serial(READY, BOOT_TIMEOUT);
        let ready = vm.wait_line(READY, Duration::from_secs(5));
        assert!(ready.contains("image read-only at /image"), "{ready}");
        vms.push(vm);
    }

    // The same command on all three: one block of output for sv[1-3].
    let probe = "ls /image/sbin/init; touch /image/x 2>&1 | grep -c Read-only";
    let (out, ok) = exec(&d, &["sv[1-3]", "--", probe]);
    assert!(ok, "{out}");
    assert!(
        out.contains("---------------- sv[1-3]\n/image/sbin/init\n1\n"),
        "{out}"
    );
    assert_eq!(
        out.matches("/image/sbin/init").count(),
        1,
        "folded once:\n{out}"
    );
    assert!(out.contains("ok (3): sv[1-3]"), "{out}");
    // Each node answers as itself (its own host name), so outputs differ per node here.
    let (out, ok) = exec(&d, &["sv[1-3]", "--", "hostname"]);
    assert!(ok, "{out}");
    for (name, _, _) in NODES {
        assert!(
            out.contains(&format!("---------------- {name}\n{name}\n")),
            "{out}"
        );
    }

    // Leaving: the agent sees the mode off and reboots (QEMU exits under -no-reboot).
    d.drover.cli_ok(&["node", "set", "sv1", "--no-service"]);
    let mut first = vms.remove(0);
    first.wait_serial("service mode is off; rebooting", Duration::from_secs(60));
    first.wait_exit(Duration::from_secs(30));
    drop(first);
    let mut again = d.boot("sv1-again", Firmware::Bios, NODES[0].1);
    again.wait_serial("DROVER-RAMROOT-OK", BOOT_TIMEOUT);
    let ok = again.wait_line("DROVER-RAMROOT-OK", Duration::from_secs(5));
    assert_eq!(field(&ok, "node"), Some("sv1"), "{ok}");
    assert!(
        !again.serial().contains(READY),
        "sv1 came back in service mode"
    );
    let show = d.drover.cli_ok(&["node", "show", "sv1"]);
    assert!(show.contains("mode:  normal"), "{show}");
}
