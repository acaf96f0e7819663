//! A rolling upgrade of a pool through real binaries: three `drover serve` members of the
//! previous release (`integration/fixtures/upgrade/previous-release`: a name and the commit
//! it was built from), each in its own namespace on one bridge, serving DHCP and a floating
//! service address, with perfdhcp in a client namespace offering new exchanges and renewals
//! throughout. One member after the other is stopped, given this build's binary and started
//! again on its own state directory.
//!
//! Asserted after every step, while old and new members serve side by side: each member sees
//! the whole roster alive; exactly one holds the service address; a node added on one member
//! (new, then old) reaches every other; every member's DHCP answers. Throughout: no address
//! is ever bound to two clients at once, from snapshots of every member's leases taken every
//! second (`common::pool::Findings`), and perfdhcp got ACKs.
//!
//! The previous release is built from its commit (`git archive`, then `cargo build --release`
//! in `$CARGO_TARGET_DIR/previous-release`, seeded with this build's compiled dependencies, so
//! only drover itself compiles: minutes), unless `DROVER_PREVIOUS_BIN` names a binary. That
//! is why the test is ignored in the default run: `scripts/test --long` runs it.
//!
//! Needs root (network namespaces), git (the repository's history, not a shallow clone) and
//! perfdhcp (Debian package `kea-admin`, in `scripts/setup`); fails with a clear message
//! without.

mod common;

use common::pool::Findings;
use common::{wait_until, Member, Netns};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVICE_ADDRESS: &str = "198.18.0.10";
const CLIENT: &str = "198.18.0.250";

/// The previous release's name and commit, as the fixture file records them.
fn previous_release() -> (String, String) {
    let file = common::repo_root().join("integration/fixtures/upgrade/previous-release");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("{}: no `NAME COMMIT` line", file.display()));
    let (name, commit) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("{}: not `NAME COMMIT`: {line}", file.display()));
    (name.to_string(), commit.trim().to_string())
}

/// Runs `cmd`; panics with `what` and its output when it fails.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        common::tail(&String::from_utf8_lossy(&out.stdout), 20),
        common::tail(&String::from_utf8_lossy(&out.stderr), 40)
    );
}

/// The previous release's binary: `DROVER_PREVIOUS_BIN`, or built from its commit (once per
/// target directory).
fn previous_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DROVER_PREVIOUS_BIN") {
        return PathBuf::from(bin);
    }
    let (name, commit) = previous_release();
    let current = common::drover_bin();
    // .../<target dir>/<triple>/release/drover: this build's profile directory.
    let profile = current.parent().expect("the binary's directory");
    let triple = profile.parent().expect("the profile's directory");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target"));
    let base = target.join("previous-release").join(&commit);
    let bin = base
        .join("target")
        .join(triple.file_name().unwrap())
        .join("release/drover");
    if bin.is_file() {
        return bin;
    }
    eprintln!(
        "building the previous release {name} ({commit}) in {}",
        base.display()
    );
    let src = base.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).expect("create the source directory");
    let root = common::repo_root();
    let archive = format!(
        "git -C '{}' archive --format=tar '{commit}' | tar -x -C '{}'",
        root.display(),
        src.display()
    );
    run(
        Command::new("bash").args(["-o", "pipefail", "-c", &archive]),
        &format!("unpacking commit {commit} (a clone with history is needed)"),
    );
    // The iPXE binaries come from Debian's package at setup time, not from git.
    copy_dir(&root.join("firmware/ipxe"), &src.join("firmware/ipxe"));
    // This build's compiled dependencies: only drover itself is built again.
    let seeded = base.join("target").join(triple.file_name().unwrap());
    if !seeded.join("release").exists() {
        std::fs::create_dir_all(&seeded).expect("create the target directory");
        run(
            Command::new("cp")
                .arg("-a")
                .arg(profile)
                .arg(seeded.join("release")),
            "seeding the target directory",
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo)
            .args(["build", "--release", "--locked", "--bin", "drover"])
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", base.join("target")),
        &format!("building the previous release {name}"),
    );
    assert!(bin.is_file(), "the build made no {}", bin.display());
    bin
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(format!("{}/.", from.display())).arg(to);
    run(&mut cmd, "copying firmware/ipxe");
}

/// Member `i` at 198.18.0.(i+1), running `bin`.
fn member(hub: &Netns, i: usize, bin: &Path) -> Member {
    let ip = format!("198.18.0.{}", i + 1);
    let mut m = Member::on_bridge(hub, "br0", "roll", "r", i, &ip);
    m.drover.set_bin(bin);
    m
}

fn holds(m: &Member) -> bool {
    m.has_address(SERVICE_ADDRESS)
}

/// Whether the member sees the two others alive and owns a DHCP share of its own (a member
/// that joined or restarted hands out addresses some seconds later).
fn sees_all(m: &Member) -> bool {
    let out = m.drover.cli(&["pool", "status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let alive = |r: &serde_json::Value| r["state"].as_str() == Some("alive");
    s["roster"].as_array().is_some_and(|r| r.len() == 3)
        && s["members"]
            .as_array()
            .is_some_and(|list| list.iter().filter(|r| alive(r)).count() >= 2)
        && s["me"]["summary"]["dhcp"]["addresses"]
            .as_u64()
            .is_some_and(|n| n > 0)
}

fn report(m: &[Member]) -> String {
    m.iter()
        .map(|x| {
            x.pool_report(&format!(
                "holds: {}, runs {}",
                holds(x),
                x.drover.bin().display()
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The checks of step `n` (see the module doc), named `step` in messages and node names.
fn step_checks(m: &[Member], found: &mut Findings, (n, step): (usize, &str), new: &Path) {
    let settled = wait_until(Duration::from_secs(90), || {
        found.snapshot(m);
        m.iter().all(sees_all) && found.holders(m) == 1
    });
    assert!(settled, "{step}: the pool did not settle:\n{}", report(m));
    // A node added on a new member and one on an old member reach everyone.
    let writers = [
        m.iter().find(|x| x.drover.bin() == new),
        m.iter().find(|x| x.drover.bin() != new),
    ];
    for (k, writer) in writers.into_iter().flatten().enumerate() {
        let node = format!("{step}-{k}");
        let mac = format!("02:00:00:00:{n:02x}:{k:02x}");
        writer.drover.cli_ok(&["node", "add", &node, "--mac", &mac]);
        let everywhere = wait_until(Duration::from_secs(30), || {
            found.snapshot(m);
            m.iter()
                .all(|x| x.drover.cli_ok(&["node", "list"]).contains(&node))
        });
        assert!(
            everywhere,
            "{step}: node {node} added on {} did not reach every member:\n{}",
            writer.ip,
            report(m)
        );
    }
    found.watch(m, 5);
}

#[test]
#[ignore = "long: builds the previous release; run by scripts/test --long"]
fn a_pool_keeps_serving_through_a_rolling_upgrade() {
    common::require_root();
    common::require_cmd("perfdhcp", "kea-admin");
    let (old, new) = (previous_binary(), common::drover_bin());
    let hub = Netns::new("roll-hub");
    hub.add_bridge("br0", "198.18.0.254/24");
    let mut m: Vec<Member> = (0..3).map(|i| member(&hub, i, &old)).collect();
    let client = Netns::new("roll-client");
    hub.add_veth_to_bridge("rc", "br0", &client, "eth0");
    client.add_addr("eth0", &format!("{CLIENT}/24"));
    let config = common::config_only(
        &["dhcp"],
        &format!("[pool]\nservice-address = \"{SERVICE_ADDRESS}\"\n"),
    );
    Member::form_pool(&mut m, &config);
    let log = m[0].drover.scratch().join("perfdhcp.log");
    // For the whole test.
    let pid = common::pool::perfdhcp(&client, &log, 900);
    let mut found = Findings::new(SERVICE_ADDRESS);
    step_checks(&m, &mut found, (0, "old"), &new);
    for i in 0..m.len() {
        let x = &mut m[i];
        let config_file = x.drover.scratch().join("drover.toml");
        let config_file = config_file.to_str().expect("UTF-8 temp path").to_string();
        x.drover.stop();
        x.drover.set_bin(&new);
        x.drover.start(
            Some(&x.ns),
            &["serve", "--interface", "eth0", "--config", &config_file],
        );
        let ready = wait_until(Duration::from_secs(30), || {
            x.drover.log().matches("drover: ready").count() == 2
        });
        assert!(
            ready,
            "member {i} did not start on the new binary:\n{}",
            x.drover.log_tail(30)
        );
        eprintln!("member {i} runs the new binary");
        step_checks(&m, &mut found, (i + 1, &format!("step{i}")), &new);
    }
    client.kill(pid);
    found.conclude(&m, &log, || report(&m));
}
