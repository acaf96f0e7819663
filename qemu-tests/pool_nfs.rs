//! NFS across pool members (issue 7): a VM runs from an NFS root that the pool serves from its
//! floating service address, and the member holding that address dies.
//!
//! Three `drover serve` members (namespaces on the lab bridge, see `harness::pool`) form a
//! pool with `[pool] service-address`; the image `nfscounter` (the lab's NFS-root tree, with
//! `drover-test=counter` on its command line and `/var/log` persistent) and the node are
//! added on the first member and reach the others by replication. The VM mounts its root
//! from the service address; its init appends 1, 2, 3, ... to `/var/log/drover-test/counter`
//! every 100 ms, each append fsynced (`dd conv=fsync`: the server acknowledged a stable
//! write or COMMIT), and prints `DROVER-COUNTER-ACK N` once it returned.
//!
//! The member holding the address (A) is killed with SIGKILL while the counter runs.
//! Asserted: the address moves to a survivor (B) and leaves A's namespace (its lifetime runs
//! out); the VM goes on after the pause (30 more acknowledged appends, none failing); B's
//! copy of the node's layer holds every number from 1 to the last acknowledged one, in order,
//! once each — so every write acknowledged before the kill reached B; `pool status` on the
//! survivors shows A down. Printed: the pause, as the test saw it on the console.
//!
//! Needs root and what `scripts/setup` installs and builds (`lab/nfsroot`); without them it
//! fails with the command to run.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::pool::{self, Member};
use harness::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Boot budget under TCG, plus the NFS mount and the scratch copies.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the pool may take to form, settle its roster and replicate.
const POOL_TIMEOUT: Duration = Duration::from_secs(120);
/// From the kill to the VM's next acknowledged appends: death detection, the address's
/// safety time, the client's reconnect and the grace period, with room for a loaded machine.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(180);
/// The floating address nodes mount their root from.
const SERVICE_ADDRESS: &str = "198.18.0.100";
const NODE: (&str, &str, &str) = ("n1", "52:54:00:00:09:01", "198.18.0.61");
/// Appends acknowledged before the kill, and after the recovery.
const BEFORE_KILL: u64 = 30;
const AFTER_RECOVERY: u64 = 30;

fn config() -> String {
    format!(
        "[pool]\nservice-address = \"{SERVICE_ADDRESS}\"\n\n\
         [nfs]\nenabled = true\nlease-secs = 10\ngrace-secs = 10\n"
    )
}

/// Whether the service address is on the member's interface.
fn holds(m: &Member) -> bool {
    let out = m.ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {SERVICE_ADDRESS}/"))
}

/// The index of the one member holding the service address, waiting for one to take it.
fn holder(m: &[Member], but: Option<usize>, timeout: Duration) -> usize {
    let mut found = None;
    let ok = wait_until(timeout, || {
        let h: Vec<usize> = (0..m.len())
            .filter(|&i| Some(i) != but && holds(&m[i]))
            .collect();
        found = (h.len() == 1).then(|| h[0]);
        found.is_some()
    });
    assert!(
        ok,
        "no single live member holds {SERVICE_ADDRESS} within {timeout:?}: {}\n{}",
        (0..m.len())
            .map(|i| format!("{}={}", m[i].ip, holds(&m[i])))
            .collect::<Vec<_>>()
            .join(" "),
        pool::statuses(m)
    );
    found.expect("checked")
}

/// The numbers the VM printed as acknowledged, in console order.
fn acked(vm: &Vm) -> Vec<u64> {
    harness::vm::clean_text(&vm.serial())
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("DROVER-COUNTER-ACK ")? + "DROVER-COUNTER-ACK ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// The counter file in a member's copy of the node's layer.
fn counter_file(m: &Member) -> PathBuf {
    m.drover
        .state_dir()
        .join("nfs/nodes")
        .join(NODE.0)
        .join("var/log/drover-test/counter")
}

fn numbers(path: &std::path::Path) -> Vec<u64> {
    read_lossy(path)
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{}: not a number: {l:?}", path.display()))
        })
        .collect()
}

#[test]
fn nfs_root_survives_the_death_of_its_member() {
    let assets = Assets::require();
    let tree = repo_root().join("lab/nfsroot/rootfs");
    let init = read_lossy(&tree.join("sbin/init"));
    assert!(
        init.contains("drover-test=counter"),
        "lab/nfsroot/rootfs has no counter mode: run scripts/lab-assets (or scripts/setup)"
    );
    let lab = Lab::new("qpnfs");
    let mut m: Vec<Member> = (0..3).map(|i| pool::member(&lab, i)).collect();

    let a = &m[0].drover;
    a.cli_ok(&[
        "image",
        "add",
        "nfscounter",
        "--kernel",
        pool::path(&assets.kernel),
        "--rootfs",
        pool::path(&tree),
        "--cmdline",
        "console=ttyS0 drover-test=counter",
        "--root",
        "nfs",
        "--persistent",
        "/var/log",
    ]);
    a.cli_ok(&[
        "node",
        "add",
        NODE.0,
        "--mac",
        NODE.1,
        "--ip",
        NODE.2,
        "--image",
        "nfscounter",
    ]);
    pool::form(&m);
    let config = config();
    for x in m.iter_mut() {
        x.serve(Some(&config));
    }
    let t0 = Instant::now();
    assert!(
        pool::wait_replicated(&m, NODE.0, POOL_TIMEOUT),
        "the pool did not form or replicate:\n{}",
        pool::statuses(&m)
    );
    let first = holder(&m, None, POOL_TIMEOUT);
    eprintln!(
        "pool formed in {:?}; {} holds {SERVICE_ADDRESS}",
        t0.elapsed(),
        m[first].ip
    );

    let mut vm = lab.vm("n1", Firmware::Bios, NODE.1);
    for x in &m {
        vm.show_on_failure(&format!("drover {} log", x.ip), x.drover.log_path());
    }
    vm.wait_serial("DROVER-NFSROOT-OK", BOOT_TIMEOUT);
    vm.wait_serial(":/root / nfs4", Duration::from_secs(30));
    let serial = harness::vm::clean_text(&vm.serial());
    let mount = serial
        .lines()
        .find(|l| l.contains(":/root / nfs4"))
        .unwrap_or_default();
    assert!(
        mount.contains(&format!(" {SERVICE_ADDRESS}:/root / nfs4")),
        "the root is not mounted from the service address: {mount}"
    );
    vm.wait_serial(
        &format!("DROVER-COUNTER-ACK {BEFORE_KILL}"),
        Duration::from_secs(60),
    );

    // The holder may have changed since the check above only if a member died: look again.
    let dead = holder(&m, None, Duration::from_secs(5));
    signal(m[dead].drover.pid().expect("running"), "KILL");
    let t_kill = Instant::now();
    let before = acked(&vm);
    let last_before = *before.last().expect("acknowledged appends");
    eprintln!(
        "killed {} (SIGKILL), which held {SERVICE_ADDRESS}, after append {last_before}",
        m[dead].ip
    );

    // The VM goes on, served by a survivor.
    let mut pause = None;
    let resumed = wait_until(RECOVERY_TIMEOUT, || {
        let now = acked(&vm);
        if pause.is_none() && now.last().is_some_and(|&n| n > last_before + 1) {
            pause = Some(t_kill.elapsed());
        }
        now.last()
            .is_some_and(|&n| n >= last_before + AFTER_RECOVERY)
    });
    let serial = harness::vm::clean_text(&vm.serial());
    assert!(
        !serial.contains("DROVER-COUNTER-FAILED"),
        "an append failed on the VM:\n{}",
        tail(&serial, 30)
    );
    assert!(
        resumed,
        "the VM did not go on within {RECOVERY_TIMEOUT:?} after the kill (last acknowledged \
         append before it: {last_before}, now: {:?}):\n{}\n{}",
        acked(&vm).last(),
        tail(&serial, 30),
        pool::statuses(&m)
    );
    vm.kill();
    let after = acked(&vm);
    let last = *after.last().expect("acknowledged appends");
    eprintln!(
        "the VM went on {:?} after the kill (console view); {} appends acknowledged in all",
        pause.unwrap_or_default(),
        last
    );

    // The address left the dead member and is on one survivor.
    let b = holder(&m, Some(dead), Duration::from_secs(30));
    assert!(
        !holds(&m[dead]),
        "{SERVICE_ADDRESS} is still on the killed member's interface"
    );
    let expected: Vec<u64> = (1..=last).collect();
    let on_b = numbers(&counter_file(&m[b]));
    // The append in flight when the VM was stopped may or may not have landed.
    let on_b_acked: Vec<u64> = on_b.iter().copied().take(last as usize).collect();
    assert_eq!(
        on_b_acked,
        expected,
        "{} (the new holder) lacks or misorders acknowledged appends (first 1..={last} \
         expected; {} lines)",
        m[b].ip,
        on_b.len()
    );
    assert!(
        on_b.len() as u64 <= last + 1,
        "{} holds more appends than the VM made: {}",
        m[b].ip,
        on_b.len()
    );
    for (i, x) in m.iter().enumerate() {
        if i != dead && i != b {
            eprintln!(
                "third member {}: {} lines in its copy",
                x.ip,
                numbers(&counter_file(x)).len()
            );
        }
    }

    let dead_ip = m[dead].ip.clone();
    let down = wait_until(Duration::from_secs(30), || {
        m.iter()
            .filter(|x| x.ip != dead_ip)
            .all(|x| x.sees(&dead_ip).as_deref() == Some("down"))
    });
    assert!(
        down,
        "the survivors do not show {dead_ip} down:\n{}",
        pool::statuses(&m)
    );
}
