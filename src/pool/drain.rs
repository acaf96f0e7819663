//! Draining a member (`drover pool drain MEMBER`, `pool undrain`): the member keeps running,
//! replicating and voting, while its DHCP clients and free addresses go to the others
//! (`dhcp::share`) and the service address to another member (`pool::floating`), so that it
//! can be upgraded or switched off with no boot failing. Sans IO: the tick hands in the
//! roster, the members in sight, their summaries and the store's version vector, and gets
//! back [`Drains`].
//!
//! The setting is the roster row's `drained_ms` (written by the admin on any member,
//! replicated like the rest of the row; only compared for equality, never as a time).
//! The hand-over is a handshake, so that no client ever has two members answering it and no
//! address two members handing it out, with no safety wait:
//! 1. the drained member stops as soon as it sees its row drained: it answers no client and
//!    hands out and extends nothing (a gap, during which its clients retransmit);
//! 2. one tick later (by then the DHCP task answers with the drained share, and every lease
//!    it granted before is committed: a commit takes milliseconds, a tick
//!    [`STATUS_EVERY`]) its summary says so: [`Summary::drained`] names the drain it obeys,
//!    and [`Summary::newest_own`] is newer than every lease it granted;
//! 3. another member acts for it ([`Drains::handed_over`]) only while it is in sight as the
//!    incarnation that said so, its row still names that drain, and this member's store has
//!    everything up to that `newest_own` (so every lease it granted is known here). Its
//!    clients then go to the members left by the same rendezvous hash as for a dead
//!    member, and its free addresses to the same heir, at once. Two members that disagree on
//!    whether it handed over never both answer one client: removing a member from a
//!    rendezvous hash moves only the keys that member won, and it answers none of them.
//!
//! Undrain is the same handshake the other way round: the others stop acting for it as
//! soon as they see the row undrained (or the member out of sight, or a word that no
//! longer names the drain); the member itself stays drained until every other roster member
//! (not a witness, not marked dead) is in sight with a summary whose version vector covers
//! the undrained row (so that member has stopped acting for it) and whose own writes this
//! member's store has (so every lease the others granted on its addresses is known here).
//! A member out of sight thus keeps an undrained member drained until it is back, marked
//! dead or forgotten.
//!
//! Not here: the rule of which member answers what (`dhcp::share`), the floating address
//! (`pool::floating` reads the row itself), writing the row (`pool::setup`).
//!
//! [`STATUS_EVERY`]: super::serve::STATUS_EVERY
//! [`Summary::drained`]: super::summary::Summary::drained
//! [`Summary::newest_own`]: super::summary::Summary::newest_own

use super::membership::MemberId;
use super::summary::Summary;
use crate::store::model::PoolMember;
use crate::store::Version;
use std::collections::BTreeMap;

/// What the drains mean for this member's share at one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drains {
    /// This member is drained (or undrained and still waiting for the others to stop).
    pub me: bool,
    /// The members in sight that have handed their share over, sorted.
    pub handed_over: Vec<u64>,
}

/// What one tick knows about the pool, for [`Drain::step`].
pub struct Seen<'a> {
    pub roster: &'a [PoolMember],
    /// The other members membership sees alive.
    pub alive: &'a [MemberId],
    /// A member's summary (from its newest incarnation the table has).
    pub summary_of: &'a dyn Fn(u64) -> Option<Summary>,
    /// The newest record of each writer in this member's store.
    pub version_vector: &'a BTreeMap<u64, Version>,
    /// The version of this member's own roster row in its store.
    pub my_row: Option<Version>,
}

/// One member's side of the handshake (see the module docs).
#[derive(Debug, Clone)]
pub struct Drain {
    me: u64,
    /// The drain (`drained_ms`) the share of the last tick obeyed; also kept while an
    /// undrain waits for the others.
    obeyed: Option<u64>,
    /// What this member's summary says ([`Summary::drained`]).
    word: Option<u64>,
}

impl Drain {
    pub fn new(me: u64) -> Drain {
        Drain {
            me,
            obeyed: None,
            word: None,
        }
    }

    /// The drain this member's summaries say it obeys: set one tick after it stopped.
    pub fn word(&self) -> Option<u64> {
        self.word
    }

    /// The drains at one tick.
    pub fn step(&mut self, seen: &Seen) -> Drains {
        let mine = seen.roster.iter().find(|r| r.id == self.me);
        let me = match mine.and_then(|r| r.drained_ms) {
            Some(t) => {
                self.word = (self.obeyed == Some(t)).then_some(t);
                self.obeyed = Some(t);
                true
            }
            None => {
                self.word = None;
                if self.obeyed.is_some() && self.others_stopped(seen) {
                    self.obeyed = None;
                }
                self.obeyed.is_some()
            }
        };
        let handed_over = seen
            .roster
            .iter()
            .filter(|r| r.id != self.me && !r.witness)
            .filter(|r| {
                let Some(t) = r.drained_ms else { return false };
                said_and_carried(seen, r.id).is_some_and(|s| s.drained == Some(t))
            })
            .map(|r| r.id)
            .collect();
        Drains { me, handed_over }
    }

    /// Whether every other serving roster member has stopped acting for this one and this
    /// member has what they wrote meanwhile.
    fn others_stopped(&self, seen: &Seen) -> bool {
        let Some(row) = seen.my_row else {
            return true;
        };
        seen.roster
            .iter()
            .filter(|r| r.id != self.me && !r.witness && r.dead_ms.is_none())
            .all(|r| {
                said_and_carried(seen, r.id)
                    .is_some_and(|s| s.has.iter().any(|v| v.member == row.member && *v >= row))
            })
    }
}

/// The summary of member `id`'s incarnation in sight, if this member's store has everything
/// that incarnation wrote up to it.
fn said_and_carried(seen: &Seen, id: u64) -> Option<Summary> {
    let epoch = seen
        .alive
        .iter()
        .filter(|m| m.id == id)
        .map(|m| m.epoch)
        .max()?;
    let s = (seen.summary_of)(id).filter(|s| s.epoch == epoch)?;
    let here = seen.version_vector.get(&id);
    s.newest_own
        .is_none_or(|v| here.is_some_and(|h| *h >= v))
        .then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn id(n: u64) -> MemberId {
        MemberId {
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, n as u8), 7946),
            id: n,
            epoch: 5,
            witness: false,
        }
    }

    fn row(n: u64, drained_ms: Option<u64>) -> PoolMember {
        PoolMember {
            id: n,
            addr: id(n).addr,
            joined_ms: 0,
            dead_ms: None,
            witness: false,
            drained_ms,
        }
    }

    fn v(member: u64, wall_ms: u64) -> Version {
        Version {
            wall_ms,
            logical: 0,
            member,
        }
    }

    /// Member `n`'s summary with what the handshake reads; the rest as an older member's
    /// summary would leave it (the serde defaults).
    fn word(n: u64, drained: Option<u64>, newest: u64, has: Vec<Version>) -> Summary {
        let said = serde_json::json!({
            "id": n, "addr": id(n).addr, "epoch": 5, "seq": 1, "version": "", "uptime_secs": 0,
            "newest_own": v(n, newest), "has": has, "drained": drained,
        });
        serde_json::from_value(said).expect("a summary")
    }

    #[test]
    fn a_drained_member_stops_then_says_so_and_the_others_act_only_on_its_word() {
        let alive = [id(1), id(3)];
        let drained = [row(1, None), row(2, Some(77)), row(3, None)];
        let mut b = Drain::new(2);
        let nobody = |_: u64| None;
        let vv = BTreeMap::from([(2, v(2, 100))]);
        let seen = |roster, summary_of| Seen {
            roster,
            alive: &alive,
            summary_of,
            version_vector: &vv,
            my_row: Some(v(9, 1)),
        };
        // It stops at once, and says so from the next tick on.
        let first = b.step(&seen(&drained, &nobody));
        assert!(first.me);
        assert_eq!(b.word(), None);
        b.step(&seen(&drained, &nobody));
        assert_eq!(b.word(), Some(77));

        // Member 1's view: B in sight.
        let mut a = Drain::new(1);
        let (b_id, b_seen) = ([id(2), id(3)], vv.clone());
        let look = |summary_of: &dyn Fn(u64) -> Option<Summary>, vv: &BTreeMap<u64, Version>| {
            a.clone().step(&Seen {
                roster: &drained,
                alive: &b_id,
                summary_of,
                version_vector: vv,
                my_row: None,
            })
        };
        // No word yet, or a word of another drain: B's share stays B's.
        assert_eq!(look(&nobody, &b_seen).handed_over, Vec::<u64>::new());
        let other = |_: u64| Some(word(2, Some(76), 100, Vec::new()));
        assert!(look(&other, &b_seen).handed_over.is_empty());
        // Its word, but its last leases not here yet: wait.
        let ahead = |_: u64| Some(word(2, Some(77), 101, Vec::new()));
        assert!(look(&ahead, &b_seen).handed_over.is_empty());
        // Its word, and everything it wrote: act for it.
        let said = |n: u64| (n == 2).then(|| word(2, Some(77), 100, Vec::new()));
        assert_eq!(look(&said, &b_seen).handed_over, vec![2]);
        // An older incarnation's word does not count.
        let older = |n: u64| {
            (n == 2).then(|| Summary {
                epoch: 4,
                ..word(2, Some(77), 100, Vec::new())
            })
        };
        assert!(look(&older, &b_seen).handed_over.is_empty());
        // Undrained on the roster: stop at once, whatever B said.
        let undrained = [row(1, None), row(2, None), row(3, None)];
        let after = a.step(&Seen {
            roster: &undrained,
            alive: &b_id,
            summary_of: &said,
            version_vector: &b_seen,
            my_row: None,
        });
        assert!(after.handed_over.is_empty());
    }

    #[test]
    fn an_undrained_member_waits_until_every_other_has_the_row_and_it_has_theirs() {
        let undrained = [row(1, None), row(2, None), row(3, None)];
        let drained = [row(1, None), row(2, Some(77)), row(3, None)];
        let alive = [id(1), id(3)];
        let my_row = Some(v(1, 500));
        let mut b = Drain::new(2);
        let nobody = |_: u64| None;
        let vv = BTreeMap::from([(1, v(1, 600)), (3, v(3, 50))]);
        let seen = |roster, summary_of, vv| Seen {
            roster,
            alive: &alive,
            summary_of,
            version_vector: vv,
            my_row,
        };
        b.step(&seen(&drained, &nobody, &vv));
        b.step(&seen(&drained, &nobody, &vv));
        // Member 3 has not got the undrained row yet (its vector is behind member 1's write).
        let behind = |n: u64| match n {
            1 => Some(word(1, None, 600, vec![v(1, 600)])),
            3 => Some(word(3, None, 50, vec![v(1, 400)])),
            _ => None,
        };
        let d = b.step(&seen(&undrained, &behind, &vv));
        assert!(d.me, "3 may still act for it");
        assert_eq!(b.word(), None, "but it no longer says it is drained");
        // 3 has it, but wrote more (leases on 2's addresses) than 2 has from it.
        let wrote = |n: u64| match n {
            1 => Some(word(1, None, 600, vec![v(1, 600)])),
            3 => Some(word(3, None, 60, vec![v(1, 500)])),
            _ => None,
        };
        assert!(b.step(&seen(&undrained, &wrote, &vv)).me);
        let vv = BTreeMap::from([(1, v(1, 600)), (3, v(3, 60))]);
        assert!(!b.step(&seen(&undrained, &wrote, &vv)).me);
        // Drained again later: at once.
        assert!(b.step(&seen(&drained, &wrote, &vv)).me);
    }
}
