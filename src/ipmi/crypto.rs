//! RMCP+ cryptography (IPMI v2.0 section 13.28-13.31): the RAKP key-exchange codes, the
//! session integrity key (SIK) and its derived keys K1 (integrity) and K2 (confidentiality),
//! HMAC-SHA1-96 / HMAC-SHA256-128 integrity trailers and AES-CBC-128 payload encryption.
//! Pure functions over byte slices; randomness (IVs) comes in as an argument.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};

/// A cipher suite drover speaks. Both use AES-CBC-128 for confidentiality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128 (every IPMI 2.0 BMC has it).
    Sha1,
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128 (current BMCs, some of which
    /// refuse suite 3).
    Sha256,
}

impl Suite {
    /// The suite's number as `ipmitool -C` names it.
    pub fn id(self) -> u8 {
        match self {
            Suite::Sha1 => 3,
            Suite::Sha256 => 17,
        }
    }

    pub fn from_id(id: u8) -> Option<Suite> {
        match id {
            3 => Some(Suite::Sha1),
            17 => Some(Suite::Sha256),
            _ => None,
        }
    }

    /// Authentication, integrity and confidentiality algorithm numbers.
    pub fn algorithms(self) -> super::wire::Algorithms {
        match self {
            Suite::Sha1 => super::wire::Algorithms {
                auth: 0x01,
                integrity: 0x01,
                confidentiality: 0x01,
            },
            Suite::Sha256 => super::wire::Algorithms {
                auth: 0x03,
                integrity: 0x04,
                confidentiality: 0x01,
            },
        }
    }

    /// Length of the RAKP key-exchange codes (full HMAC output).
    pub fn kex_len(self) -> usize {
        match self {
            Suite::Sha1 => 20,
            Suite::Sha256 => 32,
        }
    }

    /// Length of the RAKP 4 integrity check value and of each message's authentication code.
    pub fn icv_len(self) -> usize {
        match self {
            Suite::Sha1 => 12,
            Suite::Sha256 => 16,
        }
    }

    /// HMAC of the concatenation of `parts` under `key`.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
            let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Suite::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            Suite::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        }
    }
}

/// What both RAKP codes and the SIK are computed over.
pub struct Exchange<'a> {
    pub console_session_id: u32,
    pub bmc_session_id: u32,
    pub console_random: &'a [u8; 16],
    pub bmc_random: &'a [u8; 16],
    pub bmc_guid: &'a [u8; 16],
    pub role: u8,
    pub user: &'a [u8],
}

impl Exchange<'_> {
    fn ulen(&self) -> [u8; 1] {
        [self.user.len() as u8]
    }

    /// The code the BMC puts in RAKP 2 (keyed with the user's password).
    pub fn rakp2_code(&self, suite: Suite, password: &[u8]) -> Vec<u8> {
        suite.hmac(
            password,
            &[
                &self.console_session_id.to_le_bytes(),
                &self.bmc_session_id.to_le_bytes(),
                self.console_random,
                self.bmc_random,
                self.bmc_guid,
                &[self.role],
                &self.ulen(),
                self.user,
            ],
        )
    }

    /// The code the console sends in RAKP 3.
    pub fn rakp3_code(&self, suite: Suite, password: &[u8]) -> Vec<u8> {
        suite.hmac(
            password,
            &[
                self.bmc_random,
                &self.console_session_id.to_le_bytes(),
                &[self.role],
                &self.ulen(),
                self.user,
            ],
        )
    }

    /// The session integrity key. Kg, the BMC key, is the password when the BMC has none
    /// set (the common case; a separate Kg is not supported).
    pub fn sik(&self, suite: Suite, kg: &[u8]) -> Vec<u8> {
        suite.hmac(
            kg,
            &[
                self.console_random,
                self.bmc_random,
                &[self.role],
                &self.ulen(),
                self.user,
            ],
        )
    }

    /// The integrity check value the BMC puts in RAKP 4.
    pub fn rakp4_icv(&self, suite: Suite, sik: &[u8]) -> Vec<u8> {
        let mut v = suite.hmac(
            sik,
            &[
                self.console_random,
                &self.bmc_session_id.to_le_bytes(),
                self.bmc_guid,
            ],
        );
        v.truncate(suite.icv_len());
        v
    }
}

/// The keys of an established session.
#[derive(Clone)]
pub struct SessionKeys {
    pub suite: Suite,
    k1: Vec<u8>,
    aes_key: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Why a sealed payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("bad integrity code")]
    BadAuthCode,
    #[error("encrypted payload is not whole AES blocks")]
    BadCiphertext,
    #[error("bad confidentiality padding")]
    BadPadding,
}

impl SessionKeys {
    /// K1 and K2 from the SIK. Both constants are 20 bytes for either suite, as ipmitool
    /// computes them (`integration/ipmi.rs` logs ipmitool in with suite 17).
    pub fn derive(suite: Suite, sik: &[u8]) -> SessionKeys {
        let k1 = suite.hmac(sik, &[&[0x01; 20]]);
        let k2 = suite.hmac(sik, &[&[0x02; 20]]);
        let mut aes_key = [0; 16];
        aes_key.copy_from_slice(&k2[..16]);
        SessionKeys { suite, k1, aes_key }
    }

    /// The authentication code of an outgoing frame's integrity-covered bytes.
    pub fn sign(&self, covered: &[u8]) -> Vec<u8> {
        let mut v = self.suite.hmac(&self.k1, &[covered]);
        v.truncate(self.suite.icv_len());
        v
    }

    /// Checks an incoming frame's authentication code (constant time).
    pub fn verify(&self, covered: &[u8], code: &[u8]) -> Result<(), CryptoError> {
        let expect = self.sign(covered);
        if expect.len() == code.len()
            && expect
                .iter()
                .zip(code)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        {
            Ok(())
        } else {
            Err(CryptoError::BadAuthCode)
        }
    }

    /// AES-CBC-128 encryption of `plain` with the confidentiality trailer (pad bytes 1, 2,
    /// 3, ... and the pad length), prefixed with `iv`.
    pub fn encrypt(&self, iv: [u8; 16], plain: &[u8]) -> Vec<u8> {
        let cipher = aes::Aes128::new(&self.aes_key.into());
        let mut data = plain.to_vec();
        let pad = (16 - (data.len() + 1) % 16) % 16;
        data.extend((1..=pad).map(|i| i as u8));
        data.push(pad as u8);
        let mut out = iv.to_vec();
        let mut prev = iv;
        for chunk in data.chunks_exact(16) {
            let mut block = [0u8; 16];
            for (b, (p, c)) in block.iter_mut().zip(prev.iter().zip(chunk)) {
                *b = p ^ c;
            }
            let mut ga = block.into();
            cipher.encrypt_block(&mut ga);
            prev.copy_from_slice(&ga);
            out.extend_from_slice(&ga);
        }
        out
    }

    /// The inverse of [`SessionKeys::encrypt`].
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 32 || sealed.len() % 16 != 0 {
            return Err(CryptoError::BadCiphertext);
        }
        let cipher = aes::Aes128::new(&self.aes_key.into());
        let mut prev = [0u8; 16];
        prev.copy_from_slice(&sealed[..16]);
        let mut out = Vec::with_capacity(sealed.len() - 16);
        for chunk in sealed[16..].chunks_exact(16) {
            let mut ga = aes::Block::clone_from_slice(chunk);
            cipher.decrypt_block(&mut ga);
            out.extend(ga.iter().zip(prev.iter()).map(|(a, b)| a ^ b));
            prev.copy_from_slice(chunk);
        }
        let pad = usize::from(*out.last().ok_or(CryptoError::BadPadding)?);
        if pad + 1 > out.len() {
            return Err(CryptoError::BadPadding);
        }
        out.truncate(out.len() - pad - 1);
        Ok(out)
    }
}

/// The IPMI v1.5 authentication code of a session message (IPMI v2.0 section 22.17.1):
/// MD5(password, session id, message, session sequence, password) for MD5, the password
/// itself for "straight password". `password` is zero-padded to 16 bytes.
pub fn v15_auth_code(
    auth_type: u8,
    password: &[u8],
    session_id: u32,
    message: &[u8],
    seq: u32,
) -> [u8; 16] {
    let mut pw = [0u8; 16];
    let n = password.len().min(16);
    pw[..n].copy_from_slice(&password[..n]);
    if auth_type != super::wire::AUTH_MD5 {
        return pw;
    }
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update(pw);
    h.update(session_id.to_le_bytes());
    h.update(message);
    h.update(seq.to_le_bytes());
    h.update(pw);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_and_sha256_known_answers() {
        // RFC 2202 test case 2 and RFC 4231 test case 2 ("Jefe").
        let data: &[&[u8]] = &[b"what do ya want ", b"for nothing?"];
        let hex = |v: Vec<u8>| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(Suite::Sha1.hmac(b"Jefe", data)),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(Suite::Sha256.hmac(b"Jefe", data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn md5_known_answer() {
        // RFC 1321 test suite: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
        use md5::Digest;
        let d: [u8; 16] = md5::Md5::digest(b"abc").into();
        assert_eq!(d[..4], [0x90, 0x01, 0x50, 0x98]);
        let code = v15_auth_code(super::super::wire::AUTH_PASSWORD, b"pw", 1, b"m", 2);
        assert_eq!(&code[..3], b"pw\0");
    }

    #[test]
    fn aes_cbc_round_trip_and_padding() {
        for suite in [Suite::Sha1, Suite::Sha256] {
            let keys = SessionKeys::derive(suite, b"sik-for-a-test");
            for len in [0usize, 1, 14, 15, 16, 17, 40] {
                let plain: Vec<u8> = (0..len as u8).collect();
                let sealed = keys.encrypt([7; 16], &plain);
                assert_eq!(sealed.len() % 16, 0);
                assert_eq!(keys.decrypt(&sealed).unwrap(), plain);
            }
            assert_eq!(keys.decrypt(&[0; 20]), Err(CryptoError::BadCiphertext));
            let code = keys.sign(b"abcd");
            assert_eq!(code.len(), suite.icv_len());
            assert!(keys.verify(b"abcd", &code).is_ok());
            assert!(keys.verify(b"abce", &code).is_err());
        }
    }
}
