//! Service mode through the real binary, short of a VM (qemu-tests/service.rs boots one):
//! `node set --service/--no-service` shows in `node show` and in the boot script (the flag and
//! the service initrd), the per-node endpoints refuse an address that holds no lease of the
//! node, and the service initrd that drover serves is complete: unpacked into an empty
//! directory with the files the agent writes (`agent::service::prepare`, the node's derived
//! host key, the node key in authorized_keys), its sshd runs chrooted there with nothing of
//! the host's libraries, and `drover exec --strict-host-keys` logs in, runs busybox's shell
//! and pins the node's derived host key; `drover files sync` then writes a passwd set with a new
//! user and the node's host key through the same sshd.
//!
//! Needs root (chroot, a private mount namespace for /dev), Debian's openssh-server,
//! openssh-client, busybox-static and curl; fails with a clear message without them.

mod common;

use common::api::{free_port, ApiServer};
use common::{require_cmd, require_file, require_root, run_ok, wait_until};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MAC: &str = "52:54:00:72:00:11";
const ADDR: &str = "127.0.72.11";

fn write_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("rootfs/sbin")).unwrap();
    std::fs::write(dir.join("rootfs/sbin/init"), "#!/bin/sh\necho image-init\n").unwrap();
    std::fs::write(dir.join("rootfs/MARKER"), "from-the-image\n").unwrap();
    std::fs::write(dir.join("vmlinuz"), "not a kernel").unwrap();
}

#[test]
fn service_mode_switches_and_its_initrd_runs_sshd() {
    require_root();
    require_cmd("sshd", "openssh-server");
    require_cmd("ssh", "openssh-client");
    require_cmd("curl", "curl");
    require_cmd("chroot", "coreutils");
    require_cmd("unshare", "util-linux");
    require_file(
        Path::new(drover::service::tools::BUSYBOX),
        "install Debian's busybox-static",
    );
    let api = ApiServer::start();
    let d = &api.d;
    let scratch = d.state_dir().join("scratch");
    write_rootfs(&scratch);
    let p = |rel: &str| scratch.join(rel).to_str().unwrap().to_string();
    d.cli_ok(&[
        "image",
        "add",
        "svc",
        "--kernel",
        &p("vmlinuz"),
        "--rootfs",
        &p("rootfs"),
    ]);
    d.cli_ok(&[
        "node", "add", "sv1", "--mac", MAC, "--ip", ADDR, "--image", "svc",
    ]);
    assert!(d.cli_ok(&["node", "show", "sv1"]).contains("mode:  normal"));
    let script = || api.request("GET", &format!("/boot/{MAC}"), &[], None).body;
    // The boot path reads nodes from its view, refreshed from the store every 250 ms.
    let known = wait_until(Duration::from_secs(10), || {
        script().contains("drover.node=sv1")
    });
    assert!(known, "{}", script());
    assert!(!script().contains("drover.service=1"), "{}", script());

    d.cli_ok(&["node", "set", "sv1", "--service"]);
    assert!(d
        .cli_ok(&["node", "show", "sv1"])
        .contains("mode:  service"));
    let s = script();
    assert!(
        s.contains(" drover.service=1 ") && s.contains("initrd=tools.cpio"),
        "{s}"
    );
    assert!(s.contains("/service/tools.cpio || goto failed"), "{s}");
    // The host key and the mode go only to the node's own leased address.
    for path in ["host-key", "service"] {
        let r = api.request("GET", &format!("/boot/{MAC}/{path}"), &[], None);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    d.cli_ok(&["node", "set", "sv1", "--no-service"]);
    assert!(d.cli_ok(&["node", "show", "sv1"]).contains("mode:  normal"));
    assert!(!script().contains("drover.service=1"));
    d.cli_ok(&["node", "set", "sv1", "--service"]);

    // The service initrd as the boot path serves it, unpacked into an empty root.
    let root = scratch.join("node");
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let cpio = scratch.join("tools.cpio");
    run_ok(
        Command::new("curl")
            .args(["-sSf", "-o"])
            .arg(&cpio)
            .arg(format!("{}/service/tools.cpio", api.url())),
    );
    // (run_ok gives no standard input: the archive comes through the shell)
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "cd {} && {} cpio -id < {}",
        root.display(),
        drover::service::tools::BUSYBOX,
        cpio.display()
    )));
    run_ok(
        Command::new("chroot")
            .arg(&root)
            .args(["/bin/busybox", "--install", "-s", "/bin"]),
    );

    // What the agent writes: a first (failing) exec puts the node key's private half on disk,
    // the secret the node's host key is derived from.
    let _ = d.cli(&[
        "exec",
        "--port",
        "1",
        "--connect-timeout",
        "1",
        "sv1",
        "--",
        "true",
    ]);
    let secret = std::fs::read(d.state_dir().join("node-ssh-key")).expect("the node key file");
    let host = drover::service::hostkey::derive(&secret, "sv1");
    drover::agent::service::prepare(&root, Some(&host.private)).expect("prepare");
    let public = d.cli_ok(&["exec", "--show-key"]);
    let keys = drover::agent::files::authorized_keys("", &public).expect("a node key");
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(root.join("root/.ssh/authorized_keys"), keys).unwrap();

    let port = free_port();
    let script = format!(
        "mount --bind /dev {root}/dev && exec chroot {root} /usr/sbin/sshd -D -e -p {port} \
         -o ListenAddress={ADDR}",
        root = root.display()
    );
    let log = scratch.join("sshd.log");
    let mut sshd = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start sshd");
    let up = wait_until(Duration::from_secs(10), || {
        TcpStream::connect((ADDR, port)).is_ok()
    });
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !up {
        let _ = sshd.kill();
        panic!("the service initrd's sshd did not start:\n{}", show_log());
    }
    let port_text = port.to_string();
    let ssh = |cmd: &[&str], rest: &[&str]| {
        let opts = [
            "--strict-host-keys",
            "--port",
            &port_text,
            "--connect-timeout",
            "5",
        ];
        d.cli(&[cmd, &opts, &["sv1"], rest].concat())
    };
    let out = ssh(&["exec"], &["--", "echo shell=$0; ls /usr/sbin; id -u"]);
    // `files sync` through the same sshd: a user added to the passwd set is there at once.
    let passwd = scratch.join("passwd");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n\
         alice:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    let passwd = passwd.to_str().unwrap();
    d.cli_ok(&[
        "files",
        "add",
        "users",
        "--path",
        "/etc/passwd",
        "--from",
        passwd,
    ]);
    d.cli_ok(&["files", "assign", "users", "--node", "sv1"]);
    let synced = ssh(&["files", "sync"], &[]);
    let _ = sshd.kill();
    let _ = sshd.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        show_log()
    );
    assert!(
        text.contains("shell=sh\n") && text.contains("sshd\n0\n"),
        "{text}"
    );
    let pinned = std::fs::read_to_string(d.state_dir().join("node-known-hosts")).unwrap();
    let key_b64 = host.public.split_whitespace().nth(1).unwrap();
    assert!(pinned.contains(key_b64), "{pinned}\nwant {}", host.public);

    // Synced: the set's passwd (with its mode), and the node's derived host key, unchanged.
    let said = String::from_utf8_lossy(&synced.stdout);
    assert!(
        synced.status.success() && said.contains("drover: 3 files written"),
        "{said}{}\nsshd:\n{}",
        String::from_utf8_lossy(&synced.stderr),
        show_log()
    );
    let got = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(got.contains("\nalice:x:1000:1000:"), "{got}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root.join("etc/passwd"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o644);
    let key = std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    assert_eq!(key, format!("{}\n", host.public));
}
