//! A set of IPv4 addresses kept as disjoint, non-adjacent inclusive runs, so that "the lowest
//! address at or above `x` that is not in the set" is one ordered-map lookup however many
//! addresses the set holds. The store [`super::View`] keeps one of the addresses that are
//! reserved by a node or have a lease record; the DHCP core uses it to skip past them.
//!
//! Pure. Not here: what an address is taken for, or whether a lease still holds (the view
//! and the DHCP core decide).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// IPv4 addresses as runs: start -> last (inclusive), no two runs touching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    runs: BTreeMap<u32, u32>,
}

impl AddrSet {
    /// The run containing `x`, as (start, last).
    fn run_of(&self, x: u32) -> Option<(u32, u32)> {
        self.runs
            .range(..=x)
            .next_back()
            .filter(|(_, last)| **last >= x)
            .map(|(s, l)| (*s, *l))
    }

    #[cfg(test)]
    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.run_of(u32::from(ip)).is_some()
    }

    /// Adds `ip`, merging it with the runs it touches.
    pub fn insert(&mut self, ip: Ipv4Addr) {
        let x = u32::from(ip);
        if self.run_of(x).is_some() {
            return;
        }
        let mut start = x;
        let mut last = x;
        if let Some((s, _)) = x.checked_sub(1).and_then(|p| self.run_of(p)) {
            start = s;
        }
        if let Some(l) = x.checked_add(1).and_then(|n| self.runs.remove(&n)) {
            last = l;
        }
        self.runs.insert(start, last);
    }

    /// Takes `ip` out, splitting its run.
    pub fn remove(&mut self, ip: Ipv4Addr) {
        let x = u32::from(ip);
        let Some((start, last)) = self.run_of(x) else {
            return;
        };
        self.runs.remove(&start);
        if start < x {
            self.runs.insert(start, x - 1);
        }
        if x < last {
            self.runs.insert(x + 1, last);
        }
    }

    /// The lowest address at or above `from` that is not in the set; `None` when every
    /// address from there up to 255.255.255.255 is.
    pub fn next_absent(&self, from: Ipv4Addr) -> Option<Ipv4Addr> {
        let x = u32::from(from);
        match self.run_of(x) {
            None => Some(from),
            Some((_, last)) => last.checked_add(1).map(Ipv4Addr::from),
        }
    }

    /// How many runs the set holds (for tests of merging).
    #[cfg(test)]
    fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(n)
    }

    #[test]
    fn runs_merge_and_split() {
        let mut s = AddrSet::default();
        for n in [10, 12, 11, 14] {
            s.insert(ip(n));
        }
        assert_eq!(s.runs(), 2, "10..=12 and 14");
        assert_eq!(s.next_absent(ip(10)), Some(ip(13)));
        assert_eq!(s.next_absent(ip(9)), Some(ip(9)));
        s.insert(ip(13));
        assert_eq!(s.runs(), 1);
        assert_eq!(s.next_absent(ip(10)), Some(ip(15)));
        s.remove(ip(12));
        assert_eq!(s.runs(), 2);
        assert!(!s.contains(ip(12)) && s.contains(ip(11)) && s.contains(ip(13)));
        assert_eq!(s.next_absent(ip(10)), Some(ip(12)));
        assert_eq!(s.next_absent(ip(13)), Some(ip(15)));
        for n in [10, 11, 13, 14] {
            s.remove(ip(n));
        }
        assert_eq!(s, AddrSet::default());
    }

    #[test]
    fn ends_of_the_address_space() {
        let mut s = AddrSet::default();
        s.insert(ip(u32::MAX));
        s.insert(ip(0));
        s.insert(ip(u32::MAX - 1));
        assert_eq!(s.next_absent(ip(u32::MAX - 1)), None);
        assert_eq!(s.next_absent(ip(0)), Some(ip(1)));
        s.remove(ip(u32::MAX));
        assert_eq!(s.next_absent(ip(u32::MAX - 1)), Some(ip(u32::MAX)));
    }
}
