//! Secure access through the real binary: HTTPS with the self-signed certificate (curl
//! trusting only that certificate, the CLI pinning its fingerprint or trusting it on first
//! use, a wrong fingerprint refused) and `[http] api-https-only`; roles enforced by the API
//! (an operator cannot add users or change settings, a viewer cannot power nodes) and reflected
//! by the page (headless Chromium).

mod common;

use common::api::{cli_stdin, free_port, ApiServer, PASSWORD};
use common::require_cmd;
use std::process::{Command, Output};

/// A server with HTTPS on a free port; `extra` goes into `[http]`.
fn https_server(extra: &str) -> (ApiServer, u16) {
    let https = free_port();
    let s = ApiServer::start_with(&format!("https-port = {https}\n{extra}"));
    (s, https)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `drover --server URL --token T ARGS` with `HOME` set to `home` (its known-servers file).
fn remote(s: &ApiServer, home: &std::path::Path, url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(s.d.bin())
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .args(["--server", url, "--token", token])
        .args(args)
        .output()
        .expect("run drover")
}

#[test]
fn https_serves_the_api_with_the_certificate_drover_shows() {
    let curl = require_cmd("curl", "curl");
    let openssl = require_cmd("openssl", "openssl");
    let (s, https) = https_server("");
    let shown = s.d.cli_ok(&["tls", "show"]);
    let fp = shown
        .lines()
        .find_map(|l| l.strip_prefix("sha256"))
        .map(str::trim)
        .expect("a fingerprint line")
        .to_string();
    assert!(s.d.log().contains(&fp), "serve logs the fingerprint");
    let cert = s.d.state_dir().join("tls/cert.pem");
    // openssl computes the same fingerprint from the file.
    let out = Command::new(&openssl)
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(text(&out).trim().ends_with(&fp), "{}", text(&out));
    // curl trusting that certificate alone (no system CAs, name checked against its SAN).
    let token = s.token("ci");
    let out = Command::new(&curl)
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(&cert)
        .args(["--capath", "/nonexistent", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("https://127.0.0.1:{https}/api/v1/health"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", text(&out));
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["tls_fingerprint"].as_str(), Some(fp.as_str()));
    // Without the certificate curl refuses it: it is self-signed.
    let out = Command::new(&curl)
        .args(["-sS", "--capath", "/nonexistent", "--cacert", "/dev/null"])
        .arg(format!("https://127.0.0.1:{https}/api/v1/health"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl trusted an unknown certificate");
    // A login over HTTPS gets a Secure session cookie (never sent over plain HTTP); one over
    // plain HTTP cannot have it (the browser would drop the cookie).
    let login = format!(r#"{{"user":"admin","password":"{PASSWORD}"}}"#);
    let out = Command::new(&curl)
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(&cert)
        .args([
            "--capath",
            "/nonexistent",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["--data", &login])
        .arg(format!("https://127.0.0.1:{https}/api/v1/login"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or("");
    assert!(cookie.contains("; secure"), "{head}");
    let r = s.request("POST", "/api/v1/login", &[JSON], Some(&login));
    let cookie = r.header("set-cookie").unwrap().to_lowercase();
    assert!(!cookie.contains("secure"), "{cookie}");
}

#[test]
fn the_cli_pins_the_fingerprint_and_refuses_another() {
    let (s, https) = https_server("");
    let token = s.token("ci");
    let home = s.d.scratch().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let url = format!("https://127.0.0.1:{https}");
    let fp =
        s.d.cli_ok(&["tls", "show"])
            .lines()
            .find_map(|l| l.strip_prefix("sha256").map(|f| f.trim().to_string()))
            .unwrap();
    s.d.cli_ok(&["node", "add", "n1", "--mac", "52:54:00:00:00:01"]);
    // Pinned with --fingerprint.
    let out = remote(
        &s,
        &home,
        &url,
        &token,
        &["--fingerprint", &fp, "node", "list"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("n1"), "{}", text(&out));
    // A wrong fingerprint is refused, naming both.
    let wrong = fp.replace(&fp[..2], if &fp[..2] == "00" { "11" } else { "00" });
    let out = remote(
        &s,
        &home,
        &url,
        &token,
        &["--fingerprint", &wrong, "node", "list"],
    );
    assert!(!out.status.success(), "a wrong fingerprint was accepted");
    assert!(text(&out).contains("not the pinned"), "{}", text(&out));
    assert!(text(&out).contains(&fp), "{}", text(&out));
    // Trust on first use: kept in the user's file, then used.
    let out = remote(&s, &home, &url, &token, &["node", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("trusting"), "{}", text(&out));
    let known = home.join(".config/drover/known-servers");
    let kept = std::fs::read_to_string(&known).unwrap();
    assert!(kept.contains(&format!("{url} {fp}")), "{kept}");
    let out = remote(&s, &home, &url, &token, &["node", "list"]);
    assert!(
        out.status.success() && !text(&out).contains("trusting"),
        "{}",
        text(&out)
    );
    // A server whose certificate is not the kept one is refused.
    std::fs::write(&known, format!("{url} {wrong}\n")).unwrap();
    let out = remote(&s, &home, &url, &token, &["node", "list"]);
    assert!(!out.status.success(), "a changed certificate was accepted");
    assert!(text(&out).contains("known-servers"), "{}", text(&out));
}

#[test]
fn api_https_only_refuses_plain_http_but_keeps_the_boot_path() {
    let curl = require_cmd("curl", "curl");
    let (s, https) = https_server("api-https-only = true\n");
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let r = s.request("GET", "/api/v1/nodes", &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains(&format!("HTTPS only (port {https})")),
        "{}",
        r.body
    );
    assert_eq!(s.request("GET", "/", &[], None).status, 403, "the page");
    let r = s.request("GET", "/boot/52:54:00:00:00:01", &[], None);
    assert_eq!(r.status, 200, "the boot path: {}", r.body);
    assert!(r.body.starts_with("#!ipxe"), "{}", r.body);
    let out = Command::new(&curl)
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(s.d.state_dir().join("tls/cert.pem"))
        .args(["-H", &format!("Authorization: {bearer}")])
        .arg(format!("https://127.0.0.1:{https}/api/v1/nodes"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl over HTTPS: {}", text(&out));
}

/// Logs `user` in; returns (cookie, CSRF token).
fn login_as(s: &ApiServer, user: &str) -> (String, String) {
    let r = s.request(
        "POST",
        "/api/v1/login",
        &[JSON],
        Some(&format!(r#"{{"user":"{user}","password":"{PASSWORD}"}}"#)),
    );
    assert_eq!(r.status, 200, "login of {user}: {}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    (cookie, r.json()["csrf"].as_str().unwrap().to_string())
}

/// `drover user add NAME --role ROLE` with the test password.
fn add_user(s: &ApiServer, name: &str, role: &str) {
    let (ok, out, err) = cli_stdin(&s.d, &["user", "add", name, "--role", role], PASSWORD);
    assert!(ok, "user add {name}: {out}{err}");
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn operators_and_viewers_are_refused_what_their_role_does_not_allow() {
    let s = ApiServer::start();
    add_user(&s, "op", "operator");
    add_user(&s, "view", "viewer");
    let listed = s.d.cli_ok(&["user", "list"]);
    for (user, role) in [("admin", "admin"), ("op", "operator"), ("view", "viewer")] {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().eq([user, role])),
            "{listed}"
        );
    }
    let send = |who: &(String, String), method: &str, path: &str, body: &str| {
        let headers = [
            ("Cookie", who.0.as_str()),
            ("X-CSRF-Token", who.1.as_str()),
            JSON,
        ];
        s.request(method, path, &headers, Some(body))
    };
    let op = login_as(&s, "op");
    let user = r#"{"name":"eve","password":"long enough","role":"admin"}"#;
    let r = send(&op, "POST", "/api/v1/users", user);
    assert_eq!(r.status, 403, "an operator added a user: {}", r.body);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("role operator") && msg.contains("needs admin"),
        "{msg}"
    );
    let r = send(&op, "PUT", "/api/v1/settings/motd", r#"{"value":"hi"}"#);
    assert_eq!(r.status, 403, "an operator changed a setting: {}", r.body);
    let r = send(&op, "PATCH", "/api/v1/users/op", r#"{"role":"admin"}"#);
    assert_eq!(r.status, 403, "an operator made itself admin: {}", r.body);
    // Power is the operator's: refused for its input, not its role.
    let power = r#"{"action":"status","targets":["nobody"]}"#;
    let r = send(&op, "POST", "/api/v1/power", power);
    assert_ne!(r.status, 403, "{}", r.body);
    assert_eq!(send(&op, "GET", "/api/v1/nodes", "").status, 200);

    let view = login_as(&s, "view");
    let r = send(&view, "POST", "/api/v1/power", power);
    assert_eq!(r.status, 403, "a viewer powered nodes: {}", r.body);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("role viewer") && msg.contains("needs operator"),
        "{msg}"
    );
    let node = r#"{"name":"n1","mac":"52:54:00:00:00:01"}"#;
    assert_eq!(send(&view, "POST", "/api/v1/nodes", node).status, 403);
    assert_eq!(send(&view, "GET", "/api/v1/nodes", "").status, 200);
    let r = send(&view, "GET", "/api/v1/session", "");
    assert_eq!(r.json()["role"], "viewer", "{}", r.body);

    // An admin changes a role through the API; it counts at the operator's next request.
    let admin = login_as(&s, "admin");
    let r = send(&admin, "PATCH", "/api/v1/users/op", r#"{"role":"viewer"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(send(&op, "POST", "/api/v1/power", power).status, 403);
    // The last admin stays one.
    let r = send(
        &admin,
        "PATCH",
        "/api/v1/users/admin",
        r#"{"role":"viewer"}"#,
    );
    assert_eq!(r.status, 409, "{}", r.body);
    // A viewer's token reads but does not change.
    let out =
        s.d.cli_ok(&["token", "create", "--name", "ro", "--role", "viewer"]);
    let bearer = format!("Bearer {}", out.split_whitespace().last().unwrap());
    let auth = [("Authorization", bearer.as_str()), JSON];
    assert_eq!(s.request("GET", "/api/v1/nodes", &auth, None).status, 200);
    assert_eq!(
        s.request("POST", "/api/v1/nodes", &auth, Some(node)).status,
        403
    );
}

#[test]
fn the_page_offers_each_role_what_it_may_do() {
    let node = require_cmd("node", "nodejs");
    let chromium = require_cmd("chromium", "chromium");
    let dir = common::repo_root().join("integration/web");
    common::require_file(
        &dir.join("node_modules/playwright-core/package.json"),
        "run scripts/setup (it runs `npm ci --prefix integration/web` to install playwright-core)",
    );
    let s = ApiServer::start();
    add_user(&s, "op", "operator");
    add_user(&s, "view", "viewer");
    s.d.cli_ok(&["node", "add", "n1", "--mac", "52:54:00:00:00:01"]);
    let out = Command::new(node)
        .arg(dir.join("roles.mjs"))
        .current_dir(&dir)
        .env("DROVER_URL", s.url())
        .env("DROVER_PASSWORD", PASSWORD)
        .env("CHROMIUM", chromium)
        .output()
        .expect("run node");
    let all = text(&out);
    assert!(out.status.success(), "the browser test failed:\n{all}");
    assert!(all.contains("roles test: ok"), "{all}");
}

#[test]
fn every_change_is_audited_with_who_when_and_where() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str()), JSON];
    s.d.cli_ok(&["node", "add", "n1", "--mac", "52:54:00:00:00:01"]);
    s.d.cli_ok(&["node", "list"]);
    let node = r#"{"name":"n2","mac":"52:54:00:00:00:02"}"#;
    let r = s.request("POST", "/api/v1/nodes", &auth, Some(node));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.request("GET", "/api/v1/nodes", &auth, None).status, 200);
    // A refused change is not one.
    let r = s.request("POST", "/api/v1/nodes", &auth, Some(node));
    assert_eq!(r.status, 409, "{}", r.body);
    let entries: serde_json::Value =
        serde_json::from_str(&s.d.cli_ok(&["audit", "--json"])).unwrap();
    let entries = entries.as_array().unwrap();
    let whats: Vec<&str> = entries
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    // `admin passwd`, `token create`, `node add` (local), the API's POST; no reads, no
    // refusal.
    assert_eq!(entries.len(), 4, "{whats:?}");
    assert!(whats[0].starts_with("drover --state-dir"), "{whats:?}");
    assert!(whats[0].ends_with("admin passwd"), "{whats:?}");
    assert!(whats[1].ends_with("token create --name ci"), "{whats:?}");
    assert!(
        whats[2].ends_with("node add n1 --mac 52:54:00:00:00:01"),
        "{whats:?}"
    );
    assert_eq!(entries[2]["from"], "local");
    assert!(entries[2]["who"].as_str().unwrap().starts_with("unix "));
    assert_eq!(whats[3], "POST /api/v1/nodes");
    assert_eq!(entries[3]["who"], "token ci");
    assert_eq!(entries[3]["from"], "127.0.0.1");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = entries[3]["at"].as_u64().unwrap();
    assert!(at <= now && at + 600 > now, "at {at}, now {now}");
    // The same through --server, and --since filters.
    let out = Command::new(s.d.bin())
        .args(["--server", &s.url(), "--token", &token, "audit"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    assert!(
        table.contains("token ci") && table.contains("POST /api/v1/nodes"),
        "{table}"
    );
    let later = (now + 3600).to_string();
    let out = s.d.cli_ok(&["audit", "--since", &later, "--json"]);
    assert_eq!(out.trim(), "[]");
    assert!(!s.d.cli(&["audit", "--since", "yesterday"]).status.success());
}
