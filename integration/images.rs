//! Image versions and import through the real binary: `image import` of a tar.gz and of an
//! OCI image layout (no `--kernel`: the tree's /boot/vmlinuz-*), `image history`, a node
//! pinned to version 1 whose `/boot/MAC` script and `/images/NAME@1/...` downloads serve
//! version 1's files, and `image rollback` through `--server` and the API.
//!
//! Needs only loopback (no root, no namespaces).

mod common;

use common::api::ApiServer;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        if path.ends_with('/') {
            let mut h = header(tar::EntryType::Directory, 0);
            b.append_data(&mut h, path, std::io::empty()).unwrap();
        } else {
            let mut h = header(tar::EntryType::Regular, data.len() as u64);
            b.append_data(&mut h, path, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout whose second layer replaces the kernel of the first.
fn oci_layout(dir: &Path, base: &[u8]) {
    use sha2::Digest;
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |data: &[u8]| {
        let hex: String = sha2::Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let top = tar_of(&[
        ("boot/vmlinuz-6.1.0-1-amd64", b"kernel two"),
        ("etc/.wh.motd", b""),
    ]);
    let manifest = serde_json::json!({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(base)},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(&top)},
    ]});
    let m = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": m}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn import_history_pin_and_rollback() {
    let s = ApiServer::start();
    let d = &s.d;
    let base = tar_of(&[
        ("boot/", b""),
        ("boot/vmlinuz-6.1.0-1-amd64", b"kernel one"),
        ("etc/", b""),
        ("etc/motd", b"hello"),
        ("sbin/", b""),
        ("sbin/init", b"#!/bin/sh\n"),
    ]);
    let tgz = d.scratch().join("deb.tar.gz");
    std::fs::write(&tgz, gzip(&base)).unwrap();
    let oci = d.scratch().join("oci");
    oci_layout(&oci, &gzip(&base));

    let out = d.cli_ok(&["image", "import", "deb", tgz.to_str().unwrap()]);
    assert!(out.contains("added image deb"), "{out}");
    d.cli_ok(&["image", "import", "deb", oci.to_str().unwrap()]);
    let history = d.cli_ok(&["image", "history", "deb"]);
    let rows: Vec<&str> = history.lines().collect();
    assert_eq!(rows.len(), 3, "{history}");
    assert!(
        rows[1].starts_with("1 ") && rows[1].contains("import "),
        "{history}"
    );
    assert!(
        rows[2].starts_with("2 ") && rows[2].contains("/oci"),
        "{history}"
    );

    const MAC: &str = "52:54:00:00:00:01";
    d.cli_ok(&["node", "add", "n1", "--mac", MAC, "--image", "deb"]);
    // The server sees a CLI change within a second (its view follows the store's feed).
    let script = |want: &str| {
        let mut body = String::new();
        let seen = common::wait_until(Duration::from_secs(10), || {
            body = s.request("GET", &format!("/boot/{MAC}"), &[], None).body;
            body.contains(want)
        });
        assert!(seen, "{want:?} not in\n{body}");
        body
    };
    let get = |path: &str| {
        let r = s.request("GET", path, &[], None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    };
    script("/images/deb/kernel ");
    assert_eq!(get("/images/deb/kernel"), "kernel two");

    // Pinned to version 1: the script and the downloads are version 1's.
    d.cli_ok(&["node", "set", "n1", "--image-version", "1"]);
    let body = script("/images/deb@1/kernel ");
    assert!(body.contains("drover.image=deb@1 "), "{body}");
    assert!(body.contains("/images/deb@1/initramfs"), "{body}");
    assert_eq!(get("/images/deb@1/kernel"), "kernel one");
    assert!(get("/images/deb@1/rootfs.tar").contains("hello"));
    assert!(
        !get("/images/deb/rootfs.tar").contains("hello"),
        "motd whited out"
    );
    assert_eq!(
        s.request("GET", "/images/deb@7/kernel", &[], None).status,
        404
    );
    let show = d.cli_ok(&["node", "show", "n1"]);
    assert!(
        show.contains("version: 1 (pinned by node; latest 2)"),
        "{show}"
    );
    let bad = d.cli(&["node", "set", "n1", "--image-version", "9"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("has no version 9"),
        "{bad:?}"
    );

    // Rollback through the API client: a new version 3 with version 1's files.
    let token = s.token("images");
    let url = s.url();
    let elsewhere = common::Drover::new();
    let remote = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--token", token.as_str()];
        all.extend_from_slice(args);
        elsewhere.cli_ok(&all)
    };
    let out = remote(&["image", "rollback", "deb", "1"]);
    assert!(out.contains("now version 3"), "{out}");
    let history = remote(&["image", "history", "deb"]);
    assert_eq!(history, d.cli_ok(&["image", "history", "deb"]));
    let last = history.lines().last().unwrap();
    assert!(
        last.starts_with("3 ") && last.contains("token images") && last.contains("rollback to 1"),
        "{history}"
    );
    // A rollback stores nothing new: all its files are version 1's.
    assert!(last.contains("  0 bytes  "), "{history}");
    d.cli_ok(&["node", "set", "n1", "--image-version", "latest"]);
    script("/images/deb/kernel ");
    assert_eq!(get("/images/deb/kernel"), "kernel one");

    let r = s.request(
        "GET",
        "/api/v1/images/deb/history",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let versions: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(versions.as_array().map(Vec::len), Some(3), "{}", r.body);
    assert_eq!(versions[2]["files"], versions[0]["files"]);
    let r = s.request(
        "POST",
        "/api/v1/images/deb/rollback",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"version": 5}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("\"version\""), "{}", r.body);
}
