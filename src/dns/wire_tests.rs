use super::*;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData};
use std::net::Ipv4Addr;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `dig -p 15353 @127.0.0.1 node1.lab.test A` (BIND 9.18): RD, AD, EDNS 1232 with a cookie.
const DIG_A_EDNS: &str = "99ee01200001000000000001056e6f646531036c61620474657374000001000100\
                          002904d000000000000c000a0008be536376446ed946";
/// `dig +noedns ... node1.lab.test AAAA`.
const DIG_AAAA_NOEDNS: &str = "920c01200001000000000000056e6f646531036c6162047465737400001c0001";
/// `kdig -x 198.18.0.10` (Knot 3.2): PTR, no EDNS.
const KDIG_PTR: &str = "35bc0120000100000000000002313001300231380331393807696e2d616464720461727061\
                        00000c0001";

#[test]
fn captured_dig_query_with_edns() {
    let bytes = hex(DIG_A_EDNS);
    let req = decode(&bytes).unwrap();
    assert_eq!(req.header.id, 0x99ee);
    assert!(req.header.recursion_desired);
    let q = req.question.as_ref().unwrap();
    assert_eq!(q.name(), &Name::from_ascii("node1.lab.test.").unwrap());
    assert_eq!(q.query_type(), RecordType::A);
    let edns = req.edns.as_ref().unwrap();
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(req.udp_limit(), 1232);
    assert_eq!(req.len, bytes.len());
}

#[test]
fn captured_queries_without_edns() {
    let req = decode(&hex(DIG_AAAA_NOEDNS)).unwrap();
    assert_eq!(req.question.unwrap().query_type(), RecordType::AAAA);
    assert!(req.edns.is_none());
    let req = decode(&hex(KDIG_PTR)).unwrap();
    assert_eq!(req.udp_limit(), 512);
    let q = req.question.unwrap();
    assert_eq!(q.query_type(), RecordType::PTR);
    assert_eq!(q.name().to_ascii(), "10.0.18.198.in-addr.arpa.");
}

#[test]
fn short_and_responses_are_dropped() {
    assert_eq!(decode(&[0; 11]), Err(WireError::Short(11)));
    let mut resp = hex(KDIG_PTR);
    resp[2] |= 0x80;
    assert_eq!(decode(&resp), Err(WireError::NotQuery));
    assert!(WireError::NotQuery.reply().is_none());
}

#[test]
fn malformed_after_header_is_formerr_header_only() {
    let mut bytes = hex(DIG_A_EDNS);
    bytes.truncate(bytes.len() - 3); // cut into the OPT record
    let err = decode(&bytes).unwrap_err();
    assert_eq!(err.reason(), "formerr");
    let reply = err.reply().unwrap();
    let mut out = Vec::new();
    encode(&reply, 512, &mut out).unwrap();
    assert_eq!(out.len(), HEADER_LEN);
    assert_eq!(out[0..2], bytes[0..2]);
    assert_eq!(out[3] & 0x0f, 1);

    // Two questions; trailing garbage; a second OPT.
    let mut two = hex(DIG_AAAA_NOEDNS);
    two[5] = 2;
    assert!(matches!(decode(&two), Err(WireError::Format { .. })));
    let mut trailing = hex(DIG_AAAA_NOEDNS);
    trailing.push(0);
    assert!(matches!(decode(&trailing), Err(WireError::Format { .. })));
    let mut dup = hex(DIG_A_EDNS);
    dup[11] = 2;
    dup.extend_from_slice(&hex("0000290200000000000000"));
    assert!(matches!(decode(&dup), Err(WireError::Format { .. })));
}

#[test]
fn other_opcodes_are_not_parsed() {
    let mut bytes = hex(DIG_AAAA_NOEDNS);
    bytes[2] = (bytes[2] & 0x87) | (5 << 3); // UPDATE
    bytes.extend_from_slice(&[1, 2, 3]);
    let req = decode(&bytes).unwrap();
    assert_eq!(req.header.op_code, OpCode::Update);
    assert!(req.question.is_none());
}

fn big_reply(n: u8, edns: bool) -> Message {
    let req = decode(&hex(DIG_A_EDNS)).unwrap();
    let mut m = error_reply(&req.header, ResponseCode::NoError);
    m.queries.push(req.question.unwrap());
    let name = Name::from_ascii("node1.lab.test.").unwrap();
    for i in 0..n {
        m.answers.push(Record::from_rdata(
            name.clone(),
            60,
            RData::A(A(Ipv4Addr::new(198, 18, 0, i))),
        ));
    }
    if edns {
        m.edns = Some(reply_edns());
    }
    m
}

#[test]
fn replies_are_truncated_to_the_limit_with_tc() {
    let mut out = Vec::new();
    assert_eq!(
        encode(&big_reply(3, true), 512, &mut out).unwrap(),
        Fit::Whole
    );
    // 12 + 20 (question) + 16 per A after compression + 11 (OPT).
    let m = big_reply(40, true);
    assert_eq!(encode(&m, 512, &mut out).unwrap(), Fit::Truncated);
    assert!(out.len() <= 512);
    let back = Message::from_vec(&out).unwrap();
    assert!(back.metadata.truncation);
    assert!(back.answers.is_empty());
    assert_eq!(back.queries.len(), 1);
    assert!(back.edns.is_some());
    assert_eq!(back.metadata.id, 0x99ee);
    // Fits over TCP.
    assert_eq!(encode(&m, MAX_TCP_SIZE, &mut out).unwrap(), Fit::Whole);
    let back = Message::from_vec(&out).unwrap();
    assert_eq!(back.answers.len(), 40);
    assert!(!back.metadata.truncation);
}

#[test]
fn additionals_go_first_without_tc() {
    let mut m = big_reply(1, false);
    let name = Name::from_ascii("drover.lab.test.").unwrap();
    for i in 0..40 {
        m.additionals.push(Record::from_rdata(
            name.clone(),
            60,
            RData::A(A(Ipv4Addr::new(198, 18, 1, i))),
        ));
    }
    let mut out = Vec::new();
    assert_eq!(encode(&m, 512, &mut out).unwrap(), Fit::WithoutAdditionals);
    let back = Message::from_vec(&out).unwrap();
    assert!(!back.metadata.truncation);
    assert_eq!(back.answers.len(), 1);
}

#[test]
fn transfers_split_into_tcp_messages() {
    let m = big_reply(255, false);
    let mut big = m.clone();
    for _ in 0..20 {
        big.answers.extend(m.answers.iter().cloned());
    }
    // 5355 records of ~16 bytes: more than one 64 KiB message.
    let frames = encode_transfer(&big).unwrap();
    assert!(frames.len() >= 2, "{} frames", frames.len());
    let mut total = 0;
    for (i, f) in frames.iter().enumerate() {
        assert!(f.len() <= MAX_TCP_SIZE);
        let back = Message::from_vec(f).unwrap();
        assert_eq!(back.queries.len(), usize::from(i == 0));
        total += back.answers.len();
    }
    assert_eq!(total, big.answers.len());
}

#[test]
fn upstream_responses_must_match() {
    let q = Query::query(Name::from_ascii("example.test.").unwrap(), RecordType::A);
    let mut out = Vec::new();
    encode_query(7, &q, &mut out).unwrap();
    let mut resp = Message::from_vec(&out).unwrap();
    resp.metadata.message_type = MessageType::Response;
    let bytes = resp.to_vec().unwrap();
    assert!(decode_response(&bytes, 7, &q).is_some());
    assert!(decode_response(&bytes, 8, &q).is_none());
    let other = Query::query(Name::from_ascii("other.test.").unwrap(), RecordType::A);
    assert!(decode_response(&bytes, 7, &other).is_none());
    assert!(
        decode_response(&out, 7, &q).is_none(),
        "a query is not a response"
    );
}

#[test]
fn random_bytes_never_panic_and_errors_stay_small() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    let base = hex(DIG_A_EDNS);
    let mut out = Vec::new();
    for i in 0..20_000 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let len = usize::from(next()) % 80;
            (0..len).map(|_| next()).collect()
        } else {
            // Flip a few bytes of a real query.
            let mut b = base.clone();
            for _ in 0..3 {
                let at = usize::from(next()) % b.len();
                b[at] = next();
            }
            b
        };
        match decode(&bytes) {
            Ok(req) => assert!(req.len == bytes.len()),
            Err(e) => {
                if let Some(reply) = e.reply() {
                    encode(&reply, bytes.len(), &mut out).unwrap();
                    assert!(out.len() <= bytes.len());
                }
            }
        }
    }
}

#[test]
fn queries_round_trip() {
    for name in ["node1.lab.test.", "10.0.18.198.in-addr.arpa.", "a.b.c.d.e."] {
        for t in [
            RecordType::A,
            RecordType::PTR,
            RecordType::AXFR,
            RecordType::ANY,
        ] {
            let q = Query::query(Name::from_ascii(name).unwrap(), t);
            let mut out = Vec::new();
            encode_query(0x1234, &q, &mut out).unwrap();
            let req = decode(&out).unwrap();
            assert_eq!(req.header.id, 0x1234);
            assert_eq!(req.question.as_ref(), Some(&q));
            assert_eq!(req.edns.unwrap().max_payload(), MAX_UDP_SIZE);
        }
    }
}
