//! `drover serve`'s open BMC sessions, reused by the power poller and `POST /api/v1/power`.
//!
//! One [`Conn`] per BMC identity (host, port, user and password: a changed password is
//! another identity), at most `power.max-sessions` of them. [`SessionCache::run`] runs
//! commands in the BMC's cached session, logging in first when there is none. A session is
//! used by one thread at a time (its entry's mutex is held for the whole exchange), so the
//! session and IPMI sequence numbers stay in order; a second user of the same BMC waits.
//!
//! Lifetime: a session stays open while it is used at least every `power.session-idle`
//! seconds ([`SessionCache::close_idle`], run every second by the server, closes it with
//! Close Session once it has been idle that long). drover sends no keep-alive traffic: with
//! `power.poll-interval` below `session-idle` the polls themselves keep sessions open;
//! with a longer poll interval a session is closed cleanly between polls and opened again
//! by the next one, which costs four datagrams of login per poll and holds no BMC session
//! slot while idle. `session-idle` stays below the BMC's inactivity timeout (ipmi_sim drops
//! idle sessions after 30 s, the IPMI spec says 60 s), so drover closes its sessions before
//! the BMC drops them.
//!
//! A session the BMC dropped anyway (it restarted, or timed the session out) shows as a
//! timeout: an RMCP+ BMC cannot answer in a session it no longer has (the answer would not
//! pass the integrity check), and most stay silent. A reused session that fails with a
//! timeout, an unreachable BMC or a malformed answer is dropped and the commands run once
//! more in a new session; a failure of that new session is the result. Errors the BMC sends
//! inside the session (completion codes, privilege) are answers from a live session: they
//! are the result and are not retried.
//!
//! Sessions are closed with Close Session when they idle out, when the cache evicts the
//! least recently used idle session to make room, when the node's BMC settings change or the
//! node is removed ([`SessionCache::retain`]), and at shutdown ([`SessionCache::close_all`]),
//! several at once. When every slot is busy, or after shutdown began, a request gets a
//! one-shot session ([`client::run`]) instead.
//!
//! Not here: the protocol (the sans-IO [`super::core::Session`]), sockets and waiting
//! ([`super::client`]), fan-out and pacing ([`super::power`]).

use super::client::{self, Conn, Dial, PowerError};
use super::core::{Answer, Command, SessionError};
use super::BmcAccess;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Threads that send Close Session at once when many sessions close together (shutdown).
const MAX_PARALLEL_CLOSES: usize = 16;

/// The open sessions of the serving process.
pub struct SessionCache {
    max: usize,
    idle: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: Vec<Arc<Entry>>,
    /// Shutdown began: no new sessions are cached.
    shut: bool,
}

struct Entry {
    bmc: BmcAccess,
    slot: Mutex<Slot>,
}

struct Slot {
    conn: Option<Conn>,
    /// When the session last answered.
    used: Instant,
    /// The entry left the cache; a thread that waited for it looks again.
    gone: bool,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entries hold passwords: only counts here.
        f.debug_struct("SessionCache")
            .field("max", &self.max)
            .field("idle", &self.idle)
            .field("entries", &lock(&self.state).entries.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a thread panicked, which aborts a release build; the data is
    // still consistent (every critical section leaves it so before it can fail).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Failures after which a reused session is presumed dead and the commands are retried once
/// in a new session.
fn session_lost(e: &PowerError) -> bool {
    matches!(
        e,
        PowerError::Unreachable(_)
            | PowerError::Io(_)
            | PowerError::Session(SessionError::Timeout(_) | SessionError::Protocol(_))
    )
}

impl SessionCache {
    /// At most `max` open sessions, each closed after `idle` without use (0: none cached).
    pub fn new(max: usize, idle: Duration) -> SessionCache {
        SessionCache {
            max,
            idle,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs `commands` on `bmc` in its cached session (blocking).
    pub fn run(
        &self,
        bmc: &BmcAccess,
        dial: &Dial,
        commands: &[Command],
    ) -> Result<Vec<Answer>, PowerError> {
        loop {
            let Some(entry) = self.entry(bmc) else {
                return client::run(bmc, dial, commands);
            };
            let mut slot = lock(&entry.slot);
            if slot.gone {
                continue;
            }
            return self.run_in(&mut slot, bmc, dial, commands);
        }
    }

    fn run_in(
        &self,
        slot: &mut Slot,
        bmc: &BmcAccess,
        dial: &Dial,
        commands: &[Command],
    ) -> Result<Vec<Answer>, PowerError> {
        if let Some(mut conn) = slot.conn.take() {
            if slot.used.elapsed() < self.idle {
                match conn.run(commands) {
                    Ok(answers) => {
                        slot.conn = Some(conn);
                        slot.used = Instant::now();
                        return Ok(answers);
                    }
                    Err(e) if session_lost(&e) => {
                        tracing::debug!(bmc = %bmc.address(), reason = %e, "BMC session lost; logging in again");
                    }
                    Err(e) => return Err(e),
                }
            } else {
                // The sweep has not come by yet; the BMC may drop it any moment.
                conn.close();
            }
        }
        let mut conn = Conn::open(bmc, dial)?;
        tracing::debug!(bmc = %bmc.address(), user = %bmc.user, "BMC session opened");
        let answers = conn.run(commands)?;
        slot.conn = Some(conn);
        slot.used = Instant::now();
        Ok(answers)
    }

    /// The entry of `bmc`, made if needed (evicting the least recently used idle session
    /// when full). `None`: run a one-shot session (nothing cached, all slots busy, or
    /// shutting down).
    fn entry(&self, bmc: &BmcAccess) -> Option<Arc<Entry>> {
        let mut evicted = None;
        let entry = {
            let mut st = lock(&self.state);
            if st.shut || self.idle.is_zero() || self.max == 0 {
                return None;
            }
            if let Some(e) = st.entries.iter().find(|e| e.bmc == *bmc) {
                return Some(e.clone());
            }
            if st.entries.len() >= self.max {
                let (i, conn) = take_lru(&st.entries)?;
                st.entries.swap_remove(i);
                evicted = conn;
            }
            let e = Arc::new(Entry {
                bmc: bmc.clone(),
                slot: Mutex::new(Slot {
                    conn: None,
                    used: Instant::now(),
                    gone: false,
                }),
            });
            st.entries.push(e.clone());
            e
        };
        if let Some(conn) = evicted {
            tracing::debug!(bmc = ?conn, "closing the least recently used BMC session");
            conn.close();
        }
        Some(entry)
    }

    /// Closes sessions unused for `power.session-idle` (and forgets entries without one).
    pub fn close_idle(&self) {
        let idle = self.idle;
        self.close_where(|slot| slot.conn.is_none() || slot.used.elapsed() >= idle);
    }

    /// Closes the sessions of BMCs not in `current` (the node's BMC settings changed, or the
    /// node is gone).
    pub fn retain(&self, current: &[BmcAccess]) {
        let gone: Vec<Arc<Entry>> = {
            let mut st = lock(&self.state);
            let (keep, gone) = std::mem::take(&mut st.entries)
                .into_iter()
                .partition(|e| current.contains(&e.bmc));
            st.entries = keep;
            gone
        };
        close_entries(gone);
    }

    /// Closes every session and caches no more (shutdown). Waits for sessions in use.
    pub fn close_all(&self) {
        let all = {
            let mut st = lock(&self.state);
            st.shut = true;
            std::mem::take(&mut st.entries)
        };
        close_entries(all);
    }

    /// Closes the idle entries (not in use right now) that match `stale`.
    fn close_where(&self, stale: impl Fn(&Slot) -> bool) {
        let mut conns = Vec::new();
        {
            let mut st = lock(&self.state);
            st.entries.retain(|e| {
                let Ok(mut slot) = e.slot.try_lock() else {
                    return true;
                };
                if !stale(&slot) {
                    return true;
                }
                slot.gone = true;
                conns.extend(slot.conn.take());
                false
            });
        }
        close_conns(conns);
    }
}

/// Takes the session out of the least recently used entry that nobody uses right now and
/// marks it gone; returns its index. `None` when every entry is in use.
fn take_lru(entries: &[Arc<Entry>]) -> Option<(usize, Option<Conn>)> {
    let mut best: Option<(usize, MutexGuard<'_, Slot>)> = None;
    for (i, e) in entries.iter().enumerate() {
        let Ok(slot) = e.slot.try_lock() else {
            continue;
        };
        if best.as_ref().is_none_or(|(_, b)| slot.used < b.used) {
            best = Some((i, slot));
        }
    }
    let (i, mut slot) = best?;
    slot.gone = true;
    Some((i, slot.conn.take()))
}

/// Waits for each entry to be free, marks it gone and closes its session.
fn close_entries(entries: Vec<Arc<Entry>>) {
    let conns = entries
        .iter()
        .filter_map(|e| {
            let mut slot = lock(&e.slot);
            slot.gone = true;
            slot.conn.take()
        })
        .collect();
    close_conns(conns);
}

/// Sends Close Session on each, [`MAX_PARALLEL_CLOSES`] at a time.
fn close_conns(conns: Vec<Conn>) {
    if conns.is_empty() {
        return;
    }
    tracing::debug!(sessions = conns.len(), "closing BMC sessions");
    let queue = Mutex::new(conns);
    let workers = lock(&queue).len().min(MAX_PARALLEL_CLOSES);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Some(conn) = lock(&queue).pop() else {
                    return;
                };
                conn.close();
            });
        }
    });
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
