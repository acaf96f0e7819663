//! When to answer router solicitations (RFC 4861 §6.2.6), as pure logic over caller-given
//! time: consecutive multicast advertisements are at least [`MIN_DELAY_BETWEEN_RAS`] apart,
//! so an answer is sent at once only if the last multicast advertisement is that old, and
//! otherwise scheduled for when it will be; solicitations that arrive while an answer is
//! pending are merged into it. Any multicast advertisement (the periodic one too) answers
//! every pending solicitation.
//!
//! Not here: the random 0-500 ms answer delay of §6.2.6 (it keeps several routers from
//! answering in step; drover is the one advertiser on its segment, and iPXE waits for the
//! answer), unicast answers, and the pacing of periodic advertisements (`ra.interval`).

use std::time::{Duration, Instant};

/// RFC 4861 §10: the least time between multicast advertisements sent in answer.
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);

/// The answer state of one interface.
#[derive(Debug, Default)]
pub struct Answers {
    last_multicast: Option<Instant>,
    pending: Option<Instant>,
}

impl Answers {
    /// A solicitation arrived at `now`.
    pub fn solicited(&mut self, now: Instant) {
        if self.pending.is_some() {
            return; // merged into the answer already scheduled
        }
        let earliest = self
            .last_multicast
            .map_or(now, |last| last + MIN_DELAY_BETWEEN_RAS);
        self.pending = Some(earliest.max(now));
    }

    /// When the pending answer is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.pending
    }

    /// A multicast advertisement went out at `now` (answer or periodic).
    pub fn sent(&mut self, now: Instant) {
        self.last_multicast = Some(now);
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_at_once_then_at_most_one_per_min_delay() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = Answers::default();
        a.solicited(at(0));
        assert_eq!(a.due(), Some(at(0)), "nothing sent before: at once");
        a.sent(at(0));
        // A burst of solicitations within 3 s: one answer, 3 s after the last one.
        for ms in [10, 500, 1000, 2900] {
            a.solicited(at(ms));
            assert_eq!(a.due(), Some(at(3000)), "at {ms} ms");
        }
        a.sent(at(3000));
        assert_eq!(a.due(), None);
        // Quiet for longer than the minimum delay: at once again.
        a.solicited(at(7000));
        assert_eq!(a.due(), Some(at(7000)));
    }

    #[test]
    fn a_periodic_advertisement_answers_pending_solicitations() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = Answers::default();
        a.sent(at(0)); // periodic
        a.solicited(at(1000));
        assert_eq!(a.due(), Some(at(3000)));
        a.sent(at(2000)); // the next periodic one, before the answer was due
        assert_eq!(a.due(), None);
        a.solicited(at(2500));
        assert_eq!(a.due(), Some(at(5000)));
    }
}
