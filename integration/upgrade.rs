//! Upgrades through the real binary: every store recorded from an earlier build in
//! `integration/fixtures/upgrade/NAME/` (`store.tar`, a `drover backup --store-only` made by
//! `scripts/upgrade-fixture` with that build, and `expected`, what it held) is restored with
//! today's binary, which opens it (migrating an older schema, as at any start), lists the same
//! nodes, group, image, user and setting, and then serves: busybox `udhcpc` playing each
//! recorded client gets the address that client held, the dynamic ones first, so an address a
//! fresh server would hand out first is not what answers the check.
//!
//! Needs root (network namespaces), `ip` and `udhcpc`; fails without them.

mod common;

use common::{repo_root, require_cmd, require_root, Drover, Netns};
use std::path::{Path, PathBuf};
use std::time::Duration;

const FIXTURES: &str = "integration/fixtures/upgrade";
/// The fixtures' network (scripts/upgrade-fixture): the server's address on it.
const SERVER_CIDR: &str = "198.18.9.1/24";

/// The store schema recorded in a backup's manifest (its first tar member).
fn backup_schema(tar: &[u8]) -> u32 {
    // A ustar header: the member's size in octal at 124..136; the data follows the header.
    let header = tar.get(..512).expect("a tar header");
    let size_field = std::str::from_utf8(&header[124..136]).expect("an ASCII size field");
    let size =
        usize::from_str_radix(size_field.trim_matches(['\0', ' ']), 8).expect("an octal size");
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar[512..512 + size]).expect("the manifest is JSON");
    manifest["schema"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or_else(|| panic!("no schema in the manifest: {manifest}"))
}

/// The lines of `expected` whose first word is `kind`, split into words.
fn expected(dir: &Path, kind: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("expected")).expect("read expected");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|k| k == kind))
        .collect()
}

/// Whether some line of `listing` has all of `words` as words.
fn has_row(listing: &str, words: &[String]) -> bool {
    listing.lines().any(|l| {
        let have: Vec<&str> = l.split_whitespace().collect();
        words.iter().all(|w| have.contains(&w.as_str()))
    })
}

/// Plays client `mac` with udhcpc from `client` (interface `upg1`); the address it was given.
fn lease_as(client: &Netns, mac: &str, drover: &Drover) -> String {
    client.ip(&["link", "set", "upg1", "down"]);
    client.ip(&["link", "set", "upg1", "address", mac]);
    client.ip(&["link", "set", "upg1", "up"]);
    let out = client
        .cmd("udhcpc")
        .args([
            "-i", "upg1", "-n", "-q", "-f", "-t", "6", "-T", "1", "-A", "1",
        ])
        .args(["-s", "/bin/true"])
        .output()
        .expect("run udhcpc");
    // busybox udhcpc says "lease of ADDRESS obtained from SERVER, lease time N".
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.split("lease of ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(String::from)
        .unwrap_or_else(|| {
            panic!(
                "udhcpc as {mac} got no lease:\n{text}\ndrover log:\n{}",
                drover.log_tail(30)
            )
        })
}

fn check_fixture(dir: &Path, index: usize) {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let tar_path = dir.join("store.tar");
    let tar = std::fs::read(&tar_path).expect("read store.tar");
    let schema = backup_schema(&tar);
    assert!(
        schema <= drover::store::SCHEMA_VERSION,
        "fixture {name} has store schema {schema}, newer than today's {}",
        drover::store::SCHEMA_VERSION
    );
    eprintln!(
        "upgrade: fixture {name}: store schema {schema} -> {}",
        drover::store::SCHEMA_VERSION
    );

    let mut drover = Drover::new();
    drover.cli_ok(&["restore", tar_path.to_str().expect("UTF-8 path")]);
    let listings = [
        ("node", drover.cli_ok(&["node", "list"])),
        ("group", drover.cli_ok(&["group", "list"])),
        ("image", drover.cli_ok(&["image", "list"])),
        ("user", drover.cli_ok(&["user", "list"])),
        ("setting", drover.cli_ok(&["config", "show"])),
    ];
    for (kind, listing) in &listings {
        let rows = expected(dir, kind);
        assert!(!rows.is_empty(), "fixture {name} expects no {kind}");
        for row in rows {
            assert!(
                has_row(listing, &row[1..]),
                "fixture {name}: today's `{kind}` listing lacks {:?}:\n{listing}",
                &row[1..]
            );
        }
    }

    let server = Netns::new(&format!("upg{index}s"));
    let client = Netns::new(&format!("upg{index}c"));
    server.add_veth("upg0", &client, "upg1");
    server.add_addr("upg0", SERVER_CIDR);
    drover.start(Some(&server), &["serve", "--interface", "upg0"]);
    drover.wait_log("drover: ready", Duration::from_secs(30));
    let reserved: Vec<String> = expected(dir, "node")
        .into_iter()
        .map(|w| w[3].clone())
        .collect();
    let mut leases = expected(dir, "lease");
    // Clients of the range first (a reservation answers the same from any store), the one
    // holding the highest address first: a server that lost the leases would give it the
    // range's first free address instead.
    leases.sort_by_key(|w| (reserved.contains(&w[2]), std::cmp::Reverse(w[2].clone())));
    assert!(!leases.is_empty(), "fixture {name} expects no lease");
    for row in leases {
        let (mac, ip) = (&row[1], &row[2]);
        assert_eq!(
            &lease_as(&client, mac, &drover),
            ip,
            "fixture {name}: client {mac} held {ip} in the recorded store"
        );
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join(FIXTURES))
        .expect("read the fixtures directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("store.tar").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn recorded_stores_open_migrate_and_serve_their_leases() {
    require_root();
    require_cmd("udhcpc", "udhcpc");
    let dirs = fixtures();
    assert!(!dirs.is_empty(), "no fixtures in {FIXTURES}");
    for (i, dir) in dirs.iter().enumerate() {
        check_fixture(dir, i);
    }
}
