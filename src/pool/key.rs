//! The cluster key: 32 random bytes shared by every pool member, kept in
//! `<state>/cluster.key` (64 hex digits and a newline, mode 0600). Every secret of pool
//! traffic is derived from it ([`ClusterKey::derive_key`], BLAKE3 key derivation with a
//! context per use), so only key holders can join, gossip, read or write pool traffic.
//!
//! Not here: the handshake, the encryption and the datagram sealing built on the key
//! (`seal`).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Length of the key.
pub const KEY_LEN: usize = 32;
/// The key file's name in the state directory.
pub const KEY_FILE: &str = "cluster.key";

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
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        f.write_all(format!("{hex}\n").as_bytes())
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
}
