use super::*;
use crate::store::model::Network;
use hickory_proto::op::Edns;

fn net(name: &str, subnet: &str, gateway: Option<&str>, domain: Option<&str>) -> Network {
    Network {
        name: name.into(),
        subnet: subnet.parse().unwrap(),
        range: None,
        gateway: gateway.map(|g| g.parse().unwrap()),
        domain: domain.map(String::from),
    }
}

fn host(name: &str, ip: &str, aliases: &[&str]) -> Host {
    Host {
        name: name.into(),
        ip: ip.parse().unwrap(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    }
}

fn ident() -> Identity {
    Identity {
        addrs: vec![Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 19, 0, 1)],
        ..Identity::default()
    }
}

fn zones() -> Zones {
    let networks = [
        net(
            "lab",
            "198.18.0.0/24",
            Some("198.18.0.254"),
            Some("lab.test"),
        ),
        net("big", "198.19.0.0/20", None, None),
    ];
    let hosts = [
        host("node1", "198.18.0.10", &["web", "www"]),
        host("node2", "198.19.3.7", &[]),
        host("drover", "198.18.0.99", &[]), // built-in name wins
        host("stray", "203.0.113.5", &[]),  // outside every network
    ];
    Zones::from_parts(42, &networks, &hosts, &[], &ident())
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn ask(z: &Zones, qname: &str, qtype: RecordType) -> Action {
    ask_from(z, qname, qtype, "198.18.0.10", Transport::Udp)
}

fn ask_from(z: &Zones, qname: &str, qtype: RecordType, client: &str, t: Transport) -> Action {
    let req = synthetic_request(&name(qname), qtype);
    let policy = AccessPolicy {
        axfr_allow: vec!["198.18.0.2".parse().unwrap()],
        ..AccessPolicy::default()
    };
    handle(&req, z, client.parse().unwrap(), t, &policy)
}

fn reply(a: Action) -> Message {
    match a {
        Action::Reply(m) => m,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

#[test]
fn zones_cover_domains_and_reverse_boundaries() {
    let z = zones();
    let origins: Vec<String> = z.zones().iter().map(|z| z.origin().to_string()).collect();
    assert_eq!(
        origins,
        [
            "cluster.",
            "lab.test.",
            "0.18.198.in-addr.arpa.",
            "19.198.in-addr.arpa."
        ]
    );
    assert!(z.zones().iter().all(|z| z.serial() == 42));
    assert_eq!(
        reverse_origin(&"10.1.2.0/26".parse().unwrap()),
        name("2.1.10.in-addr.arpa.")
    );
    assert_eq!(
        reverse_origin(&"10.0.0.0/7".parse().unwrap()),
        name("10.in-addr.arpa.")
    );
}

#[test]
fn nested_reverse_zones_merge_into_the_outer_one() {
    let networks = [
        net("a", "10.1.0.0/20", None, None),
        net("b", "10.1.32.0/24", None, None),
    ];
    let z = Zones::from_parts(1, &networks, &[host("n", "10.1.32.5", &[])], &[], &ident());
    let origins: Vec<String> = z.zones().iter().map(|z| z.origin().to_string()).collect();
    assert_eq!(origins, ["cluster.", "1.10.in-addr.arpa."]);
    let m = reply(ask(&z, "5.32.1.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn a_record_is_authoritative() {
    let m = reply(ask(&zones(), "NODE1.lab.test.", RecordType::A));
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 18, 0, 10)]);
    // The owner is spelled as asked.
    assert_eq!(m.answers[0].name.to_ascii(), "NODE1.lab.test.");
    assert!(m.metadata.recursion_available);
    // A /20 network without a domain lands in the default domain.
    let m = reply(ask(&zones(), "node2.cluster.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 19, 3, 7)]);
}

#[test]
fn appliance_and_gateway_have_names() {
    let z = zones();
    let m = reply(ask(&z, "drover.lab.test.", RecordType::A));
    assert_eq!(
        a_records(&m),
        [Ipv4Addr::new(198, 18, 0, 1)],
        "not the node called drover"
    );
    let m = reply(ask(&z, "gateway.lab.test.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 18, 0, 254)]);
    let m = reply(ask(&z, "drover.cluster.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 19, 0, 1)]);
    let m = reply(ask(&z, "gateway.cluster.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn aaaa_for_a_node_is_nodata_with_soa() {
    let m = reply(ask(&zones(), "node1.lab.test.", RecordType::AAAA));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    let soa = &m.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.ttl, NEGATIVE_TTL);
    assert!(m.metadata.authoritative);
}

#[test]
fn unknown_name_is_nxdomain_with_soa() {
    let m = reply(ask(&zones(), "nope.lab.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // A node outside every network has no records.
    let m = reply(ask(&zones(), "stray.lab.test.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn empty_non_terminal_is_nodata() {
    // 3.19.198.in-addr.arpa exists only as the parent of node2's PTR.
    let m = reply(ask(&zones(), "3.19.198.in-addr.arpa.", RecordType::PTR));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = reply(ask(&zones(), "4.19.198.in-addr.arpa.", RecordType::PTR));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn ptr_records_point_back() {
    let z = zones();
    let ptr = |q: &str| -> Vec<String> {
        reply(ask(&z, q, RecordType::PTR))
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    };
    assert_eq!(ptr("10.0.18.198.in-addr.arpa."), ["node1.lab.test."]);
    assert_eq!(ptr("1.0.18.198.in-addr.arpa."), ["drover.lab.test."]);
    assert_eq!(ptr("254.0.18.198.in-addr.arpa."), ["gateway.lab.test."]);
    assert_eq!(ptr("7.3.19.198.in-addr.arpa."), ["node2.cluster."]);
}

#[test]
fn pool_members_have_names_and_share_the_appliance_name() {
    use crate::store::model::PoolMember;
    let mut view = View::default();
    let n = net("lab", "198.18.0.0/24", None, Some("lab.test"));
    view.networks.insert(n.name.clone(), n);
    let me = Identity {
        member: 0xa,
        ..ident()
    };
    let row = |id: u64, last: u8| PoolMember {
        id,
        addr: std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, last), 7946),
        joined_ms: 0,
        dead_ms: None,
        drained_ms: None,
        witness: false,
    };
    for r in [row(0xb, 2), row(0xc, 3)] {
        view.members.insert(PoolMember::key_of(r.id), r);
    }
    // Not on the roster (outside a pool, or after leaving it): only itself.
    let z = Zones::build(&view, &me);
    let m = reply(ask(&z, "drover.lab.test.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 18, 0, 1)]);
    let r = row(0xa, 1);
    view.members.insert(PoolMember::key_of(r.id), r);
    let z = Zones::build(&view, &me);
    let m = reply(ask(&z, "drover.lab.test.", RecordType::A));
    assert_eq!(
        a_records(&m),
        [1, 2, 3].map(|i| Ipv4Addr::new(198, 18, 0, i)),
        "this member's own address first"
    );
    let m = reply(ask(&z, "drover-000000000000000c.lab.test.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 18, 0, 3)]);
    let ptr = reply(ask(&z, "2.0.18.198.in-addr.arpa.", RecordType::PTR));
    assert_eq!(
        ptr.answers[0].data.to_string(),
        "drover-000000000000000b.lab.test."
    );
    // Another member builds the same records (order aside).
    let other = Identity {
        member: 0xb,
        addrs: vec![Ipv4Addr::new(198, 18, 0, 2)],
        ..ident()
    };
    let z2 = Zones::build(&view, &other);
    let mut a = a_records(&reply(ask(&z2, "drover.lab.test.", RecordType::A)));
    a.sort();
    assert_eq!(a, [1, 2, 3].map(|i| Ipv4Addr::new(198, 18, 0, i)));
    let ptr = reply(ask(&z2, "1.0.18.198.in-addr.arpa.", RecordType::PTR));
    assert_eq!(
        ptr.answers[0].data.to_string(),
        "drover-000000000000000a.lab.test."
    );
}

#[test]
fn soa_and_ns_at_the_apex() {
    let z = zones();
    let m = reply(ask(&z, "lab.test.", RecordType::SOA));
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("no SOA: {m:?}")
    };
    assert_eq!(soa.serial, 42);
    assert_eq!(soa.mname, name("drover.lab.test."));
    assert_eq!(soa.rname, name("hostmaster.lab.test."));
    let m = reply(ask(&z, "lab.test.", RecordType::NS));
    assert_eq!(m.answers[0].data.to_string(), "drover.lab.test.");
    assert_eq!(m.additionals.len(), 1, "glue for the NS target");
    let m = reply(ask(&z, "0.18.198.in-addr.arpa.", RecordType::NS));
    assert_eq!(m.answers[0].data.to_string(), "drover.lab.test.");
}

#[test]
fn aliases_are_cnames_chased_in_zone() {
    let z = zones();
    let m = reply(ask(&z, "web.lab.test.", RecordType::A));
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 18, 0, 10)]);
    let m = reply(ask(&z, "www.lab.test.", RecordType::CNAME));
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data.to_string(), "node1.lab.test.");
    // NODATA at the target keeps the CNAME in the answer.
    let m = reply(ask(&z, "web.lab.test.", RecordType::AAAA));
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn any_gets_one_rrset() {
    let m = reply(ask(&zones(), "lab.test.", RecordType::ANY));
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = reply(ask(&zones(), "drover.lab.test.", RecordType::ANY));
    assert_eq!(a_records(&m).len(), 1);
}

#[test]
fn outside_names_are_forwarded_for_cluster_clients_only() {
    let z = zones();
    let fwd = ask(&z, "example.test.", RecordType::A);
    assert!(matches!(fwd, Action::Forward(ref q) if q.name() == &name("example.test.")));
    let local = ask_from(
        &z,
        "example.test.",
        RecordType::A,
        "127.0.0.1",
        Transport::Udp,
    );
    assert!(matches!(local, Action::Forward(_)));
    let mapped = ask_from(
        &z,
        "example.test.",
        RecordType::A,
        "::ffff:198.19.1.1",
        Transport::Udp,
    );
    assert!(matches!(mapped, Action::Forward(_)));
    let outside = ask_from(
        &z,
        "example.test.",
        RecordType::A,
        "192.0.2.9",
        Transport::Udp,
    );
    let Action::Refuse(m) = outside else {
        panic!("open resolver: {outside:?}")
    };
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    // Outsiders still get our own zones (we are their authority).
    let m = reply(ask_from(
        &z,
        "node1.lab.test.",
        RecordType::A,
        "192.0.2.9",
        Transport::Udp,
    ));
    assert_eq!(a_records(&m).len(), 1);
    assert!(!m.metadata.recursion_available);
}

#[test]
fn no_upstreams_or_no_rd_means_refused() {
    let z = zones();
    let mut req = synthetic_request(&name("example.test."), RecordType::A);
    let client = "198.18.0.10".parse().unwrap();
    let off = AccessPolicy {
        forwarding: false,
        ..AccessPolicy::default()
    };
    assert!(matches!(
        handle(&req, &z, client, Transport::Udp, &off),
        Action::Refuse(_)
    ));
    req.header.recursion_desired = false;
    let on = AccessPolicy::default();
    assert!(matches!(
        handle(&req, &z, client, Transport::Udp, &on),
        Action::Refuse(_)
    ));
}

#[test]
fn axfr_only_over_tcp_to_allowed_addresses() {
    let z = zones();
    let allowed = "198.18.0.2";
    let Action::Transfer(m) = ask_from(&z, "lab.test.", RecordType::AXFR, allowed, Transport::Tcp)
    else {
        panic!("no transfer")
    };
    let first = m.answers.first().unwrap();
    let last = m.answers.last().unwrap();
    assert_eq!(first.record_type(), RecordType::SOA);
    assert_eq!(last.record_type(), RecordType::SOA);
    assert!(m
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::CNAME));
    for (client, t) in [
        (allowed, Transport::Udp),
        ("198.18.0.10", Transport::Tcp),
        ("192.0.2.9", Transport::Tcp),
    ] {
        let a = ask_from(&z, "lab.test.", RecordType::AXFR, client, t);
        assert!(matches!(a, Action::Refuse(_)), "{client} {t:?}: {a:?}");
    }
    // Not a zone apex, or not ours.
    let a = ask_from(
        &z,
        "node1.lab.test.",
        RecordType::AXFR,
        allowed,
        Transport::Tcp,
    );
    assert!(matches!(a, Action::Refuse(_)));
    let a = ask_from(
        &z,
        "example.test.",
        RecordType::IXFR,
        allowed,
        Transport::Tcp,
    );
    assert!(matches!(a, Action::Refuse(_)));
}

#[test]
fn other_opcodes_get_notimp() {
    let mut req = synthetic_request(&name("lab.test."), RecordType::SOA);
    req.header.op_code = OpCode::Update;
    req.question = None;
    let m = reply(handle(
        &req,
        &zones(),
        "198.18.0.10".parse().unwrap(),
        Transport::Udp,
        &AccessPolicy::default(),
    ));
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    assert!(m.queries.is_empty());
}

#[test]
fn other_classes_are_refused_and_edns_versions_checked() {
    let z = zones();
    let client = "198.18.0.10".parse().unwrap();
    let policy = AccessPolicy::default();
    let mut req = synthetic_request(&name("version.bind."), RecordType::TXT);
    req.question
        .as_mut()
        .unwrap()
        .set_query_class(hickory_proto::rr::DNSClass::CH);
    assert!(matches!(
        handle(&req, &z, client, Transport::Udp, &policy),
        Action::Refuse(_)
    ));

    let mut req = synthetic_request(&name("node1.lab.test."), RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    req.edns = Some(edns);
    let m = reply(handle(&req, &z, client, Transport::Udp, &policy));
    assert_eq!(m.metadata.response_code, ResponseCode::BADVERS);
    assert!(m.edns.is_some());
}

#[test]
fn edns_clients_get_an_opt_back() {
    let z = zones();
    let mut req = synthetic_request(&name("node1.lab.test."), RecordType::A);
    req.edns = Some(Edns::new());
    let m = reply(handle(
        &req,
        &z,
        "198.18.0.10".parse().unwrap(),
        Transport::Udp,
        &AccessPolicy::default(),
    ));
    assert_eq!(m.edns.unwrap().max_payload(), wire::MAX_UDP_SIZE);
}

#[test]
fn build_from_a_view_uses_reservations_and_bound_leases() {
    use crate::store::model::{Lease, Mac, Node, RelayInfo};
    let mut view = View::default();
    let n = net("lab", "198.18.0.0/24", None, Some("lab.test"));
    view.networks.insert(n.name.clone(), n);
    for (i, (nm, ip)) in [
        ("fixed", Some("198.18.0.20")),
        ("dyn", None),
        ("none", None),
    ]
    .iter()
    .enumerate()
    {
        view.nodes.insert(
            nm.to_string(),
            Node {
                name: nm.to_string(),
                mac: Mac([2, 0, 0, 0, 0, i as u8]),
                ip: ip.map(|s| s.parse().unwrap()),
                image: None,
                group: None,
                aliases: Vec::new(),
                root: None,
                image_version: None,
                swarm: None,
            },
        );
    }
    // `View` keeps its by-MAC index private; the public maps are enough for `hosts` only
    // through `lease_by_mac`, so a lease here is invisible and `dyn` has no address.
    view.leases.insert(
        Ipv4Addr::new(198, 18, 0, 100),
        Lease {
            ip: Ipv4Addr::new(198, 18, 0, 100),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            client_id: None,
            hostname: None,
            state: LeaseState::Bound,
            start: 0,
            expires: u64::MAX,
            network: "lab".into(),
            relay: RelayInfo::default(),
        },
    );
    let hs = hosts(&view);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].name, "fixed");
    let z = Zones::build(&view, &ident());
    let m = reply(ask(&z, "fixed.lab.test.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(198, 18, 0, 20)]);
}

#[test]
fn ten_thousand_hosts() {
    let networks = [net(
        "big",
        "10.0.0.0/16",
        Some("10.0.0.1"),
        Some("big.test"),
    )];
    let hosts: Vec<Host> = (0..10_000u32)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 1, 0)) + i);
            host(&format!("n{i:05}"), &ip.to_string(), &[])
        })
        .collect();
    let z = Zones::from_parts(7, &networks, &hosts, &[], &ident());
    let m = reply(ask(&z, "n09999.big.test.", RecordType::A));
    assert_eq!(a_records(&m), [Ipv4Addr::new(10, 0, 40, 15)]);
    let m = reply(ask(&z, "15.40.0.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(m.answers[0].data.to_string(), "n09999.big.test.");
}
