//! A machine's inventory as the discovery agent reports it: CPU, memory, disks, NICs (with
//! link speed and LLDP neighbour) and DMI identity, parsed from the text of `/proc` and
//! `/sys` files, plus the checks drover applies to a reported inventory and the duplicate
//! report over all waiting machines.
//!
//! Pure: the agent's shell reads the files and passes their text in; the server passes the
//! decoded JSON to [`Inventory::check`]. Not here: reading files, the BMC's address (which
//! needs the IPMI device and is not gathered yet), or deciding what to do with duplicates
//! (they are reported, never merged).

use super::lldp::Neighbour;
use crate::store::model::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most disks or NICs one inventory may list, and the longest string in it: an agent is
/// unauthenticated, so what it sends is bounded.
pub const MAX_DEVICES: usize = 64;
pub const MAX_TEXT: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default)]
    pub cpu_model: Option<String>,
    /// Logical CPUs (`processor` entries of /proc/cpuinfo).
    pub cpus: u32,
    pub memory_kib: u64,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub dmi: Dmi,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub serial: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub name: String,
    pub mac: Mac,
    /// Link speed in Mb/s; `None` when the link is down or the driver does not say.
    #[serde(default)]
    pub speed_mbps: Option<u32>,
    #[serde(default)]
    pub lldp: Option<Neighbour>,
}

/// SMBIOS identity from `/sys/class/dmi/id`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dmi {
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
}

/// Why a reported inventory was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("more than {MAX_DEVICES} {0}")]
    TooMany(&'static str),
    #[error("a {0} is longer than {MAX_TEXT} bytes or holds control characters")]
    Text(&'static str),
}

impl Inventory {
    /// Refuses inventories larger than drover keeps or with strings unfit to show.
    pub fn check(&self) -> Result<(), InventoryError> {
        if self.disks.len() > MAX_DEVICES {
            return Err(InventoryError::TooMany("disks"));
        }
        if self.nics.len() > MAX_DEVICES {
            return Err(InventoryError::TooMany("NICs"));
        }
        let texts = [
            ("CPU model", self.cpu_model.as_deref()),
            ("DMI vendor", self.dmi.vendor.as_deref()),
            ("DMI product", self.dmi.product.as_deref()),
            ("DMI serial", self.dmi.serial.as_deref()),
        ]
        .into_iter()
        .chain(self.disks.iter().flat_map(|d| {
            [
                ("disk name", Some(d.name.as_str())),
                ("disk serial", d.serial.as_deref()),
            ]
        }))
        .chain(self.nics.iter().flat_map(|n| {
            let lldp = n.lldp.as_ref();
            [
                ("NIC name", Some(n.name.as_str())),
                ("LLDP chassis id", lldp.map(|l| l.chassis_id.as_str())),
                ("LLDP port id", lldp.map(|l| l.port_id.as_str())),
                (
                    "LLDP port description",
                    lldp.and_then(|l| l.port_description.as_deref()),
                ),
                (
                    "LLDP system name",
                    lldp.and_then(|l| l.system_name.as_deref()),
                ),
            ]
        }));
        for (what, text) in texts {
            if text.is_some_and(|t| t.len() > MAX_TEXT || t.chars().any(char::is_control)) {
                return Err(InventoryError::Text(what));
            }
        }
        Ok(())
    }

    /// The LLDP neighbours seen, NIC by NIC.
    pub fn neighbours(&self) -> impl Iterator<Item = &Neighbour> {
        self.nics.iter().filter_map(|n| n.lldp.as_ref())
    }
}

/// A machine that booted into discovery: one row of the store's `discovered` table, keyed by
/// the MAC it booted from. Kept after adoption as the history of which boards a node had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    pub mac: Mac,
    /// The address it reported from (the one drover leased it).
    pub ip: std::net::Ipv4Addr,
    /// Unix milliseconds of its first and latest report.
    pub first_ms: u64,
    pub last_ms: u64,
    pub inventory: Inventory,
    /// Set once it became a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<Adoption>,
}

/// What `node discovered` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiscoveredList {
    /// Waiting machines (with `all`, adopted ones too: the boards nodes had).
    pub machines: Vec<Discovered>,
    /// Serials and MACs claimed by more than one machine (waiting, or a node's current
    /// board) or node.
    pub duplicates: Vec<Duplicate>,
}

/// How a waiting machine became a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adoption {
    pub node: String,
    pub at_ms: u64,
    /// The naming rule that named it; `None` when adopted by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The node's MAC before, when this board replaced another in the same place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Mac>,
}

/// Model name and logical CPU count from `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> (Option<String>, u32) {
    let mut model = None;
    let mut count = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => count += 1,
            "model name" if model.is_none() => model = sysfs_text(value),
            _ => {}
        }
    }
    (model, count)
}

/// `MemTotal` from `/proc/meminfo`, in KiB.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// A one-line sysfs value: trimmed, `None` when empty or unfit to show.
pub fn sysfs_text(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t.len() <= MAX_TEXT && !t.chars().any(char::is_control))
        .then(|| t.to_string())
}

/// A disk from `/sys/block/NAME/size` (512-byte sectors) and its serial file's text;
/// `None` for devices that are not disks (loop, ram, zram, device-mapper, optical) or
/// empty ones.
pub fn disk(name: &str, size_sectors: &str, serial: Option<&str>) -> Option<Disk> {
    let virtual_device = ["loop", "ram", "zram", "dm-", "sr", "md", "nbd"]
        .iter()
        .any(|p| name.starts_with(p));
    let sectors: u64 = size_sectors.trim().parse().ok()?;
    (!virtual_device && sectors > 0).then(|| Disk {
        name: name.to_string(),
        size_bytes: sectors.saturating_mul(512),
        serial: serial.and_then(sysfs_text),
    })
}

/// A NIC from `/sys/class/net/NAME/address` and `speed` (Mb/s; -1 or unreadable when the
/// link is down); `None` for the loopback and NICs without an Ethernet address.
pub fn nic(name: &str, address: &str, speed: Option<&str>) -> Option<Nic> {
    let mac: Mac = address.trim().parse().ok()?;
    (name != "lo" && mac != Mac([0; 6])).then(|| Nic {
        name: name.to_string(),
        mac,
        speed_mbps: speed
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&s| s > 0),
        lldp: None,
    })
}

/// One thing two or more machines claim, for the admin to sort out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    /// What is shared: "DMI serial", "disk serial" or "NIC MAC".
    pub what: String,
    pub value: String,
    /// The machines (boot MACs) and nodes (names) that claim it.
    pub claimed_by: Vec<String>,
}

/// Serials and MACs that more than one claimant reports: `machines` are the waiting machines
/// (boot MAC, inventory), `nodes` the known nodes (name, MAC).
pub fn duplicates<'a>(
    machines: impl IntoIterator<Item = (Mac, &'a Inventory)>,
    nodes: impl IntoIterator<Item = (&'a str, Mac)>,
) -> Vec<Duplicate> {
    let mut seen: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
    let mut claim = |what: &'static str, value: String, who: String| {
        let list = seen.entry((what, value)).or_default();
        if !list.contains(&who) {
            list.push(who);
        }
    };
    for (mac, inv) in machines {
        let who = mac.to_string();
        if let Some(serial) = &inv.dmi.serial {
            claim("DMI serial", serial.clone(), who.clone());
        }
        for d in &inv.disks {
            if let Some(serial) = &d.serial {
                claim("disk serial", serial.clone(), who.clone());
            }
        }
        for n in &inv.nics {
            claim("NIC MAC", n.mac.to_string(), who.clone());
        }
    }
    for (name, mac) in nodes {
        claim("NIC MAC", mac.to_string(), format!("node {name}"));
    }
    seen.into_iter()
        .filter(|(_, who)| who.len() > 1)
        .map(|((what, value), claimed_by)| Duplicate {
            what: what.to_string(),
            value,
            claimed_by,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
        model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nflags\t\t: fpu vme\n\n\
        processor\t: 1\nvendor_id\t: GenuineIntel\n\
        model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n\n";

    const MEMINFO: &str = "MemTotal:        2030852 kB\nMemFree:         1807724 kB\n";

    #[test]
    fn proc_files() {
        let (model, cpus) = parse_cpuinfo(CPUINFO);
        assert_eq!(
            model.as_deref(),
            Some("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz")
        );
        assert_eq!(cpus, 2);
        assert_eq!(parse_cpuinfo("garbage\n"), (None, 0));
        assert_eq!(parse_meminfo(MEMINFO), Some(2030852));
        assert_eq!(parse_meminfo("MemTotal: lots\n"), None);
    }

    #[test]
    fn sys_files() {
        let d = disk("vda", "16777216\n", Some("drv-0001 \n")).unwrap();
        assert_eq!(d.size_bytes, 8 << 30);
        assert_eq!(d.serial.as_deref(), Some("drv-0001"));
        assert_eq!(disk("sda", "100\n", Some("\n")).unwrap().serial, None);
        assert_eq!(disk("loop0", "100\n", None), None);
        assert_eq!(disk("sr0", "0\n", None), None);
        assert_eq!(disk("sdb", "0\n", None), None);
        let n = nic("eth0", "52:54:00:12:34:56\n", Some("1000\n")).unwrap();
        assert_eq!(n.speed_mbps, Some(1000));
        assert_eq!(
            nic("eth1", "52:54:00:12:34:57\n", Some("-1\n"))
                .unwrap()
                .speed_mbps,
            None
        );
        assert_eq!(nic("lo", "00:00:00:00:00:00\n", None), None);
        assert_eq!(nic("ib0", "80:00:00:48:fe:80:00:00:00:00\n", None), None);
        assert_eq!(sysfs_text("QEMU\n").as_deref(), Some("QEMU"));
        assert_eq!(sysfs_text(" \n"), None);
    }

    #[test]
    fn check_bounds_what_an_agent_sends() {
        let mut inv = Inventory {
            cpus: 2,
            memory_kib: 1 << 20,
            ..Inventory::default()
        };
        assert_eq!(inv.check(), Ok(()));
        inv.dmi.serial = Some("a\nforged log line".into());
        assert_eq!(inv.check(), Err(InventoryError::Text("DMI serial")));
        inv.dmi.serial = None;
        inv.disks = vec![disk("sda", "8", None).unwrap(); MAX_DEVICES + 1];
        assert_eq!(inv.check(), Err(InventoryError::TooMany("disks")));
    }

    #[test]
    fn duplicates_are_reported_by_what_they_share() {
        let a: Mac = "52:54:00:00:00:01".parse().unwrap();
        let b: Mac = "52:54:00:00:00:02".parse().unwrap();
        let inv = |serial: &str, nic_mac: Mac| Inventory {
            dmi: Dmi {
                serial: Some(serial.into()),
                ..Dmi::default()
            },
            nics: vec![nic("eth0", &nic_mac.to_string(), None).unwrap()],
            ..Inventory::default()
        };
        let (ia, ib) = (inv("SN1", a), inv("SN1", b));
        let dups = duplicates([(a, &ia), (b, &ib)], [("node7", b)]);
        assert_eq!(
            dups,
            vec![
                Duplicate {
                    what: "DMI serial".into(),
                    value: "SN1".into(),
                    claimed_by: vec![a.to_string(), b.to_string()],
                },
                Duplicate {
                    what: "NIC MAC".into(),
                    value: b.to_string(),
                    claimed_by: vec![b.to_string(), "node node7".into()],
                },
            ]
        );
        let ic = inv("SN2", a);
        assert!(duplicates([(a, &ic)], []).is_empty());
    }
}
