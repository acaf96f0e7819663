//! The cluster key: 32 random bytes shared by every pool member, kept in
//! `<state>/cluster.key` (64 hex digits and a newline, mode 0600). Every secret of pool
//! traffic is derived from it ([`ClusterKey::derive_key`], BLAKE3 key derivation with a
//! context per use), so only key holders can join, gossip, read or write pool traffic.
//!
//! A rekey (`drover pool rekey`) replaces the key without downtime: the next key and two
//! times are kept in `<state>/pool/rekey` ([`Rekey`]) and passed to every live member over
//! the encrypted pool port. A [`Keyring`] says which keys a member accepts and which it sends
//! with at a given time: until `switch_ms` it sends with the current key and accepts both,
//! until `retire_ms` it sends with the next key and still accepts the current one, then the
//! next key becomes `cluster.key` and the old one is refused. Key files are written durably
//! (temporary file, fsync, rename, fsync of the directory).
//!
//! Not here: the handshake, the encryption and the datagram sealing built on the key
//! (`seal`), distributing a rekey (`replication`, `serve`).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Length of the key.
pub const KEY_LEN: usize = 32;
/// The key file's name in the state directory.
pub const KEY_FILE: &str = "cluster.key";
/// The pending rekey's file, in `<state>/pool/`.
pub const REKEY_FILE: &str = "rekey";

/// `N` bytes from the kernel's CSPRNG: keys and the nonces of handshakes and datagrams.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    use rand_core::RngCore;
    let mut bytes = [0u8; N];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_LEN]);

/// The key never appears in logs or debug output.
impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the cluster key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the cluster key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a cluster key: expected {} hex digits", KEY_LEN * 2)]
    Malformed { path: PathBuf },
    #[error(
        "{path} exists already: this member has a cluster key (`drover pool leave` removes it)"
    )]
    Exists { path: PathBuf },
    #[error("{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is not a rekey: expected `NEXT_KEY SWITCH_MS RETIRE_MS`")]
    MalformedRekey { path: PathBuf },
}

impl ClusterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// A new random key from the kernel's CSPRNG (the same source as `auth`'s secrets).
    pub fn generate() -> std::io::Result<ClusterKey> {
        random_bytes().map(ClusterKey)
    }

    /// The key file of the state directory `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(KEY_FILE)
    }

    /// Parses the hex text of a key file.
    pub fn parse(text: &str) -> Option<ClusterKey> {
        let hex = text.trim();
        if hex.len() != KEY_LEN * 2 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ClusterKey(bytes))
    }

    /// Reads a key file; refuses one that group or others can read.
    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        ClusterKey::parse(&text).ok_or_else(|| KeyError::Malformed {
            path: path.to_path_buf(),
        })
    }

    /// Reads the state directory's key; `None` when there is none (not in a pool).
    pub fn load_state(state_dir: &Path) -> Result<Option<ClusterKey>, KeyError> {
        let path = ClusterKey::path(state_dir);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => ClusterKey::load(&path).map(Some),
        }
    }

    /// Writes the key to `path` (created with mode 0600, never overwritten), fsynced.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                    path: path.to_path_buf(),
                },
                _ => KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        f.write_all(format!("{}\n", hex(self)).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| KeyError::Write {
                path: path.to_path_buf(),
                source,
            })
    }

    /// A secret for another use of the key (BLAKE3 key derivation with `context`, a
    /// string unique to that use): every member derives the same, nobody else can.
    pub fn derive_key(&self, context: &str) -> [u8; KEY_LEN] {
        blake3::derive_key(context, &self.0)
    }
}

fn hex(key: &ClusterKey) -> String {
    key.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path` (mode 0600) so that a crash leaves the old or the new file,
/// never a torn one: a temporary file, fsynced, renamed over `path`, then the directory
/// fsynced.
pub fn write_durably(path: &Path, text: &str) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    sync_dir(dir).map_err(err)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A rekey in progress: the next key, when members start sending with it, and when the
/// current key is refused (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    pub next: ClusterKey,
    pub switch_ms: u64,
    pub retire_ms: u64,
}

impl Rekey {
    /// `<state>/pool/rekey`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("pool").join(REKEY_FILE)
    }

    /// `NEXT_HEX SWITCH_MS RETIRE_MS`.
    pub fn to_text(&self) -> String {
        format!(
            "{} {} {}\n",
            hex(&self.next),
            self.switch_ms,
            self.retire_ms
        )
    }

    pub fn parse(text: &str) -> Option<Rekey> {
        let mut words = text.split_whitespace();
        let next = ClusterKey::parse(words.next()?)?;
        let switch_ms = words.next()?.parse().ok()?;
        let retire_ms = words.next()?.parse().ok()?;
        (words.next().is_none() && switch_ms <= retire_ms).then_some(Rekey {
            next,
            switch_ms,
            retire_ms,
        })
    }

    /// Writes the rekey file of `state_dir` durably.
    pub fn save(&self, state_dir: &Path) -> Result<(), KeyError> {
        let path = Rekey::path(state_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
                path: path.clone(),
                source,
            })?;
        }
        write_durably(&path, &self.to_text())
    }
}

/// The keys of a member: its cluster key and a rekey in progress, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    pub current: ClusterKey,
    pub rekey: Option<Rekey>,
}

impl Keyring {
    /// The key to start connections and seal datagrams with at `now_ms`.
    pub fn send(&self, now_ms: u64) -> &ClusterKey {
        match &self.rekey {
            Some(r) if now_ms >= r.switch_ms => &r.next,
            _ => &self.current,
        }
    }

    /// The keys a peer may use at `now_ms`, the likelier first.
    pub fn accepted(&self, now_ms: u64) -> Vec<ClusterKey> {
        match &self.rekey {
            None => vec![self.current.clone()],
            Some(r) if now_ms >= r.retire_ms => vec![r.next.clone()],
            Some(r) if now_ms >= r.switch_ms => vec![r.next.clone(), self.current.clone()],
            Some(r) => vec![self.current.clone(), r.next.clone()],
        }
    }

    /// The rekey whose transition is over at `now_ms`: its key is to become `cluster.key`.
    pub fn finished(&self, now_ms: u64) -> Option<&Rekey> {
        self.rekey.as_ref().filter(|r| now_ms >= r.retire_ms)
    }

    /// The key and the pending rekey of `state_dir`; `None` outside a pool.
    pub fn load_state(state_dir: &Path) -> Result<Option<Keyring>, KeyError> {
        let Some(current) = ClusterKey::load_state(state_dir)? else {
            return Ok(None);
        };
        let path = Rekey::path(state_dir);
        let rekey = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(KeyError::Read { path, source }),
            Ok(text) => Some(Rekey::parse(&text).ok_or(KeyError::MalformedRekey { path })?),
        };
        // A crash between the two steps of `finish` leaves the next key current already.
        let rekey = rekey.filter(|r| r.next != current);
        Ok(Some(Keyring { current, rekey }))
    }

    /// Ends a finished transition on disk: the next key durably in `cluster.key`, then the
    /// rekey file removed (a crash in between is harmless: see `load_state`).
    pub fn finish(state_dir: &Path, rekey: &Rekey) -> Result<(), KeyError> {
        write_durably(
            &ClusterKey::path(state_dir),
            &format!("{}\n", hex(&rekey.next)),
        )?;
        let path = Rekey::path(state_dir);
        let err = |source| KeyError::Write {
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
        sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_context_and_key_and_debug_redacts() {
        let k = ClusterKey::from_bytes([7; KEY_LEN]);
        let other = ClusterKey::from_bytes([8; KEY_LEN]);
        assert_eq!(k.derive_key("a"), k.derive_key("a"));
        assert_ne!(k.derive_key("a"), k.derive_key("b"));
        assert_ne!(k.derive_key("a"), other.derive_key("a"));
        assert_eq!(format!("{k:?}"), "ClusterKey(..)");
    }

    #[test]
    fn file_round_trip_mode_and_refusals() {
        let dir = std::env::temp_dir().join(format!("drover-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(ClusterKey::load_state(&dir).unwrap().is_none());
        let k = ClusterKey::generate().unwrap();
        let path = ClusterKey::path(&dir);
        k.save_new(&path).unwrap();
        assert_eq!(ClusterKey::load_state(&dir).unwrap(), Some(k.clone()));
        assert!(matches!(k.save_new(&path), Err(KeyError::Exists { .. })));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ClusterKey::load(&path),
            Err(KeyError::Permissions { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "xyz\n").unwrap();
        assert!(matches!(
            ClusterKey::load(&path),
            Err(KeyError::Malformed { .. })
        ));
        assert!(ClusterKey::parse(&"g".repeat(64)).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_keyring_moves_through_a_rekey_and_ends_it_durably() {
        let dir = std::env::temp_dir().join(format!("drover-rekey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (old, new) = (
            ClusterKey::from_bytes([1; 32]),
            ClusterKey::from_bytes([2; 32]),
        );
        old.save_new(&ClusterKey::path(&dir)).unwrap();
        let ring = Keyring::load_state(&dir).unwrap().unwrap();
        assert_eq!((ring.send(0), ring.accepted(0)), (&old, vec![old.clone()]));
        let rekey = Rekey {
            next: new.clone(),
            switch_ms: 100,
            retire_ms: 200,
        };
        assert_eq!(Rekey::parse(&rekey.to_text()), Some(rekey.clone()));
        assert_eq!(Rekey::parse("zz 1 2"), None);
        assert_eq!(
            Rekey::parse(&rekey.to_text().replace(" 100 ", " 300 ")),
            None
        );
        rekey.save(&dir).unwrap();
        let ring = Keyring::load_state(&dir).unwrap().unwrap();
        assert_eq!(ring.rekey.as_ref(), Some(&rekey));
        assert_eq!(ring.send(99), &old);
        assert_eq!(ring.accepted(99), vec![old.clone(), new.clone()]);
        assert_eq!(ring.send(100), &new);
        assert_eq!(ring.accepted(150), vec![new.clone(), old.clone()]);
        assert_eq!(ring.accepted(200), vec![new.clone()]);
        assert!(ring.finished(199).is_none());
        Keyring::finish(&dir, ring.finished(200).unwrap()).unwrap();
        let ring = Keyring::load_state(&dir).unwrap().unwrap();
        assert_eq!((ring.current, ring.rekey), (new.clone(), None));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ClusterKey::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A crash after the key was written but before the rekey file went: nothing pending.
        rekey.save(&dir).unwrap();
        assert_eq!(Keyring::load_state(&dir).unwrap().unwrap().rekey, None);
        std::fs::write(Rekey::path(&dir), "junk\n").unwrap();
        assert!(matches!(
            Keyring::load_state(&dir),
            Err(KeyError::MalformedRekey { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
