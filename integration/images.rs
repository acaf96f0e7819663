//! Image versions and import through the real binary: `image import` of a tar.gz and of an
//! OCI image layout (no `--kernel`: the tree's /boot/vmlinuz-*), `image history`, a node
//! pinned to version 1 whose `/boot/MAC` script and `/images/NAME@1/...` downloads serve
//! version 1's files, and `image rollback` through `--server` and the API.
//!
//! Chunked store: two versions that differ by one package store and serve only the new
//! chunks (`image history` figures, `image list` totals, HTTP Range reads of chunked blobs,
//! `GET /chunks/HASH`).
//!
//! `image mount`: a tree with varied modes, owners, a symlink, a hard link, a device node, a
//! FIFO, a sparse file, xattrs and a file capability, imported as a GNU tar and mounted
//! (FUSE) read-only from the store, lists, reads and shows xattrs exactly as the source.
//!
//! Needs only loopback (no namespaces); the `image mount` test needs root, /dev/fuse and the
//! `attr` and `libcap2-bin` packages.

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

/// The CLI on another machine, through `s`'s API with `token`.
fn remote_cli(s: &ApiServer, token: String) -> impl Fn(&[&str]) -> String {
    let url = s.url();
    let elsewhere = common::Drover::new();
    move |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--token", token.as_str()];
        all.extend_from_slice(args);
        elsewhere.cli_ok(&all)
    }
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
    let remote = remote_cli(&s, token.clone());
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

/// The byte figures of `image history`'s row for `version`: (SIZE, NEW, SHARED).
fn figures(history: &str, version: u32) -> (u64, u64, u64) {
    let row = history
        .lines()
        .find(|l| l.starts_with(&format!("{version} ")))
        .unwrap_or_else(|| panic!("no version {version} in\n{history}"));
    let n: Vec<u64> = row
        .split("bytes")
        .filter_map(|part| part.split_whitespace().last()?.parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "{row}");
    (n[0], n[1], n[2])
}

#[test]
fn a_one_package_change_stores_and_serves_only_new_chunks() {
    let s = ApiServer::start();
    let d = &s.d;
    // Version 2 is version 1 plus one package, whose files sort into the middle of the tar.
    let packages: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("usr/lib/pkg{i:02}/data"),
                common::noise(i + 1, 200_000),
            )
        })
        .collect();
    let tree = |extra: bool| {
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("boot/".into(), Vec::new()),
            ("boot/vmlinuz-6.1.0-1-amd64".into(), b"kernel".to_vec()),
            ("usr/".into(), Vec::new()),
            ("usr/lib/".into(), Vec::new()),
        ];
        for (i, (path, data)) in packages.iter().enumerate() {
            files.push((format!("usr/lib/pkg{i:02}/"), Vec::new()));
            files.push((path.clone(), data.clone()));
            if extra && i == 5 {
                files.push(("usr/lib/pkg05a/".into(), Vec::new()));
                files.push(("usr/lib/pkg05a/data".into(), common::noise(99, 300_000)));
            }
        }
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        tar_of(&refs)
    };
    let (v1, v2) = (tree(false), tree(true));
    let (p1, p2) = (d.scratch().join("v1.tar"), d.scratch().join("v2.tar"));
    std::fs::write(&p1, &v1).unwrap();
    std::fs::write(&p2, &v2).unwrap();
    d.cli_ok(&["image", "import", "pk", p1.to_str().unwrap()]);
    d.cli_ok(&["image", "import", "pk", p2.to_str().unwrap()]);

    let history = d.cli_ok(&["image", "history", "pk"]);
    let (size1, new1, shared1) = figures(&history, 1);
    let (size2, new2, shared2) = figures(&history, 2);
    // Version 1 shares nothing; its files repeat a few chunks within themselves (the agent
    // binary in the initramfs), so NEW may be a little under SIZE.
    assert_eq!(shared1, 0, "{history}");
    assert!(new1 <= size1 && new1 > size1 / 2, "{history}");
    // The new package's 300 kB are new, and a few chunks around it; the rest is shared.
    assert!((300_000..300_000 + 1_100_000).contains(&new2), "{history}");
    assert!(shared2 >= v1.len() as u64 - 1_100_000, "{history}");
    assert!(new2 + shared2 <= size2, "{history}");
    // Through the API client the figures are the same.
    let remote = remote_cli(&s, s.token("chunks"));
    assert_eq!(remote(&["image", "history", "pk"]), history);

    // The store holds less than the two tars and their other files would as whole files.
    let list = d.cli_ok(&["image", "list"]);
    assert_eq!(remote(&["image", "list"]), list);
    let store = list.lines().last().unwrap();
    let n: Vec<u64> = store
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [_, logical, stored] = n[..] else {
        panic!("{list}")
    };
    assert!(logical >= (v1.len() + v2.len()) as u64, "{list}");
    assert!(stored < logical - v1.len() as u64 / 2, "{list}");

    // Downloads are the source bytes, whole and in ranges across chunk boundaries.
    // The server sees the CLI's second import within a second (its view follows the store).
    let latest = common::wait_until(Duration::from_secs(10), || {
        let (status, _, whole) = common::http_get_bytes(s.port, "/images/pk/rootfs.tar", None);
        status == 200 && whole == v2
    });
    assert!(latest, "GET of the rootfs is not the imported tar");
    for (start, end) in [(0, 99), (65_000, 300_000), (1_000_000, 1_000_000)] {
        let (status, head, body) = common::http_get_bytes(
            s.port,
            "/images/pk@1/rootfs.tar",
            Some(&format!("bytes={start}-{end}")),
        );
        assert_eq!(status, 206, "{head}");
        assert!(head.contains(&format!("content-range: bytes {start}-{end}/{}", v1.len())));
        assert!(body == v1[start..=end], "bytes {start}-{end}");
    }
    let (status, _, tail) =
        common::http_get_bytes(s.port, "/images/pk/rootfs.tar", Some("bytes=-1000"));
    assert_eq!(status, 206);
    assert!(tail == v2[v2.len() - 1000..]);

    // A chunk is served by its hash.
    let chunks = d.state_dir().join("chunks");
    let sub = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let file = std::fs::read_dir(&sub)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let (status, _, body) = common::http_get_bytes(s.port, &format!("/chunks/{name}"), None);
    assert_eq!(status, 200);
    assert_eq!(blake3::hash(&body).to_hex().as_str(), name);
    assert!(body == std::fs::read(&file).unwrap());
    let (status, _, _) =
        common::http_get_bytes(s.port, &format!("/chunks/{}", "0".repeat(64)), None);
    assert_eq!(status, 404);
    assert_eq!(
        common::http_get_bytes(s.port, "/chunks/..%2Fstore", None).0,
        404
    );
}

/// What `find`, `sha256sum` and `getfattr` say about the tree under `dir`: names, kinds, modes,
/// owners, link targets and mtimes; sizes of everything but directories (their size is the
/// file system's own); file hashes; all xattrs.
fn listing(dir: &Path) -> String {
    let sh = |script: &str| {
        let out = common::run_ok(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    [
        sh("find . -printf '%p %y %m %U %G %l %T@\\n' | LC_ALL=C sort"),
        sh("find . ! -type d -printf '%p %s\\n' | LC_ALL=C sort"),
        sh("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"),
        sh("find . -print0 | LC_ALL=C sort -z | xargs -0 getfattr -h -d -m - --absolute-names"),
    ]
    .join("\n")
}

/// Unmounts `dir` when dropped (lazily), so that a failed test leaves no mount behind.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(dir))
}

#[test]
fn image_mount_shows_the_source_tree() {
    common::require_root();
    common::require_file(
        Path::new("/dev/fuse"),
        "load the fuse module (`modprobe fuse`)",
    );
    common::require_cmd("setfattr", "attr");
    common::require_cmd("getfattr", "attr");
    common::require_cmd("setcap", "libcap2-bin");
    let d = common::Drover::new();
    let src = d.scratch().join("src");
    let sh = |script: &str| {
        common::run_ok(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(d.scratch()),
        )
    };
    sh("set -e
        mkdir -p src/boot src/etc/ssh src/usr/bin src/var/tmp src/dev src/secret
        echo kernel > src/boot/vmlinuz-6.1.0-1-amd64
        echo n1 > src/etc/hostname
        echo key > src/etc/ssh/ssh_host_ed25519_key
        chmod 600 src/etc/ssh/ssh_host_ed25519_key
        chown 1234:2345 src/etc/hostname
        chmod 640 src/etc/hostname
        chmod 1777 src/var/tmp
        chmod 700 src/secret
        chown 99:98 src/secret
        ln -s ../etc/hostname src/usr/name
        ln src/etc/hostname src/usr/hostname.hard
        mknod src/dev/ttyS0 c 4 64
        mknod src/dev/loop0 b 7 0
        mkfifo src/dev/initctl
        truncate -s 50M src/var/sparse
        printf middle | dd of=src/var/sparse bs=1 seek=20000000 conv=notrunc 2>/dev/null
        head -c 300000 /dev/urandom > src/usr/bin/ping
        chmod 4755 src/usr/bin/ping
        setcap cap_net_raw+ep src/usr/bin/ping
        setfattr -n user.x -v hello src/etc/hostname
        setfattr -n user.dir -v 0x00ff01 src/etc
        touch -h -d '2001-02-03 04:05:06.123456789' src/usr/name
        tar --xattrs --xattrs-include='*' --sparse --numeric-owner --format=posix \
            -C src -cf tree.tar .");
    let tar = d.scratch().join("tree.tar");
    d.cli_ok(&["image", "import", "img", tar.to_str().unwrap()]);

    // A second version, so that `img@1` must pick the first.
    sh(
        "set -e; mkdir -p v2/boot; echo kernel > v2/boot/vmlinuz-6.1.0-1-amd64
        echo two > v2/only-in-2; tar -C v2 -cf v2.tar .",
    );
    let v2 = d.scratch().join("v2.tar");
    d.cli_ok(&["image", "import", "img", v2.to_str().unwrap()]);

    let mnt = d.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    let out = d.cli_ok(&["image", "mount", "img@1", mnt.to_str().unwrap()]);
    assert!(out.starts_with("mounted drover:img@1 on "), "{out}");
    assert!(mounted(&mnt), "{out}");
    assert_eq!(listing(&mnt), listing(&src));
    assert!(!mnt.join("only-in-2").exists());

    // Refusals: a busy directory, a version that does not exist; nothing mounted for them.
    let err = d.cli(&["image", "mount", "img", src.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success() && text.contains("not empty"),
        "{text}"
    );
    let other = d.scratch().join("other");
    std::fs::create_dir(&other).unwrap();
    let _guard2 = Unmount(other.clone());
    let err = d.cli(&["image", "mount", "img@7", other.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success() && text.contains("no version 7"),
        "{text}"
    );
    assert!(!mounted(&other));

    // `umount` ends the background server.
    let pid: u32 = out
        .split("served by process ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out}"));
    common::run_ok(std::process::Command::new("umount").arg(&mnt));
    assert!(common::wait_until(Duration::from_secs(10), || {
        !common::pid_alive(pid)
    }));

    // In the foreground, the latest version; SIGTERM unmounts.
    let mut child = std::process::Command::new(d.bin())
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["image", "mount", "img", "--foreground"])
        .arg(&other)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_until(Duration::from_secs(30), || mounted(
        &other
    )));
    assert_eq!(std::fs::read(other.join("only-in-2")).unwrap(), b"two\n");
    common::signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!mounted(&other));
}
