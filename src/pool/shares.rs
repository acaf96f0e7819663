//! The member's side of DHCP address shares (`dhcp::share`): from the replicated roster, the
//! members seen alive and the completed store pulls, the [`Share`] this member's DHCP serves
//! with. Sans IO: the pool's shell feeds it events with their times.
//!
//! A member hands out nothing while it may hold a stale copy of what others handed out:
//! - before its own roster row has settled and then some ([`PoolMember::SETTLE_MS`] and
//!   [`PoolMember::HANDOFF_MS`]): the others stop using the addresses that move to it when
//!   the row settles, the new owner starts using them only after the handoff time (the
//!   benchmark `bench/pool.sh` found addresses ACKed twice when both switched at once);
//! - after another member came into sight (started, returned, a partition healed), until
//!   [`SETTLE_MS`] have passed, so that the other side sees this one too and stops taking
//!   over its share, and then one pull from that member has completed, so that every lease
//!   the other side granted meanwhile is here.
//!
//! Losing sight of members needs no wait: this member's own share stays its own. Losing
//! the use of it (the members out of sight could form a strict majority without this one,
//! and take over its clients) starts a recovery window once it is regained
//! (`Share::recovery`), and so does a restart. A window still open (or an absence still
//! going on) when the member stops carries over to its next start
//! ([`Shares::recovering_since`], kept in the status file).
//!
//! Not here: the roster rows themselves (the shell writes and reads them), membership.

use super::drain::Drains;
use crate::dhcp::share::Votes;
use crate::dhcp::share::{RECOVERY_MARGIN, TAKEOVER_AFTER};
use crate::dhcp::Share;
use crate::store::model::PoolMember;
use std::collections::HashMap;

/// How long after another member comes into sight this one waits before pulling from it
/// and serving again (membership tells both sides within ~1 s; the rest is margin).
pub const SETTLE_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct Shares {
    me: u64,
    /// The DHCP lease time (seconds): how long a recovery lasts, with a margin.
    lease_time: u64,
    started_ms: u64,
    /// Since when the members out of this one's sight could form a strict majority of the
    /// roster without it (unix ms): from then on its clients may be taken over.
    absent_since: Option<u64>,
    /// The current recovery window `(since, until)` in unix seconds (`Share::recovery`).
    recovery: Option<(u64, u64)>,
    /// When each member was last seen alive (unix ms).
    seen: HashMap<u64, u64>,
    /// When each member currently alive came into sight (unix ms).
    gained: HashMap<u64, u64>,
    /// When the last pull from each member completed (unix ms).
    pulled: HashMap<u64, u64>,
}

impl Shares {
    /// `last_alive_ms`: when this member last served in the pool before this start (from its
    /// status file), if ever; a restart is a time out of sight. `recovering_since`: what
    /// [`Shares::recovering_since`] said then (the same status file).
    pub fn new(
        me: u64,
        lease_time: u64,
        started_ms: u64,
        last_alive_ms: Option<u64>,
        recovering_since: Option<u64>,
    ) -> Shares {
        let recovery = last_alive_ms.map(|t| {
            let since = recovering_since.map_or(t / 1000, |s| s.min(t / 1000));
            (since, started_ms / 1000 + lease_time + RECOVERY_MARGIN)
        });
        Shares {
            me,
            lease_time,
            started_ms,
            absent_since: None,
            recovery,
            seen: HashMap::new(),
            gained: HashMap::new(),
            pulled: HashMap::new(),
        }
    }

    /// The start (unix seconds) of the recovery window this member is in at `now_ms`, or of
    /// the absence that will open one: to be kept across a restart.
    pub fn recovering_since(&self, now_ms: u64) -> Option<u64> {
        let open = self
            .recovery
            .filter(|(_, until)| now_ms / 1000 < *until)
            .map(|(since, _)| since);
        let absent = self.absent_since.map(|ms| ms / 1000);
        open.into_iter().chain(absent).min()
    }

    /// A pull of the store from `member` completed at `at_ms`.
    pub fn pulled(&mut self, member: u64, at_ms: u64) {
        self.pulled.insert(member, at_ms);
    }

    /// The share at `now_ms`, with `alive` the other members membership sees alive now and
    /// `drains` what `pool::drain` made of the drains.
    pub fn share(
        &mut self,
        roster: &[PoolMember],
        alive: &[u64],
        drains: &Drains,
        now_ms: u64,
    ) -> Share {
        self.gained.retain(|id, _| alive.contains(id));
        for &id in alive {
            self.seen.insert(id, now_ms);
            self.gained.entry(id).or_insert(now_ms);
        }
        let rows: Vec<&PoolMember> = roster.iter().filter(|r| r.settled(now_ms)).collect();
        // Witnesses vote and own nothing; they keep no store, so nothing is pulled from them.
        let settled: Vec<u64> = rows.iter().filter(|r| !r.witness).map(|r| r.id).collect();
        let votes = votes(self.me, &rows, alive);
        let caught_up = self.gained.iter().all(|(id, gained)| {
            !settled.contains(id)
                || (now_ms >= gained + SETTLE_MS
                    && self
                        .pulled
                        .get(id)
                        .is_some_and(|p| *p >= gained + SETTLE_MS))
        });
        // As `Share::may_use_own`: the voters out of sight cannot form a strict majority.
        let present = 2 * votes.seen >= votes.of;
        match (present, self.absent_since) {
            (false, None) => self.absent_since = Some(now_ms),
            (true, Some(since)) => {
                self.absent_since = None;
                let until = now_ms / 1000 + self.lease_time + RECOVERY_MARGIN;
                let since = since / 1000;
                self.recovery = Some(match self.recovery {
                    Some((s, u)) => (s.min(since), u.max(until)),
                    None => (since, until),
                });
            }
            _ => {}
        }
        let owning = roster.iter().any(|r| r.id == self.me && r.owning(now_ms));
        if !owning || !caught_up {
            return Share::waiting(self.me, settled).with_drains(drains.me, Vec::new());
        }
        let last_seen = settled
            .iter()
            .filter(|id| !alive.contains(id))
            .map(|id| {
                let ms = self.seen.get(id).copied().unwrap_or(self.started_ms);
                (*id, ms / 1000)
            })
            .collect();
        let mut share = Share::new(
            self.me,
            settled,
            alive.iter().copied(),
            last_seen,
            TAKEOVER_AFTER,
        )
        .with_votes(votes)
        .with_reuse_after(self.lease_time + RECOVERY_MARGIN + TAKEOVER_AFTER)
        .with_drains(drains.me, drains.handed_over.clone());
        share.recovery = self.recovery.filter(|(_, until)| now_ms / 1000 < *until);
        share
    }
}

/// The voters among the settled `rows` and how many of them `me` sees: every row, witnesses
/// included, less a member an admin declared dead (`drover pool mark-dead`) while it stays
/// out of sight (a restart rewrites its row without the mark).
fn votes(me: u64, rows: &[&PoolMember], alive: &[u64]) -> Votes {
    let in_sight = |r: &PoolMember| r.id == me || alive.contains(&r.id);
    let voters = || rows.iter().filter(|r| r.dead_ms.is_none() || in_sight(r));
    Votes {
        of: voters().count(),
        seen: voters().filter(|r| in_sight(r)).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn row(id: u64, joined_ms: u64) -> PoolMember {
        PoolMember {
            id,
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, id as u8), 7946),
            joined_ms,
            dead_ms: None,
            drained_ms: None,
            witness: false,
        }
    }

    #[test]
    fn a_joiner_takes_its_share_only_after_the_others_gave_it_up() {
        let joined = 100_000;
        let roster = [row(1, 0), row(2, joined)];
        let (mut old, mut new) = (
            Shares::new(1, 60, 0, None, None),
            Shares::new(2, 60, joined, None, None),
        );
        let settle = joined + PoolMember::SETTLE_MS;
        // They see each other from the join on and have pulled from each other since.
        old.share(&roster, &[2], &Drains::default(), joined);
        new.share(&roster, &[1], &Drains::default(), joined);
        old.pulled(2, joined + SETTLE_MS);
        new.pulled(1, joined + SETTLE_MS);
        // Before the row settles, the old member owns everything; the joiner waits.
        let a = old.share(&roster, &[2], &Drains::default(), settle - 1);
        let b = new.share(&roster, &[1], &Drains::default(), settle - 1);
        assert_eq!(a.roster, vec![1]);
        assert!(!b.in_roster);
        // Once it settles, the old member stops using the joiner's addresses at once...
        let a = old.share(&roster, &[2], &Drains::default(), settle + 2_000);
        assert_eq!(a.roster, vec![1, 2]);
        let b = new.share(&roster, &[1], &Drains::default(), settle + 2_000);
        assert!(!b.in_roster, "the joiner must wait out the handoff");
        // ...and the joiner starts only after the handoff time.
        let b = new.share(
            &roster,
            &[1],
            &Drains::default(),
            settle + PoolMember::HANDOFF_MS,
        );
        assert!(b.in_roster);
        let theirs = (0..200)
            .map(|i| Ipv4Addr::from(0xc612_0000 + i))
            .filter(|ip| b.owner(*ip) == 2)
            .collect::<Vec<_>>();
        assert!(!theirs.is_empty());
        assert!(theirs
            .iter()
            .all(|ip| b.may_allocate(0, *ip) && !a.may_allocate(0, *ip)));
    }

    #[test]
    fn a_survivor_of_two_takes_over_clients_beside_a_witness_or_after_mark_dead() {
        let witness = PoolMember {
            witness: true,
            ..row(9, 0)
        };
        let t = 100_000;
        let past_takeover = t + (TAKEOVER_AFTER + 1) * 1000;
        let dead_client_of = |share: &Share| {
            (0..300)
                .map(|i| Ipv4Addr::from(0xc612_0000 + i))
                .find(|ip| share.owner(*ip) == 2)
                .expect("member 2 owns some addresses")
        };
        // 1 and 2 and the witness; 2 dies at `t`.
        let roster = [row(1, 0), row(2, 0), witness.clone()];
        let mut s = Shares::new(1, 60, 0, None, None);
        s.share(&roster, &[2, 9], &Drains::default(), 1_000);
        s.pulled(2, 50_000);
        s.share(&roster, &[2, 9], &Drains::default(), t - 1);
        let b = s.share(&roster, &[9], &Drains::default(), past_takeover);
        assert_eq!(b.roster, vec![1, 2], "a witness owns no addresses");
        assert!(b.live.iter().all(|m| *m != 9), "nor answers clients");
        assert!(b.majority());
        let ip = dead_client_of(&b);
        assert!(
            b.may_extend(past_takeover / 1000, ip) && !b.may_allocate(past_takeover / 1000, ip)
        );
        // Without the witness: no majority, until an admin marks 2 dead.
        let mut roster = [row(1, 0), row(2, 0)];
        let mut s = Shares::new(1, 60, 0, None, None);
        s.share(&roster, &[2], &Drains::default(), 1_000);
        s.pulled(2, 50_000);
        s.share(&roster, &[2], &Drains::default(), t - 1);
        let b = s.share(&roster, &[], &Drains::default(), past_takeover);
        assert!(!b.majority());
        assert!(!b.may_extend(past_takeover / 1000, dead_client_of(&b)));
        roster[1].dead_ms = Some(t + 1);
        let b = s.share(&roster, &[], &Drains::default(), past_takeover);
        assert!(b.majority());
        let ip = dead_client_of(&b);
        assert!(
            b.may_extend(past_takeover / 1000, ip) && !b.may_allocate(past_takeover / 1000, ip)
        );
    }

    #[test]
    fn a_recovery_window_opens_when_the_member_may_use_its_share_again() {
        // Four members: alone, this one stops; beside one other (half), it serves again, and
        // the others may have extended its clients' leases meanwhile (pool sim seed 162).
        let roster = [row(1, 0), row(2, 0), row(3, 0), row(4, 0)];
        let mut s = Shares::new(1, 60, 0, None, None);
        s.pulled(2, 50_000);
        s.share(&roster, &[2, 3, 4], &Drains::default(), 1_000);
        s.share(&roster, &[], &Drains::default(), 100_000);
        assert_eq!(s.recovering_since(100_000), Some(100));
        s.share(&roster, &[2], &Drains::default(), 150_000);
        s.pulled(2, 160_000);
        let back = s.share(&roster, &[2], &Drains::default(), 160_000);
        assert!(back.in_roster);
        assert_eq!(back.recovery, Some((100, 150 + 60 + RECOVERY_MARGIN)));
        assert!(!back.may_reuse(160, 120), "ran into the absence");
        assert!(back.may_reuse(160, 99));
    }

    #[test]
    fn a_restart_keeps_the_recovery_window_it_stopped_in() {
        // Out of sight from 100 s, back at 150 s, stopped at 170 s, restarted at 200 s: an
        // address whose lease ran out at 160 s may have been extended by a member that died
        // before replicating that (pool sim seed 1017).
        let roster = [row(1, 0), row(2, 0), row(3, 0)];
        let mut s = Shares::new(1, 60, 0, None, None);
        s.share(&roster, &[], &Drains::default(), 100_000);
        s.share(&roster, &[2], &Drains::default(), 150_000);
        let since = s.recovering_since(170_000);
        assert_eq!(since, Some(100));
        let again = Shares::new(1, 60, 200_000, Some(170_000), since);
        assert_eq!(again.recovery, Some((100, 200 + 60 + RECOVERY_MARGIN)));
        // Without it, the window would start at the stop only.
        let plain = Shares::new(1, 60, 200_000, Some(170_000), None);
        assert_eq!(plain.recovery, Some((170, 200 + 60 + RECOVERY_MARGIN)));
    }
}
