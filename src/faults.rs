//! Faults that degrade a service instead of stopping the server: [`Backoff`], the delay
//! before retrying a step that failed (doubling from [`Backoff::MIN`] to [`Backoff::MAX`],
//! back to the start after a success), and [`Faults`], the counters of such retries that
//! `/metrics` shows (`service="faults"`).
//!
//! Users: the store view refresher (`crate::serve`) and the router-advertisement socket
//! (`crate::net::ra`). Not here: the retried steps themselves, and tasks whose failure must
//! still stop the server (a socket that cannot be bound at start).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

crate::counters::counter_set! {
    /// Retried faults, server-wide.
    pub struct Faults, snapshot FaultsSnapshot {
        /// Refreshes of the store view that failed (retried with backoff).
        view_refresh_errors,
        /// Receive errors on a router-advertisement socket (retried with backoff).
        ra_receive_errors,
        /// Change-feed compactions that failed (tried again at the next tick).
        feed_compaction_errors,
    }
}

/// The server's one set of fault counters.
pub fn global() -> &'static Arc<Faults> {
    static FAULTS: OnceLock<Arc<Faults>> = OnceLock::new();
    FAULTS.get_or_init(Arc::default)
}

/// The wait before the next try of a failing step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    /// Failures since the last success.
    failures: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Backoff::MIN,
            failures: 0,
        }
    }
}

impl Backoff {
    /// The wait after a first failure.
    pub const MIN: Duration = Duration::from_millis(100);
    /// The longest wait: a fault that clears is noticed within this time.
    pub const MAX: Duration = Duration::from_secs(30);

    /// Records a failure; returns how long to wait before trying again.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        self.failures += 1;
        wait
    }

    /// Records a success; returns how many failures it ended (0: there was no outage).
    pub fn succeeded(&mut self) -> u64 {
        let ended = self.failures;
        *self = Backoff::default();
        ended
    }

    /// Whether the last try failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let mut b = Backoff::default();
        assert!(!b.failing());
        assert_eq!(b.succeeded(), 0);
        let waits: Vec<_> = (0..12).map(|_| b.failed()).collect();
        assert_eq!(waits[0], Backoff::MIN);
        assert_eq!(waits[1], Backoff::MIN * 2);
        assert_eq!(waits[2], Backoff::MIN * 4);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), Backoff::MAX);
        assert!(b.failing());
        assert_eq!(b.succeeded(), 12);
        assert!(!b.failing());
        assert_eq!(b.failed(), Backoff::MIN);
    }
}
