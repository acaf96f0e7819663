//! Pool members for the qemu tests: `drover serve` processes, each in its own network
//! namespace with a veth to the lab bridge (198.18.0.2, .3, ...), joined into one pool, and
//! what the tests read back from them (`pool status`, blob files, leases).

use super::lab::{Lab, BRIDGE};
use crate::common::wait_until;
use std::path::Path;
use std::time::Duration;

/// How long `drover serve` may take to log that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::common::Member;

/// Member `i` of the lab: namespace `pm{i}`, its `eth0` on the lab bridge with address
/// 198.18.0.{i + 2} (the bridge holds .1), drover logging at `DROVER_LOG` (default info).
pub fn member(lab: &Lab, i: usize) -> Member {
    let mut m = Member::on_bridge(
        &lab.ns,
        BRIDGE,
        "pm",
        "m",
        i,
        &format!("198.18.0.{}", i + 2),
    );
    let log = std::env::var("DROVER_LOG").unwrap_or_else(|_| "info".into());
    m.drover.env("DROVER_LOG", &log);
    m
}

impl Member {
    /// `drover serve --interface eth0` (with `config` when given) in the member's namespace,
    /// until it logs that it is ready.
    pub fn serve(&mut self, config: Option<&str>) {
        match config {
            Some(c) => {
                self.drover.serve_with(Some(&self.ns), "eth0", c);
            }
            None => {
                self.drover
                    .start(Some(&self.ns), &["serve", "--interface", "eth0"]);
                self.drover.wait_log("drover: ready", READY_TIMEOUT);
            }
        }
    }

    /// `drover pool status`, stdout and stderr.
    pub fn status(&self) -> String {
        let out = self.drover.cli(&["pool", "status"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The state `pool status` shows for the member at `ip`.
    pub fn sees(&self, ip: &str) -> Option<String> {
        let addr = format!("{ip}:7946");
        self.status().lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&addr.as_str())).then(|| w.get(2).unwrap_or(&"").to_string())
        })
    }

    /// Blob file names in the state directory.
    pub fn blobs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.drover.state_dir().join("blobs"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `ip -> mac` of every lease in this member's store.
    pub fn leases(&self) -> Vec<(String, String)> {
        self.drover
            .cli_ok(&["lease", "list"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                Some((w.first()?.to_string(), w.get(1)?.to_string()))
            })
            .collect()
    }
}

/// `pool init` on the first member, `pool join FIRST --key-file KEY` on the others (before
/// any of them serves).
pub fn form(members: &[Member]) {
    let first = &members[0];
    first.drover.cli_ok(&["pool", "init"]);
    let key = first.drover.state_dir().join("cluster.key");
    let key = path(&key);
    for x in &members[1..] {
        x.drover
            .cli_ok(&["pool", "join", &first.ip, "--key-file", key]);
    }
}

/// Waits until every member sees every other one alive, all roster rows have settled and
/// the other members have the first member's blob files and the node `node`. Returns
/// whether that happened within `timeout`.
pub fn wait_replicated(members: &[Member], node: &str, timeout: Duration) -> bool {
    let roster = format!("{} member(s) on the roster", members.len());
    wait_until(timeout, || {
        let blobs = members[0].blobs();
        members.iter().all(|x| {
            x.status().contains(&roster)
                && members
                    .iter()
                    .filter(|o| o.ip != x.ip)
                    .all(|o| x.sees(&o.ip).as_deref() == Some("alive"))
        }) && members[1..]
            .iter()
            .all(|x| x.blobs() == blobs && x.drover.cli_ok(&["node", "list"]).contains(node))
    })
}

/// Every member's `pool status`, for failure messages.
pub fn statuses(members: &[Member]) -> String {
    members
        .iter()
        .map(|x| format!("--- {}\n{}", x.ip, x.status()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}
