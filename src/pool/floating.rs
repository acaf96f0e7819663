//! Who holds the pool's floating service address (`[pool] service-address`), the address
//! nodes mount their NFS root from: one live member holds it and another takes it over when
//! that member dies. Sans IO: the pool's shell hands in the roster, the members membership
//! sees alive (with the start time of their current incarnation) and the time, and gets
//! back a [`Decision`]; `net::floating` puts the address on the interface or takes it off.
//!
//! The rule, the same on every member:
//! - only a member that sees a strict majority of the voters (itself included) may hold the
//!   address: a minority side of a partition gives it up as soon as it notices, and never
//!   takes it. The voters are the settled roster less the members an admin declared dead
//!   (`drover pool mark-dead`: incarnations that started before the mark). So a pool of two
//!   has no holder while one is down, until the admin marks that one dead on the other
//!   (ISC's partner-down), or unless a witness (`drover witness`, a roster row that votes
//!   and is never chosen) sees it; marking a member dead that is alive on the other side of a
//!   partition can give the address two holders, which is why the command is refused while
//!   the member is in sight;
//! - **sticky**: a member in sight that says it holds the address ([`Seen::said`], from its
//!   summary) keeps it: after a healed partition or a restart the address stays where it is
//!   (moving it would cost the NFS clients a reconnect and a grace period). Of two that say
//!   so (views that disagreed for a moment), the oldest incarnation keeps it. A word counts
//!   only if it was said after its member came into this member's sight, so that a word
//!   from before a partition or a death never counts; while a member in sight has not said
//!   anything since, and nobody in sight holds the address, nobody is chosen (in doubt, wait);
//! - when nobody in sight holds it (the holder died or is cut off, or at the pool's start),
//!   the **oldest incarnation** in sight is chosen (the smallest membership epoch, which is
//!   the unix time its process started; ties go to the lower id);
//! - a member that has become the one to hold it takes it only after it has been so,
//!   continuously, for [`take_after_ms`]. Giving the address up needs no wait.
//!
//! **The wait, derived.** A holder that is alive but cut off from the majority must have let
//! the address go before anyone takes it; a dead or frozen holder's address must have run out:
//! - the majority side declares the holder down at the earliest [`SUSPECT_MS`] after the cut;
//!   the holder notices it lost the majority at most [`notice_skew_ms`] later than that;
//! - from then on its pool task no longer renews its decision, which goes stale after
//!   [`FRESH_MS`] (`net::floating` then deletes the address on its next check);
//! - if it cannot delete it (or its process is frozen or killed), the kernel drops the
//!   address [`LIFETIME_SECS`] after the last refresh, at most [`KERNEL_SLACK_MS`] late (the
//!   kernel's lifetime check is rounded up to a whole second plus a timer fuzz; measured
//!   lateness was under 0.4 s).
//!
//! So [`take_after_ms`] = skew + [`FRESH_MS`] + lifetime + slack, counted from the moment the
//! successor is chosen (which is at least [`SUSPECT_MS`] after the death or cut): 6.25 s in a
//! pool of three, with membership's detection (1 to 3 s) before it. Clocks are not compared:
//! every term is a duration on one member's clock.
//!
//! Two members hold the address at once only when membership's views disagree for longer
//! than the skew (SWIM's indirect probes make that rare: a member another member can reach is
//! not declared down).
//!
//! A member outside any pool (no cluster key, or `[pool] enabled = false`) holds the address
//! alone ([`Decision::solo`]), except after it left a pool (until it restarts).
//!
//! A drained member (`drover pool drain`) votes, is never chosen, and lets the address go
//! when it sees its row drained; the others count its word that it holds the address until
//! it says otherwise, then choose among the rest and take it after the same wait.
//!
//! Every member must be configured with the same service address: the rule picks among all
//! members, and a chosen member without one holds nothing.
//!
//! Not here: the roster and membership themselves, the summaries that carry the words, the
//! netlink and ARP work (`net::floating`), NFS's grace period (the shell starts it when the
//! address is taken).
//!
//! [`SUSPECT_MS`]: super::membership::SUSPECT_MS

use super::membership::notice_skew_ms;
use crate::store::model::PoolMember;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Seconds of valid and preferred lifetime the kernel gives the address at each refresh.
pub const LIFETIME_SECS: u32 = 2;
/// How often the holder refreshes the address's lifetime (four times per lifetime, so that a
/// late refresh or two do not let it lapse).
pub const REFRESH_MS: u64 = 500;
/// The most the kernel drops an address after its lifetime ran out (see the module docs).
pub const KERNEL_SLACK_MS: u64 = 1_250;
/// How long a decision stays valid without being renewed: the pool task renews it every
/// [`RENEW_MS`] while membership is unchanged; if it stops, the holder stops refreshing.
pub const FRESH_MS: u64 = 1_000;
/// How often the pool task renews an unchanged decision.
pub const RENEW_MS: u64 = 250;

/// How long a member must continuously have been the one to hold the address before it takes
/// it, in a pool whose settled roster has `members` (see the module docs).
pub fn take_after_ms(members: usize) -> u64 {
    notice_skew_ms(members) + FRESH_MS + u64::from(LIFETIME_SECS) * 1000 + KERNEL_SLACK_MS
}

/// A live member as membership reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub id: u64,
    /// Start of its current incarnation (membership epoch, unix ms).
    pub epoch: u64,
    /// What this incarnation last said about the address (its summary), if anything.
    pub said: Option<Said>,
}

/// A member's word about the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Said {
    /// When it was said (unix ms on this member's clock: receipt time minus its age).
    pub at_ms: u64,
    /// Whether it held the address then.
    pub holds: bool,
}

/// What this member should do with the address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Decision {
    /// Hold the address (add it, refresh it); otherwise make sure it is not here.
    pub hold: bool,
    /// The member that holds it (or is about to, after its wait) in this member's view;
    /// `None` without a majority.
    pub holder: Option<u64>,
    /// Unix ms after which `hold` no longer counts unless renewed; `None`: never stale (a
    /// member on its own).
    pub fresh_until_ms: Option<u64>,
}

impl Decision {
    /// A member outside any pool: it holds the address.
    pub fn solo(me: u64) -> Decision {
        Decision {
            hold: true,
            holder: Some(me),
            fresh_until_ms: None,
        }
    }

    /// Whether the address should be here at `now_ms`.
    pub fn holds_at(&self, now_ms: u64) -> bool {
        self.hold && self.fresh_until_ms.is_none_or(|t| now_ms < t)
    }
}

/// One member's decider.
#[derive(Debug, Clone)]
pub struct Floating {
    me: u64,
    /// When each incarnation in sight came into sight (unix ms): its words count from then.
    gained: HashMap<(u64, u64), u64>,
    /// The newest incarnation (epoch) of each member seen since this start: one that started
    /// after an admin marked the member dead counts again, in sight or not.
    newest: HashMap<u64, u64>,
    /// Since when this member has continuously been the one to hold the address (unix ms).
    chosen_since: Option<u64>,
    /// Whether the last decision held the address, and how many times a decision took it
    /// while the one before did not (since this start; `/metrics` shows it).
    held: bool,
    takeovers: u64,
}

impl Floating {
    pub fn new(me: u64) -> Floating {
        Floating {
            me,
            gained: HashMap::new(),
            newest: HashMap::new(),
            chosen_since: None,
            held: false,
            takeovers: 0,
        }
    }

    /// How many times this member took the address since it started.
    pub fn takeovers(&self) -> u64 {
        self.takeovers
    }

    /// The decision at `now_ms`: `my_epoch` is this member's membership epoch, `alive` the
    /// other members membership sees alive.
    pub fn decide(
        &mut self,
        roster: &[PoolMember],
        my_epoch: u64,
        alive: &[Seen],
        now_ms: u64,
    ) -> Decision {
        self.gained
            .retain(|k, _| alive.iter().any(|s| (s.id, s.epoch) == *k));
        for s in alive {
            self.gained.entry((s.id, s.epoch)).or_insert(now_ms);
            let e = self.newest.entry(s.id).or_insert(s.epoch);
            *e = (*e).max(s.epoch);
        }
        let (holder, voters) = self.chosen(roster, my_epoch, alive, now_ms);
        if holder == Some(self.me) {
            self.chosen_since.get_or_insert(now_ms);
        } else {
            self.chosen_since = None;
        }
        let wait = take_after_ms(voters);
        let hold = self
            .chosen_since
            .is_some_and(|since| now_ms >= since.saturating_add(wait));
        if hold && !self.held {
            self.takeovers += 1;
        }
        self.held = hold;
        Decision {
            hold,
            holder,
            fresh_until_ms: Some(now_ms.saturating_add(FRESH_MS)),
        }
    }

    /// The member that should hold the address in this view (see the module docs), and the
    /// number of voters.
    fn chosen(
        &self,
        roster: &[PoolMember],
        my_epoch: u64,
        alive: &[Seen],
        now_ms: u64,
    ) -> (Option<u64>, usize) {
        // The voters: settled rows, less incarnations an admin declared dead (out of sight,
        // or in sight as one that started before the mark).
        let mut settled = 0;
        let mut votes_in_sight = 0;
        // With whether the member is drained (`drover pool drain`).
        let mut in_sight: Vec<(Seen, bool)> = Vec::new();
        for r in roster.iter().filter(|r| r.settled(now_ms)) {
            let seen = if r.id == self.me {
                Some(Seen {
                    id: r.id,
                    epoch: my_epoch,
                    said: Some(Said {
                        at_ms: now_ms,
                        holds: self.held,
                    }),
                })
            } else {
                // A member may show up under two identities for a moment (its former self
                // going down); the newest incarnation counts.
                alive
                    .iter()
                    .filter(|s| s.id == r.id)
                    .max_by_key(|s| s.epoch)
                    .copied()
            };
            match seen {
                Some(s) if r.marked_dead(s.epoch) => continue,
                // Out of sight: the incarnation the admin meant, unless a newer one showed up.
                None if r.dead_ms.is_some()
                    && self.newest.get(&r.id).is_none_or(|&e| r.marked_dead(e)) =>
                {
                    continue
                }
                // A witness votes, and never holds the address nor says anything of it.
                Some(_) if r.witness => votes_in_sight += 1,
                Some(s) => {
                    votes_in_sight += 1;
                    in_sight.push((s, r.drained_ms.is_some()));
                }
                None => {}
            }
            settled += 1;
        }
        if 2 * votes_in_sight <= settled {
            return (None, settled);
        }
        // Only words said since their member came into sight.
        let word = |s: &Seen| {
            let since = self.gained.get(&(s.id, s.epoch)).copied().unwrap_or(now_ms);
            s.said.filter(|w| s.id == self.me || w.at_ms >= since)
        };
        let oldest = |it: &mut dyn Iterator<Item = &(Seen, bool)>| {
            it.min_by_key(|(s, _)| (s.epoch, s.id)).map(|(s, _)| s.id)
        };
        // A drained member is never chosen, and gives the address up as soon as it sees its
        // row drained; the others go on counting its word that it holds the address until it
        // says it let go, so that the address never has two holders.
        let holding = oldest(&mut in_sight.iter().filter(|(s, drained)| {
            !(s.id == self.me && *drained) && word(s).is_some_and(|w| w.holds)
        }));
        let holder = match holding {
            Some(h) => Some(h),
            None if in_sight.iter().any(|(s, _)| word(s).is_none()) => None,
            None => oldest(&mut in_sight.iter().filter(|(_, drained)| !drained)),
        };
        (holder, settled)
    }
}

#[cfg(test)]
#[path = "floating_tests.rs"]
mod tests;
