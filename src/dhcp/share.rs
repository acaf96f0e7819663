//! Which member of a pool answers which DHCP client, and which dynamic addresses it may hand
//! out, so that several members serve one segment with no address leased twice, also through
//! a network partition. Pure: the pool's shell builds a [`Share`] from what it knows and the
//! DHCP core asks it.
//!
//! Two hashes (rendezvous hashing: a key goes to the member with the highest
//! `score(member, key)`, so a change of the member set moves only the keys of the members that
//! came or went):
//!
//! - **Clients** go to one of the *live* members (RFC 3074's load balancing, generalised from
//!   two servers to N): only that member answers a client without a reservation. When a
//!   member dies, its clients move to the survivors as soon as membership notices (≤ 5 s).
//! - **Addresses** of the dynamic range belong to one member of the *roster* (every member
//!   that joined and has not left, live or not), and only the owner hands them out to new
//!   clients. Shares do not move when a member dies: survivors give new clients addresses of
//!   their own shares, until the **safety time** ([`Share::reuse_after`]: the lease time
//!   plus margins) has passed with the owner out of sight. Then one heir per address (by
//!   the same rendezvous hash over the roster less the owner: the same on every member,
//!   whatever each one sees) hands the owner's free addresses out, while it sees a
//!   majority and the owner stays out of sight. By then every lease the owner granted and
//!   nobody else knows of has run out (the owner cut off into a minority stopped granting
//!   and extending within [`TAKEOVER_AFTER`]); a returning owner pulls from the others before
//!   it hands out anything again (`pool::shares`). `drover pool forget` moves the share at
//!   once.
//!
//! A member stops handing out addresses, also of its own share, as soon as the members it
//! cannot see could form a strict majority without it (a minority side of a partition).
//!
//! **Takeover** is of the dead member's *clients*: once the owner has been out of sight for
//! [`TAKEOVER_AFTER`] seconds, one member of a strict majority (per address, by the same
//! rendezvous hash over the live members) extends the leases of the owner's clients (RENEW,
//! REBIND, INIT-REBOOT), so they keep their addresses. It never gives them to a new client,
//! nor back to a client that asks anew (DISCOVER, SELECTING, the DHCP core's
//! `claims_binding`): that client may have released the address at the owner, which may
//! have given it to another client since, after the last copy reached the majority. While the owner
//! is in sight, only the owner extends (the others stay silent and the client's REBIND
//! reaches the owner).
//!
//! **Recovery**: a taker could die before its extension is replicated, and the owner, back
//! after a partition or a restart, would see an older expiry and give the address to a new
//! client too early. So after a time out of sight of a majority (or a restart), an owner
//! does not give an address whose lease ran into that time to another client until the lease
//! time plus [`RECOVERY_MARGIN`] has passed ([`Share::recovery`]). The simulation test in
//! `pool` found both the dying taker and the returning owner.
//!
//! **Votes**: the majorities above are of the pool's voters, which [`Share::votes`] counts:
//! by default the roster, seen or not. The pool's side (`pool::shares`) adds witnesses
//! (`drover witness`: they vote and own nothing) and leaves out members an admin declared
//! dead (`drover pool mark-dead`). A pool of two cannot have a strict majority without both,
//! so one survivor goes on serving its own share and its own clients, and never takes over
//! the other's clients, unless a witness sees it or the other was marked dead. A member
//! outside any pool is a roster of one: everything is its own.
//!
//! **Drain** (`drover pool drain`, the handshake in `pool::drain`): a drained member
//! ([`Share::drained`]) answers no client at all, reserved or not, and hands out and extends
//! nothing. Once it has said so, and its writes are here, the others count it as handed over
//! ([`Share::handed_over`]): its clients go to the live members less it, by the same hash
//! (so a member that does not count it yet answers none of them: removing a member moves
//! only the keys it won), its free addresses to their heir and its clients' leases to one
//! of the live members less it, at once, as for a dead member without the waits. An address
//! whose heir is itself drained stays unused until the drain ends.
//!
//! Not here: which member a *reserved* node talks to (every member answers reservations, with
//! identical contents), the membership protocol, the clock.

use crate::store::model::Mac;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Seconds a member must be out of sight before a majority extends its clients' leases:
/// membership's detection time (< 5 s) with a margin, so that an owner cut off into a
/// minority has stopped handing out addresses by then.
pub const TAKEOVER_AFTER: u64 = 10;
/// Added to the lease time for a recovery window (`Share::recovery`).
pub const RECOVERY_MARGIN: u64 = 60;

/// One member's view of the pool, as the DHCP core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// This member's id.
    pub me: u64,
    /// Every member of the pool (joined, not left), sorted, including `me`.
    pub roster: Vec<u64>,
    /// The roster members this member sees alive, sorted, including `me`.
    pub live: Vec<u64>,
    /// When each roster member not in `live` was last seen alive (unix seconds); a member
    /// never seen counts from when this member started.
    pub last_seen: HashMap<u64, u64>,
    /// How long a member must be unseen before its share is taken over (seconds).
    pub takeover_after: u64,
    /// False while this member's own roster row has not settled: it then answers no
    /// dynamic client and hands out no dynamic address.
    pub in_roster: bool,
    /// After a time out of sight of a majority (or a restart): `(since, until)` in unix
    /// seconds. Until `until`, an address whose lease ran past `since` is not given to another
    /// client: a member that extended it meanwhile may have died before replicating that.
    pub recovery: Option<(u64, u64)>,
    /// The voters of the majorities: how many there are, and how many this member sees
    /// (itself included).
    pub votes: Votes,
    /// How long (seconds) an owner must have been out of sight before its heir hands its
    /// free addresses to new clients; 0: never (see the module docs).
    pub reuse_after: u64,
    /// This member is drained: it answers nobody (see the module docs).
    pub drained: bool,
    /// Drained members in sight that have handed their share over, sorted: this member may
    /// act for them at once.
    pub handed_over: Vec<u64>,
}

/// The voters of a pool as one member sees them (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Votes {
    pub of: usize,
    pub seen: usize,
}

impl Share {
    /// A member on its own: the whole range is its share.
    pub fn solo(me: u64) -> Share {
        Share {
            me,
            roster: vec![me],
            live: vec![me],
            last_seen: HashMap::new(),
            takeover_after: 0,
            in_roster: true,
            recovery: None,
            votes: Votes { of: 1, seen: 1 },
            reuse_after: 0,
            drained: false,
            handed_over: Vec::new(),
        }
    }

    /// A member whose roster row has not settled yet, beside the settled `roster`.
    pub fn waiting(me: u64, roster: impl IntoIterator<Item = u64>) -> Share {
        let mut roster: Vec<u64> = roster.into_iter().filter(|m| *m != me).collect();
        roster.sort_unstable();
        Share {
            me,
            roster,
            live: Vec::new(),
            last_seen: HashMap::new(),
            takeover_after: 0,
            in_roster: false,
            recovery: None,
            votes: Votes::default(),
            reuse_after: 0,
            drained: false,
            handed_over: Vec::new(),
        }
    }

    /// A view from a roster and the live members; `me` is added to both, and `live` is cut to
    /// the roster (a member seen alive but not yet in the replicated roster gets no share).
    pub fn new(
        me: u64,
        roster: impl IntoIterator<Item = u64>,
        live: impl IntoIterator<Item = u64>,
        last_seen: HashMap<u64, u64>,
        takeover_after: u64,
    ) -> Share {
        let mut roster: Vec<u64> = roster.into_iter().chain([me]).collect();
        roster.sort_unstable();
        roster.dedup();
        let mut live: Vec<u64> = live
            .into_iter()
            .chain([me])
            .filter(|m| roster.binary_search(m).is_ok())
            .collect();
        live.sort_unstable();
        live.dedup();
        let votes = Votes {
            of: roster.len(),
            seen: live.len(),
        };
        Share {
            me,
            roster,
            live,
            last_seen,
            takeover_after,
            in_roster: true,
            recovery: None,
            votes,
            reuse_after: 0,
            drained: false,
            handed_over: Vec::new(),
        }
    }

    /// The same view with other voters than the roster (see the module docs).
    pub fn with_votes(self, votes: Votes) -> Share {
        Share { votes, ..self }
    }

    /// The same view with a safety time after which absent owners' free addresses are reused.
    pub fn with_reuse_after(self, reuse_after: u64) -> Share {
        Share {
            reuse_after,
            ..self
        }
    }

    /// The same view with this member drained or not, and the members it may act for at
    /// once because they handed their share over.
    pub fn with_drains(self, drained: bool, mut handed_over: Vec<u64>) -> Share {
        handed_over.sort_unstable();
        Share {
            drained,
            handed_over,
            ..self
        }
    }

    /// True when this member sees a strict majority of the voters.
    pub fn majority(&self) -> bool {
        self.in_roster && 2 * self.votes.seen > self.votes.of
    }

    /// True unless the voters out of sight could form a strict majority without this one.
    fn may_use_own(&self) -> bool {
        self.in_roster && !self.drained && 2 * self.votes.seen >= self.votes.of
    }

    /// The roster member that owns dynamic address `ip`.
    pub fn owner(&self, ip: Ipv4Addr) -> u64 {
        winner(&self.roster, ADDRESS, u64::from(u32::from(ip))).unwrap_or(self.me)
    }

    /// Does this member answer client `mac` (a client without a reservation)?
    pub fn answers(&self, mac: Mac) -> bool {
        let answering: Vec<u64> = self
            .live
            .iter()
            .copied()
            .filter(|m| self.handed_over.binary_search(m).is_err())
            .collect();
        self.in_roster && !self.drained && winner(&answering, CLIENT, mac_key(mac)) == Some(self.me)
    }

    /// May this member hand out `ip` to a client that does not hold it yet at `now`? The
    /// owner, or its heir once the owner has been out of sight for the safety time.
    pub fn may_allocate(&self, now: u64, ip: Ipv4Addr) -> bool {
        let heirs = |owner: u64| -> Vec<u64> {
            self.roster
                .iter()
                .copied()
                .filter(|m| *m != owner)
                .collect()
        };
        if self.reuse_after == 0 {
            return self.in_roster && self.owner(ip) == self.me && self.may_use_own();
        }
        self.may_act_for(now, ip, self.reuse_after, heirs)
    }

    /// May this member extend the lease a client holds on `ip` at `now`? The owner, or, once
    /// the owner has been out of sight for `takeover_after`, one member of a majority (for a
    /// client that says it holds the address: see the module docs).
    pub fn may_extend(&self, now: u64, ip: Ipv4Addr) -> bool {
        let others = |owner: u64| self.live.iter().copied().filter(|m| *m != owner).collect();
        self.may_act_for(now, ip, self.takeover_after, others)
    }

    /// The owner of `ip` may act on it (while the members out of sight could not form a
    /// majority without it); another member may once it sees a majority, the owner has been
    /// out of its sight for `after` seconds at `now`, and it wins the address among
    /// `candidates(owner)`.
    fn may_act_for(
        &self,
        now: u64,
        ip: Ipv4Addr,
        after: u64,
        candidates: impl Fn(u64) -> Vec<u64>,
    ) -> bool {
        if !self.in_roster || self.drained {
            return false;
        }
        let owner = self.owner(ip);
        if owner == self.me {
            return self.may_use_own();
        }
        if !self.majority() {
            return false;
        }
        let ip_key = u64::from(u32::from(ip));
        if self.handed_over.binary_search(&owner).is_ok() {
            // It cooperates: no wait (see the module docs).
            return winner(&candidates(owner), ADDRESS, ip_key) == Some(self.me);
        }
        if self.live.binary_search(&owner).is_ok() {
            return false;
        }
        let seen = self.last_seen.get(&owner).copied().unwrap_or(now);
        now.saturating_sub(seen) >= after
            && winner(&candidates(owner), ADDRESS, ip_key) == Some(self.me)
    }

    /// How many addresses of the inclusive `ranges` each roster member owns (what `drover
    /// pool status` shows as its share), counting at most `limit` addresses in all.
    pub fn owned(&self, ranges: &[(Ipv4Addr, Ipv4Addr)], limit: u64) -> HashMap<u64, u64> {
        let mut counts: HashMap<u64, u64> = self.roster.iter().map(|m| (*m, 0)).collect();
        let mut left = limit;
        for &(first, last) in ranges {
            for ip in u32::from(first)..=u32::from(last) {
                if left == 0 {
                    return counts;
                }
                left -= 1;
                *counts.entry(self.owner(Ipv4Addr::from(ip))).or_default() += 1;
            }
        }
        counts
    }

    /// May an address whose last lease (another client's) ran until `expired` go to a new
    /// client at `now`? Not while recovering, if that lease ran into the time out of sight.
    pub fn may_reuse(&self, now: u64, expired: u64) -> bool {
        match self.recovery {
            Some((since, until)) => expired <= since || now >= until,
            None => true,
        }
    }
}

/// Hash domains, so that clients and addresses spread independently.
const CLIENT: u64 = 0x636c_6965_6e74;
const ADDRESS: u64 = 0x6164_6472;

fn mac_key(mac: Mac) -> u64 {
    mac.0.iter().fold(0, |k, b| (k << 8) | u64::from(*b))
}

/// The member with the highest score for `key` (ties, which need a 64-bit collision, go to
/// the higher id).
fn winner(members: &[u64], domain: u64, key: u64) -> Option<u64> {
    members
        .iter()
        .copied()
        .max_by_key(|&m| (mix(m ^ mix(key ^ domain)), m))
}

/// SplitMix64's finaliser: a fixed, well-spread 64-bit mix, the same on every member.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xc612_0000 + i)
    }

    /// The addresses among the first `n` of the test range that `owner` owns in `view`
    /// (some, or the test would prove nothing).
    fn owned_by(view: &Share, owner: u64, n: u32) -> Vec<Ipv4Addr> {
        let owned: Vec<Ipv4Addr> = (0..n).map(ip).filter(|&a| view.owner(a) == owner).collect();
        assert!(!owned.is_empty());
        owned
    }

    #[test]
    fn every_address_has_one_owner_and_shares_are_even() {
        let views: Vec<Share> = (1..=3)
            .map(|me| Share::new(me, [1, 2, 3], [1, 2, 3], HashMap::new(), 100))
            .collect();
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let allowed: Vec<u64> = views
                .iter()
                .filter(|v| v.may_allocate(1000, ip(i)))
                .map(|v| v.me)
                .collect();
            assert_eq!(allowed.len(), 1, "{} allocatable by {allowed:?}", ip(i));
            counts[(allowed[0] - 1) as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven shares {counts:?}");
        }
    }

    #[test]
    fn each_client_is_answered_by_one_live_member() {
        let live = |me| Share::new(me, [1, 2, 3], [1, 3], HashMap::new(), 100);
        for m in 0..500u32 {
            let mac = Mac([2, 0, 0, 0, (m >> 8) as u8, m as u8]);
            let answering: Vec<u64> = [1, 3]
                .into_iter()
                .filter(|&me| live(me).answers(mac))
                .collect();
            assert_eq!(answering.len(), 1);
        }
    }

    #[test]
    fn a_drain_hands_clients_and_addresses_over_with_one_server_at_every_step() {
        let view = |me: u64, drained: bool, handed: &[u64]| {
            Share::new(me, [1, 2, 3], [1, 2, 3], HashMap::new(), 10)
                .with_reuse_after(100)
                .with_drains(drained, handed.to_vec())
        };
        // Member 2 is drained: it stops, then 1 counts it as handed over, then 3 too; the
        // reverse for undrain.
        let steps = [
            (false, [].as_slice(), [].as_slice()),
            (true, &[], &[]),
            (true, &[2], &[]),
            (true, &[2], &[2]),
        ];
        let mut moved = 0;
        for (i, (b_drained, a_counts, c_counts)) in steps.into_iter().enumerate() {
            let views = [
                view(1, false, a_counts),
                view(2, b_drained, &[]),
                view(3, false, c_counts),
            ];
            let done = i == steps.len() - 1;
            for m in 0..500u32 {
                let mac = Mac([2, 0, 0, 0, (m >> 8) as u8, m as u8]);
                let answering: Vec<u64> = views
                    .iter()
                    .filter(|v| v.answers(mac))
                    .map(|v| v.me)
                    .collect();
                assert!(answering.len() <= 1, "step {i}: {mac:?} by {answering:?}");
                if done {
                    assert_eq!(answering.len(), 1, "every client has a server");
                }
            }
            for a in 0..600 {
                let allocating = views.iter().filter(|v| v.may_allocate(50, ip(a))).count();
                let extending = views.iter().filter(|v| v.may_extend(50, ip(a))).count();
                assert!(allocating <= 1 && extending <= 1, "step {i}: {}", ip(a));
                if done {
                    assert_eq!((allocating, extending), (1, 1), "no wait: {}", ip(a));
                    moved += usize::from(views[0].owner(ip(a)) == 2);
                }
            }
            assert!(!views[1].may_allocate(50, ip(0)) || !b_drained);
        }
        assert!(moved > 0, "member 2 owned some addresses");
    }

    #[test]
    fn a_dead_members_clients_are_kept_by_a_majority_after_the_safety_time() {
        let seen = HashMap::from([(3, 1000)]);
        let survivors: Vec<Share> = (1..=2)
            .map(|me| Share::new(me, [1, 2, 3], [1, 2], seen.clone(), 10))
            .collect();
        let theirs = owned_by(&survivors[0], 3, 300);
        for &a in &theirs {
            assert!(survivors.iter().all(|s| !s.may_extend(1009, a)));
            let takers = survivors.iter().filter(|s| s.may_extend(1010, a)).count();
            assert_eq!(takers, 1, "{a}");
            // Never to a new client.
            assert!(survivors.iter().all(|s| !s.may_allocate(1000, a)));
        }
        // The isolated member sees only itself: a minority, so it stops, even on its own share.
        let alone = Share::new(3, [1, 2, 3], [3], HashMap::new(), 10);
        assert!(theirs
            .iter()
            .all(|&a| !alone.may_allocate(1000, a) && !alone.may_extend(1600, a)));
    }

    #[test]
    fn two_members_split_keep_their_own_shares_and_never_take_over() {
        let a = Share::new(1, [1, 2], [1], HashMap::from([(2, 0)]), 10);
        for i in 0..200 {
            let addr = ip(i);
            assert_eq!(a.may_allocate(1000, addr), a.owner(addr) == 1);
            assert_eq!(a.may_extend(1_000_000, addr), a.owner(addr) == 1);
        }
    }

    #[test]
    fn a_witness_gives_a_survivor_of_two_the_majority_and_owns_nothing() {
        // Members 1 and 2 and a witness; 2 is out of sight.
        let three = Votes { of: 3, seen: 2 };
        let b = Share::new(1, [1, 2], [1], HashMap::from([(2, 1000)]), 10).with_votes(three);
        assert!(b.majority());
        let theirs = owned_by(&b, 2, 300);
        for &a in &theirs {
            assert!(!b.may_extend(1009, a), "before the safety time");
            assert!(
                b.may_extend(1010, a),
                "{a}: the dead member's client is kept"
            );
            assert!(!b.may_allocate(1000, a), "{a}: never to a new client");
        }
        // The member cut off from both the other and the witness stops, on its own share too.
        let alone =
            Share::new(2, [1, 2], [2], HashMap::new(), 10).with_votes(Votes { of: 3, seen: 1 });
        assert!((0..300).map(ip).all(|a| !alone.may_allocate(1000, a)));
    }

    #[test]
    fn an_absent_owners_free_addresses_go_to_one_heir_after_the_safety_time() {
        // 3 is out of sight since 1000; 1, 2 and 5 see each other (a majority), 4 is dead too.
        let seen = HashMap::from([(3, 1000), (4, 1000)]);
        let views: Vec<Share> = [1, 2, 5]
            .into_iter()
            .map(|me| {
                Share::new(me, [1, 2, 3, 4, 5], [1, 2, 5], seen.clone(), 10).with_reuse_after(200)
            })
            .collect();
        let theirs = owned_by(&views[0], 3, 400);
        let mut reused = 0;
        for &a in &theirs {
            assert!(
                views.iter().all(|v| !v.may_allocate(1199, a)),
                "{a}: too early"
            );
            let heirs = views.iter().filter(|v| v.may_allocate(1200, a)).count();
            assert!(heirs <= 1, "{a}: allocatable by {heirs} members");
            reused += heirs;
        }
        // Some of 3's addresses have the dead 4 as their heir: those stay unused.
        assert!(
            reused > 0 && reused < theirs.len(),
            "{reused} of {}",
            theirs.len()
        );
        // The heir is chosen from the roster, not from what each member sees, so views that
        // disagree never make two heirs; and a member without a majority is no heir.
        let alone = Share::new(1, [1, 2, 3], [1], seen.clone(), 10).with_reuse_after(200);
        assert!(
            theirs.iter().all(|&a| !alone.may_allocate(5000, a)),
            "no majority"
        );
        // The owner back in sight: its heir stops at once.
        let back = Share::new(1, [1, 2, 3, 4, 5], [1, 2, 3, 5], seen, 10).with_reuse_after(200);
        assert!(theirs.iter().all(|&a| !back.may_allocate(5000, a)));
        // Without a safety time, never.
        let never = Share::new(1, [1, 2, 3], [1, 2], HashMap::from([(3, 0)]), 10);
        assert!(theirs.iter().all(|&a| !never.may_allocate(1 << 40, a)));
    }

    #[test]
    fn recovering_holds_back_addresses_whose_leases_ran_into_the_absence() {
        let mut s = Share::solo(1);
        s.recovery = Some((1000, 2000));
        assert!(s.may_reuse(1500, 999), "expired before the absence");
        assert!(!s.may_reuse(1500, 1001), "ran into the absence");
        assert!(s.may_reuse(2000, 1001), "after the window");
    }

    #[test]
    fn owned_counts_every_address_once_up_to_the_limit() {
        let s = Share::new(1, [1, 2, 3], [1, 2], HashMap::new(), 10);
        let counts = s.owned(&[(ip(0), ip(299)), (ip(1000), ip(1099))], 10_000);
        assert_eq!(counts.values().sum::<u64>(), 400);
        assert_eq!(
            counts.len(),
            3,
            "the dead member owns its share too: {counts:?}"
        );
        assert!(counts.values().all(|c| (80..200).contains(c)), "{counts:?}");
        assert_eq!(s.owned(&[(ip(0), ip(299))], 50).values().sum::<u64>(), 50);
    }

    #[test]
    fn a_member_alone_owns_everything() {
        let s = Share::solo(7);
        assert!((0..100).all(|i| s.may_allocate(1000, ip(i))));
        assert!(s.answers(Mac([1, 2, 3, 4, 5, 6])));
    }
}
