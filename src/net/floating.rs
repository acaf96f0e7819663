//! The tokio shell of the floating service address (`[pool] service-address`): it carries
//! out what the pool decides (`pool::floating`). While this member holds the address it
//! adds it to its interface with a lifetime of [`LIFETIME_SECS`] and refreshes that lifetime
//! every second (rtnetlink RTM_NEWADDR with IFA_CACHEINFO, `net::netlink`), so that the
//! kernel drops the address by itself a few seconds after this process dies or hangs: the
//! dead-man switch that lets a successor take it over safely. On taking it, it broadcasts
//! gratuitous ARP ([`ARP_ROUNDS`] rounds of both forms, `net::arp`) so that the segment's
//! neighbour caches move to this member's MAC, and says so on the `held` channel (NFS starts
//! its grace period). It deletes the address when the decision says to let it go, when the
//! decision goes stale (the pool task stopped deciding), at start (a leftover of a previous
//! run) and at shutdown.
//!
//! [`place`] checks at start-up that the address lies in the subnet of one of the interfaces
//! drover serves on; it goes on that interface with that subnet's prefix.
//!
//! Not here: who should hold it (`pool::floating`), accepting connections on it (the NFS
//! listener binds it with IP_FREEBIND, see `serve`), several addresses, IPv6.

use super::netlink::{self, Ack, IfAddress};
use super::{arp, sys, Interface};
use crate::pool::floating::{Decision, LIFETIME_SECS, REFRESH_MS};
use crate::store::model::Mac;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Rounds of gratuitous ARP after taking the address, one per refresh.
pub const ARP_ROUNDS: u32 = 3;

/// Where the service address goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub addr: IfAddress,
    pub interface: String,
    /// The interface's MAC, for gratuitous ARP (none: no ARP is sent).
    pub mac: Option<Mac>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error(
        "`pool.service-address` {addr} is in none of the subnets drover serves on ({subnets}); \
         it must be a free address of one of them"
    )]
    NoSubnet { addr: Ipv4Addr, subnets: String },
    #[error(
        "`pool.service-address` {addr} is the address of interface {interface}; it must be \
         a free address of that subnet"
    )]
    Taken { addr: Ipv4Addr, interface: String },
    #[error("`pool.service-address` {addr} is the network or broadcast address of {subnet}")]
    NotHost { addr: Ipv4Addr, subnet: String },
}

/// The interface of `interfaces` whose subnet holds `addr`, and the address as it goes there.
pub fn place(addr: Ipv4Addr, interfaces: &[Interface]) -> Result<Placement, PlaceError> {
    if let Some(i) = interfaces.iter().find(|i| i.addr == addr) {
        return Err(PlaceError::Taken {
            addr,
            interface: i.name.clone(),
        });
    }
    let Some(i) = interfaces.iter().find(|i| i.subnet.contains(addr)) else {
        let subnets: Vec<String> = interfaces
            .iter()
            .map(|i| format!("{} {}", i.name, i.subnet))
            .collect();
        return Err(PlaceError::NoSubnet {
            addr,
            subnets: if subnets.is_empty() {
                "no interfaces configured".into()
            } else {
                subnets.join(", ")
            },
        });
    };
    if !i.subnet.is_host(addr) {
        return Err(PlaceError::NotHost {
            addr,
            subnet: i.subnet.to_string(),
        });
    }
    Ok(Placement {
        addr: IfAddress {
            index: i.index,
            addr,
            prefix: i.subnet.prefix(),
        },
        interface: i.name.clone(),
        mac: i.mac,
    })
}

/// A TCP listener on `addr` whether or not the address is on an interface yet
/// (IP_FREEBIND): it accepts connections to the service address while this member holds it.
pub fn freebind_listener(addr: std::net::SocketAddrV4) -> io::Result<tokio::net::TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_freebind_v4(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

#[derive(Debug, thiserror::Error)]
pub enum FloatError {
    #[error("cannot add the service address {addr} to {interface}: {source}")]
    Add {
        addr: Ipv4Addr,
        interface: String,
        source: io::Error,
    },
}

/// One rtnetlink request and its acknowledgement.
fn request(message: &[u8], seq: u32) -> io::Result<()> {
    let reply = sys::netlink_request(message)?;
    match netlink::parse_ack(&reply, seq) {
        Ack::Ok => Ok(()),
        Ack::Error(errno) => Err(io::Error::from_raw_os_error(errno)),
        Ack::Other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected rtnetlink reply",
        )),
    }
}

/// Deletes the address; `Ok(false)` when it was not there.
fn delete(p: &Placement, seq: u32) -> io::Result<bool> {
    match request(&netlink::delete_address(seq, p.addr), seq) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
        Err(e) => Err(e),
    }
}

fn announce(p: &Placement) {
    let Some(mac) = p.mac else { return };
    for reply in [false, true] {
        if let Err(e) = sys::send_arp(p.addr.index, &arp::gratuitous(mac, p.addr.addr, reply)) {
            tracing::warn!(error = %e, interface = %p.interface, "service address: gratuitous ARP failed");
        }
    }
}

/// Keeps the address where `decisions` say until `shutdown`; `held` tells whether this member
/// holds it. Fails when the address cannot be added (a member that is to hold the address
/// and cannot would keep the others from taking it over).
pub async fn run(
    place: Placement,
    mut decisions: watch::Receiver<Decision>,
    held: watch::Sender<bool>,
    shutdown: CancellationToken,
) -> Result<(), FloatError> {
    let mut seq: u32 = 1;
    let mut next_seq = || {
        seq = seq.wrapping_add(1);
        seq
    };
    match delete(&place, next_seq()) {
        Ok(true) => {
            tracing::info!(addr = %place.addr.addr, "service address: removed a leftover of a previous run")
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "service address: cannot remove a leftover"),
    }
    if place.mac.is_none() {
        tracing::warn!(interface = %place.interface, "service address: the interface has no MAC; no gratuitous ARP will be sent");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(REFRESH_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut holding = false;
    let mut arp_left = 0;
    let mut decisions_open = true;
    loop {
        let ticked = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => true,
            r = decisions.changed(), if decisions_open => {
                decisions_open = r.is_ok();
                false
            }
        };
        let now = crate::clock::unix_ms();
        let should = decisions.borrow().holds_at(now);
        if should {
            if !holding || ticked {
                let s = next_seq();
                request(&netlink::new_address(s, place.addr, LIFETIME_SECS), s).map_err(
                    |source| FloatError::Add {
                        addr: place.addr.addr,
                        interface: place.interface.clone(),
                        source,
                    },
                )?;
            }
            if !holding {
                holding = true;
                arp_left = ARP_ROUNDS;
                tracing::info!(addr = %place.addr.addr, interface = %place.interface, "service address: taken");
                held.send_replace(true);
            }
            if arp_left > 0 && (ticked || arp_left == ARP_ROUNDS) {
                announce(&place);
                arp_left -= 1;
            }
        } else if holding {
            holding = false;
            arp_left = 0;
            if let Err(e) = delete(&place, next_seq()) {
                tracing::warn!(error = %e, "service address: cannot delete it; it runs out by itself");
            }
            tracing::info!(addr = %place.addr.addr, "service address: let go");
            held.send_replace(false);
        }
    }
    if holding {
        if let Err(e) = delete(&place, next_seq()) {
            tracing::warn!(error = %e, "service address: cannot delete it at shutdown; it runs out by itself");
        }
        held.send_replace(false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Ipv4Net;

    fn iface(name: &str, addr: [u8; 4], prefix: u8) -> Interface {
        let addr = Ipv4Addr::from(addr);
        Interface {
            name: name.into(),
            index: 7,
            mac: None,
            addr,
            subnet: Ipv4Net::containing(addr, prefix).unwrap(),
        }
    }

    #[test]
    fn the_address_goes_on_the_interface_of_its_subnet() {
        let ifs = [
            iface("eth0", [10, 0, 0, 1], 24),
            iface("eth1", [198, 18, 0, 1], 16),
        ];
        let p = place(Ipv4Addr::new(198, 18, 3, 100), &ifs).unwrap();
        assert_eq!(p.interface, "eth1");
        assert_eq!(p.addr.prefix, 16);
        let e = place(Ipv4Addr::new(192, 0, 2, 1), &ifs)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pool.service-address") && e.contains("eth0 10.0.0.0/24"),
            "{e}"
        );
        let e = place(Ipv4Addr::new(10, 0, 0, 1), &ifs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("address of interface eth0"), "{e}");
        let e = place(Ipv4Addr::new(10, 0, 0, 255), &ifs).unwrap_err();
        assert!(matches!(e, PlaceError::NotHost { .. }), "{e}");
        assert!(place(Ipv4Addr::new(10, 0, 0, 2), &[])
            .unwrap_err()
            .to_string()
            .contains("no interfaces"));
    }
}
