//! Joining and leaving a pool on this member's state directory: what `drover pool
//! init|join|leave|forget|rekey` do to the cluster key (`<state>/cluster.key`), the recorded seeds
//! (`<state>/pool/seeds`) and the roster in the store, and reading the status file that
//! `drover pool status` shows.
//!
//! A running `drover serve` notices these files within [`ANNOUNCE_EVERY`]: it joins through
//! new seeds and leaves once the key is gone.
//!
//! Not here: the pool's traffic (`serve`), the key's cryptography (`key`), printing (the CLI).
//! The API cannot reach these: the key never crosses it.

use super::key::{ClusterKey, KeyError, Keyring, Rekey};
use super::serve::{self as ps, ANNOUNCE_EVERY, STATUS_EVERY};
use super::status::{read_status, status_file, Status};
use crate::store::model::PoolMember;
use crate::store::{Store, StoreError};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading random bytes for the cluster key: {0}")]
    Random(std::io::Error),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0:?} is neither IP nor IP:PORT")]
    BadSeed(String),
    #[error("{0} holds another pool's key; run `drover pool leave` first")]
    OtherPool(String),
    #[error("not in a pool: {0} does not exist (`drover pool init` or `drover pool join`)")]
    NoKey(String),
    #[error("not in a pool: no cluster key in {0}")]
    NotInPool(String),
    #[error("no pool status in {0}: is `drover serve` running with this state directory?")]
    NoStatus(String),
    #[error("{0:?} is not a member id (16 hex digits)")]
    BadId(String),
    #[error("that is this member: use `drover pool leave`")]
    ThisMember,
    #[error("member {0:016x} is not down; stop it first (or `drover pool leave` there)")]
    Alive(u64),
    #[error("member {0:016x} is not on the roster")]
    NotOnRoster(u64),
    #[error(
        "member {id:016x} is {state} as this member sees it; only a member that is down can be \
         marked dead"
    )]
    Reachable { id: u64, state: String },
    #[error(
        "the pool status is {0} s old: is `drover serve` running? A member can be marked dead \
         only on a running member that sees it down"
    )]
    StaleStatus(u64),
    #[error("member {0:016x} is a witness: it serves nothing to drain")]
    Witness(u64),
    #[error("a rekey is in progress until its old key retires; wait for it to end")]
    RekeyPending,
    #[error(
        "a transition of {0} s is too short to reach every member (at least {MIN_TRANSITION_SECS})"
    )]
    ShortTransition(u64),
}

/// The shortest rekey transition: members must get the new key before the switch.
pub const MIN_TRANSITION_SECS: u64 = 10;

/// `pool rekey`: a new key, sent with from half-way through `transition_secs` and the only
/// one accepted after it; the running server passes it on. Refused outside a pool and while
/// another rekey is in progress.
pub fn rekey(state: &Path, transition_secs: u64, now_ms: u64) -> Result<Rekey, SetupError> {
    if transition_secs < MIN_TRANSITION_SECS {
        return Err(SetupError::ShortTransition(transition_secs));
    }
    let ring = Keyring::load_state(state)?
        .ok_or_else(|| SetupError::NotInPool(state.display().to_string()))?;
    if ring.rekey.as_ref().is_some_and(|r| r.retire_ms > now_ms) {
        return Err(SetupError::RekeyPending);
    }
    let ms = transition_secs.saturating_mul(1000);
    let rekey = Rekey {
        next: ClusterKey::generate().map_err(SetupError::Random)?,
        switch_ms: now_ms + ms / 2,
        retire_ms: now_ms + ms,
    };
    rekey.save(state)?;
    Ok(rekey)
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SetupError {
    let path = path.display().to_string();
    move |source| SetupError::Io {
        action,
        path,
        source,
    }
}

/// `pool init`: a new cluster key, mode 0600; refused if one exists. Returns its path.
pub fn init(state: &Path) -> Result<PathBuf, SetupError> {
    std::fs::create_dir_all(state).map_err(io("creating", state))?;
    let path = ClusterKey::path(state);
    ClusterKey::generate()
        .map_err(SetupError::Random)?
        .save_new(&path)?;
    // `save_new` syncs the file; its name in the directory must survive a crash too.
    crate::durable::sync_dir(state).map_err(io("syncing", state))?;
    Ok(path)
}

/// `pool join SEED --key-file FILE`: takes the pool's key (unless this member has it already)
/// and records `seed` beside the seeds recorded before. Returns the seed's address.
pub fn join(state: &Path, seed: &str, key_file: &Path) -> Result<SocketAddrV4, SetupError> {
    let addr = ps::parse_seed(seed).ok_or_else(|| SetupError::BadSeed(seed.to_string()))?;
    let key = ClusterKey::load(key_file)?;
    let dir = ps::pool_dir(state);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let key_path = ClusterKey::path(state);
    match ClusterKey::load_state(state)? {
        Some(existing) if existing != key => {
            return Err(SetupError::OtherPool(key_path.display().to_string()))
        }
        Some(_) => {}
        None => {
            key.save_new(&key_path)?;
            crate::durable::sync_dir(state).map_err(io("syncing", state))?;
        }
    }
    let mut seeds = ps::recorded_seeds(state);
    if !seeds.contains(&addr) {
        seeds.push(addr);
    }
    let text: String = seeds.iter().map(|s| format!("{s}\n")).collect();
    let file = ps::seeds_file(state);
    crate::durable::write(&file, text.as_bytes(), 0o644).map_err(io("writing", &file))?;
    Ok(addr)
}

/// `pool leave`: this member off the roster, its key, pending rekey and seeds removed. Returns the removed
/// files; refused when there was no pool to leave.
pub fn leave(store: &Store, state: &Path) -> Result<Vec<PathBuf>, SetupError> {
    store.write(|w| w.delete::<PoolMember>(&PoolMember::key_of(store.member())))?;
    let mut removed = Vec::new();
    // A rekey left behind would replace the key of a pool joined later.
    for p in [
        Rekey::path(state),
        ClusterKey::path(state),
        ps::seeds_file(state),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &p)(e)),
        }
    }
    if removed.is_empty() {
        return Err(SetupError::NotInPool(state.display().to_string()));
    }
    Ok(removed)
}

/// `pool forget ID`: a member that is gone for good off the roster; refused for this member
/// and for one the status shows alive or suspect. Returns its id.
pub fn forget(store: &Store, state: &Path, id: &str) -> Result<u64, SetupError> {
    let id = u64::from_str_radix(id.trim(), 16).map_err(|_| SetupError::BadId(id.to_string()))?;
    if id == store.member() {
        return Err(SetupError::ThisMember);
    }
    if let Ok(status) = read_status(state) {
        let up = status
            .members
            .iter()
            .any(|m| m.id == id && matches!(m.state.as_str(), "alive" | "suspect"));
        if up {
            return Err(SetupError::Alive(id));
        }
    }
    if !store.write(|w| w.delete::<PoolMember>(&PoolMember::key_of(id)))? {
        return Err(SetupError::NotOnRoster(id));
    }
    Ok(id)
}

/// `pool mark-dead ID`: declares member `id` dead at `now_ms` (its running incarnation, and
/// any that started before), so that the members in sight of each other without it form a
/// majority (`pool::floating`): in a pool of two, the survivor takes the service address.
/// Refused for this member, for one off the roster, and unless the running server's status
/// (at most a few status periods old) shows it down. Returns its id.
pub fn mark_dead(store: &Store, state: &Path, id: &str, now_ms: u64) -> Result<u64, SetupError> {
    let id = u64::from_str_radix(id.trim(), 16).map_err(|_| SetupError::BadId(id.to_string()))?;
    if id == store.member() {
        return Err(SetupError::ThisMember);
    }
    let (status, stale) = self::status(state, now_ms)?;
    if let Some(age) = stale {
        return Err(SetupError::StaleStatus(age));
    }
    // The newest incarnation the status shows decides.
    let seen = status
        .members
        .iter()
        .filter(|m| m.id == id)
        .max_by_key(|m| m.epoch);
    if let Some(m) = seen.filter(|m| matches!(m.state.as_str(), "alive" | "suspect")) {
        return Err(SetupError::Reachable {
            id,
            state: m.state.clone(),
        });
    }
    let marked = store.write(|w| -> Result<bool, StoreError> {
        let Some(mut row) = w.get::<PoolMember>(&PoolMember::key_of(id))? else {
            return Ok(false);
        };
        row.dead_ms = Some(now_ms);
        w.put(&row)?;
        Ok(true)
    })?;
    if !marked {
        return Err(SetupError::NotOnRoster(id));
    }
    Ok(id)
}

/// `pool drain ID` (`drained`) or `pool undrain ID`: sets or clears the drain on member
/// `id`'s roster row, which replicates (`pool::drain` says what follows). Any member may be
/// drained from any member, this one included; draining a drained member keeps its drain
/// as it is (the handshake names it). Refused for a witness and a member off the roster.
/// Returns its id.
pub fn drain(store: &Store, id: &str, drained: bool, now_ms: u64) -> Result<u64, SetupError> {
    let id = u64::from_str_radix(id.trim(), 16).map_err(|_| SetupError::BadId(id.to_string()))?;
    store.write(|w| -> Result<u64, SetupError> {
        let Some(mut row) = w.get::<PoolMember>(&PoolMember::key_of(id))? else {
            return Err(SetupError::NotOnRoster(id));
        };
        if row.witness {
            return Err(SetupError::Witness(id));
        }
        let want = if drained {
            row.drained_ms.or(Some(now_ms))
        } else {
            None
        };
        if want != row.drained_ms {
            row.drained_ms = want;
            w.put(&row)?;
        }
        Ok(id)
    })
}

/// The status the local server last wrote, and its age in seconds as of `now_ms` when that is
/// more than a few status periods (the server may have stopped).
pub fn status(state: &Path, now_ms: u64) -> Result<(Status, Option<u64>), SetupError> {
    if ClusterKey::load_state(state)?.is_none() {
        return Err(SetupError::NoKey(
            ClusterKey::path(state).display().to_string(),
        ));
    }
    let status = read_status(state)
        .map_err(|_| SetupError::NoStatus(status_file(state).display().to_string()))?;
    let age = now_ms.saturating_sub(status.updated_ms) / 1000;
    Ok((status, (age > 3 * STATUS_EVERY.as_secs()).then_some(age)))
}

/// How long a running server takes to act on a join or leave, in seconds.
pub fn announce_secs() -> u64 {
    ANNOUNCE_EVERY.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drover-setup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn join_records_seeds_once_and_refuses_another_pools_key() {
        let (a, b) = (temp("a"), temp("b"));
        let key = init(&a).unwrap();
        assert!(matches!(init(&a), Err(SetupError::Key(_))));
        join(&b, "198.18.0.1", &key).unwrap();
        join(&b, "198.18.0.1:7946", &key).unwrap();
        join(&b, "198.18.0.2:9000", &key).unwrap();
        let seeds = std::fs::read_to_string(ps::seeds_file(&b)).unwrap();
        assert_eq!(seeds, "198.18.0.1:7946\n198.18.0.2:9000\n");
        assert!(matches!(
            join(&b, "nope", &key),
            Err(SetupError::BadSeed(_))
        ));
        let other = temp("c");
        let other_key = init(&other).unwrap();
        assert!(matches!(
            join(&b, "198.18.0.3", &other_key),
            Err(SetupError::OtherPool(_))
        ));
        assert!(matches!(status(&b, 0), Err(SetupError::NoStatus(_))));
        assert!(matches!(
            rekey(&b, 5, 1000),
            Err(SetupError::ShortTransition(5))
        ));
        let r = rekey(&b, 20, 1000).unwrap();
        assert_eq!((r.switch_ms, r.retire_ms), (11_000, 21_000));
        assert!(matches!(rekey(&b, 20, 2000), Err(SetupError::RekeyPending)));
        assert!(matches!(
            rekey(&temp("d"), 20, 0),
            Err(SetupError::NotInPool(_))
        ));
        for d in [a, b, other] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
