//! XDR (RFC 4506) primitives, written by hand: a bounds-checked [`Reader`] over a received
//! record and a growable [`Writer`] for replies.
//!
//! Every read checks the remaining length first and fails with [`XdrError`] instead of
//! panicking; variable-length items carry a caller-given maximum, checked before any
//! allocation, so a hostile length prefix cannot make the server allocate.
//!
//! Not here: RPC or NFS types (see [`super::wire`]).

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    #[error("record ends inside an item")]
    Truncated,
    #[error("a length exceeds its limit")]
    TooLong,
    #[error("a value is out of range")]
    BadValue,
}

pub type XdrResult<T> = Result<T, XdrError>;

/// Reads XDR items from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread rest, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// How far into the buffer reading has got.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> XdrResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(XdrError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32(&mut self) -> XdrResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> XdrResult<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    pub fn i64(&mut self) -> XdrResult<i64> {
        Ok(self.u64()? as i64)
    }

    pub fn bool(&mut self) -> XdrResult<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(XdrError::BadValue),
        }
    }

    /// Fixed-length opaque data of `N` bytes (padded to 4).
    pub fn fixed<const N: usize>(&mut self) -> XdrResult<[u8; N]> {
        let padded = N.div_ceil(4) * 4;
        let b = self.take(padded)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b[..N]);
        Ok(out)
    }

    /// Variable-length opaque data of at most `max` bytes.
    pub fn opaque(&mut self, max: usize) -> XdrResult<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong);
        }
        let padded = len.div_ceil(4) * 4;
        if self.remaining() < padded {
            return Err(XdrError::Truncated);
        }
        let b = self.take(padded)?;
        Ok(&b[..len])
    }

    /// An array length, at most `max`, and at most what the remaining bytes could hold at
    /// `min_item` bytes per item (so that a huge count fails before anything is allocated).
    pub fn count(&mut self, max: usize, min_item: usize) -> XdrResult<usize> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(XdrError::TooLong);
        }
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(XdrError::Truncated);
        }
        Ok(n)
    }
}

/// Writes XDR items into a growing buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64);
    }

    pub fn bool(&mut self, v: bool) {
        self.u32(u32::from(v));
    }

    fn pad(&mut self, len: usize) {
        let pad = len.div_ceil(4) * 4 - len;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }

    pub fn fixed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad(data.len());
    }

    /// Variable-length opaque data. Callers pass data whose length fits in a `u32` (it came
    /// from a bounded read or a bounded file operation).
    pub fn opaque(&mut self, data: &[u8]) {
        self.u32(data.len() as u32);
        self.fixed(data);
    }

    /// Overwrites a `u32` written earlier at `at` (a count known only afterwards).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// The encoded size of opaque data of `len` bytes.
pub fn opaque_len(len: usize) -> usize {
    4 + len.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut w = Writer::new();
        w.u32(7);
        w.u64(u64::MAX - 1);
        w.opaque(b"abcde");
        w.bool(true);
        w.fixed(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(w.len(), 4 + 8 + 12 + 4 + 8);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.opaque(10).unwrap(), b"abcde");
        assert!(r.bool().unwrap());
        assert_eq!(r.fixed::<8>().unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u32(), Err(XdrError::Truncated));
    }

    #[test]
    fn hostile_lengths_fail_before_allocating() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.opaque(usize::MAX), Err(XdrError::Truncated));
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.opaque(16), Err(XdrError::TooLong));
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.count(usize::MAX, 4), Err(XdrError::Truncated));
        let mut r = Reader::new(&[0, 0, 0, 2]);
        assert_eq!(r.bool(), Err(XdrError::BadValue));
    }
}
