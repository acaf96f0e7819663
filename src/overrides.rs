//! Appliance settings kept in the store (`drover config show|set|unset|apply`, the API's
//! `/config` and the page's Settings tab), laid over the configuration `drover serve`
//! started from.
//!
//! Precedence, lowest first: the embedded default, the file of `serve --config`, the
//! `--interface` flags (added to `interfaces`), the pool-wide settings of the store, this
//! member's settings of the store. Each key is one store setting, so that two admins who
//! change two keys at once on two members both win (the store merges per record): pool-wide
//! keys are `config_<key>` and travel to every member with the store's replication; a
//! member's keys ([`crate::config::key_scope`]: its interfaces and addresses) are
//! `config-<member id in hex>_<key>`, and only that member reads them. In both, the key's
//! dots are written as `_` (keys have none).
//!
//! A change is checked by the one parser (`Config::layered`) against the whole result
//! before it is written, and all keys of one change go in one transaction. What
//! `drover serve` started from is recorded in `<state>/serve-base.json` ([`Base`]: the
//! file's path and the flags), so that the CLI and the API check against the base the
//! server uses. A value written around this module (the generic `/settings` route) that
//! does not pass is reported by [`show`] and ignored by the server, which keeps what runs.
//!
//! Not here: applying the result (`crate::serve` reads [`stored`] and restarts services).

use crate::config::{self, Config, ConfigError, Scope, Takes};
use crate::store::model::Setting;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file in the state directory that records what `drover serve` started from.
pub const BASE_FILE: &str = "serve-base.json";
/// Name prefix of pool-wide keys.
const POOL_PREFIX: &str = "config_";

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{key}` is not set in the store")]
    NotSet { key: String },
    #[error("`{key}`: a setting's value cannot be JSON null")]
    Null { key: String },
    #[error("{path}: {message}")]
    Base { path: PathBuf, message: String },
}

impl OverrideError {
    /// The key the error is about, if one is.
    pub fn key(&self) -> Option<&str> {
        match self {
            OverrideError::Config(ConfigError::Invalid { key, .. }) => Some(key),
            OverrideError::Config(
                ConfigError::UnknownKey { key } | ConfigError::Value { key, .. },
            )
            | OverrideError::NotSet { key }
            | OverrideError::Null { key } => Some(key),
            _ => None,
        }
    }
}

/// What `drover serve` started from: its `--config` file and `--interface` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub file: Option<PathBuf>,
    pub interfaces: Vec<String>,
}

impl Base {
    /// Writes the record into `state_dir`.
    pub fn record(&self, state_dir: &Path) -> Result<(), OverrideError> {
        let path = state_dir.join(BASE_FILE);
        // Plain data: serialising it cannot fail.
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::durable::write(&path, &bytes, 0o644).map_err(|e| OverrideError::Base {
            path,
            message: e.to_string(),
        })
    }

    /// The record of `state_dir`; without one, the embedded default and no flags.
    pub fn load(state_dir: &Path) -> Result<Base, OverrideError> {
        let path = state_dir.join(BASE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OverrideError::Base {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Base::default()),
            Err(e) => Err(OverrideError::Base {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// The file's table (the embedded default's without a file), with the flags added to
    /// `interfaces`.
    pub fn table(&self) -> Result<toml::Table, OverrideError> {
        let mut table = match &self.file {
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| OverrideError::Base {
                    path: f.clone(),
                    message: e.to_string(),
                })?;
                Config::table(&text, &f.display().to_string())?
            }
            None => Config::table(config::DEFAULT_TOML, "embedded default")?,
        };
        if !self.interfaces.is_empty() {
            let mut list = match table.remove("interfaces") {
                Some(toml::Value::Array(a)) => a,
                _ => Vec::new(),
            };
            for i in &self.interfaces {
                let v = toml::Value::String(i.clone());
                if !list.contains(&v) {
                    list.push(v);
                }
            }
            table.insert("interfaces".into(), toml::Value::Array(list));
        }
        Ok(table)
    }

    /// Where errors say the settings come from.
    fn origin(&self) -> String {
        match &self.file {
            Some(f) => format!("{} and the store's settings", f.display()),
            None => "the store's settings".into(),
        }
    }
}

/// The store setting that holds `key` for `member`.
fn setting_name(key: &str, scope: Scope, member: u64) -> String {
    let key = key.replace('.', "_");
    match scope {
        Scope::Pool => format!("{POOL_PREFIX}{key}"),
        Scope::Member => format!("config-{member:x}_{key}"),
    }
}

/// The key of a store setting of `member`, with its scope; `None` for other settings
/// (other members' keys included).
fn key_of(name: &str, member: u64) -> Option<(String, Scope)> {
    let own = format!("config-{member:x}_");
    let (rest, scope) = match name.strip_prefix(POOL_PREFIX) {
        Some(rest) => (rest, Scope::Pool),
        None => (name.strip_prefix(own.as_str())?, Scope::Member),
    };
    let key = rest.replacen('_', ".", 1);
    Some((key, scope))
}

/// One stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub key: String,
    pub scope: Scope,
    pub value: toml::Value,
}

/// The store's settings for `member`: pool-wide keys, then the member's, each by key.
pub fn stored(store: &Store, member: u64) -> Result<Vec<Stored>, OverrideError> {
    let all = store.read(|r| r.all::<Setting>())?;
    let mut out = Vec::new();
    for s in all {
        let Some((key, scope)) = key_of(&s.name, member) else {
            continue;
        };
        let value = to_toml(&key, s.value)?;
        out.push(Stored { key, scope, value });
    }
    out.sort_by(|a, b| (a.scope == Scope::Member, &a.key).cmp(&(b.scope == Scope::Member, &b.key)));
    Ok(out)
}

fn to_toml(key: &str, value: serde_json::Value) -> Result<toml::Value, OverrideError> {
    toml::Value::deserialize(value).map_err(|e| match e.to_string().contains("null") {
        true => OverrideError::Null { key: key.into() },
        false => OverrideError::Config(ConfigError::Value {
            path: "the store's settings".into(),
            key: key.into(),
            message: e.to_string(),
        }),
    })
}

/// The configuration of `base` with `stored` laid over it.
pub fn layered(base: &Base, stored: &[Stored]) -> Result<Config, OverrideError> {
    let pairs: Vec<(String, toml::Value)> = stored
        .iter()
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    Ok(Config::layered(&base.table()?, &pairs, &base.origin())?)
}

/// One key to set (`Some`) or remove from the store (`None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub value: Option<serde_json::Value>,
}

/// What a change did to one key, and when the running server follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub key: String,
    pub scope: Scope,
    pub takes: Takes,
    /// The key went back to the file's (or default) value.
    pub removed: bool,
}

/// Checks `changes` together against the whole result and writes them in one transaction.
pub fn change(
    store: &Store,
    state_dir: &Path,
    changes: &[Change],
) -> Result<Vec<Outcome>, OverrideError> {
    let member = store.member();
    let base = Base::load(state_dir)?;
    let mut current: BTreeMap<(bool, String), Stored> = stored(store, member)?
        .into_iter()
        .map(|s| ((s.scope == Scope::Member, s.key.clone()), s))
        .collect();
    let mut outcomes = Vec::new();
    for c in changes {
        let scope = config::key_scope(&c.key)?;
        let slot = (scope == Scope::Member, c.key.clone());
        match &c.value {
            Some(v) => {
                let value = to_toml(&c.key, v.clone())?;
                let key = c.key.clone();
                current.insert(slot, Stored { key, scope, value });
            }
            None => {
                if current.remove(&slot).is_none() {
                    return Err(OverrideError::NotSet { key: c.key.clone() });
                }
            }
        }
        outcomes.push(Outcome {
            key: c.key.clone(),
            scope,
            takes: config::key_takes(&c.key),
            removed: c.value.is_none(),
        });
    }
    let all: Vec<Stored> = current.into_values().collect();
    layered(&base, &all)?;
    store.write(|w| {
        for c in changes {
            let scope = config::key_scope(&c.key)?;
            let name = setting_name(&c.key, scope, member);
            match &c.value {
                Some(value) => w.put(&Setting {
                    name,
                    value: value.clone(),
                })?,
                None => {
                    w.delete::<Setting>(&name)?;
                }
            }
        }
        Ok::<_, OverrideError>(())
    })?;
    Ok(outcomes)
}

/// Where a shown value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Default,
    File,
    /// `serve --interface`.
    Flag,
    Pool,
    Member,
}

/// One key as `config show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub value: serde_json::Value,
    pub source: Source,
    pub scope: Scope,
    pub takes: Takes,
}

/// Every key that has a value, and whether the stored settings are in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// The server's `--config` file, if it had one.
    pub file: Option<PathBuf>,
    pub settings: Vec<Row>,
    /// Why the stored settings do not pass the checks (the server then keeps what runs).
    pub problem: Option<String>,
    /// Keys that take effect at a restart whose value differs from the one the running
    /// server started with (set by the API, which knows the server; [`restart_pending`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_pending: Vec<String>,
}

/// The values of the keys that take effect at a restart: what a server starting now runs
/// with, to compare later shows against.
pub fn restart_values(shown: &Shown) -> BTreeMap<String, serde_json::Value> {
    shown
        .settings
        .iter()
        .filter(|r| r.takes == Takes::Restart)
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect()
}

/// The keys of `now` that take effect at a restart and differ from `started` (a key that
/// appeared or went away counts too): saved, but not what the server runs.
pub fn restart_pending(started: &BTreeMap<String, serde_json::Value>, now: &Shown) -> Vec<String> {
    let current = restart_values(now);
    let mut keys: Vec<String> = current
        .iter()
        .filter(|(k, v)| started.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(
            started
                .keys()
                .filter(|k| !current.contains_key(*k))
                .cloned(),
        )
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The keys of a configuration table, `interfaces` and `SECTION.FIELD`.
pub fn flatten(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => {
                out.extend(t.iter().map(|(f, v)| (format!("{k}.{f}"), v.clone())));
            }
            v => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// Every key with its value and where it comes from.
pub fn show(store: &Store, state_dir: &Path) -> Result<Shown, OverrideError> {
    let base = Base::load(state_dir)?;
    let mut rows: BTreeMap<String, (toml::Value, Source)> = BTreeMap::new();
    let default = Config::table(config::DEFAULT_TOML, "embedded default")?;
    for (k, v) in flatten(&default) {
        rows.insert(k, (v, Source::Default));
    }
    if base.file.is_some() {
        let file_only = Base {
            interfaces: Vec::new(),
            ..base.clone()
        };
        for (k, v) in flatten(&file_only.table()?) {
            rows.insert(k, (v, Source::File));
        }
    }
    if !base.interfaces.is_empty() {
        if let Some(v) = base.table()?.remove("interfaces") {
            rows.insert("interfaces".into(), (v, Source::Flag));
        }
    }
    let (stored, problem) = match stored(store, store.member()) {
        Ok(s) => {
            let problem = layered(&base, &s).err().map(|e| e.to_string());
            (s, problem)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    for s in stored {
        let source = match s.scope {
            Scope::Pool => Source::Pool,
            Scope::Member => Source::Member,
        };
        rows.insert(s.key, (s.value, source));
    }
    let settings = rows
        .into_iter()
        .filter_map(|(key, (value, source))| {
            let scope = config::key_scope(&key).ok()?;
            Some(Row {
                takes: config::key_takes(&key),
                value: serde_json::to_value(&value).ok()?,
                key,
                source,
                scope,
            })
        })
        .collect();
    Ok(Shown {
        file: base.file,
        settings,
        problem,
        restart_pending: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory (the store and the base record go in it).
    fn dir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("drover-overrides-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn store() -> (PathBuf, Store) {
        let dir = dir();
        let store = Store::open(&dir).unwrap();
        (dir, store)
    }

    fn set(key: &str, value: serde_json::Value) -> Change {
        Change {
            key: key.into(),
            value: Some(value),
        }
    }

    #[test]
    fn changes_are_checked_whole_and_stored_by_scope() {
        let (dir, store) = store();
        let out = change(&store, &dir, &[set("dns.enabled", false.into())]).unwrap();
        assert_eq!(out[0].scope, Scope::Pool);
        assert_eq!(out[0].takes, Takes::Live);
        let ifaces = serde_json::json!(["eth0", "eth1"]);
        change(&store, &dir, &[set("interfaces", ifaces)]).unwrap();
        let c = layered(&Base::default(), &stored(&store, store.member()).unwrap()).unwrap();
        assert!(!c.dns.enabled);
        assert_eq!(c.interfaces, ["eth0", "eth1"]);
        // Another member does not see this member's interfaces, only the pool-wide key.
        let other = stored(&store, store.member() + 1).unwrap();
        assert_eq!(other.len(), 1, "{other:?}");
        // A refused change writes nothing, and names its key.
        let e = change(
            &store,
            &dir,
            &[
                set("ntp.port", 124.into()),
                set("dhcp.lease-time", 5.into()),
            ],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("dhcp.lease-time"), "{e}");
        assert_eq!(stored(&store, store.member()).unwrap().len(), 2);
        let e = change(&store, &dir, &[set("dns.enabled", "maybe".into())]).unwrap_err();
        assert_eq!(e.key(), Some("dns.enabled"), "{e}");
        let unset = Change {
            key: "dns.enabled".into(),
            value: None,
        };
        change(&store, &dir, std::slice::from_ref(&unset)).unwrap();
        let e = change(&store, &dir, &[unset]).unwrap_err();
        assert!(matches!(e, OverrideError::NotSet { .. }), "{e}");
        let shown = show(&store, &dir).unwrap();
        let row = |k: &str| shown.settings.iter().find(|r| r.key == k).unwrap().clone();
        assert_eq!(row("dns.enabled").source, Source::Default);
        assert_eq!(row("interfaces").source, Source::Member);
        assert_eq!(row("http.port").takes, Takes::Restart);
        assert!(shown.problem.is_none());
    }

    #[test]
    fn a_bad_value_written_around_the_checks_is_reported_not_applied() {
        let (dir, store) = store();
        let bad = Setting {
            name: "config_dns_port".into(),
            value: 0.into(),
        };
        store.write(|w| w.put(&bad)).unwrap();
        let shown = show(&store, &dir).unwrap();
        assert!(shown.problem.unwrap().contains("dns.port"));
        let e = change(&store, &dir, &[set("ntp.enabled", false.into())]).unwrap_err();
        assert_eq!(e.key(), Some("dns.port"), "{e}");
    }

    #[test]
    fn the_base_adds_flags_to_the_file() {
        let dir = dir();
        let file = dir.join("drover.toml");
        std::fs::write(&file, "interfaces = [\"a\"]\n[dns]\nport = 5353\n").unwrap();
        let base = Base {
            file: Some(file),
            interfaces: vec!["a".into(), "b".into()],
        };
        base.record(&dir).unwrap();
        assert_eq!(Base::load(&dir).unwrap(), base);
        let c = layered(&base, &[]).unwrap();
        assert_eq!((c.interfaces.len(), c.dns.port), (2, 5353));
    }

    #[test]
    fn only_changed_restart_keys_are_pending() {
        let row = |key: &str, value: serde_json::Value, takes: Takes| Row {
            key: key.into(),
            value,
            source: Source::Default,
            scope: Scope::Pool,
            takes,
        };
        let shown = |grace: u64, dns: bool| Shown {
            file: None,
            settings: vec![
                row("dns.enabled", dns.into(), Takes::Live),
                row("nfs.grace-secs", grace.into(), Takes::Restart),
                row("http.port", 80.into(), Takes::Restart),
            ],
            problem: None,
            restart_pending: Vec::new(),
        };
        let started = restart_values(&shown(90, true));
        assert!(restart_pending(&started, &shown(90, false)).is_empty());
        assert_eq!(
            restart_pending(&started, &shown(30, true)),
            ["nfs.grace-secs"]
        );
        // Set back to the running value: nothing is pending any more.
        assert!(restart_pending(&started, &shown(90, true)).is_empty());
        let mut gone = shown(90, true);
        gone.settings.retain(|r| r.key != "http.port");
        assert_eq!(restart_pending(&started, &gone), ["http.port"]);
    }
}
