//! The messages of the pool port (TCP) and their bytes: a frame is `kind || body`, `kind`
//! one byte naming the [`Frame`] and `body` JSON, raw bytes, or a layer shipment's own
//! encoding. On the wire each is sealed (`seal::Session`: encrypted and authenticated) and
//! length-prefixed by `conn`; a frame is decoded only after it opened. Sans IO.
//!
//! An exchange is a sequence of request/answer pairs on one connection, always started by
//! the side that connected: [`Frame::Sync`] -> [`Frame::Batches`], [`Frame::Summaries`] ->
//! [`Frame::Summaries`], [`Frame::Blob`] -> [`Frame::Chunk`], [`Frame::Layer`] ->
//! [`Frame::LayerAck`], [`Frame::Rekey`] -> [`Frame::RekeyAck`].
//!
//! Not here: sockets, limits on time (`conn`), what the answers contain (`replication`,
//! `layers`), the handshake and encryption (`seal`).

use super::key::Rekey;
use super::seal::AEAD_TAG_LEN;
use super::summary::Relayed;
use super::sync::Digest;
use crate::nfs::replica::wire::{Ack, WireError};
use crate::store::model::BlobId;
use crate::store::replicate::Batch;
use serde::{Deserialize, Serialize};

/// Largest sealed frame accepted (kind, body and AEAD tag).
pub const MAX_FRAME: u32 = 32 << 20;

/// One message on the pool port.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The asker's store digest; answered with the batches it lacks.
    Sync(Digest),
    /// At most `sync::MAX_ROWS` rows.
    Batches(Vec<Batch>),
    /// A member's table of summaries: the asker's, answered with the answerer's after it
    /// merged them.
    Summaries(Vec<Relayed>),
    /// Up to `len` bytes of blob `id` from `offset`, answered with a [`Frame::Chunk`]; the
    /// connection is closed when the blob is not there.
    Blob(BlobRequest),
    Chunk(Vec<u8>),
    /// A shipment of a node's NFS layer (`nfs::replica::wire::Shipment`, decoded by the
    /// receiver off the async workers), answered with a [`Frame::LayerAck`].
    Layer(Vec<u8>),
    LayerAck(Ack),
    /// A rekey in progress (`key::Rekey`, in its file's text), answered with a
    /// [`Frame::RekeyAck`] once the receiver stored it.
    Rekey(Rekey),
    RekeyAck,
}

/// A piece of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    pub id: BlobId,
    pub offset: u64,
    pub len: u32,
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("malformed frame body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed layer ack: {0}")]
    Ack(#[from] WireError),
    #[error("malformed rekey")]
    Rekey,
}

const SYNC: u8 = 1;
const BATCHES: u8 = 2;
const SUMMARIES: u8 = 3;
const BLOB: u8 = 4;
const CHUNK: u8 = 5;
const LAYER: u8 = 6;
const LAYER_ACK: u8 = 7;
const REKEY: u8 = 8;
const REKEY_ACK: u8 = 9;

impl Frame {
    /// What the frame is, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Sync(_) => "sync",
            Frame::Batches(_) => "batches",
            Frame::Summaries(_) => "summaries",
            Frame::Blob(_) => "blob",
            Frame::Chunk(_) => "chunk",
            Frame::Layer(_) => "layer",
            Frame::LayerAck(_) => "layer ack",
            Frame::Rekey(_) => "rekey",
            Frame::RekeyAck => "rekey ack",
        }
    }

    /// `kind || body`, refused when it would be over [`MAX_FRAME`] once sealed. The vector
    /// has room for the AEAD tag.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut payload = Vec::new();
        match self {
            Frame::Sync(d) => json(&mut payload, SYNC, d)?,
            Frame::Batches(b) => json(&mut payload, BATCHES, b)?,
            Frame::Summaries(s) => json(&mut payload, SUMMARIES, s)?,
            Frame::Blob(b) => json(&mut payload, BLOB, b)?,
            Frame::Chunk(c) => raw(&mut payload, CHUNK, c),
            Frame::Layer(l) => raw(&mut payload, LAYER, l),
            Frame::LayerAck(a) => raw(&mut payload, LAYER_ACK, &a.encode()),
            Frame::Rekey(r) => raw(&mut payload, REKEY, r.to_text().as_bytes()),
            Frame::RekeyAck => raw(&mut payload, REKEY_ACK, &[]),
        }
        let sealed = payload.len() + AEAD_TAG_LEN;
        if sealed > MAX_FRAME as usize {
            return Err(FrameError::TooLarge(sealed));
        }
        payload.reserve_exact(AEAD_TAG_LEN);
        Ok(payload)
    }

    /// Decodes `kind || body` (an opened frame).
    pub fn decode(payload: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, body) = payload.split_first().ok_or(FrameError::Empty)?;
        Ok(match kind {
            SYNC => Frame::Sync(serde_json::from_slice(body)?),
            BATCHES => Frame::Batches(serde_json::from_slice(body)?),
            SUMMARIES => Frame::Summaries(serde_json::from_slice(body)?),
            BLOB => Frame::Blob(serde_json::from_slice(body)?),
            CHUNK => Frame::Chunk(body.to_vec()),
            LAYER => Frame::Layer(body.to_vec()),
            LAYER_ACK => Frame::LayerAck(Ack::decode(body)?),
            REKEY => Frame::Rekey(
                std::str::from_utf8(body)
                    .ok()
                    .and_then(Rekey::parse)
                    .ok_or(FrameError::Rekey)?,
            ),
            REKEY_ACK => Frame::RekeyAck,
            k => return Err(FrameError::Kind(k)),
        })
    }
}

fn json(out: &mut Vec<u8>, kind: u8, body: &impl Serialize) -> Result<(), FrameError> {
    out.push(kind);
    serde_json::to_writer(&mut *out, body)?;
    Ok(())
}

fn raw(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.reserve(1 + body.len());
    out.push(kind);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_unknown_kinds() {
        let frames = [
            Frame::Sync(Digest::default()),
            Frame::Batches(Vec::new()),
            Frame::Summaries(Vec::new()),
            Frame::Blob(BlobRequest {
                id: "ab".into(),
                offset: 4,
                len: 9,
            }),
            Frame::Chunk(vec![0, 1, 2]),
            Frame::Layer(b"\0L1".to_vec()),
            Frame::LayerAck(Ack::NeedSnapshot),
            Frame::Rekey(Rekey {
                next: super::super::key::ClusterKey::from_bytes([5; 32]),
                switch_ms: 10,
                retire_ms: 20,
            }),
            Frame::RekeyAck,
        ];
        for f in frames {
            let bytes = f.encode().unwrap();
            assert!(bytes.capacity() >= bytes.len() + AEAD_TAG_LEN);
            assert_eq!(Frame::decode(&bytes).unwrap(), f);
        }
        assert!(matches!(Frame::decode(&[99, 1]), Err(FrameError::Kind(99))));
        assert!(matches!(Frame::decode(&[]), Err(FrameError::Empty)));
        assert!(matches!(
            Frame::decode(&[REKEY, b'x']),
            Err(FrameError::Rekey)
        ));
        assert!(matches!(
            Frame::decode(&[SYNC, b'{']),
            Err(FrameError::Json(_))
        ));
        let limit = MAX_FRAME as usize - AEAD_TAG_LEN - 1;
        assert!(Frame::Chunk(vec![0; limit]).encode().is_ok());
        let huge = Frame::Chunk(vec![0; limit + 1]);
        assert!(matches!(huge.encode(), Err(FrameError::TooLarge(_))));
    }
}
