//! NFSv4 callbacks on the wire: the calls this server makes to clients (CB_NULL, and
//! CB_COMPOUND with CB_RECALL, preceded by CB_SEQUENCE on a 4.1 back channel; RFC 7530 §16
//! "callback procedures", RFC 8881 §20), the decoding of their replies, and the callback
//! address of a 4.0 client (`r_netid`, `r_addr` as universal addresses, RFC 5665).
//!
//! Data flow: the core decides which callback to make ([`super::core::CbJob`]); the shell
//! numbers it (xid), encodes it here, sends it (on a new TCP connection for 4.0, on the
//! session's connection for 4.1), recognises the reply among incoming records with
//! [`reply_xid`] and decodes its status with [`decode_reply`].
//!
//! Not here: sockets, timeouts, which client gets which call; CB_GETATTR, CB_NOTIFY and the
//! other callback operations (no write delegations, no directory delegations, no pNFS);
//! RPCSEC_GSS on the back channel.

use super::rpc::RPC_VERSION;
use super::status::Nfs4Status;
use super::vfs::Handle;
use super::wire::{CbSec, StateId};
use super::xdr::{Reader, Writer};
use std::net::{IpAddr, SocketAddr};

/// The callback program's version (RFC 7530 §16.1, RFC 8881 §20.1).
pub const CB_VERSION: u32 = 1;
const PROC_CB_NULL: u32 = 0;
const PROC_CB_COMPOUND: u32 = 1;
const OP_CB_RECALL: u32 = 4;
const OP_CB_SEQUENCE: u32 = 11;

/// CB_SEQUENCE's arguments: this server's back channel has one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CbSequence {
    pub session: [u8; 16],
    pub sequence: u32,
}

/// CB_RECALL's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recall {
    pub stateid: StateId,
    pub fh: Handle,
}

/// Why a callback reply says nothing useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CbReplyError {
    #[error("undecodable callback reply")]
    Malformed,
    #[error("the client denied the callback call (RPC or authentication mismatch)")]
    Denied,
    #[error("the client did not accept the callback call (accept_stat {0})")]
    NotAccepted(u32),
}

fn call_header(xid: u32, program: u32, procedure: u32, sec: &CbSec) -> Writer {
    let mut w = Writer::new();
    w.u32(xid);
    w.u32(0); // CALL
    w.u32(RPC_VERSION);
    w.u32(program);
    w.u32(CB_VERSION);
    w.u32(procedure);
    w.u32(sec.flavor);
    w.opaque(&sec.body);
    w.u32(0); // verifier: AUTH_NONE
    w.u32(0);
    w
}

/// A CB_NULL call (the 4.0 probe of a client's callback path).
pub fn cb_null(xid: u32, program: u32, sec: &CbSec) -> Vec<u8> {
    call_header(xid, program, PROC_CB_NULL, sec).buf
}

/// A CB_COMPOUND call of minor version `minor` with CB_RECALL of `recall`, after a
/// CB_SEQUENCE if `seq` is given (4.1: it must be); `ident` is the 4.0 `callback_ident`.
pub fn cb_recall(
    xid: u32,
    program: u32,
    sec: &CbSec,
    minor: u32,
    ident: u32,
    seq: Option<&CbSequence>,
    recall: &Recall,
) -> Vec<u8> {
    let mut w = call_header(xid, program, PROC_CB_COMPOUND, sec);
    w.opaque(b""); // tag
    w.u32(minor);
    w.u32(ident);
    w.u32(if seq.is_some() { 2 } else { 1 });
    if let Some(s) = seq {
        w.u32(OP_CB_SEQUENCE);
        w.fixed(&s.session);
        w.u32(s.sequence);
        w.u32(0); // slot
        w.u32(0); // highest slot
        w.bool(false); // cachethis
        w.u32(0); // no referring call lists
    }
    w.u32(OP_CB_RECALL);
    recall.stateid.encode(&mut w);
    w.bool(false); // truncate
    w.opaque(&recall.fh.0);
    w.buf
}

/// The xid of `record` if it is an RPC reply (a client answering a callback on the fore
/// channel's connection) rather than a call.
pub fn reply_xid(record: &[u8]) -> Option<u32> {
    let mut r = Reader::new(record);
    let xid = r.u32().ok()?;
    (r.u32().ok()? == 1).then_some(xid)
}

/// Decodes a reply to a callback: `Ok(Nfs4Status::Ok)` for an answered CB_NULL, the
/// COMPOUND status for a CB_COMPOUND (`compound`).
pub fn decode_reply(record: &[u8], compound: bool) -> Result<Nfs4Status, CbReplyError> {
    use CbReplyError::Malformed;
    let mut r = Reader::new(record);
    let (_xid, mtype) = (
        r.u32().map_err(|_| Malformed)?,
        r.u32().map_err(|_| Malformed)?,
    );
    if mtype != 1 {
        return Err(Malformed);
    }
    if r.u32().map_err(|_| Malformed)? != 0 {
        return Err(CbReplyError::Denied);
    }
    r.u32().map_err(|_| Malformed)?; // verifier flavor
    r.opaque(400).map_err(|_| Malformed)?;
    let stat = r.u32().map_err(|_| Malformed)?;
    if stat != 0 {
        return Err(CbReplyError::NotAccepted(stat));
    }
    if !compound {
        return Ok(Nfs4Status::Ok);
    }
    let status = r.u32().map_err(|_| Malformed)?;
    Nfs4Status::from_u32(status).ok_or(Malformed)
}

/// The socket address of a 4.0 callback: `netid` "tcp" with an `a.b.c.d.p1.p2` address, or
/// "tcp6" with an IPv6 address and `.p1.p2` (RFC 5665 §5.2.3). Other transports: None.
pub fn parse_uaddr(netid: &[u8], uaddr: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(uaddr).ok()?;
    let (rest, lo) = s.rsplit_once('.')?;
    let (host, hi) = rest.rsplit_once('.')?;
    let port = u16::from(hi.parse::<u8>().ok()?) << 8 | u16::from(lo.parse::<u8>().ok()?);
    let ip: IpAddr = match netid {
        b"tcp" => IpAddr::V4(host.parse().ok()?),
        b"tcp6" => IpAddr::V6(host.parse().ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys() -> CbSec {
        CbSec {
            flavor: 1,
            body: vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn a_recall_with_cb_sequence_reads_back_field_by_field() {
        let stateid = StateId {
            seqid: 1,
            other: [7; 12],
        };
        let recall = Recall {
            stateid,
            fh: Handle(vec![9; 20]),
        };
        let seq = CbSequence {
            session: [3; 16],
            sequence: 5,
        };
        let b = cb_recall(0x42, 0x4000_0000, &sys(), 1, 0, Some(&seq), &recall);
        let mut r = Reader::new(&b);
        let head: Vec<u32> = (0..7).map(|_| r.u32().unwrap()).collect();
        assert_eq!(head, [0x42, 0, 2, 0x4000_0000, 1, 1, 1]);
        assert_eq!(r.opaque(400).unwrap(), &sys().body[..]);
        assert_eq!((r.u32().unwrap(), r.opaque(400).unwrap()), (0, &[][..]));
        assert_eq!(r.opaque(10).unwrap(), b"");
        assert_eq!([r.u32().unwrap(), r.u32().unwrap()], [1, 0]);
        assert_eq!(r.u32().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), OP_CB_SEQUENCE);
        assert_eq!(r.fixed::<16>().unwrap(), [3; 16]);
        let slot: Vec<u32> = (0..3).map(|_| r.u32().unwrap()).collect();
        assert_eq!(slot, [5, 0, 0]);
        assert!(!r.bool().unwrap());
        assert_eq!(r.u32().unwrap(), 0);
        assert_eq!(r.u32().unwrap(), OP_CB_RECALL);
        assert_eq!((r.u32().unwrap(), r.fixed::<12>().unwrap()), (1, [7; 12]));
        assert!(!r.bool().unwrap());
        assert_eq!(r.opaque(128).unwrap(), &[9; 20][..]);
        assert_eq!(r.remaining(), 0);
        // A 4.0 recall has no CB_SEQUENCE and carries the callback ident.
        let b = cb_recall(1, 77, &sys(), 0, 0xabc, None, &recall);
        let mut r = Reader::new(&b[60..]);
        assert_eq!(r.opaque(10).unwrap(), b"");
        let v: Vec<u32> = (0..3).map(|_| r.u32().unwrap()).collect();
        assert_eq!(v, [0, 0xabc, 1]);
        assert_eq!(r.u32().unwrap(), OP_CB_RECALL);
        // CB_NULL is the bare header: 6 words, the credential (flavor, 20 bytes of body),
        // the verifier.
        assert_eq!(cb_null(9, 77, &sys()).len(), 60);
    }

    fn reply(xid: u32, accept: u32, body: &[u32]) -> Vec<u8> {
        let mut w = Writer::new();
        for v in [xid, 1, 0, 0, 0, accept] {
            w.u32(v);
        }
        for v in body {
            w.u32(*v);
        }
        w.buf
    }

    #[test]
    fn replies_are_told_from_calls_and_decoded() {
        let ok = reply(7, 0, &[0, 0, 1, OP_CB_RECALL, 0]);
        assert_eq!(reply_xid(&ok), Some(7));
        assert_eq!(decode_reply(&ok, true), Ok(Nfs4Status::Ok));
        assert_eq!(decode_reply(&reply(7, 0, &[]), false), Ok(Nfs4Status::Ok));
        let bad = reply(7, 0, &[10025, 0, 1, OP_CB_RECALL, 10025]);
        assert_eq!(decode_reply(&bad, true), Ok(Nfs4Status::BadStateId));
        assert_eq!(
            decode_reply(&reply(7, 1, &[]), false),
            Err(CbReplyError::NotAccepted(1))
        );
        let call = cb_null(7, 1, &sys());
        assert_eq!(reply_xid(&call), None);
        assert_eq!(decode_reply(&call, false), Err(CbReplyError::Malformed));
        let mut denied = Writer::new();
        for v in [7, 1, 1, 1, 1] {
            denied.u32(v);
        }
        assert_eq!(decode_reply(&denied.buf, false), Err(CbReplyError::Denied));
        // Cut before the COMPOUND status: nothing to say.
        for n in 0..28 {
            assert!(decode_reply(&ok[..n], true).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn universal_addresses() {
        let v4 = parse_uaddr(b"tcp", b"127.0.0.1.3.4");
        assert_eq!(v4, Some("127.0.0.1:772".parse().unwrap()));
        let v6 = parse_uaddr(b"tcp6", b"fe80::1.128.1");
        assert_eq!(v6, Some("[fe80::1]:32769".parse().unwrap()));
        for (netid, bad) in [
            (&b"tcp"[..], &b"127.0.0.1.3"[..]),
            (b"tcp", b"127.0.0.1.256.1"),
            (b"tcp", b"fe80::1.1.1"),
            (b"udp", b"127.0.0.1.3.4"),
            (b"tcp", b"\xff.1.1"),
            (b"tcp", b""),
        ] {
            assert_eq!(parse_uaddr(netid, bad), None, "{bad:?}");
        }
    }
}
