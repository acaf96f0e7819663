//! The agent's service mode (`drover.service=1`, `drover node set NODE --service`): the node
//! stays in drover's initramfs for repair. After the network and the root (RAM or NFS, on
//! `/newroot` as for a normal boot) it
//!
//! 1. binds the root read-only on [`IMAGE`] and mounts devpts (for interactive sessions);
//! 2. links busybox's applets into `/bin` and writes what sshd needs ([`prepare`]): users,
//!    `sshd_config`, the node's host key (`{server}/boot/{mac}/host-key`, the same on every
//!    boot, see `crate::service::hostkey`) and the pool's node key in root's
//!    `authorized_keys`;
//! 3. runs `sshd -D -e` from the service initrd (`crate::service::tools`), restarting it if
//!    it dies, and reaps orphaned processes (it is PID 1);
//! 4. asks `{server}/boot/{mac}/service` every [`POLL`]; once that says `off`
//!    (`--no-service`, or the node was removed), it syncs and reboots into the image.
//!
//! Disks are visible under `/dev` as far as the kernel has drivers for them: the initramfs
//! carries NIC and NFS modules only. Not here: a password login or console shell, storage
//! drivers, leaving service mode without a reboot.

use super::cmdline::{BootParams, ServerUrl};
use super::{http, Console, NEWROOT};
use crate::net::sys;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// Where the image is, read-only.
pub const IMAGE: &str = "/image";
/// Between two looks at the boot script.
const POLL: Duration = Duration::from_secs(5);
/// Largest host key or boot script read.
const MAX_BODY: u64 = 64 * 1024;
const HOST_KEY: &str = "etc/ssh/ssh_host_ed25519_key";
/// How long (in 100 ms steps) sshd may take to listen before the node says it is ready.
const SSHD_WAIT_STEPS: u32 = 100;

/// sshd's configuration: keys only, root by key, no PAM (the initramfs has no PAM stack), the
/// privilege-separation directory in `/run`, and SFTP in-process (scp and `drover cp` use it).
pub const SSHD_CONFIG: &str = "\
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile .ssh/authorized_keys
PidFile /run/sshd.pid
PrintMotd no
UseDNS no
Subsystem sftp internal-sftp
";

/// Stays in service mode until the server says it is off; reboots then. Never returns.
pub(super) fn run(con: &mut Console, p: &BootParams, server: &ServerUrl) -> ! {
    show_image(con);
    let _ = fs::create_dir_all("/dev/pts");
    if let Err(e) = sys::mount("devpts", "/dev/pts", Some("devpts"), 0, Some("mode=0620")) {
        con.say(format_args!("service: devpts: {e} (no terminals for ssh)"));
    }
    match Command::new(crate::service::tools::BUSYBOX)
        .args(["--install", "-s", "/bin"])
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => con.say(format_args!("service: busybox --install: {s}")),
        Err(e) => con.say(format_args!(
            "service: no busybox ({e}): was the service initrd loaded?"
        )),
    }
    let host_key = match fetch(
        server,
        &format!("{}/boot/{}/host-key", server.prefix, p.mac),
    ) {
        Ok(k) => Some(k),
        Err(e) => {
            con.say(format_args!("service: no host key from {server}: {e}"));
            None
        }
    };
    if let Err(e) = prepare(Path::new("/"), host_key.as_deref()) {
        con.say(format_args!("service: writing sshd's files: {e}"));
    }
    match super::write_node_key(server, Path::new("/")) {
        Ok(true) => con.say("service: /root/.ssh/authorized_keys has the pool's node key"),
        Ok(false) => con.say("service: the pool has no node key yet: nobody can log in"),
        Err(e) => con.say(format_args!("service: authorized_keys not written: {e}")),
    }
    let mut sshd = start_sshd(con);
    // "ready" promises a login: only once sshd listens (it binds a moment after it starts).
    let listening = (0..SSHD_WAIT_STEPS).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, 22)).is_ok()
    });
    if !listening {
        con.say("service: sshd is not listening on port 22 yet");
    }
    let ready = format!(
        "service mode: ssh on {}:22, image read-only at {IMAGE}",
        p.ip
    );
    super::report(con, server, p, "ready", &ready);
    con.say(format_args!("{ready}; waiting for --no-service"));
    loop {
        std::thread::sleep(POLL);
        let reaped = sys::reap_children();
        if sshd.as_ref().is_some_and(|c| reaped.contains(&c.id())) {
            con.say("service: sshd exited; starting it again");
            sshd = start_sshd(con);
        }
        if still_in_service(p) == Some(false) {
            con.say("service mode is off; rebooting into the image");
            super::report(con, server, p, "agent", "service mode left; rebooting");
            if let Some(c) = &sshd {
                let _ = sys::terminate(c.id());
            }
            sys::sync();
            let e = sys::reboot();
            con.say(format_args!("reboot: {e}"));
            super::halt_forever();
        }
    }
}

/// Binds the root on /image read-only (bind, then remount the bind read-only).
fn show_image(con: &mut Console) {
    let bind = || -> io::Result<()> {
        fs::create_dir_all(IMAGE)?;
        sys::mount(NEWROOT, IMAGE, None, libc::MS_BIND | libc::MS_REC, None)?;
        sys::mount(
            "none",
            IMAGE,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            None,
        )
    };
    match bind() {
        Ok(()) => con.say(format_args!("service: the image is at {IMAGE}, read-only")),
        Err(e) => con.say(format_args!("service: the image at {IMAGE}: {e}")),
    }
}

/// Writes what sshd needs under `root`: `/etc/passwd` and `/etc/group` (root with busybox's
/// shell, the `sshd` privilege-separation user), `sshd_config`, the host key (when there is
/// one), `/run/sshd`, and root's home. Root's `authorized_keys` is the caller's.
pub fn prepare(root: &Path, host_key: Option<&str>) -> io::Result<()> {
    let write = |rel: &str, text: &str, mode: u32| -> io::Result<()> {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, text)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
    };
    write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n",
        0o644,
    )?;
    write("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    write("etc/ssh/sshd_config", SSHD_CONFIG, 0o644)?;
    if let Some(key) = host_key {
        write(HOST_KEY, key, 0o600)?;
    }
    for (dir, mode) in [("run/sshd", 0o755), ("root", 0o700), ("tmp", 0o1777)] {
        let path = root.join(dir);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn start_sshd(con: &mut Console) -> Option<Child> {
    match Command::new(crate::service::tools::SSHD)
        .args(["-D", "-e", "-f", "/etc/ssh/sshd_config"])
        .spawn()
    {
        Ok(c) => {
            con.say(format_args!("service: sshd running (pid {})", c.id()));
            Some(c)
        }
        Err(e) => {
            con.say(format_args!(
                "service: cannot start {}: {e} (was the service initrd loaded?)",
                crate::service::tools::SSHD
            ));
            None
        }
    }
}

/// Whether the node is still in service mode; `None`: no server answered.
fn still_in_service(p: &BootParams) -> Option<bool> {
    p.servers.iter().find_map(|server| {
        let answer = fetch(server, &format!("{}/boot/{}/service", server.prefix, p.mac)).ok()?;
        match answer.trim() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        }
    })
}

/// A small text body from `server`.
fn fetch(server: &ServerUrl, path: &str) -> Result<String, String> {
    let body = http::get(server, path).map_err(|e| e.to_string())?;
    if body.length() > MAX_BODY {
        return Err(format!("{} bytes is too long", body.length()));
    }
    let mut text = String::new();
    body.take(MAX_BODY)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}
