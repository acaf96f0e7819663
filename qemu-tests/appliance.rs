//! Lab test of the Debian package on a fresh server: VM A is a Debian 12 made by debootstrap
//! (`scripts/lab-debian`, cached in `lab/debian/`) that boots with systemd, installs the
//! `.deb` that `scripts/package` makes from the binary under test (`dpkg -i`), adds the
//! marker image and one node with the installed CLI, names its NIC in
//! `/etc/drover/drover.toml` and starts the packaged unit. VM B, on the same lab segment,
//! network-boots through it to the marker.
//!
//! The steps inside A are a shell script on a second disk that A's `drover-lab.service` runs;
//! it reports on the console with `DROVER-LAB` lines, which the test reads. The root disk is
//! used with QEMU's snapshot: the cached image never changes.
//!
//! Needs root, QEMU, a release binary (`cargo test --release`: the package must hold what a
//! release ships), dpkg-deb, mkfs.ext4, `lab/` from `scripts/lab-assets` and `lab/debian/`
//! from `scripts/lab-debian` (both run by `scripts/setup`); without them it fails naming what
//! to run. Two VMs at its peak (the harness's limit). Prints where the time went.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Boot budget of the Debian VM up to the running service, under TCG: kernel, systemd,
/// `dpkg -i`, two CLI calls and the service's start.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(300);
/// Boot budget of a network boot (as in `boot.rs`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Debian's address on the lab bridge (the bridge itself is 198.18.0.1).
const SERVER_IP: &str = "198.18.0.2";
const MAC_A: &str = "52:54:00:00:00:d1";
const MAC_B: &str = "52:54:00:00:00:d2";
const IP_B: &str = "198.18.0.22";

/// The package of the binary under test, made by `scripts/package --no-build`; its path.
fn build_package(scratch: &Path) -> PathBuf {
    let bin = drover_bin();
    // scripts/package takes the binary from $CARGO_TARGET_DIR/TRIPLE/release/drover.
    let target = bin
        .ancestors()
        .nth(3)
        .filter(|_| bin.parent().is_some_and(|p| p.ends_with("release")))
        .unwrap_or_else(|| {
            panic!(
                "{} is not a release build: run this test with `cargo test --release` \
                 (the package holds the release binary)",
                bin.display()
            )
        });
    require_cmd("dpkg-deb", "dpkg");
    let out = run_ok(
        Command::new(repo_root().join("scripts/package"))
            .arg("--no-build")
            .env("CARGO_TARGET_DIR", target)
            .env("TMPDIR", scratch),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    let deb = text
        .lines()
        .find_map(|l| l.strip_prefix("package: "))
        .unwrap_or_else(|| panic!("scripts/package named no package:\n{text}"));
    PathBuf::from(deb)
}

/// What VM A runs from its second disk: install, add the image and node, configure, start.
/// Every step that fails says so on the console (`DROVER-LAB-FAIL`) and stops.
fn run_script() -> String {
    format!(
        r#"set -u
fail() {{ echo "DROVER-LAB-FAIL $*"; exit 1; }}
d=/mnt/lab
dpkg -i $d/drover.deb || fail "dpkg -i"
echo "DROVER-LAB installed $(dpkg-query -W -f '${{Version}}' drover)"
echo "DROVER-LAB enabled $(systemctl is-enabled drover.service)"
s="drover --state-dir /var/lib/drover"
$s image add marker --kernel $d/vmlinuz --initrd $d/marker.cpio --cmdline console=ttyS0 \
  || fail "image add"
$s node add n1 --mac {MAC_B} --ip {IP_B} --image marker || fail "node add"
i=0
while [ $i -lt 300 ]; do
  for n in /sys/class/net/*; do
    [ "$(cat $n/address)" = {MAC_A} ] && IF=${{n##*/}}
  done
  [ -n "${{IF:-}}" ] && break
  sleep 0.1; i=$((i + 1))
done
[ -n "${{IF:-}}" ] || fail "no NIC with {MAC_A}"
ip addr add {SERVER_IP}/24 dev $IF && ip link set $IF up || fail "address on $IF"
sed -i "s/^interfaces = \[\]$/interfaces = [\"$IF\"]/" /etc/drover/drover.toml
drover check-config /etc/drover/drover.toml || fail "check-config"
systemctl start drover.service || fail "systemctl start"
timeout 120 journalctl -b -u drover.service -f -o cat | grep -m1 -q 'drover: ready' \
  || fail "the service did not log ready: $(journalctl -b -u drover.service -o cat | tail -5)"
pid=$(systemctl show -p MainPID --value drover.service)
# Debian 12 merged /usr: systemd names the unit by /lib; the package installs it in /usr/lib.
echo "DROVER-LAB unit $(realpath "$(systemctl show -p FragmentPath --value drover.service)")"
echo "DROVER-LAB exe $(readlink /proc/$pid/exe)"
echo "DROVER-LAB caps $(awk '/^CapEff/ {{ print $2 }}' /proc/$pid/status)"
echo "DROVER-LAB state $(systemctl is-active drover.service)"
echo "DROVER-LAB service-ready on $IF"
"#
    )
}

/// A small ext4 image holding the files of `dir`.
fn ext4_image(dir: &Path, image: &Path) {
    require_cmd("mkfs.ext4", "e2fsprogs");
    let bytes: u64 = std::fs::read_dir(dir)
        .expect("read the data directory")
        .map(|e| {
            e.expect("a directory entry")
                .metadata()
                .expect("metadata")
                .len()
        })
        .sum();
    // ext4's metadata and journal on top of the files.
    let size_mib = bytes / (1 << 20) + 32;
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .args([dir, image])
            .arg(format!("{size_mib}M")),
    );
}

/// The value after `key ` on the console line that has `key`.
fn console_value(vm: &mut Vm, key: &str) -> String {
    let line = vm.wait_line(key, Duration::from_secs(5));
    line.split(key)
        .nth(1)
        .map(|rest| rest.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn debian_installs_the_package_and_serves_a_network_boot() {
    require_root();
    let debian = repo_root().join("lab/debian");
    for f in ["root.img", "initrd.cpio", "vmlinuz"] {
        require_file(
            &debian.join(f),
            "run scripts/lab-debian as root (scripts/setup runs it)",
        );
    }
    let assets = Assets::require();
    let lab = Lab::new("appl");
    let deb = build_package(lab.dir.path());

    let data = lab.dir.join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    std::fs::copy(&deb, data.join("drover.deb")).expect("copy the package");
    std::fs::copy(&assets.kernel, data.join("vmlinuz")).expect("copy the kernel");
    std::fs::copy(&assets.marker_initrd, data.join("marker.cpio")).expect("copy the marker");
    std::fs::write(data.join("run.sh"), run_script()).expect("write run.sh");
    let data_img = lab.dir.join("data.img");
    ext4_image(&data, &data_img);

    let root_img = debian.join("root.img");
    let disks = [(root_img.as_path(), true), (data_img.as_path(), false)];
    let (kernel, initrd) = (debian.join("vmlinuz"), debian.join("initrd.cpio"));
    let medium = Medium::Kernel {
        kernel: &kernel,
        initrd: &initrd,
        cmdline: "console=ttyS0 panic=-1",
        disks: &disks,
    };
    let mut a = lab.vm_from("debian", Firmware::Bios, MAC_A, &medium, 768);
    let systemd = a.wait_serial("systemd 252", SERVICE_TIMEOUT);
    let installed = a.wait_serial("DROVER-LAB installed", SERVICE_TIMEOUT);
    let ready = loop_until_ready(&mut a);
    assert_eq!(
        console_value(&mut a, "DROVER-LAB enabled"),
        "enabled",
        "the package did not enable its unit"
    );
    assert_eq!(
        console_value(&mut a, "DROVER-LAB unit"),
        "/usr/lib/systemd/system/drover.service",
        "drover does not run as the packaged unit"
    );
    assert_eq!(console_value(&mut a, "DROVER-LAB exe"), "/usr/bin/drover");
    assert_eq!(console_value(&mut a, "DROVER-LAB state"), "active");
    // The unit's bounding set: the capabilities it lists (LAB: CapEff in hex), far from all.
    let caps =
        u64::from_str_radix(&console_value(&mut a, "DROVER-LAB caps"), 16).expect("CapEff is hex");
    const CAP_NET_BIND_SERVICE: u32 = 10;
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_NET_RAW: u32 = 13;
    const CAP_SYS_ADMIN: u32 = 21;
    for (bit, name) in [
        (CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ] {
        assert!(caps & (1 << bit) != 0, "the service lacks {name}: {caps:x}");
    }
    assert!(
        caps & (1 << CAP_SYS_ADMIN) == 0,
        "the service holds CAP_SYS_ADMIN: {caps:x}"
    );

    let mut b = lab.vm("netboot", Firmware::Bios, MAC_B);
    b.show_on_failure("Debian server console", a.serial_path());
    let booted = b.wait_serial("DROVER-BOOT-OK", BOOT_TIMEOUT);
    let line = b.wait_line("DROVER-BOOT-OK", Duration::from_secs(5));
    assert_eq!(field(&line, "node"), Some("n1"), "{line}");
    eprintln!(
        "appliance: Debian VM: systemd at {systemd:?}, package installed at {installed:?}, \
         service ready at {ready:?}; the network boot through it took {booted:?}"
    );
    b.print_phases();
}

/// Waits for the service's ready line, failing at once with the script's reason when a step
/// failed.
fn loop_until_ready(a: &mut Vm) -> Duration {
    let mut failed = None;
    let ready = wait_until(SERVICE_TIMEOUT, || {
        let text = a.serial();
        if let Some(l) = text.lines().find(|l| l.contains("DROVER-LAB-FAIL")) {
            failed = Some(l.to_string());
            return true;
        }
        text.contains("DROVER-LAB service-ready")
    });
    if let Some(line) = failed {
        panic!(
            "the Debian VM's install script failed: {line}\n{}",
            tail(&harness::vm::clean_text(&a.serial()), 60)
        );
    }
    // Without the line this fails with the console's tail.
    let _ = ready;
    a.wait_serial("DROVER-LAB service-ready", Duration::from_secs(1))
}
