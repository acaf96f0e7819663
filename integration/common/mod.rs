//! Helpers shared by the tests that run the real binary: prerequisites, temporary directories,
//! network namespaces and a spawned `drover`.
//!
//! Included with `mod common;` from `integration/*.rs` and with
//! `#[path = "../integration/common/mod.rs"] mod common;` from `qemu-tests/`. std only, but
//! for BLAKE3 in [`noise`].
//!
//! Missing prerequisites (root, a client program) make a test **fail** with the command that
//! fixes it; they never make it pass silently.
//!
//! Everything a helper creates is named uniquely (`drv-<tag>-<pid>-<n>`) and removed on drop;
//! namespaces left behind by a crashed earlier run (their pid is dead) are deleted the next time
//! a `Netns` is created. Processes are killed by PID, never by name.

#![allow(dead_code)]

pub mod api;
pub mod bmc;
pub mod nfs4;
pub mod pool;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

/// Panics unless the test runs as root (namespaces, taps and privileged ports need it).
pub fn require_root() {
    if !is_root() {
        panic!("needs root: run as root, e.g. `sudo scripts/test`");
    }
}

pub fn is_root() -> bool {
    // The effective uid is the `Uid:` line's second field; std has no geteuid.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(|uid| uid == "0")
        .unwrap_or(false)
}

/// Panics unless `cmd` is on PATH (or in an sbin directory), naming the Debian package.
pub fn require_cmd(cmd: &str, debian_package: &str) -> PathBuf {
    match find_cmd(cmd) {
        Some(path) => path,
        None => panic!(
            "needs `{cmd}` from Debian package `{debian_package}`: run scripts/setup \
             (or `apt-get install {debian_package}`)"
        ),
    }
}

/// Panics unless `path` exists, naming the command that makes it.
pub fn require_file(path: &Path, how: &str) {
    if !path.exists() {
        panic!("needs {}: {how}", path.display());
    }
}

pub fn find_cmd(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file());
    found
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `drover` binary cargo built for this test crate.
pub fn drover_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_drover") {
        Some(p) => PathBuf::from(p),
        None => panic!("CARGO_BIN_EXE_drover is not set: include this module from a test target"),
    }
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/// Runs `cmd` to completion; panics with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Polls `cond` every 50 ms until it is true or `timeout` has passed; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads a file that another process is writing (lossy UTF-8; empty if it does not exist).
pub fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads `path` from byte `from` on (for incremental log polling); returns the new bytes.
pub fn read_from(path: &Path, from: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    buf
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid`. Errors (already gone) are ignored.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is 'Z'.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`; reaps it.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn sanitize(tag: &str) -> String {
    let s: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    if s.is_empty() {
        "t".into()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A directory under `std::env::temp_dir()`, unique per process and call, removed on drop
/// (kept when `DROVER_KEEP_TEMP` is set, for post-mortems).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "drover-test-{}-{}-{}",
            sanitize(tag),
            std::process::id(),
            next_id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("DROVER_KEEP_TEMP").is_some() {
            eprintln!("kept {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// A network namespace `drv-<tag>-<pid>-<n>` with `lo` up, deleted on drop together with every
/// process started in it.
///
/// IPv6 duplicate-address detection is off in it, so addresses (link-local ones too) are usable
/// at once.
pub struct Netns {
    name: String,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        require_cmd("ip", "iproute2");
        cleanup_stale_namespaces();
        let name = format!("drv-{}-{}-{}", sanitize(tag), std::process::id(), next_id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns {
            name,
            children: Mutex::new(Vec::new()),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets a sysctl inside the namespace (its `net.*` tree is per namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        run_ok(self.cmd("sysctl").arg("-qw").arg(format!("{key}={value}")));
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    /// `ip netns exec` execs the program, so the child's PID is the program's.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Adds a bridge `name` with address `cidr` (e.g. "198.18.0.1/24"), STP off, no forwarding
    /// delay, up. A veth pair (`NAMEk0`/`NAMEk1`) is attached as a permanent port so the bridge
    /// has carrier before the first VM's tap comes up (servers can bind and send at once).
    pub fn add_bridge(&self, name: &str, cidr: &str) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        self.sysctl(&format!("net.ipv6.conf.{name}.accept_dad"), "0");
        self.ip(&["addr", "add", cidr, "dev", name]);
        let (k0, k1) = (format!("{name}k0"), format!("{name}k1"));
        self.ip(&["link", "add", &k0, "type", "veth", "peer", "name", &k1]);
        self.ip(&["link", "set", &k0, "master", name, "up"]);
        self.ip(&["link", "set", &k1, "up"]);
        self.ip(&["link", "set", name, "up"]);
        // A server started right away should find the bridge up with its IPv6 link-local
        // address (RA, multicast routes), as on a machine that booted long ago.
        let ready = wait_until(Duration::from_secs(5), || {
            let text = |args: &[&str]| {
                Command::new("ip")
                    .arg("-n")
                    .arg(&self.name)
                    .args(args)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            let addr = text(&["-6", "addr", "show", "dev", name, "scope", "link"]);
            let link = text(&["-br", "link", "show", "dev", name]);
            addr.contains("inet6 fe80") && !addr.contains("tentative") && link.contains(" UP ")
        });
        if !ready {
            eprintln!(
                "warning: bridge {name} in {} is not up with a link-local address",
                self.name
            );
        }
    }

    /// Adds a tap device `tap` attached to `bridge`, up (it gets carrier when QEMU opens it).
    pub fn add_tap(&self, tap: &str, bridge: &str) {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        self.ip(&["link", "set", tap, "master", bridge, "up"]);
    }

    /// Adds a veth pair: `local` in this namespace, `remote` in `other`; both up, no addresses.
    pub fn add_veth(&self, local: &str, other: &Netns, remote: &str) {
        self.ip(&[
            "link",
            "add",
            local,
            "type",
            "veth",
            "peer",
            "name",
            remote,
            "netns",
            &other.name,
        ]);
        self.ip(&["link", "set", local, "up"]);
        other.ip(&["link", "set", remote, "up"]);
    }

    /// Adds a veth pair whose `local` end is a port of `bridge` here and whose `remote` end
    /// (up, no address) lives in `other`.
    pub fn add_veth_to_bridge(&self, local: &str, bridge: &str, other: &Netns, remote: &str) {
        self.add_veth(local, other, remote);
        self.ip(&["link", "set", local, "master", bridge]);
    }

    /// Adds an address (`cidr`) to `dev` and sets it up.
    pub fn add_addr(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Spawns `cmd` (build it with [`Netns::cmd`]) with stdout+stderr appended to `log`;
    /// it is killed on drop. Returns its PID.
    pub fn spawn_logged(&self, mut cmd: Command, log: &Path) -> u32 {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().expect("dup of a log file descriptor");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        self.spawn(cmd)
    }

    /// Spawns `cmd` as is; it is killed on drop. Returns its PID.
    pub fn spawn(&self, mut cmd: Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        pid
    }

    /// Kills (SIGTERM, then SIGKILL after 2 s) and reaps a process this namespace spawned.
    pub fn kill(&self, pid: u32) {
        let mut children = self.children.lock().unwrap();
        if let Some(i) = children.iter().position(|c| c.id() == pid) {
            let mut child = children.swap_remove(i);
            drop(children);
            stop_child(&mut child, Duration::from_secs(2));
        }
    }

    /// Whether a process this namespace spawned is still running.
    pub fn running(&self, pid: u32) -> bool {
        let mut children = self.children.lock().unwrap();
        match children.iter_mut().find(|c| c.id() == pid) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// PIDs of every process inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        namespace_pids(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for mut child in children {
            stop_child(&mut child, Duration::from_secs(2));
        }
        // Anything else still inside was started from here too (a daemon's own children).
        for pid in namespace_pids(&self.name) {
            signal(pid, "KILL");
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn namespace_pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes `drv-<tag>-<pid>-<n>` namespaces whose creating test process is gone (a crashed or
/// killed earlier run), killing what is still running inside them.
pub fn cleanup_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with("drv-") {
            continue;
        }
        let mut parts = name.rsplit('-');
        let (_n, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        for p in namespace_pids(name) {
            signal(p, "KILL");
        }
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// The drover binary

/// A `drover serve` configuration with every service off but those in `on`, followed by
/// `extra` (TOML for the services that stay on). Tests on loopback use it so that parallel
/// servers never bind the same well-known ports (53, 67, 69, 123).
pub fn config_only(on: &[&str], extra: &str) -> String {
    let mut toml: String = ["dhcp", "tftp", "http", "ra", "dns", "ntp"]
        .iter()
        .filter(|s| !on.contains(s))
        .map(|s| format!("[{s}]\nenabled = false\n"))
        .collect();
    toml.push_str(extra);
    toml
}

/// A `drover` with its own temporary state directory; optionally a running server
/// (`drover --state-dir DIR ARGS...`, inside a namespace or not) whose stdout and stderr go to
/// `DIR/../drover.log`.
///
/// On drop the server is stopped (SIGTERM, then SIGKILL) and, when the test is failing, the
/// tail of its log is printed.
pub struct Drover {
    bin: PathBuf,
    dir: TempDir,
    state: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    envs: Vec<(String, String)>,
}

impl Drover {
    /// A drover with a fresh state directory, not yet serving. Uses the binary cargo built for
    /// the including test crate.
    pub fn new() -> Drover {
        Drover::with_bin(&drover_bin())
    }

    pub fn with_bin(bin: &Path) -> Drover {
        let dir = TempDir::new("drover");
        let state = dir.join("state");
        fs::create_dir_all(&state).expect("create the state dir");
        let log = dir.join("drover.log");
        Drover {
            bin: bin.to_path_buf(),
            dir,
            state,
            log,
            child: None,
            envs: Vec::new(),
        }
    }

    /// Runs `bin` from now on (the server's next start and the CLI), e.g. another release
    /// on the same state directory.
    pub fn set_bin(&mut self, bin: &Path) {
        self.bin = bin.to_path_buf();
    }

    /// Sets an environment variable for the server and CLI runs (e.g. `RUST_LOG`).
    pub fn env(&mut self, key: &str, value: &str) -> &mut Drover {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// A scratch directory next to the state directory, removed with it.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Starts `drover --state-dir DIR ARGS...` (e.g. `["serve", "--interface", "br0"]`) in
    /// `ns` (or the current namespace). Returns its PID.
    pub fn start(&mut self, ns: Option<&Netns>, args: &[&str]) -> u32 {
        assert!(self.child.is_none(), "drover is already running");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = ns.cmd(&self.bin);
                c.arg("--state-dir").arg(&self.state);
                c
            }
            None => {
                let mut c = Command::new(&self.bin);
                c.arg("--state-dir").arg(&self.state);
                c
            }
        };
        cmd.args(args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the drover log");
        let err = out.try_clone().expect("dup of a log file descriptor");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let pid = child.id();
        self.child = Some(child);
        pid
    }

    /// Writes `config` to `drover.toml` in the scratch directory, starts `drover serve
    /// --interface IFACE --config FILE` in `ns` and waits until it is ready. Returns the
    /// config file's path.
    pub fn serve_with(&mut self, ns: Option<&Netns>, iface: &str, config: &str) -> PathBuf {
        let file = self.scratch().join("drover.toml");
        fs::write(&file, config).expect("write the drover config");
        let file_arg = file.to_str().expect("temp paths are UTF-8").to_string();
        self.start(ns, &["serve", "--interface", iface, "--config", &file_arg]);
        self.wait_log("drover: ready", Duration::from_secs(20));
        file
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the server is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Crashes the server: SIGKILL, no chance to flush or close anything; reaps it.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(5));
        }
    }

    /// Runs `drover --state-dir DIR ARGS...` (an admin command) in the current namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--state-dir").arg(&self.state).args(args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// Like [`Drover::cli`], but panics (with the output) unless it succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        if !out.status.success() {
            panic!(
                "`drover --state-dir {} {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
                self.state.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    /// Waits until the log contains `needle`; panics with the log's tail on timeout or when
    /// the server exits first.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    // One last look: it may have logged the needle just before exiting.
                    if self.log().contains(needle) {
                        return;
                    }
                    panic!(
                        "drover exited ({status}) before logging {needle:?}; its log:\n{}",
                        self.log_tail(60)
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "drover did not log {needle:?} within {timeout:?}; last lines of its log:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() && self.log.exists() {
            eprintln!(
                "---- drover log ({}), last 60 lines ----\n{}\n---- end of drover log ----",
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pool members

/// A drover in its own namespace `tag{i}`, whose `eth0` is a veth (`{veth}{i}` on the hub
/// side) on `bridge` in `hub`, with address `ip`/24. The pool tests add their own methods.
/// Fields drop in declaration order: drover is stopped before its namespace goes.
pub struct Member {
    pub drover: Drover,
    pub ns: Netns,
    pub ip: String,
}

impl Member {
    /// Makes `members` one pool (the first creates the key, the others join through it) and
    /// starts each serving on its `eth0` with `config`.
    pub fn form_pool(members: &mut [Member], config: &str) {
        members[0].drover.cli_ok(&["pool", "init"]);
        let key = members[0].drover.state_dir().join("cluster.key");
        let seed = members[0].ip.clone();
        for x in members.iter().skip(1) {
            let key = key.to_str().expect("a UTF-8 temp path");
            x.drover.cli_ok(&["pool", "join", &seed, "--key-file", key]);
        }
        for x in members.iter_mut() {
            x.drover.serve_with(Some(&x.ns), "eth0", config);
        }
    }

    /// Whether `addr` (e.g. a floating service address) is on the member's `eth0`.
    pub fn has_address(&self, addr: &str) -> bool {
        let out = self.ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {addr}/"))
    }

    /// `pool status` and the tail of the log, headed by the address and `note`, for the
    /// message of a failing pool test.
    pub fn pool_report(&self, note: &str) -> String {
        let out = self.drover.cli(&["pool", "status"]);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let log = self.drover.log_tail(15);
        format!("--- {} ({note})\n{text}\nlog:\n{log}", self.ip)
    }

    pub fn on_bridge(
        hub: &Netns,
        bridge: &str,
        tag: &str,
        veth: &str,
        i: usize,
        ip: &str,
    ) -> Member {
        let ns = Netns::new(&format!("{tag}{i}"));
        hub.add_veth_to_bridge(&format!("{veth}{i}"), bridge, &ns, "eth0");
        ns.add_addr("eth0", &format!("{ip}/24"));
        Member {
            drover: Drover::new(),
            ns,
            ip: ip.to_string(),
        }
    }
}

/// Bytes no compressor or chunker can make look alike, the same for the same `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    let mut bytes = vec![0; len];
    hasher
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

/// One raw HTTP/1.1 GET on loopback, binary-safe; returns (status, lowercased head, body).
pub fn http_get_bytes(port: u16, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to drover");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let range = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{range}\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// The bytes of blob `id` in the state directory `state`, read from the files as drover
/// stores them: a manifest (`blobs/ID.chunks`: 16 bytes of magic, the size, the chunk count,
/// then per chunk its BLAKE3 hash and length) and its chunks (`chunks/XX/HASH`), or a whole
/// file (`blobs/ID`). `None` while anything is missing.
pub fn stored_blob(state: &Path, id: &str) -> Option<Vec<u8>> {
    let Ok(manifest) = fs::read(state.join("blobs").join(format!("{id}.chunks"))) else {
        return fs::read(state.join("blobs").join(id)).ok();
    };
    let mut out = Vec::new();
    for entry in manifest.get(28..)?.chunks(36) {
        let hex: String = entry[..32].iter().map(|b| format!("{b:02x}")).collect();
        out.extend(fs::read(state.join("chunks").join(&hex[..2]).join(&hex)).ok()?);
    }
    Some(out)
}
