//! Lab test: the page watches a real boot. drover serves the lab bridge in a network
//! namespace; headless Chromium (Debian's `chromium`, driven by playwright-core through
//! `integration/web/qemu-boot.mjs`) runs inside the same namespace, logs in, opens the node's
//! timeline and only then is the QEMU VM started. The page must show the boot move live from
//! "unknown" through "booting" to "up", with every stage from the DHCP offer to the agent's
//! "ready" in order. Screenshots of the main views (overview, nodes, leases, images, the
//! timeline mid-boot and up) are saved to `target/qemu-web-screenshots/`.
//!
//! One BIOS VM with the ramroot image. Needs root, the lab assets (see `boot.rs`), `node`,
//! `chromium` and playwright-core (`scripts/setup`); without them it fails naming what to run.
//! Everything stays inside the namespace: Chromium reaches drover on the lab bridge.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::api::{cli_stdin, PASSWORD};
use common::*;
use harness::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Boot budget under TCG (as in `boot.rs`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Chromium's start and login, before the VM starts.
const BROWSER_READY: Duration = Duration::from_secs(90);
const MAC: &str = "52:54:00:00:00:41";
const IP: &str = "198.18.0.41";
/// The timeline of a ramroot boot through iPXE's ROM, as the page must end up showing it (the
/// agent reports its network up before it fetches the root tarball).
const STAGES: [&str; 8] = [
    "dhcp", "script", "kernel", "initrd", "agent", "rootfs", "root", "ready",
];

/// The browser process; killed (by PID) if the test ends early.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        stop_child(&mut self.0, Duration::from_secs(5));
    }
}

#[test]
fn browser_watches_a_vm_boot_to_up() {
    let node = require_cmd("node", "nodejs");
    let chromium = require_cmd("chromium", "chromium");
    let web = repo_root().join("integration/web");
    require_file(
        &web.join("node_modules/playwright-core/package.json"),
        "run scripts/setup (it runs `npm ci --prefix integration/web` to install playwright-core)",
    );
    let mut d = DroverLab::new("web");
    let (ok, out, err) = cli_stdin(&d.drover, &["admin", "passwd"], &format!("{PASSWORD}\n"));
    assert!(ok, "drover admin passwd failed: {out}{err}");
    d.add_ramroot_image();
    d.add_node("n1", MAC, IP, "ramroot");
    d.serve();

    let shots = repo_root().join("target/qemu-web-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let log = d.lab.dir.join("browser.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut cmd = d.lab.ns.cmd(&node);
    cmd.arg(web.join("qemu-boot.mjs"))
        .current_dir(&web)
        .env("DROVER_URL", format!("http://{SERVER_IP}"))
        .env("DROVER_USER", "admin")
        .env("DROVER_PASSWORD", PASSWORD)
        .env("NODE", "n1")
        .env("STAGES", STAGES.join(","))
        .env("BOOT_TIMEOUT_MS", BOOT_TIMEOUT.as_millis().to_string())
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let mut browser = Browser(cmd.spawn().expect("run node"));

    // The VM starts only once the page is logged in and watching the node's timeline.
    let watching = wait_until(BROWSER_READY, || {
        read_lossy(&log).contains("web boot: watching") || !matches!(browser.0.try_wait(), Ok(None))
    });
    assert!(
        watching && read_lossy(&log).contains("web boot: watching"),
        "the browser did not get to the node's timeline:\n{}\ndrover log:\n{}",
        tail(&read_lossy(&log), 40),
        d.drover.log_tail(40)
    );
    let mut vm = d.boot("n1", Firmware::Bios, MAC);
    vm.show_on_failure("browser log", &log);

    let deadline = Instant::now() + BOOT_TIMEOUT + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = browser.0.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let browser_log = read_lossy(&log);
    let passed = status.is_some_and(|s| s.success()) && browser_log.contains("web boot: ok");
    assert!(
        passed,
        "the page did not watch n1 boot to up ({status:?}):\n{}\nserial:\n{}\ndrover log:\n{}",
        tail(&browser_log, 60),
        tail(&harness::vm::clean_text(&vm.serial()), 30),
        d.drover.log_tail(40)
    );
    println!("{browser_log}");
    // The page's account agrees with the store's.
    let events = d.drover.cli_ok(&["node", "events", "n1"]);
    assert!(events.starts_with("n1: up"), "{events}");
    assert!(
        events.contains(&format!("offer {IP} to iPXE")),
        "no DHCP offer event:\n{events}"
    );
    for view in [
        "overview",
        "nodes",
        "leases",
        "images",
        "timeline-booting",
        "timeline-up",
    ] {
        let png = shots.join(format!("{view}.png"));
        assert!(png.is_file(), "no screenshot {}", png.display());
    }
    vm.print_phases();
}
