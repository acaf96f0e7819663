//! What the pool tests under DHCP load watch: every member's leases and who holds the
//! floating service address, snapshotted together.

use super::{Member, Netns};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// perfdhcp in `client` (its `eth0` needs an address of its own on the segment): 20 new
/// exchanges and 5 renewals a second among 100 clients, for `secs`, its output in `log`.
/// Its PID.
pub fn perfdhcp(client: &Netns, log: &Path, secs: u32) -> u32 {
    let mut load = client.cmd("perfdhcp");
    let secs = secs.to_string();
    load.args([
        "-4", "-l", "eth0", "-r", "20", "-f", "5", "-R", "100", "-p", &secs,
    ]);
    client.spawn_logged(load, log)
}

/// The active leases in a member's store: address -> MAC.
pub fn active_leases(m: &Member) -> HashMap<String, String> {
    let out = m.drover.cli(&["lease", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] != "expired" && f[2] != "released")
                .then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

/// What the snapshots found: leases are keyed by address and merge last-writer-wins, so a
/// duplicate would not survive a heal; it must be caught while the members disagree.
pub struct Findings {
    /// The pool's floating service address.
    pub service_address: &'static str,
    pub snapshots: u64,
    /// (address, MACs) bound to two clients at once.
    pub duplicates: Vec<(String, Vec<String>)>,
    /// Snapshots in which two members held the service address.
    pub two_holders: u64,
}

impl Findings {
    pub fn new(service_address: &'static str) -> Findings {
        Findings {
            service_address,
            snapshots: 0,
            duplicates: Vec::new(),
            two_holders: 0,
        }
    }

    pub fn holders(&self, m: &[Member]) -> usize {
        m.iter()
            .filter(|x| x.has_address(self.service_address))
            .count()
    }

    pub fn snapshot(&mut self, m: &[Member]) {
        self.snapshots += 1;
        let mut bound: HashMap<String, Vec<String>> = HashMap::new();
        for x in m {
            for (ip, mac) in active_leases(x) {
                let macs = bound.entry(ip).or_default();
                if !macs.contains(&mac) {
                    macs.push(mac);
                }
            }
        }
        self.duplicates
            .extend(bound.into_iter().filter(|(_, macs)| macs.len() > 1));
        if self.holders(m) > 1 {
            self.two_holders += 1;
        }
    }

    /// Snapshots every second for `secs`.
    pub fn watch(&mut self, m: &[Member], secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            self.snapshot(m);
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The most active leases any member has now.
    pub fn most_leases(m: &[Member]) -> usize {
        m.iter().map(|x| active_leases(x).len()).max().unwrap_or(0)
    }

    /// The end of a test under perfdhcp load (stopped by the caller; its output in
    /// `perf_log`): a last snapshot, then no address bound twice, never two holders, and more
    /// than 20 leases (the load got through). `report` describes the members for a failure.
    pub fn conclude(&mut self, m: &[Member], perf_log: &Path, report: impl Fn() -> String) {
        self.snapshot(m);
        let perf = std::fs::read_to_string(perf_log).unwrap_or_default();
        eprintln!(
            "{} snapshots; perfdhcp:\n{}",
            self.snapshots,
            super::tail(&perf, 25)
        );
        assert!(
            self.duplicates.is_empty(),
            "addresses bound to two clients at once: {:?}\n{}",
            self.duplicates,
            report()
        );
        assert_eq!(
            self.two_holders, 0,
            "snapshots with two holders of the address"
        );
        let leases = Findings::most_leases(m);
        assert!(
            leases > 20,
            "only {leases} leases: the load did not get through\nperfdhcp:\n{perf}"
        );
    }
}
