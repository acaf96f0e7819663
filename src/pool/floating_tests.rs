use super::*;
use crate::pool::membership::SUSPECT_MS;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::net::{Ipv4Addr, SocketAddrV4};

const T0: u64 = 1_000_000;
const STEP: u64 = 250;
/// A member coming into sight is noticed within this.
const GAIN_MAX: u64 = 3_000;

fn roster(n: u64) -> Vec<PoolMember> {
    (1..=n)
        .map(|id| PoolMember {
            id,
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, id as u8), 7946),
            joined_ms: 0,
            dead_ms: None,
            drained_ms: None,
            witness: false,
        })
        .collect()
}

/// N members on virtual time: processes that die and restart, a network that splits, views
/// of each other that follow the truth after a random delay (a loss between [`SUSPECT_MS`]
/// and that plus `notice_skew_ms`, as membership bounds it), words about the address that
/// reach the others late and at random, and the kernel address each member's shell keeps
/// (refreshed while the decision says hold, gone [`LIFETIME_SECS`] and the kernel's slack
/// after the last refresh of a dead member).
struct Sim {
    now: u64,
    roster: Vec<PoolMember>,
    up: Vec<bool>,
    epoch: Vec<u64>,
    /// The side of the partition each member is on.
    side: Vec<u8>,
    /// sees[i][j], and a pending flip of it: (when, value).
    sees: Vec<Vec<bool>>,
    pending: Vec<Vec<Option<(u64, bool)>>>,
    deciders: Vec<Floating>,
    decisions: Vec<Decision>,
    /// words[i][j]: the last word of j's current incarnation that reached i.
    words: Vec<Vec<Option<Said>>>,
    /// Until when each member's address lives in its kernel.
    addr_until: Vec<Option<u64>>,
    rng: StdRng,
}

impl Sim {
    fn new(n: usize, seed: u64) -> Sim {
        Sim {
            now: T0,
            roster: roster(n as u64),
            up: vec![true; n],
            // Started one after the other: member 1 is the oldest.
            epoch: (0..n as u64).map(|i| T0 - 10_000 + i).collect(),
            side: vec![0; n],
            sees: vec![vec![true; n]; n],
            pending: vec![vec![None; n]; n],
            deciders: (1..=n as u64).map(Floating::new).collect(),
            decisions: vec![Decision::default(); n],
            words: vec![vec![None; n]; n],
            addr_until: vec![None; n],
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn n(&self) -> usize {
        self.up.len()
    }

    fn kill(&mut self, i: usize) {
        self.up[i] = false;
    }

    fn restart(&mut self, i: usize) {
        self.up[i] = true;
        self.epoch[i] = self.now;
        self.deciders[i] = Floating::new(i as u64 + 1);
        self.decisions[i] = Decision::default();
        // The shell deletes a leftover address at start.
        self.addr_until[i] = None;
        for j in 0..self.n() {
            // A new incarnation: nobody has its word, it has nobody's.
            self.words[j][i] = None;
            self.words[i][j] = None;
            // A fresh process knows nobody until membership tells it.
            self.sees[i][j] = false;
            self.pending[i][j] = None;
        }
    }

    fn reach(&self, i: usize, j: usize) -> bool {
        self.up[i] && self.up[j] && self.side[i] == self.side[j]
    }

    fn step(&mut self) {
        self.now += STEP;
        let n = self.n();
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let truth = self.reach(i, j);
                if truth == self.sees[i][j] {
                    self.pending[i][j] = None;
                } else if self.pending[i][j].is_none() {
                    let delay = if truth {
                        self.rng.random_range(0..=GAIN_MAX)
                    } else {
                        SUSPECT_MS + self.rng.random_range(0..=notice_skew_ms(n))
                    };
                    self.pending[i][j] = Some((self.now + delay, truth));
                }
                if let Some((at, v)) = self.pending[i][j] {
                    if at <= self.now {
                        self.sees[i][j] = v;
                        self.pending[i][j] = None;
                    }
                }
            }
        }
        // Summaries travel with the exchanges: now and then, between members that reach
        // each other.
        for i in 0..n {
            for j in 0..n {
                if i != j && self.reach(i, j) && self.rng.random_range(0..4) == 0 {
                    self.words[i][j] = Some(Said {
                        at_ms: self.now,
                        holds: self.decisions[j].holds_at(self.now),
                    });
                }
            }
        }
        for i in 0..n {
            if !self.up[i] {
                continue;
            }
            let alive: Vec<Seen> = (0..n)
                .filter(|&j| j != i && self.sees[i][j])
                .map(|j| Seen {
                    id: j as u64 + 1,
                    epoch: self.epoch[j],
                    said: self.words[i][j],
                })
                .collect();
            let d = self.deciders[i].decide(&self.roster, self.epoch[i], &alive, self.now);
            self.decisions[i] = d;
            self.addr_until[i] = d
                .holds_at(self.now)
                .then_some(self.now + u64::from(LIFETIME_SECS) * 1000 + KERNEL_SLACK_MS)
                .or(self.addr_until[i]);
        }
    }

    /// Members whose kernel has the address now.
    fn holders(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|&i| self.addr_until[i].is_some_and(|t| t > self.now))
            .collect()
    }

    fn run_checked(&mut self, ms: u64) {
        for _ in 0..ms / STEP {
            self.step();
            let h = self.holders();
            assert!(h.len() <= 1, "two holders at {}: {h:?}", self.now - T0);
        }
    }
}

impl Sim {
    /// `seconds` of random deaths, restarts, splits and heals, checked every step.
    fn shake(&mut self, seconds: u32) {
        let n = self.up.len();
        for _ in 0..seconds {
            self.run_checked(1_000);
            let r: u32 = self.rng.random_range(0..100);
            let i = self.rng.random_range(0..n);
            match r {
                0..=2 if self.up[i] => self.kill(i),
                3..=8 if !self.up[i] => self.restart(i),
                9..=10 => {
                    for k in 0..n {
                        self.side[k] = self.rng.random_range(0..2);
                    }
                }
                11..=14 => self.side = vec![0; n],
                _ => {}
            }
        }
    }

    /// Everything heals and restarts; a minute passes.
    fn heal(&mut self) {
        let n = self.up.len();
        self.side = vec![0; n];
        for i in 0..n {
            if !self.up[i] {
                self.restart(i);
            }
        }
        self.run_checked(60_000);
    }
}

#[test]
fn the_wait_is_derived_from_membership_and_the_lifetime() {
    // Skew 2 s (three members), fresh 1 s, lifetime 2 s, slack 1.25 s.
    assert_eq!(take_after_ms(3), 6_250);
    assert_eq!(take_after_ms(2), 5_250);
    assert!(
        take_after_ms(5) > take_after_ms(3),
        "bigger pools notice later"
    );
}

#[test]
fn one_member_holds_it_after_the_wait_and_a_successor_waits_out_the_lifetime() {
    let mut s = Sim::new(3, 1);
    // Nobody holds it before the wait (the first summaries take a moment, too).
    s.run_checked(take_after_ms(3) - STEP);
    assert!(s.holders().is_empty(), "nobody holds it before the wait");
    s.run_checked(GAIN_MAX + 2_000);
    assert_eq!(s.holders(), [0], "the oldest member holds it");
    assert!(s.decisions.iter().all(|d| d.holder == Some(1)));

    let killed_at = s.now;
    s.kill(0);
    let mut taken = None;
    for _ in 0..200 {
        s.run_checked(STEP);
        // The dead member's address lingers until its lifetime runs out.
        if let Some(&h) = s.holders().iter().find(|&&h| h != 0) {
            taken = Some((h, s.now - killed_at));
            break;
        }
    }
    let (h, after) = taken.expect("a survivor takes the address");
    assert_eq!(h, 1, "the oldest survivor");
    assert!(
        after >= SUSPECT_MS + take_after_ms(3),
        "taken {after} ms after the death"
    );
    let takeovers: Vec<u64> = s.deciders.iter().map(Floating::takeovers).collect();
    assert_eq!(takeovers, [1, 1, 0], "each holder took it once");

    // The old holder comes back: it is now the youngest and leaves the address alone.
    s.restart(0);
    s.run_checked(60_000);
    assert_eq!(s.holders(), [1], "sticky across a restart");
}

#[test]
fn a_minority_never_holds_it_and_two_members_without_one_wait() {
    let mut s = Sim::new(3, 2);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [0]);
    // The holder is cut off alone: it gives the address up, the other two take it.
    s.side[0] = 1;
    s.run_checked(30_000);
    assert_eq!(s.holders(), [1]);
    assert!(!s.decisions[0].hold && s.decisions[0].holder.is_none());

    // Healed: the address stays with its holder, not with the older member.
    s.side[0] = 0;
    s.run_checked(60_000);
    assert_eq!(s.holders(), [1], "sticky across a heal");
    assert!(s.decisions.iter().all(|d| d.holder == Some(2)));

    // A pool of two whose holder dies: no majority, nobody takes over.
    let mut s = Sim::new(2, 3);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [0]);
    s.kill(0);
    s.run_checked(60_000);
    assert!(s.holders().is_empty());
    assert_eq!(s.decisions[1].holder, None);
}

#[test]
fn deaths_partitions_and_restarts_never_give_two_holders() {
    for seed in 0..40 {
        let n = 3 + (seed % 3) as usize;
        let mut s = Sim::new(n, seed);
        s.shake(400);
        // Everything heals: exactly one holder, and every member names it.
        s.heal();
        let h = s.holders();
        assert_eq!(h.len(), 1, "seed {seed}: holders {h:?}");
        let id = h[0] as u64 + 1;
        assert!(
            s.decisions.iter().all(|d| d.holder == Some(id)),
            "seed {seed}: views {:?}",
            s.decisions
        );
    }
}

#[test]
fn unsettled_rows_and_stale_decisions_do_not_hold() {
    let mut f = Floating::new(2);
    let mut rows = roster(2);
    // Member 2 just joined: its row has not settled; member 1 alone is the roster.
    rows[1].joined_ms = T0;
    let at = T0 + take_after_ms(2) * 2;
    let alive = [Seen {
        id: 1,
        epoch: 5,
        said: Some(Said {
            at_ms: at,
            holds: false,
        }),
    }];
    let d = f.decide(&rows, 1, &alive, at);
    assert_eq!(d.holder, Some(1));
    assert!(!d.hold);
    // Alone on a settled roster of one it holds after the wait, and only while fresh.
    let rows = &roster(2)[1..];
    f.decide(rows, 1, &[], T0);
    let d = f.decide(rows, 1, &[], T0 + take_after_ms(1));
    assert!(d.hold && d.holds_at(T0 + take_after_ms(1)));
    assert!(!d.holds_at(T0 + take_after_ms(1) + FRESH_MS));
    assert!(Decision::solo(7).holds_at(u64::MAX));
}

#[test]
fn in_doubt_nobody_is_chosen_and_only_words_said_in_sight_count() {
    let rows = roster(3);
    let mut f = Floating::new(3);
    let seen = |id, said| Seen {
        id,
        epoch: id,
        said,
    };
    let word = |at_ms, holds| Some(Said { at_ms, holds });
    // Member 3 sees 1 and 2 come into sight; 1 has not said anything yet: in doubt.
    let d = f.decide(&rows, 3, &[seen(1, None), seen(2, word(T0, false))], T0);
    assert_eq!(d.holder, None);
    // A word from before they came into sight (a partition ago) does not count either.
    let old = [seen(1, word(T0 - 1, true)), seen(2, word(T0, false))];
    assert_eq!(f.decide(&rows, 3, &old, T0 + 1).holder, None);
    // Both have spoken since: nobody holds it, so the oldest is chosen...
    let none = [seen(1, word(T0 + 2, false)), seen(2, word(T0 + 2, false))];
    assert_eq!(f.decide(&rows, 3, &none, T0 + 3).holder, Some(1));
    // ...but a younger member that says it holds it keeps it.
    let two = [seen(1, word(T0 + 4, false)), seen(2, word(T0 + 4, true))];
    assert_eq!(f.decide(&rows, 3, &two, T0 + 5).holder, Some(2));
    // Of two that say so, the oldest.
    let both = [seen(1, word(T0 + 6, true)), seen(2, word(T0 + 6, true))];
    assert_eq!(f.decide(&rows, 3, &both, T0 + 7).holder, Some(1));
}

#[test]
fn two_members_need_a_mark_and_a_restart_lifts_it() {
    let mut s = Sim::new(2, 5);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [0]);
    // The holder dies: the survivor alone is no majority of two.
    s.kill(0);
    s.run_checked(30_000);
    assert!(s.holders().is_empty());
    // The admin declares it dead on the survivor, which takes the address.
    s.roster[0].dead_ms = Some(s.now);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [1]);
    // It restarts: a new incarnation counts again, and the address stays where it is.
    s.restart(0);
    s.run_checked(60_000);
    assert_eq!(s.holders(), [1]);
    // So when the other one dies now, the restarted one waits for a mark of its own.
    s.kill(1);
    s.run_checked(30_000);
    assert!(s.holders().is_empty());
    assert_eq!(s.decisions[0].holder, None);
}

#[test]
fn two_members_beside_a_witness_fail_over_alone_and_never_give_two_holders() {
    let mut s = Sim::new(3, 7);
    s.roster[2].witness = true;
    s.run_checked(20_000);
    assert_eq!(s.holders(), [0]);
    // The holder dies: the survivor and the witness are a majority of three.
    s.kill(0);
    s.run_checked(30_000);
    assert_eq!(s.holders(), [1], "the survivor takes it without a mark");
    // The survivor is cut off from the witness too: it gives the address up, and the
    // witness alone never takes it.
    s.restart(0);
    s.run_checked(60_000);
    assert_eq!(s.holders(), [1], "sticky across the restart");
    s.side[1] = 1;
    s.run_checked(30_000);
    assert_eq!(
        s.holders(),
        [0],
        "the majority side (member and witness) holds it"
    );

    // Random deaths, restarts and splits with a witness: never two holders (checked every
    // step by `run_checked`), one holder after healing, never the witness.
    for seed in 0..30 {
        let n = 3 + (seed % 2) as usize;
        let mut s = Sim::new(n, 1000 + seed);
        s.roster[n - 1].witness = true;
        s.shake(300);
        s.heal();
        let h = s.holders();
        assert_eq!(h.len(), 1, "seed {seed}: holders {h:?}");
        assert_ne!(h[0], n - 1, "seed {seed}: the witness holds it");
    }
}

#[test]
fn a_drained_holder_lets_go_first_and_is_never_chosen() {
    let mut s = Sim::new(3, 4);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [0]);
    s.roster[0].drained_ms = Some(1);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [1], "the oldest member not drained");
    // Undrained: the address stays where it is (sticky), and member 1 may be chosen again.
    s.roster[0].drained_ms = None;
    s.run_checked(20_000);
    assert_eq!(s.holders(), [1]);
    s.kill(1);
    s.run_checked(20_000);
    assert_eq!(s.holders(), [0]);

    // A member that sees the drain before the holder does keeps counting the holder's word.
    let mut rows = roster(3);
    rows[0].drained_ms = Some(1);
    let mut f = Floating::new(2);
    let seen = |id, at_ms, holds| Seen {
        id,
        epoch: id,
        said: Some(Said { at_ms, holds }),
    };
    let holds = [seen(1, T0, true), seen(3, T0, false)];
    assert_eq!(f.decide(&rows, 2, &holds, T0).holder, Some(1));
    let let_go = [seen(1, T0 + 1, false), seen(3, T0 + 1, false)];
    assert_eq!(f.decide(&rows, 2, &let_go, T0 + 1).holder, Some(2));
}
