//! A running drover with only HTTP enabled (on loopback, a free port) and a known admin
//! password, plus a small HTTP/1.1 client: what the API and browser tests share. std only.

use super::Drover;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const PASSWORD: &str = "correct horse battery";

pub struct ApiServer {
    pub d: Drover,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `drover --state-dir DIR ARGS...` with `stdin` as its standard input; returns
/// (success, stdout, stderr).
pub fn cli_stdin(d: &Drover, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(d.bin())
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drover");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl ApiServer {
    /// Sets the admin password with `drover admin passwd`, then serves HTTP on `lo`.
    pub fn start() -> ApiServer {
        ApiServer::start_with("")
    }

    /// The same with `extra` TOML appended to the configuration (not `[http]`).
    pub fn start_with(extra: &str) -> ApiServer {
        let mut d = Drover::new();
        let (ok, out, err) = cli_stdin(&d, &["admin", "passwd"], &format!("{PASSWORD}\n"));
        assert!(ok, "drover admin passwd failed: {out}{err}");
        let port = free_port();
        d.serve_with(
            None,
            "lo",
            &super::config_only(&["http"], &format!("[http]\nport = {port}\n{extra}")),
        );
        ApiServer { d, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one request; returns (status, head, body). For `text/event-stream` answers only
    /// the head is read.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to drover");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req += &format!("Content-Length: {}\r\n", body.len());
        }
        req += "\r\n";
        req += body;
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                if head.contains("content-type: text/event-stream") {
                    break;
                }
            }
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        Reply {
            status,
            head,
            body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
        }
    }

    /// Logs in as admin; returns (cookie header value, CSRF token).
    pub fn login(&self) -> (String, String) {
        self.login_as("admin")
    }

    /// Logs in as `user` (with the test password); returns (cookie header value, CSRF
    /// token).
    pub fn login_as(&self, user: &str) -> (String, String) {
        let r = self.request(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            Some(&format!(r#"{{"user":"{user}","password":"{PASSWORD}"}}"#)),
        );
        assert_eq!(r.status, 200, "login failed: {}", r.body);
        let cookie = r
            .header("set-cookie")
            .expect("a session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let csrf = r.json()["csrf"].as_str().expect("csrf").to_string();
        (cookie, csrf)
    }

    /// `drover token create --name NAME`; returns the token (the last word of the output).
    pub fn token(&self, name: &str) -> String {
        let out = self.d.cli_ok(&["token", "create", "--name", name]);
        out.split_whitespace()
            .last()
            .expect("token in the output")
            .to_string()
    }
}

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}\n{}", self.body, self.head))
    }
}
