//! The store: drover's fleet data in LMDB (through heed), the only module that touches heed.
//!
//! Data flow: admin commands and protocol shells call [`Store::write`] with a closure that
//! reads and writes typed records through a [`Writer`]; the closure's writes commit together
//! (fsynced) or not at all. Every record is wrapped in a [`Versioned`] envelope carrying a
//! hybrid-logical-clock [`Version`]; deletes leave tombstones; every write appends a
//! [`Change`] to the change feed. Servers keep an in-memory [`View`] and bring it up to date
//! by reading the feed ([`View::refresh`]), which is how a change made by `drover node add`
//! in another process reaches a running `drover serve` within a second. The same feed and
//! versions are what pool replication will exchange.
//!
//! Layout (schema version [`SCHEMA_VERSION`]): one LMDB environment in `<state>/store/` with
//! five named databases: `records` (`<table>/<key>` -> JSON envelope), `index` (unique
//! secondary keys such as `mac/<mac>` -> record key), `feed` (sequence -> change), `origins`
//! (writing member + version -> `<table>/<key>` of the record holding that version, so a peer
//! can be sent everything one member wrote after a version) and `meta` (schema, member id,
//! clock, and the version vector `vv/<member>`: the newest version of each member this store
//! has, with everything older from that member either here or overwritten by a newer row).
//! [`replicate`] merges rows from other members.
//!
//! Not here: validation of admin input (`crate::admin`), the network side of replication
//! (`crate::pool`).

// heed's env open is `unsafe` (see `Store::open`), and so is turning off fsync for
// simulations (`Store::open_simulated`); nothing else is.
#![allow(unsafe_code)]

mod addrs;
pub mod hlc;
pub mod model;
pub mod replicate;
mod snapshot;
mod view;

pub use hlc::{Hlc, Version};
pub use view::{SharedView, View};

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{
    CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, FlagSetMode, RoTxn, RwTxn, WithoutTls,
};
use model::{
    ApiToken, AuditEntry, Bmc, BootLog, Export, Group, Image, Lease, Network, Node, PoolMember,
    PowerState, Setting, User,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bumped whenever the on-disk layout changes; [`Store::open`] refuses newer stores and
/// upgrades older ones. 2: tables `bmc` and `power` (older drovers cannot read their feed
/// entries; nothing to convert). 3: the `origins` database, the version vector and the
/// unique-key claims (rebuilt from the records when an older store is opened). 4: table
/// `exports` (as with 2, older drovers cannot read its feed entries; nothing to convert).
/// 5: tables `discovered` and `rules` (as with 4). 6: table `files` (as with 4).
pub const SCHEMA_VERSION: u32 = 6;

/// LMDB map size: address space reserved, not disk used.
const MAP_SIZE: usize = 64 << 30;

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Nodes,
    Groups,
    Networks,
    Images,
    Leases,
    Settings,
    Users,
    Tokens,
    Boots,
    /// BMC address and credentials per node (`node/NAME`) or group (`group/NAME`).
    Bmc,
    /// Last known chassis power state per node (written by `drover serve`'s poller).
    Power,
    /// The pool's roster: every member that joined and has not left.
    Members,
    /// Shared NFSv4 exports.
    Exports,
    /// Who changed what, when, from where (`crate::audit`).
    Audit,
    /// Machines that booted into discovery, by MAC (`crate::discover`).
    Discovered,
    /// Naming rules, by their canonical text.
    Rules,
    /// File sets delivered to nodes (`crate::files`), by name.
    Files,
}

impl Table {
    pub const ALL: [Table; 17] = [
        Table::Nodes,
        Table::Groups,
        Table::Networks,
        Table::Images,
        Table::Leases,
        Table::Settings,
        Table::Users,
        Table::Tokens,
        Table::Boots,
        Table::Bmc,
        Table::Power,
        Table::Members,
        Table::Exports,
        Table::Audit,
        Table::Discovered,
        Table::Rules,
        Table::Files,
    ];

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Nodes => "nodes",
            Table::Groups => "groups",
            Table::Networks => "networks",
            Table::Images => "images",
            Table::Leases => "leases",
            Table::Settings => "settings",
            Table::Users => "users",
            Table::Tokens => "tokens",
            Table::Boots => "boots",
            Table::Bmc => "bmc",
            Table::Power => "power",
            Table::Members => "members",
            Table::Exports => "exports",
            Table::Audit => "audit",
            Table::Discovered => "discovered",
            Table::Rules => "rules",
            Table::Files => "files",
        }
    }
}

/// A type stored as rows of one table.
pub trait Record: Serialize + DeserializeOwned + Clone + PartialEq {
    const TABLE: Table;
    /// The row's primary key.
    fn key(&self) -> String;
    /// Secondary keys that must be unique across the table (`mac/...`, `ip/...`).
    fn unique_keys(&self) -> Vec<String> {
        Vec::new()
    }
    /// For a table whose rows merge as sets rather than last writer wins: the merge of two
    /// copies of one row (`None`: the last writer wins; see `replicate`).
    fn union(&self, _other: &Self) -> Option<Self> {
        None
    }
}

impl Record for Node {
    const TABLE: Table = Table::Nodes;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn unique_keys(&self) -> Vec<String> {
        let mut keys = vec![format!("mac/{}", self.mac)];
        if let Some(ip) = self.ip {
            keys.push(format!("ip/{ip}"));
        }
        keys.extend(self.aliases.iter().map(|a| format!("alias/{a}")));
        keys
    }
}

/// Records whose key is their `name`.
macro_rules! keyed_by_name {
    ($($ty:ty => $table:expr),* $(,)?) => {$(
        impl Record for $ty {
            const TABLE: Table = $table;
            fn key(&self) -> String {
                self.name.clone()
            }
        }
    )*};
}

keyed_by_name!(Group => Table::Groups, Network => Table::Networks, Image => Table::Images, Setting => Table::Settings, User => Table::Users, Export => Table::Exports);

impl Record for BootLog {
    const TABLE: Table = Table::Boots;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn union(&self, other: &Self) -> Option<Self> {
        Some(BootLog::union(self, other))
    }
}

impl Record for ApiToken {
    const TABLE: Table = Table::Tokens;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn unique_keys(&self) -> Vec<String> {
        vec![format!("token/{}", self.hash)]
    }
}

impl Record for AuditEntry {
    const TABLE: Table = Table::Audit;
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Record for Bmc {
    const TABLE: Table = Table::Bmc;
    fn key(&self) -> String {
        self.owner.key()
    }
}

impl Record for PowerState {
    const TABLE: Table = Table::Power;
    fn key(&self) -> String {
        self.node.clone()
    }
}

impl Record for PoolMember {
    const TABLE: Table = Table::Members;
    fn key(&self) -> String {
        PoolMember::key_of(self.id)
    }
}

impl Record for crate::discover::inventory::Discovered {
    const TABLE: Table = Table::Discovered;
    fn key(&self) -> String {
        self.mac.to_string()
    }
}

impl Record for crate::discover::rule::NamingRule {
    const TABLE: Table = Table::Rules;
    fn key(&self) -> String {
        self.rule.clone()
    }
}

impl Record for crate::files::core::FileSet {
    const TABLE: Table = Table::Files;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Record for Lease {
    const TABLE: Table = Table::Leases;
    fn key(&self) -> String {
        self.ip.to_string()
    }
}

/// The on-disk envelope of every row. `value: None` is a tombstone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub version: Version,
    pub value: Option<T>,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub table: Table,
    pub key: String,
    pub version: Version,
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store at {path}: {source}")]
    Lmdb { path: PathBuf, source: heed::Error },
    #[error("store error: {0}")]
    Txn(#[from] heed::Error),
    #[error("store schema version {found} is newer than this drover understands ({SCHEMA_VERSION}); upgrade drover")]
    SchemaTooNew { found: u32 },
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{what} is already used by {table} {owner:?}")]
    Conflict {
        what: String,
        table: &'static str,
        owner: String,
    },
}

type Records<'e> = Database<'e, Str, Bytes>;
type Index<'e> = Database<'e, Str, Str>;
type Feed<'e> = Database<'e, U64<BigEndian>, Bytes>;
type Meta<'e> = Database<'e, Str, Bytes>;
type Origins<'e> = Database<'e, Bytes, Str>;

/// An open store. Cheap to share by reference; every method opens its own transaction.
pub struct Store {
    env: &'static Env<WithoutTls>,
    records: Records<'static>,
    index: Index<'static>,
    feed: Feed<'static>,
    meta: Meta<'static>,
    origins: Origins<'static>,
    member: u64,
    path: PathBuf,
    /// Where write versions take their time from: the system clock, or (simulations on
    /// virtual time) unix milliseconds the caller sets.
    clock: Option<Arc<AtomicU64>>,
}

impl Store {
    /// Opens (creating if needed) the store under `state_dir/store`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(state_dir, None)
    }

    /// [`Store::open`] for simulations: a new store gets member id `member` (an existing
    /// one keeps its own), and write versions take their time from `clock` (unix
    /// milliseconds the caller advances) instead of the system clock, so that a seeded run
    /// orders concurrent writes the same way every time. Commits are not fsynced (a
    /// simulated restart keeps the process, so nothing is lost; a busy disk would otherwise
    /// make a simulation of thousands of writes take minutes).
    pub fn open_simulated(
        state_dir: &Path,
        member: u64,
        clock: Arc<AtomicU64>,
    ) -> Result<Store, StoreError> {
        let mut store = Store::open_with(state_dir, Some(member))?;
        // SAFETY: heed marks NO_SYNC unsafe because a machine crash may then lose or tear
        // the last commits; a simulation's store does not outlive the process. No other
        // thread holds this freshly opened environment.
        unsafe { store.env.set_flags(EnvFlags::NO_SYNC, FlagSetMode::Enable) }.map_err(
            |source| StoreError::Lmdb {
                path: store.path.clone(),
                source,
            },
        )?;
        store.clock = Some(clock);
        Ok(store)
    }

    fn open_with(state_dir: &Path, member: Option<u64>) -> Result<Store, StoreError> {
        let path = state_dir.join("store");
        std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let lmdb = |source| StoreError::Lmdb {
            path: path.clone(),
            source,
        };
        // SAFETY: LMDB's memory map is only unsafe if the data file is modified by something
        // other than LMDB; the file lives in drover's own state directory and every process
        // (CLI or server) goes through LMDB's locking. The environment is leaked on purpose:
        // a store lives as long as the process, and heed ties database handles to it.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(MAP_SIZE)
                .max_dbs(8)
                .open(&path)
        }
        .map_err(lmdb)?;
        let env: &'static Env<WithoutTls> = Box::leak(Box::new(env));
        let wtxn = env.write_txn().map_err(lmdb)?;
        let (records, index, feed, meta, origins): (Records, Index, Feed, Meta, Origins) = env
            .create_databases_and_commit(wtxn, |dbs, wtxn| {
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((
                    dbs.create_database(wtxn, Some("records"))?,
                    dbs.create_database(wtxn, Some("index"))?,
                    dbs.create_database(wtxn, Some("feed"))?,
                    dbs.create_database(wtxn, Some("meta"))?,
                    dbs.create_database(wtxn, Some("origins"))?,
                )))
            })
            .map_err(lmdb)?
            .unwrap_commit();
        let mut wtxn = env.write_txn().map_err(lmdb)?;
        let schema = match meta.get(&wtxn, "schema").map_err(lmdb)? {
            Some(bytes) => decode::<u32>("meta/schema", bytes)?,
            None => {
                meta.put(&mut wtxn, "schema", &encode(&SCHEMA_VERSION))
                    .map_err(lmdb)?;
                SCHEMA_VERSION
            }
        };
        if schema > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found: schema });
        }
        if schema < 3 {
            replicate::build_origins(&records, &index, &origins, &meta, &mut wtxn)?;
        }
        if schema < SCHEMA_VERSION {
            meta.put(&mut wtxn, "schema", &encode(&SCHEMA_VERSION))
                .map_err(lmdb)?;
        }
        let member = match meta.get(&wtxn, "member").map_err(lmdb)? {
            Some(bytes) => decode::<u64>("meta/member", bytes)?,
            None => {
                let id = member.unwrap_or_else(random_u64);
                meta.put(&mut wtxn, "member", &encode(&id)).map_err(lmdb)?;
                id
            }
        };
        wtxn.commit().map_err(lmdb)?;
        Ok(Store {
            env,
            records,
            index,
            feed,
            meta,
            origins,
            member,
            path,
            clock: None,
        })
    }

    /// This store's member id (random, made when the store was created).
    pub fn member(&self) -> u64 {
        self.member
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction.
    pub fn read<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let txn = self.env.read_txn().map_err(StoreError::from)?;
        let reader = Reader {
            store: self,
            txn: &txn,
        };
        f(&reader)
    }

    /// Runs `f` in a write transaction and commits (with fsync) when it returns `Ok`; on
    /// `Err` nothing it wrote is kept. Write transactions are serialised across processes.
    pub fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Writer<'_, '_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut txn = self.env.write_txn().map_err(StoreError::from)?;
        let last = match self.meta.get(&txn, "hlc").map_err(StoreError::from)? {
            Some(bytes) => Some(decode::<Version>("meta/hlc", bytes)?),
            None => None,
        };
        let hlc = match last {
            Some(v) => Hlc::resume(self.member, v),
            None => Hlc::new(self.member),
        };
        let mut writer = Writer {
            store: self,
            txn: &mut txn,
            hlc,
            now_ms: match &self.clock {
                Some(clock) => clock.load(Ordering::Relaxed),
                None => crate::clock::unix_ms(),
            },
        };
        let out = f(&mut writer)?;
        let last = writer.hlc.last();
        self.meta
            .put(&mut txn, "hlc", &encode(&last))
            .map_err(StoreError::from)?;
        txn.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// The sequence number of the newest change (0 for an empty store).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        self.read(|r| r.last_seq())
    }

    fn row<T: Record>(
        &self,
        txn: &RoTxn<'_, WithoutTls>,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let full = row_key(T::TABLE, key);
        match self.records.get(txn, &full)? {
            Some(bytes) => Ok(Some(decode(&full, bytes)?)),
            None => Ok(None),
        }
    }
}

fn row_key(table: Table, key: &str) -> String {
    format!("{}/{}", table.name(), key)
}

/// Read access inside a transaction.
pub struct Reader<'t> {
    store: &'t Store,
    txn: &'t RoTxn<'t, WithoutTls>,
}

impl Reader<'_> {
    /// The live record `key` of table `T`, if any (tombstones read as `None`).
    pub fn get<T: Record>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self.store.row::<T>(self.txn, key)?.and_then(|v| v.value))
    }

    /// Every live record of table `T`, ordered by key.
    pub fn all<T: Record>(&self) -> Result<Vec<T>, StoreError> {
        all_rows::<T>(self.store, self.txn)
    }

    /// The version of row `key` of table `T` (a tombstone's too), if the store has it.
    pub fn version_of<T: Record>(&self, key: &str) -> Result<Option<Version>, StoreError> {
        Ok(self.store.row::<T>(self.txn, key)?.map(|v| v.version))
    }

    /// The primary key of the record owning unique key `unique` (e.g. `mac/52:54:...`).
    pub fn owner(&self, unique: &str) -> Result<Option<String>, StoreError> {
        Ok(self.store.index.get(self.txn, unique)?.map(str::to_string))
    }

    /// The sequence number of the newest change (0 for an empty store).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .store
            .feed
            .last(self.txn)?
            .map(|(seq, _)| seq)
            .unwrap_or(0))
    }

    /// Up to `limit` changes with a sequence number greater than `after`, oldest first.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = after.saturating_add(1);
        let mut out = Vec::new();
        for item in self.store.feed.range(self.txn, &(start..))?.take(limit) {
            let (seq, bytes) = item?;
            out.push(decode::<Change>(&format!("feed/{seq}"), bytes)?);
        }
        Ok(out)
    }

    /// The newest sequence number pruned from the feed by [`Writer::compact_feed`] (0: none):
    /// a reader that has not seen every change up to it must reload instead of reading on.
    pub fn feed_floor(&self) -> Result<u64, StoreError> {
        feed_floor(&self.store.meta, self.txn)
    }

    pub fn node_by_mac(&self, mac: model::Mac) -> Result<Option<Node>, StoreError> {
        match self.owner(&format!("mac/{mac}"))? {
            Some(name) => self.get::<Node>(&name),
            None => Ok(None),
        }
    }
}

fn all_rows<T: Record>(store: &Store, txn: &RoTxn<'_, WithoutTls>) -> Result<Vec<T>, StoreError> {
    let prefix = format!("{}/", T::TABLE.name());
    let mut out = Vec::new();
    for item in store.records.prefix_iter(txn, &prefix)? {
        let (key, bytes) = item?;
        let row: Versioned<T> = decode(key, bytes)?;
        out.extend(row.value);
    }
    Ok(out)
}

/// Read and write access inside a write transaction.
pub struct Writer<'s, 't> {
    store: &'s Store,
    txn: &'t mut RwTxn<'static>,
    hlc: Hlc,
    now_ms: u64,
}

impl Writer<'_, '_> {
    pub fn get<T: Record>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self.store.row::<T>(self.txn, key)?.and_then(|v| v.value))
    }

    pub fn all<T: Record>(&self) -> Result<Vec<T>, StoreError> {
        all_rows::<T>(self.store, self.txn)
    }

    pub fn owner(&self, unique: &str) -> Result<Option<String>, StoreError> {
        Ok(self.store.index.get(self.txn, unique)?.map(str::to_string))
    }

    /// Inserts or replaces `record`. Fails with [`StoreError::Conflict`] when one of its
    /// unique keys belongs to another record of the table.
    pub fn put<T: Record>(&mut self, record: &T) -> Result<(), StoreError> {
        let key = record.key();
        let old = self.get::<T>(&key)?;
        let version = self.hlc.tick(self.now_ms);
        self.claim_keys(&key, old.as_ref(), Some(record), version, true)?;
        self.write_versioned(T::TABLE, &key, Some(record), version)
    }

    /// Deletes record `key` of table `T`, leaving a tombstone. Returns whether it existed.
    pub fn delete<T: Record>(&mut self, key: &str) -> Result<bool, StoreError> {
        let Some(old) = self.get::<T>(key)? else {
            return Ok(false);
        };
        let version = self.hlc.tick(self.now_ms);
        self.claim_keys::<T>(key, Some(&old), None, version, true)?;
        self.write_versioned::<T>(T::TABLE, key, None, version)?;
        Ok(true)
    }

    /// Prunes the oldest feed entries, in sequence order: at most `limit` of them, never one
    /// of the newest `keep` (at least 1: the newest entry numbers the next change), and only
    /// while `covered` accepts them (the first it refuses stops the walk, so the feed stays
    /// one unbroken run after the floor). Records the new floor ([`Reader::feed_floor`]).
    /// Returns how many entries went.
    ///
    /// Only local readers use the feed (views, the API's event stream); replication reads
    /// the origins and version vector, which this leaves alone.
    pub fn compact_feed(
        &mut self,
        keep: u64,
        limit: usize,
        covered: impl Fn(&Change) -> bool,
    ) -> Result<u64, StoreError> {
        assert!(keep >= 1, "the newest feed entry is never pruned");
        let last = self.store.feed.last(self.txn)?.map(|(s, _)| s).unwrap_or(0);
        let floor = feed_floor(&self.store.meta, self.txn)?;
        let upto = last.saturating_sub(keep);
        if upto <= floor {
            return Ok(0);
        }
        let mut top = floor;
        for item in self
            .store
            .feed
            .range(self.txn, &(floor + 1..=upto))?
            .take(limit)
        {
            let (seq, bytes) = item?;
            if !covered(&decode::<Change>(&format!("feed/{seq}"), bytes)?) {
                break;
            }
            top = seq;
        }
        if top == floor {
            return Ok(0);
        }
        let pruned = self.store.feed.delete_range(self.txn, &(floor + 1..=top))?;
        self.store.meta.put(self.txn, FEED_FLOOR, &encode(&top))?;
        Ok(pruned as u64)
    }

    /// Writes a row with `version` (a local one, or one from another member), and records it
    /// in the feed, the origins and the version vector.
    fn write_versioned<T: Serialize>(
        &mut self,
        table: Table,
        key: &str,
        value: Option<&T>,
        version: Version,
    ) -> Result<(), StoreError> {
        let full = row_key(table, key);
        if let Some(bytes) = self.store.records.get(self.txn, &full)? {
            let old: Versioned<serde::de::IgnoredAny> = decode(&full, bytes)?;
            self.store
                .origins
                .delete(self.txn, &replicate::origin_key(old.version))?;
        }
        let envelope = Versioned { version, value };
        self.store
            .records
            .put(self.txn, &full, &encode(&envelope))?;
        self.store
            .origins
            .put(self.txn, &replicate::origin_key(version), &full)?;
        replicate::advance_vv(&self.store.meta, self.txn, version.member, version)?;
        let seq = self.store.feed.last(self.txn)?.map(|(s, _)| s).unwrap_or(0) + 1;
        let change = Change {
            seq,
            table,
            key: key.to_string(),
            version,
            deleted: value.is_none(),
        };
        self.store.feed.put(self.txn, &seq, &encode(&change))?;
        Ok(())
    }
}

/// Meta key of [`Reader::feed_floor`].
const FEED_FLOOR: &str = "feed_floor";

fn feed_floor(meta: &Meta<'static>, txn: &RoTxn<'_, WithoutTls>) -> Result<u64, StoreError> {
    match meta.get(txn, FEED_FLOOR)? {
        Some(bytes) => decode(FEED_FLOOR, bytes),
        None => Ok(0),
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising these plain data types to JSON cannot fail: no maps with non-string keys,
    // no custom serialisers that error.
    serde_json::to_vec(value).expect("store records serialise to JSON")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// A random 64-bit id from the kernel's generator (a fresh member id).
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // getrandom(2) through std's hashmap seed would be indirect; /dev/urandom is always there
    // on Linux. Fall back to time ^ pid if it is not (a chroot without /dev).
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return u64::from_le_bytes(buf);
        }
    }
    crate::clock::unix_ms() ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests;
