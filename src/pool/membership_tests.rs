//! Membership on a simulated network: members exchange sealed datagrams through an in-memory
//! network with seeded loss, partitions and deaths, on virtual time.

use super::*;
use foca::State;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::net::Ipv4Addr;

/// One-way delay of every datagram.
const LATENCY_MS: u64 = 2;

#[derive(Debug)]
enum Input {
    Datagram(Vec<u8>),
    Timer(Timer<MemberId>),
}

struct Event {
    at: u64,
    seq: u64,
    to: usize,
    input: Input,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    // Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Sim {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Event>,
    members: Vec<Membership>,
    alive: Vec<bool>,
    /// Pairs (a, b) with a < b that cannot reach each other.
    cut: HashSet<(usize, usize)>,
    loss: f64,
    rng: StdRng,
    /// (time, observer, subject, up?) for every Up/Down effect.
    log: Vec<(u64, usize, usize, bool)>,
}

fn addr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i as u8 + 1), 7946)
}

fn key() -> ClusterKey {
    ClusterKey::from_bytes([42; 32])
}

/// A distinct nonce seed per member and run (the shell takes them from the OS).
fn nonce_seed(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&seed.to_be_bytes());
    out
}

impl Sim {
    fn new(n: usize, seed: u64, loss: f64) -> Sim {
        let members = (0..n)
            .map(|i| {
                let me = MemberId {
                    addr: addr(i),
                    id: 100 + i as u64,
                    epoch: 1,
                    witness: false,
                };
                let s = seed ^ ((i as u64 + 1) * 7919);
                Membership::new(me, &key(), config(n as u32), s, nonce_seed(s))
            })
            .collect();
        Sim {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            members,
            alive: vec![true; n],
            cut: HashSet::new(),
            loss,
            rng: StdRng::seed_from_u64(seed),
            log: Vec::new(),
        }
    }

    fn index_of(&self, a: SocketAddrV4) -> Option<usize> {
        (0..self.members.len()).find(|&i| addr(i) == a)
    }

    fn push(&mut self, at: u64, to: usize, input: Input) {
        self.seq += 1;
        self.queue.push(Event {
            at,
            seq: self.seq,
            to,
            input,
        });
    }

    fn apply(&mut self, from: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send(dst, data) => {
                    let Some(to) = self.index_of(dst) else {
                        continue;
                    };
                    let pair = (from.min(to), from.max(to));
                    let lost = self.loss > 0.0 && self.rng.random_bool(self.loss);
                    if !self.cut.contains(&pair) && !lost {
                        self.push(self.now + LATENCY_MS, to, Input::Datagram(data));
                    }
                }
                Effect::Schedule(after, timer) => {
                    self.push(
                        self.now + after.as_millis() as u64,
                        from,
                        Input::Timer(timer),
                    );
                }
                Effect::Up(m) | Effect::Rejoined(m) => {
                    if let Some(s) = self.index_of(m.addr) {
                        self.log.push((self.now, from, s, true));
                    }
                }
                Effect::Down(m) => {
                    if let Some(s) = self.index_of(m.addr) {
                        self.log.push((self.now, from, s, false));
                    }
                }
            }
        }
    }

    /// Everyone announces to member 0.
    fn join_all(&mut self) {
        for i in 1..self.members.len() {
            let fx = self.members[i].announce(addr(0));
            self.apply(i, fx);
        }
    }

    fn run_until(&mut self, t: u64) {
        while let Some(e) = self.queue.peek() {
            if e.at > t {
                break;
            }
            let Some(e) = self.queue.pop() else { break };
            self.now = e.at;
            if !self.alive[e.to] {
                continue;
            }
            let fx = match e.input {
                Input::Datagram(d) => self.members[e.to].handle_datagram(&d),
                Input::Timer(timer) => self.members[e.to].handle_timer(timer),
            };
            self.apply(e.to, fx);
        }
        self.now = t;
    }

    /// Whom `i` believes alive (alive or suspect, under any identity), by index.
    fn sees_alive(&self, i: usize) -> Vec<usize> {
        let alive: BTreeSet<usize> = self.members[i]
            .members()
            .into_iter()
            .filter(|(_, s)| *s != State::Down)
            .filter_map(|(m, _)| self.index_of(m.addr))
            .collect();
        alive.into_iter().collect()
    }

    /// When `observer` last logged `subject` down at or after `since`.
    fn down_at(&self, observer: usize, subject: usize, since: u64) -> Option<u64> {
        self.log
            .iter()
            .find(|(t, o, s, up)| *t >= since && *o == observer && *s == subject && !up)
            .map(|(t, ..)| *t)
    }
}

fn everyone_but(n: usize, i: usize) -> Vec<usize> {
    (0..n).filter(|&j| j != i).collect()
}

/// Every member sees every other one alive.
fn assert_full_view(sim: &Sim, what: &str) {
    let n = sim.members.len();
    for i in 0..n {
        assert_eq!(sim.sees_alive(i), everyone_but(n, i), "{what}: member {i}");
    }
}

#[test]
fn members_join_through_one_seed_and_a_death_is_noticed_within_5_s() {
    for seed in 1..=5 {
        let n = 5;
        let mut sim = Sim::new(n, seed, 0.0);
        sim.join_all();
        sim.run_until(10_000);
        assert_full_view(&sim, &format!("seed {seed}"));
        let t_kill = sim.now;
        sim.alive[3] = false;
        sim.run_until(t_kill + 10_000);
        for i in [0, 1, 2, 4] {
            let t = sim
                .down_at(i, 3, t_kill)
                .unwrap_or_else(|| panic!("seed {seed}: member {i} never saw 3 die"));
            assert!(
                t - t_kill <= 5_000,
                "seed {seed}: member {i} noticed after {} ms",
                t - t_kill
            );
            assert_eq!(
                sim.sees_alive(i),
                vec![0, 1, 2, 4]
                    .into_iter()
                    .filter(|&j| j != i)
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn lossy_network_converges_without_false_deaths() {
    let n = 6;
    let mut sim = Sim::new(n, 99, 0.05);
    sim.join_all();
    sim.run_until(30_000);
    assert_full_view(&sim, "joined");
    // A further minute of 5 % loss: suspicion may come and go, nobody stays down.
    sim.run_until(90_000);
    assert_full_view(&sim, "after a minute");
}

#[test]
fn a_member_without_the_key_cannot_join() {
    let n = 3;
    let mut sim = Sim::new(n, 7, 0.0);
    // Member 2 holds another key: everything it sends fails authentication.
    sim.members[2] = Membership::new(
        sim.members[2].me(),
        &ClusterKey::from_bytes([1; 32]),
        config(3),
        5,
        nonce_seed(5),
    );
    sim.join_all();
    sim.run_until(20_000);
    assert_eq!(sim.sees_alive(0), vec![1]);
    assert_eq!(sim.sees_alive(1), vec![0]);
    assert!(sim.sees_alive(2).is_empty());
    assert!(sim.members[0].refusals().unauthenticated > 0);
    // Garbage is refused the same way and changes nothing.
    let fx = sim.members[0].handle_datagram(&[0u8; 100]);
    assert!(fx.is_empty());
    let sealed = DatagramKey::new(&key())
        .seal([3; DATAGRAM_NONCE_LEN], b"not a foca message")
        .unwrap();
    let fx = sim.members[0].handle_datagram(&sealed);
    assert!(fx.iter().all(|e| !matches!(e, Effect::Up(_))));
    assert!(sim.members[0].refusals().rejected > 0);
}

#[test]
fn a_partition_splits_the_view_and_healing_merges_it() {
    for seed in 1..=5 {
        partition_and_heal(seed);
    }
}

fn partition_and_heal(seed: u64) {
    let n = 5;
    let mut sim = Sim::new(n, seed, 0.0);
    sim.join_all();
    sim.run_until(10_000);
    let (left, right) = ([0, 1], [2, 3, 4]);
    for a in left {
        for b in right {
            sim.cut.insert((a, b));
        }
    }
    sim.run_until(30_000);
    assert_eq!(sim.sees_alive(0), vec![1]);
    assert_eq!(sim.sees_alive(3), vec![2, 4]);
    sim.cut.clear();
    sim.run_until(90_000);

    assert_full_view(&sim, &format!("seed {seed} after healing"));
}

#[test]
fn a_restarted_member_comes_back_under_a_new_epoch() {
    let n = 3;
    let mut sim = Sim::new(n, 11, 0.0);
    sim.join_all();
    sim.run_until(10_000);
    sim.alive[2] = false;
    sim.run_until(20_000);
    assert_eq!(sim.sees_alive(0), vec![1]);
    // Restart: same address and store id, later epoch; it announces to member 0 again.
    let me = MemberId {
        epoch: 2,
        ..sim.members[2].me()
    };
    sim.members[2] = Membership::new(me, &key(), config(3), 77, nonce_seed(77));
    sim.alive[2] = true;
    let fx = sim.members[2].announce(addr(0));
    sim.apply(2, fx);
    sim.run_until(40_000);
    assert_full_view(&sim, "after the restart");
    let epochs: Vec<u64> = sim.members[0]
        .members()
        .iter()
        .filter(|(m, s)| m.addr == addr(2) && *s != State::Down)
        .map(|(m, _)| m.epoch)
        .collect();
    assert_eq!(epochs, vec![2]);
}

#[test]
fn a_rekey_keeps_members_that_follow_it_and_drops_one_that_does_not() {
    let mut sim = Sim::new(3, 11, 0.0);
    sim.join_all();
    sim.run_until(10_000);
    assert_eq!(sim.sees_alive(0), vec![1, 2]);
    let (old, new) = (key(), ClusterKey::from_bytes([43; 32]));
    // Transition: every member accepts both; 0 already sends with the new key.
    for i in 0..3 {
        sim.members[i].set_keys(&old, &[old.clone(), new.clone()]);
    }
    sim.members[0].set_keys(&new, &[new.clone(), old.clone()]);
    let t = sim.now + 10_000;
    sim.run_until(t);
    assert_eq!(sim.sees_alive(1), vec![0, 2]);
    // After it: 0 and 1 hold only the new key, 2 never got it.
    for i in 0..2 {
        sim.members[i].set_keys(&new, std::slice::from_ref(&new));
    }
    sim.members[2].set_keys(&old, std::slice::from_ref(&old));
    let t = sim.now + 20_000;
    sim.run_until(t);
    assert_eq!(sim.sees_alive(0), vec![1]);
    assert_eq!(sim.sees_alive(1), vec![0]);
    assert!(sim.members[0].refusals().unauthenticated > 0);
}
