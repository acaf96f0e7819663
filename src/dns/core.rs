//! The DNS logic: zones built from a store snapshot, and what to do with one query.
//!
//! Data flow: [`Zones::build`] turns a [`View`] plus the appliance's [`Identity`] into
//! authoritative zones (done again only when the view's change sequence moves; the shell
//! checks that per query). [`handle`] takes one decoded [`Request`], the zones, the client's
//! address, the transport and the [`AccessPolicy`], and returns an [`Action`]: a reply to
//! send, a zone transfer to stream over TCP, a question to forward upstream, or a refusal.
//! No I/O, no clock: the shell owns sockets, upstreams and the cache.
//!
//! The zones:
//! - one forward zone per distinct network `domain`; networks without one share
//!   [`Identity::default_domain`] (`cluster` unless configured). Each zone has an SOA (serial =
//!   the store's change sequence, truncated to 32 bits, so it grows with every change), an NS
//!   naming the appliance, `<hostname>.<domain>` (default `drover.<domain>`) with the
//!   appliance's addresses in that network (all its addresses when it has none there, as
//!   behind a relay), `gateway.<domain>` for the network's gateway, and an A record per node
//!   that has an address: its reservation, else its bound lease;
//! - one reverse zone (`in-addr.arpa`) per network, on the octet boundary at or above its
//!   prefix (a /20 is served as its /16, a /26 as its /24); a zone inside another one we serve
//!   is merged into the outer one. PTR records point back at the names above.
//! - CNAMEs: a node's `aliases` (`drover node set NAME --alias A,B`) are published as CNAMEs
//!   to its name, in its zone, and chased by [`handle`].
//! - pool members (while this member is on the roster): `drover-<member id>.<domain>` for
//!   each roster member, live or not, with its pool address (its PTR points there), and
//!   every member's address also under `drover.<domain>`, after this member's own. The zones
//!   are therefore the same on every member.
//!
//! Built-in names (`drover`, `gateway`, member names) win over a node of the same name; a
//! node outside every network, or without an address, has no records (its name is NXDOMAIN).
//!
//! Answers are authoritative (AA), NXDOMAIN vs NODATA per RFC 2308 (negative answers carry
//! the SOA, TTL = min(SOA TTL, minimum)), empty non-terminals exist (NODATA, RFC 8020), ANY
//! gets one RRset (RFC 8482), AXFR/IXFR only over TCP and only to `axfr_allow` (IXFR is
//! answered with the full zone, RFC 1995 §4), opcodes other than QUERY get NOTIMP, classes
//! other than IN and EDNS versions above 0 get REFUSED and BADVERS. Names outside our zones
//! are forwarded only for clients in a cluster network or `forward_from` (loopback by default)
//! and only with RD set; everyone else gets REFUSED, so drover is no open resolver.
//!
//! Not here: DNSSEC, dynamic updates, NOTIFY, IPv6 (AAAA/ip6.arpa: nodes have no IPv6
//! addresses yet), wildcards, delegations, DHCP-client hostnames without a node record.

use super::wire::{self, Request};
use crate::store::model::{Ipv4Net, LeaseState, Network};
use crate::store::View;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

/// TTL of host, gateway, appliance and PTR records: short, so caches follow admin changes.
pub const HOST_TTL: u32 = 60;
/// TTL of SOA and NS records.
pub const ZONE_TTL: u32 = 300;
/// SOA timers (refresh, retry, expire) for secondaries pulling with AXFR.
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 86400;
/// SOA minimum: how long resolvers cache our NXDOMAIN/NODATA (RFC 2308 §4).
pub const NEGATIVE_TTL: u32 = 30;
/// Longest CNAME chain followed inside our zones.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Name of the network gateway's record.
pub const GATEWAY_LABEL: &str = "gateway";
/// Default appliance host label and default domain.
pub const DEFAULT_HOSTNAME: &str = "drover";
pub const DEFAULT_DOMAIN: &str = "cluster";

/// Who the appliance is, for its own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Host label of the appliance in every zone (`drover`).
    pub hostname: String,
    /// The appliance's IPv4 addresses (its interfaces').
    pub addrs: Vec<Ipv4Addr>,
    /// Domain of networks that have none (`cluster`).
    pub default_domain: String,
    /// This member's store id: the pool's other members are published while it is on the
    /// roster.
    pub member: u64,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            hostname: DEFAULT_HOSTNAME.into(),
            addrs: Vec::new(),
            default_domain: DEFAULT_DOMAIN.into(),
            member: 0,
        }
    }
}

/// A pool member as published: `<hostname>-<id in 16 hex digits>` (the id `drover pool
/// status` shows) with its pool address, which is also one of `<hostname>`'s addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub ip: Ipv4Addr,
}

impl Member {
    fn label(&self, hostname: &str) -> String {
        format!("{hostname}-{:016x}", self.id)
    }
}

/// The pool members `ident` publishes from `view`: every roster member but witnesses, live or
/// not (the zone is the same on every member and changes with the store only), while `ident`
/// itself is on the roster; none otherwise (outside a pool, or after leaving it).
pub fn members(view: &View, ident: &Identity) -> Vec<Member> {
    if !view.members.values().any(|m| m.id == ident.member) {
        return Vec::new();
    }
    // A witness (`drover witness`) serves nothing the nodes could look up.
    view.members
        .values()
        .filter(|m| !m.witness)
        .map(|m| Member {
            id: m.id,
            ip: *m.addr.ip(),
        })
        .collect()
}

/// Who may do what beyond asking about our zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Whether there is anywhere to forward to (upstreams configured).
    pub forwarding: bool,
    /// Clients allowed to use the forwarder besides those in the store's networks.
    pub forward_from: Vec<Ipv4Net>,
    /// Clients allowed to transfer our zones (AXFR/IXFR over TCP).
    pub axfr_allow: Vec<IpAddr>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            forwarding: true,
            forward_from: vec![Ipv4Net::containing(Ipv4Addr::LOCALHOST, 8)
                .unwrap_or_else(|| unreachable!("8 <= 32"))],
            axfr_allow: Vec::new(),
        }
    }
}

impl AccessPolicy {
    /// True when `client` may have names outside our zones resolved.
    pub fn may_forward(&self, client: IpAddr, zones: &Zones) -> bool {
        let v4 = match client {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => a,
                // IPv6 clients: only the loopback, treated as 127.0.0.1.
                None if a.is_loopback() => Ipv4Addr::LOCALHOST,
                None => return false,
            },
        };
        self.forward_from.iter().any(|n| n.contains(v4))
            || zones.networks.iter().any(|n| n.contains(v4))
    }

    fn may_transfer(&self, client: IpAddr) -> bool {
        let canonical = match client {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.axfr_allow.contains(&canonical)
    }
}

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the shell does with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this reply (the shell fits it to the client's size).
    Reply(Message),
    /// Stream this zone transfer over TCP ([`wire::encode_transfer`]).
    Transfer(Message),
    /// Not ours: resolve `Query` upstream and relay the answer.
    Forward(Query),
    /// Send this REFUSED reply (never larger than the request); counted apart.
    Refuse(Message),
}

/// A name with an address, as published: a node, or anything else an admin names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// One label, as stored (`node01`).
    pub name: String,
    pub ip: Ipv4Addr,
    /// Further labels that become CNAMEs to `name` in the same zone.
    pub aliases: Vec<String>,
}

/// The hosts of `view`: every node with a reservation, or else a bound lease.
///
/// A bound lease is used whatever its expiry: zones are rebuilt on store changes, not on the
/// clock, and an expired but unreleased lease is still the node's last known address.
pub fn hosts(view: &View) -> Vec<Host> {
    view.nodes
        .values()
        .filter_map(|n| {
            let ip = n.ip.or_else(|| {
                view.lease_by_mac(n.mac)
                    .filter(|l| l.state == LeaseState::Bound)
                    .map(|l| l.ip)
            })?;
            Some(Host {
                name: n.name.clone(),
                ip,
                aliases: n.aliases.clone(),
            })
        })
        .collect()
}

/// One authoritative zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    origin: Name,
    /// Every name in the zone with its records; empty non-terminals map to no records.
    /// The apex holds SOA and NS first.
    names: HashMap<Name, Vec<Record>>,
}

impl Zone {
    fn new(origin: Name, ns_target: Name, serial: u32) -> Zone {
        let rname = Name::from_ascii("hostmaster")
            .ok()
            .and_then(|h| h.append_domain(&ns_target.base_name()).ok())
            .unwrap_or_else(|| ns_target.clone());
        let soa = SOA::new(
            ns_target.clone(),
            rname,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            NEGATIVE_TTL,
        );
        let apex = vec![
            Record::from_rdata(origin.clone(), ZONE_TTL, RData::SOA(soa)),
            Record::from_rdata(origin.clone(), ZONE_TTL, RData::NS(NS(ns_target))),
        ];
        let mut names = HashMap::new();
        names.insert(origin.clone(), apex);
        Zone { origin, names }
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Adds `data` at `owner` (inside the zone) unless that name already has records of
    /// another kind that `data` would conflict with (CNAME beside anything).
    fn add(&mut self, owner: Name, data: RData) -> bool {
        if !self.origin.zone_of(&owner) {
            return false;
        }
        let rtype = data.record_type();
        let rrs = self.names.entry(owner.clone()).or_default();
        let has_cname = rrs.iter().any(|r| r.record_type() == RecordType::CNAME);
        if has_cname || (rtype == RecordType::CNAME && !rrs.is_empty()) {
            return false;
        }
        if rrs.iter().any(|r| r.data == data) {
            return true;
        }
        rrs.push(Record::from_rdata(owner.clone(), HOST_TTL, data));
        // Empty non-terminals between the owner and the apex.
        let mut parent = owner.base_name();
        while parent.num_labels() > self.origin.num_labels() {
            self.names.entry(parent.clone()).or_default();
            parent = parent.base_name();
        }
        true
    }

    fn soa(&self) -> &Record {
        // Zone::new puts the SOA first at the apex, and nothing removes it.
        &self.names[&self.origin][0]
    }

    /// The SOA as it goes into a negative answer (RFC 2308 §3).
    fn negative_soa(&self) -> Record {
        let mut soa = self.soa().clone();
        soa.ttl = soa.ttl.min(NEGATIVE_TTL);
        soa
    }

    pub fn serial(&self) -> u32 {
        match &self.soa().data {
            RData::SOA(s) => s.serial,
            _ => 0,
        }
    }

    /// All records in canonical name order, so the apex (SOA first) leads (for transfers and
    /// listings).
    pub fn records(&self) -> Vec<&Record> {
        let mut names: Vec<&Name> = self.names.keys().collect();
        names.sort();
        names.into_iter().flat_map(|n| &self.names[n]).collect()
    }
}

/// Every zone drover is authoritative for, from one store snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Zones {
    /// Store change sequence the zones were built from.
    seq: u64,
    zones: Vec<Zone>,
    /// The cluster networks: their clients may use the forwarder.
    networks: Vec<Ipv4Net>,
}

/// `label.domain.` from a label and a domain, or `None` when either is not a valid name.
fn fqdn(label: &str, domain: &Name) -> Option<Name> {
    Name::from_ascii(label).ok()?.append_domain(domain).ok()
}

/// `s` as an absolute domain name (a trailing dot is optional); `None` when invalid or root.
pub fn domain_name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s.trim_end_matches('.')).ok()?;
    n.set_fqdn(true);
    (!n.is_root()).then_some(n)
}

/// The reverse zone origin for `net`: the `in-addr.arpa` name on the octet boundary at or
/// above its prefix (at least /8).
pub fn reverse_origin(net: &Ipv4Net) -> Name {
    let octets = usize::from(net.prefix().clamp(8, 32) / 8);
    let addr = net.addr().octets();
    let mut labels: Vec<String> = addr[..octets].iter().rev().map(|o| o.to_string()).collect();
    labels.push("in-addr".into());
    labels.push("arpa".into());
    Name::from_labels(labels.iter().map(|s| s.as_bytes()))
        .unwrap_or_else(|_| unreachable!("decimal labels are valid"))
}

impl Zones {
    /// The zones for `view` as seen by the appliance `ident`.
    pub fn build(view: &View, ident: &Identity) -> Zones {
        let networks: Vec<Network> = view.networks.values().cloned().collect();
        let members = members(view, ident);
        Zones::from_parts(view.seq(), &networks, &hosts(view), &members, ident)
    }

    /// The zones for explicit networks, hosts and pool members (what [`Zones::build`]
    /// extracts from a view).
    pub fn from_parts(
        seq: u64,
        networks: &[Network],
        hosts: &[Host],
        members: &[Member],
        ident: &Identity,
    ) -> Zones {
        // Serial arithmetic (RFC 1982) copes with the wrap after 2^32 changes.
        let serial = seq as u32;
        let default_domain = domain_name(&ident.default_domain)
            .or_else(|| domain_name(DEFAULT_DOMAIN))
            .unwrap_or_else(Name::root);
        let domain_of = |net: &Network| {
            net.domain
                .as_deref()
                .and_then(domain_name)
                .unwrap_or_else(|| default_domain.clone())
        };
        let appliance = |domain: &Name| {
            fqdn(&ident.hostname, domain)
                .or_else(|| fqdn(DEFAULT_HOSTNAME, domain))
                .unwrap_or_else(|| domain.clone())
        };

        // Forward zones, one per domain.
        let mut forward: BTreeMap<Name, Zone> = BTreeMap::new();
        let mut domains: Vec<Name> = networks.iter().map(domain_of).collect();
        if networks.is_empty() {
            domains.push(default_domain.clone());
        }
        for d in &domains {
            forward
                .entry(d.clone())
                .or_insert_with(|| Zone::new(d.clone(), appliance(d), serial));
        }

        // Reverse zones: drop origins inside another one.
        let mut rev_origins: Vec<(Name, Name)> = Vec::new(); // (origin, NS target)
        for net in networks {
            let o = reverse_origin(&net.subnet);
            if !rev_origins.iter().any(|(x, _)| *x == o) {
                rev_origins.push((o, appliance(&domain_of(net))));
            }
        }
        let outer: Vec<(Name, Name)> = rev_origins
            .iter()
            .filter(|(o, _)| !rev_origins.iter().any(|(x, _)| x != o && x.zone_of(o)))
            .cloned()
            .collect();
        let mut reverse: Vec<Zone> = outer
            .into_iter()
            .map(|(o, ns)| Zone::new(o, ns, serial))
            .collect();

        // PTRs: first name wins per address (appliance, gateway, nodes in name order).
        let mut ptrs: BTreeMap<Ipv4Addr, Name> = BTreeMap::new();
        let mut publish = |zone: &mut Zone, owner: Name, ip: Ipv4Addr| {
            if zone.add(owner.clone(), RData::A(A(ip))) {
                ptrs.entry(ip).or_insert(owner);
            }
        };
        let member_labels: Vec<String> = members.iter().map(|m| m.label(&ident.hostname)).collect();
        let reserved = |label: &str| {
            label.eq_ignore_ascii_case(&ident.hostname)
                || label.eq_ignore_ascii_case(GATEWAY_LABEL)
                || member_labels.iter().any(|m| label.eq_ignore_ascii_case(m))
        };
        // Pool members: each under its own name (which its address points back to), and all
        // of them under the appliance's name after this member's own addresses. Like this
        // member's addresses, only those inside the network, or all when none is (a relayed
        // network).
        let publish_members =
            |zone: &mut Zone,
             domain: &Name,
             inside: &dyn Fn(Ipv4Addr) -> bool,
             publish: &mut dyn FnMut(&mut Zone, Name, Ipv4Addr)| {
                let any_inside = members.iter().any(|m| inside(m.ip));
                let shown: Vec<&Member> = members
                    .iter()
                    .filter(|m| !any_inside || inside(m.ip))
                    .collect();
                for m in &shown {
                    if let Some(name) = fqdn(&m.label(&ident.hostname), domain) {
                        publish(zone, name, m.ip);
                    }
                }
                shown.iter().map(|m| m.ip).collect::<Vec<_>>()
            };
        for net in networks {
            let domain = domain_of(net);
            let Some(zone) = forward.get_mut(&domain) else {
                continue;
            };
            let inside: Vec<Ipv4Addr> = ident
                .addrs
                .iter()
                .copied()
                .filter(|a| net.subnet.contains(*a))
                .collect();
            let mine = if inside.is_empty() {
                &ident.addrs
            } else {
                &inside
            };
            let pool = publish_members(zone, &domain, &|a| net.subnet.contains(a), &mut publish);
            for a in mine.iter().chain(&pool) {
                publish(zone, appliance(&domain), *a);
            }
            if let (Some(gw), Some(name)) = (net.gateway, fqdn(GATEWAY_LABEL, &domain)) {
                publish(zone, name, gw);
            }
        }
        if networks.is_empty() {
            if let Some(zone) = forward.get_mut(&default_domain) {
                let pool = publish_members(zone, &default_domain, &|_| true, &mut publish);
                for a in ident.addrs.iter().chain(&pool) {
                    publish(zone, appliance(&default_domain), *a);
                }
            }
        }
        for host in hosts {
            if reserved(&host.name) {
                continue;
            }
            let Some(i) = networks.iter().position(|n| n.subnet.contains(host.ip)) else {
                continue;
            };
            let domain = &domains[i];
            let (Some(zone), Some(name)) = (forward.get_mut(domain), fqdn(&host.name, domain))
            else {
                continue;
            };
            publish(zone, name.clone(), host.ip);
            for alias in &host.aliases {
                if reserved(alias) {
                    continue;
                }
                if let Some(a) = fqdn(alias, domain) {
                    zone.add(a, RData::CNAME(CNAME(name.clone())));
                }
            }
        }
        for (ip, target) in ptrs {
            let owner = Name::from(ip);
            if let Some(z) = reverse
                .iter_mut()
                .filter(|z| z.origin.zone_of(&owner))
                .max_by_key(|z| z.origin.num_labels())
            {
                z.add(owner, RData::PTR(PTR(target)));
            }
        }

        let mut zones: Vec<Zone> = forward.into_values().collect();
        zones.extend(reverse);
        Zones {
            seq,
            zones,
            networks: networks.iter().map(|n| n.subnet).collect(),
        }
    }

    /// The store change sequence these zones reflect.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone that is authoritative for `name` (longest match).
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
    }

    fn lookup(&self, name: &Name, rtype: RecordType) -> Vec<Record> {
        self.find(name)
            .and_then(|z| z.names.get(name))
            .map(|rrs| {
                rrs.iter()
                    .filter(|r| r.record_type() == rtype)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The reply skeleton for `req`: ID, opcode, RD/CD copied, question, OPT if the client sent
/// one.
fn reply_to(req: &Request) -> Message {
    let mut m = wire::error_reply(&req.header, ResponseCode::NoError);
    m.queries.extend(req.question.iter().cloned());
    if req.edns.is_some() {
        m.edns = Some(wire::reply_edns());
    }
    m
}

/// A REFUSED reply to `req`: header, question and OPT only, so never larger than the request.
pub fn refused(req: &Request) -> Message {
    let mut m = reply_to(req);
    m.metadata.response_code = ResponseCode::Refused;
    m
}

/// Decides what to do with one query (see the module docs for the rules).
pub fn handle(
    req: &Request,
    zones: &Zones,
    client: IpAddr,
    transport: Transport,
    policy: &AccessPolicy,
) -> Action {
    let h = &req.header;
    if h.op_code != OpCode::Query {
        return Action::Reply(wire::error_reply(h, ResponseCode::NotImp));
    }
    let Some(q) = &req.question else {
        return Action::Reply(wire::error_reply(h, ResponseCode::FormErr));
    };
    let may_forward = policy.forwarding && policy.may_forward(client, zones);
    let mut m = reply_to(req);
    m.metadata.recursion_available = may_forward;
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        m.metadata.response_code = ResponseCode::BADVERS;
        return Action::Reply(m);
    }
    if !wire::is_internet(q.query_class()) {
        return Action::Refuse(refused(req));
    }
    let qtype = q.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return transfer(req, q, zones, client, transport, policy);
    }
    if matches!(qtype, RecordType::OPT) {
        m.metadata.response_code = ResponseCode::FormErr;
        return Action::Reply(m);
    }
    let Some(zone) = zones.find(q.name()) else {
        return if may_forward && h.recursion_desired {
            Action::Forward(q.clone())
        } else {
            Action::Refuse(refused(req))
        };
    };
    m.metadata.authoritative = true;
    answer(&mut m, zone, zones, q);
    Action::Reply(m)
}

/// Fills `m` with the authoritative answer to `q` from `zone` (chasing CNAMEs in `zones`).
fn answer(m: &mut Message, zone: &Zone, zones: &Zones, q: &Query) {
    let qtype = q.query_type();
    let mut name = q.name().clone();
    let mut zone = zone;
    for _ in 0..=MAX_CNAME_CHAIN {
        let Some(rrs) = zone.names.get(&name) else {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.authorities.push(zone.negative_soa());
            return;
        };
        let owned = |r: &Record| {
            let mut r = r.clone();
            r.name = name.clone(); // the client's spelling (0x20-safe)
            r
        };
        let cname = rrs.iter().find(|r| r.record_type() == RecordType::CNAME);
        if let (Some(c), false) = (cname, matches!(qtype, RecordType::CNAME | RecordType::ANY)) {
            m.answers.push(owned(c));
            let RData::CNAME(CNAME(target)) = &c.data else {
                return;
            };
            match zones.find(target) {
                Some(z) => {
                    zone = z;
                    name = target.clone();
                    continue;
                }
                // Outside our zones: the resolver follows it.
                None => return,
            }
        }
        let matching: Vec<Record> = if qtype == RecordType::ANY {
            // RFC 8482: one RRset (the first type at the name) rather than everything.
            let first = rrs.first().map(|r| r.record_type());
            rrs.iter()
                .filter(|r| Some(r.record_type()) == first)
                .map(owned)
                .collect()
        } else {
            rrs.iter()
                .filter(|r| r.record_type() == qtype)
                .map(owned)
                .collect()
        };
        if matching.is_empty() {
            // NODATA: the name exists (perhaps as an empty non-terminal).
            m.authorities.push(zone.negative_soa());
            return;
        }
        if qtype == RecordType::NS {
            for ns in &matching {
                if let RData::NS(NS(target)) = &ns.data {
                    m.additionals.extend(zones.lookup(target, RecordType::A));
                }
            }
        }
        m.answers.extend(matching);
        return;
    }
    // A chain longer than MAX_CNAME_CHAIN (only possible with alias loops): stop there.
}

fn transfer(
    req: &Request,
    q: &Query,
    zones: &Zones,
    client: IpAddr,
    transport: Transport,
    policy: &AccessPolicy,
) -> Action {
    let zone = zones.zones.iter().find(|z| z.origin == *q.name());
    let (Some(zone), Transport::Tcp, true) = (zone, transport, policy.may_transfer(client)) else {
        return Action::Refuse(refused(req));
    };
    let mut m = reply_to(req);
    m.metadata.authoritative = true;
    m.answers.extend(zone.records().into_iter().cloned());
    m.answers.push(zone.soa().clone());
    Action::Transfer(m)
}

/// A query for `name`/`qtype` as a client would send it (RD set, no EDNS), for
/// `drover dns check` and tests.
pub fn synthetic_request(name: &Name, qtype: RecordType) -> Request {
    let mut header = hickory_proto::op::Metadata::new(0, MessageType::Query, OpCode::Query);
    header.recursion_desired = true;
    Request {
        header,
        question: Some(Query::query(name.clone(), qtype)),
        edns: None,
        len: 0,
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
