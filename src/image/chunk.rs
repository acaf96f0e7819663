//! Content-defined chunking and blob manifests, over byte slices (sans-IO).
//!
//! A blob's bytes are cut into chunks where a rolling hash of the last 64 bytes hits a
//! pattern ([`cut`], FastCDC-style: a gear hash, no cut before [`MIN_CHUNK`], a harder
//! pattern before [`AVG_CHUNK`] and an easier one after it, a forced cut at [`MAX_CHUNK`]).
//! Because a cut depends only on the bytes before it, an insertion into a tar moves the
//! boundaries near it and nowhere else, so two versions of a rootfs that differ by one
//! package share all the chunks away from that package's files. Each chunk is named by its
//! BLAKE3 hash; a blob's [`Manifest`] lists its chunks in order with their lengths.
//!
//! Data flow: the store (`super::Blobs`) feeds [`cut`] a buffer that starts at a chunk's
//! first byte and holds at least [`MAX_CHUNK`] bytes (or the rest of the blob), writes the
//! chunk, and drops it from the buffer; it encodes the finished manifest with
//! [`Manifest::encode`] and reads it back with [`Manifest::decode`], which checks every length
//! before it trusts one (a manifest may come from a pool peer).
//!
//! Not here: files, hashing of whole blobs, the figures per version (`super::usage`), verification of chunk contents (the store hashes
//! a chunk when it reads it), replication.

/// No cut before this many bytes (except at the end of a blob).
pub const MIN_CHUNK: usize = 16 << 10;
/// The size chunks tend to; the pattern gets easier past it.
pub const AVG_CHUNK: usize = 64 << 10;
/// A cut is forced here: no chunk is longer.
pub const MAX_CHUNK: usize = 256 << 10;
/// Most chunks in one manifest: 4 Mi chunks of at least 16 KiB is 64 GiB and more, far above
/// any image file, and a decoded manifest stays under 150 MiB.
pub const MAX_CHUNKS: usize = 1 << 22;

/// Before [`AVG_CHUNK`]: 17 of the hash's top bits must be zero (a cut is rarer than 1 in
/// 64 Ki), which pulls chunk sizes towards the average from below.
const MASK_HARD: u64 = !0 << (64 - 17);
/// After it: 15 bits (1 in 32 Ki), which pulls them back from above. One bit either side
/// of 16 (FastCDC's "normalisation level 1"): two bits either side gives tighter sizes but
/// resynchronises later after an insertion (measured: some 5 chunks differ per insertion
/// against 2), and sharing is the point.
const MASK_EASY: u64 = !0 << (64 - 15);

/// One random 64-bit value per byte value, fixed forever: a different table moves every
/// boundary, and chunks stored with the old one would no longer be shared with new imports
/// (still correct, only larger). Made by splitmix64 from a fixed seed.
const GEAR: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x6472_6f76_6572_2d63; // "drover-c"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
};

/// The length of the chunk that starts at `data[0]`. `data` must hold at least
/// [`MAX_CHUNK`] bytes or else all that is left of the blob (then the last chunk may be
/// shorter than [`MIN_CHUNK`]). Returns 0 only for empty `data`.
pub fn cut(data: &[u8]) -> usize {
    let end = data.len().min(MAX_CHUNK);
    if end <= MIN_CHUNK {
        return end;
    }
    let normal = end.min(AVG_CHUNK);
    let mut hash: u64 = 0;
    // The hash of the bytes before MIN_CHUNK never decides a cut, but it is a function of
    // the last 64 bytes only, so starting at MIN_CHUNK - 64 gives the same cuts as starting
    // at 0, for less work.
    for &b in &data[MIN_CHUNK - 64..MIN_CHUNK] {
        hash = (hash << 1).wrapping_add(GEAR[usize::from(b)]);
    }
    for (i, &b) in data.iter().enumerate().take(end).skip(MIN_CHUNK) {
        hash = (hash << 1).wrapping_add(GEAR[usize::from(b)]);
        let mask = if i < normal { MASK_HARD } else { MASK_EASY };
        if hash & mask == 0 {
            return i + 1;
        }
    }
    end
}

/// A chunk's name: the BLAKE3 hash of its bytes.
pub type ChunkId = [u8; 32];

/// One chunk of a blob, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// A chunked blob: its size and its chunks in order. The blob's own id (the BLAKE3 hash of
/// all its bytes) is the manifest's file name, not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// The first bytes of every manifest; the last one is the format version.
const MAGIC: &[u8; 16] = b"drover-manifest\x01";
/// Magic, size (u64), chunk count (u32).
pub const HEADER: usize = 16 + 8 + 4;
/// Chunk id and length (u32).
const ENTRY: usize = 32 + 4;

/// Why bytes are not a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not a drover manifest (bad magic or version)")]
    Magic,
    #[error("manifest truncated or too long for its chunk count")]
    Length,
    #[error("manifest lists more than {MAX_CHUNKS} chunks")]
    TooManyChunks,
    #[error("manifest has a chunk of {0} bytes (1 to {MAX_CHUNK} allowed)")]
    ChunkSize(u32),
    #[error("manifest chunks add up to {sum} bytes, not its size {size}")]
    Sum { sum: u64, size: u64 },
}

impl Manifest {
    /// Bytes [`Manifest::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        Manifest::encoded_len_of(self.chunks.len())
    }

    /// Bytes of an encoded manifest of `count` chunks.
    pub fn encoded_len_of(count: usize) -> usize {
        HEADER + ENTRY * count
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        // The writer never makes more than MAX_CHUNKS (< u32::MAX) chunks.
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.id);
            out.extend_from_slice(&c.len.to_le_bytes());
        }
        out
    }

    /// Parses a manifest, checking the header, the exact length, each chunk's size and
    /// their sum before returning anything.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let (size, count) = Self::decode_header(bytes)?;
        if bytes.len() != HEADER + ENTRY * count {
            return Err(ManifestError::Length);
        }
        let mut chunks = Vec::with_capacity(count);
        let mut sum = 0u64;
        for entry in bytes[HEADER..].chunks_exact(ENTRY) {
            let (id, len) = entry.split_at(32);
            let mut c = ChunkRef {
                id: [0; 32],
                len: 0,
            };
            c.id.copy_from_slice(id);
            c.len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            if c.len == 0 || c.len as usize > MAX_CHUNK {
                return Err(ManifestError::ChunkSize(c.len));
            }
            sum += u64::from(c.len);
            chunks.push(c);
        }
        if sum != size {
            return Err(ManifestError::Sum { sum, size });
        }
        Ok(Manifest { size, chunks })
    }

    /// The blob size and chunk count of an encoded manifest, from its first bytes.
    pub fn decode_header(bytes: &[u8]) -> Result<(u64, usize), ManifestError> {
        if bytes.len() < HEADER {
            return Err(ManifestError::Length);
        }
        if &bytes[..16] != MAGIC {
            return Err(ManifestError::Magic);
        }
        let mut size = [0; 8];
        size.copy_from_slice(&bytes[16..24]);
        let count = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) as usize;
        if count > MAX_CHUNKS {
            return Err(ManifestError::TooManyChunks);
        }
        Ok((u64::from_le_bytes(size), count))
    }

    /// Where each chunk starts in the blob, and the blob's size last (`chunks.len() + 1`
    /// entries), for finding the chunk that holds an offset.
    pub fn offsets(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.chunks.len() + 1);
        let mut at = 0;
        out.push(0);
        for c in &self.chunks {
            at += u64::from(c.len);
            out.push(at);
        }
        out
    }
}

/// The chunk id as 64 lowercase hex digits (its file name).
pub fn hex(id: &ChunkId) -> String {
    blake3::Hash::from_bytes(*id).to_hex().to_string()
}

/// Parses 64 hex digits into a chunk id.
pub fn parse_hex(s: &str) -> Option<ChunkId> {
    (s.len() == 64)
        .then(|| blake3::Hash::from_hex(s).ok())
        .flatten()
        .map(|h| *h.as_bytes())
}

/// Deterministic incompressible bytes for tests: the BLAKE3 output stream keyed by `seed`.
#[cfg(test)]
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    let mut hasher = blake3::Hasher::new();
    hasher
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_all(data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = cut(rest);
            assert!(n > 0 && n <= MAX_CHUNK);
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn chunks_cover_the_data_within_the_size_limits() {
        let data = noise(1, 4 << 20);
        let chunks = chunk_all(&data);
        assert_eq!(chunks.concat(), data);
        let (last, body) = chunks.split_last().unwrap();
        assert!(body.iter().all(|c| c.len() >= MIN_CHUNK));
        assert!(!last.is_empty());
        // Random data cuts near the average, not at the forced maximum.
        let avg = data.len() / chunks.len();
        assert!(avg > MIN_CHUNK && avg < MAX_CHUNK, "average {avg}");
        assert_eq!(cut(&[]), 0);
        assert_eq!(cut(&data[..100]), 100);
        // Long runs of one byte value are cut too, never before the minimum.
        let zeros = cut(&vec![0; MAX_CHUNK * 2]);
        assert!((MIN_CHUNK..=MAX_CHUNK).contains(&zeros), "{zeros}");
    }

    #[test]
    fn an_insertion_moves_only_nearby_boundaries() {
        let (mut chunks, mut differ) = (0, 0);
        for seed in 0..6 {
            let a = noise(seed * 2, 3 << 20);
            let mut b = a[..1 << 20].to_vec();
            b.extend_from_slice(&noise(seed * 2 + 1, 50_000));
            b.extend_from_slice(&a[1 << 20..]);
            let ids = |d: &[u8]| -> Vec<blake3::Hash> {
                chunk_all(d).iter().map(|c| blake3::hash(c)).collect()
            };
            let (ia, ib) = (ids(&a), ids(&b));
            chunks += ib.len();
            differ += ib.iter().filter(|h| !ia.contains(h)).count();
        }
        // Of some 40 chunks per pair, only those around the insertion differ: a few each.
        assert!(differ <= 6 * 4, "{differ} of {chunks} chunks differ");
    }

    #[test]
    fn manifest_round_trips_and_refuses_bad_input() {
        let m = Manifest {
            size: 70_000,
            chunks: vec![
                ChunkRef {
                    id: [1; 32],
                    len: 65_536,
                },
                ChunkRef {
                    id: [2; 32],
                    len: 4_464,
                },
            ],
        };
        let bytes = m.encode();
        assert_eq!(bytes.len(), m.encoded_len());
        assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        assert_eq!(m.offsets(), vec![0, 65_536, 70_000]);
        assert_eq!(
            Manifest::decode(&Manifest::default().encode())
                .unwrap()
                .size,
            0
        );

        // Every truncation is refused, never a panic.
        for n in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Manifest::decode(&extra), Err(ManifestError::Length));
        let mut magic = bytes.clone();
        magic[15] = 2;
        assert_eq!(Manifest::decode(&magic), Err(ManifestError::Magic));
        let mut sum = bytes.clone();
        sum[16] ^= 1;
        assert!(matches!(
            Manifest::decode(&sum),
            Err(ManifestError::Sum { .. })
        ));
        let mut zero = bytes.clone();
        zero[HEADER + 32..HEADER + 36].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Manifest::decode(&zero), Err(ManifestError::ChunkSize(0)));
        let mut huge = bytes;
        huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Manifest::decode(&huge), Err(ManifestError::TooManyChunks));
    }

    #[test]
    fn hex_round_trips() {
        let id = *blake3::hash(b"x").as_bytes();
        assert_eq!(parse_hex(&hex(&id)), Some(id));
        assert_eq!(parse_hex("ab"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }
}
