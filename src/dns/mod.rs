//! DNS for the cluster: authoritative for the networks' domains and reverse zones, built from
//! the store; a caching forwarder for everything else, for cluster clients only.
//!
//! - [`wire`]: bytes <-> hickory-proto messages, size limits and truncation (no I/O);
//! - [`core`]: zones from a store snapshot, and the decision for one query (no I/O);
//! - [`serve`]: the tokio shell: UDP and TCP listeners, zone rebuilds on store changes, the
//!   forwarder and its cache;
//! - [`explain`]: what `drover dns check NAME [TYPE]` prints.
//!
//! Not supported: DNSSEC, dynamic updates (RFC 2136), NOTIFY, IXFR deltas (full zone
//! instead), IPv6 node addresses (AAAA answers NODATA), DNS over TLS/HTTPS, EDNS options
//! (cookies, client subnet), delegation below the cluster domains.

pub mod core;
pub mod serve;
pub mod wire;

use self::core::{AccessPolicy, Action, Identity, Transport, Zones};
use crate::store::View;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// Why `drover dns check` could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("{0:?} is not a domain name")]
    BadName(String),
    #[error("{0:?} is not a record type (A, AAAA, PTR, SOA, NS, CNAME, ANY, ...)")]
    BadType(String),
}

/// What drover would answer a cluster client asking `name` (type `qtype`, default A; an IPv4
/// address asks for its PTR). `upstreams` are named for forwarded names.
pub fn explain(
    view: &View,
    ident: &Identity,
    policy: &AccessPolicy,
    upstreams: &[SocketAddr],
    name: &str,
    qtype: Option<&str>,
) -> Result<String, ExplainError> {
    let (qname, default_type) = match name.parse::<Ipv4Addr>() {
        Ok(ip) => (Name::from(ip), RecordType::PTR),
        Err(_) => {
            let mut n =
                Name::from_ascii(name).map_err(|_| ExplainError::BadName(name.to_string()))?;
            n.set_fqdn(true);
            (n, RecordType::A)
        }
    };
    let qtype = match qtype {
        None => default_type,
        Some(t) => RecordType::from_str(&t.to_ascii_uppercase())
            .map_err(|_| ExplainError::BadType(t.to_string()))?,
    };
    let zones = Zones::build(view, ident);
    let req = self::core::synthetic_request(&qname, qtype);
    // Asked as a client inside the cluster would (loopback is always allowed to forward
    // under the default policy; the admin runs this on the appliance).
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut out = String::new();
    let _ = writeln!(out, "question: {qname} {qtype}");
    match self::core::handle(&req, &zones, client, Transport::Tcp, policy) {
        Action::Reply(m) | Action::Transfer(m) => {
            let zone = zones.find(&qname);
            match zone {
                Some(z) => {
                    let _ = writeln!(
                        out,
                        "authoritative: zone {} (serial {})",
                        z.origin(),
                        z.serial()
                    );
                }
                None => {
                    let _ = writeln!(out, "answered by drover itself");
                }
            }
            let rcode = m.metadata.response_code;
            let kind = match (rcode, m.answers.is_empty()) {
                (ResponseCode::NoError, true) => {
                    " (NODATA: the name exists, without records of this type)"
                }
                (ResponseCode::NXDomain, _) => " (the name does not exist)",
                _ => "",
            };
            let name = match rcode {
                ResponseCode::NoError => "NOERROR".to_string(),
                ResponseCode::NXDomain => "NXDOMAIN".to_string(),
                ResponseCode::Refused => "REFUSED".to_string(),
                ResponseCode::NotImp => "NOTIMP".to_string(),
                ResponseCode::FormErr => "FORMERR".to_string(),
                other => other.to_string(),
            };
            let _ = writeln!(out, "status: {name}{kind}");
            for r in &m.answers {
                let _ = writeln!(out, "answer: {r}");
            }
            for r in &m.authorities {
                let _ = writeln!(out, "authority: {r}");
            }
            for r in &m.additionals {
                let _ = writeln!(out, "additional: {r}");
            }
        }
        Action::Forward(_) => {
            if upstreams.is_empty() {
                let _ = writeln!(out, "not in drover's zones; no upstream resolvers: REFUSED");
            } else {
                let list: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
                let _ = writeln!(
                    out,
                    "not in drover's zones: forwarded to {} (cached up to {} s)",
                    list.join(", "),
                    serve::CACHE_MAX_TTL
                );
            }
        }
        Action::Refuse(_) => {
            let _ = writeln!(
                out,
                "not in drover's zones, and forwarding is off (no upstream resolvers): REFUSED"
            );
        }
    }
    let origins: Vec<String> = zones
        .zones()
        .iter()
        .map(|z| z.origin().to_string())
        .collect();
    let _ = writeln!(out, "zones: {}", origins.join(", "));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{Mac, Network, Node};

    fn view() -> View {
        let mut v = View::default();
        v.networks.insert(
            "lab".into(),
            Network {
                name: "lab".into(),
                subnet: "198.18.0.0/24".parse().unwrap(),
                range: None,
                gateway: None,
                domain: Some("lab.test".into()),
            },
        );
        v.nodes.insert(
            "node1".into(),
            Node {
                name: "node1".into(),
                mac: Mac([2, 0, 0, 0, 0, 1]),
                ip: Some("198.18.0.10".parse().unwrap()),
                image: None,
                group: None,
                aliases: Vec::new(),
                root: None,
                image_version: None,
                swarm: None,
            },
        );
        v
    }

    fn check(name: &str, qtype: Option<&str>, upstreams: &[SocketAddr]) -> String {
        explain(
            &view(),
            &Identity::default(),
            &AccessPolicy::default(),
            upstreams,
            name,
            qtype,
        )
        .unwrap()
    }

    #[test]
    fn explains_answers_and_forwarding() {
        let out = check("node1.lab.test", None, &[]);
        assert!(out.contains("authoritative: zone lab.test."), "{out}");
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("198.18.0.10"), "{out}");
        let out = check("198.18.0.10", None, &[]);
        assert!(out.contains("node1.lab.test."), "{out}");
        let out = check("node1.lab.test", Some("aaaa"), &[]);
        assert!(out.contains("NODATA"), "{out}");
        let out = check("nope.lab.test", None, &[]);
        assert!(out.contains("does not exist"), "{out}");
        let up: SocketAddr = "198.18.0.53:53".parse().unwrap();
        let out = check("example.test", None, &[up]);
        assert!(out.contains("forwarded to 198.18.0.53:53"), "{out}");
        assert!(matches!(
            explain(
                &view(),
                &Identity::default(),
                &AccessPolicy::default(),
                &[],
                "x",
                Some("NOPE")
            ),
            Err(ExplainError::BadType(_))
        ));
    }
}
