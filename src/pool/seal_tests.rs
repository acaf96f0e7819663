use super::*;

fn key(b: u8) -> ClusterKey {
    ClusterKey::from_bytes([b; 32])
}

/// A full handshake with `client_key` against a server accepting `server_keys`.
fn handshake(
    client_key: &ClusterKey,
    server_keys: &[ClusterKey],
    nc: u8,
    ns: u8,
) -> Result<(Session, Session), SealError> {
    let client = ClientHandshake::start(client_key, [nc; 32]);
    let server =
        ServerHandshake::accept(server_keys, client.hello(), [ns; 32]).map_err(|r| r.error)?;
    let (finish, c) = client.finish(server.reply())?;
    let s = server.confirm(&finish)?;
    Ok((c, s))
}

#[test]
fn a_session_carries_frames_both_ways_and_refuses_tampering_and_reordering() {
    let (mut c, mut s) = handshake(&key(1), &[key(1)], 1, 2).unwrap();
    let secret = b"bmc password hunter2".to_vec();
    let mut m = secret.clone();
    c.seal(b"len1", &mut m).unwrap();
    assert_eq!(m.len(), secret.len() + AEAD_TAG_LEN);
    assert!(!m.windows(secret.len()).any(|w| w == secret));
    let mut wrong_aad = m.clone();
    assert_eq!(
        s.open(b"len2", &mut wrong_aad),
        Err(SealError::Forged),
        "the length prefix is authenticated"
    );

    // The refused frame used up the server's receive nonce: a session does not recover from
    // a forged frame (the shell closes the connection), so start over.
    let (mut c, mut s) = handshake(&key(1), &[key(1)], 1, 2).unwrap();
    let mut first = b"one".to_vec();
    let mut second = b"two".to_vec();
    c.seal(b"", &mut first).unwrap();
    c.seal(b"", &mut second).unwrap();
    let mut out_of_order = second.clone();
    assert_eq!(s.open(b"", &mut out_of_order), Err(SealError::Forged));

    let (mut c, mut s) = handshake(&key(1), &[key(1)], 1, 2).unwrap();
    for msg in [&b"one"[..], b"", b"three"] {
        let mut m = msg.to_vec();
        c.seal(b"aad", &mut m).unwrap();
        s.open(b"aad", &mut m).unwrap();
        assert_eq!(m, msg);
        let mut back = msg.to_vec();
        s.seal(b"", &mut back).unwrap();
        c.open(b"", &mut back).unwrap();
        assert_eq!(back, msg);
    }
    // A frame sealed by the client cannot be reflected back to it.
    let mut m = b"x".to_vec();
    c.seal(b"", &mut m).unwrap();
    assert_eq!(c.open(b"", &mut m), Err(SealError::Forged));
}

#[test]
fn strangers_are_refused_at_hello_and_reply() {
    // A stranger's hello.
    let client = ClientHandshake::start(&key(9), [1; 32]);
    assert_eq!(
        ServerHandshake::accept(&[key(1)], client.hello(), [2; 32])
            .err()
            .map(|r| r.error),
        Some(SealError::Unauthenticated)
    );
    // Bytes that are no hello at all, e.g. a length prefix claiming 32 MiB.
    let mut junk = [0u8; HELLO_LEN];
    junk[..4].copy_from_slice(&(32u32 << 20).to_be_bytes());
    assert_eq!(
        ServerHandshake::accept(&[key(1)], &junk, [2; 32])
            .err()
            .map(|r| r.error),
        Some(SealError::Magic)
    );
    // A stranger posing as server.
    let client = ClientHandshake::start(&key(1), [1; 32]);
    let fake = ClientHandshake::start(&key(9), [1; 32]);
    let fake_server = ServerHandshake::accept(&[key(9)], fake.hello(), [2; 32]).unwrap();
    assert_eq!(
        client.finish(fake_server.reply()).err(),
        Some(SealError::Unauthenticated)
    );
}

#[test]
fn a_replayed_session_is_refused_at_finish() {
    // Record a session's client messages.
    let client = ClientHandshake::start(&key(1), [1; 32]);
    let hello = *client.hello();
    let server = ServerHandshake::accept(&[key(1)], &hello, [2; 32]).unwrap();
    let (finish, _) = client.finish(server.reply()).unwrap();
    server.confirm(&finish).unwrap();
    // Replay them to a server that picks a fresh nonce: the hello passes (it is genuine),
    // the finish does not.
    let replayed = ServerHandshake::accept(&[key(1)], &hello, [3; 32]).unwrap();
    assert_eq!(
        replayed.confirm(&finish).err(),
        Some(SealError::Unauthenticated)
    );
}

#[test]
fn a_server_accepts_any_of_its_keys_and_sessions_differ() {
    let (mut c, mut s) = handshake(&key(2), &[key(1), key(2)], 1, 2).unwrap();
    let mut m = b"hello".to_vec();
    c.seal(b"", &mut m).unwrap();
    s.open(b"", &mut m).unwrap();
    assert_eq!(m, b"hello");
    // Another connection (other nonces) has other keys: the same plaintext differs.
    let (mut c1, _) = handshake(&key(1), &[key(1)], 1, 2).unwrap();
    let (mut c2, _) = handshake(&key(1), &[key(1)], 1, 3).unwrap();
    let (mut a, mut b) = (b"same".to_vec(), b"same".to_vec());
    c1.seal(b"", &mut a).unwrap();
    c2.seal(b"", &mut b).unwrap();
    assert_ne!(a, b);
}

#[test]
fn datagrams_open_only_with_their_key() {
    let k = DatagramKey::new(&key(1));
    let sealed = k.seal([5; DATAGRAM_NONCE_LEN], b"swim ping").unwrap();
    assert_eq!(
        sealed.len(),
        DATAGRAM_NONCE_LEN + b"swim ping".len() + AEAD_TAG_LEN
    );
    assert!(!sealed.windows(4).any(|w| w == b"swim"));
    assert_eq!(k.open(&sealed).as_deref(), Some(&b"swim ping"[..]));
    assert_eq!(DatagramKey::new(&key(2)).open(&sealed), None);
    let mut flipped = sealed.clone();
    flipped[DATAGRAM_NONCE_LEN] ^= 1;
    assert_eq!(k.open(&flipped), None);
    assert_eq!(
        k.open(&sealed[..DATAGRAM_NONCE_LEN + AEAD_TAG_LEN - 1]),
        None
    );
    let empty = k.seal([6; DATAGRAM_NONCE_LEN], b"").unwrap();
    assert_eq!(k.open(&empty).as_deref(), Some(&b""[..]));
}

#[test]
fn todays_hello_is_the_one_members_without_version_names_send() {
    // Members built before versions had a name sent `DRP2`: they must still be understood.
    let client = ClientHandshake::start(&key(1), [1; 32]);
    assert_eq!(&client.hello()[..4], b"DRP2");
    assert_eq!(WIRE_VERSION, 2);
}

#[test]
fn a_member_of_another_version_is_refused_naming_both_versions() {
    for other in [WIRE_VERSION + 1, OLDEST_PEER_VERSION - 1] {
        let client = ClientHandshake::start_version(&key(1), [1; 32], other);
        let refused = match ServerHandshake::accept(&[key(1)], client.hello(), [2; 32]) {
            Ok(_) => panic!("version {other} was accepted"),
            Err(r) => r,
        };
        let want = SealError::Version {
            peer: other,
            ours: WIRE_VERSION,
            oldest: OLDEST_PEER_VERSION,
        };
        assert_eq!(refused.error, want);
        let text = refused.error.to_string();
        assert!(
            text.contains(&format!("version {other}")) && text.contains(&WIRE_VERSION.to_string()),
            "{text}"
        );
        // The member that sent it learns why, with the versions seen from its side.
        let refusal = refused.refusal.expect("a member gets a refusal");
        assert_eq!(
            client.finish(&refusal).err(),
            Some(SealError::Version {
                peer: WIRE_VERSION,
                ours: other,
                oldest: OLDEST_PEER_VERSION,
            })
        );
    }
}

#[test]
fn a_stranger_of_another_version_learns_nothing() {
    let stranger = ClientHandshake::start_version(&key(9), [1; 32], WIRE_VERSION + 1);
    let refused = match ServerHandshake::accept(&[key(1)], stranger.hello(), [2; 32]) {
        Ok(_) => panic!("a stranger was accepted"),
        Err(r) => r,
    };
    assert_eq!(refused.error, SealError::Unauthenticated);
    assert!(refused.refusal.is_none());
    // A refusal forged without the key is taken for a bad reply, not a version verdict.
    let member = ClientHandshake::start(&key(1), [1; 32]);
    let mut forged = [0u8; REPLY_LEN];
    forged[..4].copy_from_slice(b"DRPV");
    forged[4] = b'9';
    assert_eq!(
        member.finish(&forged).err(),
        Some(SealError::Unauthenticated)
    );
}
