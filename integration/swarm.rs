//! The member's side of swarm delivery (issue 20) through the real binary on loopback: the
//! manifest of a RAM root and its chunks add up to the tarball, the tracker answers other
//! holders only (never the asker, never a node asking from another node's address), reports
//! land in `drover_swarm_*`, and the swarm switch of image, group and node reaches the boot
//! script as `drover.swarm=0`.
//!
//! Nodes are reserved at 127.0.0.1 and 127.0.0.2; requests leave from those addresses.

mod common;

use common::api::{ApiServer, Reply};
use common::{http_get_bytes, noise, wait_until};
use std::io::{Read, Write};

const MAC1: &str = "52:54:00:5a:00:01";
const MAC2: &str = "52:54:00:5a:00:02";

/// A POST of `body` to `path` sent from local address `from`: (status, body).
fn post_from(s: &ApiServer, from: &str, path: &str, body: &str) -> (u16, String) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    let server: std::net::SocketAddr = ([127, 0, 0, 1], s.port).into();
    sock.connect(&server.into()).unwrap();
    let mut stream: std::net::TcpStream = sock.into();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: drover\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn announce(s: &ApiServer, from: &str, mac: &str, blob: &str) -> (u16, String) {
    let body = format!(r#"{{"blob":"{blob}","port":7171}}"#);
    post_from(s, from, &format!("/boot/{mac}/swarm"), &body)
}

fn peers(answer: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap();
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn script(s: &ApiServer, mac: &str) -> String {
    let r: Reply = s.request("GET", &format!("/boot/{mac}"), &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[test]
fn manifest_tracker_reports_and_switches() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let kernel = s.d.scratch().join("vmlinuz");
    std::fs::write(&kernel, b"kernel").unwrap();
    let tree = s.d.scratch().join("tree");
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::write(tree.join("sbin/init"), b"#!/bin/sh\n").unwrap();
    std::fs::write(tree.join("data"), noise(5, 1 << 20)).unwrap();
    let (k, r) = (kernel.to_str().unwrap(), tree.to_str().unwrap());
    s.d.cli_ok(&["image", "add", "fs", "--kernel", k, "--rootfs", r]);
    s.d.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        MAC1,
        "--ip",
        "127.0.0.1",
        "--image",
        "fs",
    ]);
    s.d.cli_ok(&[
        "node",
        "add",
        "n2",
        "--mac",
        MAC2,
        "--ip",
        "127.0.0.2",
        "--image",
        "fs",
    ]);

    // The manifest names the tarball's blob, and its chunks make up the tarball.
    let image = s.request("GET", "/api/v1/images/fs", &t, None).json();
    assert_eq!(image["swarm"], true, "{image}");
    let blob = image["rootfs"]["blob"].as_str().unwrap().to_string();
    // The boot path reads the server's view, refreshed from the store every 250 ms: the image
    // and nodes were added a moment ago.
    let (mut head, mut manifest) = (String::new(), Vec::new());
    let served = wait_until(std::time::Duration::from_secs(10), || {
        let status;
        (status, head, manifest) = http_get_bytes(s.port, "/images/fs/rootfs.manifest", None);
        status == 200
    });
    assert!(served, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("x-drover-blob: {blob}")),
        "{head}"
    );
    let (_, _, tar) = http_get_bytes(s.port, "/images/fs/rootfs.tar", None);
    assert_eq!(&manifest[..16], b"drover-manifest\x01");
    let count = u32::from_le_bytes(manifest[24..28].try_into().unwrap()) as usize;
    assert!(count > 4, "a 1 MiB image in {count} chunks");
    assert_eq!(manifest.len(), 28 + 36 * count);
    let mut joined = Vec::new();
    for entry in manifest[28..].chunks(36) {
        let hex = blake3::Hash::from_bytes(entry[..32].try_into().unwrap()).to_hex();
        let (status, _, bytes) = http_get_bytes(s.port, &format!("/chunks/{hex}"), None);
        assert_eq!(status, 200);
        assert_eq!(blake3::hash(&bytes).to_hex(), hex);
        joined.extend(bytes);
    }
    assert!(joined == tar, "the chunks do not make up the tarball");
    let (status, _, _) = http_get_bytes(s.port, "/images/nope/rootfs.manifest", None);
    assert_eq!(status, 404);

    // The tracker: the first holder hears of nobody, the second of the first, and back.
    let (status, body) = announce(&s, "127.0.0.2", MAC1, &blob);
    assert_eq!(status, 403, "n1 announced from n2's address: {body}");
    let (status, body) = announce(&s, "127.0.0.1", MAC1, &blob);
    assert_eq!((status, peers(&body)), (200, vec![]), "{body}");
    // A holder counts as a peer once the server's view (refreshed from the store every
    // 250 ms) has its reservation: the nodes were added a moment ago.
    let hears = |ip: &str, mac: &str, want: &str| {
        let mut body = String::new();
        let heard = wait_until(std::time::Duration::from_secs(10), || {
            let status;
            (status, body) = announce(&s, ip, mac, &blob);
            assert_eq!(status, 200, "{body}");
            peers(&body) == vec![want.to_string()]
        });
        assert!(heard, "{ip} never hears of {want}: {body}");
    };
    hears("127.0.0.2", MAC2, "127.0.0.1:7171");
    hears("127.0.0.1", MAC1, "127.0.0.2:7171");
    let (status, body) = post_from(&s, "127.0.0.1", &format!("/boot/{MAC1}/swarm"), "{}");
    assert_eq!(status, 400, "{body}");

    // A report lands in the counters.
    let report = r#"{"members":1000,"peers":3000,"retries":2}"#;
    let (status, _) = post_from(
        &s,
        "127.0.0.2",
        &format!("/boot/{MAC2}/swarm/report"),
        report,
    );
    assert_eq!(status, 204);
    let m = s.request("GET", "/metrics", &t, None).body;
    for line in [
        "drover_swarm_bytes_total{source=\"members\"} 1000",
        "drover_swarm_bytes_total{source=\"peers\"} 3000",
        "drover_swarm_events_total{event=\"announces\"} 3",
        "drover_swarm_events_total{event=\"refused\"} 1",
        "drover_swarm_events_total{event=\"reports\"} 1",
        "drover_swarm_events_total{event=\"retries\"} 2",
    ] {
        assert!(m.contains(line), "no {line:?} in\n{m}");
    }

    // The switch: image, then group, with the node's own setting first.
    let off = |mac: &str| script(&s, mac).contains(" drover.swarm=0 ");
    assert!(!off(MAC1), "on by default");
    s.d.cli_ok(&["image", "set", "fs", "--swarm", "off"]);
    assert!(wait(|| off(MAC1) && off(MAC2)));
    s.d.cli_ok(&["node", "set", "n1", "--swarm", "on"]);
    assert!(wait(|| !off(MAC1)));
    s.d.cli_ok(&["image", "set", "fs", "--swarm", "on"]);
    s.d.cli_ok(&["group", "add", "g", "--swarm", "off"]);
    s.d.cli_ok(&["node", "set", "n2", "--group", "g"]);
    assert!(wait(|| off(MAC2)), "n2 follows its group");
    s.d.cli_ok(&["node", "set", "n1", "--group", "g"]);
    assert!(!off(MAC1), "n1's own setting wins");
    s.d.cli_ok(&["node", "set", "n1", "--swarm", "inherit"]);
    assert!(wait(|| off(MAC1)));
    let node = s.request("GET", "/api/v1/nodes/n1", &t, None).json();
    assert!(node.get("swarm").is_none_or(|v| v.is_null()), "{node}");
    let r = s.request(
        "PATCH",
        "/api/v1/nodes/n1",
        &[t[0], ("Content-Type", "application/json")],
        Some(r#"{"swarm":true}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait(|| !off(MAC1)));
}

/// The view behind boot scripts follows the store within a moment.
fn wait(mut cond: impl FnMut() -> bool) -> bool {
    common::wait_until(std::time::Duration::from_secs(5), &mut cond)
}
