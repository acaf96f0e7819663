//! An in-memory copy of the store for the servers' hot paths, kept current from the change
//! feed. Protocol cores read a `&View`; they never see heed.

use super::model::{Export, Group, Image, Lease, Mac, Network, Node, PoolMember, PowerState};
use super::{Reader, Store, StoreError, Table};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// How many feed entries one refresh step reads at most.
const REFRESH_BATCH: usize = 4096;

/// A consistent copy of the store as of change `seq`.
#[derive(Debug, Clone, Default)]
pub struct View {
    seq: u64,
    pub nodes: BTreeMap<String, Node>,
    pub groups: BTreeMap<String, Group>,
    pub networks: BTreeMap<String, Network>,
    pub images: BTreeMap<String, Image>,
    pub leases: BTreeMap<Ipv4Addr, Lease>,
    /// Last known chassis power state per node (for the web page and API).
    pub power: BTreeMap<String, PowerState>,
    /// Shared NFSv4 exports by name.
    pub exports: BTreeMap<String, Export>,
    /// The pool's roster (keyed by member id in hex): the DNS zone names every member.
    pub members: BTreeMap<String, PoolMember>,
    node_by_mac: HashMap<Mac, String>,
    lease_by_mac: HashMap<Mac, Ipv4Addr>,
}

impl View {
    /// Reads the whole store.
    pub fn load(store: &Store) -> Result<View, StoreError> {
        store.read(|r| {
            let mut view = View {
                seq: r.last_seq()?,
                ..View::default()
            };
            for n in r.all::<Node>()? {
                view.set_node(&n.name.clone(), Some(n));
            }
            for g in r.all::<Group>()? {
                view.groups.insert(g.name.clone(), g);
            }
            for n in r.all::<Network>()? {
                view.networks.insert(n.name.clone(), n);
            }
            for i in r.all::<Image>()? {
                view.images.insert(i.name.clone(), i);
            }
            for l in r.all::<Lease>()? {
                view.set_lease(l.ip, Some(l));
            }
            for p in r.all::<PowerState>()? {
                view.power.insert(p.node.clone(), p);
            }
            for e in r.all::<Export>()? {
                view.exports.insert(e.name.clone(), e);
            }
            for m in r.all::<PoolMember>()? {
                view.members.insert(PoolMember::key_of(m.id), m);
            }
            Ok(view)
        })
    }

    /// The change sequence number this view reflects.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Applies every change written since this view was made. Returns whether anything
    /// changed.
    pub fn refresh(&mut self, store: &Store) -> Result<bool, StoreError> {
        let start = self.seq;
        loop {
            let more = store.read(|r| {
                let changes = r.changes_since(self.seq, REFRESH_BATCH)?;
                for c in &changes {
                    self.apply(r, c.table, &c.key)?;
                    self.seq = c.seq;
                }
                Ok::<_, StoreError>(changes.len() == REFRESH_BATCH)
            })?;
            if !more {
                return Ok(self.seq != start);
            }
        }
    }

    fn apply(&mut self, r: &Reader<'_>, table: Table, key: &str) -> Result<(), StoreError> {
        match table {
            Table::Nodes => {
                let node = r.get::<Node>(key)?;
                self.set_node(key, node);
            }
            Table::Groups => set(&mut self.groups, key.to_string(), r.get::<Group>(key)?),
            Table::Networks => set(&mut self.networks, key.to_string(), r.get::<Network>(key)?),
            Table::Images => set(&mut self.images, key.to_string(), r.get::<Image>(key)?),
            Table::Leases => {
                if let Ok(ip) = key.parse::<Ipv4Addr>() {
                    let lease = r.get::<Lease>(key)?;
                    self.set_lease(ip, lease);
                }
            }
            Table::Power => set(&mut self.power, key.to_string(), r.get::<PowerState>(key)?),
            Table::Exports => set(&mut self.exports, key.to_string(), r.get::<Export>(key)?),
            Table::Members => set(
                &mut self.members,
                key.to_string(),
                r.get::<PoolMember>(key)?,
            ),
            // Not needed by the servers' hot paths; read from the store where used. BMC
            // credentials stay out of the view: servers other than the power poller have no
            // business with them, and the poller reads them from the store.
            Table::Settings | Table::Users | Table::Tokens | Table::Boots | Table::Bmc => {}
        }
        Ok(())
    }

    fn set_node(&mut self, name: &str, node: Option<Node>) {
        if let Some(old) = self.nodes.remove(name) {
            if self.node_by_mac.get(&old.mac).map(String::as_str) == Some(name) {
                self.node_by_mac.remove(&old.mac);
            }
        }
        if let Some(node) = node {
            self.node_by_mac.insert(node.mac, node.name.clone());
            self.nodes.insert(name.to_string(), node);
        }
    }

    fn set_lease(&mut self, ip: Ipv4Addr, lease: Option<Lease>) {
        if let Some(old) = self.leases.remove(&ip) {
            if self.lease_by_mac.get(&old.mac) == Some(&ip) {
                self.lease_by_mac.remove(&old.mac);
            }
        }
        if let Some(lease) = lease {
            self.lease_by_mac.insert(lease.mac, ip);
            self.leases.insert(ip, lease);
        }
    }

    pub fn node_by_mac(&self, mac: Mac) -> Option<&Node> {
        self.node_by_mac.get(&mac).and_then(|n| self.nodes.get(n))
    }

    /// The newest binding of `mac`, whatever its state.
    pub fn lease_by_mac(&self, mac: Mac) -> Option<&Lease> {
        self.lease_by_mac
            .get(&mac)
            .and_then(|ip| self.leases.get(ip))
    }

    /// The network whose subnet contains `ip`.
    pub fn network_for(&self, ip: Ipv4Addr) -> Option<&Network> {
        self.networks.values().find(|n| n.subnet.contains(ip))
    }

    /// The node that reserved `ip`, if any.
    pub fn node_by_ip(&self, ip: Ipv4Addr) -> Option<&Node> {
        self.nodes.values().find(|n| n.ip == Some(ip))
    }

    /// The image a node boots: its own, else its group's.
    pub fn image_of(&self, node: &Node) -> Option<&Image> {
        let name = node.image.as_deref().or_else(|| {
            node.group
                .as_deref()
                .and_then(|g| self.groups.get(g))
                .and_then(|g| g.image.as_deref())
        })?;
        self.images.get(name)
    }
}

fn set<T>(map: &mut BTreeMap<String, T>, key: String, value: Option<T>) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}
