//! The records drover keeps: nodes, groups, networks, images, leases and settings.
//!
//! Plain serde types with no behaviour beyond small lookups and parsing of the values they
//! hold ([`Mac`], [`PersistentPath`]); the rest of the validation of admin input lives in
//! `crate::admin`, persistence in `crate::store`. Every type here is what one table row
//! holds (wrapped in a [`super::Versioned`] envelope on disk).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An Ethernet MAC address, shown and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex pairs like 52:54:00:12:34:56)")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_string());
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

impl From<Mac> for String {
    fn from(m: Mac) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Mac {
    type Error = BadMac;
    fn try_from(s: String) -> Result<Self, BadMac> {
        s.parse()
    }
}

/// Whether `name` is a valid node, group, network, image or user name (and one DNS label):
/// 1 to 63 letters, digits, '-' and '_', starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An IPv4 subnet in CIDR form; the address is always the network address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IPv4 subnet (expected ADDRESS/PREFIX like 10.1.0.0/16)")]
pub struct BadNet(pub String);

impl Ipv4Net {
    /// The subnet of prefix length `prefix` that contains `addr`. `None` when prefix > 32.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        let mask = prefix_mask(prefix)?;
        Some(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn netmask(&self) -> Ipv4Addr {
        // prefix <= 32 holds for every constructed value.
        Ipv4Addr::from(prefix_mask(self.prefix).unwrap_or(u32::MAX))
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask()))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.addr)
    }
    /// True for an address that a host may have: in the subnet, and neither the network nor
    /// the broadcast address (for prefixes up to /30).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.addr && ip != self.broadcast()))
    }
}

fn prefix_mask(prefix: u8) -> Option<u32> {
    match prefix {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - u32::from(prefix))),
        _ => None,
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ipv4Net {
    type Err = BadNet;
    fn from_str(s: &str) -> Result<Self, BadNet> {
        let bad = || BadNet(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let net = Ipv4Net::containing(addr, prefix).ok_or_else(bad)?;
        if net.addr != addr {
            return Err(bad());
        }
        Ok(net)
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = BadNet;
    fn try_from(s: String) -> Result<Self, BadNet> {
        s.parse()
    }
}

/// A compute node: one machine that boots from drover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub mac: Mac,
    /// Reserved address; `None` means the node takes an address from a dynamic range.
    pub ip: Option<Ipv4Addr>,
    pub image: Option<String>,
    pub group: Option<String>,
    /// Further names of the node, published by DNS as CNAMEs to its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// How this node gets its root filesystem, over its image's [`Image::root`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootMode>,
    /// The version of its image the node boots; `None` follows the latest (or its group's
    /// pin, when the image is the group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version: Option<u32>,
    /// Whether the node fetches a RAM root from its peers too (`crate::swarm`); `None`
    /// follows its group, then its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<bool>,
}

/// A set of nodes that share settings (image, later BMC credentials and more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub image: Option<String>,
    /// The version of the group's image its nodes boot; `None` follows the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version: Option<u32>,
    /// The swarm setting of the group's nodes that have none of their own; `None` follows
    /// their image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<bool>,
}

/// An IPv4 network that drover serves: its subnet, dynamic range and options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub subnet: Ipv4Net,
    /// Inclusive dynamic range for clients without a reservation; `None`: reservations only.
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub gateway: Option<Ipv4Addr>,
    pub domain: Option<String>,
}

impl Network {
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        self.range
            .is_some_and(|(first, last)| (first..=last).contains(&ip))
    }
}

/// A content hash (BLAKE3, hex) naming a file in the blob store.
pub type BlobId = String;

/// A file of an image, stored in the blob store under its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    pub blob: BlobId,
    pub size: u64,
}

/// A bootable image: a kernel, and either the image's own initrd or a root filesystem that
/// drover's agent puts into RAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub kernel: ImageFile,
    pub initrd: Option<ImageFile>,
    pub cmdline: String,
    /// Uncompressed tar of the root filesystem (RAM-root boot).
    pub rootfs: Option<ImageFile>,
    /// drover's initramfs (agent + NIC modules) built for `rootfs`.
    pub initramfs: Option<ImageFile>,
    /// How nodes get `rootfs`: unpacked into RAM, or mounted over NFSv4 from drover.
    #[serde(default)]
    pub root: RootMode,
    /// Absolute paths that stay per node across reboots when the root is NFS ("statelite"):
    /// each node writes them into its own layer in drover's state directory.
    /// Each one a [`PersistentPath`], sorted, none inside another (see
    /// [`PersistentPath::parse_set`]); kept as strings so that a record written by another
    /// version still loads, and read through [`PersistentPath::parse`] where it is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persistent: Vec<String>,
    /// Whether nodes fetch the RAM root from each other as well as from members
    /// (`crate::swarm`); on unless turned off (records from before the swarm read as on).
    #[serde(default = "swarm_default")]
    pub swarm: bool,
    /// Every version of the image's files, oldest first; the last is the one in the fields
    /// above. Empty in records written before versions existed: those read as one version 1
    /// ([`Image::history`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<ImageVersion>,
}

fn swarm_default() -> bool {
    true
}

/// The files of one version of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFiles {
    pub kernel: ImageFile,
    pub initrd: Option<ImageFile>,
    pub rootfs: Option<ImageFile>,
    pub initramfs: Option<ImageFile>,
}

impl ImageFiles {
    /// The files that exist, kernel first.
    pub fn iter(&self) -> impl Iterator<Item = &ImageFile> {
        present(&self.kernel, [&self.initrd, &self.rootfs, &self.initramfs])
    }

    /// Bytes of all files together.
    pub fn size(&self) -> u64 {
        self.iter().map(|f| f.size).sum()
    }
}

/// `kernel`, then whichever of `rest` exist.
fn present<'a>(
    kernel: &'a ImageFile,
    rest: [&'a Option<ImageFile>; 3],
) -> impl Iterator<Item = &'a ImageFile> {
    std::iter::once(kernel).chain(rest.into_iter().flatten())
}

/// One entry of an image's history: a change of its files. History is append-only: a
/// rollback adds an entry naming the old files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVersion {
    /// 1, 2, ...: one more than the previous entry.
    pub number: u32,
    /// Milliseconds since the Unix epoch; 0 when unknown (an image older than versions).
    pub created_ms: u64,
    /// Who made it: `local USER` for the CLI on the server, the API user or token name.
    pub by: String,
    /// How: `add`, `import SOURCE`, `build SUITE`, `shell COMMAND`, `rollback to N`.
    pub what: String,
    pub files: ImageFiles,
    /// The `image build` recipe that made these files (TOML, files inline), kept so that
    /// `image build NAME` can make them again; a rollback carries it along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
}

/// Most persistent paths one image may have.
pub const MAX_PERSISTENT: usize = 64;
/// Longest persistent path, in bytes (so every component also fits NFS's 255-byte names).
pub const MAX_PERSISTENT_PATH: usize = 255;
/// Most bytes of all persistent paths joined with commas: they travel on the kernel command
/// line (`drover.persistent=`), which x86 caps at 2048 bytes in all.
pub const MAX_PERSISTENT_TOTAL: usize = 512;

/// Which rule a persistent path (or a set of them) breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PersistentRule {
    #[error("must be absolute (start with /)")]
    NotAbsolute,
    #[error("cannot be / (the whole root); name the directories that must persist")]
    WholeRoot,
    #[error("longer than 255 bytes")]
    TooLong,
    #[error("contains a comma, space, quote or control character")]
    BadCharacter,
    #[error("not normalised (no trailing / and no //)")]
    EmptyComponent,
    #[error("not normalised (no . or .. parts)")]
    DotComponent,
    #[error("more than 64 persistent paths")]
    TooMany,
    #[error("all persistent paths together exceed 512 bytes (they go on the kernel command line)")]
    TooLongTogether,
    #[error("listed twice")]
    Twice,
    #[error("inside another persistent path")]
    Nested,
}

/// A path of an image that stays per node across reboots under an NFS root ("statelite"):
/// absolute and normalised (no empty, `.` or `..` components, no trailing `/`), not `/`
/// itself, at most [`MAX_PERSISTENT_PATH`] bytes, and free of commas, spaces, quotes and
/// control characters (including NUL).
///
/// One rule for every reader: the admin checks input with it, the boot script puts it on
/// the kernel command line (hence the characters), the agent reads it back from there, and
/// the NFS server walks its components in the image and the node's layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistentPath(String);

impl PersistentPath {
    pub fn parse(path: &str) -> Result<Self, PersistentRule> {
        let rest = path.strip_prefix('/').ok_or(PersistentRule::NotAbsolute)?;
        if rest.is_empty() {
            return Err(PersistentRule::WholeRoot);
        }
        if path.len() > MAX_PERSISTENT_PATH {
            return Err(PersistentRule::TooLong);
        }
        if path
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b',' || b == b'"')
        {
            return Err(PersistentRule::BadCharacter);
        }
        for c in rest.split('/') {
            match c {
                "" => return Err(PersistentRule::EmptyComponent),
                "." | ".." => return Err(PersistentRule::DotComponent),
                _ => {}
            }
        }
        Ok(PersistentPath(path.to_string()))
    }

    /// Checks an image's whole set: each path, then at most [`MAX_PERSISTENT`] of them and
    /// [`MAX_PERSISTENT_TOTAL`] bytes joined, no duplicates and none inside another (the outer
    /// one already keeps it). Returns them sorted, or the first offending path and its rule.
    pub fn parse_set(paths: &[String]) -> Result<Vec<Self>, (String, PersistentRule)> {
        if paths.len() > MAX_PERSISTENT {
            return Err((paths[MAX_PERSISTENT].clone(), PersistentRule::TooMany));
        }
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(Self::parse(p).map_err(|rule| (p.clone(), rule))?);
        }
        let joined: usize = out.iter().map(|p| p.0.len() + 1).sum();
        if let Some(last) = out.last().filter(|_| joined > MAX_PERSISTENT_TOTAL + 1) {
            return Err((last.0.clone(), PersistentRule::TooLongTogether));
        }
        out.sort();
        if let Some(pair) = out.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err((pair[0].0.clone(), PersistentRule::Twice));
        }
        if let Some(inner) = out.iter().find(|i| out.iter().any(|o| i.is_inside(o))) {
            return Err((inner.0.clone(), PersistentRule::Nested));
        }
        Ok(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names from the root down: `/var/log` gives `var`, `log` (never empty).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// Whether this path lies strictly below `outer` (`/var/log` below `/var`, not `/var2`).
    pub fn is_inside(&self, outer: &PersistentPath) -> bool {
        self.0
            .strip_prefix(outer.0.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for PersistentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A directory of drover's host shared over NFSv4 at `/NAME` of the pseudo-root, to the
/// clients whose address is in one of `clients` or `ro_clients`.
///
/// The fields after `rw` came later: records without them load with the defaults (root
/// squashed to nobody, no read-only networks), which is how those exports were served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub name: String,
    /// Absolute path on drover's host.
    pub path: String,
    pub clients: Vec<Ipv4Net>,
    /// Clients may write (else the export is read-only).
    pub rw: bool,
    /// Networks that may mount the export read-only, also where they lie inside `clients`
    /// of a read-write export (the more specific rule wins, as in `/etc/exports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ro_clients: Vec<Ipv4Net>,
    /// Whose AUTH_SYS identities are mapped to `anon_uid`/`anon_gid`.
    #[serde(default)]
    pub squash: Squash,
    #[serde(default = "nobody")]
    pub anon_uid: u32,
    #[serde(default = "nobody")]
    pub anon_gid: u32,
}

/// Which callers of an export lose their identity (`/etc/exports`' `root_squash`,
/// `no_root_squash`, `all_squash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Squash {
    /// uid 0 and gid 0 (also as a supplementary group) become the anonymous ids.
    #[default]
    Root,
    /// Identities as the clients send them, root included.
    None,
    /// Every caller becomes the anonymous uid and gid, without supplementary groups.
    All,
}

/// The uid and gid of `nobody`, the anonymous identity by default.
pub const NOBODY: u32 = 65534;

fn nobody() -> u32 {
    NOBODY
}

impl Export {
    /// A read-only export for `clients` with the default identity mapping (root squashed to
    /// nobody).
    pub fn new(name: &str, path: &str, clients: Vec<Ipv4Net>) -> Export {
        Export {
            name: name.to_string(),
            path: path.to_string(),
            clients,
            rw: false,
            ro_clients: Vec::new(),
            squash: Squash::Root,
            anon_uid: NOBODY,
            anon_gid: NOBODY,
        }
    }

    pub fn allows(&self, ip: Ipv4Addr) -> bool {
        self.clients
            .iter()
            .chain(&self.ro_clients)
            .any(|n| n.contains(ip))
    }
}

/// How a node's root filesystem is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    /// The agent unpacks the image's rootfs into a tmpfs.
    #[default]
    Ram,
    /// The agent mounts the node's root view over NFSv4 from drover.
    Nfs,
}

impl Image {
    /// The files in the image's fields (its latest version).
    pub fn files(&self) -> ImageFiles {
        ImageFiles {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            rootfs: self.rootfs.clone(),
            initramfs: self.initramfs.clone(),
        }
    }

    /// The image's versions, oldest first. An image recorded before versions existed has
    /// one: version 1, its files, of unknown time and author.
    pub fn history(&self) -> Vec<ImageVersion> {
        if self.versions.is_empty() {
            vec![ImageVersion {
                number: 1,
                created_ms: 0,
                by: String::new(),
                what: "before versions".into(),
                files: self.files(),
                recipe: None,
            }]
        } else {
            self.versions.clone()
        }
    }

    /// The number of the latest version.
    pub fn latest_version(&self) -> u32 {
        self.versions.last().map_or(1, |v| v.number)
    }

    /// The files of version `number`, if the image has it.
    pub fn version_files(&self, number: u32) -> Option<ImageFiles> {
        if self.versions.is_empty() {
            return (number == 1).then(|| self.files());
        }
        self.versions
            .iter()
            .find(|v| v.number == number)
            .map(|v| v.files.clone())
    }

    /// This image as of version `number`: its settings, that version's files, no history.
    pub fn at_version(&self, number: u32) -> Option<Image> {
        let files = self.version_files(number)?;
        let mut image = Image {
            name: self.name.clone(),
            kernel: files.kernel.clone(),
            initrd: None,
            cmdline: self.cmdline.clone(),
            rootfs: None,
            initramfs: None,
            root: self.root,
            persistent: self.persistent.clone(),
            swarm: self.swarm,
            versions: Vec::new(),
        };
        image.set_files(files);
        Some(image)
    }

    /// Makes `files` the latest version, after `previous` (the image's record before this
    /// change, `None` for a new image): the history carries on from `previous`'s.
    pub fn push_version(
        &mut self,
        previous: Option<&Image>,
        files: ImageFiles,
        created_ms: u64,
        by: &str,
        what: &str,
    ) {
        self.versions = previous.map(Image::history).unwrap_or_default();
        let number = self.versions.last().map_or(1, |v| v.number + 1);
        self.versions.push(ImageVersion {
            number,
            created_ms,
            by: by.to_string(),
            what: what.to_string(),
            files: files.clone(),
            recipe: None,
        });
        self.set_files(files);
    }

    fn set_files(&mut self, files: ImageFiles) {
        self.kernel = files.kernel;
        self.initrd = files.initrd;
        self.rootfs = files.rootfs;
        self.initramfs = files.initramfs;
    }

    /// Every file any version names (with repeats): what a member must hold to serve them.
    pub fn all_files(&self) -> impl Iterator<Item = &ImageFile> {
        present(&self.kernel, [&self.initrd, &self.rootfs, &self.initramfs])
            .chain(self.versions.iter().flat_map(|v| v.files.iter()))
    }

    /// How the image boots: "ram-root" or "nfs-root" (its rootfs through drover's agent, by
    /// [`Image::root`]), "kernel+initrd" or "kernel".
    pub fn boot_kind(&self) -> &'static str {
        if self.rootfs.is_some() {
            match self.root {
                RootMode::Ram => "ram-root",
                RootMode::Nfs => "nfs-root",
            }
        } else if self.initrd.is_some() {
            "kernel+initrd"
        } else {
            "kernel"
        }
    }
}

/// Where a DHCP request came through, when it was relayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RelayInfo {
    pub giaddr: Option<Ipv4Addr>,
    /// Option 82 (relay agent information), raw sub-options as hex.
    pub agent_info: Option<String>,
}

/// The state of an address binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Offered, not yet requested; the address is held for a short time.
    Offered,
    Bound,
    Released,
    /// The client said the address is in use by someone else (DHCPDECLINE).
    Declined,
}

/// One address binding. Keyed in the store by the address, so that one address can never be
/// held by two bindings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// Client identifier (option 61) as hex, when the client sent one.
    pub client_id: Option<String>,
    pub hostname: Option<String>,
    pub state: LeaseState,
    /// Unix seconds.
    pub start: u64,
    /// Unix seconds; the binding is free after this.
    pub expires: u64,
    pub network: String,
    pub relay: RelayInfo,
}

impl Lease {
    /// True while the binding holds its address at unix time `now`.
    pub fn holds(&self, now: u64) -> bool {
        self.state != LeaseState::Released && self.expires > now
    }
}

/// A password or other secret: stored as given, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for the one place that needs it (the IPMI login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whose BMC settings a [`Bmc`] record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum BmcOwner {
    Node(String),
    Group(String),
}

impl BmcOwner {
    /// The record key: `node/NAME` or `group/NAME`.
    pub fn key(&self) -> String {
        match self {
            BmcOwner::Node(n) => format!("node/{n}"),
            BmcOwner::Group(g) => format!("group/{g}"),
        }
    }
}

/// How to reach a node's BMC. A node's own record overrides its group's field by field, so
/// a group can hold the user and password and each node only its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bmc {
    pub owner: BmcOwner,
    pub host: Option<String>,
    /// UDP port; `None` means 623.
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// How to speak to the BMC; `None`: IPMI (a node's own value overrides its group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<BmcProtocol>,
    /// The SHA-256 fingerprint of the BMC's HTTPS certificate, pinned on first use by
    /// Redfish (kept on the node's own record: a certificate belongs to one BMC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_pin: Option<String>,
}

impl Bmc {
    /// A record of `owner` with nothing set yet.
    pub fn empty(owner: BmcOwner) -> Bmc {
        Bmc {
            owner,
            host: None,
            port: None,
            user: None,
            password: None,
            protocol: None,
            tls_pin: None,
        }
    }
}

/// The protocol of a BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BmcProtocol {
    #[default]
    Ipmi,
    Redfish,
    /// Redfish when the BMC answers its service root, else IPMI.
    Auto,
}

impl BmcProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            BmcProtocol::Ipmi => "ipmi",
            BmcProtocol::Redfish => "redfish",
            BmcProtocol::Auto => "auto",
        }
    }
}

/// The last known chassis power state of a node, as `drover serve`'s poller saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    pub node: String,
    /// `Some(true)` on, `Some(false)` off, `None` unknown (the BMC did not answer).
    pub on: Option<bool>,
    /// Why the state is unknown (timeout, authentication, unreachable).
    pub error: Option<String>,
    /// Unix seconds when this state was first seen.
    pub since: u64,
}

/// A named setting (free-form JSON value); used for cluster-wide knobs set at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: serde_json::Value,
}

/// A step of a node's boot, reported by drover's DHCP server (an offer to the node's network
/// boot firmware), its TFTP and HTTP servers (what the node fetched) or by the agent in its
/// initramfs (what it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootStage {
    /// The DHCP server offered an address to the node's PXE or iPXE firmware (a new boot
    /// starts here).
    Dhcp,
    /// The node fetched iPXE firmware (over TFTP or HTTP) to chain into.
    Firmware,
    /// iPXE fetched the node's boot script (a new boot starts here when no DHCP offer of
    /// this server came first).
    Script,
    Kernel,
    /// The image's initrd or drover's initramfs.
    Initrd,
    /// The root filesystem tarball, or its manifest for a swarm download (RAM root).
    Rootfs,
    /// drover's agent runs and has its network up.
    Agent,
    /// The root filesystem is in place.
    Root,
    /// The agent hands over to the image's init.
    Ready,
    Failed,
}

impl BootStage {
    pub const ALL: [BootStage; 10] = [
        BootStage::Dhcp,
        BootStage::Firmware,
        BootStage::Script,
        BootStage::Kernel,
        BootStage::Initrd,
        BootStage::Rootfs,
        BootStage::Agent,
        BootStage::Root,
        BootStage::Ready,
        BootStage::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BootStage::Dhcp => "dhcp",
            BootStage::Firmware => "firmware",
            BootStage::Script => "script",
            BootStage::Kernel => "kernel",
            BootStage::Initrd => "initrd",
            BootStage::Rootfs => "rootfs",
            BootStage::Agent => "agent",
            BootStage::Root => "root",
            BootStage::Ready => "ready",
            BootStage::Failed => "failed",
        }
    }
}

/// One event of a node's boot timeline (ordered by time first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BootEvent {
    /// Unix milliseconds, by the clock of the member that recorded it.
    pub at_ms: u64,
    pub stage: BootStage,
    /// Who reported it: `dhcp`, `tftp`, `http` or `agent`.
    pub source: String,
    pub detail: String,
}

/// The recent boot events of one node (keyed by node name), oldest first, capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootLog {
    pub name: String,
    pub events: Vec<BootEvent>,
}

impl BootLog {
    /// The most events a log keeps (the newest).
    pub const MAX_EVENTS: usize = 64;

    /// Two copies of one node's log as sets of events (members that recorded events of one
    /// boot each wrote their own copy): their union in order, the newest
    /// [`BootLog::MAX_EVENTS`] kept. The same whatever the order of merging.
    pub fn union(&self, other: &BootLog) -> BootLog {
        let mut events: Vec<BootEvent> = self.events.iter().chain(&other.events).cloned().collect();
        events.sort();
        events.dedup();
        let cut = events.len().saturating_sub(Self::MAX_EVENTS);
        BootLog {
            name: self.name.clone(),
            events: events.split_off(cut),
        }
    }
}

/// One change in the audit log (`crate::audit`). `id` sorts in time order: the change's
/// unix time in milliseconds, then the member that recorded it and a random part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: String,
    /// Unix seconds.
    pub at: u64,
    /// `user NAME`, `token NAME` (API) or `unix USER` (local CLI).
    pub who: String,
    /// The client address (API) or `local`.
    pub from: String,
    /// The request (`PATCH /api/v1/nodes/n1`) or command line (`drover node set n1 ..`).
    pub what: String,
}

/// What a user or API token may do; each role may do all that the roles before it may.
/// Records written before roles existed have none and read as [`Role::Admin`] (what every
/// user was then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also powers nodes (and later console, exec); no users, tokens, settings or fleet data.
    Operator,
    /// Everything.
    #[default]
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("{s:?} is not a role: admin, operator or viewer"))
    }
}

/// A user of the web page and API. Only the argon2 hash of the password is kept (PHC string
/// format); `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    #[serde(default)]
    pub role: Role,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// An API token for scripts. The token itself is shown once, when it is made; the store keeps
/// only its BLAKE3 hash (tokens are 256 random bits, so a fast hash is enough).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    /// Hex BLAKE3 of the token.
    pub hash: String,
    /// Unix seconds.
    pub created: u64,
    #[serde(default)]
    pub role: Role,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let m: Mac = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert!("52:54:00:ab:cd".parse::<Mac>().is_err());
        assert!("52:54:00:ab:cd:0g".parse::<Mac>().is_err());
        assert!("52:54:00:ab:cd:0ff".parse::<Mac>().is_err());
        assert_eq!("52-54-00-ab-cd-0f".parse::<Mac>().unwrap(), m);
    }

    #[test]
    fn subnets() {
        let n: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert_eq!(n.broadcast(), "10.1.255.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(n.netmask(), "255.255.0.0".parse::<Ipv4Addr>().unwrap());
        assert!(!n.is_host("10.1.0.0".parse().unwrap()));
        assert!("10.1.0.1/16".parse::<Ipv4Net>().is_err());
        assert!("10.1.0.0/33".parse::<Ipv4Net>().is_err());
        let z: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn persistent_path_edge_cases() {
        use PersistentRule as R;
        let p = PersistentPath::parse("/var/log").unwrap();
        assert_eq!(p.components().collect::<Vec<_>>(), ["var", "log"]);
        assert_eq!(p.as_str(), "/var/log");
        for (bad, rule) in [
            ("", R::NotAbsolute),
            ("var/log", R::NotAbsolute),
            ("./var", R::NotAbsolute),
            ("/", R::WholeRoot),
            ("/var/log/", R::EmptyComponent),
            ("/var//log", R::EmptyComponent),
            ("//var", R::EmptyComponent),
            ("/var/../etc", R::DotComponent),
            ("/..", R::DotComponent),
            ("/var/./log", R::DotComponent),
            ("/var/.", R::DotComponent),
            ("/a,b", R::BadCharacter),
            ("/a b", R::BadCharacter),
            ("/a\"b", R::BadCharacter),
            ("/a\nb", R::BadCharacter),
            ("/a\0b", R::BadCharacter),
            ("/a\x7fb", R::BadCharacter),
        ] {
            assert_eq!(PersistentPath::parse(bad), Err(rule), "{bad:?}");
        }
        // Dots inside a name are names, not parts.
        assert!(PersistentPath::parse("/etc/.ssh").is_ok());
        assert!(PersistentPath::parse("/var/..log").is_ok());
        // 255 bytes in all, the slash included.
        let longest = format!("/{}", "x".repeat(MAX_PERSISTENT_PATH - 1));
        assert!(PersistentPath::parse(&longest).is_ok());
        assert_eq!(
            PersistentPath::parse(&format!("{longest}y")),
            Err(R::TooLong)
        );
    }

    #[test]
    fn persistent_sets_are_sorted_and_not_nested() {
        use PersistentRule as R;
        let set = |v: &[&str]| {
            PersistentPath::parse_set(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let ok = set(&["/var/log", "/etc/ssh", "/var/lib", "/var/lib2"]).unwrap();
        let names: Vec<&str> = ok.iter().map(PersistentPath::as_str).collect();
        assert_eq!(names, ["/etc/ssh", "/var/lib", "/var/lib2", "/var/log"]);
        assert!(set(&[]).unwrap().is_empty());
        assert_eq!(set(&["/a", "/a"]), Err(("/a".into(), R::Twice)));
        assert_eq!(set(&["/a/b", "/a"]), Err(("/a/b".into(), R::Nested)));
        assert_eq!(set(&["/a", "b"]), Err(("b".into(), R::NotAbsolute)));
        let many: Vec<String> = (0..=MAX_PERSISTENT).map(|i| format!("/p{i}")).collect();
        assert_eq!(
            PersistentPath::parse_set(&many),
            Err((format!("/p{MAX_PERSISTENT}"), R::TooMany))
        );
        assert!(PersistentPath::parse_set(&many[..MAX_PERSISTENT]).is_ok());
        // Joined with commas: 6 * 84 + 5 = 509 bytes fit, a seventh does not.
        let long: Vec<String> = (0..7).map(|i| format!("/{i}{}", "x".repeat(82))).collect();
        assert!(PersistentPath::parse_set(&long[..6]).is_ok());
        assert_eq!(
            PersistentPath::parse_set(&long).unwrap_err().1,
            R::TooLongTogether
        );
    }
}

/// A member of the pool's roster: written by the member itself when it first serves with the
/// cluster key, removed by `drover pool leave` or `drover pool forget`. The roster decides
/// which member owns which dynamic addresses (`dhcp::share`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMember {
    /// The member's store id.
    pub id: u64,
    /// Where the member gossips (`pool.address`:`pool.port`).
    pub addr: std::net::SocketAddrV4,
    /// When it joined (unix ms). A member owns addresses only once its row is
    /// [`PoolMember::SETTLE_MS`] old, so that every member has it by then.
    pub joined_ms: u64,
    /// When an admin declared it dead (`drover pool mark-dead`, unix ms): its incarnations
    /// that started before then neither vote nor hold the service address
    /// (`pool::floating`); a restart after it makes the member count again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_ms: Option<u64>,
    /// A witness (`drover witness`): it votes in the majorities of `pool::floating` and
    /// `dhcp::share`, and does nothing else: it owns no addresses, answers no client, holds no
    /// service address and keeps no store. The members write its row when they first see it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
    /// When an admin drained it (`drover pool drain`, unix ms on the admin's member; only
    /// compared for equality): it keeps running, replicating and voting, and hands its DHCP
    /// share and the service address to the others (`dhcp::share`, `pool::floating`) until
    /// `drover pool undrain` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_ms: Option<u64>,
}

impl PoolMember {
    /// How long a new roster row waits before it counts (replication takes seconds).
    pub const SETTLE_MS: u64 = 30_000;

    pub fn key_of(id: u64) -> String {
        format!("{id:016x}")
    }

    pub fn settled(&self, now_ms: u64) -> bool {
        now_ms >= self.joined_ms.saturating_add(Self::SETTLE_MS)
    }

    /// Whether its incarnation that started at `epoch` (unix ms) was declared dead.
    pub fn marked_dead(&self, epoch: u64) -> bool {
        self.dead_ms.is_some_and(|t| epoch <= t)
    }

    /// How much longer than [`PoolMember::SETTLE_MS`] the member itself waits before it hands
    /// out its share: the others stop using those addresses when the row settles, each on its
    /// own status tick (every 2 s) and after replication, so the new owner starts later.
    pub const HANDOFF_MS: u64 = 15_000;

    /// Whether the member itself may hand out its share (see [`PoolMember::HANDOFF_MS`]).
    pub fn owning(&self, now_ms: u64) -> bool {
        now_ms
            >= self
                .joined_ms
                .saturating_add(Self::SETTLE_MS + Self::HANDOFF_MS)
    }
}
