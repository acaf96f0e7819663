//! `drover witness`: a vote-only pool member, so that a pool of two members fails over by
//! itself. Any third host (or VM) that reaches both members' pool addresses runs it with a copy
//! of the cluster key.
//!
//! What it does: it takes part in membership (SWIM over UDP, sealed with the cluster key, as
//! `membership` does for every member), announcing itself to its seeds until it knows a
//! member. Its identity says it is a witness (`MemberId::witness`); the members that see it
//! write its roster row (`PoolMember::witness`), after which it counts as a voter in the
//! majorities of `dhcp::share` and `pool::floating`. With two members and a witness, the one
//! that still sees the witness is a majority of three: it keeps the dead member's DHCP clients
//! and takes the service address, while a member cut off from both gives up its own share
//! and the address. A witness that sees both sides of a cut does not split the vote: SWIM's
//! indirect probes go through it, so neither member declares the other down.
//!
//! What it does not do: it keeps no store and exchanges nothing over the pool port (the
//! members leave it out of exchanges, layer copies, boot-path peers, the DNS zone and
//! change-feed compaction); it owns no DHCP addresses, answers no client, never holds the
//! service address, and writes no status file. It does not follow `drover pool rekey` (the
//! new key travels over the pool port): restart it with the new key before the old one
//! retires.
//!
//! Its member id is derived from its pool address, so a restart is the same voter; moved to
//! another address, it is a new voter, and the old row is taken off with `drover pool forget`.

use super::key::{random_bytes, ClusterKey, KeyError};
use super::membership::{self, Effect, MemberId, Membership};
use super::serve::ANNOUNCE_EVERY;
use crate::clock::unix_ms;
use foca::Timer;
use std::net::SocketAddrV4;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What `drover witness` is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where it gossips (the members must reach it there).
    pub addr: SocketAddrV4,
    /// Members to announce itself to.
    pub seeds: Vec<SocketAddrV4>,
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("a witness needs at least one member to join through (--seed)")]
    NoSeeds,
    #[error("binding the pool address {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("reading random bytes: {0}")]
    Random(std::io::Error),
}

/// The witness's member id: the same for every start at `addr`, and unlike any store's id
/// but by a 64-bit collision.
pub fn id_of(addr: SocketAddrV4) -> u64 {
    let h = blake3::hash(format!("drover witness {addr}").as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(id)
}

/// Runs the witness until `shutdown` is cancelled, then leaves the pool.
pub async fn run(
    settings: Settings,
    key: ClusterKey,
    shutdown: CancellationToken,
) -> Result<(), WitnessError> {
    if settings.seeds.is_empty() {
        return Err(WitnessError::NoSeeds);
    }
    let bind = |source| WitnessError::Bind {
        addr: settings.addr,
        source,
    };
    let socket = UdpSocket::bind(settings.addr).await.map_err(bind)?;
    let me = MemberId {
        addr: settings.addr,
        id: id_of(settings.addr),
        epoch: unix_ms(),
        witness: true,
    };
    let nonce_seed = random_bytes().map_err(WitnessError::Random)?;
    let mut m = Membership::new(
        me,
        &key,
        membership::config(3),
        me.epoch ^ me.id,
        nonce_seed,
    );
    tracing::info!(addr = %me.addr, id = format!("{:016x}", me.id), "witness: started");
    let mut timers: Vec<(Instant, Timer<MemberId>)> = Vec::new();
    let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
    let mut buf = vec![0u8; 65536];
    loop {
        let next = timers.iter().map(|(at, _)| *at).min();
        let far = Instant::now() + Duration::from_secs(3600);
        let effects = tokio::select! {
            _ = shutdown.cancelled() => {
                send_all(&socket, m.leave());
                return Ok(());
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => m.handle_datagram(&buf[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "witness: receive error");
                    Vec::new()
                }
            },
            _ = tokio::time::sleep_until(next.unwrap_or(far)) => {
                let now = Instant::now();
                let (due, rest) = timers.drain(..).partition(|(at, _)| *at <= now);
                timers = rest;
                due.into_iter().flat_map(|(_, t)| m.handle_timer(t)).collect::<Vec<_>>()
            }
            _ = announce.tick() => {
                // Until a member is in sight (at the start, or when every member went away).
                if m.members().iter().any(|(_, s)| *s != foca::State::Down) {
                    Vec::new()
                } else {
                    settings.seeds.iter().flat_map(|s| m.announce(*s)).collect()
                }
            }
        };
        for e in effects {
            match e {
                Effect::Send(dst, data) => {
                    // Best effort: SWIM tolerates loss.
                    let _ = socket.try_send_to(&data, dst.into());
                }
                Effect::Schedule(after, t) => timers.push((Instant::now() + after, t)),
                Effect::Up(who) => tracing::info!(member = %who.addr, "witness: member up"),
                Effect::Down(who) => tracing::warn!(member = %who.addr, "witness: member down"),
                Effect::Rejoined(who) => {
                    tracing::warn!(
                        epoch = who.epoch,
                        "witness: declared down by the others; rejoined"
                    )
                }
            }
        }
    }
}

/// Sends the datagrams among `effects` (leaving: nothing else matters any more).
fn send_all(socket: &UdpSocket, effects: Vec<Effect>) {
    for e in effects {
        if let Effect::Send(dst, data) = e {
            let _ = socket.try_send_to(&data, dst.into());
        }
    }
}
