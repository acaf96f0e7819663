//! Redfish power control through the real binary against sushy-tools' emulator (`--fake`
//! driver, HTTPS with a certificate made here by openssl, HTTP Basic users from a bcrypt
//! htpasswd file; it has no SessionService, so drover's Basic fallback is what runs):
//! status/on/off/soft/cycle, the next boot device, a wrong password as an authentication
//! failure, the certificate pinned on first use and a changed one refused, and
//! `--bmc-protocol auto` choosing Redfish where its service root answers and IPMI elsewhere.
//!
//! Needs `sushy-emulator` (PyPI `sushy-tools`; scripts/setup puts it in a venv at
//! /opt/drover-test/sushy, `DROVER_SUSHY_EMULATOR` names another) and `openssl`; without
//! them the tests fail naming what is missing. No root needed.

mod common;

use common::api::free_port;
use common::bmc::{add_node_with_bmc, power_cell as cell};
use common::{require_cmd, Drover, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "admin";
const PASSWORD: &str = "rf secret";

/// Where scripts/setup installs sushy-tools.
const SUSHY_VENV: &str = "/opt/drover-test/sushy";

fn sushy_emulator() -> PathBuf {
    let path = std::env::var_os("DROVER_SUSHY_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(SUSHY_VENV).join("bin/sushy-emulator"));
    assert!(
        path.is_file(),
        "needs sushy-emulator (PyPI sushy-tools) at {}: run scripts/setup, or set \
         DROVER_SUSHY_EMULATOR",
        path.display()
    );
    path
}

/// A sushy-emulator on 127.0.0.1 with a certificate of its own, killed on drop.
struct Emulator {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Emulator {
    fn start(tag: &str, port: u16) -> Emulator {
        let bin = sushy_emulator();
        let openssl = require_cmd("openssl", "openssl");
        let dir = TempDir::new(tag);
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl req failed");
        // bcrypt comes with sushy-tools, in the emulator's own Python.
        let python = bin.with_file_name("python3");
        let hash = Command::new(&python)
            .arg("-c")
            .arg(
                "import bcrypt, sys; \
                 print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt()).decode())",
            )
            .arg(PASSWORD)
            .output()
            .unwrap();
        assert!(
            hash.status.success(),
            "{} cannot hash with bcrypt",
            python.display()
        );
        let htpasswd = dir.path().join("htpasswd");
        let line = format!("{USER}:{}", String::from_utf8_lossy(&hash.stdout).trim());
        std::fs::write(&htpasswd, line + "\n").unwrap();
        let conf = dir.path().join("conf.py");
        std::fs::write(
            &conf,
            format!(
                "SUSHY_EMULATOR_AUTH_FILE = {:?}\n",
                htpasswd.to_str().unwrap()
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .args(["--fake", "-i", "127.0.0.1", "-p", &port.to_string()])
            .arg("--config")
            .arg(&conf)
            .arg("--ssl-certificate")
            .arg(&cert)
            .arg("--ssl-key")
            .arg(&key)
            // The fake driver keeps its systems in a database under the temporary
            // directory: one of its own, so emulators running at once do not share a state.
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        let mut emu = Emulator { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = emu.child.try_wait() {
                let log = std::fs::read_to_string(emu.dir.path().join("log")).unwrap_or_default();
                panic!("sushy-emulator exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "sushy-emulator did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        emu
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn add_node(d: &Drover, name: &str, addr: &str, protocol: &str, password: &str) {
    let node = (name, "52:54:00:00:17:01");
    add_node_with_bmc(
        d,
        node,
        addr,
        (USER, password),
        &["--bmc-protocol", protocol],
    );
}

fn status(d: &Drover) -> String {
    let out = d.cli_ok(&["power", "status", "n1"]);
    assert_eq!(cell(&out, "n1", 2), "ok", "{out}");
    cell(&out, "n1", 3)
}

/// Waits until `drover power status` says `want`: the fake driver applies a power change
/// 1 to 11 s after it is asked (as real hardware takes its time).
fn wait_status(d: &Drover, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = status(d);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "power state stays {now}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn power_and_boot_device_over_redfish() {
    let emu = Emulator::start("redfish-rt", free_port());
    let d = Drover::new();
    add_node(&d, "n1", &emu.address(), "redfish", PASSWORD);
    assert_eq!(status(&d), "off");
    let out = d.cli_ok(&["power", "on", "n1"]);
    assert_eq!(cell(&out, "n1", 2), "ok", "{out}");
    assert_eq!(
        cell(&out, "n1", 1),
        format!("https://{}", emu.address()),
        "{out}"
    );
    wait_status(&d, "on");
    let out = d.cli_ok(&["power", "off", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "ForceOff sent", "{out}");
    wait_status(&d, "off");
    d.cli_ok(&["power", "on", "n1"]);
    wait_status(&d, "on");
    // The emulator offers no PowerCycle: the cycle is a ForceRestart. The fake driver shows
    // it as off and on again after its random 1-11 s delay, so the short off phase may be
    // over before the next status call; only the end state is certain.
    let out = d.cli_ok(&["power", "cycle", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "ForceRestart sent", "{out}");
    wait_status(&d, "on");
    let out = d.cli_ok(&["power", "soft", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "GracefulShutdown sent", "{out}");
    wait_status(&d, "off");
    let out = d.cli_ok(&["power", "bootdev", "pxe", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "next boot: Pxe", "{out}");
    let system = emulator_system(&emu);
    assert_eq!(
        system["Boot"]["BootSourceOverrideTarget"], "Pxe",
        "{system}"
    );
    d.cli_ok(&["power", "bootdev", "disk", "n1"]);
    assert_eq!(
        emulator_system(&emu)["Boot"]["BootSourceOverrideTarget"],
        "Hdd"
    );
    let show = d.cli_ok(&["node", "show", "n1"]) + &d.cli_ok(&["node", "list"]);
    assert!(!show.contains(PASSWORD), "{show}");
}

/// `path` on the emulator, read with curl (another client than drover's).
fn emulator_get(emu: &Emulator, path: &str) -> serde_json::Value {
    let curl = require_cmd("curl", "curl");
    let out = Command::new(&curl)
        .args(["-sfk", "-u", &format!("{USER}:{PASSWORD}")])
        .arg(format!("https://{}{path}", emu.address()))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {path} failed");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
}

/// The emulator's one system, read with curl.
fn emulator_system(emu: &Emulator) -> serde_json::Value {
    let get = |path: &str| emulator_get(emu, path);
    let systems = get("/redfish/v1/Systems");
    let first = systems["Members"][0]["@odata.id"]
        .as_str()
        .unwrap()
        .to_string();
    get(&first)
}

#[test]
fn wrong_password_is_an_authentication_failure() {
    let emu = Emulator::start("redfish-auth", free_port());
    let d = Drover::new();
    add_node(&d, "n1", &emu.address(), "redfish", "not-the-password");
    let out = d.cli(&["power", "on", "n1"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert_eq!(cell(&table, "n1", 2), "authentication", "{table}");
    assert!(!table.contains("not-the-password"));
}

#[test]
fn the_certificate_is_pinned_on_first_use_and_a_changed_one_refused() {
    let port = free_port();
    let d = Drover::new();
    let emu = Emulator::start("redfish-pin", port);
    add_node(&d, "n1", &emu.address(), "redfish", PASSWORD);
    assert_eq!(status(&d), "off");
    drop(emu);
    // The same address, another certificate (as after a BMC swap or an attack).
    let other = Emulator::start("redfish-pin2", port);
    let out = d.cli(&["power", "bootdev", "pxe", "n1"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert_eq!(cell(&table, "n1", 2), "certificate", "{table}");
    // Nothing was sent (read with curl, which trusts any certificate).
    assert_ne!(
        emulator_system(&other)["Boot"]["BootSourceOverrideTarget"],
        "Pxe"
    );
    // Forgetting the pin on purpose: the new certificate is then trusted, and kept.
    d.cli_ok(&["node", "set", "n1", "--bmc-forget-cert"]);
    let out = d.cli_ok(&["power", "bootdev", "pxe", "n1"]);
    assert_eq!(cell(&out, "n1", 3), "next boot: Pxe", "{out}");
    assert_eq!(
        emulator_system(&other)["Boot"]["BootSourceOverrideTarget"],
        "Pxe"
    );
    assert_eq!(status(&d), "off");
}

#[test]
fn auto_chooses_redfish_when_the_service_root_answers_else_ipmi() {
    let emu = Emulator::start("redfish-auto", free_port());
    let d = Drover::new();
    add_node(&d, "n1", &emu.address(), "auto", PASSWORD);
    let out = d.cli_ok(&["power", "status", "n1"]);
    assert_eq!(
        cell(&out, "n1", 1),
        format!("https://{}", emu.address()),
        "{out}"
    );
    assert_eq!(cell(&out, "n1", 3), "off", "{out}");
    // Where no Redfish service answers, auto speaks IPMI (here to a port with no BMC).
    let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = quiet.local_addr().unwrap().to_string();
    d.cli_ok(&["node", "set", "n1", "--bmc", &addr]);
    let config = d.scratch().join("fast.toml");
    std::fs::write(&config, "[power]\ntimeout-ms = 200\nretries = 1\n").unwrap();
    let out = d.cli(&[
        "power",
        "status",
        "n1",
        "--config",
        config.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{table}");
    assert_eq!(cell(&table, "n1", 1), addr, "{table}");
    assert_eq!(cell(&table, "n1", 2), "timeout", "{table}");
}

#[test]
fn sensors_over_redfish_match_the_thermal_resource() {
    let emu = Emulator::start("redfish-sensors", free_port());
    let d = Drover::new();
    add_node(&d, "n1", &emu.address(), "redfish", PASSWORD);
    let json: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["bmc", "sensors", "n1", "--json"])).unwrap();
    let sensors = json[0]["sensors"].as_array().expect("a sensors array");
    // What curl reads from the first chassis' Thermal resource.
    let chassis = emulator_get(&emu, "/redfish/v1/Chassis");
    let first = chassis["Members"][0]["@odata.id"]
        .as_str()
        .unwrap()
        .to_string();
    let thermal = emulator_get(&emu, &format!("{first}/Thermal"));
    let temps = thermal["Temperatures"].as_array().unwrap();
    let fans = thermal["Fans"].as_array().unwrap();
    assert_eq!(sensors.len(), temps.len() + fans.len(), "{json}");
    for t in temps {
        let name = t["Name"].as_str().unwrap();
        let row = sensors
            .iter()
            .find(|s| s["name"] == name && s["kind"] == "temperature")
            .unwrap_or_else(|| panic!("no {name} in {json}"));
        assert_eq!(row["reading"], t["ReadingCelsius"].to_string(), "{row}");
        assert_eq!(row["unit"], "degrees C");
        assert_eq!(row["status"], "ok");
    }
    let fan = sensors.iter().find(|s| s["kind"] == "fan").expect("a fan");
    assert_eq!(fan["reading"], fans[0]["Reading"].to_string());
    assert_eq!(fan["unit"], "RPM");
    // The emulator's managers have no LogServices: a clear protocol failure, not a panic.
    let out = d.cli(&["bmc", "sel", "n1"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(table.contains("failed: protocol"), "{table}");
    assert!(table.contains("LogServices"), "{table}");
}
