//! Local and remote CLI print the same: a `drover serve` with HTTP on loopback and a filled
//! store (nodes, groups, BMC settings, networks, images, leases, boot events, power state,
//! exports, tokens, a one-member pool); each list and show command runs with `--state-dir`
//! and with `--server URL --token T` from another state directory, and the outputs must be
//! byte-identical. Commands without an API endpoint must fail through `--server` naming the
//! command.
//!
//! Needs only loopback (no root, no namespaces). A server that does not start, or an output
//! that is empty or an error, fails the test.

mod common;

use common::api::{free_port, ApiServer};
use drover::store::model::{
    BootEvent, BootLog, BootStage, Lease, LeaseState, PowerState, RelayInfo,
};
use drover::store::{Store, StoreError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Records that no CLI command writes: leases (DHCP's), boot events (the agent's) and a
/// power state (the poller's), written into the server's store as those would.
fn write_records(state: &std::path::Path) {
    let store = Store::open(state).expect("open the server's store from the test");
    let t = now();
    let lease = |last: u8, mac: &str, state: LeaseState, expires: u64, relay: bool| Lease {
        ip: [198, 18, 0, last].into(),
        mac: mac.parse().unwrap(),
        client_id: None,
        hostname: (last % 2 == 0).then(|| format!("host{last}")),
        state,
        start: t - 100,
        expires,
        network: "lab".into(),
        relay: RelayInfo {
            giaddr: relay.then(|| [198, 18, 0, 1].into()),
            agent_info: None,
        },
    };
    let events = |base: u64| {
        [
            (BootStage::Dhcp, "198.18.0.11", "offer 198.18.0.11"),
            (BootStage::Script, "http", "script for n1"),
            (BootStage::Kernel, "http", "kernel 6 MiB"),
            (BootStage::Ready, "agent", "up in 7.5 s (ß ✓)"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (stage, source, detail))| BootEvent {
            at_ms: base + 2_500 * i as u64,
            stage: *stage,
            source: source.to_string(),
            detail: detail.to_string(),
        })
        .collect::<Vec<_>>()
    };
    store
        .write::<_, StoreError>(|w| {
            w.put(&lease(
                101,
                "52:54:00:00:00:01",
                LeaseState::Bound,
                t + 3_600,
                false,
            ))?;
            w.put(&lease(
                102,
                "52:54:00:00:00:99",
                LeaseState::Offered,
                t + 60,
                true,
            ))?;
            w.put(&lease(
                103,
                "52:54:00:00:00:98",
                LeaseState::Bound,
                t - 10,
                false,
            ))?;
            w.put(&lease(
                104,
                "52:54:00:00:00:97",
                LeaseState::Released,
                t + 600,
                false,
            ))?;
            let mut all = events(1_700_000_000_000);
            all.extend(events(t * 1000 - 60_000));
            w.put(&BootLog {
                name: "n1".into(),
                events: all,
            })?;
            w.put(&PowerState {
                node: "n3".into(),
                on: None,
                error: Some("timeout".into()),
                since: t - 30,
            })
        })
        .expect("write leases, boot events and a power state");
}

#[test]
fn local_and_remote_print_the_same() {
    let pool_port = free_port();
    let s = ApiServer::start_with(&format!(
        "[power]\npoll-interval = 0\n[pool]\nport = {pool_port}\naddress = \"127.0.0.1\"\n"
    ));
    let d = &s.d;
    let token = s.token("parity");
    let elsewhere = common::Drover::new();
    let url = s.url();

    // Fill the store through the local CLI.
    let kernel = d.scratch().join("vmlinuz");
    std::fs::write(&kernel, b"kernel").unwrap();
    let tree = d.scratch().join("tree");
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::write(tree.join("sbin/init"), b"#!/bin/sh\n").unwrap();
    let (k, t) = (kernel.to_str().unwrap(), tree.to_str().unwrap());
    let pw = d.scratch().join("bmc-password");
    std::fs::write(&pw, "secret\n").unwrap();
    let share = d.scratch().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let (pw, share) = (pw.to_str().unwrap(), share.to_str().unwrap());
    let setup = [
        "network add lab --subnet 198.18.0.0/24 --range 198.18.0.100-198.18.0.199 \
         --gateway 198.18.0.1 --domain lab.example"
            .to_string(),
        "network add bare --subnet 198.19.0.0/16".into(),
        format!("image add plain --kernel {k} --initrd {k}"),
        format!(
            "image add fs --kernel {k} --rootfs {t} --root nfs --persistent /var/log,/etc/ssh \
             --cmdline console=ttyS0"
        ),
        // A second version of fs, so `image history` has two rows and n3 can pin the first.
        format!("image add fs --replace --kernel {k} --rootfs {t} --cmdline console=ttyS0"),
        "group add rack1 --image fs".into(),
        "group add empty".into(),
        format!("group set rack1 --bmc 127.0.0.1:1 --bmc-user admin --bmc-password-file {pw}"),
        "group set bmconly --bmc-user ops".into(),
        "node add n1 --mac 52:54:00:00:00:01 --ip 198.18.0.11 --group rack1 --alias login,gpu1"
            .into(),
        "node add n2 --mac 52:54:00:00:00:02 --image plain --root ram".into(),
        "node add n3 --mac 52:54:00:00:00:03 --group rack1".into(),
        "node add n4 --mac 52:54:00:00:00:04 --group nogroup".into(),
        "node set n3 --image-version 1".into(),
        format!("nfs export add home --path {share} --clients 198.18.0.0/24,198.19.0.0/16 --rw"),
        format!("nfs export add apps --path {share} --clients 198.18.1.0/24"),
        "token create --name ci".into(),
        "pool init".into(),
    ];
    for line in &setup {
        d.cli_ok(&line.split_whitespace().collect::<Vec<_>>());
    }
    write_records(d.state_dir());
    // The pool task finds the key and writes its status within seconds.
    let pooled = common::wait_until(Duration::from_secs(20), || {
        d.cli(&["pool", "status"]).status.success()
    });
    assert!(pooled, "no pool status; log:\n{}", d.log_tail(40));

    let remote = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--token", token.as_str()];
        all.extend_from_slice(args);
        elsewhere.cli(&all)
    };
    let checked = [
        "node list",
        "node show n1",
        "node show n2",
        "node show n3",
        "node show n4",
        "node events n1",
        "node events n1 --all",
        "node events n2",
        "group list",
        "image list",
        "image history fs",
        "image history plain",
        "network list",
        "lease list",
        "nfs export list",
        "token list",
        "pool status",
        "pool status --json",
        "config show",
        "config show --json",
    ];
    for line in checked {
        let args = &line.split_whitespace().collect::<Vec<_>>()[..];
        // Some outputs show ages in seconds (leases, power state, pool status): a second may
        // pass between two runs, so the remote output must equal a local one taken just
        // before or just after it.
        let mut last = (String::new(), String::new(), String::new());
        let same = (0..3).any(|_| {
            let before = d.cli_ok(args);
            let out = remote(args);
            assert!(
                out.status.success(),
                "`drover --server {url} {}` failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            let after = d.cli_ok(args);
            let ok = got == before || got == after;
            last = (before, got, after);
            ok
        });
        let (local, got, _) = last;
        assert!(
            same,
            "`drover {}` differs:\n--- local ---\n{local}--- remote ---\n{got}",
            args.join(" ")
        );
        assert!(
            local.lines().count() >= 2,
            "`drover {}` printed too little to compare:\n{local}",
            args.join(" ")
        );
    }

    // What the outputs must hold, so that two equally wrong outputs cannot pass.
    let show = d.cli_ok(&["node", "show", "n1"]);
    for want in [
        "root:  nfs (from image fs)",
        "persistent: /etc/ssh,/var/log (NFS root only)",
        "bmc:   127.0.0.1:1 user admin (password set)",
        "power: - (not polled yet)",
    ] {
        assert!(show.contains(want), "{want:?} not in\n{show}");
    }
    assert!(d
        .cli_ok(&["node", "show", "n3"])
        .contains("power: unknown (timeout) (polled; since"));
    assert!(d
        .cli_ok(&["node", "show", "n3"])
        .contains("version: 1 (pinned by node; latest 2)"));
    let history = d.cli_ok(&["image", "history", "fs"]);
    assert!(
        history.starts_with("VERSION") && history.lines().count() == 3,
        "{history}"
    );
    let groups = d.cli_ok(&["group", "list"]);
    for want in [
        "bmconly",
        "nogroup",
        "empty",
        "127.0.0.1  1         admin     set",
    ] {
        assert!(groups.contains(want), "{want:?} not in\n{groups}");
    }
    let leases = d.cli_ok(&["lease", "list"]);
    assert!(
        leases.starts_with("IP") && leases.contains("EXPIRES IN") && leases.contains("expired"),
        "{leases}"
    );
    assert!(d.cli_ok(&["node", "events", "n1"]).contains("n1: up"));

    // Commands without an API endpoint fail through --server, naming the command.
    for (args, name) in [
        (&["pool", "leave"][..], "pool leave"),
        (&["pool", "init"][..], "pool init"),
        (&["pool", "rekey"][..], "pool rekey"),
        (&["image", "add", "x", "--kernel", k][..], "image add"),
        (&["image", "import", "x", t][..], "image import"),
        (&["group", "set", "rack1", "--no-bmc"][..], "group set"),
        (&["nfs", "clients"][..], "nfs clients"),
        (&["admin", "passwd"][..], "admin passwd"),
        (&["serve"][..], "serve"),
    ] {
        let out = remote(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(&format!("`drover {name}`")),
            "{args:?}: {err}"
        );
    }
}
