//! The pool's node key: the ed25519 key pair with which `drover exec` and `drover cp` log in to
//! nodes as root. It is distinct from every member's own keys (the pool key, TLS): giving a
//! node's root to drover does not give it a member's identity, and the reverse.
//!
//! The pair is made once with Debian's `ssh-keygen` and kept in the store as the setting
//! [`SETTING`], so the store's replication hands it to every pool member (pool traffic is
//! sealed); the API never shows its private half (see [`redact`]). Each member writes the
//! private half to a 0600 file in its state directory for the ssh client.
//!
//! It does NOT put the public half on nodes: the HTTP server serves it and the agent writes it
//! into the node's `/root/.ssh/authorized_keys`.

use crate::store::model::Setting;
use crate::store::{Reader, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The store setting that holds the pair.
pub const SETTING: &str = "node-ssh-key";
/// Where drover's HTTP server serves the public half (no authentication: it is public) and
/// the agent fetches it for the node's `/root/.ssh/authorized_keys`.
pub const HTTP_PATH: &str = "/node-key.pub";
/// The private half's file in the state directory.
pub const FILE: &str = "node-ssh-key";

/// The pair as the setting stores it (OpenSSH formats).
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeKey {
    /// `ssh-ed25519 AAAA... drover-nodes`
    pub public: String,
    private: String,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("running ssh-keygen (Debian package openssh-client): {0}")]
    Keygen(std::io::Error),
    #[error("ssh-keygen failed: {0}")]
    KeygenFailed(String),
    #[error("the stored node key is malformed: {0}")]
    Malformed(serde_json::Error),
    #[error(transparent)]
    Write(#[from] crate::pool::key::KeyError),
    #[error("writing {path}: {err}")]
    File { path: PathBuf, err: std::io::Error },
}

/// The stored pair, if there is one.
pub fn stored(store: &Store) -> Result<Option<NodeKey>, KeyError> {
    let Some(s) = store.read(|r| r.get::<Setting>(SETTING))? else {
        return Ok(None);
    };
    serde_json::from_value(s.value)
        .map(Some)
        .map_err(KeyError::Malformed)
}

/// The private half of the stored pair, as the secret that service mode derives each node's
/// ssh host key from (`crate::service::hostkey`); `None` without a (well-formed) node key.
pub fn secret(r: &Reader<'_>) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(s) = r.get::<Setting>(SETTING)? else {
        return Ok(None);
    };
    Ok(serde_json::from_value::<NodeKey>(s.value)
        .ok()
        .map(|k| k.private.into_bytes()))
}

/// The stored pair; makes and stores one first if there is none.
pub fn ensure(store: &Store, scratch: &Path) -> Result<NodeKey, KeyError> {
    if let Some(k) = stored(store)? {
        return Ok(k);
    }
    let key = generate(scratch)?;
    let value = serde_json::to_value(&key).map_err(KeyError::Malformed)?;
    let put = Setting {
        name: SETTING.into(),
        value,
    };
    // Two members making a key at once: the first write wins and both use it.
    store.write(|w| match w.get::<Setting>(SETTING)? {
        Some(_) => Ok::<_, StoreError>(()),
        None => w.put(&put),
    })?;
    stored(store)?.ok_or(KeyError::KeygenFailed(
        "the key vanished from the store".into(),
    ))
}

/// Makes a pair with `ssh-keygen` in a fresh directory under `scratch`, then removes it.
fn generate(scratch: &Path) -> Result<NodeKey, KeyError> {
    let dir = scratch.join(format!("node-key.{}", std::process::id()));
    let file_err = |err| KeyError::File {
        path: dir.clone(),
        err,
    };
    std::fs::create_dir_all(&dir).map_err(file_err)?;
    let path = dir.join("key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "drover-nodes", "-f"])
        .arg(&path)
        .output();
    let read = |p: &Path| std::fs::read_to_string(p).map_err(file_err);
    let key = match out {
        Err(e) => Err(KeyError::Keygen(e)),
        Ok(o) if !o.status.success() => Err(KeyError::KeygenFailed(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )),
        Ok(_) => read(&path.with_extension("pub")).and_then(|public| {
            Ok(NodeKey {
                public: public.trim().to_string(),
                private: read(&path)?,
            })
        }),
    };
    let _ = std::fs::remove_dir_all(&dir);
    key
}

/// Writes the private half to `state/FILE`, mode 0600 (replacing what is there), for `ssh -i`.
pub fn write_private(key: &NodeKey, state: &Path) -> Result<PathBuf, KeyError> {
    let path = state.join(FILE);
    crate::pool::key::write_durably(&path, &key.private)?;
    Ok(path)
}

/// The setting as the API shows it: the node key without its private half.
pub fn redact(mut s: Setting) -> Setting {
    if s.name == SETTING {
        if let Some(o) = s.value.as_object_mut() {
            o.remove("private");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_the_private_half_only() {
        let s = Setting {
            name: SETTING.into(),
            value: serde_json::json!({"public": "ssh-ed25519 AAA", "private": "SECRET"}),
        };
        let shown = serde_json::to_string(&redact(s)).unwrap();
        assert!(shown.contains("ssh-ed25519 AAA") && !shown.contains("SECRET"));
        let other = Setting {
            name: "x".into(),
            value: serde_json::json!({"private": 1}),
        };
        assert_eq!(redact(other.clone()), other);
    }
}
