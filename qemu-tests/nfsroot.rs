//! NFS-root boots (issue 5): QEMU VMs boot drover's agent, which mounts the node's root over
//! NFSv4 from drover and switches into the image `lab/nfsroot/rootfs` (made by
//! `scripts/lab-assets`). Its `/sbin/init` prints what survived the last boot
//! (`DROVER-NFSROOT-BEFORE`), writes a file into `/var/log` and one into `/etc/ssh` (the
//! image's persistent paths; `/etc/ssh` lies inside the scratch directory `/etc`, so the agent
//! binds it back from the server into its tmpfs) and one into `/etc` (node-local scratch),
//! tries `/usr` (read-only), prints `DROVER-NFSROOT-AFTER` and powers off.
//!
//! `nfs_root_keeps_exactly_the_persistent_files`: n1 boots, writes, boots again and finds its
//! persistent file but not its scratch file; n2, booting the same image, sees neither of
//! n1's files; the server holds one NFS client record per node, each with the node's own
//! client owner.
//!
//! `dev_agent_against_ganesha` (ignored: a development check, not the test) boots the
//! same image with nfs-ganesha serving the root in the lab instead of drover, which proves the
//! agent's NFS path against an independent server: a read-only root with a read-write
//! export nested at `/root/var/log`. Run it with
//! `cargo test --release --test qemu_nfsroot -- --ignored dev_agent_against_ganesha`.
//!
//! drover serves with `[nfs] enabled = true`; the dev checks leave drover's NFS server off (the
//! default), so that the port is free for ganesha or stays closed.
//!
//! Needs root and what `scripts/setup` installs. `DROVER_KEEP_TEMP=1` keeps the logs.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Boot budget under TCG (see `boot.rs`), plus the NFS mount and the scratch copies.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// From the image's marker to its power-off.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const NFS_PORT: u16 = 2049;
/// drover's NFS server is off by default.
const NFS_CONFIG: &str = "[nfs]\nenabled = true\n";

const N1: (&str, &str, &str) = ("n1", "52:54:00:00:05:01", "198.18.0.51");
const N2: (&str, &str, &str) = ("n2", "52:54:00:00:05:02", "198.18.0.52");

fn nfsroot_tree() -> PathBuf {
    let tree = repo_root().join("lab/nfsroot/rootfs");
    require_file(
        &tree.join("sbin/init"),
        "run scripts/lab-assets (or scripts/setup)",
    );
    tree
}

/// `drover image add nfsroot --rootfs lab/nfsroot/rootfs --root nfs --persistent
/// /var/log,/etc/ssh --cmdline "console=ttyS0 no_timer_check"`.
fn add_nfsroot_image(d: &DroverLab) {
    let tree = nfsroot_tree();
    d.drover.cli_ok(&[
        "image",
        "add",
        "nfsroot",
        "--kernel",
        d.assets.kernel.to_str().expect("lab paths are UTF-8"),
        "--rootfs",
        tree.to_str().expect("lab paths are UTF-8"),
        "--cmdline",
        // Under TCG on a loaded host the kernel's early check of the IO-APIC timer can fail
        // and panic ("IO-APIC + timer doesn't work!"; seen in 1 of 6 runs with two tests
        // side by side): skip that check.
        "console=ttyS0 no_timer_check",
        "--root",
        "nfs",
        "--persistent",
        "/var/log,/etc/ssh",
    ]);
    let list = d.drover.cli_ok(&["image", "list"]);
    assert!(
        list.lines().any(|l| l.starts_with("nfsroot ")
            && l.contains("nfs-root")
            && l.contains("/etc/ssh,/var/log")),
        "image list does not show the NFS root:\n{list}"
    );
}

/// Whether something accepts TCP connections on `addr:port` inside the lab.
fn tcp_open(lab: &Lab, addr: &str, port: u16) -> bool {
    lab.ns
        .cmd("bash")
        .args(["-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `key=value` fields of the image's report line `marker`.
/// One boot of `node` until its power-off: the BEFORE and AFTER lines. `nfs_log` is shown
/// next to drover's log when the boot fails.
fn boot_once(
    d: &DroverLab,
    vm_name: &str,
    node: (&str, &str, &str),
    nfs_log: Option<&std::path::Path>,
) -> (String, String) {
    let mut vm = d.boot(vm_name, Firmware::Bios, node.1);
    if let Some(log) = nfs_log {
        vm.show_on_failure("NFS server log", log);
    }
    // A failed mount makes the agent retry forever: stop at its first failure, with its
    // reason, rather than at the boot timeout.
    let mut failure = None;
    let booted = wait_until(BOOT_TIMEOUT, || {
        let serial = vm.serial();
        failure = serial
            .lines()
            .find(|l| l.contains("drover-agent:") && l.contains("; retrying in"))
            .map(harness::vm::clean_line);
        failure.is_some() || serial.contains("DROVER-NFSROOT-OK")
    });
    if let Some(line) = failure {
        panic!(
            "{vm_name}: the agent could not mount {}'s root from drover: {line}\n(drover's \
             NFS server must show each node its image at /root, merged with its own layer \
             for the persistent paths: issue 5's file side)",
            node.0
        );
    }
    assert!(
        booted,
        "{vm_name}: no DROVER-NFSROOT-OK within {BOOT_TIMEOUT:?}"
    );
    let ok = vm.wait_line("DROVER-NFSROOT-OK", RUN_TIMEOUT);
    assert_eq!(field(&ok, "node"), Some(node.0), "{ok}");
    assert_eq!(
        field(&ok, "root"),
        Some("nfs4"),
        "the root is not NFSv4: {ok}"
    );
    let before = vm.wait_line("DROVER-NFSROOT-BEFORE", RUN_TIMEOUT);
    let after = vm.wait_line("DROVER-NFSROOT-AFTER", RUN_TIMEOUT);
    vm.wait_exit(RUN_TIMEOUT);
    vm.print_phases();
    eprintln!("{vm_name}: {before}\n{vm_name}: {after}");
    (before, after)
}

fn check_first_boot(node: &str, before: &str, after: &str) {
    for key in ["persistent", "ssh", "scratch"] {
        assert_eq!(field(before, key), Some("absent"), "{key}: {before}");
    }
    let mine = format!("by-{node}");
    for key in ["persistent", "ssh", "scratch"] {
        assert_eq!(field(after, key), Some(mine.as_str()), "{key}: {after}");
    }
    assert_eq!(
        field(after, "usr"),
        Some("readonly"),
        "a non-persistent path outside the scratch directories was writable: {after}"
    );
}

/// After n1's reboot: exactly its persistent files are back.
fn check_reboot(before: &str) {
    for key in ["persistent", "ssh"] {
        assert_eq!(
            field(before, key),
            Some("by-n1"),
            "n1's persistent file ({key}) did not survive its reboot: {before}"
        );
    }
    assert_eq!(
        field(before, "scratch"),
        Some("absent"),
        "n1's scratch file survived its reboot: {before}"
    );
}

/// Each node's NFS client presents its own client owner (the kernel builds it from the host
/// name at mount time), so the server keeps one client record per node. With one owner for
/// all (the kernel's "(none)" host name in the initramfs), each node's mount took over the
/// record and open state of the node before it: nodes booting side by side stalled at
/// random (issue 5's intermittent `qemu_nfsroot` failure).
fn check_client_owners(d: &DroverLab, nodes: &[(&str, &str, &str)]) {
    let owner_at = |clients: &serde_json::Value, ip: &str| -> Option<String> {
        clients["clients"]
            .as_array()?
            .iter()
            .find(|c| c["addr"] == ip)
            .map(|c| c["owner"].as_str().unwrap_or_default().to_string())
    };
    // The status file is rewritten every few seconds; the leases outlast this wait.
    let mut clients = serde_json::Value::Null;
    let _ = wait_until(Duration::from_secs(20), || {
        clients = serde_json::from_str(&d.drover.cli_ok(&["nfs", "clients", "--json"]))
            .unwrap_or_default();
        nodes.iter().all(|n| owner_at(&clients, n.2).is_some())
    });
    for (name, _, ip) in nodes {
        let owner = owner_at(&clients, ip).unwrap_or_else(|| {
            panic!(
                "no NFS client record of {name} ({ip}) on the server: another node's mount \
                 took it over (same client owner?):\n{clients:#}"
            )
        });
        assert!(
            owner.rsplit([' ', '/']).next() == Some(*name),
            "{name}'s NFS client owner {owner:?} does not name the node: the agent must set \
             the host name before it mounts the root, or all nodes share one owner:\n{clients:#}"
        );
    }
}

/// The test: persistent files survive a reboot, scratch files do not, and a second
/// node sees neither of the first node's files.
#[test]
fn nfs_root_keeps_exactly_the_persistent_files() {
    let mut d = DroverLab::new("nfsroot");
    add_nfsroot_image(&d);
    for (name, mac, ip) in [N1, N2] {
        d.add_node(name, mac, ip, "nfsroot");
    }
    // Fails with drover's log (naming what is missing) if the NFS server cannot start.
    d.drover.serve_with(Some(&d.lab.ns), BRIDGE, NFS_CONFIG);
    assert!(
        tcp_open(&d.lab, SERVER_IP, NFS_PORT),
        "drover serve does not accept NFS connections on {SERVER_IP}:{NFS_PORT}: the NFSv4 \
         server (issue 5: the protocol side and the per-node root views) is not in this \
         build, so nodes set to --root nfs cannot mount their root"
    );

    let (before, after) = boot_once(&d, "n1-boot1", N1, None);
    check_first_boot("n1", &before, &after);

    // The reboot and the second node run side by side (two VMs at most).
    let (second, other) = std::thread::scope(|s| {
        let again = s.spawn(|| boot_once(&d, "n1-boot2", N1, None));
        let other = s.spawn(|| boot_once(&d, "n2-boot1", N2, None));
        (
            again.join().expect("n1's second boot"),
            other.join().expect("n2's boot"),
        )
    });
    check_reboot(&second.0);
    let (before, after) = other;
    check_first_boot("n2", &before, &after);
    check_client_owners(&d, &[N1, N2]);

    // The agent reported the NFS root on n1's timeline.
    let events = d.drover.cli_ok(&["node", "events", "n1"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains(" root ") && l.contains("NFSv4")),
        "no NFS root event on n1's timeline:\n{events}"
    );
    assert!(events.starts_with("n1: up"), "{events}");
    eprintln!("{events}");
}

/// Development check of the agent's failure path: with nothing serving NFS, the agent says
/// why on the console and on the node's timeline, and keeps retrying. (Only meaningful while
/// nothing listens on the NFS port: it asserts that first.)
#[test]
#[ignore = "development check of the agent's NFS failure path"]
fn dev_unreachable_nfs_server_is_reported() {
    let mut d = DroverLab::new("nfs-fail");
    add_nfsroot_image(&d);
    d.add_node(N1.0, N1.1, N1.2, "nfsroot");
    d.serve();
    assert!(
        !tcp_open(&d.lab, SERVER_IP, NFS_PORT),
        "something serves NFS in the lab: this check needs the port closed"
    );
    let mut vm = d.boot("n1-fail", Firmware::Bios, N1.1);
    vm.wait_serial("cannot reach the NFS server", BOOT_TIMEOUT);
    let mut events = String::new();
    let failed = wait_until(Duration::from_secs(10), || {
        events = d.drover.cli_ok(&["node", "events", "n1"]);
        events.starts_with("n1: failed") && events.contains("cannot reach the NFS server")
    });
    assert!(failed, "no failed event with the reason:\n{events}");
    // It retries: a later attempt is announced on the console.
    vm.wait_serial("retrying in 2s", Duration::from_secs(30));
    eprintln!("{events}");
}

/// nfs-ganesha in the lab namespace, serving `tree` read-only at `/root`, and `varlog` and
/// `etcssh` read-write at `/root/var/log` and `/root/etc/ssh`. Killed on drop.
struct Ganesha {
    pid: u32,
    log: PathBuf,
}

impl Ganesha {
    fn start(
        lab: &Lab,
        tree: &std::path::Path,
        varlog: &std::path::Path,
        etcssh: &std::path::Path,
    ) -> Ganesha {
        let bin = require_cmd("ganesha.nfsd", "nfs-ganesha");
        require_file(
            std::path::Path::new("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"),
            "the VFS backend of Debian package `nfs-ganesha-vfs`: run scripts/setup",
        );
        let dir = lab.dir.join("ganesha");
        std::fs::create_dir_all(dir.join("recovery")).expect("ganesha dirs");
        let conf = dir.join("ganesha.conf");
        let export = |id: u32, path: &std::path::Path, pseudo: &str, access: &str| {
            format!(
                "EXPORT {{ Export_Id = {id}; Path = \"{}\"; Pseudo = \"{pseudo}\"; \
                 Protocols = 4; Transports = TCP; Access_Type = {access}; \
                 Squash = No_Root_Squash; SecType = sys; FSAL {{ Name = VFS; }} }}\n",
                path.display()
            )
        };
        let text = format!(
            "NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = {NFS_PORT}; Bind_addr = {SERVER_IP}; \
             Enable_NLM = false; Enable_RQUOTA = false; }}\n\
             NFSV4 {{ Graceless = true; Lease_Lifetime = 10; Minor_Versions = 0, 1; \
             RecoveryRoot = \"{}\"; }}\n{}{}{}",
            dir.join("recovery").display(),
            export(1, tree, "/root", "RO"),
            export(2, varlog, "/root/var/log", "RW"),
            export(3, etcssh, "/root/etc/ssh", "RW"),
        );
        std::fs::write(&conf, text).expect("write ganesha.conf");
        let log = dir.join("ganesha.log");
        let mut cmd = lab.ns.cmd(bin);
        cmd.arg("-F")
            .arg("-L")
            .arg(&log)
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"]);
        let pid = lab.ns.spawn_logged(cmd, &dir.join("ganesha.out"));
        let g = Ganesha { pid, log };
        let up = wait_until(Duration::from_secs(20), || {
            tcp_open(lab, SERVER_IP, NFS_PORT)
        });
        assert!(
            up,
            "nfs-ganesha does not listen on {SERVER_IP}:{NFS_PORT}:\n{}",
            tail(&read_lossy(&g.log), 30)
        );
        g
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        signal(self.pid, "KILL");
    }
}

/// Development check of the agent's NFS path against nfs-ganesha (see the module docs).
#[test]
#[ignore = "development check against nfs-ganesha; the issue's test is the one above"]
fn dev_agent_against_ganesha() {
    let mut d = DroverLab::new("nfs-gan");
    add_nfsroot_image(&d);
    d.add_node(N1.0, N1.1, N1.2, "nfsroot");
    // ganesha needs a file system with file handles (not a tmpfs): a copy of the tree in the
    // lab's scratch directory, and n1's /var/log next to it.
    let tree = d.lab.dir.join("tree");
    run_ok(Command::new("cp").arg("-a").arg(nfsroot_tree()).arg(&tree));
    let (varlog, etcssh) = (d.lab.dir.join("n1-var-log"), d.lab.dir.join("n1-etc-ssh"));
    std::fs::create_dir_all(&varlog).expect("n1's /var/log");
    std::fs::create_dir_all(&etcssh).expect("n1's /etc/ssh");
    d.serve();
    let ganesha = Ganesha::start(&d.lab, &tree, &varlog, &etcssh);

    let (before, after) = boot_once(&d, "n1-gan1", N1, Some(&ganesha.log));
    check_first_boot("n1", &before, &after);
    assert_eq!(
        std::fs::read_to_string(varlog.join("drover-test/persist")).unwrap_or_default(),
        "by-n1\n",
        "the persistent file is not in n1's export"
    );
    assert_eq!(
        std::fs::read_to_string(etcssh.join("drover-test-key")).unwrap_or_default(),
        "by-n1\n",
        "the file in /etc/ssh (persistent inside the scratch /etc) is not in n1's export"
    );
    let (before, _) = boot_once(&d, "n1-gan2", N1, Some(&ganesha.log));
    check_reboot(&before);
    let events = d.drover.cli_ok(&["node", "events", "n1"]);
    eprintln!("{events}");
    assert!(events.starts_with("n1: up"), "{events}");
}

/// The sum of `drover_service_events_total{service="nfs",...,event="EVENT"}` over interfaces.
fn nfs_event(metrics: &str, event: &str) -> u64 {
    let tail = format!("event=\"{event}\"}} ");
    metrics
        .lines()
        .filter(|l| l.starts_with("drover_service_events_total{service=\"nfs\""))
        .filter_map(|l| {
            l.split_once(&tail)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The bench of issue 14 (`bench/nfs-deleg.sh` runs it): one NFS-root boot of n1 with read
/// delegations off and on, in alternating order for `DROVER_BENCH_ROUNDS` rounds (default
/// 2), each on a fresh server and namespace. Prints, per boot, the time from QEMU's start to
/// the image's `DROVER-NFSROOT-OK`, the COMPOUNDs and operations the server answered (from
/// /metrics) and the delegations the node's client held at the end (`nfs clients`), then a
/// markdown table of the medians. Asserts only that delegations were granted when on and
/// never when off.
#[test]
#[ignore = "bench: run it through bench/nfs-deleg.sh"]
fn bench_delegations() {
    let rounds = harness::bench::rounds(2);
    // (delegations, seconds to marker, compounds, ops, delegations held)
    let mut runs: Vec<(bool, f64, u64, u64, u64)> = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for deleg in order {
            let mut d = DroverLab::new(if deleg { "deleg-on" } else { "deleg-off" });
            add_nfsroot_image(&d);
            d.add_node(N1.0, N1.1, N1.2, "nfsroot");
            let token = d.token("bench");
            let config = format!("[nfs]\nenabled = true\ndelegations = {deleg}\n");
            d.drover.serve_with(Some(&d.lab.ns), BRIDGE, &config);
            let mut vm = d.boot(&format!("n1-deleg-{deleg}-{round}"), Firmware::Bios, N1.1);
            let at = vm.wait_serial("DROVER-NFSROOT-OK", BOOT_TIMEOUT);
            vm.wait_serial("DROVER-NFSROOT-AFTER", RUN_TIMEOUT);
            vm.wait_exit(RUN_TIMEOUT);
            let metrics = d.metrics(&token);
            let ops = ["ops_read", "ops_write", "ops_meta", "ops_state"]
                .iter()
                .map(|e| nfs_event(&metrics, e))
                .sum();
            // The status file behind `nfs clients` is rewritten every few seconds; the
            // client's lease outlasts the wait.
            let mut held = 0;
            let _ = wait_until(Duration::from_secs(10), || {
                let clients: serde_json::Value =
                    serde_json::from_str(&d.drover.cli_ok(&["nfs", "clients", "--json"]))
                        .unwrap_or_default();
                held = clients["clients"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c["delegations"].as_u64()).sum())
                    .unwrap_or(0);
                held > 0
            });
            let row = (
                deleg,
                at.as_secs_f64(),
                nfs_event(&metrics, "calls_compound"),
                ops,
                held,
            );
            eprintln!("NFSDELEG round={round} {row:?}");
            runs.push(row);
        }
    }
    let median = |deleg: bool, pick: fn(&(bool, f64, u64, u64, u64)) -> f64| {
        harness::bench::median(runs.iter().filter(|r| r.0 == deleg).map(pick).collect())
    };
    println!("| delegations | boots | time to marker (s) | COMPOUNDs | operations | held at end |");
    println!("|---|---|---|---|---|---|");
    for deleg in [false, true] {
        println!(
            "| {} | {rounds} | {:.1} | {:.0} | {:.0} | {:.0} |",
            if deleg { "on" } else { "off" },
            median(deleg, |r| r.1),
            median(deleg, |r| r.2 as f64),
            median(deleg, |r| r.3 as f64),
            median(deleg, |r| r.4 as f64),
        );
    }
    assert!(
        runs.iter().all(|r| (r.4 > 0) == r.0),
        "delegations held do not follow the setting: {runs:?}"
    );
}
