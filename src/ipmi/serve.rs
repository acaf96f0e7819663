//! `drover serve`'s power poller: every `power.poll-interval` seconds it asks each node's BMC
//! for the chassis power state, starting at most `power.poll-rate` sessions per second and
//! running at most `power.max-sessions` at once (blocking sessions on tokio's blocking
//! pool), and writes the states that changed to the store's `power` table in one
//! transaction. Unchanged states are not written, so the change feed grows only with real
//! changes. Polls run in the server's [`SessionCache`] (shared with `POST /api/v1/power`):
//! one session per BMC, reused while polls come at least every `power.session-idle`
//! seconds, closed cleanly otherwise; [`keep_sessions`] closes idle and stale sessions and,
//! at shutdown, all of them.

use super::cache::SessionCache;
use super::power::{self, Action, FanOut, Job, Outcome};
use super::BmcAccess;
use crate::store::model::{BmcProtocol, Node, PowerState};
use crate::store::Store;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often idle sessions are looked for (and store changes checked).
const SESSION_SWEEP: Duration = Duration::from_secs(1);

/// The power-state poller's pace (`power.poll-interval`, `power.poll-rate`).
#[derive(Debug, Clone, Copy)]
pub struct Poller {
    /// Time between polls; zero: no polling.
    pub interval: Duration,
    /// BMC sessions per second that a poll starts at most.
    pub rate: f64,
}

/// Looks after `cache` until `shutdown`: every second closes the sessions idle for
/// `power.session-idle`, and after each store change those of BMCs no node uses any more
/// (settings changed, node removed); at shutdown closes them all.
pub async fn keep_sessions(
    store: Arc<Store>,
    cache: Arc<SessionCache>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut ticker = tokio::time::interval(SESSION_SWEEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (s, c) = (store.clone(), cache.clone());
        seen = tokio::task::spawn_blocking(move || -> Result<Option<u64>> {
            let seq = s.last_seq()?;
            if seen != Some(seq) {
                let current: Vec<BmcAccess> = polled_jobs(&s)?
                    .into_iter()
                    .filter_map(|j| j.access.ok())
                    .collect();
                c.retain(&current);
            }
            c.close_idle();
            Ok(Some(seq))
        })
        .await
        .context("BMC session sweep")??;
    }
    tokio::task::spawn_blocking(move || cache.close_all())
        .await
        .context("closing BMC sessions")?;
    tracing::debug!("BMC sessions closed");
    Ok(())
}

/// Polls until `shutdown` through `fan` (its cache, when it has one, keeps the sessions),
/// at most `fan.max_sessions` at once. Returns at once when the interval is zero.
pub async fn poll(
    store: Arc<Store>,
    c: Poller,
    fan: FanOut,
    shutdown: CancellationToken,
) -> Result<()> {
    if c.interval.is_zero() {
        shutdown.cancelled().await;
        return Ok(());
    }
    let fan = Arc::new(fan);
    let sessions = Arc::new(Semaphore::new(fan.max_sessions.max(1)));
    let step = Duration::from_secs_f64(1.0 / c.rate);
    loop {
        let s = store.clone();
        let jobs = tokio::task::spawn_blocking(move || polled_jobs(&s))
            .await
            .context("power poller")??;
        let mut ticker = tokio::time::interval(step);
        let mut running: JoinSet<Outcome> = JoinSet::new();
        for job in jobs {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {}
            }
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                p = sessions.clone().acquire_owned() => p.context("session limit")?,
            };
            let fan = fan.clone();
            running.spawn_blocking(move || {
                let outcome = power::run_one(&job, Action::Status, &fan);
                drop(permit);
                outcome
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = running.join_next().await {
            outcomes.push(done.context("power poll session")?);
        }
        let s = store.clone();
        let now = crate::clock::unix_secs();
        let changed = tokio::task::spawn_blocking(move || record(&s, &outcomes, now))
            .await
            .context("power poller")??;
        if changed > 0 {
            tracing::info!(changed, "power states changed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(c.interval) => {}
        }
    }
}

/// Nodes that have complete BMC settings and speak IPMI (the poller keeps IPMI sessions;
/// Redfish and auto nodes are not polled).
fn polled_jobs(store: &Store) -> Result<Vec<Job>> {
    Ok(store.read(|r| {
        let mut jobs = Vec::new();
        for n in r.all::<Node>()? {
            let job = power::job(r, &n)?;
            if job.access.is_ok() && job.via.protocol == BmcProtocol::Ipmi {
                jobs.push(job);
            }
        }
        Ok::<_, crate::store::StoreError>(jobs)
    })?)
}

/// Writes the states that changed (and drops those of nodes no longer polled). Returns how
/// many records it wrote.
fn record(store: &Store, outcomes: &[Outcome], now: u64) -> Result<usize> {
    let fresh: BTreeMap<&str, (Option<bool>, Option<String>)> = outcomes
        .iter()
        .map(|o| {
            let state = match &o.result {
                Ok(reply) => (reply.power, None),
                Err(f) => (None, Some(format!("{}: {}", f.class, f.reason))),
            };
            (o.node.as_str(), state)
        })
        .collect();
    // Decide in a read transaction; most polls change nothing and then write nothing.
    let stale = |old: &PowerState, on: &Option<bool>, error: &Option<String>| {
        // A new error text with the same class is not a change worth a write.
        let class = |e: &Option<String>| {
            e.as_deref()
                .and_then(|e| e.split(':').next())
                .map(str::to_string)
        };
        old.on != *on || class(&old.error) != class(error)
    };
    let (gone, changed) = store.read(|r| {
        let gone: Vec<String> = r
            .all::<PowerState>()?
            .into_iter()
            .filter(|p| !fresh.contains_key(p.node.as_str()))
            .map(|p| p.node)
            .collect();
        let mut changed = Vec::new();
        for (node, (on, error)) in &fresh {
            if r.get::<PowerState>(node)?
                .is_none_or(|old| stale(&old, on, error))
            {
                changed.push(PowerState {
                    node: node.to_string(),
                    on: *on,
                    error: error.clone(),
                    since: now,
                });
            }
        }
        Ok::<_, crate::store::StoreError>((gone, changed))
    })?;
    if gone.is_empty() && changed.is_empty() {
        return Ok(0);
    }
    store.write(|w| {
        for node in &gone {
            w.delete::<PowerState>(node)?;
        }
        for state in &changed {
            w.put(state)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })?;
    Ok(gone.len() + changed.len())
}
