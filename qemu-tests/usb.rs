//! Lab test of the rescue stick: `drover usb build` makes a disk image (no root needed for
//! that part) holding the marker image; VM A boots it as a USB stick (BIOS: SeaBIOS; UEFI:
//! OVMF) and serves the lab bridge in appliance mode; its console prints the page address
//! and first-login password. Through A's API the test logs in with that password, adds a
//! node and changes a setting; VM B network-boots through A to the marker. Then A loses
//! power and boots again from the same stick: the node and the setting are still there.
//!
//! Needs root (the lab namespace), QEMU, OVMF, the stick's tools (dosfstools, mtools,
//! syslinux, syslinux-efi: `scripts/setup`) and `lab/usb/kernel` (`scripts/lab-assets`);
//! without them it fails naming what to run. The two tests take turns (one lock): each runs
//! two VMs at its peak. Under `DROVER_KEEP_TEMP=1` the serial logs stay.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Boot budget of the stick under TCG: firmware, syslinux loading ~30 MiB from USB, the
/// kernel, modules, the data partition and `drover serve`'s first start.
const STICK_TIMEOUT: Duration = Duration::from_secs(300);
/// Boot budget of a network boot (as in `boot.rs`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the API may take to answer once the console printed the page address.
const API_TIMEOUT: Duration = Duration::from_secs(60);

/// The appliance's address on the lab bridge (the bridge itself is 198.18.0.1).
const STICK_IP: &str = "198.18.0.2";
const MAC_A: &str = "52:54:00:00:00:a1";
const MAC_B: &str = "52:54:00:00:00:b1";
const IP_B: &str = "198.18.0.12";

/// One test at a time: each runs two VMs, and the harness allows two per test binary.
static TURN: Mutex<()> = Mutex::new(());

/// A logged-in session on the appliance's API, through curl inside the lab namespace.
struct Api<'a> {
    lab: &'a Lab,
    jar: std::path::PathBuf,
    csrf: String,
}

impl<'a> Api<'a> {
    /// Runs curl in the namespace; returns (HTTP status, body).
    fn curl(lab: &Lab, args: &[&str]) -> (u16, String) {
        let out = lab
            .ns
            .cmd("curl")
            .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Waits until the API answers (health asks for a login), then logs in as admin with
    /// `password`.
    fn login(lab: &'a Lab, password: &str, tag: &str) -> Api<'a> {
        let health = format!("http://{STICK_IP}/api/v1/health");
        let mut last = (0, String::new());
        let up = wait_until(API_TIMEOUT, || {
            last = Api::curl(lab, &[&health]);
            matches!(last.0, 200 | 401)
        });
        assert!(up, "the appliance's API does not answer: {last:?}");
        let jar = lab.dir.join(format!("{tag}.cookies"));
        let body = serde_json::json!({ "user": "admin", "password": password }).to_string();
        let (status, reply) = Api::curl(
            lab,
            &[
                "-c",
                jar.to_str().expect("UTF-8 path"),
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
                &format!("http://{STICK_IP}/api/v1/login"),
            ],
        );
        assert_eq!(
            status, 200,
            "login with the console's password failed: {reply}"
        );
        let json: serde_json::Value = serde_json::from_str(&reply).expect("login answers JSON");
        let csrf = json["csrf"].as_str().expect("a CSRF token").to_string();
        Api { lab, jar, csrf }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = format!("http://{STICK_IP}{path}");
        let csrf = format!("X-CSRF-Token: {}", self.csrf);
        let mut args = vec![
            "-b",
            self.jar.to_str().expect("UTF-8 path"),
            "-X",
            method,
            "-H",
            &csrf,
        ];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data", b]);
        }
        args.push(&url);
        Api::curl(self.lab, &args)
    }
}

/// The value after `key ` on the first console line that has `key`.
fn console_value(vm: &mut Vm, key: &str) -> String {
    let line = vm.wait_line(key, Duration::from_secs(5));
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("nothing after {key:?} in {line:?}"))
        .to_string()
}

/// Boots the stick and waits for its announcement; returns the VM and the password.
fn boot_stick(lab: &Lab, name: &str, firmware: Firmware, stick: &Path) -> (Vm, String) {
    let mut a = lab.vm_with_stick(name, firmware, MAC_A, stick, 512);
    a.wait_serial("DROVER-APPLIANCE first-login password", STICK_TIMEOUT);
    let page = console_value(&mut a, "DROVER-APPLIANCE page");
    assert_eq!(
        page,
        format!("http://{STICK_IP}/"),
        "the console names another page"
    );
    let password = console_value(&mut a, "DROVER-APPLIANCE first-login password");
    assert!(
        a.serial()
            .contains("(DROVER-DATA) on /var/lib/drover: the state persists"),
        "the appliance did not mount its data partition:\n{}",
        tail(&harness::vm::clean_text(&a.serial()), 40)
    );
    (a, password)
}

fn stick_serves(tag: &str, firmware: Firmware) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    for (tool, package) in [
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("syslinux", "syslinux"),
        ("mkfs.ext4", "e2fsprogs"),
        ("curl", "curl"),
    ] {
        require_cmd(tool, package);
    }
    let kernel = repo_root().join("lab/usb/kernel");
    require_file(
        &kernel.join("lib/modules"),
        "run scripts/lab-assets (it makes lab/usb/kernel)",
    );
    let d = DroverLab::new(tag);
    d.add_marker_image();
    let stick = d.lab.dir.join("stick.img");
    let out = d.drover.cli_ok(&[
        "usb",
        "build",
        stick.to_str().expect("UTF-8 path"),
        "--size",
        "256M",
        "--kernel",
        kernel.to_str().expect("UTF-8 path"),
        "--address",
        &format!("{STICK_IP}/24"),
        "--console",
        "ttyS0,115200",
        "--image",
        "marker",
    ]);
    eprintln!("{out}");
    assert_eq!(
        std::fs::metadata(&stick).expect("the stick image").len(),
        256 << 20
    );

    // First boot: log in with the console's password, add a node and a setting.
    let (a, password) = boot_stick(&d.lab, &format!("{tag}-a"), firmware, &stick);
    let api = Api::login(&d.lab, &password, "first");
    let (status, images) = api.call("GET", "/api/v1/images", None);
    assert_eq!(status, 200, "{images}");
    assert!(
        images.contains("\"marker\""),
        "the stick lacks its image: {images}"
    );
    let node = serde_json::json!({ "name": "n1", "mac": MAC_B, "ip": IP_B, "image": "marker" });
    let (status, reply) = api.call("POST", "/api/v1/nodes", Some(&node.to_string()));
    assert_eq!(
        status, 201,
        "adding n1 through the appliance's API: {reply}"
    );
    let motd = format!("rescued by the {tag} stick");
    let setting = serde_json::json!({ "value": { "text": motd } }).to_string();
    let (status, reply) = api.call("PUT", "/api/v1/settings/motd", Some(&setting));
    assert_eq!(status, 200, "setting motd: {reply}");

    // VM B boots through the appliance to the marker.
    let mut b = d.lab.vm(&format!("{tag}-b"), firmware, MAC_B);
    b.show_on_failure("appliance console", a.serial_path());
    b.wait_serial("DROVER-BOOT-OK", BOOT_TIMEOUT);
    let line = b.wait_line("DROVER-BOOT-OK", Duration::from_secs(5));
    assert_eq!(field(&line, "node"), Some("n1"), "{line}");
    b.print_phases();
    drop(b);

    // Power cut, then the same stick again: what the API changed is still there.
    drop(a);
    let (a, password_again) = boot_stick(&d.lab, &format!("{tag}-a-again"), firmware, &stick);
    assert_eq!(
        password_again, password,
        "the second boot made a new admin: the store did not persist"
    );
    let api = Api::login(&d.lab, &password_again, "again");
    let (status, reply) = api.call("GET", "/api/v1/settings/motd", None);
    assert_eq!(status, 200, "motd after the reboot: {reply}");
    assert!(
        reply.contains(&motd),
        "motd lost across the reboot: {reply}"
    );
    let (status, nodes) = api.call("GET", "/api/v1/nodes", None);
    assert_eq!(status, 200, "{nodes}");
    assert!(
        nodes.contains(MAC_B),
        "node n1 lost across the reboot: {nodes}"
    );
    a.print_phases();
}

/// SeaBIOS boots the stick through syslinux's MBR and boot sector.
#[test]
fn bios_stick_serves_and_keeps_its_state() {
    stick_serves("usb-bios", Firmware::Bios);
}

/// OVMF boots the stick's `/EFI/BOOT/BOOTX64.EFI` (syslinux.efi).
#[test]
fn uefi_stick_serves_and_keeps_its_state() {
    stick_serves("usb-uefi", Firmware::Uefi);
}
