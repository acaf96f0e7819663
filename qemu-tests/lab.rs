//! `drover lab` as an ordinary user: VMs boot through drover's smoltcp segment with no root,
//! no taps, no bridges and no namespaces. Run as root, each command runs as `nobody`
//! (`runuser -u nobody`); run as another user, it runs as that user.
//!
//! Needs QEMU, the iPXE ROMs, OVMF and the lab assets (`scripts/setup`, `scripts/lab-assets`);
//! without them the tests fail with the command to run. `DROVER_KEEP_TEMP=1` keeps the lab
//! directories (consoles, logs, store).

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A boot under TCG takes ~40 s here (16 s of it iPXE waiting for IPv6 router
/// advertisements); the margin covers a loaded 2-core machine.
const BOOT_TIMEOUT_SECS: u64 = 240;
const MARKER: &str = "DROVER-BOOT-OK node=n1";

fn assets() -> PathBuf {
    let lab = repo_root().join("lab");
    let how = "run scripts/lab-assets (or scripts/setup)";
    require_file(&lab.join("kernel/vmlinuz"), how);
    require_file(&lab.join("images/marker/initrd.cpio"), how);
    require_cmd("qemu-system-x86_64", "qemu-system-x86");
    require_file(
        Path::new("/usr/lib/ipxe/qemu/efi-virtio.rom"),
        "the virtio NIC's iPXE ROM from Debian package `ipxe-qemu`: run scripts/setup",
    );
    lab
}

/// A lab directory the unprivileged user can write.
fn lab_dir(tmp: &TempDir) -> PathBuf {
    let dir = tmp.join("lab");
    std::fs::create_dir_all(&dir).unwrap();
    // The whole path must be reachable by the unprivileged user.
    for d in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    dir
}

/// `drover ARGS` as an ordinary user: `nobody` when the test runs as root.
fn drover_as_user(args: &[&str]) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new(require_cmd("runuser", "util-linux"));
        c.args(["-u", "nobody", "--"]).arg(drover_bin());
        c
    } else {
        Command::new(drover_bin())
    };
    cmd.args(args).stdin(Stdio::null());
    cmd.env("DROVER_LOG", "info");
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr (last lines):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 40)
    )
}

/// `drover lab run` on `dir` with the repository's assets and `args`.
fn lab_run(dir: &Path, assets: &Path, args: &[&str]) -> Output {
    let mut cmd = drover_as_user(&["lab", "run", "--dir"]);
    cmd.arg(dir).arg("--assets").arg(assets).args(args);
    output(cmd)
}

fn run_marker(firmware: &str, netdev: &str) {
    let assets = assets();
    let tmp = TempDir::new(&format!("lab-run-{firmware}-{netdev}"));
    let dir = lab_dir(&tmp);
    let timeout = BOOT_TIMEOUT_SECS.to_string();
    let out = lab_run(
        &dir,
        &assets,
        &[
            "--firmware",
            firmware,
            "--netdev",
            netdev,
            "--image",
            "marker",
            "--expect",
            "DROVER-BOOT-OK node=n[0-9]+",
            "--timeout",
            &timeout,
        ],
    );
    assert!(out.status.success(), "lab run failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(MARKER),
        "lab run exited 0 without printing the matched line:\n{}",
        text(&out)
    );
    // The boot went through drover: its DHCP leased the node's reserved address.
    let console = std::fs::read_to_string(dir.join("n1.serial.log")).unwrap_or_default();
    assert!(
        console.contains("198.18.0.11"),
        "the console shows no DHCP address from the lab:\n{}",
        tail(&console, 30)
    );
}

/// A BIOS VM boots the marker image through `drover lab run`, as an ordinary user.
#[test]
fn lab_run_bios_reaches_the_marker() {
    run_marker("bios", "stream");
}

/// The same with OVMF.
#[test]
fn lab_run_uefi_reaches_the_marker() {
    run_marker("uefi", "stream");
}

/// The same boot with the VM's NIC on QEMU's `-netdev dgram` (one frame per unix datagram).
#[test]
fn lab_run_over_netdev_dgram_reaches_the_marker() {
    run_marker("bios", "dgram");
}

/// A regex the console never shows: `lab run` gives up after its timeout, exits non-zero
/// and says why, with the console's last lines. The timeout is short: the marker VM powers
/// off after its marker (within 15 s with a release build), and a VM that exits first is
/// another error.
#[test]
fn lab_run_times_out_without_a_match() {
    let assets = assets();
    let tmp = TempDir::new("lab-timeout");
    let dir = lab_dir(&tmp);
    let out = lab_run(
        &dir,
        &assets,
        &["--expect", "NEVER-PRINTED-[0-9]{12}", "--timeout", "5"],
    );
    assert!(
        !out.status.success(),
        "lab run matched the impossible:\n{}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not show /NEVER-PRINTED-[0-9]{12}/") && stderr.contains("5 s"),
        "no clear timeout message:\n{}",
        text(&out)
    );
    // The VM was stopped with the lab: no QEMU of this lab is left.
    let left = Command::new("pgrep")
        .args(["-f", &format!("{}/segment.sock", dir.display())])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(left.is_empty(), "processes of the lab are left: {left}");
}

/// Stops a lab that `lab up` started, whatever the test's outcome.
struct Up {
    dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = output(drover_as_user(&[
            "lab",
            "down",
            "--dir",
            self.dir.to_str().unwrap(),
        ]));
    }
}

/// `drover lab up` on `dir` with the repository's assets and `args`.
fn lab_up(dir: &Path, assets: &Path, args: &[&str]) -> Output {
    let mut cmd = drover_as_user(&["lab", "up", "--dir"]);
    cmd.arg(dir).arg("--assets").arg(assets).args(args);
    output(cmd)
}

/// Waits until `lab status` shows n1 and n2 at the marker; returns the status (fails the
/// test with both consoles otherwise).
fn wait_for_markers(dir: &Path, when: &str) -> String {
    let d = dir.to_str().unwrap();
    let mut status = String::new();
    let booted = wait_until(Duration::from_secs(2 * BOOT_TIMEOUT_SECS), || {
        std::thread::sleep(Duration::from_millis(500));
        status =
            String::from_utf8_lossy(&output(drover_as_user(&["lab", "status", "--dir", d])).stdout)
                .into_owned();
        ["n1", "n2"].iter().all(|n| {
            status
                .lines()
                .any(|l| l.starts_with(n) && l.contains(" marker "))
        })
    });
    let console = |n: &str| std::fs::read_to_string(dir.join(format!("{n}.serial.log")));
    assert!(
        booted,
        "not both VMs reached the marker{when}:\n{status}\nn1:\n{}\nn2:\n{}",
        tail(&console("n1").unwrap_or_default(), 20),
        tail(&console("n2").unwrap_or_default(), 20)
    );
    status
}

/// `lab up --nodes 2` starts two VMs in the background; both boot to the marker (seen by
/// `lab status`), and `lab down` stops them and the server.
#[test]
fn lab_up_two_nodes_then_down() {
    let assets = assets();
    let tmp = TempDir::new("lab-up");
    let dir = lab_dir(&tmp);
    let d = dir.to_str().unwrap();
    let out = lab_up(&dir, &assets, &["--nodes", "2"]);
    let up = Up { dir: dir.clone() };
    assert!(out.status.success(), "lab up failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("page http://127.0.0.1:"),
        "lab up printed no page address:\n{stdout}"
    );
    wait_for_markers(&dir, "");
    let console = |n: &str| std::fs::read_to_string(dir.join(format!("{n}.serial.log")));
    for (n, marker) in [("n1", "node=n1"), ("n2", "node=n2")] {
        let text = console(n).unwrap_or_default();
        assert!(text.contains(marker), "{n}'s console lacks {marker}");
    }
    let file = std::fs::read_to_string(dir.join("lab.json")).unwrap();
    let out = output(drover_as_user(&["lab", "down", "--dir", d]));
    assert!(out.status.success(), "lab down failed:\n{}", text(&out));
    let pid = file
        .split("\"pid\": ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse::<u32>().ok())
        .expect("lab.json names the server's pid");
    assert!(
        !pid_alive(pid),
        "the lab's server {pid} still runs after lab down"
    );
    drop(up);
}

/// `lab up --members 2`: two pool members (own processes, own stores, gossip over loopback)
/// serve the segment. `lab kill-member 1` stops the first and marks it dead through the
/// survivor; both VMs then boot to their marker through member 2 (198.18.0.2).
#[test]
fn lab_with_two_members_survives_kill_member() {
    let assets = assets();
    let tmp = TempDir::new("lab-members");
    let dir = lab_dir(&tmp);
    let d = dir.to_str().unwrap();
    let out = lab_up(&dir, &assets, &["--nodes", "2", "--members", "2"]);
    let up = Up { dir: dir.clone() };
    assert!(out.status.success(), "lab up failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for m in ["m1 ", "m2 "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(m) && l.contains("running")),
            "member {m}is not listed as running:\n{stdout}"
        );
    }
    // `up` returns once the pool has formed and the VMs started; under TCG a VM needs
    // seconds before its first DHCP, so the nodes boot after the kill.
    let out = output(drover_as_user(&["lab", "kill-member", "1", "--dir", d]));
    assert!(out.status.success(), "kill-member failed:\n{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("marked dead through member 2"), "{said}");
    let status = wait_for_markers(&dir, " after the kill");
    let console = |n: &str| std::fs::read_to_string(dir.join(format!("{n}.serial.log")));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("m1 ") && l.contains("stopped")),
        "member 1 still runs:\n{status}"
    );
    for n in ["n1", "n2"] {
        let text = console(n).unwrap_or_default();
        assert!(
            text.contains(&format!("node={n}")) && text.contains("drover.server=http://198.18.0.2"),
            "{n} did not boot through member 2:\n{}",
            tail(&text, 20)
        );
    }
    let out = output(drover_as_user(&["lab", "down", "--dir", d]));
    assert!(out.status.success(), "lab down failed:\n{}", text(&out));
    let left = Command::new("pgrep")
        .args(["-f", &format!("lab member --dir {d}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(left.is_empty(), "members of the lab are left: {left}");
    drop(up);
}

/// The boot-time half of issue 19's lab bench (`bench/lab.sh` runs it): one BIOS VM boots
/// the marker image, from nothing to its marker, through `drover lab run` (smoltcp on a
/// user-space switch, as an ordinary user) and through `drover serve` on kernel sockets in a
/// namespace (bridge + tap), in alternating order for `DROVER_BENCH_ROUNDS` rounds (default
/// 3). Each time is the whole wall time: state directory, image, server start, QEMU, boot.
/// Prints every run and a markdown table of the medians with their ratio.
#[test]
#[ignore = "bench: run it through bench/lab.sh"]
fn bench_lab_against_kernel_sockets() {
    use std::time::Instant;
    let rounds = harness::bench::rounds(3);
    let assets = assets();
    let timeout = BOOT_TIMEOUT_SECS.to_string();
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
                let dir = lab_dir(&tmp);
                let args = [
                    "--image",
                    "marker",
                    "--expect",
                    MARKER,
                    "--timeout",
                    &timeout,
                ];
                let out = lab_run(&dir, &assets, &args);
                assert!(out.status.success(), "lab run failed:\n{}", text(&out));
                lab.push(started.elapsed().as_secs_f64());
            } else {
                let mut d = harness::DroverLab::new("bench-kernel");
                d.add_marker_image();
                d.add_node("n1", "52:54:00:00:00:11", "198.18.0.11", "marker");
                d.serve();
                let mut vm = d.boot("n1", harness::Firmware::Bios, "52:54:00:00:00:11");
                vm.wait_serial(MARKER, Duration::from_secs(BOOT_TIMEOUT_SECS));
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
