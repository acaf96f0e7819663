//! Pool membership through the real binary: three `drover serve` members, each in its own
//! network namespace on one bridge, join through the first with `drover pool init` / `pool
//! join`; `drover pool status` shows them; a member killed with SIGKILL is seen down by the
//! survivors (the measured delay is printed; the test waits up to 20 s and does not assert on
//! time); a member with another pool's key never gets in; `pool leave` on a running member
//! takes it out (the others show it `left`).
//!
//! A second test runs three members on loopback (no root): `pool status --json` and `GET
//! /api/v1/pool` show every member's summary (what it serves), health (a killed member
//! `down`, a leaving one `left`) and the replication lag behind each.
//!
//! The other services are switched off in these members (but HTTP and NFS on loopback ports
//! in the second test, so that members serve something to summarise).

mod common;

use common::{Drover, Member, Netns};
use std::time::{Duration, Instant};

fn member(hub: &Netns, i: usize) -> Member {
    Member::on_bridge(hub, "br0", "pool", "p", i, &format!("198.18.0.{}", i + 1))
}

impl Member {
    fn serve(&mut self) {
        self.drover
            .serve_with(Some(&self.ns), "eth0", &common::config_only(&[], ""));
    }

    /// `(address, state)` of the other members in `drover pool status --json`, or `None`
    /// while there is no status yet.
    fn others(&self) -> Option<Vec<(String, String)>> {
        let status = status_json(&self.drover)?;
        Some(
            status["members"]
                .as_array()?
                .iter()
                .map(|m| {
                    (
                        m["addr"].as_str().unwrap_or("").to_string(),
                        m["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        )
    }

    fn sees(&self, ip: &str, state: &str) -> bool {
        self.others().is_some_and(|o| {
            o.iter()
                .any(|(a, s)| a == &format!("{ip}:7946") && s == state)
        })
    }

    fn status_text(&self) -> String {
        let out = self.drover.cli(&["pool", "status"]);
        format!(
            "{}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.drover.log_tail(20)
        )
    }
}

#[test]
fn members_join_see_a_death_and_refuse_a_stranger() {
    let hub = Netns::new("pool-hub");
    hub.add_bridge("br0", "198.18.0.254/24");
    let mut m: Vec<Member> = (0..4).map(|i| member(&hub, i)).collect();

    // Before any start: A creates the key, B and C join through A with a copy of it.
    let out = m[0].drover.cli_ok(&["pool", "init"]);
    assert!(out.contains("created the cluster key"), "{out}");
    let key = m[0].drover.state_dir().join("cluster.key");
    let again = m[0].drover.cli(&["pool", "init"]);
    assert!(
        !again.status.success(),
        "a second init must not replace the key"
    );
    for b in [1, 2] {
        m[b].drover.cli_ok(&[
            "pool",
            "join",
            "198.18.0.1",
            "--key-file",
            key.to_str().unwrap(),
        ]);
    }
    // D has a key of its own: another pool.
    m[3].drover.cli_ok(&["pool", "init"]);
    let d_key = m[3].drover.state_dir().join("cluster.key");
    // Its own key again: accepted, records A as seed.
    m[3].drover.cli_ok(&[
        "pool",
        "join",
        "198.18.0.1",
        "--key-file",
        d_key.to_str().unwrap(),
    ]);
    assert!(d_key.exists());
    let wrong = m[1].drover.cli(&[
        "pool",
        "join",
        "198.18.0.1",
        "--key-file",
        d_key.to_str().unwrap(),
    ]);
    assert!(
        !wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("another pool"),
        "joining with a second key must be refused"
    );

    for x in m.iter_mut() {
        x.serve();
    }
    let t0 = Instant::now();
    let all_up = common::wait_until(Duration::from_secs(30), || {
        [(0, [1, 2]), (1, [0, 2]), (2, [0, 1])]
            .iter()
            .all(|(i, others)| others.iter().all(|o| m[*i].sees(&m[*o].ip, "alive")))
    });
    assert!(all_up, "the pool did not form:\n{}", m[0].status_text());
    eprintln!("three members saw each other after {:?}", t0.elapsed());
    // The stranger is in no one's view, and its datagrams were refused.
    for x in &m[..3] {
        assert!(
            x.others()
                .unwrap()
                .iter()
                .all(|(a, _)| !a.starts_with("198.18.0.4:")),
            "{}",
            x.status_text()
        );
    }
    let refused = common::wait_until(Duration::from_secs(15), || {
        m[0].status_text()
            .contains("not signed with this pool's key")
    });
    assert!(refused, "{}", m[0].status_text());
    assert!(m[3].others().unwrap().is_empty(), "{}", m[3].status_text());

    // The store replicates: a node added on any member reaches the others; the stranger
    // gets nothing.
    m[0].drover
        .cli_ok(&["node", "add", "n1", "--mac", "52:54:00:00:00:01"]);
    m[1].drover.cli_ok(&[
        "node",
        "add",
        "n2",
        "--mac",
        "52:54:00:00:00:02",
        "--alias",
        "web",
    ]);
    let t_write = Instant::now();
    let has = |x: &Member, name: &str| x.drover.cli_ok(&["node", "list"]).contains(name);
    let replicated = common::wait_until(Duration::from_secs(20), || {
        m[..3].iter().all(|x| has(x, "n1") && has(x, "n2"))
    });
    assert!(
        replicated,
        "nodes did not replicate:\n{}",
        m[2].status_text()
    );
    eprintln!(
        "nodes added on two members were on all three after {:?}",
        t_write.elapsed()
    );
    m[2].drover.cli_ok(&["node", "rm", "n1"]);
    assert!(
        common::wait_until(Duration::from_secs(20), || !has(&m[0], "n1")
            && !has(&m[1], "n1")),
        "a removal did not replicate"
    );
    assert!(!has(&m[3], "n2"), "the stranger got the pool's data");

    // Image files follow their records: content-addressed, verified by hash on arrival.
    let kernel = m[0].drover.scratch().join("vmlinuz");
    let initrd = m[0].drover.scratch().join("initrd");
    let big: Vec<u8> = (0..9_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&kernel, &big[..5_000_000]).unwrap();
    std::fs::write(&initrd, &big).unwrap();
    m[0].drover.cli_ok(&[
        "image",
        "add",
        "img",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
    ]);
    let blob = |x: &Member, data: &[u8]| {
        common::stored_blob(x.drover.state_dir(), blake3::hash(data).to_hex().as_str())
    };
    let t_image = Instant::now();
    let copied = common::wait_until(Duration::from_secs(30), || {
        m[1..3].iter().all(|x| {
            blob(x, &big).is_some_and(|d| d == big)
                && blob(x, &big[..5_000_000]).is_some_and(|d| d == big[..5_000_000])
        })
    });
    assert!(
        copied,
        "image files did not replicate:\n{}",
        m[1].drover.log_tail(20)
    );
    eprintln!(
        "a 14 MB image reached both other members after {:?}",
        t_image.elapsed()
    );

    // SIGKILL C: A and B see it down.
    let c_pid = m[2].drover.pid().unwrap();
    common::signal(c_pid, "KILL");
    let t_kill = Instant::now();
    let seen = common::wait_until(Duration::from_secs(20), || {
        m[0].sees("198.18.0.3", "down") && m[1].sees("198.18.0.3", "down")
    });
    assert!(
        seen,
        "C's death went unnoticed:\n{}\n{}",
        m[0].status_text(),
        m[1].status_text()
    );
    eprintln!(
        "SIGKILLed member seen down by both survivors after {:?}",
        t_kill.elapsed()
    );

    // `pool leave` on the running B: A sees it go (off the roster: `left`, not `down`).
    m[1].drover.cli_ok(&["pool", "leave"]);
    assert!(!m[1].drover.state_dir().join("cluster.key").exists());
    let gone = common::wait_until(Duration::from_secs(20), || m[0].sees("198.18.0.2", "left"));
    assert!(gone, "B's leave went unnoticed:\n{}", m[0].status_text());
    let status = m[1].drover.cli(&["pool", "status"]);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("not in a pool"));
}

/// A node's writable NFS layer is copied to the other live member before a stable change is
/// answered (issue 7). Member A serves node n1 an NFS root (image read-only, `/var/log` its
/// persistent layer); libnfs in the node's namespace (address = n1's) writes through A.
/// First B is down: the write is answered unreplicated; when B comes up, A brings B's copy
/// level with a snapshot without any new write. Then a write through A, A SIGKILLed at once
/// after `nfs-cp` returned: the data is in B's `<state>/nfs/nodes/n1/` copy, with the mode,
/// owner and mtime of A's file.
#[test]
fn acknowledged_nfs_layer_writes_survive_the_member() {
    common::require_root();
    common::require_cmd("nfs-cp", "libnfs-utils");
    let hub = Netns::new("lrep-hub");
    hub.add_bridge("br0", "198.18.0.254/24");
    let mut a = member(&hub, 0);
    let mut b = member(&hub, 1);
    let node_ns = Netns::new("lrep-n1");
    hub.add_veth_to_bridge("pn1", "br0", &node_ns, "eth0");
    node_ns.add_addr("eth0", "198.18.0.51/24");

    a.drover.cli_ok(&["pool", "init"]);
    let key = a.drover.state_dir().join("cluster.key");
    b.drover.cli_ok(&[
        "pool",
        "join",
        "198.18.0.1",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    // An image whose root is served over NFS, /var/log persistent.
    let tree = a.drover.scratch().join("rootfs");
    std::fs::create_dir_all(tree.join("var/log")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), b"image\n").unwrap();
    std::fs::write(tree.join("var/log/seeded.log"), b"from the image\n").unwrap();
    let kernel = a.drover.scratch().join("vmlinuz");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    a.drover.cli_ok(&[
        "image",
        "add",
        "img",
        "--kernel",
        kernel.to_str().unwrap(),
        "--rootfs",
        tree.to_str().unwrap(),
        "--root",
        "nfs",
        "--persistent",
        "/var/log",
    ]);
    a.drover.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        "52:54:00:00:07:01",
        "--ip",
        "198.18.0.51",
        "--image",
        "img",
    ]);
    let config = common::config_only(&[], "[nfs]\nenabled = true\ngrace-secs = 0\n");
    a.drover.serve_with(Some(&a.ns), "eth0", &config);

    let put = |name: &str, data: &[u8]| {
        let local = a.drover.scratch().join(name);
        std::fs::write(&local, data).unwrap();
        let t = Instant::now();
        let out = node_ns
            .cmd("nfs-cp")
            .args([
                local.to_str().unwrap(),
                &format!("nfs://198.18.0.1/root/var/log/{name}?version=4"),
            ])
            .output()
            .expect("nfs-cp");
        assert!(
            out.status.success(),
            "nfs-cp {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            a.drover.log_tail(20)
        );
        t.elapsed()
    };
    let copy = |m: &Member, name: &str| {
        std::fs::read(m.drover.state_dir().join("nfs/nodes/n1/var/log").join(name)).ok()
    };

    // B is down: the write is answered all the same, counted unreplicated.
    let early: Vec<u8> = (0..40)
        .flat_map(|i| format!("early {i}\n").into_bytes())
        .collect();
    let alone = put("early.log", &early);
    assert_eq!(copy(&a, "early.log").as_deref(), Some(&early[..]));
    let unreplicated = common::wait_until(Duration::from_secs(10), || {
        a.drover
            .cli_ok(&["pool", "status"])
            .contains("answered before any other member had a copy")
    });
    assert!(unreplicated, "{}", a.status_text());

    // B comes up: A snapshots n1's layer to it without any new write.
    b.serve();
    assert!(
        common::wait_until(Duration::from_secs(30), || a.sees("198.18.0.2", "alive")),
        "{}",
        a.status_text()
    );
    let t_up = Instant::now();
    let caught_up = common::wait_until(Duration::from_secs(30), || {
        copy(&b, "early.log").as_deref() == Some(&early[..])
            && copy(&b, "seeded.log").as_deref() == Some(&b"from the image\n"[..])
    });
    assert!(
        caught_up,
        "B did not catch up by snapshot:\n{}\n{}",
        a.status_text(),
        b.drover.log_tail(20)
    );
    eprintln!(
        "B's copy caught up by snapshot {:?} after A saw it alive",
        t_up.elapsed()
    );
    // `pool status` on A shows B's copies: nothing pending, n1 level.
    let shown = common::wait_until(Duration::from_secs(10), || {
        a.drover
            .cli_ok(&["pool", "status"])
            .contains("NFS layer copies on 198.18.0.2:7946: 0 pending, 0 failed, 0 node(s) behind")
    });
    assert!(shown, "{}", a.status_text());

    // With B level, a write answered through A is on B before A dies.
    let mut latencies = Vec::new();
    for i in 0..5 {
        let data = format!("line {i} written through A\n").repeat(20);
        latencies.push(put(&format!("w{i}.log"), data.as_bytes()));
    }
    let last = b"the last acknowledged write\n".repeat(30);
    put("last.log", &last);
    let a_pid = a.drover.pid().unwrap();
    common::signal(a_pid, "KILL");
    a.drover.crash();
    for i in 0..5 {
        let data = format!("line {i} written through A\n").repeat(20);
        assert_eq!(
            copy(&b, &format!("w{i}.log")).as_deref(),
            Some(data.as_bytes()),
            "w{i}.log is not on B\n{}",
            b.drover.log_tail(20)
        );
    }
    assert_eq!(copy(&b, "last.log").as_deref(), Some(&last[..]));
    use std::os::unix::fs::MetadataExt;
    let attrs = |m: &Member| {
        let md =
            std::fs::symlink_metadata(m.drover.state_dir().join("nfs/nodes/n1/var/log/last.log"))
                .unwrap();
        (md.mode(), md.uid(), md.gid(), md.mtime(), md.mtime_nsec())
    };
    assert_eq!(attrs(&a), attrs(&b), "mode, owner and mtime copied");
    eprintln!(
        "nfs-cp of a small file through A, replicated to B: {:?} (B down: {alone:?})",
        latencies
    );
}

/// `drover pool status --json`, or `None` while there is no status.
fn status_json(d: &Drover) -> Option<serde_json::Value> {
    let out = d.cli(&["pool", "status", "--json"]);
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("pool status --json prints JSON"))
}

/// A new member that joined the pool of `a` (its key) through `seed`, not started yet.
fn joined(a: &Drover, seed: &str) -> Drover {
    let key = a.state_dir().join("cluster.key");
    let b = Drover::new();
    b.cli_ok(&["pool", "join", seed, "--key-file", key.to_str().unwrap()]);
    b
}

/// The entry of the member at `addr` in a status (`me` or one of `members`).
fn entry<'a>(status: &'a serde_json::Value, addr: &str) -> Option<&'a serde_json::Value> {
    std::iter::once(&status["me"])
        .chain(status["members"].as_array()?.iter())
        .find(|m| m["addr"] == addr)
}

fn service_names(m: &serde_json::Value) -> Vec<String> {
    m["summary"]["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn status_and_api_show_what_each_member_serves_its_health_and_lag() {
    use common::api::{cli_stdin, free_port, ApiServer, PASSWORD};
    let pool_config =
        |port: u16, extra: &str| format!("[pool]\naddress = \"127.0.0.1\"\nport = {port}\n{extra}");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    // A: HTTP (the API) and NFS on loopback ports; B: HTTP; C: nothing but the pool.
    let mut a = Drover::new();
    let (ok, out, err) = cli_stdin(&a, &["admin", "passwd"], &format!("{PASSWORD}\n"));
    assert!(ok, "{out}{err}");
    a.cli_ok(&["pool", "init"]);
    let key = a.state_dir().join("cluster.key");
    let mut b = Drover::new();
    let mut c = Drover::new();
    for x in [&b, &c] {
        x.cli_ok(&[
            "pool",
            "join",
            &addr(0),
            "--key-file",
            key.to_str().unwrap(),
        ]);
    }
    let http_a = free_port();
    a.serve_with(
        None,
        "lo",
        &common::config_only(
            &["http"],
            &pool_config(
                ports[0],
                &format!(
                    "[http]\nport = {http_a}\n[nfs]\nenabled = true\nport = {}\n",
                    free_port()
                ),
            ),
        ),
    );
    b.serve_with(
        None,
        "lo",
        &common::config_only(
            &["http"],
            &pool_config(ports[1], &format!("[http]\nport = {}\n", free_port())),
        ),
    );
    c.serve_with(
        None,
        "lo",
        &common::config_only(&[], &pool_config(ports[2], "")),
    );

    // An image on A: its files travel to B and C, and each says it has them.
    let kernel = a.scratch().join("vmlinuz");
    std::fs::write(&kernel, vec![7u8; 300_000]).unwrap();
    a.cli_ok(&["image", "add", "img", "--kernel", kernel.to_str().unwrap()]);
    // A write on B, which A must catch up with.
    b.cli_ok(&["node", "add", "fromb", "--mac", "52:54:00:00:0b:01"]);

    // Every member's summary reaches every other, by direct exchange or passed on.
    let t0 = Instant::now();
    let complete = |d: &Drover| {
        let Some(s) = status_json(d) else {
            return false;
        };
        (0..3).all(|i| {
            entry(&s, &addr(i)).is_some_and(|m| {
                m["state"] == "alive" && m["summary"]["blobs"].as_u64().unwrap_or(0) >= 1
            })
        })
    };
    let spread = common::wait_until(Duration::from_secs(40), || {
        [&a, &b, &c].iter().all(|d| complete(d))
    });
    let text = |d: &Drover| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&d.cli(&["pool", "status"]).stdout),
            d.log_tail(15)
        )
    };
    assert!(
        spread,
        "summaries did not spread:\nA:\n{}\nC:\n{}",
        text(&a),
        text(&c)
    );
    eprintln!(
        "all three summaries on all three members after {:?}",
        t0.elapsed()
    );

    let s = status_json(&a).unwrap();
    let me = &s["me"];
    assert_eq!(me["addr"], addr(0));
    assert_eq!(service_names(me), ["http", "nfs"], "{me}");
    assert_eq!(me["summary"]["nfs_clients"], 0, "{me}");
    assert_eq!(me["summary"]["version"], env!("CARGO_PKG_VERSION"));
    let on_a_b = entry(&s, &addr(1)).unwrap();
    assert_eq!(service_names(on_a_b), ["http"], "{on_a_b}");
    assert!(
        on_a_b["summary"]["nfs_clients"].is_null(),
        "B serves no NFS"
    );
    assert!(on_a_b["summary_age_ms"].as_u64().is_some(), "{on_a_b}");
    assert!(on_a_b["last_heard_ms"].as_u64().is_some(), "{on_a_b}");
    let on_a_c = entry(&s, &addr(2)).unwrap();
    assert_eq!(service_names(on_a_c), Vec::<String>::new(), "{on_a_c}");
    assert!(
        on_a_c["summary"]["blob_bytes"].as_u64().unwrap_or(0) >= 300_000,
        "C fetched the kernel: {on_a_c}"
    );

    // Lag: A completes exchanges with B and ends up with everything B wrote (the node).
    let caught_up = common::wait_until(Duration::from_secs(20), || {
        status_json(&a).is_some_and(|s| {
            entry(&s, &addr(1)).is_some_and(|m| {
                m["lag"]["completed"].as_u64().unwrap_or(0) > 0
                    && m["lag"]["behind_ms"] == 0
                    && m["lag"]["newest_here"]["member"] == m["id"]
            })
        })
    });
    assert!(caught_up, "A's lag behind B:\n{}", text(&a));
    let shown = text(&a);
    eprintln!("pool status on A:\n{shown}");
    for part in [
        "Replication lag",
        "has all it wrote",
        "http nfs",
        "alive (this member)",
    ] {
        assert!(shown.contains(part), "{part:?} not in\n{shown}");
    }

    // The API answers the same, and only with credentials.
    let api = ApiServer { d: a, port: http_a };
    let r = api.request("GET", "/api/v1/pool", &[], None);
    assert_eq!(r.status, 401, "{}", r.body);
    let token = api.token("pool");
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let r = api.request("GET", "/api/v1/pool", &auth, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let from_api = r.json();
    let states = |s: &serde_json::Value| -> Vec<(String, String, bool)> {
        let mut v: Vec<_> = s["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["addr"].as_str().unwrap().to_string(),
                    m["state"].as_str().unwrap().to_string(),
                    m["summary"].is_object(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let from_cli = status_json(&api.d).unwrap();
    assert_eq!(states(&from_api), states(&from_cli));
    assert_eq!(
        from_api["me"]["summary"]["services"],
        from_cli["me"]["summary"]["services"]
    );
    // The CLI elsewhere shows the same through the API.
    let url = api.url();
    let out = b.cli_ok(&["--server", &url, "--token", &token, "pool", "status"]);
    assert!(
        out.contains("alive (this member)") && out.contains(&addr(2)) && out.contains("http nfs"),
        "{out}"
    );

    // SIGKILL C: A and B show it down, since when, with its last word still there.
    common::signal(c.pid().unwrap(), "KILL");
    let t_kill = Instant::now();
    let down = |d: &Drover| {
        status_json(d).is_some_and(|s| {
            entry(&s, &addr(2)).is_some_and(|m| {
                m["state"] == "down"
                    && m["down_since_ms"].as_u64().is_some()
                    && m["summary"].is_object()
            })
        })
    };
    let seen = common::wait_until(Duration::from_secs(20), || down(&api.d) && down(&b));
    assert!(seen, "C's death:\n{}\n{}", text(&api.d), text(&b));
    eprintln!(
        "killed member shown down on both survivors after {:?}",
        t_kill.elapsed()
    );
    assert!(text(&api.d).contains("down for"), "{}", text(&api.d));
    let r = api.request("GET", "/api/v1/pool", &auth, None);
    let on_api = entry(&r.json(), &addr(2)).cloned().unwrap();
    assert_eq!(on_api["state"], "down", "{on_api}");

    // B leaves: off the roster, so A shows it `left`.
    b.cli_ok(&["pool", "leave"]);
    let left = common::wait_until(Duration::from_secs(20), || {
        status_json(&api.d)
            .is_some_and(|s| entry(&s, &addr(1)).is_some_and(|m| m["state"] == "left"))
    });
    assert!(left, "B's leave:\n{}", text(&api.d));
}

/// Change-feed compaction with two members on loopback: while B is down, A writes more than
/// the feed keeps and prunes what nobody live lacks (its summary shows the floor); B comes
/// back after that and still converges, by version vector, to every node A wrote.
#[test]
fn the_feed_is_compacted_and_a_member_back_after_it_converges() {
    use common::api::free_port;
    const NODES: usize = 5000;
    let ports = [free_port(), free_port()];
    let config = |i: usize| {
        common::config_only(
            &[],
            &format!("[pool]\naddress = \"127.0.0.1\"\nport = {}\n", ports[i]),
        )
    };
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut a = Drover::new();
    a.cli_ok(&["pool", "init"]);
    let mut b = joined(&a, &addr(0));
    a.serve_with(None, "lo", &config(0));
    b.serve_with(None, "lo", &config(1));
    let state_on = |d: &Drover, i: usize| {
        status_json(d).and_then(|s| entry(&s, &addr(i)).map(|m| m["state"].clone()))
    };
    let paired = common::wait_until(Duration::from_secs(30), || {
        state_on(&a, 1).is_some_and(|s| s == "alive")
            && state_on(&b, 0).is_some_and(|s| s == "alive")
    });
    assert!(paired, "the pool did not form:\n{}", {
        let o = a.cli(&["pool", "status", "--json"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });

    b.crash();
    let csv = a.scratch().join("nodes.csv");
    let mut text = String::from("name,mac\n");
    for i in 0..NODES {
        text += &format!("c{i},52:54:00:01:{:02x}:{:02x}\n", i / 256, i % 256);
    }
    std::fs::write(&csv, text).unwrap();
    a.cli_ok(&["node", "import", csv.to_str().unwrap()]);

    // A prunes once B is no longer live: its own summary carries the floor.
    let floor = || {
        status_json(&a)
            .and_then(|s| s["me"]["summary"]["feed_floor"].as_u64())
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    let pruned = common::wait_until(Duration::from_secs(60), || floor() > 0);
    assert!(
        pruned,
        "A never compacted its feed:\n{}",
        String::from_utf8_lossy(&a.cli(&["pool", "status"]).stdout)
    );
    let f = floor();
    eprintln!("A pruned its feed up to entry {f} after {:?}", t0.elapsed());
    assert!(
        f as usize >= NODES - 4096,
        "floor {f}: the feed keeps only its newest 4096"
    );

    // B returns behind the floor and catches up with every node by anti-entropy.
    b.serve_with(None, "lo", &config(1));
    // Rows of `node list` naming an imported node (`c` and digits).
    let count = |d: &Drover| {
        let out = d.cli(&["node", "list"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| {
                n.len() > 1 && n.starts_with('c') && n[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .count()
    };
    let t0 = Instant::now();
    let converged = common::wait_until(Duration::from_secs(60), || count(&b) == NODES);
    assert!(
        converged,
        "B has {} of {NODES} nodes:\n{}",
        count(&b),
        b.log_tail(20)
    );
    eprintln!(
        "B had all {NODES} nodes {:?} after its restart",
        t0.elapsed()
    );
    assert_eq!(count(&a), NODES);
}

/// The sum of `bytes=N` over the "fetched image files" lines of a member's log.
fn fetched_bytes(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("pool: fetched image files"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("bytes=")))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Replication ships only the chunks a member lacks: two members on loopback (no root). A
/// imports a tree of twelve "packages" (version 1), B fetches it; A imports the tree with
/// one package more (version 2), and B's log shows what crossed for it: that package and a
/// few chunks around it, not the whole image again. B then serves version 2's rootfs, the
/// same bytes as A's.
#[test]
fn a_new_version_replicates_as_its_missing_chunks() {
    let pool_config = |port: u16, http: u16| {
        format!("[pool]\naddress = \"127.0.0.1\"\nport = {port}\n[http]\nport = {http}\n")
    };
    let ports: Vec<u16> = (0..4).map(|_| common::api::free_port()).collect();
    let mut a = Drover::new();
    a.cli_ok(&["pool", "init"]);
    let key = a.state_dir().join("cluster.key");
    let mut b = Drover::new();
    let join = format!("127.0.0.1:{}", ports[0]);
    b.cli_ok(&["pool", "join", &join, "--key-file", key.to_str().unwrap()]);
    a.serve_with(
        None,
        "lo",
        &common::config_only(&["http"], &pool_config(ports[0], ports[2])),
    );
    b.serve_with(
        None,
        "lo",
        &common::config_only(&["http"], &pool_config(ports[1], ports[3])),
    );

    let tree = a.scratch().join("tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::write(tree.join("boot/vmlinuz-6.1.0-1-amd64"), b"kernel").unwrap();
    for i in 0..12u64 {
        let dir = tree.join(format!("usr/lib/pkg{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), common::noise(i + 1, 400_000)).unwrap();
    }
    let rootfs = |port: u16, name: &str| {
        common::http_get_bytes(port, &format!("/images/{name}/rootfs.tar"), None)
    };
    let replicated = |name: &str| {
        // A's server sees the CLI's import within a second (its view follows the store).
        let mut on_a = Vec::new();
        let served = common::wait_until(Duration::from_secs(10), || {
            let (status, _, body) = rootfs(ports[2], name);
            on_a = body;
            status == 200
        });
        assert!(served, "A does not serve {name}:\n{}", a.log_tail(20));
        let ok = common::wait_until(Duration::from_secs(60), || {
            let (status, _, on_b) = rootfs(ports[3], name);
            status == 200 && on_b == on_a
        });
        assert!(ok, "{name} did not reach B:\n{}", b.log_tail(20));
        on_a.len() as u64
    };

    a.cli_ok(&["image", "import", "pk", tree.to_str().unwrap()]);
    let v1 = replicated("pk@1");
    // B logs what it fetched once the exchange's last blob (the initramfs) is in.
    let all_of_v1 = common::wait_until(Duration::from_secs(30), || fetched_bytes(&b.log()) >= v1);
    assert!(all_of_v1, "all of version 1 crossed:\n{}", b.log_tail(10));
    let before = b.log().len();

    let extra = tree.join("usr/lib/pkg05a");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("data"), common::noise(99, 300_000)).unwrap();
    a.cli_ok(&["image", "import", "pk", tree.to_str().unwrap()]);
    let v2 = replicated("pk@2");
    let logged = common::wait_until(Duration::from_secs(10), || {
        fetched_bytes(&b.log()[before..]) > 0
    });
    assert!(logged, "no fetch logged for version 2:\n{}", b.log_tail(10));
    let second = fetched_bytes(&b.log()[before..]);
    eprintln!("version 2 ({v2} bytes of rootfs) cost {second} bytes to replicate");
    assert!(
        (300_000..300_000 + 1_500_000).contains(&second),
        "{second} bytes crossed for a 300 kB package:\n{}",
        b.log_tail(10)
    );
    assert!(second < v2 / 2);
}

/// Pool families in `/metrics` with two members on loopback: both alive, each with a DHCP
/// share (of the served subnet's dynamic range) as `pool status` counts it, completed store
/// exchanges with the peer; after B is killed, A counts it down.
#[test]
fn metrics_show_members_shares_and_exchanges() {
    use common::api::{cli_stdin, free_port, ApiServer, PASSWORD};
    let ports = [free_port(), free_port()];
    let pool = |i: usize| format!("[pool]\naddress = \"127.0.0.1\"\nport = {}\n", ports[i]);
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut a = Drover::new();
    let (ok, out, err) = cli_stdin(&a, &["admin", "passwd"], &format!("{PASSWORD}\n"));
    assert!(ok, "{out}{err}");
    a.cli_ok(&["pool", "init"]);
    let mut b = joined(&a, &addr(0));
    let http = free_port();
    let http_config = format!("{}[http]\nport = {http}\n", pool(0));
    a.serve_with(None, "lo", &common::config_only(&["http"], &http_config));
    b.serve_with(None, "lo", &common::config_only(&[], &pool(1)));
    let api = ApiServer { d: a, port: http };
    let token = api.token("metrics");
    let bearer = format!("Bearer {token}");
    let metrics = || {
        let r = api.request(
            "GET",
            "/metrics",
            &[("Authorization", bearer.as_str())],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };
    // The value of the series whose line starts with `series` (name and labels).
    let value = |body: &str, series: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let ids = |i: usize| {
        status_json(if i == 0 { &api.d } else { &b })
            .and_then(|s| entry(&s, &addr(i)).and_then(|m| m["id"].as_u64()))
    };
    let (mut id_a, mut id_b) = (None, None);
    let mut body = String::new();
    let formed = common::wait_until(Duration::from_secs(60), || {
        id_a = id_a.or_else(|| ids(0));
        id_b = id_b.or_else(|| ids(1));
        let (Some(ia), Some(ib)) = (id_a, id_b) else {
            return false;
        };
        body = metrics();
        let share = |id: u64| {
            value(
                &body,
                &format!("drover_pool_share_addresses{{member=\"{id}\"}}"),
            )
        };
        let peer = format!("member=\"{ib}\",addr=\"{}\"", addr(1));
        value(&body, "drover_pool_members{state=\"alive\"}") == Some(2.0)
            && share(ia).unwrap_or(0.0) > 0.0
            && share(ib).unwrap_or(0.0) > 0.0
            && value(
                &body,
                &format!("drover_pool_replication_exchanges_total{{{peer},result=\"completed\"}}"),
            )
            .is_some_and(|v| v > 0.0)
            && value(
                &body,
                &format!("drover_pool_replication_behind_seconds{{{peer}}}"),
            )
            .is_some()
    });
    assert!(
        formed,
        "pool families on A:\n{body}\n{}",
        api.d.log_tail(20)
    );
    // The same shares as the status the families come from.
    let status = status_json(&api.d).unwrap();
    for i in 0..2 {
        let m = entry(&status, &addr(i)).unwrap();
        let series = format!("drover_pool_share_addresses{{member=\"{}\"}}", m["id"]);
        assert_eq!(
            value(&body, &series),
            m["addresses"].as_f64(),
            "{series} in\n{body}\nstatus: {status}"
        );
    }
    assert_eq!(value(&body, "drover_pool_majority"), Some(1.0), "{body}");
    assert_eq!(
        value(&body, "drover_pool_layers_unreplicated_total"),
        Some(0.0),
        "{body}"
    );
    assert!(
        !body.contains("drover_pool_service_address_held{"),
        "no service address configured:\n{body}"
    );

    common::signal(b.pid().unwrap(), "KILL");
    let down = common::wait_until(Duration::from_secs(30), || {
        body = metrics();
        value(&body, "drover_pool_members{state=\"down\"}") == Some(1.0)
            && value(&body, "drover_pool_members{state=\"alive\"}") == Some(1.0)
    });
    assert!(down, "B's death in A's metrics:\n{body}");
}
