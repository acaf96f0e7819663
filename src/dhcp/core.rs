//! The DHCPv4 server logic: one decoded request in, one [`Action`] out. No I/O, no clock.
//!
//! Data flow: the shell decodes a datagram ([`super::wire::decode`]), takes a short read lock
//! on the store [`View`], and calls [`handle`] with the current unix time, the request, its
//! [`Context`] (server address, interface subnet, fallback network, timers, boot settings)
//! and its in-memory [`Offers`] table. The returned [`Action`] says what to do:
//!
//! - [`Action::Hold`]: a DHCPOFFER. The shell records the [`Offer`] in its `Offers` table for
//!   `Context::offer_hold` seconds, then sends the reply.
//! - [`Action::CommitThenReply`]: a DHCPACK that binds an address. The shell writes the
//!   [`Lease`] to the store (fsynced), refreshes its view, and only then sends the ACK:
//!   persistence is an output, a reply is never ahead of durable state.
//! - [`Action::Commit`]: DHCPDECLINE / DHCPRELEASE; the lease is written, nothing is sent.
//! - [`Action::Reply`]: DHCPNAK, or the DHCPACK to a DHCPINFORM (no lease).
//! - [`Action::Drop`]: nothing is sent; the [`DropReason`] is logged and counted.
//!
//! **Why offers are held in memory and not written as `Offered` leases.** An offer commits the
//! server to nothing (RFC 2131 §4.3.1: the address is only reserved "tentatively"), and every
//! DHCPREQUEST is checked again against the store before the ACK. Writing offers would put an
//! LMDB fsync on every DHCPDISCOVER, which is the message anyone on the segment can flood,
//! and would fill the store with bindings for clients that went elsewhere. What a crash loses
//! is harmless: a client whose offer was forgotten either gets its requested address (if it
//! is still free) or a DHCPNAK and starts over. The table is bounded ([`Offers::MAX`]). The
//! store's `LeaseState::Offered` stays unused by this server; `Lease::holds` still honours
//! it, so a future writer (e.g. pool replication) may use it.
//!
//! Address choice: a node with a reservation always gets its address (which must lie in the
//! network the request came from). Everyone else gets a dynamic address from that network's
//! range: the client's outstanding offer, else its current lease, else the address it asked
//! for, else the lowest free address. Free means: in the range, a host address, not the
//! server's or the gateway's, not reserved by any node, not held by another client's
//! unexpired lease or offer, and not declined within `Context::decline_hold`.
//!
//! Not here: no ping probe before an offer (by design: it costs ~3 s per client and the
//! store is authoritative, see LAB.md); no pool share splitting yet (every member would
//! allocate from the whole range); no DHCPv6; no option overload; no rapid commit; no
//! DHCPFORCERENEW; an old lease of a client that moves to a new address is left to expire.

use super::share::Share;
use super::wire::{MessageType, Reply, ReplyKind, Request};
use crate::store::model::{Ipv4Net, Lease, LeaseState, Mac, Network, Node, RelayInfo};
use crate::store::View;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Default lease time: one hour.
pub const DEFAULT_LEASE_TIME: u32 = 3600;
/// How long an offered address is held for the client that was offered it.
pub const DEFAULT_OFFER_HOLD: u64 = 60;
/// How long an address stays unusable after a client declined it.
pub const DEFAULT_DECLINE_HOLD: u64 = 600;
/// Loader for x86-64 UEFI when not configured (`snponly.efi` is the alternative).
pub const DEFAULT_UEFI_LOADER: &str = "ipxe.efi";
/// Loader for BIOS PXE.
pub const BIOS_LOADER: &str = "undionly.kpxe";
/// Loader for arm64 UEFI, served only when the firmware bundle has it.
pub const ARM64_LOADER: &str = "ipxe-arm64.efi";

/// RFC 4578 / IANA processor architecture types we act on.
pub mod arch {
    pub const BIOS: u16 = 0;
    pub const EFI_IA32: u16 = 6;
    pub const EFI_X86_64: u16 = 7;
    pub const EFI_BC: u16 = 9;
    pub const EFI_ARM64: u16 = 11;
}

/// What the shell knows about where it serves, built once per interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Our address on the receiving interface: server identifier and next-server.
    pub server: Ipv4Addr,
    /// The interface's subnet.
    pub subnet: Ipv4Net,
    /// Served when no store network contains `server` (see [`default_network`]).
    pub fallback: Network,
    pub lease_time: u32,
    pub offer_hold: u64,
    pub decline_hold: u64,
    /// `http://SERVER_IP[:PORT]`, no trailing slash.
    pub http_base: String,
    /// x86-64 UEFI loader name (`ipxe.efi` or `snponly.efi`).
    pub uefi_loader: String,
    /// The arm64 UEFI loader, when the firmware bundle has one.
    pub arm64_loader: Option<String>,
    /// Send option 60 = "PXEClient" to PXE firmware. Off by default: UEFI firmware (edk2 /
    /// OVMF, measured) reads an offer with "PXEClient" and no option 43 as a BINL offer and
    /// asks a boot server on port 4011 for the boot file, which drover does not run
    /// ("PXE-E16: No valid offer received"); without option 60 it takes `file`/`siaddr` and
    /// fetches the loader over TFTP, as it does from dnsmasq and ISC dhcpd. On for
    /// experiments only.
    pub pxe_vendor_class: bool,
    /// Name and time service the appliance offers its clients.
    pub services: Services,
    /// The other live pool members (`pool::peers`): listed after `server` as name and time
    /// servers, so a node keeps both when the member that answered it dies.
    pub peers: Vec<Ipv4Addr>,
}

/// What the appliance serves besides DHCP, announced in every OFFER and ACK: itself (the
/// `server` address, then the other live pool members) as name server (option 6) and NTP
/// server (option 42), and the domain
/// (15) and search list (119): the network's domain, else `default_domain`, the domain drover's
/// DNS gives networks without one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Services {
    pub dns: bool,
    pub ntp: bool,
    pub default_domain: Option<String>,
}

impl Context {
    /// A context with the defaults for timers and loaders; the fallback network is the
    /// interface's own subnet ([`default_network`]).
    pub fn new(iface_name: &str, server: Ipv4Addr, subnet: Ipv4Net, http_base: String) -> Self {
        Context {
            server,
            subnet,
            fallback: default_network(iface_name, server, subnet),
            lease_time: DEFAULT_LEASE_TIME,
            offer_hold: DEFAULT_OFFER_HOLD,
            decline_hold: DEFAULT_DECLINE_HOLD,
            http_base,
            uefi_loader: DEFAULT_UEFI_LOADER.to_string(),
            arm64_loader: None,
            pxe_vendor_class: false,
            services: Services::default(),
            peers: Vec::new(),
        }
    }
}

/// The network served on an interface that no store network covers: the interface's
/// subnet, no gateway, and as dynamic range the upper half of the subnet without the
/// broadcast address and without the server's own address (when the server sits at either
/// end of that half the range shrinks; inside it, the allocator skips it). `/31` and `/32`
/// get no range.
pub fn default_network(name: &str, server: Ipv4Addr, subnet: Ipv4Net) -> Network {
    Network {
        name: name.to_string(),
        subnet,
        range: default_range(server, subnet),
        gateway: None,
        domain: None,
    }
}

fn default_range(server: Ipv4Addr, subnet: Ipv4Net) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if subnet.prefix() >= 31 {
        return None;
    }
    let base = u32::from(subnet.addr());
    let size = 1u64 << (32 - u32::from(subnet.prefix()));
    // size >= 4 here, so half >= 2 and the arithmetic stays inside the subnet.
    let half = (size / 2) as u32;
    let mut first = base + half;
    let mut last = u32::from(subnet.broadcast()) - 1;
    let s = u32::from(server);
    if s == first {
        first += 1;
    }
    if s == last {
        last -= 1;
    }
    (first <= last).then(|| (Ipv4Addr::from(first), Ipv4Addr::from(last)))
}

/// An address offered to a client and held for it until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub expires: u64,
}

/// The shell's in-memory table of outstanding offers (see the module docs for why they are
/// not persisted). One offer per client and per address.
#[derive(Debug, Clone, Default)]
pub struct Offers {
    by_ip: HashMap<Ipv4Addr, Offer>,
    by_mac: HashMap<Mac, Ipv4Addr>,
}

impl Offers {
    /// Most outstanding offers; beyond this, new DISCOVERs are dropped until offers expire.
    pub const MAX: usize = 16 * 1024;

    /// Records `offer`, replacing this client's and this address's earlier offers. Expired
    /// offers are purged when the table is full; returns false if it is still full.
    pub fn insert(&mut self, now: u64, offer: Offer) -> bool {
        self.remove_mac(offer.mac);
        if let Some(old) = self.by_ip.remove(&offer.ip) {
            self.by_mac.remove(&old.mac);
        }
        if self.by_ip.len() >= Self::MAX {
            self.purge(now);
            if self.by_ip.len() >= Self::MAX {
                return false;
            }
        }
        self.by_mac.insert(offer.mac, offer.ip);
        self.by_ip.insert(offer.ip, offer);
        true
    }

    /// This client's unexpired offer.
    pub fn by_mac(&self, mac: Mac, now: u64) -> Option<&Offer> {
        self.by_mac
            .get(&mac)
            .and_then(|ip| self.by_ip.get(ip))
            .filter(|o| o.expires > now)
    }

    /// Who holds an unexpired offer of `ip`.
    pub fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<Mac> {
        self.by_ip
            .get(&ip)
            .filter(|o| o.expires > now)
            .map(|o| o.mac)
    }

    pub fn remove_mac(&mut self, mac: Mac) {
        if let Some(ip) = self.by_mac.remove(&mac) {
            self.by_ip.remove(&ip);
        }
    }

    /// Forgets expired offers.
    pub fn purge(&mut self, now: u64) {
        self.by_ip.retain(|_, o| o.expires > now);
        let by_ip = &self.by_ip;
        self.by_mac.retain(|_, ip| by_ip.contains_key(ip));
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// giaddr was set: to the relay agent's server port.
    Relay(Ipv4Addr),
    /// ciaddr was set (RENEWING, INFORM): unicast to the client port.
    Unicast(Ipv4Addr),
    /// Everything else: 255.255.255.255 on the client port. RFC 2131 §4.1 allows this
    /// whether or not the broadcast bit is set; unicasting to yiaddr would need an ARP entry
    /// injected for an address the client does not have yet.
    Broadcast,
}

crate::labels::labels! {
    /// Why a request got no reply; the name is the counter's (`dropped_<name>`) and the log's.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DropReason {
        /// Relayed from a giaddr that is in no network we serve.
        UnknownRelayNetwork = "unknown_relay_network",
        /// ciaddr (renew/inform) is in no network we serve.
        UnknownClientNetwork = "unknown_client_network",
        /// The node's reserved address is not in the network the request came from.
        ReservationOutsideNetwork = "reservation_outside_network",
        /// The node's reserved address is bound to another client.
        ReservedAddressInUse = "reserved_address_in_use",
        /// The network has no dynamic range and the client has no reservation.
        NoDynamicRange = "no_dynamic_range",
        /// No free address left in the range.
        RangeExhausted = "range_exhausted",
        /// The offers table is full.
        OffersFull = "offers_full",
        /// DHCPREQUEST selecting another server's offer.
        OtherServer = "other_server",
        /// DHCPREQUEST / DHCPDECLINE without the address it is about.
        MissingAddress = "missing_address",
        /// DHCPDECLINE / DHCPRELEASE for an address the client does not hold.
        NotHolder = "not_holder",
        /// DHCPINFORM without ciaddr.
        InformWithoutAddress = "inform_without_address",
        /// Another pool member answers this client or owns the address (see [`Share`]).
        OtherMember = "other_member",
        /// This pool member is drained (`drover pool drain`): the others answer.
        Drained = "drained",
    }
}

/// What the shell does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    /// Send without a store write (DHCPNAK, DHCPACK to DHCPINFORM).
    Reply(Reply, Destination),
    /// Record the offer in the shell's `Offers`, then send the DHCPOFFER.
    Hold(Offer, Reply, Destination),
    /// Write the lease durably, then send the DHCPACK.
    CommitThenReply(Lease, Reply, Destination),
    /// Write the lease; send nothing (DHCPDECLINE, DHCPRELEASE).
    Commit(Lease),
}

/// Handles one request at unix time `now`, as the pool member `share` describes.
pub fn handle(
    now: u64,
    req: &Request,
    ctx: &Context,
    share: &Share,
    view: &View,
    offers: &Offers,
) -> Action {
    let h = Handler {
        now,
        req,
        ctx,
        share,
        view,
        offers,
        node: view.node_by_mac(req.chaddr),
    };
    if share.drained {
        // Reserved nodes too: the member may be about to stop, and the others answer them
        // with the same contents.
        return Action::Drop(DropReason::Drained);
    }
    let out = match req.msg_type {
        MessageType::Discover => h.discover(),
        MessageType::Request => h.request(),
        MessageType::Decline => h.decline(),
        MessageType::Release => h.release(),
        MessageType::Inform => h.inform(),
    };
    out.unwrap_or_else(Action::Drop)
}

struct Handler<'a> {
    now: u64,
    req: &'a Request,
    ctx: &'a Context,
    share: &'a Share,
    view: &'a View,
    offers: &'a Offers,
    node: Option<&'a Node>,
}

/// Whether a client may be bound to an address (DHCPREQUEST).
enum Verdict {
    Yes,
    /// Not this client's to have: DHCPNAK.
    No,
    /// Possibly the client's, but another pool member's to give: stay silent.
    OtherMember,
}

impl<'a> Handler<'a> {
    /// The network of the segment the request came from: the relay's (giaddr), else the
    /// receiving interface's.
    fn segment_network(&self) -> Result<Cow<'a, Network>, DropReason> {
        if self.req.giaddr != Ipv4Addr::UNSPECIFIED {
            return self
                .network_containing(self.req.giaddr)
                .ok_or(DropReason::UnknownRelayNetwork);
        }
        Ok(self
            .network_containing(self.ctx.server)
            .unwrap_or(Cow::Borrowed(&self.ctx.fallback)))
    }

    /// The served network containing `ip`: a store network, else the fallback.
    fn network_containing(&self, ip: Ipv4Addr) -> Option<Cow<'a, Network>> {
        if let Some(n) = self.view.network_for(ip) {
            return Some(Cow::Borrowed(n));
        }
        let fb = &self.ctx.fallback;
        (fb.subnet.contains(ip) && self.view.network_for(self.ctx.server).is_none())
            .then_some(Cow::Borrowed(fb))
    }

    fn discover(&self) -> Result<Action, DropReason> {
        let net = self.segment_network()?;
        let ip = match self.reserved_ip(&net)? {
            Some(ip) => ip,
            None if !self.share.answers(self.req.chaddr) => return Err(DropReason::OtherMember),
            None => self.allocate(&net)?,
        };
        let reply = self.reply(ReplyKind::Offer, ip, &net);
        let offer = Offer {
            ip,
            mac: self.req.chaddr,
            expires: self.now + self.ctx.offer_hold,
        };
        Ok(Action::Hold(offer, reply, self.destination(false)))
    }

    /// The node's reserved address, checked: it must be in `net` and not bound to another
    /// client. `None` for clients without a reservation.
    fn reserved_ip(&self, net: &Network) -> Result<Option<Ipv4Addr>, DropReason> {
        let Some(ip) = self.node.and_then(|n| n.ip) else {
            return Ok(None);
        };
        if !net.subnet.is_host(ip) {
            tracing::warn!(
                mac = %self.req.chaddr, %ip, network = %net.name,
                "reserved address is not in the network the request came from; not answering"
            );
            return Err(DropReason::ReservationOutsideNetwork);
        }
        if let Some(l) = self.view.leases.get(&ip) {
            if l.mac != self.req.chaddr && l.state == LeaseState::Bound && l.holds(self.now) {
                tracing::warn!(
                    mac = %self.req.chaddr, %ip, holder = %l.mac,
                    "reserved address is still bound to another client; not answering"
                );
                return Err(DropReason::ReservedAddressInUse);
            }
        }
        Ok(Some(ip))
    }

    /// Picks a dynamic address (see the module docs for the order).
    fn allocate(&self, net: &Network) -> Result<Ipv4Addr, DropReason> {
        let Some((first, last)) = net.range else {
            return Err(DropReason::NoDynamicRange);
        };
        let mac = self.req.chaddr;
        let candidates = [
            self.offers.by_mac(mac, self.now).map(|o| o.ip),
            self.view
                .lease_by_mac(mac)
                .filter(|l| l.state != LeaseState::Declined)
                .map(|l| l.ip),
            self.req.requested_ip,
        ];
        for ip in candidates.into_iter().flatten() {
            if self.free_for(ip, net) {
                return Ok(ip);
            }
        }
        // The lowest free address is either one that no node reserves and no lease names,
        // or one whose lease has ended. The view's indexes give both without walking past
        // taken addresses, so the work does not grow with nodes or held leases.
        let untaken = self.lowest_untaken(first, last, net);
        let ended = self
            .view
            .leases_ended(self.now)
            .map(|l| l.ip)
            .filter(|ip| (first..=untaken.unwrap_or(last)).contains(ip) && self.free_for(*ip, net))
            .min();
        ended.or(untaken).ok_or(DropReason::RangeExhausted)
    }

    /// The lowest free address of `first..=last` that the view does not name at all. Steps
    /// over taken runs in one lookup each; the addresses it looks at one by one are this
    /// member's own that are offered, the server's, the gateway's, or not host addresses, and
    /// other members' (one hash each).
    fn lowest_untaken(&self, first: Ipv4Addr, last: Ipv4Addr, net: &Network) -> Option<Ipv4Addr> {
        let mut from = first;
        loop {
            let ip = self.view.next_untaken(from).filter(|ip| *ip <= last)?;
            if self.free_for(ip, net) {
                return Some(ip);
            }
            from = u32::from(ip).checked_add(1).map(Ipv4Addr::from)?;
        }
    }

    /// May this client have dynamic address `ip` in `net`?
    fn free_for(&self, ip: Ipv4Addr, net: &Network) -> bool {
        let mac = self.req.chaddr;
        if !net.in_range(ip)
            || !net.subnet.is_host(ip)
            || ip == self.ctx.server
            || Some(ip) == net.gateway
            || self.view.is_reserved(ip)
        {
            return false;
        }
        let mut extends = false;
        if let Some(l) = self.view.leases.get(&ip) {
            let own = l.mac == mac && l.state != LeaseState::Declined;
            if !own && (l.holds(self.now) || !self.share.may_reuse(self.now, l.expires)) {
                return false;
            }
            extends = own && l.holds(self.now);
        }
        // Extending another member's lease (a takeover) only for a client that says it
        // holds the address (RENEWING, REBINDING, INIT-REBOOT). A client that asks anew
        // (DISCOVER, SELECTING) may have released or declined it at the owner, which, cut
        // off from us, may have given it to another client since: our copy cannot tell.
        let permitted = if extends && self.claims_binding() {
            self.share.may_extend(self.now, ip)
        } else {
            self.share.may_allocate(self.now, ip)
        };
        permitted && !matches!(self.offers.holder(ip, self.now), Some(m) if m != mac)
    }

    /// Is this a DHCPREQUEST for an address the client holds (RENEWING, REBINDING,
    /// INIT-REBOOT: no server identifier), rather than a new one (DISCOVER, SELECTING)?
    fn claims_binding(&self) -> bool {
        self.req.msg_type == MessageType::Request && self.req.server_id.is_none()
    }

    /// May this client be bound to `ip` in `net` (DHCPREQUEST)?
    fn acceptable(&self, ip: Ipv4Addr, net: &Network) -> Verdict {
        let yes = match self.node.and_then(|n| n.ip) {
            Some(reserved) => {
                reserved == ip
                    && net.subnet.is_host(ip)
                    && !self.view.leases.get(&ip).is_some_and(|l| {
                        l.mac != self.req.chaddr
                            && l.state == LeaseState::Bound
                            && l.holds(self.now)
                    })
            }
            None => self.free_for(ip, net),
        };
        if yes {
            return Verdict::Yes;
        }
        // Would the address be free for this client if the pool's shares allowed it? Then
        // it is another member's to give, and a NAK from us would take a good address away.
        let solo = Share::solo(self.share.me);
        let unshared = Handler {
            share: &solo,
            ..*self
        };
        if self.node.and_then(|n| n.ip).is_none() && unshared.free_for(ip, net) {
            Verdict::OtherMember
        } else {
            Verdict::No
        }
    }

    fn request(&self) -> Result<Action, DropReason> {
        let req = self.req;
        let ciaddr = (req.ciaddr != Ipv4Addr::UNSPECIFIED).then_some(req.ciaddr);
        let (ip, net) = if let Some(sid) = req.server_id {
            // SELECTING
            if sid != self.ctx.server {
                return Err(DropReason::OtherServer);
            }
            let ip = req
                .requested_ip
                .or(ciaddr)
                .ok_or(DropReason::MissingAddress)?;
            (ip, self.segment_network()?)
        } else if let (Some(ip), None) = (req.requested_ip, ciaddr) {
            // INIT-REBOOT: broadcast to every member; one answers a dynamic client.
            if self.node.and_then(|n| n.ip).is_none() && !self.share.answers(req.chaddr) {
                return Err(DropReason::OtherMember);
            }
            (ip, self.segment_network()?)
        } else if let Some(ip) = ciaddr {
            // RENEWING (unicast, possibly routed from a remote segment) or REBINDING.
            let net = if req.giaddr != Ipv4Addr::UNSPECIFIED {
                self.segment_network()?
            } else {
                let local = self.segment_network()?;
                if local.subnet.contains(ip) {
                    local
                } else {
                    self.network_containing(ip)
                        .ok_or(DropReason::UnknownClientNetwork)?
                }
            };
            (ip, net)
        } else {
            return Err(DropReason::MissingAddress);
        };
        if !net.subnet.contains(ip) {
            return Ok(self.nak("requested address is not on this network"));
        }
        match self.acceptable(ip, &net) {
            Verdict::Yes => {}
            Verdict::No => return Ok(self.nak("address not available to this client")),
            Verdict::OtherMember => return Err(DropReason::OtherMember),
        }
        let reply = self.reply(ReplyKind::Ack, ip, &net);
        let lease = self.lease(
            ip,
            &net,
            LeaseState::Bound,
            self.now + u64::from(self.ctx.lease_time),
        );
        Ok(Action::CommitThenReply(
            lease,
            reply,
            self.destination(false),
        ))
    }

    fn decline(&self) -> Result<Action, DropReason> {
        if self.req.server_id.is_some_and(|s| s != self.ctx.server) {
            return Err(DropReason::OtherServer);
        }
        let ip = self.req.requested_ip.ok_or(DropReason::MissingAddress)?;
        let held = self
            .view
            .leases
            .get(&ip)
            .is_some_and(|l| l.mac == self.req.chaddr)
            || self.node.is_some_and(|n| n.ip == Some(ip));
        let Some(net) = held.then(|| self.network_containing(ip)).flatten() else {
            return Err(DropReason::NotHolder);
        };
        tracing::warn!(mac = %self.req.chaddr, %ip, "client declined its address: in use by someone else?");
        let lease = self.lease(
            ip,
            &net,
            LeaseState::Declined,
            self.now + self.ctx.decline_hold,
        );
        Ok(Action::Commit(lease))
    }

    fn release(&self) -> Result<Action, DropReason> {
        if self.req.server_id.is_some_and(|s| s != self.ctx.server) {
            return Err(DropReason::OtherServer);
        }
        let ip = self.req.ciaddr;
        let Some(old) = self
            .view
            .leases
            .get(&ip)
            .filter(|l| l.mac == self.req.chaddr && l.state == LeaseState::Bound)
        else {
            return Err(DropReason::NotHolder);
        };
        let mut lease = old.clone();
        lease.state = LeaseState::Released;
        lease.expires = self.now;
        Ok(Action::Commit(lease))
    }

    fn inform(&self) -> Result<Action, DropReason> {
        let ip = self.req.ciaddr;
        if ip == Ipv4Addr::UNSPECIFIED {
            return Err(DropReason::InformWithoutAddress);
        }
        let net = match self.segment_network() {
            Ok(n) if n.subnet.contains(ip) => n,
            _ => self
                .network_containing(ip)
                .ok_or(DropReason::UnknownClientNetwork)?,
        };
        let mut reply = self.reply(ReplyKind::Ack, Ipv4Addr::UNSPECIFIED, &net);
        // RFC 2131 §3.4: no lease time parameters in an ACK to INFORM.
        reply.lease_time = None;
        reply.renewal = None;
        reply.rebinding = None;
        Ok(Action::Reply(reply, self.destination(false)))
    }

    fn nak(&self, why: &str) -> Action {
        let req = self.req;
        let relayed = req.giaddr != Ipv4Addr::UNSPECIFIED;
        let reply = Reply {
            kind: ReplyKind::Nak,
            xid: req.xid,
            // RFC 2131 §4.3.2: a relayed NAK has the broadcast bit set so the relay broadcasts.
            broadcast: req.broadcast || relayed,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            server_id: self.ctx.server,
            lease_time: None,
            renewal: None,
            rebinding: None,
            subnet_mask: None,
            router: None,
            broadcast_addr: None,
            hostname: None,
            domain: None,
            search: Vec::new(),
            dns_servers: Vec::new(),
            ntp_servers: Vec::new(),
            boot_file: None,
            boot_file_option: false,
            pxe_class: false,
            ipxe_no_pxedhcp: false,
            client_id: req.client_id.clone(),
            relay_info: req.relay_info.clone(),
            message: Some(why.to_string()),
            client_max_size: req.max_size,
        };
        Action::Reply(reply, self.destination(true))
    }

    /// RFC 2131 §4.1.
    fn destination(&self, nak: bool) -> Destination {
        let req = self.req;
        if req.giaddr != Ipv4Addr::UNSPECIFIED {
            Destination::Relay(req.giaddr)
        } else if !nak && req.ciaddr != Ipv4Addr::UNSPECIFIED {
            Destination::Unicast(req.ciaddr)
        } else {
            Destination::Broadcast
        }
    }

    /// An OFFER or ACK for `yiaddr` with the network's options and the boot settings.
    fn reply(&self, kind: ReplyKind, yiaddr: Ipv4Addr, net: &Network) -> Reply {
        let req = self.req;
        let lease = self.ctx.lease_time;
        let boot = boot_for(req, self.ctx);
        let services = &self.ctx.services;
        let domain = net
            .domain
            .clone()
            .or_else(|| services.default_domain.clone().filter(|_| services.dns));
        let own = |on: bool| {
            if on {
                std::iter::once(self.ctx.server)
                    .chain(
                        self.ctx
                            .peers
                            .iter()
                            .copied()
                            .filter(|a| *a != self.ctx.server),
                    )
                    .collect()
            } else {
                Vec::new()
            }
        };
        Reply {
            kind,
            xid: req.xid,
            broadcast: req.broadcast,
            ciaddr: if kind == ReplyKind::Ack {
                req.ciaddr
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            yiaddr,
            siaddr: if req.is_pxe() || req.is_ipxe() {
                self.ctx.server
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            server_id: self.ctx.server,
            lease_time: Some(lease),
            renewal: Some(lease / 2),
            rebinding: Some((u64::from(lease) * 7 / 8) as u32),
            subnet_mask: Some(net.subnet.netmask()),
            router: net.gateway,
            broadcast_addr: Some(net.subnet.broadcast()),
            hostname: self.node.map(|n| n.name.clone()),
            search: domain.iter().cloned().collect(),
            domain,
            dns_servers: own(services.dns),
            ntp_servers: own(services.ntp),
            boot_file_option: boot.file.is_some() && req.params.contains(&67),
            boot_file: boot.file,
            pxe_class: boot.pxe_class,
            ipxe_no_pxedhcp: boot.no_pxedhcp,
            client_id: req.client_id.clone(),
            relay_info: req.relay_info.clone(),
            message: None,
            client_max_size: req.max_size,
        }
    }

    fn lease(&self, ip: Ipv4Addr, net: &Network, state: LeaseState, expires: u64) -> Lease {
        let req = self.req;
        Lease {
            ip,
            mac: req.chaddr,
            client_id: req.client_id.as_deref().map(hex),
            hostname: self
                .node
                .map(|n| n.name.clone())
                .or_else(|| req.hostname.clone()),
            state,
            start: self.now,
            expires,
            network: net.name.clone(),
            relay: RelayInfo {
                giaddr: (req.giaddr != Ipv4Addr::UNSPECIFIED).then_some(req.giaddr),
                agent_info: req.relay_info.as_deref().map(hex),
            },
        }
    }
}

/// Boot parameters for a reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Boot {
    pub file: Option<String>,
    pub pxe_class: bool,
    pub no_pxedhcp: bool,
}

/// The boot file and PXE options for a client (see DESIGN.md, the boot path): iPXE gets the
/// HTTP URL of its boot script; PXE firmware gets the iPXE binary for its architecture.
pub fn boot_for(req: &Request, ctx: &Context) -> Boot {
    if req.is_ipxe() {
        return Boot {
            file: Some(format!("{}/boot/{}", ctx.http_base, req.chaddr)),
            pxe_class: false,
            no_pxedhcp: true,
        };
    }
    if !req.is_pxe() {
        return Boot::default();
    }
    let archs: Vec<u16> = if req.arch.is_empty() {
        vendor_class_arch(req.vendor_class.as_deref())
            .into_iter()
            .collect()
    } else {
        req.arch.clone()
    };
    let file = archs.iter().find_map(|&a| loader_for(a, ctx));
    if file.is_none() {
        tracing::warn!(
            mac = %req.chaddr, ?archs,
            "no boot loader for this client architecture; offering an address without a boot file"
        );
    }
    Boot {
        file,
        pxe_class: ctx.pxe_vendor_class,
        no_pxedhcp: false,
    }
}

fn loader_for(a: u16, ctx: &Context) -> Option<String> {
    match a {
        arch::BIOS => Some(BIOS_LOADER.to_string()),
        arch::EFI_X86_64 | arch::EFI_BC => Some(ctx.uefi_loader.clone()),
        arch::EFI_ARM64 => ctx.arm64_loader.clone(),
        _ => None,
    }
}

/// The architecture in a PXE vendor class (`PXEClient:Arch:00007:...`), for clients that
/// send no option 93; BIOS when the class names none.
fn vendor_class_arch(vc: Option<&[u8]>) -> Option<u16> {
    let vc = std::str::from_utf8(vc?).ok()?;
    let rest = vc.strip_prefix("PXEClient")?;
    Some(
        rest.strip_prefix(":Arch:")
            .and_then(|r| r.get(..5))
            .and_then(|d| d.parse().ok())
            .unwrap_or(arch::BIOS),
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
