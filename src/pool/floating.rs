//! Who holds the pool's floating service address (`[pool] service-address`), the address
//! nodes mount their NFS root from: one live member holds it and another takes it over when
//! that member dies. Sans IO: the pool's shell hands in the roster, the members membership
//! sees alive (with the start time of their current incarnation) and the time, and gets
//! back a [`Decision`]; `net::floating` puts the address on the interface or takes it off.
//!
//! The rule, the same on every member:
//! - only a member that sees a strict majority of the settled roster (itself included) may
//!   hold the address, as only such members may take over DHCP shares (`dhcp::share`): a
//!   minority side of a partition gives it up as soon as it notices, and never takes it;
//! - of the settled roster members in sight, the **oldest incarnation** holds it (the
//!   smallest membership epoch, which is the unix time its process started; ties go to the
//!   lower id). A restarted member is the youngest, so it never takes the address from a
//!   live holder (sticky across restarts) and nothing needs to be exchanged besides
//!   membership. Not sticky across a healed partition: an older member that was cut off
//!   takes the address back once everyone sees it again;
//! - a member that has become the one to hold it takes it only after it has been so,
//!   continuously, for [`TAKE_AFTER_MS`]. That covers the previous holder's address
//!   lifetime ([`LIFETIME_SECS`]: the kernel drops the address by itself when its holder
//!   stops refreshing it, e.g. after a SIGKILL) and the time a holder on the minority side
//!   of a partition needs to notice that it lost the majority. Giving the address up needs
//!   no wait.
//!
//! Two members hold the address at once only when their views of who is alive disagree for
//! longer than [`TAKE_AFTER_MS`] (SWIM's indirect probes make that rare: a member another
//! member can reach is not declared down), or when a holder's process is frozen and then
//! resumes (its address outlives it by at most [`LIFETIME_SECS`], and a frozen pool task
//! lets its decision go stale, see [`Decision::fresh_until_ms`]).
//!
//! A member outside any pool (no cluster key, or `[pool] enabled = false`) holds the address
//! alone ([`Decision::solo`]), except after it left a pool (until it restarts).
//!
//! Every member must be configured with the same service address: the rule picks among all
//! members, and a chosen member without one holds nothing.
//!
//! Not here: the roster and membership themselves, the netlink and ARP work
//! (`net::floating`), NFS's grace period (the shell starts it when the address is taken).

use crate::store::model::PoolMember;
use serde::{Deserialize, Serialize};

/// Seconds of valid and preferred lifetime the kernel gives the address at each refresh.
pub const LIFETIME_SECS: u32 = 5;
/// How often the holder refreshes the address's lifetime.
pub const REFRESH_MS: u64 = 1_000;
/// How long a member must continuously have been the one to hold the address before it
/// takes it: the previous holder's [`LIFETIME_SECS`], the kernel's expiry check (about a
/// second late), and room for the previous holder to notice it lost the majority.
pub const TAKE_AFTER_MS: u64 = 12_000;
/// How long a decision stays valid without being renewed: the pool task decides at least
/// every 2 s; if it stops, the holder stops refreshing and the address runs out.
pub const FRESH_MS: u64 = 4_000;

/// A live member as membership reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub id: u64,
    /// Start of its current incarnation (membership epoch, unix ms).
    pub epoch: u64,
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
        let holder = chosen(self.me, roster, my_epoch, alive, now_ms);
        if holder == Some(self.me) {
            self.chosen_since.get_or_insert(now_ms);
        } else {
            self.chosen_since = None;
        }
        let hold = self
            .chosen_since
            .is_some_and(|since| now_ms >= since.saturating_add(TAKE_AFTER_MS));
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
}

/// The member that should hold the address in this view: the oldest incarnation among the
/// settled roster members in sight, if they are a strict majority of the settled roster.
fn chosen(
    me: u64,
    roster: &[PoolMember],
    my_epoch: u64,
    alive: &[Seen],
    now_ms: u64,
) -> Option<u64> {
    let settled: Vec<u64> = roster
        .iter()
        .filter(|r| r.settled(now_ms))
        .map(|r| r.id)
        .collect();
    let in_sight: Vec<Seen> = settled
        .iter()
        .filter_map(|&id| {
            if id == me {
                return Some(Seen {
                    id,
                    epoch: my_epoch,
                });
            }
            // A member may show up under two identities for a moment (its former self going
            // down); the newest incarnation counts.
            alive
                .iter()
                .filter(|s| s.id == id)
                .max_by_key(|s| s.epoch)
                .copied()
        })
        .collect();
    if 2 * in_sight.len() <= settled.len() {
        return None;
    }
    in_sight
        .iter()
        .min_by_key(|s| (s.epoch, s.id))
        .map(|s| s.id)
}

#[cfg(test)]
#[path = "floating_tests.rs"]
mod tests;
