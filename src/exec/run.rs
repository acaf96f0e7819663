//! Runs the system ssh client (or scp) on many nodes at once: a fan-out of worker threads, one
//! child process per node, its standard output and error gathered through one socket, killed at
//! the per-node timeout.
//!
//! It does NOT interpret results (see [`super::core`]) nor pick nodes (see [`super::hosts`]).

use super::core::{NodeResult, Outcome};
use std::io::Read as _;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Output kept per node; the rest is read and dropped (a runaway `yes` must not eat memory).
pub const MAX_OUTPUT: usize = 1 << 20;
/// How often a running child is checked against its deadline.
const POLL: Duration = Duration::from_millis(20);

/// A node to reach.
#[derive(Debug, Clone)]
pub struct Host {
    pub node: String,
    /// `None`: no reserved address and no bound lease.
    pub addr: Option<Ipv4Addr>,
}

/// How the ssh client is run.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// The node key's private half (`super::key::write_private`).
    pub identity: PathBuf,
    pub port: u16,
    pub user: String,
    pub connect_timeout: Duration,
    /// `Some(file)`: pin each node's host key at first use in this file, by node name;
    /// `None`: no pinning (see the README: a diskless node makes a new host key each boot).
    pub known_hosts: Option<PathBuf>,
}

/// What to do on each node.
#[derive(Debug, Clone, Copy)]
pub enum Task<'a> {
    /// Run this command line (ssh joins the words with spaces, as a remote shell reads them).
    Exec(&'a [String]),
    /// Copy these local files to this path on the node.
    Copy { files: &'a [PathBuf], dest: &'a str },
    /// Run this command line with `input` on its standard input (`files sync` feeds each
    /// node its own script to `sh -s`).
    Feed {
        command: &'a [String],
        input: &'a [u8],
    },
}

/// Runs `task` on every host, `fanout` at a time; results come back in host order.
pub fn run_all(
    hosts: &[Host],
    ssh: &Ssh,
    task: Task<'_>,
    fanout: usize,
    timeout: Duration,
) -> Vec<NodeResult> {
    let jobs: Vec<(&Host, Task<'_>)> = hosts.iter().map(|h| (h, task)).collect();
    run_each(&jobs, ssh, fanout, timeout)
}

/// [`run_all`] with a task per host.
pub fn run_each(
    jobs: &[(&Host, Task<'_>)],
    ssh: &Ssh,
    fanout: usize,
    timeout: Duration,
) -> Vec<NodeResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<NodeResult>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..fanout.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((host, task)) = jobs.get(i) else {
                    break;
                };
                let r = run_one(host, ssh, *task, timeout);
                // A worker that panicked poisons the lock; with panic = "abort" there is none.
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// The ssh (or scp) command for `task` on one node, stdin closed.
pub fn command(addr: Ipv4Addr, node: &str, ssh: &Ssh, task: Task<'_>) -> Command {
    let (mut c, port_flag) = match task {
        Task::Exec(_) | Task::Feed { .. } => (Command::new("ssh"), "-p"),
        Task::Copy { .. } => (Command::new("scp"), "-P"),
    };
    c.arg("-i").arg(&ssh.identity);
    c.args([port_flag, &ssh.port.to_string()]);
    let connect = format!("ConnectTimeout={}", ssh.connect_timeout.as_secs().max(1));
    let mut opts = vec![
        "BatchMode=yes".to_string(),
        "IdentitiesOnly=yes".into(),
        "LogLevel=ERROR".into(),
        connect,
    ];
    match &ssh.known_hosts {
        Some(file) => opts.extend([
            "StrictHostKeyChecking=accept-new".into(),
            format!("UserKnownHostsFile={}", file.display()),
            format!("HostKeyAlias={node}"),
        ]),
        None => opts.extend([
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
        ]),
    }
    for o in opts {
        c.arg("-o").arg(o);
    }
    match task {
        Task::Exec(words) | Task::Feed { command: words, .. } => {
            c.arg(format!("{}@{addr}", ssh.user)).arg("--").args(words);
        }
        Task::Copy { files, dest } => {
            c.arg("-q").arg("--").args(files);
            c.arg(format!("{}@{addr}:{dest}", ssh.user));
        }
    }
    c.stdin(match task {
        Task::Feed { .. } => Stdio::piped(),
        _ => Stdio::null(),
    });
    c
}

fn run_one(host: &Host, ssh: &Ssh, task: Task<'_>, timeout: Duration) -> NodeResult {
    let result = |output: String, outcome| NodeResult {
        node: host.node.clone(),
        output,
        outcome,
    };
    let unreachable = |reason: String| result(String::new(), Outcome::Unreachable { reason });
    let Some(addr) = host.addr else {
        return unreachable("no address (no reserved address, no bound lease)".into());
    };
    // A socket pair rather than a pipe: std's pipe is newer than the crate's MSRV, and
    // `unsafe` (libc::pipe) is not allowed here. Both of the child's outputs go to one end.
    let ends = UnixStream::pair().and_then(|(r, w)| {
        let w2 = w.try_clone()?;
        Ok((r, w, w2))
    });
    let (mut reader, writer, writer2) = match ends {
        Ok(e) => e,
        Err(e) => return unreachable(format!("making a socket pair: {e}")),
    };
    let mut cmd = command(addr, &host.node, ssh, task);
    cmd.stdout(OwnedFd::from(writer))
        .stderr(OwnedFd::from(writer2));
    let spawned = cmd.spawn();
    // The command holds the write ends: drop it so the reader sees EOF at the exit.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return unreachable(format!("starting ssh (Debian openssh-client): {e}")),
    };
    let feeder = match (task, child.stdin.take()) {
        (Task::Feed { input, .. }, Some(mut stdin)) => {
            let input = input.to_vec();
            // A node that stops reading makes the write fail, and the exit status tells.
            Some(std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut stdin, &input);
            }))
        }
        _ => None,
    };
    let drain = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            let room = MAX_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(Outcome::TimedOut);
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                break Err(Outcome::Unreachable {
                    reason: format!("waiting for ssh: {e}"),
                })
            }
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let bytes = drain.join().unwrap_or_default();
    let output = String::from_utf8_lossy(&bytes).into_owned();
    let outcome = match status {
        Ok(st) => {
            let last = output.lines().rev().find(|l| !l.trim().is_empty());
            Outcome::from_status(st.code(), last.unwrap_or("").trim())
        }
        Err(o) => o,
    };
    result(output, outcome)
}
