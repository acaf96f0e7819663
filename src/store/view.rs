//! An in-memory copy of the store for the servers' hot paths, kept current from the change
//! feed. Protocol cores read a `&View`; they never see heed. In a server, one
//! [`SharedView`] owns the view and hands services snapshots of it.
//!
//! Besides the tables, a view keeps indexes for the DHCP hot path, built as records are
//! loaded and updated with each change (never per packet): nodes and leases by MAC, reserved
//! addresses, the set of taken addresses (reserved or with a lease record, see
//! [`AddrSet`]) and leases by expiry. They follow changes made through [`View::load`] and
//! [`View::refresh`] only: code that fills the public maps directly (tests of other
//! services) gets no DHCP indexes.

use super::addrs::AddrSet;
use super::model::{
    Export, Group, Image, Lease, LeaseState, Mac, Network, Node, PoolMember, PowerState,
};
use super::{Reader, Store, StoreError, Table};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, RwLock};

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
    /// How many nodes reserve each address.
    reserved: HashMap<Ipv4Addr, u32>,
    /// Addresses reserved by a node or with a lease record.
    taken: AddrSet,
    /// Leases by the time they stop holding ([`expiry_key`]).
    by_expiry: BTreeSet<(u64, Ipv4Addr)>,
}

/// When a lease stops holding: [`Lease::holds`] is false at `now` iff this is `<= now`.
fn expiry_key(l: &Lease) -> (u64, Ipv4Addr) {
    let t = if l.state == LeaseState::Released {
        0
    } else {
        l.expires
    };
    (t, l.ip)
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
        match self.changes(store)? {
            Some(changes) => Ok(self.apply(changes)),
            None => {
                *self = View::load(store)?;
                Ok(true)
            }
        }
    }

    /// Reads every change written since this view was made (in steps of [`REFRESH_BATCH`]
    /// feed entries, one read transaction each), without touching the view. `None`: the
    /// feed was compacted past this view (some of its changes are gone), so only a reload
    /// brings it up to date.
    fn changes(&self, store: &Store) -> Result<Option<Changes>, StoreError> {
        let mut out = Changes {
            from: self.seq,
            seq: self.seq,
            records: Vec::new(),
        };
        loop {
            let more = store.read(|r| {
                if r.feed_floor()? > out.seq {
                    return Ok(None);
                }
                let feed = r.changes_since(out.seq, REFRESH_BATCH)?;
                for c in &feed {
                    if let Some(record) = Changed::read(r, c.table, &c.key)? {
                        out.records.push(record);
                    }
                    out.seq = c.seq;
                }
                Ok::<_, StoreError>(Some(feed.len() == REFRESH_BATCH))
            })?;
            match more {
                None => return Ok(None),
                Some(false) => return Ok(Some(out)),
                Some(true) => {}
            }
        }
    }

    /// Applies `changes` read from this view (or from an equal copy). Returns whether
    /// anything changed.
    fn apply(&mut self, changes: Changes) -> bool {
        // Changes read from another sequence number would leave a gap or go back in time.
        assert_eq!(
            changes.from, self.seq,
            "changes applied to the view they were read from"
        );
        for c in changes.records {
            match c {
                Changed::Node(key, node) => self.set_node(&key, node),
                Changed::Group(key, g) => set(&mut self.groups, key, g),
                Changed::Network(key, n) => set(&mut self.networks, key, n),
                Changed::Image(key, i) => set(&mut self.images, key, i),
                Changed::Lease(ip, lease) => self.set_lease(ip, lease),
                Changed::Power(key, p) => set(&mut self.power, key, p),
                Changed::Export(key, e) => set(&mut self.exports, key, e),
                Changed::Member(key, m) => set(&mut self.members, key, m),
            }
        }
        let changed = changes.seq != self.seq;
        self.seq = changes.seq;
        changed
    }

    fn set_node(&mut self, name: &str, node: Option<Node>) {
        if let Some(old) = self.nodes.remove(name) {
            if self.node_by_mac.get(&old.mac).map(String::as_str) == Some(name) {
                self.node_by_mac.remove(&old.mac);
            }
            if let Some(ip) = old.ip {
                if let Some(n) = self.reserved.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.reserved.remove(&ip);
                    }
                }
                self.retake(ip);
            }
        }
        if let Some(node) = node {
            if let Some(ip) = node.ip {
                *self.reserved.entry(ip).or_default() += 1;
                self.taken.insert(ip);
            }
            self.node_by_mac.insert(node.mac, node.name.clone());
            self.nodes.insert(name.to_string(), node);
        }
    }

    fn set_lease(&mut self, ip: Ipv4Addr, lease: Option<Lease>) {
        if let Some(old) = self.leases.remove(&ip) {
            if self.lease_by_mac.get(&old.mac) == Some(&ip) {
                self.lease_by_mac.remove(&old.mac);
            }
            self.by_expiry.remove(&expiry_key(&old));
        }
        if let Some(lease) = lease {
            self.lease_by_mac.insert(lease.mac, ip);
            self.by_expiry.insert(expiry_key(&lease));
            self.leases.insert(ip, lease);
        }
        self.retake(ip);
    }

    /// Puts `ip` in or out of the taken set after its reservations or lease changed.
    fn retake(&mut self, ip: Ipv4Addr) {
        if self.reserved.contains_key(&ip) || self.leases.contains_key(&ip) {
            self.taken.insert(ip);
        } else {
            self.taken.remove(ip);
        }
    }

    /// Whether some node reserves `ip`.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.reserved.contains_key(&ip)
    }

    /// The lowest address at or above `from` that no node reserves and no lease record
    /// names (whatever its state).
    pub fn next_untaken(&self, from: Ipv4Addr) -> Option<Ipv4Addr> {
        self.taken.next_absent(from)
    }

    /// The leases that do not hold at `now` (expired or released), soonest-ended first.
    pub fn leases_ended(&self, now: u64) -> impl Iterator<Item = &Lease> {
        self.by_expiry
            .range(..=(now, Ipv4Addr::BROADCAST))
            .filter_map(|(_, ip)| self.leases.get(ip))
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

    /// The image a node boots as of the version it is pinned to: the node's own pin, else
    /// its group's when the image is the group's; the latest when neither pins. Returns the
    /// pin with the image. `None` when the node has no image or the pinned version is gone
    /// (the image was removed and added again): booting other files than the pinned ones
    /// would defeat the pin.
    /// Borrowed when the node follows the latest (the boot path and the NFS server ask on
    /// every request; an image's history is not copied for them).
    pub fn boot_image_of(&self, node: &Node) -> Option<(Cow<'_, Image>, Option<u32>)> {
        let group = node.group.as_deref().and_then(|g| self.groups.get(g));
        let pin = match (&node.image, node.image_version) {
            (_, Some(n)) => Some(n),
            (Some(_), None) => None,
            (None, None) => group.and_then(|g| g.image_version),
        };
        let image = self.image_of(node)?;
        match pin {
            None => Some((Cow::Borrowed(image), None)),
            Some(n) => image.at_version(n).map(|i| (Cow::Owned(i), Some(n))),
        }
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

/// What changed in the store after a view's sequence number, read but not yet applied
/// ([`View::changes`], then [`View::apply`]): the store read happens before, not while, a
/// shared view is locked for the update.
#[derive(Debug)]
struct Changes {
    /// The view sequence number the changes were read after.
    from: u64,
    /// The last change read.
    seq: u64,
    records: Vec<Changed>,
}

impl Changes {
    /// Whether the feed had nothing new.
    fn is_empty(&self) -> bool {
        self.seq == self.from
    }
}

/// A record of a table the view holds, as it is now (`None`: deleted).
#[derive(Debug)]
enum Changed {
    Node(String, Option<Node>),
    Group(String, Option<Group>),
    Network(String, Option<Network>),
    Image(String, Option<Image>),
    Lease(Ipv4Addr, Option<Lease>),
    Power(String, Option<PowerState>),
    Export(String, Option<Export>),
    Member(String, Option<PoolMember>),
}

impl Changed {
    /// The current record behind a feed entry; `None` for tables the view does not hold.
    fn read(r: &Reader<'_>, table: Table, key: &str) -> Result<Option<Changed>, StoreError> {
        let k = key.to_string();
        Ok(Some(match table {
            Table::Nodes => Changed::Node(k, r.get(key)?),
            Table::Groups => Changed::Group(k, r.get(key)?),
            Table::Networks => Changed::Network(k, r.get(key)?),
            Table::Images => Changed::Image(k, r.get(key)?),
            Table::Leases => match key.parse::<Ipv4Addr>() {
                Ok(ip) => Changed::Lease(ip, r.get(key)?),
                Err(_) => return Ok(None),
            },
            Table::Power => Changed::Power(k, r.get(key)?),
            Table::Exports => Changed::Export(k, r.get(key)?),
            Table::Members => Changed::Member(k, r.get(key)?),
            // Not needed by the servers' hot paths; read from the store where used. BMC
            // credentials stay out of the view: servers other than the power poller have no
            // business with them, and the poller reads them from the store.
            Table::Settings
            | Table::Users
            | Table::Tokens
            | Table::Boots
            | Table::Bmc
            | Table::Audit
            | Table::Discovered
            | Table::Rules
            | Table::Files => return Ok(None),
        }))
    }
}

/// The one owner of a server's [`View`]: every service asks it for a snapshot, and whoever
/// needs the view current (the server's refresher on a timer, the DHCP shell right after it
/// committed a lease) asks it to refresh.
///
/// A snapshot is an `Arc<View>`: consistent, cheap to take, and never changed under its
/// holder, so a service may keep one through a long piece of work (an NFS image unpack)
/// without holding anyone up. A refresh reads the feed without a lock, then updates the
/// view in place when no snapshot is out (readers wait for an in-memory update only) and
/// otherwise builds the next view beside the old one. Refreshes run one at a time.
///
/// Not here: when to refresh (the callers decide) and anything async (the store is sync).
pub struct SharedView {
    store: Arc<Store>,
    current: RwLock<Arc<View>>,
    refreshing: Mutex<()>,
}

impl SharedView {
    /// Loads the whole store.
    pub fn load(store: Arc<Store>) -> Result<SharedView, StoreError> {
        let view = View::load(&store)?;
        Ok(SharedView {
            store,
            current: RwLock::new(Arc::new(view)),
            refreshing: Mutex::new(()),
        })
    }

    /// The store this view follows.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<View> {
        // A poisoned lock cannot be observed (panic = "abort"); the view would be valid.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies every change written since the current view was made, so that the next
    /// [`SharedView::snapshot`] has it. Returns whether anything changed. Blocking: a store
    /// read.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(changes) = self.snapshot().changes(&self.store)? else {
            // Compacted past the view: a whole new one, beside any snapshot still out.
            let fresh = View::load(&self.store)?;
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
            return Ok(true);
        };
        if changes.is_empty() {
            return Ok(false);
        }
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(view) = Arc::get_mut(&mut slot) {
            return Ok(view.apply(changes));
        }
        drop(slot);
        // Someone holds a snapshot: keep it intact and build the next view beside it,
        // without blocking readers meanwhile. Only refreshes replace the view, and they run
        // one at a time, so the snapshot is still the current view.
        let mut next = View::clone(&self.snapshot());
        let changed = next.apply(changes);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(changed)
    }
}
