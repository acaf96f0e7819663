//! The other live members as the boot path announces them: DHCP lists them after the
//! answering member as name and time servers (options 6 and 42), iPXE scripts list them after
//! the answering member as fallback sources of kernels, initrds and images. Pure: the pool's
//! shell builds a [`Peers`] from the roster and membership and hands it to the services
//! through a watch channel, as it hands DHCP its `Share`.
//!
//! A member's service address is the address of its roster row, which is where it gossips
//! (`pool.address`, by default the address of its first interface). That assumes members
//! gossip on the cluster network the nodes reach them on; a member whose pool traffic runs on
//! another network would be announced at an address the nodes may not reach.
//!
//! Not here: this member's own address (each service puts the address the client reached it
//! at first), the DNS zone (it lists every roster member, live or not, from the store).

use crate::store::model::PoolMember;
use std::net::Ipv4Addr;

/// The other members that are alive and on the roster, by member id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// Their service addresses, in member-id order (the same order on every member).
    pub others: Vec<Ipv4Addr>,
}

impl Peers {
    /// The members of `roster` other than `me` whose ids are in `alive`.
    pub fn live(me: u64, roster: &[PoolMember], alive: &[u64]) -> Peers {
        let mut rows: Vec<&PoolMember> = roster
            .iter()
            .filter(|r| r.id != me && alive.contains(&r.id))
            .collect();
        rows.sort_by_key(|r| r.id);
        let mut others: Vec<Ipv4Addr> = Vec::with_capacity(rows.len());
        for r in rows {
            if !others.contains(r.addr.ip()) {
                others.push(*r.addr.ip());
            }
        }
        Peers { others }
    }

    /// `first` (the address a client reached this member at), then the others, without
    /// repeating `first`.
    pub fn after(&self, first: Ipv4Addr) -> Vec<Ipv4Addr> {
        std::iter::once(first)
            .chain(self.others.iter().copied().filter(|a| *a != first))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn row(id: u64, last: u8) -> PoolMember {
        PoolMember {
            id,
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, last), 7946),
            joined_ms: 0,
            dead_ms: None,
            drained_ms: None,
            witness: false,
        }
    }

    #[test]
    fn live_others_in_id_order_without_me_or_the_dead() {
        let roster = [row(30, 3), row(10, 1), row(20, 2), row(40, 4)];
        let p = Peers::live(10, &roster, &[40, 20, 10]);
        assert_eq!(
            p.others,
            [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 4)]
        );
        // Alive but not (yet) on the roster: not announced.
        assert!(Peers::live(10, &[row(10, 1)], &[20]).others.is_empty());
    }

    #[test]
    fn the_answering_address_comes_first_and_once() {
        let p = Peers {
            others: vec![Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)],
        };
        let first = Ipv4Addr::new(198, 18, 0, 3);
        assert_eq!(
            p.after(first),
            [first, Ipv4Addr::new(198, 18, 0, 2)],
            "a member reached at its pool address is not listed twice"
        );
        assert_eq!(Peers::default().after(first), [first]);
    }
}
