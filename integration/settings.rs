//! Appliance settings kept in the store (`drover config`, `/api/v1/config`) against the real
//! binary on loopback: a running `drover serve` follows them without a restart.
//!
//! The server serves HTTP and DNS on `lo` on free ports. `config set dns.enabled false`
//! (through the local CLI, on the state directory) must stop DNS answers, and `true` bring
//! them back, with the same process; a bad value is refused naming its key and changes
//! nothing; the remote CLI (`--server`, an admin token) reads and changes the same settings;
//! an operator is refused settings changes (403). In namespaces, the page adds an interface,
//! and DHCP, HTTP and NFS serve it with the same process.

mod common;

use common::api::{cli_stdin, free_port, ApiServer, PASSWORD};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::UdpSocket;
use std::time::Duration;

/// Whether a DNS server answers a query on 127.0.0.1:`port` within a second (any answer:
/// the zone's contents are not this test's business).
fn dns_answers(port: u16) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("drover.cluster.").unwrap(),
        RecordType::A,
    ));
    let bytes = q.to_vec().unwrap();
    socket.send_to(&bytes, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1500];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Message::from_vec(&buf[..n]).is_ok(),
        Err(_) => false,
    }
}

/// A server with HTTP and DNS on `lo` (free ports) and the test's admin password.
fn server() -> (ApiServer, u16) {
    let mut d = common::Drover::new();
    let (ok, out, err) = cli_stdin(&d, &["admin", "passwd"], &format!("{PASSWORD}\n"));
    assert!(ok, "drover admin passwd failed: {out}{err}");
    let (http, dns) = (free_port(), free_port());
    d.serve_with(
        None,
        "lo",
        &common::config_only(
            &["http", "dns"],
            &format!("[http]\nport = {http}\n[dns]\nport = {dns}\nupstreams = []\n"),
        ),
    );
    (ApiServer { d, port: http }, dns)
}

/// What a TCP server at `addr` answers to `request` within 3 s, from inside `ns` (through
/// python3, as the test process itself sits outside); `None` when the connection fails.
fn tcp_answer(ns: &common::Netns, addr: &str, request: &[u8]) -> Option<Vec<u8>> {
    let python = common::require_cmd("python3", "python3");
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let script = format!(
        "import socket,sys\ns=socket.create_connection(('{host}',{port}),timeout=3)\n\
         s.sendall(bytes.fromhex('{}'))\nout=b''\n\
         try:\n  while len(out)<4096:\n    b=s.recv(4096)\n    if not b: break\n    out+=b\n\
         except socket.timeout: pass\nsys.stdout.write(out.hex())\n",
        hex(request)
    );
    let out = ns
        .cmd(&python)
        .args(["-c", &script])
        .output()
        .expect("run python3");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether drover's HTTP server answers `/health` at `addr`, from inside `ns`.
fn http_health(ns: &common::Netns, addr: &str) -> bool {
    let reply = tcp_answer(ns, addr, b"GET /health HTTP/1.0\r\n\r\n").unwrap_or_default();
    let reply = String::from_utf8_lossy(&reply);
    reply.starts_with("HTTP/1.0 200") && reply.ends_with("ok\n")
}

/// Whether an NFS server at `addr` accepts an RPC NULL call (RFC 5531) from inside `ns`.
fn nfs_null(ns: &common::Netns, addr: &str) -> bool {
    // Record mark (last fragment, 40 bytes), xid, CALL, RPC 2, NFS 100003 v4, NULL, no
    // credential, no verifier.
    let words: [u32; 11] = [0x8000_0028, 0x6472_7672, 0, 2, 100_003, 4, 0, 0, 0, 0, 0];
    let call: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let Some(reply) = tcp_answer(ns, addr, &call) else {
        return false;
    };
    let word = |i: usize| {
        reply
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    // xid echoed, REPLY, MSG_ACCEPTED, (verifier), SUCCESS.
    word(1) == Some(0x6472_7672) && word(2) == Some(1) && word(3) == Some(0) && word(6) == Some(0)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_set_turns_dns_off_and_on_without_a_restart() {
    let (s, dns) = server();
    let pid = s.d.pid().unwrap();
    assert!(dns_answers(dns), "DNS does not answer at start");

    let out = s.d.cli_ok(&["config", "set", "dns.enabled", "false"]);
    assert!(out.contains("dns.enabled") && out.contains("live"), "{out}");
    let off = common::wait_until(Duration::from_secs(10), || !dns_answers(dns));
    assert!(
        off,
        "DNS still answers after dns.enabled = false:\n{}",
        s.d.log_tail(20)
    );
    let shown = s.d.cli_ok(&["config", "show"]);
    let row = shown
        .lines()
        .find(|l| l.starts_with("dns.enabled "))
        .unwrap();
    assert!(row.contains("false") && row.contains("pool"), "{row}");

    s.d.cli_ok(&["config", "set", "dns.enabled", "true"]);
    let on = common::wait_until(Duration::from_secs(10), || dns_answers(dns));
    assert!(
        on,
        "DNS does not answer after dns.enabled = true:\n{}",
        s.d.log_tail(20)
    );
    // The same process all along: nothing restarted but the DNS unit.
    assert_eq!(s.d.pid(), Some(pid));
    assert_eq!(s.d.log().matches("drover: ready").count(), 1);
    assert!(s.d.log().contains("stopped (appliance settings changed)"));

    // Bad values are refused naming the key, and change nothing.
    for (key, value, named) in [
        ("dns.enabled", "maybe", "dns.enabled"),
        ("dns.port", "0", "dns.port"),
        ("dns.enabeld", "false", "enabeld"),
        ("dhcp.lease-time", "5", "dhcp.lease-time"),
        ("nonsense", "1", "nonsense"),
    ] {
        let out = s.d.cli(&["config", "set", key, value]);
        assert!(!out.status.success(), "{key} = {value} was accepted");
        assert!(
            stderr(&out).contains(named),
            "{key} = {value}: {}",
            stderr(&out)
        );
    }
    let shown = s.d.cli_ok(&["config", "show", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let stored: Vec<&serde_json::Value> = shown["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "pool" || r["source"] == "member")
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(shown["problem"].is_null(), "{shown}");
    assert!(dns_answers(dns));

    // The remote CLI: same settings; a key that needs a restart says so.
    let token = s.token("ci");
    let url = s.url();
    let remote = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--token", token.as_str()];
        all.extend_from_slice(args);
        s.d.cli(&all)
    };
    let out = remote(&["config", "set", "http.port", "8081"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("next restart"), "{text}");
    let out = remote(&["config", "set", "tftp.max-blksize", "70000"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tftp.max-blksize"),
        "{}",
        stderr(&out)
    );
    let out = remote(&["config", "unset", "http.port"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every accepted change is in the audit log.
    let audit = s.d.cli_ok(&["audit"]);
    assert!(audit.contains("config set dns.enabled false"), "{audit}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("POST") && l.contains("/config") && l.contains("http.port=8081")),
        "{audit}"
    );
}

#[test]
fn an_operator_may_not_change_settings() {
    let (s, _) = server();
    let (ok, out, err) = cli_stdin(&s.d, &["user", "add", "op", "--role", "operator"], PASSWORD);
    assert!(ok, "user add: {out}{err}");
    // A session's headers for a change.
    let session = |(cookie, csrf): &(String, String)| {
        [
            ("Cookie".to_string(), cookie.clone()),
            ("X-CSRF-Token".to_string(), csrf.clone()),
            ("Content-Type".to_string(), "application/json".to_string()),
        ]
    };
    let op = session(&s.login_as("op"));
    let headers: Vec<(&str, &str)> = op.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let change = r#"{"changes":[{"key":"dns.enabled","value":false}]}"#;
    let r = s.request("POST", "/api/v1/config", &headers, Some(change));
    assert_eq!(r.status, 403, "an operator changed a setting: {}", r.body);
    // It may read them.
    let r = s.request("GET", "/api/v1/config", &headers, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["settings"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    // An admin's change through the API names the key it refuses.
    let admin = session(&s.login());
    let headers: Vec<(&str, &str)> = admin
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let bad = r#"{"changes":[{"key":"dns.port","value":0}]}"#;
    let r = s.request("POST", "/api/v1/config", &headers, Some(bad));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "dns.port", "{}", r.body);
    let r = s.request("POST", "/api/v1/config", &headers, Some(change));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["outcomes"][0]["takes"], "live", "{}", r.body);
}

/// The page's Settings tab (`integration/web/settings.mjs`, headless Chromium run inside the
/// server's namespace) turns DNS off and on and sees `dig` follow, and adds an interface; DHCP
/// then answers a client on it, and HTTP and NFS listen on its address, with the server never
/// restarted. A key that takes a restart shows as pending on the page until drover restarts.
/// Needs root, `node`, `chromium`, `dig`, `udhcpc` and `python3`.
#[test]
fn the_page_turns_dns_off_and_on_and_adds_an_interface_that_dhcp_http_and_nfs_serve() {
    let node = common::require_cmd("node", "nodejs");
    let chromium = common::require_cmd("chromium", "chromium");
    common::require_cmd("dig", "bind9-dnsutils");
    let udhcpc = common::require_cmd("udhcpc", "udhcpc");
    let dir = common::repo_root().join("integration/web");
    common::require_file(
        &dir.join("node_modules/playwright-core/package.json"),
        "run scripts/setup (it runs `npm ci --prefix integration/web` to install playwright-core)",
    );
    let ns = common::Netns::new("settings-web");
    ns.add_bridge("br0", "198.18.7.1/24");
    let client = common::Netns::new("settings-cli");
    ns.add_veth("setv0", &client, "setc0");
    ns.add_addr("setv0", "198.18.8.1/24");
    let mut d = common::Drover::new();
    let (ok, out, err) = cli_stdin(&d, &["admin", "passwd"], &format!("{PASSWORD}\n"));
    assert!(ok, "drover admin passwd failed: {out}{err}");
    d.serve_with(
        Some(&ns),
        "br0",
        &common::config_only(
            &["http", "dns", "dhcp"],
            "[http]\nport = 8080\n[dns]\nupstreams = []\n[nfs]\nenabled = true\n",
        ),
    );
    let pid = d.pid().unwrap();
    // A lease on setc0, or None after udhcpc gave up.
    let lease = || -> Option<String> {
        let script = d.scratch().join("udhcpc.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip\" > \"$DHCP_DUMP\"\nexit 0\n",
        )
        .unwrap();
        common::run_ok(std::process::Command::new("chmod").arg("755").arg(&script));
        let dump = d.scratch().join("lease");
        let _ = std::fs::remove_file(&dump);
        client
            .cmd(&udhcpc)
            .args([
                "-i", "setc0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-A", "1", "-s",
            ])
            .arg(&script)
            .env("DHCP_DUMP", &dump)
            .output()
            .expect("run udhcpc");
        std::fs::read_to_string(&dump)
            .ok()
            .map(|s| s.trim().to_string())
    };
    assert_eq!(lease(), None, "DHCP answered on setv0 before it was added");
    let (http_new, nfs_new) = ("198.18.8.1:8080", "198.18.8.1:2049");
    assert!(
        http_health(&ns, "198.18.7.1:8080") && nfs_null(&ns, "198.18.7.1:2049"),
        "HTTP and NFS on the first interface:\n{}",
        d.log_tail(30)
    );
    assert!(
        !http_health(&ns, http_new) && !nfs_null(&ns, nfs_new),
        "HTTP or NFS answered on setv0 before it was added"
    );

    // settings.mjs in the server's namespace; whether it passed, and what it printed.
    let page = |after_restart: bool| {
        let mut cmd = ns.cmd(&node);
        cmd.arg(dir.join("settings.mjs"))
            .current_dir(&dir)
            .env("DROVER_URL", "http://127.0.0.1:8080")
            .env("DROVER_PASSWORD", PASSWORD)
            .env("DROVER_DNS", "198.18.7.1")
            .env("DROVER_ADD_IFACE", "setv0")
            .env("CHROMIUM", &chromium);
        if after_restart {
            cmd.env("DROVER_AFTER_RESTART", "1");
        }
        let out = cmd.output().expect("run node");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), all)
    };
    let (ok, all) = page(false);
    assert!(
        ok && all.contains("settings web test: ok"),
        "the browser test failed:\n{all}\ndrover log:\n{}",
        d.log_tail(30)
    );
    let mut got = None;
    let served = common::wait_until(Duration::from_secs(20), || {
        got = lease();
        got.is_some()
    });
    assert!(
        served,
        "no DHCP lease on the added interface:\n{}",
        d.log_tail(30)
    );
    let ip: std::net::Ipv4Addr = got.unwrap().parse().unwrap();
    assert_eq!(ip.octets()[..3], [198, 18, 8], "{ip}");
    // The boot path and NFS roots follow the added interface too.
    let up = common::wait_until(Duration::from_secs(10), || {
        http_health(&ns, http_new) && nfs_null(&ns, nfs_new)
    });
    assert!(
        up,
        "no HTTP or NFS on the added interface:\n{}",
        d.log_tail(30)
    );
    assert_eq!(d.pid(), Some(pid));
    assert_eq!(d.log().matches("drover: ready").count(), 1);

    // The page said nfs.grace-secs waits for a restart; after one it no longer does.
    d.stop();
    let config = d.scratch().join("drover.toml");
    let config = config.to_str().expect("UTF-8 path").to_string();
    d.start(
        Some(&ns),
        &["serve", "--interface", "br0", "--config", &config],
    );
    let restarted = common::wait_until(Duration::from_secs(20), || {
        d.log().matches("drover: ready").count() == 2
    });
    assert!(
        restarted,
        "drover did not restart:
{}",
        d.log_tail(30)
    );
    let (ok, all) = page(true);
    assert!(
        ok && all.contains("settings web test: ok (after the restart)"),
        "the browser test after the restart failed:\n{all}\ndrover log:\n{}",
        d.log_tail(30)
    );
}
