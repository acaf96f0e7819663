//! DNS messages <-> bytes: a thin layer over `hickory-proto`'s codec.
//!
//! Data flow: datagram or TCP frame -> [`decode`] reads the header first (12 bytes, else the
//! bytes are dropped: there is nothing to answer), refuses to go on for responses (QR=1,
//! never answered, so two servers cannot loop), then reads exactly one question and the
//! additional section (for the EDNS OPT record) through hickory's `BinDecoder`. Anything
//! malformed after a readable header becomes [`WireError::Format`], which the caller turns into
//! a header-only FORMERR ([`WireError::reply`]) that is never larger than the request.
//! Replies go out through [`encode`], which enforces the client's size limit: the full
//! message when it fits, else the message without its additional records (no TC, RFC 2181
//! §9), else a TC reply with the question and OPT only, so the client retries over TCP.
//! [`encode_transfer`] splits a zone transfer into TCP-sized messages.
//!
//! What is not here: name compression decisions (hickory's encoder compresses), DNSSEC,
//! TSIG, EDNS options (we answer with a bare OPT; client options such as cookies or ECS are
//! ignored), DNS over TLS/HTTPS/QUIC.

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest UDP reply without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: u16 = 512;
/// Largest UDP reply we send with EDNS, whatever the client offers (DNS flag day 2020:
/// avoids IP fragmentation).
pub const MAX_UDP_SIZE: u16 = 1232;
/// Largest DNS message over TCP (two-byte length prefix).
pub const MAX_TCP_SIZE: usize = 65535;
/// Receive buffer for one UDP query; longer datagrams are cut and fail to parse.
pub const MAX_QUERY_SIZE: usize = 4096;
/// Records accepted in a query's additional section (OPT, perhaps a TSIG or a cookie-bearing
/// client's extras); more is malformed for our purposes.
pub const MAX_ADDITIONALS: u16 = 4;

/// A decoded query: the header, its one question, and EDNS if the client sent OPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub header: Metadata,
    /// `None` only for opcodes other than QUERY, whose bodies are not read.
    pub question: Option<Query>,
    pub edns: Option<Edns>,
    /// Length of the request on the wire, the ceiling for error replies.
    pub len: usize,
}

impl Request {
    /// The largest reply this client accepts over UDP: 512 without EDNS, else the EDNS size
    /// clamped to 512..=[`MAX_UDP_SIZE`].
    pub fn udp_limit(&self) -> u16 {
        match &self.edns {
            None => CLASSIC_UDP_SIZE,
            Some(e) => e.max_payload().clamp(CLASSIC_UDP_SIZE, MAX_UDP_SIZE),
        }
    }
}

/// Why bytes did not decode into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header: dropped.
    #[error("{0} bytes is shorter than a DNS header")]
    Short(usize),
    /// A response (QR=1) arrived on the server port: dropped, never answered.
    #[error("message is a response, not a query")]
    NotQuery,
    /// The header is readable but the rest is not acceptable: FORMERR.
    #[error("malformed query: {why}")]
    Format { header: Metadata, why: &'static str },
}

impl WireError {
    /// A counter name.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Short(_) => "short",
            WireError::NotQuery => "not_query",
            WireError::Format { .. } => "formerr",
        }
    }

    /// The reply owed for this error: a header-only FORMERR when the header was readable.
    pub fn reply(&self) -> Option<Message> {
        match self {
            WireError::Format { header, .. } => Some(error_reply(header, ResponseCode::FormErr)),
            _ => None,
        }
    }
}

/// A header-only reply with `rcode` to the query whose header is `req`.
pub fn error_reply(req: &Metadata, rcode: ResponseCode) -> Message {
    let mut m = Message::new(req.id, MessageType::Response, req.op_code);
    m.metadata.recursion_desired = req.recursion_desired;
    m.metadata.checking_disabled = req.checking_disabled;
    m.metadata.response_code = rcode;
    m
}

/// Decodes one query. Only the question and additional sections are kept; answer and
/// authority records in a query are read (to reach the additional section) and discarded.
pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Short(bytes.len()));
    }
    let mut d = BinDecoder::new(bytes);
    let Header {
        metadata: header,
        counts,
    } = Header::read(&mut d).map_err(|_| WireError::Short(bytes.len()))?;
    if header.message_type == MessageType::Response {
        return Err(WireError::NotQuery);
    }
    let format = |why| WireError::Format { header, why };
    if header.op_code != OpCode::Query {
        // NOTIMP for the core to send; the body of UPDATE/NOTIFY/... is not our business.
        return Ok(Request {
            header,
            question: None,
            edns: None,
            len: bytes.len(),
        });
    }
    if counts.queries != 1 {
        return Err(format("question count is not 1"));
    }
    if counts.additionals > MAX_ADDITIONALS {
        return Err(format("too many additional records"));
    }
    // A query carries no answers; a few authority records are tolerated (and ignored) only
    // because the additional section comes after them.
    if counts.answers > 0 || counts.authorities > MAX_ADDITIONALS {
        return Err(format("records in the answer or authority section"));
    }
    let question = Query::read(&mut d).map_err(|_| format("undecodable question"))?;
    for _ in 0..counts.authorities {
        Record::read(&mut d).map_err(|_| format("undecodable authority record"))?;
    }
    let mut edns = None;
    for _ in 0..counts.additionals {
        let r = Record::read(&mut d).map_err(|_| format("undecodable additional record"))?;
        if r.record_type() == RecordType::OPT {
            if edns.is_some() {
                return Err(format("more than one OPT record"));
            }
            edns = Some(Edns::from(&r));
        }
    }
    if !d.is_empty() {
        return Err(format("trailing bytes after the message"));
    }
    Ok(Request {
        header,
        question: Some(question),
        edns,
        len: bytes.len(),
    })
}

/// Why a reply could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode reply: {0}")]
    Codec(#[from] hickory_proto::ProtoError),
}

fn emit(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.clear();
    let mut enc = BinEncoder::new(out);
    msg.emit(&mut enc)?;
    Ok(())
}

/// How [`encode`] made the reply fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Whole,
    /// Additional records left out (no TC: RFC 2181 §9).
    WithoutAdditionals,
    /// Only header, question and OPT, with TC set: the client should retry over TCP.
    Truncated,
}

/// Encodes `msg` into `out` in at most `limit` bytes (see the module docs for how).
pub fn encode(msg: &Message, limit: usize, out: &mut Vec<u8>) -> Result<Fit, EncodeError> {
    emit(msg, out)?;
    if out.len() <= limit {
        return Ok(Fit::Whole);
    }
    if !msg.additionals.is_empty() {
        let mut slim = msg.clone();
        slim.additionals.clear();
        emit(&slim, out)?;
        if out.len() <= limit {
            return Ok(Fit::WithoutAdditionals);
        }
    }
    let mut tc = msg.truncate();
    // `truncate` copies the header but starts from a query; keep the reply's identity.
    tc.metadata = msg.metadata;
    tc.metadata.truncation = true;
    emit(&tc, out)?;
    if out.len() > limit {
        // Only a question longer than the limit gets here (limit >= 512 > 12 + 255 + 4 + 11
        // for UDP); send the bare header then.
        let mut bare = error_reply(&msg.metadata, msg.metadata.response_code);
        bare.metadata = msg.metadata;
        bare.metadata.truncation = true;
        emit(&bare, out)?;
    }
    Ok(Fit::Truncated)
}

/// Encodes a zone transfer (`msg` carries the whole zone, SOA first and last, in its answer
/// section) as a series of TCP messages of at most [`MAX_TCP_SIZE`] bytes (RFC 5936 §2.2).
pub fn encode_transfer(msg: &Message) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut frames = Vec::new();
    let mut start = 0;
    let answers = &msg.answers;
    while start < answers.len() || frames.is_empty() {
        // Grow the chunk until it no longer fits; records are small (< 300 bytes), so a
        // binary search is not worth it. Start from a guess and shrink.
        let mut end = (start + 1024).min(answers.len());
        loop {
            let mut part = Message::new(msg.metadata.id, MessageType::Response, OpCode::Query);
            part.metadata = msg.metadata;
            if frames.is_empty() {
                part.queries = msg.queries.clone();
            }
            part.answers = answers[start..end].to_vec();
            if let Some(e) = &msg.edns {
                part.edns = Some(e.clone());
            }
            let mut buf = Vec::new();
            emit(&part, &mut buf)?;
            if buf.len() <= MAX_TCP_SIZE || end <= start + 1 {
                frames.push(buf);
                start = end;
                break;
            }
            end = start + (end - start) / 2;
        }
    }
    Ok(frames)
}

/// Our OPT record for replies to EDNS clients: version 0, our UDP size, no options.
pub fn reply_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(MAX_UDP_SIZE);
    e.set_version(0);
    e
}

/// Encodes a query for an upstream resolver: `question`, RD set, EDNS with our size.
pub fn encode_query(id: u16, question: &Query, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(question.clone());
    m.edns = Some(reply_edns());
    emit(&m, out)
}

/// Decodes an upstream's response, checking that it answers query `id` about `question`.
pub fn decode_response(bytes: &[u8], id: u16, question: &Query) -> Option<Message> {
    let m = Message::from_vec(bytes).ok()?;
    let same = m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].name() == question.name()
        && m.queries[0].query_type() == question.query_type()
        && m.queries[0].query_class() == question.query_class();
    same.then_some(m)
}

/// True when `class` is one we serve (IN).
pub fn is_internet(class: DNSClass) -> bool {
    class == DNSClass::IN
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
