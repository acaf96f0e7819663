//! Which chunk the agent fetches next, and from where (sans-IO): a [`Schedule`] over the
//! chunks of one manifest, the peers the trackers named and the pool members.
//!
//! Policy, in this order:
//! - chunks go out lowest index first, because the tar is unpacked in order and the unpacker
//!   waits for the next chunk;
//! - a chunk goes to a peer when one is usable for it (not banned, not tried for this chunk,
//!   below [`Limits::per_peer`] fetches at once), the least busy first, so the load spreads;
//! - members are the last resort: a chunk goes to a member only when no peer can be asked
//!   for it any more (every peer tried it, or every peer is banned), or when there are no
//!   peers at all; a member is never asked twice for one chunk in a round;
//! - a peer that does not hold a chunk yet ([`Failure::Missing`]) is not asked for that
//!   chunk again; one that times out or refuses ([`Failure::Unreachable`]) gets a strike and
//!   is banned after [`MAX_STRIKES`]; one that sends bytes that do not hash to the chunk's
//!   name ([`Failure::Corrupt`]) is banned at once: it lied, or its memory is bad.
//! - when every member has failed a chunk too, the schedule is [`Next::Stuck`]: the caller
//!   falls back to the plain download from members, which retries forever with backoff.
//!
//! Also here: [`Bucket`], the token bucket that paces the seeder's uploads.
//!
//! Not here: sockets, threads, hashing (the shell checks each chunk and reports the outcome).

use std::time::Duration;

/// Strikes (timeouts, refusals) before a peer is no longer asked.
pub const MAX_STRIKES: u32 = 2;

/// Where a chunk is fetched from: an index into the peer or member list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Peer(usize),
    Member(usize),
}

/// One fetch to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub chunk: usize,
    pub source: Source,
}

/// Why a fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 404: the source does not hold the chunk (yet).
    Missing,
    /// Connect or read timed out, connection refused or cut, a 5xx or busy answer.
    Unreachable,
    /// The bytes do not hash to the chunk's name, or have the wrong length.
    Corrupt,
}

/// How much runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fetches in flight in all.
    pub parallel: usize,
    /// Fetches in flight per peer (its seeder caps connections too).
    pub per_peer: usize,
    /// Fetches in flight per member.
    pub per_member: usize,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Fetch(Assignment),
    /// Nothing can start now: wait for a fetch in flight to end.
    Wait,
    /// Every chunk is done.
    Done,
    /// Chunk `0` could be fetched from no source at all.
    Stuck(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Pending { tried: Vec<Source> },
    InFlight { tried: Vec<Source> },
    Done(Source),
}

#[derive(Debug, Clone, Default)]
struct Load {
    in_flight: usize,
    strikes: u32,
    banned: bool,
}

/// The download plan of one manifest.
#[derive(Debug, Clone)]
pub struct Schedule {
    chunks: Vec<Chunk>,
    peers: Vec<Load>,
    members: Vec<Load>,
    limits: Limits,
    in_flight: usize,
    /// Every chunk below this index is done or in flight: the scan starts here.
    first_open: usize,
}

impl Schedule {
    /// A plan for `chunks` chunks over `peers` peers and `members` members.
    pub fn new(chunks: usize, peers: usize, members: usize, limits: Limits) -> Schedule {
        Schedule {
            chunks: vec![Chunk::Pending { tried: Vec::new() }; chunks],
            peers: vec![Load::default(); peers],
            members: vec![Load::default(); members],
            limits,
            in_flight: 0,
            first_open: 0,
        }
    }

    /// The next fetch to start, if any.
    pub fn poll(&mut self) -> Next {
        while self
            .chunks
            .get(self.first_open)
            .is_some_and(|c| !matches!(c, Chunk::Pending { .. }))
        {
            self.first_open += 1;
        }
        if self.chunks.iter().all(|c| matches!(c, Chunk::Done(_))) {
            return Next::Done;
        }
        if self.in_flight >= self.limits.parallel {
            return Next::Wait;
        }
        for i in self.first_open..self.chunks.len() {
            let Chunk::Pending { tried } = &self.chunks[i] else {
                continue;
            };
            match self.source_for(tried) {
                Pick::Source(source) => {
                    let tried = std::mem::take(match &mut self.chunks[i] {
                        Chunk::Pending { tried } => tried,
                        // Matched as pending just above.
                        _ => unreachable!("chunk {i} was pending"),
                    });
                    self.chunks[i] = Chunk::InFlight { tried };
                    self.load(source).in_flight += 1;
                    self.in_flight += 1;
                    return Next::Fetch(Assignment { chunk: i, source });
                }
                Pick::Busy => {}
                Pick::Exhausted => return Next::Stuck(i),
            }
        }
        Next::Wait
    }

    /// A fetch ended with the verified chunk.
    pub fn done(&mut self, a: Assignment) {
        self.end(a);
        let load = self.load(a.source);
        load.strikes = 0;
        self.chunks[a.chunk] = Chunk::Done(a.source);
    }

    /// A fetch failed: the chunk is pending again, and the source is charged per `why`.
    pub fn failed(&mut self, a: Assignment, why: Failure) {
        self.end(a);
        let tried = match &mut self.chunks[a.chunk] {
            Chunk::InFlight { tried } => std::mem::take(tried),
            other => panic!("failed() for chunk {} in state {other:?}", a.chunk),
        };
        let mut tried = tried;
        tried.push(a.source);
        self.chunks[a.chunk] = Chunk::Pending { tried };
        if a.chunk < self.first_open {
            self.first_open = a.chunk;
        }
        let load = self.load(a.source);
        match why {
            Failure::Missing => {}
            Failure::Unreachable => {
                load.strikes += 1;
                load.banned |= load.strikes >= MAX_STRIKES;
            }
            Failure::Corrupt => load.banned = true,
        }
    }

    /// Whether chunk `i` is done.
    pub fn is_done(&self, i: usize) -> bool {
        matches!(self.chunks.get(i), Some(Chunk::Done(_)))
    }

    /// Peers not banned.
    pub fn usable_peers(&self) -> usize {
        self.peers.iter().filter(|p| !p.banned).count()
    }

    fn end(&mut self, a: Assignment) {
        assert!(
            matches!(self.chunks[a.chunk], Chunk::InFlight { .. }),
            "chunk {} ended but was not in flight",
            a.chunk
        );
        self.in_flight -= 1;
        self.load(a.source).in_flight -= 1;
    }

    fn load(&mut self, s: Source) -> &mut Load {
        match s {
            Source::Peer(i) => &mut self.peers[i],
            Source::Member(i) => &mut self.members[i],
        }
    }

    fn source_for(&self, tried: &[Source]) -> Pick {
        let candidates = |loads: &[Load], cap: usize, make: fn(usize) -> Source| {
            let open: Vec<(usize, &Load)> = loads
                .iter()
                .enumerate()
                .filter(|(i, l)| !l.banned && !tried.contains(&make(*i)))
                .collect();
            let free = open
                .iter()
                .filter(|(_, l)| l.in_flight < cap)
                .min_by_key(|(i, l)| (l.in_flight, *i))
                .map(|(i, _)| make(*i));
            (open.is_empty(), free)
        };
        let (no_peer, peer) = candidates(&self.peers, self.limits.per_peer, Source::Peer);
        if let Some(p) = peer {
            return Pick::Source(p);
        }
        if !no_peer {
            // A peer can still be asked for this chunk once it has a free slot.
            return Pick::Busy;
        }
        // Members are never banned for good: a member's failures count for one chunk only.
        let open: Vec<usize> = (0..self.members.len())
            .filter(|i| !tried.contains(&Source::Member(*i)))
            .collect();
        if open.is_empty() {
            return Pick::Exhausted;
        }
        open.iter()
            .filter(|i| self.members[**i].in_flight < self.limits.per_member)
            .min_by_key(|i| (self.members[**i].in_flight, **i))
            .map_or(Pick::Busy, |i| Pick::Source(Source::Member(*i)))
    }
}

enum Pick {
    Source(Source),
    Busy,
    Exhausted,
}

/// A token bucket: `rate` bytes per second, bursts of up to `burst` bytes. Time is the
/// caller's monotonic clock as a `Duration` since any fixed start.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Duration,
}

impl Bucket {
    /// A full bucket at `now`. `rate` and `burst` must be positive.
    pub fn new(rate: u64, burst: u64, now: Duration) -> Bucket {
        assert!(rate > 0 && burst > 0, "a bucket needs a rate and a burst");
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes up to `want` bytes at `now`: how many may be sent now (at least 1 when the
    /// bucket holds anything), or `Err(wait)` until a byte is available.
    pub fn take(&mut self, now: Duration, want: u64) -> Result<u64, Duration> {
        let since = now.saturating_sub(self.last);
        let earned = (since.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            self.last = now;
        }
        if self.tokens == 0 {
            let nanos = 1_000_000_000u64.div_ceil(self.rate).max(1_000_000);
            return Err(Duration::from_nanos(nanos));
        }
        let n = want.min(self.tokens);
        self.tokens -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        parallel: 4,
        per_peer: 2,
        per_member: 2,
    };

    fn fetch(s: &mut Schedule) -> Assignment {
        match s.poll() {
            Next::Fetch(a) => a,
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    #[test]
    fn members_alone_when_there_are_no_peers() {
        let mut s = Schedule::new(3, 0, 2, LIMITS);
        let a = fetch(&mut s);
        let b = fetch(&mut s);
        assert_eq!((a.chunk, b.chunk), (0, 1));
        assert_eq!(a.source, Source::Member(0));
        assert_eq!(b.source, Source::Member(1), "the least busy member");
        s.done(a);
        s.done(b);
        let c = fetch(&mut s);
        s.done(c);
        assert_eq!(s.poll(), Next::Done);
        assert!((0..3).all(|i| s.is_done(i)));
    }

    #[test]
    fn peers_first_in_order_and_spread() {
        let mut s = Schedule::new(10, 2, 1, LIMITS);
        let got: Vec<Assignment> = (0..4).map(|_| fetch(&mut s)).collect();
        assert_eq!(
            got.iter().map(|a| a.chunk).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert!(got.iter().all(|a| matches!(a.source, Source::Peer(_))));
        assert_eq!(
            got.iter().filter(|a| a.source == Source::Peer(0)).count(),
            2
        );
        // Four in flight: the global cap.
        assert_eq!(s.poll(), Next::Wait);
        s.done(got[0]);
        assert_eq!(fetch(&mut s).chunk, 4);
    }

    #[test]
    fn busy_peers_are_waited_for_not_bypassed_to_members() {
        let limits = Limits {
            parallel: 8,
            per_peer: 1,
            per_member: 4,
        };
        let mut s = Schedule::new(5, 1, 1, limits);
        let a = fetch(&mut s);
        assert_eq!(a.source, Source::Peer(0));
        assert_eq!(s.poll(), Next::Wait, "members are the last resort");
    }

    #[test]
    fn a_bad_chunk_costs_a_retry_elsewhere_and_bans_the_liar() {
        let mut s = Schedule::new(2, 2, 1, LIMITS);
        let a = fetch(&mut s);
        assert_eq!(
            a,
            Assignment {
                chunk: 0,
                source: Source::Peer(0)
            }
        );
        s.failed(a, Failure::Corrupt);
        assert_eq!(s.usable_peers(), 1);
        // Chunk 0 again, now from the other peer; the liar gets nothing more.
        let mut seen = Vec::new();
        while let Next::Fetch(x) = s.poll() {
            seen.push(x);
        }
        assert!(seen.contains(&Assignment {
            chunk: 0,
            source: Source::Peer(1)
        }));
        assert!(seen.iter().all(|x| x.source != Source::Peer(0)), "{seen:?}");
        for x in seen {
            s.done(x);
        }
        assert_eq!(s.poll(), Next::Done);
    }

    #[test]
    fn missing_and_unreachable_fall_through_to_members_then_stuck() {
        let mut s = Schedule::new(1, 2, 2, LIMITS);
        let a = fetch(&mut s);
        s.failed(a, Failure::Missing);
        let b = fetch(&mut s);
        assert_eq!(b.source, Source::Peer(1));
        s.failed(b, Failure::Unreachable);
        assert_eq!(s.usable_peers(), 2, "one strike does not ban");
        let c = fetch(&mut s);
        assert_eq!(c.source, Source::Member(0), "every peer tried: a member");
        s.failed(c, Failure::Unreachable);
        let d = fetch(&mut s);
        assert_eq!(d.source, Source::Member(1));
        s.failed(d, Failure::Unreachable);
        assert_eq!(s.poll(), Next::Stuck(0));
    }

    #[test]
    fn strikes_ban_a_peer_and_success_forgives() {
        let mut s = Schedule::new(6, 1, 1, LIMITS);
        let a = fetch(&mut s);
        assert_eq!(
            a,
            Assignment {
                chunk: 0,
                source: Source::Peer(0)
            }
        );
        s.failed(a, Failure::Unreachable);
        // Chunk 0 has no untried peer left: the member. Chunk 1 still goes to the peer.
        let b = fetch(&mut s);
        assert_eq!(
            b,
            Assignment {
                chunk: 0,
                source: Source::Member(0)
            }
        );
        let c = fetch(&mut s);
        assert_eq!(
            c,
            Assignment {
                chunk: 1,
                source: Source::Peer(0)
            }
        );
        s.done(b);
        s.done(c);
        let d = fetch(&mut s);
        assert_eq!(d.source, Source::Peer(0));
        s.failed(d, Failure::Unreachable);
        assert_eq!(
            s.usable_peers(),
            1,
            "the success in between reset the strikes"
        );
        let e = fetch(&mut s);
        assert_eq!(e.source, Source::Member(0), "chunk {} again", d.chunk);
        let f = fetch(&mut s);
        assert_eq!(f.source, Source::Peer(0));
        s.failed(f, Failure::Unreachable);
        assert_eq!(s.usable_peers(), 0, "two strikes in a row");
        s.done(e);
        // Everything left goes to the member now.
        while let Next::Fetch(x) = s.poll() {
            assert_eq!(x.source, Source::Member(0));
            s.done(x);
        }
        assert_eq!(s.poll(), Next::Done);
    }

    #[test]
    fn bucket_paces_to_its_rate() {
        let ms = Duration::from_millis;
        let mut b = Bucket::new(1000, 500, ms(0));
        assert_eq!(b.take(ms(0), 400), Ok(400));
        assert_eq!(b.take(ms(0), 400), Ok(100));
        assert!(b.take(ms(0), 1).is_err());
        // 100 ms at 1000 B/s earns 100 bytes.
        assert_eq!(b.take(ms(100), 400), Ok(100));
        // Never more than the burst, however long the pause.
        assert_eq!(b.take(ms(60_000), 10_000), Ok(500));
        // Over ten simulated seconds, a greedy sender gets rate * time + burst.
        let mut b = Bucket::new(1000, 500, ms(0));
        let (mut sent, mut now) = (0, ms(0));
        while now < ms(10_000) {
            match b.take(now, 10_000) {
                Ok(n) => sent += n,
                Err(wait) => now += wait,
            }
        }
        assert!((10_000..=10_500).contains(&sent), "{sent}");
    }
}
