//! Admin operations: validated changes to the fleet data (nodes, groups, networks, images,
//! settings, leases).
//!
//! The CLI and the HTTP API call these same functions. Each operation
//! checks its input against the store inside one write transaction, so a failed operation
//! changes nothing and two admins cannot race past a uniqueness check. Errors say what is
//! wrong in the admin's terms (unknown node, duplicate MAC, IP outside every network).
//!
//! Not here: argument parsing (`crate::cli`, `crate::api`), printing, authentication
//! (`crate::auth`).

use crate::image::{self, Blobs, ImageError, ImageSource};
use crate::store::model::{
    Bmc, BmcOwner, Export, Group, Image, ImageFiles, Ipv4Net, Lease, Mac, Network, Node,
    PersistentPath, PersistentRule, PowerState, RootMode, Secret, Setting,
};
use crate::store::{Store, StoreError};
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Import(#[from] image::import::ImportError),
    #[error("invalid name {0:?}: use letters, digits, '-' and '_' (at most 63, starting with a letter or digit)")]
    BadName(String),
    #[error("unknown {kind} {name:?}")]
    Unknown { kind: &'static str, name: String },
    #[error("{kind} {name:?} exists already")]
    Exists { kind: &'static str, name: String },
    #[error("MAC {mac} is already used by node {owner:?}")]
    DuplicateMac { mac: Mac, owner: String },
    #[error("name {name:?} is already taken by node {owner:?} (as its name or an alias)")]
    NameTaken { name: String, owner: String },
    #[error("IP {ip} is already reserved for node {owner:?}")]
    DuplicateIp { ip: Ipv4Addr, owner: String },
    #[error("IP {ip} is outside every network ({known}); add a network with `drover network add`")]
    OutsideNetworks { ip: Ipv4Addr, known: String },
    #[error("IP {ip} is not a host address of network {network} ({subnet})")]
    NotHost {
        ip: Ipv4Addr,
        network: String,
        subnet: Ipv4Net,
    },
    #[error("range {first}-{last} is invalid for {subnet}: {why}")]
    BadRange {
        first: Ipv4Addr,
        last: Ipv4Addr,
        subnet: Ipv4Net,
        why: &'static str,
    },
    #[error("gateway {0} is not in subnet {1}")]
    BadGateway(Ipv4Addr, Ipv4Net),
    #[error("subnet {subnet} overlaps network {other:?} ({other_subnet})")]
    Overlap {
        subnet: Ipv4Net,
        other: String,
        other_subnet: Ipv4Net,
    },
    #[error("image {image:?} is used by node(s) {nodes}; point them at another image first")]
    ImageInUse { image: String, nodes: String },
    #[error("invalid domain {0:?}: dot-separated labels of letters, digits and '-'")]
    BadDomain(String),
    #[error("invalid setting value for {name:?}: {why}")]
    BadSetting { name: String, why: &'static str },
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
    #[error("password file {0}: the first line must hold a password of 1 to 20 bytes")]
    BadPassword(String),
    #[error("persistent path {path:?}: {why}")]
    BadPersistent { path: String, why: PersistentRule },
    #[error(
        "image {image:?} has no root filesystem, so it cannot boot with an NFS root (add it \
         with --rootfs, or use --root ram)"
    )]
    NfsNeedsRootfs { image: String },
    #[error("image {image:?} has no version {version} (see `drover image history {image}`)")]
    NoVersion {
        image: String,
        version: u32,
        /// The field that named it: "version" or "image_version".
        field: &'static str,
    },
    #[error("export {name:?}: {why}")]
    BadExport {
        name: String,
        /// The offending field: "name", "path" or "clients".
        field: &'static str,
        why: String,
    },
    #[error(transparent)]
    Rule(#[from] crate::discover::rule::RuleError),
    #[error("rule {rule:?} covers ports of rule {other:?}; remove that one first")]
    RuleOverlap { rule: String, other: String },
    #[error(transparent)]
    File(#[from] crate::files::core::FileError),
    #[error("file set {name:?}: {why}")]
    BadFileSet { name: String, why: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Checks a node, group, network or image name.
pub fn check_name(name: &str) -> Result<(), AdminError> {
    if crate::store::model::valid_name(name) {
        Ok(())
    } else {
        Err(AdminError::BadName(name.to_string()))
    }
}

/// A node as the admin describes it; `None` fields of an update keep their value.
#[derive(Debug, Clone, Default)]
pub struct NodeChange {
    pub mac: Option<Mac>,
    /// `Some(None)` removes the reservation.
    pub ip: Option<Option<Ipv4Addr>>,
    pub image: Option<Option<String>>,
    pub group: Option<Option<String>>,
    /// Replaces the aliases.
    pub aliases: Option<Vec<String>>,
    /// `Some(None)`: follow the image's root mode.
    pub root: Option<Option<RootMode>>,
    /// `Some(None)`: follow the latest version of the image (or the group's pin).
    pub image_version: Option<Option<u32>>,
    /// `Some(None)`: follow the group's, then the image's swarm setting.
    pub swarm: Option<Option<bool>>,
    /// Service mode on or off (`crate::service`).
    pub service: Option<bool>,
}

/// A node or group may pin only a version its image has.
fn check_pin(
    w: &crate::store::Writer<'_, '_>,
    image: Option<&str>,
    version: u32,
) -> Result<(), AdminError> {
    let Some(image) = image else {
        return Err(AdminError::NoVersion {
            image: String::new(),
            version,
            field: "image_version",
        });
    };
    match w.get::<Image>(image)? {
        Some(i) if i.version_files(version).is_some() => Ok(()),
        _ => Err(AdminError::NoVersion {
            image: image.to_string(),
            version,
            field: "image_version",
        }),
    }
}

pub(crate) fn check_node(w: &crate::store::Writer<'_, '_>, node: &Node) -> Result<(), AdminError> {
    check_name(&node.name)?;
    if let Some(owner) = w.owner(&format!("mac/{}", node.mac))? {
        if owner != node.name {
            return Err(AdminError::DuplicateMac {
                mac: node.mac,
                owner,
            });
        }
    }
    if let Some(ip) = node.ip {
        if let Some(owner) = w.owner(&format!("ip/{ip}"))? {
            if owner != node.name {
                return Err(AdminError::DuplicateIp { ip, owner });
            }
        }
        let networks = w.all::<Network>()?;
        // With no network defined yet (before the first `drover serve --interface`, which
        // records the interface's subnet), there is nothing to check against.
        if !networks.is_empty() {
            let net = networks
                .iter()
                .find(|n| n.subnet.contains(ip))
                .ok_or_else(|| AdminError::OutsideNetworks {
                    ip,
                    known: networks
                        .iter()
                        .map(|n| format!("{} {}", n.name, n.subnet))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if !net.subnet.is_host(ip) {
                return Err(AdminError::NotHost {
                    ip,
                    network: net.name.clone(),
                    subnet: net.subnet,
                });
            }
        }
    }
    if let Some(image) = &node.image {
        if w.get::<Image>(image)?.is_none() {
            return Err(AdminError::Unknown {
                kind: "image",
                name: image.clone(),
            });
        }
    }
    if let Some(group) = &node.group {
        check_name(group)?;
    }
    if let Some(version) = node.image_version {
        let image = match &node.image {
            Some(i) => Some(i.clone()),
            None => match &node.group {
                Some(g) => w.get::<Group>(g)?.and_then(|g| g.image),
                None => None,
            },
        };
        check_pin(w, image.as_deref(), version)?;
    }
    if node.root == Some(RootMode::Nfs) {
        // The image the node boots: its own, else its group's (as the boot path picks it).
        let image = match &node.image {
            Some(i) => Some(i.clone()),
            None => match &node.group {
                Some(g) => w.get::<Group>(g)?.and_then(|g| g.image),
                None => None,
            },
        };
        if let Some(image) = image {
            if w.get::<Image>(&image)?.is_some_and(|i| i.rootfs.is_none()) {
                return Err(AdminError::NfsNeedsRootfs { image });
            }
        }
    }
    for alias in &node.aliases {
        check_name(alias)?;
        let taken_by = if alias == &node.name || w.get::<Node>(alias)?.is_some() {
            Some(alias.clone())
        } else {
            w.owner(&format!("alias/{alias}"))?
                .filter(|owner| owner != &node.name)
        };
        if let Some(owner) = taken_by {
            return Err(AdminError::NameTaken {
                name: alias.clone(),
                owner,
            });
        }
    }
    if let Some(owner) = w.owner(&format!("alias/{}", node.name))? {
        return Err(AdminError::NameTaken {
            name: node.name.clone(),
            owner,
        });
    }
    Ok(())
}

/// Adds new nodes (all or none).
pub fn add_nodes(store: &Store, nodes: &[Node]) -> Result<(), AdminError> {
    store.write(|w| add_nodes_in(w, nodes))
}

pub(crate) fn add_nodes_in(
    w: &mut crate::store::Writer<'_, '_>,
    nodes: &[Node],
) -> Result<(), AdminError> {
    for node in nodes {
        if w.get::<Node>(&node.name)?.is_some() {
            return Err(AdminError::Exists {
                kind: "node",
                name: node.name.clone(),
            });
        }
        check_node(w, node)?;
        w.put(node)?;
    }
    Ok(())
}

/// Changes fields of node `name`.
pub fn set_node(store: &Store, name: &str, change: &NodeChange) -> Result<Node, AdminError> {
    store.write(|w| {
        let mut node = w.get::<Node>(name)?.ok_or_else(|| AdminError::Unknown {
            kind: "node",
            name: name.to_string(),
        })?;
        if let Some(mac) = change.mac {
            node.mac = mac;
        }
        if let Some(ip) = change.ip {
            node.ip = ip;
        }
        if let Some(image) = &change.image {
            node.image = image.clone();
        }
        if let Some(group) = &change.group {
            node.group = group.clone();
        }
        if let Some(aliases) = &change.aliases {
            node.aliases = aliases.clone();
        }
        if let Some(root) = change.root {
            node.root = root;
        }
        if let Some(version) = change.image_version {
            node.image_version = version;
        }
        if let Some(swarm) = change.swarm {
            node.swarm = swarm;
        }
        check_node(w, &node)?;
        w.put(&node)?;
        if let Some(on) = change.service {
            crate::service::set(w, &node.name, on)?;
        }
        Ok(node)
    })
}

pub fn remove_node(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        if w.delete::<Node>(name)? {
            w.delete::<crate::store::model::BootLog>(name)?;
            crate::service::set(w, name, false)?;
            w.delete::<Bmc>(&BmcOwner::Node(name.to_string()).key())?;
            w.delete::<PowerState>(name)?;
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "node",
                name: name.to_string(),
            })
        }
    })
}

/// BMC settings as the admin gives them; `None` fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BmcChange {
    /// `HOST[:PORT]`.
    pub address: Option<(String, Option<u16>)>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub protocol: Option<crate::store::model::BmcProtocol>,
    /// Drop the pinned Redfish certificate.
    pub forget_pin: bool,
}

impl BmcChange {
    pub fn is_empty(&self) -> bool {
        self.address.is_none()
            && self.user.is_none()
            && self.password.is_none()
            && self.protocol.is_none()
            && !self.forget_pin
    }
}

/// Reads a password file: its first line, without the line end. Refuses empty passwords and
/// ones longer than IPMI v2.0's 20 bytes.
pub fn read_password_file(path: &Path) -> Result<Secret, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.is_empty() || pw.len() > 20 {
        return Err(AdminError::BadPassword(path.display().to_string()));
    }
    Ok(Secret::new(pw))
}

/// Sets BMC settings of a node or group (the group need not have a record of its own).
pub fn set_bmc(store: &Store, owner: &BmcOwner, change: &BmcChange) -> Result<Bmc, AdminError> {
    store.write(|w| set_bmc_in(w, owner, change))
}

fn set_bmc_in(
    w: &mut crate::store::Writer<'_, '_>,
    owner: &BmcOwner,
    change: &BmcChange,
) -> Result<Bmc, AdminError> {
    match owner {
        BmcOwner::Node(n) => {
            if w.get::<Node>(n)?.is_none() {
                return Err(AdminError::Unknown {
                    kind: "node",
                    name: n.clone(),
                });
            }
        }
        BmcOwner::Group(g) => check_name(g)?,
    }
    let mut bmc = w
        .get::<Bmc>(&owner.key())?
        .unwrap_or_else(|| Bmc::empty(owner.clone()));
    if let Some((host, port)) = &change.address {
        // Another address is another BMC, with a certificate of its own.
        if bmc.host.as_ref() != Some(host) || bmc.port != *port {
            bmc.tls_pin = None;
        }
        bmc.host = Some(host.clone());
        bmc.port = *port;
    }
    if let Some(protocol) = change.protocol {
        bmc.protocol = Some(protocol);
    }
    if change.forget_pin {
        bmc.tls_pin = None;
    }
    if let Some(user) = &change.user {
        bmc.user = Some(user.clone());
    }
    if let Some(pw) = &change.password {
        bmc.password = Some(pw.clone());
    }
    w.put(&bmc)?;
    Ok(bmc)
}

/// Removes the BMC settings of a node or group.
pub fn remove_bmc(store: &Store, owner: &BmcOwner) -> Result<(), AdminError> {
    store.write(|w| {
        w.delete::<Bmc>(&owner.key())?;
        Ok(())
    })
}

/// One row of a node CSV: the node and its BMC settings.
#[derive(Debug, Clone)]
pub struct CsvNode {
    pub node: Node,
    pub bmc: BmcChange,
}

/// Parses a node CSV (header `name,mac,ip,image,group`, optionally `aliases` (separated by
/// spaces or `;`) and `bmc,bmc_user,bmc_password_file`; columns in any order; only `name` and
/// `mac` required; empty cells mean "none"). `read_password` reads a `bmc_password_file` cell.
/// Errors name the line.
pub fn parse_node_csv_bmc(
    text: &str,
    read_password: &dyn Fn(&str) -> Result<Secret, AdminError>,
) -> Result<Vec<CsvNode>, AdminError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (hline, header) = lines.next().ok_or(AdminError::Csv {
        line: 1,
        message: "empty file; expected a header line like name,mac,ip,image,group".into(),
    })?;
    let columns: Vec<String> = split_csv(header)
        .into_iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let find = |name: &str| columns.iter().position(|c| c == name);
    const KNOWN: [&str; 9] = [
        "name",
        "mac",
        "ip",
        "image",
        "group",
        "aliases",
        "bmc",
        "bmc_user",
        "bmc_password_file",
    ];
    for c in &columns {
        if !KNOWN.contains(&c.as_str()) {
            return Err(AdminError::Csv {
                line: hline,
                message: format!("unknown column {c:?}; known: {}", KNOWN.join(",")),
            });
        }
    }
    let (Some(name_col), Some(mac_col)) = (find("name"), find("mac")) else {
        return Err(AdminError::Csv {
            line: hline,
            message: "the header needs at least the columns name and mac".into(),
        });
    };
    let (ip_col, image_col, group_col) = (find("ip"), find("image"), find("group"));
    let aliases_col = find("aliases");
    let (bmc_col, user_col, pw_col) = (find("bmc"), find("bmc_user"), find("bmc_password_file"));
    let mut nodes = Vec::new();
    for (line, text) in lines {
        let cells = split_csv(text);
        if cells.len() > columns.len() {
            return Err(AdminError::Csv {
                line,
                message: format!(
                    "{} cells, but the header has {} columns",
                    cells.len(),
                    columns.len()
                ),
            });
        }
        let cell = |col: Option<usize>| {
            col.and_then(|c| cells.get(c))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let csv_err = |message: String| AdminError::Csv { line, message };
        let name = cell(Some(name_col)).ok_or_else(|| csv_err("missing name".into()))?;
        let mac = cell(Some(mac_col))
            .ok_or_else(|| csv_err(format!("node {name}: missing mac")))?
            .parse::<Mac>()
            .map_err(|e| csv_err(format!("node {name}: {e}")))?;
        let ip = cell(ip_col)
            .map(|s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| csv_err(format!("node {name}: {s:?} is not an IPv4 address")))
            })
            .transpose()?;
        let address = cell(bmc_col)
            .map(|s| {
                crate::ipmi::parse_host_port(&s).map_err(|e| csv_err(format!("node {name}: {e}")))
            })
            .transpose()?;
        let password = cell(pw_col)
            .map(|p| read_password(&p).map_err(|e| csv_err(format!("node {name}: {e}"))))
            .transpose()?;
        nodes.push(CsvNode {
            bmc: BmcChange {
                address,
                user: cell(user_col),
                password,
                protocol: None,
                forget_pin: false,
            },
            node: Node {
                name,
                mac,
                ip,
                image: cell(image_col),
                group: cell(group_col),
                aliases: cell(aliases_col).map_or_else(Vec::new, |a| split_aliases(&a)),
                root: None,
                image_version: None,
                swarm: None,
            },
        });
    }
    Ok(nodes)
}

/// Parses a node CSV without BMC columns (see [`parse_node_csv_bmc`]).
pub fn parse_node_csv(text: &str) -> Result<Vec<Node>, AdminError> {
    let no_files = |p: &str| {
        Err(AdminError::Csv {
            line: 0,
            message: format!("password file {p:?} not allowed here"),
        })
    };
    Ok(parse_node_csv_bmc(text, &no_files)?
        .into_iter()
        .map(|c| c.node)
        .collect())
}

/// Aliases as the admin writes them: separated by spaces, commas or `;`.
pub fn split_aliases(text: &str) -> Vec<String> {
    text.split([' ', ',', ';'])
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits one CSV line; double quotes group a cell (`""` is a literal quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

/// Imports nodes from a CSV file: all rows or none; errors name the line or the node.
pub fn import_nodes(store: &Store, path: &Path) -> Result<usize, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Read {
        path: path.display().to_string(),
        source,
    })?;
    // Password files are named relative to the CSV file.
    let base = path.parent().unwrap_or(Path::new("."));
    let rows = parse_node_csv_bmc(&text, &|p| read_password_file(&base.join(p)))?;
    let nodes: Vec<Node> = rows.iter().map(|r| r.node.clone()).collect();
    store.write(|w| {
        add_nodes_in(w, &nodes)?;
        for r in rows.iter().filter(|r| !r.bmc.is_empty()) {
            set_bmc_in(w, &BmcOwner::Node(r.node.name.clone()), &r.bmc)?;
        }
        Ok::<_, AdminError>(())
    })?;
    Ok(nodes.len())
}

/// Checks a network's own fields (name, range, gateway).
fn check_network(net: &Network) -> Result<(), AdminError> {
    check_name(&net.name)?;
    if let Some((first, last)) = net.range {
        let why = if first > last {
            Some("the first address is after the last")
        } else if !net.subnet.is_host(first) || !net.subnet.is_host(last) {
            Some("both ends must be host addresses of the subnet")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(AdminError::BadRange {
                first,
                last,
                subnet: net.subnet,
                why,
            });
        }
    }
    if let Some(gw) = net.gateway {
        if !net.subnet.is_host(gw) {
            return Err(AdminError::BadGateway(gw, net.subnet));
        }
    }
    if let Some(domain) = &net.domain {
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(AdminError::BadDomain(domain.clone()));
        }
    }
    Ok(())
}

/// Writes `net` after checking it against the other networks (overlaps).
fn put_network(w: &mut crate::store::Writer<'_, '_>, net: &Network) -> Result<(), AdminError> {
    for other in w.all::<Network>()? {
        if other.name == net.name {
            continue;
        }
        if other.subnet.contains(net.subnet.addr()) || net.subnet.contains(other.subnet.addr()) {
            return Err(AdminError::Overlap {
                subnet: net.subnet,
                other: other.name,
                other_subnet: other.subnet,
            });
        }
    }
    w.put(net)?;
    Ok(())
}

/// Adds a network after checking range, gateway and overlaps.
pub fn add_network(store: &Store, net: &Network) -> Result<(), AdminError> {
    check_network(net)?;
    store.write(|w| {
        if w.get::<Network>(&net.name)?.is_some() {
            return Err(AdminError::Exists {
                kind: "network",
                name: net.name.clone(),
            });
        }
        put_network(w, net)
    })
}

/// Changes to a network; `None` fields keep their value, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct NetworkChange {
    pub subnet: Option<Ipv4Net>,
    pub range: Option<Option<(Ipv4Addr, Ipv4Addr)>>,
    pub gateway: Option<Option<Ipv4Addr>>,
    pub domain: Option<Option<String>>,
}

/// Changes fields of network `name`, with the same checks as [`add_network`].
pub fn set_network(
    store: &Store,
    name: &str,
    change: &NetworkChange,
) -> Result<Network, AdminError> {
    store.write(|w| {
        let mut net = w.get::<Network>(name)?.ok_or_else(|| AdminError::Unknown {
            kind: "network",
            name: name.to_string(),
        })?;
        if let Some(subnet) = change.subnet {
            net.subnet = subnet;
        }
        if let Some(range) = change.range {
            net.range = range;
        }
        if let Some(gateway) = change.gateway {
            net.gateway = gateway;
        }
        if let Some(domain) = &change.domain {
            net.domain = domain.clone();
        }
        check_network(&net)?;
        put_network(w, &net)?;
        Ok(net)
    })
}

pub fn remove_network(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        if w.delete::<Network>(name)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "network",
                name: name.to_string(),
            })
        }
    })
}

/// How an image boots its nodes, as the admin sets it with `image add` or `image set`;
/// `None` fields keep their value (or take the default for a new image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageChange {
    pub cmdline: Option<String>,
    pub root: Option<RootMode>,
    /// Replaces the persistent paths (checked with [`check_persistent`]).
    pub persistent: Option<Vec<String>>,
    pub swarm: Option<bool>,
}

/// Checks an image's persistent paths with [`PersistentPath::parse_set`]. Returns them
/// sorted.
pub fn check_persistent(paths: &[String]) -> Result<Vec<String>, AdminError> {
    let set = PersistentPath::parse_set(paths)
        .map_err(|(path, why)| AdminError::BadPersistent { path, why })?;
    Ok(set.iter().map(|p| p.as_str().to_string()).collect())
}

/// Applies `change` to `image` after checking it; the result must be bootable as set.
fn apply_image_change(image: &mut Image, change: &ImageChange) -> Result<(), AdminError> {
    if let Some(cmdline) = &change.cmdline {
        image.cmdline = cmdline.clone();
    }
    if let Some(root) = change.root {
        image.root = root;
    }
    if let Some(paths) = &change.persistent {
        image.persistent = check_persistent(paths)?;
    }
    if let Some(swarm) = change.swarm {
        image.swarm = swarm;
    }
    if image.root == RootMode::Nfs && image.rootfs.is_none() {
        return Err(AdminError::NfsNeedsRootfs {
            image: image.name.clone(),
        });
    }
    Ok(())
}

/// Who changes an image's files and how: what its history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// `local USER` for the CLI on the server, `user NAME` / `token NAME` through the API.
    pub by: String,
    /// `add`, `import SOURCE`, ...
    pub what: String,
}

impl Made {
    /// A change made with the CLI on the server, by the Unix user running it.
    pub fn local(what: impl Into<String>) -> Made {
        Made {
            by: local_user(),
            what: what.into(),
        }
    }
}

/// `local USER`: who a change made with the CLI on the server is recorded as made by.
pub fn local_user() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".into());
    format!("local {user}")
}

/// How `image add` and `image import` record the files they stored.
#[derive(Debug, Clone)]
pub struct AddImage {
    /// May change an existing image (adding a version); else the name must be new.
    pub replace: bool,
    /// Boot settings; for an existing image, `None` fields keep its settings, `cmdline`
    /// included.
    pub settings: ImageChange,
    pub made: Made,
}

/// Imports an image's files and records them as a new image, or as the image's next
/// version with `replace`. The command line is `src`'s; root mode and persistent paths are
/// kept unless `add.settings` gives them (they describe how the cluster uses the image, not
/// its files). A new image takes the defaults: RAM root, no persistent paths.
pub fn add_image(
    store: &Store,
    blobs: &Blobs,
    name: &str,
    src: &ImageSource,
    agent: &Path,
    add: &AddImage,
) -> Result<Image, AdminError> {
    check_new_files(store, name, src.rootfs.is_some(), add)?;
    let files = image::import(blobs, src, agent)?;
    let add = AddImage {
        settings: ImageChange {
            cmdline: Some(src.cmdline.clone()),
            ..add.settings.clone()
        },
        ..add.clone()
    };
    record_files(store, name, files, &add)
}

/// Imports image `name` from `source` (`image import`: a directory, tarball or container
/// image) as a new image or its next version; the kernel is `kernel`, else the tree's.
pub fn import_image(
    store: &Store,
    blobs: &Blobs,
    name: &str,
    source: &Path,
    kernel: Option<&Path>,
    agent: &Path,
    add: &AddImage,
) -> Result<Image, AdminError> {
    check_new_files(store, name, true, add)?;
    let files = image::import::import(blobs, source, kernel, agent)?;
    record_files(store, name, files, add)
}

/// What [`record_files`] will check again in its write, checked before the (slow) import.
pub fn check_new_files(
    store: &Store,
    name: &str,
    has_rootfs: bool,
    add: &AddImage,
) -> Result<(), AdminError> {
    check_name(name)?;
    if !add.replace && store.read(|r| r.get::<Image>(name))?.is_some() {
        return Err(AdminError::Exists {
            kind: "image",
            name: name.to_string(),
        });
    }
    if let Some(paths) = &add.settings.persistent {
        check_persistent(paths)?;
    }
    if add.settings.root == Some(RootMode::Nfs) && !has_rootfs {
        return Err(AdminError::NfsNeedsRootfs {
            image: name.to_string(),
        });
    }
    Ok(())
}

/// Records stored `files` as image `name`'s next version (its first when new).
pub fn record_files(
    store: &Store,
    name: &str,
    files: ImageFiles,
    add: &AddImage,
) -> Result<Image, AdminError> {
    record_version(store, name, files, add, None)
}

/// [`record_files`], keeping the `image build` recipe (TOML) that made `files` with the
/// version.
pub fn record_version(
    store: &Store,
    name: &str,
    files: ImageFiles,
    add: &AddImage,
    recipe: Option<String>,
) -> Result<Image, AdminError> {
    store.write(|w| {
        let old = w.get::<Image>(name)?;
        if !add.replace && old.is_some() {
            return Err(AdminError::Exists {
                kind: "image",
                name: name.to_string(),
            });
        }
        let mut image = Image {
            name: name.to_string(),
            kernel: files.kernel.clone(),
            initrd: None,
            cmdline: old.as_ref().map(|o| o.cmdline.clone()).unwrap_or_default(),
            rootfs: None,
            initramfs: None,
            root: old.as_ref().map_or(RootMode::default(), |o| o.root),
            persistent: old
                .as_ref()
                .map(|o| o.persistent.clone())
                .unwrap_or_default(),
            swarm: old.as_ref().is_none_or(|o| o.swarm),
            versions: Vec::new(),
        };
        image.push_version(old.as_ref(), files, now_ms(), &add.made.by, &add.made.what);
        if let Some(latest) = image.versions.last_mut() {
            latest.recipe = recipe.clone();
        }
        apply_image_change(&mut image, &add.settings)?;
        w.put(&image)?;
        Ok(image)
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Makes version `version` of image `name` current again, as a new version naming its files
/// (history stays append-only).
pub fn rollback_image(
    store: &Store,
    name: &str,
    version: u32,
    by: &str,
) -> Result<Image, AdminError> {
    store.write(|w| {
        let old = w.get::<Image>(name)?.ok_or_else(|| AdminError::Unknown {
            kind: "image",
            name: name.to_string(),
        })?;
        let files = old
            .version_files(version)
            .ok_or_else(|| AdminError::NoVersion {
                image: name.to_string(),
                version,
                field: "version",
            })?;
        let mut image = old.clone();
        let what = format!("rollback to {version}");
        image.push_version(Some(&old), files, now_ms(), by, &what);
        let recipe = old.history().into_iter().find(|v| v.number == version);
        if let (Some(latest), Some(from)) = (image.versions.last_mut(), recipe) {
            latest.recipe = from.recipe;
        }
        apply_image_change(&mut image, &ImageChange::default())?;
        w.put(&image)?;
        Ok(image)
    })
}

pub fn remove_image(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        let users: Vec<String> = w
            .all::<Node>()?
            .into_iter()
            .filter(|n| n.image.as_deref() == Some(name))
            .map(|n| n.name)
            .collect();
        if !users.is_empty() {
            return Err(AdminError::ImageInUse {
                image: name.to_string(),
                nodes: users.join(", "),
            });
        }
        if w.delete::<Image>(name)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "image",
                name: name.to_string(),
            })
        }
    })
}

/// Changes image `name`: command line, root mode, persistent paths.
pub fn set_image(store: &Store, name: &str, change: &ImageChange) -> Result<Image, AdminError> {
    store.write(|w| {
        let mut image = w.get::<Image>(name)?.ok_or_else(|| AdminError::Unknown {
            kind: "image",
            name: name.to_string(),
        })?;
        apply_image_change(&mut image, change)?;
        w.put(&image)?;
        Ok(image)
    })
}

/// Adds or replaces group `group` (its image must exist).
pub fn put_group(store: &Store, group: &Group) -> Result<(), AdminError> {
    check_name(&group.name)?;
    store.write(|w| {
        if let Some(image) = &group.image {
            if w.get::<Image>(image)?.is_none() {
                return Err(AdminError::Unknown {
                    kind: "image",
                    name: image.clone(),
                });
            }
        }
        if let Some(version) = group.image_version {
            check_pin(w, group.image.as_deref(), version)?;
        }
        w.put(group)?;
        Ok(())
    })
}

/// Removes group `name`. Its nodes keep their group name (and lose the group's image).
pub fn remove_group(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        if w.delete::<Group>(name)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "group",
                name: name.to_string(),
            })
        }
    })
}

/// Largest JSON value a setting may hold, in bytes.
pub const MAX_SETTING_BYTES: usize = 16 * 1024;

/// Sets setting `name` to `value`.
pub fn set_setting(store: &Store, name: &str, value: &serde_json::Value) -> Result<(), AdminError> {
    check_name(name)?;
    if value.to_string().len() > MAX_SETTING_BYTES {
        return Err(AdminError::BadSetting {
            name: name.to_string(),
            why: "larger than 16 KiB",
        });
    }
    let setting = Setting {
        name: name.to_string(),
        value: value.clone(),
    };
    store.write(|w| Ok(w.put(&setting)?))
}

pub fn remove_setting(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        if w.delete::<Setting>(name)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "setting",
                name: name.to_string(),
            })
        }
    })
}

/// All leases, ordered by address.
pub fn leases(store: &Store) -> Result<Vec<Lease>, AdminError> {
    Ok(store.read(|r| r.all::<Lease>())?)
}

/// The pseudo-root name that belongs to the nodes' root views, not to an export.
pub const RESERVED_EXPORT: &str = "root";

/// Records a shared NFS export after checking its name, path (an existing directory, stored
/// canonical) and clients. Refuses a name that exists.
pub fn add_export(store: &Store, export: &Export) -> Result<Export, AdminError> {
    check_name(&export.name)?;
    let bad = |field, why: String| AdminError::BadExport {
        name: export.name.clone(),
        field,
        why,
    };
    if export.name == RESERVED_EXPORT {
        return Err(bad(
            "name",
            "the name \"root\" is the nodes' root views".into(),
        ));
    }
    let path = Path::new(&export.path);
    if !path.is_absolute() {
        return Err(bad(
            "path",
            format!("path {:?} is not absolute", export.path),
        ));
    }
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| bad("path", format!("path {}: {e}", export.path)))?;
    if !canonical.is_dir() {
        return Err(bad(
            "path",
            format!("path {} is not a directory", export.path),
        ));
    }
    if export.clients.is_empty() {
        return Err(bad(
            "clients",
            "no clients: give --clients CIDR[,CIDR...]".into(),
        ));
    }
    let export = Export {
        path: canonical.to_string_lossy().into_owned(),
        ..export.clone()
    };
    store.write(|w| {
        if w.get::<Export>(&export.name)?.is_some() {
            return Err(AdminError::Exists {
                kind: "export",
                name: export.name.clone(),
            });
        }
        w.put(&export)?;
        Ok(())
    })?;
    Ok(export)
}

pub fn remove_export(store: &Store, name: &str) -> Result<(), AdminError> {
    store.write(|w| {
        if w.delete::<Export>(name)? {
            Ok(())
        } else {
            Err(AdminError::Unknown {
                kind: "export",
                name: name.to_string(),
            })
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Views that the CLI prints and the API serves: one rule for what a node or group shows.

/// What `node show` tells about a node beyond its record; `GET /nodes/{name}` carries it too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeDetail {
    /// The image the node boots: its own, else its group's (the boot path's choice).
    pub boot_image: Option<BootImage>,
    /// How its BMC is reached (node settings over the group's, field by field), or why not.
    pub bmc: BmcReach,
    /// The chassis power as `drover serve`'s poller last saw it.
    pub power_state: Option<PowerState>,
    /// Whether the node is in service mode (`crate::service`).
    #[serde(default)]
    pub service: bool,
}

/// The part of an image that decides a node's root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootImage {
    pub name: String,
    pub root: RootMode,
    pub persistent: Vec<String>,
    /// The image's newest version.
    #[serde(default)]
    pub latest_version: u32,
    /// The version the node is pinned to, if any, and by whom: `node` or `group NAME`.
    #[serde(default)]
    pub pinned: Option<(u32, String)>,
}

/// A node's BMC as shown: `HOST:PORT` and user (the password is never shown), or why the node
/// has no usable BMC settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BmcReach {
    Set { address: String, user: String },
    Missing { why: String },
}

/// The [`NodeDetail`] of `node`, from one read.
pub fn node_detail(store: &Store, node: &Node) -> Result<NodeDetail, StoreError> {
    store.read(|r| {
        // As `View::boot_image_of` picks them: the node's pin, else its group's when the
        // image is the group's.
        let (image, pinned) = match (&node.image, &node.group) {
            (Some(i), _) => (Some(i.clone()), None),
            (None, Some(g)) => match r.get::<Group>(g)? {
                Some(group) => (
                    group.image,
                    group.image_version.map(|v| (v, format!("group {g}"))),
                ),
                None => (None, None),
            },
            (None, None) => (None, None),
        };
        let pinned = node
            .image_version
            .map(|v| (v, "node".to_string()))
            .or(pinned);
        let boot_image = match image {
            Some(name) => r.get::<Image>(&name)?.map(|i| BootImage {
                latest_version: i.latest_version(),
                name: i.name,
                root: i.root,
                persistent: i.persistent,
                pinned,
            }),
            None => None,
        };
        let bmc = match crate::ipmi::access(r, &node.name, node.group.as_deref())? {
            Ok(a) => BmcReach::Set {
                address: a.address(),
                user: a.user,
            },
            Err(why) => BmcReach::Missing {
                why: why.to_string(),
            },
        };
        Ok(NodeDetail {
            boot_image,
            bmc,
            power_state: r.get::<PowerState>(&node.name)?,
            service: crate::service::is_on(r, &node.name)?,
        })
    })
}

/// A group as listed: a group record, or a name that only nodes or BMC settings use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub image: Option<String>,
    /// Whether a group record exists (a node may name a group that has none).
    pub defined: bool,
    /// Nodes that name the group.
    pub nodes: usize,
    /// The group's BMC settings, without the password.
    pub bmc: Option<GroupBmc>,
}

/// A group's BMC settings as shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupBmc {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_set: bool,
}

/// Every group by name: records, names that nodes use, and groups with BMC settings.
pub fn groups(store: &Store) -> Result<Vec<GroupInfo>, StoreError> {
    let (groups, nodes, bmcs) = store
        .read(|r| Ok::<_, StoreError>((r.all::<Group>()?, r.all::<Node>()?, r.all::<Bmc>()?)))?;
    let mut all: std::collections::BTreeMap<String, GroupInfo> = std::collections::BTreeMap::new();
    for g in groups {
        let e = group_entry(&mut all, &g.name);
        e.image = g.image;
        e.defined = true;
    }
    for n in nodes {
        if let Some(g) = n.group {
            group_entry(&mut all, &g).nodes += 1;
        }
    }
    for b in bmcs {
        if let BmcOwner::Group(g) = &b.owner {
            group_entry(&mut all, g).bmc = Some(GroupBmc {
                host: b.host,
                port: b.port,
                user: b.user,
                password_set: b.password.is_some(),
            });
        }
    }
    Ok(all.into_values().collect())
}

fn group_entry<'a>(
    all: &'a mut std::collections::BTreeMap<String, GroupInfo>,
    name: &str,
) -> &'a mut GroupInfo {
    all.entry(name.to_string()).or_insert_with(|| GroupInfo {
        name: name.to_string(),
        image: None,
        defined: false,
        nodes: 0,
        bmc: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parses_quotes_any_column_order_and_names_bad_lines() {
        let nodes = parse_node_csv(
            "mac,name,ip,image,group\n52:54:00:00:00:01,n1,10.0.0.1,,rack1\n# comment\n\"52:54:00:00:00:02\",n2,,img,\n",
        )
        .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].group.as_deref(), Some("rack1"));
        assert_eq!(nodes[0].image, None);
        assert_eq!(nodes[1].image.as_deref(), Some("img"));
        let e = parse_node_csv("name,mac\nn1,52:54:00:00:00:0z\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_node_csv("name,mac,colour\n").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        assert!(parse_node_csv("name,ip\n").is_err());
        let nodes = parse_node_csv("name,mac,aliases\nn1,52:54:00:00:00:01,\"a b;c\"\n").unwrap();
        assert_eq!(nodes[0].aliases, vec!["a", "b", "c"]);
    }

    #[test]
    fn csv_bmc_columns() {
        let read = |p: &str| {
            if p == "pw.txt" {
                Ok(Secret::new("s3cret".into()))
            } else {
                Err(AdminError::BadPassword(p.into()))
            }
        };
        let rows = parse_node_csv_bmc(
            "name,mac,bmc,bmc_user,bmc_password_file\nn1,52:54:00:00:00:01,10.0.0.1:6230,admin,pw.txt\nn2,52:54:00:00:00:02,,,\n",
            &read,
        )
        .unwrap();
        assert_eq!(rows[0].bmc.address, Some(("10.0.0.1".into(), Some(6230))));
        assert_eq!(rows[0].bmc.user.as_deref(), Some("admin"));
        assert!(rows[0].bmc.password.is_some());
        assert!(rows[1].bmc.is_empty());
        let e = parse_node_csv_bmc(
            "name,mac,bmc_password_file\nn1,52:54:00:00:00:01,other\n",
            &read,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn persistent_paths_are_checked_and_sorted() {
        let ok =
            |v: &[&str]| check_persistent(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            ok(&["/var/log", "/etc/ssh"]).unwrap(),
            vec!["/etc/ssh".to_string(), "/var/log".to_string()]
        );
        assert!(ok(&[]).unwrap().is_empty());
        // Siblings with a common prefix are not nested.
        assert!(ok(&["/var/lib", "/var/lib2"]).is_ok());
        for (bad, why) in [
            (vec!["var/log"], "absolute"),
            (vec!["/"], "cannot be /"),
            (vec!["/var/log/"], "normalised"),
            (vec!["/var//log"], "normalised"),
            (vec!["/var/../etc"], "normalised"),
            (vec!["/var/./log"], "normalised"),
            (vec!["/a,b"], "comma"),
            (vec!["/a b"], "space"),
            (vec!["/a\nb"], "control"),
            (vec!["/var/log", "/var/log"], "twice"),
            (vec!["/var", "/var/log"], "inside"),
        ] {
            let e = ok(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let many: Vec<String> = (0..=crate::store::model::MAX_PERSISTENT)
            .map(|i| format!("/p{i}"))
            .collect();
        assert!(check_persistent(&many).is_err());
        let long: Vec<String> = (0..8).map(|i| format!("/{i}{}", "x".repeat(80))).collect();
        assert!(check_persistent(&long)
            .unwrap_err()
            .to_string()
            .contains("512"));
    }

    #[test]
    fn nfs_root_needs_a_rootfs() {
        let file = crate::store::model::ImageFile {
            blob: "0".repeat(64),
            size: 1,
        };
        let mut image = Image {
            name: "i".into(),
            kernel: file.clone(),
            initrd: Some(file.clone()),
            cmdline: String::new(),
            rootfs: None,
            initramfs: None,
            root: RootMode::Ram,
            persistent: Vec::new(),
            versions: Vec::new(),
            swarm: true,
        };
        let nfs = ImageChange {
            root: Some(RootMode::Nfs),
            ..ImageChange::default()
        };
        let e = apply_image_change(&mut image.clone(), &nfs).unwrap_err();
        assert!(matches!(e, AdminError::NfsNeedsRootfs { .. }), "{e}");
        image.initrd = None;
        image.rootfs = Some(file.clone());
        image.initramfs = Some(file);
        apply_image_change(&mut image, &nfs).unwrap();
        assert_eq!(image.root, RootMode::Nfs);
    }

    #[test]
    fn names() {
        assert!(check_name("node-001").is_ok());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }
}
