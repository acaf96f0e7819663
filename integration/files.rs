//! File sets through the real binary: `drover files add|assign|unassign|rm|show` locally and
//! through the API (`--server`), refusals at `files add` time (unknown template field, a file
//! over the size limit, a relative path), and the boot path's `GET /boot/{mac}/files`: refused
//! to an address that holds no lease of the MAC, and from the node's own leased address the
//! node's rendered files (node beats group beats image on the same path) with its stable ssh
//! host key. `files sync` to a running sshd is in `service.rs` (it needs root); a VM in
//! `qemu-tests/`.
//!
//! Needs loopback and curl (`--interface` picks the leased source address on `lo`).

mod common;

use common::api::ApiServer;
use common::require_cmd;
use drover::files::core::Delivered;
use drover::store::model::{Lease, LeaseState, RelayInfo};
use drover::store::{Store, StoreError};
use std::process::Command;
use std::time::Duration;

const MAC1: &str = "52:54:00:73:00:01";
const MAC2: &str = "52:54:00:73:00:02";

fn lease(ip: &str, mac: &str) -> Lease {
    let now = drover::clock::unix_secs();
    Lease {
        ip: ip.parse().unwrap(),
        mac: mac.parse().unwrap(),
        client_id: None,
        hostname: None,
        state: LeaseState::Bound,
        start: now - 10,
        expires: now + 3_600,
        network: "lo".into(),
        relay: RelayInfo {
            giaddr: None,
            agent_info: None,
        },
    }
}

/// `GET /boot/{mac}/files` from source address `from`: (HTTP status, body).
fn boot_files(api: &ApiServer, mac: &str, from: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--interface", from])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}/boot/{mac}/files", api.url()))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl printed a status");
    (status.trim().parse().expect("an HTTP status"), body.into())
}

fn by_path<'a>(files: &'a [Delivered], path: &str) -> &'a Delivered {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not delivered: {files:?}"))
}

fn text(f: &Delivered) -> String {
    String::from_utf8(f.bytes().expect("base64")).expect("UTF-8")
}

#[test]
fn file_sets_through_cli_api_and_boot_path() {
    require_cmd("curl", "curl");
    let api = ApiServer::start();
    let d = &api.d;
    let token = api.token("files");
    let dir = d.scratch().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let put = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let kernel = put("vmlinuz", "not a kernel");
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // The server made network "lo" for its interface's subnet; a domain for the templates.
    let r = api.request(
        "PATCH",
        "/api/v1/networks/lo",
        &headers,
        Some(r#"{"domain":"lab.test"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for line in [
        format!("image add img --kernel {kernel}"),
        "group add rack --image img".into(),
        format!("node add n1 --mac {MAC1} --ip 127.0.73.11 --group rack"),
        format!("node add n2 --mac {MAC2} --ip 127.0.73.12 --group rack"),
    ] {
        d.cli_ok(&line.split_whitespace().collect::<Vec<_>>());
    }

    // Refused at add time, naming the problem.
    let refused = |args: &[&str], want: &str| {
        let out = d.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    };
    let bad = put("bad.t", "host {{node}}\nuser {{nodename}}\n");
    refused(
        &[
            "files",
            "add",
            "base",
            "--path",
            "/etc/x",
            "--template",
            &bad,
        ],
        "line 2: unknown field {{nodename}}",
    );
    let big = put("big", &"x".repeat(64 * 1024 + 1));
    refused(
        &["files", "add", "base", "--path", "/etc/x", "--from", &big],
        "over the limit of 65536 bytes",
    );
    let motd = put(
        "motd.t",
        "node {{node}} at {{ip}} in {{domain}}, group {{group}}\n",
    );
    refused(
        &[
            "files",
            "add",
            "base",
            "--path",
            "etc/motd",
            "--template",
            &motd,
        ],
        "must be absolute",
    );
    refused(&["files", "show", "base"], "unknown file set \"base\"");

    let passwd = put(
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n",
    );
    let own = put("own", "n2's own motd\n");
    let motd_path = "/etc/motd";
    for line in [
        format!("files add base --path {motd_path} --template {motd}"),
        format!("files add users --path /etc/passwd --from {passwd}"),
        format!("files add mine --path {motd_path} --from {own} --mode 0600 --owner 0:4"),
        "files assign base --image img".into(),
        "files assign users --group rack".into(),
        "files assign mine --node n2".into(),
    ] {
        d.cli_ok(&line.split_whitespace().collect::<Vec<_>>());
    }
    refused(
        &["files", "assign", "users", "--node", "nosuch"],
        "unknown node \"nosuch\"",
    );
    refused(
        &["files", "unassign", "users", "--node", "n1"],
        "not assigned to node n1",
    );

    // Through the API: the same operations, refusals with the field named.
    let url = api.url();
    let elsewhere = common::Drover::new();
    let remote = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--token", token.as_str()];
        all.extend_from_slice(args);
        let out = elsewhere.cli(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let show = d.cli_ok(&["files", "show", "mine"]);
    assert_eq!(remote(&["files", "show", "mine"]), show);
    let row = |out: &str, first: &str| -> Vec<String> {
        let line = out.lines().find(|l| l.starts_with(first));
        let line = line.unwrap_or_else(|| panic!("no {first} row in\n{out}"));
        line.split_whitespace().map(String::from).collect()
    };
    assert!(show.contains("assigned: node n2"), "{show}");
    assert_eq!(
        row(&show, "/etc/motd"),
        ["/etc/motd", "0600", "0:4", "file", "14"]
    );
    let list = remote(&["files", "list"]);
    assert_eq!(d.cli_ok(&["files", "list"]), list);
    assert_eq!(row(&list, "users"), ["users", "1", "group", "rack"]);
    let r = api.request(
        "POST",
        "/api/v1/files/api",
        &headers,
        Some(r#"{"path":"/etc/y","content":{"template":"{{secret}}"}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains(r#""field":"content""#), "{}", r.body);
    let r = api.request(
        "POST",
        "/api/v1/files/api",
        &headers,
        Some(r#"{"path":"/etc/y","mode":384,"content":{"template":"{{mac}}"}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    remote(&["files", "assign", "api", "--node", "n1"]);
    assert_eq!(
        row(&d.cli_ok(&["files", "show", "api"]), "/etc/y"),
        ["/etc/y", "0600", "0:0", "template", "7"]
    );

    // The boot path: nothing for an address without the MAC's lease.
    let (status, body) = boot_files(&api, MAC1, "127.0.0.1");
    assert_eq!(status, 403, "{body}");
    let store = Store::open(d.state_dir()).expect("open the server's store");
    store
        .write::<_, StoreError>(|w| {
            w.put(&lease("127.0.73.11", MAC1))?;
            w.put(&lease("127.0.73.12", MAC2))
        })
        .expect("write the nodes' leases");
    let (status, body) = boot_files(&api, MAC1, "127.0.73.12");
    assert_eq!(status, 403, "n2's address asking for n1's files: {body}");

    // From its own address, with the pool's node key made (`exec --show-key`): n1 gets its
    // group's passwd, its image's motd filled in, the set only it has, and its host key.
    d.cli_ok(&["exec", "--show-key"]);
    let fetch = |mac: &str, from: &str| {
        let mut got = (0, String::new());
        // The boot path reads leases from the store; give a slow disk a moment.
        let ok = common::wait_until(Duration::from_secs(10), || {
            got = boot_files(&api, mac, from);
            got.0 == 200
        });
        assert!(ok, "{} {}", got.0, got.1);
        serde_json::from_str::<Vec<Delivered>>(&got.1).expect("a JSON file list")
    };
    let n1 = fetch(MAC1, "127.0.73.11");
    assert_eq!(
        text(by_path(&n1, motd_path)),
        "node n1 at 127.0.73.11 in lab.test, group rack\n"
    );
    assert!(text(by_path(&n1, "/etc/passwd")).contains("\nalice:x:1000:"));
    assert_eq!(text(by_path(&n1, "/etc/y")), MAC1);
    assert_eq!(by_path(&n1, "/etc/y").mode, 0o600);
    // (heed opens an environment once per process: the store opened above.)
    let secret = store.read::<_, StoreError>(drover::exec::key::secret);
    let secret = secret.expect("read the node key").expect("a node key");
    let host = drover::service::hostkey::derive(&secret, "n1");
    let key = by_path(&n1, "/etc/ssh/ssh_host_ed25519_key");
    assert_eq!((text(key), key.mode), (host.private.clone(), 0o600));
    assert_eq!(
        text(by_path(&n1, "/etc/ssh/ssh_host_ed25519_key.pub")),
        format!("{}\n", host.public)
    );
    // The same files (and host key) at the next boot.
    assert_eq!(fetch(MAC1, "127.0.73.11"), n1);

    // n2: its own motd wins over its image's; the group's passwd; no /etc/y.
    let n2 = fetch(MAC2, "127.0.73.12");
    let m = by_path(&n2, motd_path);
    assert_eq!(
        (text(m).as_str(), m.mode, m.gid),
        ("n2's own motd\n", 0o600, 4)
    );
    assert!(n2.iter().all(|f| f.path != "/etc/y"));
    assert_ne!(
        text(by_path(&n2, "/etc/ssh/ssh_host_ed25519_key.pub")),
        text(by_path(&n1, "/etc/ssh/ssh_host_ed25519_key.pub"))
    );

    // Taking things back: n2 falls back to the image's motd; a removed file goes.
    remote(&["files", "unassign", "mine", "--node", "n2"]);
    d.cli_ok(&["files", "rm", "users", "--path", "/etc/passwd"]);
    remote(&["files", "rm", "api"]);
    let n2 = fetch(MAC2, "127.0.73.12");
    assert_eq!(
        text(by_path(&n2, motd_path)),
        "node n2 at 127.0.73.12 in lab.test, group rack\n"
    );
    assert!(n2.iter().all(|f| f.path != "/etc/passwd"));
    refused(&["files", "show", "api"], "unknown file set");
}
