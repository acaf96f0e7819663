//! TLS for the page and API: the server's certificate and key, their SHA-256 fingerprint,
//! the rustls configurations of the HTTPS listener and of the CLI's `--server https://..`.
//!
//! Data flow: `drover serve` (with `[http] https-port`) calls [`Identity::load`] with the
//! admin's files (`[http] tls-cert`/`tls-key`) or [`Identity::self_signed`], which makes a
//! certificate at first start and keeps it in `<state>/tls/` (both files appear at once: they
//! are written and fsynced in a scratch directory that is then renamed). The listener gets
//! [`server_config`]; the fingerprint goes to the log, to `drover tls show` and to the page.
//! The CLI trusts a server by the fingerprint it pins ([`client_config`]), never by a CA:
//! the appliance has no name a public CA could vouch for.
//!
//! Only the `ring` provider is used (no C build). Not here: the listeners (`crate::http`),
//! where the CLI keeps the fingerprints it trusts (`crate::cli::remote`), certificate
//! renewal (a self-signed certificate has rcgen's validity, which does not end in practice;
//! remove `<state>/tls` to make a new one, and clients must pin it again).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory of the self-signed certificate, under the state directory.
pub const DIR: &str = "tls";
/// The certificate (PEM) in [`DIR`]: give it to clients (`curl --cacert`).
pub const CERT_FILE: &str = "cert.pem";
/// The private key (PEM, mode 0600) in [`DIR`].
pub const KEY_FILE: &str = "key.pem";
/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
const MAX_PEM: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
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
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{path} exists but {missing} does not: remove the directory to make a new pair")]
    HalfPair { path: PathBuf, missing: PathBuf },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key are not usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain (leaf first) and its private key. `Debug` leaves the key out.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

impl Identity {
    /// The admin's certificate chain and key (PEM files).
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let cert_pem = read_pem(cert)?;
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert.to_path_buf(),
            });
        }
        let key_pem = read_pem(key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
            path: key.to_path_buf(),
        })?;
        let identity = Identity { chain, key };
        // Refuse a key that does not belong to the certificate now, not at the first client.
        server_config(&identity)?;
        Ok(identity)
    }

    /// The self-signed identity in `<state_dir>/tls`, made now (for `names`: host names and
    /// addresses clients may use) if there is none.
    pub fn self_signed(state_dir: &Path, names: &[String]) -> Result<Identity, TlsError> {
        let dir = state_dir.join(DIR);
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        match (cert.exists(), key.exists()) {
            (true, true) => return Identity::load(&cert, &key),
            (true, false) => return Err(half(&cert, &key)),
            (false, true) => return Err(half(&key, &cert)),
            (false, false) => {}
        }
        let made = make_self_signed(names)?;
        let scratch = state_dir.join(format!("{DIR}.new-{}", crate::auth::random_hex(6)));
        write_pair(&scratch, &made)?;
        match std::fs::rename(&scratch, &dir) {
            Ok(()) => sync_dir(state_dir)?,
            // Another process made the pair first (`drover tls show` next to a first start):
            // both use that one.
            Err(_) if cert.exists() => {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            Err(source) => return Err(TlsError::Write { path: dir, source }),
        }
        Identity::load(&cert, &key)
    }

    /// SHA-256 of the leaf certificate (what clients pin), as [`format_fingerprint`] prints.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|c| format_fingerprint(&fingerprint_of(c)))
            .unwrap_or_default()
    }
}

fn half(present: &Path, missing: &Path) -> TlsError {
    TlsError::HalfPair {
        path: present.to_path_buf(),
        missing: missing.to_path_buf(),
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let err = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM).read_to_end(&mut buf))
        .map_err(err)?;
    Ok(buf)
}

fn make_self_signed(names: &[String]) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, TlsError> {
    let mut names = names.to_vec();
    for always in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == always) {
            names.push(always.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "drover appliance");
    let signing_key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    Ok(rcgen::CertifiedKey { cert, signing_key })
}

/// Writes key (0600) and certificate into the new directory `dir`, fsynced.
fn write_pair(dir: &Path, made: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Result<(), TlsError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir(dir).map_err(err(dir))?;
    let files = [
        (KEY_FILE, made.signing_key.serialize_pem(), 0o600),
        (CERT_FILE, made.cert.pem(), 0o644),
    ];
    for (name, text, mode) in files {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(err(&path))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(err(&path))?;
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// SHA-256 of a certificate's DER bytes.
pub fn fingerprint_of(cert: &[u8]) -> [u8; 32] {
    Sha256::digest(cert).into()
}

/// `AB:CD:..` (32 pairs), as `openssl x509 -fingerprint -sha256` prints it.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    let pairs: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// Reads a fingerprint as [`format_fingerprint`] prints it, or plain hex, either case,
/// with an optional `sha256:` prefix.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let text = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .unwrap_or(text);
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

// ring is the provider this project chose (no C build, unlike aws-lc); rustls deprecates its
// default provider only because ring has no post-quantum key exchange, which we accept.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The HTTPS listener's configuration: HTTP/1.1 only (hyper serves HTTP/1 here).
pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the CLI trusts: the server whose leaf certificate has this fingerprint, or (`None`,
/// trust on first use) any server, whose fingerprint [`Pinned::seen`] then tells.
#[derive(Debug)]
pub struct Pinned {
    expected: Option<[u8; 32]>,
    seen: std::sync::Mutex<Option<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    pub fn new(expected: Option<[u8; 32]>) -> Arc<Pinned> {
        Arc::new(Pinned {
            expected,
            seen: std::sync::Mutex::new(None),
            provider: provider(),
        })
    }

    /// The fingerprint of the last server certificate presented.
    pub fn seen(&self) -> Option<[u8; 32]> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint_of(end_entity);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(got);
        match self.expected {
            Some(want) if want != got => Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {}, not the pinned {}",
                format_fingerprint(&got),
                format_fingerprint(&want)
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The CLI's client configuration, trusting what `pin` trusts.
pub fn client_config(pin: Arc<Pinned>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(pin)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_in_every_accepted_spelling() {
        let fp = fingerprint_of(b"some certificate bytes");
        let shown = format_fingerprint(&fp);
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(parse_fingerprint(&shown), Some(fp));
        assert_eq!(parse_fingerprint(&shown.to_lowercase()), Some(fp));
        assert_eq!(parse_fingerprint(&shown.replace(':', "")), Some(fp));
        assert_eq!(parse_fingerprint(&format!("sha256:{shown}")), Some(fp));
        assert_eq!(parse_fingerprint(&shown[3..]), None, "one pair short");
        assert_eq!(parse_fingerprint(&shown.replace('A', "G")), None);
    }

    #[test]
    fn self_signed_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("drover-tls-{}", crate::auth::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let first = Identity::self_signed(&dir, &["10.0.0.1".into()]).unwrap();
        let again = Identity::self_signed(&dir, &[]).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        let key = dir.join(DIR).join(KEY_FILE);
        let mode = std::os::unix::fs::PermissionsExt::mode(&key.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // A key that is not the certificate's is refused at load.
        std::fs::remove_dir_all(dir.join(DIR)).unwrap();
        let other = Identity::self_signed(&dir, &[]).unwrap();
        assert_ne!(other.fingerprint(), first.fingerprint());
        let stray = dir.join("other-key.pem");
        std::fs::write(
            &stray,
            make_self_signed(&[]).unwrap().signing_key.serialize_pem(),
        )
        .unwrap();
        assert!(Identity::load(&dir.join(DIR).join(CERT_FILE), &stray).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
