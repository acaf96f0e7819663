//! Core scenarios on virtual time. `Sim` plays the shell: it feeds requests to `handle`,
//! records offers, and writes leases to a real store (in a temp dir) and refreshes its view,
//! exactly in the order the tokio shell does. No sockets, no clock.

use super::*;
use crate::store::model::{Ipv4Net, Lease, LeaseState, Mac, Network, Node};
use crate::store::{Record, Store};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

const T0: u64 = 1_800_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn mac(n: u8) -> Mac {
    Mac([0x52, 0x54, 0, 0, 0, n])
}

fn lab() -> Network {
    Network {
        name: "lab".into(),
        subnet: "198.18.0.0/24".parse().unwrap(),
        range: Some((ip("198.18.0.100"), ip("198.18.0.110"))),
        gateway: Some(ip("198.18.0.254")),
        domain: Some("cluster.test".into()),
    }
}

fn node(name: &str, m: Mac, addr: Option<&str>) -> Node {
    Node {
        name: name.into(),
        mac: m,
        ip: addr.map(ip),
        image: None,
        group: None,
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    }
}

struct Sim {
    dir: PathBuf,
    store: Store,
    view: View,
    offers: Offers,
    ctx: Context,
    share: Share,
    now: u64,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sim {
    /// An empty store: the interface's fallback network is served.
    fn bare() -> Sim {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "drover-dhcp-core-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let view = View::load(&store).unwrap();
        let subnet: Ipv4Net = "198.18.0.0/24".parse().unwrap();
        let ctx = Context::new("eth0", SERVER, subnet, "http://198.18.0.1".into());
        Sim {
            dir,
            store,
            share: Share::solo(1),
            view,
            offers: Offers::default(),
            ctx,
            now: T0,
        }
    }

    /// The `lab` network, node `n1` reserved at .10, node `n2` without an address.
    fn new() -> Sim {
        let mut s = Sim::bare();
        s.put(&lab());
        s.put(&node("n1", mac(1), Some("198.18.0.10")));
        s.put(&node("n2", mac(2), None));
        s
    }

    fn put<T: Record>(&mut self, r: &T) {
        self.store.write(|w| w.put(r)).unwrap();
        self.view.refresh(&self.store).unwrap();
    }

    fn lease(&self, a: &str) -> Option<Lease> {
        self.view.leases.get(&ip(a)).cloned()
    }

    /// Runs the core and applies the action as the shell would.
    fn run(&mut self, req: &Request) -> Action {
        let action = handle(
            self.now,
            req,
            &self.ctx,
            &self.share,
            &self.view,
            &self.offers,
        );
        match &action {
            Action::Hold(offer, ..) => assert!(self.offers.insert(self.now, offer.clone())),
            Action::CommitThenReply(lease, ..) => {
                self.put(lease);
                self.offers.remove_mac(lease.mac);
            }
            Action::Commit(lease) => self.put(lease),
            Action::Drop(DropReason::OtherServer) => self.offers.remove_mac(req.chaddr),
            _ => {}
        }
        action
    }

    fn offer(&mut self, req: &Request) -> (Offer, Reply, Destination) {
        match self.run(req) {
            Action::Hold(o, r, d) => (o, r, d),
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    fn ack(&mut self, req: &Request) -> (Lease, Reply, Destination) {
        match self.run(req) {
            Action::CommitThenReply(l, r, d) => (l, r, d),
            other => panic!("expected an ACK, got {other:?}"),
        }
    }

    fn nak(&mut self, req: &Request) -> (Reply, Destination) {
        match self.run(req) {
            Action::Reply(r, d) if r.kind == ReplyKind::Nak => (r, d),
            other => panic!("expected a NAK, got {other:?}"),
        }
    }

    /// DISCOVER + REQUEST (selecting); returns the bound address.
    fn dora(&mut self, m: Mac) -> Ipv4Addr {
        let (offer, ..) = self.offer(&discover(m));
        let (lease, reply, _) = self.ack(&select(m, offer.ip));
        assert_eq!(reply.yiaddr, offer.ip);
        lease.ip
    }
}

fn base(t: MessageType, m: Mac) -> Request {
    Request {
        msg_type: t,
        xid: 0x1234,
        secs: 0,
        hops: 0,
        broadcast: false,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr: m,
        requested_ip: None,
        server_id: None,
        client_id: Some(vec![1, 0x52, 0x54, 0, 0, 0, m.0[5]]),
        hostname: None,
        params: vec![1, 3, 6, 12, 15, 28, 42],
        max_size: Some(576),
        arch: Vec::new(),
        user_class: None,
        ipxe_encap: None,
        vendor_class: None,
        uuid: None,
        relay_info: None,
    }
}

fn discover(m: Mac) -> Request {
    base(MessageType::Discover, m)
}

fn select(m: Mac, a: Ipv4Addr) -> Request {
    Request {
        requested_ip: Some(a),
        server_id: Some(SERVER),
        ..base(MessageType::Request, m)
    }
}

fn renew(m: Mac, a: Ipv4Addr) -> Request {
    Request {
        ciaddr: a,
        ..base(MessageType::Request, m)
    }
}

fn init_reboot(m: Mac, a: Ipv4Addr) -> Request {
    Request {
        requested_ip: Some(a),
        ..base(MessageType::Request, m)
    }
}

#[test]
fn default_range_is_upper_half_without_broadcast_and_server() {
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    let r = |server: &str, subnet: &str| default_network("eth0", ip(server), net(subnet)).range;
    assert_eq!(
        r("198.18.0.1", "198.18.0.0/24"),
        Some((ip("198.18.0.128"), ip("198.18.0.254")))
    );
    // Server at either end of the upper half: the range shrinks.
    assert_eq!(
        r("198.18.0.128", "198.18.0.0/24"),
        Some((ip("198.18.0.129"), ip("198.18.0.254")))
    );
    assert_eq!(
        r("198.18.0.254", "198.18.0.0/24"),
        Some((ip("198.18.0.128"), ip("198.18.0.253")))
    );
    assert_eq!(
        r("198.18.0.1", "198.18.0.0/16"),
        Some((ip("198.18.128.0"), ip("198.18.255.254")))
    );
    assert_eq!(
        r("198.18.0.1", "198.18.0.0/30"),
        Some((ip("198.18.0.2"), ip("198.18.0.2")))
    );
    assert_eq!(r("198.18.0.2", "198.18.0.0/30"), None);
    assert_eq!(r("198.18.0.0", "198.18.0.0/31"), None);
    assert_eq!(r("198.18.0.0", "198.18.0.0/32"), None);
    let n = default_network("eth0", SERVER, net("198.18.0.0/24"));
    assert_eq!(n.name, "eth0");
    assert_eq!(n.gateway, None);
}

#[test]
fn reservation_gets_its_address_with_all_options() {
    let mut s = Sim::new();
    let (offer, reply, dest) = s.offer(&discover(mac(1)));
    assert_eq!(offer.ip, ip("198.18.0.10"));
    assert_eq!(offer.expires, T0 + DEFAULT_OFFER_HOLD);
    assert_eq!(dest, Destination::Broadcast);
    assert_eq!(reply.kind, ReplyKind::Offer);
    assert_eq!(reply.yiaddr, ip("198.18.0.10"));
    assert_eq!(reply.server_id, SERVER);
    assert_eq!(reply.lease_time, Some(3600));
    assert_eq!(reply.renewal, Some(1800));
    assert_eq!(reply.rebinding, Some(3150));
    assert_eq!(reply.subnet_mask, Some(ip("255.255.255.0")));
    assert_eq!(reply.router, Some(ip("198.18.0.254")));
    assert_eq!(reply.broadcast_addr, Some(ip("198.18.0.255")));
    assert_eq!(reply.hostname.as_deref(), Some("n1"));
    assert_eq!(reply.domain.as_deref(), Some("cluster.test"));
    assert_eq!(reply.boot_file, None);
    assert_eq!(reply.client_id, Some(vec![1, 0x52, 0x54, 0, 0, 0, 1]));

    s.now += 1;
    let (lease, reply, dest) = s.ack(&select(mac(1), ip("198.18.0.10")));
    assert_eq!(reply.kind, ReplyKind::Ack);
    assert_eq!(reply.hostname.as_deref(), Some("n1"));
    assert_eq!(dest, Destination::Broadcast);
    assert_eq!(lease.state, LeaseState::Bound);
    assert_eq!(lease.expires, T0 + 1 + 3600);
    assert_eq!(lease.hostname.as_deref(), Some("n1"));
    assert_eq!(lease.network, "lab");
    assert_eq!(lease.client_id.as_deref(), Some("01525400000001"));
    assert_eq!(s.lease("198.18.0.10"), Some(lease));
    assert!(s.offers.is_empty());

    // Asking for another address: NAK; the reservation is the only answer.
    s.nak(&init_reboot(mac(1), ip("198.18.0.100")));
}

#[test]
fn name_and_time_services_point_at_the_server() {
    // Off by default: no options 6/42/119 and only the network's own domain.
    let mut s = Sim::bare();
    let (_, reply, _) = s.offer(&discover(mac(3)));
    assert!(reply.dns_servers.is_empty() && reply.ntp_servers.is_empty());
    assert_eq!((reply.domain, reply.search.len()), (None, 0));

    // With DNS and NTP on, a network without a domain gets the DNS default domain.
    s.ctx.services = Services {
        dns: true,
        ntp: true,
        default_domain: Some("cluster".into()),
    };
    let (_, reply, _) = s.offer(&discover(mac(4)));
    assert_eq!(reply.dns_servers, vec![SERVER]);
    assert_eq!(reply.ntp_servers, vec![SERVER]);
    assert_eq!(reply.domain.as_deref(), Some("cluster"));
    assert_eq!(reply.search, vec!["cluster".to_string()]);

    // A network's own domain wins; DNS off: no name server and no default domain.
    s.put(&lab());
    s.ctx.services.dns = false;
    let (_, reply, _) = s.offer(&discover(mac(5)));
    assert!(reply.dns_servers.is_empty());
    assert_eq!(reply.ntp_servers, vec![SERVER]);
    assert_eq!(reply.domain.as_deref(), Some("cluster.test"));
    s.put(&Network {
        domain: None,
        ..lab()
    });
    let (_, reply, _) = s.offer(&discover(mac(6)));
    assert_eq!(reply.domain, None);
}

#[test]
fn name_and_time_servers_list_the_other_live_members_after_this_one() {
    let mut s = Sim::bare();
    s.ctx.services = Services {
        dns: true,
        ntp: true,
        default_domain: None,
    };
    let (b, c) = (ip("198.18.0.2"), ip("198.18.0.3"));
    // An address equal to this member's is listed once, first.
    s.ctx.peers = vec![b, SERVER, c];
    let (_, reply, _) = s.offer(&discover(mac(3)));
    assert_eq!(reply.dns_servers, vec![SERVER, b, c]);
    assert_eq!(reply.ntp_servers, vec![SERVER, b, c]);
    // A service that is off lists no member at all.
    s.ctx.services.ntp = false;
    let (_, reply, _) = s.offer(&discover(mac(4)));
    assert!(reply.ntp_servers.is_empty());
    assert_eq!(reply.dns_servers, vec![SERVER, b, c]);
}

#[test]
fn reservation_outside_the_network_is_dropped() {
    let mut s = Sim::new();
    s.put(&node("far", mac(9), Some("198.19.5.5")));
    assert_eq!(
        s.run(&discover(mac(9))),
        Action::Drop(DropReason::ReservationOutsideNetwork)
    );
}

#[test]
fn reserved_address_bound_to_someone_else() {
    let mut s = Sim::new();
    // A dynamic client got .105 before an admin reserved .105 for n5.
    s.put(&Lease {
        ip: ip("198.18.0.105"),
        mac: mac(0x40),
        client_id: None,
        hostname: None,
        state: LeaseState::Bound,
        start: T0,
        expires: T0 + 3600,
        network: "lab".into(),
        relay: Default::default(),
    });
    s.put(&node("n5", mac(5), Some("198.18.0.105")));
    assert_eq!(
        s.run(&discover(mac(5))),
        Action::Drop(DropReason::ReservedAddressInUse)
    );
    // The old holder is told to go away at its next renewal ...
    s.now += 1800;
    s.nak(&renew(mac(0x40), ip("198.18.0.105")));
    // ... and once its lease has run out the node gets its address.
    s.now = T0 + 3601;
    assert_eq!(s.dora(mac(5)), ip("198.18.0.105"));
}

#[test]
fn dynamic_addresses_lowest_free_requested_and_current() {
    let mut s = Sim::new();
    s.put(&node("n3", mac(3), Some("198.18.0.101")));
    // Unknown MAC: the lowest free address.
    assert_eq!(s.dora(mac(0x20)), ip("198.18.0.100"));
    // A known node without a reservation: dynamic too; .101 is reserved for n3.
    assert_eq!(s.dora(mac(2)), ip("198.18.0.102"));
    // The requested address when it is free ...
    let (o, ..) = s.offer(&Request {
        requested_ip: Some(ip("198.18.0.107")),
        ..discover(mac(0x21))
    });
    assert_eq!(o.ip, ip("198.18.0.107"));
    // ... and a retransmitted DISCOVER gets the same offer.
    let (o, ..) = s.offer(&discover(mac(0x21)));
    assert_eq!(o.ip, ip("198.18.0.107"));
    // Not when it is someone else's, or outside the range, or the gateway.
    for asked in [
        "198.18.0.100",
        "198.18.0.50",
        "198.18.0.254",
        "198.18.0.107",
    ] {
        let (o, ..) = s.offer(&Request {
            requested_ip: Some(ip(asked)),
            ..discover(mac(0x22))
        });
        assert_eq!(o.ip, ip("198.18.0.103"), "asked for {asked}");
    }
    // The client's current lease wins over its request.
    let (o, ..) = s.offer(&Request {
        requested_ip: Some(ip("198.18.0.109")),
        ..discover(mac(0x20))
    });
    assert_eq!(o.ip, ip("198.18.0.100"));
}

#[test]
fn server_address_is_never_offered() {
    let mut s = Sim::new();
    s.ctx.server = ip("198.18.0.100");
    let (o, ..) = s.offer(&discover(mac(0x20)));
    assert_eq!(o.ip, ip("198.18.0.101"));
}

#[test]
fn range_exhaustion_and_expiry() {
    let mut s = Sim::new();
    for i in 0..11u8 {
        assert_eq!(s.dora(mac(0x30 + i)), Ipv4Addr::new(198, 18, 0, 100 + i));
    }
    assert_eq!(
        s.run(&discover(mac(0x50))),
        Action::Drop(DropReason::RangeExhausted)
    );
    // Outstanding offers count as held too.
    s.now += 3601;
    let (o, ..) = s.offer(&discover(mac(0x50)));
    assert_eq!(o.ip, ip("198.18.0.100"), "expired leases are free again");
    let (o, ..) = s.offer(&discover(mac(0x51)));
    assert_eq!(o.ip, ip("198.18.0.101"));
    // An old client coming back gets a free address, not its expired-and-reoffered one.
    let (o, ..) = s.offer(&discover(mac(0x30)));
    assert_eq!(o.ip, ip("198.18.0.102"));
}

/// The free-address search from the view's indexes: gaps between taken addresses in
/// address order, an ended lease's address before a higher never-used one, and the indexes
/// following reservations as nodes come, move and go.
#[test]
fn allocation_order_from_the_indexes() {
    let mut s = Sim::new();
    // .100 .101 .102 leased; .103 reserved; .104 leased.
    for i in 0..3u8 {
        assert_eq!(s.dora(mac(0x30 + i)), Ipv4Addr::new(198, 18, 0, 100 + i));
    }
    s.put(&node("n3", mac(3), Some("198.18.0.103")));
    assert_eq!(s.dora(mac(0x33)), ip("198.18.0.104"));
    // The reservation moves to .105: .103 is the lowest free one, .105 is skipped after it.
    s.put(&node("n3", mac(3), Some("198.18.0.105")));
    assert_eq!(s.dora(mac(0x34)), ip("198.18.0.103"));
    assert_eq!(s.dora(mac(0x35)), ip("198.18.0.106"));
    // A released lease below the first never-used address is reused first.
    let rel = Request {
        ciaddr: ip("198.18.0.101"),
        server_id: Some(SERVER),
        ..base(MessageType::Release, mac(0x31))
    };
    assert!(matches!(s.run(&rel), Action::Commit(_)));
    assert_eq!(s.dora(mac(0x36)), ip("198.18.0.101"));
    // The node goes: its address is free again, and lower than the next never-used one.
    s.store.write(|w| w.delete::<Node>("n3").map(drop)).unwrap();
    s.view.refresh(&s.store).unwrap();
    assert_eq!(s.dora(mac(0x37)), ip("198.18.0.105"));
    assert_eq!(s.dora(mac(0x38)), ip("198.18.0.107"));
}

/// A reserved address is never given to another client, also when an ended lease of
/// someone else names it and when it is the only address left.
#[test]
fn reserved_addresses_are_never_offered_to_others() {
    let mut s = Sim::new();
    for i in 0..11u8 {
        assert_eq!(s.dora(mac(0x30 + i)), Ipv4Addr::new(198, 18, 0, 100 + i));
    }
    // .104's lease ends, then a node reserves it: the range is exhausted for others.
    s.now += 3601;
    for i in 0..11u8 {
        if i != 4 {
            let a = Ipv4Addr::new(198, 18, 0, 100 + i);
            let (l, ..) = s.ack(&renew(mac(0x30 + i), a));
            assert_eq!(l.ip, a);
        }
    }
    s.put(&node("n4", mac(4), Some("198.18.0.104")));
    assert_eq!(
        s.run(&discover(mac(0x50))),
        Action::Drop(DropReason::RangeExhausted)
    );
    // The node itself gets it.
    assert_eq!(s.dora(mac(4)), ip("198.18.0.104"));
}

#[test]
fn offers_expire() {
    let mut s = Sim::new();
    let (o, ..) = s.offer(&discover(mac(0x20)));
    assert_eq!(o.ip, ip("198.18.0.100"));
    let (o, ..) = s.offer(&discover(mac(0x21)));
    assert_eq!(o.ip, ip("198.18.0.101"));
    s.now += DEFAULT_OFFER_HOLD;
    let (o, ..) = s.offer(&discover(mac(0x22)));
    assert_eq!(o.ip, ip("198.18.0.100"));
}

#[test]
fn renew_and_rebind() {
    let mut s = Sim::new();
    let a = s.dora(mac(0x20));
    s.now += 1800;
    let (lease, reply, dest) = s.ack(&renew(mac(0x20), a));
    assert_eq!(dest, Destination::Unicast(a));
    assert_eq!(reply.ciaddr, a);
    assert_eq!(reply.yiaddr, a);
    assert_eq!(lease.expires, s.now + 3600);
    // Rebinding: broadcast with ciaddr, same answer.
    s.now += 3150;
    let (lease, _, dest) = s.ack(&Request {
        broadcast: true,
        ..renew(mac(0x20), a)
    });
    assert_eq!(dest, Destination::Unicast(a));
    assert_eq!(lease.expires, s.now + 3600);
    // Someone else renewing that address: NAK, broadcast.
    let (nak, dest) = s.nak(&renew(mac(0x21), a));
    assert_eq!(dest, Destination::Broadcast);
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(nak.lease_time, None);
    assert!(nak.message.is_some());
    // A renewal in a network we do not serve: silence.
    assert_eq!(
        s.run(&renew(mac(0x20), ip("10.1.2.3"))),
        Action::Drop(DropReason::UnknownClientNetwork)
    );
}

#[test]
fn renewing_after_expiry_rebinds_if_still_free() {
    let mut s = Sim::new();
    let a = s.dora(mac(0x20));
    s.now += 7200;
    let (lease, ..) = s.ack(&renew(mac(0x20), a));
    assert_eq!(lease.ip, a);
}

#[test]
fn init_reboot_state() {
    let mut s = Sim::new();
    let a = s.dora(mac(0x20));
    // Rebooted client asks for its address: ACK.
    let (lease, _, dest) = s.ack(&init_reboot(mac(0x20), a));
    assert_eq!(lease.ip, a);
    assert_eq!(dest, Destination::Broadcast);
    // Moved to a different network: NAK.
    let (nak, dest) = s.nak(&init_reboot(mac(0x20), ip("10.9.9.9")));
    assert_eq!(dest, Destination::Broadcast);
    assert_eq!(nak.server_id, SERVER);
    assert_eq!(
        nak.message.as_deref(),
        Some("requested address is not on this network")
    );
    // Someone else's address: NAK.
    s.nak(&init_reboot(mac(0x21), a));
}

#[test]
fn selecting_another_server_drops_our_offer() {
    let mut s = Sim::new();
    let (o, ..) = s.offer(&discover(mac(0x20)));
    let mut other = select(mac(0x20), o.ip);
    other.server_id = Some(ip("198.18.0.2"));
    assert_eq!(s.run(&other), Action::Drop(DropReason::OtherServer));
    assert!(s.offers.is_empty());
    // SELECTING without an address.
    let mut bad = select(mac(0x20), o.ip);
    bad.requested_ip = None;
    assert_eq!(s.run(&bad), Action::Drop(DropReason::MissingAddress));
}

#[test]
fn release_then_reallocation() {
    let mut s = Sim::new();
    let a = s.dora(mac(0x20));
    let rel = Request {
        ciaddr: a,
        server_id: Some(SERVER),
        ..base(MessageType::Release, mac(0x20))
    };
    // Only the holder can release.
    let mut spoof = rel.clone();
    spoof.chaddr = mac(0x21);
    assert_eq!(s.run(&spoof), Action::Drop(DropReason::NotHolder));
    match s.run(&rel) {
        Action::Commit(l) => {
            assert_eq!(l.state, LeaseState::Released);
            assert_eq!(l.expires, s.now);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.lease("198.18.0.100").unwrap().state, LeaseState::Released);
    // The same client gets it back ...
    let (o, ..) = s.offer(&discover(mac(0x20)));
    assert_eq!(o.ip, a);
    s.offers.remove_mac(mac(0x20));
    // ... and so does the next client once it is not on offer.
    assert_eq!(s.dora(mac(0x21)), a);
    assert_eq!(s.lease("198.18.0.100").unwrap().mac, mac(0x21));
    assert_eq!(s.dora(mac(0x20)), ip("198.18.0.101"));
}

#[test]
fn decline_blocks_the_address_for_a_while() {
    let mut s = Sim::new();
    let a = s.dora(mac(0x20));
    let dec = Request {
        requested_ip: Some(a),
        server_id: Some(SERVER),
        ..base(MessageType::Decline, mac(0x20))
    };
    let mut spoof = dec.clone();
    spoof.chaddr = mac(0x22);
    assert_eq!(s.run(&spoof), Action::Drop(DropReason::NotHolder));
    match s.run(&dec) {
        Action::Commit(l) => {
            assert_eq!(l.state, LeaseState::Declined);
            assert_eq!(l.expires, s.now + DEFAULT_DECLINE_HOLD);
        }
        other => panic!("{other:?}"),
    }
    // Neither the decliner nor anyone else gets it now.
    assert_eq!(s.dora(mac(0x20)), ip("198.18.0.101"));
    assert_eq!(s.dora(mac(0x21)), ip("198.18.0.102"));
    s.nak(&init_reboot(mac(0x23), a));
    // After the hold it is free again.
    s.now += DEFAULT_DECLINE_HOLD;
    assert_eq!(s.dora(mac(0x24)), a);
}

#[test]
fn relayed_requests_use_the_relay_network() {
    let mut s = Sim::new();
    s.put(&Network {
        name: "rack2".into(),
        subnet: "198.18.8.0/24".parse().unwrap(),
        range: Some((ip("198.18.8.100"), ip("198.18.8.200"))),
        gateway: Some(ip("198.18.8.1")),
        domain: None,
    });
    let giaddr = ip("198.18.8.1");
    let agent = vec![1, 4, b'p', b'o', b'r', b't', 2, 2, 0xab, 0xcd];
    let relayed = |r: Request| Request {
        giaddr,
        hops: 1,
        relay_info: Some(agent.clone()),
        ..r
    };
    let (o, reply, dest) = s.offer(&relayed(discover(mac(0x20))));
    assert_eq!(o.ip, ip("198.18.8.100"));
    assert_eq!(dest, Destination::Relay(giaddr));
    assert_eq!(reply.giaddr, giaddr);
    assert_eq!(reply.relay_info.as_deref(), Some(&agent[..]));
    assert_eq!(reply.router, Some(giaddr));
    let (lease, reply, dest) = s.ack(&relayed(select(mac(0x20), o.ip)));
    assert_eq!(dest, Destination::Relay(giaddr));
    assert_eq!(reply.relay_info.as_deref(), Some(&agent[..]));
    assert_eq!(lease.network, "rack2");
    assert_eq!(lease.relay.giaddr, Some(giaddr));
    assert_eq!(
        lease.relay.agent_info.as_deref(),
        Some("0104706f72740202abcd")
    );
    // A unicast renewal routed from that segment (no giaddr) is recognised by its ciaddr.
    let (_, _, dest) = s.ack(&renew(mac(0x20), o.ip));
    assert_eq!(dest, Destination::Unicast(o.ip));
    // A NAK through a relay goes to the relay with the broadcast bit set.
    let (nak, dest) = s.nak(&relayed(init_reboot(mac(0x21), ip("198.18.0.100"))));
    assert_eq!(dest, Destination::Relay(giaddr));
    assert!(nak.broadcast);
    // A relay in a network we do not serve: silence.
    let mut far = discover(mac(0x22));
    far.giaddr = ip("198.19.1.1");
    assert_eq!(s.run(&far), Action::Drop(DropReason::UnknownRelayNetwork));
}

fn pxe(m: Mac, a: u16) -> Request {
    Request {
        arch: vec![a],
        vendor_class: Some(format!("PXEClient:Arch:{a:05}:UNDI:002001").into_bytes()),
        ..discover(m)
    }
}

#[test]
fn boot_file_by_architecture() {
    let mut s = Sim::new();
    let file = |s: &mut Sim, r: Request| {
        let (_, reply, _) = s.offer(&r);
        assert_eq!(reply.siaddr, SERVER);
        assert_eq!(reply.pxe_class, s.ctx.pxe_vendor_class);
        assert!(!reply.ipxe_no_pxedhcp);
        reply.boot_file
    };
    assert_eq!(
        file(&mut s, pxe(mac(1), 0)).as_deref(),
        Some("undionly.kpxe")
    );
    assert_eq!(file(&mut s, pxe(mac(1), 7)).as_deref(), Some("ipxe.efi"));
    assert_eq!(file(&mut s, pxe(mac(1), 9)).as_deref(), Some("ipxe.efi"));
    // arm64 only when the firmware has a loader.
    assert_eq!(file(&mut s, pxe(mac(1), 11)), None);
    s.ctx.arm64_loader = Some(ARM64_LOADER.into());
    assert_eq!(
        file(&mut s, pxe(mac(1), 11)).as_deref(),
        Some("ipxe-arm64.efi")
    );
    s.ctx.uefi_loader = "snponly.efi".into();
    assert_eq!(file(&mut s, pxe(mac(1), 7)).as_deref(), Some("snponly.efi"));
    // Vendor class alone, and option 93 alone, both make a PXE client.
    let mut r = pxe(mac(0x20), 7);
    r.arch.clear();
    assert_eq!(file(&mut s, r).as_deref(), Some("snponly.efi"));
    let mut r = pxe(mac(0x20), 0);
    r.vendor_class = None;
    assert_eq!(file(&mut s, r).as_deref(), Some("undionly.kpxe"));
    s.ctx.pxe_vendor_class = true;
    assert_eq!(
        file(&mut s, pxe(mac(1), 0)).as_deref(),
        Some("undionly.kpxe")
    );
    s.ctx.pxe_vendor_class = false;
    // Unknown architecture: address, no boot file.
    assert_eq!(file(&mut s, pxe(mac(0x20), 2)), None);
    // A list: the first one we can serve.
    let mut r = pxe(mac(0x20), 2);
    r.arch = vec![2, 9];
    assert_eq!(file(&mut s, r).as_deref(), Some("snponly.efi"));
    // Not PXE: no boot options at all.
    let (_, reply, _) = s.offer(&discover(mac(0x20)));
    assert_eq!(reply.boot_file, None);
    assert_eq!(reply.siaddr, Ipv4Addr::UNSPECIFIED);
    assert!(!reply.pxe_class);
}

#[test]
fn ipxe_gets_the_http_url() {
    let mut s = Sim::new();
    let ipxe = |m: Mac| Request {
        user_class: Some(b"iPXE".to_vec()),
        ipxe_encap: Some(vec![177, 1, 1]),
        ..pxe(m, 7)
    };
    let (_, reply, _) = s.offer(&ipxe(mac(1)));
    assert_eq!(
        reply.boot_file.as_deref(),
        Some("http://198.18.0.1/boot/52:54:00:00:00:01")
    );
    assert!(reply.ipxe_no_pxedhcp);
    assert!(!reply.pxe_class);
    // Detected by the user class alone, or by option 175 alone; unknown MACs too.
    let mut r = ipxe(mac(0x20));
    r.ipxe_encap = None;
    let (_, reply, _) = s.offer(&r);
    assert_eq!(
        reply.boot_file.as_deref(),
        Some("http://198.18.0.1/boot/52:54:00:00:00:20")
    );
    let mut r = ipxe(mac(0x21));
    r.user_class = None;
    let (_, reply, _) = s.offer(&r);
    assert!(reply.ipxe_no_pxedhcp);
    // Option 67 is set too when the client asks for it.
    let mut r = ipxe(mac(0x22));
    r.params.push(67);
    let (_, reply, _) = s.offer(&r);
    assert!(reply.boot_file_option);
    // The ACK carries the same.
    let (_, reply, _) = s.ack(&Request {
        user_class: Some(b"iPXE".to_vec()),
        ..select(mac(1), ip("198.18.0.10"))
    });
    assert_eq!(
        reply.boot_file.as_deref(),
        Some("http://198.18.0.1/boot/52:54:00:00:00:01")
    );
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut s = Sim::new();
    let r = Request {
        ciaddr: ip("198.18.0.77"),
        ..base(MessageType::Inform, mac(0x20))
    };
    match s.run(&r) {
        Action::Reply(reply, dest) => {
            assert_eq!(reply.kind, ReplyKind::Ack);
            assert_eq!(reply.yiaddr, Ipv4Addr::UNSPECIFIED);
            assert_eq!(reply.ciaddr, ip("198.18.0.77"));
            assert_eq!(reply.lease_time, None);
            assert_eq!(reply.renewal, None);
            assert_eq!(reply.subnet_mask, Some(ip("255.255.255.0")));
            assert_eq!(dest, Destination::Unicast(ip("198.18.0.77")));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.view.leases.is_empty());
    let r = base(MessageType::Inform, mac(0x20));
    assert_eq!(s.run(&r), Action::Drop(DropReason::InformWithoutAddress));
}

#[test]
fn fallback_network_without_store_networks() {
    let mut s = Sim::bare();
    let (o, reply, _) = s.offer(&discover(mac(0x20)));
    assert_eq!(o.ip, ip("198.18.0.128"));
    assert_eq!(reply.router, None);
    let (lease, ..) = s.ack(&select(mac(0x20), o.ip));
    assert_eq!(lease.network, "eth0");
    // A reservation in the interface subnet works with the fallback network too.
    s.put(&node("n1", mac(1), Some("198.18.0.10")));
    assert_eq!(s.dora(mac(1)), ip("198.18.0.10"));
}

#[test]
fn network_without_range_serves_reservations_only() {
    let mut s = Sim::new();
    let mut n = lab();
    n.range = None;
    s.put(&n);
    assert_eq!(s.dora(mac(1)), ip("198.18.0.10"));
    assert_eq!(
        s.run(&discover(mac(0x20))),
        Action::Drop(DropReason::NoDynamicRange)
    );
}

#[test]
fn offers_table_is_bounded() {
    let mut o = Offers::default();
    for i in 0..Offers::MAX as u32 {
        let b = i.to_be_bytes();
        assert!(o.insert(
            T0,
            Offer {
                ip: Ipv4Addr::from(i),
                mac: Mac([0, 0, b[0], b[1], b[2], b[3]]),
                expires: T0 + 10
            }
        ));
    }
    assert!(!o.insert(
        T0,
        Offer {
            ip: ip("255.0.0.1"),
            mac: Mac([1; 6]),
            expires: T0 + 10
        }
    ));
    // Once they expire there is room again.
    assert!(o.insert(
        T0 + 10,
        Offer {
            ip: ip("255.0.0.1"),
            mac: Mac([1; 6]),
            expires: T0 + 20
        }
    ));
    assert_eq!(o.len(), 1);
}

/// Captured packets from real firmware through decode -> handle -> encode, read back with
/// dhcproto: what iPXE and OVMF would receive.
#[test]
fn captured_discovers_end_to_end() {
    use crate::dhcp::wire::{self, tests as caps};
    use dhcproto::v4::{DhcpOption, Message, MessageType as M, OptionCode};
    use dhcproto::Decodable;
    let mut s = Sim::new();
    let answer = |s: &mut Sim, capture: &str| {
        let req = wire::decode(&caps::hex(capture)).unwrap();
        let (_, reply, dest) = s.offer(&req);
        assert_eq!(dest, Destination::Broadcast);
        let mut out = Vec::new();
        wire::encode(&reply, &mut out).unwrap();
        assert!(out.len() <= reply.size_limit());
        let raw = wire::scan_options(&out[wire::HEADER_LEN..]).unwrap();
        (Message::from_bytes(&out).unwrap(), raw)
    };
    // iPXE under SeaBIOS: the HTTP URL in `file`, and 175 with 176 = 1.
    let (m, raw) = answer(&mut s, caps::IPXE_BIOS_DISCOVER);
    assert_eq!(m.opts().msg_type(), Some(M::Offer));
    assert_eq!(m.yiaddr(), ip("198.18.0.100"));
    assert_eq!(m.siaddr(), SERVER);
    assert_eq!(
        m.fname_str().unwrap().unwrap().trim_end_matches('\0'),
        "http://198.18.0.1/boot/52:54:00:aa:bb:cc"
    );
    // iPXE asked for option 67 in its parameter list, so it is there too.
    assert!(m.opts().get(OptionCode::BootfileName).is_some());
    assert!(raw.iter().any(|o| o.code == 175 && o.data == [176, 1, 1]));
    assert!(m.opts().get(OptionCode::ClassIdentifier).is_none());
    // OVMF's own PXE (arch 7): the UEFI loader by TFTP from us, no option 60 (see Context).
    let (m, raw) = answer(&mut s, caps::OVMF_PXE_DISCOVER);
    assert_eq!(
        m.fname_str().unwrap().unwrap().trim_end_matches('\0'),
        "ipxe.efi"
    );
    assert_eq!(m.siaddr(), SERVER);
    assert!(m.flags().broadcast());
    assert!(!raw.iter().any(|o| o.code == 175 || o.code == 60));
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    // busybox udhcpc with arch 7 and a requested address outside the range: a free one.
    let (m, _) = answer(&mut s, caps::UDHCPC_DISCOVER_ARCH7);
    assert_eq!(m.yiaddr(), ip("198.18.0.102"));
    assert_eq!(
        m.fname_str().unwrap().unwrap().trim_end_matches('\0'),
        "ipxe.efi"
    );
}

/// The pool simulation's double lease (seeds 137 and 563): the owner of an address, cut off
/// from the majority, took a client's DHCPRELEASE and gave the address to another client;
/// the majority, whose copy still showed the first client's lease, took over and extended it
/// when that client came back with a DHCPDISCOVER. A taker extends only a client that says
/// it holds the address.
#[test]
fn a_taker_extends_only_a_client_that_says_it_holds_the_address() {
    let mut s = Sim::new();
    // This member (2) sees 3; the owner (1) has been out of sight past the takeover time.
    s.share = Share::new(
        2,
        [1, 2, 3],
        [2, 3],
        std::collections::HashMap::from([(1, T0 - 100)]),
        10,
    );
    let (first, last) = lab().range.unwrap();
    let a = (u32::from(first)..=u32::from(last))
        .map(Ipv4Addr::from)
        .find(|a| s.share.owner(*a) == 1 && s.share.may_extend(s.now, *a))
        .expect("an address of member 1 that member 2 takes over");
    let m = (0x20..=0xff)
        .map(mac)
        .find(|m| s.share.answers(*m))
        .expect("a client member 2 answers");
    s.put(&Lease {
        ip: a,
        mac: m,
        client_id: None,
        hostname: None,
        state: LeaseState::Bound,
        start: s.now,
        expires: s.now + 600,
        network: "lab".into(),
        relay: RelayInfo::default(),
    });
    // Asking anew, the client gets an address of this member's own share, not the old one.
    let (o, ..) = s.offer(&discover(m));
    assert_ne!(o.ip, a);
    assert_eq!(s.share.owner(o.ip), 2);
    s.offers.remove_mac(m);
    // Selecting the old one anyway: not this member's to give, and no NAK either.
    assert_eq!(s.run(&select(m, a)), Action::Drop(DropReason::OtherMember));
    // Renewing, rebinding or rebooting with it: the takeover extends the lease.
    for req in [renew(m, a), init_reboot(m, a)] {
        let (lease, ..) = s.ack(&req);
        assert_eq!((lease.ip, lease.mac), (a, m));
    }
}

/// Not a test: CPU per DORA in the core for store sizes of 0, 10,000 and 100,000 nodes (each
/// with a reservation outside the range) and 0 or 10,000 held leases. Prints microseconds
/// spent in `handle` per exchange (DISCOVER + REQUEST), store writes excluded. Run with
/// `cargo test --lib dora_cost_by_store_size -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn dora_cost_by_store_size() {
    let mac_of = |n: u32| {
        let b = n.to_be_bytes();
        Mac([0x52, 0x55, b[0], b[1], b[2], b[3]])
    };
    for (nodes, leases) in [
        (0u32, 0u32),
        (10_000, 0),
        (100_000, 0),
        (0, 10_000),
        (100_000, 10_000),
    ] {
        let mut s = Sim::bare();
        let first = u32::from(ip("198.20.0.0"));
        s.put(&Network {
            name: "big".into(),
            subnet: "198.16.0.0/12".parse().unwrap(),
            range: Some((Ipv4Addr::from(first), ip("198.23.255.254"))),
            gateway: None,
            domain: None,
        });
        s.store
            .write(|w| {
                for i in 0..nodes {
                    let a = Ipv4Addr::from(u32::from(ip("198.24.0.0")) + i);
                    w.put(&node(&format!("n{i}"), mac_of(i), Some(&a.to_string())))?;
                }
                for i in 0..leases {
                    w.put(&Lease {
                        ip: Ipv4Addr::from(first + i),
                        mac: mac_of(1 << 24 | i),
                        client_id: None,
                        hostname: None,
                        state: LeaseState::Bound,
                        start: T0,
                        expires: T0 + 3600,
                        network: "big".into(),
                        relay: RelayInfo::default(),
                    })?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .unwrap();
        s.view.refresh(&s.store).unwrap();
        let runs = 300u32;
        let mut spent = std::time::Duration::ZERO;
        for i in 0..runs {
            let m = mac_of(2 << 24 | i);
            let t = std::time::Instant::now();
            let offer = s.run(&discover(m));
            spent += t.elapsed();
            let Action::Hold(o, ..) = offer else {
                panic!("no offer: {offer:?}")
            };
            let t = std::time::Instant::now();
            let ack = handle(
                s.now,
                &select(m, o.ip),
                &s.ctx,
                &s.share,
                &s.view,
                &s.offers,
            );
            spent += t.elapsed();
            assert!(matches!(ack, Action::CommitThenReply(..)), "{ack:?}");
            s.run(&select(m, o.ip));
        }
        println!(
            "nodes {nodes:>6} leases {leases:>6}: {:.1} us per DORA in the core",
            spent.as_secs_f64() * 1e6 / f64::from(runs)
        );
    }
}
