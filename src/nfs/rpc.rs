//! ONC RPC (RFC 5531) as NFSv4 over TCP uses it: record marking, call headers with
//! AUTH_NONE / AUTH_SYS credentials, and reply headers (accepted and denied).
//!
//! Data flow: the shell reads fragments (checking each header with [`fragment_header`])
//! into one record; [`parse_call`] checks the header once and returns the [`Call`] (xid,
//! procedure, credential, and the record, which keeps the procedure's argument bytes), or
//! the refusal to send ([`Refusal::reply`]); [`accepted`] frames the reply, and [`record`]
//! adds the record mark.
//!
//! Not here: UDP, RPCSEC_GSS (refused with AUTH_TOOWEAK), portmapper/rpcbind (NFSv4 clients
//! go straight to port 2049), callbacks.

use super::xdr::{Reader, Writer, XdrError};

pub const RPC_VERSION: u32 = 2;
pub const NFS_PROGRAM: u32 = 100003;
pub const NFS_V4: u32 = 4;
pub const PROC_NULL: u32 = 0;
pub const PROC_COMPOUND: u32 = 1;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;

/// Limits of RFC 5531: opaque_auth bodies are at most 400 bytes, AUTH_SYS machine names 255,
/// and at most 16 supplementary groups.
const MAX_AUTH_BODY: usize = 400;
const MAX_MACHINE_NAME: usize = 255;
const MAX_GIDS: usize = 16;

/// The credential of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cred {
    None,
    Sys { uid: u32, gid: u32, gids: Vec<u32> },
}

/// The procedures of NFSv4 (RFC 7530 §16): every call but NULL is a COMPOUND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    Null,
    Compound,
}

/// A checked call: its header, and the record holding its argument bytes. It owns the
/// record, so that the shell can log its xid and hand it to blocking work as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub xid: u32,
    pub procedure: Procedure,
    pub cred: Cred,
    record: Vec<u8>,
    /// Where the arguments start in `record` (at most its length).
    args_at: usize,
}

impl Call {
    /// The procedure's argument bytes.
    pub fn args(&self) -> &[u8] {
        self.record.get(self.args_at..).unwrap_or_default()
    }
}

/// `accept_stat` values (RFC 5531).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    Success = 0,
    ProgUnavail = 1,
    ProgMismatch = 2,
    ProcUnavail = 3,
    GarbageArgs = 4,
    SystemErr = 5,
}

/// `auth_stat` values used in AUTH_ERROR denials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStat {
    BadCred = 1,
    RejectedCred = 2,
    BadVerf = 3,
    TooWeak = 5,
}

/// Why a call is not handed to NFS, and what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not even a call header: close the connection without answering.
    Garbage,
    /// Answer with this accepted-but-failed status.
    Accept(u32, AcceptStat),
    /// Answer MSG_DENIED / RPC_MISMATCH (we speak version 2 only).
    RpcMismatch(u32),
    /// Answer MSG_DENIED / AUTH_ERROR.
    Auth(u32, AuthStat),
}

impl Refusal {
    /// The xid of the refused call (0 when there was none to read).
    pub fn xid(&self) -> u32 {
        match *self {
            Refusal::Garbage => 0,
            Refusal::Accept(xid, _) | Refusal::RpcMismatch(xid) | Refusal::Auth(xid, _) => xid,
        }
    }

    /// The reply to send, if any.
    pub fn reply(&self) -> Option<Vec<u8>> {
        match *self {
            Refusal::Garbage => None,
            Refusal::Accept(xid, AcceptStat::ProgMismatch) => {
                let mut w = accepted(xid, AcceptStat::ProgMismatch);
                w.u32(NFS_V4);
                w.u32(NFS_V4);
                Some(w.buf)
            }
            Refusal::Accept(xid, stat) => Some(accepted(xid, stat).buf),
            Refusal::RpcMismatch(xid) => {
                let mut w = reply_header(xid, 1);
                w.u32(0); // RPC_MISMATCH
                w.u32(RPC_VERSION);
                w.u32(RPC_VERSION);
                Some(w.buf)
            }
            Refusal::Auth(xid, stat) => {
                let mut w = reply_header(xid, 1);
                w.u32(1); // AUTH_ERROR
                w.u32(stat as u32);
                Some(w.buf)
            }
        }
    }
}

fn auth_sys(body: &[u8]) -> Result<Cred, XdrError> {
    let mut r = Reader::new(body);
    let _stamp = r.u32()?;
    let _machine = r.opaque(MAX_MACHINE_NAME)?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let n = r.count(MAX_GIDS, 4)?;
    let mut gids = Vec::with_capacity(n);
    for _ in 0..n {
        gids.push(r.u32()?);
    }
    if r.remaining() != 0 {
        return Err(XdrError::BadValue);
    }
    Ok(Cred::Sys { uid, gid, gids })
}

/// Checks a call record's header. Refuses other programs, versions and credential flavours
/// as RFC 5531 says.
pub fn parse_call(record: Vec<u8>) -> Result<Call, Refusal> {
    let mut r = Reader::new(&record);
    let xid = r.u32().map_err(|_| Refusal::Garbage)?;
    let header = (|| -> Result<_, XdrError> {
        let mtype = r.u32()?;
        let rpcvers = r.u32()?;
        let prog = r.u32()?;
        let vers = r.u32()?;
        let procedure = r.u32()?;
        let flavor = r.u32()?;
        let body = r.opaque(MAX_AUTH_BODY)?;
        let _verf_flavor = r.u32()?;
        let _verf = r.opaque(MAX_AUTH_BODY)?;
        Ok((mtype, rpcvers, prog, vers, procedure, flavor, body))
    })();
    let (mtype, rpcvers, prog, vers, procedure, flavor, body) = match header {
        Ok(h) => h,
        // A call that ends inside its own header cannot be answered meaningfully.
        Err(_) => return Err(Refusal::Garbage),
    };
    if mtype != 0 {
        return Err(Refusal::Garbage);
    }
    if rpcvers != RPC_VERSION {
        return Err(Refusal::RpcMismatch(xid));
    }
    let cred = match flavor {
        AUTH_NONE => Cred::None,
        AUTH_SYS => auth_sys(body).map_err(|_| Refusal::Auth(xid, AuthStat::BadCred))?,
        _ => return Err(Refusal::Auth(xid, AuthStat::TooWeak)),
    };
    if prog != NFS_PROGRAM {
        return Err(Refusal::Accept(xid, AcceptStat::ProgUnavail));
    }
    if vers != NFS_V4 {
        return Err(Refusal::Accept(xid, AcceptStat::ProgMismatch));
    }
    let procedure = match procedure {
        PROC_NULL => Procedure::Null,
        PROC_COMPOUND => Procedure::Compound,
        _ => return Err(Refusal::Accept(xid, AcceptStat::ProcUnavail)),
    };
    let args_at = r.position();
    Ok(Call {
        xid,
        procedure,
        cred,
        record,
        args_at,
    })
}

fn reply_header(xid: u32, reply_stat: u32) -> Writer {
    let mut w = Writer::new();
    w.u32(xid);
    w.u32(1); // REPLY
    w.u32(reply_stat);
    w
}

/// The header of an accepted reply with status `stat`; results follow for `Success`.
pub fn accepted(xid: u32, stat: AcceptStat) -> Writer {
    let mut w = reply_header(xid, 0);
    w.u32(AUTH_NONE); // verifier
    w.u32(0);
    w.u32(stat as u32);
    w
}

/// One fragment header: whether it is the last fragment, and its length.
pub fn fragment_header(mark: [u8; 4]) -> (bool, usize) {
    let v = u32::from_be_bytes(mark);
    (v & 0x8000_0000 != 0, (v & 0x7fff_ffff) as usize)
}

/// A reply as one record (a single last fragment).
pub fn record(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len() + 4);
    out.extend_from_slice(&(0x8000_0000u32 | reply.len() as u32).to_be_bytes());
    out.extend_from_slice(reply);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(prog: u32, vers: u32, procedure: u32, flavor: u32, body: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(0x1234);
        w.u32(0);
        w.u32(2);
        w.u32(prog);
        w.u32(vers);
        w.u32(procedure);
        w.u32(flavor);
        w.opaque(body);
        w.u32(0);
        w.u32(0);
        w.buf
    }

    fn sys_body() -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(1);
        w.opaque(b"node1");
        w.u32(1000);
        w.u32(100);
        w.u32(2);
        w.u32(10);
        w.u32(20);
        w.buf
    }

    #[test]
    fn auth_sys_call_parses() {
        let rec = call(NFS_PROGRAM, 4, 1, AUTH_SYS, &sys_body());
        let c = parse_call(rec).unwrap();
        assert_eq!(c.xid, 0x1234);
        assert_eq!(c.procedure, Procedure::Compound);
        assert_eq!(
            c.cred,
            Cred::Sys {
                uid: 1000,
                gid: 100,
                gids: vec![10, 20]
            }
        );
        assert!(c.args().is_empty());
    }

    #[test]
    fn refusals() {
        let r = parse_call(call(NFS_PROGRAM, 3, 0, 0, &[])).unwrap_err();
        assert_eq!(r, Refusal::Accept(0x1234, AcceptStat::ProgMismatch));
        let reply = r.reply().unwrap();
        assert_eq!(&reply[20..], &[0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4]);
        let r = parse_call(call(100005, 4, 0, 0, &[])).unwrap_err();
        assert_eq!(r, Refusal::Accept(0x1234, AcceptStat::ProgUnavail));
        let r = parse_call(call(NFS_PROGRAM, 4, 2, 0, &[])).unwrap_err();
        assert_eq!(r, Refusal::Accept(0x1234, AcceptStat::ProcUnavail));
        let r = parse_call(call(NFS_PROGRAM, 4, 0, 6, &[])).unwrap_err();
        assert_eq!(r, Refusal::Auth(0x1234, AuthStat::TooWeak));
        assert_eq!(r.reply().unwrap()[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let r = parse_call(call(NFS_PROGRAM, 4, 0, AUTH_SYS, &[0, 0])).unwrap_err();
        assert_eq!(r, Refusal::Auth(0x1234, AuthStat::BadCred));
        let mut bad = call(NFS_PROGRAM, 4, 0, 0, &[]);
        bad[11] = 3; // rpcvers 3
        assert_eq!(parse_call(bad).unwrap_err(), Refusal::RpcMismatch(0x1234));
        let full = call(NFS_PROGRAM, 4, 0, 0, &[]);
        for n in 0..24 {
            let r = parse_call(full[..n].to_vec());
            assert_eq!(r.unwrap_err(), Refusal::Garbage, "truncated at {n}");
        }
    }
}
