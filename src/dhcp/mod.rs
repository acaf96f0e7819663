//! The DHCPv4 server: addresses and PXE/iPXE boot options for known and unknown nodes
//! (step 1 and 2 of the boot path in DESIGN.md).
//!
//! Split the house way:
//! - [`wire`]: datagram bytes <-> typed [`wire::Request`] / [`wire::Reply`] (on `dhcproto`,
//!   with a bounded option walk in front of it). No I/O.
//! - [`share`]: which pool member answers which client and may hand out which address.
//! - [`core`]: `handle(now, request, context, share, view, offers) -> Action`. Address choice,
//!   RFC 2131 state handling, relays, PXE/iPXE boot selection. No I/O, no clock.
//! - [`serve`]: the tokio shell, one task per interface: socket, store writes before ACKs,
//!   view refresh, counters.
//!
//! Data flow for one packet: socket -> `wire::decode` -> (view read lock) `core::handle` ->
//! for a lease: `Store::write` in `spawn_blocking` (fsync) -> `View::refresh` -> `wire::encode`
//! -> socket. Offers are held in memory by the shell (see `core`'s docs for why).
//!
//! Not supported: DHCPv6, ping probes
//! before offers (by design, LAB.md), option overload, rapid commit, FORCERENEW, non-Ethernet
//! hardware types, ProxyDHCP mode.

pub mod core;
pub mod serve;
pub mod share;
pub mod wire;

pub use self::core::{handle, Action, Context, Destination, DropReason, Offer, Offers};
pub use self::serve::{run, Settings, Stats};
pub use self::share::Share;
pub use self::wire::{Reply, ReplyKind, Request, WireError};
