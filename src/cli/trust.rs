//! Which HTTPS servers the CLI trusts: the certificate fingerprint given with
//! `--fingerprint`, else the one kept for that server in the user's known-servers file
//! (`$XDG_CONFIG_HOME/drover/known-servers`, else `~/.config/drover/known-servers`), else
//! trust on first use: the fingerprint the server presents now is kept there and used from
//! then on, like ssh's known_hosts. A server whose certificate changed is refused until its
//! line is removed.
//!
//! Not here: the TLS handshake and the check itself (`crate::tls::Pinned`), HTTP.

use crate::tls;
use std::io::Write;
use std::path::PathBuf;

/// Longest known-servers file read.
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    BadFingerprint(String),
    #[error("no HOME or XDG_CONFIG_HOME to keep trusted servers in: pass --fingerprint")]
    NoConfigDir,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The user's known-servers file.
pub fn known_servers_file() -> Result<PathBuf, TrustError> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base = match (var("XDG_CONFIG_HOME"), var("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => PathBuf::from(home).join(".config"),
        (None, None) => return Err(TrustError::NoConfigDir),
    };
    Ok(base.join("drover").join("known-servers"))
}

/// The fingerprint kept for `server` (`https://HOST:PORT`), if any.
pub fn known(server: &str) -> Result<Option<[u8; 32]>, TrustError> {
    use std::io::Read;
    let path = known_servers_file()?;
    let mut text = String::new();
    match std::fs::File::open(&path) {
        Ok(f) => f.take(MAX_FILE).read_to_string(&mut text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => Err(e),
    }
    .map_err(|source| TrustError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(lookup(&text, server))
}

/// The fingerprint on `server`'s line of a known-servers text (`SERVER FINGERPRINT`).
fn lookup(text: &str, server: &str) -> Option<[u8; 32]> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(s, _)| *s == server)
        .and_then(|(_, fp)| tls::parse_fingerprint(fp))
}

/// Keeps `fp` as `server`'s fingerprint (appended, fsynced); returns the file.
pub fn remember(server: &str, fp: &[u8; 32]) -> Result<PathBuf, TrustError> {
    let path = known_servers_file()?;
    let err = |source| TrustError::Write {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(err)?;
    writeln!(f, "{server} {}", tls::format_fingerprint(fp))
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    Ok(path)
}

/// `--fingerprint` read, or a clear error.
pub fn parse_pin(text: &str) -> Result<[u8; 32], TrustError> {
    tls::parse_fingerprint(text).ok_or_else(|| TrustError::BadFingerprint(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_of_the_server() {
        let a = tls::fingerprint_of(b"a");
        let b = tls::fingerprint_of(b"b");
        let text = format!(
            "https://10.0.0.1:443 {}\nhttps://10.0.0.2:8443 {}\nbroken line\n",
            tls::format_fingerprint(&a),
            tls::format_fingerprint(&b)
        );
        assert_eq!(lookup(&text, "https://10.0.0.1:443"), Some(a));
        assert_eq!(lookup(&text, "https://10.0.0.2:8443"), Some(b));
        assert_eq!(lookup(&text, "https://10.0.0.2:443"), None);
        assert!(parse_pin("zz").is_err());
    }
}
