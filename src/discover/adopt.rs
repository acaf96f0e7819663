//! Discovery's store operations: recording a machine's report, adopting it as a node (by
//! hand or by a naming rule), board replacement, and the rules themselves. Each operation is
//! one write transaction, like every `crate::admin` operation, whose errors it shares.
//!
//! A report is accepted only from the address drover leased to the reporting MAC
//! ([`lease_allows`]); the HTTP shell checks that before calling [`report`]. A waiting
//! machine is matched against the rules on every report and whenever a rule is added: by
//! the LLDP neighbours in its inventory, then by option 82 of the lease it reported from.
//! When a rule names a node that exists with another MAC, the new board takes the node over
//! (its MAC changes; the old board's record keeps the history).
//!
//! Not here: rule parsing and matching (`super::rule`, pure), HTTP and the CLI.

pub use super::inventory::DiscoveredList;
use super::inventory::{duplicates, Adoption, Discovered, Inventory};
use super::rule::{Location, NamingRule, Rule};
use crate::admin::AdminError;
use crate::store::model::{Lease, Mac, Node};
use crate::store::{Store, Writer};
use std::net::Ipv4Addr;

/// Whether a report from `from` for `mac` is allowed: `lease` (the lease on `from`) is held
/// by `mac` at unix time `now`.
pub fn lease_allows(lease: Option<&Lease>, mac: Mac, from: Ipv4Addr, now: u64) -> bool {
    lease.is_some_and(|l| l.ip == from && l.mac == mac && l.holds(now))
}

/// Where a machine stands after a report or a poll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "node")]
pub enum Standing {
    /// Not adopted yet.
    Waiting,
    /// Adopted as this node: reboot to boot as it.
    Adopted(String),
    /// Never reported.
    Unknown,
}

/// Records `mac`'s report from `from` at `now_ms` and adopts it if a rule names it.
pub fn report(
    store: &Store,
    mac: Mac,
    from: Ipv4Addr,
    now_ms: u64,
    inventory: Inventory,
) -> Result<Standing, AdminError> {
    store.write(|w| {
        let mut d = match w.get::<Discovered>(&mac.to_string())? {
            Some(old) => Discovered {
                ip: from,
                last_ms: now_ms,
                inventory,
                ..old
            },
            None => Discovered {
                mac,
                ip: from,
                first_ms: now_ms,
                last_ms: now_ms,
                inventory,
                adopted: None,
            },
        };
        // A machine adopted earlier and booted into discovery again (its node was removed)
        // waits afresh.
        if d.adopted.is_some() && w.owner(&format!("mac/{mac}"))?.is_none() {
            d.adopted = None;
        }
        if d.adopted.is_none() {
            let rules = w.all::<NamingRule>()?;
            if let Some((rule, name)) = match_rules(w, &rules, &d)? {
                return adopt_in(w, d, &name, rule, now_ms);
            }
        }
        w.put(&d)?;
        Ok(standing(&d))
    })
}

fn standing(d: &Discovered) -> Standing {
    match &d.adopted {
        Some(a) => Standing::Adopted(a.node.clone()),
        None => Standing::Waiting,
    }
}

/// Where `mac` stands (the agent's poll).
pub fn standing_of(store: &Store, mac: Mac) -> Result<Standing, AdminError> {
    let found = store.read(|r| r.get::<Discovered>(&mac.to_string()))?;
    Ok(match found {
        Some(d) => standing(&d),
        None => Standing::Unknown,
    })
}

/// The first rule that names machine `d`, and the name.
fn match_rules<'r>(
    w: &Writer<'_, '_>,
    rules: &'r [NamingRule],
    d: &Discovered,
) -> Result<Option<(&'r NamingRule, String)>, AdminError> {
    let mut places: Vec<Location> = d.inventory.neighbours().map(Location::from_lldp).collect();
    if let Some(lease) = w.get::<Lease>(&d.ip.to_string())? {
        if lease.mac == d.mac {
            places.extend(
                lease
                    .relay
                    .agent_info
                    .as_deref()
                    .and_then(Location::from_relay),
            );
        }
    }
    for stored in rules {
        // Stored rules were parsed when added; one that no longer parses is skipped.
        let Ok(rule) = Rule::parse(&stored.rule) else {
            continue;
        };
        if let Some(name) = places.iter().find_map(|p| rule.name_for(p)) {
            return Ok(Some((stored, name)));
        }
    }
    Ok(None)
}

/// Makes waiting machine `d` node `name`, with the rule's group and image when a rule
/// named it. A rule's name that exists with another MAC is taken over (board replacement).
fn adopt_in(
    w: &mut Writer<'_, '_>,
    mut d: Discovered,
    name: &str,
    rule: &NamingRule,
    now_ms: u64,
) -> Result<Standing, AdminError> {
    let replaced = match w.get::<Node>(name)? {
        Some(mut node) => {
            let old = node.mac;
            node.mac = d.mac;
            // Drop the old MAC's claim first: the node record is replaced in one put.
            crate::admin::check_node(w, &node)?;
            w.put(&node)?;
            Some(old).filter(|&m| m != d.mac)
        }
        None => {
            let node = new_node(name, d.mac, rule.image.clone(), rule.group.clone());
            crate::admin::add_nodes_in(w, &[node])?;
            None
        }
    };
    d.adopted = Some(Adoption {
        node: name.to_string(),
        at_ms: now_ms,
        rule: Some(rule.rule.clone()),
        replaced,
    });
    w.put(&d)?;
    Ok(standing(&d))
}

fn new_node(name: &str, mac: Mac, image: Option<String>, group: Option<String>) -> Node {
    Node {
        name: name.to_string(),
        mac,
        ip: None,
        image,
        group,
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    }
}

/// `node adopt MAC NAME`: makes waiting machine `mac` a new node `name`.
pub fn adopt(
    store: &Store,
    mac: Mac,
    name: &str,
    image: Option<String>,
    group: Option<String>,
    now_ms: u64,
) -> Result<Node, AdminError> {
    store.write(|w| {
        let unknown = || AdminError::Unknown {
            kind: "discovered machine",
            name: mac.to_string(),
        };
        let mut d = w.get::<Discovered>(&mac.to_string())?.ok_or_else(unknown)?;
        if d.adopted.is_some() && w.owner(&format!("mac/{mac}"))?.is_some() {
            return Err(unknown());
        }
        let node = new_node(name, mac, image, group);
        crate::admin::add_nodes_in(w, std::slice::from_ref(&node))?;
        d.adopted = Some(Adoption {
            node: name.to_string(),
            at_ms: now_ms,
            rule: None,
            replaced: None,
        });
        w.put(&d)?;
        Ok(node)
    })
}

/// The waiting machines (all reported ones with `all`) and the duplicates among them.
pub fn discovered(store: &Store, all: bool) -> Result<DiscoveredList, AdminError> {
    let (machines, nodes) =
        store.read(|r| Ok::<_, AdminError>((r.all::<Discovered>()?, r.all::<Node>()?)))?;
    let waiting: Vec<&Discovered> = machines.iter().filter(|d| d.adopted.is_none()).collect();
    // Claimants: waiting machines and the boards nodes have now (not the boards they had);
    // a node's MAC is claimed by its board already.
    let current: Vec<&Discovered> = machines
        .iter()
        .filter(|d| match &d.adopted {
            None => true,
            Some(a) => nodes.iter().any(|n| n.name == a.node && n.mac == d.mac),
        })
        .collect();
    let duplicates = duplicates(
        current.iter().map(|d| (d.mac, &d.inventory)),
        nodes
            .iter()
            .filter(|n| !current.iter().any(|d| d.mac == n.mac))
            .map(|n| (n.name.as_str(), n.mac)),
    );
    let machines = match all {
        true => machines,
        false => waiting.into_iter().cloned().collect(),
    };
    Ok(DiscoveredList {
        machines,
        duplicates,
    })
}

/// What adding a rule did: the rule as stored and the nodes it adopted at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleAdded {
    pub rule: NamingRule,
    pub adopted: Vec<String>,
}

/// `rule add`: stores the rule (in canonical form) and adopts the waiting machines it names.
pub fn add_rule(
    store: &Store,
    text: &str,
    group: Option<String>,
    image: Option<String>,
    now_ms: u64,
) -> Result<RuleAdded, AdminError> {
    let rule = Rule::parse(text)?;
    if let Some(g) = &group {
        crate::admin::check_name(g)?;
    }
    store.write(|w| {
        if let Some(i) = &image {
            if w.get::<crate::store::model::Image>(i)?.is_none() {
                return Err(AdminError::Unknown {
                    kind: "image",
                    name: i.clone(),
                });
            }
        }
        for other in w.all::<NamingRule>()? {
            if Rule::parse(&other.rule).is_ok_and(|o| o.overlaps(&rule)) {
                return Err(AdminError::RuleOverlap {
                    rule: rule.to_string(),
                    other: other.rule,
                });
            }
        }
        let stored = NamingRule {
            rule: rule.to_string(),
            group,
            image,
        };
        w.put(&stored)?;
        let mut adopted = Vec::new();
        let rules = [stored.clone()];
        for d in w.all::<Discovered>()? {
            if d.adopted.is_some() {
                continue;
            }
            if let Some((r, name)) = match_rules(w, &rules, &d)? {
                adopt_in(w, d, &name, r, now_ms)?;
                adopted.push(name);
            }
        }
        Ok(RuleAdded {
            rule: stored,
            adopted,
        })
    })
}

pub fn rules(store: &Store) -> Result<Vec<NamingRule>, AdminError> {
    store.read(|r| Ok(r.all::<NamingRule>()?))
}

/// `rule remove`: the rule as added or in any spelling that parses to it.
pub fn remove_rule(store: &Store, text: &str) -> Result<(), AdminError> {
    let key = Rule::parse(text).map_or_else(|_| text.trim().to_string(), |r| r.to_string());
    store.write(|w| {
        if w.delete::<NamingRule>(&key)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "rule",
                name: key.clone(),
            })
        }
    })
}

/// The setting that turns discovery on: the name of the image (with a kernel and drover's
/// initramfs) that unknown machines boot to report themselves.
pub const DISCOVERY_IMAGE: &str = "discovery-image";

/// The image unknown machines boot into discovery (name, kernel command line), when the
/// setting names one that has a kernel and an initramfs; `None` leaves them waiting for
/// `node add` as before.
pub fn discovery_image(store: &Store) -> Result<Option<(String, String)>, AdminError> {
    store.read(|r| {
        let Some(setting) = r.get::<crate::store::model::Setting>(DISCOVERY_IMAGE)? else {
            return Ok(None);
        };
        let Some(name) = setting.value.as_str() else {
            return Ok(None);
        };
        Ok(r.get::<crate::store::model::Image>(name)?
            .filter(|i| i.initramfs.is_some())
            .map(|i| (i.name, i.cmdline)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::inventory::{Dmi, Nic};
    use crate::discover::lldp::Neighbour;
    use crate::store::model::{LeaseState, RelayInfo};

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!(
            "drover-adopt-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir).unwrap()
    }

    fn mac(last: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, last])
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    /// A machine seen by LLDP on `port` of `rack1-sw1` (none for port 0).
    fn inventory(m: Mac, port: u32, serial: &str) -> Inventory {
        Inventory {
            cpus: 4,
            memory_kib: 4 << 20,
            dmi: Dmi {
                serial: Some(serial.into()),
                ..Dmi::default()
            },
            nics: vec![Nic {
                name: "eth0".into(),
                mac: m,
                speed_mbps: Some(1000),
                lldp: (port > 0).then(|| Neighbour {
                    chassis_id: "00:1b:21:3c:4d:5e".into(),
                    port_id: format!("swp{port}"),
                    port_description: None,
                    system_name: Some("rack1-sw1".into()),
                    ttl: 120,
                }),
            }],
            ..Inventory::default()
        }
    }

    fn lease(m: Mac, at: Ipv4Addr, agent_info: Option<&str>) -> Lease {
        Lease {
            ip: at,
            mac: m,
            client_id: None,
            hostname: None,
            state: LeaseState::Bound,
            start: 0,
            expires: 100,
            network: "lab".into(),
            relay: RelayInfo {
                giaddr: agent_info.map(|_| ip(1)),
                agent_info: agent_info.map(str::to_string),
            },
        }
    }

    #[test]
    fn only_the_lease_holder_may_report() {
        let l = lease(mac(1), ip(10), None);
        assert!(lease_allows(Some(&l), mac(1), ip(10), 50));
        assert!(!lease_allows(Some(&l), mac(2), ip(10), 50));
        assert!(!lease_allows(Some(&l), mac(1), ip(11), 50));
        assert!(!lease_allows(Some(&l), mac(1), ip(10), 100));
        assert!(!lease_allows(None, mac(1), ip(10), 50));
    }

    #[test]
    fn a_machine_waits_then_a_rule_adopts_it_and_a_new_board_takes_over() {
        let s = store();
        let report_of = |m: Mac, port, serial: &str, t| {
            report(&s, m, ip(m.0[5]), t, inventory(m, port, serial)).unwrap()
        };
        assert_eq!(standing_of(&s, mac(1)).unwrap(), Standing::Unknown);
        assert_eq!(report_of(mac(1), 12, "SN1", 1), Standing::Waiting);
        assert_eq!(report_of(mac(2), 0, "SN1", 2), Standing::Waiting);
        let list = discovered(&s, false).unwrap();
        assert_eq!(list.machines.len(), 2);
        assert_eq!(list.duplicates.len(), 1, "{:?}", list.duplicates);
        assert_eq!(list.duplicates[0].what, "DMI serial");

        // Adding the rule adopts the machine on port 12 at once, with the rule's group.
        let added = add_rule(
            &s,
            "rack1-sw1 port 1-40 -> node[001-040]",
            Some("r1".into()),
            None,
            3,
        )
        .unwrap();
        assert_eq!(added.adopted, vec!["node012".to_string()]);
        assert_eq!(
            standing_of(&s, mac(1)).unwrap(),
            Standing::Adopted("node012".into())
        );
        let node = s.read(|r| r.get::<Node>("node012")).unwrap().unwrap();
        assert_eq!((node.mac, node.group.as_deref()), (mac(1), Some("r1")));
        let list = discovered(&s, false).unwrap();
        assert_eq!(list.machines.len(), 1);
        // The adopted board still shares its serial; its MAC is its node's, not a duplicate.
        assert_eq!(list.duplicates.len(), 1, "{:?}", list.duplicates);
        assert_eq!(list.duplicates[0].what, "DMI serial");

        // A new board on port 12 takes the name; the old MAC is kept in the history.
        assert_eq!(
            report_of(mac(3), 12, "SN3", 4),
            Standing::Adopted("node012".into())
        );
        let node = s.read(|r| r.get::<Node>("node012")).unwrap().unwrap();
        assert_eq!(node.mac, mac(3));
        let all = discovered(&s, true).unwrap().machines;
        let new = all.iter().find(|d| d.mac == mac(3)).unwrap();
        assert_eq!(new.adopted.as_ref().unwrap().replaced, Some(mac(1)));
        assert!(all.iter().any(|d| d.mac == mac(1) && d.adopted.is_some()));

        // Overlapping and malformed rules are refused; removal takes any spelling.
        let overlap = add_rule(&s, "RACK1-SW1 port 40-41 -> x[1-2]", None, None, 5);
        assert!(
            matches!(overlap, Err(AdminError::RuleOverlap { .. })),
            "{overlap:?}"
        );
        assert!(matches!(
            add_rule(&s, "sw port 1", None, None, 5),
            Err(AdminError::Rule(_))
        ));
        remove_rule(&s, "rack1-sw1  port 1-40 ->  node[001-040]").unwrap();
        assert!(rules(&s).unwrap().is_empty());
        assert!(matches!(
            remove_rule(&s, "nope"),
            Err(AdminError::Unknown { .. })
        ));
    }

    #[test]
    fn option_82_of_the_lease_names_a_machine_and_adopt_by_hand() {
        let s = store();
        // Circuit-id "eth0/1/7", remote-id "rack2-sw1".
        let info = "0108657468302f312f3702097261636b322d737731";
        s.write(|w| w.put(&lease(mac(7), ip(7), Some(info))))
            .unwrap();
        add_rule(&s, "rack2-sw1 port 1-8 -> r2n[1-8]", None, None, 1).unwrap();
        let st = report(&s, mac(7), ip(7), 2, inventory(mac(7), 0, "SN7")).unwrap();
        assert_eq!(st, Standing::Adopted("r2n7".into()));

        assert_eq!(
            report(&s, mac(8), ip(8), 3, inventory(mac(8), 0, "SN8")).unwrap(),
            Standing::Waiting
        );
        let taken = adopt(&s, mac(8), "r2n7", None, None, 4);
        assert!(matches!(taken, Err(AdminError::Exists { .. })), "{taken:?}");
        let unknown = adopt(&s, mac(9), "x", None, None, 4);
        assert!(
            matches!(unknown, Err(AdminError::Unknown { .. })),
            "{unknown:?}"
        );
        let node = adopt(&s, mac(8), "login1", None, Some("logins".into()), 4).unwrap();
        assert_eq!(node.mac, mac(8));
        assert_eq!(
            standing_of(&s, mac(8)).unwrap(),
            Standing::Adopted("login1".into())
        );
        assert!(discovered(&s, false).unwrap().machines.is_empty());
    }
}
