//! A node's ssh host key in service mode: an ed25519 key derived from a pool secret (the
//! private half of the pool's node key) and the node's name, so it is the same on every boot
//! and every member, without storing one key per node, and changes when the node key does.
//! Written in OpenSSH's own private key format (`openssh-key-v1`, unencrypted), which sshd
//! reads as a `HostKey`.
//!
//! Pure: the secret comes in as bytes. Not here: who may fetch the key (the boot path serves
//! it only to the node's own leased address, `crate::http::service`).

use base64::Engine as _;

/// BLAKE3 key-derivation context: a new context gives every node a new key.
const CONTEXT: &str = "drover 2026 service-mode ssh host key v1";
const KEY_TYPE: &str = "ssh-ed25519";
/// OpenSSH wraps the base64 of a private key at 70 columns.
const PEM_WIDTH: usize = 70;

/// A host key pair in OpenSSH formats.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `ssh-ed25519 AAAA... COMMENT`
    pub public: String,
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` ... (a file sshd reads).
    pub private: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({})", self.public)
    }
}

/// The host key of `node` under `secret`.
pub fn derive(secret: &[u8], node: &str) -> HostKey {
    let mut material = Vec::with_capacity(secret.len() + 1 + node.len());
    material.extend_from_slice(secret);
    // The separator keeps (secret, node) pairs from running into each other.
    material.push(0);
    material.extend_from_slice(node.as_bytes());
    let seed = blake3::derive_key(CONTEXT, &material);
    from_seed(&seed, &format!("root@{node}"))
}

/// The pair whose ed25519 seed is `seed`.
pub fn from_seed(seed: &[u8; 32], comment: &str) -> HostKey {
    let public = public_key(seed);
    let mut blob = Vec::new();
    string(&mut blob, KEY_TYPE.as_bytes());
    string(&mut blob, &public);

    let mut private = Vec::new();
    // Two equal check words; any value works, one from the seed keeps the output stable.
    let check = u32::from_be_bytes([seed[31], seed[30], seed[29], seed[28]]);
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    string(&mut private, KEY_TYPE.as_bytes());
    string(&mut private, &public);
    let mut secret = seed.to_vec();
    secret.extend_from_slice(&public);
    string(&mut private, &secret);
    string(&mut private, comment.as_bytes());
    // Padded 1, 2, 3, ... to the cipher block size (8 for "none").
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut file = b"openssh-key-v1\0".to_vec();
    string(&mut file, b"none");
    string(&mut file, b"none");
    string(&mut file, b"");
    file.extend_from_slice(&1u32.to_be_bytes());
    string(&mut file, &blob);
    string(&mut file, &private);

    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.encode(&file);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(PEM_WIDTH) {
        // base64 output is ASCII.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    HostKey {
        public: format!("{KEY_TYPE} {} {comment}", b64.encode(&blob)),
        private: pem,
    }
}

/// The ed25519 public key of `seed` (RFC 8032).
fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    use ring::signature::KeyPair as _;
    // A 32-byte seed is always accepted: `from_seed_unchecked` rejects only other lengths.
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .unwrap_or_else(|_| unreachable!("a 32-byte ed25519 seed is always valid"));
    let mut out = [0u8; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    out
}

/// An SSH `string`: a big-endian u32 length, then the bytes.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field here is far below 4 GiB (keys, names, a comment).
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_node_and_secret() {
        let a = derive(b"secret", "n1");
        assert_eq!(a, derive(b"secret", "n1"));
        assert_ne!(a.public, derive(b"secret", "n2").public);
        assert_ne!(a.public, derive(b"other", "n1").public);
        // The separator: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(derive(b"ab", "c").public, derive(b"a", "bc").public);
        assert!(a
            .public
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
        assert!(a.public.ends_with(" root@n1"));
    }

    /// RFC 8032 section 7.1, test 1: the seed's public key.
    #[test]
    fn rfc_8032_public_key() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let seed: [u8; 32] =
            hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .try_into()
                .unwrap();
        assert_eq!(
            public_key(&seed).to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
    }

    /// OpenSSH's own ssh-keygen reads the private file and derives the same public key.
    #[test]
    fn ssh_keygen_reads_the_private_key() {
        let Ok(_) = std::process::Command::new("ssh-keygen").arg("-?").output() else {
            panic!("ssh-keygen is missing: install Debian's openssh-client (scripts/setup)");
        };
        let key = derive(b"pool secret", "rescue7");
        let dir = std::env::temp_dir().join(format!("drover-hostkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, &key.private).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8(out.stdout).unwrap();
        let fields = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        assert_eq!(fields(&derived), fields(&key.public));
    }
}
