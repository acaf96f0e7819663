//! The cryptography of pool traffic, sans IO: the handshake that opens every pool-port
//! connection, the per-connection AEAD session that seals its frames, and the sealing of
//! membership datagrams. Randomness comes in as arguments; nothing here reads a socket, a
//! file or the clock.
//!
//! A connection starts with three fixed-size messages, so the listener holds no more than
//! [`HELLO_LEN`] bytes for a peer that has not proved it knows the cluster key:
//! 1. hello (client -> server, [`HELLO_LEN`]): `magic || nonce_c || tag`, the tag keyed by a
//!    key derived from the cluster key: only a key holder (or a replay) makes one;
//! 2. reply (server -> client, [`REPLY_LEN`]): `nonce_s || tag` over the hello and the fresh
//!    `nonce_s`: the client knows it talks to a key holder, now;
//! 3. finish (client -> server, [`FINISH_LEN`]): a tag over hello and reply. A recorded
//!    session replayed to the server fails here, since `nonce_s` is new.
//!
//! Both sides then derive two ChaCha20-Poly1305 keys (one per direction) from the cluster key
//! and the transcript (both nonces). Each frame is sealed under its direction's key with a
//! 96-bit nonce that counts the frames sent (never reused: the key is new per connection and
//! the counter only grows); its length prefix is the associated data.
//!
//! Datagrams (SWIM) have no connection: each is `nonce || ciphertext || tag`, sealed with
//! XChaCha20-Poly1305 under a key derived from the cluster key, with a random 192-bit nonce
//! (random nonces of that size do not collide in practice). Replay of a recorded datagram is
//! not refused here: it can only restate membership facts that SWIM's incarnation numbers
//! already order.
//!
//! The server side tries each key it accepts (the current one, and the previous one while a
//! rekey is in transition), so no key identifier crosses the wire.
//!
//! Versions: the magic's last byte is the pool protocol version the client speaks
//! ([`WIRE_VERSION`], written as an ASCII digit so that version 2 reads `DRP2` as it did
//! before versions had a name). A server accepts the versions from [`OLDEST_PEER_VERSION`]
//! to its own, so that a release that moves to version N still talks to members of N-1
//! during a rolling upgrade once it sets the oldest to N-1. A key holder's hello of any other
//! version gets a refusal in place of the reply (`DRPV || server version || oldest ||
//! zeros || tag`, tagged like a reply) and both sides fail with [`SealError::Version`],
//! naming both versions. A hello is authenticated before its version is looked at, so only
//! members can make a member log a version mismatch.
//!
//! Not here: moving bytes (`conn`), what frames contain (`frame`), the key file (`key`).

use super::key::ClusterKey;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

/// Names this handshake: bytes that are not a drover pool hello are refused, not misread.
const MAGIC_PREFIX: [u8; 3] = *b"DRP";
/// The pool protocol version this build speaks (handshake, frames, datagrams).
pub const WIRE_VERSION: u8 = 2;
/// The oldest version whose members this build talks to.
pub const OLDEST_PEER_VERSION: u8 = 2;
/// The first bytes of a server's refusal of a hello's version, in place of its reply.
const REFUSAL_PREFIX: [u8; 4] = *b"DRPV";
/// The version byte of a hello: an ASCII digit for the versions so far (see the module doc).
const fn version_byte(version: u8) -> u8 {
    b'0'.wrapping_add(version)
}
const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
/// Bytes of the client's first message.
pub const HELLO_LEN: usize = MAGIC_PREFIX.len() + 1 + NONCE_LEN + MAC_LEN;
/// Bytes of the server's reply.
pub const REPLY_LEN: usize = NONCE_LEN + MAC_LEN;
/// Bytes of the client's confirmation.
pub const FINISH_LEN: usize = MAC_LEN;
/// Bytes an AEAD tag adds to every sealed frame or datagram.
pub const AEAD_TAG_LEN: usize = 16;
/// Bytes of a datagram's nonce.
pub const DATAGRAM_NONCE_LEN: usize = 24;

const HANDSHAKE_CONTEXT: &str = "drover pool 2026 handshake v2";
const CLIENT_TO_SERVER: &str = "drover pool 2026 session client to server v2";
const SERVER_TO_CLIENT: &str = "drover pool 2026 session server to client v2";
const DATAGRAM_CONTEXT: &str = "drover pool 2026 datagrams v2";

/// Why a handshake or a sealed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a drover pool handshake")]
    Magic,
    #[error(
        "the peer speaks pool protocol version {peer}, this member {ours} (it talks to \
         versions {oldest} to {ours}): upgrade the older member"
    )]
    Version { peer: u8, ours: u8, oldest: u8 },
    #[error("handshake not made with this pool's key")]
    Unauthenticated,
    #[error("sealed frame does not open with the session key")]
    Forged,
    #[error("the session's frame counter is exhausted")]
    Exhausted,
    #[error("message over the cipher's length limit")]
    TooLong,
}

/// A transcript MAC under the handshake key of `key`.
fn mac(key: &ClusterKey, label: &[u8], parts: &[&[u8]]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&key.derive_key(HANDSHAKE_CONTEXT));
    h.update(label);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn session_key(key: &ClusterKey, context: &str, hello: &[u8], reply: &[u8]) -> ChaCha20Poly1305 {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(&key.derive_key(context));
    h.update(hello);
    h.update(reply);
    ChaCha20Poly1305::new(h.finalize().as_bytes().into())
}

/// The client's side of a handshake between hello and finish.
pub struct ClientHandshake {
    key: ClusterKey,
    hello: [u8; HELLO_LEN],
}

impl ClientHandshake {
    /// The hello to send with `key`, and the state to finish with; `nonce` must be fresh
    /// randomness.
    pub fn start(key: &ClusterKey, nonce: [u8; NONCE_LEN]) -> ClientHandshake {
        ClientHandshake::speaking(key, nonce, WIRE_VERSION)
    }

    /// [`ClientHandshake::start`] speaking `version`: the tests play other builds with it.
    #[cfg(test)]
    pub(crate) fn start_version(
        key: &ClusterKey,
        nonce: [u8; NONCE_LEN],
        version: u8,
    ) -> ClientHandshake {
        ClientHandshake::speaking(key, nonce, version)
    }

    fn speaking(key: &ClusterKey, nonce: [u8; NONCE_LEN], version: u8) -> ClientHandshake {
        let mut hello = [0u8; HELLO_LEN];
        hello[..3].copy_from_slice(&MAGIC_PREFIX);
        hello[3] = version_byte(version);
        hello[4..4 + NONCE_LEN].copy_from_slice(&nonce);
        let tag = mac(key, b"hello", &[&hello[..4 + NONCE_LEN]]);
        hello[4 + NONCE_LEN..].copy_from_slice(tag.as_bytes());
        ClientHandshake {
            key: key.clone(),
            hello,
        }
    }

    pub fn hello(&self) -> &[u8; HELLO_LEN] {
        &self.hello
    }

    /// Checks the server's reply; the finish to send and the session.
    pub fn finish(self, reply: &[u8; REPLY_LEN]) -> Result<([u8; FINISH_LEN], Session), SealError> {
        let (nonce, tag) = reply.split_at(NONCE_LEN);
        if nonce[..4] == REFUSAL_PREFIX
            && tag_eq(tag, &mac(&self.key, b"refusal", &[&self.hello, nonce]))
        {
            return Err(SealError::Version {
                peer: nonce[4].wrapping_sub(b'0'),
                ours: self.hello[3].wrapping_sub(b'0'),
                oldest: nonce[5].wrapping_sub(b'0'),
            });
        }
        if !tag_eq(tag, &mac(&self.key, b"reply", &[&self.hello, nonce])) {
            return Err(SealError::Unauthenticated);
        }
        let finish = *mac(&self.key, b"finish", &[&self.hello, reply]).as_bytes();
        let session = Session {
            send: Direction::new(session_key(&self.key, CLIENT_TO_SERVER, &self.hello, reply)),
            recv: Direction::new(session_key(&self.key, SERVER_TO_CLIENT, &self.hello, reply)),
        };
        Ok((finish, session))
    }
}

/// A hello the server refused: why, and for a member of another version the refusal to send
/// it (strangers get nothing).
#[derive(Debug)]
pub struct Refused {
    pub error: SealError,
    pub refusal: Option<[u8; REPLY_LEN]>,
}

impl Refused {
    fn plain(error: SealError) -> Refused {
        Refused {
            error,
            refusal: None,
        }
    }
}

/// The server's side of a handshake between reply and finish.
pub struct ServerHandshake {
    key: ClusterKey,
    hello: [u8; HELLO_LEN],
    reply: [u8; REPLY_LEN],
}

impl ServerHandshake {
    /// Checks a hello against each key in `keys`; the reply to send, with fresh `nonce`. A
    /// member's hello of a version this build does not talk to is a [`Refused`] carrying the
    /// refusal to send back.
    pub fn accept(
        keys: &[ClusterKey],
        hello: &[u8; HELLO_LEN],
        nonce: [u8; NONCE_LEN],
    ) -> Result<ServerHandshake, Refused> {
        if hello[..3] != MAGIC_PREFIX {
            return Err(Refused::plain(SealError::Magic));
        }
        let (signed, tag) = hello.split_at(4 + NONCE_LEN);
        let key = keys
            .iter()
            .find(|k| tag_eq(tag, &mac(k, b"hello", &[signed])))
            .ok_or(Refused::plain(SealError::Unauthenticated))?;
        let peer = hello[3].wrapping_sub(b'0');
        if !(OLDEST_PEER_VERSION..=WIRE_VERSION).contains(&peer) {
            let mut refusal = [0u8; REPLY_LEN];
            refusal[..4].copy_from_slice(&REFUSAL_PREFIX);
            refusal[4] = version_byte(WIRE_VERSION);
            refusal[5] = version_byte(OLDEST_PEER_VERSION);
            let tag = mac(key, b"refusal", &[hello, &refusal[..NONCE_LEN]]);
            refusal[NONCE_LEN..].copy_from_slice(tag.as_bytes());
            return Err(Refused {
                error: SealError::Version {
                    peer,
                    ours: WIRE_VERSION,
                    oldest: OLDEST_PEER_VERSION,
                },
                refusal: Some(refusal),
            });
        }
        let mut reply = [0u8; REPLY_LEN];
        reply[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = mac(key, b"reply", &[hello, &nonce]);
        reply[NONCE_LEN..].copy_from_slice(tag.as_bytes());
        Ok(ServerHandshake {
            key: key.clone(),
            hello: *hello,
            reply,
        })
    }

    pub fn reply(&self) -> &[u8; REPLY_LEN] {
        &self.reply
    }

    /// Checks the client's finish: the session, or the refusal of a replay or a stranger.
    pub fn confirm(self, finish: &[u8; FINISH_LEN]) -> Result<Session, SealError> {
        let want = mac(&self.key, b"finish", &[&self.hello, &self.reply]);
        if !tag_eq(finish, &want) {
            return Err(SealError::Unauthenticated);
        }
        Ok(Session {
            send: Direction::new(session_key(
                &self.key,
                SERVER_TO_CLIENT,
                &self.hello,
                &self.reply,
            )),
            recv: Direction::new(session_key(
                &self.key,
                CLIENT_TO_SERVER,
                &self.hello,
                &self.reply,
            )),
        })
    }
}

/// Constant-time comparison (`blake3::Hash` equality is).
fn tag_eq(tag: &[u8], want: &blake3::Hash) -> bool {
    <[u8; MAC_LEN]>::try_from(tag).is_ok_and(|t| blake3::Hash::from(t) == *want)
}

/// One direction of a session: its key and the count of frames sealed or opened.
struct Direction {
    cipher: ChaCha20Poly1305,
    count: u64,
}

impl Direction {
    fn new(cipher: ChaCha20Poly1305) -> Direction {
        Direction { cipher, count: 0 }
    }

    /// The next nonce: 4 zero bytes and the counter.
    fn next(&mut self) -> Result<chacha20poly1305::Nonce, SealError> {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.count.to_be_bytes());
        self.count = self.count.checked_add(1).ok_or(SealError::Exhausted)?;
        Ok(nonce.into())
    }
}

/// The keys of one connection after its handshake.
pub struct Session {
    send: Direction,
    recv: Direction,
}

impl Session {
    /// Encrypts `message` in place, appending its tag; `aad` is authenticated, not hidden.
    pub fn seal(&mut self, aad: &[u8], message: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = self.send.next()?;
        // `Vec` grows to take the tag: the only failure is a message over the cipher's limit.
        let sealed = self.send.cipher.encrypt_in_place(&nonce, aad, message);
        sealed.map_err(|_| SealError::TooLong)
    }

    /// Decrypts the next sealed frame in place (the tag removed); refuses anything not sealed
    /// by the peer's side of this session, in order.
    pub fn open(&mut self, aad: &[u8], sealed: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = self.recv.next()?;
        let opened = self.recv.cipher.decrypt_in_place(&nonce, aad, sealed);
        opened.map_err(|_| SealError::Forged)
    }
}

/// The datagram key of `key`.
pub struct DatagramKey(XChaCha20Poly1305);

impl DatagramKey {
    pub fn new(key: &ClusterKey) -> DatagramKey {
        DatagramKey(XChaCha20Poly1305::new(
            (&key.derive_key(DATAGRAM_CONTEXT)).into(),
        ))
    }

    /// `nonce || ciphertext || tag`; `nonce` must be random (never chosen twice).
    pub fn seal(
        &self,
        nonce: [u8; DATAGRAM_NONCE_LEN],
        payload: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut body = Vec::with_capacity(payload.len() + AEAD_TAG_LEN);
        body.extend_from_slice(payload);
        self.0
            .encrypt_in_place(&nonce.into(), b"", &mut body)
            .map_err(|_| SealError::TooLong)?;
        let mut out = Vec::with_capacity(DATAGRAM_NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.append(&mut body);
        Ok(out)
    }

    /// The payload of a sealed datagram, or `None` when it does not open with this key.
    pub fn open(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        if datagram.len() < DATAGRAM_NONCE_LEN + AEAD_TAG_LEN {
            return None;
        }
        let (nonce, sealed) = datagram.split_at(DATAGRAM_NONCE_LEN);
        let nonce: [u8; DATAGRAM_NONCE_LEN] = nonce.try_into().ok()?;
        let mut body = sealed.to_vec();
        self.0
            .decrypt_in_place(&nonce.into(), b"", &mut body)
            .ok()?;
        Some(body)
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
