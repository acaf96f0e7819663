//! Browser tests: headless Chromium (Debian's `chromium`) driven by playwright-core runs
//! `integration/web/test.mjs` against a real drover: log in, add a node and see it appear,
//! import a CSV of 200 nodes, watch a CLI change arrive live, power a node through an
//! `ipmi_sim` BMC from the page, see the pool view list this member and a second one (both on
//! loopback). Screenshots of the main views
//! are saved under `target/web-screenshots/`. `discovered.mjs`: the Discovered tab lists
//! machines waiting for adoption with their inventory, and an admin adopts one. `images.mjs`:
//! the Images tab lists an image's versions with their sizes and nodes, an admin rolls back
//! from the page, a viewer sees no Rollback button.

mod common;

use common::api::{free_port, ApiServer, PASSWORD};
use common::Drover;
use std::path::PathBuf;
use std::process::Command;

/// `node`, `chromium` and the scripts' directory (with playwright-core installed), or a failure
/// naming what is missing.
fn browser_tools() -> (PathBuf, PathBuf, PathBuf) {
    let node = common::require_cmd("node", "nodejs");
    let chromium = common::require_cmd("chromium", "chromium");
    let dir = common::repo_root().join("integration/web");
    common::require_file(
        &dir.join("node_modules/playwright-core/package.json"),
        "run scripts/setup (it runs `npm ci --prefix integration/web` to install playwright-core)",
    );
    (node, chromium, dir)
}

/// Fails unless a browser script exited 0 and printed `marker`; prints its output.
fn passed(out: &std::process::Output, marker: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(marker),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

/// Adds the viewer `watcher`, runs the browser script `script` against `s` with the admin's
/// and the viewer's passwords, and fails unless it printed `marker`.
fn run_with_viewer(s: &ApiServer, script: &str, marker: &str) {
    let (node, chromium, dir) = browser_tools();
    let viewer_password = "viewer-password-1";
    let (ok, out, err) = common::api::cli_stdin(
        &s.d,
        &["user", "add", "watcher", "--role", "viewer"],
        &format!("{viewer_password}\n"),
    );
    assert!(ok, "user add failed: {out}{err}");
    let shots = common::repo_root().join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(node)
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("DROVER_URL", s.url())
        .env("DROVER_PASSWORD", PASSWORD)
        .env("DROVER_VIEWER_PASSWORD", viewer_password)
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("run node");
    passed(&out, marker);
}

#[test]
fn browser_logs_in_adds_a_node_and_imports_200() {
    let (node, chromium, dir) = browser_tools();
    // A pool of two on loopback: this member (with the page) and a second one.
    let (pool_a, pool_b) = (free_port(), free_port());
    let pool = |port: u16| format!("[pool]\naddress = \"127.0.0.1\"\nport = {port}\n");
    let s = ApiServer::start_with(&pool(pool_a));
    s.d.cli_ok(&["pool", "init"]);
    let mut second = Drover::new();
    let key = s.d.state_dir().join("cluster.key");
    second.cli_ok(&[
        "pool",
        "join",
        &format!("127.0.0.1:{pool_a}"),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    second.serve_with(None, "lo", &common::config_only(&[], &pool(pool_b)));
    let bmc = common::bmc::BmcSim::start("web-bmc");
    let bmc_password = s.d.scratch().join("bmc-password");
    std::fs::write(&bmc_password, format!("{}\n", common::bmc::PASSWORD)).unwrap();
    let shots = common::repo_root().join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut csv = String::from("name,mac,ip,group\n");
    for i in 0..200u32 {
        csv += &format!(
            "csv{i:03},52:54:00:05:{:02x}:{:02x},,rack{}\n",
            i / 256,
            i % 256,
            i / 50
        );
    }
    let csv_path = s.d.scratch().join("nodes.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let out = Command::new(node)
        .arg(dir.join("test.mjs"))
        .current_dir(&dir)
        .env("DROVER_URL", s.url())
        .env("DROVER_USER", "admin")
        .env("DROVER_PASSWORD", PASSWORD)
        .env("DROVER_CSV", &csv_path)
        .env("DROVER_BIN", s.d.bin())
        .env("DROVER_STATE_DIR", s.d.state_dir())
        .env("DROVER_BMC", bmc.address())
        .env("DROVER_BMC_USER", common::bmc::USER)
        .env("DROVER_BMC_PASSWORD_FILE", &bmc_password)
        .env("DROVER_POOL_PEER", format!("127.0.0.1:{pool_b}"))
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("run node");
    passed(&out, "web test: ok");
    // The page's power buttons reached the BMC: the simulated chassis is off again.
    assert_eq!(bmc.power(), "0");
    assert_eq!(bmc.boot(), "pxe");
    for view in [
        "login", "nodes", "overview", "networks", "timeline", "power", "pool",
    ] {
        let png = shots.join(format!("{view}.png"));
        assert!(png.is_file(), "no screenshot {}", png.display());
    }
    // The browser's changes went through the API into the store.
    let list = s.d.cli_ok(&["node", "list"]);
    assert_eq!(list.lines().count(), 1 + 200 + 1, "{list}");
}

/// An inventory as the agent reports it, with DMI serial `serial` and an LLDP neighbour.
fn inventory(mac: &str, serial: &str) -> drover::discover::inventory::Inventory {
    serde_json::from_value(serde_json::json!({
        "cpu_model": "Test CPU", "cpus": 4, "memory_kib": 2 * 1024 * 1024,
        "disks": [{"name": "vda", "size_bytes": 8u64 << 30, "serial": null}],
        "nics": [{"name": "eth0", "mac": mac, "speed_mbps": 1000, "lldp": {
            "chassis_id": "aa:bb:cc:00:00:01", "port_id": "Ethernet1/3",
            "system_name": "rack1-sw1", "ttl": 120}}],
        "dmi": {"vendor": "QEMU", "product": "Standard PC", "serial": serial},
    }))
    .expect("an inventory in the agent's JSON")
}

#[test]
fn browser_lists_discovered_machines_and_adopts_one() {
    browser_tools();
    let s = ApiServer::start();
    // Two machines report with the same serial, as the agent's report would store them.
    {
        let store = drover::store::Store::open(s.d.state_dir()).expect("open the store");
        for (mac, last) in [("52:54:00:00:0e:01", 21), ("52:54:00:00:0e:02", 22)] {
            drover::discover::adopt::report(
                &store,
                mac.parse().unwrap(),
                [198, 18, 0, last].into(),
                1_700_000_000_000,
                inventory(mac, "SER-1"),
            )
            .expect("record a report");
        }
    }
    run_with_viewer(&s, "discovered.mjs", "discovered web test: ok");
    // The adoption went through the API into the store: a node with the machine's MAC.
    let show = s.d.cli_ok(&["node", "show", "found01"]);
    assert!(show.contains("52:54:00:00:0e:01"), "{show}");
    let waiting = s.d.cli_ok(&["node", "discovered"]);
    let rows = |mac: &str| waiting.lines().filter(|l| l.starts_with(mac)).count();
    assert_eq!(rows("52:54:00:00:0e:02"), 1, "{waiting}");
    assert_eq!(rows("52:54:00:00:0e:01"), 0, "{waiting}");
    // Still one serial on two boards: the node's and the waiting machine's.
    assert!(waiting.contains("duplicate DMI serial SER-1"), "{waiting}");
}

#[test]
fn browser_lists_image_versions_and_rolls_back() {
    browser_tools();
    let s = ApiServer::start();
    let src = s.d.scratch().join("deb");
    for (version, motd) in [(1, "one"), (2, "two")] {
        std::fs::create_dir_all(src.join("boot")).unwrap();
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("boot/vmlinuz-6.1.0-1-amd64"), b"kernel").unwrap();
        std::fs::write(src.join("etc/motd"), motd.repeat(10_000)).unwrap();
        let out =
            s.d.cli_ok(&["image", "import", "deb", src.to_str().unwrap()]);
        assert!(out.contains("image deb"), "version {version}: {out}");
    }
    s.d.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        "52:54:00:00:0f:01",
        "--image",
        "deb",
    ]);
    s.d.cli_ok(&["node", "set", "n1", "--image-version", "1"]);
    s.d.cli_ok(&[
        "node",
        "add",
        "n2",
        "--mac",
        "52:54:00:00:0f:02",
        "--image",
        "deb",
    ]);
    run_with_viewer(&s, "images.mjs", "images web test: ok");
    // The rollback went through the API into the store.
    let history = s.d.cli_ok(&["image", "history", "deb"]);
    let last = history.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("3 ") && last.contains("rollback to 1"),
        "{history}"
    );
}
