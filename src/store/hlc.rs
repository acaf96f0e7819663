//! Hybrid logical clock versions for store records.
//!
//! A [`Version`] orders writes across pool members: wall-clock milliseconds, a logical
//! counter for writes within the same millisecond (or when the clock stepped back), and the
//! writing member's id as the final tie-breaker. Merging replicas later is last-writer-wins on
//! this order. The clock reading is an argument: this module never reads the time itself.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of one record write; totally ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub wall_ms: u64,
    pub logical: u32,
    pub member: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{:016x}", self.wall_ms, self.logical, self.member)
    }
}

/// The clock state of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hlc {
    last: Version,
}

impl Hlc {
    pub fn new(member: u64) -> Hlc {
        Hlc {
            last: Version {
                wall_ms: 0,
                logical: 0,
                member,
            },
        }
    }

    /// Resumes a clock after `last`, the highest version this member has written or seen.
    pub fn resume(member: u64, last: Version) -> Hlc {
        Hlc {
            last: Version { member, ..last },
        }
    }

    /// The version for a new local write at physical time `now_ms`: greater than every version
    /// this clock issued or observed, even when the wall clock stepped back.
    pub fn tick(&mut self, now_ms: u64) -> Version {
        if now_ms > self.last.wall_ms {
            self.last.wall_ms = now_ms;
            self.last.logical = 0;
        } else {
            self.last.logical = self.last.logical.saturating_add(1);
        }
        self.last
    }

    /// Takes note of a version written elsewhere (a replicated record), so later local
    /// writes order after it.
    pub fn observe(&mut self, seen: Version) {
        if (seen.wall_ms, seen.logical) > (self.last.wall_ms, self.last.logical) {
            self.last.wall_ms = seen.wall_ms;
            self.last.logical = seen.logical;
        }
    }

    pub fn last(&self) -> Version {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_monotonic_even_when_the_clock_steps_back() {
        let mut c = Hlc::new(7);
        let a = c.tick(1_000);
        let b = c.tick(1_000);
        let d = c.tick(500);
        let e = c.tick(2_000);
        assert!(a < b && b < d && d < e);
        assert_eq!(e.logical, 0);
        assert_eq!(d.wall_ms, 1_000);
    }

    #[test]
    fn observed_versions_order_before_later_ticks() {
        let mut c = Hlc::new(1);
        c.observe(Version {
            wall_ms: 9_000,
            logical: 4,
            member: 2,
        });
        let v = c.tick(100);
        assert_eq!((v.wall_ms, v.logical, v.member), (9_000, 5, 1));
    }

    #[test]
    fn member_breaks_ties() {
        let a = Version {
            wall_ms: 1,
            logical: 0,
            member: 1,
        };
        let b = Version { member: 2, ..a };
        assert!(a < b);
    }
}
