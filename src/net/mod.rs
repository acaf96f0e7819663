//! Network plumbing shared by the protocol shells: finding an interface's IPv4 address and
//! MAC, binding sockets to an interface, the IPv6 router advertisement that keeps iPXE
//! from waiting for one, and the pool's floating service address ([`floating`], with the
//! bytes of its rtnetlink requests in [`netlink`] and of its gratuitous ARP in [`arp`]).
//!
//! Per-core UDP socket groups (SO_REUSEPORT) are bound by [`reuseport`]. Raw system calls
//! live in `sys` (the only module allowed `unsafe`). Not here: protocol logic.

pub mod arp;
pub mod datagram;
pub mod floating;
pub mod limit;
pub mod netlink;
pub mod ra;
pub mod ra_pace;
pub mod reuseport;
pub mod sys;

use crate::store::model::{Ipv4Net, Mac};
use std::net::Ipv4Addr;

/// An interface drover serves on, with its primary IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Option<Mac>,
    pub addr: Ipv4Addr,
    pub subnet: Ipv4Net,
}

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("no interface named {0:?} (see `ip link`)")]
    NotFound(String),
    #[error(
        "interface {0:?} has no IPv4 address: give it one (e.g. `ip addr add 10.0.0.1/24 dev {0}`)"
    )]
    NoAddress(String),
    #[error("cannot list interfaces: {0}")]
    Io(#[from] std::io::Error),
}

/// Looks up interface `name` and its first IPv4 address.
pub fn interface(name: &str) -> Result<Interface, InterfaceError> {
    let addrs = sys::interface_addrs()?;
    let mine: Vec<_> = addrs.iter().filter(|a| a.name == name).collect();
    let index = sys::interface_index(name).ok_or_else(|| InterfaceError::NotFound(name.into()))?;
    let (addr, prefix) = mine
        .iter()
        .find_map(|a| a.ipv4)
        .ok_or_else(|| InterfaceError::NoAddress(name.into()))?;
    let subnet =
        Ipv4Net::containing(addr, prefix).ok_or_else(|| InterfaceError::NoAddress(name.into()))?;
    let mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|m: &Mac| m.0 != [0; 6]);
    Ok(Interface {
        name: name.to_string(),
        index,
        mac,
        addr,
        subnet,
    })
}
