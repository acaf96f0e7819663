//! The HTTP API through the real binary: logins, tokens and CSRF refused where they must be,
//! every endpoint's error on bad input naming the field, the OpenAPI document true to what is
//! served, failed logins limited, and the event stream.

mod common;

use common::api::{cli_stdin, ApiServer, Reply, PASSWORD};
use std::collections::BTreeSet;
use std::time::Duration;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A bad request: method, path, body, expected status, expected `field`.
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    Option<&'static str>,
);

/// Every (method, path) of the OpenAPI document, with `{name}` left in.
fn documented() -> Vec<(String, String, bool)> {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("assets/openapi.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            out.push((method.to_uppercase(), path.clone(), public));
        }
    }
    out
}

fn send(
    s: &ApiServer,
    method: &str,
    path: &str,
    auth: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut headers = auth.to_vec();
    if body.is_some() {
        headers.push(JSON);
    }
    s.request(method, path, &headers, body)
}

#[test]
fn unauthenticated_and_wrong_credentials_are_refused_everywhere_but_the_boot_path() {
    let s = ApiServer::start();
    let ops = documented();
    assert!(
        ops.len() > 25,
        "the document lists {} operations",
        ops.len()
    );
    let bad_auth: &[&[(&str, &str)]] = &[
        &[],
        &[(
            "Authorization",
            "Bearer drv_0000000000000000000000000000000000000000000000000000000000000000",
        )],
        &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        &[("Cookie", "drover_session=forged")],
    ];
    for (method, path, public) in &ops {
        if *public {
            continue;
        }
        let path = path.replace("{name}", "n1");
        for auth in bad_auth {
            let r = send(&s, method, &path, auth, Some("{}"));
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.body);
            assert!(r.json()["error"].is_string(), "{method} {path}: JSON error");
        }
    }
    // The metrics-free boot path and the page's static files stay open.
    for path in [
        "/health",
        "/boot/52:54:00:00:00:01",
        "/",
        "/ui/app.js",
        "/ui/style.css",
    ] {
        let r = s.request("GET", path, &[], None);
        assert_eq!(r.status, 200, "GET {path}");
    }
    let page = s.request("GET", "/", &[], None);
    assert!(page
        .header("content-security-policy")
        .is_some_and(|v| v.contains("frame-ancestors 'none'")));
    // A revoked token stops working.
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let r = s.request("GET", "/api/v1/nodes", &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    // The API's health names the retried faults, which the page shows when above 0.
    let health = s
        .request("GET", "/api/v1/health", &[("Authorization", &bearer)], None)
        .json();
    for fault in [
        "view_refresh_errors",
        "ra_receive_errors",
        "feed_compaction_errors",
    ] {
        assert_eq!(health["faults"][fault], 0, "{fault}: {health}");
    }
    s.d.cli_ok(&["token", "rm", "ci"]);
    let r = s.request("GET", "/api/v1/nodes", &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 401);
}

#[test]
fn cookie_sessions_need_the_csrf_header_to_change_anything() {
    let s = ApiServer::start();
    let (cookie, csrf) = s.login();
    let c = ("Cookie", cookie.as_str());
    let node = r#"{"name":"n1","mac":"52:54:00:00:00:01"}"#;
    // Reads need no CSRF header.
    assert_eq!(send(&s, "GET", "/api/v1/nodes", &[c], None).status, 200);
    // A cross-site form post: no header, and a form content type.
    let r = s.request(
        "POST",
        "/api/v1/nodes",
        &[c, ("Content-Type", "application/x-www-form-urlencoded")],
        Some("name=n1&mac=52:54:00:00:00:01"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(&s, "POST", "/api/v1/nodes", &[c], Some(node));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("X-CSRF-Token"));
    let r = send(
        &s,
        "POST",
        "/api/v1/nodes",
        &[c, ("X-CSRF-Token", "0123")],
        Some(node),
    );
    assert_eq!(r.status, 403);
    let r = send(&s, "DELETE", "/api/v1/nodes/n1", &[c], None);
    assert_eq!(r.status, 403);
    let r = send(&s, "POST", "/api/v1/logout", &[c], None);
    assert_eq!(r.status, 403, "logout is a change too");
    assert!(
        !s.d.cli_ok(&["node", "list"]).contains("n1"),
        "nothing may have changed"
    );
    // With the header it works, and the change is visible to the CLI.
    let x = ("X-CSRF-Token", csrf.as_str());
    let r = send(&s, "POST", "/api/v1/nodes", &[c, x], Some(node));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(s.d.cli_ok(&["node", "list"]).contains("n1"));
    // A form-encoded login (what a cross-site form could send) is refused.
    let r = s.request(
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!("user=admin&password={PASSWORD}")),
    );
    assert_eq!(r.status, 415);
    // The cookie is HttpOnly and SameSite=Strict; logout ends the session.
    let login = s.request(
        "POST",
        "/api/v1/login",
        &[JSON],
        Some(&format!(r#"{{"user":"admin","password":"{PASSWORD}"}}"#)),
    );
    let set = login.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert_eq!(
        send(&s, "POST", "/api/v1/logout", &[c, x], None).status,
        204
    );
    assert_eq!(send(&s, "GET", "/api/v1/nodes", &[c], None).status, 401);
}

#[test]
fn failed_logins_are_rate_limited_and_passwd_changes_the_password() {
    let s = ApiServer::start();
    let login = |user: &str, pw: &str| {
        s.request(
            "POST",
            "/api/v1/login",
            &[JSON],
            Some(&format!(r#"{{"user":"{user}","password":"{pw}"}}"#)),
        )
    };
    assert_eq!(login("admin", PASSWORD).status, 200);
    for i in 0..5 {
        let r = login("admin", "wrong password");
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
        assert_eq!(r.json()["error"], "wrong user or password");
    }
    let r = login("nobody", "wrong password");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let r = login("admin", PASSWORD);
    assert_eq!(r.status, 429, "even the right password waits while limited");

    // `drover admin passwd` sets a new password (at least 8 characters).
    let (ok, _, err) = cli_stdin(&s.d, &["admin", "passwd"], "short\n");
    assert!(!ok && err.contains("too short"), "{err}");
    let (ok, out, err) = cli_stdin(&s.d, &["admin", "passwd", "ops"], "another password\n");
    assert!(ok, "{out}{err}");
    // Another client address is not limited: log in from 127.0.0.2.
    let r = post_json_from(
        &s,
        "127.0.0.2",
        "/api/v1/login",
        r#"{"user":"ops","password":"another password"}"#,
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn every_endpoint_names_the_bad_field() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let ok = |method: &str, path: &str, body: Option<&str>| {
        let r = send(&s, method, path, &t, body);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        r
    };
    ok(
        "POST",
        "/api/v1/networks",
        Some(r#"{"name":"lab","subnet":"198.18.0.0/24","range":"198.18.0.100-198.18.0.199"}"#),
    );
    ok(
        "POST",
        "/api/v1/nodes",
        Some(r#"{"name":"n1","mac":"52:54:00:00:00:01","ip":"198.18.0.11"}"#),
    );
    ok(
        "PUT",
        "/api/v1/settings/motd",
        Some(r#"{"value":{"text":"hello"}}"#),
    );
    let cases: &[Case] = &[
        // nodes
        ("GET", "/api/v1/nodes?limit=x", None, 400, Some("limit")),
        ("GET", "/api/v1/nodes?limit=5000", None, 400, Some("limit")),
        ("GET", "/api/v1/nodes?offset=-1", None, 400, Some("offset")),
        ("GET", "/api/v1/nodes?colour=red", None, 400, Some("colour")),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"mac":"52:54:00:00:00:02"}"#),
            400,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2"}"#),
            400,
            Some("mac"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:0z"}"#),
            400,
            Some("mac"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n 2","mac":"52:54:00:00:00:02"}"#),
            400,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:02","ip":"300.1.1.1"}"#),
            400,
            Some("ip"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:02","ip":"10.9.9.9"}"#),
            400,
            Some("ip"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:01"}"#),
            409,
            Some("mac"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:02","ip":"198.18.0.11"}"#),
            409,
            Some("ip"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n1","mac":"52:54:00:00:00:02"}"#),
            409,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:02","image":"nope"}"#),
            400,
            Some("image"),
        ),
        (
            "POST",
            "/api/v1/nodes",
            Some(r#"{"name":"n2","mac":"52:54:00:00:00:02","colour":"red"}"#),
            400,
            Some("colour"),
        ),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"n2","#), 400, None),
        ("POST", "/api/v1/nodes", Some(r#"["n2"]"#), 400, None),
        (
            "POST",
            "/api/v1/nodes/import",
            Some(r#"{"csv":"name,mac\nx,52:54:00:00:00:zz\n"}"#),
            400,
            Some("csv"),
        ),
        (
            "POST",
            "/api/v1/nodes/import",
            Some(r#"{"text":""}"#),
            400,
            Some("csv"),
        ),
        ("GET", "/api/v1/nodes/ghost", None, 404, Some("name")),
        ("GET", "/api/v1/nodes/ghost/events", None, 404, Some("name")),
        (
            "PATCH",
            "/api/v1/nodes/ghost",
            Some(r#"{"group":"g"}"#),
            404,
            Some("name"),
        ),
        (
            "PATCH",
            "/api/v1/nodes/n1",
            Some(r#"{"ip":"1.2.3"}"#),
            400,
            Some("ip"),
        ),
        (
            "PATCH",
            "/api/v1/nodes/n1",
            Some(r#"{"mac":7}"#),
            400,
            Some("mac"),
        ),
        (
            "PATCH",
            "/api/v1/nodes/n1",
            Some(r#"{"group":"a b"}"#),
            400,
            Some("name"),
        ),
        ("DELETE", "/api/v1/nodes/ghost", None, 404, Some("name")),
        // groups
        ("GET", "/api/v1/groups?limit=0", None, 400, Some("limit")),
        ("GET", "/api/v1/groups/ghost", None, 404, Some("name")),
        (
            "PUT",
            "/api/v1/groups/g1",
            Some(r#"{"image":"nope"}"#),
            400,
            Some("image"),
        ),
        (
            "PUT",
            "/api/v1/groups/g%201",
            Some(r#"{}"#),
            400,
            Some("name"),
        ),
        (
            "PUT",
            "/api/v1/groups/g1",
            Some(r#"{"images":"x"}"#),
            400,
            Some("images"),
        ),
        ("DELETE", "/api/v1/groups/ghost", None, 404, Some("name")),
        // networks
        ("GET", "/api/v1/networks?q=x", None, 400, Some("q")),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"x","subnet":"10.0.0.1/8"}"#),
            400,
            Some("subnet"),
        ),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"x","subnet":"10.0.0.0/8","range":"10.0.0.9"}"#),
            400,
            Some("range"),
        ),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"x","subnet":"10.0.0.0/8","range":"10.0.0.9-10.0.0.1"}"#),
            400,
            Some("range"),
        ),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"x","subnet":"10.0.0.0/8","gateway":"11.0.0.1"}"#),
            400,
            Some("gateway"),
        ),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"x","subnet":"10.0.0.0/8","domain":"a..b"}"#),
            400,
            Some("domain"),
        ),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"x","subnet":"198.18.0.0/16"}"#),
            409,
            Some("subnet"),
        ),
        (
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"lab","subnet":"10.0.0.0/8"}"#),
            409,
            Some("name"),
        ),
        ("GET", "/api/v1/networks/ghost", None, 404, Some("name")),
        (
            "PATCH",
            "/api/v1/networks/lab",
            Some(r#"{"gateway":"10.0.0.1"}"#),
            400,
            Some("gateway"),
        ),
        (
            "PATCH",
            "/api/v1/networks/ghost",
            Some(r#"{}"#),
            404,
            Some("name"),
        ),
        ("DELETE", "/api/v1/networks/ghost", None, 404, Some("name")),
        // images
        ("GET", "/api/v1/images?offset=x", None, 400, Some("offset")),
        ("GET", "/api/v1/images/ghost", None, 404, Some("name")),
        (
            "PATCH",
            "/api/v1/images/ghost",
            Some(r#"{"cmdline":"quiet"}"#),
            404,
            Some("name"),
        ),
        (
            "PATCH",
            "/api/v1/images/ghost",
            Some(r#"{"cmdline":5}"#),
            400,
            Some("cmdline"),
        ),
        ("DELETE", "/api/v1/images/ghost", None, 404, Some("name")),
        (
            "GET",
            "/api/v1/images/ghost/history",
            None,
            404,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/images/ghost/rollback",
            Some(r#"{"version":"one"}"#),
            400,
            Some("version"),
        ),
        // leases
        (
            "GET",
            "/api/v1/leases?state=happy",
            None,
            400,
            Some("state"),
        ),
        ("GET", "/api/v1/leases?mac=zz", None, 400, Some("mac")),
        (
            "GET",
            "/api/v1/leases?hostname=a",
            None,
            400,
            Some("hostname"),
        ),
        // power (no BMC is needed to refuse bad input)
        (
            "POST",
            "/api/v1/power",
            Some(r#"{"targets":["n1"]}"#),
            400,
            Some("action"),
        ),
        (
            "POST",
            "/api/v1/power",
            Some(r#"{"action":"on"}"#),
            400,
            Some("targets"),
        ),
        (
            "POST",
            "/api/v1/power",
            Some(r#"{"action":"jump","targets":["n1"]}"#),
            400,
            Some("action"),
        ),
        (
            "POST",
            "/api/v1/power",
            Some(r#"{"action":"on","device":"pxe","targets":["n1"]}"#),
            400,
            Some("device"),
        ),
        (
            "POST",
            "/api/v1/power",
            Some(r#"{"action":"bootdev","device":"floppy","targets":["n1"]}"#),
            400,
            Some("device"),
        ),
        (
            "POST",
            "/api/v1/power",
            Some(r#"{"action":"on","targets":["ghost"]}"#),
            400,
            Some("targets"),
        ),
        // settings
        ("GET", "/api/v1/settings?limit=-3", None, 400, Some("limit")),
        (
            "GET",
            "/api/v1/config?colour=red",
            None,
            400,
            Some("colour"),
        ),
        (
            "POST",
            "/api/v1/config",
            Some(r#"{"changes":[{"key":"dns.port","value":0}]}"#),
            400,
            Some("dns.port"),
        ),
        ("GET", "/api/v1/settings/ghost", None, 404, Some("name")),
        (
            "PUT",
            "/api/v1/settings/motd",
            Some(r#"{}"#),
            400,
            Some("value"),
        ),
        (
            "PUT",
            "/api/v1/settings/a%20b",
            Some(r#"{"value":1}"#),
            400,
            Some("name"),
        ),
        ("DELETE", "/api/v1/settings/ghost", None, 404, Some("name")),
        // exports
        ("GET", "/api/v1/exports?limit=-3", None, 400, Some("limit")),
        ("GET", "/api/v1/exports/ghost", None, 404, Some("name")),
        (
            "POST",
            "/api/v1/exports",
            Some(r#"{"name":"x","path":"/","clients":["10.0.0.0/33"]}"#),
            400,
            Some("clients"),
        ),
        ("DELETE", "/api/v1/exports/ghost", None, 404, Some("name")),
        // discovery
        (
            "GET",
            "/api/v1/discovered?all=maybe",
            None,
            400,
            Some("all"),
        ),
        (
            "POST",
            "/api/v1/discovered/zz/adopt",
            Some(r#"{"name":"x"}"#),
            400,
            Some("mac"),
        ),
        ("GET", "/api/v1/rules?x=1", None, 400, Some("x")),
        (
            "POST",
            "/api/v1/rules",
            Some(r#"{"rule":"sw port 9-1 -> n[1-9]"}"#),
            400,
            Some("rule"),
        ),
        ("DELETE", "/api/v1/rules/ghost", None, 404, Some("name")),
        // tokens
        ("GET", "/api/v1/tokens?x=1", None, 400, Some("x")),
        ("POST", "/api/v1/tokens", Some(r#"{}"#), 400, Some("name")),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"ci"}"#),
            409,
            Some("name"),
        ),
        ("DELETE", "/api/v1/tokens/ghost", None, 404, Some("name")),
        // audit
        (
            "GET",
            "/api/v1/audit?since=yesterday",
            None,
            400,
            Some("since"),
        ),
        ("GET", "/api/v1/audit?x=1", None, 400, Some("x")),
        // users
        ("GET", "/api/v1/users?x=1", None, 400, Some("x")),
        ("POST", "/api/v1/users", Some(r#"{}"#), 400, Some("name")),
        (
            "POST",
            "/api/v1/users",
            Some(r#"{"name":"u1","password":"long enough","role":"boss"}"#),
            400,
            Some("role"),
        ),
        (
            "POST",
            "/api/v1/users",
            Some(r#"{"name":"u1","password":"short","role":"viewer"}"#),
            400,
            Some("password"),
        ),
        (
            "POST",
            "/api/v1/users",
            Some(r#"{"name":"admin","password":"long enough","role":"viewer"}"#),
            409,
            Some("name"),
        ),
        (
            "PATCH",
            "/api/v1/users/ghost",
            Some(r#"{"role":"viewer"}"#),
            404,
            Some("name"),
        ),
        (
            "PATCH",
            "/api/v1/users/admin",
            Some(r#"{}"#),
            400,
            Some("role"),
        ),
        // login
        (
            "POST",
            "/api/v1/login",
            Some(r#"{"user":"admin"}"#),
            400,
            Some("password"),
        ),
        (
            "POST",
            "/api/v1/login",
            Some(r#"{"password":"x"}"#),
            400,
            Some("user"),
        ),
        // pool
        (
            "POST",
            "/api/v1/pool/members/not-hex/mark-dead",
            None,
            400,
            Some("id"),
        ),
        (
            "POST",
            "/api/v1/pool/members/not-hex/drain",
            None,
            400,
            Some("id"),
        ),
        (
            "POST",
            "/api/v1/pool/members/not-hex/undrain",
            None,
            400,
            Some("id"),
        ),
        // consoles and BMC readings
        (
            "GET",
            "/api/v1/nodes/n1/console?write=maybe",
            None,
            400,
            Some("write"),
        ),
        ("GET", "/api/v1/nodes/n1/console", None, 426, None),
        (
            "GET",
            "/api/v1/nodes/n1/console/log?all=maybe",
            None,
            400,
            Some("all"),
        ),
        ("GET", "/api/v1/bmc/sensors", None, 400, Some("target")),
        ("GET", "/api/v1/bmc/sel?x=1", None, 400, Some("x")),
        // file sets
        ("GET", "/api/v1/files?x=1", None, 400, Some("x")),
        ("GET", "/api/v1/files/ghost", None, 404, Some("name")),
        ("POST", "/api/v1/files/x", Some(r#"{}"#), 400, Some("path")),
        ("DELETE", "/api/v1/files/ghost", None, 404, Some("name")),
        (
            "POST",
            "/api/v1/files/x/assign",
            Some(r#"{}"#),
            400,
            Some("image"),
        ),
        (
            "POST",
            "/api/v1/files/x/unassign",
            Some(r#"{}"#),
            400,
            Some("image"),
        ),
        // no such endpoint
        ("GET", "/api/v1/nothing", None, 404, None),
    ];
    let template = |path: &str| {
        let path = path.split('?').next().unwrap();
        let segs: Vec<&str> = path.split('/').collect();
        if segs.len() == 5 && segs[4] != "import" && segs[3] != "bmc" {
            format!("/api/v1/{}/{{name}}", segs[3])
        } else if segs.len() == 6 {
            format!("/api/v1/{}/{{name}}/{}", segs[3], segs[5])
        } else if segs.len() == 7 && segs[3] == "pool" {
            format!("/api/v1/pool/{}/{{id}}/{}", segs[4], segs[6])
        } else if segs.len() == 7 {
            format!("/api/v1/{}/{{name}}/{}/{}", segs[3], segs[5], segs[6])
        } else {
            path.to_string()
        }
    };
    let mut covered = BTreeSet::new();
    for (method, path, body, status, field) in cases {
        let r = send(&s, method, path, &t, *body);
        assert_eq!(r.status, *status, "{method} {path} {body:?}: {}", r.body);
        let j = r.json();
        assert!(
            j["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {}",
            r.body
        );
        assert_eq!(
            j["field"].as_str(),
            *field,
            "{method} {path} {body:?}: {}",
            r.body
        );
        covered.insert((method.to_string(), template(path)));
    }
    // Every documented operation that takes input has a bad-input case above.
    let no_input = [
        "/api/v1/session",
        "/api/v1/health",
        "/api/v1/pool",
        "/api/v1/image-store",
        "/api/v1/events",
        "/api/v1/openapi.json",
        "/api/v1/logout",
    ];
    for (method, path, _) in documented() {
        if no_input.contains(&path.as_str()) {
            continue;
        }
        assert!(
            covered.contains(&(method.clone(), path.clone())),
            "no bad-input case for {method} {path}"
        );
    }
    // Nothing above changed the store beyond the three good requests.
    let nodes = send(&s, "GET", "/api/v1/nodes", &t, None).json();
    assert_eq!(nodes["total"], 1, "{nodes}");
}

#[test]
fn openapi_is_served_and_every_operation_answers() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let r = send(&s, "GET", "/api/v1/openapi.json", &t, None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(common::repo_root().join("assets/openapi.json")).unwrap()
        )
        .unwrap()
    );
    for (method, path, _) in documented() {
        let path = path.replace("{name}", "ghost");
        let r = send(&s, &method, &path, &t, Some("{}"));
        assert_ne!(
            r.status, 405,
            "{method} {path} is documented but not routed"
        );
        assert!(
            !r.body.contains("no such API endpoint"),
            "{method} {path} is documented but not routed"
        );
    }
}

#[test]
fn lists_paginate_and_filter_and_events_stream_changes() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let mut csv = String::from("name,mac,group\n");
    for i in 0..250u32 {
        csv += &format!(
            "node{i:03},52:54:00:02:{:02x}:{:02x},rack{}\n",
            i / 256,
            i % 256,
            i / 100
        );
    }
    let r = s.request(
        "POST",
        "/api/v1/nodes/import",
        &[t[0], ("Content-Type", "text/csv")],
        Some(&csv),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["imported"], 250);
    let page = send(&s, "GET", "/api/v1/nodes?limit=100&offset=200", &t, None).json();
    assert_eq!(page["total"], 250);
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    assert_eq!(page["items"][0]["name"], "node200");
    let rack1 = send(&s, "GET", "/api/v1/nodes?group=rack1&limit=1000", &t, None).json();
    assert_eq!(rack1["total"], 100);
    let q = send(&s, "GET", "/api/v1/nodes?q=node24", &t, None).json();
    assert_eq!(q["total"], 10, "{q}");
    let groups = send(&s, "GET", "/api/v1/groups", &t, None).json();
    assert_eq!(groups["total"], 3);

    // An event stream sees a change made by the CLI.
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let n = sock.read(&mut buf).unwrap();
    got.extend_from_slice(&buf[..n]);
    assert!(String::from_utf8_lossy(&got).contains("text/event-stream"));
    s.d.cli_ok(&["node", "add", "late", "--mac", "52:54:00:03:00:01"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("\"key\":\"late\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no change event: {}",
            String::from_utf8_lossy(&got)
        );
        let n = sock.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("event: change"));
    // Revoking the token ends the stream (the chunked body's last chunk arrives).
    s.d.cli_ok(&["token", "rm", "ci"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !got.ends_with(b"0\r\n\r\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not end: {}",
            String::from_utf8_lossy(&got)
        );
        let n = sock.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn boot_events_build_a_timeline_that_ends_up() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let kernel = s.d.scratch().join("vmlinuz");
    std::fs::write(&kernel, vec![7u8; 4096]).unwrap();
    s.d.cli_ok(&["image", "add", "img", "--kernel", kernel.to_str().unwrap()]);
    let mac = "52:54:00:0e:00:01";
    s.d.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        mac,
        "--ip",
        "127.0.0.1",
        "--image",
        "img",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // iPXE fetches its script (once the server's view has the node), then the kernel.
    while !s
        .request("GET", &format!("/boot/{mac}"), &[], None)
        .body
        .contains("booting n1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "server never saw node n1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.request("GET", "/images/img/kernel", &[], None).status,
        200
    );
    // A ranged read from the middle is not a new boot step.
    let r = s.request(
        "GET",
        "/images/img/kernel",
        &[("Range", "bytes=100-")],
        None,
    );
    assert_eq!(r.status, 206);
    // The agent reports; bad reports are refused.
    let post = |m: &str, body: &str| {
        s.request("POST", &format!("/boot/{m}/events"), &[JSON], Some(body))
            .status
    };
    assert_eq!(post(mac, r#"{"stage":"kernel"}"#), 400, "only agent stages");
    assert_eq!(post(mac, r#"{"stage":"agent","colour":1}"#), 400);
    assert_eq!(post(mac, "not json"), 400);
    assert_eq!(post("52:54:00:0e:00:99", r#"{"stage":"agent"}"#), 404);
    assert_eq!(post("zz", r#"{"stage":"agent"}"#), 400);
    // Each event is written in the background; wait for one before sending the next so the
    // order is the order of the boot.
    let stages = |s: &ApiServer| -> Vec<String> {
        let tl = send(s, "GET", "/api/v1/nodes/n1/events", &t, None).json();
        tl["last_boot"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["stage"].as_str().unwrap().to_string())
            .collect()
    };
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stages(&s).len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "events: {:?}",
                stages(&s)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(2);
    assert_eq!(
        post(mac, r#"{"stage":"agent","detail":"network up on eth0"}"#),
        204
    );
    wait_for(3);
    let state = send(&s, "GET", "/api/v1/nodes/n1", &t, None).json();
    assert_eq!(state["state"], "booting", "{state}");
    assert_eq!(post(mac, r#"{"stage":"root"}"#), 204);
    wait_for(4);
    assert_eq!(post(mac, r#"{"stage":"ready"}"#), 204);
    wait_for(5);
    assert_eq!(stages(&s), ["script", "kernel", "agent", "root", "ready"]);
    let tl = send(&s, "GET", "/api/v1/nodes/n1/events", &t, None).json();
    assert_eq!(tl["state"], "up", "{tl}");
    let list = send(&s, "GET", "/api/v1/nodes", &t, None).json();
    assert_eq!(list["items"][0]["state"], "up");
    assert_eq!(list["items"][0]["last_event"]["stage"], "ready");
    let out = s.d.cli_ok(&["node", "events", "n1"]);
    assert!(out.starts_with("n1: up"), "{out}");
    for stage in ["script", "kernel", "agent", "root", "ready"] {
        assert!(out.contains(stage), "{out}");
    }
    assert!(out.contains("network up on eth0"), "{out}");
    // Metrics, behind the login like the API.
    assert_eq!(s.request("GET", "/metrics", &[], None).status, 401);
    let m = send(&s, "GET", "/metrics", &t, None);
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "drover_nodes{state=\"up\"} 1",
        "drover_boot_events_total{stage=\"ready\"} 1",
        "drover_boot_events_total{stage=\"kernel\"} 1",
        "drover_last_boot_seconds_count 1",
        "drover_images 1",
        "# TYPE drover_http_requests_total counter",
        "drover_http_requests_total{route=\"images\",code=\"2xx\"} 2",
        "drover_http_requests_total{route=\"boot\",code=\"4xx\"}",
    ] {
        assert!(m.body.contains(line), "no {line:?} in\n{}", m.body);
    }
    // A new boot starts a new timeline.
    s.request("GET", &format!("/boot/{mac}"), &[], None);
    wait_for_len(&s, &t, 1);
    let out = s.d.cli_ok(&["node", "events", "n1"]);
    assert!(out.starts_with("n1: booting"), "{out}");
    assert!(s
        .d
        .cli_ok(&["node", "events", "n1", "--all"])
        .contains("ready"));
}

/// An agent event is accepted only from the node's own address: a `failed` posted from
/// 127.0.0.2 for a node reserved at 127.0.0.1 is refused (403, counted in /metrics) and not
/// recorded; the same post from 127.0.0.1 is accepted.
#[test]
fn boot_events_from_another_address_are_refused() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let mac = "52:54:00:0e:00:02";
    s.d.cli_ok(&["node", "add", "n1", "--mac", mac, "--ip", "127.0.0.1"]);
    let post_from = |from: &str| {
        let body = r#"{"stage":"failed","detail":"forged"}"#;
        post_json_from(&s, from, &format!("/boot/{mac}/events"), body)
    };
    let r = post_from("127.0.0.2");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let m = send(&s, "GET", "/metrics", &t, None);
    assert!(
        m.body.contains("drover_boot_events_refused_total 1"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("drover_boot_events_total{stage=\"failed\"} 0"),
        "{}",
        m.body
    );
    // Retried faults are listed too (none here).
    assert!(
        m.body.contains(
            "drover_service_events_total{service=\"faults\",iface=\"all\",event=\"view_refresh_errors\"} 0"
        ),
        "{}",
        m.body
    );
    let r = post_from("127.0.0.1");
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    wait_for_len(&s, &t, 1);
    let tl = send(&s, "GET", "/api/v1/nodes/n1/events", &t, None).json();
    assert_eq!(tl["state"], "failed", "{tl}");
}

/// A user name or boot event detail with a newline followed by a made-up log line does not
/// put that line in the server's log: client strings are escaped.
#[test]
fn client_strings_cannot_forge_log_lines() {
    let s = ApiServer::start();
    let forged = "2026-01-01T00:00:00.000000Z  INFO drover: FORGED";
    let user = format!("ops\n{forged} login");
    let body = serde_json::json!({ "user": user, "password": "wrong" }).to_string();
    let r = s.request("POST", "/api/v1/login", &[JSON], Some(&body));
    assert_eq!(r.status, 401, "{}", r.body);
    let mac = "52:54:00:0e:00:03";
    s.d.cli_ok(&["node", "add", "n1", "--mac", mac, "--ip", "127.0.0.1"]);
    let detail = format!("up\r\n{forged} event");
    let body = serde_json::json!({ "stage": "agent", "detail": detail }).to_string();
    let r = s.request("POST", &format!("/boot/{mac}/events"), &[JSON], Some(&body));
    assert_eq!(r.status, 204, "{}", r.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(s.d.log().contains("failed login") && s.d.log().contains("boot event")) {
        assert!(std::time::Instant::now() < deadline, "{}", s.d.log_tail(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = s.d.log();
    assert!(
        log.contains("FORGED login") && log.contains("FORGED event"),
        "{log}"
    );
    for line in log.lines() {
        assert!(!line.starts_with(forged), "forged line in the log:\n{log}");
    }
}

/// POSTs JSON `body` to `path` from local address `from` (a loopback address other than
/// 127.0.0.1 plays another client); returns the whole raw response.
fn post_json_from(s: &ApiServer, from: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&from.into()).unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    sock.connect(&to.into()).unwrap();
    let mut sock: std::net::TcpStream = sock.into();
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).unwrap();
    out
}

/// Waits until the last boot of n1 has exactly `n` events.
fn wait_for_len(s: &ApiServer, t: &[(&str, &str)], n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tl = send(s, "GET", "/api/v1/nodes/n1/events", t, None).json();
        if tl["last_boot"].as_array().unwrap().len() == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{tl}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `drover --server URL --token T ...` acts on the remote store through the API: from another
/// state directory, node add/set/list/import/rm and network/lease lists; errors carry the
/// API's message; a wrong token and commands without an API counterpart fail clearly.
#[test]
fn the_cli_acts_on_a_remote_drover() {
    let s = ApiServer::start();
    let token = s.token("cli");
    let elsewhere = common::Drover::new();
    let url = s.url();
    let remote = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--token", token.as_str()];
        all.extend_from_slice(args);
        elsewhere.cli(&all)
    };
    let ok = |args: &[&str]| {
        let out = remote(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ok(&[
        "node",
        "add",
        "r1",
        "--mac",
        "52:54:00:00:0a:01",
        "--alias",
        "login"
    ])
    .contains("added node r1"));
    assert!(
        s.d.cli_ok(&["node", "list"]).contains("r1"),
        "not in the server's store"
    );
    assert!(
        elsewhere.cli_ok(&["node", "list"]).lines().count() <= 1,
        "written locally"
    );
    ok(&["node", "set", "r1", "--group", "rack1"]);
    let list = ok(&["node", "list"]);
    assert!(
        list.contains("r1") && list.contains("rack1") && list.contains("login"),
        "{list}"
    );
    let csv = elsewhere.scratch().join("nodes.csv");
    std::fs::write(
        &csv,
        "name,mac\nr2,52:54:00:00:0a:02\nr3,52:54:00:00:0a:03\n",
    )
    .unwrap();
    assert!(ok(&["node", "import", csv.to_str().unwrap()]).contains("imported 2 nodes"));
    assert!(ok(&["node", "show", "r3"]).contains("52:54:00:00:0a:03"));
    assert!(ok(&["network", "list"]).starts_with("NAME"));
    assert!(ok(&["lease", "list"]).starts_with("IP"));
    ok(&["node", "rm", "r2"]);
    assert!(!s.d.cli_ok(&["node", "list"]).contains("r2"));

    // The API's refusal, named.
    let dup = remote(&["node", "add", "r9", "--mac", "52:54:00:00:0a:01"]);
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        !dup.status.success() && err.contains("409") && err.contains("52:54:00:00:0a:01"),
        "{err}"
    );
    // A wrong token.
    let out = elsewhere.cli(&["--server", &url, "--token", "nope", "node", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401"), "{err}");
    // Through the API, but this drover is in no pool.
    let out = remote(&["pool", "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("404") && err.contains("not in a pool"),
        "{err}"
    );
    // No API counterpart.
    let out = remote(&["pool", "leave"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("only on the appliance"),
        "{err}"
    );
    // --server without a token is a usage error.
    let out = elsewhere.cli(&["--server", &url, "node", "list"]);
    assert!(!out.status.success());
}

#[test]
fn nfs_exports_through_the_api() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let t = [("Authorization", bearer.as_str())];
    let dir = std::env::temp_dir();
    let body = serde_json::json!({
        "name": "scratch",
        "path": dir,
        "clients": ["198.18.0.0/24"],
        "rw": true,
    })
    .to_string();
    let r = send(&s, "POST", "/api/v1/exports", &t, Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["clients"][0], "198.18.0.0/24");
    let r = send(&s, "POST", "/api/v1/exports", &t, Some(&body));
    assert_eq!(r.status, 409, "{}", r.body);
    for (bad, field) in [
        (
            serde_json::json!({"name": "a", "path": dir, "clients": ["198.18.0/24"]}),
            "clients",
        ),
        (
            serde_json::json!({"name": "a", "path": "/nonexistent/x", "clients": ["10.0.0.0/8"]}),
            "path",
        ),
        (
            serde_json::json!({"name": "a", "path": dir, "clients": []}),
            "clients",
        ),
        (
            serde_json::json!({"name": "root", "path": dir, "clients": ["10.0.0.0/8"]}),
            "name",
        ),
        (serde_json::json!({"name": "a", "path": dir}), "clients"),
    ] {
        let r = send(&s, "POST", "/api/v1/exports", &t, Some(&bad.to_string()));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{bad}: {}", r.body);
    }
    let list = send(&s, "GET", "/api/v1/exports", &t, None).json();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["rw"], true);
    assert_eq!(
        send(&s, "GET", "/api/v1/exports/scratch", &t, None).status,
        200
    );
    // The export options of /etc/exports: read-only networks, squash mode, anonymous ids.
    let opts = serde_json::json!({
        "name": "opts",
        "path": dir,
        "clients": ["10.0.0.0/8"],
        "rw": true,
        "ro_clients": ["10.1.0.0/16"],
        "squash": "all",
        "anon_uid": 7,
        "anon_gid": 8,
    });
    let r = send(&s, "POST", "/api/v1/exports", &t, Some(&opts.to_string()));
    assert_eq!(r.status, 201, "{}", r.body);
    let got = send(&s, "GET", "/api/v1/exports/opts", &t, None).json();
    for key in ["ro_clients", "squash", "anon_uid", "anon_gid"] {
        assert_eq!(got[key], opts[key], "{key}: {got}");
    }
    let bad = serde_json::json!({"name": "b", "path": dir, "clients": ["10.0.0.0/8"],
        "squash": "everyone"});
    let r = send(&s, "POST", "/api/v1/exports", &t, Some(&bad.to_string()));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "squash", "{}", r.body);
    let scratch = send(&s, "GET", "/api/v1/exports/scratch", &t, None).json();
    assert_eq!(scratch["squash"], "root", "the default: {scratch}");
    assert_eq!(
        send(&s, "DELETE", "/api/v1/exports/scratch", &t, None).status,
        204
    );
    assert_eq!(
        send(&s, "GET", "/api/v1/exports/scratch", &t, None).status,
        404
    );
}

/// Root modes and persistent paths through the API, and the boot script they produce.
#[test]
fn nfs_root_settings_through_the_api() {
    let s = ApiServer::start();
    let token = s.token("ci");
    let bearer = format!("Bearer {token}");
    let (t, j) = (("Authorization", bearer.as_str()), JSON);
    let kernel = s.d.scratch().join("vmlinuz");
    std::fs::write(&kernel, b"kernel").unwrap();
    let tree = s.d.scratch().join("tree");
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::write(tree.join("sbin/init"), b"#!/bin/sh\n").unwrap();
    let k = kernel.to_str().unwrap();
    s.d.cli_ok(&["image", "add", "plain", "--kernel", k]);
    s.d.cli_ok(&[
        "image",
        "add",
        "fs",
        "--kernel",
        k,
        "--rootfs",
        tree.to_str().unwrap(),
    ]);
    let mac = "52:54:00:0e:00:05";
    let r = s.request(
        "POST",
        "/api/v1/nodes",
        &[t, j],
        Some(&format!(r#"{{"name":"n1","mac":"{mac}","image":"fs"}}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    let patch = |path: &str, body: &str| s.request("PATCH", path, &[t, j], Some(body));
    let r = patch(
        "/api/v1/images/fs",
        r#"{"root":"nfs","persistent":["/var/log","/etc/ssh"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["root"], "nfs");
    assert_eq!(v["boot"], "nfs-root");
    assert_eq!(v["persistent"], serde_json::json!(["/etc/ssh", "/var/log"]));
    for (path, body, field) in [
        ("/api/v1/images/plain", r#"{"root":"nfs"}"#, "root"),
        ("/api/v1/images/fs", r#"{"root":"disk"}"#, "root"),
        (
            "/api/v1/images/fs",
            r#"{"persistent":["var"]}"#,
            "persistent",
        ),
        (
            "/api/v1/images/fs",
            r#"{"persistent":"/var"}"#,
            "persistent",
        ),
        ("/api/v1/nodes/n1", r#"{"root":"tmpfs"}"#, "root"),
    ] {
        let r = patch(path, body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{path} {body}: {}", r.body);
    }
    let img = s.request("GET", "/api/v1/images/fs", &[t], None).json();
    assert_eq!(
        img["persistent"],
        serde_json::json!(["/etc/ssh", "/var/log"])
    );

    // The boot script mounts the root from the address the node reached drover at.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let script = loop {
        let body = s.request("GET", &format!("/boot/{mac}"), &[], None).body;
        if body.contains("drover.root=") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no NFS root in the boot script:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        script.contains(" drover.root=nfs:127.0.0.1:/root drover.persistent=/etc/ssh,/var/log "),
        "{script}"
    );
    assert!(!script.contains("rootfs"), "{script}");

    // The node's own setting wins; null follows the image again.
    let r = patch("/api/v1/nodes/n1", r#"{"root":"ram"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["root"], "ram");
    let r = patch("/api/v1/nodes/n1", r#"{"root":null}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("root").is_none(), "{}", r.body);
}
