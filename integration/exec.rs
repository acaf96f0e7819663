//! `drover exec` and `drover cp` through the real binary against real OpenSSH servers: three
//! "nodes" are sshd processes on loopback addresses 127.0.71.11-13 (one port, an address
//! each), whose AuthorizedKeysFile holds the public key that `drover exec --show-key` prints;
//! a fourth node's address has no server (unreachable).
//!
//! `drover node grab`: the sshd runs the command drover sends with a fake root directory in
//! place of `/`; the grabbed image, mounted with `image mount`, has the tree minus run-time
//! state, the node's own files and the exclusions.
//!
//! Needs root (sshd logs in as root) and Debian's openssh-server and openssh-client; fails
//! with a clear message without them.

mod common;

use common::api::ApiServer;
use common::{drover_bin, require_cmd, require_root, run_ok, wait_until};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const ADDRS: [&str; 3] = ["127.0.71.11", "127.0.71.12", "127.0.71.13"];
const DEAD: &str = "127.0.71.14";

struct Lab {
    dir: PathBuf,
    state: PathBuf,
    port: u16,
    sshd: Vec<Child>,
    /// Held while the lab lives: every lab of this process uses the same directory, port
    /// and loopback addresses, so the tests take turns (the guard goes after `drop`'s work).
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// Whose turn it is to run a lab (see [`Lab::_turn`]); a test that failed leaves it usable.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.sshd {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn drover(&self, args: &[&str]) -> Output {
        Command::new(drover_bin())
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run drover")
    }

    fn ok(&self, args: &[&str]) -> String {
        let mut c = Command::new(drover_bin());
        c.arg("--state-dir").arg(&self.state).args(args);
        String::from_utf8(run_ok(&mut c).stdout).expect("utf-8 output")
    }

    /// `drover exec` on the lab's port with short timeouts: (stdout, success).
    fn exec(&self, target: &str, cmd: &[&str]) -> (String, bool) {
        let port = self.port.to_string();
        let mut args = vec![
            "exec",
            "--port",
            &port,
            "--connect-timeout",
            "5",
            target,
            "--",
        ];
        args.extend(cmd);
        let out = self.drover(&args);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.success(),
        )
    }
}

fn setup() -> Lab {
    setup_with("")
}

/// [`setup`] with `extra` lines in each sshd's configuration.
fn setup_with(extra: &str) -> Lab {
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    require_root();
    let sshd = require_cmd("sshd", "openssh-server");
    require_cmd("ssh", "openssh-client");
    require_cmd("ssh-keygen", "openssh-client");
    let dir = std::env::temp_dir().join(format!("drover-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("make the state dir");
    // Privilege separation directory that Debian's sshd insists on.
    std::fs::create_dir_all("/run/sshd").expect("make /run/sshd");
    let port = 22000 + (std::process::id() % 2000) as u16;
    let mut lab = Lab {
        dir: dir.clone(),
        state,
        port,
        sshd: Vec::new(),
        _turn: turn,
    };
    for (i, addr) in ADDRS.iter().chain([&DEAD]).enumerate() {
        let mac = format!("52:54:00:71:00:{:02x}", i + 1);
        lab.ok(&[
            "node",
            "add",
            &format!("e{}", i + 1),
            "--mac",
            &mac,
            "--ip",
            addr,
        ]);
    }
    let public = lab.ok(&["exec", "--show-key"]);
    assert!(
        public.starts_with("ssh-ed25519 "),
        "not a public key: {public:?}"
    );
    assert_eq!(
        lab.ok(&["exec", "--show-key"]),
        public,
        "the key must stay the same"
    );
    let keys = dir.join("authorized_keys");
    std::fs::write(&keys, &public).expect("write authorized_keys");
    let host_key = dir.join("host_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key),
    );
    for addr in ADDRS {
        let config = dir.join(format!("sshd-{addr}.conf"));
        let text = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n{extra}",
            host_key.display(),
            keys.display()
        );
        std::fs::write(&config, text).expect("write sshd config");
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("sshd-{addr}.log"))).expect("log"))
            .spawn()
            .expect("start sshd");
        lab.sshd.push(child);
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect((addr, port)).is_ok()
        });
        assert!(
            up,
            "sshd on {addr}:{port} did not start: see {}",
            dir.display()
        );
    }
    lab
}

fn file_mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn exec_folds_summarises_and_cp_delivers() {
    let lab = setup();

    // Identical output from three nodes: one header naming them as a range, the output once.
    let (out, ok) = lab.exec("e[1-3]", &["echo", "same-everywhere"]);
    assert!(ok, "exec failed:\n{out}");
    assert!(
        out.contains("---------------- e[1-3]\nsame-everywhere\n"),
        "{out}"
    );
    assert_eq!(out.matches("same-everywhere").count(), 1, "{out}");
    assert!(out.contains("ok (3): e[1-3]"), "{out}");
    assert_eq!(file_mode(&lab.state.join("node-ssh-key")), 0o600);

    // One node differs (the address it was reached on): it prints apart.
    let probe = "case $SSH_CONNECTION in *127.0.71.13*) echo beta;; *) echo alpha;; esac";
    let (out, ok) = lab.exec("e1,e2,e3", &[probe]);
    assert!(ok, "{out}");
    assert!(out.contains("---------------- e[1-2]\nalpha\n"), "{out}");
    assert!(out.contains("---------------- e3\nbeta\n"), "{out}");

    // A failing command: its status is summarised, drover exits non-zero.
    let fail = "case $SSH_CONNECTION in *127.0.71.12*) exit 3;; esac; echo fine";
    let (out, ok) = lab.exec("e[1-3]", &[fail]);
    assert!(!ok, "a failed node must make drover fail:\n{out}");
    assert!(out.contains("failed, status 3 (1): e2"), "{out}");
    assert!(out.contains("ok (2): e[1,3]"), "{out}");

    // A node without a server is reported as unreachable, apart from the others.
    let (out, ok) = lab.exec("e[1-4]", &["true"]);
    assert!(!ok, "{out}");
    assert!(out.contains("unreachable: e4:"), "{out}");
    assert!(out.contains("ok (3): e[1-3]"), "{out}");

    // --json for scripts.
    let port = lab.port.to_string();
    let out = lab.drover(&[
        "exec", "--json", "--port", &port, "e1,e4", "--", "echo", "j",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["nodes"][0]["node"], "e1");
    assert_eq!(doc["nodes"][0]["output"], "j\n");
    assert_eq!(doc["nodes"][1]["outcome"]["kind"], "unreachable");

    // cp delivers the bytes (all three nodes write into this one file system, so each gets
    // its own destination; then one copy to all).
    let src = lab.dir.join("payload.bin");
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &bytes).expect("write payload");
    let src_s = src.to_str().expect("utf-8 path");
    for n in 1..=3 {
        let dest = lab.dir.join(format!("got-e{n}"));
        let target = format!("e{n}:{}", dest.display());
        let out = lab.drover(&["cp", "--port", &port, src_s, &target]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(std::fs::read(&dest).expect("copied file"), bytes);
    }
    let all = format!("e[1-3]:{}", lab.dir.join("got-all").display());
    let out = lab.drover(&["cp", "--port", &port, src_s, &all]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ok (3): e[1-3]"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(lab.dir.join("got-all")).expect("copied"),
        bytes
    );
}

/// The node key's public half is served on the boot path for the agent (404 before there is
/// one); the API's settings never show its private half.
#[test]
fn node_key_is_served_and_its_private_half_kept() {
    require_cmd("ssh-keygen", "openssh-client");
    let server = ApiServer::start();
    let before = server.request("GET", "/node-key.pub", &[], None);
    assert_eq!(before.status, 404, "{}", before.body);
    let public = server.d.cli_ok(&["exec", "--show-key"]);
    let served = server.request("GET", "/node-key.pub", &[], None);
    assert_eq!(served.status, 200);
    assert_eq!(served.body, public);
    let bearer = format!("Bearer {}", server.token("t"));
    let auth = [("Authorization", bearer.as_str())];
    for path in ["/api/v1/settings/node-ssh-key", "/api/v1/settings"] {
        let r = server.request("GET", path, &auth, None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.contains(public.trim()), "{path}: {}", r.body);
        assert!(
            !r.body.contains("PRIVATE KEY"),
            "{path} shows the private half"
        );
    }
}

#[test]
fn node_grab_imports_a_nodes_root_without_its_own_files() {
    require_cmd("setfattr", "attr");
    common::require_file(
        Path::new("/dev/fuse"),
        "load the fuse module (`modprobe fuse`)",
    );
    let base = std::env::temp_dir().join(format!("drover-grab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    // The "node": drover's `tar ... -C / ...` runs with the fake root in place of `/`.
    let wrapper = base.join("as-node.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec sh -c \"$(printf '%s' \"$SSH_ORIGINAL_COMMAND\" | \
             sed 's| -C / | -C {} |')\"\n",
            root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sh = |script: &str| run_ok(Command::new("sh").arg("-c").arg(script).current_dir(&root));
    sh("set -e
        mkdir -p boot etc/ssh etc/drover root/.ssh proc/1 sys dev run tmp var/cache/apt usr/bin
        echo kernel > boot/vmlinuz-6.1.0-1-amd64
        echo e1 > etc/hostname; echo '127.0.0.1 e1' > etc/hosts; echo k > etc/ssh/ssh_host_ed25519_key
        echo keep > etc/ssh/sshd_config; echo NODE=e1 > etc/drover/node.env
        echo key > root/.ssh/authorized_keys; echo 1 > proc/1/stat; echo x > tmp/junk
        echo deb > var/cache/apt/pkgcache.bin; echo tool > usr/bin/tool
        chown 1234:2345 usr/bin/tool; chmod 4750 usr/bin/tool
        setfattr -n user.kept -v yes usr/bin/tool");
    let lab = setup_with(&format!("ForceCommand {}\n", wrapper.display()));
    let port = lab.port.to_string();
    let out = lab.ok(&[
        "node",
        "grab",
        "e1",
        "grabbed",
        "--port",
        &port,
        "--exclude",
        "/var/cache/apt",
    ]);
    assert!(out.contains("added image grabbed"), "{out}");
    let history = lab.ok(&["image", "history", "grabbed"]);
    assert!(history.contains("grab e1"), "{history}");

    let mnt = base.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = lab.ok(&["image", "mount", "grabbed", mnt.to_str().unwrap()]);
    let listing = Command::new("sh")
        .arg("-c")
        .arg("find . -printf '%p %m %U %G\\n' | LC_ALL=C sort; getfattr -d usr/bin/tool")
        .current_dir(&mnt)
        .output();
    let _ = Command::new("umount").arg(&mnt).status();
    let listing = String::from_utf8_lossy(&listing.expect("run find").stdout).into_owned();
    let _ = std::fs::remove_dir_all(&base);
    assert!(out.starts_with("mounted drover:grabbed@1"), "{out}");
    for present in [
        "./usr/bin/tool 4750 1234 2345",
        "./etc/ssh/sshd_config ",
        "./proc ",
        "./tmp ",
        "./var/cache ",
        "./boot/vmlinuz-6.1.0-1-amd64 ",
        "user.kept=\"yes\"",
    ] {
        assert!(
            listing.contains(present),
            "{present:?} missing from\n{listing}"
        );
    }
    for absent in [
        "./etc/hostname",
        "./etc/hosts",
        "./etc/ssh/ssh_host_ed25519_key",
        "./etc/drover/node.env",
        "./root/.ssh/authorized_keys",
        "./proc/1",
        "./tmp/junk",
        "./var/cache/apt",
    ] {
        assert!(
            !listing.contains(&format!("{absent} ")),
            "{absent} in\n{listing}"
        );
    }
}
