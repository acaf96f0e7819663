//! The admin CLI and the HTTP boot path, through the real binary: clear errors that change
//! nothing, CSV import, a running server that picks up CLI changes within a second, boot
//! scripts, and Range downloads of image files.

mod common;

use common::Drover;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn stderr_of(d: &Drover, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        !out.status.success(),
        "`drover {}` should have failed",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn errors_are_clear_and_change_nothing() {
    let d = Drover::new();
    d.cli_ok(&[
        "network",
        "add",
        "lab",
        "--subnet",
        "198.18.0.0/24",
        "--range",
        "198.18.0.100-198.18.0.199",
    ]);
    d.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        "52:54:00:00:00:01",
        "--ip",
        "198.18.0.11",
    ]);
    let before = d.cli_ok(&["node", "list"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["node", "add", "n2", "--mac", "52:54:00:00:00:01"],
            "already used by node \"n1\"",
        ),
        (
            &[
                "node",
                "add",
                "n2",
                "--mac",
                "52:54:00:00:00:02",
                "--ip",
                "198.18.0.11",
            ],
            "already reserved for node \"n1\"",
        ),
        (
            &[
                "node",
                "add",
                "n2",
                "--mac",
                "52:54:00:00:00:02",
                "--ip",
                "10.9.9.9",
            ],
            "outside every network",
        ),
        (
            &[
                "node",
                "add",
                "n2",
                "--mac",
                "52:54:00:00:00:02",
                "--image",
                "nope",
            ],
            "unknown image \"nope\"",
        ),
        (
            &["node", "add", "n1", "--mac", "52:54:00:00:00:09"],
            "exists already",
        ),
        (
            &["node", "add", "n2", "--mac", "52:54:00:00:00"],
            "not a MAC address",
        ),
        (
            &["node", "set", "ghost", "--ip", "198.18.0.12"],
            "unknown node \"ghost\"",
        ),
        (&["node", "rm", "ghost"], "unknown node \"ghost\""),
        (&["node", "show", "ghost"], "unknown node \"ghost\""),
        (
            &["image", "add", "img", "--kernel", "/nonexistent/vmlinuz"],
            "/nonexistent/vmlinuz: no such file",
        ),
        (
            &["network", "add", "other", "--subnet", "198.18.0.0/25"],
            "overlaps network \"lab\"",
        ),
        (
            &[
                "network",
                "add",
                "bad",
                "--subnet",
                "198.19.0.0/24",
                "--range",
                "198.19.1.1-198.19.1.9",
            ],
            "invalid for 198.19.0.0/24",
        ),
    ];
    for (args, expect) in cases {
        let err = stderr_of(&d, args);
        assert!(
            err.contains(expect),
            "`drover {}`: expected {expect:?} in {err:?}",
            args.join(" ")
        );
    }
    assert_eq!(d.cli_ok(&["node", "list"]), before);
    assert_eq!(d.cli_ok(&["network", "list"]).lines().count(), 2);
}

/// Root modes and persistent paths: set on images and nodes, shown, checked with clear errors
/// that change nothing, kept by `image add --replace`.
#[test]
fn nfs_root_settings() {
    let d = Drover::new();
    let kernel = d.scratch().join("vmlinuz");
    std::fs::write(&kernel, b"kernel").unwrap();
    let tree = d.scratch().join("tree");
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::write(tree.join("sbin/init"), b"#!/bin/sh\n").unwrap();
    let (k, t) = (kernel.to_str().unwrap(), tree.to_str().unwrap());
    d.cli_ok(&["image", "add", "plain", "--kernel", k, "--initrd", k]);
    let out = d.cli_ok(&[
        "image",
        "add",
        "fs",
        "--kernel",
        k,
        "--rootfs",
        t,
        "--root",
        "nfs",
        "--persistent",
        "/var/log,/etc/ssh",
    ]);
    assert!(
        out.contains("root nfs, persistent /etc/ssh,/var/log"),
        "{out}"
    );
    let list = d.cli_ok(&["image", "list"]);
    let row = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{list}"))
            .to_string()
    };
    assert!(row("fs").contains("nfs-root") && row("fs").contains("/etc/ssh,/var/log"));
    assert!(row("plain").contains("kernel+initrd"), "{list}");

    d.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        "52:54:00:00:00:01",
        "--image",
        "plain",
    ]);
    d.cli_ok(&[
        "node",
        "add",
        "n2",
        "--mac",
        "52:54:00:00:00:02",
        "--image",
        "fs",
    ]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["image", "set", "plain", "--root", "nfs"],
            "has no root filesystem",
        ),
        (
            &[
                "image", "add", "x", "--kernel", k, "--initrd", k, "--root", "nfs",
            ],
            "has no root filesystem",
        ),
        (
            &["image", "set", "fs", "--persistent", "var/log"],
            "must be absolute",
        ),
        (&["image", "set", "fs", "--persistent", "/"], "cannot be /"),
        (
            &["image", "set", "fs", "--persistent", "/var/../etc"],
            "not normalised",
        ),
        (
            &["image", "set", "fs", "--persistent", "/var,/var/log"],
            "inside another",
        ),
        (
            &["image", "set", "ghost", "--root", "ram"],
            "unknown image \"ghost\"",
        ),
        (
            &["image", "set", "fs", "--root", "disk"],
            "invalid value 'disk'",
        ),
        (
            &["node", "set", "n1", "--root", "nfs"],
            "has no root filesystem",
        ),
    ];
    for (args, expect) in cases {
        let err = stderr_of(&d, args);
        assert!(
            err.contains(expect),
            "`drover {}`: expected {expect:?} in {err:?}",
            args.join(" ")
        );
    }
    assert_eq!(
        d.cli_ok(&["image", "list"]),
        list,
        "a failed change changed images"
    );

    // A node follows its image unless it says otherwise.
    assert!(d
        .cli_ok(&["node", "show", "n2"])
        .contains("root:  nfs (from image fs)"));
    let out = d.cli_ok(&["node", "set", "n2", "--root", "ram"]);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.trim_end().ends_with("ram")),
        "{out}"
    );
    assert!(d
        .cli_ok(&["node", "show", "n2"])
        .contains("root:  ram (node setting)"));
    d.cli_ok(&["node", "set", "n2", "--root", "image"]);
    let show = d.cli_ok(&["node", "show", "n2"]);
    assert!(show.contains("root:  nfs (from image fs)"), "{show}");
    assert!(show.contains("persistent: /etc/ssh,/var/log"), "{show}");

    // --replace keeps the root mode and persistent paths unless it is given new ones.
    d.cli_ok(&[
        "image",
        "add",
        "fs",
        "--replace",
        "--kernel",
        k,
        "--rootfs",
        t,
    ]);
    assert_eq!(d.cli_ok(&["image", "list"]), list);
    d.cli_ok(&["image", "set", "fs", "--root", "ram", "--no-persistent"]);
    let list = d.cli_ok(&["image", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("fs ") && l.contains("ram-root")),
        "{list}"
    );
    assert!(!list.contains("/var/log"), "{list}");
}

#[test]
fn csv_import_is_all_or_nothing() {
    let d = Drover::new();
    d.cli_ok(&["network", "add", "lab", "--subnet", "198.18.0.0/16"]);
    let mut csv = String::from("name,mac,ip,group\n");
    for i in 0..300u32 {
        csv += &format!(
            "node{i:03},52:54:00:01:{:02x}:{:02x},198.18.{}.{},rack{}\n",
            i / 256,
            i % 256,
            1 + i / 200,
            1 + i % 200,
            i / 40
        );
    }
    let good = d.scratch().join("good.csv");
    std::fs::write(&good, &csv).unwrap();
    // A duplicate MAC on the last line: nothing may be imported.
    let bad = d.scratch().join("bad.csv");
    std::fs::write(&bad, format!("{csv}dup,52:54:00:01:00:00,,\n")).unwrap();
    let err = stderr_of(&d, &["node", "import", bad.to_str().unwrap()]);
    assert!(err.contains("already used by node \"node000\""), "{err}");
    assert_eq!(
        d.cli_ok(&["node", "list"]).lines().count(),
        1,
        "a failed import must add nothing"
    );
    let out = d.cli_ok(&["node", "import", good.to_str().unwrap()]);
    assert!(out.contains("imported 300 nodes"), "{out}");
    let list = d.cli_ok(&["node", "list"]);
    assert_eq!(list.lines().count(), 301);
    assert!(
        list.contains("node299  52:54:00:01:01:2b  198.18.2.100  -      rack7"),
        "{list}"
    );
    let show = d.cli_ok(&["node", "show", "node007"]);
    assert!(show.contains("198.18.1.8"), "{show}");
}

#[test]
fn check_config_names_the_bad_key() {
    let d = Drover::new();
    let f = d.scratch().join("bad.toml");
    std::fs::write(&f, "[dhcp]\nlease-time = 10\n").unwrap();
    let err = stderr_of(&d, &["check-config", f.to_str().unwrap()]);
    assert!(err.contains("dhcp.lease-time"), "{err}");
    std::fs::write(&f, "[tftp]\nwindow = 4\n").unwrap();
    let err = stderr_of(&d, &["check-config", f.to_str().unwrap()]);
    assert!(err.contains("window"), "{err}");
    std::fs::write(&f, d.cli_ok(&["default-config"])).unwrap();
    assert!(d
        .cli_ok(&["check-config", f.to_str().unwrap()])
        .contains(": ok"));
}

/// A GET on 127.0.0.1:port; returns (status, headers, body).
fn get(port: u16, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to drover's HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head, raw[split + 4..].to_vec())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn running_server_picks_up_cli_changes_and_serves_ranges() {
    let mut d = Drover::new();
    let port = free_port();
    d.serve_with(
        None,
        "lo",
        &common::config_only(&["http"], &format!("[http]\nport = {port}\n")),
    );
    // The interface's subnet became a network.
    assert!(d.cli_ok(&["network", "list"]).contains("127.0.0.0/8"));

    let mac = "52:54:00:aa:bb:01";
    let (status, _, body) = get(port, &format!("/boot/{mac}"), "");
    assert_eq!(status, 200);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.starts_with("#!ipxe") && body.contains("not a known node"),
        "{body}"
    );

    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let kpath = d.scratch().join("vmlinuz");
    std::fs::write(&kpath, &kernel).unwrap();
    d.cli_ok(&[
        "image",
        "add",
        "img",
        "--kernel",
        kpath.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0",
    ]);
    let added = Instant::now();
    d.cli_ok(&[
        "node",
        "add",
        "n1",
        "--mac",
        mac,
        "--ip",
        "127.0.0.11",
        "--image",
        "img",
    ]);
    let script = loop {
        let (_, _, body) = get(port, &format!("/boot/{mac}"), "");
        let body = String::from_utf8(body).unwrap();
        if body.contains("booting n1") {
            break body;
        }
        assert!(
            added.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
            "server did not see the new node; last script:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        script.contains(&format!(
            "kernel http://127.0.0.1:{port}/images/img/kernel console=ttyS0 drover.node=n1"
        )),
        "{script}"
    );

    let (status, head, body) = get(port, "/images/img/kernel", "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("accept-ranges: bytes"),
        "{head}"
    );
    assert_eq!(body, kernel);
    let (status, head, body) = get(port, "/images/img/kernel", "Range: bytes=1000-1999\r\n");
    assert_eq!(status, 206, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-range: bytes 1000-1999/300000"),
        "{head}"
    );
    assert_eq!(body, &kernel[1000..2000]);
    let (status, _, body) = get(port, "/images/img/kernel", "Range: bytes=-10\r\n");
    assert_eq!(status, 206);
    assert_eq!(body, &kernel[kernel.len() - 10..]);
    let (status, _, _) = get(port, "/images/img/kernel", "Range: bytes=400000-\r\n");
    assert_eq!(status, 416);
    let (status, _, _) = get(port, "/images/img/initrd", "");
    assert_eq!(status, 404);
    let (status, _, _) = get(port, "/images/..%2f..%2fetc/passwd", "");
    assert_eq!(status, 404);
    let (status, _, body) = get(port, "/firmware/undionly.kpxe", "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        std::fs::read(common::repo_root().join("firmware/ipxe/undionly.kpxe")).unwrap()
    );

    // An image in use cannot be removed; a removed node is unknown again.
    let out = d.cli(&["image", "rm", "img"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("used by node(s) n1"));
    d.cli_ok(&["node", "rm", "n1"]);
    let removed = Instant::now();
    loop {
        let (_, _, body) = get(port, &format!("/boot/{mac}"), "");
        if String::from_utf8_lossy(&body).contains("not a known node") {
            break;
        }
        assert!(
            removed.elapsed() < Duration::from_millis(1500),
            "server still boots a removed node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.cli_ok(&["image", "rm", "img"]);
}

#[test]
fn nfs_exports_are_checked_listed_and_removed() {
    let d = Drover::new();
    let dir = d.state_dir().join("share");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.to_str().unwrap();
    let out = d.cli_ok(&[
        "nfs",
        "export",
        "add",
        "home",
        "--path",
        path,
        "--clients",
        "198.18.0.0/24,198.19.0.0/16",
        "--rw",
    ]);
    assert!(out.contains("added export home"), "{out}");
    d.cli_ok(&[
        "nfs",
        "export",
        "add",
        "apps",
        "--path",
        path,
        "--clients",
        "198.18.1.0/24",
    ]);
    let before = d.cli_ok(&["nfs", "export", "list"]);
    assert!(
        before.contains("198.18.0.0/24,198.19.0.0/16") && before.contains("rw"),
        "{before}"
    );
    assert!(before.contains("apps") && before.contains("ro"), "{before}");
    let file = dir.join("f");
    std::fs::write(&file, b"").unwrap();
    let missing = d.state_dir().join("missing");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "nfs",
                "export",
                "add",
                "home",
                "--path",
                path,
                "--clients",
                "10.0.0.0/8",
            ],
            "export \"home\" exists already",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "x",
                "--path",
                missing.to_str().unwrap(),
                "--clients",
                "10.0.0.0/8",
            ],
            "No such file or directory",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "x",
                "--path",
                file.to_str().unwrap(),
                "--clients",
                "10.0.0.0/8",
            ],
            "is not a directory",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "x",
                "--path",
                "relative",
                "--clients",
                "10.0.0.0/8",
            ],
            "is not absolute",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "x",
                "--path",
                path,
                "--clients",
                "10.0.0/8",
            ],
            "10.0.0/8",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "x",
                "--path",
                path,
                "--clients",
                "10.0.0.1/8",
            ],
            "10.0.0.1/8",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "root",
                "--path",
                path,
                "--clients",
                "10.0.0.0/8",
            ],
            "root views",
        ),
        (
            &[
                "nfs",
                "export",
                "add",
                "a/b",
                "--path",
                path,
                "--clients",
                "10.0.0.0/8",
            ],
            "invalid name",
        ),
        (&["nfs", "export", "rm", "nope"], "unknown export \"nope\""),
    ];
    for (args, want) in cases {
        let err = stderr_of(&d, args);
        assert!(err.contains(want), "`{}`: {err}", args.join(" "));
    }
    assert_eq!(
        d.cli_ok(&["nfs", "export", "list"]),
        before,
        "errors changed nothing"
    );
    d.cli_ok(&["nfs", "export", "rm", "apps"]);
    let after = d.cli_ok(&["nfs", "export", "list"]);
    assert!(!after.contains("apps") && after.contains("home"), "{after}");
}
