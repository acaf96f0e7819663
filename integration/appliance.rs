//! The appliance commands through the real binary:
//! - `drover install --root DIR` stages the binary, the systemd unit (which must pass
//!   `systemd-analyze verify`), the config, completions and man pages; `drover uninstall`
//!   removes them, keeping the config unless `--purge`;
//! - `drover backup` of a state directory while `drover serve` runs on it (loopback only),
//!   restored into a new state directory and served by a second `drover serve`, lists the
//!   same nodes, leases, networks and images; `--store-only` leaves the blobs out; restore
//!   refuses a non-empty directory.
//!
//! Needs no root and no namespaces; the install test needs `systemd-analyze` (package
//! `systemd`) and fails naming it when it is missing.

mod common;

use common::api::{free_port, ApiServer};
use common::{drover_bin, require_cmd, run_ok, Drover, TempDir};
use drover::store::model::{Lease, LeaseState, RelayInfo};
use drover::store::{Store, StoreError};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn drover(args: &[&str]) -> Command {
    let mut cmd = Command::new(drover_bin());
    cmd.args(args);
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

#[test]
fn install_stages_a_unit_that_verifies_and_uninstall_removes_it() {
    let analyze = require_cmd("systemd-analyze", "systemd");
    let tmp = TempDir::new("install");
    let root = tmp.join("root");
    let r = root.to_str().expect("temp paths are UTF-8");
    let out = stdout(&mut drover(&[
        "install", "--root", r, "-i", "eth1", "-i", "br0",
    ]));
    assert!(
        out.contains("not run (staging root): systemctl enable --now"),
        "{out}"
    );

    let unit = std::fs::read_to_string(root.join("etc/systemd/system/drover.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/drover --state-dir /var/lib/drover serve"));
    let bin = root.join("usr/local/bin/drover");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(drover_bin()).unwrap()
    );
    let config = root.join("etc/drover/drover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("interfaces = [\"eth1\", \"br0\"]"), "{text}");
    stdout(&mut drover(&["check-config", config.to_str().unwrap()]));
    let share = root.join("usr/local/share");
    let generated = [
        "bash-completion/completions/drover",
        "zsh/site-functions/_drover",
        "man/man1/drover.1",
        "man/man1/drover-backup.1",
        "man/man1/drover-node-add.1",
    ];
    for file in generated {
        let bytes = std::fs::read(share.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(String::from_utf8_lossy(&bytes).contains("drover"), "{file}");
    }

    // systemd-analyze in a root needs the units the service refers to (sysinit.target, ...):
    // the host's packaged ones. The man page of `Documentation=` is looked up with `man`.
    let units = Path::new("/usr/lib/systemd/system");
    assert!(
        units.is_dir(),
        "needs the host's systemd units in {}",
        units.display()
    );
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(units)
            .arg(root.join("usr/lib/systemd/")),
    );
    let verify = run_ok(
        Command::new(&analyze)
            .env("MANPATH", share.join("man"))
            .arg("verify")
            .arg(format!("--root={r}"))
            .arg("drover.service"),
    );
    let warnings = String::from_utf8_lossy(&verify.stderr);
    assert!(
        warnings.trim().is_empty(),
        "systemd-analyze verify:\n{warnings}"
    );

    // A second install keeps the admin's config.
    let out = stdout(&mut drover(&["install", "--root", r, "-i", "eth9"]));
    assert!(out.contains("kept /etc/drover/drover.toml"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    let state = root.join("var/lib/drover");
    std::fs::create_dir_all(state.join("store")).unwrap();
    stdout(&mut drover(&[
        "--state-dir",
        "/var/lib/drover",
        "uninstall",
        "--root",
        r,
    ]));
    assert!(!bin.exists() && !root.join("etc/systemd/system/drover.service").exists());
    for file in generated {
        assert!(!share.join(file).exists(), "{file} left behind");
    }
    assert!(
        config.exists() && state.exists(),
        "config and state stay without --purge"
    );
    stdout(&mut drover(&[
        "--state-dir",
        "/var/lib/drover",
        "uninstall",
        "--root",
        r,
        "--purge",
    ]));
    assert!(
        !config.exists() && !state.exists(),
        "--purge removes config and state"
    );
}

/// Leases as DHCP writes them (no CLI command does), into the running server's store.
fn write_leases(state: &Path) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let store = Store::open(state).expect("open the server's store from the test");
    store
        .write::<_, StoreError>(|w| {
            for (last, mac, state) in [
                (101u8, "52:54:00:00:00:01", LeaseState::Bound),
                (150, "52:54:00:00:00:77", LeaseState::Offered),
            ] {
                w.put(&Lease {
                    ip: [198, 18, 0, last].into(),
                    mac: mac.parse().unwrap(),
                    client_id: None,
                    hostname: Some(format!("host{last}")),
                    state,
                    start: t - 100,
                    expires: t + 3_600,
                    network: "lab".into(),
                    relay: RelayInfo {
                        giaddr: None,
                        agent_info: None,
                    },
                })?;
            }
            Ok(())
        })
        .expect("write leases");
}

/// The tar members of a backup.
fn members(file: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(file).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_backup_of_a_running_server_restores_into_a_new_member() {
    let s = ApiServer::start_with("[power]\npoll-interval = 0\n");
    let d = &s.d;
    let kernel = d.scratch().join("vmlinuz");
    std::fs::write(&kernel, b"a kernel").unwrap();
    let k = kernel.to_str().unwrap();
    for line in [
        "network add lab --subnet 198.18.0.0/24 --range 198.18.0.100-198.18.0.199".to_string(),
        format!("image add plain --kernel {k} --initrd {k}"),
        "node add n1 --mac 52:54:00:00:00:01 --ip 198.18.0.11 --image plain".into(),
        "node add n2 --mac 52:54:00:00:00:02 --image plain --root ram".into(),
        "node add n3 --mac 52:54:00:00:00:03".into(),
    ] {
        d.cli_ok(&line.split_whitespace().collect::<Vec<_>>());
    }
    let token = s.token("backup");
    write_leases(d.state_dir());

    let full = d.scratch().join("full.tar");
    let out = d.cli_ok(&["backup", full.to_str().unwrap()]);
    assert!(out.contains("and 1 image blobs"), "{out}");
    let names = members(&full);
    assert_eq!(names[..2], ["drover-backup.json", "store/data.mdb"]);
    assert_eq!(names.iter().filter(|n| n.starts_with("blobs/")).count(), 1);
    let small = d.scratch().join("store-only.tar");
    d.cli_ok(&["backup", small.to_str().unwrap(), "--store-only"]);
    assert_eq!(members(&small), ["drover-backup.json", "store/data.mdb"]);
    assert!(!d.cli(&["backup", small.to_str().unwrap()]).status.success());

    let mut e = Drover::new();
    let out = e.cli_ok(&["restore", full.to_str().unwrap()]);
    let ids: Vec<&str> = out
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 16)
        .collect();
    assert!(ids.len() >= 2 && ids[0] != ids[1], "a new member id: {out}");
    let again = e.cli(&["restore", full.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    let port = free_port();
    e.serve_with(
        None,
        "lo",
        &common::config_only(&["http"], &format!("[http]\nport = {port}\n")),
    );
    let restored = ApiServer { d: e, port };
    for line in ["node list", "network list", "image list", "lease list"] {
        let args: Vec<&str> = line.split_whitespace().collect();
        // Lease lists show seconds left: let a second's tick pass and look again.
        let same = (0..3).any(|_| d.cli_ok(&args) == restored.d.cli_ok(&args));
        assert!(
            same,
            "`drover {line}` differs after restore:\n{}---\n{}",
            d.cli_ok(&args),
            restored.d.cli_ok(&args)
        );
    }
    assert!(d.cli_ok(&["lease", "list"]).contains("198.18.0.150"));
    // The restored server answers the API with the restored token and data.
    let url = restored.url();
    let remote = restored
        .d
        .cli_ok(&["--server", &url, "--token", &token, "node", "list"]);
    assert_eq!(remote, d.cli_ok(&["node", "list"]));
}
